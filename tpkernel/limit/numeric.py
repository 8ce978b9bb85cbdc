r"""The numeric back end of the Master Theorem: E[Z^u Z^v] as NumPy arrays over all pairs of examples.

The rules themselves (bilinearity, the atom covariance table, factorisation over independent
atoms, closed forms, Stein's lemma, Gaussian integrals over leaves) are
:class:`tpkernel.limit.theorem.MasterTheorem`'s; this module is its value domain: contexts,
broadcasting, the registry's vectorised closed forms, quadrature with error estimates and
Monte Carlo, and the report of what was integrated numerically.

A pruned parameter (:class:`~tpkernel.ir.Mask`) multiplies the covariance of its atoms by q
(1 with rescaling).  A pruned input layer is a Gaussian scale mixture over each row's kept
inputs S: its moments are conditional on S, carried as leading array axes and averaged where
a MatMul (or the kernel) sums over coordinates (:meth:`Expectations.average`;
:mod:`tpkernel.limit.mixture`).

A *context* says which examples a moment pairs up: ``(a, b, False)`` gives the
(N_a, N_b) matrix E[u(ξ_i) v(ξ'_j)] between data sets a and b, ``(a, a, True)`` the
vector E[u(ξ_i) v(ξ_i)].  Results are NumPy arrays (or scalars) broadcastable to the
context's shape; all of them are memoised.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..backward import readout_scale
from ..errors import AccuracyWarning, NumericalError
from ..ir import Bias, Embed, InputLayer, Program, Seed, mask_factor
from .scales import check_norms, check_variance
from ..nonlin import (PAIR_RULES, TAKES_RESIDUAL, Nonlinearity, arccos_angle, input_residual, mean_rule, pair_rule,
                      relu_residual, residual)
from . import gaussian
from .theorem import MasterTheorem

Ctx = tuple[int, int, bool]
#: the estimated error ε·n/s of a pair's angle (s not carried) beyond which an AccuracyWarning is given
RESID_TOL = 1e-12
#: the arc-cosine pair rules, called with the evaluator's memoised angles
_ARCCOS = {"abrelu": PAIR_RULES[("abrelu", "abrelu")], "abstep": PAIR_RULES[("abstep", "abstep")]}


@dataclass
class Side:
    """One data set: per data node an array (N, T, d) (T = 1 for plain vectors) and,
    per readout, the pooling weights (N, K)."""

    data: dict[str, np.ndarray]
    pool: dict[str, np.ndarray]
    n: int


@dataclass
class Settings:
    quad_deg: int | None = None  # nodes per dimension for 1 and 2 Gaussians (None: adaptive)
    quad_rule: str = "trapezoid"  # rule for 1 and 2 Gaussians (see gaussian.nodes)
    quad_tol: float = 1e-11  # target of the adaptive rule (relative above 1, absolute below)
    max_deg: int = 1025  # the adaptive rule stops here and reports its error
    nd_deg: int | None = None  # 3 and 4 Gaussians: None = adaptive trapezoid, else Gauss-Hermite nodes
    mc_samples: int = 200_000  # Monte Carlo samples beyond 4 Gaussians
    seed: int = 0
    error_estimate: bool = False
    # masked (pruned) input layers: the exact average over a row's kept coordinates S
    mask_exact_d: int = 12  # enumerate all 2^d subsets S up to this input dimension
    mask_samples: int = 4096  # beyond it: Monte Carlo over S (this many samples in all) ...
    mask_replicates: int = 8  # ... in independent replicates (their spread is the standard error)
    mask_budget: int = 4_000_000  # largest (subsets × N1 × N2) array; beyond it Monte Carlo


@dataclass
class Report:
    """What the evaluator had to integrate numerically, and how well."""

    quadrature: list[dict] = field(default_factory=list)
    monte_carlo: list[dict] = field(default_factory=list)
    masks: list[dict] = field(default_factory=list)  # masked input layers (tpkernel.limit.mixture)

    def unconverged(self) -> list[dict]:
        """The quadratures short of their tolerance, least accurate first."""
        return sorted((q for q in self.quadrature if q.get("converged") is False), key=lambda q: -q["error"])

    @staticmethod
    def describe(q: dict) -> str:
        """Which expectation a quadrature computed, and how."""
        return f"E[{q['what']}] over {q['dim']} Gaussian(s), {q['rule']} rule with {q['deg']} nodes per dimension"

    def summary(self) -> str:
        """One line per kind of numerical integral (closed forms are not listed)."""
        groups: dict[tuple, list] = {}
        for q in self.quadrature:
            groups.setdefault((q["dim"], q["rule"], q["deg"]), []).append(q)
        groups = dict(sorted(groups.items()))
        lines = []
        for (dim, rule, deg), qs in groups.items():
            errs = [q["error"] for q in qs if q.get("error") is not None]
            est = f"; largest error estimate {max(errs):.1e}" if errs else ""
            lines.append(f"{len(qs)} expectation(s) over {dim} Gaussian(s) by quadrature "
                         f"({rule}, {deg} nodes per dimension){est}")
        unconverged = self.unconverged()
        if unconverged:
            lines.append(f"WARNING: {len(unconverged)} quadrature(s) did not reach the tolerance "
                         f"(largest error estimate {unconverged[0]['error']:.1e}: {self.describe(unconverged[0])})")
        for m in self.monte_carlo:
            lines.append(f"MONTE CARLO ({m['dim']} Gaussians, {m['samples']} samples) for "
                         f"E[{m['what']}]: standard error up to {m['se']:.2e}")
        lines += [m["line"] for m in self.masks]
        return "\n".join(lines) or "all expectations in closed form"


@dataclass(frozen=True)
class Kernels:
    """The limiting kernels; ``nngp`` and ``ntk`` are (N1, N2) float64 arrays (or None
    if not asked for).  ``report`` says which expectations needed numerical integration."""

    nngp: np.ndarray | None
    ntk: np.ndarray | None
    report: Report = field(default_factory=Report, repr=False, compare=False)

    def replace(self, **kw) -> "Kernels":
        from dataclasses import replace
        return replace(self, **kw)


#: the finest nested trapezoid grid per dimension for integrals over r >= 3 variables (written
#: for r = 1, 2 too: a rank-deficient covariance of 3 or 4 variables): k^r nodes per element
ND_MAX_DEG = {1: 1025, 2: 257, 3: 65, 4: 33}
#: small batches may refine further while (elements × nodes) stays below this
ND_BUDGET = 1 << 24


def nd_max_deg(r: int, batch: int, max_deg: int) -> int:
    """The finest grid for r dimensions: ND_MAX_DEG[r], or finer nested levels (2k − 1) while
    batch · k^r <= ND_BUDGET (a few seconds), never beyond ``max_deg``."""
    k = ND_MAX_DEG[r]
    while 2 * k - 1 <= max_deg and max(batch, 1) * (2 * k - 1) ** r <= ND_BUDGET:
        k = 2 * k - 1
    return min(k, max_deg)


def _lower(deg: int) -> int:
    """The degree the error estimate compares with."""
    return max(1, (3 * deg + 3) // 4)


def _transpose(x, diag: bool = False):
    """E[v u] from E[u v]: swap the two example axes (the last two; leading axes, if any, index
    the input masks of :mod:`tpkernel.limit.mixture`)."""
    return x if diag or np.ndim(x) < 2 else np.swapaxes(x, -1, -2)


def _diagonal(x):
    return np.diagonal(x, axis1=-2, axis2=-1) if np.ndim(x) >= 2 else x


class Expectations(MasterTheorem):
    """Memoised E[Z^u Z^v] and E[Z^u] over a program, for one or two data sets, as NumPy arrays."""

    residuals = True

    def __init__(self, program: Program, sides: Sequence[Side], symmetric: bool,
                 settings: Settings | None = None) -> None:
        super().__init__(program)
        self.sides = list(sides)
        self.sym = symmetric
        self.settings = settings or Settings()
        self.report = Report()
        self._rng = np.random.default_rng(self.settings.seed)
        self._grams: dict[tuple, np.ndarray] = {}
        self._angles: dict[tuple, tuple] = {}
        self._mix = None  # masked input layers: conditional moments given each row's kept inputs
        if any(getattr(n, "mask", None) is not None for n in program.of_type(InputLayer)):
            from .mixture import InputMixture
            self._mix = InputMixture(self)

    # -- contexts ------------------------------------------------------------------------
    def shape(self, ctx: Ctx) -> tuple[int, ...]:
        a, b, diag = ctx
        return (self.sides[a].n,) if diag else (self.sides[a].n, self.sides[b].n)

    def side(self, ctx: Ctx, k: int) -> Ctx:
        s = ctx[k]
        return (s, s, True)

    def same_example(self, ctx: Ctx) -> bool:
        return ctx[2]

    @staticmethod
    def on_a(x, ctx: Ctx):
        """A per-example quantity of side a, broadcast over the context."""
        return x if ctx[2] or np.ndim(x) == 0 else np.asarray(x)[..., :, None]

    @staticmethod
    def on_b(x, ctx: Ctx):
        return x if ctx[2] or np.ndim(x) == 0 else np.asarray(x)[..., None, :]

    def _rule_cov(self, u: str, v: str, ctx: Ctx):
        """E[u v] from the canonical request: the first side first, program order within a
        side; with one data set the per-example values are the diagonal of the matrix, so
        that an input paired with itself is perfectly correlated to the last bit."""
        a, b, diag = ctx
        if a > b:
            return _transpose((yield ("cov", v, u, (b, a, diag))), diag)
        if a == b and self.structure.order[u] > self.structure.order[v]:
            return _transpose((yield ("cov", v, u, ctx)), diag)
        if diag and self.sym:
            return _diagonal((yield ("cov", u, v, (a, a, False))))
        return (yield from self._rule_rhs(u, v, ctx))

    # -- masked input layers: moments conditional on the mask, and their average ------
    def average(self, x, ctx: Ctx):
        """E over the masks of the input layers of a moment conditional on them (the identity
        without masked input layers): what a MatMul, or the kernel, sums over coordinates."""
        if self._mix is None or np.ndim(x) <= (1 if ctx[2] else 2):
            return x
        return self._mix.average(x)

    def collapse(self, x, ctx: Ctx, what: str = "kernel"):
        """A kernel with its mask axes averaged out (Monte Carlo replicates: mean, and the
        standard error goes to the report)."""
        if self._mix is None or np.ndim(x) <= (1 if ctx[2] else 2):
            return x
        return self._mix.collapse(x, ctx, what)

    def ecov(self, u: str, v: str, ctx: Ctx):
        """E[Z^u Z^v], averaged over the masks of the input layers."""
        return self.average(self.cov(u, v, ctx), ctx)

    # -- the leaves of the atom rules --------------------------------------------------
    def param_var(self, node):
        return node.std ** 2 * mask_factor(node)  # a masked W: M ⊙ W has entry variance q σ² (σ² rescaled)

    def input_var(self, layer: InputLayer):
        # masked: given the kept inputs S of a row, times s² (rescaling); the q is in the Gram
        return layer.std ** 2 * (layer.mask.scale2 if layer.mask else 1.0)

    def seed_cov(self, U: Seed, V: Seed, ctx: Ctx):
        r = self.p[U.readout]
        std, _ = readout_scale(self.p, r)
        std = std * mask_factor(r) ** 0.5  # a masked readout: M ⊙ v
        ca = self.sides[ctx[0]].pool[U.readout][:, U.index]
        cb = self.sides[ctx[1]].pool[V.readout][:, V.index]
        return std ** 2 * self.on_a(ca, ctx) * self.on_b(cb, ctx)

    def gram(self, U: Embed, V: Embed, ctx: Ctx):
        """⟨ξ_t, ξ'_s⟩ / d for the data steps the two embeddings read (for a masked input layer
        ⟨ξ_{t,S}, ξ'_{s,S}⟩ / d for every mask S of a row: :mod:`tpkernel.limit.mixture`)."""
        if self._mix is not None and self.p[U.layer].mask is not None:
            return self._mix.gram(U, V, ctx)
        a, b, diag = ctx
        cache = self._grams  # memoised: the NTK's input terms ask again
        key = (U.data, U.step, V.data, V.step, ctx)
        if key not in cache:
            xa = self.sides[a].data[U.data][:, U.step or 0, :]
            xb = self.sides[b].data[V.data][:, V.step or 0, :]
            d = xa.shape[1]
            for x, side in ((xa, a), (xb, b)):  # |ξ|² must be finite: see tpkernel.limit.scales
                check_norms(np.einsum("id,id->i", x, x), d, U.data if side == a else V.data,
                            "" if self.sym else f"x{side + 1}")
            cache[key] = np.einsum("id,id->i", xa, xb) / d if diag else (xa @ xb.T) / d
        return cache[key]

    # -- closed forms, Stein, quadrature -------------------------------------------------
    def pair_value(self, phi, psi, q1, q2, c, pair: tuple, what: str, closed: bool, s=None):
        """``s``: √(q1q2 − c²) carried through the layers (the ``resid`` requests), or None."""
        if closed:
            g, h, ctx = pair
            if s is None and not ctx[2] and phi.name == psi.name and phi.name in ("abrelu", "abstep"):
                self._check_residual(g, h, q1, q2, c, what)  # (θ enters the step kernel linearly)
            if phi.name == psi.name and phi.name in ("abrelu", "abstep"):
                # the relu and step kernels of one pair (forward and backward) share θ
                return _ARCCOS[phi.name](phi.params, psi.params, q1, q2, c,
                                         lambda sign: self._angle(g, h, ctx, sign, q1, q2, c, s))
            rule = gaussian.named(pair_rule(phi, psi), what)  # errors name the expectation
            if (phi.name, psi.name) in TAKES_RESIDUAL:
                if s is not None:
                    return rule(q1, q2, c, s=s)
            return rule(q1, q2, c)
        f = phi if phi is not None else (lambda x: x)
        g_ = psi if psi is not None else (lambda x: x)
        kinked = any(fn is not None and not fn.family.smooth for fn in (phi, psi))
        return self._quad2(f, g_, q1, q2, c, what, kinked=kinked)

    def mean_value(self, phi: Nonlinearity, q, what: str):
        rule = mean_rule(phi)
        if rule is not None:
            return gaussian.named(rule, what)(q)  # errors name the expectation
        quad = self.settings.quad_rule
        return self._quadrature(lambda deg: gaussian.expect_1d(phi, q, deg, quad), 1, quad, what)

    def check_pair(self, g: str, h: str, q1, q2, c) -> None:
        check_variance(q1, g)  # a variance beyond float64: the kernel overflows at this node
        check_variance(q2, h)
        self._check_correlation(g, h, q1, q2, c)

    def _check_correlation(self, g: str, h: str, q1, q2, c) -> None:
        """|c| <= √(q1 q2) up to rounding (1e-8 relative), else a NumericalError naming the pair
        and the least accurate quadrature so far (variances and covariances of one pair may come
        from different numerical integrals).  Closed forms alone are consistent to rounding,
        which the rules absorb: the check runs once something was integrated numerically."""
        if not (self.report.quadrature or self.report.monte_carlo or self.report.masks):
            return
        n = np.sqrt(q1) * np.sqrt(q2)  # (not √(q1q2): scale-safe)
        if np.any(np.abs(c) > n * (1 + 1e-8)):
            with np.errstate(divide="ignore", invalid="ignore"):
                rho = float(np.nanmax(np.abs(c) / n))
            worst = self.report.unconverged()[:1]
            cause = "".join(f"; it comes from numerical integrals, the least accurate {self.report.describe(q)} "
                            f"(error estimate {q['error']:.1e})" for q in worst)
            raise NumericalError(f"the covariance of ({g}, {h}) is not positive semi-definite "
                                 f"(|ρ| = {rho:.3g} > 1){cause}")

    def _check_residual(self, g: str, h: str, q1, q2, c, what: str) -> None:
        """An arc-cosine pair whose s = √(q1q2 − c²) is not carried (no structural rule: e.g. an
        RNN's h = W x + U ξ + b, or a relu after a GELU layer) takes it from the rounded
        (q1, q2, c): its angle θ, which the step kernel depends on linearly, is then off by
        ~ε·n/s.  Where that exceeds :data:`RESID_TOL` an :class:`AccuracyWarning` says so, once per
        pair.  (s = 0, taken as collinear by :data:`tpkernel.nonlin.COLLINEAR`, cannot be told
        from a nearly collinear pair here; erf and GELU depend on s², where this estimate would
        be far too pessimistic.)"""
        done = self.__dict__.setdefault("_resid_warned", set())
        if (g, h) in done:
            return
        n, s = residual(q1, q2, c)
        with np.errstate(divide="ignore", invalid="ignore"):
            est = np.where(s > 0, np.finfo(float).eps * n / np.where(s > 0, s, 1.0), 0.0)
        worst = float(np.max(est, initial=0.0))
        if worst > RESID_TOL:
            done.add((g, h))
            warnings.warn(AccuracyWarning(
                f"E[{what}]: the pair ({g}, {h}) is nearly collinear and its √(q q' − c²) comes from "
                f"rounded covariances: estimated error up to {worst:.1e} in its angle (docs/limit.md, "
                f"\"Scales\")"), stacklevel=2)

    def _angle(self, g: str, h: str, ctx: Ctx, sign: int, q1, q2, c, s=None):
        """(s, θ) of the pair (g, h) at covariance sign·c, memoised (``s``: carried, or None)."""
        cache = self._angles
        key = (g, h, ctx, sign)
        if key not in cache:
            cache[key] = arccos_angle(q1, q2, sign * c) if s is None else (s, np.arctan2(s, sign * c))
        return cache[key]

    # -- s carried through the layers (MasterTheorem._resid_rhs) -----------------------
    def _rule_resid(self, u: str, v: str, ctx: Ctx):
        """s(u, v), canonicalised like :meth:`_rule_cov`: the first layer's from the Gram structure
        (:meth:`_input_residual`), deeper ones by the theorem's structural rules; None (the
        closed forms then use (q1, q2, c)) on the per-example diagonal and with masked input layers."""
        a, b, diag = ctx
        if a > b:
            return _transpose((yield ("resid", v, u, (b, a, diag))), diag)
        if a == b and self.structure.order[u] > self.structure.order[v]:
            return _transpose((yield ("resid", v, u, ctx)), diag)
        s = self._input_residual(u, v, ctx)
        if s is not None or diag or self._mix is not None:
            return s
        return (yield from self._resid_rhs(u, v, ctx))

    def affine_residual(self, x11, x22, x12, a, beta, sx):
        return input_residual(x11, x22, x12, a, beta, sg=sx)

    def post_residual(self, phi, psi, q1, q2, c, s):
        if phi.name == psi.name == "abrelu" and phi.params[0] == psi.params[0] == 0.0:
            return abs(phi.params[1] * psi.params[1]) * relu_residual(q1, q2, c, s)
        return None

    def gram_residual(self, U: Embed, V: Embed, ctx: Ctx):
        G = self.gram(U, V, ctx)
        G1 = self.on_a(self.gram(U, U, self.side(ctx, 0)), ctx)
        G2 = self.on_b(self.gram(V, V, self.side(ctx, 1)), ctx)
        return residual(G1, G2, G)[1]

    def _input_residual(self, g: str, h: str, ctx: Ctx):
        """√(q1q2 − c²) of two pre-activations h = c_U·Uξ + Σ c_b b of one input layer (the same
        coefficients on both sides) from the Gram structure (:func:`tpkernel.nonlin.input_residual`),
        memoised; None for any other pair (then the rules use (q1, q2, c))."""
        cache = self.__dict__.setdefault("_residuals", {})
        key = (g, h, ctx)
        if key not in cache:
            cache[key] = self._input_residual_of(g, h, ctx)
        return cache[key]

    def _input_residual_of(self, g: str, h: str, ctx: Ctx):
        if self._mix is not None:
            return None
        sides = []
        for u in (g, h):
            atoms = self.structure.linear_terms(u)
            if atoms is None or not all(isinstance(self.p[x], (Embed, Bias)) for x in atoms):
                return None
            embeds = [x for x in atoms if isinstance(self.p[x], Embed)]
            if len(embeds) != 1:
                return None
            e = embeds[0]
            biases = {x: cx for x, cx in atoms.items() if x != e}
            sides.append((self.p[e], atoms[e], biases))
        (U, cu, bu), (V, cv, bv) = sides
        if U.layer != V.layer or cu != cv or bu != bv:
            return None
        a = cu * cu * self.input_var(self.p[U.layer])
        beta = sum(cb * cb * self.param_var(self.p[b]) for b, cb in bu.items())
        G = self.gram(U, V, ctx)
        G1 = self.on_a(self.gram(U, U, self.side(ctx, 0)), ctx)
        G2 = self.on_b(self.gram(V, V, self.side(ctx, 1)), ctx)
        return input_residual(G1, G2, G, a, beta)

    def _quad2(self, f, g, q1, q2, c, what: str, kinked: bool = False):
        """E[f(u) g(v)]: the polar rule when a kink at 0 is involved, else ``quad_rule``."""
        if kinked:
            return self._quadrature(lambda deg: gaussian.expect_2d_polar(lambda u, v: f(u) * g(v), q1, q2, c, deg),
                                    2, "polar", what, start=17)
        rule = self.settings.quad_rule
        return self._quadrature(lambda deg: gaussian.expect_2d(f, g, q1, q2, c, deg, rule), 2, rule, what)

    def _quadrature(self, integral: Callable[[int], np.ndarray], dim: int, rule: str, what: str,
                    start: int = 65):
        """Run a 1D/2D rule: adaptive to ``quad_tol`` unless ``quad_deg`` fixes the nodes."""
        s = self.settings
        converged = None
        integral = gaussian.named(integral, what)  # errors name the expectation
        if s.quad_deg is None:
            val, deg, err = gaussian.adaptive(integral, start, s.quad_tol, s.max_deg)
            converged = err <= s.quad_tol
        else:
            deg = s.quad_deg
            val = integral(deg)
            err = float(np.max(np.abs(val - integral(_lower(deg))))) if s.error_estimate else None
        self.report.quadrature.append({"dim": dim, "deg": deg, "rule": rule, "what": what, "error": err,
                                       "converged": converged})
        return val

    # -- the general integral --------------------------------------------------------
    def integral_value(self, A, B, atoms_a, atoms_b, variables, entries, ctx: Ctx):
        what = "·".join(A) + (" × " + "·".join(B) if B else "")
        D = len(variables)
        # leading axes beyond the context's shape: moments conditional on input masks
        shape = np.broadcast_shapes(self.shape(ctx), *(np.shape(v) for v in entries.values()))
        cov = np.empty(shape + (D, D))
        for (i, j), val in entries.items():
            cov[..., i, j] = cov[..., j, i] = val
        return self.integrate_product(A, B, atoms_a, atoms_b, variables, cov, what, ctx[2])

    def integrate_product(self, A: Sequence[str], B: Sequence[str], atoms_a: Sequence[str], atoms_b: Sequence[str],
                          variables: Sequence[tuple[str, int]], cov: np.ndarray, what: str, diag: bool):
        """E[Π_{f∈A} f · Π_{g∈B} g] where the leaves ``variables`` (atom, side) have the joint
        covariance ``cov``: A reads side 0's atoms, B side 1's (side 0's when ``diag``)."""
        index = {v: k for k, v in enumerate(variables)}
        S = self.structure
        steps_a, steps_b = S.evaluator(A), S.evaluator(B)

        def F(z: Sequence[np.ndarray]) -> np.ndarray:
            out = 1.0
            for fs, atoms, steps, side in ((A, atoms_a, steps_a, 0), (B, atoms_b, steps_b, 0 if diag else 1)):
                env = {x: z[index[(x, side)]] for x in atoms}
                for u, step in steps:
                    if u not in env:
                        env[u] = step(env)
                for f in fs:
                    out = out * env[f]
            return out

        return self.integrate_numeric(F, cov, what, kinked=any(S.kinked[f] for f in (*A, *B)))

    def integrate_numeric(self, F: Callable[[Sequence[np.ndarray]], np.ndarray], cov: np.ndarray, what: str,
                          kinked: bool = False):
        """E[F(z)], z ~ N(0, cov) with cov (..., D, D): the rule for D Gaussians, recorded in
        the report.  D <= 2: the polar rule if F has kinks (``kinked``), else ``quad_rule``,
        refined to ``quad_tol``.  D >= 3 integrates over the r = rank(cov) independent
        directions (a bias shared by the two examples of a pair, or one vector at both, lowers
        it): r = 3, 4 (or fewer) smooth, the nested trapezoid rule refined from 17 to
        :data:`ND_MAX_DEG` [r] nodes per dimension with its error estimate (or Gauss-Hermite with
        ``nd_deg`` nodes when that is set); r > 4, or kinks (where tensor rules converge slowly
        and without a trustworthy estimate): seeded Monte Carlo with its standard error."""
        D = cov.shape[-1]
        s = self.settings
        if D <= 2 and kinked:
            # kinks where a Gaussian changes sign: the polar rule (a dummy second variable in 1D)
            if D == 1:
                q1, q2, c, F2 = cov[..., 0, 0], np.ones_like(cov[..., 0, 0]), 0.0 * cov[..., 0, 0], \
                    lambda u, v: F([u])
            else:
                q1, q2, c, F2 = cov[..., 0, 0], cov[..., 1, 1], cov[..., 0, 1], lambda u, v: F([u, v])
            val = self._quadrature(lambda deg: gaussian.expect_2d_polar(F2, q1, q2, c, deg), D, "polar", what,
                                   start=17)
        elif D <= 2:
            rule = s.quad_rule
            val = self._quadrature(lambda deg: gaussian.expect_nd(F, cov, deg, rule), D, rule, what)
        else:
            L = gaussian.psd_sqrt(cov, f"the covariance of E[{what}]", reduce=True)
            r = L.shape[-1]
            nd, mc = gaussian.named(gaussian.expect_nd, what), gaussian.named(gaussian.expect_mc, what)
            if r <= 4 and not (kinked and s.nd_deg is None):
                if s.nd_deg is None:
                    tol = max(s.quad_tol, 1e-9)
                    val, deg, err = gaussian.adaptive(
                        lambda k: nd(F, cov, k, "trapezoid", factor=L), 17, tol,
                        nd_max_deg(r, int(np.prod(cov.shape[:-2], dtype=np.int64)), s.max_deg))
                    self.report.quadrature.append({"dim": r, "deg": deg, "rule": "trapezoid", "what": what,
                                                   "error": err, "converged": err <= tol})
                else:  # a fixed rule, but always checked: tensor Gauss-Hermite can be far off in 3-4D
                    val = nd(F, cov, s.nd_deg, "hermite", factor=L)
                    lower = nd(F, cov, _lower(s.nd_deg), "hermite", factor=L)
                    err = float(np.max(np.abs(val - lower) / np.maximum(1.0, np.abs(val)), initial=0.0))
                    self.report.quadrature.append({"dim": r, "deg": s.nd_deg, "rule": "hermite", "what": what,
                                                   "error": err, "converged": err <= max(s.quad_tol, 1e-9)})
            else:
                val, se = mc(F, cov, s.mc_samples, self._rng)
                self.report.monte_carlo.append({"dim": r, "samples": s.mc_samples, "what": what,
                                                "se": float(np.max(se))})
        if not np.all(np.isfinite(val)):
            raise NumericalError(f"the expectation E[{what}] is not finite")
        return val
