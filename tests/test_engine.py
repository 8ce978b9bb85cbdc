"""The Master-Theorem evaluator on the paths the reference networks do not reach:
weight sharing, correlated branches, products, Stein's lemma, quadrature and Monte Carlo."""

import itertools
import warnings

import numpy as np
import pytest

import tpkernel as tp
from tpkernel.nonlin import get

RNG = np.random.default_rng(11)
X = RNG.standard_normal((4, 3))
X2 = RNG.standard_normal((3, 3))


def gram(a, b):
    return a @ b.T / a.shape[1]


def test_linear_network_is_exact():
    p = tp.Program("lin")
    xi = p.data("xi")
    h = p.input_layer("U", 1.3) @ xi + p.bias("b", 0.4)
    h = 2.0 * (p.matrix("W", 0.7) @ h) - 1.0 * h
    p.output(h, std=1.1)
    k = tp.kernels(p, X, X2)
    g = 1.3 ** 2 * gram(X, X2) + 0.4 ** 2
    # E[hh'] for h = 2Wz - z with independent W: 4·0.49·g + g
    assert np.allclose(k.nngp, 1.1 ** 2 * (4 * 0.49 * g + g), rtol=1e-14, atol=0)
    assert k.report.summary() == "all expectations in closed form"


def test_weight_sharing_same_matrix_same_vector():
    """W x used twice is the same vector: E[(Wx + Wx)²] = 4 E[(Wx)²]."""
    p = tp.Program("shared")
    xi = p.data("xi")
    x = tp.relu(p.input_layer("U") @ xi)
    W = p.matrix("W", 1.5)
    p.output(W @ x + W @ x)
    q = tp.Program("single")
    xi = q.data("xi")
    q.output(2.0 * (q.matrix("W", 1.5) @ tp.relu(q.input_layer("U") @ xi)))
    a, b = tp.kernels(p, X), tp.kernels(q, X)
    assert np.allclose(a.nngp, b.nngp, rtol=1e-14) and np.allclose(a.ntk, b.ntk, rtol=1e-14)


def test_correlated_branches_are_not_independent():
    """relu(Wx) + erf(Wx) (same W, same x): the cross term E[relu(g) erf(g')] is there,
    which neural-tangents' FanInSum would drop."""
    p = tp.Program("branches")
    xi = p.data("xi")
    x = tp.relu(p.input_layer("U", 1.2) @ xi)
    W = p.matrix("W", 1.3)
    g = W @ x
    p.output(tp.relu(g) + tp.erf(g))
    k = tp.kernels(p, X, error_estimate=True)

    def part(phi_list):
        q = tp.Program("part")
        xi = q.data("xi")
        xx = tp.relu(q.input_layer("U", 1.2) @ xi)
        gg = q.matrix("W", 1.3) @ xx
        outs = [f(gg) for f in phi_list]
        q.output(outs[0] if len(outs) == 1 else outs[0] + outs[1])
        return tp.kernels(q, X).nngp

    independent = part([tp.relu]) + part([tp.erf])
    assert np.max(np.abs(k.nngp - independent)) > 0.1  # the cross terms matter
    # E[relu(g) erf(g')] by the engine's quadrature against a 2D Gauss-Hermite of degree 200
    from tpkernel.limit import gaussian
    from tpkernel.nonlin import pair_rule
    q = 1.3 ** 2 * (1.2 ** 2 * np.diag(gram(X, X)) / 2)
    c = 1.3 ** 2 * pair_rule(get("relu"), get("relu"))(1.2 ** 2 * np.diag(gram(X, X))[:, None],
                                                      1.2 ** 2 * np.diag(gram(X, X))[None, :], 1.2 ** 2 * gram(X, X))
    relu, erf = get("relu"), get("erf")
    cross = gaussian.expect_2d_polar(lambda u, v: relu(u) * erf(v), q[:, None], q[None, :], c, 96)
    assert np.allclose(k.nngp, independent + cross + cross.T, rtol=1e-11, atol=1e-12)


def test_products_of_independent_factors_factorise_in_closed_form():
    p = tp.Program("prod")
    xi = p.data("xi")
    a = p.input_layer("U1", 1.1) @ xi
    b = tp.erf(p.input_layer("U2", 0.9) @ xi)
    p.output(a * b)
    k = tp.kernels(p, X, X2)
    g = gram(X, X2)
    ga, gb = np.diag(gram(X, X)), np.diag(gram(X2, X2))
    erf_pair = get("erf")
    from tpkernel.nonlin import pair_rule
    expected = 1.1 ** 2 * g * pair_rule(erf_pair, erf_pair)(0.81 * ga[:, None], 0.81 * gb[None, :], 0.81 * g)
    assert np.allclose(k.nngp, expected, rtol=1e-14)
    assert k.report.quadrature == [] and k.report.monte_carlo == []


def test_stein_lemma_gives_closed_form_for_gaussian_times_relu():
    p = tp.Program("skip")
    xi = p.data("xi")
    h = p.input_layer("U", 1.0) @ xi
    p.output(h + tp.relu(h))
    k = tp.kernels(p, X)
    g = gram(X, X)
    from tpkernel.nonlin import arccos_1
    d = np.diag(g)
    expected = g + 2 * (g / 2) + arccos_1(d[:, None], d[None, :], g)  # E[h relu(h')] = c·E[step] = c/2
    assert np.allclose(k.nngp, expected, rtol=1e-14)
    assert k.report.quadrature == []


def isserlis(cov):
    """E[z_1 ... z_6] for z ~ N(0, cov) by summing over the 15 perfect matchings."""
    def matchings(items):
        if not items:
            yield []
            return
        a = items[0]
        for i in range(1, len(items)):
            rest = items[1:i] + items[i + 1:]
            for m in matchings(rest):
                yield [(a, items[i])] + m
    return sum(np.prod([cov[..., i, j] for i, j in m], axis=0) for m in matchings(list(range(6))))


def _abc_program() -> tp.Program:
    p = tp.Program("mc")
    x = p.data("x", length=3)
    U = p.input_layer("U", 1.0)
    f = tp.nonlin(lambda a, b, c: a * b * c, U @ x[0], U @ x[1], U @ x[2], fn_name="abc",
                  deriv=[lambda a, b, c: b * c, lambda a, b, c: a * c, lambda a, b, c: a * b])
    p.output(f)
    return p


def _abc_exact(S: np.ndarray) -> np.ndarray:
    """E[abc · a'b'c'] by Isserlis' theorem, from the Gram matrix of the six input vectors."""
    d = S.shape[-1]
    out = np.empty((len(S), len(S)))
    for i, j in itertools.product(range(len(S)), repeat=2):
        steps = [S[i, t] for t in range(3)] + [S[j, t] for t in range(3)]
        out[i, j] = isserlis(np.array([[a @ b / d for b in steps] for a in steps]))
    return out


def test_monte_carlo_fallback_is_labelled_and_within_its_standard_error():
    """A user function of three correlated Gaussians, inputs in R⁶: 6 independent directions
    per pair -> Monte Carlo, with a warning and its standard error."""
    S = RNG.standard_normal((2, 3, 6))
    with pytest.warns(tp.AccuracyWarning, match="by Monte Carlo"):
        k = tp.kernels(_abc_program(), S, get=("nngp",), mc_samples=400_000, seed=3)
    assert len(k.report.monte_carlo) >= 1 and "MONTE CARLO" in k.report.summary()
    se = max(m["se"] for m in k.report.monte_carlo)
    assert np.all(np.abs(k.nngp - _abc_exact(S)) <= 5 * se + 1e-12)


def test_rank_deficient_covariances_integrate_over_their_rank():
    """The same six Gaussians from inputs in R³ span 3 directions: a 3-dimensional
    quadrature, exact for this polynomial (no Monte Carlo, no warning)."""
    S = RNG.standard_normal((3, 3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", tp.AccuracyWarning)
        k = tp.kernels(_abc_program(), S, get=("nngp",))
    assert not k.report.monte_carlo
    assert k.report.quadrature and max(q["dim"] for q in k.report.quadrature) == 3
    assert np.max(np.abs(k.nngp - _abc_exact(S))) <= 1e-10 * np.max(np.abs(k.nngp))


def test_shared_bias_lowers_the_dimension_of_the_integral():
    """erf(erf(Uξ + b) + b): across two examples the leaves (Uξ+b, b, Uξ'+b, b) have rank 3
    (b is one vector). The rule runs over 3 directions and equals the 4-dimensional tensor
    rule on the same nodes (at 33 nodes, where the trapezoid weights sum to 1 to rounding);
    refined it converges (the 4D grid could not: 33 nodes per dimension left an error of 3%
    in the NTK)."""
    from scipy.special import erf
    from tpkernel.limit import gaussian
    q1, q2, c, vb = 1.3, 0.8, 0.4, 1.0
    cov = np.array([[q1 + vb, vb, c + vb, vb], [vb, vb, vb, vb], [c + vb, vb, q2 + vb, vb], [vb, vb, vb, vb]])
    F = lambda z: erf(erf(z[0]) + z[1]) * erf(erf(z[2]) + z[3])  # noqa: E731
    assert gaussian.psd_sqrt(cov, reduce=True).shape == (4, 3)
    L4 = gaussian.psd_sqrt(cov)  # all four directions, one of them of zero variance
    assert abs(gaussian.expect_nd(F, cov, 33, "trapezoid")
               - gaussian.expect_nd(F, cov, 33, "trapezoid", factor=L4)) <= 1e-14
    v33, v65, v129 = (gaussian.expect_nd(F, cov, k, "trapezoid") for k in (33, 65, 129))
    assert abs(v65 - v129) <= 2e-6 and abs(v33 - v129) > 100 * abs(v65 - v129)


def test_adaptive_quadrature_reaches_its_tolerance_and_says_so():
    """Large variances (σ = 2.5 on tanh) need more nodes: the adaptive rule finds them."""
    p = tp.examples.mlp(2, "tanh", w_std=2.5)
    k = tp.kernels(p, X)
    assert k.report.quadrature and all(q["error"] <= 1e-11 for q in k.report.quadrature)
    assert max(q["deg"] for q in k.report.quadrature) > 65
    fine = tp.kernels(p, X, quad_deg=513, quad_rule="trapezoid")
    assert np.max(np.abs(k.ntk - fine.ntk)) <= 1e-10 * np.max(np.abs(fine.ntk))
    fixed = tp.kernels(p, X, quad_deg=33, error_estimate=True)
    assert all(q["deg"] == 33 and q["error"] is not None for q in fixed.report.quadrature)
    assert max(q["error"] for q in fixed.report.quadrature) > 1e-8  # and it admits it


def test_means_and_constants():
    """a·erf(h) + c: the constant enters through E[φ] (closed form), E[(aφ + c)(aφ' + c)] = a²E[φφ'] + c²."""
    p = tp.Program("affine")
    xi = p.data("xi")
    h = p.input_layer("U", 1.0) @ xi
    p.output(0.5 * tp.relu(h) + 0.3)
    k = tp.kernels(p, X)
    from tpkernel.nonlin import arccos_1
    g, d = gram(X, X), np.diag(gram(X, X))
    m = np.sqrt(d) / np.sqrt(2 * np.pi)
    expected = 0.25 * arccos_1(d[:, None], d[None, :], g) + 0.5 * 0.3 * (m[:, None] + m[None, :]) + 0.09
    assert np.allclose(k.nngp, expected, rtol=1e-14)


def test_zero_input_has_a_well_defined_kernel():
    Z = np.vstack([np.zeros(3), X[:2]])
    with np.errstate(all="raise"):
        for phi in ("relu", "erf", "gelu"):
            k = tp.kernels(tp.examples.mlp(2, phi, b_std=None), Z)
            assert np.all(np.isfinite(k.ntk)) and k.nngp[0, 0] == 0.0


def test_get_semantics_like_neural_tangents():
    p = tp.examples.mlp(1)
    both = tp.kernels(p, X)
    assert np.array_equal(tp.kernels(p, X, None, "ntk"), both.ntk)
    only = tp.kernels(p, X, get=("nngp",))
    assert only.ntk is None and np.array_equal(only.nngp, both.nngp)
    with pytest.raises(ValueError):
        tp.kernels(p, X, get="cov1")


def test_lr_multiplier_scales_each_parameter_contribution():
    base = tp.examples.mlp(2, "erf", b_std=None)
    k0 = tp.kernels(base, X)
    p = tp.Program("lr")
    xi = p.data("xi")
    x = tp.erf(p.input_layer("U", 1.5) @ xi)
    x = tp.erf(p.matrix("W2", 1.5, lr=0.0) @ x)
    p.output(x, std=1.5, lr=0.0)
    k = tp.kernels(p, X)
    # only U is trained: Θ = σ_U² ⟨ξ,ξ'⟩/d · E[dh dh']; lr = 0 removes W2 and v exactly
    assert np.allclose(k.nngp, k0.nngp, rtol=1e-15)
    # dropping trained parameters removes PSD contributions
    assert np.linalg.eigvalsh(k0.ntk - k.ntk).min() >= -1e-12 * np.abs(k0.ntk).max()
    assert np.linalg.eigvalsh(k.ntk).min() >= -1e-12 * np.abs(k.ntk).max()
    q = tp.Program("lr2")
    xi = q.data("xi")
    x = tp.erf(q.input_layer("U", 1.5, lr=2.0) @ xi)
    x = tp.erf(q.matrix("W2", 1.5, lr=0.0) @ x)
    q.output(x, std=1.5, lr=0.0)
    assert np.allclose(tp.kernels(q, X).ntk, 2 * k.ntk, rtol=1e-14)


def test_gated_cell_factorises_into_two_dimensional_integrals():
    k = tp.kernels(tp.examples.gated(3), tp.examples.sample_data(tp.examples.gated(3)))
    assert k.report.monte_carlo == [] and all(q["dim"] <= 2 for q in k.report.quadrature)


def test_kinked_compositions_use_the_polar_rule_to_full_precision():
    """erf(relu(h)) on both sides: kinks at u = 0 and v = 0; the polar rule integrates each
    sector separately.  Reference: nested adaptive scipy quadrature split at the kinks."""
    import math
    from scipy import integrate
    p = tp.Program("kinks")
    xi = p.data("xi")
    h = p.input_layer("U", 1.2) @ xi
    p.output(tp.erf(tp.relu(h)))
    x = np.array([[1.0, 0.5, -0.3], [0.2, -1.1, 0.7]])
    k = tp.kernels(p, x, get=("nngp",))
    assert [q["rule"] for q in k.report.quadrature] == ["polar"]
    g = 1.44 * gram(x, x)
    q1, q2, c = g[0, 0], g[1, 1], g[0, 1]
    rho = c / math.sqrt(q1 * q2)
    tau = math.sqrt(q2 * (1 - rho * rho))
    F = lambda t: math.erf(max(t, 0.0))  # noqa: E731

    def inner(u):  # E[F(v) | u]: only v > 0 contributes
        m = math.sqrt(q2 / q1) * rho * u
        w = lambda v: F(v) * math.exp(-(v - m) ** 2 / (2 * tau * tau)) / math.sqrt(2 * math.pi * tau * tau)  # noqa
        return integrate.quad(w, 0.0, m + 40 * tau if m > 0 else 40 * tau, epsabs=1e-15, limit=200)[0]

    ref = integrate.quad(lambda u: F(u) * inner(u) * math.exp(-u * u / (2 * q1)) / math.sqrt(2 * math.pi * q1),
                         0.0, 40 * math.sqrt(q1), epsabs=1e-15, limit=200)[0]
    assert abs(k.nngp[0, 1] - ref) <= 1e-11
