r"""The Master Theorem evaluator: E[Z^u Z^v] for any two vectors of a program.

Every vector u of a (forward or backward) program is, in the limit, a function of the
jointly Gaussian *atoms* it reads through Nonlin and LinComb nodes (initial vectors and
MatMul results).  Atom covariances follow one rule table (:meth:`Moments._atom_cov`):

  Cov(Z^{Wx}, Z^{Wy}) = σ_W² E[Z^x Z^y]      (same matrix, same transpose flag)
  Cov(Z^{Uξ_t}, Z^{Uξ'_s}) = σ_U² ⟨ξ_t, ξ'_s⟩/d
  Cov(Z^b, Z^b) = σ_b²,   Cov(seed_k, seed'_l) = σ_v² c(k) c'(l)
  0 between atoms of different parameters (W and Wᵀ count as different: gradient
  independence, valid for BP-like programs).

A pruned parameter (:class:`~tpkernel.ir.Mask`) multiplies the covariance of its atoms by q
(1 with rescaling).  A pruned input layer is a Gaussian scale mixture over each row's kept
inputs S: its moments are conditional on S, carried as leading array axes and averaged where
a MatMul (or the kernel) sums over coordinates (:meth:`Moments.average`;
:mod:`tpkernel.pruning.mixture`).

E[u v] is then computed by, in order: bilinear expansion of linear combinations;
factorisation of products over groups of atoms that are independent (this is where
backward vectors du ⊙ φ'(h) split into E[du du']·E[φ'(h)φ'(h')]); closed-form pair
rules of the nonlinearity registry; Stein's lemma for E[z ψ(v)]; Gauss-Hermite
quadrature; and, over more than four Gaussians, labelled Monte Carlo.

A *context* says which examples a moment pairs up: ``(a, b, False)`` gives the
(N_a, N_b) matrix E[u(ξ_i) v(ξ'_j)] between data sets a and b, ``(a, a, True)`` the
vector E[u(ξ_i) v(ξ_i)].  Results are NumPy arrays (or scalars) broadcastable to the
context's shape; all of them are memoised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..errors import NumericalError, ProgramError
from ..ir import Bias, Embed, InputLayer, LinComb, MatMul, Nonlin, Program, Seed, mask_factor
from .scales import check_norms, check_variance
from ..nonlin import PAIR_RULES, Nonlinearity, arccos_angle, mean_rule, pair_rule
from . import gaussian

Ctx = tuple[int, int, bool]
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
    masks: list[dict] = field(default_factory=list)  # masked input layers (tpkernel.pruning.mixture)

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
    the input masks of :mod:`tpkernel.pruning.mixture`)."""
    return x if diag or np.ndim(x) < 2 else np.swapaxes(x, -1, -2)


def _diagonal(x):
    return np.diagonal(x, axis1=-2, axis2=-1) if np.ndim(x) >= 2 else x


class Moments:
    """Memoised E[Z^u Z^v] and E[Z^u] over a program, for one or two data sets."""

    def __init__(self, program: Program, sides: Sequence[Side], symmetric: bool,
                 settings: Settings | None = None) -> None:
        self.p = program
        self.sides = list(sides)
        self.sym = symmetric
        self.settings = settings or Settings()
        self.report = Report()
        self._rng = np.random.default_rng(self.settings.seed)
        self._cov: dict[tuple, object] = {}
        self._mean: dict[tuple, object] = {}
        self._atoms: dict[str, frozenset] = {}
        self._keys: dict[str, frozenset] = {}
        self._gauss: dict[str, bool] = {}
        self._leaves: dict[str, frozenset] = {}
        self._order = {n.name: i for i, n in enumerate(program)}
        self._mix = None  # masked input layers: conditional moments given each row's kept inputs
        if any(getattr(n, "mask", None) is not None for n in program.of_type(InputLayer)):
            from ..pruning.mixture import InputMixture
            self._mix = InputMixture(self)

    # -- shapes ----------------------------------------------------------------------
    def shape(self, ctx: Ctx) -> tuple[int, ...]:
        a, b, diag = ctx
        return (self.sides[a].n,) if diag else (self.sides[a].n, self.sides[b].n)

    @staticmethod
    def on_a(x, ctx: Ctx):
        """A per-example quantity of side a, broadcast over the context."""
        return x if ctx[2] or np.ndim(x) == 0 else np.asarray(x)[..., :, None]

    @staticmethod
    def on_b(x, ctx: Ctx):
        return x if ctx[2] or np.ndim(x) == 0 else np.asarray(x)[..., None, :]

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

    # -- structure ---------------------------------------------------------------------
    def atoms(self, u: str) -> frozenset:
        """The Gaussian atoms u is a function of (through Nonlin and LinComb)."""
        if u not in self._atoms:
            node = self.p[u]
            if node.is_gaussian_atom:
                self._atoms[u] = frozenset([u])
            elif isinstance(node, (Nonlin, LinComb)):
                self._atoms[u] = frozenset().union(*(self.atoms(a) for a in node.args))
            else:
                raise ProgramError(f"{u!r} is not a vector")
        return self._atoms[u]

    def keys(self, u: str) -> frozenset:
        """Which independent Gaussian families the atoms of u come from."""
        if u not in self._keys:
            self._keys[u] = frozenset(self._atom_key(self.p[a]) for a in self.atoms(u))
        return self._keys[u]

    @staticmethod
    def _atom_key(node) -> tuple:
        if isinstance(node, MatMul):
            return ("W", node.matrix, node.transpose)
        if isinstance(node, Embed):
            return ("U", node.layer)
        if isinstance(node, Seed):
            return ("v", node.readout)
        return ("b", node.name)

    def is_gaussian(self, u: str) -> bool:
        """u is a centred Gaussian in the limit: an atom or a LinComb of such."""
        if u not in self._gauss:
            node = self.p[u]
            self._gauss[u] = node.is_gaussian_atom or (
                isinstance(node, LinComb) and node.const == 0.0 and all(self.is_gaussian(a) for a in node.args))
        return self._gauss[u]

    def factors(self, u: str) -> list[str]:
        node = self.p[u]
        if isinstance(node, Nonlin) and node.fn.name == "prod":
            return [f for a in node.args for f in self.factors(a)]
        return [u]

    def _unary(self, u: str) -> tuple[Nonlinearity | None, str] | None:
        """(φ, g) with u = φ(g), g Gaussian (φ None: u itself is Gaussian), else None."""
        if self.is_gaussian(u):
            return None, u
        node = self.p[u]
        if isinstance(node, Nonlin) and len(node.args) == 1 and node.fn.name != "prod" \
                and self.is_gaussian(node.args[0]):
            return node.fn, node.args[0]
        return None

    # -- second moments --------------------------------------------------------------
    def var(self, u: str, side: int):
        return self.cov(u, u, (side, side, True))

    def cov(self, u: str, v: str, ctx: Ctx):
        """E[Z^u Z^v] in context ``ctx``."""
        a, b, diag = ctx
        if a > b:
            return _transpose(self.cov(v, u, (b, a, diag)), diag)
        if a == b and self._order[u] > self._order[v]:
            return _transpose(self.cov(v, u, ctx), diag)
        key = (u, v, ctx)
        if key not in self._cov:
            if diag and self.sym:
                # one data set: the per-example values are the diagonal of the matrix, so that
                # an input paired with itself is perfectly correlated to the last bit
                self._cov[key] = _diagonal(self.cov(u, v, (a, a, False)))
            else:
                self._cov[key] = self._compute_cov(u, v, ctx)
            if diag and u == v and self.is_gaussian(u):  # a variance beyond float64: name the node
                check_variance(self._cov[key], u)
        return self._cov[key]

    def _compute_cov(self, u: str, v: str, ctx: Ctx):
        U, V = self.p[u], self.p[v]
        if isinstance(U, LinComb):
            out = sum(c * self.cov(x, v, ctx) for x, c in zip(U.args, U.coeffs))
            return out + U.const * self.on_b(self.mean(v, ctx[1]), ctx) if U.const else out
        if isinstance(V, LinComb):
            out = sum(c * self.cov(u, y, ctx) for y, c in zip(V.args, V.coeffs))
            return out + V.const * self.on_a(self.mean(u, ctx[0]), ctx) if V.const else out
        if U.is_gaussian_atom and V.is_gaussian_atom:
            return self._atom_cov(U, V, ctx)
        return self._product(self.factors(u), self.factors(v), ctx, (u, v))

    def _atom_cov(self, U, V, ctx: Ctx):
        if type(U) is not type(V):
            return 0.0
        if isinstance(U, MatMul):
            if U.matrix != V.matrix or U.transpose != V.transpose:
                return 0.0
            W = self.p[U.matrix]  # a masked W: M ⊙ W has entry variance q σ² (σ² rescaled)
            return W.std ** 2 * mask_factor(W) * self.average(self.cov(U.arg, V.arg, ctx), ctx)
        if isinstance(U, Embed):
            if U.layer != V.layer:
                return 0.0
            layer = self.p[U.layer]  # masked: given the kept inputs S of a row, times s² (rescaling)
            return layer.std ** 2 * (layer.mask.scale2 if layer.mask else 1.0) * self.gram(U, V, ctx)
        if isinstance(U, Bias):
            return self.p[U.name].std ** 2 if U.name == V.name else 0.0
        if isinstance(U, Seed):
            if U.readout != V.readout:
                return 0.0
            from ..backward import readout_scale
            std, _ = readout_scale(self.p, self.p[U.readout])
            std = std * mask_factor(self.p[U.readout]) ** 0.5  # a masked readout: M ⊙ v
            ca = self.sides[ctx[0]].pool[U.readout][:, U.index]
            cb = self.sides[ctx[1]].pool[V.readout][:, V.index]
            return std ** 2 * self.on_a(ca, ctx) * self.on_b(cb, ctx)
        raise ProgramError(f"no covariance rule for {U.name!r} and {V.name!r}")

    def gram(self, U: Embed, V: Embed, ctx: Ctx):
        """⟨ξ_t, ξ'_s⟩ / d for the data steps the two embeddings read (for a masked input layer
        ⟨ξ_{t,S}, ξ'_{s,S}⟩ / d for every mask S of a row: :mod:`tpkernel.pruning.mixture`)."""
        if self._mix is not None and self.p[U.layer].mask is not None:
            return self._mix.gram(U, V, ctx)
        a, b, diag = ctx
        cache = self.__dict__.setdefault("_grams", {})  # memoised: the NTK's input terms ask again
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

    # -- products and nonlinear moments ----------------------------------------------
    def _components(self, items: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
        """Group factors into sets whose atoms may be correlated (union-find on keys)."""
        groups: list[tuple[set, list]] = []
        for item in items:
            ks = set(self.keys(item[0]))
            merged = [g for g in groups if g[0] & ks]
            keys, members = ks, [item]
            for g in merged:
                keys |= g[0]
                members = g[1] + members
                groups.remove(g)
            groups.append((keys, members))
        return [g[1] for g in groups]

    def _product(self, fu: list[str], fv: list[str], ctx: Ctx, whole: tuple[str, str]):
        """E[Π fu · Π fv'], factorised over independent groups of atoms."""
        a, b, diag = ctx
        items = [(f, 0) for f in fu] + [(f, 1) for f in fv]
        out = 1.0
        for comp in self._components(items):
            A = [f for f, s in comp if s == 0]
            B = [f for f, s in comp if s == 1]
            if not B:
                val = self.on_a(self.mean_of(A, a), ctx)
            elif not A:
                val = self.on_b(self.mean_of(B, b), ctx)
            elif len(A) == 1 and len(B) == 1:
                val = self._pair(A[0], B[0], ctx) if (A[0], B[0]) == whole else self.cov(A[0], B[0], ctx)
            else:
                val = self._integrate(A, B, ctx)
            out = out * val
        return out

    def _pair(self, u: str, v: str, ctx: Ctx):
        """E[φ(g) ψ(h)] for single (non-product) factors."""
        fu, fv = self._unary(u), self._unary(v)
        if fu is None or fv is None:
            return self._integrate([u], [v], ctx)
        (phi, g), (psi, h) = fu, fv
        q1 = self.on_a(self.var(g, ctx[0]), ctx)
        q2 = self.on_b(self.var(h, ctx[1]), ctx)
        c = self.cov(g, h, ctx)
        self._check_correlation(g, h, q1, q2, c)
        if phi is not None and psi is not None:
            rule = pair_rule(phi, psi)
            if rule is not None:
                if phi.name == psi.name and phi.name in ("abrelu", "abstep"):
                    # the relu and step kernels of one pair (forward and backward) share θ
                    return _ARCCOS[phi.name](phi.params, psi.params, q1, q2, c,
                                             lambda sign: self._angle(g, h, ctx, sign, q1, q2, c))
                return rule(q1, q2, c)
        elif phi is None and psi is None:  # pragma: no cover - atoms are handled earlier
            return c
        # Stein's lemma: E[z ψ(v)] = Cov(z, v) E[ψ'(v)]
        if phi is None and psi.family.deriv is not None:
            m = mean_rule(psi.derivative())
            if m is not None:
                return c * m(q2)
        if psi is None and phi.family.deriv is not None:
            m = mean_rule(phi.derivative())
            if m is not None:
                return c * m(q1)
        f = phi if phi is not None else (lambda x: x)
        g_ = psi if psi is not None else (lambda x: x)
        kinked = any(fn is not None and not fn.family.smooth for fn in (phi, psi))
        return self._quad2(f, g_, q1, q2, c, f"{u}·{v}", kinked=kinked)

    def _check_correlation(self, g: str, h: str, q1, q2, c) -> None:
        """|c| <= √(q1 q2) up to rounding (1e-8 relative), else a NumericalError naming the pair
        and the least accurate quadrature so far (variances and covariances of one pair may come
        from different numerical integrals).  Closed forms alone are consistent to rounding,
        which the rules absorb: the check runs once something was integrated numerically."""
        if not (self.report.quadrature or self.report.monte_carlo or self.report.masks):
            return
        if np.any(c * c > q1 * q2 * (1 + 2e-8)):
            with np.errstate(divide="ignore", invalid="ignore"):
                rho = float(np.nanmax(np.abs(c) / np.sqrt(q1 * q2)))
            worst = self.report.unconverged()[:1]
            cause = "".join(f"; it comes from numerical integrals, the least accurate {self.report.describe(q)} "
                            f"(error estimate {q['error']:.1e})" for q in worst)
            raise NumericalError(f"the covariance of ({g}, {h}) is not positive semi-definite "
                                 f"(|ρ| = {rho:.3g} > 1){cause}")

    def _angle(self, g: str, h: str, ctx: Ctx, sign: int, q1, q2, c):
        """(s, θ) of the pair (g, h) at covariance sign·c, memoised."""
        cache = self.__dict__.setdefault("_angles", {})
        key = (g, h, ctx, sign)
        if key not in cache:
            cache[key] = arccos_angle(q1, q2, sign * c)
        return cache[key]

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

    # -- first moments ---------------------------------------------------------------
    def mean(self, u: str, side: int):
        """E[Z^u] per example of ``side`` (shape (N,) or a scalar)."""
        key = (u, side)
        if key not in self._mean:
            node = self.p[u]
            if isinstance(node, LinComb):
                val = sum(c * self.mean(x, side) for x, c in zip(node.args, node.coeffs)) + node.const
            elif node.is_gaussian_atom:
                val = 0.0
            else:
                val = self.mean_of(self.factors(u), side)
            self._mean[key] = val
        return self._mean[key]

    def mean_of(self, fs: list[str], side: int):
        ctx = (side, side, True)
        out = 1.0
        for comp in self._components([(f, 0) for f in fs]):
            A = [f for f, _ in comp]
            if len(A) == 1:
                out = out * self._mean_single(A[0], side)
            else:
                out = out * self._integrate(A, [], ctx)
        return out

    def _mean_single(self, u: str, side: int):
        node = self.p[u]
        if isinstance(node, LinComb) or node.is_gaussian_atom:
            return self.mean(u, side)
        form = self._unary(u)
        if form is None:
            return self._integrate([u], [], (side, side, True))
        phi, g = form
        q = self.var(g, side)
        rule = mean_rule(phi)
        if rule is not None:
            return rule(q)
        rule = self.settings.quad_rule
        return self._quadrature(lambda deg: gaussian.expect_1d(phi, q, deg, rule), 1, rule, u)

    # -- the general integral --------------------------------------------------------
    def leaves(self, u: str) -> frozenset:
        """The maximal Gaussian nodes u is a function of: u itself if it is Gaussian, else
        the leaves of its arguments.  Integrating over leaves rather than atoms keeps
        φ(Wx + b) one-dimensional."""
        if u not in self._leaves:
            node = self.p[u]
            if self.is_gaussian(u):
                self._leaves[u] = frozenset([u])
            else:
                self._leaves[u] = frozenset().union(*(self.leaves(a) for a in node.args))
        return self._leaves[u]

    def kinked(self, u: str) -> bool:
        """u is computed through a non-smooth nonlinearity (relu, step...) of its leaves."""
        if self.is_gaussian(u):
            return False
        node = self.p[u]
        own = isinstance(node, Nonlin) and not node.fn.family.smooth
        return own or any(self.kinked(a) for a in node.args)

    def evaluate(self, u: str, values: dict[str, np.ndarray], memo: dict) -> np.ndarray:
        """u as a function of its Gaussian leaves (or atoms), at the given values."""
        if u in memo:
            return memo[u]
        if u in values:
            return values[u]
        node = self.p[u]
        if node.is_gaussian_atom:
            out = values[u]
        elif isinstance(node, LinComb):
            out = sum(c * self.evaluate(x, values, memo) for x, c in zip(node.args, node.coeffs)) + node.const
        else:
            out = node.fn(*(self.evaluate(x, values, memo) for x in node.args))
        memo[u] = out
        return out

    def _integrate(self, A: list[str], B: list[str], ctx: Ctx):
        """E[Π_{f∈A} f(ξ_i) · Π_{g∈B} g(ξ'_j)] over the joint Gaussian of their leaves."""
        a, b, diag = ctx
        atoms_a = sorted(set().union(*(self.leaves(f) for f in A)), key=self._order.get)
        atoms_b = sorted(set().union(*(self.leaves(f) for f in B)), key=self._order.get) if B else []
        what = "·".join(A) + (" × " + "·".join(B) if B else "")
        if diag:
            names = sorted(set(atoms_a) | set(atoms_b), key=self._order.get)
            variables = [(x, 0) for x in names]
        else:
            variables = [(x, 0) for x in atoms_a] + [(x, 1) for x in atoms_b]
        D = len(variables)
        entries = {}
        for i, (x, si) in enumerate(variables):
            for j in range(i, D):
                y, sj = variables[j]
                if diag or si == sj == 0:
                    val = self.on_a(self.cov(x, y, (a, a, True)), ctx)
                elif si == sj == 1:
                    val = self.on_b(self.cov(x, y, (b, b, True)), ctx)
                elif si == 0:
                    val = self.cov(x, y, ctx)
                else:
                    val = self.cov(y, x, ctx)
                entries[i, j] = val
        # leading axes beyond the context's shape: moments conditional on input masks
        shape = np.broadcast_shapes(self.shape(ctx), *(np.shape(v) for v in entries.values()))
        cov = np.empty(shape + (D, D))
        for (i, j), val in entries.items():
            cov[..., i, j] = cov[..., j, i] = val
        return self.integrate_product(A, B, atoms_a, atoms_b, variables, cov, what, diag)

    def integrate_product(self, A: Sequence[str], B: Sequence[str], atoms_a: Sequence[str], atoms_b: Sequence[str],
                          variables: Sequence[tuple[str, int]], cov: np.ndarray, what: str, diag: bool):
        """E[Π_{f∈A} f · Π_{g∈B} g] where the leaves ``variables`` (atom, side) have the joint
        covariance ``cov``: A reads side 0's atoms, B side 1's (side 0's when ``diag``)."""
        index = {v: k for k, v in enumerate(variables)}

        def F(z: Sequence[np.ndarray]) -> np.ndarray:
            va = {x: z[index[(x, 0)]] for x in atoms_a}
            vb = {x: z[index[(x, 0 if diag else 1)]] for x in atoms_b}
            ma: dict = {}
            mb: dict = {}
            out = 1.0
            for f in A:
                out = out * self.evaluate(f, va, ma)
            for g in B:
                out = out * self.evaluate(g, vb, mb)
            return out

        return self.integrate_numeric(F, cov, what, kinked=any(self.kinked(f) for f in (*A, *B)))

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
            if r <= 4 and not (kinked and s.nd_deg is None):
                if s.nd_deg is None:
                    tol = max(s.quad_tol, 1e-9)
                    val, deg, err = gaussian.adaptive(
                        lambda k: gaussian.expect_nd(F, cov, k, "trapezoid", factor=L), 17, tol,
                        nd_max_deg(r, int(np.prod(cov.shape[:-2], dtype=np.int64)), s.max_deg))
                    self.report.quadrature.append({"dim": r, "deg": deg, "rule": "trapezoid", "what": what,
                                                   "error": err, "converged": err <= tol})
                else:  # a fixed rule, but always checked: tensor Gauss-Hermite can be far off in 3-4D
                    val = gaussian.expect_nd(F, cov, s.nd_deg, "hermite", factor=L)
                    lower = gaussian.expect_nd(F, cov, _lower(s.nd_deg), "hermite", factor=L)
                    err = float(np.max(np.abs(val - lower) / np.maximum(1.0, np.abs(val)), initial=0.0))
                    self.report.quadrature.append({"dim": r, "deg": s.nd_deg, "rule": "hermite", "what": what,
                                                   "error": err, "converged": err <= max(s.quad_tol, 1e-9)})
            else:
                val, se = gaussian.expect_mc(F, cov, s.mc_samples, self._rng)
                self.report.monte_carlo.append({"dim": r, "samples": s.mc_samples, "what": what,
                                                "se": float(np.max(se))})
        if not np.all(np.isfinite(val)):
            raise NumericalError(f"the expectation E[{what}] is not finite")
        return val
