"""tpkernel against independent implementations of published recursions."""

import numpy as np
import pytest

import tpkernel as tp
import reference_impls as R


def rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b))


@pytest.mark.parametrize("sigmas", [(1.0, 1.0, None, 1.0), (1.2, 0.9, 0.3, 1.1)])
def test_erf_rnn_matches_tensor_programs_ii_recursion(sigmas):
    """TP II §3.2 / App. E: erf RNN, last-state readout, sequences of lengths 3, 5 and 4."""
    w, u, b, v = sigmas
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((L, 4)) for L in (3, 5, 4)]
    ys = [rng.standard_normal((L, 4)) for L in (2, 5)]
    p = tp.examples.rnn(5, "erf", "last", w_std=w, u_std=u, b_std=b, v_std=v)
    for a, c in ((xs, None), (xs, ys)):
        k = tp.kernels(p, a, c)
        nngp, ntk = R.rnn_erf_ntk(a, a if c is None else c, sigma_w=w, sigma_u=u, sigma_b=b or 0.0, sigma_v=v)
        assert rel(k.nngp, nngp) <= 1e-10
        assert rel(k.ntk, ntk) <= 1e-10


def test_rnn_lengths_given_as_padded_array():
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((L, 3)) for L in (3, 5, 4)]
    padded = np.zeros((3, 5, 3))
    for i, s in enumerate(xs):
        padded[i, :len(s)] = s
    padded[0, 3:] = 99.0  # padding is ignored
    p = tp.examples.rnn(5, "erf", "last")
    a = tp.kernels(p, xs)
    b = tp.kernels(p, padded, lengths1=np.array([3, 5, 4]))
    assert np.array_equal(a.ntk, b.ntk) and np.array_equal(a.nngp, b.nngp)


def test_relu_mlp_matches_jacot_arora_recursion():
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((4, 6)), rng.standard_normal((3, 6))
    for depth in (1, 3, 6):
        p = tp.examples.mlp(depth, "relu", w_std=1.4, b_std=0.3)
        k = tp.kernels(p, x1, x2)
        nngp, ntk = R.mlp_relu_ntk(x1, x2, depth, 1.4, 0.3)
        assert rel(k.nngp, nngp) <= 1e-10
        assert rel(k.ntk, ntk) <= 1e-10


def test_arora_toy_ntk_of_the_pruning_paper():
    """SPEC §4: bias-free 3-hidden-layer ReLU MLP, W ~ N(0, 1), activations scaled by √(2/n).

    In NTK parametrisation: U has std 1 on ⟨ξ,ξ'⟩ (so ξ is scaled by √d to cancel the 1/d),
    the √2 of each activation moves into the next layer's std."""
    np.random.seed(1)
    x = np.random.random(10)
    y = np.random.random(10)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    p = tp.Program("arora")
    xi = p.data("xi")
    h = tp.relu(p.input_layer("W1", std=1.0) @ xi)
    for l in (2, 3):
        h = tp.relu(p.matrix(f"W{l}", std=np.sqrt(2)) @ h)
    p.output(h, std=np.sqrt(2))
    k = tp.kernels(p, np.stack([x, y]) * np.sqrt(10))
    assert abs(k.ntk[0, 1] - 2.4287229440232556) <= 1e-12
    assert abs(k.ntk[0, 0] - 4.0) <= 1e-12 and abs(k.ntk[1, 1] - 4.0) <= 1e-12
    assert abs(k.ntk[0, 1] - R.arora_toy_ntk(x, y)) <= 1e-12
