r"""The Master Theorem, written once: E[Z^u Z^v] and E[Z^u] for the vectors of a program.

Every vector u of a (forward or backward) program is, in the limit, a function of jointly
Gaussian *atoms* (initial vectors and MatMul results).  The rules, in the order they apply:

1. **Bilinearity**: linear nodes u = Σ_k c_k x_k + c_u, v = Σ_l d_l y_l + c_v expand,
   E[u v] = Σ_kl c_k d_l E[x_k y_l] + c_v E[u − c_u] + c_u E[v − c_v] + c_u c_v.
2. **Atom covariances**: one rule per atom class (the :data:`LIMIT` table):
   Cov(Z^{Wx}, Z^{Wy}) = σ_W² q_W E[Z^x Z^y] for the same W and orientation,
   σ_U² ⟨ξ_t, ξ'_s⟩/d for an input layer, σ_b² for a bias, σ_v² c(k) c'(l) for a readout's
   gradient seed, and 0 between atoms of different families (W and Wᵀ are different
   families: gradient independence, valid for BP-like programs).
3. **Factorisation**: a product splits over groups of factors whose atoms are independent.
4. **Closed forms** E[φ(g) ψ(h)] of the nonlinearity registry, then **Stein's lemma**
   E[g ψ(h)] = Cov(g, h) E[ψ'(h)], then a **Gaussian integral** over the leaves (the maximal
   Gaussian nodes a vector is a function of).

The rules are written over an abstract value domain; two back ends subclass
:class:`MasterTheorem`: NumPy arrays over all pairs of examples
(:class:`tpkernel.limit.numeric.Expectations`) and sympy expressions
(:class:`tpkernel.symbolic.theorem.SymbolicTheorem`).  Formulas and numbers therefore come
from the same rules and cannot drift apart.

**No recursion.**  A rule is a generator: it *yields* the keys of the moments it needs
(``("cov", u, v, ctx)``, ``("mean", u, ctx)``, ...) and receives their values.
:meth:`MasterTheorem.get` runs the rules on an explicit stack, memoising every key, so the
depth of a program (an RNN of 1000 steps, an MLP of 1000 layers) is limited by memory, not
by Python's recursion limit.  The per-node structure (atoms, leaves, ...) is computed once,
in program order.
"""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Generator, Hashable

from ..errors import ProgramError
from ..ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Nonlin, Program, Readout, Seed
from ..nonlin import Nonlinearity, mean_rule, pair_rule
from ..rules import RuleTable

Rule = Generator[Hashable, Any, Any]


# -- the limit rule table: what each node kind is in the limit --------------------------

@dataclass(frozen=True)
class Atom:
    """A Gaussian atom.  ``family(node)``: the independent Gaussian family it belongs to
    (atoms of different families are independent); ``cov(th, U, V, ctx)``: the covariance
    rule for two atoms of one family (a generator over the theorem ``th``)."""

    family: Callable[[Any], tuple]
    cov: Callable[..., Rule]
    resid: Callable[..., Rule] | None = None  # s = √(qq' − c²) of two atoms of one family, if carried


@dataclass(frozen=True)
class Linear:
    """A linear node: ``terms(node)`` = ((argument, coefficient), ...), ``const(node)`` = c_0."""

    terms: Callable[[Any], tuple[tuple[str, float], ...]]
    const: Callable[[Any], float] = lambda node: 0.0


@dataclass(frozen=True)
class Function:
    """A coordinatewise function of its arguments: ``fn(node)`` is the :class:`Nonlinearity`."""

    fn: Callable[[Any], Nonlinearity]
    args: Callable[[Any], tuple[str, ...]] = lambda node: node.args


def _cov_matmul(th: "MasterTheorem", U: MatMul, V: MatMul, ctx) -> Rule:
    inner = yield ("cov", U.arg, V.arg, ctx)
    return th.param_var(th.p[U.matrix]) * th.average(inner, ctx)


def _cov_embed(th: "MasterTheorem", U: Embed, V: Embed, ctx) -> Rule:
    return th.input_var(th.p[U.layer]) * th.gram(U, V, ctx)
    yield  # a generator without requests


def _resid_matmul(th: "MasterTheorem", U: MatMul, V: MatMul, ctx) -> Rule:
    sa = yield ("resid", U.arg, V.arg, ctx)
    return None if sa is None else th.param_var(th.p[U.matrix]) * sa


def _resid_embed(th: "MasterTheorem", U: Embed, V: Embed, ctx) -> Rule:
    sg = th.gram_residual(U, V, ctx)
    return None if sg is None else th.input_var(th.p[U.layer]) * sg
    yield


def _cov_bias(th: "MasterTheorem", U: Bias, V: Bias, ctx) -> Rule:
    return th.param_var(U)
    yield


def _cov_seed(th: "MasterTheorem", U: Seed, V: Seed, ctx) -> Rule:
    return th.seed_cov(U, V, ctx)
    yield


LIMIT = RuleTable("limit", {
    MatMul: Atom(lambda n: ("W", n.matrix, n.transpose), _cov_matmul, _resid_matmul),
    Embed: Atom(lambda n: ("U", n.layer), _cov_embed, _resid_embed),
    Bias: Atom(lambda n: ("b", n.name), _cov_bias),
    Seed: Atom(lambda n: ("v", n.readout), _cov_seed),
    LinComb: Linear(lambda n: tuple(zip(n.args, n.coeffs)), lambda n: n.const),
    Nonlin: Function(lambda n: n.fn),
}, exempt={
    Data: "data is bound to arrays, not a vector of width n",
    InputLayer: "a parameter: enters through its Embed atoms",
    Matrix: "a parameter: enters through its MatMul atoms",
    Readout: "a scalar output: assembled by the kernels (tpkernel.terms)",
})


# -- structure: computed once per program, in program order ---------------------------

class Structure:
    """What the rules need to know of each vector, computed in one pass in program order:
    its role (atom / linear / function), the independent Gaussian families it depends on, whether it is a
    centred Gaussian, its leaves (maximal Gaussian nodes), whether a kink lies on its way,
    and its factors (a product's arguments, flattened)."""

    def __init__(self, program: Program) -> None:
        self.p = program
        self.order = {n.name: i for i, n in enumerate(program)}
        self.role: dict[str, Any] = {}
        self.families: dict[str, frozenset] = {}
        self.gaussian: dict[str, bool] = {}
        self.leaves: dict[str, frozenset] = {}
        self.kinked: dict[str, bool] = {}
        self.factors: dict[str, tuple[str, ...]] = {}
        for node in program:
            if not node.is_vector:
                continue
            self._add(node)

    def _add(self, node) -> None:
        u = node.name
        role = self.role[u] = LIMIT.rule(node)
        if isinstance(role, Atom):
            self.families[u] = frozenset([role.family(node)])
            self.gaussian[u] = True
            self.leaves[u] = frozenset([u])
            self.kinked[u] = False
            self.factors[u] = (u,)
            return
        args = self.args(u)
        for a in args:
            if a not in self.role:
                raise ProgramError(f"{u}: argument {a!r} is not a vector")
        self.families[u] = frozenset().union(*(self.families[a] for a in args))
        if isinstance(role, Linear):
            self.gaussian[u] = role.const(node) == 0.0 and all(self.gaussian[a] for a in args)
            self.factors[u] = (u,)
        else:
            self.gaussian[u] = False
            fn = role.fn(node)
            self.factors[u] = tuple(f for a in args for f in self.factors[a]) if fn.is_product else (u,)
        self.leaves[u] = frozenset([u]) if self.gaussian[u] else frozenset().union(*(self.leaves[a] for a in args))
        own = isinstance(role, Function) and not role.fn(node).family.smooth
        self.kinked[u] = not self.gaussian[u] and (own or any(self.kinked[a] for a in args))

    def args(self, u: str) -> list[str]:
        """The vectors u reads, by its limit role."""
        role, node = self.role[u], self.p[u]
        return [a for a, _ in role.terms(node)] if isinstance(role, Linear) else list(role.args(node))

    def linear_terms(self, u: str) -> dict[str, float] | None:
        """u = Σ_x c_x x over the non-linear nodes x it sums (linear nodes expanded), or None
        when a constant enters."""
        out: dict[str, float] = {}
        stack = [(u, 1.0)]
        while stack:
            x, cx = stack.pop()
            role, node = self.role[x], self.p[x]
            if isinstance(role, Linear):
                if role.const(node) != 0.0:
                    return None
                stack += [(y, cx * cy) for y, cy in role.terms(node)]
            else:
                out[x] = out.get(x, 0.0) + cx
        return out

    def unary(self, u: str) -> tuple[Nonlinearity | None, str] | None:
        """(φ, g) with u = φ(g), g Gaussian (φ None: u itself is Gaussian), else None."""
        if self.gaussian[u]:
            return None, u
        role, node = self.role[u], self.p[u]
        if isinstance(role, Function):
            fn, args = role.fn(node), role.args(node)
            if len(args) == 1 and not fn.is_product and self.gaussian[args[0]]:
                return fn, args[0]
        return None

    def components(self, items: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
        """Group factors into sets whose atoms may be correlated (union-find on families)."""
        groups: list[tuple[set, list]] = []
        for item in items:
            ks = set(self.families[item[0]])
            merged = [g for g in groups if g[0] & ks]
            keys, members = ks, [item]
            for g in merged:
                keys |= g[0]
                members = g[1] + members
                groups.remove(g)
            groups.append((keys, members))
        return [g[1] for g in groups]

    def evaluator(self, names) -> list[tuple[str, Callable]]:
        """The nodes between the leaves and ``names``, in program order, each with a function
        of the values computed so far: evaluating them in this order needs no recursion."""
        needed: set[str] = set()
        stack = list(names)
        while stack:
            u = stack.pop()
            if u in needed or self.gaussian[u]:
                continue
            needed.add(u)
            stack += self.args(u)
        steps = []
        for u in sorted(needed, key=self.order.__getitem__):
            role, node = self.role[u], self.p[u]
            if isinstance(role, Linear):
                terms, const = role.terms(node), role.const(node)
                steps.append((u, lambda env, terms=terms, const=const:
                              sum(c * env[x] for x, c in terms) + const))
            else:
                fn, args = role.fn(node), role.args(node)
                steps.append((u, lambda env, fn=fn, args=args: fn(*(env[a] for a in args))))
        return steps


# -- the theorem ---------------------------------------------------------------------

class MasterTheorem(ABC):
    """The rules of the Master Theorem over an abstract value domain.

    A back end subclasses it and supplies the domain: contexts (which examples a moment
    pairs up), arithmetic constants, the leaves of the atom rules (:meth:`param_var`,
    :meth:`gram`, :meth:`seed_cov`), closed forms and what to do without one
    (:meth:`pair_value`, :meth:`mean_value`, :meth:`integral_value`), and how a request
    for E[u v] is canonicalised and memoised (:meth:`_rule_cov`)."""

    zero: Any = 0.0
    one: Any = 1.0
    #: a back end that carries s = √(E[u²]E[v²] − E[uv]²) through the layers (``("resid", u, v,
    #: ctx)`` requests, passed to the closed forms as ``s=``) sets this
    residuals: bool = False

    def __init__(self, program: Program) -> None:
        self.p = program
        self.structure = Structure(program)
        self.memo: dict[Hashable, Any] = {}
        self._rules: dict[str, Callable[..., Rule]] = {
            "cov": self._rule_cov, "rhs": self._rule_rhs, "mean": self._rule_mean, "resid": self._rule_resid}

    # -- the driver: rules on an explicit stack -------------------------------------
    def get(self, key: Hashable):
        """The value of a request key, running every rule it needs without recursion."""
        memo = self.memo
        if key in memo:
            return memo[key]
        if gc.isenabled():  # the memo grows by millions of acyclic entries (long sequences): no cycle
            gc.disable()    # collection while the rules run (40% of the time of an RNN of 300 steps)
            try:
                return self.get(key)
            finally:
                gc.enable()
        active = {key}
        stack = [(key, self._rules[key[0]](*key[1:]))]
        value = None
        while stack:
            k, gen = stack[-1]
            try:
                need = gen.send(value)
            except StopIteration as stop:
                memo[k] = value = stop.value
                active.discard(k)
                stack.pop()
                continue
            if need in memo:
                value = memo[need]
                continue
            if need in active:  # pragma: no cover - programs are acyclic
                raise ProgramError(f"cyclic request {need!r}")
            active.add(need)
            stack.append((need, self._rules[need[0]](*need[1:])))
            value = None
        return memo[key]

    def cov(self, u: str, v: str, ctx):
        """E[Z^u Z^v] in context ``ctx``."""
        return self.get(("cov", u, v, ctx))

    def mean(self, u: str, ctx):
        """E[Z^u] in the one-side context ``ctx``."""
        return self.get(("mean", u, ctx))

    # -- the domain (back ends implement the abstract methods, may override the rest) ---------------------------------------------
    @abstractmethod
    def side(self, ctx, k: int):
        """The context of side k (0: the first example, 1: the second) with itself, one example."""

    def on_a(self, x, ctx):
        """A one-side quantity of side a, broadcast over the context."""
        return x

    def on_b(self, x, ctx):
        return x

    @abstractmethod
    def same_example(self, ctx) -> bool:
        """The two sides of ``ctx`` are one example (E[u(ξ) v(ξ)])."""

    def number(self, c: float):
        return c

    def is_zero(self, x) -> bool:
        return False

    def average(self, x, ctx):
        """What a sum over coordinates does to a conditional moment (masked input layers)."""
        return x

    @abstractmethod
    def param_var(self, node) -> Any:
        """σ² q of a matrix or bias (q: the kept fraction of a pruned matrix, 1 when rescaled)."""

    @abstractmethod
    def input_var(self, layer: InputLayer) -> Any:
        """σ² (times the kept weights' scale s² of a pruned layer) of an input layer."""

    @abstractmethod
    def gram(self, U: Embed, V: Embed, ctx) -> Any:
        """⟨ξ_t, ξ'_s⟩/d for the data steps two embeddings of one input layer read."""

    @abstractmethod
    def seed_cov(self, U: Seed, V: Seed, ctx) -> Any:
        """σ_v² c_k c'_l: the covariance of two gradient seeds of one readout."""

    def check_pair(self, g: str, h: str, q1, q2, c) -> None:
        """A hook to check a pair's covariance against its variances."""

    @abstractmethod
    def pair_value(self, phi, psi, q1, q2, c, pair: tuple, what: str, closed: bool):
        """E[φ(g) ψ(h)] (φ or ψ None: the identity) for ``pair`` = (g, h, ctx); ``closed``: the
        registry has a pair rule."""

    @abstractmethod
    def mean_value(self, phi: Nonlinearity, q, what: str):
        """E[φ(g)], g ~ N(0, q)."""

    @abstractmethod
    def integral_value(self, A, B, atoms_a, atoms_b, variables, entries, ctx):
        """E[Π A · Π B'] over the leaves ``variables`` with covariance ``entries``."""

    # -- E[u v] --------------------------------------------------------------------------
    def _rule_cov(self, u: str, v: str, ctx) -> Rule:
        """A request for E[u v]: canonicalise and memoise (back ends may name it)."""
        return (yield ("rhs", u, v, ctx))

    def _rule_rhs(self, u: str, v: str, ctx) -> Rule:
        """One step of the theorem for E[u v]."""
        S = self.structure
        ru, rv = S.role[u], S.role[v]
        if isinstance(ru, Linear) or isinstance(rv, Linear):
            U, V = self.p[u], self.p[v]
            xs, cu = (ru.terms(U), ru.const(U)) if isinstance(ru, Linear) else (((u, 1.0),), 0.0)
            ys, cv = (rv.terms(V), rv.const(V)) if isinstance(rv, Linear) else (((v, 1.0),), 0.0)
            num = self.number
            out = self.zero
            fam = S.families
            for x, c in xs:
                for y, d in ys:
                    if S.gaussian[x] and S.gaussian[y] and not fam[x] & fam[y]:
                        continue  # independent centred Gaussians: E[x y] = 0
                    out = out + num(c) * num(d) * (yield ("cov", x, y, ctx))
            if cv:
                mean_a = self.zero
                for x, c in xs:
                    mean_a = mean_a + num(c) * (yield ("mean", x, self.side(ctx, 0)))
                out = out + num(cv) * self.on_a(mean_a, ctx)
            if cu:
                mean_b = self.zero
                for y, d in ys:
                    mean_b = mean_b + num(d) * (yield ("mean", y, self.side(ctx, 1)))
                out = out + num(cu) * self.on_b(mean_b, ctx)
            if cu and cv:
                out = out + num(cu) * num(cv)
            return out
        if isinstance(ru, Atom) and isinstance(rv, Atom):
            U, V = self.p[u], self.p[v]
            if S.families[u] != S.families[v]:
                return self.zero
            return (yield from ru.cov(self, U, V, ctx))
        return (yield from self._product(S.factors[u], S.factors[v], ctx, (u, v)))

    def _product(self, fu, fv, ctx, whole) -> Rule:
        """E[Π fu · Π fv'], factorised over independent groups of atoms."""
        items = [(f, 0) for f in fu] + [(f, 1) for f in fv]
        out = self.one
        for comp in self.structure.components(items):
            A = [f for f, s in comp if s == 0]
            B = [f for f, s in comp if s == 1]
            if not B:
                val = self.on_a((yield from self._mean_of(A, self.side(ctx, 0))), ctx)
            elif not A:
                val = self.on_b((yield from self._mean_of(B, self.side(ctx, 1))), ctx)
            elif len(A) == 1 and len(B) == 1:
                if (A[0], B[0]) == whole:
                    val = yield from self._pair(A[0], B[0], ctx)
                else:
                    val = yield ("cov", A[0], B[0], ctx)
            else:
                val = yield from self._integral(A, B, ctx)
            out = out * val
            if self.is_zero(out):
                break
        return out

    def _pair(self, u: str, v: str, ctx) -> Rule:
        """E[φ(g) ψ(h)] for single (non-product) factors: closed form, Stein, or an integral."""
        S = self.structure
        fu, fv = S.unary(u), S.unary(v)
        if fu is None or fv is None:
            return (yield from self._integral([u], [v], ctx))
        (phi, g), (psi, h) = fu, fv
        q1 = self.on_a((yield ("cov", g, g, self.side(ctx, 0))), ctx)
        q2 = self.on_b((yield ("cov", h, h, self.side(ctx, 1))), ctx)
        c = yield ("cov", g, h, ctx)
        self.check_pair(g, h, q1, q2, c)
        if phi is not None and psi is not None:
            if pair_rule(phi, psi) is not None:
                s = (yield ("resid", g, h, ctx)) if self.residuals else None
                kw = {} if s is None else {"s": s}
                return self.pair_value(phi, psi, q1, q2, c, (g, h, ctx), f"{u}·{v}", closed=True, **kw)
        elif phi is None and psi is None:  # pragma: no cover - atoms are handled earlier
            return c
        # Stein's lemma: E[z ψ(v)] = Cov(z, v) E[ψ'(v)]
        if phi is None and psi.family.deriv is not None and mean_rule(psi.derivative()) is not None:
            return c * self.mean_value(psi.derivative(), q2, v)
        if psi is None and phi.family.deriv is not None and mean_rule(phi.derivative()) is not None:
            return c * self.mean_value(phi.derivative(), q1, u)
        return self.pair_value(phi, psi, q1, q2, c, (g, h, ctx), f"{u}·{v}", closed=False)

    # -- s = √(E[u²]E[v²] − E[uv]²), carried through the layers -----------------------
    def affine_residual(self, x11, x22, x12, a, beta, sx):
        """s of u = c·x + Σ c_b b, v = c·x' + Σ c_b b (a = c², β = Σ c_b² σ_b²) from the moments of
        (x, x') and their s (back ends that carry residuals override)."""
        return None

    def post_residual(self, phi, psi, q1, q2, c, s):
        """s of (φ(g), ψ(h)) from the pair's (q1, q2, c, s), or None without a closed form."""
        return None

    def gram_residual(self, U: Embed, V: Embed, ctx):
        """s of the Gram entries ⟨ξ, ξ'⟩/d of two embeddings of one input layer."""
        return None

    def _rule_resid(self, u: str, v: str, ctx) -> Rule:
        """A request for s(u, v) (back ends canonicalise and memoise; None: not carried, the
        closed forms then compute s from (q1, q2, c))."""
        return (yield from self._resid_rhs(u, v, ctx))

    def _affine(self, u: str):
        """(x, c, {b: c_b}) with u = c·x + Σ c_b b (x a single non-bias vector), or None."""
        terms = self.structure.linear_terms(u)
        if terms is None:
            return None
        main, coef, biases = None, 0.0, {}
        for x, cx in terms.items():
            if isinstance(self.p[x], Bias):
                biases[x] = cx
            elif main is None:
                main, coef = x, cx
            else:
                return None
        return None if main is None else (main, coef, biases)

    def _resid_rhs(self, u: str, v: str, ctx) -> Rule:
        """s(u, v) by structure: u = c·x + Σ c_b b and v = c·x' + Σ c_b b (the same coefficients and
        biases, independent of x, x') give
        s² = c⁴ s_x² + c²β[(√X11 − √X22)² + 2(√X11√X22 − X12)] (:meth:`affine_residual`); the
        s_x of two atoms of one family is σ² q s of their arguments (MatMul) or σ² s of the Gram
        entries (embeddings), of φ(g), ψ(h) :meth:`post_residual` of (g, h).  None otherwise."""
        S = self.structure
        fu, fv = self._affine(u), self._affine(v)
        if fu is None or fv is None:
            return None
        (x, cx, bu), (y, cy, bv) = fu, fv
        if cx != cy or bu != bv:
            return None
        fam_b = frozenset().union(*(S.families[b] for b in bu)) if bu else frozenset()
        if S.families[x] & fam_b or S.families[y] & fam_b:
            return None
        sx = yield from self._resid_main(x, y, ctx)
        if sx is None:
            return None
        if not bu and cx == 1.0:
            return sx
        beta = self.zero
        for b, cb in bu.items():
            beta = beta + self.number(cb * cb) * self.param_var(self.p[b])
        x11 = self.on_a((yield ("cov", x, x, self.side(ctx, 0))), ctx)
        x22 = self.on_b((yield ("cov", y, y, self.side(ctx, 1))), ctx)
        x12 = yield ("cov", x, y, ctx)
        return self.affine_residual(x11, x22, x12, cx * cx, beta, sx)

    def _resid_main(self, x: str, y: str, ctx) -> Rule:
        S = self.structure
        rx, ry = S.role[x], S.role[y]
        X, Y = self.p[x], self.p[y]
        if isinstance(rx, Atom) and isinstance(ry, Atom):
            if S.families[x] != S.families[y] or rx.resid is None:
                return None
            return (yield from rx.resid(self, X, Y, ctx))
        fx, fy = S.unary(x), S.unary(y)
        if fx is None or fy is None or fx[0] is None or fy[0] is None:
            return None
        (phi, g), (psi, h) = fx, fy
        s = yield ("resid", g, h, ctx)
        if s is None:
            return None
        q1 = self.on_a((yield ("cov", g, g, self.side(ctx, 0))), ctx)
        q2 = self.on_b((yield ("cov", h, h, self.side(ctx, 1))), ctx)
        c = yield ("cov", g, h, ctx)
        return self.post_residual(phi, psi, q1, q2, c, s)

    # -- E[u] ----------------------------------------------------------------------------
    def _rule_mean(self, u: str, ctx) -> Rule:
        S = self.structure
        role = S.role[u]
        if isinstance(role, Linear):
            node = self.p[u]
            out = self.zero
            for x, c in role.terms(node):
                out = out + self.number(c) * (yield ("mean", x, ctx))
            return out + self.number(role.const(node))
        if isinstance(role, Atom):
            return self.zero
        return (yield from self._mean_of(S.factors[u], ctx))

    def _mean_of(self, fs, ctx) -> Rule:
        S = self.structure
        out = self.one
        for comp in S.components([(f, 0) for f in fs]):
            A = [f for f, _ in comp]
            if len(A) > 1:
                val = yield from self._integral(A, [], ctx)
            elif not isinstance(S.role[A[0]], Function):
                val = yield ("mean", A[0], ctx)
            else:
                form = S.unary(A[0])
                if form is None:
                    val = yield from self._integral(A, [], ctx)
                else:
                    phi, g = form
                    val = self.mean_value(phi, (yield ("cov", g, g, ctx)), A[0])
            out = out * val
            if self.is_zero(out):
                break
        return out

    # -- the general integral ----------------------------------------------------------
    def _integral(self, A, B, ctx) -> Rule:
        """E[Π_{f∈A} f(ξ) · Π_{g∈B} g(ξ')] over the joint Gaussian of their leaves."""
        S = self.structure
        order = S.order.__getitem__
        same = self.same_example(ctx)
        atoms_a = sorted(set().union(*(S.leaves[f] for f in A)), key=order)
        atoms_b = sorted(set().union(*(S.leaves[f] for f in B)), key=order) if B else []
        if same:
            variables = [(x, 0) for x in sorted(set(atoms_a) | set(atoms_b), key=order)]
        else:
            variables = [(x, 0) for x in atoms_a] + [(x, 1) for x in atoms_b]
        entries = {}
        for i, (x, si) in enumerate(variables):
            for j in range(i, len(variables)):
                y, sj = variables[j]
                if same or si == sj == 0:
                    val = self.on_a((yield ("cov", x, y, self.side(ctx, 0))), ctx)
                elif si == sj == 1:
                    val = self.on_b((yield ("cov", x, y, self.side(ctx, 1))), ctx)
                elif si == 0:
                    val = yield ("cov", x, y, ctx)
                else:
                    val = yield ("cov", y, x, ctx)
                entries[i, j] = val
        return self.integral_value(A, B, atoms_a, atoms_b, variables, entries, ctx)
