"""Operator overloading that writes program nodes.

``W @ x`` adds a MatMul, ``U @ x[t]`` an Embed, ``tp.relu(h)`` a Nonlin and ``x * y`` a
product Nonlin.  Sums and scalings (``W @ x + b``, ``2 * x``, ``x - y``) stay *pending*
linear combinations until something reads them, so one expression becomes one
:class:`~tpkernel.ir.LinComb` node, written once however often it is read.
"""

from __future__ import annotations

import numbers
from typing import Callable, Sequence

from . import nonlin as nl
from .errors import ProgramError
from . import ir
from .ir import Bias, Data, Embed, InputLayer, LinComb, Mask, MatMul, Matrix, Nonlin, Readout


class Program(ir.Program):
    """A tensor program with builder methods: declare data, parameters and outputs, and
    combine the returned handles with operators (``W @ x``, ``x + b``, ``tp.relu(h)``).
    ``program.graph`` is the dependency graph as a ``networkx.DiGraph``."""

    def data(self, name: str, length: int | None = None):
        """Declare a data placeholder; ``length=T`` makes it a sequence ``x[0..T-1]``."""
        return DataHandle(self, self.add(Data(name, length)).name)

    def input_layer(self, name: str, std: float = 1.0, lr: float = 1.0, mask: "Mask | float | None" = None):
        """Declare an input layer U (the embedding σ_U U ξ / √d); use it as ``U @ x``.
        ``mask``: random pruning, a :class:`Mask` or a pruning probability p."""
        return ParamHandle(self, self.add(InputLayer(name, float(std), float(lr), mask)).name)

    def matrix(self, name: str, std: float = 1.0, lr: float = 1.0, mask: "Mask | float | None" = None):
        """Declare an n×n matrix W (acting as σ_W W x / √n); use it as ``W @ x``, ``W.T @ x``.
        ``mask``: random pruning (M ⊙ W), a :class:`Mask` or a pruning probability p."""
        return ParamHandle(self, self.add(Matrix(name, float(std), float(lr), mask)).name)

    def bias(self, name: str, std: float = 1.0, lr: float = 1.0):
        """Declare a bias (an initial vector σ_b β); use it in sums ``W @ x + b``."""
        return Vec(self, self.add(Bias(name, float(std), float(lr))).name)

    def output(self, x, std: float = 1.0, lr: float = 1.0, b_std: float | None = None,
               b_lr: float = 1.0, pool: str | None = None, name: str | None = None,
               vector=None, mask: "Mask | float | None" = None) -> Readout:
        """Add a readout f = σ_v vᵀ x / √n (+ σ_o β when ``b_std`` is given).

        ``x`` is a vector, or a list of vectors (one per sequence step) with
        ``pool="last"`` (each example reads its own last step) or ``pool="mean"``.
        """
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if pool is None and len(xs) > 1:
            raise ProgramError("output(): a list of vectors needs pool='last' or 'mean'")
        args = tuple(materialize(self, v) for v in xs)
        vec = None if vector is None else materialize(self, vector)
        return self.add(Readout(name or self.fresh("f"), args, float(std), float(lr),
                                None if b_std is None else float(b_std), float(b_lr), pool, vec, mask))

    def listing(self, style: str = "text") -> str:
        """The program as text, one instruction per line (see tpkernel.listing); ``style="unicode"``
        or ``"latex"`` renders it in the algorithm style of the Tensor Programs papers."""
        from .listing import listing  # the one function-level import: the parser builds Programs
        return listing(self, style)


class _Handle:
    __array_priority__ = 1000  # keep NumPy scalars from swallowing our operators

    def __init__(self, program: Program, name: str) -> None:
        self.program = program
        self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} of {self.program.name!r}>"


class _Linear:
    """Arithmetic shared by vectors and pending linear combinations."""

    program: Program

    def _terms(self) -> tuple[dict[str, float], float]:
        raise NotImplementedError

    def _combine(self, other, sign: float) -> "Lin":
        terms, const = self._terms()
        terms = dict(terms)
        if isinstance(other, numbers.Real):
            return Lin(self.program, terms, const + sign * float(other))
        o = _as_linear(self.program, other)
        oterms, oconst = o._terms()
        for k, v in oterms.items():
            terms[k] = terms.get(k, 0.0) + sign * v
        return Lin(self.program, terms, const + sign * oconst)

    def __add__(self, other):
        return self._combine(other, 1.0)

    __radd__ = __add__

    def __sub__(self, other):
        return self._combine(other, -1.0)

    def __rsub__(self, other):
        return (-1.0 * self)._combine(other, 1.0)

    def __neg__(self):
        return -1.0 * self

    def __mul__(self, other):
        if isinstance(other, numbers.Real):
            terms, const = self._terms()
            c = float(other)
            return Lin(self.program, {k: c * v for k, v in terms.items()}, c * const)
        return apply(nl.product(2), self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if not isinstance(other, numbers.Real):
            raise ProgramError("vectors can only be divided by numbers (use tp.nonlin for other maps)")
        return self * (1.0 / float(other))


class Vec(_Handle, _Linear):
    """A vector of the program (a node of width n)."""

    def _terms(self):
        return {self.name: 1.0}, 0.0


class Lin(_Linear):
    """A pending linear combination Σ c_k x_k + c_0; becomes a LinComb node when read."""

    def __init__(self, program: Program, terms: dict[str, float], const: float = 0.0) -> None:
        self.program = program
        self.terms = {k: v for k, v in terms.items() if v != 0.0}
        self.const = const
        self._name: str | None = None

    def _terms(self):
        if self._name is not None:  # already a node: further sums read that node
            return {self._name: 1.0}, 0.0
        return self.terms, self.const

    def __repr__(self) -> str:
        body = " + ".join(f"{v:g}*{k}" for k, v in self.terms.items())
        return f"<Lin {body} + {self.const:g}>"


def _as_linear(program: Program, x) -> _Linear:
    if isinstance(x, (Vec, Lin)):
        if x.program is not program:
            raise ProgramError(f"{x!r} belongs to program {x.program.name!r}, not {program.name!r}")
        return x
    raise ProgramError(f"cannot use {x!r} as a vector of program {program.name!r}")


def materialize(program: Program, x, name: str | None = None) -> str:
    """The node name of a vector handle, writing a LinComb node for a pending sum."""
    x = _as_linear(program, x)
    if isinstance(x, Vec):
        return x.name
    if x._name is not None:
        return x._name
    if not x.terms:
        raise ProgramError(f"the constant {x.const} is not a vector of the program")
    if len(x.terms) == 1 and x.const == 0.0 and next(iter(x.terms.values())) == 1.0 and name is None:
        x._name = next(iter(x.terms))
    else:
        args = tuple(x.terms)
        node = LinComb(name or program.fresh("h"), args, tuple(x.terms[a] for a in args), x.const)
        x._name = program.add(node).name
    return x._name


class DataStep:
    def __init__(self, program: Program, data: str, step: int | None) -> None:
        self.program, self.data, self.step = program, data, step


class DataHandle(_Handle):
    """Data placeholder; ``x[t]`` picks step t of a sequence."""

    def __getitem__(self, t: int) -> DataStep:
        length = self.program[self.name].length
        if length is None:
            raise ProgramError(f"data {self.name!r} is not a sequence; use U @ {self.name} directly")
        if not isinstance(t, int) or not 0 <= t < length:
            raise ProgramError(f"step {t!r} outside 0..{length - 1} of data {self.name!r}")
        return DataStep(self.program, self.name, t)


class ParamHandle(_Handle):
    """A matrix or input layer: ``W @ x``, ``W.T @ x``, ``U @ x[t]``."""

    transpose = False

    @property
    def T(self) -> "ParamHandle":
        h = ParamHandle(self.program, self.name)
        h.transpose = not self.transpose
        return h

    def __matmul__(self, x):
        p = self.program
        if isinstance(x, DataHandle):
            x = DataStep(p, x.name, None)
        if isinstance(x, DataStep):
            if self.transpose:
                raise ProgramError(f"input layer {self.name!r} cannot be transposed")
            return Vec(p, p.add(Embed(p.fresh("h"), self.name, x.data, x.step)).name)
        arg = materialize(p, x)
        return Vec(p, p.add(MatMul(p.fresh("h"), self.name, arg, self.transpose)).name)

    def __call__(self, x):
        return self @ x


def apply(fn: nl.Nonlinearity, *args, name: str | None = None) -> Vec:
    """Add the Nonlin node fn(args...) and return its vector."""
    if not args:
        raise ProgramError(f"{fn.label} needs at least one argument")
    program = _as_linear(args[0].program if hasattr(args[0], "program") else None, args[0]).program \
        if isinstance(args[0], (Vec, Lin)) else None
    if program is None:
        raise ProgramError(f"{fn.label}: {args[0]!r} is not a vector of a program")
    names = tuple(materialize(program, a) for a in args)
    if fn.family.arity == 0:  # prod of any arity
        fn = nl.get(fn.name, *fn.params, arity=len(names))
    return Vec(program, program.add(Nonlin(name or program.fresh("x"), fn, names)).name)


def _unary(family: str, *params: float) -> Callable:
    def f(x, name: str | None = None) -> Vec:
        return apply(nl.get(family, *params), x, name=name)
    f.__name__ = family
    f.__doc__ = f"{nl.REGISTRY[family].doc} applied coordinatewise."
    return f


relu = _unary("abrelu", 0.0, 1.0)
relu.__name__, relu.__doc__ = "relu", "max(x, 0) applied coordinatewise (abrelu(0, 1))."
erf = _unary("erf")
tanh = _unary("tanh")
gelu = _unary("gelu")
exp = _unary("exp")
sigmoid = _unary("sigmoid")
softplus = _unary("softplus")
swish = _unary("swish")


def sin(x, name: str | None = None) -> Vec:
    """sin(x) coordinatewise."""
    return apply(nl.get("sin", 0.0), x, name=name)


def cos(x, name: str | None = None) -> Vec:
    """cos(x) = sin(x + π/2) coordinatewise."""
    import math
    return apply(nl.get("sin", math.pi / 2), x, name=name)


def abrelu(x, a: float, b: float, name: str | None = None) -> Vec:
    """a·min(x, 0) + b·max(x, 0) coordinatewise."""
    return apply(nl.get("abrelu", a, b), x, name=name)


def leaky_relu(x, alpha: float = 0.01, name: str | None = None) -> Vec:
    """max(x, 0) + α·min(x, 0) coordinatewise."""
    return apply(nl.get("abrelu", alpha, 1.0), x, name=name)


def abs(x, name: str | None = None) -> Vec:  # noqa: A001 - mirrors numpy's name
    """|x| coordinatewise."""
    return apply(nl.get("abrelu", -1.0, 1.0), x, name=name)


def gaussian(x, a: float = 1.0, b: float = -1.0, name: str | None = None) -> Vec:
    """a·exp(b x²) coordinatewise."""
    return apply(nl.get("gauss", a, b), x, name=name)


def power(x, k: int, name: str | None = None) -> Vec:
    """x^k coordinatewise (k a positive integer)."""
    if not isinstance(k, int) or k < 1:
        raise ProgramError(f"power: k must be a positive integer, got {k!r}")
    return apply(nl.get("power", k), x, name=name)


def nonlin(fn: Callable, *args, name: str | None = None, fn_name: str | None = None,
           deriv: Sequence[Callable] | Callable | None = None) -> Vec:
    """A user nonlinearity ``fn(x1, ..., xk)`` (NumPy-vectorised), integrated by quadrature.

    ``deriv`` gives its partial derivatives; without it they come from sympy (if fn
    accepts sympy symbols) or from a central finite difference.
    """
    try:
        phi = nl.user(fn, name=fn_name, deriv=deriv, arity=len(args))
    except ProgramError as err:  # name the node the function was meant for
        where = f"node {name!r}" if name else "tp.nonlin applied to " + ", ".join(
            repr(a.name) if isinstance(a, Vec) else "an expression" for a in args)
        raise ProgramError(f"{where}: {err}") from None
    return apply(phi, *args, name=name)
