"""Property tests over random tensor programs (the generator is tests/strategies.py).

Whatever the program, its infinite-width kernels obey identities that do not depend on
what the program computes:

- symmetry: K(X, X) = K(X, X)ᵀ, for the NNGP and the NTK;
- positive semi-definiteness: both are covariance (Gram) matrices;
- NTK − lr_v·(NNGP − σ_o²) − lr_o·σ_o² ⪰ 0: the NTK is a sum of PSD kernels, one per
  parameter, and the readout's two are exactly lr_v·σ_v²·E[x x'] = lr_v·(NNGP − σ_o²) and
  lr_o·σ_o² (so with every lr = 1, NTK − NNGP ⪰ 0; the diagonal version is
  diag(NTK) ≥ lr_v·(diag(NNGP) − σ_o²) + lr_o·σ_o², without a further factor σ_v²);
- block consistency: K(X1, X2) is the (X1, X2) block of K([X1; X2]);
- permutation equivariance (ragged sequences): K(πX) = P K(X) Pᵀ.

Relative errors are max |difference| / max |entry of K([X1; X2])| (the scale of the
kernel: a block can be ~0 exactly, e.g. between sequences of length 1 and 2 whose
readouts are uncorrelated).

Tolerances follow what the evaluator had to integrate numerically (``K.report``):

- "closed": every expectation in closed form: rounding only (1e-12 symmetry, 1e-10 else);
- "adaptive": 1D/2D quadrature (tanh, compositions over one Gaussian, products):
  1e-8.  Entries (i, j) and (j, i), or an entry of K(X1, X2) and of K([X1; X2]), are
  separate quadratures (the 2D rule integrates its two Gaussians asymmetrically, and the
  adaptive rule picks its level for the whole batch), refined until two levels agree
  to quad_tol = 1e-11; measured ≤ 3e-14 over thousands of programs;
- "hermite": 3 or 4 Gaussians (smooth compositions over two atoms, correlated products)
  use a fixed 12-node tensor Gauss-Hermite rule.  Symmetry, PSD and permutations hold
  there at 1e-8 too, but block consistency only within the rule's own error estimate:
  see the known-issue tests at the end (the fixed rule is silently inaccurate, by up to
  7% on a kernel entry, and the symmetric call takes its diagonal moments from it while
  the two-set call integrates them adaptively).

Programs whose kernels need Monte Carlo (rare with this generator) are discarded:
estimates with standard error ~1e-3 cannot satisfy identities at 1e-10.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import tpkernel as tp
from strategies import build, inputs, recipes, sequences

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SYM_TOL = {"closed": 1e-12, "adaptive": 1e-8, "hermite": 1e-8}
TOL = {"closed": 1e-10, "adaptive": 1e-8, "hermite": 1e-8}
PSD_TOL = 1e-10

seeds = st.integers(0, 2**32 - 1)
n1s = st.integers(3, 4)
n2s = st.integers(2, 3)


# -- helpers --------------------------------------------------------------------------

def kernels(program, x1, x2=None, **kw) -> tp.Kernels:
    """tp.kernels at its default settings; programs needing Monte Carlo are discarded
    (with few samples: they are not used)."""
    K = tp.kernels(program, x1, x2, mc_samples=1000, **kw)
    if K.report.monte_carlo:
        event("discarded: Monte Carlo")
    assume(not K.report.monte_carlo)
    return K


def tier(*Ks: tp.Kernels) -> str:
    dims = [q["dim"] for K in Ks for q in K.report.quadrature]
    t = "closed" if not dims else "adaptive" if max(dims) <= 2 else "hermite"
    event(f"tier: {t}")
    return t


def error_estimate(*Ks: tp.Kernels) -> float:
    """The largest error estimate the evaluator reported (needs error_estimate=True for
    the fixed Gauss-Hermite rule)."""
    return max((q["error"] or 0.0 for K in Ks for q in K.report.quadrature), default=0.0)


def data(recipe, seed: int, n: int):
    return inputs(seed, n) if recipe.T is None else sequences(seed, n, recipe.T)


def split(x, n1: int):
    return x[:n1], x[n1:]


def concat(x1, x2):
    return list(x1) + list(x2) if isinstance(x1, list) else np.concatenate([x1, x2])


def rel(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    return float(np.max(np.abs(a - b)) / scale)


def scale_of(k: np.ndarray) -> float:
    s = float(np.max(np.abs(k)))
    assert np.isfinite(k).all()
    assert s > 0, "a kernel that is identically zero"
    return s


def check_symmetric_psd(K: tp.Kernels, t: str) -> None:
    for name in ("nngp", "ntk"):
        k = getattr(K, name)
        s = scale_of(k)
        assert rel(k, k.T, s) <= SYM_TOL[t], f"{name} not symmetric ({t}): {rel(k, k.T, s):.2e}"
        lam = np.linalg.eigvalsh((k + k.T) / 2)
        assert lam.min() >= -PSD_TOL * np.abs(lam).max(), f"{name} not PSD: eigenvalues {lam}"


def check_ntk_dominates_readout(K: tp.Kernels, recipe) -> None:
    """NTK − lr_v (NNGP − σ_o²) − lr_o σ_o² is a sum of PSD kernels (every other parameter)."""
    b2 = 0.0 if recipe.b_std is None else recipe.b_std ** 2
    rest = K.ntk - recipe.v_lr * (K.nngp - b2) - b2  # readout-bias lr is 1
    lam = np.linalg.eigvalsh((rest + rest.T) / 2)
    top = np.abs(np.linalg.eigvalsh((K.ntk + K.ntk.T) / 2)).max()
    assert lam.min() >= -PSD_TOL * top, f"NTK − readout terms not PSD: eigenvalues {lam}"
    assert np.all(np.diag(K.ntk) >= recipe.v_lr * (np.diag(K.nngp) - b2) + b2 - PSD_TOL * top)


def check_block(K: tp.Kernels, K12: tp.Kernels, n1: int) -> None:
    t = tier(K, K12)
    tol = TOL[t] if t != "hermite" else max(TOL[t], error_estimate(K, K12))
    for name in ("nngp", "ntk"):
        k, k12 = getattr(K, name), getattr(K12, name)
        assert k12.shape == (n1, k.shape[0] - n1)
        err = rel(k12, k[:n1, n1:], scale_of(k))
        assert err <= tol, f"{name}: K(X1, X2) differs from the block of K([X1; X2]) by {err:.2e} ({t})"


# -- feed-forward programs ------------------------------------------------------------

@PROPERTY
@given(recipes(), seeds, n1s)
def test_symmetric_and_psd(recipe, seed, n):
    K = kernels(build(recipe), data(recipe, seed, n))
    check_symmetric_psd(K, tier(K))


@PROPERTY
@given(recipes(), seeds, n1s)
def test_ntk_dominates_readout_contribution(recipe, seed, n):
    check_ntk_dominates_readout(kernels(build(recipe), data(recipe, seed, n)), recipe)


@PROPERTY
@given(recipes(), seeds, n1s, n2s)
def test_block_consistency(recipe, seed, n1, n2):
    p = build(recipe)
    x1, x2 = split(data(recipe, seed, n1 + n2), n1)
    K = kernels(p, concat(x1, x2), error_estimate=True)
    K12 = kernels(p, x1, x2, error_estimate=True)
    check_block(K, K12, n1)


# -- sequence programs (ragged lengths) ---------------------------------------------

@PROPERTY
@given(recipes(sequence=True), seeds, n1s, n2s)
def test_sequences_symmetric_psd_and_ntk_dominates_readout(recipe, seed, n1, n2):
    K = kernels(build(recipe), data(recipe, seed, n1 + n2))
    check_symmetric_psd(K, tier(K))
    check_ntk_dominates_readout(K, recipe)


@PROPERTY
@given(recipes(sequence=True), seeds, n1s, n2s)
def test_sequences_block_consistency(recipe, seed, n1, n2):
    p = build(recipe)
    x1, x2 = split(data(recipe, seed, n1 + n2), n1)
    K = kernels(p, concat(x1, x2), error_estimate=True)
    K12 = kernels(p, x1, x2, error_estimate=True)
    check_block(K, K12, n1)


@PROPERTY
@given(recipes(sequence=True), seeds, n1s, n2s, st.randoms(use_true_random=False))
def test_sequences_permutation_equivariance(recipe, seed, n1, n2, rnd):
    p = build(recipe)
    x = data(recipe, seed, n1 + n2)
    assert len({len(s) for s in x}) > 1  # ragged
    perm = list(range(len(x)))
    rnd.shuffle(perm)
    K = kernels(p, x)
    Kp = kernels(p, [x[i] for i in perm])
    t = tier(K, Kp)
    for name in ("nngp", "ntk"):
        k, kp = getattr(K, name), getattr(Kp, name)
        err = rel(kp, k[np.ix_(perm, perm)], scale_of(k))
        assert err <= TOL[t], f"{name}: K(πX) differs from P K(X) Pᵀ by {err:.2e} ({t})"


# -- known issues found by the properties above (strict xfail: they fail today) ------------

def _composite_program(outer, inner):
    """outer(inner(U ξ + b)): a composition over two Gaussian atoms, so E[x x'] is an
    integral over four Gaussians (Gauss-Hermite, nd_deg = 12 nodes per dimension)."""
    p = tp.Program("composite")
    xi = p.data("xi")
    h = p.input_layer("U", std=1.5) @ xi + p.bias("b", std=1.0)  # h ~ N(0, 0.75 |ξ|² + 1)
    p.output(outer(inner(h)))
    return p


@pytest.mark.xfail(strict=True, reason="known issue: integrals over 3-4 Gaussians use a fixed 12-node "
                   "Gauss-Hermite rule, silently inaccurate for large variances (no error estimate by default)")
def test_known_issue_gauss_hermite_accuracy():
    from scipy.integrate import quad
    p = _composite_program(tp.sin, tp.cos)
    x = np.array([[2.0, 2.0, -2.0]])  # |ξ|² = 12: h ~ N(0, 10)
    q = 0.75 * 12 + 1.0
    ref = quad(lambda t: np.sin(np.cos(np.sqrt(q) * t)) ** 2 * np.exp(-t * t / 2) / np.sqrt(2 * np.pi),
               -40, 40, limit=2000, epsabs=1e-13)[0]  # = 0.388055; tp gives 0.359832
    assert tp.kernels(p, x).nngp[0, 0] == pytest.approx(ref, rel=1e-8)


@pytest.mark.xfail(strict=True, reason="known issue: K(X) takes diagonal moments of a composite vector from "
                   "the 4-Gaussian Gauss-Hermite rule, K(X1, X2) from the adaptive 2-Gaussian rule")
def test_known_issue_block_consistency_over_four_gaussians():
    p = tp.Program("diag")
    xi = p.data("xi")
    x = tp.erf(tp.sin(p.input_layer("U", std=1.2) @ xi + p.bias("b", std=0.8)))
    p.output(tp.erf(p.matrix("W", std=1.3) @ x))
    X = np.random.default_rng(0).standard_normal((4, 3))
    K, K12 = tp.kernels(p, X), tp.kernels(p, X[:2], X[2:])
    for name in ("nngp", "ntk"):  # relative difference 3.9e-4 (nngp), 4.1e-4 (ntk)
        k = getattr(K, name)
        assert rel(getattr(K12, name), k[:2, 2:], scale_of(k)) <= 1e-8


@pytest.mark.xfail(strict=True, raises=RuntimeWarning,
                   reason="known issue: dtanh = 1/cosh(x)**2 overflows for |x| > 355 (a RuntimeWarning, "
                   "which this project's pytest configuration turns into an error)")
def test_known_issue_dtanh_overflow():
    p = tp.Program("wide_tanh")
    xi = p.data("xi")
    p.output(tp.tanh(p.input_layer("U", std=100.0) @ xi))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        K = tp.kernels(p, np.random.default_rng(0).standard_normal((2, 3)))
    assert np.isfinite(K.ntk).all()
