"""Drawings in the notation of Tensor Programs IIb (tpkernel.draw, issue 6).

Structural tests read the DOT source (every element carries a ``class``: gvar ○, xvar ●,
gate, moment, scalar; edges matmul (dashed), arg, preact, readout, propagation); the
rendering tests run the real ``dot`` binary.
"""

import re
import sys

import graphviz
import pytest
from hypothesis import HealthCheck, given, settings

import tpkernel as tp
from tpkernel.cli import main
from tpkernel.ir import Bias, Embed, LinComb, MatMul, Nonlin

D = sys.modules["tpkernel.draw"]  # the module (tp.draw is the function)
summary = D.summary

SVG, PNG, PDF = b"<svg", b"\x89PNG\r\n\x1a\n", b"%PDF"


def plain(g) -> dict[str, tuple[float, float]]:
    """Node centres of the laid-out drawing (dot -Tplain), in inches, y upwards."""
    out = g.pipe(format="plain").decode()
    return {ln.split()[1].strip('"'): (float(ln.split()[2]), float(ln.split()[3]))
            for ln in out.splitlines() if ln.startswith("node ")}


def node_attrs(g, nid: str) -> dict[str, str]:
    for line in g.source.splitlines():
        if re.match(rf'^\s*"?{re.escape(nid)}"? \[', line):
            return D._attrs(line)
    raise KeyError(nid)


def edges(g, cls: str | None = None) -> list[tuple[str, str, dict]]:
    out = []
    for line in g.source.splitlines():
        m = re.match(r'^\s*("[^"]+"|\S+) -> ("[^"]+"|\S+)(?: \[|$)', line)
        if m:
            a = D._attrs(line)
            if cls is None or cls in a.get("class", "").split():
                out.append((m.group(1).strip('"'), m.group(2).strip('"'), a))
    return out


# -- the counts of the acceptance criteria ----------------------------------------------------

FORWARD = {  # example: (hollow ○, filled ●, gates, dashed edges per matrix label)
    "mlp": (5, 2, 2, {"W²": 1}),
    "resnet": (9, 7, 7, {"W¹a": 1, "W¹b": 1, "W²a": 1, "W²b": 1}),
    "rnn": (6, 3, 3, {"W": 2}),
    "rnn-mean": (6, 4, 4, {"W": 2}),
    "gated": (13, 9, 9, {"W_z": 2, "W_h": 2}),
}
BACKWARD = {  # example: (hollow, filled, gates, dashed, curved pre-activation edges)
    "mlp": (6, 6, 6, {"W²": 1, "(W²)ᵀ": 1}, 2),
    "resnet": (13, 17, 17, {"W¹a": 1, "W¹b": 1, "W²a": 1, "W²b": 1,
                            "(W¹a)ᵀ": 1, "(W¹b)ᵀ": 1, "(W²a)ᵀ": 1, "(W²b)ᵀ": 1}, 5),
    "rnn": (10, 8, 8, {"W": 2, "Wᵀ": 2}, 3),
    "gated": (19, 27, 27, {"W_z": 2, "W_h": 2, "(W_z)ᵀ": 2, "(W_h)ᵀ": 2}, 12),
}


@pytest.mark.parametrize("name", FORWARD)
def test_forward_counts(name):
    hollow, filled, gates, dashed = FORWARD[name]
    s = summary(tp.draw(tp.examples.get(name)))
    assert (s.hollow, s.filled, s.gates, dict(s.dashed)) == (hollow, filled, gates, dashed)
    assert s.moments == s.scalars == s.preact == 0


@pytest.mark.parametrize("name", BACKWARD)
def test_backward_counts(name):
    hollow, filled, gates, dashed, preact = BACKWARD[name]
    s = summary(tp.draw(tp.examples.get(name), backward=True))
    assert (s.hollow, s.filled, s.gates, dict(s.dashed), s.preact) == (hollow, filled, gates, dashed, preact)


@pytest.mark.needs_dot
def test_mlp_is_figure_1():
    """MLP of Fig. 1: ○Uξ and ○b¹ into the gate relu(·+·), ●, dashed W², ○ and ○b², gate, ●."""
    g = tp.draw(tp.examples.get("mlp"))
    s = summary(g)
    assert s.gate_labels == {"relu(·+·)": 2}
    assert s.labels["Uξ"] == 1 and s.labels["b1"] == 1 and s.labels["b2"] == 1
    ins = sorted(t for t, h, _ in edges(g, "arg") if h == "gate/x1")
    assert ins == ["b1", "h1"]  # the embedding and the bias; the LinComb h2 is fused into the gate
    assert [(t, h) for t, h, _ in edges(g, "matmul")] == [("x1", "h3")]
    assert node_attrs(g, "x1")["fillcolor"] == "black" and node_attrs(g, "h3")["fillcolor"] == "white"
    assert node_attrs(g, "gate/x1")["shape"] == "trapezium" and node_attrs(g, "gate/x1")["orientation"] == "270"
    # the raw input, the matrices and the scalar output are not nodes
    assert not {"xi", "U", "W2", "f"} & set(plain(g))


@pytest.mark.parametrize("T", [2, 3, 5])
def test_rnn_shares_W_on_T_minus_1_edges(T):
    p = tp.examples.rnn(T, b_std=0.1)
    s = summary(tp.draw(p))
    assert dict(s.dashed) == {"W": T - 1}
    assert s.gate_labels == {"erf(·+·)": 1, "erf(·+·+·)": T - 1}  # φ(Uξ¹+b), φ(Ws+Uξᵗ+b)
    assert s.hollow == T + (T - 1) + 1 + 1  # Uξᵗ, W s, b, v
    # the shared bias sends one edge to each of the T gates
    assert sorted(h for t, h, _ in edges(tp.draw(p), "arg") if t == "b") == sorted(f"gate/s{t}" for t in range(1, T + 1))
    sb = summary(tp.draw(p, backward=True))
    assert sb.dashed["W"] == sb.dashed["Wᵀ"] == T - 1


def test_residual_sum_and_product_gates():
    s = summary(tp.draw(tp.examples.get("resnet")))
    assert s.gate_labels["·+·"] == 2  # x + W φ(...) is read by a MatMul and a readout: its own gate
    g = tp.draw(tp.examples.get("gated"))
    assert summary(g).gate_labels["·×·"] == 3
    assert sorted(t for t, h, _ in edges(g, "arg") if h == "gate/s2") == ["c2", "z2"]


@pytest.mark.needs_dot
def test_readout_vector_has_one_edge_against_the_computation():
    for name in ("mlp", "rnn", "resnet"):
        g = tp.draw(tp.examples.get(name))
        read = edges(g, "readout")
        assert len(read) == 1
        tail, head, _ = read[0]
        assert head == "readout/f" and node_attrs(g, head)["fillcolor"] == "white"
        assert [e for e in edges(g) if "readout/f" in e[:2]] == read  # its single edge
        ys = plain(g)
        assert ys[head][0] > ys[tail][0]  # drawn after the vector it reads, its edge pointing back
    g = tp.draw(tp.examples.get("rnn-mean"))  # vᵀ mean(s¹..s³): a linear gate first
    assert summary(g).gate_labels["(·+·+·)/3"] == 1


@pytest.mark.needs_dot
def test_backward_drawing_elements():
    g = tp.draw(tp.examples.get("mlp"), backward=True)
    # mirrored gates, transposed MatMul dashed and labelled, curved pre-activation edges
    gates = {n: node_attrs(g, n) for n in ("gate/x1", "gate/dx1")}
    assert gates["gate/x1"]["orientation"] == "270" and gates["gate/dx1"]["orientation"] == "90"
    assert gates["gate/dx1"]["tooltip"] == "·×relu′(·)"
    pre = edges(g, "preact")
    assert sorted((t, h) for t, h, _ in pre) == [("h2", "gate/dx2"), ("h4", "gate/dx1")]
    assert all(a["constraint"] == "false" for *_, a in pre)
    (arrow,) = edges(g, "propagation")
    assert arrow[:2] == ("x2", "df_1") and "forward propagation" in arrow[2]["xlabel"]
    assert "backward propagation" in arrow[2]["xlabel"]
    # forward row on top, backward row below it, column by column
    pos = plain(g)
    for x, dx in [("x2", "df_1"), ("h4", "dx1"), ("x1", "dh1"), ("h2", "dx2")]:
        assert pos[x][0] == pytest.approx(pos[dx][0], abs=1e-3) and pos[x][1] > pos[dx][1]
    # Fig. 6's labels: d(vector)
    src = g.source
    assert "d<I>x</I><SUB>1</SUB>" in src and "d<I>h</I><SUB>4</SUB>" in src


@pytest.mark.needs_dot
@pytest.mark.parametrize("name", ["mlp", "rnn", "resnet", "gated", "rnn-mean"])
def test_forward_row_above_backward_row(name):
    p = tp.examples.get(name)
    g = tp.draw(p, backward=True)
    b = tp.backward(p)
    pos = plain(g)
    pairs = [(x, dx) for x, dx in b.grads.items() if x in pos and dx in pos
             and abs(pos[x][0] - pos[dx][0]) < 1e-3]
    assert len(pairs) >= 3 and all(pos[x][1] > pos[dx][1] for x, dx in pairs)


def test_pruned_matrices_are_marked():
    p = tp.examples.get("mlp")
    q = tp.pruning.prune(p, 0.5, where=["W2", "U"])
    g = tp.draw(q, legend=True)
    s = summary(g)
    assert dict(s.dashed) == {"M⊙W²": 1} and s.labels["(M⊙U)ξ"] == 1
    (e,) = edges(g, "matmul")
    assert e[2]["color"] == D.PRUNED
    assert "pruned M⊙W" in g.source  # the legend explains it
    assert dict(summary(tp.draw(q, backward=True)).dashed) == {"M⊙W²": 1, "(M⊙W²)ᵀ": 1}
    assert dict(summary(tp.draw(p)).dashed) == {"W²": 1}  # no mask attribute: unmarked


def test_legend_is_not_counted_and_lists_the_notation():
    p = tp.examples.get("mlp")
    g = tp.draw(p, legend=True)
    assert summary(g) == summary(tp.draw(p))
    for words in ("G-var", "X-var", "Nonlin", "MatMul"):
        assert f"label={words}" in g.source or f'label="{words}"' in g.source
    assert "Moment" in tp.draw_sgd(p, legend=True).source
    assert "backward Nonlin" in tp.draw(p, backward=True, legend=True).source


@pytest.mark.needs_dot
def test_sgd_step_of_an_mlp():
    """Fig. 7: train forward/backward, test forward, χ = L′(f), θ = zᵀz̃/n, δh̃ = −χθ dh,
    δx̃ = √n(φ(h̃ + δh̃/√n) − φ(h̃)), f̃₁ − f̃ = vᵀδx̃/n."""
    p = tp.examples.get("mlp")
    g = tp.draw_sgd(p)
    s = summary(g)
    assert (s.scalars, s.moments) == (4, 3)  # f, χ, θ, f̃₁ − f̃; the bar-gates L′, θ, vᵀ·/n
    assert s.gate_labels["L′(·)"] == s.gate_labels["·ᵀ·/n"] == s.gate_labels["vᵀ·/n"] == 1
    assert s.gate_labels["−χθ·"] == 1 and s.gate_labels["√n(relu(h̃+δh̃/√n)−relu(h̃))"] == 1
    assert {"χ = L′(f)", "θ₁ = x1ᵀx1̃/n", "f = f(ξ)", "f̃₁ − f̃"} <= set(s.labels)
    assert dict(s.dashed) == {"W²": 2, "(W²)ᵀ": 1}  # train and test pass, backward
    assert s.hollow == 10 and s.filled == 10
    ins = sorted(t for t, h, _ in edges(g, "arg") if h == "sgd/gate/d/h3")
    assert ins == sorted(["sgd/chi", "sgd/theta1", "tr/dx1"])  # χ, θ and the train gradient dh
    bars = [a for *_, a in edges(g) if a.get("arrowtail") == "tee"]
    assert len(bars) == 3  # the bar of each Moment
    assert 'label="first forward/backward pass on train example ξ"' in g.source
    assert 'label="first forward pass on test example ξ̃"' in g.source
    pos = plain(g)
    assert pos["tr/x2"][1] > pos["tr/df_1"][1]  # forward above backward in the grey box too


def test_sgd_options_and_errors():
    p = tp.examples.get("mlp")
    s_all = summary(tp.draw_sgd(p, train="all"))
    # + θ for U (an input square ⟨ξ, ξ̃⟩/d), δb¹, δb² and the trained readout
    assert s_all.gate_labels["−χ·"] == 2 and s_all.gate_labels["vᵀ·/n−χ·ᵀ·/n−χ"] == 1
    assert any(lab.startswith("θ") and "ξ·ξ̃/d" in lab for lab in s_all.labels)
    assert summary(tp.draw_sgd(p, train=["W2"])) == summary(tp.draw_sgd(p))
    with pytest.raises(tp.ProgramError, match="steps=2"):
        tp.draw_sgd(p, steps=2)
    with pytest.raises(tp.ProgramError, match="not a parameter"):
        tp.draw_sgd(p, train=["W9"])
    s = summary(tp.draw_sgd(tp.examples.get("rnn")))
    assert s.gate_labels["·ᵀ·/n"] == 4  # W shared by 2 steps on ξ and 2 on ξ̃: (T − 1)² kernels θ


@pytest.mark.needs_dot
def test_wrap_breaks_a_deep_mlp_into_lines():
    p = tp.examples.mlp(10)
    flat, wrapped = tp.draw(p), tp.draw(p, wrap=5)
    assert summary(wrapped).dashed == summary(flat).dashed  # W⁶ is still one MatMul
    pos = plain(wrapped)
    assert pos["h1"][1] > pos["h11"][1]  # line 2 below line 1
    assert pos["h1"][0] == pytest.approx(pos["h11"][0], abs=1e-3)  # and starts at the left margin
    width = max(x for x, _ in pos.values())
    assert width < 0.6 * max(x for x, _ in plain(flat).values())
    with pytest.raises(tp.ProgramError, match="wrap"):
        tp.draw(p, backward=True, wrap=5)
    with pytest.raises(tp.ProgramError, match="positive"):
        tp.draw(p, wrap=0)
    g = tp.draw(tp.examples.rnn(8, b_std=0.1), wrap=3)  # the shared bias is drawn in each line
    assert summary(g).labels["b"] == 3 and summary(g).dashed["W"] == 7


@pytest.mark.needs_dot
@pytest.mark.parametrize("rankdir,shape", [("TB", "invtrapezium"), ("BT", "trapezium"), ("RL", "trapezium")])
def test_rankdir(rankdir, shape):
    g = tp.draw(tp.examples.get("mlp"), backward=True, rankdir=rankdir)
    assert node_attrs(g, "gate/x1")["shape"] == shape
    assert g.pipe(format="svg").lstrip().startswith(b"<?xml")
    with pytest.raises(tp.ProgramError, match="rankdir"):
        tp.draw(tp.examples.get("mlp"), rankdir="XY")


# -- rendering with the real dot binary ---------------------------------------------------------

@pytest.mark.needs_dot
@pytest.mark.parametrize("name", list(tp.examples.EXAMPLES))
def test_every_example_renders(name):
    p = tp.examples.get(name)
    for g in (tp.draw(p, legend=True), tp.draw(p, backward=True)):
        svg = g.pipe(format="svg")
        assert SVG in svg[:400] and svg.rstrip().endswith(b"</svg>")
        assert g.pipe(format="png").startswith(PNG)
    if name in ("mlp", "rnn"):
        sgd = tp.draw_sgd(p)
        assert sgd.pipe(format="png").startswith(PNG) and SVG in sgd.pipe(format="svg")[:400]
    if name == "mlp":
        assert tp.draw(p).pipe(format="pdf").startswith(PDF)


@pytest.mark.needs_dot
def test_dot_source_reparses():
    g = tp.draw(tp.examples.get("gated"), backward=True, legend=True)
    again = graphviz.Source(g.source)
    assert again.pipe(format="svg") == g.pipe(format="svg")


# -- random programs -----------------------------------------------------------------------------

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from strategies import build, recipes


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(recipes(sequence=False) | recipes(sequence=True))
def test_random_programs_draw_every_instruction_once(recipe):
    p = build(recipe)
    s = summary(tp.draw(p))
    fused = [n for n in p.of_type(LinComb) if all(isinstance(u, Nonlin) for u in p.consumers(n.name))]
    readouts = p.readouts
    assert sum(s.dashed.values()) == len(p.of_type(MatMul))
    assert s.hollow == len(p.of_type(MatMul, Embed, Bias)) + len(readouts)
    means = sum(r.pool == "mean" and len(r.args) > 1 for r in readouts)
    assert s.filled == s.gates == len(p.of_type(Nonlin)) + len(p.of_type(LinComb)) - len(fused) + means
    bwd = tp.backward(p).program
    b = summary(tp.draw(p, backward=True))
    assert sum(b.dashed.values()) == len(bwd.of_type(MatMul))  # forward W x and backward Wᵀ dy
    assert b.filled == b.gates
    seeds = len([n for n in bwd if type(n).__name__ == "Seed"])
    assert b.hollow == len(bwd.of_type(MatMul, Embed, Bias)) + seeds


@pytest.mark.needs_dot
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(recipes(sequence=False) | recipes(sequence=True))
def test_random_programs_render_with_the_forward_row_on_top(recipe):
    p = build(recipe)
    b = tp.backward(p)
    pos = plain(tp.draw(p, backward=True))
    # a gradient shared by several vectors (x + b and its terms) sits under one of them
    pairs = [(x, dx) for x, dx in b.grads.items() if x in pos and dx in pos
             and abs(pos[x][0] - pos[dx][0]) < 1e-3]
    assert pairs and all(pos[x][1] > pos[dx][1] for x, dx in pairs)


# -- command line --------------------------------------------------------------------------------

@pytest.mark.needs_renderer
def test_cli_draw(tmp_path, capsys):
    svg, png, dot = tmp_path / "mlp.svg", tmp_path / "rnn.png", tmp_path / "g.dot"
    assert main(["draw", "mlp", "--backward", "--legend", "-o", str(svg)]) == 0
    assert SVG in svg.read_bytes()[:400]
    assert main(["draw", "rnn", "--sgd", "-o", str(png)]) == 0
    assert png.read_bytes().startswith(PNG)
    assert main(["draw", "resnet", "-o", str(dot)]) == 0
    assert dot.read_text().startswith("digraph resnet2")
    capsys.readouterr()
    assert main(["draw", "gated", "--rankdir", "TB"]) == 0
    assert capsys.readouterr().out.startswith("digraph gated3")
    assert main(["draw", "mlp", "-o", str(tmp_path / "x.jpg")]) == 2
    assert main(["draw", "nonexistent"]) == 2


@pytest.mark.needs_renderer
def test_cli_draw_listing_file(tmp_path):
    if not hasattr(tp, "parse"):
        pytest.skip("the listing parser (tp.parse) is not there yet")
    f = tmp_path / "rnn.tp"
    f.write_text(tp.examples.rnn(4).listing())
    out = tmp_path / "rnn.svg"
    assert main(["draw", str(f), "-o", str(out)]) == 0
    assert SVG in out.read_bytes()[:400]
    assert summary(tp.draw(tp.parse(f.read_text()))).dashed == {"W": 3}


def test_docs_gallery_is_generated():
    """docs/drawings.md embeds the SVGs written by scripts/make_gallery.py (run it after
    changing the drawings; ``--check`` tells whether the page is stale)."""
    from pathlib import Path
    root = Path(__file__).parent.parent
    page = (root / "docs" / "drawings.md").read_text()
    assert "<!-- gallery:start -->" in page and "<!-- gallery:end -->" in page
    files = re.findall(r"\(gallery/([\w.-]+\.svg)\)", page)
    assert len(set(files)) >= 12
    for f in set(files):
        assert (root / "docs" / "gallery" / f).read_bytes().lstrip().startswith(b"<?xml")
    assert (root / "scripts" / "make_gallery.py").is_file()
