"""The fast paths equal the reference paths: the fused chain evaluator (numba and NumPy),
the vectorisable atan2, float32 mode, the blockwise dask evaluation (on a LocalCluster),
and the memory bound of the fused path.  Timings live in benchmarks/, not here."""

import tracemalloc
import warnings

import mpmath
import numpy as np
import pytest

import tpkernel as tp
from nt_specs import build, load
from tpkernel.limit import blocks, fused

REF = load()
NUMBA = [True, False] if fused.HAVE_NUMBA else [False]


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


@pytest.fixture(params=NUMBA, ids=lambda v: "numba" if v else "numpy")
def numba_mode(request, monkeypatch):
    monkeypatch.setattr(fused, "USE_NUMBA", request.param)
    return request.param


# -- the fused chain evaluator ---------------------------------------------------------

CLOSED = [k for k in REF["cases"] if not k.startswith("tanh_numerical")]


def test_chain_recognition():
    chains = {k for k in REF["cases"]
              if fused.chain_of(p := build(REF["cases"][k]["spec"], k), p.readouts[0]) is not None}
    # every plain dense + elementwise net is a chain; post-affine erf (a·erf + c), the
    # sigmoid-like shift and residual nets go to the general evaluator
    assert {"relu_d10", "abrelu_d3", "leaky_d2", "abs_d2", "erf_d3", "gelu_d2", "identity_d2",
            "tanh_numerical_d2"} <= chains
    assert not {"residual_preact", "erf_abc_d2", "sigmoid_like_d2"} & chains
    assert fused.chain_of(tp.examples.resnet(2), tp.examples.resnet(2).readouts[0]) is None
    rnn = tp.examples.rnn(T=3)
    assert fused.chain_of(rnn, rnn.readouts[0]) is None


@pytest.mark.parametrize("name", CLOSED)
def test_fused_equals_reference_on_nt_cases(name, numba_mode):
    case = REF["cases"][name]
    p = build(case["spec"], name)
    x1 = np.array(case.get("x1", REF["x1"]))
    x2 = np.array(REF["x2"])[:, :x1.shape[1]]
    for args in ((x1,), (x1, x2)):
        a = tp.kernels(p, *args)
        b = tp.kernels(p, *args, engine="reference")
        assert rel(a.nngp, b.nngp) <= 1e-14 and rel(a.ntk, b.ntk) <= 1e-14, name
        if len(args) == 1:
            assert np.array_equal(a.ntk, a.ntk.T) and np.array_equal(a.nngp, a.nngp.T)


@pytest.mark.parametrize("act", ["relu", "erf", "leaky", "abs", "gelu", "identity"])
def test_fused_deep_and_wide(act, numba_mode):
    """Depth 10, odd sizes (row pairing on the triangle), x2 != x1, biases, scaled layers."""
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((37, 7)), rng.standard_normal((20, 7))
    phi = {"leaky": lambda h, name=None: tp.leaky_relu(h, 0.2, name=name),
           "abs": lambda h, name=None: tp.abs(h, name=name),
           "identity": lambda h, name=None: 0.9 * h}.get(act, act)
    p = tp.examples.mlp(10, phi, w_std=1.3, b_std=0.2)
    for args in ((x1,), (x1, x2), (x2, x1)):
        a = tp.kernels(p, *args)
        b = tp.kernels(p, *args, engine="reference")
        assert rel(a.nngp, b.nngp) <= 1e-14 and rel(a.ntk, b.ntk) <= 1e-14
    assert tp.kernels(p, x1, get="nngp").shape == (37, 37)
    assert rel(tp.kernels(p, x1, x2, get="ntk"), tp.kernels(p, x1, x2, get="ntk", engine="reference")) <= 1e-14


def test_fused_lr_and_readout_options(numba_mode):
    p = tp.Program("lr")
    xi = p.data("xi")
    h = 0.7 * (p.input_layer("U", 1.2, lr=0.5) @ xi) + p.bias("b1", 0.3, lr=2.0)
    x = tp.relu(h)
    h2 = p.matrix("W", 1.4, lr=3.0) @ x + p.bias("b2", 0.2)
    p.output(2.0 * tp.erf(h2), std=0.8, b_std=0.4, lr=1.5, b_lr=0.25)
    x1 = np.random.default_rng(2).standard_normal((15, 4))
    assert fused.chain_of(p, p.readouts[0]) is not None
    a, b = tp.kernels(p, x1), tp.kernels(p, x1, engine="reference")
    assert rel(a.nngp, b.nngp) <= 1e-14 and rel(a.ntk, b.ntk) <= 1e-14


def test_shared_parameters_are_not_chains():
    p = tp.Program("tied")
    xi = p.data("xi")
    W = p.matrix("W", 1.0)
    b = p.bias("b", 0.1)
    x = tp.relu(p.input_layer("U") @ xi + b)
    x = tp.relu(W @ x + b)  # a bias used twice correlates layers
    x = tp.relu(W @ x)  # weight sharing
    p.output(x)
    assert fused.chain_of(p, p.readouts[0]) is None
    x1 = np.random.default_rng(3).standard_normal((6, 3))
    assert rel(tp.kernels(p, x1).ntk, tp.kernels(p, x1, engine="reference").ntk) == 0.0
    with pytest.raises(ValueError, match="chain"):
        tp.kernels(p, x1, engine="fused")


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_fused_quadrature_equals_reference(act, numba_mode):
    x1 = np.random.default_rng(4).standard_normal((12, 5))
    x2 = np.random.default_rng(5).standard_normal((7, 5))
    p = tp.examples.mlp(2, act, w_std=1.4, b_std=0.1)
    for kw in ({"quad_deg": 33}, {"quad_deg": 21, "error_estimate": True}, {"quad_tol": 1e-9}):
        for args in ((x1,), (x1, x2)):
            a = tp.kernels(p, *args, **kw)
            b = tp.kernels(p, *args, engine="reference", **kw)
            # same nodes, same levels; only the evaluation of φ along the grid differs (a
            # geometric sequence instead of exp).  With x2 = x1 the fused path computes the
            # upper triangle (row example = outer variable) and mirrors it; the reference
            # computes both, whose discretisation errors differ at a coarse fixed degree.
            part = np.triu if len(args) == 1 else (lambda m: m)
            assert rel(part(a.nngp), part(b.nngp)) <= 1e-12, (kw, len(args))
            assert rel(part(a.ntk), part(b.ntk)) <= 1e-12, (kw, len(args))
            degs = sorted(q["deg"] for q in a.report.quadrature)
            assert degs[-1] == sorted(q["deg"] for q in b.report.quadrature)[-1]
            if kw.get("error_estimate"):
                assert all(q["error"] is not None for q in a.report.quadrature)


def test_float32_mode(numba_mode):
    x1 = np.random.default_rng(6).standard_normal((40, 30))
    p = tp.examples.mlp(5, "relu", w_std=2 ** 0.5, b_std=0.05)
    k32 = tp.kernels(p, x1, dtype="float32")
    k64 = tp.kernels(p, x1)
    assert k32.nngp.dtype == np.float32 and k32.ntk.dtype == np.float32
    assert rel(k32.nngp, k64.nngp) < 1e-5 and rel(k32.ntk, k64.ntk) < 1e-5
    assert np.array_equal(k32.ntk, k32.ntk.T)
    r = tp.examples.rnn(T=2)  # general evaluator: computed in float64, returned in float32
    assert tp.kernels(r, tp.examples.sample_data(r, n=3), dtype="float32").ntk.dtype == np.float32
    with pytest.raises(ValueError, match="dtype"):
        tp.kernels(p, x1, dtype="int32")


def test_zero_inputs_and_degenerate_rows(numba_mode):
    x1 = np.random.default_rng(7).standard_normal((9, 4))
    x1[3] = 0.0
    x1[5] = x1[6]
    for b_std in (None, 0.1):
        p = tp.examples.mlp(3, "relu", b_std=b_std)
        a, b = tp.kernels(p, x1), tp.kernels(p, x1, engine="reference")
        assert rel(a.nngp, b.nngp) <= 1e-14 and rel(a.ntk, b.ntk) <= 1e-14


# -- the vectorisable atan2 and asin ---------------------------------------------------

@pytest.mark.skipif(not fused.HAVE_NUMBA, reason="numba not installed")
def test_atan2_within_two_ulp_of_numpy():
    rng = np.random.default_rng(8)
    n = 1_000_000
    s = np.abs(rng.standard_normal(n)) * 10.0 ** rng.uniform(-300, 300, n)
    c = rng.standard_normal(n) * 10.0 ** rng.uniform(-300, 300, n)
    # correlations rounding to ±1 (the diagonal of a kernel) and to 0
    q = 10.0 ** rng.uniform(-3, 3, n)
    rho = np.concatenate([1 - 10.0 ** rng.uniform(-17, 0, n // 2), -1 + 10.0 ** rng.uniform(-17, 0, n // 2)])
    c2 = rho * q
    s2 = np.sqrt(np.maximum(q * q - c2 * c2, 0.0))
    t = rng.uniform(0, 3, n)  # ratios around the reduction points 7/16, 11/16, 1
    c3 = rng.choice([-1.0, 1.0], n) * rng.uniform(0.1, 10, n)
    special_s = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 5e-324, 5e-324, 1e308, 0.0])
    special_c = np.array([1.0, -1.0, 0.0, -0.0, 0.0, -0.0, 5e-324, -5e-324, 1e308, 5e-324])
    S = np.concatenate([s, s2, t * np.abs(c3), special_s])
    C = np.concatenate([c, c2, c3, special_c])
    out = fused.atan2_pos_np(S, C)
    ref = np.arctan2(S, C)
    ulp = np.abs(out - ref) / np.spacing(np.maximum(np.abs(ref), 5e-324))
    assert ulp.max() <= 2.0
    assert np.array_equal(out[-10:-4], ref[-10:-4])  # zeros, signed zeros: exactly 0, π, π/2
    # against the exact value (mpmath, 40 digits) on a sample: within one ulp
    mpmath.mp.dps = 40
    idx = rng.choice(len(S) - 10, 300, replace=False)
    for i in idx:
        exact = float(mpmath.atan2(mpmath.mpf(S[i]), mpmath.mpf(C[i])))
        assert abs(out[i] - exact) <= np.spacing(abs(exact))
    # the plain-Python statement of the algorithm gives the same bits
    for i in idx[:50]:
        assert fused.atan2_pos_py(float(S[i]), float(C[i])) == out[i]


@pytest.mark.skipif(not fused.HAVE_NUMBA, reason="numba not installed")
def test_asin_within_two_ulp_of_numpy():
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.uniform(-1, 1, 500_000), 1 - 10.0 ** rng.uniform(-16, 0, 100_000),
                        -1 + 10.0 ** rng.uniform(-16, 0, 100_000), 10.0 ** rng.uniform(-300, 0, 100_000),
                        [0.0, -0.0, 1.0, -1.0]])
    out, ref = fused.asin_np(x), np.arcsin(x)
    assert (np.abs(out - ref) / np.spacing(np.maximum(np.abs(ref), 5e-324))).max() <= 2.0


# -- memory ----------------------------------------------------------------------------

def test_memory_bound_of_the_fused_path(monkeypatch):
    """Peak traced memory of a fused evaluation <= 2.5 N² × 8 bytes: K and T in place, plus
    band temporaries (docs/performance.md: 2 N1 N2 × 8 + about 16 × BAND × 8 bytes; the band
    is made small here so that the constant shows at a test-sized N)."""
    monkeypatch.setattr(fused, "BAND", 4096)
    n = 600
    x1 = np.random.default_rng(10).standard_normal((n, 50))
    for act in ("relu", "gelu"):  # the numba kernel and the NumPy band path
        p = tp.examples.mlp(6, act)
        tp.kernels(p, x1[:5])
        tracemalloc.start()
        k = tp.kernels(p, x1)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= 2.5 * n * n * 8, (act, peak / (n * n * 8))
        del k


# -- blockwise evaluation with dask ----------------------------------------------------

dask = pytest.importorskip("dask")


def test_blockwise_equals_in_memory_threads():
    rng = np.random.default_rng(11)
    x1, x2 = rng.standard_normal((70, 6)), rng.standard_normal((45, 6))
    for p in (tp.examples.mlp(3, "relu"), tp.examples.resnet(1)):
        ref = tp.kernels(p, x1)
        K = tp.kernels(p, x1, chunks=32)
        assert isinstance(K.nngp, dask.array.Array) and K.nngp.chunks == ((32, 32, 6), (32, 32, 6))
        V = blocks.compute(K)
        assert rel(V.nngp, ref.nngp) <= 1e-12 and rel(V.ntk, ref.ntk) <= 1e-12
        ref2 = tp.kernels(p, x1, x2, get="ntk")
        V2 = tp.kernels(p, x1, x2, get="ntk", chunks=(25, 20)).compute()
        assert rel(V2, ref2) <= 1e-12
    # store tile by tile into preallocated targets
    out_n, out_t = np.zeros((70, 70)), np.zeros((70, 70))
    blocks.store(tp.kernels(tp.examples.mlp(2), x1, chunks=30), out_n, out_t, progress=True)
    ref = tp.kernels(tp.examples.mlp(2), x1)
    assert rel(out_n, ref.nngp) <= 1e-12 and rel(out_t, ref.ntk) <= 1e-12


def test_blockwise_on_a_local_cluster():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(12)
    x1 = rng.standard_normal((40, 5))
    rnn = tp.examples.rnn(T=3)
    seqs = tp.examples.sample_data(rnn, n=10)  # sequences of different lengths
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        for p, x, ch in ((tp.examples.mlp(3, "relu"), x1, 16), (rnn, seqs, 4)):
            V = blocks.compute(tp.kernels(p, x, chunks=ch), progress=True)
            ref = tp.kernels(p, x)
            assert rel(V.nngp, ref.nngp) <= 1e-12 and rel(V.ntk, ref.ntk) <= 1e-12


def test_non_finite_kernels_are_an_error(numba_mode):
    """An overflowing chain is refused, as by the general evaluator (never a silent inf/NaN)."""
    x1 = np.random.default_rng(13).standard_normal((6, 3)) * 1e100  # q q' overflows in layer 2
    for engine in ("auto", "reference"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(tp.NumericalError):
                tp.kernels(tp.examples.mlp(3, "relu", w_std=1e60), x1, engine=engine)
