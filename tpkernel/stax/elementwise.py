"""Elementwise layers: closed-form nonlinearities, user functions (Elementwise,
ElementwiseNumerical)."""

from __future__ import annotations

import itertools
import math
import numbers
import re
from typing import Callable, Sequence

import numpy as np
import scipy.special as sps

from .. import builder as B
from .. import nonlin as nl
from ..errors import ProgramError
from .core import Layer, UnsupportedLayerError, _Concat, _Ctx, _Input, _NetSpec, _Vec


# -- elementwise --------------------------------------------------------------------------

class _Elementwise(_NetSpec):
    """A coordinatewise map: ``build(h)`` writes it into the program (h a builder handle),
    ``fn(x)`` computes it in NumPy."""

    def __init__(self, name: str, build: Callable, fn: Callable | None) -> None:
        self.name, self.build, self.fn = name, build, fn

    def compile(self, ctx, v):
        if isinstance(v, _Concat):
            return _Concat([self.compile(ctx, x) for x in v.parts], list(v.widths))
        if isinstance(v, list):
            raise ProgramError(f"{self.name} reads one input; join the branches first")
        width = ctx.width(v) if not isinstance(v, _Input) else v.width
        return _Vec(self.build(ctx, ctx.vec(v)), width)

    def apply(self, params, x):
        if self.fn is None:
            raise NotImplementedError(f"{self.name}: no finite-width function (fn=None)")
        with np.errstate(over="ignore"):
            return np.asarray(self.fn(x), dtype=float)


def _scaled(h, c: float):
    return h if c == 1.0 else c * h


def _affine_out(y, a: float, c: float):
    out = _scaled(y, a)
    return out if c == 0.0 else out + c


def _nl(ctx: _Ctx, fn: nl.Nonlinearity, h) -> B.Vec:
    return B.apply(fn, h, name=ctx.p.fresh("x"))


def ABRelu(a: float, b: float, do_stabilize: bool = False) -> Layer:
    """``a·min(x, 0) + b·max(x, 0)`` (arc-cosine kernels)."""
    return Layer(_Elementwise(f"ABRelu({a}, {b})", lambda ctx, h: _nl(ctx, nl.get("abrelu", a, b), h),
                              lambda x: a * np.minimum(x, 0) + b * np.maximum(x, 0)))


def Relu(do_stabilize: bool = False) -> Layer:
    """``max(x, 0)``."""
    return Layer(_Elementwise("Relu()", lambda ctx, h: _nl(ctx, nl.get("relu"), h), lambda x: np.maximum(x, 0)))


def LeakyRelu(alpha: float, do_stabilize: bool = False) -> Layer:
    """``α·min(x, 0) + max(x, 0)``."""
    return Layer(_Elementwise(f"LeakyRelu({alpha})", lambda ctx, h: _nl(ctx, nl.get("leaky_relu", alpha), h),
                              lambda x: alpha * np.minimum(x, 0) + np.maximum(x, 0)))


def Abs(do_stabilize: bool = False) -> Layer:
    """``|x|``."""
    return Layer(_Elementwise("Abs()", lambda ctx, h: _nl(ctx, nl.get("abs"), h), np.abs))


def Erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    """``a·erf(b·x) + c`` (arcsine kernel)."""
    return Layer(_Elementwise(
        f"Erf({a}, {b}, {c})",
        lambda ctx, h: _affine_out(_nl(ctx, nl.get("erf"), _scaled(h, b)), a, c),
        lambda x: a * sps.erf(b * x) + c))


SIGMOID_LIKE_SCALE = 2.4020563531719796


def Sigmoid_like() -> Layer:
    """``0.5·erf(x/2.4020563531719796) + 0.5``, a least-squares fit of the logistic sigmoid on [-5, 5]."""
    layer = Erf(a=0.5, b=1 / SIGMOID_LIKE_SCALE, c=0.5)
    layer.spec.name = "Sigmoid_like()"
    return layer


def Gelu(approximate: bool = False) -> Layer:
    """``x·Φ(x)``; ``approximate=True`` changes only the finite-width ``apply_fn`` (tanh formula),
    the kernel is always that of the exact Gelu (as in neural-tangents)."""
    if approximate:
        fn = lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))  # noqa: E731
    else:
        fn = lambda x: x * sps.ndtr(x)  # noqa: E731
    return Layer(_Elementwise(f"Gelu(approximate={approximate})", lambda ctx, h: _nl(ctx, nl.get("gelu"), h), fn))


def Sin(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    """``a·sin(b·x + c)``."""
    return Layer(_Elementwise(
        f"Sin({a}, {b}, {c})", lambda ctx, h: _scaled(_nl(ctx, nl.get("sin", c), _scaled(h, b)), a),
        lambda x: a * np.sin(b * x + c)))


def Cos(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    """``a·cos(b·x + c) = Sin(a, b, c + π/2)``."""
    layer = Sin(a=a, b=b, c=c + math.pi / 2)
    layer.spec.name = f"Cos({a}, {b}, {c})"
    return layer


def Exp(a: float = 1.0, b: float = 1.0) -> Layer:
    """``a·exp(b·x)``."""
    return Layer(_Elementwise(f"Exp({a}, {b})", lambda ctx, h: _scaled(_nl(ctx, nl.get("exp"), _scaled(h, b)), a),
                              lambda x: a * np.exp(b * x)))


def Gaussian(a: float = 1.0, b: float = -1.0) -> Layer:
    """``a·exp(b·x²)``."""
    return Layer(_Elementwise(f"Gaussian({a}, {b})", lambda ctx, h: _nl(ctx, nl.get("gauss", a, b), h),
                              lambda x: a * np.exp(b * x * x)))


def Rbf(gamma: float = 1.0) -> Layer:
    """``√2·sin(√(2γ)·x + π/4)``, whose NNGP is the RBF kernel exp(-γ(q11 + q22 - 2 q12))."""
    s = math.sqrt(2 * gamma)
    return Layer(_Elementwise(
        f"Rbf({gamma})", lambda ctx, h: _scaled(_nl(ctx, nl.get("sin", math.pi / 4), _scaled(h, s)), math.sqrt(2)),
        lambda x: math.sqrt(2) * np.sin(s * x + math.pi / 4)))


def Monomial(degree: int) -> Layer:
    """``x^degree`` (degree 1..5 as in neural-tangents; Wick's theorem)."""
    if degree not in (1, 2, 3, 4, 5):
        raise UnsupportedLayerError(f"Monomial({degree!r}): tpkernel supports degrees 1..5 (degree 0 is a "
                                    "constant, not a vector)")
    return Layer(_Elementwise(f"Monomial({degree})", lambda ctx, h: _nl(ctx, nl.get("power", degree), h),
                              lambda x: x ** degree))


def Polynomial(coef: Sequence[float]) -> Layer:
    """``coef[0] + coef[1]·x + … + coef[k]·x^k`` (a linear combination of powers)."""
    coef = [float(c) for c in coef]
    if not any(coef[1:]):
        raise UnsupportedLayerError("Polynomial: a constant polynomial is not a vector")

    def build(ctx, h):
        out = None
        for k, c in enumerate(coef):
            if k == 0 or c == 0.0:
                continue
            term = c * (h if k == 1 else _nl(ctx, nl.get("power", k), h))
            out = term if out is None else out + term
        return out + coef[0] if coef[0] else out
    return Layer(_Elementwise(f"Polynomial({coef})", build, lambda x: np.polyval(coef[::-1], x)))


# user functions --------------------------------------------------------------------------

_counter = itertools.count(1)


def _fn_name(fn, fallback: str) -> str:
    name = getattr(fn, "__name__", None) or fallback
    name = re.sub(r"\W", "_", name)
    if not name or name[0].isdigit() or name == "_lambda_":
        name = fallback
    return name


def _numpy_fn(fn: Callable) -> Callable:
    """fn on NumPy arrays (fn may be written for JAX, or only for scalars: if it raises on an
    array it is called on each coordinate).  The values are returned as they come (not cast
    to float): a function that returns another shape, or complex values, is refused by the
    contract check of :func:`tpkernel.nonlin.user` instead of being reinterpreted."""
    def call(x):
        try:
            out = np.asarray(fn(x))
        except Exception:
            x = np.asarray(x)
            return np.array([fn(t) for t in x.flat]).reshape(x.shape)
        if out.shape != np.shape(x) and out.size == 1 and np.size(x) == 1:
            out = out.reshape(np.shape(x))  # a scalar function given a one-element array
        return out
    call.__qualname__ = getattr(fn, "__qualname__", getattr(fn, "__name__", "fn"))
    return call


_KNOWN = {  # builtin families a user function may be numerically identical to
    "tanh": np.tanh, "sigmoid": sps.expit, "softplus": lambda x: np.logaddexp(0.0, x),
    "swish": lambda x: x * sps.expit(x), "erf": sps.erf, "gelu": lambda x: x * sps.ndtr(x),
    "exp": np.exp, "relu": lambda x: np.maximum(x, 0.0), "abs": np.abs, "sin": np.sin, "cos": np.cos,
}
_PROBE = np.array([-3.1, -1.7, -0.6, -0.05, 0.0, 0.02, 0.4, 1.3, 2.2, 3.7])


def _recognise(fn: Callable) -> nl.Nonlinearity | None:
    """The registry nonlinearity fn is (numerically, to 1e-13 at probe points), if any."""
    try:
        with np.errstate(all="ignore"):
            vals = _numpy_fn(fn)(_PROBE)
    except Exception:
        return None
    for name, ref in _KNOWN.items():
        r = ref(_PROBE)
        if np.allclose(vals, r, rtol=1e-13, atol=1e-15):
            return nl.get(name)
    return None


def _pair_rule(f: Callable) -> Callable:
    """A PAIR_RULES entry from neural-tangents' ``nngp_fn(cov12, var1, var2)``."""
    def rule(p1, p2, q1, q2, c):
        q1, q2, c = np.broadcast_arrays(np.asarray(q1, float), np.asarray(q2, float), np.asarray(c, float))
        try:
            out = np.asarray(f(c, q1, q2), dtype=float)
            if out.shape == c.shape:
                return out
        except Exception:
            pass
        return np.vectorize(lambda a, b, d: float(f(a, b, d)), otypes=[float])(c, q1, q2)
    return rule


def _user_nonlinearity(fn: Callable | None, df: Callable | None, name: str, nngp_fn=None,
                       d_nngp_fn=None) -> nl.Nonlinearity:
    """A user nonlinearity with unique family names; with nngp_fn / d_nngp_fn registered as its
    closed-form pair rules (keyed by those unique names, so layers never collide)."""
    while True:
        uname = f"{name}_{next(_counter)}" if (name in nl.REGISTRY or name in nl.ALIASES or nngp_fn is not None) \
            else name
        if (uname, uname) not in nl.PAIR_RULES and ("d" + uname, "d" + uname) not in nl.PAIR_RULES \
                and uname not in nl.REGISTRY:
            break
    if fn is None:
        def fn(x):
            raise NotImplementedError(f"Elementwise(fn=None, nngp_fn=...): {uname} has no finite-width function")
        fn._tpkernel_placeholder = True  # never probed (tpkernel.nonlin.check_coordinatewise)
        deriv = None
    else:
        fn = _numpy_fn(fn)
        deriv = None if df is None else _numpy_fn(df)
    if deriv is None and d_nngp_fn is not None:
        # the derivative is only needed through its closed form; never evaluate fn here
        def deriv(x):
            raise NotImplementedError(f"{uname}: the derivative is known only through d_nngp_fn")
        deriv._tpkernel_placeholder = True
    phi = nl.user(fn, name=uname, deriv=deriv)
    if nngp_fn is not None:
        nl.PAIR_RULES[(phi.name, phi.name)] = _pair_rule(nngp_fn)
        if d_nngp_fn is not None:
            dphi = phi.derivative()
            nl.PAIR_RULES[(dphi.name, dphi.name)] = _pair_rule(d_nngp_fn)
    return phi


def Elementwise(fn: Callable | None = None, nngp_fn: Callable | None = None,
                d_nngp_fn: Callable | None = None) -> Layer:
    """A user nonlinearity ``fn`` with the closed forms ``nngp_fn(cov12, var1, var2) = E[fn(u) fn(v)]``
    and ``d_nngp_fn`` = E[fn'(u) fn'(v)] (as in neural-tangents).

    The closed forms are used wherever the expectation is over one Gaussian pair (the usual
    case); ``fn`` (by quadrature, with its derivative by sympy or finite differences) is used
    elsewhere, and for the NTK when ``d_nngp_fn`` is not given.
    """
    if fn is None and nngp_fn is None:
        raise ValueError("No finite (`fn`) or infinite (`nngp_fn`) functions provided, the layer will not do "
                         "anything.")
    name = _fn_name(fn if fn is not None else nngp_fn, "elementwise")
    if nngp_fn is None:
        phi = _recognise(fn) or _user_nonlinearity(fn, None, name)
    else:
        if fn is None and d_nngp_fn is None:
            raise UnsupportedLayerError("Elementwise(fn=None, nngp_fn): tpkernel needs fn or d_nngp_fn for the NTK")
        phi = _user_nonlinearity(fn, None, name, nngp_fn, d_nngp_fn)
    return Layer(_Elementwise(f"Elementwise({name})", lambda ctx, h: _nl(ctx, phi, h),
                              None if fn is None else _numpy_fn(fn)))


def ElementwiseNumerical(fn: Callable, deg: int = 25, df: Callable | None = None) -> Layer:
    """``fn`` by numerical integration.  tpkernel uses its adaptive quadrature (converged to
    ~1e-11 and reported in ``Kernels.report``) whatever ``deg`` says; ``deg`` is accepted for
    compatibility.  A ``fn`` numerically identical to a built-in (tanh, erf, sigmoid, ...) uses it."""
    if not isinstance(deg, numbers.Integral) or deg < 1:
        raise ProgramError(f"ElementwiseNumerical: deg must be a positive integer, got {deg!r}")
    phi = _recognise(fn) if df is None else None
    if phi is None:
        phi = _user_nonlinearity(fn, df, _fn_name(fn, "numerical"))
    return Layer(_Elementwise(f"ElementwiseNumerical({phi.label}, deg={deg})", lambda ctx, h: _nl(ctx, phi, h),
                              _numpy_fn(fn)))
