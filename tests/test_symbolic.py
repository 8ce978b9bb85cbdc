"""tpkernel.symbolic: the kernels as sympy recurrences, against the numeric evaluator and
against textbook recursions written here independently (sympy equality, not strings)."""

import contextlib
import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
import reference_impls as R
import sympy

import tpkernel as tp
from tpkernel import nonlin as nl
from tpkernel import symbolic
from tpkernel.symbolic import XI, XI2

ROOT = Path(__file__).parent.parent
X, L, Rt = (XI, XI2), (XI, XI), (XI2, XI2)  # the three pairings of two inputs


def rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b))


# -- numeric agreement ------------------------------------------------------------

@pytest.mark.parametrize("name", list(tp.examples.EXAMPLES))
def test_evaluate_agrees_with_kernels(name):
    """Every built-in example, one data set and two (sequences of different lengths)."""
    p = tp.examples.get(name)
    F = tp.formulas(p)
    x1 = tp.examples.sample_data(p, n=3, seed=0)
    x2 = tp.examples.sample_data(p, n=2, seed=1)
    for xs in ((x1, None), (x1, x2)):
        k = tp.kernels(p, *xs)
        s = F.evaluate(*xs)
        assert s.nngp.shape == k.nngp.shape and s.ntk.shape == k.ntk.shape
        assert rel(s.nngp, k.nngp) <= 1e-10
        assert rel(s.ntk, k.ntk) <= 1e-10


@pytest.mark.parametrize("name", ["mlp", "mlp-erf", "resnet", "rnn"])
def test_closed_forms_evaluate_to_the_same_kernels(name):
    p = tp.examples.get(name)
    F = tp.formulas(p, closed_form=True)
    assert not any(isinstance(f, symbolic.Expectation) for e in F.equations for f in e.rhs.atoms(sympy.Function))
    x1 = tp.examples.sample_data(p, n=4, seed=0)
    x2 = tp.examples.sample_data(p, n=3, seed=1)
    for xs in ((x1, None), (x1, x2)):
        k = tp.kernels(p, *xs)
        s = F.evaluate(*xs)
        assert rel(s.nngp, k.nngp) <= 1e-10
        assert rel(s.ntk, k.ntk) <= 1e-10


def test_rnn_sequences_of_different_lengths_match_tp2_reference():
    """TP II §3.2 / App. E, implemented independently in tests/reference_impls.py."""
    w, u, b, v = 1.2, 0.9, 0.3, 1.1
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((n, 4)) for n in (3, 5, 4)]
    ys = [rng.standard_normal((n, 4)) for n in (2, 5)]
    p = tp.examples.rnn(5, "erf", "last", w_std=w, u_std=u, b_std=b, v_std=v)
    for a, c, closed in ((xs, None, True), (xs, ys, False)):
        s = tp.formulas(p, closed_form=closed).evaluate(a, c)
        nngp, ntk = R.rnn_erf_ntk(a, a if c is None else c, sigma_w=w, sigma_u=u, sigma_b=b, sigma_v=v)
        assert rel(s.nngp, nngp) <= 1e-10
        assert rel(s.ntk, ntk) <= 1e-10


def test_rules_beyond_the_examples():
    """Stein's lemma, means, a product of correlated factors (a general Gaussian integral),
    a non-centred pre-activation, quadrature with a kink, lr ≠ 1, a readout bias."""
    p = tp.Program("zoo")
    xi = p.data("xi")
    U = p.input_layer("U", std=1.3, lr=0.5)
    W, W2 = p.matrix("W", std=0.8), p.matrix("W2", std=0.9)
    b = p.bias("b", std=0.4)
    g = U @ xi + b
    y = tp.erf(g) * tp.tanh(g)                   # correlated factors: one integral
    q = tp.relu(W @ y) * tp.relu(g)              # independent factors
    out = g + q + 0.7 * tp.tanh(g) + tp.sin(W2 @ y + 0.5)   # E[g q'] = E[g relu(g')] M[relu]: Stein
    p.output(out, std=1.1, b_std=0.2)
    F = tp.formulas(p)
    text = str(F)
    assert "η_U" in text and "E[" in text and "M[relu]" in text and "V[id,tanh]" in text
    x1 = np.random.default_rng(0).standard_normal((3, 3))
    x2 = np.random.default_rng(1).standard_normal((2, 3))
    k = tp.kernels(p, x1, x2)
    s = F.evaluate(x1, x2)
    assert rel(s.nngp, k.nngp) <= 1e-10 and rel(s.ntk, k.ntk) <= 1e-10
    s = tp.formulas(p, closed_form=True).evaluate(x1, x2, get="ntk")
    assert rel(s, k.ntk) <= 1e-10


def test_sympy_closed_forms_equal_the_numeric_pair_rules():
    """Each entry of nonlin.SYMPY_PAIR_RULES / SYMPY_MEAN_RULES is the numeric rule."""
    rng = np.random.default_rng(0)
    q1, q2 = rng.uniform(0.2, 1.5, 50), rng.uniform(0.2, 1.5, 50)
    c = rng.uniform(-0.95, 0.95, 50) * np.sqrt(q1 * q2)
    a, b_ = sympy.symbols("a b", positive=True)
    cc = sympy.Symbol("c", real=True)
    pairs = [("relu", "relu"), ("abs", "leaky_relu[0.1]"), ("step", "step"), ("relu", "step"),
             ("leaky_relu[0.2]", "abs'"), ("erf", "erf"), ("erf'", "erf'"), ("erf''", "erf''"),
             ("sin", "cos"), ("exp", "exp"), ("gelu", "gelu"), ("gelu'", "gelu'"), ("power[3]", "power[2]"),
             ("power[3]'", "power[3]'")]
    for f, g in pairs:
        cls = symbolic.expectation(f, g)
        expr = cls.closed_form()(a, b_, cc)
        num = nl.pair_rule(cls.phi, cls.psi)(q1, q2, c)
        val = sympy.lambdify((a, b_, cc), expr, "numpy")(q1, q2, c)
        assert np.allclose(val, num, rtol=1e-13, atol=1e-15), (f, g)
    for f in ("relu", "step", "erf", "erf'", "sin", "exp", "gelu", "gelu'", "power[4]", "tanh", "sigmoid"):
        cls = symbolic.mean(f)
        val = sympy.lambdify(a, cls.closed_form()(a), "numpy")(q1)
        assert np.allclose(val, nl.mean_rule(cls.phi)(q1), rtol=1e-13, atol=1e-15), f


# -- textbook recursions ----------------------------------------------------------

def _sub_stds(F, groups):
    return {F.std(p): s for s, names in groups.items() for p in names}


def test_mlp_is_the_jacot_arora_recursion():
    """Σ^1 = σ_w²<ξ,ξ'>/d + σ_b², Σ^l = σ_w² V_φ(Σ^{l-1}) + σ_b², Σ̇^l = V_φ'(Σ^{l-1}),
    Θ^1 = Σ^1, Θ^l = Σ^l + σ_w² Θ^{l-1} Σ̇^l (Jacot et al. 2018; Arora et al. 2019), for
    relu and erf, depth 3 (readout = layer L+1)."""
    sw, sb = sympy.symbols("sigma_w sigma_b", positive=True)
    depth = 3
    for phi in ("relu", "erf"):
        F = tp.formulas(tp.examples.mlp(depth, phi))
        names_w = ["U"] + [f"W{l}" for l in range(2, depth + 1)] + ["v"]
        names_b = [f"b{l}" for l in range(1, depth + 1)] + ["o"]
        sub = _sub_stds(F, {sw: names_w, sb: names_b})
        V, Vd = F.expectation(phi), F.expectation(phi + "'")
        sig = {pr: sw ** 2 * F.gram(pairing=pr) + sb ** 2 for pr in (X, L, Rt)}
        theta = sig[X]
        for _ in range(depth):
            q1, q2, c = sig[L], sig[Rt], sig[X]
            new = {X: sw ** 2 * V(q1, q2, c) + sb ** 2, L: sw ** 2 * V(q1, q1, q1) + sb ** 2,
                   Rt: sw ** 2 * V(q2, q2, q2) + sb ** 2}
            theta = new[X] + sw ** 2 * Vd(q1, q2, c) * theta
            sig = new
        assert sympy.expand(F.unroll(F.nngp).xreplace(sub) - sig[X]) == 0
        assert sympy.expand(F.unroll(F.ntk).xreplace(sub) - theta) == 0


def test_mlp_lines_are_the_textbook_lines():
    """Line by line: Σ^2 = σ² V(Σ^1) + σ_b², D^{h} = D^{x} V_{φ'}(Σ^h), D^{x^{l-1}} = σ² D^{h^l}."""
    F = tp.formulas(tp.examples.get("mlp"))
    S, Dg = symbolic.Sigma, symbolic.D
    sym = sympy.Symbol
    s = lambda u, pr=X: S(sym(u), sym(u), *pr)
    q = lambda u: (s(u, L), s(u, Rt), s(u))
    V, Vd = F.expectation("relu"), F.expectation("relu'")
    lines = {str(e.lhs): e.rhs for e in F.equations}
    assert lines[str(s("h4"))] == F.std("W2") ** 2 * s("x1") + F.std("b2") ** 2
    assert lines[str(s("x1"))] == V(*q("h2"))
    d = lambda u: Dg(sym(u), sym(u), XI, XI2)
    assert lines[str(d("h4"))] == d("x2") * Vd(*q("h4"))
    assert lines[str(d("x1"))] == F.std("W2") ** 2 * d("h4")
    assert lines[str(d("x2"))] == F.std("v") ** 2


def test_rnn_is_the_tensor_programs_ii_recursion():
    """TP II §3.2: h^1 = Uξ^1 + b, h^t = W s^{t-1} + Uξ^t + b, s^t = φ(h^t); forward
    Σ(h^t, h'^t) = σ_W² V_φ(h^{t-1}) + σ_U² ξ^t·ξ'^t/d + σ_b²; backward (gradient
    independence) D(s^T) = σ_v², D(h^t) = D(s^t) V_φ'(h^t), D(s^{t-1}) = σ_W² D(h^t);
    Θ = Σ_t D(h^t)(σ_W² V_φ(h^{t-1})[t ≥ 2] + σ_U² ξ^t·ξ'^t/d + σ_b²) + σ_v² V_φ(h^T)."""
    T = 3
    F = tp.formulas(tp.examples.rnn(T, "erf", "last", b_std=0.2))
    sw, su, sb, sv = F.std("W"), F.std("U"), F.std("b"), F.std("v")
    V, Vd = F.expectation("erf"), F.expectation("erf'")
    h = []  # per step: Σ(h^t) in the three pairings
    for t in range(T):
        cur = {}
        for pr in (X, L, Rt):
            rec = 0 if t == 0 else sw ** 2 * V(*_q(h[-1], pr))
            cur[pr] = rec + su ** 2 * F.gram(t, t, pairing=pr) + sb ** 2
        h.append(cur)
    nngp = sv ** 2 * V(h[-1][L], h[-1][Rt], h[-1][X])
    D = sv ** 2
    theta = nngp
    for t in reversed(range(T)):
        q = (h[t][L], h[t][Rt], h[t][X])
        Dh = D * Vd(*q)
        prev = 0 if t == 0 else sw ** 2 * V(h[t - 1][L], h[t - 1][Rt], h[t - 1][X])
        theta += Dh * (prev + su ** 2 * F.gram(t, t) + sb ** 2)
        D = sw ** 2 * Dh
    assert sympy.expand(F.unroll(F.nngp) - nngp) == 0
    assert sympy.expand(F.unroll(F.ntk) - theta) == 0


def _q(hprev, pr):
    """V's three arguments for Σ(s^{t-1}) in pairing pr: the variances and the covariance."""
    if pr == X:
        return hprev[L], hprev[Rt], hprev[X]
    return hprev[pr], hprev[pr], hprev[pr]


def test_residual_net_prints_compactly():
    """Bilinearity: x^l = x^{l-1} + W φ(h) gives Σ[x^l] = Σ[x^{l-1}] + σ² Σ[φ(h)], no cross terms."""
    F = tp.formulas(tp.examples.get("resnet"))
    S = lambda u: symbolic.Sigma(sympy.Symbol(u), sympy.Symbol(u), XI, XI2)
    lines = {str(e.lhs): e.rhs for e in F.equations}
    assert lines[str(S("h6"))] == S("h2") + F.std("W1b") ** 2 * S("x2")
    assert lines[str(S("h10"))] == S("h6") + F.std("W2b") ** 2 * S("x4")
    assert all(len(str(e)) < 200 for e in F.equations if e.kind == "forward")


# -- the object -------------------------------------------------------------------

def test_every_vector_has_its_forward_and_backward_equation():
    p = tp.examples.get("gated")
    F = tp.formulas(p)
    vectors = [n.name for n in p if n.is_vector]
    assert list(F.forward) == vectors
    assert set(F.backward) == set(vectors)
    # an inlined vector is expressed through the named ones: h5 = Wz s1
    assert F.forward["h5"].rhs == F.std("Wz") ** 2 * F.cov("s1")
    # the NTK is the sum of its parameter terms
    assert sympy.expand(F.ntk - sum(F.ntk_terms.values())) == 0
    assert set(F.ntk_terms) == {"Uz", "Uh", "Wz", "Wh", "bz", "bh", "v"}


def test_str_is_one_line_per_equation_in_program_order():
    F = tp.formulas(tp.examples.rnn(4))
    lines = str(F).splitlines()
    assert len(lines) == len(F.equations)
    heads = [ln.split(" = ")[0] for ln in lines]
    assert heads[:2] == ["Σ[h1](ξ,ξ')", "Σ[s1](ξ,ξ')"]
    assert heads.index("Σ(ξ,ξ')") < heads.index("D[s4](ξ,ξ')") < heads.index("D[h1](ξ,ξ')")
    assert heads[-1] == "Θ(ξ,ξ')"
    assert lines[heads.index("D[s3](ξ,ξ')")] == "D[s3](ξ,ξ') = σ_W²*D[h10](ξ,ξ')"


def _check_latex(text: str, max_parsed: int | None = None) -> None:
    """Structure of an align block, then each kind of line (digits aside) through sympy's
    LaTeX parser when antlr4-python3-runtime 4.11 is installed."""
    lines = text.strip().splitlines()
    assert lines[0] == r"\begin{align}" and lines[-1] == r"\end{align}"
    body = lines[1:-1]
    assert text.count("{") == text.count("}")
    assert text.count(r"\left(") == text.count(r"\right)")
    for i, ln in enumerate(body):
        assert ln.count("&=") == 1
        assert ln.endswith(r" \\") == (i < len(body) - 1)
    try:
        from sympy.parsing.latex import parse_latex
        parse_latex("x")
    except Exception:  # the parser needs antlr4: the structural check above only
        return
    kinds = {}
    for ln in body:
        kinds.setdefault(re.sub(r"\d+", "#", ln), ln)
    for ln in list(kinds.values())[:max_parsed]:
        eq = parse_latex(ln.removesuffix(r" \\").replace("&=", "="))
        assert isinstance(eq, sympy.Eq), ln
        heads = set(re.findall(r"(\\Sigma_\{[^(]*?\}|D_\{[^(]*?\}|V_\{)", ln))
        parsed = {str(f.func) for f in eq.atoms(sympy.Function)}
        assert len(parsed) >= len(heads) - 1, ln  # nothing silently dropped


def test_latex_of_the_cli_parses_and_is_fast():
    """`tpkernel formula rnn --latex -T 5`: a LaTeX align block, in well under 2 s."""
    from tpkernel.cli import main
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        assert main(["formula", "rnn", "--latex", "-T", "5"]) == 0
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0
    _check_latex(out.getvalue())
    assert r"\Theta(\xi, \xi')" in out.getvalue() and r"V_{\mathrm{erf}^{\prime}}" in out.getvalue()


def test_latex_of_other_examples():
    for name in ("gated", "rnn-mean", "resnet"):
        _check_latex(tp.formulas(tp.examples.get(name)).latex(), max_parsed=0)
    _check_latex(tp.formulas(tp.examples.get("mlp-erf"), closed_form=True).latex(), max_parsed=3)


def test_cli_formula_text_and_closed_form():
    from tpkernel.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["formula", "mlp-erf", "--closed-form"]) == 0
    text = out.getvalue()
    assert text.startswith("# ") and "asin" in text and "V[" not in text.split("\n# V")[-1].split("\n", 1)[1]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["formula", "mlp", "-T", "5"]) == 2
    assert "recurrent" in err.getvalue()


def test_notebook_display_and_repr():
    F = tp.formulas(tp.examples.get("mlp"))
    assert F._repr_latex_().startswith("$$\\begin{aligned}") and F._repr_latex_().endswith("\\end{aligned}$$")
    assert "mlp2" in repr(F)


def test_lengths_any_has_pooling_weight_symbols():
    p = tp.examples.get("rnn-mean")
    F = tp.formulas(p, lengths="any")
    assert any(isinstance(a, symbolic.PoolWeight) for a in F.nngp.atoms(sympy.Function))
    assert "c_3(ξ)" in str(F)


def test_docs_page_is_up_to_date():
    """docs/formulas.md is generated by scripts/make_formulas_doc.py."""
    page = (ROOT / "docs" / "formulas.md").read_text()
    assert page == symbolic.examples_markdown(), "run: python scripts/make_formulas_doc.py"


@pytest.mark.skipif(not hasattr(tp, "parse") or not (ROOT / "examples" / "rnn.tp").is_file(),
                    reason="needs tpkernel.parse and examples/rnn.tp")
def test_cli_formula_reads_a_listing_file():
    from tpkernel.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["formula", str(ROOT / "examples" / "rnn.tp"), "--latex"]) == 0
    _check_latex(out.getvalue(), max_parsed=0)
