r"""The :class:`Formulas` object (``tp.formulas``): the equations, their printing, and their
evaluation on data by ``sympy.lambdify``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sympy

from ..checks import check_kernel
from ..data import _bind, _check_dims, _pool, max_steps
from ..errors import ProgramError
from ..ir import InputLayer, Program, Readout
from ..limit import gaussian
from ..limit.numeric import Expectations, Settings
from ..nonlin import mean_rule, pair_rule
from .functions import (XI, XI2, _PAIRINGS, CovBase, Equation, Expectation, GaussianIntegral, Gram, Mean,
                        Param, PoolWeight, _NumPy, expectation)
from .theorem import SymbolicTheorem

class Formulas:
    """The limiting kernels of a program as sympy recurrences (see :func:`formulas`).

    - ``equations``: the system, one :class:`Equation` per line, in program order
      (forward lines, the NNGP, backward lines, the NTK);
    - ``forward[u]`` / ``backward[u]``: for every vector u, the equation of Σ[u] / D[u];
    - ``nngp``, ``ntk``: the kernels as expressions in the system's symbols;
      ``ntk_terms``: the NTK per parameter;
    - ``unroll(expr)``: substitute the lines until only inputs, parameters and
      expectations are left;
    - ``evaluate(x1, x2=None)``: NumPy values by ``sympy.lambdify`` (same result as
      :func:`tpkernel.kernels`);
    - ``str(F)``, ``F.latex()``, and rendered display in notebooks.
    """

    def __init__(self, program: Program, *, output: str | None = None, closed_form: bool = False,
                 lengths: str = "equal", show_lr: bool | None = None) -> None:
        if lengths not in ("equal", "any"):
            raise ProgramError(f"formulas: lengths must be 'equal' or 'any', got {lengths!r}")
        self.program = program
        self.output = output
        self.closed_form = bool(closed_form)
        self.lengths = lengths
        self.show_lr = show_lr
        b = SymbolicTheorem(program, output, self.closed_form, lengths, show_lr)
        self._b = b
        self.readout: Readout = b.r
        self.params: dict[Param, float] = b.param_values
        self.nngp: sympy.Expr = b.nngp
        self.ntk: sympy.Expr = b.ntk
        self.ntk_terms: dict[str, sympy.Expr] = b.ntk_terms
        self.forward: dict[str, Equation] = b.forward
        self.backward: dict[str, Equation] = b.backward
        self._lines: dict[tuple, sympy.Expr] = b.line_exprs  # (cls, u, v) -> generic rhs
        self._same_lines: dict[tuple, sympy.Expr] = b.same_line_exprs()  # its one-example form, where it differs
        self.equations: list[Equation] = b.equations()
        self._twin: Formulas | None = None

    # -- symbols ---------------------------------------------------------------------
    def std(self, param: str) -> Param:
        """σ of a parameter (``"v"``/``"o"``: the readout's std / bias std)."""
        return Param("sigma", self._b.param_key(param))

    def lr(self, param: str) -> Param:
        """η of a parameter (a symbol even where the formulas show its value 1)."""
        return Param("eta", self._b.param_key(param))

    def gram(self, t: int | None = None, s: int | None = None, data: str | None = None,
             pairing: tuple = (XI, XI2)) -> sympy.Expr:
        """<ξ_t, ξ'_s>/d (steps from 0, as in ``x[t]``; None for data without steps)."""
        name = data or self._b.default_data()
        d = sympy.Symbol(name)
        return Gram(d, sympy.Integer(-1 if t is None else t), d, sympy.Integer(-1 if s is None else s), *pairing)

    def cov(self, u: str, v: str | None = None, pairing: tuple = (XI, XI2)) -> sympy.Expr:
        """E[Z^u(a) Z^v(b)] for forward vectors u, v (default v = u) in the system's symbols."""
        return self._b.E(u, v or u, *pairing)

    def grad_cov(self, u: str, v: str | None = None, pairing: tuple = (XI, XI2)) -> sympy.Expr:
        """E[Z^{du}(a) Z^{dv}(b)] for forward vectors u, v (their gradients)."""
        g = self._b.bw.grads
        if u not in g or (v or u) not in g:
            return sympy.Integer(0)
        return self._b.E(g[u], g[v or u], *pairing)

    @staticmethod
    def expectation(phi, psi=None) -> type:
        """The class V[φ,ψ] used in these formulas (see :func:`expectation`)."""
        return expectation(phi, psi)

    # -- algebra ---------------------------------------------------------------------
    def unroll(self, expr: sympy.Expr) -> sympy.Expr:
        """Substitute every Σ[...] and D[...] by its line, recursively: the result is in
        terms of Gram entries, parameters, pooling weights and expectations only."""
        done: dict[tuple, sympy.Expr] = {}

        def generic(key):
            if key not in done:
                done[key] = sub(self._lines[key])
            return done[key]

        def sub(e):
            apps = e.atoms(CovBase)
            if not apps:
                return e
            return e.xreplace({a: generic((a.func, *a.names)).xreplace({XI: a.args[2], XI2: a.args[3]})
                               for a in apps})
        return sub(sympy.sympify(expr))

    def values(self) -> dict[Param, float]:
        """Numeric value of every parameter symbol."""
        return dict(self.params)

    # -- display ---------------------------------------------------------------------
    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.equations)

    def __repr__(self) -> str:
        return f"<Formulas of {self.program.name!r}: {len(self.equations)} equations>"

    def legend(self) -> str:
        """What the symbols mean (one paragraph, for the command line)."""
        lines = [
            f"# limiting kernels of program {self.program.name!r} (NTK parametrization), for two inputs ξ, ξ'",
            ("# Σ[u](ξ,ξ') = E[Z^u(ξ) Z^u(ξ')], Σ[u,w] the cross-covariance; Σ[u](ξ,ξ) is the same "
             "recurrence with ξ' = ξ"),
            "# D[u](ξ,ξ') the same for the gradient du = √n ∂f/∂u; Σ(ξ,ξ') the NNGP, Θ(ξ,ξ') the NTK",
            ("# <ξ,ξ'>/d the input Gram entry (per step for sequences, steps from 1); σ_p, η_p the std and "
             "learning rate of p"),
            ("# V[φ,ψ](q1,q2,c) = E[φ(u)ψ(v)], (u,v) ~ N(0,[[q1,c],[c,q2]]); V[φ] = V[φ,φ]; M[φ](q) = E[φ(u)]; "
             "φ' the derivative"),
        ]
        if self.lengths == "any" and self.readout.pool:
            lines.append("# c_k(ξ) the readout's pooling weight on step k (sequences of any length)")
        masked = [n for n in self.program if getattr(n, "mask", None) is not None]
        if masked:
            lines.append("# q_p = 1 − p the keep probability of pruned parameter p (its factor on the covariance "
                         "and NTK term it creates; none when rescaled)")
        for n in masked:
            if isinstance(n, InputLayer) and n.mask.p > 0:
                lines.append(f"# {n.name} is a pruned input layer: its embedding's covariance q·σ²<ξ,ξ'>/d is exact, "
                             "but it is a Gaussian scale mixture over each row's kept inputs; the V[...] of it "
                             "below are the large-d (pseudo-network) limit — tp.kernels computes the exact one")
        return "\n".join(lines)

    def latex(self) -> str:
        """The system as a LaTeX ``align`` block, one line per equation."""
        body = " \\\\\n".join(e.latex() for e in self.equations)
        return "\\begin{align}\n" + body + "\n\\end{align}"

    def _repr_latex_(self) -> str:
        body = " \\\\\n".join(e.latex() for e in self.equations)
        return "$$\\begin{aligned}\n" + body + "\n\\end{aligned}$$"

    # -- numbers ---------------------------------------------------------------------
    def evaluate(self, x1, x2=None, get=("nngp", "ntk"), *, lengths1=None, lengths2=None,
                 quad_tol: float = 1e-11, quad_rule: str = "trapezoid", quad_deg: int | None = None,
                 nd_deg: int | None = None, mc_samples: int = 200_000, seed: int = 0):
        """The kernels on data, by ``sympy.lambdify`` of these formulas (data as for
        :func:`tpkernel.kernels`).  Named expectations are evaluated by the registry's
        pair rules, or by the library's quadrature where there is none.  Sequences of
        different lengths are evaluated with the ``lengths="any"`` form of the formulas."""
        from ..limit import Kernels
        wanted = (get,) if isinstance(get, str) else tuple(get)
        if not set(wanted) <= {"nngp", "ntk"}:
            raise ValueError(f"get must name 'nngp' and/or 'ntk', got {get!r}")
        if "ntk" in wanted and self.ntk is None:
            raise ProgramError(f"program {self.program.name!r} has a nonlinearity without derivative: "
                               "its formulas have the NNGP only")
        symmetric = x2 is None
        bound = [_bind(self.program, x1, lengths1, "x1")]
        if not symmetric:
            bound.append(_bind(self.program, x2, lengths2, "x2"))
        _check_dims(self.program, bound)
        steps = max_steps(self.program)
        pools = [_pool(self.program, self.readout, b, steps) for b in bound]
        if self.lengths == "equal" and any(not np.array_equal(c, self._b.equal_weights(len(c))) for c in pools):
            if self._twin is None:
                self._twin = Formulas(self.program, output=self.output, closed_form=self.closed_form,
                                      lengths="any", show_lr=self.show_lr)
            return self._twin.evaluate(x1, x2, get, lengths1=lengths1, lengths2=lengths2, quad_tol=quad_tol,
                                       quad_rule=quad_rule, quad_deg=quad_deg, nd_deg=nd_deg,
                                       mc_samples=mc_samples, seed=seed)
        data = [{k: v[0] for k, v in b.items()} for b in bound]
        if symmetric:
            data, pools = data * 2, pools * 2
        settings = Settings(quad_deg=quad_deg, quad_rule=quad_rule, quad_tol=quad_tol, nd_deg=nd_deg,
                            mc_samples=mc_samples, seed=seed)
        m = Expectations(self._b.p, [], symmetric, settings)
        ev = _Evaluator(self, data, pools, symmetric, m)
        shape = (len(pools[0]), len(pools[1]))
        out = {}
        for name in ("nngp", "ntk"):
            out[name] = np.broadcast_to(ev.value(getattr(self, name), "X"), shape).astype(float) \
                if name in wanted else None
            check_kernel(self.program.name, name.upper(), out[name])  # the checks of tp.kernels
        result = Kernels(out["nngp"], out["ntk"], m.report)
        return getattr(result, get) if isinstance(get, str) else result


def formulas(program: Program, closed_form: bool = False, *, output: str | None = None,
             lengths: str = "equal", show_lr: bool | None = None) -> Formulas:
    """The NNGP and NTK of ``program`` as sympy recurrences, one per vector.

    ``closed_form``: replace the named expectations V[φ,ψ], M[φ] by the registry's closed
    forms where known.  ``lengths``: "equal" (every sequence has the program's length: the
    pooling weights are numbers, as in TP II) or "any" (weights c_k(ξ) are symbols).
    ``show_lr``: show the learning-rate multipliers η as symbols (None: those ≠ 1).
    ``output``: the readout, for programs with several.
    """
    return Formulas(program, output=output, closed_form=closed_form, lengths=lengths, show_lr=show_lr)


# ---------------------------------------------------------------------------------
# numbers: lambdify
# ---------------------------------------------------------------------------------

def _identity(x):
    return x


class _Evaluator:
    """Evaluates the formulas' expressions on data: each line is lambdified once and
    evaluated for the pairings (ξ, ξ') ("X", an (N1, N2) matrix), (ξ, ξ) ("L", N1 values)
    and (ξ', ξ') ("R", N2 values); with one data set the per-example values are the
    diagonal of the matrix (as in the numeric evaluator)."""

    def __init__(self, F: Formulas, data: list[dict], pools: list[np.ndarray], symmetric: bool,
                 m: Expectations) -> None:
        self.F = F
        self.data = data
        self.pools = pools
        self.sym = symmetric
        self.m = m
        self.values: dict[tuple, object] = {}
        self.compiled: dict[sympy.Expr, tuple] = {}
        self.namespace: dict[str, Callable] = {}

    # -- named functions -------------------------------------------------------------
    def _impl(self, cls: type) -> Callable:
        m = self.m
        if issubclass(cls, Expectation):
            phi, psi = cls.phi, cls.psi
            if phi is not None and psi is not None:
                rule = pair_rule(phi, psi)
                if rule is not None:
                    return rule
            f = phi if phi is not None else _identity
            g = psi if psi is not None else _identity
            what = f"V[{cls.label()}]"
            if psi is not None and not psi.family.smooth and (phi is None or phi.family.smooth):
                return lambda q1, q2, c: m._quad2(g, f, q2, q1, c, what, kinked=True)
            kinked = phi is not None and not phi.family.smooth
            return lambda q1, q2, c: m._quad2(f, g, q1, q2, c, what, kinked=kinked)
        if issubclass(cls, Mean):
            phi = cls.phi
            rule = mean_rule(phi)
            if rule is not None:
                return rule
            quad = m.settings.quad_rule
            return lambda q: m._quadrature(lambda deg: gaussian.expect_1d(phi, q, deg, quad), 1, quad,
                                           f"M[{cls.labels[0]}]")
        if issubclass(cls, GaussianIntegral):
            return lambda *entries: _gaussian_integral(cls, m, entries)
        raise ProgramError(f"no numeric implementation of {cls.__name__}")  # pragma: no cover

    # -- compiling -------------------------------------------------------------------
    def _compile(self, expr: sympy.Expr) -> tuple:
        if expr not in self.compiled:
            apps = sorted(expr.atoms(CovBase, Gram, PoolWeight), key=sympy.default_sort_key)
            params = sorted((s for s in expr.free_symbols if isinstance(s, Param)), key=sympy.default_sort_key)
            names = {x: f"a{i}" for i, x in enumerate(apps + params)}
            for f in expr.atoms(sympy.Function):
                cls = f.func
                if isinstance(cls, type) and issubclass(cls, (Expectation, Mean, GaussianIntegral)) \
                        and cls.__name__ not in self.namespace:
                    self.namespace[cls.__name__] = self._impl(cls)
            printer = _NumPy(names, {"fully_qualified_modules": False, "inline": True,
                                     "allow_unknown_functions": True, "user_functions": {}})
            fn = sympy.lambdify([sympy.Symbol(n) for n in names.values()], expr,
                                modules=[self.namespace, "numpy"], printer=printer)
            self.compiled[expr] = (fn, apps, params)
        return self.compiled[expr]

    # -- values ----------------------------------------------------------------------
    def value(self, expr: sympy.Expr, P: str):
        fn, apps, params = self._compile(expr)
        args = [self._app(a, P) for a in apps] + [self.F.params[p] for p in params]
        with np.errstate(invalid="ignore", divide="ignore"):
            return fn(*args)

    @staticmethod
    def _map(e, P: str):
        return e if P == "X" else (XI if P == "L" else XI2)

    def _shape(self, val, Q: str, P: str):
        if P != "X" or np.ndim(val) == 0:
            return val
        if Q == "L":
            return np.asarray(val)[:, None]
        if Q == "R":
            return np.asarray(val)[None, :]
        return val

    def _app(self, app, P: str):
        if isinstance(app, PoolWeight):
            e = self._map(app.args[1], P)
            side = 0 if e == XI else 1
            val = self.pools[side][:, int(app.args[0])]
            return self._shape(val, "L" if side == 0 else "R", P)
        if isinstance(app, Gram):
            d1, t1, d2, t2, a, b = app.args
            Q = _PAIRINGS.get((self._map(a, P), self._map(b, P)))
            return self._shape(self._gram(d1.name, int(t1), d2.name, int(t2), Q), Q, P)
        a, b = app.pairing
        Q = _PAIRINGS.get((self._map(a, P), self._map(b, P)))
        u, v = app.names
        return self._shape(self._cov(app.func, u, v, Q), Q, P)

    def _cov(self, cls, u: str, v: str, Q: str):
        key = (cls, u, v, Q)
        if key not in self.values:
            if self.sym and Q != "X":
                val = self._cov(cls, u, v, "X")
                val = np.diagonal(val) if np.ndim(val) == 2 else val
            elif self.sym and (cls, v, u, "X") in self.values:  # E[u(ξ_i) v(ξ_j)] = E[v(ξ_j) u(ξ_i)]
                val = self.values[(cls, v, u, "X")]
                val = val.T if np.ndim(val) == 2 else val
            else:
                line = self.F._same_lines.get((cls, u, v)) if Q != "X" else None
                val = self.value(line if line is not None else self.F._lines[(cls, u, v)], Q)
            self.values[key] = val
        return self.values[key]

    def _gram(self, d1: str, t1: int, d2: str, t2: int, Q: str):
        sa, sb = {"X": (0, 1), "L": (0, 0), "R": (1, 1)}[Q]
        xa = self.data[sa][d1][:, max(t1, 0), :]
        xb = self.data[sb][d2][:, max(t2, 0), :]
        d = xa.shape[1]
        return (xa @ xb.T) / d if Q == "X" else np.einsum("id,id->i", xa, xb) / d


def _gaussian_integral(cls, m: Expectations, entries: Sequence) -> np.ndarray:
    """The numeric value of a :class:`GaussianIntegral` (as Expectations.integrate_product)."""
    variables = cls.gauss_variables
    n = len(variables)
    arrays = np.broadcast_arrays(*(np.asarray(e, dtype=float) for e in entries))
    shape = arrays[0].shape
    cov = np.empty(shape + (n, n))
    k = 0
    for i in range(n):
        for j in range(i, n):
            cov[..., i, j] = cov[..., j, i] = arrays[k]
            k += 1
    A, B = cls.factor_names
    atoms_a, atoms_b = cls.atom_lists
    return m.integrate_product(A, B, atoms_a, atoms_b, variables, cov, cls.title, cls.same_example)


