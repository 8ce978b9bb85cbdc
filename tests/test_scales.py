"""Kernels across input scales 1e-150 … 1e150, collinear and duplicate inputs, both engines
(issue 13, items 3 and 4): relative error <= 1e-12 against an independent reference, or a
specific error where the kernel is not representable.

The reference (:func:`reference_mlp`) is neural-tangents' Dense(ntk)/φ recursion written out
here, entry by entry, in mpmath at 750 significant digits — enough that the textbook forms
(arccos of c/√(q1q2), arcsin of 2c/√((1+2q1)(1+2q2)), the determinant (1+2q1)(1+2q2) − 4c² and
the Tsuchida et al. GELU formula) are exact to double precision even where they cancel
catastrophically in float64 (q ~ 1e300 needs ~600 digits): it shares no code and no
rewriting with tpkernel's scale-safe forms.  tanh has no closed form: its reference is a 2D
trapezoid rule in float64 (step 0.05 on [-12, 12]², ~1e-15 for these analytic integrands,
checked against mpmath's nested quadrature in ``test_tanh_reference_rule``), and tpkernel
integrates it adaptively to 1e-11 (absolute, per expectation): we compare tanh at 1e-10 and
say so.

Error measure: |K_ij − R_ij| / √(R_ii R_jj), the entry against the natural scale of its row
and column (a PSD kernel has |R_ij| <= √(R_ii R_jj)); an entry that is 0 by cancellation has no
relative error to speak of.
"""

from __future__ import annotations

import math
import warnings

import mpmath as mp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tpkernel as tp
from tpkernel.limit import fused

DPS = 750
ENGINES = ["reference", "numba", "numpy"]
CLOSED = ["relu", "erf", "gelu"]
#: the engines that carry s = √(q q' − C²) through relu layers (docs/limit.md, "Scales")
CARRY = ("reference", "numba", "numpy")


# -- the independent reference ---------------------------------------------------------

def _mp_pair(act: str, q1, q2, c):
    """(E[φ(u)φ(v)], E[φ'(u)φ'(v)]) for (u, v) ~ N(0, [[q1, c], [c, q2]]), textbook forms."""
    pi = mp.pi
    if act == "relu":
        if q1 == 0 or q2 == 0:
            return mp.mpf(0), mp.mpf(0)
        rho = c / mp.sqrt(q1 * q2)
        rho = max(min(rho, mp.mpf(1)), mp.mpf(-1))
        th = mp.acos(rho)
        return mp.sqrt(q1 * q2) * (mp.sin(th) + (pi - th) * mp.cos(th)) / (2 * pi), (pi - th) / (2 * pi)
    if act == "erf":
        P = (1 + 2 * q1) * (1 + 2 * q2)
        return 2 / pi * mp.asin(2 * c / mp.sqrt(P)), 4 / pi / mp.sqrt(P - 4 * c * c)
    if act == "gelu":  # Tsuchida, Pearce, van der Heide, Roosta, Gallagher (2020)
        pp1 = (q1 + 1) * (q2 + 1)
        d2 = pp1 - c * c
        d = mp.sqrt(d2)
        ang = mp.atan2(c, d)
        k = c / 4 + ((c * c + q1 * q2 * d2) / (pp1 * d) + c * ang) / (2 * pi)
        kd = mp.mpf(1) / 4 + ang / (2 * pi) + c / d / (2 * pi) * (1 / d2 + (1 - q1 * q2) / pp1 + 1)
        return k, kd
    raise ValueError(act)


_T = np.arange(-12.0, 12.0 + 1e-9, 0.05)
_W = np.exp(-_T ** 2 / 2) * 0.05 / math.sqrt(2 * math.pi)


def _tanh_pairs(q1: np.ndarray, q2: np.ndarray, c: np.ndarray):
    """E[tanh tanh] and E[tanh' tanh'] by the fine 2D trapezoid rule (float64, vectorised)."""
    r1, r2 = np.sqrt(q1), np.sqrt(q2)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.clip(np.where(r1 * r2 > 0, c / (r1 * r2), 0.0), -1, 1)
    sr = np.sqrt(1 - rho * rho)
    u = r1[..., None, None] * _T[:, None]
    v = r2[..., None, None] * (rho[..., None, None] * _T[:, None] + sr[..., None, None] * _T[None, :])
    w = _W[:, None] * _W[None, :]
    fu, fv = np.tanh(u), np.tanh(v)
    return (np.sum(w * fu * fv, axis=(-2, -1)),
            np.sum(w * (1 - fu * fu) * (1 - fv * fv), axis=(-2, -1)))


_CACHE: dict = {}


def reference_mlp(act: str, depth: int, w_std: float, b_std: float | None, X1: np.ndarray, X2: np.ndarray):
    """:func:`reference_mlp_uncached`, memoised (the engines share one reference)."""
    key = (act, depth, w_std, b_std, X1.shape, X1.tobytes(), X2.shape, X2.tobytes())
    if key not in _CACHE:
        _CACHE[key] = reference_mlp_uncached(act, depth, w_std, b_std, X1, X2)
    return _CACHE[key]


def reference_mlp_uncached(act: str, depth: int, w_std: float, b_std: float | None, X1: np.ndarray,
                           X2: np.ndarray):
    """(nngp, ntk, diag1, diag2): neural-tangents' recursion for ``tp.examples.mlp(depth, act,
    w_std, b_std)`` (readout Dense with the same stds), every parameter's learning rate 1:
    C_1 = w²⟨x, x'⟩/d + b², Θ_1 = C_1; C_{l+1} = w² E[φφ'](C_l) + b²,
    Θ_{l+1} = C_{l+1} + w² E[φ'φ'](C_l) Θ_l; NNGP = C_{L+1}, NTK = Θ_{L+1}.  diag1/diag2: the
    NNGP and NTK of each example with itself (the normalisation of the error measure)."""
    with mp.workdps(DPS):
        w2 = mp.mpf(w_std) ** 2
        b2 = mp.mpf(b_std) ** 2 if b_std is not None else mp.mpf(0)
        d = X1.shape[1]
        A = [[mp.mpf(float(v)) for v in row] for row in X1]
        B = [[mp.mpf(float(v)) for v in row] for row in X2]
        dot = lambda x, y: mp.fsum(p * q for p, q in zip(x, y)) / d  # noqa: E731
        n1, n2 = len(A), len(B)
        C = [[w2 * dot(A[i], B[j]) + b2 for j in range(n2)] for i in range(n1)]
        Q1 = [w2 * dot(a, a) + b2 for a in A]
        Q2 = [w2 * dot(b, b) + b2 for b in B]
        T, T1, T2 = [row[:] for row in C], Q1[:], Q2[:]
        for _ in range(depth):
            if act == "tanh":
                f = np.vectorize(float)
                q1m, q2m, cm = f(np.array(Q1))[:, None], f(np.array(Q2))[None, :], f(np.array(C, dtype=object))
                K, KD = _tanh_pairs(np.broadcast_to(q1m, cm.shape), np.broadcast_to(q2m, cm.shape), cm)
                k1, kd1 = _tanh_pairs(f(np.array(Q1)), f(np.array(Q1)), f(np.array(Q1)))
                k2, kd2 = _tanh_pairs(f(np.array(Q2)), f(np.array(Q2)), f(np.array(Q2)))
                pair = lambda i, j: (mp.mpf(K[i, j]), mp.mpf(KD[i, j]))  # noqa: E731
                own1 = [(mp.mpf(k1[i]), mp.mpf(kd1[i])) for i in range(n1)]
                own2 = [(mp.mpf(k2[j]), mp.mpf(kd2[j])) for j in range(n2)]
            else:
                pair = lambda i, j: _mp_pair(act, Q1[i], Q2[j], C[i][j])  # noqa: E731
                own1 = [_mp_pair(act, q, q, q) for q in Q1]
                own2 = [_mp_pair(act, q, q, q) for q in Q2]
            new = [[pair(i, j) for j in range(n2)] for i in range(n1)]
            C = [[w2 * new[i][j][0] + b2 for j in range(n2)] for i in range(n1)]
            T = [[C[i][j] + w2 * new[i][j][1] * T[i][j] for j in range(n2)] for i in range(n1)]
            T1 = [w2 * own1[i][0] + b2 + w2 * own1[i][1] * T1[i] for i in range(n1)]
            T2 = [w2 * own2[j][0] + b2 + w2 * own2[j][1] * T2[j] for j in range(n2)]
            Q1 = [w2 * own1[i][0] + b2 for i in range(n1)]
            Q2 = [w2 * own2[j][0] + b2 for j in range(n2)]
        out = lambda M: np.array([[float(v) for v in row] for row in M])  # noqa: E731
        vec = lambda v: np.array([float(x) for x in v])  # noqa: E731
        return out(C), out(T), (vec(Q1), vec(T1)), (vec(Q2), vec(T2))


def rel_err(K: np.ndarray, R: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> float:
    """max |K − R| / √(R_ii R_jj)."""
    scale = np.sqrt(np.abs(r1))[:, None] * np.sqrt(np.abs(r2))[None, :]
    return float(np.max(np.abs(K - R) / scale))


def run(engine: str, p, *xs, **kw):
    """tp.kernels by the general evaluator, or by the fused path with or without numba."""
    if engine == "reference":
        return tp.kernels(p, *xs, engine="reference", **kw)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(fused, "USE_NUMBA", engine == "numba")
        return tp.kernels(p, *xs, engine="fused", **kw)


def data(seed: int, n: int = 4, d: int = 3, collinear: bool = True) -> np.ndarray:
    """n random rows, then exactly collinear and duplicate ones: 3·x0, x1 again, −x1/2, 2·x0
    (x0 has entries k/64, so that 3·x0 is exact: a *rounded* multiple is not collinear, and at
    large scales the erf and GELU kernels resolve its ~1e-16 angle; see docs/limit.md).
    ``collinear=False``: duplicates only (x1 and x0 again), for biased networks of depth >= 2,
    where collinear inputs of different norms are a known gap (``test_known_gap_...``)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x[0] = rng.integers(-200, 200, d) / 64
    if not collinear:
        return np.vstack([x, x[1], x[0]])
    return np.vstack([x, 3 * x[0], x[1], -0.5 * x[1], 2 * x[0]])


def partner(X: np.ndarray, collinear: bool = True) -> np.ndarray:
    """A second data set: rows of X again, scaled by 1/4 and −1 (collinear across the two sides),
    or (``collinear=False``) rows of X again in another order, and a fresh row."""
    if not collinear:
        return np.vstack([X[::-1], X[:1] * 0 + X[-1] + X[1]])
    return np.vstack([X[4:], 0.25 * X[:2], -X[2:4]])


def scale(exponent: float) -> float:
    """10^exponent rounded to a power of two: an exact scaling keeps collinear rows collinear
    (x·1e100 rounds each entry, and then 3·x0·1e100 and x0·1e100 are ~1e-16 rad apart, an
    angle the erf NTK at q ~ 1e200 does resolve: see docs/limit.md, "Scales")."""
    return 2.0 ** round(exponent * math.log2(10))


def with_collinear(act: str, depth: int, b_std, engine: str) -> bool:
    """Collinear rows of different norms are in the data unless they hit the known gap: from
    the second layer on they are *nearly* collinear (a bias, or GELU's non-homogeneity, turn
    ρ = 1 into 1 − ρ ≪ 1), and √(q q' − C²) from rounded covariances is √ε-conditioned.  The
    engines carry s through relu layers (:data:`CARRY`; docs/limit.md, "Scales")."""
    return depth == 1 or (b_std is None and act != "gelu") or (engine in CARRY and act == "relu")


def gap(act: str, depth: int, b_std, exponent: float, engine: str) -> bool:
    """The former gap of an engine that does not carry s (none now: :data:`CARRY`): ReLU nets
    with a bias, from the second layer on, at input scales where the bias dominates (every pair
    then has 1 − ρ ~ |ξ|²/β, down to ~1e-16, and √(q q' − C²) from rounded covariances is
    √ε-conditioned)."""
    return engine not in CARRY and act == "relu" and depth >= 2 and b_std is not None and -13 <= exponent <= -3


def check(engine: str, act: str, depth: int, w_std: float, b_std, X: np.ndarray, Y: np.ndarray, tol: float):
    """Implicit x2, explicit x2 = X and x2 = Y against the reference; returns the largest error."""
    p = tp.examples.mlp(depth, act, w_std=w_std, b_std=b_std)
    worst = 0.0
    for x2 in (None, X, Y):
        other = X if x2 is None else x2
        nngp, ntk, (q1, t1), (q2, t2) = reference_mlp(act, depth, w_std, b_std, X, other)
        k = run(engine, p, X, x2)
        e = max(rel_err(k.nngp, nngp, q1, q2), rel_err(k.ntk, ntk, t1, t2))
        assert e <= tol, (engine, act, depth, w_std, b_std, "implicit" if x2 is None else "explicit", e)
        worst = max(worst, e)
    return worst


# -- the property tests ----------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(act=st.sampled_from(CLOSED), exponent=st.floats(-150, 150), depth=st.integers(1, 3),
       w_std=st.sampled_from([1.0, 1.5, 2 ** 0.5]), b_std=st.sampled_from([None, 0.1, 1.0]),
       seed=st.integers(0, 2 ** 16))
def test_closed_forms_at_every_scale(engine, act, exponent, depth, w_std, b_std, seed):
    """relu, erf, gelu: 1e-12 against mpmath over scales 1e-150 … 1e150, with collinear and
    duplicate rows, implicit and explicit x2, every engine."""
    collinear = with_collinear(act, depth, b_std, engine)
    if gap(act, depth, b_std, exponent, engine):
        exponent = -exponent  # (the known gap below: the mirror scale is covered)
    X = data(seed, collinear=collinear) * scale(exponent)
    check(engine, act, depth, w_std, b_std, X, partner(X, collinear), 1e-12)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("act", CLOSED)
@pytest.mark.parametrize("exponent", [-150, -90, -80, 0, 100, 150])
def test_closed_forms_at_the_issue_scales(engine, act, exponent):
    """The scales of the issue (1e-80: 2e-4 off, 1e-90 and below: 100 % off, 1e100: refused),
    deterministic, bias-free (the kernel then depends on the inputs' scale throughout)."""
    X = data(7) * scale(exponent)
    check(engine, act, 3, 2 ** 0.5, None, X, X[::-1].copy(), 1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_relu_is_exactly_homogeneous(engine):
    """A bias-free ReLU net: K(2^k ξ, 2^k ξ') = 4^k K(ξ, ξ') bit for bit for k in ±490 (every
    operation is equivariant under exact scalings by powers of two)."""
    p = tp.examples.mlp(4, "relu", w_std=1.3, b_std=None)
    X = data(3)
    Y = X[::-1] * 0.75
    for explicit in (False, True):
        base = run(engine, p, X, Y if explicit else None)
        for k in (-490, -300, -3, 5, 250, 490):
            got = run(engine, p, X * 2.0 ** k, Y * 2.0 ** k if explicit else None)
            assert np.array_equal(got.nngp, base.nngp * 4.0 ** k), (k, explicit)
            assert np.array_equal(got.ntk, base.ntk * 4.0 ** k), (k, explicit)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("exponent", [-150, pytest.param(-60, marks=pytest.mark.slow),
                                      pytest.param(-10, marks=pytest.mark.slow), -1])
def test_tanh_across_scales(engine, exponent):
    """tanh by adaptive quadrature (tolerance 1e-11 per expectation) against the fine
    trapezoid reference, compared at 1e-10, from 1e-150 to 0.1 (pre-activation variances up to
    ~1; beyond, see the next test)."""
    X = data(11, n=3) * scale(exponent)
    for b_std in (None, 0.2):
        check(engine, "tanh", 2, 1.5, b_std, X, X[::-1].copy(), 1e-10)


@pytest.mark.parametrize("engine", ENGINES)
def test_tanh_at_large_scales_is_not_silent(engine):
    """At pre-activation variances ~1e4 and above tanh saturates within one quadrature step
    (tanh' has width 1/√q): the adaptive rule does not converge, and says so."""
    X = data(11, n=3) * 100.0
    with pytest.warns(tp.AccuracyWarning, match="did not reach the tolerance"):
        run(engine, tp.examples.mlp(2, "tanh"), X)


def test_tanh_reference_rule():
    """The float64 trapezoid reference of tanh against mpmath's nested quadrature (one point:
    it takes ~30 s at 20 digits)."""
    pytest.importorskip("mpmath")
    q1, q2, c = 1.3, 0.7, 0.4
    k, kd = _tanh_pairs(np.array(q1), np.array(q2), np.array(c))
    # mpmath, nested mp.quad at 20 digits (measured once; see the module docstring)
    assert abs(k - 0.15091976410914173451) <= 1e-13  # (measured: 4e-15 and 1.1e-14, rounding of the sum)
    assert abs(kd - 0.38526161055901840573) <= 1e-13


def test_gelu_reference_formula():
    """The GELU closed form of the reference against the float64 trapezoid rule of the
    definition E[u Φ(u) v Φ(v)] (and of its derivative), at a few covariances."""
    from scipy.special import ndtr
    for q1, q2, c in ((1.3, 0.7, 0.4), (0.2, 3.0, -0.7), (2.0, 2.0, 1.999)):
        r1, r2 = math.sqrt(q1), math.sqrt(q2)
        rho = c / (r1 * r2)
        u = r1 * _T[:, None]
        v = r2 * (rho * _T[:, None] + math.sqrt(1 - rho * rho) * _T[None, :])
        w = _W[:, None] * _W[None, :]
        g = lambda x: x * ndtr(x)  # noqa: E731
        dg = lambda x: ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        with mp.workdps(50):
            k, kd = _mp_pair("gelu", mp.mpf(q1), mp.mpf(q2), mp.mpf(c))
        assert abs(np.sum(w * g(u) * g(v)) - float(k)) <= 1e-13 * abs(float(k))  # (measured <= 3e-14)
        assert abs(np.sum(w * dg(u) * dg(v)) - float(kd)) <= 1e-13 * abs(float(kd))


# -- where the kernel is not representable --------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("act", ["relu", "erf", "gelu", "tanh"])
def test_inputs_beyond_float64_are_refused(engine, act):
    """|ξ|² beyond float64 (inputs ~1e155 and up): the Gram matrix is not representable; a
    NumericalError names the data and the example, for implicit and explicit x2."""
    X = data(5, n=3) * 1e160
    for x2 in (None, X):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.raises(tp.NumericalError, match=r"data 'xi': example 0 has squared norm .* not representable"):
                run(engine, tp.examples.mlp(2, act), X, x2)


@pytest.mark.parametrize("engine", ENGINES)
def test_overflow_inside_the_network_names_the_node(engine):
    """Inputs 1e100 are fine, but with weight variance 1e100 the second pre-activation's
    variance (~1e400) is not: the error names it."""
    X = data(5, n=3) * 1e100
    p = tp.examples.mlp(3, "relu", w_std=1e50, b_std=None)
    h2 = p["x2"].args[0]  # the pre-activation of the second layer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for x2 in (None, X):
            with pytest.raises(tp.NumericalError, match=rf"variance at '{h2}' overflows float64"):
                run(engine, p, X, x2)


@pytest.mark.parametrize("engine", ENGINES)
def test_subnormal_inputs_warn(engine):
    X = data(5, n=3) * 1e-160
    with pytest.warns(tp.AccuracyWarning, match="subnormal"):
        run(engine, tp.examples.mlp(2, "relu", b_std=None), X)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(act=st.sampled_from(CLOSED), exponent=st.floats(-150, 150), depth=st.integers(1, 6),
       w_std=st.sampled_from([1.0, 1.5, 2 ** 0.5]), b_std=st.sampled_from([None, 0.05, 0.1, 1.0]),
       seed=st.integers(0, 2 ** 16), d=st.integers(1, 40))
def test_closed_forms_at_every_scale_thorough(engine, act, exponent, depth, w_std, b_std, seed, d):
    collinear = with_collinear(act, depth, b_std, engine)
    if gap(act, depth, b_std, exponent, engine):
        exponent = -exponent
    X = data(seed, d=d, collinear=collinear) * scale(exponent)
    check(engine, act, depth, w_std, b_std, X, partner(X, collinear), 1e-12)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("act", CLOSED)
@pytest.mark.parametrize("exponent", [-150, 0, 5, 10, 150])
def test_collinear_inputs_with_a_bias_one_layer(engine, act, exponent):
    """Collinear inputs of different norms (ξ, 3ξ, −ξ/2, 2ξ) with a bias: 1 − ρ ≈ 2β/(9q) is
    resolved from the Gram structure on the first layer (was 1.5e-2 off for erf at 1e10)."""
    X = data(7) * scale(exponent)
    check(engine, act, 1, 2 ** 0.5, 0.1, X, partner(X), 1e-12)




@pytest.mark.parametrize("engine", ENGINES)
def test_collinear_inputs_with_a_bias_two_layers(engine):
    """Collinear inputs of different norms with a bias, relu, depth 2: the second layer's s comes
    from the first's carried through the relu map (was 5e-8 off at inputs ~1e5)."""
    X = data(7) * scale(5)
    check(engine, "relu", 2, 2 ** 0.5, 0.1, X, partner(X), 1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_small_inputs_with_a_bias(engine):
    """ReLU nets with a bias, inputs small against the bias: every pair has 1 − ρ ~ |ξ|²/β; the
    step kernel's angle from rounded covariances was √ε-conditioned (1e-9 off at inputs 1e-9)."""
    X = data(0, collinear=False) * scale(-9)
    check(engine, "relu", 3, 1.0, 0.1, X, X[::-1].copy(), 1e-12)


@pytest.mark.xfail(strict=True, reason="known gap: GELU is not homogeneous, so collinear inputs of "
                   "different norms are nearly (not exactly) collinear after the first layer, and "
                   "the deeper layers' √(q q' − C²) from rounded covariances is off (measured 9e-11 "
                   "at inputs ~1e5, depth 3, no bias)")
@pytest.mark.parametrize("engine", ENGINES)
def test_known_gap_gelu_collinear_inputs_deeper(engine):
    X = data(205) * scale(5)
    check(engine, "gelu", 3, 2 ** 0.5, None, X, partner(X), 1e-12)


def test_uncarried_nearly_collinear_relu_pair_warns():
    """A relu pair whose s the rules cannot carry (a residual connection h2 = W x1 + h1 has two
    main terms) takes s from rounded covariances: nearly collinear (θ ~ 1e-6), its step kernel is
    ~ε·n/s off, and an AccuracyWarning says so (reference engine); not nearly collinear, silence."""
    p = tp.Program("res")
    x = p.data("xi")
    U, W = p.input_layer("U"), p.matrix("W")
    h1 = U @ x
    p.output(tp.relu(W @ tp.relu(h1) + h1))
    X = np.array([[1.0, 0.0, 0.0], [1.0, 1e-6, 0.0]])
    with pytest.warns(tp.AccuracyWarning, match="nearly collinear"):
        tp.kernels(p, X, X[::-1].copy(), engine="reference")
    tp.kernels(p, X + np.eye(2, 3), X[::-1] + 0.5, engine="reference")  # (warnings are errors here)
