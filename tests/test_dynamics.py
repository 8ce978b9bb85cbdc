"""Kernel gradient descent (tpkernel.dynamics) and finite networks trained by gradient descent."""

import numpy as np
import pytest
import scipy.linalg

import tpkernel as tp
from tpkernel import dynamics


def _problem(seed=42):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((5, 5))
    K = A @ A.T + 0.1 * np.eye(5)
    y, f0 = rng.standard_normal((5, 1)), rng.standard_normal((5, 1))
    Kt, f0t = rng.standard_normal((2, 5)), rng.standard_normal((2, 1))
    return K, y.ravel(), f0.ravel(), Kt, f0t.ravel()


def test_continuous_time_matches_neural_tangents():
    """Reference values from neural_tangents 0.6.5 (jax 0.4.23, float64):
    nt.predict.gradient_descent_mse(K, y, learning_rate=0.7)(3.0, f0, f0t, Kt) on _problem()."""
    K, y, f0, Kt, f0t = _problem()
    tr, te = dynamics.gradient_descent_mse(K, y, learning_rate=0.7)(3.0, f0, f0t, Kt)
    nt_tr = [0.05606162324008857, 0.00230963246965421, -0.16029566395235634, 0.2173306618606219,
             -0.3164422986354384]
    nt_te = [-0.5370812743256809, 0.6332528311941883]
    assert np.allclose(tr, nt_tr, rtol=1e-12, atol=1e-14)
    assert np.allclose(te, nt_te, rtol=1e-12, atol=1e-14)


def test_continuous_time_matches_matrix_exponential():
    K, y, f0, Kt, f0t = _problem(1)
    eta, t, N = 0.3, 2.5, 5
    E = scipy.linalg.expm(-eta * K * t / N)
    dyn = dynamics.KernelDynamics(K, y, eta)
    assert np.allclose(dyn.f_train(t, f0), y + E @ (f0 - y), rtol=1e-12)
    test = f0t - Kt @ np.linalg.solve(K, (np.eye(N) - E) @ (f0 - y))
    assert np.allclose(dyn.f_test(t, f0, f0t, Kt), test, rtol=1e-10)
    ts = np.array([0.0, 1.0, t])
    assert dyn.f_train(ts, f0).shape == (3, 5) and np.allclose(dyn.f_train(ts, f0)[0], f0)
    # t = ∞: interpolation of the training targets, kernel regression on the test points
    assert np.allclose(dyn.f_train(np.inf, f0), y)
    assert np.allclose(dyn.f_test(np.inf, f0, f0t, Kt), f0t + Kt @ np.linalg.solve(K, y - f0))


def test_discrete_closed_form_equals_iteration():
    K, y, f0, Kt, f0t = _problem(2)
    eta = 1.7 * 5 / np.linalg.eigvalsh(K).max()  # past 1 for the fastest mode: oscillating but stable
    tr, te = dynamics.kernel_gd(K, y, f0, eta, 25, Kt, f0t)
    dyn = dynamics.KernelDynamics(K, y, eta, discrete=True)
    steps = np.arange(26)
    assert np.allclose(dyn.f_train(steps, f0), tr, rtol=1e-10, atol=1e-12)
    assert np.allclose(dyn.f_test(steps, f0, f0t, Kt), te, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="integer"):
        dyn.f_train(0.5, f0)


def test_singular_kernel_is_handled():
    """A rank-one kernel: the residual outside its range stays, test points move in its range."""
    u = np.array([1.0, 2.0, -1.0])
    K = np.outer(u, u)
    y, f0 = np.array([1.0, 0.0, 2.0]), np.zeros(3)
    for discrete in (False, True):
        dyn = dynamics.KernelDynamics(K, y, 0.5, discrete=discrete)
        f = dyn.f_train(200, f0)
        r = f - y
        assert np.all(np.isfinite(f)) and abs(r @ u) < 1e-8  # fitted along u
        assert np.allclose(r - (r @ u) / (u @ u) * u, f0 - y - ((f0 - y) @ u) / (u @ u) * u)
    dyn = dynamics.KernelDynamics(K, y, 0.5)
    assert np.all(np.isfinite(dyn.f_test(np.inf, f0, np.zeros(1), 2 * u[None])))


def test_shapes_are_checked():
    with pytest.raises(tp.ShapeError):
        dynamics.KernelDynamics(np.eye(3), np.zeros(4))
    pred = dynamics.gradient_descent_mse(np.eye(2), np.ones(2))
    assert np.allclose(pred(np.inf), np.ones(2))  # fx_train_0 = 0 by default
    with pytest.raises(ValueError, match="k_test_train"):
        pred(1.0, 0.0, np.zeros(1))
    with pytest.raises(tp.ShapeError, match=r"k_test_train has shape \(3, 4\), expected \(M, 2\)"):
        pred(1.0, 0.0, np.zeros(3), np.zeros((3, 4)))
    with pytest.raises(tp.ShapeError, match="fx_train_0 has 3 outputs for 2 training targets"):
        pred(1.0, np.zeros(3))


def test_bad_kernels_targets_and_rates_are_errors():
    """A non-symmetric or non-finite kernel, NaN targets, a negative learning rate: specific
    errors, never a prediction from a silently symmetrised kernel or a NaN."""
    with pytest.raises(ValueError, match=r"k_train_train is not symmetric \(max \|K - Kᵀ\| = 2\)"):
        dynamics.gradient_descent_mse(np.array([[1.0, 2.0], [0.0, 1.0]]), np.zeros(2))
    with pytest.raises(tp.NumericalError, match=r"k_train_train has a NaN or infinite entry \(at index \(0, 1\)\)"):
        dynamics.gradient_descent_mse(np.array([[1.0, np.nan], [np.nan, 1.0]]), np.zeros(2))
    with pytest.raises(tp.NumericalError, match=r"y_train has a NaN or infinite entry \(at index 1\)"):
        dynamics.gradient_descent_mse(np.eye(2), np.array([0.0, np.inf]))
    for rate in (-0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="learning_rate must be a finite number >= 0"):
            dynamics.gradient_descent_mse(np.eye(2), np.zeros(2), learning_rate=rate)
    p = tp.examples.mlp(1)
    x = np.random.default_rng(0).standard_normal((3, 2))
    net = tp.finite.sample(p, 8, seed=0)
    with pytest.raises(tp.NumericalError, match=r"y has a NaN or infinite entry \(at index 2\)"):
        tp.finite.train(net, x, np.array([0.0, 1.0, np.nan]), learning_rate=0.1, steps=1)
    with pytest.raises(ValueError, match="learning_rate must be a finite number >= 0, got -0.1"):
        tp.finite.train(net, x, np.zeros(3), learning_rate=-0.1, steps=1)


def test_wide_network_follows_kernel_gradient_descent(tmp_path):
    """Gradient descent on an erf MLP against kernel GD with the limiting NTK, same f_0:
    the relative gap after 20 steps shrinks with width (like n^{-1/2}: by ~4 from 32 to 512)."""
    import matplotlib
    matplotlib.use("Agg")
    p = tp.examples.mlp(2, "erf")
    x = tp.examples.sample_data(p, n=8, seed=0)
    x_test = tp.examples.sample_data(p, n=4, seed=1)
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1]
    c = dynamics.compare_training(p, x, y, x_test, widths=(32, 512), seeds=6, steps=20, progress=False)
    assert c.gap_test.shape == (2, 6)
    for kind in ("train", "test"):
        assert c.mean(kind)[1] < 0.7 * c.mean(kind)[0]
    assert c.mean("test")[1] < 0.15
    assert "log-log slope" in str(c) and len(c.rows()) == 2
    steps, dnet, dker, _, _ = c.curves[512]
    assert dnet.shape == dker.shape == (21, 4) and np.all(dnet[0] == 0)
    axes = c.plot()
    axes[0].figure.savefig(tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000
