"""The nonlinearity registry: every closed form against high-order quadrature."""

import math

import numpy as np
import pytest
import sympy

import tpkernel as tp
from tpkernel import nonlin as nl
from tpkernel.limit import gaussian

COVS = [(1.0, 1.0, 0.3), (0.5, 2.0, -0.7), (1.3, 0.8, 1.0), (2.0, 2.0, 2.0), (0.7, 0.4, 0.0)]

SMOOTH = [nl.get("erf"), nl.get("gauss", 1.0, -1.0), nl.get("gauss", 0.7, -0.4), nl.get("xgauss", 1.2, -0.5),
          nl.get("sin", 0.3), nl.get("cos"), nl.get("exp"), nl.get("gelu"), nl.get("dgelu"),
          nl.get("power", 3), nl.get("power", 2), nl.get("cpower", 2, 1.5)]
KINKED = [nl.get("relu"), nl.get("abrelu", -0.3, 1.2), nl.get("abs"), nl.get("leaky_relu", 0.1),
          nl.get("step"), nl.get("abstep", 0.4, 1.3)]


def reference(phi, psi, q1, q2, c, deg=200):
    return gaussian.expect_2d(phi, psi, q1, q2, c, deg, "hermite")


@pytest.mark.parametrize("phi", SMOOTH, ids=lambda f: f.label)
def test_smooth_pair_rules_match_quadrature(phi):
    rule = nl.pair_rule(phi, phi)
    assert rule is not None
    for q1, q2, c in COVS:
        exact = rule(q1, q2, c)
        assert abs(exact - reference(phi, phi, q1, q2, c)) <= 1e-10 * max(1.0, abs(exact))


def half_line_quad(f, q):
    """∫ f(u) N(u; 0, q) du split at the kink u = 0 (scipy's adaptive quadrature)."""
    from scipy import integrate
    w = lambda u: f(u) * math.exp(-u * u / (2 * q)) / math.sqrt(2 * math.pi * q)  # noqa: E731
    L = 40 * math.sqrt(q)  # the Gaussian weight is below 1e-300 beyond
    return sum(integrate.quad(w, lo, hi, epsabs=1e-14, epsrel=1e-13, limit=200)[0] for lo, hi in ((-L, 0.0), (0.0, L)))


@pytest.mark.parametrize("phi", KINKED, ids=lambda f: f.label)
def test_kinked_pair_rules_match_adaptive_quadrature(phi):
    """Piecewise-linear maps: condition on u, integrate v | u in closed form over half-lines,
    then integrate u adaptively on each side of the kink."""
    from scipy import special
    rule = nl.pair_rule(phi, phi)
    a, b = phi.params
    for q1, q2, c in COVS:
        if abs(c) >= math.sqrt(q1 * q2):
            continue  # perfectly correlated: see test_relu_diagonal_is_exact
        rho = c / math.sqrt(q1 * q2)
        tau = math.sqrt(q2 * (1 - rho * rho))

        def inner(u):  # E[ψ(v) | u], v | u ~ N(m, τ²)
            m = math.sqrt(q2 / q1) * rho * u
            z = m / tau
            pos, neg = special.ndtr(z), special.ndtr(-z)
            pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
            if phi.name == "abrelu":  # E[v 1(v>0)] = mΦ(z) + τφ(z), E[v 1(v<0)] = mΦ(-z) - τφ(z)
                return b * (m * pos + tau * pdf) + a * (m * neg - tau * pdf)
            return b * pos + a * neg

        val = half_line_quad(lambda u: float(phi(np.array(u))) * inner(u), q1)
        assert abs(rule(q1, q2, c) - val) <= 1e-9 * max(1.0, abs(val))


def test_relu_diagonal_is_exact():
    """Perfectly correlated inputs: angle exactly 0, no arccos of rounding noise."""
    q = np.array([0.3, 1.7, 12.5])
    assert np.array_equal(nl.arccos_1(q, q, q), q / 2)
    assert np.array_equal(nl.arccos_0(q, q, q), np.full(3, 0.5))


def test_zero_variance_is_well_defined():
    """A zero input: relu(0) = 0 and step(0) = 0 (autodiff's convention), no 0/0."""
    with np.errstate(all="raise"):
        assert nl.arccos_1(0.0, 1.0, 0.0) == 0.0
        assert nl.arccos_0(0.0, 1.0, 0.0) == 0.0
        assert float(nl.pair_rule(nl.get("erf"), nl.get("erf"))(0.0, 2.0, 0.0)) == 0.0


@pytest.mark.parametrize("phi", SMOOTH + KINKED + [nl.get("tanh"), nl.get("sigmoid"), nl.get("softplus"),
                                                   nl.get("swish")], ids=lambda f: f.label)
def test_derivatives_and_sympy_forms(phi):
    x = np.linspace(-2.3, 2.1, 9)
    x = x[np.abs(x) > 1e-3]
    h = 1e-6
    if phi.family.deriv is not None:
        d = phi.derivative()
        fd = (phi(x + h) - phi(x - h)) / (2 * h)
        assert np.allclose(d(x), fd, rtol=1e-6, atol=1e-6)
    s = sympy.Symbol("s", real=True)
    f = sympy.lambdify(s, phi.sym(s), modules=["scipy", "numpy"])
    assert np.allclose([float(f(v)) for v in x], phi(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("phi", SMOOTH + KINKED + [nl.get("sigmoid")], ids=lambda f: f.label)
def test_mean_rules(phi):
    m = nl.mean_rule(phi)
    assert m is not None
    for q in (0.3, 1.0, 2.5):
        assert abs(m(q) - half_line_quad(lambda u: float(phi(np.array(u))), q)) <= 1e-10


def test_cross_family_pairs_have_no_rule_and_fall_back():
    assert nl.pair_rule(nl.get("relu"), nl.get("erf")) is None
    assert nl.pair_rule(nl.get("abrelu", 0.2, 1.0), nl.get("abrelu", -1.0, 1.0)) is not None


def test_aliases_and_labels():
    assert nl.get("relu").label == "relu"
    assert nl.get("leaky_relu", 0.1).label == "leaky_relu[0.1]"
    assert nl.get("abrelu", -0.3, 1.2).label == "abrelu[-0.3, 1.2]"
    assert nl.get("cos").label == "cos"
    with pytest.raises(tp.ProgramError, match="needs 1 parameter"):
        nl.get("leaky_relu")


def test_user_function_derivatives():
    sym = nl.user(lambda x: x * sympy.tanh(x) if isinstance(x, sympy.Expr) else x * np.tanh(x), name="xtanh")
    fd = nl.user(lambda x: np.cos(x) * x, name="xcos")
    given = nl.user(np.sin, name="mysin", deriv=np.cos)
    x = np.linspace(-2, 2, 7)
    assert np.allclose(sym.derivative()(x), np.tanh(x) + x / np.cosh(x) ** 2, rtol=1e-13)
    assert np.allclose(fd.derivative()(x), np.cos(x) - x * np.sin(x), rtol=1e-8, atol=1e-9)
    assert np.array_equal(given.derivative()(x), np.cos(x))
    with pytest.raises(tp.ProgramError, match="taken by a built-in"):
        nl.user(np.tanh, name="tanh")


def test_tp_nonlin_is_both_the_registry_and_the_user_function_builder():
    p = tp.Program("p")
    xi = p.data("xi")
    h = p.input_layer("U", 1.3) @ xi
    p.output(tp.nonlin(np.sin, h, fn_name="usersin", deriv=np.cos))
    q = tp.Program("q")
    xi = q.data("xi")
    q.output(tp.sin(q.input_layer("U", 1.3) @ xi))
    X = np.random.default_rng(0).standard_normal((4, 3))
    a, b = tp.kernels(p, X), tp.kernels(q, X)
    assert np.max(np.abs(a.ntk - b.ntk)) <= 1e-10 and np.max(np.abs(a.nngp - b.nngp)) <= 1e-10
    assert tp.nonlin.REGISTRY["erf"].name == "erf"
