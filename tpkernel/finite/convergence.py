r"""Monte Carlo over seeds, and convergence of the empirical kernels to the limit.

For each width n and seed s, the relative Frobenius error

  e(n, s) = ‖K̂_{n,s} − K‖_F / ‖K‖_F

of the empirical NNGP and NTK against the limit (:func:`tpkernel.kernels`).  The
fluctuations of K̂ are O(n^{-1/2}) (Tensor Programs I/II; the bias is O(1/n)), so
log mean_s e(n, s) against log n is a line of slope −1/2.  :func:`convergence` returns
the table and the fitted slope (least squares in log-log, with a bootstrap over seeds
for its standard error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..ir import Program
from ..limit.kernels import Kernels
from ..limit.kernels import kernels as limit_kernels
from .kernels import network_kernels
from .network import sample

Array = np.ndarray
DEFAULT_WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096)


def relative_error(estimate: Array, reference: Array) -> float:
    """‖estimate − reference‖_F / ‖reference‖_F."""
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def fit_slope(widths: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through (log n, log value)."""
    slope, intercept = np.polyfit(np.log(np.asarray(widths, float)), np.log(np.asarray(values, float)), 1)
    return float(slope), float(intercept)


def width_seed(seed: int, width: int) -> np.random.SeedSequence:
    """The seed of the network at (seed, width): independent draws across widths."""
    return np.random.SeedSequence([int(seed), int(width)])


@dataclass
class Convergence:
    """Relative Frobenius errors ``errors[kind]`` (widths × seeds) of the empirical kernels
    against ``limit``; ``slope[kind]`` the log-log slope of their mean over seeds,
    ``slope_stderr[kind]`` its bootstrap standard error (resampling seeds)."""

    program: str
    widths: Array
    seeds: tuple[int, ...]
    errors: dict[str, Array]
    limit: Kernels = field(repr=False)
    slope: dict[str, float] = field(default_factory=dict)
    intercept: dict[str, float] = field(default_factory=dict)
    slope_stderr: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(0)
        for kind, e in self.errors.items():
            self.slope[kind], self.intercept[kind] = fit_slope(self.widths, e.mean(axis=1))
            S = e.shape[1]
            if S > 1 and len(self.widths) > 1:
                boots = [fit_slope(self.widths, e[:, rng.integers(0, S, S)].mean(axis=1))[0] for _ in range(200)]
                self.slope_stderr[kind] = float(np.std(boots, ddof=1))
            else:
                self.slope_stderr[kind] = math.nan

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.errors)

    def mean(self, kind: str = "ntk") -> Array:
        """Mean over seeds of the relative error, per width."""
        return self.errors[kind].mean(axis=1)

    def spread(self, kind: str = "ntk") -> Array:
        """Standard deviation over seeds of the relative error, per width."""
        e = self.errors[kind]
        return e.std(axis=1, ddof=1) if e.shape[1] > 1 else np.zeros(len(self.widths))

    def rows(self) -> list[dict]:
        """The table as a list of dicts: width, and per kind the mean and spread."""
        out = []
        for i, n in enumerate(self.widths):
            row = {"width": int(n)}
            for kind in self.kinds:
                row[f"{kind}_mean"] = float(self.mean(kind)[i])
                row[f"{kind}_std"] = float(self.spread(kind)[i])
            out.append(row)
        return out

    def table(self) -> str:
        """The table as text, with the fitted slopes."""
        head = f"{'width':>7}" + "".join(f"  {k.upper() + ' mean':>12}  {k.upper() + ' std':>10}" for k in self.kinds)
        lines = [f"{self.program}: relative Frobenius error of the empirical kernels against the limit, "
                 f"{len(self.seeds)} seed(s) per width", head]
        for i, n in enumerate(self.widths):
            cells = "".join(f"  {self.mean(k)[i]:>12.4e}  {self.spread(k)[i]:>10.2e}" for k in self.kinds)
            lines.append(f"{int(n):>7}{cells}")
        for k in self.kinds:
            lines.append(f"log-log slope ({k.upper()}): {self.slope[k]:+.3f} ± {self.slope_stderr[k]:.3f}"
                         "   (expected -0.5)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, ax=None, kinds: Iterable[str] | None = None, fit: bool = True):
        """Log-log plot of the mean error (± spread over seeds) against width, with the
        fitted line and an n^{-1/2} guide; returns the matplotlib axes."""
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.5))
        w = self.widths.astype(float)
        for kind in (kinds or self.kinds):
            m, s = self.mean(kind), self.spread(kind)
            line = ax.errorbar(w, m, yerr=s, marker="o", capsize=3, lw=1.2,
                               label=f"{kind.upper()} (slope {self.slope[kind]:+.2f})")
            if fit:
                ax.plot(w, np.exp(self.intercept[kind]) * w ** self.slope[kind], ls=":",
                        color=line[0].get_color(), lw=1)
        m0 = self.mean(next(iter(kinds or self.kinds)))[0]
        ax.plot(w, m0 * (w / w[0]) ** -0.5, color="gray", ls="--", lw=1, label=r"$\propto n^{-1/2}$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("width n")
        ax.set_ylabel(r"$\|\hat K - K\|_F / \|K\|_F$")
        ax.set_title(self.program)
        ax.legend(fontsize=8)
        return ax


def _progress(total: int, desc: str, progress: bool | None):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=None if progress is None else not progress, leave=False)


def convergence(program: Program, X, widths: Sequence[int] = DEFAULT_WIDTHS, seeds: int | Iterable[int] = 8,
                *, get: str | Sequence[str] = ("nngp", "ntk"), output: str | None = None, lengths=None,
                limit: Kernels | None = None, progress: bool | None = None, **limit_kw) -> Convergence:
    """Relative Frobenius error of the empirical kernels against the limit, over widths and seeds.

    ``X``: the data (as for :func:`tpkernel.kernels`); ``widths``: the widths n;
    ``seeds``: a number of seeds (0..S-1) or the seeds themselves (the network at (s, n)
    is drawn from ``SeedSequence([s, n])``: independent across widths); ``limit``: the
    limiting kernels if already computed (otherwise ``tp.kernels(program, X, **limit_kw)``);
    ``progress``: a tqdm bar (default: shown only on a terminal).
    Returns a :class:`Convergence` (``print`` it for the table and the slopes; ``.plot()``).
    """
    kinds = (get,) if isinstance(get, str) else tuple(get)
    seeds = tuple(range(seeds)) if isinstance(seeds, (int, np.integer)) else tuple(int(s) for s in seeds)
    widths = np.asarray(sorted(int(w) for w in widths))
    if not len(seeds) or len(set(widths.tolist())) < 2:
        raise ValueError(f"convergence needs two different widths (a log-log slope) and one seed or more, got "
                         f"widths {widths.tolist()} and {len(seeds)} seed(s)")
    if limit is None:
        limit = limit_kernels(program, X, get=kinds, output=output, lengths1=lengths, **limit_kw)
    errors = {k: np.zeros((len(widths), len(seeds))) for k in kinds}
    with _progress(len(widths) * len(seeds), program.name, progress) as bar:
        for i, n in enumerate(widths):
            for j, s in enumerate(seeds):
                net = sample(program, int(n), width_seed(s, n))
                K = network_kernels(net, X, get=kinds, output=output, lengths1=lengths)
                for k in kinds:
                    errors[k][i, j] = relative_error(getattr(K, k), getattr(limit, k))
                del net
                bar.update(1)
    return Convergence(program.name, widths, seeds, errors, limit)
