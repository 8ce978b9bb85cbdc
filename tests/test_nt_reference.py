"""neural-tangents 0.6.5 (float64) against tpkernel on the networks of nt_reference.json.

The reference numbers were produced by tests/reference/make_nt_reference.py in the peer
virtual environment (../shared/peer/setup.sh); this test needs only the JSON.
"""

import mpmath
import numpy as np
import pytest

import tpkernel as tp
from nt_specs import build, load

REF = load()
CLOSED = [k for k in REF["cases"] if not k.startswith("tanh_numerical")]
RELU_FAMILY = {"Relu", "ABRelu", "LeakyRelu", "Abs"}


def rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b))


def _uses_relu_family(spec):
    return any(k in RELU_FAMILY or (k == "Residual" and _uses_relu_family(a["branch"])) for k, a in spec)


@pytest.mark.parametrize("name", CLOSED)
def test_closed_form_layers_match_neural_tangents(name):
    case = REF["cases"][name]
    p = build(case["spec"], name)
    x1 = np.array(case.get("x1", REF["x1"]))
    k = tp.kernels(p, x1)
    assert rel(k.nngp, case["nngp_11"]) <= 1e-10
    ntk_ref = np.array(case["ntk_11"])
    off = ~np.eye(len(x1), dtype=bool)
    assert rel(k.ntk[off], ntk_ref[off]) <= 1e-10
    # neural-tangents takes the arc-cosine of rounding noise on the diagonal of the
    # ReLU family (a ~1e-9 error, see the JSON's notes); elsewhere it is exact.
    tol = 1e-8 if _uses_relu_family(case["spec"]) else 1e-10
    assert rel(np.diag(k.ntk), np.diag(ntk_ref)) <= tol
    assert "report" not in k.report.summary() and k.report.quadrature == []  # all closed form
    if "nngp_12" in case:
        k12 = tp.kernels(p, x1, np.array(REF["x2"]))
        assert rel(k12.nngp, case["nngp_12"]) <= 1e-10
        assert rel(k12.ntk, case["ntk_12"]) <= 1e-10


def _diag_relu_mp(spec, q):
    """The diagonal of a bias-capable ABRelu MLP's NNGP/NTK in 50-digit arithmetic: on the
    diagonal the angle is exactly 0, so E[φ(u)²] = (a²+b²)q/2 and E[φ'(u)²] = (a²+b²)/2."""
    mpmath.mp.dps = 50
    K, T = None, None
    for kind, a in spec:
        if kind == "Dense":
            w2 = mpmath.mpf(a["W_std"]) ** 2
            b2 = mpmath.mpf(a["b_std"] or 0) ** 2
            K = w2 * q + b2 if K is None else w2 * K + b2
            T = K if T is None else K + w2 * T
            q = None
        else:
            ab = {"Relu": (0, 1), "Abs": (-1, 1), "LeakyRelu": (a.get("alpha"), 1),
                  "ABRelu": (a.get("a"), a.get("b"))}[kind]
            s = (mpmath.mpf(ab[0]) ** 2 + mpmath.mpf(ab[1]) ** 2) / 2
            K, T = s * K, s * T  # K becomes the previous layer's E[φ²]; T the Θ·E[φ'²]
    return K, T


SETTLED = ["relu_d10", "abrelu_d3", "leaky_d2", "abs_d2", "relu_nobias_d3", "relu_d1"]


def test_neural_tangents_relu_diagonal_is_off():
    """The disagreement the mpmath test settles does exist (> 1e-10 on some entry)."""
    worst = 0.0
    for name in SETTLED:
        case = REF["cases"][name]
        k = tp.kernels(build(case["spec"], name), np.array(REF["x1"]))
        worst = max(worst, rel(np.diag(k.ntk), np.diag(case["ntk_11"])))
    assert worst > 1e-10


@pytest.mark.parametrize("name", SETTLED)
def test_relu_diagonal_settled_by_mpmath(name):
    """Where tpkernel and neural-tangents differ (~1e-9, NTK diagonal), mpmath sides with us."""
    case = REF["cases"][name]
    x1 = np.array(REF["x1"])
    k = tp.kernels(build(case["spec"], name), x1)
    for i, x in enumerate(x1):
        q = mpmath.fsum(mpmath.mpf(float(v)) ** 2 for v in x) / len(x)
        K, T = _diag_relu_mp(case["spec"], q)
        assert abs(k.nngp[i, i] - float(K)) <= 1e-14 * float(K)
        assert abs(k.ntk[i, i] - float(T)) <= 1e-14 * float(T)
        # we are never farther from the exact value than neural-tangents (up to rounding)
        assert abs(k.ntk[i, i] - float(T)) <= abs(case["ntk_11"][i][i] - float(T)) + 2e-14 * float(T)


def test_quadrature_layer_matches_converged_neural_tangents():
    """tanh by quadrature against ElementwiseNumerical(deg=400), which is converged to ~1e-12.

    neural-tangents' own deg=25 result is ~5e-3 away from both (its quadrature error), so it
    is checked only loosely here."""
    conv, deg25 = REF["cases"]["tanh_numerical_d2_deg400"], REF["cases"]["tanh_numerical_d2"]
    p = build(conv["spec"], "tanh")
    x1, x2 = np.array(REF["x1"]), np.array(REF["x2"])
    k11, k12 = tp.kernels(p, x1, error_estimate=True), tp.kernels(p, x1, x2)
    for key, val in (("nngp_11", k11.nngp), ("ntk_11", k11.ntk), ("nngp_12", k12.nngp), ("ntk_12", k12.ntk)):
        assert rel(val, conv[key]) <= 1e-6, key
        assert rel(val, deg25[key]) <= 1e-2, key
    # the estimate compares 64 with 48 nodes, so it bounds the 48-node error: conservative
    assert k11.report.quadrature and all(q["error"] < 1e-4 for q in k11.report.quadrature)


def test_spec_example_value():
    """SPEC's sanity value, also asserted by the peer's setup script."""
    case = REF["cases"]["relu_spec_example"]
    k = tp.kernels(build(case["spec"]), np.random.default_rng(0).standard_normal((6, 5)))
    assert abs(k.ntk[0, 1] - 1.666773380040) < 1e-9
