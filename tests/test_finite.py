"""Finite width (tpkernel.finite): sampling, forward/backward passes, empirical kernels.

The empirical NTK is checked against PyTorch autograd on the *same* parameter values: the
torch interpreter of tests/torch_interpreter.py (written from the program IR, with its own
data binding and pooling, not from tpkernel.finite) runs the sampled network, and its
Jacobian contraction Σ_p lr_p J_p J_pᵀ must agree to 1e-10 in float64.
"""

import math

import numpy as np
import pytest
import strategies as S
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tpkernel as tp
from tpkernel import finite

# ---------------------------------------------------------------------------------------
# the same parameter values in an independent torch interpreter (tests/torch_interpreter.py)
# ---------------------------------------------------------------------------------------


def torch_reference(net: finite.Network, x, output=None):
    """(f, {param: J (N, size)}, the torch network) by autograd on net's parameter values;
    ``tnet.ntk_from(J)`` is Σ_p lr_p J_p J_pᵀ."""
    pytest.importorskip("torch")
    from torch_interpreter import FiniteNet

    tnet = FiniteNet(net.program, x, net.width, output=output, params=net.params)
    f, J, _ = tnet.jacobians()
    return f, J, tnet


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _custom():
    """Readout bias, readout vector given as a bias, a transposed matrix, lr multipliers."""
    p = tp.Program("custom")
    xi = p.data("xi")
    U = p.input_layer("U", std=1.3, lr=0.5)
    W = p.matrix("W", std=1.1, lr=2.0)
    b = p.bias("b", std=0.3, lr=3.0)
    x1 = tp.gelu(U @ xi + b)
    x2 = tp.sin(W.T @ x1 - 0.5 * x1 + 0.2)
    v = p.bias("v", std=0.9, lr=0.7)
    p.output(tp.relu(x2) * tp.erf(x1), std=1.0, b_std=0.4, b_lr=1.5, vector=v)
    return p


PROGRAMS = {
    "mlp": (lambda: tp.examples.mlp(2, "relu"), 4),
    "resnet": (lambda: tp.examples.resnet(2), 4),
    "rnn": (lambda: tp.examples.rnn(3, "erf", "last", b_std=0.2), 5),  # one W, U, b for all steps
    "rnn-mean": (lambda: tp.examples.rnn(4, "tanh", "mean"), 5),
    "gated": (lambda: tp.examples.gated(3), 5),
    "custom": (_custom, 4),
}


# ---------------------------------------------------------------------------------------
# autograd agreement
# ---------------------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_empirical_ntk_equals_autograd(name):
    build, N = PROGRAMS[name]
    program = build()
    x = tp.examples.sample_data(program, n=N, d=3, seed=4)  # sequences of different lengths
    net = finite.sample(program, 40, seed=7, input_dims=3)
    K = finite.empirical_kernels(program, x, network=net)
    f_t, J, tnet = torch_reference(net, x)
    assert rel(net.apply(x), f_t) < 1e-12
    assert rel(K.ntk, tnet.ntk_from(J)) < 1e-10
    # per-parameter gradients: the Jacobian and a vector-Jacobian product
    jac = net.jacobian(x)
    g = np.linspace(-1.0, 2.0, len(f_t))
    vjp = net.vjp(x, g)
    for k in net.params:
        assert rel(jac[k].reshape(len(f_t), -1), J[k]) < 1e-10, k
        assert np.allclose(vjp[k].reshape(-1), g @ J[k], rtol=1e-10, atol=1e-12 * np.abs(J[k]).max()), k
    assert np.allclose(K.ntk, K.ntk.T, rtol=0, atol=1e-14 * np.abs(K.ntk).max())


@pytest.mark.torch
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipe=st.one_of(S.recipes(), S.recipes(sequence=True)), seed=st.integers(0, 2 ** 16))
def test_random_programs_ntk_equals_autograd(recipe, seed):
    program = S.build(recipe)
    x = S.inputs(seed, 3) if recipe.T is None else S.sequences(seed, 3, recipe.T)
    net = finite.sample(program, 16, seed=seed)
    K = net.kernels(x)
    f_t, J, tnet = torch_reference(net, x)
    assert rel(net.apply(x), f_t) < 1e-10
    assert rel(K.ntk, tnet.ntk_from(J)) < 1e-10


@pytest.mark.torch
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("name", ["mlp", "rnn"])
def test_pruned_empirical_ntk_equals_autograd_on_kept_weights(name, rescale):
    """A pruned network is the dense one with the kept weights scaled by s (1/√q with
    rescaling); its NTK sums over kept weights only.  Autograd on the dense network at the
    scaled values, times s and the mask, gives the same Jacobians and NTK."""
    build, N = PROGRAMS[name]
    pruned = tp.pruning.prune(build(), 0.4, rescale=rescale)
    x = tp.examples.sample_data(pruned, n=N, d=3, seed=4)
    net = finite.sample(pruned, 40, seed=7, input_dims=3)
    s = 1 / math.sqrt(0.6) if rescale else 1.0
    dense = finite.sample(tp.pruning.dense(pruned), 40,
                          params={k: v * (s if k in net.masks else 1.0) for k, v in net.params.items()})
    f_t, J, tnet = torch_reference(dense, x)
    assert net.masks and rel(net.apply(x), f_t) < 1e-12
    for k, M in net.masks.items():
        J[k] = J[k] * (s * M.reshape(-1))
    assert rel(net.kernels(x, get="ntk"), tnet.ntk_from(J)) < 1e-10

# ---------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------

def test_parametrization_and_weight_sharing():
    p = tp.examples.rnn(4, "erf", b_std=0.1)
    net = finite.sample(p, 32, seed=0, input_dims=3)
    assert set(net.params) == {"U", "W", "b", "f"}  # one W for the four steps
    assert net.params["W"].shape == (32, 32) and net.params["U"].shape == (32, 3)
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    ev = net.evaluate(x, backward=False)
    W, U, b = net.params["W"], net.params["U"], net.params["b"]
    s = None
    for t in range(4):  # the recursion by hand: σ_W W s / √n + σ_U U ξ_t / √d + σ_b β
        h = U @ x[:, t].T / math.sqrt(3) + 0.1 * b[:, None]
        if s is not None:
            h = h + W @ s / math.sqrt(32)
        s = tp.nonlin.get("erf")(h)
    assert np.allclose(ev.values["s4"], s, rtol=1e-13)
    assert np.allclose(ev.f, net.params["f"] @ s / math.sqrt(32), rtol=1e-13)


def test_draws_depend_on_seed_and_name_only():
    a = finite.sample(tp.examples.rnn(3), 16, seed=5, input_dims=3)
    b = finite.sample(tp.examples.rnn(2), 16, seed=5)  # input layer drawn later, on data
    b.apply(np.zeros((1, 2, 3)))
    for k in ("U", "W", "f"):
        assert np.array_equal(a.params[k], b.params[k])
    c = finite.sample(tp.examples.rnn(3), 16, seed=6, input_dims=3)
    assert not np.allclose(a.params["W"], c.params["W"])
    g1 = finite.sample(tp.examples.rnn(3), 16, seed=np.random.default_rng(1), input_dims=3)
    g2 = finite.sample(tp.examples.rnn(3), 16, seed=np.random.default_rng(1), input_dims=3)
    assert np.array_equal(g1.params["W"], g2.params["W"])
    loaded = finite.sample(tp.examples.rnn(3), 16, seed=99, params=g1.params)
    x = np.ones((2, 3, 3))
    assert np.array_equal(loaded.apply(x), g1.apply(x))
    z = np.concatenate([g1.params[k].ravel() for k in ("U", "W", "f")])
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1  # N(0, 1)
    with pytest.raises(ValueError):
        finite.sample(tp.examples.rnn(3), 0)
    with pytest.raises(ValueError):
        finite.sample(tp.examples.rnn(3), 8, seed=-1)


def test_padded_steps_contribute_nothing():
    """A length-2 sequence in a T=3 program: the same kernels as the T=2 program
    (same seed and names: the same parameter values)."""
    p3, p2 = tp.examples.rnn(3, "erf", "mean"), tp.examples.rnn(2, "erf", "mean")
    rng = np.random.default_rng(3)
    seqs = [rng.standard_normal((2, 3)), rng.standard_normal((2, 3))]
    K3 = finite.empirical_kernels(p3, seqs + [rng.standard_normal((3, 3))], width=24, seed=1)
    K2 = finite.empirical_kernels(p2, seqs, width=24, seed=1)
    assert np.allclose(K3.ntk[:2, :2], K2.ntk, rtol=1e-13)
    assert np.allclose(K3.nngp[:2, :2], K2.nngp, rtol=1e-13)


def test_cross_kernels_are_blocks_of_the_joint_kernel():
    p = tp.examples.gated(3)
    x = tp.examples.sample_data(p, n=5, seed=2)
    net = finite.sample(p, 24, seed=0)
    K = net.kernels(x)
    K12 = net.kernels(x[:2], x[2:])
    assert np.allclose(K12.ntk, K.ntk[:2, 2:], rtol=1e-12)
    assert np.allclose(K12.nngp, K.nngp[:2, 2:], rtol=1e-12)
    assert isinstance(K, tp.Kernels) and net.kernels(x, get="ntk").shape == (5, 5)


def test_fast_maps_equal_the_registry():
    from tpkernel.finite.network import numpy_map
    x = np.linspace(-3, 3, 61)
    for fam, params in [("abrelu", (0.0, 1.0)), ("abrelu", (-0.3, 1.2)), ("abrelu", (0.0, 2.0)),
                        ("abstep", (0.0, 1.0)), ("abstep", (-0.3, 1.2)), ("abstep", (0.0, 2.0))]:
        fn = tp.nonlin.get(fam, *params)
        assert np.array_equal(numpy_map(fn)(x), fn(x)), (fam, params)


def test_shape_errors():
    p = tp.examples.mlp(2)
    net = finite.sample(p, 8, input_dims=3)
    with pytest.raises(tp.ShapeError, match="dimension 3"):
        net.apply(np.ones((2, 4)))
    with pytest.raises(tp.ShapeError, match="cotangent"):
        net.vjp(np.ones((2, 3)), np.ones(3))
    with pytest.raises(tp.ShapeError, match="shape"):
        finite.sample(p, 8, params={"W2": np.ones((4, 4))})
    with pytest.raises(tp.ProgramError, match="not trained variables"):
        finite.sample(p, 8, params={"W7": np.ones((8, 8))})


# ---------------------------------------------------------------------------------------
# convergence to the limit
# ---------------------------------------------------------------------------------------

def test_monte_carlo_mean_approaches_the_limit():
    """E over draws of the empirical NNGP is the limit up to O(1/n); the average of 24
    draws at width 512 is within a few percent."""
    p = tp.examples.rnn(3, "erf", "last")
    x = tp.examples.sample_data(p, n=4, seed=0)
    lim = tp.kernels(p, x)
    Ks = [finite.empirical_kernels(p, x, width=512, seed=s) for s in range(24)]
    assert finite.relative_error(np.mean([k.nngp for k in Ks], 0), lim.nngp) < 0.04
    assert finite.relative_error(np.mean([k.ntk for k in Ks], 0), lim.ntk) < 0.04


def test_convergence_table_slope_and_plot(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    p = tp.examples.mlp(2, "erf")
    x = tp.examples.sample_data(p, n=5, seed=0)
    c = finite.convergence(p, x, widths=(64, 256, 1024), seeds=6, progress=False)
    assert c.errors["ntk"].shape == (3, 6) and len(c.rows()) == 3
    for kind in ("nngp", "ntk"):
        assert c.mean(kind)[0] > c.mean(kind)[-1]
        assert -0.9 < c.slope[kind] < -0.2
    text = str(c)
    assert "log-log slope (NTK)" in text and "1024" in text
    ax = c.plot()
    ax.figure.savefig(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_one_gradient_step_moves_outputs_by_the_empirical_ntk():
    """f_1 − f_0 = −(η/N) Θ̂ (f_0 − y) + O(η²): our gradients and our NTK agree."""
    p = tp.examples.resnet(1, "gelu")
    x = tp.examples.sample_data(p, n=5, seed=1)
    y = np.sin(x[:, 0])
    net = finite.sample(p, 64, seed=2)
    theta = net.kernels(x, get="ntk")
    f0 = net.apply(x)
    for eta in (1e-3, 1e-4):
        traj = finite.train(net, x, y, learning_rate=eta, steps=1)
        pred = -eta / 5 * theta @ (f0 - y)
        assert np.abs(traj.df_train[-1] - pred).max() < 50 * eta ** 2 * np.abs(theta).max() ** 2
    assert np.array_equal(net.apply(x), f0)  # train() copied the network


def test_training_decreases_the_loss_and_honours_lr_multipliers():
    p = tp.Program("frozen")
    xi = p.data("xi")
    h = tp.relu(p.input_layer("U", lr=0.0) @ xi + p.bias("b", std=0.5))
    p.output(tp.erf(p.matrix("W") @ h))
    x = np.random.default_rng(0).standard_normal((6, 3))
    y = np.cos(x[:, 1])
    net = finite.sample(p, 32, seed=0, input_dims=3)
    traj = finite.train(net, x, y, learning_rate=0.5, steps=30, x_test=x[:2], record_every=10)
    assert list(traj.steps) == [0, 10, 20, 30] and traj.f_test.shape == (4, 2)
    assert traj.loss[-1] < 0.5 * traj.loss[0]
    assert np.array_equal(traj.network.params["U"], net.params["U"])  # lr = 0: frozen
    assert not np.array_equal(traj.network.params["W"], net.params["W"])


def test_cli_check(tmp_path, capsys):
    import matplotlib
    matplotlib.use("Agg")
    from tpkernel.cli import main
    out = tmp_path / "check.png"
    assert main(["check", "mlp-erf", "--widths", "32", "128", "--seeds", "2", "--no-progress",
                 "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "NTK mean" in text and "log-log slope (NTK)" in text and "128" in text
    assert out.stat().st_size > 1000


def test_convergence_needs_two_widths():
    p = tp.examples.get("mlp")
    x = tp.examples.sample_data(p, n=3)
    for widths in ([64], [64, 64], []):
        with pytest.raises(ValueError, match="two different widths"):
            finite.convergence(p, x, widths=widths, seeds=2, progress=False)
