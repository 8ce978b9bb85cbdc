"""Property tests over random tensor programs (the generator is tests/strategies.py).

Whatever the program, its infinite-width kernels obey identities that do not depend on
what it computes:

- symmetry: K(X, X) = K(X, X)ᵀ, for the NNGP and the NTK;
- positive semi-definiteness: both are Gram matrices;
- NTK − lr_v·(NNGP − σ_o²) − σ_o² ⪰ 0: the NTK is a sum of PSD kernels, one per parameter,
  and the readout's own two are lr_v·σ_v²·E[x x'] = lr_v·(NNGP − σ_o²) and lr_o·σ_o² (lr_o =
  1 here).  So with every lr = 1, NTK − NNGP ⪰ 0; on the diagonal,
  diag(NTK) ≥ lr_v·(diag(NNGP) − σ_o²) + σ_o² (no further factor σ_v²: NNGP − σ_o² already
  carries it);
- block consistency: K(X1, X2) is the (X1, X2) block of K([X1; X2]);
- permutation equivariance (sequences of different lengths): K(πX) = P K(X) Pᵀ;
- engine agreement: fully connected chains take the fused fast path (engine="auto"), whose
  kernels must equal the general evaluator's (engine="reference").

Errors are relative to the scale of the kernel, max |K([X1; X2])| (a block can be ~0
exactly, e.g. between sequences of lengths 1 and 2 whose readouts are uncorrelated).

Tolerances follow what the evaluator had to integrate numerically (``K.report``):

- every expectation in closed form: rounding (1e-12 symmetry, 1e-10 otherwise, smallest
  eigenvalue >= -1e-10·max|eigenvalue|);
- quadrature (tanh, compositions, products): 1e-8, and at least 10x the largest error
  estimate the evaluator reports (for PSD: Weyl's bound n·that·max|K|).  Entries (i, j) and
  (j, i), or an entry of K(X1, X2) and of K([X1; X2]), are separate quadratures (the 2D rule
  treats its two Gaussians asymmetrically; the adaptive rule picks one level for a whole
  batch; the symmetric call takes diagonal moments from the off-diagonal rule), each
  refined until two levels agree to quad_tol = 1e-11: measured differences <= 3e-14.
- integrals over four Gaussians: ``test_four_gaussian_programs`` runs them with
  Gauss-Hermite (``nd_deg=12``, N1 = 3, N2 = 2), as the default adaptive rule (up to 33⁴
  nodes) takes ~20 s per kernel; Gauss-Hermite's block differences reach 1e-2, within its
  own error estimate (always computed for ``nd_deg``) but far beyond the adaptive rules'.
  Where 12 nodes are too coarse for a cross-covariance to be consistent with the variances
  (|ρ| > 1, a NumericalError naming the rule), the example is rejected.

Programs whose kernels need Monte Carlo (rare with this generator) are discarded:
estimates with standard error ~1e-3 cannot satisfy identities at 1e-10.  Issues found by
these properties and fixed since are pinned by the tests at the end.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, reject, settings
from hypothesis import strategies as st

import tpkernel as tp
from strategies import build, chains, inputs, recipes, sequences

#: 40 examples per property (~30 s for the file); TPKERNEL_PROPERTY_EXAMPLES=400 for a deeper run
PROPERTY = settings(max_examples=int(os.environ.get("TPKERNEL_PROPERTY_EXAMPLES", 40)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

SYM_TOL = {"closed": 1e-12, "quadrature": 1e-8}
TOL = {"closed": 1e-10, "quadrature": 1e-8}
PSD_TOL = 1e-10  # smallest eigenvalue >= -PSD_TOL * largest |eigenvalue|
ESTIMATE_FACTOR = 10

seeds = st.integers(0, 2**32 - 1)
n1s = st.integers(3, 4)
n2s = st.integers(2, 3)


# -- helpers --------------------------------------------------------------------------

def fused(program, **kw) -> bool:
    """Whether tp.kernels takes the fused fast path (a fully connected chain)."""
    try:
        from tpkernel.limit.fused import chain_of
    except ImportError:  # pragma: no cover - no fused path
        return False
    return kw.get("engine", "auto") != "reference" and chain_of(program, program.readouts[0]) is not None


def kernels(program, x1, x2=None, **kw) -> tp.Kernels:
    """tp.kernels with error estimates (they only cost extra for Gauss-Hermite); programs
    that need Monte Carlo are discarded (few samples: they are not used)."""
    with warnings.catch_warnings():  # Monte Carlo is discarded; error estimates set the tolerances
        warnings.simplefilter("ignore", tp.AccuracyWarning)
        K = tp.kernels(program, x1, x2, mc_samples=1000, error_estimate=True, **kw)
    if K.report.monte_carlo:
        event("discarded: Monte Carlo")
    assume(not K.report.monte_carlo)
    return K


def estimate(*Ks: tp.Kernels) -> float:
    """10x the largest error estimate the evaluator reports (0 for closed forms)."""
    errors = [q["error"] for K in Ks for q in K.report.quadrature if q.get("error") is not None]
    return ESTIMATE_FACTOR * max(errors, default=0.0)


def tolerance(table: dict, *Ks: tp.Kernels) -> float:
    """The tolerance for the kernels' tier, at least 10x the largest error estimate."""
    qs = [q for K in Ks for q in K.report.quadrature]
    dims = max((q["dim"] for q in qs), default=0)
    event("closed forms" if not qs else f"quadrature over up to {dims} Gaussian(s)")
    return table["closed"] if not qs else max(table["quadrature"], estimate(*Ks))


def data(recipe, seed: int, n: int):
    return inputs(seed, n) if recipe.T is None else sequences(seed, n, recipe.T)


def scale_of(k: np.ndarray) -> float:
    assert np.isfinite(k).all()
    s = float(np.max(np.abs(k)))
    assert s > 0, "an identically zero kernel"
    return s


def rel(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    return float(np.max(np.abs(a - b)) / scale)


def min_eig(k: np.ndarray) -> tuple[float, float]:
    lam = np.linalg.eigvalsh((k + k.T) / 2)
    return float(lam.min()), float(np.abs(lam).max())


# -- the properties -------------------------------------------------------------------

def psd_allowance(k: np.ndarray, K: tp.Kernels) -> float:
    """-PSD_TOL·max|λ|, widened by Weyl's bound n·e·max|K| for entry errors up to e·max|K|
    (e = 10x the evaluator's largest error estimate)."""
    return PSD_TOL * min_eig(k)[1] + len(k) * estimate(K) * scale_of(k)


def check_symmetric_psd(K: tp.Kernels) -> None:
    sym = tolerance(SYM_TOL, K)
    for name in ("nngp", "ntk"):
        k = getattr(K, name)
        s = scale_of(k)
        assert rel(k, k.T, s) <= sym, f"{name} is not symmetric: {rel(k, k.T, s):.2e} > {sym:.0e}"
        low, top = min_eig(k)
        assert low >= -psd_allowance(k, K), f"{name} is not PSD: smallest eigenvalue {low:.3e} (largest {top:.3e})"


def check_ntk_dominates_readout(K: tp.Kernels, recipe) -> None:
    """NTK − lr_v (NNGP − σ_o²) − σ_o² is the sum of the other parameters' PSD kernels."""
    b2 = 0.0 if recipe.b_std is None else recipe.b_std ** 2
    rest = K.ntk - recipe.v_lr * (K.nngp - b2) - b2
    allowed = psd_allowance(K.ntk, K)
    assert min_eig(rest)[0] >= -allowed, f"NTK minus the readout's terms is not PSD: {np.linalg.eigvalsh(rest)}"
    assert np.all(np.diag(rest) >= -allowed)


def check_block(K: tp.Kernels, K12: tp.Kernels, n1: int) -> None:
    tol = tolerance(TOL, K, K12)
    for name in ("nngp", "ntk"):
        k, k12 = getattr(K, name), getattr(K12, name)
        assert k12.shape == (n1, len(k) - n1)
        err = rel(k12, k[:n1, n1:], scale_of(k))
        assert err <= tol, f"{name}: K(X1, X2) differs from the block of K([X1; X2]) by {err:.2e} > {tol:.0e}"


def check_permutation(K: tp.Kernels, Kp: tp.Kernels, perm: list[int]) -> None:
    tol = tolerance(TOL, K, Kp)
    for name in ("nngp", "ntk"):
        k, kp = getattr(K, name), getattr(Kp, name)
        err = rel(kp, k[np.ix_(perm, perm)], scale_of(k))
        assert err <= tol, f"{name}: K(πX) differs from P K(X) Pᵀ by {err:.2e} > {tol:.0e}"


# -- feed-forward programs ------------------------------------------------------------

@PROPERTY
@given(recipes(), seeds, n1s)
def test_symmetric_psd_and_ntk_dominates_readout(recipe, seed, n):
    K = kernels(build(recipe), data(recipe, seed, n))
    check_symmetric_psd(K)
    check_ntk_dominates_readout(K, recipe)


@PROPERTY
@given(recipes(), seeds, n1s, n2s)
def test_block_consistency(recipe, seed, n1, n2):
    p = build(recipe)
    x = data(recipe, seed, n1 + n2)
    check_block(kernels(p, x), kernels(p, x[:n1], x[n1:]), n1)


@PROPERTY
@given(recipes(four_gaussians=True), seeds)
def test_four_gaussian_programs(recipe, seed):
    """Compositions and correlated products over two Gaussian leaves, e.g. gelu(tanh(h) + b):
    every property, with Gauss-Hermite over four Gaussians (``nd_deg=12``; N1 = 3, N2 = 2
    and at most 2 ops, for time)."""
    p = build(recipe)
    n1, x = 3, data(recipe, seed, 5)
    K = kernels(p, x, nd_deg=12)
    check_symmetric_psd(K)
    check_ntk_dominates_readout(K, recipe)
    try:
        K12 = kernels(p, x[:n1], x[n1:], nd_deg=12)
    except tp.NumericalError as e:  # 12 nodes too coarse for a cross-covariance: see the test below
        if "not positive semi-definite" not in str(e) or "hermite rule with 12 nodes" not in str(e):
            raise
        event("rejected: |ρ| > 1 between a coarse Gauss-Hermite cross-covariance and adaptive variances")
        reject()
    check_block(K, K12, n1)


@PROPERTY
@given(chains(), seeds, n1s, n2s)
def test_fused_engine_agrees_with_reference(recipe, seed, n1, n2):
    """Chains take the fused fast path (engine="auto"): the same kernels as the general
    evaluator, symmetric and cross, up to rounding (or the quadratures' error estimates)."""
    p = build(recipe)
    assert fused(p), "the chains() strategy should only draw fully connected chains"
    x = data(recipe, seed, n1 + n2)
    for args in ((x,), (x[:n1], x[n1:])):
        K, R = kernels(p, *args), kernels(p, *args, engine="reference")
        tol = tolerance(TOL, K, R)
        for name in ("nngp", "ntk"):
            k, r = getattr(K, name), getattr(R, name)
            err = rel(k, r, scale_of(r))
            assert err <= tol, f"{name}: fused and reference engines differ by {err:.2e} > {tol:.0e}"
        if len(args) == 1:
            check_symmetric_psd(K)
            check_ntk_dominates_readout(K, recipe)


# -- sequence programs of different lengths -------------------------------------------

@PROPERTY
@given(recipes(sequence=True), seeds, n1s, n2s)
def test_sequences_symmetric_psd_and_ntk_dominates_readout(recipe, seed, n1, n2):
    K = kernels(build(recipe), data(recipe, seed, n1 + n2))
    check_symmetric_psd(K)
    check_ntk_dominates_readout(K, recipe)


@PROPERTY
@given(recipes(sequence=True), seeds, n1s, n2s)
def test_sequences_block_consistency(recipe, seed, n1, n2):
    p = build(recipe)
    x = data(recipe, seed, n1 + n2)
    check_block(kernels(p, x), kernels(p, x[:n1], x[n1:]), n1)


@PROPERTY
@given(recipes(sequence=True), seeds, n1s, n2s, st.randoms(use_true_random=False))
def test_sequences_permutation_equivariance(recipe, seed, n1, n2, rnd):
    p = build(recipe)
    x = data(recipe, seed, n1 + n2)
    assert len({len(s) for s in x}) > 1  # ragged
    perm = list(range(len(x)))
    rnd.shuffle(perm)
    check_permutation(kernels(p, x), kernels(p, [x[i] for i in perm]), perm)


# -- issues these properties found, fixed

def _correlated_leaves() -> tp.Program:
    p = tp.Program("correlated_leaves")
    xi = p.data("xi")
    b = p.bias("b")
    x = tp.erf(tp.erf(p.input_layer("U", std=0.5) @ xi + b) + b)  # leaves h + b and b
    p.output(tp.tanh(p.matrix("W") @ x))
    return p


def test_fixed_gauss_hermite_is_checked_and_an_inconsistent_covariance_is_named():
    """erf(erf(h + b) + b): across two inputs, four Gaussians of rank 3, where tensor
    Gauss-Hermite converges slowly.  A fixed 12-node rule is 18% off; the cross-covariance it
    gives and the variances of the (adaptive, 2-Gaussian) diagonal then disagree beyond
    |ρ| = 1 at the next layer: a NumericalError naming the pair and the quadrature at fault.
    20 nodes give a number 9% off, with a warning whose estimate (2e-1) covers that error; the
    default adaptive rule stops at 129 nodes with an estimate of 2e-5 (also a warning)."""
    p, x = _correlated_leaves(), inputs(0, 5)
    with pytest.raises(tp.NumericalError, match=r"covariance of \(h\d+, h\d+\) is not positive semi-definite "
                                                r"\(\|ρ\| = 1\.05 > 1\).*hermite rule with 12 nodes"):
        tp.kernels(p, x[:3], x[3:], nd_deg=12)
    with pytest.warns(tp.AccuracyWarning, match="hermite rule with 20 nodes"):
        K20 = tp.kernels(p, x[:3], x[3:], nd_deg=20)
    with pytest.warns(tp.AccuracyWarning, match="trapezoid rule with 129 nodes"):
        K = tp.kernels(p, x[:3], x[3:])
    est, est20 = (max(q["error"] for q in k.report.quadrature) for k in (K, K20))
    assert est < 1e-4
    err20 = rel(K20.ntk, K.ntk, scale_of(K.ntk))
    assert 0.05 < err20 < est20


def _relu_gelu_chain() -> tp.Program:
    p = tp.Program("relu_gelu")
    xi = p.data("xi")
    x = tp.relu(p.input_layer("U") @ xi)
    p.output(tp.gelu(p.matrix("W") @ x))
    return p


def test_fused_band_path_after_a_compiled_layer_reads_no_stale_triangle():
    """A compiled layer (relu, erf) updates only the upper triangle; the NumPy band path of the
    next layer (gelu's pair rule) mirrors each diagonal block first, so it never evaluates a
    rule on stale numbers (that raised a RuntimeWarning: sqrt of a negative number)."""
    x = inputs(0, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        K = tp.kernels(_relu_gelu_chain(), x)
    R = tp.kernels(_relu_gelu_chain(), x, engine="reference")
    assert np.allclose(K.ntk, R.ntk, rtol=1e-12, atol=0)


@pytest.mark.parametrize("engine", ["auto", "reference"])
def test_report_warns_when_a_quadrature_is_not_converged(engine):
    """Both engines flag an adaptive quadrature that stops short of quad_tol (tanh of a
    pre-activation with std 100: error estimate ~1.6e-3), and only then."""
    p = tp.Program("wide_tanh")
    xi = p.data("xi")
    p.output(tp.tanh(p.input_layer("U", std=100.0) @ xi))
    x = np.random.default_rng(0).standard_normal((2, 3))
    with pytest.warns(tp.AccuracyWarning, match="did not reach the tolerance"):
        K = tp.kernels(p, x, engine=engine)
    assert max(q["error"] for q in K.report.quadrature) > 1e-11
    assert any(q["converged"] is False for q in K.report.quadrature)
    assert "WARNING" in K.report.summary()
    calm = tp.kernels(tp.examples.mlp(2, "tanh"), x, engine=engine)
    assert calm.report.quadrature and all(q["converged"] for q in calm.report.quadrature)
    assert "WARNING" not in calm.report.summary()


def test_tanh_derivative_does_not_overflow_for_huge_preactivations():
    """sech² is written as 4e^{-2|x|}/(1 + e^{-2|x|})², finite for every x (1/cosh² overflowed)."""
    p = tp.Program("wide_tanh")
    xi = p.data("xi")
    p.output(tp.tanh(p.input_layer("U", std=100.0) @ xi))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", tp.AccuracyWarning)  # the quadrature falls short: tested above
        K = tp.kernels(p, np.random.default_rng(0).standard_normal((2, 3)), engine="reference")
    assert np.isfinite(K.ntk).all()
