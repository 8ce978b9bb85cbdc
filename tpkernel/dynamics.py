r"""Infinite-width training: kernel gradient descent on the MSE, and its comparison with
finite networks trained by gradient descent (Tensor Programs IIb, main theorem).

Loss L = 1/(2N) Σ_i (f(ξ_i) − y_i)² (neural-tangents' convention, normalised by the
number of targets), learning rate η.  In the limit the outputs follow kernel gradient
descent with the limiting NTK Θ:

  discrete steps:   f_{k+1} = f_k − (η/N) Θ(·, X) (f_k(X) − y)
  continuous time:  d f_t/dt = −(η/N) Θ(·, X) (f_t(X) − y)

Both have closed forms through the eigendecomposition Θ(X, X) = V diag(λ) Vᵀ, with
r_0 = f_0(X) − y and c = η/N:

  train:  f_t(X) − f_0(X) = V diag(g(λ) λ) Vᵀ r_0
  test:   f_t(x) − f_0(x) = Θ(x, X) V diag(g(λ)) Vᵀ r_0,

  g(λ) = (e^{−cλt} − 1)/λ   (continuous),   g(λ) = ((1 − cλ)^k − 1)/λ   (k steps),

with g(0) = −ct (−ck).  The prediction is driven by the *same* f_0 as the network it is
compared with: the kernel describes the change f_t − f_0, the random initial function
f_0 is the network's own.  :func:`compare_training` trains finite networks of several
widths (:func:`tpkernel.finite.train`) and measures the relative gap

  ‖(f_T − f_0)_network − (f_T − f_0)_kernel‖ / ‖(f_T − f_0)_kernel‖

on the train and test inputs; it shrinks like n^{-1/2}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .errors import NumericalError, ShapeError, check_learning_rate, finite_array, real_array
from .ir import Program

Array = np.ndarray

__all__ = ["KernelDynamics", "gradient_descent_mse", "kernel_gd", "compare_training", "TrainingComparison"]


#: eigenvalues of Θ(X, X) with |λ| <= N · eps · max |λ| are rounding: they count as zero
def _rounding_zero(evals: Array) -> Array:
    """The eigenvalues with those within the rounding tolerance N·eps·max|λ| set to 0 (of either
    sign: a PSD kernel's null space comes out of eigh as ±1e-17·λ_max).  Every other eigenvalue
    is kept as it is, negative ones included: the closed form is exact for any symmetric
    kernel."""
    if evals.size == 0:
        return evals
    tol = evals.size * np.finfo(float).eps * float(np.max(np.abs(evals)))
    return np.where(np.abs(evals) <= tol, 0.0, evals)


def _gain(lam: Array, c: float, t, discrete: bool, n: int | None = None) -> Array:
    """g(λ) for every time in t: shape (len(t), len(λ)); ``lam`` from :func:`_rounding_zero`.

    λ = 0 (the null space): g = −c t, the limit of the formula, and 0 at t = ∞ (the kernel
    does not move the outputs along its null space).  A learning rate of 0: g = 0 (f_t = f_0
    for every t, ∞ included).  Divergence is a NumericalError: discrete steps with
    η λ_max / N > 2 (any number of steps >= 1); t = ∞ with a mode that does not converge
    (λ < 0, or η λ / N >= 2 for steps); values that overflow float64 (naming the time)."""
    t = real_array("t", t).reshape(-1, 1)
    if np.any(t < 0) or np.any(np.isnan(t)):
        raise ValueError("times must be >= 0")
    if discrete and np.any(t[np.isfinite(t)] != np.rint(t[np.isfinite(t)])):
        raise ValueError("discrete dynamics: t counts steps and must be an integer")
    lam = lam[None, :]
    if c == 0.0 or lam.size == 0:
        return np.zeros((t.shape[0], lam.shape[1]))
    zero = lam == 0.0
    x = c * lam
    n = lam.size if n is None else n
    lr = c * n
    if discrete and np.any(x > 2 * (1 + 1e-12)) and np.any(t >= 1):
        top = float(np.max(lam))
        raise NumericalError(
            f"kernel gradient descent diverges from step 1: learning rate {lr:.6g} exceeds 2N/λ_max = "
            f"{2 * n / top:.6g} (N = {n}, λ_max = {top:.6g}), so the top mode of f_k − y is multiplied by "
            f"1 − ηλ_max/N = {1 - c * top:.6g} at every step (|·| > 1)")
    if np.any(np.isinf(t)):
        stuck = (lam < 0) | (x >= 2) if discrete else lam < 0
        if np.any(stuck):
            bad = float(np.min(lam)) if np.any(lam < 0) else float(np.max(lam))
            why = (f"the kernel has the negative eigenvalue {bad:.6g} (λ_max = {float(np.max(lam)):.6g}): it is "
                   "not positive semi-definite, and gradient descent diverges along it" if bad < 0 else
                   f"ηλ_max/N = {c * bad:.6g} >= 2: the top mode oscillates or grows at every step")
            raise NumericalError(f"kernel gradient descent has no limit as t → ∞: {why}")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if discrete:
            below = (x > 0) & (x < 1)  # 1 - cλ in (0, 1): (1 - cλ)^k - 1 = expm1(k log1p(-cλ)) keeps precision
            num = np.where(below, np.expm1(t * np.log1p(-np.where(below, x, 0.0))),
                           (1.0 - np.where(below, 0.0, x)) ** t - 1.0)
        else:
            num = np.expm1(-x * np.where(zero, 0.0, t))
        null = np.where(np.isinf(t), 0.0, -c * t) * np.ones_like(lam)
        g = np.where(zero, null, num / np.where(zero, 1.0, lam))
    if not np.all(np.isfinite(g)):
        k = int(np.argwhere(~np.isfinite(g))[0][0])
        unit = "step" if discrete else "time"
        raise NumericalError(f"kernel gradient descent overflows float64 at {unit} t = {float(t[k, 0]):.6g}: the mode "
                             f"λ = {float(np.min(lam)):.6g} (the kernel is not positive semi-definite) grows "
                             f"like {'(1 − ηλ/N)^k' if discrete else 'exp(−ηλt/N)'}")
    return g


@dataclass
class KernelDynamics:
    """Kernel gradient descent on the MSE with kernel ``k_train_train`` (N, N).

    ``f_train(t, f0)`` and ``f_test(t, f0_train, f0_test, k_test_train)`` give the outputs
    after time t (``discrete=False``: t ≥ 0 real, continuous time in units of the
    learning rate) or after t steps (``discrete=True``); t may be an array (the result
    then has a leading time axis).
    """

    k_train_train: Array
    y_train: Array
    learning_rate: float = 1.0
    discrete: bool = False
    evals: Array = field(init=False, repr=False)
    evecs: Array = field(init=False, repr=False)
    lam: Array = field(init=False, repr=False)

    def __post_init__(self) -> None:
        k = finite_array("k_train_train", self.k_train_train)
        y = finite_array("y_train", self.y_train).reshape(-1)
        if k.shape != (y.size, y.size):
            raise ShapeError(f"k_train_train has shape {k.shape}, expected ({y.size}, {y.size})")
        asym = float(np.max(np.abs(k - k.T), initial=0.0))
        if asym > 1e-8 * float(np.max(np.abs(k), initial=0.0)):
            raise ValueError(f"k_train_train is not symmetric (max |K - Kᵀ| = {asym:.3g}): a kernel of the "
                             "training inputs with themselves is")
        check_learning_rate(self.learning_rate)
        self.k_train_train, self.y_train = k, y
        self.evals, self.evecs = np.linalg.eigh(0.5 * (k + k.T))  # symmetric up to rounding
        self.lam = _rounding_zero(self.evals)  # negative eigenvalues are kept: the closed form is exact

    @property
    def c(self) -> float:
        return self.learning_rate / self.y_train.size

    def _coeffs(self, t, f0_train) -> tuple[Array, bool]:
        """diag(g) Vᵀ r_0 for each time: (len(t), N)."""
        scalar = np.ndim(t) == 0
        f0 = finite_array("f0_train", f0_train).reshape(-1)
        if f0.size != self.y_train.size:
            raise ShapeError(f"f0_train has {f0.size} outputs for {self.y_train.size} training targets")
        r0 = f0 - self.y_train
        check_learning_rate(self.learning_rate)
        g = _gain(self.lam, self.c, t, self.discrete, self.y_train.size)
        return g * (self.evecs.T @ r0)[None, :], scalar

    def f_train(self, t, f0_train) -> Array:
        """f_t on the training inputs."""
        a, scalar = self._coeffs(t, f0_train)
        df = (a * self.lam[None, :]) @ self.evecs.T
        out = real_array("f0_train", f0_train).reshape(1, -1) + df
        return out[0] if scalar else out

    def f_test(self, t, f0_train, f0_test, k_test_train) -> Array:
        """f_t on test inputs, given Θ(x_test, X_train) (M, N) and the test outputs f_0."""
        a, scalar = self._coeffs(t, f0_train)
        k = finite_array("k_test_train", k_test_train)
        if k.ndim != 2 or k.shape[1] != self.y_train.size:
            raise ShapeError(f"k_test_train has shape {k.shape}, expected (M, {self.y_train.size})")
        df = (a @ self.evecs.T) @ k.T
        out = finite_array("f0_test", f0_test).reshape(1, -1) + df
        return out[0] if scalar else out


def gradient_descent_mse(k_train_train: Array, y_train: Array, learning_rate: float = 1.0, *,
                         discrete: bool = False):
    """``predict_fn(t, fx_train_0=0., fx_test_0=None, k_test_train=None)``: the outputs of
    kernel gradient descent on 1/(2N) Σ (f − y)² after time (or ``discrete``: steps) t,
    on the train set, or ``(train, test)`` when test outputs are given (the signature of
    ``neural_tangents.predict.gradient_descent_mse``, same loss normalisation)."""
    dyn = KernelDynamics(k_train_train, y_train, learning_rate, discrete)

    def predict_fn(t, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        if np.size(fx_train_0) not in (1, dyn.y_train.size):
            raise ShapeError(f"fx_train_0 has {np.size(fx_train_0)} outputs for {dyn.y_train.size} training targets")
        f0 = np.broadcast_to(real_array("fx_train_0", fx_train_0), dyn.y_train.shape)
        train = dyn.f_train(t, f0)
        if fx_test_0 is None:
            return train
        if k_test_train is None:
            raise ValueError("k_test_train is needed for test predictions")
        f0t = np.broadcast_to(real_array("fx_test_0", fx_test_0), (np.shape(k_test_train)[0],))
        return train, dyn.f_test(t, f0, f0t, k_test_train)

    return predict_fn


def kernel_gd(k_train_train: Array, y_train: Array, f0_train: Array, learning_rate: float, steps: int,
              k_test_train: Array | None = None, f0_test: Array | None = None) -> tuple[Array, Array | None]:
    """Kernel gradient descent iterated step by step (the reference for the closed form):
    f_{k+1} = f_k − (η/N) Θ(·, X)(f_k(X) − y).  Returns (steps+1, N) and (steps+1, M).
    Inputs are checked as by :class:`KernelDynamics`; an iterate that is not finite is a
    NumericalError naming the step."""
    y = finite_array("y_train", y_train).reshape(-1)
    K = finite_array("k_train_train", k_train_train)
    if K.shape != (y.size, y.size):
        raise ShapeError(f"k_train_train has shape {K.shape}, expected ({y.size}, {y.size})")
    c = check_learning_rate(learning_rate) / y.size
    f = finite_array("f0_train", f0_train).reshape(-1).copy()
    Kt = None if k_test_train is None else finite_array("k_test_train", k_test_train)
    ft = None if f0_test is None else finite_array("f0_test", f0_test).reshape(-1).copy()
    out, out_t = [f.copy()], [None if ft is None else ft.copy()]
    for step in range(1, steps + 1):
        r = f - y
        with np.errstate(over="ignore", invalid="ignore"):
            if ft is not None:
                ft = ft - c * Kt @ r
            f = f - c * K @ r
        if not (np.all(np.isfinite(f)) and (ft is None or np.all(np.isfinite(ft)))):
            raise NumericalError(f"kernel gradient descent diverged: the outputs overflow float64 at step {step} "
                                 f"(learning rate {learning_rate}; stable below 2N/λ_max for a PSD kernel)")
        out.append(f.copy())
        out_t.append(None if ft is None else ft.copy())
    return np.asarray(out), (None if ft is None else np.asarray(out_t))


# -------------------------------------------------------------------------------------
# finite networks against the kernel
# -------------------------------------------------------------------------------------

@dataclass
class TrainingComparison:
    """Gaps between finite networks trained by gradient descent and kernel gradient descent
    with the limiting NTK, driven by the same f_0.

    ``gap_train``/``gap_test`` (widths × seeds): ‖Δf_net − Δf_ker‖/‖Δf_ker‖ after ``steps``
    steps on the train/test inputs (Δf = f_T − f_0); ``slope``: log-log slopes of their
    means over seeds.  ``curves[width]`` holds, for the first seed, the trajectories
    (steps, Δf_net on test, Δf_ker on test, Δf_net on train, Δf_ker on train).
    """

    program: str
    widths: Array
    seeds: tuple[int, ...]
    steps: int
    learning_rate: float
    gap_train: Array
    gap_test: Array
    curves: dict[int, tuple[Array, Array, Array, Array, Array]] = field(repr=False, default_factory=dict)
    slope: dict[str, float] = field(default_factory=dict)
    slope_stderr: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .finite.convergence import fit_slope
        rng = np.random.default_rng(0)
        for kind, g in (("train", self.gap_train), ("test", self.gap_test)):
            self.slope[kind] = fit_slope(self.widths, g.mean(axis=1))[0] if len(self.widths) > 1 else math.nan
            S = g.shape[1]
            boots = [fit_slope(self.widths, g[:, rng.integers(0, S, S)].mean(axis=1))[0] for _ in range(200)] \
                if S > 1 and len(self.widths) > 1 else [math.nan, math.nan]
            self.slope_stderr[kind] = float(np.std(boots, ddof=1))

    def mean(self, kind: str = "test") -> Array:
        return (self.gap_train if kind == "train" else self.gap_test).mean(axis=1)

    def spread(self, kind: str = "test") -> Array:
        g = self.gap_train if kind == "train" else self.gap_test
        return g.std(axis=1, ddof=1) if g.shape[1] > 1 else np.zeros(len(self.widths))

    def rows(self) -> list[dict]:
        return [{"width": int(n), "train_mean": float(self.mean("train")[i]), "train_std": float(self.spread("train")[i]),
                 "test_mean": float(self.mean("test")[i]), "test_std": float(self.spread("test")[i])}
                for i, n in enumerate(self.widths)]

    def table(self) -> str:
        lines = [f"{self.program}: gradient descent ({self.steps} steps, learning rate {self.learning_rate:.4g}) "
                 f"vs kernel gradient descent with the limiting NTK, {len(self.seeds)} seed(s) per width",
                 f"{'width':>7}  {'train mean':>12}  {'train std':>10}  {'test mean':>12}  {'test std':>10}"]
        for r in self.rows():
            lines.append(f"{r['width']:>7}  {r['train_mean']:>12.4e}  {r['train_std']:>10.2e}"
                         f"  {r['test_mean']:>12.4e}  {r['test_std']:>10.2e}")
        lines.append(f"log-log slope: train {self.slope['train']:+.3f} ± {self.slope_stderr['train']:.3f}, "
                     f"test {self.slope['test']:+.3f} ± {self.slope_stderr['test']:.3f}   (expected -0.5)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, axes=None, point: int = 0):
        """Two panels: Δf_t on test input ``point`` for each width (solid: network,
        dashed: kernel driven by the same f_0), and the gap against width (log-log)."""
        import matplotlib.pyplot as plt
        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        ax0, ax1 = axes
        for w, (steps, dnet, dker, _, _) in sorted(self.curves.items()):
            line, = ax0.plot(steps, dnet[:, point], lw=1.2, label=f"n = {w}")
            ax0.plot(steps, dker[:, point], ls="--", lw=1, color=line.get_color())
        ax0.set_xlabel("gradient descent step")
        ax0.set_ylabel(rf"$f_t(x_{{{point}}}) - f_0(x_{{{point}}})$ (test)")
        ax0.set_title("network (solid) vs kernel GD (dashed)")
        ax0.legend(fontsize=8)
        w = self.widths.astype(float)
        for kind in ("train", "test"):
            ax1.errorbar(w, self.mean(kind), yerr=self.spread(kind), marker="o", capsize=3,
                         label=f"{kind} (slope {self.slope[kind]:+.2f})")
        ax1.plot(w, self.mean("test")[0] * (w / w[0]) ** -0.5, color="gray", ls="--", lw=1, label=r"$\propto n^{-1/2}$")
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlabel("width n")
        ax1.set_ylabel("relative gap after training")
        ax1.set_title(self.program)
        ax1.legend(fontsize=8)
        ax1.figure.tight_layout()
        return axes


def compare_training(program: Program, x_train, y_train, x_test, widths: Sequence[int] = (64, 256, 1024),
                     seeds: int | Iterable[int] = 4, *, steps: int = 100, learning_rate: float | None = None,
                     lengths_train=None, lengths_test=None, output: str | None = None,
                     limit_train=None, limit_test_train=None, progress: bool | None = None,
                     **limit_kw) -> TrainingComparison:
    """Train finite networks of each width (``seeds`` draws each) by full-batch gradient
    descent on 1/(2N) Σ (f − y)², and compare f_T − f_0 with discrete kernel gradient
    descent with the limiting NTK driven by the network's own f_0.

    ``learning_rate``: η (default 0.5 · N / λ_max(Θ), half the largest stable step of the
    kernel dynamics' fastest mode).  ``limit_train``/``limit_test_train``: the limiting
    NTK Θ(X, X) and Θ(x_test, X) if already computed (else ``tp.kernels(..., **limit_kw)``).
    """
    from .finite import sample, train
    from .finite.convergence import _progress, width_seed
    from .limit import kernels as limit_kernels

    seeds = tuple(range(seeds)) if isinstance(seeds, (int, np.integer)) else tuple(int(s) for s in seeds)
    widths = np.asarray(sorted(int(w) for w in widths))
    y = finite_array("y_train", y_train).reshape(-1)
    if limit_train is None:
        limit_train = limit_kernels(program, x_train, get="ntk", output=output, lengths1=lengths_train, **limit_kw)
    if limit_test_train is None:
        limit_test_train = limit_kernels(program, x_test, x_train, get="ntk", output=output,
                                         lengths1=lengths_test, lengths2=lengths_train, **limit_kw)
    dyn = KernelDynamics(limit_train, y, 1.0, discrete=True)
    if learning_rate is None:
        learning_rate = 0.5 * y.size / dyn.evals.max()
    dyn.learning_rate = float(learning_rate)
    gap_tr = np.zeros((len(widths), len(seeds)))
    gap_te = np.zeros((len(widths), len(seeds)))
    curves = {}
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
    with _progress(len(widths) * len(seeds), f"{program.name} training", progress) as bar:
        for i, n in enumerate(widths):
            for j, s in enumerate(seeds):
                net = sample(program, int(n), width_seed(s, n))
                traj = train(net, x_train, y, learning_rate=learning_rate, steps=steps, x_test=x_test,
                             lengths=lengths_train, lengths_test=lengths_test, output=output, inplace=True)
                ker_tr = dyn.f_train(traj.steps, traj.f_train[0]) - traj.f_train[0]
                ker_te = dyn.f_test(traj.steps, traj.f_train[0], traj.f_test[0], limit_test_train) - traj.f_test[0]
                gap_tr[i, j] = rel(traj.df_train[-1], ker_tr[-1])
                gap_te[i, j] = rel(traj.df_test[-1], ker_te[-1])
                if j == 0:
                    curves[int(n)] = (traj.steps, traj.df_test, ker_te, traj.df_train, ker_tr)
                del net, traj
                bar.update(1)
    return TrainingComparison(program.name, widths, seeds, steps, float(learning_rate), gap_tr, gap_te, curves)
