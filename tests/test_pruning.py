"""Random pruning (issue 7): masks in the IR, the transformations, the limit (q factors and the
exact input-layer mixture), the extra scaling, the pseudo-network, finite width, the width
study and the CLI.  The heavier acceptance numbers are measured by benchmarks/pruning_study.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import tpkernel as tp
from tpkernel import finite, pruning
from tpkernel.finite.convergence import width_seed
from tpkernel.ir import InputLayer, Mask, Matrix, Readout
from tpkernel.listing import ListingError, parse

FAST = dict(quad_deg=33)


def relu_mlp(L: int = 3, std: float = 1.5, b_std: float | None = None) -> tp.Program:
    """The bias-free (by default) ReLU MLP with L hidden layers: U, W2..WL, readout f."""
    return tp.examples.mlp(L, "relu", w_std=std, b_std=b_std)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True) * np.sqrt(x.shape[-1])


X = unit(np.random.default_rng(0).standard_normal((5, 4)))


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ---------------------------------------------------------------------------------------
# masks in the IR
# ---------------------------------------------------------------------------------------

def test_mask_fields_and_factors():
    m = Mask(0.75)
    assert (m.p, m.q, m.rescale, m.factor, m.scale2) == (0.75, 0.25, False, 0.25, 1.0)
    r = Mask(0.75, rescale=True)
    assert r.factor == 1.0 and r.scale2 == 4.0
    assert Matrix("W", mask=0.5).mask == Mask(0.5)  # a number is a pruning probability
    assert InputLayer("U", mask=Mask(0.2, True)).mask.rescale
    assert Readout("f", ("x",), mask=0.1).mask.q == pytest.approx(0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.p = 0.1


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, float("nan"), float("inf"), Mask(1.0), Mask(-2)])
@pytest.mark.parametrize("make", [lambda m: Matrix("W7", mask=m), lambda m: InputLayer("W7", mask=m),
                                  lambda m: Readout("W7", ("x",), mask=m)])
def test_pruning_probability_outside_0_1_names_the_node(bad, make):
    with pytest.raises(tp.ProgramError, match="W7.*pruning probability p.*\\[0, 1\\)"):
        make(bad)


def test_bad_mask_objects_are_errors():
    with pytest.raises(tp.ProgramError, match="W: mask must be"):
        Matrix("W", mask="half")
    with pytest.raises(tp.ProgramError, match="rescale"):
        Mask(0.5, rescale="yes")
    with pytest.raises(tp.ProgramError):
        Mask("0.5")


def test_builder_takes_masks():
    p = tp.Program("b")
    xi = p.data("xi")
    h = tp.relu(p.input_layer("U", mask=0.25) @ xi)
    h = tp.relu(p.matrix("W", mask=Mask(0.5, True)) @ h)
    p.output(h, mask=0.5)
    assert [pruning.masked(p)[k] for k in ("U", "W", "f1")] == [Mask(0.25), Mask(0.5, True), Mask(0.5)]


# ---------------------------------------------------------------------------------------
# prune / dense / pseudo_network
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("where,names", [("all", {"U", "W2", "W3", "f"}), ("hidden", {"W2", "W3"}),
                                         ("hidden+output", {"W2", "W3", "f"}), ("input", {"U"}),
                                         ("output", {"f"}), (["W3", "U"], {"W3", "U"}), ("W2", {"W2"})])
def test_prune_where(where, names):
    p = relu_mlp()
    q = pruning.prune(p, 0.5, where=where)
    assert set(pruning.masked(q)) == names
    assert not pruning.masked(p)  # a transformation: the original is untouched
    assert [n.name for n in q] == [n.name for n in p]
    assert pruning.masked(pruning.dense(q)) == {}


def test_prune_errors():
    p = tp.examples.mlp(2, "relu", b_std=0.1)
    for bad in (1.0, -0.5, float("nan"), "0.5", True):
        with pytest.raises(tp.ProgramError, match="pruning probability p"):
            pruning.prune(p, bad)
    with pytest.raises(tp.ProgramError, match="b1.*bias"):
        pruning.prune(p, 0.5, where=["b1"])
    with pytest.raises(tp.ProgramError, match="no parameter 'nope'"):
        pruning.prune(p, 0.5, where=["nope"])
    with pytest.raises(tp.ProgramError, match="not a matrix"):
        pruning.prune(p, 0.5, where=["x1"])
    once = pruning.prune(p, 0.5, rescale=True)
    with pytest.raises(tp.ProgramError, match="same rescale"):
        pruning.prune(once, 0.5)


def test_pruning_twice_multiplies_keep_probabilities():
    q = pruning.prune(pruning.prune(relu_mlp(), 0.5, where="hidden"), 0.75, where=["W2"])
    assert pruning.masked(q)["W2"].q == pytest.approx(0.125)
    assert pruning.masked(q)["W3"].q == pytest.approx(0.5)


def test_readout_named_by_its_vector():
    p = tp.Program("v")
    xi = p.data("xi")
    h = tp.relu(p.input_layer("U") @ xi)
    v = p.bias("v", std=1.3)
    p.output(h, vector=v, name="out")
    q = pruning.prune(p, 0.5, where=["v"])
    assert pruning.masked(q) == {"out": Mask(0.5)}
    K, Kd = tp.kernels(q, X), tp.kernels(p, X)
    np.testing.assert_allclose(K.ntk, 0.5 * Kd.ntk, rtol=1e-13)
    ps = pruning.pseudo_network(q)
    assert ps["v"].std == pytest.approx(1.3 * math.sqrt(0.5)) and not pruning.masked(ps)
    np.testing.assert_allclose(tp.kernels(ps, X).ntk, K.ntk, rtol=1e-13)
    net = finite.sample(q, 64, seed=0)
    assert np.all(net.params["v"][~net.masks["v"]] == 0)  # masks are keyed like the parameters


def test_listing_prints_and_parses_masks():
    q = pruning.prune(pruning.prune(relu_mlp(), 0.25, rescale=True, where="hidden"), 0.5, where="output")
    text = q.listing()
    assert "matrix W2 std=1.5 mask=0.25 rescale" in text and "readout(x3) std=1.5 mask=0.5" in text
    back = parse(text)
    assert {n.name: n for n in back} == {n.name: n for n in q}
    assert "mask p=0.25 (rescaled)" in q.listing("unicode") and "mask p=0.5" in q.listing("latex")
    with pytest.raises(ListingError, match="pruning probability p must be in") as info:
        parse("data xi\ninput U mask=1\nf = readout(relu(U xi))\n")
    assert (info.value.line, info.value.kind) == (2, "value")
    with pytest.raises(ListingError, match="'rescale' needs a mask"):
        parse("data xi\ninput U rescale\nf = readout(relu(U xi))\n")


def test_pruned_example_file():
    from pathlib import Path
    p = tp.parse_file(Path(__file__).parent.parent / "examples" / "pruned_mlp.tp")
    assert pruning.extra_scaling(p, check=False).ntk == pytest.approx(0.125, rel=1e-15)


def test_drawings_mark_masks():
    q = pruning.prune(tp.examples.mlp(2, "relu"), 0.5)
    src = tp.draw(q, backward=True, legend=True).source
    assert "M⊙" in src and "pruned M⊙W" in src
    assert "M⊙" not in tp.draw(pruning.pseudo_network(q)).source


# ---------------------------------------------------------------------------------------
# the limit
# ---------------------------------------------------------------------------------------

def test_q_cubed_and_rescaling_to_1e12():
    """SPEC §2 sanity check: L = 3, hidden and output layers pruned with q = 0.5."""
    p = relu_mlp()
    Kd = tp.kernels(p, X)
    Kp = tp.kernels(pruning.prune(p, 0.5, where="hidden+output"), X)
    Kr = tp.kernels(pruning.prune(p, 0.5, rescale=True, where="hidden+output"), X)
    for kind in ("nngp", "ntk"):
        assert np.max(np.abs(getattr(Kp, kind) / getattr(Kd, kind) - 0.125)) <= 1e-12
        assert np.max(np.abs(getattr(Kr, kind) / getattr(Kd, kind) - 1.0)) <= 1e-12


@pytest.mark.parametrize("L", [1, 2, 4])
@pytest.mark.parametrize("p", [0.25, 0.75])
def test_extra_scaling_is_q_to_the_number_of_pruned_layers(L, p):
    pr = pruning.prune(relu_mlp(L), p, where="hidden+output")
    es = pruning.extra_scaling(pr, X)
    q = 1 - p
    assert es.constant and es.ntk == pytest.approx(q ** L, rel=1e-15) and es.nngp == pytest.approx(q ** L)
    assert str(es.common_q()) == ("q" if L == 1 else f"q**{L}")
    assert es.checked["agrees"]
    lo, hi = es.checked["ntk"]
    assert abs(lo - q ** L) <= 1e-12 and abs(hi - q ** L) <= 1e-12
    assert "constant" in str(es)


def test_extra_scaling_says_when_it_is_not_a_constant():
    cases = {
        "bias": (pruning.prune(relu_mlp(3, b_std=0.2), 0.5, where="hidden+output"), "bias"),
        "erf": (pruning.prune(tp.examples.mlp(3, "erf", b_std=None), 0.5, where="hidden"), "homogeneous"),
        "input": (pruning.prune(relu_mlp(), 0.5), "masked input layer"),
        "mixed": (pruning.prune(pruning.prune(relu_mlp(), 0.5, where=["W2"]), 0.5, rescale=True, where=["W3"]),
                  None),
    }
    for name, (prog, word) in cases.items():
        es = pruning.extra_scaling(prog, X)
        if word is None:  # q_W2 and a rescaled W3: still a constant, q
            assert es.constant and es.ntk == pytest.approx(0.5)
            continue
        assert not es.constant and es.ntk is None, name
        assert any(word in r for r in es.reasons), (name, es.reasons)
        lo, hi = es.checked["ntk"]
        assert hi - lo > 1e-4 and es.checked["agrees"], name
        assert "NOT a constant" in es.summary()


def test_extra_scaling_with_rescaling_is_one_even_with_biases():
    es = pruning.extra_scaling(pruning.prune(relu_mlp(3, b_std=0.2), 0.3, rescale=True, where="hidden+output"), X)
    assert es.constant and es.ntk == 1.0 and es.checked["agrees"]


def test_linear_network_scales_even_with_a_masked_input_layer():
    p = tp.examples.mlp(2, "identity", b_std=None)
    es = pruning.extra_scaling(pruning.prune(p, 0.5), X)
    assert es.constant and es.ntk == pytest.approx(0.125) and es.checked["agrees"]


def test_homogeneity_degrees():
    from tpkernel.nonlin import get
    deg = pruning.homogeneity_degree
    assert deg(get("relu")) == 1 and deg(get("leaky_relu", 0.1)) == 1 and deg(get("abs")) == 1
    assert deg(get("step")) == 0 and deg(get("power", 3)) == 3
    assert deg(get("erf")) is None and deg(get("tanh")) is None and deg(get("gelu")) is None


def test_pseudo_network_has_the_limit_of_matrix_and_readout_masks():
    for rescale in (False, True):
        pr = pruning.prune(tp.examples.mlp(3, "tanh", b_std=0.3), 0.6, rescale=rescale, where="hidden+output")
        ps = pruning.pseudo_network(pr)
        assert not pruning.masked(ps)
        assert ps["W2"].std == pytest.approx(1.5 * (1.0 if rescale else math.sqrt(0.4)))
        a, b = tp.kernels(pr, X, **FAST), tp.kernels(ps, X, **FAST)
        np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-12)
        np.testing.assert_allclose(a.nngp, b.nngp, rtol=1e-12)


def test_rnn_with_a_pruned_recurrent_matrix():
    rnn = tp.examples.rnn(3)
    pr = pruning.prune(rnn, 0.5, where=["W"])
    data = tp.examples.sample_data(rnn, n=4)
    a, b = tp.kernels(pr, data), tp.kernels(pruning.pseudo_network(pr), data)
    np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-11)
    assert rel(a.ntk, tp.kernels(rnn, data).ntk) > 0.05  # pruning the recurrence changes the kernel


# -- the exact input-layer mixture --------------------------------------------------------

def _angle(q1, q2, c):
    """√(q1 q2) and the angle θ = atan2(√(q1 q2 − c²), c) (stable where cos θ ≈ ±1: a subset
    of one coordinate makes ξ_S and ξ'_S parallel)."""
    return np.sqrt(q1 * q2), np.arctan2(np.sqrt(np.maximum(q1 * q2 - c * c, 0.0)), c)


def _j1(q1, q2, c, r=None):
    """E[relu(u) relu(v)] (0 when a variance is 0: a row that kept no input); ``r``: √(q1q2 − c²)
    if known more accurately than from (q1, q2, c)."""
    s, th = _angle(q1, q2, c)
    r = np.sqrt(np.maximum(q1 * q2 - c * c, 0.0)) if r is None else r
    if r is not None:
        th = np.arctan2(r, c)
    return (r + (np.pi - th) * c) / (2 * np.pi)


def _j0(q1, q2, c, r=None):
    """E[step(u) step(v)], step(0) = 0."""
    s, th = _angle(q1, q2, c)
    if r is not None:
        th = np.arctan2(r, c)
    return np.where(s > 0, (np.pi - th) / (2 * np.pi), 0.0)


def _brute_force(x, p, rescale, su, sw, sv):
    """Bias-free relu net ξ → relu(U ξ) → relu(W ·) → readout, U masked: the mixture by hand."""
    N, d = x.shape
    q = 1 - p
    s2 = 1 / q if rescale else 1.0
    S = np.array([[(k >> j) & 1 for j in range(d)] for k in range(2 ** d)], float)
    P = q ** S.sum(1) * (1 - q) ** (d - S.sum(1))
    G = np.einsum("kd,id,jd->kij", S, x, x) / d  # ⟨ξ_S, ξ'_S⟩/d per subset
    C1 = su ** 2 * s2 * G
    dg = np.einsum("kii->ki", C1)
    # √(q q' − C²) of the first layer by Lagrange's identity on the kept coordinates,
    # |ξ_S|²|ξ'_S|² − ⟨ξ_S, ξ'_S⟩² = Σ_{a<b} S_a S_b (ξ_a ξ'_b − ξ_b ξ'_a)²: exactly 0 for a subset that
    # makes ξ_S and ξ'_S parallel (one kept coordinate), where (q, q', C) leave θ ~ 1e-8 of rounding
    cross = x[:, None, :, None] * x[None, :, None, :] - x[:, None, None, :] * x[None, :, :, None]
    R1 = su ** 2 * s2 * np.sqrt(np.einsum("ka,kb,ijab->kij", S, S, cross ** 2) / 2) / d
    J1 = _j1(dg[:, :, None], dg[:, None, :], C1, R1)
    J0 = _j0(dg[:, :, None], dg[:, None, :], C1, R1)
    K1 = np.tensordot(P, J1, 1)  # E_S V[relu](Σ1 | S)
    C2 = sw ** 2 * K1
    d2 = np.diag(C2)
    K2 = _j1(d2[:, None], d2[None, :], C2)
    D2 = sv ** 2 * _j0(d2[:, None], d2[None, :], C2)  # E[dh2 dh2']
    nngp = sv ** 2 * K2
    ntk = nngp + sw ** 2 * D2 * K1 + su ** 2 * s2 * np.tensordot(P, sw ** 2 * D2[None] * J0 * G, 1)
    return nngp, ntk


@pytest.mark.parametrize("p,rescale", [(0.5, False), (0.3, True), (0.8, False)])
def test_input_mask_mixture_matches_brute_force(p, rescale):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5))
    prog = tp.Program("two")
    xi = prog.data("xi")
    h = tp.relu(prog.input_layer("U", std=1.2, mask=Mask(p, rescale)) @ xi)
    h = tp.relu(prog.matrix("W", std=1.4) @ h)
    prog.output(h, std=0.9)
    K = tp.kernels(prog, x)
    nngp, ntk = _brute_force(x, p, rescale, 1.2, 1.4, 0.9)
    np.testing.assert_allclose(K.nngp, nngp, rtol=1e-12)
    np.testing.assert_allclose(K.ntk, ntk, rtol=1e-12)
    line = K.report.summary()
    assert "exact limit" in line and "32 masks" in line
    # not q times the dense kernel (the point of the exact limit)
    q = 1 - p
    dense = tp.kernels(pruning.dense(prog), x)
    assert rel(K.ntk, (1.0 if rescale else q) * dense.ntk) > 1e-3


def test_input_mask_with_several_steps_and_layers():
    """An RNN whose (shared) input layer is pruned: the same mask S for every step of a row;
    the pruned evaluation with p = 0 is the dense one; Monte Carlo agrees with exact."""
    rnn = tp.examples.rnn(3)
    data = tp.examples.sample_data(rnn, n=3, d=4)
    K0 = tp.kernels(pruning.prune(rnn, 0.0, where="input"), data)
    Kd = tp.kernels(rnn, data)
    np.testing.assert_allclose(K0.ntk, Kd.ntk, rtol=1e-12)
    pr = pruning.prune(rnn, 0.5, where="input")
    exact = tp.kernels(pr, data)
    mc = tp.kernels(pr, data, mask_exact_d=2, mask_samples=2048)
    summary = mc.report.summary()
    assert "MONTE CARLO" in summary and "standard error" in summary
    se = next(m["se_array"] for m in mc.report.masks if m.get("what") == "NTK")
    assert np.all(np.abs(mc.ntk - exact.ntk) <= 5 * se + 1e-12)
    assert rel(exact.ntk, tp.kernels(pruning.pseudo_network(pr), data).ntk) > 1e-3


def test_two_masked_input_layers_average_independently():
    prog = tp.Program("two_inputs")
    xi = prog.data("xi")
    a = tp.relu(prog.input_layer("U", mask=0.5) @ xi)
    b = tp.relu(prog.input_layer("V", mask=0.25) @ xi)
    prog.output(a * b)
    x = unit(np.random.default_rng(2).standard_normal((3, 3)))
    K = tp.kernels(prog, x)
    # E[relu(u)relu(u')]·E[relu(v)relu(v')]: independent masks, independent Gaussians
    one = {}
    for name, p in (("U", 0.5), ("V", 0.25)):
        single = tp.Program("one")
        xi1 = single.data("xi")
        single.output(tp.relu(single.input_layer(name, mask=p) @ xi1))
        one[name] = tp.kernels(single, x).nngp
    np.testing.assert_allclose(K.nngp, one["U"] * one["V"], rtol=1e-12)


# ---------------------------------------------------------------------------------------
# finite width
# ---------------------------------------------------------------------------------------

def test_masks_are_drawn_from_the_seed_and_pruned_weights_are_zero():
    pr = pruning.prune(relu_mlp(), 0.75)
    net = finite.sample(pr, 128, seed=3)
    for key in ("W2", "W3", "f"):
        M = net.masks[key]
        assert abs(M.mean() - 0.25) < 5 * math.sqrt(0.25 * 0.75 / M.size)
        assert np.all(net.params[key][~M] == 0) and np.all(net.params[key][M] != 0)
    net.evaluate(X)
    assert net.masks["U"].shape == (128, 4)
    again = finite.sample(pr, 128, seed=3)
    again.evaluate(X)
    assert all(np.array_equal(net.masks[k], again.masks[k]) for k in net.masks)
    other = finite.sample(pr, 128, seed=4)
    assert not np.array_equal(net.masks["W2"], other.masks["W2"])
    dense_net = finite.sample(pruning.dense(pr), 128, seed=3)  # same draws, pruned entries zeroed
    np.testing.assert_array_equal(net.params["W2"], np.where(net.masks["W2"], dense_net.params["W2"], 0.0))


@pytest.mark.parametrize("rescale", [False, True])
def test_empirical_ntk_is_the_jacobian_gram_of_kept_weights(rescale):
    """Θ̂ = Σ_p ⟨∂f/∂p, ∂f'/∂p⟩ over kept weights, for masked matrices, input layers, readouts
    and a weight-shared (recurrent) matrix."""
    tied = tp.Program("tied")  # W used twice, transposed: ∂f/∂W_ab = z_a dy_b
    xi = tied.data("xi")
    W = tied.matrix("W", std=1.3)
    tied.output(tp.relu(W.T @ tp.tanh(W.T @ tp.relu(tied.input_layer("U") @ xi))))
    for prog, data in ((relu_mlp(3, b_std=0.1), X), (tp.examples.rnn(3), tp.examples.sample_data(
            tp.examples.rnn(3), n=3)), (tied, X)):
        pr = pruning.prune(prog, 0.4, rescale=rescale)
        net = finite.sample(pr, 24, seed=1)
        K = net.kernels(data)
        J = net.jacobian(data)
        ntk = sum(J[k].reshape(len(K.ntk), -1) @ J[k].reshape(len(K.ntk), -1).T for k in J)
        np.testing.assert_allclose(K.ntk, ntk, rtol=1e-11, atol=1e-13)
        for key, M in net.masks.items():
            assert np.all(J[key][:, ~M] == 0)
        g = net.vjp(data, np.arange(1.0, len(K.ntk) + 1))
        assert all(np.all(g[key][~M] == 0) for key, M in net.masks.items())
        # the forward pass is the dense network with the kept weights scaled by s
        s = 1 / math.sqrt(0.6) if rescale else 1.0
        f = net.apply(data)
        params = {k: v * (s if k in net.masks else 1.0) for k, v in net.params.items()}
        plain = finite.sample(pruning.dense(pr), 24, params=params)
        np.testing.assert_allclose(plain.apply(data), f, rtol=1e-12)


def test_training_keeps_pruned_weights_at_zero():
    pr = pruning.prune(relu_mlp(2), 0.5)
    net = finite.sample(pr, 32, seed=0, input_dims=X.shape[1])
    y = np.sin(X[:, 0])
    before = {k: v.copy() for k, v in net.params.items()}
    finite.train(net, X, y, learning_rate=0.5, steps=5, inplace=True)
    for key, M in net.masks.items():
        assert np.all(net.params[key][~M] == 0)
        assert not np.allclose(net.params[key][M], before[key][M])  # the kept weights did move


def test_finite_width_approaches_the_pruned_limit():
    p = relu_mlp()
    for rescale, factor in ((False, 0.125), (True, 1.0)):
        pr = pruning.prune(p, 0.5, rescale=rescale, where="hidden+output")
        lim = tp.kernels(pr, X)
        Ks = [finite.empirical_kernels(pr, X, width=1024, seed=width_seed(s, 1024)) for s in range(8)]
        for kind in ("nngp", "ntk"):  # (benchmarks/pruning_study.py: width 2048, 16 seeds, within 3%)
            mean = np.mean([getattr(k, kind) for k in Ks], axis=0)
            assert rel(mean, getattr(lim, kind)) < 0.12
            np.testing.assert_allclose(getattr(lim, kind), factor * getattr(tp.kernels(p, X), kind), rtol=1e-12)


def test_finite_width_sees_the_exact_input_mixture_not_q_theta():
    """d = 2 inputs with little overlap: the mixture is far from q·Θ; the finite network at
    width 512 (60 seeds) agrees with the exact limit along the direction exact − q·Θ."""
    x = unit(np.array([[1.0, 0.15], [0.2, 1.0], [1.0, 0.9], [1.0, -0.8]]))
    prog = pruning.prune(relu_mlp(2, std=1.0), 0.5, where="input")
    exact = tp.kernels(prog, x).ntk
    qtheta = tp.kernels(pruning.pseudo_network(prog), x).ntk
    D = exact - qtheta
    assert rel(exact, qtheta) > 0.03
    n = 512
    t = [np.sum((finite.empirical_kernels(prog, x, width=n, seed=width_seed(s, n)).ntk - qtheta) * D) / np.sum(D * D)
         for s in range(60)]
    mean, se = float(np.mean(t)), float(np.std(t, ddof=1) / np.sqrt(len(t)))
    assert abs(mean - 1.0) < 4 * se + 0.05  # the exact limit: projection 1
    assert mean > 4 * se  # q·Θ (projection 0) is excluded


def test_pruned_rnn_converges_at_rate_one_half():
    rnn = pruning.prune(tp.examples.rnn(3), 0.5, where=["W"])
    data = tp.examples.sample_data(rnn, n=3)
    conv = finite.convergence(rnn, data, widths=(64, 256, 1024), seeds=4, get="ntk", progress=False)
    assert -0.75 < conv.slope["ntk"] < -0.3


# ---------------------------------------------------------------------------------------
# experiments, formulas, CLI
# ---------------------------------------------------------------------------------------

def test_compare_side_by_side():
    pr = pruning.prune(relu_mlp(2), 0.5, where="hidden+output")
    sbs = pruning.compare(pr, X, width=128, seeds=2)
    assert set(sbs.empirical) == {"pruned", "pseudo", "dense"}
    assert sbs.limit_scaling("pruned") == pytest.approx(0.25) and sbs.limit_scaling("dense") == 1.0
    assert sbs.gap("pruned").shape == (2,) and np.all(sbs.gap("pruned") > 0)
    text = sbs.table()
    assert "pseudo" in text and "NTK gap" in text
    with pytest.raises(ValueError, match="no masks"):
        pruning.compare(relu_mlp(2), X)


def test_width_study_small():
    import matplotlib
    matplotlib.use("Agg")
    ws = pruning.width_study(relu_mlp(2), ps=(0.0, 0.5, 0.75), widths=(32, 64, 128), seeds=2, target_gap=0.2,
                             progress=False)
    assert ws.gaps.shape == (3, 3, 2) and np.all(ws.gaps > 0)
    assert set(ws.fit) == {"slope", "intercept", "r2"} and ws.fit["r2"] <= 1
    assert len(ws.needed_width) == 3 and np.all(ws.needed_width > 0)
    assert "needed width" in ws.table() and len(ws.rows()) == 9
    assert ws.plot_gaps() is not None and ws.plot_needed() is not None
    for method in ("free", "interpolate"):
        ws.method = method
        ws.__post_init__()
        assert np.all(ws.needed_width > 0)


def test_formulas_show_keep_probabilities():
    pr = pruning.prune(tp.examples.mlp(2, "relu"), 0.5, where="hidden+output")
    F = tp.formulas(pr)
    text = str(F)
    assert "q_W2*σ_W2²" in text and "q_v" in text and "q_W" in F.latex().replace("{", "").replace("}", "")
    np.testing.assert_allclose(F.evaluate(X).ntk, tp.kernels(pr, X).ntk, rtol=1e-12)
    assert "keep probability" in F.legend()
    F2 = tp.formulas(pruning.prune(tp.examples.mlp(2, "relu"), 0.5, rescale=True))
    assert "q_" not in str(F2)  # rescaling cancels the factor
    F3 = tp.formulas(pruning.prune(tp.examples.mlp(2, "relu"), 0.5))
    assert "pruned input layer" in F3.legend() and "q_U" in str(F3)


def test_cli_prune(capsys):
    from tpkernel.cli import main
    assert main(["prune", "mlp", "-p", "0.5", "--where", "hidden+output"]) == 0
    out = capsys.readouterr().out
    assert "matrix W2 std=1.5 mask=0.5" in out and "extra scaling" in out and "pruned / dense" in out
    assert main(["prune", "mlp", "-p", "0.5", "--where", "W2", "--rescale", "--width", "64", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "mask=0.5 rescale" in out and "pseudo" in out
    assert main(["prune", "mlp", "-p", "1.5"]) == 2
    assert "pruning probability" in capsys.readouterr().err
    assert main(["prune", "mlp", "-p", "0.5", "--where", "nope"]) == 2
