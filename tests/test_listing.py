"""The text listing: grammar, parser errors with line and column, printer, round trip,
the unicode / LaTeX rendering, and the example files."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tpkernel as tp
from tpkernel.listing import ListingError, parse, parse_file, render

import strategies as S

ROOT = Path(__file__).parent.parent
BAD = sorted((Path(__file__).parent / "data" / "bad_listings").glob("*.tp"))
EXAMPLES = ROOT / "examples"


# ---------------------------------------------------------------------------------------
# round trip
# ---------------------------------------------------------------------------------------

FAST = dict(quad_deg=17, nd_deg=3, mc_samples=64)


def _same_program(p: tp.Program, q: tp.Program) -> None:
    assert q.name == p.name
    assert {n.name: n for n in p} == {n.name: n for n in q}
    assert q.listing() == p.listing()  # and the text is a fixed point


def _same_kernels(p: tp.Program, q: tp.Program, x) -> None:
    with warnings.catch_warnings():  # FAST rules are coarse: the round trip compares programs, not accuracy
        warnings.simplefilter("ignore", tp.AccuracyWarning)
        a = tp.kernels(p, x, **FAST)
        if a.report.monte_carlo:  # sampled in another order: only the nodes must agree
            return
        b = tp.kernels(q, x, **FAST)
    np.testing.assert_allclose(b.nngp, a.nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b.ntk, a.ntk, rtol=1e-12, atol=1e-14)


def _with_lrs(p: tp.Program, lrs: list[float]) -> tp.Program:
    """The same program with learning-rate multipliers on its parameters (printed as lr=...)."""
    nodes = []
    for k, n in enumerate(p):
        if n.is_param:
            n = dataclasses.replace(n, lr=lrs[k % len(lrs)])
        nodes.append(n)
    return tp.Program(p.name, nodes)


lr_lists = st.lists(st.sampled_from([1.0, 0.5, 2.0, 0.125, 3.0]), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(S.recipes(), lr_lists)
def test_round_trip_random_programs(recipe, lrs):
    p = _with_lrs(S.build(recipe), lrs)
    q = parse(p.listing())
    _same_program(p, q)
    _same_kernels(p, q, S.inputs(0, 2))


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(S.recipes(sequence=True))
def test_round_trip_random_recurrent_programs(recipe):
    p = S.build(recipe)
    q = parse(p.listing())
    _same_program(p, q)
    _same_kernels(p, q, S.sequences(0, 2, recipe.T))


@pytest.mark.parametrize("name", list(tp.examples.EXAMPLES))
def test_round_trip_builtin_examples(name):
    p = tp.examples.get(name)
    _same_program(p, parse(p.listing()))


@pytest.mark.filterwarnings("ignore::tpkernel.AccuracyWarning")  # few Monte Carlo samples, same seed both sides
def test_round_trip_every_node_kind():
    """Readout vectors, pooling, transposes, lr, products of three, constants, seeds, every alias."""
    p = tp.Program("kinds")
    x = p.data("x", length=2)
    U, W = p.input_layer("U", std=0.5, lr=2.0), p.matrix("W", std=1.25, lr=0.5)
    V = p.matrix("V")
    b, v = p.bias("b", std=0.1), p.bias("v", std=2.0, lr=3.0)
    h0 = U @ x[0] + b
    h1 = W @ tp.tanh(h0) + U @ x[1] - 0.5
    a = tp.leaky_relu(h1, 0.2) * tp.erf(h0) * tp.cos(h1)
    c = tp.abrelu(V.T @ a, -0.3, 1.2) + tp.gaussian(h0, 2.0, -0.5) + tp.power(h1, 3) + tp.gelu(h0) \
        + tp.sin(h0) + tp.exp(0.1 * h0) + tp.abs(h1) + tp.sigmoid(h0) + tp.softplus(h1) + tp.swish(h0) \
        + tp.apply(tp.nonlin.get("identity"), h1)
    p.output([tp.relu(h0), c], pool="mean", vector=v, b_std=0.3, b_lr=0.25, name="f")
    text = p.listing()
    assert "V^T" in text and "vector=v" in text and "readout[mean]" in text and "lr=2" in text
    assert "leaky_relu[0.2](" in text and "abrelu[-0.3, 1.2](" in text and " * " in text
    q = parse(text)
    _same_program(p, q)
    _same_kernels(p, q, [np.random.default_rng(0).standard_normal((2, 3)),
                         np.random.default_rng(1).standard_normal((1, 3))])


def test_seed_instruction_parses():
    text = "data xi\ninput U\nh = U xi\nf = readout(h)\nd = seed(f, 0)\ng = readout(d) std=2\n"
    p = parse(text)
    assert type(p["d"]).__name__ == "Seed" and p["d"].readout == "f"
    assert "d = seed(f, 0)" in p.listing()


# ---------------------------------------------------------------------------------------
# the language
# ---------------------------------------------------------------------------------------

def test_compound_expressions_as_in_the_papers():
    """x := relu(W x0 + b): sub-expressions become nodes named after the assignment."""
    p = parse("""
        program compound   # comments, blank lines, indentation, := and CRLF are fine\r
        data xi
        input U std=1.5
        matrix W std=1.5
        bias b1 std=0.1
        bias b2 std=0.1

        x1 := relu(U xi + b1)
        x2 := relu(W x1 + b2) * 2 - x1 / 4 + 1
        f := readout(x2) std=1.5 b_std=0.1
    """)
    assert [n.name for n in p if not n.is_param and type(n).__name__ != "Data"] == \
        ["x1_1", "x1_2", "x1", "x2_1", "x2_2", "x2_3", "x2", "f"]
    assert p["x2"].coeffs == (2.0, -0.25) and p["x2"].const == 1.0
    ref = tp.examples.mlp(2)
    x = np.random.default_rng(0).standard_normal((3, 4))
    q = parse("data xi\ninput U std=1.5\nmatrix W2 std=1.5\nbias b1 std=0.1\nbias b2 std=0.1\n"
              "x1 = relu(U xi + b1)\nx2 = relu(W2 x1 + b2)\nf = readout(x2) std=1.5 b_std=0.1\n")
    np.testing.assert_allclose(tp.kernels(q, x).ntk, tp.kernels(ref, x).ntk, rtol=1e-14)


def test_matrix_application_forms():
    base = "data xi\ninput U\nmatrix W\nh = U xi\n"
    forms = ["x = W h", "x = W(h)", "x = W (h)", "x = Wᵀ h", "x = W^T(h)", "x = W relu(h)", "x = W W h"]
    for form in forms:
        p = parse(base + form + "\nf = readout(x)\n")
        assert type(p["x"]).__name__ == "MatMul", form
        assert p["x"].transpose == ("ᵀ" in form or "^T" in form), form


def test_name_of_program_and_override():
    assert parse("program net\ndata xi\ninput U\nh = U xi\nf = readout(h)\n").name == "net"
    assert parse("data xi\ninput U\nh = U xi\nf = readout(h)\n", name="other").name == "other"


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------

def test_corpus_is_large_and_covers_every_kind():
    assert len(BAD) >= 20
    kinds = {re.match(r"# expect: (\w+)", p.read_text()).group(1) for p in BAD}
    assert {"syntax", "undefined", "arity", "duplicate", "readout", "value", "not_bp_like"} <= kinds


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_malformed_listing(path):
    """Each file starts with '# expect: KIND LINE:COLUMN message fragment'."""
    text = path.read_text()
    kind, line, col, fragment = re.match(r"# expect: (\w+) (\d+):(\d+) (.*)", text).groups()
    with pytest.raises(ListingError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, tp.ProgramError)
    assert (err.kind, err.line, err.column) == (kind, int(line), int(col)), str(err)
    assert fragment in err.message
    # the message shows the line and a caret under the column
    assert f"line {line}, column {col}" in str(err)
    src, caret = str(err).splitlines()[-2:]
    assert src.strip() == text.splitlines()[int(line) - 1].strip()
    assert caret.index("^") - 4 == int(col) - 1


def test_parse_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.tp"
    bad.write_text("data xi\ninput U\nh = U xi +\n")
    with pytest.raises(ListingError, match=r"bad\.tp, line 3, column 11"):
        parse_file(bad)
    with pytest.raises(tp.ProgramError, match="cannot read"):
        parse_file(tmp_path / "missing.tp")
    binary = tmp_path / "bin.tp"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ListingError, match="UTF-8"):
        parse_file(binary)
    with pytest.raises(TypeError):
        parse(b"data xi")


# ---------------------------------------------------------------------------------------
# example files
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,builtin", [("mlp", "mlp"), ("resnet", "resnet"), ("rnn", "rnn"), ("gated", "gated")])
def test_example_files_are_the_builtin_examples(name, builtin):
    p = parse_file(EXAMPLES / f"{name}.tp")
    ref = tp.examples.get(builtin)
    data = tp.examples.sample_data(ref, n=3)
    a, b = tp.kernels(p, data), tp.kernels(ref, data)
    np.testing.assert_allclose(a.nngp, b.nngp, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-13, atol=1e-15)


def test_pruned_example_scales_the_ntk_by_q_cubed():
    p = parse_file(EXAMPLES / "pruned_mlp.tp")
    dense = parse((EXAMPLES / "pruned_mlp.tp").read_text().replace(" mask=0.5", ""))
    x = np.random.default_rng(0).standard_normal((3, 4))
    ratio = tp.kernels(p, x).ntk / tp.kernels(dense, x).ntk
    np.testing.assert_allclose(ratio, 0.125, rtol=1e-12)
    assert parse(p.listing()).listing() == p.listing()


# ---------------------------------------------------------------------------------------
# rendering in the papers' style
# ---------------------------------------------------------------------------------------

def test_unicode_rendering():
    text = tp.examples.mlp(2).listing("unicode")
    assert text.startswith("Program mlp2")
    assert "Input:" in text and "ξ ∈ ℝᵈ" in text and "W² : A(n, n)" in text
    assert "x¹ := relu(h²)" in text and ": X(n)" in text and "h¹ := U ξ" in text and ": G(n)" in text
    assert "Output: f := vᵀx² / √n" in text and "σ_v=1.5" in text
    rnn = render(tp.examples.rnn(3), "unicode")
    assert "lastₜ vᵀ(s¹, s², s³)" in rnn and "ξ[0..2]" in rnn
    g = render(tp.examples.gated(2))
    assert "s¹ := z¹ ⊙ c¹" in g


def test_latex_rendering_is_well_formed():
    for name in tp.examples.EXAMPLES:
        tex = tp.examples.get(name).listing("latex")
        assert tex.startswith(r"\begin{array}") and tex.rstrip().endswith(r"\end{array}")
        depth = 0
        for ch in tex.replace(r"\{", "").replace(r"\}", ""):
            depth += {"{": 1, "}": -1}.get(ch, 0)
            assert depth >= 0
        assert depth == 0
        rows = tex.strip().splitlines()[1:-1]
        assert all(r.endswith(r"\\") and r.count("&") == 2 for r in rows), name
    tex = tp.examples.gated(2).listing("latex")
    assert r"z^{1} \odot c^{1}" in tex and r"W_{z}" in tex and r"\mathsf{X}(n)" in tex
    with pytest.raises(ValueError, match="style"):
        tp.examples.mlp(1).listing("html")


# ---------------------------------------------------------------------------------------
# the command line: show FILE, kernel FILE --data ...
# ---------------------------------------------------------------------------------------

def test_cli_show_a_listing_file(capsys, tmp_path, monkeypatch):
    from tpkernel.cli import main
    monkeypatch.chdir(tmp_path)  # show writes its drawing to the working directory
    assert main(["show", str(EXAMPLES / "rnn.tp")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("program rnn3") and "NNGP" in out and "NTK" in out
    assert main(["show", "gated", "--style", "unicode"]) == 0
    assert capsys.readouterr().out.startswith("Program gated3")


def test_cli_bad_files_are_clear_errors(capsys, tmp_path):
    from tpkernel.cli import main
    bad = tmp_path / "bad.tp"
    bad.write_text("data xi\ninput U\nh = U xi\nx = W h\nf = readout(x)\n")
    assert main(["kernel", str(bad), "--data", str(tmp_path / "x.npy")]) == 2
    assert "bad.tp, line 4, column 5: 'W' is not defined" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "nope.tp")]) == 2
    assert "no such listing file" in capsys.readouterr().err
    assert main(["show", "mlp3000"]) == 2
    assert "unknown example 'mlp3000'" in capsys.readouterr().err


def test_cli_kernel_on_data_files(capsys, tmp_path):
    import json
    from tpkernel.cli import main
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    np.save(tmp_path / "x1.npy", x1)
    np.savetxt(tmp_path / "x2.csv", x2, delimiter=",")
    p = parse_file(EXAMPLES / "mlp.tp")
    ref = tp.kernels(p, x1, x2)
    mlp = str(EXAMPLES / "mlp.tp")
    assert main(["kernel", mlp, "--data", str(tmp_path / "x1.npy"), "--data2", str(tmp_path / "x2.csv")]) == 0
    out = capsys.readouterr().out
    assert "NNGP Σ 4×2" in out and "NTK Θ 4×2" in out
    assert main(["kernel", mlp, "--data", str(tmp_path / "x1.npy"), "--data2", str(tmp_path / "x2.csv"),
                 "--out", str(tmp_path / "k.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "k.npy"), np.stack([ref.nngp, ref.ntk]), rtol=1e-14)
    assert main(["kernel", mlp, "--data", str(tmp_path / "x1.npy"), "--get", "ntk", "--out",
                 str(tmp_path / "t.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), tp.kernels(p, x1).ntk, rtol=1e-14)
    assert main(["kernel", "mlp", "--data", f"xi={tmp_path / 'x1.npy'}", "--out", str(tmp_path / "k.json")]) == 0
    saved = json.loads((tmp_path / "k.json").read_text())
    np.testing.assert_allclose(saved["ntk"], tp.kernels(tp.examples.mlp(2), x1).ntk, rtol=1e-14)
    assert main(["kernel", mlp, "--data", str(tmp_path / "x1.npy"), "--out", str(tmp_path / "k.npz")]) == 0
    with np.load(tmp_path / "k.npz") as z:
        assert set(z.files) == {"nngp", "ntk"}
    # sequences of different lengths
    seqs = rng.standard_normal((3, 3, 2))
    np.save(tmp_path / "s.npy", seqs)
    assert main(["kernel", str(EXAMPLES / "rnn.tp"), "--data", str(tmp_path / "s.npy"), "--lengths", "3,2,1",
                 "--out", str(tmp_path / "r.npy"), "--get", "nngp"]) == 0
    want = tp.kernels(tp.examples.rnn(3), [seqs[0], seqs[1, :2], seqs[2, :1]]).nngp
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), want, rtol=1e-14)
    capsys.readouterr()
    # errors
    for args, msg in [(["--data", str(tmp_path / "missing.npy")], "no such data file"),
                      (["--data", str(tmp_path / "s.npy")], "expected an array (N, d)"),
                      (["--data", str(tmp_path / "x1.npy"), "--out", str(tmp_path / "k.txt")], "unknown format"),
                      (["--data", str(tmp_path / "k.npz")], "holds 2 arrays"),
                      (["--data", str(tmp_path / "x1.npy"), "--lengths", "a,b"], "comma-separated")]:
        assert main(["kernel", mlp] + args) == 2, args
        assert msg in capsys.readouterr().err, args
