r"""Symbolic formulas: the limiting kernels of a program as sympy recurrences.

Another interpretation of the IR (see DESIGN.md): a vector becomes a sympy expression.
For two inputs ξ, ξ' the interpretation writes, for every vector u of the program,

  Σ[u](ξ, ξ') = E[Z^u(ξ) Z^u(ξ')]          (forward: the NNGP recurrence)
  D[u](ξ, ξ') = E[Z^{du}(ξ) Z^{du}(ξ')]    (backward: du = √n ∂f/∂u, the gradient)

and the kernels

  Σ(ξ, ξ') = σ_v² Σ_{k,l} c_k c'_l Σ[x_k, x_l](ξ, ξ') + σ_o²
  Θ(ξ, ξ') = Σ_params η_p σ_p² Σ_{uses (y=Wz), (y'=Wz')} D[y, y'](ξ, ξ') Σ[z, z'](ξ, ξ') + ...

with exactly the rules of the numeric evaluator (:mod:`tpkernel.limit.moments`), whose
structural helpers (atoms, keys, factors, independent components, unary forms) it reuses:
bilinear expansion of linear combinations, the atom covariance table, factorisation of
products over independent groups of atoms, pair rules E[φ(u)ψ(v)], Stein's lemma, and a
named Gaussian integral where the evaluator would integrate numerically.

Symbols:

- ``<ξ_t, ξ'_s>/d`` (:class:`Gram`): the input Gram entries, per step pair for sequences;
  ``(ξ, ξ)`` and ``(ξ', ξ')`` are the per-example ones;
- ``σ_p``, ``η_p`` (:class:`Param`): std and learning-rate multiplier of parameter ``p``
  (the readout's are ``σ_v``, ``η_v``, its bias ``σ_o``); ``η`` is shown only when ≠ 1;
- ``V[φ,ψ](q1, q2, c)`` (:class:`Expectation`) = E[φ(u)ψ(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]),
  ``V[φ]`` = ``V[φ,φ]``, φ' the derivative; ``M[φ](q)`` = E[φ(u)], u ~ N(0, q); with
  ``closed_form=True`` they are replaced by the registry's closed forms (arc-cosine for
  relu, arcsin for erf, ...; :data:`tpkernel.nonlin.SYMPY_PAIR_RULES`);
- ``c_k(ξ)`` (:class:`PoolWeight`): pooling weights of a readout over sequences of any
  length (``lengths="any"``); by default (``lengths="equal"``) every sequence has the
  program's length and the weights are numbers (the TP II recursion).

A vector gets its own line when it is a nonlinearity, a pre-activation (read by a
nonlinearity or the readout) or a sum read by a matrix; other linear vectors are expanded
in place, so a residual net prints Σ[x^l] = Σ[x^{l-1}] + σ² Σ[φ(h^l)].
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import sympy
from sympy.printing.latex import LatexPrinter, greek_letters_set
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.str import StrPrinter

from .backward import Backward, backward, pick_readout, readout_scale, readout_terms
from .terms import contract
from .errors import ProgramError
from .ir import Embed, InputLayer, Nonlin, Program, Readout
from .limit import gaussian
from .limit.numeric import Expectations, Settings
from .limit.theorem import LIMIT, Function, Linear, MasterTheorem
from .nonlin import Nonlinearity, mean_rule, pair_rule, sym_number, sympy_mean_rule, sympy_pair_rule

try:  # data binding is shared with the numeric evaluator
    from .data import _bind, _check_dims, _pool, max_steps
except ImportError:  # pragma: no cover - older layout
    from .limit.kernels import _bind, _check_dims, _pool, max_steps

__all__ = [
    "XI",
    "XI2",
    "D",
    "Equation",
    "Expectation",
    "Formulas",
    "GaussianIntegral",
    "Gram",
    "Kernel",
    "Mean",
    "Param",
    "PoolWeight",
    "Sigma",
    "expectation",
    "formulas",
    "mean",
]

#: the two inputs of a kernel entry
XI = sympy.Symbol("ξ")
XI2 = sympy.Symbol("ξ'")
_PAIRINGS = {(XI, XI2): "X", (XI, XI): "L", (XI2, XI2): "R"}


# ---------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------

_GREEK_STR = {"xi": "ξ", "sigma": "σ", "eta": "η", "theta": "θ", "phi": "φ", "psi": "ψ", "alpha": "α",
              "beta": "β", "gamma": "γ", "delta": "δ", "mu": "μ", "nu": "ν", "tau": "τ", "zeta": "ζ"}


def _str_name(name: str) -> str:
    return _GREEK_STR.get(name, name)


def latex_name(name: str) -> str:
    """A node or parameter name in LaTeX: h2 → h_{2}, Uz → U_{z}, xi → \\xi, out → \\mathrm{out}."""
    if name in greek_letters_set:
        return "\\" + name
    if re.fullmatch(r"[A-Za-z]", name):
        return name
    m = re.fullmatch(r"([A-Za-z]+)(\d+)", name)
    if m and m.group(1) in greek_letters_set:  # sigma2 → \sigma_{2}
        return f"\\{m.group(1)}_{{{m.group(2)}}}"
    m = re.fullmatch(r"([A-Za-z])([A-Za-z0-9]|[A-Za-z0-9]*\d[A-Za-z0-9]*)", name)  # h10, Uz, W1a
    if m:
        return f"{m.group(1)}_{{{m.group(2)}}}"
    m = re.fullmatch(r"([A-Za-z])(\d+)_(\d+)", name)  # s1_1 (listing names) → s_{1.1}
    if m:
        return f"{m.group(1)}_{{{m.group(2)}.{m.group(3)}}}"
    m = re.fullmatch(r"([A-Za-z])_([A-Za-z0-9]+)", name)  # h_3 → h_{3}
    if m:
        return f"{m.group(1)}_{{{m.group(2)}}}"
    return r"\mathrm{" + name.replace("_", r"\_") + "}"


def _ex_str(e) -> str:
    return "ξ" if e == XI else "ξ'"


def _ex_latex(e) -> str:
    return r"\xi" if e == XI else r"\xi'"


def _label_latex(label: str) -> str:
    prime = label.endswith("'")
    base = label[:-1] if prime else label
    out = r"\mathrm{" + base.replace("_", r"\_").replace("[", "(").replace("]", ")") + "}"
    return out + (r"^{\prime}" if prime else "")


# ---------------------------------------------------------------------------------
# sympy objects
# ---------------------------------------------------------------------------------

class Param(sympy.Symbol):
    """σ_p (name ``sigma:p``) or η_p (``eta:p``): a parameter's std or learning-rate multiplier;
    q_p (``q:p``): the keep probability 1 − p of a pruned parameter's mask."""

    def __new__(cls, kind: str, param: str):
        return super().__new__(cls, f"{kind}:{param}", nonnegative=True)

    @property
    def kind(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def param(self) -> str:
        return self.name.split(":", 1)[1]

    def __getnewargs_ex__(self):  # pragma: no cover - pickling
        return (self.kind, self.param), {}

    def _sympystr(self, printer) -> str:
        return f"{_GREEK_STR.get(self.kind, self.kind)}_{self.param}"

    def _latex(self, printer) -> str:
        kind = self.kind if self.kind == "q" else "\\" + self.kind  # q_p: a mask's keep probability
        return f"{kind}_{{{latex_name(self.param)}}}"


class CovBase(sympy.Function):
    """E[Z^u(a) Z^v(b)]: args (u, v, a, b), u and v named by sympy Symbols."""

    nargs = 4
    is_real = True
    letter = "Σ"
    latex_letter = r"\Sigma"

    @property
    def names(self) -> tuple[str, str]:
        return self.args[0].name, self.args[1].name

    @property
    def pairing(self) -> tuple:
        return self.args[2], self.args[3]

    def _sympystr(self, printer) -> str:
        u, v = self.names
        who = u if u == v else f"{u},{v}"
        return f"{self.letter}[{who}]({_ex_str(self.args[2])},{_ex_str(self.args[3])})"

    def _latex(self, printer, exp=None) -> str:
        u, v = self.names
        who = latex_name(u) if u == v else f"{latex_name(u)} {latex_name(v)}"
        out = f"{self.latex_letter}_{{{who}}}({_ex_latex(self.args[2])}, {_ex_latex(self.args[3])})"
        return f"{out}^{{{exp}}}" if exp else out


class Sigma(CovBase):
    """Σ[u,v](a, b) = E[Z^u(a) Z^v(b)] for forward vectors u, v."""


class D(CovBase):
    """D[u,v](a, b) = E[Z^{du}(a) Z^{dv}(b)]: covariance of the gradients du = √n ∂f/∂u."""

    letter = "D"
    latex_letter = "D"


class Kernel(sympy.Function):
    """Σ(ξ, ξ') (NNGP) or Θ(ξ, ξ') (NTK): the left-hand sides of the kernel lines."""

    nargs = 3

    def _sympystr(self, printer) -> str:
        return f"{self.args[0].name}({_ex_str(self.args[1])},{_ex_str(self.args[2])})"

    def _latex(self, printer, exp=None) -> str:
        return f"{_KERNEL_LATEX[self.args[0].name]}({_ex_latex(self.args[1])}, {_ex_latex(self.args[2])})"


_KERNEL_LATEX = {"Σ": r"\Sigma", "Θ": r"\Theta"}


class Gram(sympy.Function):
    """<ξ_t, ξ'_s>/d: args (data1, t, data2, s, a, b); t = -1 for data without steps."""

    nargs = 6
    is_real = True

    @classmethod
    def eval(cls, d1, t1, d2, t2, a, b):
        if a == b and (d1.name, int(t1)) > (d2.name, int(t2)):  # symmetric on one example
            return cls(d2, t2, d1, t1, a, b)
        return None

    def _part(self, d, t, e, latex: bool) -> str:
        base = latex_name(d.name) if latex else _str_name(d.name)
        prime = "'" if e == XI2 else ""
        if int(t) < 0:
            return base + prime
        return f"{base}{prime}_{{{int(t) + 1}}}" if latex else f"{base}{prime}_{int(t) + 1}"

    def _sympystr(self, printer) -> str:
        d1, t1, d2, t2, a, b = self.args
        return f"<{self._part(d1, t1, a, False)},{self._part(d2, t2, b, False)}>/d"

    def _latex(self, printer, exp=None) -> str:
        d1, t1, d2, t2, a, b = self.args
        out = rf"\frac{{{self._part(d1, t1, a, True)} \cdot {self._part(d2, t2, b, True)}}}{{d}}"
        return f"\\left({out}\\right)^{{{exp}}}" if exp else out


class PoolWeight(sympy.Function):
    """c_k(a): the pooling weight of the readout on its k-th vector for example a."""

    nargs = 2
    is_real = True

    def _sympystr(self, printer) -> str:
        return f"c_{int(self.args[0]) + 1}({_ex_str(self.args[1])})"

    def _latex(self, printer, exp=None) -> str:
        out = f"c_{{{int(self.args[0]) + 1}}}({_ex_latex(self.args[1])})"
        return f"{out}^{{{exp}}}" if exp else out


class Expectation(sympy.Function):
    """V[φ,ψ](q1, q2, c) = E[φ(u) ψ(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]).

    One subclass per pair (φ, ψ) (see :func:`expectation`); ``phi``/``psi`` None is the
    identity.  Its NumPy value is the registry's pair rule, or quadrature."""

    nargs = 3
    is_real = True
    phi: Nonlinearity | None = None
    psi: Nonlinearity | None = None
    labels: tuple[str, str] = ("", "")

    @classmethod
    def label(cls) -> str:
        a, b = cls.labels
        return a if a == b and cls.phi == cls.psi else f"{a},{b}"

    @classmethod
    def closed_form(cls) -> Callable | None:
        if cls.phi is None or cls.psi is None:
            return None
        return sympy_pair_rule(cls.phi, cls.psi)

    def _sympystr(self, printer) -> str:
        return f"V[{self.label()}]({', '.join(printer._print(a) for a in self.args)})"

    def _latex(self, printer, exp=None) -> str:
        a, b = self.labels
        sub = _label_latex(a) if self.label() == a else f"{_label_latex(a)} {_label_latex(b)}"
        out = f"V_{{{sub}}}\\left({', '.join(printer._print(x) for x in self.args)}\\right)"
        return f"{out}^{{{exp}}}" if exp else out


class Mean(sympy.Function):
    """M[φ](q) = E[φ(u)], u ~ N(0, q)."""

    nargs = 1
    is_real = True
    phi: Nonlinearity | None = None
    labels: tuple[str] = ("",)

    @classmethod
    def closed_form(cls) -> Callable | None:
        return sympy_mean_rule(cls.phi)

    def _sympystr(self, printer) -> str:
        return f"M[{self.labels[0]}]({printer._print(self.args[0])})"

    def _latex(self, printer, exp=None) -> str:
        out = f"M_{{{_label_latex(self.labels[0])}}}\\left({printer._print(self.args[0])}\\right)"
        return f"{out}^{{{exp}}}" if exp else out


class GaussianIntegral(sympy.Function):
    """E[Π_A f(ξ) · Π_B g(ξ')] over the joint Gaussian of their atoms, whose covariance
    entries are the arguments (upper triangle, row by row): what the numeric evaluator
    integrates by quadrature or Monte Carlo.  One subclass per integral."""

    is_real = True
    factor_names: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    title: str = ""

    def _sympystr(self, printer) -> str:
        return f"E[{self.title}]({', '.join(printer._print(a) for a in self.args)})"

    def _latex(self, printer, exp=None) -> str:
        a, b = self.factor_names
        sub = " ".join(latex_name(x) for x in a) + (" " + " ".join(latex_name(x) for x in b) if b else "")
        out = f"E_{{{sub}}}\\left({', '.join(printer._print(x) for x in self.args)}\\right)"
        return f"{out}^{{{exp}}}" if exp else out


_CLASS_COUNTER = itertools.count()


@cache
def _expectation_class(phi, psi, label_phi: str, label_psi: str) -> type:
    return type(f"V{next(_CLASS_COUNTER)}", (Expectation,),
                {"phi": phi, "psi": psi, "labels": (label_phi, label_psi), "__module__": __name__})


@cache
def _mean_class(phi, label: str) -> type:
    return type(f"M{next(_CLASS_COUNTER)}", (Mean,), {"phi": phi, "labels": (label,), "__module__": __name__})


def _resolve(f) -> tuple[Nonlinearity | None, str]:
    """A nonlinearity and its label from a Nonlinearity, None (identity) or a label
    such as "relu", "erf'" (the derivative), "leaky_relu[0.1]"."""
    from . import nonlin as nl
    if f is None or f == "id":
        return None, "id"
    if isinstance(f, Nonlinearity):
        return f, f.label
    label = str(f)
    if label.endswith("'"):
        base, _ = _resolve(label[:-1])
        return base.derivative(), label
    m = re.fullmatch(r"([A-Za-z_]\w*)(?:\[(.*)\])?", label)
    if not m:
        raise ProgramError(f"cannot read the nonlinearity {label!r}")
    params = [float(x) for x in m.group(2).split(",")] if m.group(2) else []
    return nl.get(m.group(1), *params), label


def expectation(phi, psi=None) -> type:
    """The function class V[φ,ψ] (ψ defaults to φ): ``expectation("relu")``,
    ``expectation("erf'")`` (the derivative), ``expectation(nl.get("relu"), "erf")``.
    The same pair always gives the same class, so expressions compare equal."""
    f, lf = _resolve(phi)
    g, lg = (f, lf) if psi is None else _resolve(psi)
    return _expectation_class(f, g, lf, lg)


def mean(phi) -> type:
    """The function class M[φ]: ``M[φ](q) = E[φ(u)]``, u ~ N(0, q)."""
    f, lf = _resolve(phi)
    return _mean_class(f, lf)


# ---------------------------------------------------------------------------------
# printers
# ---------------------------------------------------------------------------------

class _Str(StrPrinter):
    """The readable one-line form: σ_W² rather than σ_W**2, π rather than pi."""

    def _print_Pi(self, expr):
        return "π"

    def _print_Pow(self, expr, rational=False):
        base, e = expr.args
        if e == 2 and isinstance(base, (Param, CovBase, Gram, PoolWeight)):
            return self._print(base) + "²"
        return super()._print_Pow(expr, rational)


class _Latex(LatexPrinter):
    def _print_atan2(self, expr, exp=None):
        out = rf"\operatorname{{atan2}}\left({self._print(expr.args[0])}, {self._print(expr.args[1])}\right)"
        return f"{out}^{{{exp}}}" if exp else out


def _sstr(expr, order: str | None = None) -> str:
    settings = {"order": order} if order else {}
    return _Str(settings).doprint(expr)


def _latex(expr, order: str | None = None) -> str:
    settings = {"inv_trig_style": "full"}
    if order:
        settings["order"] = order
    return _Latex(settings).doprint(expr)


class _NumPy(NumPyPrinter):
    """NumPy code for lambdify: covariance symbols, Gram entries, pooling weights and
    parameters print as the names of the generated function's arguments."""

    def __init__(self, names: dict, settings=None) -> None:
        super().__init__(settings)
        self._names = names

    def _arg(self, expr) -> str:
        return self._names[expr]

    _print_CovBase = _print_Gram = _print_PoolWeight = _print_Param = _arg


# ---------------------------------------------------------------------------------
# the formulas object
# ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Equation:
    """One line ``lhs = rhs``; ``kind`` is "forward", "backward", "nngp" or "ntk"."""

    lhs: sympy.Expr
    rhs: sympy.Expr
    kind: str
    display: sympy.Expr | None = None  # rhs as printed (unevaluated sum in parameter order)

    @property
    def eq(self) -> sympy.Eq:
        return sympy.Eq(self.lhs, self.rhs, evaluate=False)

    def __str__(self) -> str:
        order = "none" if self.display is not None else None
        return f"{_sstr(self.lhs)} = {_sstr(self.display if order else self.rhs, order)}"

    def latex(self) -> str:
        order = "none" if self.display is not None else None
        return f"{_latex(self.lhs)} &= {_latex(self.display if order else self.rhs, order)}"


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
        from .limit import Kernels
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
# the interpretation
# ---------------------------------------------------------------------------------

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
        self.S = self.structure
        self.order = self.structure.order
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
        from .ir import Data
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
        if a == b and self.order[u] > self.order[v]:
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
                "same_example": same, "structure": self.S, "__module__": __name__})
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
            key = (max(self.order[u], self.order[v]), self.order[u], self.order[v])
            (fwd if nu[0] is Sigma else bwd).append((key, Equation(lhs, rhs, "forward" if nu[0] is Sigma
                                                                  else "backward")))
        out = [e for _, e in sorted(fwd, key=lambda t: t[0])]
        out.append(Equation(Kernel(sympy.Symbol("Σ"), XI, XI2), self.nngp, "nngp"))
        out += [e for _, e in sorted(bwd, key=lambda t: t[0])]
        if self.ntk is not None:
            out.append(Equation(Kernel(sympy.Symbol("Θ"), XI, XI2), self.ntk, "ntk", self.ntk_display))
        return out


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


# ---------------------------------------------------------------------------------
# the docs page
# ---------------------------------------------------------------------------------

def examples_markdown(names: Iterable[str] | None = None) -> str:
    """The page docs/formulas.md: the printed formulas of each built-in example
    (regenerate with ``python scripts/make_formulas_doc.py``; a test checks it)."""
    from . import examples
    names = list(names or examples.EXAMPLES)
    parts = [_DOC_HEAD]
    for name in names:
        p = examples.get(name)
        F = formulas(p)
        Fc = formulas(p, closed_form=True)
        parts.append(f"## `{name}` (program `{p.name}`)\n")
        parts.append("```text\n" + p.listing().rstrip() + "\n```\n")
        parts.append("```text\n" + str(F) + "\n```\n")
        changed = [str(e) for e, e0 in zip(Fc.equations, F.equations) if str(e) != str(e0)]
        if changed:
            parts.append("With `closed_form=True` these lines become:\n\n```text\n" + "\n".join(changed)
                         + "\n```\n")
        else:
            parts.append("No closed form is known for these expectations: `closed_form=True` leaves them "
                         "named, and `evaluate` integrates them by quadrature.\n")
        parts.append("<details><summary>LaTeX (<code>F.latex()</code>)</summary>\n\n```latex\n" + F.latex()
                     + "\n```\n\n</details>\n")
    return "\n".join(parts)


_DOC_HEAD = """\
# Formulas: the kernels as sympy recurrences

`tp.formulas(program)` is one more interpretation of the program: the rules of the limit
evaluator ([limit.md](limit.md): bilinear expansion of sums, the atom covariance table,
factorisation of products over independent atoms, pair rules, Stein's lemma) run on sympy
symbols instead of arrays. It writes, for every vector of the program, the recurrence of its
covariance and of its gradient's covariance, then the NNGP and the NTK as a sum over
parameter uses:

- `Σ[u](ξ,ξ')` = E[Z^u(ξ) Z^u(ξ')] for a forward vector u, `Σ[u,w]` a cross-covariance (time
  steps of a recurrent net); `Σ[u](ξ,ξ)` follows the same recurrence with ξ' = ξ;
- `D[u](ξ,ξ')` the same for the gradient du = √n ∂f/∂u (backward, gradient independence);
- `Σ(ξ,ξ')` the NNGP, `Θ(ξ,ξ')` the NTK;
- `<ξ,ξ'>/d` the input Gram entry, `<ξ_t,ξ'_s>/d` per step pair of a sequence (steps from 1);
- `σ_p` the std of parameter p (`σ_v`, `σ_o`: the readout and its bias), `η_p` its
  learning-rate multiplier when it is not 1 (`show_lr=True` shows them all);
- `V[φ,ψ](q1,q2,c)` = E[φ(u)ψ(v)] for (u,v) ~ N(0, [[q1,c],[c,q2]]), `V[φ]` = `V[φ,φ]`,
  φ' the derivative, `M[φ](q)` = E[φ(u)], `E[...]` a Gaussian integral the evaluator does
  numerically; with `closed_form=True` V and M are replaced by the registry's closed forms
  (`tpkernel.nonlin.SYMPY_PAIR_RULES`: arc-cosine for relu, arcsin for erf, ...); tanh and
  sigmoid have none and stay named.

A vector gets its own line when it is a nonlinearity, a pre-activation or a sum that a
matrix reads; other linear vectors are expanded in place, so a residual block prints
`Σ[x^l] = Σ[x^(l-1)] + σ² Σ[φ(h^l)]` and a dense layer `Σ[h] = σ_W² Σ[x] + σ_b²`.

```python
import tpkernel as tp

p = tp.examples.get("mlp")
F = tp.formulas(p)                  # closed_form=False, lengths="equal", show_lr=None
print(F)                            # one line per equation, in program order
F.latex()                           # an align block; notebooks render F directly
F.forward["x1"], F.backward["h2"]   # the equation of any vector
F.ntk_terms["W2"]                   # one parameter's NTK contribution
theta = F.unroll(F.ntk)             # only Gram entries, parameters and V[...] left
x = tp.examples.sample_data(p)
K = F.evaluate(x)                   # sympy.lambdify; = tp.kernels(p, x) to ~1e-16
```

`evaluate` gives the named expectations the registry's numeric rules, or the library's
quadrature where there is no closed form. Recurrent examples are printed for sequences of the
program's length T (pooling weights are numbers, as in Tensor Programs II); `lengths="any"`
keeps them as symbols `c_t(ξ)`, and `evaluate` switches to that form by itself for sequences
of different lengths. The closed forms assume positive variances (the zero-variance guard
step(0) = 0 of the numeric rules is left out of the printed formulas).
The command line prints the same: `tpkernel formula NAME [--latex] [--closed-form] [-T STEPS]`.

This page is generated by `python scripts/make_formulas_doc.py` (a test checks that it is up
to date). Measured agreement with `tp.kernels`: relative error below 1e-15 for every example
below, named or closed form (`tests/test_symbolic.py` asserts 1e-10).
"""
