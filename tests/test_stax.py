"""tpkernel.stax against neural-tangents, and where it differs on purpose.

The scripts of tests/nt_scripts/ are neural-tangents programs; their reference numbers come
from running the *same files* in the neural-tangents peer environment
(tests/reference/make_nt_scripts_reference.py).  Here each runs with its one import line
replaced by ``from tpkernel import stax``.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.special as sps

import tpkernel as tp
from tpkernel import stax

HERE = Path(__file__).parent
SCRIPTS = HERE / "nt_scripts"
REF = json.loads((HERE / "data" / "nt_scripts_reference.json").read_text())
NT_IMPORT = "from neural_tangents import stax"

#: quadrature layers (ElementwiseNumerical): 1e-6; everything else is closed form: 1e-10
TOL = {"elementwise_numerical.py": 1e-6}


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def run_script(path: Path) -> dict:
    """Run a neural-tangents script with tpkernel.stax: the import line is the only change."""
    text = path.read_text()
    assert text.count(NT_IMPORT) == 1 and text.count("neural_tangents") == 1, path.name
    ns = {"__name__": "__nt_script__", "__file__": str(path)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        exec(compile(text.replace(NT_IMPORT, "from tpkernel import stax"), str(path), "exec"), ns)
    return ns


def reference(path: Path) -> dict:
    key = path.relative_to(SCRIPTS).as_posix()
    entry = REF["scripts"][key]
    sha = hashlib.sha256(path.read_text().encode()).hexdigest()
    assert entry["sha256"] == sha, (f"{key} changed since its reference was made: rerun "
                                    "tests/reference/make_nt_scripts_reference.py in the peer venv")
    return entry


SCRIPT_FILES = sorted(SCRIPTS.glob("*.py"))


def test_at_least_ten_scripts_and_all_referenced():
    assert len(SCRIPT_FILES) >= 10
    names = {p.relative_to(SCRIPTS).as_posix() for p in SCRIPT_FILES + sorted((SCRIPTS / "differences").glob("*.py"))}
    assert names == set(REF["scripts"])
    assert REF["jax_enable_x64"] and REF["neural_tangents_version"] == "0.6.5"


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.stem)
def test_neural_tangents_script_runs_unchanged(path):
    entry = reference(path)
    ns = run_script(path)
    tol = TOL.get(path.name, 1e-10)
    assert set(ns["RESULTS"]) == set(entry["results"])
    for key, ref in entry["results"].items():
        ours, ref = np.asarray(ns["RESULTS"][key]), np.asarray(ref)
        assert ours.shape == ref.shape and ours.dtype == np.float64, key
        if path.name == "mlp_relu.py" and key == "ntk_11":
            # neural-tangents takes the arccos of rounding noise on the diagonal of ReLU NTKs
            # (~1e-9, settled by mpmath in test_nt_reference.py); off the diagonal: 1e-10
            off = ~np.eye(len(ref), dtype=bool)
            assert rel(ours[off], ref[off]) <= tol, key
            assert rel(np.diag(ours), np.diag(ref)) <= 1e-8, key
            continue
        assert rel(ours, ref) <= tol, (key, rel(ours, ref))


# ---------------------------------------------------------------------------------------
# where tpkernel differs on purpose: correlated branches
# ---------------------------------------------------------------------------------------

def _mc(K0: np.ndarray, g, dg, n: int = 400_000, seed: int = 0):
    """E[g(h_i) g(h_j)] and E[g'(h_i) g'(h_j)] for h ~ N(0, K0) by Monte Carlo, with standard errors."""
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(K0 + 1e-12 * np.eye(len(K0)))
    h = rng.standard_normal((n, len(K0))) @ L.T
    out = []
    for f in (g, dg):
        v = f(h)
        prods = v[:, :, None] * v[:, None, :]
        out.append((prods.mean(0), prods.std(0) / math.sqrt(n)))
    return out


def _relu_step(h):
    return (h > 0).astype(float)


def _derf(h):
    return 2 / math.sqrt(math.pi) * np.exp(-h * h)


def _gelu(h):
    return h * sps.ndtr(h)


def _dgelu(h):
    return sps.ndtr(h) + h * np.exp(-h * h / 2) / math.sqrt(2 * math.pi)


DIFFERENCES = {
    # script: (g, g') of the one hidden vector, as functions of the Gaussian pre-activation h.
    # The first Dense of the last two has no bias: h is then one Gaussian atom per input and
    # the engine integrates by adaptive quadrature to ~1e-13 (see the note in docs/stax.md)
    "identity_sum.py": (lambda h: np.maximum(2 * h, 0), lambda h: 2 * _relu_step(h)),
    "prod_same_input.py": (lambda h: sps.erf(h) * _gelu(h), lambda h: _derf(h) * _gelu(h) + sps.erf(h) * _dgelu(h)),
    "two_nonlinearities.py": (lambda h: sps.erf(_gelu(h)), lambda h: _derf(_gelu(h)) * _dgelu(h)),
}


@pytest.mark.parametrize("name", sorted(DIFFERENCES))
def test_correlated_branches_match_monte_carlo_over_gaussian_atoms(name):
    """One hidden pre-activation h ~ N(0, K0) (K0 = σ₁²⟨ξ,ξ'⟩/d + σ_b²), a map g(h), a Dense readout:
    NNGP = σ_v² E[g g'] + σ_o², NTK = NNGP + σ_v² K0 E[g'(h) g'(h')], by Monte Carlo (400k samples)."""
    path = SCRIPTS / "differences" / name
    entry = reference(path)
    ns = run_script(path)
    x = ns["x1"]
    K0 = ns["W1"] ** 2 * x @ x.T / x.shape[1] + (ns["B1"] or 0.0) ** 2
    (Egg, se_g), (Edd, se_d) = _mc(K0, *DIFFERENCES[name])
    wv2, bv2 = ns["WV"] ** 2, ns["BV"] ** 2
    nngp, se_nngp = wv2 * Egg + bv2, wv2 * se_g
    ntk, se_ntk = nngp + wv2 * K0 * Edd, np.sqrt((wv2 * se_g) ** 2 + (wv2 * K0 * se_d) ** 2)
    ours = ns["RESULTS"]
    assert np.all(np.abs(ours["nngp_11"] - nngp) <= 5 * se_nngp + 1e-12)
    assert np.all(np.abs(ours["ntk_11"] - ntk) <= 5 * se_ntk + 1e-12)
    if "error" in entry:  # neural-tangents refuses the network
        assert entry["error"].startswith(("ValueError", "NotImplementedError"))
    else:  # neural-tangents answers, as if the branches were independent: far off
        nt_nngp = np.asarray(entry["results"]["nngp_11"])
        assert np.max(np.abs(nt_nngp - nngp) / se_nngp) > 50
        assert rel(nt_nngp, nngp) > 0.05


def test_identity_sum_is_four_times_not_twice():
    """x + x = 2x: the kernel of the sum is 4K (neural-tangents: 2K)."""
    net_sum = stax.serial(stax.Dense(64, 1.2, 0.1), stax.FanOut(2), stax.parallel(stax.Identity(), stax.Identity()),
                          stax.FanInSum())
    net_one = stax.serial(stax.Dense(64, 1.2, 0.1))
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert np.allclose(net_sum[2](x, None, "nngp"), 4 * net_one[2](x, None, "nngp"), rtol=1e-14)
    assert np.allclose(net_sum[2](x, None, "ntk"), 4 * net_one[2](x, None, "ntk"), rtol=1e-14)
    entry = REF["scripts"]["differences/identity_sum.py"]["results"]
    ns = run_script(SCRIPTS / "differences" / "identity_sum.py")
    # relu is positively homogeneous: relu(2h) has 4x the relu kernel; neural-tangents has 2x
    bv2 = ns["BV"] ** 2
    ratio = (ns["RESULTS"]["nngp_11"] - bv2) / (np.asarray(entry["nngp_11"]) - bv2)
    assert np.allclose(ratio, 2.0, rtol=1e-12)


def _arccos1(K):
    """E[relu(u) relu(v)] for (u, v) with covariance K (the arc-cosine kernel)."""
    d = np.sqrt(np.diag(K))
    c = np.clip(K / np.outer(d, d), -1, 1)
    theta = np.arccos(c)
    return np.outer(d, d) * (np.sin(theta) + (np.pi - theta) * c) / (2 * np.pi)


@pytest.mark.filterwarnings("ignore::tpkernel.AccuracyWarning")  # kinked 4-Gaussian integrals: Monte Carlo
def test_nongaussian_skip_nngp_matches_monte_carlo():
    """x = relu(h1) + g3, with h1 ~ N(0, K1) and g3 ~ N(0, K3) independent (K3 from arc-cosine
    kernels), output Dense on relu(x): NNGP by Monte Carlo.  neural-tangents refuses the network."""
    path = SCRIPTS / "differences" / "nongaussian_skip.py"
    entry = reference(path)
    assert entry["error"].startswith("NotImplementedError")
    ns = run_script(path)
    x = ns["x1"]
    K1 = ns["W1"] ** 2 * x @ x.T / x.shape[1] + ns["B1"] ** 2
    K2 = ns["W2"] ** 2 * _arccos1(K1) + ns["B2"] ** 2
    K3 = ns["W3"] ** 2 * _arccos1(K2) + ns["B3"] ** 2
    rng = np.random.default_rng(1)
    n = 400_000
    h1 = rng.standard_normal((n, len(x))) @ np.linalg.cholesky(K1).T
    g3 = rng.standard_normal((n, len(x))) @ np.linalg.cholesky(K3).T
    z = np.maximum(np.maximum(h1, 0) + g3, 0)
    prods = z[:, :, None] * z[:, None, :]
    nngp = ns["WV"] ** 2 * prods.mean(0) + ns["BV"] ** 2
    se = ns["WV"] ** 2 * prods.std(0) / math.sqrt(n)
    assert np.all(np.abs(ns["RESULTS"]["nngp_11"] - nngp) <= 5 * se)


@pytest.mark.filterwarnings("ignore::tpkernel.AccuracyWarning")  # kinked 4-Gaussian integrals: Monte Carlo
@pytest.mark.parametrize("name", ["nongaussian_skip.py", "prod_same_input.py"])
def test_correlated_branches_match_finite_width(name):
    """The finite-width network of the same program (tpkernel.finite) approaches our limit."""
    finite = pytest.importorskip("tpkernel.finite")
    ns = run_script(SCRIPTS / "differences" / name)
    prog = stax.program((None, None, ns["kernel_fn"]))
    x = ns["x1"]
    errs = []
    for width in (128, 2048):
        ks = [finite.empirical_kernels(prog, x, width=width, seed=s) for s in range(4)]
        errs.append(rel(np.mean([k.ntk for k in ks], 0), ns["RESULTS"]["ntk_11"]))
    assert errs[1] < 0.05 and errs[1] < errs[0]


@pytest.mark.filterwarnings("ignore::tpkernel.AccuracyWarning")  # kinked 4-Gaussian integrals: Monte Carlo
def test_apply_fn_hidden_features_converge_to_the_kernel():
    """apply_fn (the stax network in NumPy) at width 2^14: (1/n) Σ_α φ(h_α) φ(h'_α) approaches
    kernel_fn of the same network, correlated branches included."""
    x = np.random.default_rng(5).standard_normal((4, 3))
    nets = [  # x + x, erf(h)·relu(h), erf(gelu(h)) and a residual with a non-Gaussian skip
        [stax.Dense(2 ** 15, 1.2, 0.1), stax.FanOut(2), stax.parallel(stax.Identity(), stax.Identity()),
         stax.FanInSum(), stax.Relu()],
        [stax.Dense(2 ** 15, 1.3), stax.FanOut(2), stax.parallel(stax.Erf(), stax.Gelu()), stax.FanInProd()],
        [stax.Dense(2 ** 15, 1.5), stax.Gelu(), stax.Erf()],
        [stax.Dense(2 ** 12, 1.0), stax.Relu(), stax.FanOut(2),
         stax.parallel(stax.serial(stax.Dense(2 ** 12, 1.2), stax.Erf()), stax.Identity()),
         stax.FanInSum(), stax.Erf()],
    ]
    for k, layers in enumerate(nets):
        init_fn, apply_fn, kernel_fn = stax.serial(*layers)
        out_shape, params = init_fn(7 + k, x.shape)
        feats = apply_fn(params, x)
        assert out_shape == feats.shape == (4, layers[0][0](0, (4, 3))[0][1])
        emp = feats @ feats.T / feats.shape[1]
        assert rel(emp, kernel_fn(x, None, "nngp")) < 0.03, k


# ---------------------------------------------------------------------------------------
# the API
# ---------------------------------------------------------------------------------------

X1 = np.random.default_rng(0).standard_normal((4, 3))
X2 = np.random.default_rng(1).standard_normal((2, 3))
NET = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1, W_std=1.5, b_std=0.1))


def test_get_semantics():
    init_fn, apply_fn, kernel_fn = NET
    k = kernel_fn(X1, X2)
    assert isinstance(k, stax.Kernel) and k.nngp.shape == (4, 2) and k.ntk.shape == (4, 2)
    assert k.cov1.shape == (4,) and k.cov2.shape == (2,) and not k.x1_is_x2
    assert np.array_equal(kernel_fn(X1, X2, "ntk"), k.ntk)
    t = kernel_fn(X1, X2, ("ntk", "nngp"))
    assert t._fields == ("ntk", "nngp") and np.array_equal(t[0], k.ntk) and np.array_equal(t.nngp, k.nngp)
    k11 = kernel_fn(X1)
    assert k11.x1_is_x2 and k11.cov2 is None and np.allclose(k11.cov1, np.diag(k11.nngp))
    assert np.allclose(kernel_fn(X1, X2, "cov1"), np.diag(k11.nngp), rtol=1e-13)
    with pytest.raises(ValueError, match="get="):
        kernel_fn(X1, None, "cov3")
    with pytest.raises(TypeError, match="unexpected keyword"):
        kernel_fn(X1, None, "ntk", diagonal_batch=False)
    with pytest.raises(tp.ShapeError, match=r"\(N, d\)"):
        kernel_fn(np.zeros((2, 3, 3)))
    with pytest.raises(tp.ShapeError, match="dimension"):
        kernel_fn(X1, np.zeros((2, 5)))


def test_program_and_listing_round_trip():
    p = stax.program(NET)
    assert isinstance(p, tp.Program)
    text = p.listing()
    assert "input W1 std=1.5" in text and "f = readout(x1) std=1.5 b_std=0.1" in text
    q = tp.parse(text)
    assert np.array_equal(tp.kernels(q, X1).ntk, NET[2](X1, None, "ntk"))
    # the triple, and each of its functions, name the same network
    assert stax.program(NET[2]) is p and stax.program(NET[0]) is p


def test_network_ending_in_nonlinearity_reads_one_coordinate():
    """serial(Dense, Relu): the kernels of one coordinate of relu(h) (a fixed readout, lr = 0)."""
    net = stax.serial(stax.Dense(8, 1.5, 0.1), stax.Relu())
    r = stax.program(net).readouts[0]
    assert r.std == 1.0 and r.lr == 0.0
    K0 = 1.5 ** 2 * X1 @ X1.T / 3 + 0.01
    d = np.sqrt(np.diag(K0))
    theta = np.arccos(np.clip(K0 / np.outer(d, d), -1, 1))
    np.fill_diagonal(theta, 0.0)  # exactly: an input is perfectly correlated with itself
    relu = np.outer(d, d) * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
    step = (np.pi - theta) / (2 * np.pi)
    k = net[2](X1)
    assert rel(k.nngp, relu) < 1e-12 and rel(k.ntk, K0 * step) < 1e-12


def test_init_and_apply():
    init_fn, apply_fn, _ = NET
    shape, params = init_fn(0, (-1, 3))
    assert shape == (-1, 1)
    (W1, b1), (), (W2, b2) = params
    assert W1.shape == (3, 512) and b1.shape == (1, 512) and W2.shape == (512, 1)
    out = apply_fn(params, X1)
    h = 1.5 / math.sqrt(3) * X1 @ W1 + 0.1 * b1
    assert np.allclose(out, 1.5 / math.sqrt(512) * np.maximum(h, 0) @ W2 + 0.1 * b2)
    # seeds: int, Generator, a JAX-style key (two uint32 words) — deterministic
    s1 = init_fn(np.array([0, 42], dtype=np.uint32), (3,))[1][0][0]
    s2 = init_fn(np.array([0, 42], dtype=np.uint32), (3,))[1][0][0]
    s3 = init_fn(np.random.default_rng(3), (3,))[1][0][0]
    assert np.array_equal(s1, s2) and s3.shape == (3, 512)


def test_apply_fn_of_every_elementwise_layer():
    x = np.linspace(-2, 2, 9)[None, :]
    cases = [(stax.Relu(), np.maximum(x, 0)), (stax.Abs(), np.abs(x)),
             (stax.LeakyRelu(0.1), np.where(x > 0, x, 0.1 * x)),
             (stax.ABRelu(-0.3, 1.2), np.where(x > 0, 1.2 * x, -0.3 * x)),
             (stax.Erf(0.7, 1.3, 0.2), 0.7 * sps.erf(1.3 * x) + 0.2),
             (stax.Sigmoid_like(), 0.5 * sps.erf(x / 2.4020563531719796) + 0.5),
             (stax.Gelu(), x * sps.ndtr(x)), (stax.Sin(0.8, 1.2, 0.3), 0.8 * np.sin(1.2 * x + 0.3)),
             (stax.Cos(1.1, 0.7, -0.4), 1.1 * np.cos(0.7 * x - 0.4)), (stax.Exp(0.8, 0.5), 0.8 * np.exp(0.5 * x)),
             (stax.Gaussian(1.0, -1.0), np.exp(-x * x)), (stax.Identity(), x),
             (stax.Rbf(0.5), math.sqrt(2) * np.sin(x + math.pi / 4)), (stax.Monomial(3), x ** 3),
             (stax.Polynomial([0.1, 1.0, 0.5]), 0.1 + x + 0.5 * x * x),
             (stax.ElementwiseNumerical(np.tanh, 25), np.tanh(x))]
    for (init_fn, apply_fn, _), want in cases:
        shape, params = init_fn(0, x.shape)
        assert shape == x.shape
        assert np.allclose(apply_fn(params, x), want, rtol=1e-14, atol=1e-15)
    approx = stax.Gelu(approximate=True)[1]((), x)
    assert np.max(np.abs(approx - x * sps.ndtr(x))) < 1e-3


def test_elementwise_layers_compile_to_the_documented_programs():
    text = stax.program(stax.serial(stax.Dense(4), stax.Erf(0.7, 1.3, 0.2), stax.Dense(1))).listing()
    assert "= 1.3*g1" in text and "= erf(" in text and "= 0.7*x1 + 0.2" in text
    text = stax.program(stax.serial(stax.Dense(4), stax.Sigmoid_like(), stax.Dense(1))).listing()
    assert "0.5*x1 + 0.5" in text and repr(1 / 2.4020563531719796) in text
    text = stax.program(stax.serial(stax.Dense(4), stax.Cos(), stax.Dense(1))).listing()
    assert "= cos(g1)" in text
    text = stax.program(stax.serial(stax.Dense(4), stax.ElementwiseNumerical(np.tanh, deg=25), stax.Dense(1))).listing()
    assert "= tanh(g1)" in text  # recognised: the registry's tanh, with its exact derivative


def test_elementwise_without_closed_forms_and_kernel_only():
    """Elementwise(fn) alone (quadrature) and Elementwise(nngp_fn, d_nngp_fn) alone (closed form)
    give the erf kernels; a kernel-only layer has no finite-width apply_fn."""
    def nngp_fn(c, q1, q2):
        return 2 / np.pi * np.arcsin(2 * c / np.sqrt((1 + 2 * q1) * (1 + 2 * q2)))

    def d_nngp_fn(c, q1, q2):
        return 4 / (np.pi * np.sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * c ** 2))

    def my_erf(x):
        return sps.erf(x)

    ref = stax.serial(stax.Dense(8, 1.3, 0.2), stax.Erf(), stax.Dense(1, 1.0, 0.1))[2](X1, X2)
    quad = stax.serial(stax.Dense(8, 1.3, 0.2), stax.Elementwise(my_erf), stax.Dense(1, 1.0, 0.1))[2](X1, X2)
    only = stax.serial(stax.Dense(8, 1.3, 0.2), stax.Elementwise(None, nngp_fn, d_nngp_fn), stax.Dense(1, 1.0, 0.1))
    k = only[2](X1, X2)
    assert rel(k.nngp, ref.nngp) < 1e-13 and rel(k.ntk, ref.ntk) < 1e-13
    assert rel(quad.nngp, ref.nngp) < 1e-6 and rel(quad.ntk, ref.ntk) < 1e-6
    with pytest.raises(NotImplementedError):
        only[1](only[0](0, X1.shape)[1], X1)
    with pytest.raises(ValueError, match="No finite"):
        stax.Elementwise()


def test_standard_parameterization_needs_widths():
    net = stax.serial(stax.Dense(300, 1.4, 0.1, parameterization="standard"), stax.Erf(),
                      stax.Dense(1, 1.1, 0.2, parameterization="standard"))
    with pytest.raises(tp.ProgramError, match="input dimension"):
        stax.program(net)
    p = stax.program(net, input_dim=3)
    lrs = {n.name: n.lr for n in p.params}
    assert lrs["W1"] == pytest.approx(3 / 1.4 ** 2) and lrs["b1"] == pytest.approx(1 / 0.1 ** 2)
    assert p.readouts[0].lr == pytest.approx(300 / 1.1 ** 2)
    # the forward kernel is the same in both parameterizations
    ntk = stax.serial(stax.Dense(300, 1.4, 0.1), stax.Erf(), stax.Dense(1, 1.1, 0.2))
    assert rel(net[2](X1, None, "nngp"), ntk[2](X1, None, "nngp")) < 1e-15
    with pytest.raises(ValueError, match="Parameterization"):
        stax.Dense(4, parameterization="mup")


def test_concat_widths_weight_the_kernels():
    """FanInConcat of widths 1:3 then Dense: σ²(¼K_a + ¾K_b) + σ_b² (neural-tangents' width average)."""
    a = stax.serial(stax.Dense(8, 1.0), stax.Relu())
    b = stax.serial(stax.Dense(8, 1.0), stax.Erf())
    cat = stax.serial(stax.Dense(64, 1.2, 0.1), stax.FanOut(2),
                      stax.parallel(stax.serial(stax.Dense(100, 1.0), stax.Relu()),
                                    stax.serial(stax.Dense(300, 1.0), stax.Erf())),
                      stax.FanInConcat(), stax.Dense(1, 1.5, 0.1))
    pre = stax.Dense(64, 1.2, 0.1)
    ka = stax.serial(pre, a)[2](X1, None, "nngp")
    kb = stax.serial(pre, b)[2](X1, None, "nngp")
    assert rel(cat[2](X1, None, "nngp"), 1.5 ** 2 * (0.25 * ka + 0.75 * kb) + 0.01) < 1e-14


def test_clear_errors():
    with pytest.raises(stax.UnsupportedLayerError, match="LayerNorm"):
        stax.LayerNorm()
    err = stax.UnsupportedLayerError("x")
    assert isinstance(err, tp.ProgramError) and isinstance(err, NotImplementedError)
    with pytest.raises(stax.UnsupportedLayerError, match="Conv"):
        stax.Conv(8, (3, 3))
    with pytest.raises(AttributeError):
        stax.NoSuchLayer
    with pytest.raises(tp.ProgramError, match="only be read by a Dense"):
        stax.serial(stax.Relu(), stax.Dense(1))[2](X1)
    with pytest.raises(tp.ProgramError, match="branches"):
        stax.serial(stax.Dense(4), stax.FanOut(2))[2](X1)
    with pytest.raises(tp.ProgramError, match="needs 3 branches"):
        stax.serial(stax.Dense(4), stax.FanOut(2), stax.parallel(stax.Relu(), stax.Relu(), stax.Relu()))[2](X1)
    with pytest.raises(tp.ProgramError, match="not a tpkernel.stax layer"):
        stax.serial((lambda r, s: (s, ()), lambda p, x: x, lambda k: k))
    with pytest.raises(stax.UnsupportedLayerError, match="ends in FanInConcat"):
        stax.serial(stax.Dense(4), stax.FanOut(2), stax.parallel(stax.Dense(4), stax.Dense(4)),
                    stax.FanInConcat())[2](X1)
    with pytest.raises(tp.ProgramError, match="W_std"):
        stax.Dense(4, W_std=-1.0)


def test_repeat_and_branches_at_the_input():
    block = stax.serial(stax.Dense(16, 1.3, 0.1), stax.Erf())
    a = stax.serial(stax.repeat(block, 3), stax.Dense(1, 1.0, 0.1))
    b = stax.serial(block, block, block, stax.Dense(1, 1.0, 0.1))
    assert np.array_equal(a[2](X1, X2, "ntk"), b[2](X1, X2, "ntk"))
    assert len(stax.program(a).of_type(tp.ir.Matrix)) == 2  # three Dense layers: three parameters
    # two Dense layers reading the raw input: two independent input layers
    two = stax.serial(stax.FanOut(2), stax.parallel(stax.Dense(8, 1.0), stax.Dense(8, 2.0)), stax.FanInSum(),
                      stax.Relu(), stax.Dense(1))
    one = stax.serial(stax.Dense(8, math.sqrt(5.0)), stax.Relu(), stax.Dense(1))
    assert rel(two[2](X1, None, "nngp"), one[2](X1, None, "nngp")) < 1e-14
    assert rel(two[2](X1, None, "ntk"), one[2](X1, None, "ntk")) < 1e-14
