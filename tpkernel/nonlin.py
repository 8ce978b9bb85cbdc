r"""The nonlinearity registry.

A nonlinearity is a *family* (relu, erf, sin, ...) with numeric parameters.  Each
family knows four things, one small function each:

- ``fn``      its NumPy map, coordinatewise;
- ``deriv``   its partial derivatives, again as nonlinearities (for the backward program);
- ``sym``     its sympy form (for formulas);
- ``mean``    E[φ(u)] for u ~ N(0, q), when known in closed form.

Closed-form *pair rules* ``E[φ(u) ψ(v)]`` for ``(u, v) ~ N(0, [[q1, c], [c, q2]])``
live in :data:`PAIR_RULES`, keyed by the two family names.  Each closed form (pairs and means)
is defined once, over a math back end (:data:`CLOSED_FORMS`, :data:`MEAN_FORMS`); the NumPy
rules and the sympy ones (:data:`SYMPY_PAIR_RULES`, :data:`SYMPY_MEAN_RULES`) are made from it.  Everything without a
rule is integrated by Gauss-Hermite quadrature (see :mod:`tpkernel.limit.gaussian`).

Linear maps (sums, scalings, residual connections) are *not* nonlinearities here:
they are :class:`~tpkernel.ir.LinComb` nodes, expanded bilinearly by the evaluator.

Families with parameters (φ as a function of x):

==============  ==========================================  ===========================
family          φ(x)                                         pair rule
==============  ==========================================  ===========================
abrelu(a, b)    a·min(x, 0) + b·max(x, 0)                    arc-cosine, degree 1
abstep(a, b)    a·1[x < 0] + b·1[x > 0]  (0 at x = 0)        arc-cosine, degree 0
erf             erf(x)                                       arcsin
gauss(a, b)     a·exp(b x²)                                  determinant formula
xgauss(a, b)    a·x·exp(b x²)                                tilted covariance
sin(c)          sin(x + c)                                   exp·cos
exp             exp(x)                                       exp(q1/2 + q2/2 + c)
gelu            x Φ(x)                                       Tsuchida et al. 2020
dgelu           Φ(x) + x φ(x)                                its derivative kernel
power(k)        x^k                                          Isserlis / Wick
prod            x1·x2·…·xk                                   (factorised by the evaluator)
==============  ==========================================  ===========================

Quadrature families: tanh, sigmoid (logistic), softplus, swish (= silu), and any user
function made with :func:`user`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import types
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.special as sps
import sympy

from .errors import NumericalError, ProgramError, UnknownNonlinearityError, first_index

Array = np.ndarray


@dataclass(frozen=True, eq=False)
class Family:
    """A family of nonlinearities: one entry of the registry."""

    name: str
    arity: int  # 0 means "any arity >= 1" (products)
    fn: Callable[..., Array]  # fn(params, *xs)
    deriv: Callable[[tuple, int], "Nonlinearity"] | None  # deriv(params, i)
    sym: Callable[..., sympy.Expr]  # sym(params, *symbols)
    mean: Callable[[tuple, Array], Array] | None = None  # mean(params, q)
    smooth: bool = True
    doc: str = ""


@dataclass(frozen=True)
class Nonlinearity:
    """A registered family with fixed parameters, e.g. ``abrelu(-0.3, 1.2)``."""

    family: Family = field(repr=False)
    params: tuple = ()
    arity: int = 1

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def is_product(self) -> bool:
        """The product x1·x2·…·xk: the one nonlinearity the rules treat structurally (its
        factors are factorised over independent atoms, its derivative is the other factors)."""
        return self.family.name == "prod"

    @property
    def label(self) -> str:
        """Readable name: ``relu``, ``abrelu[-0.3, 1.2]``, ``cos``, ``prod``."""
        for alias, (family, fixed) in ALIASES.items():
            if family == self.name and len(fixed) == len(self.params) and all(
                    f is None or f == p for f, p in zip(fixed, self.params)):
                free = [p for f, p in zip(fixed, self.params) if f is None]
                return alias + (f"[{', '.join(_fmt(p) for p in free)}]" if free else "")
        if not self.params:
            return self.name
        return f"{self.name}[{', '.join(_fmt(p) for p in self.params)}]"

    def __call__(self, *xs: Array) -> Array:
        return self.family.fn(self.params, *xs)

    def derivative(self, i: int = 0) -> "Nonlinearity":
        """∂φ/∂x_i as a nonlinearity of the same arguments."""
        if self.family.deriv is None:
            raise ProgramError(f"nonlinearity {self.label} has no derivative (needed for the NTK)")
        return self.family.deriv(self.params, i)

    def sym(self, *xs: sympy.Expr) -> sympy.Expr:
        return self.family.sym(self.params, *xs)


def _fmt(p: float) -> str:
    return repr(float(p)) if not float(p).is_integer() else str(int(p))


REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.name in REGISTRY and REGISTRY[family.name] is not family:
        raise ProgramError(f"a nonlinearity named {family.name!r} is already registered")
    REGISTRY[family.name] = family
    return family


#: names that are a family with some parameters fixed (None: given by the caller)
ALIASES: dict[str, tuple[str, tuple]] = {
    "relu": ("abrelu", (0.0, 1.0)),
    "abs": ("abrelu", (-1.0, 1.0)),
    "leaky_relu": ("abrelu", (None, 1.0)),
    "step": ("abstep", (0.0, 1.0)),
    "cos": ("sin", (math.pi / 2,)),
    "identity": ("power", (1.0,)),
}


def product(arity: int = 2) -> Nonlinearity:
    """The product x1·x2·…·xk of ``arity`` vectors (see :attr:`Nonlinearity.is_product`)."""
    return get("prod", arity=arity)


def get(name: str, *params: float, arity: int = 1) -> Nonlinearity:
    """Look a nonlinearity up by family or alias name, e.g. ``get("abrelu", -0.3, 1.2)``,
    ``get("relu")``, ``get("leaky_relu", 0.1)``; ``get("sin")`` is sin(x + 0)."""
    if name in ALIASES:
        family, fixed = ALIASES[name]
        needed = sum(f is None for f in fixed)
        if len(params) != needed:
            raise ProgramError(f"nonlinearity {name!r} needs {needed} parameter(s), got {len(params)}")
        free = iter(params)
        return get(family, *(next(free) if f is None else f for f in fixed), arity=arity)
    if name == "sin" and not params:
        params = (0.0,)
    try:
        fam = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownNonlinearityError(f"unknown nonlinearity {name!r}; known: {known}") from None
    if fam.arity and arity != fam.arity:
        raise ProgramError(f"nonlinearity {name!r} takes {fam.arity} argument(s), got {arity}")
    return Nonlinearity(fam, tuple(float(p) for p in params), arity)


# ---------------------------------------------------------------------------------
# built-in families
# ---------------------------------------------------------------------------------

SQRT2PI = math.sqrt(2 * math.pi)


def _numpy_mean(name: str) -> Callable:
    """``Family.mean`` of a built-in family: its :data:`MEAN_FORMS` entry (defined once, below)
    with the NumPy back end."""
    def mean(p, q):
        return MEAN_FORMS[name](NUMPY, p, q)
    mean.form_name = name  # (the forms are defined below the families; tests check the link)
    return mean


def _abrelu(p, x):
    a, b = p
    return np.where(x > 0, b * x, a * x)


def _abstep(p, x):
    a, b = p
    return np.where(x > 0, b, np.where(x < 0, a, 0.0)) + 0.0 * x


register(Family(
    "abrelu", 1, _abrelu, lambda p, i: get("abstep", *p),
    lambda p, x: sympy.Piecewise((p[1] * x, x > 0), (p[0] * x, True)),
    mean=_numpy_mean("abrelu"), smooth=False,
    doc="a·min(x,0) + b·max(x,0); relu = abrelu(0,1), leaky_relu(α) = abrelu(α,1), abs = abrelu(-1,1)"))
register(Family(
    "abstep", 1, _abstep, None,
    lambda p, x: sympy.Piecewise((p[1], x > 0), (p[0], x < 0), (0, True)),
    mean=_numpy_mean("abstep"), smooth=False,
    doc="a·1[x<0] + b·1[x>0], the derivative of abrelu(a, b) (0 at x = 0, as autodiff)"))
register(Family(
    "erf", 1, lambda p, x: sps.erf(x), lambda p, i: get("gauss", 2 / math.sqrt(math.pi), -1.0),
    lambda p, x: sympy.erf(x), mean=_numpy_mean("erf"), doc="erf(x)"))
register(Family(
    "gauss", 1, lambda p, x: p[0] * np.exp(p[1] * x * x),
    lambda p, i: get("xgauss", 2 * p[0] * p[1], p[1]),
    lambda p, x: p[0] * sympy.exp(p[1] * x ** 2),
    mean=_numpy_mean("gauss"), doc="a·exp(b x²)"))
register(Family(
    "xgauss", 1, lambda p, x: p[0] * x * np.exp(p[1] * x * x), None,
    lambda p, x: p[0] * x * sympy.exp(p[1] * x ** 2), mean=_numpy_mean("xgauss"),
    doc="a·x·exp(b x²), the derivative of gauss"))
register(Family(
    "sin", 1, lambda p, x: np.sin(x + p[0]), lambda p, i: get("sin", p[0] + math.pi / 2),
    lambda p, x: sympy.sin(x + p[0]) if p[0] else sympy.sin(x),
    mean=_numpy_mean("sin"), doc="sin(x + c); cos(x) = sin(x + π/2)"))
register(Family(
    "exp", 1, lambda p, x: np.exp(x), lambda p, i: get("exp"), lambda p, x: sympy.exp(x),
    mean=_numpy_mean("exp"), doc="exp(x)"))


def _norm_pdf(x):
    return np.exp(-0.5 * x * x) / SQRT2PI


register(Family(
    "gelu", 1, lambda p, x: x * sps.ndtr(x), lambda p, i: get("dgelu"),
    lambda p, x: x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2,
    mean=_numpy_mean("gelu"), doc="x·Φ(x) (exact, not the tanh approximation)"))
register(Family(
    "dgelu", 1, lambda p, x: sps.ndtr(x) + x * _norm_pdf(x), None,
    lambda p, x: (1 + sympy.erf(x / sympy.sqrt(2))) / 2 + x * sympy.exp(-x ** 2 / 2) / sympy.sqrt(2 * sympy.pi),
    mean=_numpy_mean("dgelu"), doc="Φ(x) + x·φ(x), the derivative of gelu"))


def _double_factorial(k: int) -> int:
    return math.prod(range(k, 0, -2)) if k > 0 else 1


register(Family(
    "power", 1, lambda p, x: x ** int(p[0]),
    lambda p, i: _scaled_power(p[0]),
    lambda p, x: x ** int(p[0]),
    mean=_numpy_mean("power"),
    doc="x^k, k a positive integer"))
register(Family(
    "cpower", 1, lambda p, x: p[1] * x ** int(p[0]), lambda p, i: get("cpower", p[0] - 1, p[1] * p[0])
    if p[0] > 1 else get("cpower", 0, p[1] * p[0]),
    lambda p, x: p[1] * x ** int(p[0]),
    mean=_numpy_mean("cpower"),
    doc="c·x^k (derivatives of powers)"))


def _scaled_power(k: float) -> Nonlinearity:
    return get("cpower", k - 1, k)


def _prod_fn(p, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


def _prod_deriv(p, i):  # handled structurally by the backward transformation
    raise ProgramError("the derivative of prod is built by the backward transformation")


register(Family(
    "prod", 0, _prod_fn, None, lambda p, *xs: sympy.Mul(*xs),
    doc="x1·x2·…·xk: products of vectors, factorised over independent parts"))


# quadrature families ------------------------------------------------------------

register(Family(
    "tanh", 1, lambda p, x: np.tanh(x), lambda p, i: get("dtanh"), lambda p, x: sympy.tanh(x),
    mean=_numpy_mean("tanh"), doc="tanh(x) (quadrature)"))
register(Family(
    "dtanh", 1, lambda p, x: 4 * np.exp(-2 * np.abs(x)) / (1 + np.exp(-2 * np.abs(x))) ** 2, None, lambda p, x: 1 - sympy.tanh(x) ** 2,
    doc="1 - tanh(x)² (quadrature)"))
register(Family(
    "sigmoid", 1, lambda p, x: sps.expit(x), lambda p, i: get("dsigmoid"),
    lambda p, x: 1 / (1 + sympy.exp(-x)), mean=_numpy_mean("sigmoid"),
    doc="logistic 1/(1+e^-x) (quadrature)"))
register(Family(
    "dsigmoid", 1, lambda p, x: sps.expit(x) * sps.expit(-x), None,
    lambda p, x: sympy.exp(-x) / (1 + sympy.exp(-x)) ** 2, doc="σ(x)(1-σ(x)) (quadrature)"))
register(Family(
    "softplus", 1, lambda p, x: np.logaddexp(0.0, x), lambda p, i: get("sigmoid"),
    lambda p, x: sympy.log(1 + sympy.exp(x)), doc="log(1 + e^x) (quadrature)"))
register(Family(
    "swish", 1, lambda p, x: x * sps.expit(x), lambda p, i: get("dswish"),
    lambda p, x: x / (1 + sympy.exp(-x)), doc="x·σ(x), a.k.a. silu (quadrature)"))
register(Family(
    "dswish", 1, lambda p, x: sps.expit(x) * (1 + x * sps.expit(-x)), None,
    lambda p, x: sympy.diff(x / (1 + sympy.exp(-x)), x) if isinstance(x, sympy.Symbol)
    else sympy.Function("dswish")(x), doc="derivative of swish (quadrature)"))


# ---------------------------------------------------------------------------------
# user functions
# ---------------------------------------------------------------------------------

def user(fn: Callable, name: str | None = None, deriv: Sequence[Callable] | Callable | None = None,
         arity: int = 1) -> Nonlinearity:
    """Make a nonlinearity from a Python callable (integrated by quadrature).

    The callable must work on NumPy arrays, coordinatewise (the contract is checked once,
    here, by :func:`check_coordinatewise`; a ProgramError names the function).  Its
    derivatives (needed for the NTK) are taken, in order of preference, from ``deriv`` (one
    callable per argument, checked the same way), from sympy if ``fn`` also accepts sympy
    symbols, or else by a central finite difference with step 1e-5 (relative error ~1e-10
    for smooth functions).  At every call its values are checked to have the shape of its
    arguments and to be real; a NaN where the arguments are finite is a NumericalError
    naming the function and the argument value.
    """
    name = name or getattr(fn, "__name__", "user")
    if name == "<lambda>":
        name = "user"
    if name in REGISTRY:
        raise ProgramError(f"nonlinearity name {name!r} is taken by a built-in; pick another")
    check_coordinatewise(fn, name, arity)
    derivs = _user_derivatives(fn, deriv, arity, name)
    fam = Family(
        name, arity, _user_fn_factory(fn, name),
        (lambda p, i: derivs[i]) if derivs is not None else None,
        lambda p, *xs: sympy.Function(name)(*xs), doc=f"user function {name}")
    return Nonlinearity(fam, (), arity)


#: the probe of :func:`check_coordinatewise`: finite, no special points (0, ±1, integers), both signs
_PROBE = np.array([-3.7, -2.2, -1.3, -0.61, -0.13, 0.05, 0.37, 0.9, 1.7, 2.9, 4.1, -0.83])


def _probe_args(arity: int) -> list[np.ndarray]:
    """One probe array per argument, each in a different order (so that the arguments differ)."""
    return [np.roll(_PROBE, 5 * i) for i in range(arity)]


def _describe_call(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _user_values(out, xs: tuple, name: str, probe: bool = False) -> np.ndarray:
    """The values of user function ``name`` at arguments ``xs`` as float64, checked: the shape
    of the (broadcast) arguments, real numbers (bool, integer or float64), and no NaN where
    every argument is finite."""
    shape = np.broadcast_shapes(*(np.shape(x) for x in xs))
    arr = np.asarray(out)
    if arr.shape != shape:
        raise ProgramError(f"user nonlinearity {name!r} is not coordinatewise: arguments of shape {shape} "
                           f"gave values of shape {arr.shape} (a nonlinearity maps every coordinate on its "
                           "own and must return an array of its arguments' shape)")
    kind = arr.dtype.kind
    if kind == "c":
        raise ProgramError(f"user nonlinearity {name!r} returns complex values (dtype {arr.dtype}); it must be "
                           "real (take .real explicitly if the imaginary part is meant to be dropped)")
    if kind not in "biuf" or (kind == "f" and arr.dtype.itemsize < 8):
        raise ProgramError(f"user nonlinearity {name!r} returns dtype {arr.dtype}; it must return real numbers "
                           "in float64 (or bool / integers), as every expectation is computed to ~1e-11")
    arr = arr.astype(float, copy=False)
    if np.isnan(arr.sum()):  # fast path: no NaN (and no inf - inf) anywhere
        bad = np.isnan(arr)
        for x in xs:
            bad &= np.isfinite(np.broadcast_to(x, shape))
        if bad.any():
            at = first_index(bad)
            args = ", ".join(repr(float(np.broadcast_to(x, shape)[at])) for x in xs)
            raise NumericalError(f"user nonlinearity {name!r} returned NaN at the finite argument "
                                 f"{'(' + args + ')' if len(xs) > 1 else args}"
                                 + (" of the probe" if probe else ""))
    return arr


def check_coordinatewise(fn: Callable, name: str, arity: int = 1) -> None:
    """The contract of a user nonlinearity, checked once when it is made: called on a small
    probe (12 finite values away from 0 and the integers, each argument in a different order)
    as an array of shape (12,), reshaped to (3, 4), permuted and on a subset, it returns an
    array of its arguments' shape, of real numbers (bool, integer or float64: not complex, not
    float32), finite, and the same values coordinate by coordinate (relative 1e-12) whatever
    the shape, order or size of the array: so it does not mix coordinates (a sum, a mean, a
    normalisation, a sort) nor return a scalar.  A violation is a ProgramError naming the
    function.  Callables marked ``fn._tpkernel_placeholder = True`` (stax's kernel-only
    layers, which have no finite-width function) are not called."""
    if getattr(fn, "_tpkernel_placeholder", False):
        return
    args = _probe_args(arity)
    what = f"user nonlinearity {name!r} ({_describe_call(fn)})"

    def call(xs: list[np.ndarray], how: str) -> np.ndarray:
        try:
            with np.errstate(all="ignore"):  # a NaN or inf is reported below, by value and argument
                out = fn(*xs)
        except Exception as err:
            raise ProgramError(f"{what} fails on a probe array of shape {xs[0].shape} ({how}): "
                               f"{type(err).__name__}: {err} (it must accept NumPy arrays and act coordinatewise)"
                               ) from err
        try:
            vals = _user_values(out, tuple(xs), name, probe=True)
        except NumericalError as err:
            raise ProgramError(f"{err}: a nonlinearity must be finite at finite arguments") from None
        if not np.all(np.isfinite(vals)):
            at = first_index(~np.isfinite(vals))
            raise ProgramError(f"{what} returns {vals[at]} at the finite probe argument "
                               f"{', '.join(repr(float(x[at])) for x in xs)}: a nonlinearity must be finite at "
                               "finite arguments")
        return vals

    base = call(args, "a vector")
    perm = np.array([7, 2, 11, 0, 5, 9, 1, 4, 10, 3, 8, 6])
    subset = np.array([9, 2, 6])
    checks = [
        ("reshaped to (3, 4)", [a.reshape(3, 4) for a in args], base.reshape(3, 4)),
        ("its transpose (4, 3)", [a.reshape(3, 4).T for a in args], base.reshape(3, 4).T),
        ("permuted", [a[perm] for a in args], base[perm]),
        ("a subset of 3 coordinates", [a[subset] for a in args], base[subset]),
        ("one coordinate", [a[4:5] for a in args], base[4:5]),
    ]
    for how, xs, expected in checks:
        got = call(xs, how)
        if not np.allclose(got, expected, rtol=1e-12, atol=1e-300):
            at = first_index(~np.isclose(got, expected, rtol=1e-12, atol=1e-300))
            raise ProgramError(f"{what} is not coordinatewise: on the probe {how} it gives {float(got[at])!r} where "
                               f"the same argument in a vector of 12 gave {float(expected[at])!r} (a nonlinearity maps every "
                               "coordinate on its own: no sums, means, normalisations or sorting over the array)")


def _user_fn_factory(fn, name: str):
    def call(p, *xs):
        return _user_values(fn(*xs), xs, name)
    return call


def _user_derivatives(fn, deriv, arity, name):
    if deriv is not None:
        ds = list(deriv) if isinstance(deriv, (list, tuple)) else [deriv]
        if len(ds) != arity:
            raise ProgramError(f"user nonlinearity {name!r}: {arity} argument(s) but {len(ds)} derivative(s)")
        return [user(d, name=f"d{i}{name}" if arity > 1 else f"d{name}", arity=arity) for i, d in enumerate(ds)]
    syms = sympy.symbols(f"x0:{arity}", real=True)
    try:
        expr = fn(*syms)
        if not isinstance(expr, sympy.Expr):
            raise TypeError
    except Exception:
        return [_finite_difference(fn, i, arity, name) for i in range(arity)]
    out = []
    for i, s in enumerate(syms):
        d = sympy.diff(expr, s)
        f = sympy.lambdify(syms, d, modules=["scipy", "numpy"])
        out.append(Nonlinearity(Family(f"d{i}{name}" if arity > 1 else f"d{name}", arity,
                                       _user_fn_factory(_broadcasting(f), f"d{i}{name}" if arity > 1 else f"d{name}"),
                                       None,
                                       lambda p, *xs, d=d: d.subs(dict(zip(syms, xs))),
                                       doc=f"derivative of {name} (sympy)"), (), arity))
    return out


def _broadcasting(f):
    def g(*xs):
        shape = np.broadcast_shapes(*(np.shape(x) for x in xs))
        return np.broadcast_to(f(*xs), shape)
    return g


def _finite_difference(fn, i, arity, name):
    h = 1e-5

    def d(*xs):
        xp = list(xs)
        xm = list(xs)
        xp[i] = xs[i] + h
        xm[i] = xs[i] - h
        return (np.asarray(fn(*xp)) - np.asarray(fn(*xm))) / (2 * h)
    dname = f"d{i}{name}" if arity > 1 else f"d{name}"
    return Nonlinearity(Family(dname, arity, _user_fn_factory(d, dname),
                               None, lambda p, *xs: sympy.Function(f"d{name}")(*xs),
                               doc=f"derivative of {name} (finite difference)"), (), arity)


# ---------------------------------------------------------------------------------
# closed-form pair rules: E[φ(u) ψ(v)], (u, v) ~ N(0, [[q1, c], [c, q2]])
# ---------------------------------------------------------------------------------

#: a pair whose correlation is within this of ±1 (|c| >= (1 - COLLINEAR)·√q1·√q2) is taken as
#: perfectly correlated: s = √(q1q2 − c²) = 0 exactly.  Rounding alone leaves |ρ| of an input
#: paired with itself or a multiple of itself ~10 ulps (2e-15, measured for d up to 3072) away
#: from 1, and θ = atan2(s, c) turns that into θ ~ 1e-7 (the step kernel off by ~2e-8); the
#: threshold 2^-44 ≈ 5.7e-14 (256 ulps) absorbs it with margin.  The cost: a pair genuinely that
#: close to collinear (θ < 3.4e-7) gets θ = 0, an error below 5.4e-8 in the step kernel, where
#: float64 data determine θ only to ~1e-9 anyway (δθ ≈ δρ/θ).
COLLINEAR = 2.0 ** -44


def residual(q1, q2, c):
    """(n, s) = (√q1·√q2, √(q1q2 − c²)) without forming q1·q2 (which under- or overflows for
    variances below 1e-154 or above 1e154): with n = √q1·√q2 and e = n − |c|,
    s = √e·√(n + |c|); s = 0 where e <= COLLINEAR·n (perfectly correlated to rounding, see
    :data:`COLLINEAR`; also where a variance is 0)."""
    q1, q2, c = np.asarray(q1, dtype=float), np.asarray(q2, dtype=float), np.asarray(c, dtype=float)
    n = np.sqrt(q1) * np.sqrt(q2)
    ac = np.abs(c)
    e = n - ac
    s = np.sqrt(np.maximum(e, 0.0)) * np.sqrt(n + ac)
    return n, np.where(e > COLLINEAR * n, s, 0.0)


def _sqrt_det(q1, q2, c):
    """√(q1q2 − c²) >= 0, scale-safe, exactly 0 for perfectly correlated inputs (:func:`residual`)."""
    return residual(q1, q2, c)[1]


def arccos_angle(q1, q2, c):
    """(s, θ) = (√(q1q2 - c²), atan2(s, c)): the geometry the arc-cosine kernels share (an
    evaluator computing J1 and J0 of the same pair passes it to both, see ``angles``).  s is
    computed scale-safely and is exactly 0 for a perfectly correlated pair (:func:`residual`)."""
    s = _sqrt_det(q1, q2, c)
    return s, np.arctan2(s, c)


def input_residual(g1, g2, g, a, beta, sg=None):
    """s = √(q1q2 − c²) of the pre-activations h = √a·Uξ + b of an input layer (q = a G_ii + β,
    c = a G_ij + β, G the Gram matrix), from the Gram structure rather than from (q1, q2, c):

      q1q2 − c² = a² (G11 G22 − G12²) + aβ (G11 + G22 − 2 G12)
                = a² s_G² + β [(√(aG11) − √(aG22))² + 2a (√G11√G22 − G12)],

    every term >= 0, with s_G = :func:`residual` (G11, G22, G12) (0 for collinear inputs) and
    √G11√G22 − G12 = s_G²/(√G11√G22 + G12) when G12 > 0.  From (q1, q2, c), rounded to ε, the
    bias part of a pair of collinear inputs of different norms (ξ, 3ξ) is lost when q ≫ β:
    1 − ρ ≈ 2β/(9q) drowns in the rounding of q1q2 (an erf NTK 1.5e-2 off at inputs ~1e10).
    ``sg``: s_G when the caller carries it (a deeper layer: G the moments of the previous
    post-activations, s_G from :func:`relu_residual`), else computed from (G11, G22, G12)."""
    g1, g2, g = (np.asarray(x, dtype=float) for x in (g1, g2, g))
    n, sg0 = residual(g1, g2, g)
    sg = sg0 if sg is None else np.asarray(sg, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(g > 0, sg * (sg / np.where(n + g > 0, n + g, 1.0)), n - g)
    t = np.hypot(np.sqrt(a * g1) - np.sqrt(a * g2), np.sqrt(2 * a * np.maximum(m, 0.0)))
    return np.hypot(a * sg, math.sqrt(beta) * t)


def _sin_minus_theta_cos(theta):
    """sin θ − θ cos θ for θ in [0, π], without its cancellation (~θ³/3) at small θ: the series
    Σ_k (−1)^(k+1) 2k θ^(2k+1)/(2k+1)! below θ = 1/2 (8 terms: ~1e-20 relative), else direct."""
    theta = np.asarray(theta, dtype=float)
    t2 = theta * theta
    series = np.zeros_like(theta)
    for k in range(8, 0, -1):
        series = (-1) ** (k + 1) * 2 * k / math.factorial(2 * k + 1) + t2 * series
    series = series * t2 * theta
    return np.where(theta < 0.5, series, np.sin(theta) - theta * np.cos(theta))


def relu_residual(q1, q2, c, s):
    """s_K = √(K11K22 − K12²) of the relu post-activations K = E[relu(u) relu(v)] of a pair with
    variances q1, q2, covariance c and (carried) s = √(q1q2 − c²), from the pre-activations'
    geometry rather than from the rounded K's: with n = √q1√q2, θ = atan2(s, c), K̄ = √(K11K22) = n/2,

      K̄ − K = (π(n − c) − n(sin θ − θ cos θ))/(2π) >= 0,   n − c = s²/(n + c) for c > 0,

    and s_K = √(K̄ − K)·√(K̄ + K): both terms of K̄ − K are O(θ²) with no cancellation, so s_K
    keeps the relative accuracy of s (docs/limit.md, "Scales")."""
    q1, q2, c, s = (np.asarray(x, dtype=float) for x in (q1, q2, c, s))
    n = np.sqrt(q1) * np.sqrt(q2)
    theta = np.arctan2(s, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(c > 0, s * (s / np.where(n + c > 0, n + c, 1.0)), n - c)
    lo = np.maximum(np.pi * gap - n * _sin_minus_theta_cos(theta), 0.0) / (2 * np.pi)
    hi = n / 2 + (s + (np.pi - theta) * c) / (2 * np.pi)
    return np.sqrt(lo) * np.sqrt(np.maximum(hi, 0.0))


# ---------------------------------------------------------------------------------
# the closed forms, each defined once over a math back end B
# ---------------------------------------------------------------------------------
# Every closed form below is ONE function of a math back end ``B`` (its first argument),
# and both tables are made from it: :data:`PAIR_RULES` (``B = NUMPY``: vectorised, scale-safe
# float64, the numbers of the evaluator) and :data:`SYMPY_PAIR_RULES` (``B = SYMPY``: the
# formulas of :mod:`tpkernel.symbolic`); likewise the means (:data:`MEAN_FORMS` → each
# family's ``mean`` and :data:`SYMPY_MEAN_RULES`).  The back end supplies
#
# - functions and constants: ``sqrt exp abs cos sin pi sqrt2pi``, ``frac(n, d)`` (n/d or a
#   Rational), ``zero``, ``zeros(q)`` (0·q or 0), ``params(p)`` / ``param(x)`` (the floats, or
#   exact sympy numbers, :func:`sym_number`);
# - the geometry: ``residual(q1, q2, c)`` = √(q1q2 − c²) (:func:`residual`, scale-safe and
#   exactly 0 for collinear pairs; √Max(q1q2 − c², 0) in sympy), ``angle(q1, q2, c)`` = (s, θ)
#   (:func:`arccos_angle`); ``sqrt_det(r, t, det)`` = √det for a determinant det = r² + t²
#   (r, t >= 0) written without a product of variances: hypot(r, t) in NumPy, √det() in sympy;
#   ``arcsin(x, root, norm2)`` = arcsin(x/√norm2) with root = √(norm2 − x²) >= 0:
#   atan2(x, root) in NumPy (stable near ±1), asin(x/√norm2()) in sympy (``det`` and ``norm2``
#   are thunks: NumPy never forms them);
# - the numeric guards: ``where(cond, x, other)`` (np.where; just x in sympy: the formulas
#   assume positive variances and convergent expectations), ``positive`` / ``nonnegative``
#   (the comparisons; True in sympy), ``clip0`` (max(x, 0); the identity in sympy), ``array``
#   and ``quiet`` (float arrays and np.errstate; no-ops in sympy).
#
# The NumPy back end is the exact sequence of floating-point operations of the former
# hand-written rules (bit for bit), the sympy one prints the textbook forms.


def sym_number(x: float) -> sympy.Expr:
    """A float parameter as an exact sympy number when one reproduces it bit for bit
    (1.0 → 1, 0.1 → 1/10, 1.1283791670955126 → 2/√π), else a Float."""
    x = float(x)
    if x.is_integer():
        return sympy.Integer(int(x))
    try:
        r = sympy.nsimplify(x, [sympy.pi])
        if float(r) == x:
            return r
    except (TypeError, ValueError):  # pragma: no cover - nsimplify gives up
        pass
    return sympy.Float(x)


class NumPyBackEnd:
    """Vectorised float64 arithmetic: the operations the numeric rules always performed."""

    name = "numpy"
    pi = np.pi
    sqrt2pi = SQRT2PI
    zero = 0.0
    sqrt = staticmethod(np.sqrt)
    exp = staticmethod(np.exp)
    abs = staticmethod(np.abs)
    cos = staticmethod(np.cos)  # (of parameters only)
    sin = staticmethod(math.sin)  # (of parameters only: the mean of sin(x + c))

    @staticmethod
    def params(p: tuple) -> tuple:
        return p

    @staticmethod
    def param(x: float):
        return x

    @staticmethod
    def frac(n: int, d: int) -> float:
        return n / d

    @staticmethod
    def zeros(q):
        return 0.0 * q

    @staticmethod
    def array(x):
        return np.asarray(x, dtype=float)

    @staticmethod
    def quiet():
        return np.errstate(invalid="ignore", over="ignore")

    @staticmethod
    def residual(q1, q2, c):
        return _sqrt_det(q1, q2, c)

    @staticmethod
    def angle(q1, q2, c):
        return arccos_angle(q1, q2, c)

    where = staticmethod(np.where)

    @staticmethod
    def sqrt_det(r, t, det):
        return np.hypot(r, t)

    @staticmethod
    def arcsin(x, root, norm2):
        return np.arctan2(x, root)

    @staticmethod
    def positive(x):
        return x > 0

    @staticmethod
    def nonnegative(x):
        return x >= 0

    @staticmethod
    def clip0(x):
        return np.maximum(x, 0.0)


class SympyBackEnd:
    """Exact sympy expressions; the numeric guards drop out (positive variances assumed)."""

    name = "sympy"
    pi = sympy.pi
    sqrt2pi = sympy.sqrt(2 * sympy.pi)
    zero = sympy.Integer(0)
    sqrt = staticmethod(sympy.sqrt)
    exp = staticmethod(sympy.exp)
    abs = staticmethod(sympy.Abs)
    cos = staticmethod(sympy.cos)
    sin = staticmethod(sympy.sin)

    @staticmethod
    def params(p: tuple) -> tuple:
        return tuple(sym_number(x) for x in p)

    param = staticmethod(sym_number)

    @staticmethod
    def frac(n: int, d: int) -> sympy.Expr:
        return sympy.Rational(n, d)

    @staticmethod
    def zeros(q):
        return sympy.Integer(0)

    @staticmethod
    def array(x):
        return x

    @staticmethod
    def quiet():
        return contextlib.nullcontext()

    @staticmethod
    def residual(q1, q2, c):
        return sympy.sqrt(sympy.Max(q1 * q2 - c ** 2, 0))

    @classmethod
    def angle(cls, q1, q2, c):
        s = cls.residual(q1, q2, c)
        return s, sympy.atan2(s, c)

    @staticmethod
    def where(cond, x, other):
        return x

    @staticmethod
    def sqrt_det(r, t, det):
        return sympy.sqrt(det())

    @staticmethod
    def arcsin(x, root, norm2):
        return sympy.asin(x / sympy.sqrt(norm2()))

    @staticmethod
    def positive(x):
        return True

    @staticmethod
    def nonnegative(x):
        return True

    @staticmethod
    def clip0(x):
        return x


NUMPY = NumPyBackEnd()
SYMPY = SympyBackEnd()


def _arccos_1(B, q1, q2, c, angle=None):
    s, theta = angle if angle is not None else B.angle(q1, q2, c)
    return (s + (B.pi - theta) * c) / (2 * B.pi)


def _arccos_0(B, q1, q2, c, angle=None):
    theta = (angle if angle is not None else B.angle(q1, q2, c))[1]
    return B.where(B.positive(q1) & B.positive(q2), (B.pi - theta) / (2 * B.pi), 0.0)


def arccos_1(q1, q2, c, angle=None):
    """E[relu(u) relu(v)] = √(q1q2)/(2π)·(sin θ + (π - θ) cos θ), in the stable form
    (√(q1q2 - c²) + (π - θ) c)/(2π) with θ = atan2(√(q1q2 - c²), c); ``angle``: (s, θ) if
    already known."""
    return _arccos_1(NUMPY, q1, q2, c, angle)


def arccos_0(q1, q2, c, angle=None):
    """P(u > 0, v > 0) = (π - θ)/(2π); 0 where a variance is 0 (step(0) = 0)."""
    return _arccos_0(NUMPY, q1, q2, c, angle)


def sym_arccos_1(q1, q2, c):
    """E[relu(u) relu(v)] = (√(q1q2 - c²) + (π - θ) c)/(2π), θ = atan2(√(q1q2 - c²), c)."""
    return _arccos_1(SYMPY, q1, q2, c)


def sym_arccos_0(q1, q2, c):
    """P(u > 0, v > 0) = (π - θ)/(2π)."""
    return _arccos_0(SYMPY, q1, q2, c)


def _pair_abrelu(B, p1, p2, q1, q2, c, angles=None):
    """``angles(sign)``: (s, θ) at covariance sign·c, when the caller shares them (memoised)."""
    (a1, b1), (a2, b2) = B.params(p1), B.params(p2)
    # φ = b·relu(x) - a·relu(-x); E[relu(u) relu(-v)] is J1 at covariance -c (not needed when
    # its coefficient is 0, as for relu)
    out = (b1 * b2 + a1 * a2) * _arccos_1(B, q1, q2, c, angles(1) if angles else None)
    k = a1 * b2 + b1 * a2
    return out - k * _arccos_1(B, q1, q2, -c, angles(-1) if angles else None) if k else out


def _pair_abstep(B, p1, p2, q1, q2, c, angles=None):
    (a1, b1), (a2, b2) = B.params(p1), B.params(p2)
    out = (b1 * b2 + a1 * a2) * _arccos_0(B, q1, q2, c, angles(1) if angles else None)
    k = a1 * b2 + b1 * a2
    return out + k * _arccos_0(B, q1, q2, -c, angles(-1) if angles else None) if k else out


def _relu_step(B, q1, q2, c):
    """E[relu(u) 1(v > 0)] = √q1 (1 + ρ) / (2√(2π)); 0 where q2 = 0 (step(0) = 0)."""
    n = B.sqrt(q1) * B.sqrt(q2)  # (not √(q1q2): scale-safe)
    rho = B.where(B.positive(n), c / B.where(B.positive(n), n, 1.0), 0.0)
    return B.where(B.positive(q2), B.sqrt(q1) * (1 + rho) / (2 * B.sqrt2pi), 0.0)


def _pair_abrelu_abstep(B, p1, p2, q1, q2, c):
    (a1, b1), (a2, b2) = B.params(p1), B.params(p2)
    # abrelu = b relu(x) - a relu(-x); abstep = b 1(x>0) + a 1(x<0) = b 1(x>0) + a 1(-x>0)
    return (b1 * b2 * _relu_step(B, q1, q2, c) + b1 * a2 * _relu_step(B, q1, q2, -c)
            - a1 * b2 * _relu_step(B, q1, q2, -c) - a1 * a2 * _relu_step(B, q1, q2, c))


def _pair_erf(B, p1, p2, q1, q2, c, s=None):
    """(2/π) arcsin(2c/√((1+2q1)(1+2q2))) = (2/π) atan2(2c, √(1 + 2q1 + 2q2 + 4(q1q2 − c²))), as
    (2/π) atan2(2c, hypot(√(1 + 2q1 + 2q2), 2s)) with s = √(q1q2 − c²) from :func:`residual`:
    no product of variances (scale-safe) and no arcsin near ±1 (stable).  ``s``: √(q1q2 − c²)
    if the caller knows it more accurately (:func:`input_residual`)."""
    s = B.residual(q1, q2, c) if s is None else s
    P = lambda: (1 + 2 * q1) * (1 + 2 * q2)  # noqa: E731
    root = B.sqrt_det(B.sqrt(1 + 2 * (q1 + q2)), 2 * s, lambda: P() - 4 * c ** 2)
    return (2 / B.pi) * B.arcsin(2 * c, root, P)


def _gauss_sqrt_det(B, b1, b2, q1, q2, c, s=None):
    """√det, det = (1 − 2b1q1)(1 − 2b2q2) − 4b1b2c², without a product of variances:
    det = (1 − 2b1q1 − 2b2q2) + 4b1b2(q1q2 − c²) = lin + 4b1b2 s² → hypot(√lin, 2√(b1b2)·s) when
    b1b2 > 0 and lin >= 0 (erf's derivative: b = −1); hypot(√P1·√P2, 2√(−b1b2)|c|) with
    P = 1 − 2bq when b1b2 <= 0 and P1, P2 >= 0; else (a diverging expectation) det itself."""
    q1, q2, c = B.array(q1), B.array(q2), B.array(c)
    with B.quiet():
        P1, P2 = 1 - 2 * b1 * q1, 1 - 2 * b2 * q2
        det = lambda: P1 * P2 - 4 * b1 * b2 * c * c  # noqa: E731
        raw = B.sqrt(det())
        if b1 * b2 > 0:
            lin = 1 - (2 * b1 * q1 + 2 * b2 * q2)  # (symmetric in the two sides, bit for bit)
            s = B.residual(q1, q2, c) if s is None else s
            safe = B.sqrt_det(B.sqrt(B.clip0(lin)), 2 * B.sqrt(b1 * b2) * s, det)
            return B.where(B.nonnegative(lin), safe, raw)
        ok = B.nonnegative(P1) & B.nonnegative(P2)
        safe = B.sqrt_det(B.sqrt(B.clip0(P1)) * B.sqrt(B.clip0(P2)), 2 * B.sqrt(-b1 * b2) * B.abs(c), det)
        return B.where(ok, safe, raw)


def _pair_gauss(B, p1, p2, q1, q2, c, s=None):
    (a1, b1), (a2, b2) = B.params(p1), B.params(p2)
    return a1 * a2 / _gauss_sqrt_det(B, b1, b2, q1, q2, c, s)


def _pair_xgauss(B, p1, p2, q1, q2, c, s=None):
    (a1, b1), (a2, b2) = B.params(p1), B.params(p2)
    sd = _gauss_sqrt_det(B, b1, b2, q1, q2, c, s)
    return a1 * a2 * (c / sd) / sd / sd  # c / det^1.5, in an order that stays representable


def _pair_sin(B, p1, p2, q1, q2, c):
    (c1,), (c2,) = B.params(p1), B.params(p2)
    # sin(u+c1) sin(v+c2) = [cos(u - v + c1 - c2) - cos(u + v + c1 + c2)] / 2
    return B.frac(1, 2) * (B.exp(-(q1 + q2 - 2 * c) / 2) * B.cos(c1 - c2)
                           - B.exp(-(q1 + q2 + 2 * c) / 2) * B.cos(c1 + c2))


def _pair_exp(B, p1, p2, q1, q2, c):
    return B.exp((q1 + q2) / 2 + c)


def _gelu_common(B, q1, q2, c, s=None):
    """P1 = q1 + 1, P2 = q2 + 1, δ = √(P1P2 − c²) = hypot(√(1 + q1 + q2), s) (since
    P1P2 − c² = 1 + q1 + q2 + q1q2 − c², s from :func:`residual`) and atan2(c, δ): no product of
    variances, so that the rules hold from variances 1e-300 to 1e300."""
    P1, P2 = q1 + 1, q2 + 1
    s = B.residual(q1, q2, c) if s is None else s
    delta = B.sqrt_det(B.sqrt(1 + (q1 + q2)), s, lambda: P1 * P2 - c ** 2)
    return P1, P2, delta, B.arcsin(c, delta, lambda: P1 * P2)


def _pair_gelu(B, p1, p2, q1, q2, c, s=None):
    """Tsuchida, Pearce, van der Heide, Roosta, Gallagher (2020), as in neural-tangents:
    c/4 + ((c² + q1q2δ²)/(P1P2δ) + c·atan2(c, δ))/(2π), written as
    c/4 + (w²/δ + (q1/P1)(q2/P2)δ + c·atan2(c, δ))/(2π) with w = c/(√P1√P2)."""
    P1, P2, delta, angle = _gelu_common(B, q1, q2, c, s)
    w = c / (B.sqrt(P1) * B.sqrt(P2))
    return c / 4 + (w * w / delta + (q1 / P1) * (q2 / P2) * delta + c * angle) / (2 * B.pi)


def _pair_dgelu(B, p1, p2, q1, q2, c, s=None):
    """1/4 + atan2(c, δ)/(2π) + c/δ/(2π)·(1/δ² + (1 − q1q2)/(P1P2) + 1), where
    (1 − q1q2)/(P1P2) + 1 = (P1 + P2)/(P1P2) = 1/P1 + 1/P2 (exact; no product of variances)."""
    P1, P2, delta, angle = _gelu_common(B, q1, q2, c, s)
    inv = 1 / delta
    return B.frac(1, 4) + angle / (2 * B.pi) + (c * inv) / (2 * B.pi) * (inv * inv + 1 / P1 + 1 / P2)


def _pair_power(B, p1, p2, q1, q2, c):
    """Wick: sum over the matchings of k copies of u and m copies of v."""
    k, m = int(p1[0]), int(p2[0])
    total = B.zero
    for j in range(min(k, m) + 1):
        if (k - j) % 2 or (m - j) % 2:
            continue
        count = math.comb(k, j) * math.comb(m, j) * math.factorial(j) \
            * _double_factorial(k - j - 1) * _double_factorial(m - j - 1)
        total = total + count * c ** j * q1 ** ((k - j) // 2) * q2 ** ((m - j) // 2)
    return total


def _pair_cpower(B, p1, p2, q1, q2, c):
    return B.param(p1[1]) * B.param(p2[1]) * _pair_power(B, (p1[0],), (p2[0],), q1, q2, c)


#: the one definition of each closed form E[φ(u) ψ(v)]: ``form(B, p1, p2, q1, q2, c, **kw)``
CLOSED_FORMS: dict[tuple[str, str], Callable] = {
    ("abrelu", "abrelu"): _pair_abrelu,
    ("abstep", "abstep"): _pair_abstep,
    ("abrelu", "abstep"): _pair_abrelu_abstep,
    ("erf", "erf"): _pair_erf,
    ("gauss", "gauss"): _pair_gauss,
    ("xgauss", "xgauss"): _pair_xgauss,
    ("sin", "sin"): _pair_sin,
    ("exp", "exp"): _pair_exp,
    ("gelu", "gelu"): _pair_gelu,
    ("dgelu", "dgelu"): _pair_dgelu,
    ("power", "power"): _pair_power,
    ("cpower", "cpower"): _pair_cpower,
}


def _power_mean(B, k: int, q):
    return q ** B.frac(k, 2) * _double_factorial(k - 1) if k % 2 == 0 else B.zeros(q)


#: the one definition of each mean E[φ(u)], u ~ N(0, q): ``form(B, p, q)``
MEAN_FORMS: dict[str, Callable] = {
    "abrelu": lambda B, p, q: (B.param(p[1]) - B.param(p[0])) * B.sqrt(q) / B.sqrt2pi,
    "abstep": lambda B, p, q: B.where(B.positive(q), (B.param(p[0]) + B.param(p[1])) / 2, 0.0),
    "erf": lambda B, p, q: B.zeros(q),
    "gauss": lambda B, p, q: B.param(p[0]) / B.sqrt(1 - 2 * B.param(p[1]) * q),
    "xgauss": lambda B, p, q: B.zeros(q),
    "sin": lambda B, p, q: B.exp(-q / 2) * B.sin(B.param(p[0])),
    "exp": lambda B, p, q: B.exp(q / 2),
    "gelu": lambda B, p, q: q / B.sqrt(2 * B.pi * (1 + q)),
    "dgelu": lambda B, p, q: B.frac(1, 2) + B.zeros(q),
    "power": lambda B, p, q: _power_mean(B, int(p[0]), q),
    "cpower": lambda B, p, q: B.param(p[1]) * _power_mean(B, int(p[0]), q),
    "tanh": lambda B, p, q: B.zeros(q),
    "sigmoid": lambda B, p, q: B.frac(1, 2) + B.zeros(q),
}


#: the closed forms with the NumPy back end, as functions (p1, p2, q1, q2, c, **kw); the
#: stax wrappers add entries of their own (numeric only)
PAIR_RULES: dict[tuple[str, str], Callable] = {k: functools.partial(f, NUMPY) for k, f in CLOSED_FORMS.items()}


def _pair_lookup(table: dict, phi: Nonlinearity, psi: Nonlinearity) -> Callable | None:
    """The rule of ``table`` for (φ, ψ) as a function of (q1, q2, c), or for (ψ, φ) with the
    arguments swapped, or None."""
    rule = table.get((phi.name, psi.name))
    if rule is not None:
        return lambda q1, q2, c, **s: rule(phi.params, psi.params, q1, q2, c, **s)
    rule = table.get((psi.name, phi.name))
    if rule is not None:
        return lambda q1, q2, c, **s: rule(psi.params, phi.params, q2, q1, c, **s)
    return None


#: pair rules that accept ``s`` = √(q1q2 − c²) computed by the caller (symmetric in the sides)
TAKES_RESIDUAL = {("erf", "erf"), ("gauss", "gauss"), ("xgauss", "xgauss"), ("gelu", "gelu"),
                  ("dgelu", "dgelu")}


def pair_rule(phi: Nonlinearity, psi: Nonlinearity) -> Callable | None:
    """The closed form of E[φ(u) ψ(v)] as a function of (q1, q2, c), or None; where the
    expectation diverges (:func:`tpkernel.checks.pair_domain`) it raises a NumericalError."""
    rule = _pair_lookup(PAIR_RULES, phi, psi)
    from .checks import guard_pair
    return guard_pair(rule, phi, psi)


def mean_rule(phi: Nonlinearity) -> Callable | None:
    """The closed form of E[φ(u)], u ~ N(0, q), as a function of q, or None; where the
    expectation diverges it raises a NumericalError."""
    if phi.family.mean is None:
        return None
    from .checks import guard_mean
    return guard_mean(lambda q: phi.family.mean(phi.params, q), phi)


#: the same closed forms with the sympy back end (for :mod:`tpkernel.symbolic`); sympy.lambdify
#: of a formula reproduces the numeric evaluator (the zero-variance guards, step(0) = 0, drop out)
SYMPY_PAIR_RULES: dict[tuple[str, str], Callable] = {k: functools.partial(f, SYMPY) for k, f in CLOSED_FORMS.items()}

#: E[φ(u)], u ~ N(0, q), as sympy expressions; keyed by family name like Family.mean.
SYMPY_MEAN_RULES: dict[str, Callable] = {k: functools.partial(f, SYMPY) for k, f in MEAN_FORMS.items()}



def sympy_pair_rule(phi: Nonlinearity, psi: Nonlinearity) -> Callable | None:
    """The closed form of E[φ(u) ψ(v)] as a sympy function of (q1, q2, c), or None."""
    return _pair_lookup(SYMPY_PAIR_RULES, phi, psi)


def sympy_mean_rule(phi: Nonlinearity) -> Callable | None:
    """The closed form of E[φ(u)], u ~ N(0, q), as a sympy function of q, or None."""
    rule = SYMPY_MEAN_RULES.get(phi.name) if phi.family is REGISTRY.get(phi.name) else None
    if rule is None:
        return None
    return lambda q: rule(phi.params, q)


# ``tp.nonlin(fn, *args)`` builds a user nonlinearity (SPEC 3B) while ``tpkernel.nonlin``
# stays this registry module: the module itself is callable.
class _CallableModule(types.ModuleType):
    def __call__(self, fn: Callable, *args, **kwargs):
        """``tp.nonlin(fn, x, ...)``: apply a user function; see :func:`tpkernel.builder.nonlin`."""
        from .builder import nonlin
        return nonlin(fn, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
