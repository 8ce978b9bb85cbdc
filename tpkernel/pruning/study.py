r"""Finite-width experiments on pruned programs.

- :func:`compare`: empirical kernels of the pruned network, its pseudo-network and the dense
  network side by side (same width, same seeds), each against its own limit, and the extra
  scaling each one shows against the dense limit;
- :func:`width_study`: the paper's second result as an experiment — for each pruning
  probability p and width n the relative Frobenius NTK gap ‖Θ̂ − Θ‖_F / ‖Θ‖_F over seeds,
  the width needed for a target gap, and the fit of that width against 1/(1 − p).

Why linear in 1/(1 − p): a pruned pre-activation (M ⊙ W) x sums about q n nonzero terms,
so its fluctuations — and the NTK's — are those of a layer of width q n: the gap behaves
like C(q)/√n with C(q)² = a + b/q (unpruned layers contribute a, pruned ones b/q), and the
width reaching a gap g is n* = C(q)²/g² = (a + b/q)/g², linear in 1/q.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..finite.convergence import relative_error, width_seed
from ..finite.kernels import network_kernels
from ..finite.network import sample
from ..ir import Program
from ..limit import kernels as limit_kernels
from .transform import dense, masked, prune, pseudo_network

Array = np.ndarray


def _seeds(seeds) -> tuple[int, ...]:
    return tuple(range(seeds)) if isinstance(seeds, (int, np.integer)) else tuple(int(s) for s in seeds)


def _progress(total: int, desc: str, progress: bool | None):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=None if progress is None else not progress, leave=False)


# ---------------------------------------------------------------------------------------
# side by side
# ---------------------------------------------------------------------------------------

NETWORKS = ("pruned", "pseudo", "dense")


@dataclass
class SideBySide:
    """Pruned network, pseudo-network and dense network at one width, over seeds.

    ``programs[name]``, ``limits[name]`` (:class:`~tpkernel.limit.Kernels`) and
    ``empirical[name]`` (one Kernels per seed) for name in ("pruned", "pseudo", "dense");
    ``gap(name, kind)``: per seed ‖K̂ − K‖_F/‖K‖_F against the network's own limit;
    ``scaling(name, kind)``: per seed the least-squares factor c in K̂ ≈ c K_dense (the
    extra scaling the finite network shows).
    """

    width: int
    seeds: tuple[int, ...]
    programs: dict[str, Program]
    limits: dict
    empirical: dict

    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in ("nngp", "ntk") if getattr(self.limits["dense"], k) is not None)

    def mean(self, name: str, kind: str = "ntk") -> Array:
        """The seed-average of the empirical kernel."""
        return np.mean([getattr(k, kind) for k in self.empirical[name]], axis=0)

    def gap(self, name: str, kind: str = "ntk", against: str | None = None) -> Array:
        ref = getattr(self.limits[against or name], kind)
        return np.array([relative_error(getattr(k, kind), ref) for k in self.empirical[name]])

    def scaling(self, name: str, kind: str = "ntk") -> Array:
        ref = getattr(self.limits["dense"], kind)
        return np.array([float(np.sum(getattr(k, kind) * ref) / np.sum(ref * ref)) for k in self.empirical[name]])

    def limit_scaling(self, name: str, kind: str = "ntk") -> float:
        ref = getattr(self.limits["dense"], kind)
        return float(np.sum(getattr(self.limits[name], kind) * ref) / np.sum(ref * ref))

    def table(self) -> str:
        S = len(self.seeds)
        lines = [f"{self.programs['pruned'].name}: width {self.width}, {S} seed(s); gap = ‖K̂ − K‖_F/‖K‖_F "
                 "against the network's own limit, c = least-squares K̂ ≈ c·K_dense (limit: its exact value)"]
        head = f"{'network':>8}" + "".join(f"  {k.upper() + ' gap':>18}  {k.upper() + ' c':>17}  {'c limit':>9}"
                                             for k in self.kinds())
        lines.append(head)
        for name in NETWORKS:
            row = f"{name:>8}"
            for k in self.kinds():
                g, c = self.gap(name, k), self.scaling(name, k)
                sd = lambda a: a.std(ddof=1) if len(a) > 1 else 0.0  # noqa: E731
                row += f"  {g.mean():>9.4f} ± {sd(g):<6.4f}  {c.mean():>8.4f} ± {sd(c):<6.4f}  " \
                       f"{self.limit_scaling(name, k):>9.4f}"
            lines.append(row)
        for k in self.kinds():
            d = relative_error(getattr(self.limits["pseudo"], k), getattr(self.limits["pruned"], k))
            lines.append(f"limits: ‖{k.upper()}_pseudo − {k.upper()}_pruned‖/‖{k.upper()}_pruned‖ = {d:.3e}"
                         + ("  (masked input layer: the pseudo-network is its large-d limit)" if d > 1e-12 else ""))
        return "\n".join(lines)

    __str__ = table


def compare(program: Program, x, width: int = 1024, seeds: int | Iterable[int] = 4, *,
            get=("nngp", "ntk"), output: str | None = None, **limit_kw) -> SideBySide:
    """Empirical kernels of the pruned ``program``, its :func:`pseudo_network` and its
    :func:`dense` version at ``width``, over ``seeds`` (network at (s, n) drawn from
    ``SeedSequence([s, n])``: with one seed the three share the draws of their parameters,
    the pruned network's being the dense one's with the pruned entries set to 0)."""
    if not masked(program):
        raise ValueError(f"compare: program {program.name!r} has no masks (use tp.pruning.prune first)")
    kinds = (get,) if isinstance(get, str) else tuple(get)
    programs = {"pruned": program, "pseudo": pseudo_network(program), "dense": dense(program)}
    seeds = _seeds(seeds)
    limits, empirical = {}, {}
    for name, prog in programs.items():
        limits[name] = limit_kernels(prog, x, get=kinds, output=output, **limit_kw)
        empirical[name] = [network_kernels(sample(prog, int(width), width_seed(s, width)), x, get=kinds,
                                           output=output) for s in seeds]
    return SideBySide(int(width), seeds, programs, limits, empirical)


# ---------------------------------------------------------------------------------------
# the width study
# ---------------------------------------------------------------------------------------

@dataclass
class WidthStudy:
    r"""The NTK gap of pruned networks against width, for several pruning probabilities.

    ``gaps``: array (P, W, S) of ‖Θ̂ − Θ_p‖_F / ‖Θ_p‖_F (Θ_p the pruned limit) for each p,
    width and seed; ``mean``/``spread``: over seeds (P, W); ``grid_width[p]``: the smallest
    width of the grid whose mean gap is <= ``target_gap`` (None if none is);
    ``needed_width``: (P,) the width where the mean gap reaches the target, from each p's
    fit log gap = a + b log n (``exponents`` b; with ``method="fit"`` b is fixed at −1/2,
    the Tensor Programs rate, and only a is fitted; ``"free"`` fits both; ``"interpolate"``
    interpolates log-linearly between the bracketing grid widths, falling back to the fit);
    ``extrapolated``: where the needed width lies outside the grid; ``fit``: the least-squares
    line needed_width = slope / (1 − p) + intercept and its R².
    """

    program: str
    ps: Array
    widths: Array
    seeds: tuple[int, ...]
    target_gap: float
    gaps: Array
    method: str
    where: str | Sequence[str]
    rescale: bool
    kind: str = "ntk"
    needed_width: Array = field(init=False)
    exponents: Array = field(init=False)
    grid_width: list = field(init=False)
    extrapolated: Array = field(init=False)
    fit: dict = field(init=False)

    def __post_init__(self) -> None:
        logn = np.log(self.widths.astype(float))
        P = len(self.ps)
        self.needed_width = np.zeros(P)
        self.exponents = np.zeros(P)
        self.extrapolated = np.zeros(P, dtype=bool)
        self.grid_width = []
        lg = math.log(self.target_gap)
        for i in range(P):
            m = np.log(self.mean[i])
            b, a = np.polyfit(logn, m, 1)
            self.exponents[i] = b
            if self.method == "fit":
                b = -0.5
                a = float(np.mean(m - b * logn))
            elif self.method not in ("free", "interpolate"):
                raise ValueError(f"method must be 'fit', 'free' or 'interpolate', got {self.method!r}")
            nstar = math.exp((lg - a) / b)
            if self.method == "interpolate":
                below = np.nonzero(m <= lg)[0]
                k = int(below[0]) if len(below) else -1
                if k > 0:
                    t = (lg - m[k - 1]) / (m[k] - m[k - 1])
                    nstar = math.exp(logn[k - 1] + t * (logn[k] - logn[k - 1]))
            self.needed_width[i] = nstar
            self.extrapolated[i] = not (self.widths[0] <= nstar <= self.widths[-1])
            ok = np.nonzero(self.mean[i] <= self.target_gap)[0]
            self.grid_width.append(int(self.widths[ok[0]]) if len(ok) else None)
        inv = 1.0 / (1.0 - self.ps)
        slope, intercept = np.polyfit(inv, self.needed_width, 1)
        pred = slope * inv + intercept
        ss_res = float(np.sum((self.needed_width - pred) ** 2))
        ss_tot = float(np.sum((self.needed_width - self.needed_width.mean()) ** 2))
        self.fit = {"slope": float(slope), "intercept": float(intercept),
                    "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")}

    @property
    def mean(self) -> Array:
        return self.gaps.mean(axis=2)

    @property
    def spread(self) -> Array:
        S = self.gaps.shape[2]
        return self.gaps.std(axis=2, ddof=1) if S > 1 else np.zeros(self.gaps.shape[:2])

    def rows(self) -> list[dict]:
        out = []
        for i, p in enumerate(self.ps):
            for j, n in enumerate(self.widths):
                out.append({"p": float(p), "width": int(n), "gap_mean": float(self.mean[i, j]),
                            "gap_std": float(self.spread[i, j])})
        return out

    def table(self) -> str:
        S = len(self.seeds)
        lines = [f"{self.program}: relative Frobenius {self.kind.upper()} gap of the pruned network "
                 f"(where={self.where!r}{', rescaled' if self.rescale else ''}) against its limit, "
                 f"mean ± sd over {S} seed(s)"]
        lines.append(f"{'width':>7}" + "".join(f"  {'p=' + format(p, 'g'):>19}" for p in self.ps))
        for j, n in enumerate(self.widths):
            lines.append(f"{int(n):>7}" + "".join(f"  {self.mean[i, j]:>9.4f} ± {self.spread[i, j]:<7.4f}"
                                                  for i in range(len(self.ps))))
        how = {"fit": "fit with slope −1/2", "free": "free power-law fit",
               "interpolate": "log-log interpolation"}[self.method]
        lines.append(f"target gap {self.target_gap:g}: needed width ({how}; the fitted log-log slopes are "
                     "shown for reference)")
        lines.append(f"{'p':>7}  {'1/(1-p)':>8}  {'needed width':>12}  {'grid width':>10}  {'slope':>7}")
        for i, p in enumerate(self.ps):
            gw = self.grid_width[i]
            lines.append(f"{p:>7g}  {1 / (1 - p):>8.3f}  {self.needed_width[i]:>12.1f}"
                         f"{'*' if self.extrapolated[i] else ' '} {str(gw) if gw else '-':>10}  "
                         f"{self.exponents[i]:>+7.3f}")
        f = self.fit
        lines.append(f"needed width ≈ {f['slope']:.1f}/(1 − p) + {f['intercept']:.1f}   (R² = {f['r2']:.4f})"
                     + ("   [* outside the grid: extrapolated]" if self.extrapolated.any() else ""))
        return "\n".join(lines)

    __str__ = table

    def plot_gaps(self, ax=None):
        """Mean gap (± spread over seeds) against width, one line per p, and the target."""
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots(figsize=(4.8, 3.6))
        w = self.widths.astype(float)
        for i, p in enumerate(self.ps):
            ax.errorbar(w, self.mean[i], yerr=self.spread[i], marker="o", ms=3, capsize=2, lw=1.1,
                        label=f"p = {p:g}")
        ax.axhline(self.target_gap, color="gray", ls="--", lw=1, label="target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        from matplotlib.ticker import NullFormatter
        ax.set_xticks(w)
        ax.set_xticklabels([str(int(n)) for n in w])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("width n")
        ax.set_ylabel(r"$\|\hat\Theta - \Theta\|_F / \|\Theta\|_F$")
        ax.set_title(f"{self.program}: NTK gap")
        ax.legend(fontsize=7)
        return ax

    def plot_needed(self, ax=None):
        """Needed width against 1/(1 − p), with the fitted line."""
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots(figsize=(4.8, 3.6))
        inv = 1.0 / (1.0 - self.ps)
        ax.plot(inv, self.needed_width, "o", label="needed width")
        xs = np.linspace(0, inv.max() * 1.05, 50)
        f = self.fit
        ax.plot(xs, f["slope"] * xs + f["intercept"], "--",
                label=f"{f['slope']:.0f}/(1−p) + {f['intercept']:.0f}, R²={f['r2']:.3f}")
        ax.set_xlabel("1 / (1 − p)")
        ax.set_ylabel(f"width for gap {self.target_gap:g}")
        ax.set_xlim(left=0)
        ax.legend(fontsize=7)
        return ax


def width_study(program: Program, ps: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 0.875),
                widths: Sequence[int] = (64, 128, 256, 512, 1024), seeds: int | Iterable[int] = 4,
                target_gap: float = 0.1, *, x=None, where: str | Sequence[str] = "hidden+output",
                rescale: bool = False, kind: str = "ntk", method: str = "fit", output: str | None = None,
                progress: bool | None = None, **limit_kw) -> WidthStudy:
    """How wide a pruned network must be for its NTK to be close to the limit.

    For each p in ``ps``: ``prune(program, p, rescale, where)``, its limit on ``x`` (default
    8 unit-norm inputs of dimension 4), and for each width and seed (network at (s, n) drawn
    from ``SeedSequence([s, n])``) the gap ‖Θ̂ − Θ‖_F / ‖Θ‖_F.  Returns a :class:`WidthStudy`
    (``print`` it; ``.plot_gaps()``, ``.plot_needed()``; ``.fit`` has slope, intercept and R²
    of needed width against 1/(1 − p)).  ``program`` is the dense architecture; masks it
    already has are removed first.
    """
    from .. import examples
    base = dense(program) if masked(program) else program
    ps = np.asarray([float(p) for p in ps])
    widths = np.asarray(sorted(int(n) for n in widths))
    seeds = _seeds(seeds)
    if len(ps) < 2 or not len(widths) or not seeds:
        raise ValueError("width_study needs at least two p, one width and one seed")
    if x is None:
        x = examples.sample_data(base, n=8, d=4, seed=0)
    gaps = np.zeros((len(ps), len(widths), len(seeds)))
    with _progress(gaps.size, base.name, progress) as bar:
        for i, p in enumerate(ps):
            pruned = prune(base, p, rescale=rescale, where=where)
            ref = getattr(limit_kernels(pruned, x, get=(kind,), output=output, **limit_kw), kind)
            for j, n in enumerate(widths):
                for k, s in enumerate(seeds):
                    net = sample(pruned, int(n), width_seed(s, n))
                    K = network_kernels(net, x, get=(kind,), output=output)
                    gaps[i, j, k] = relative_error(getattr(K, kind), ref)
                    del net
                    bar.update(1)
    return WidthStudy(base.name, ps, widths, seeds, float(target_gap), gaps, method, where, bool(rescale), kind)
