r"""The sympy back end of the Master Theorem (:mod:`tpkernel.limit.theorem`): the same rules
as the numeric evaluator run on sympy expressions, naming one line per vector."""

from __future__ import annotations

import numpy as np
import sympy

from ..backward import Backward, backward, pick_readout, readout_scale, readout_terms
from ..errors import ProgramError
from ..ir import Embed, Nonlin, Program
from ..limit.theorem import LIMIT, Function, Linear, MasterTheorem
from ..nonlin import Nonlinearity, sym_number
from ..terms import contract
from .functions import (XI, XI2, D, Equation, GaussianIntegral, Gram, Kernel, Param, PoolWeight, Sigma,
                        _CLASS_COUNTER, _expectation_class, _mean_class)


class SymbolicTheorem(MasterTheorem):
    """The sympy back end of the Master Theorem (:mod:`tpkernel.limit.theorem`): the same
    rules as the numeric evaluator, over sympy expressions.  A context is a pair of the
    symbols ξ, ξ'; E[Z^u(a) Z^v(b)] of two *named* vectors is the symbol of a line
    (Σ[u,v](a, b) or D[u,v](a, b)) whose right-hand side is recorded once, at (ξ, ξ')."""

    zero = sympy.Integer(0)
    one = sympy.Integer(1)

    def __init__(self, program: Program, output, closed_form: bool, lengths: str, show_lr) -> None:
        program.validate()
        self.fwd = program
        self.r = pick_readout(program, output)
        try:
            self.bw: Backward = backward(program, output)
            self.has_ntk = True
        except ProgramError as err:  # a nonlinearity without derivative: the NNGP only
            if "derivative" not in str(err):
                raise
            self.bw = Backward(program, self.r.name, {}, ())
            self.has_ntk = False
        super().__init__(self.bw.program)
        self._rules["line"] = self._rule_line
        self.closed_form = closed_form
        self.lengths = lengths
        self.show_lr = show_lr
        self.param_values: dict[Param, float] = {}
        self.lines: dict[tuple[str, str], sympy.Expr] = {}
        self.same_lines: dict[tuple[str, str], sympy.Expr] = {}
        self.labels = self._derivative_labels()
        self.named = self._named()
        self._integrals: dict[tuple, type] = {}
        self.v_name = self.r.vector or ("v" if "v" not in program else self.r.name)
        self.o_name = "o" if "o" not in program else self.r.name + "_o"
        self._build_kernels()
        self._build_vectors()

    # -- naming ----------------------------------------------------------------------
    def _named(self) -> dict[str, tuple[type, str]]:
        """Vectors that get their own line, with their class and display name."""
        out: dict[str, tuple[type, str]] = {}
        fwd_named = []
        for n in self.fwd:
            if not n.is_vector:
                continue
            users = self.fwd.consumers(n.name)
            role = LIMIT.rule(n)
            if isinstance(role, Function):  # a nonlinearity
                keep = True
            elif isinstance(role, Linear):  # a sum that something other than a sum reads
                keep = any(not isinstance(LIMIT.find(type(u)), Linear) for u in users)
            else:  # a Gaussian atom read by a nonlinearity or an output
                keep = any(isinstance(LIMIT.find(type(u)), Function) or u.sort == "scalar" for u in users)
            if keep:
                out[n.name] = (Sigma, n.name)
                fwd_named.append(n.name)
        for x in fwd_named:  # the latest named vector sharing a gradient node names it
            g = self.bw.grads.get(x)
            if g is not None:
                out[g] = (D, x)
        return out

    def _derivative_labels(self) -> dict[Nonlinearity, str]:
        out: dict[Nonlinearity, str] = {}
        for n in self.fwd.of_type(Nonlin):
            if n.fn.is_product or n.fn.family.deriv is None:
                continue
            for m in range(len(n.args)):
                try:
                    d = n.fn.derivative(m)
                except ProgramError:  # pragma: no cover
                    continue
                out.setdefault(d, n.fn.label + "'" if len(n.args) == 1 else f"∂{m + 1}{n.fn.label}")
        return out

    def label(self, f: Nonlinearity | None) -> str:
        if f is None:
            return "id"
        return self.labels.get(f, f.label)

    def param_key(self, name: str) -> str:
        """Parameter names as the symbols use them; "v" and "o" are the readout's."""
        if name not in self.fwd:
            return {"v": self.v_name, "o": self.o_name}.get(name, name)
        return name

    def default_data(self) -> str:
        from ..ir import Data
        datas = self.fwd.of_type(Data)
        if len(datas) != 1:
            raise ProgramError(f"program {self.fwd.name!r} has data {[d.name for d in datas]}: name one")
        return datas[0].name

    # -- parameters ------------------------------------------------------------------
    def std(self, name: str, value: float) -> Param:
        s = Param("sigma", name)
        self.param_values[s] = float(value)
        return s

    def lr(self, name: str, value: float) -> sympy.Expr:
        s = Param("eta", name)
        self.param_values[s] = float(value)
        if self.show_lr or (self.show_lr is None and value != 1.0):
            return s
        return sym_number(value)

    def param_std(self, name: str) -> Param:
        node = self.fwd[name]
        return self.std(name, node.std)

    def keep(self, name: str, node) -> sympy.Expr:
        """q_p for a pruned parameter (its factor on covariances and NTK terms; 1 when dense or
        rescaled, the rescaling 1/√q cancelling it)."""
        m = getattr(node, "mask", None)
        if m is None or m.rescale:
            return sympy.Integer(1)
        s = Param("q", name)
        self.param_values[s] = float(m.q)
        return s

    # -- pooling ---------------------------------------------------------------------
    def weight(self, k: int, side) -> sympy.Expr:
        r = self.r
        if r.pool is None:
            return sympy.Integer(1)
        K = len(r.args)
        if self.lengths == "equal":
            if r.pool == "last":
                return sympy.Integer(1 if k == K - 1 else 0)
            return sympy.Rational(1, K)
        return PoolWeight(sympy.Integer(k), side)

    def equal_weights(self, n: int) -> np.ndarray:
        K = len(self.r.args)
        c = np.zeros((n, K))
        if self.r.pool is None:
            c[:, 0] = 1.0
        elif self.r.pool == "last":
            c[:, K - 1] = 1.0
        else:
            c[:] = 1.0 / K
        return c

    # -- the domain of the Master Theorem ------------------------------------------
    def side(self, ctx, k: int):
        return (ctx[k], ctx[k])

    def same_example(self, ctx) -> bool:
        return ctx[0] == ctx[1]

    def number(self, c: float) -> sympy.Expr:
        return sym_number(c)

    def is_zero(self, x) -> bool:
        return x == 0

    def E(self, u: str, v: str, a, b) -> sympy.Expr:
        """E[Z^u(a) Z^v(b)], a and b each ξ or ξ'."""
        return self.cov(u, v, (a, b))

    def _rule_cov(self, u: str, v: str, ctx):
        a, b = ctx
        if a == b and self.structure.order[u] > self.structure.order[v]:
            return (yield ("cov", v, u, ctx))
        nu, nv = self.named.get(u), self.named.get(v)
        if nu is not None and nv is not None and nu[0] is nv[0]:
            rhs = yield ("line", u, v)
            return sympy.Integer(0) if rhs == 0 else nu[0](sympy.Symbol(nu[1]), sympy.Symbol(nv[1]), a, b)
        return (yield ("rhs", u, v, ctx))

    def _rule_line(self, u: str, v: str):
        """The right-hand side of the line of (u, v), at (ξ, ξ')."""
        rhs = self.lines[(u, v)] = yield ("rhs", u, v, (XI, XI2))
        if any(not f.same_example for f in rhs.atoms(GaussianIntegral)):
            # on one example the evaluator integrates over the union of the atoms (fewer
            # Gaussians): keep that form for evaluating Σ[u,v](ξ,ξ) and Σ[u,v](ξ',ξ')
            self.same_lines[(u, v)] = yield ("rhs", u, v, (XI, XI))
        return rhs

    def line(self, u: str, v: str) -> sympy.Expr:
        return self.get(("line", u, v))

    def param_var(self, node) -> sympy.Expr:
        return self.param_std(node.name) ** 2 * self.keep(node.name, node)

    def input_var(self, layer) -> sympy.Expr:
        return self.param_std(layer.name) ** 2 * self.keep(layer.name, layer)

    def seed_cov(self, U, V, ctx) -> sympy.Expr:
        a, b = ctx
        std, _ = readout_scale(self.fwd, self.r)
        return (self.std(self.v_name, std) ** 2 * self.keep(self.v_name, self.r) * self.weight(U.index, a)
                * self.weight(V.index, b))

    def gram(self, U: Embed, V: Embed, ctx) -> sympy.Expr:
        """<ξ_t, ξ'_s>/d for the data steps two embeddings read."""
        return Gram(sympy.Symbol(U.data), sympy.Integer(-1 if U.step is None else U.step),
                    sympy.Symbol(V.data), sympy.Integer(-1 if V.step is None else V.step), *ctx)

    def pair_value(self, phi, psi, q1, q2, c, pair, what, closed) -> sympy.Expr:
        cls = _expectation_class(phi, psi, self.label(phi), self.label(psi))
        if self.closed_form:
            rule = cls.closed_form()
            if rule is not None:
                return rule(q1, q2, c)
        return cls(q1, q2, c)

    def mean_value(self, phi, q, what) -> sympy.Expr:
        cls = _mean_class(phi, self.label(phi))
        if self.closed_form:
            rule = cls.closed_form()
            if rule is not None:
                return rule(q)
        return cls(q)

    def integral_value(self, A, B, atoms_a, atoms_b, variables, entries, ctx) -> sympy.Expr:
        """The general Gaussian integral as a named function of the covariance entries."""
        same = self.same_example(ctx)
        key = (tuple(A), tuple(B), same)
        if key not in self._integrals:
            disp = lambda n: self.named[n][1] if n in self.named and self.named[n][0] is Sigma else n
            title = "·".join(disp(f) for f in A) + (" ; " + "·".join(disp(f) + "'" for f in B) if B else "")
            self._integrals[key] = type(f"E{next(_CLASS_COUNTER)}", (GaussianIntegral,), {
                "nargs": len(entries), "factor_names": (tuple(A), tuple(B)), "title": title,
                "atom_lists": (tuple(atoms_a), tuple(atoms_b)), "gauss_variables": tuple(variables),
                "same_example": same, "__module__": __name__})
        return self._integrals[key](*entries.values())

    # -- kernels ---------------------------------------------------------------------
    def _readout_cov(self) -> sympy.Expr:
        r = self.r
        total = []
        for k, xk in enumerate(r.args):
            wk = self.weight(k, XI)
            if wk == 0:
                continue
            for l, xl in enumerate(r.args):
                wl = self.weight(l, XI2)
                if wl == 0:
                    continue
                total.append(wk * wl * self.E(xk, xl, XI, XI2))
        return sympy.Add(*total)

    def _contraction(self, ntk: bool) -> dict:
        """The formulas' contraction of each kind of term (:mod:`tpkernel.terms`): the named
        parameter coefficients times the sum over pairs of uses."""
        r, rc = self.r, self._readout_cov()

        def coeff(t, name: str, node) -> sympy.Expr:
            lr = self.lr(name, t.lr) if ntk else sympy.Integer(1)
            return lr * self.std(name, t.std) ** 2 * self.keep(name, node)

        def uses(t, inner) -> sympy.Expr:
            s = []
            for u in t.uses:
                for w in t.uses:
                    d = self.E(u.grad, w.grad, XI, XI2)
                    if d != 0:
                        s.append(d * inner(u.input, w.input))
            return sympy.Add(*s)

        def named(key: str, value: sympy.Expr) -> dict:
            return {key: value}

        return {
            "matrix": lambda t: named(t.param, coeff(t, t.param, self.fwd[t.param])
                                      * uses(t, lambda z, z2: self.E(z, z2, XI, XI2))),
            "input": lambda t: named(t.param, coeff(t, t.param, self.fwd[t.param])
                                     * uses(t, lambda e, e2: self.gram(self.p[e], self.p[e2], (XI, XI2)))),
            "bias": lambda t: named(t.param, coeff(t, t.param, None) * self.E(t.grad, t.grad, XI, XI2)),
            "readout": lambda t: named(self.v_name, coeff(t, self.v_name, r) * rc),
            "readout_bias": lambda t: named(self.o_name, coeff(t, self.o_name, None)),
        }

    def _build_kernels(self) -> None:
        nngp = contract(readout_terms(self.fwd, self.r, ntk=False), self._contraction(ntk=False), "symbolic", {})
        self.nngp = sympy.Add(*nngp.values())
        terms = contract(self.bw.terms, self._contraction(ntk=True), "symbolic", {})
        self.ntk_terms = terms
        self.ntk = sympy.Add(*terms.values()) if self.has_ntk else None
        self.ntk_display = sympy.Add(*(v for v in terms.values() if v != 0), evaluate=False) \
            if len([v for v in terms.values() if v != 0]) > 1 else None

    def _build_vectors(self) -> None:
        self.forward: dict[str, Equation] = {}
        self.backward: dict[str, Equation] = {}
        for n in self.fwd:
            if not n.is_vector:
                continue
            u = n.name
            lhs = Sigma(sympy.Symbol(u), sympy.Symbol(u), XI, XI2)
            rhs = self.line(u, u) if u in self.named else self.E(u, u, XI, XI2)
            self.forward[u] = Equation(lhs, rhs, "forward")
        for n in reversed(list(self.fwd)):
            u = n.name
            g = self.bw.grads.get(u)
            if g is None:
                continue
            lhs = D(sympy.Symbol(u), sympy.Symbol(u), XI, XI2)
            own = g in self.named and self.named[g][1] == u
            rhs = self.line(g, g) if own else self.E(g, g, XI, XI2)
            self.backward[u] = Equation(lhs, rhs, "backward")

    def same_line_exprs(self) -> dict[tuple, sympy.Expr]:
        out = {}
        for (u, v), rhs in self.same_lines.items():
            nu, nv = self.named[u], self.named[v]
            out[(nu[0], nu[1], nv[1])] = rhs
        return out

    @property
    def line_exprs(self) -> dict[tuple, sympy.Expr]:
        out = {}
        for (u, v), rhs in self.lines.items():
            nu, nv = self.named.get(u), self.named.get(v)
            if nu is None or nv is None or nu[0] is not nv[0] or rhs is None:
                continue
            out[(nu[0], nu[1], nv[1])] = rhs
        return out

    def equations(self) -> list[Equation]:
        fwd, bwd = [], []
        for (u, v), rhs in self.lines.items():
            nu, nv = self.named.get(u), self.named.get(v)
            if nu is None or nv is None or nu[0] is not nv[0] or rhs is None or rhs == 0:
                continue
            lhs = nu[0](sympy.Symbol(nu[1]), sympy.Symbol(nv[1]), XI, XI2)
            key = (max(self.structure.order[u], self.structure.order[v]), self.structure.order[u], self.structure.order[v])
            (fwd if nu[0] is Sigma else bwd).append((key, Equation(lhs, rhs, "forward" if nu[0] is Sigma
                                                                  else "backward")))
        out = [e for _, e in sorted(fwd, key=lambda t: t[0])]
        out.append(Equation(Kernel(sympy.Symbol("Σ"), XI, XI2), self.nngp, "nngp"))
        out += [e for _, e in sorted(bwd, key=lambda t: t[0])]
        if self.ntk is not None:
            out.append(Equation(Kernel(sympy.Symbol("Θ"), XI, XI2), self.ntk, "ntk", self.ntk_display))
        return out


