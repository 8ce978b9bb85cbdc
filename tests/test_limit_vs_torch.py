"""The infinite-width limit against finite-width networks, in PyTorch.

``tests/torch_interpreter.py`` runs a program as an actual width-n network (float64,
N(0, 1) weights drawn with ``torch.Generator``) and measures its empirical kernels:

  NNGP_hat(i, j) = σ_v² x̄(ξ_i)·x̄(ξ_j)/n (+ σ_o²),   NTK_hat = J Jᵀ,

J the autograd Jacobian of (f(ξ_1), …, f(ξ_N)) with respect to every trained N(0, 1)
variable (input layers, matrices, biases, readout vector and readout bias).  It shares
no code with ``tpkernel.limit`` or ``tpkernel.backward``.

By the Master Theorem both empirical kernels converge to ``tp.kernels(p, X)`` with
fluctuations of order n^(-1/2) (and a bias of order 1/n).  The average over S
independent seeds therefore differs from the limit by about c/√(nS) (root mean square),
where c = √n × the root-mean-square relative error of one network.  Measured (outside
the test, over 128-256 seeds at n = 256, 512 and 32 seeds at n = 1024) c lies between
1.1 and 4.3 for every program of ``CASES`` and between 0.7 and 3.5 for ``ZOO`` (NNGP
and NTK alike), and the 1/n bias is not detectable: with 256 seeds at n = 256 every
program's averaged error is within 1.6 standard errors of the limit.  The tolerance

  TOL_C / √(nS),  TOL_C = 10

is therefore at least 2.3× the root-mean-square error of the average for every program
(≥ 4× for most), while a wrong limit (independent branches, independent product
factors) is off by far more: see the ``*_discriminate*`` tests.

Widths: n = 1024 with S = 16 seeds (tolerance 0.078) for programs with n×n matrices,
n = 8192 with S = 16 (tolerance 0.028) for the one-hidden-layer nonlinearity zoo, and
n = 32768 with S = 32 (tolerance 0.0098; c ≈ 2) for the two-argument user nonlinearity,
whose default-settings limit is off by 2-3% (a tpkernel quadrature bug, marked xfail).
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_interpreter import FiniteNet, empirical_kernels, torch_nonlin

import tpkernel as tp

pytestmark = pytest.mark.torch

WIDTH = 1024
SEEDS = tuple(range(16))
TOL_C = 10.0


def tolerance(n: int = WIDTH, seeds=SEEDS) -> float:
    return TOL_C / math.sqrt(n * len(seeds))


def rel_err(K_hat: np.ndarray, K: np.ndarray) -> float:
    return float(np.linalg.norm(K_hat - K) / np.linalg.norm(K))


# ---------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------

def vectors(N: int = 4, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, d))


def sequences(lengths, d: int = 3, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((L, d)) for L in lengths]


# ---------------------------------------------------------------------------------
# hand-built programs (things neural-tangents' stax cannot express)
# ---------------------------------------------------------------------------------

def cos_quad(x):
    """A user nonlinearity (NumPy); its torch twin is USER_FNS["cos_quad"]."""
    return np.cos(x) + 0.1 * x ** 2


USER_FNS = {"cos_quad": lambda x: torch.cos(x) + 0.1 * x ** 2}


def _start(name: str):
    p = tp.Program(name)
    xi = p.data("xi")
    U = p.input_layer("U", std=1.0)
    W = p.matrix("W", std=1.2)
    b = p.bias("b", std=0.1)
    return p, U @ xi + b, W


def shared_matrix(tied: bool = True) -> tp.Program:
    """(a) two nonlinear layers in a row with ONE matrix used twice (weight sharing)."""
    p, h, W = _start("shared" if tied else "untied")
    W2 = W if tied else p.matrix("W2", std=1.2)
    x1 = tp.relu(h)
    x2 = tp.relu(W @ x1)
    x3 = tp.relu(W2 @ x2)
    p.output(x3, std=1.0, b_std=0.1)
    return p


def correlated_branches(shared: bool = True) -> tp.Program:
    """(b) relu(W x1) + erf(W x1): two branches reading the same W on the same vector."""
    p, h, W = _start("branches" if shared else "indep_branches")
    W2 = W if shared else p.matrix("W2", std=1.2)
    x1 = tp.relu(h)
    a = tp.relu(W @ x1)
    c = tp.erf(W2 @ x1)
    p.output(a + c, std=1.0, b_std=0.1)
    return p


def correlated_product() -> tp.Program:
    """(c) x1 ⊙ relu(x1) for a Gaussian vector x1, then a matrix and erf."""
    p, h, W = _start("product")
    x1 = h
    y = x1 * tp.relu(x1)
    p.output(tp.erf(W @ y), std=1.0, b_std=0.1)
    return p


def user_nonlin() -> tp.Program:
    """(d) a user nonlinearity cos(x) + 0.1 x² (quadrature, finite-difference derivative)."""
    p, h, W = _start("user")
    y = tp.nonlin(cos_quad, h, fn_name="cos_quad")
    p.output(tp.relu(W @ y), std=1.0, b_std=0.1)
    return p


def transposed_only() -> tp.Program:
    """(e) a matrix used only as Wᵀ, twice in a row."""
    p, h, W = _start("transposed")
    x1 = tp.relu(h)
    x2 = tp.relu(W.T @ x1)
    x3 = tp.erf(W.T @ x2)
    p.output(x3, std=1.0, b_std=0.1)
    return p


# ---------------------------------------------------------------------------------
# the cases: name -> (program factory, data factory)
# ---------------------------------------------------------------------------------

CASES = {
    "mlp2-relu": (lambda: tp.examples.mlp(2, "relu"), vectors),
    "mlp3-erf": (lambda: tp.examples.mlp(3, "erf"), vectors),
    "resnet2": (lambda: tp.examples.resnet(2), vectors),
    "rnn4-erf-last": (lambda: tp.examples.rnn(4, "erf", "last", b_std=0.2), lambda: sequences((4, 2, 3))),
    "rnn3-tanh-mean": (lambda: tp.examples.rnn(3, "tanh", "mean"), lambda: sequences((3, 1, 2))),
    "gated3": (lambda: tp.examples.gated(3), lambda: sequences((3, 2, 3))),
    "a-shared-matrix": (shared_matrix, vectors),
    "b-correlated-branches": (correlated_branches, vectors),
    "c-correlated-product": (correlated_product, vectors),
    "d-user-nonlin": (user_nonlin, vectors),
    "e-transposed-only": (transposed_only, vectors),
}


@functools.cache
def measured(case: str, n: int = WIDTH, seeds: tuple = SEEDS):
    """(limit Kernels, empirical NNGPs (S, N, N), empirical NTKs (S, N, N), seconds)."""
    make_program, make_data = CASES[case]
    p, X = make_program(), make_data()
    t0 = time.perf_counter()
    K = tp.kernels(p, X)
    t1 = time.perf_counter()
    nngps, ntks = empirical_kernels(p, X, n, seeds, USER_FNS)
    t2 = time.perf_counter()
    return K, nngps, ntks, (t1 - t0, t2 - t1)


@pytest.mark.parametrize("case", list(CASES))
def test_limit_matches_finite_width(case):
    """NNGP and NTK of tp.kernels agree with the seed-averaged width-n kernels."""
    K, nngps, ntks, (t_lim, t_emp) = measured(case)
    tol = tolerance()
    e_nngp = rel_err(nngps.mean(0), K.nngp)
    e_ntk = rel_err(ntks.mean(0), K.ntk)
    # the seeds' own spread: the standard error of the average, relative (for the message)
    se = [math.sqrt(np.sum(k.var(0, ddof=1)) / len(SEEDS)) / np.linalg.norm(ref)
          for k, ref in ((nngps, K.nngp), (ntks, K.ntk))]
    msg = (f"{case}: n={WIDTH}, {len(SEEDS)} seeds: NNGP err {e_nngp:.4f} (s.e. {se[0]:.4f}), "
           f"NTK err {e_ntk:.4f} (s.e. {se[1]:.4f}), tol {tol:.4f}; limit {t_lim:.2f}s, finite {t_emp:.2f}s")
    print(msg)
    assert np.all(np.isfinite(K.nngp)) and np.all(np.isfinite(K.ntk))
    assert e_nngp < tol, msg
    assert e_ntk < tol, msg


# ---------------------------------------------------------------------------------
# the test has power: wrong limits are rejected
# ---------------------------------------------------------------------------------

def test_shared_matrix_depth_sharing():
    """relu(W relu(W x1)): in the limit the two uses of W add no cross term to the NTK
    (E[dy2 dy3'] = 0: dy2 carries one more Wᵀ than dy3, and E[v] = 0), so the tied limit
    equals the untied one; the finite tied network agrees with that common value."""
    K, _, ntks, _ = measured("a-shared-matrix")
    untied = tp.kernels(shared_matrix(tied=False), vectors())
    np.testing.assert_allclose(K.nngp, untied.nngp, rtol=1e-12)
    np.testing.assert_allclose(K.ntk, untied.ntk, rtol=1e-12)
    assert rel_err(ntks.mean(0), untied.ntk) < tolerance()


def test_correlated_branches_discriminate():
    """relu(W x) + erf(W x): treating the two branches as independent drops their
    cross-covariance; the finite network must be far from that wrong limit."""
    _, nngps, ntks, _ = measured("b-correlated-branches")
    X = vectors()
    wrong = tp.kernels(correlated_branches(shared=False), X)
    e_wrong = [rel_err(nngps.mean(0), wrong.nngp), rel_err(ntks.mean(0), wrong.ntk)]
    print(f"branches: errors vs independent-branch limit NNGP {e_wrong[0]:.4f}, NTK {e_wrong[1]:.4f}")
    assert min(e_wrong) > 3 * tolerance()


def test_correlated_product_discriminates():
    """x1 ⊙ relu(x1): the finite network must be far from the limit of x1 ⊙ relu(x1b)
    with x1b an independent copy of x1 (what a wrong factorisation would compute)."""
    _, nngps, _, _ = measured("c-correlated-product")
    p = tp.Program("indep_product")
    xi = p.data("xi")
    x1 = p.input_layer("U", std=1.0) @ xi + p.bias("b", std=0.1)
    x1b = p.input_layer("U2", std=1.0) @ xi + p.bias("b2", std=0.1)
    p.output(tp.erf(p.matrix("W", std=1.2) @ (x1 * tp.relu(x1b))), std=1.0, b_std=0.1)
    wrong = tp.kernels(p, vectors(), get="nngp")
    e_wrong = rel_err(nngps.mean(0), wrong)
    print(f"product: NNGP error vs independent-factor limit {e_wrong:.4f}")
    assert e_wrong > 3 * tolerance()


# ---------------------------------------------------------------------------------
# every built-in nonlinearity, one hidden layer (cheap: no n×n matrix, so n is large)
# ---------------------------------------------------------------------------------

ZOO_WIDTH = 8192
ZOO_SEEDS = tuple(range(16))


def _one_layer(phi, w_std: float = 1.5):
    return lambda: tp.examples.mlp(1, phi, w_std=w_std, b_std=0.1)


ZOO = {
    "relu": _one_layer("relu"),
    "abrelu(-0.3,1.2)": _one_layer(lambda h, name=None: tp.abrelu(h, -0.3, 1.2, name=name)),
    "abs": _one_layer("abs"),
    "erf": _one_layer("erf"),
    "tanh": _one_layer("tanh"),
    "gelu": _one_layer("gelu"),
    "sin": _one_layer("sin"),
    "cos": _one_layer("cos"),
    "exp": _one_layer("exp", w_std=0.5),  # heavy tails: keep the pre-activation variance small
    "sigmoid": _one_layer("sigmoid"),
    "softplus": _one_layer("softplus"),
    "swish": _one_layer("swish"),
    "gaussian(1,-0.5)": _one_layer(lambda h, name=None: tp.gaussian(h, 1.0, -0.5, name=name)),
    "power(2)": _one_layer(lambda h, name=None: tp.power(h, 2, name=name)),
}


@pytest.mark.parametrize("phi", list(ZOO))
def test_one_hidden_layer_nonlinearities(phi):
    """x = φ(Uξ + b), f = vᵀx/√n + β_o for each built-in φ: the NNGP checks the pair rule
    E[φφ'] (or its quadrature), the NTK also E[φ'φ'] (the registered derivative)."""
    p, X = ZOO[phi](), vectors()
    K = tp.kernels(p, X)
    nngps, ntks = empirical_kernels(p, X, ZOO_WIDTH, ZOO_SEEDS)
    tol = tolerance(ZOO_WIDTH, ZOO_SEEDS)
    e_nngp, e_ntk = rel_err(nngps.mean(0), K.nngp), rel_err(ntks.mean(0), K.ntk)
    msg = f"{phi}: n={ZOO_WIDTH}: NNGP err {e_nngp:.4f}, NTK err {e_ntk:.4f}, tol {tol:.4f}"
    print(msg)
    assert e_nngp < tol and e_ntk < tol, msg


# ---------------------------------------------------------------------------------
# a two-argument user nonlinearity: expectations over 3-4 Gaussians
# ---------------------------------------------------------------------------------

def two_argument_user() -> tp.Program:
    """φ(h, g) = h·tanh(g) of two independent Gaussian vectors h = Uξ, g = Vξ.  Its NNGP
    needs E[h h' tanh(g) tanh(g')], an expectation over four Gaussians (tensor Gauss-Hermite
    with ``nd_deg`` nodes per dimension in tpkernel)."""
    p = tp.Program("two_arg")
    xi = p.data("xi")
    h = p.input_layer("U", std=1.0) @ xi
    g = p.input_layer("V", std=1.0) @ xi
    p.output(tp.nonlin(lambda x, y: x * np.tanh(y), h, g, fn_name="xtanh"), b_std=0.1)
    return p


USER_FNS["xtanh"] = lambda x, y: x * torch.tanh(y)
TWO_ARG_WIDTH = 32768  # no n×n matrix: wide networks are cheap
TWO_ARG_SEEDS = tuple(range(32))


@pytest.mark.parametrize("nd_deg", [None, 30], ids=["default-adaptive", "nd_deg=30"])
def test_two_argument_user_nonlinearity(nd_deg):
    """h·tanh(g) at n = 32768 over 32 seeds (tolerance 0.0098): the limit must agree.

    (A fixed 12-node Gauss-Hermite rule over the 4 Gaussians was 2-3% off here, silently; the
    default is now an adaptive rule whose error estimate is reported, and a fixed rule is
    checked against fewer nodes, each with a warning when it does not reach the tolerance.)"""
    p, X = two_argument_user(), vectors()
    # both rules fall short of quad_tol here (tanh's poles), and both say so: a warning, and an
    # error estimate for every quadrature (the fixed Gauss-Hermite rule too)
    with pytest.warns(tp.AccuracyWarning, match="did not reach the tolerance"):
        K = tp.kernels(p, X, nd_deg=nd_deg)
    assert all(q["error"] is not None for q in K.report.quadrature)
    nngps, ntks = empirical_kernels(p, X, TWO_ARG_WIDTH, TWO_ARG_SEEDS, USER_FNS)
    tol = tolerance(TWO_ARG_WIDTH, TWO_ARG_SEEDS)
    e_nngp, e_ntk = rel_err(nngps.mean(0), K.nngp), rel_err(ntks.mean(0), K.ntk)
    msg = f"h*tanh(g), nd_deg={nd_deg}: NNGP err {e_nngp:.4f}, NTK err {e_ntk:.4f}, tol {tol:.4f}"
    print(msg)
    assert e_nngp < tol and e_ntk < tol, msg


# ---------------------------------------------------------------------------------
# the interpreter itself
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [
    tp.nonlin.get("relu"), tp.nonlin.get("abrelu", -0.3, 1.2), tp.nonlin.get("erf"),
    tp.nonlin.get("sin", 0.7), tp.nonlin.get("cos"), tp.nonlin.get("exp"), tp.nonlin.get("gelu"),
    tp.nonlin.get("tanh"), tp.nonlin.get("sigmoid"), tp.nonlin.get("gauss", 0.5, -0.3),
    tp.nonlin.get("power", 3), tp.nonlin.get("softplus"), tp.nonlin.get("swish"),
], ids=lambda f: f.label)
def test_torch_nonlinearities_are_the_registered_maps(fn):
    """The interpreter's torch functions (written from the definitions) are the same maps."""
    x = np.linspace(-4, 4, 101)
    got = torch_nonlin(fn)(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, fn(x), rtol=1e-12, atol=1e-12)


def test_torch_user_and_prod_nonlinearities():
    x, y = np.linspace(-3, 3, 31), np.linspace(1, 2, 31)
    user = tp.nonlin.user(cos_quad, name="cos_quad")
    got = torch_nonlin(user, USER_FNS)(torch.tensor(x)).numpy()
    np.testing.assert_allclose(got, user(x), rtol=1e-13)
    prod = tp.nonlin.get("prod", arity=2)
    np.testing.assert_allclose(torch_nonlin(prod)(torch.tensor(x), torch.tensor(y)).numpy(), x * y)
    with pytest.raises(NotImplementedError):
        torch_nonlin(tp.nonlin.get("abstep", 0.0, 1.0))


def test_interpreter_ntk_is_jacobian_gram():
    """At small width, the interpreter's NTK (a batched autograd.grad) equals J Jᵀ with J
    the full Jacobian from torch.func.jacrev over all parameters."""
    p, X = tp.examples.rnn(3, "erf", "last", b_std=0.2), sequences((3, 1, 2))
    net = FiniteNet(p, X, 16, torch.Generator().manual_seed(3))
    jac = torch.func.jacrev(lambda P: net.forward(P)[0])(dict(net.params))
    J = torch.cat([j.reshape(len(X), -1) for j in jac.values()], dim=1)
    assert set(net.params) == {"U", "W", "b", p.readouts[0].name}  # U, W, b and the readout v
    np.testing.assert_allclose(net.ntk(), (J @ J.T).numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------
# two different data sets
# ---------------------------------------------------------------------------------

def test_cross_kernel_between_two_data_sets():
    """tp.kernels(p, A, B) is the A×B block of the finite-width kernel on A ∪ B
    (sequences of different lengths on both sides)."""
    p = tp.examples.rnn(4, "erf", "last", b_std=0.2)
    A, B = sequences((4, 2, 3), seed=1), sequences((1, 4), seed=2)
    K = tp.kernels(p, A, B)
    nngps, ntks = empirical_kernels(p, A + B, WIDTH, SEEDS)
    tol = tolerance()
    e_nngp = rel_err(nngps.mean(0)[:3, 3:], K.nngp)
    e_ntk = rel_err(ntks.mean(0)[:3, 3:], K.ntk)
    print(f"cross: NNGP err {e_nngp:.4f}, NTK err {e_ntk:.4f}, tol {tol:.4f}")
    assert K.nngp.shape == K.ntk.shape == (3, 2)
    assert e_nngp < tol and e_ntk < tol


# ---------------------------------------------------------------------------------
# convergence rate
# ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_convergence_rate_mlp_relu():
    """Per-network relative error of the mlp2-relu kernels, root-mean-square over seeds,
    at widths 256, 1024, 4096: it decreases, with log-log slope -1/2 ± 0.2."""
    p, X = tp.examples.mlp(2, "relu"), vectors()
    K = tp.kernels(p, X)
    widths = (256, 1024, 4096)
    seeds = {256: range(100, 228), 1024: range(300, 364), 4096: range(500, 524)}
    errs = {"nngp": [], "ntk": []}
    for n in widths:
        nngps, ntks = empirical_kernels(p, X, n, seeds[n])
        errs["nngp"].append(math.sqrt(np.mean([rel_err(k, K.nngp) ** 2 for k in nngps])))
        errs["ntk"].append(math.sqrt(np.mean([rel_err(k, K.ntk) ** 2 for k in ntks])))
    for which, e in errs.items():
        slope = np.polyfit(np.log(widths), np.log(e), 1)[0]
        print(f"{which}: rms errors {[round(x, 4) for x in e]} at widths {widths}, slope {slope:.3f}")
        assert e[0] > e[1] > e[2], (which, e)
        assert abs(slope + 0.5) < 0.2, (which, slope, e)
