r"""The sympy objects of the formulas: parameters, covariance lines Σ and D, kernels, Gram
entries, pooling weights, named expectations V[φ,ψ] and M[φ], Gaussian integrals; and the
printers (str, LaTeX, NumPy for lambdify)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.str import StrPrinter

from ..errors import ProgramError
from ..names import latex_name, plain_name as _str_name
from ..nonlin import Nonlinearity, sympy_mean_rule, sympy_pair_rule

#: the two inputs of a kernel entry
XI = sympy.Symbol("ξ")
XI2 = sympy.Symbol("ξ'")
_PAIRINGS = {(XI, XI2): "X", (XI, XI): "L", (XI2, XI2): "R"}


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
        return f"{_str_name(self.kind)}_{self.param}"

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
    from .. import nonlin as nl
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
