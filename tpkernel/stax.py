r"""neural-tangents-compatible combinators, compiled to tensor programs.

``from tpkernel import stax`` in place of ``from neural_tangents import stax``: every layer
returns ``(init_fn, apply_fn, kernel_fn)`` as in neural-tangents, and combinators compose
them.  Underneath, a network is compiled to a :class:`~tpkernel.ir.Program`
(:func:`program`), so its kernels are computed by the Master Theorem like any other program:

* the first ``Dense`` reading the input is an input layer ``σ_W U ξ/√d (+ σ_b b)``; later
  ``Dense`` layers are n×n matrices ``σ_W W x/√n (+ σ_b b)``; a ``Dense`` that is the last
  layer of the network is the readout ``σ_W vᵀx/√n (+ σ_b β)``;
* a network that does not end in ``Dense`` (e.g. ``serial(Dense(512), Relu())``) is read out
  with a fixed unit vector (``std=1, lr=0``): its kernels are those of one output coordinate,
  as neural-tangents reports them;
* ``Erf(a, b, c)`` is ``a·erf(b·x) + c``, ``Sigmoid_like()`` is ``0.5·erf(x/2.4020563531719796) + 0.5``,
  ``Sin(a, b, c)`` is ``a·sin(b·x + c)``, ``Cos(a, b, c) = Sin(a, b, c + π/2)``, ``Exp(a, b)`` is
  ``a·exp(b·x)``, ``Gaussian(a, b)`` is ``a·exp(b·x²)``, ``Rbf(γ)`` is
  ``√2·sin(√(2γ)·x + π/4)``, ``Monomial(k)`` is ``x^k``, ``Polynomial(c)`` is ``Σ c_k x^k``:
  linear maps stay linear combinations, so they cost no integral;
* ``FanOut`` copies a value (the *same* vector), ``parallel`` runs layers side by side,
  ``FanInSum`` adds (a linear combination), ``FanInProd`` multiplies (the product
  nonlinearity), ``FanInConcat`` concatenates channels (a following ``Dense`` reads each
  part with its own block of weights, scaled by the part's share of the width).

**Where tpkernel differs from neural-tangents on purpose.**  neural-tangents propagates one
kernel per branch and assumes that the inputs of a fan-in are independent and that the
input of a nonlinearity is Gaussian.  The Master Theorem needs neither: tpkernel computes
the exact limit when branches are correlated — two nonlinearities in a row (neural-tangents
raises ``ValueError``), ``FanInSum`` of a non-Gaussian skip connection (neural-tangents
raises ``NotImplementedError``), ``FanInSum``/``FanInProd`` of branches that read the same
vector without an independent ``Dense`` in between (neural-tangents silently returns the
kernel of independent branches, e.g. ``2K`` instead of ``4K`` for ``x + x``).  See
``docs/stax.md``; the tests check these cases against independent quadrature over the
Gaussian atoms and against finite-width networks.

``ElementwiseNumerical(fn, deg)`` integrates ``fn`` with tpkernel's adaptive quadrature
(converged to ~1e-11), not with ``deg`` Gauss-Hermite nodes; ``deg`` is accepted and
ignored.  ``Elementwise(fn, nngp_fn, d_nngp_fn)`` uses the given closed forms for
expectations over one Gaussian pair, and ``fn`` (by quadrature) wherever the closed form does
not apply.  ``LayerNorm`` and the convolutional / pooling / attention layers raise
:class:`UnsupportedLayerError`.
"""

from __future__ import annotations

import collections
import itertools
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import scipy.special as sps

from . import builder as B
from . import nonlin as nl
from .errors import ProgramError, ShapeError, real_array
from .builder import Program
from .ir import Embed, MatMul
from .limit import kernels as _kernels

__all__ = [
    "serial", "parallel", "repeat", "Dense", "Identity", "Relu", "ABRelu", "LeakyRelu", "Abs", "Erf",
    "Sigmoid_like", "Gelu", "Sin", "Cos", "Exp", "Gaussian", "Rbf", "Monomial", "Polynomial",
    "Elementwise", "ElementwiseNumerical", "FanOut", "FanInSum", "FanInProd", "FanInConcat", "LayerNorm",
    "program", "Kernel", "Layer", "UnsupportedLayerError",
]


class UnsupportedLayerError(ProgramError, NotImplementedError):
    """A neural-tangents layer (or an option of one) that tpkernel does not compile."""


class _NeedsInputDim(ProgramError):
    """The program depends on the input dimension d, which was not given."""


# =====================================================================================
# values flowing through a network while it is compiled
# =====================================================================================

@dataclass(eq=False)
class _Input:
    """The raw input ξ (width d)."""

    width: int | None


@dataclass(eq=False)
class _Vec:
    """A vector of the program (a builder handle: a node, or a pending linear combination)."""

    h: Any
    width: int | None


@dataclass(eq=False)
class _Dense:
    """The output of a Dense layer, written into the program only when something reads it
    (so that the last Dense of a network can become the readout)."""

    arg: Any
    layer: "Dense_"
    width: int
    cache: Any = None


@dataclass(eq=False)
class _Concat:
    """Channels concatenated by FanInConcat: parts and their widths."""

    parts: list
    widths: list


class _Ctx:
    """The program being written, and what the compilation needs to know."""

    def __init__(self, name: str, input_dim: int | None) -> None:
        self.p = Program(name)
        self.xi = self.p.data("xi")
        self.d = input_dim
        self.k = 0  # Dense layers written so far

    def need_d(self, why: str) -> int:
        if self.d is None:
            raise _NeedsInputDim(f"stax.program(net, input_dim=d): {why} depends on the input dimension d")
        return self.d

    def width(self, v) -> int | None:
        if isinstance(v, _Input):
            return self.need_d("the width of the raw input") if v.width is None else v.width
        if isinstance(v, _Concat):
            return sum(v.widths)
        return v.width

    # -- vectors ---------------------------------------------------------------------
    def vec(self, v) -> Any:
        """A builder handle for a value that is one vector."""
        if isinstance(v, _Vec):
            return v.h
        if isinstance(v, _Dense):
            if v.cache is None:
                v.cache = self.dense(v)
            return v.cache
        if isinstance(v, _Input):
            raise ProgramError("the raw input can only be read by a Dense layer (the input is data, not a "
                               "Gaussian vector; neural-tangents has the same rule): start the network with Dense")
        if isinstance(v, _Concat):
            raise UnsupportedLayerError("FanInConcat: a concatenation can be read by Dense and elementwise layers "
                                        "only (add a Dense after it)")
        if isinstance(v, list):
            raise ProgramError(f"a FanOut's {len(v)} branches must be joined (FanInSum, FanInProd, FanInConcat) "
                               "before this layer")
        raise ProgramError(f"not a value of a network: {v!r}")  # pragma: no cover

    def dense(self, v: _Dense) -> Any:
        """Write the Dense layer v: matrices (or input layers) and the bias."""
        layer = v.layer
        self.k += 1
        k = self.k
        parts = list(zip(v.arg.parts, v.arg.widths)) if isinstance(v.arg, _Concat) else [(v.arg, None)]
        total = sum(self.width(a) if w is None else w for a, w in parts) if layer.parameterization == "standard" \
            or len(parts) > 1 else None
        widths = [self.width(a) if w is None else w for a, w in parts] if len(parts) > 1 else [None]
        h = None
        for i, ((arg, _), w) in enumerate(zip(parts, widths)):
            share = 1.0 if w is None else w / sum(widths)
            std = layer.W_std * math.sqrt(share)
            lr = 1.0 if layer.parameterization == "ntk" else _standard_lr(layer, total)
            suffix = f"_{i + 1}" if len(parts) > 1 else ""
            if isinstance(arg, _Input):
                U = self.p.input_layer(self._fresh(f"W{k}{suffix}"), std=std, lr=lr)
                term = B.Vec(self.p, self.p.add(Embed(self.p.fresh("g"), U.name, self.xi.name, None)).name)
            else:
                x = B.materialize(self.p, self.vec(arg), name=None)
                W = self.p.matrix(self._fresh(f"W{k}{suffix}"), std=std, lr=lr)
                term = B.Vec(self.p, self.p.add(MatMul(self.p.fresh("g"), W.name, x, False)).name)
            h = term if h is None else h + term
        if layer.b_std is not None:
            lr_b = 1.0 if layer.parameterization == "ntk" else _standard_lr_bias(layer)
            h = h + self.p.bias(self._fresh(f"b{k}"), std=layer.b_std, lr=lr_b)
        if isinstance(h, B.Lin):
            return B.Vec(self.p, B.materialize(self.p, h, name=self.p.fresh("h")))
        return h

    def _fresh(self, name: str) -> str:
        return name if name not in self.p else self.p.fresh(name + "_")

    # -- the end of the network ------------------------------------------------------
    def readout(self, v) -> Program:
        if isinstance(v, _Dense) and v.cache is None and isinstance(v.arg, (_Vec, _Dense)):
            layer = v.layer
            x = self.vec(v.arg)
            lr = 1.0 if layer.parameterization == "ntk" else _standard_lr(layer, self.width(v.arg))
            b_lr = 1.0 if layer.parameterization == "ntk" or layer.b_std is None else _standard_lr_bias(layer)
            self.p.output(x, std=layer.W_std, lr=lr, b_std=layer.b_std, b_lr=b_lr, name="f")
        elif isinstance(v, _Concat):
            raise UnsupportedLayerError("the network ends in FanInConcat: add a Dense layer after it "
                                        "(its kernel is a width-weighted average that one readout cannot express)")
        else:
            # not a Dense at the end: read one coordinate with a fixed unit vector (no NTK term)
            self.p.output(self.vec(v), std=1.0, lr=0.0, name="f")
        return self.p


def _standard_lr(layer: "Dense_", fan_in: int | None) -> float:
    """parameterization='standard' as an NTK-parametrised weight with learning-rate multiplier
    fan_in/σ²: neural-tangents' Θ' = fan_in·K + σ²·Θ·K̇ is then lr·σ²·K + σ²·Θ·K̇."""
    if fan_in is None:
        raise ProgramError("parameterization='standard' needs the width of the layer's input")
    if layer.W_std == 0:
        raise UnsupportedLayerError("parameterization='standard' with W_std=0 is not supported")
    return float(fan_in) / layer.W_std ** 2


def _standard_lr_bias(layer: "Dense_") -> float:
    if layer.b_std == 0:
        raise UnsupportedLayerError("parameterization='standard' with b_std=0 is not supported")
    return 1.0 / layer.b_std ** 2


# =====================================================================================
# layers
# =====================================================================================

class Layer(tuple):
    """``(init_fn, apply_fn, kernel_fn)`` as in neural-tangents; ``.spec`` is what tpkernel
    compiles (the functions carry it too, as ``kernel_fn.spec``)."""

    spec: "Spec"

    def __new__(cls, spec: "Spec") -> "Layer":
        self = super().__new__(cls, (_init_fn(spec), _apply_fn(spec), _kernel_fn(spec)))
        self.spec = spec
        return self


class Spec:
    """One layer: how it compiles (a value in, a value out), initialises and applies."""

    name = "layer"

    def compile(self, ctx: _Ctx, v):  # pragma: no cover - abstract
        raise NotImplementedError

    def init(self, rng: np.random.Generator, shape):
        return shape, ()

    def apply(self, params, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


def _spec_of(layer) -> Spec:
    if isinstance(layer, Layer):
        return layer.spec
    if isinstance(layer, (tuple, list)) and len(layer) == 3 and hasattr(layer[2], "spec"):
        return layer[2].spec
    if hasattr(layer, "spec") and isinstance(layer.spec, Spec):
        return layer.spec
    raise ProgramError(f"{layer!r} is not a tpkernel.stax layer (a triple made by tpkernel.stax); layers from "
                       "neural_tangents or hand-made triples cannot be compiled to a program")


def _rng(rng) -> np.random.Generator:
    """A NumPy generator from an int seed, a Generator, or a JAX PRNG key (its two words)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral):
        return np.random.default_rng(int(rng))
    try:
        key = np.asarray(rng)
    except Exception:  # a typed JAX key
        import jax  # noqa: F401 - only reachable when jax is installed
        key = np.asarray(jax.random.key_data(rng))
    return np.random.default_rng(key.astype(np.uint64).ravel().tolist())


def _init_fn(spec: Spec):
    def init_fn(rng, input_shape):
        """``(output_shape, params)``; ``rng`` an int seed, a NumPy Generator or a JAX key."""
        return spec.init(_rng(rng), _shape(input_shape))
    init_fn.spec = spec
    return init_fn


def _shape(s):
    if isinstance(s, list):
        return [_shape(x) for x in s]
    return tuple(s)


def _apply_fn(spec: Spec):
    def apply_fn(params, inputs, **kwargs):
        """The finite-width network in NumPy (float64)."""
        x = [real_array(f"inputs[{k}]", i) for k, i in enumerate(inputs)] if isinstance(inputs, list) else \
            real_array("inputs", inputs)
        return spec.apply(params, x)
    apply_fn.spec = spec
    return apply_fn


_KERNEL_OPTIONS = {"quad_deg", "quad_rule", "quad_tol", "nd_deg", "mc_samples", "seed", "error_estimate"}
_GETS = ("nngp", "ntk", "cov1", "cov2")


def _kernel_fn(spec: Spec):
    def kernel_fn(x1, x2=None, get=None, **kwargs):
        """The infinite-width kernels between x1 (N1, d) and x2 (N2, d) (default: x1).

        ``get=None``: a :class:`Kernel` with ``.nngp`` and ``.ntk``; a string (``"nngp"``,
        ``"ntk"``, ``"cov1"``, ``"cov2"``): that array; a tuple: a namedtuple of them, in order.
        Keyword options go to :func:`tpkernel.kernels` (``quad_tol``, ``quad_deg``, ...).
        """
        bad = set(kwargs) - _KERNEL_OPTIONS
        if bad:
            raise TypeError(f"kernel_fn() got unexpected keyword argument(s) {sorted(bad)}; tpkernel accepts "
                            f"{sorted(_KERNEL_OPTIONS)}")
        if get is None:
            names, single = ("nngp", "ntk"), None
        elif isinstance(get, str):
            names, single = (get,), get
        else:
            names, single = tuple(get), None
        unknown = [g for g in names if g not in _GETS]
        if unknown:
            raise ValueError(f"get={get!r}: tpkernel.stax computes {', '.join(_GETS)}; not {unknown}")
        a = _as_input(x1, "x1")
        b = None if x2 is None else _as_input(x2, "x2")
        if b is not None and b.shape[1] != a.shape[1]:
            raise ShapeError(f"x1 has dimension {a.shape[1]} but x2 has {b.shape[1]}")
        prog = spec.program(a.shape[1])
        out: dict[str, np.ndarray | None] = {}
        main = [g for g in ("nngp", "ntk") if g in names]
        if main:
            k = _kernels(prog, a, b, get=tuple(main), **kwargs)
            out.update(nngp=k.nngp, ntk=k.ntk)
        if "cov1" in names or get is None:
            out["cov1"] = np.diagonal(out["nngp"]).copy() if b is None and out.get("nngp") is not None else \
                _diag_nngp(prog, a, kwargs)
        if "cov2" in names or get is None:
            out["cov2"] = None if b is None else _diag_nngp(prog, b, kwargs)
        if single is not None:
            return out[single]
        if get is None:
            return Kernel(nngp=out["nngp"], ntk=out["ntk"], cov1=out["cov1"], cov2=out["cov2"],
                          x1_is_x2=b is None, shape1=a.shape, shape2=a.shape if b is None else b.shape)
        return collections.namedtuple("AnalyticKernel", names)(*(out[g] for g in names))
    kernel_fn.spec = spec
    return kernel_fn


def _diag_nngp(prog: Program, x: np.ndarray, kwargs: dict) -> np.ndarray:
    return np.array([_kernels(prog, x[i:i + 1], get="nngp", **kwargs)[0, 0] for i in range(len(x))])


def _as_input(x, which: str) -> np.ndarray:
    if hasattr(x, "nngp") and hasattr(x, "ntk"):
        raise ShapeError(f"{which}: tpkernel.stax kernel_fn takes data arrays, not Kernel objects")
    arr = real_array(which, x)
    if arr.ndim != 2:
        raise ShapeError(f"{which}: tpkernel.stax takes inputs of shape (N, d) (fully connected networks); "
                         f"got shape {arr.shape}")
    return arr


@dataclass(frozen=True)
class Kernel:
    """The kernels of a network on (x1, x2), as ``kernel_fn(x1, x2)`` (``get=None``) returns them:
    ``nngp`` and ``ntk`` (N1, N2), ``cov1`` (N1,) and ``cov2`` (N2,) the NNGP of each input with
    itself (``cov2`` is None when x2 is None), as in neural-tangents' ``Kernel``."""

    nngp: np.ndarray
    ntk: np.ndarray
    cov1: np.ndarray | None = None
    cov2: np.ndarray | None = None
    x1_is_x2: bool = False
    shape1: tuple = ()
    shape2: tuple = ()

    def replace(self, **kw) -> "Kernel":
        from dataclasses import replace
        return replace(self, **kw)


def _compile_net(spec: Spec, input_dim: int | None, name: str) -> Program:
    ctx = _Ctx(name, input_dim)
    out = spec.compile(ctx, _Input(input_dim))
    if isinstance(out, list):
        raise ProgramError(f"the network ends with {len(out)} branches (FanOut or parallel without a fan-in); "
                           "join them with FanInSum, FanInProd or FanInConcat")
    return ctx.readout(out).validate()


class _NetSpec(Spec):
    """Compilation to a program, cached per input dimension when the program depends on it."""

    def program(self, input_dim: int | None = None, name: str = "stax") -> Program:
        """The program of this (sub)network; built once (per d if it depends on d)."""
        cache = self.__dict__.setdefault("_programs", {})
        key = (None, name)
        if key not in cache:
            try:
                cache[key] = _compile_net(self, None, name)
            except _NeedsInputDim as err:
                cache[key] = err
        if not isinstance(cache[key], _NeedsInputDim):
            return cache[key]
        if input_dim is None:
            raise cache[key]
        key = (input_dim, name)
        if key not in cache:
            cache[key] = _compile_net(self, input_dim, name)
        return cache[key]


# -- combinators ----------------------------------------------------------------------

class _Serial(_NetSpec):
    def __init__(self, specs: list[Spec]) -> None:
        self.specs = specs
        self.name = "serial(" + ", ".join(map(repr, specs)) + ")"

    def compile(self, ctx, v):
        for s in self.specs:
            v = s.compile(ctx, v)
        return v

    def init(self, rng, shape):
        params = []
        for s in self.specs:
            shape, p = s.init(np.random.default_rng(rng.integers(2 ** 63)), shape)
            params.append(p)
        return shape, tuple(params)

    def apply(self, params, x):
        for s, p in zip(self.specs, params):
            x = s.apply(p, x)
        return x


def serial(*layers) -> Layer:
    """Layers one after the other (neural-tangents' ``stax.serial``)."""
    return Layer(_Serial([_spec_of(layer) for layer in layers]))


def repeat(layer, n: int) -> Layer:
    """``layer`` applied ``n`` times (neural-tangents' ``stax.repeat``; the copies have their own weights)."""
    if not isinstance(n, numbers.Integral) or n < 0:
        raise ProgramError(f"repeat: n must be an integer >= 0, got {n!r}")
    return serial(*([layer] * int(n)))


class _Parallel(_NetSpec):
    def __init__(self, specs: list[Spec]) -> None:
        self.specs = specs
        self.name = "parallel(" + ", ".join(map(repr, specs)) + ")"

    def _check(self, v):
        if not isinstance(v, (list, tuple)) or len(v) != len(self.specs):
            got = f"{len(v)} branches" if isinstance(v, (list, tuple)) else "one input"
            raise ProgramError(f"parallel of {len(self.specs)} layers needs {len(self.specs)} branches "
                               f"(from FanOut({len(self.specs)})), got {got}")

    def compile(self, ctx, v):
        self._check(v)
        return [s.compile(ctx, x) for s, x in zip(self.specs, v)]

    def init(self, rng, shape):
        self._check(shape)
        outs = [s.init(np.random.default_rng(rng.integers(2 ** 63)), sh) for s, sh in zip(self.specs, shape)]
        return [o[0] for o in outs], tuple(o[1] for o in outs)

    def apply(self, params, x):
        self._check(x)
        return [s.apply(p, xi) for s, p, xi in zip(self.specs, params, x)]


def parallel(*layers) -> Layer:
    """Layers side by side, the i-th on the i-th branch (neural-tangents' ``stax.parallel``)."""
    return Layer(_Parallel([_spec_of(layer) for layer in layers]))


class _FanOut(_NetSpec):
    def __init__(self, num: int) -> None:
        if not isinstance(num, numbers.Integral) or num < 1:
            raise ProgramError(f"FanOut: num must be a positive integer, got {num!r}")
        self.num = int(num)
        self.name = f"FanOut({num})"

    def compile(self, ctx, v):
        return [v] * self.num  # the same vector in every branch

    def init(self, rng, shape):
        return [shape] * self.num, ()

    def apply(self, params, x):
        return [x] * self.num


def FanOut(num: int) -> Layer:
    """``num`` copies of the input, for ``parallel`` branches (the same vector: branches that do
    not pass through their own ``Dense`` stay correlated, and tpkernel keeps that)."""
    return Layer(_FanOut(num))


class _FanIn(_NetSpec):
    def __init__(self, kind: str, axis: int = -1) -> None:
        self.kind, self.axis = kind, axis
        self.name = {"sum": "FanInSum()", "prod": "FanInProd()", "concat": f"FanInConcat({axis})"}[kind]

    def _branches(self, v) -> list:
        if not isinstance(v, (list, tuple)):
            raise ProgramError(f"{self.name} needs several branches (after FanOut and parallel), got one input")
        return list(v)

    def compile(self, ctx, v):
        vs = self._branches(v)
        if self.kind == "concat":
            parts, widths = [], []
            for x in vs:
                if isinstance(x, _Concat):
                    parts += x.parts
                    widths += x.widths
                elif isinstance(x, list):
                    raise ProgramError("FanInConcat: a branch is itself a list of branches")
                else:
                    parts.append(x)
                    widths.append(ctx.width(x) if not isinstance(x, _Input) else ctx.need_d(
                        "FanInConcat of the raw input"))
            return _Concat(parts, widths)
        hs = [ctx.vec(x) for x in vs]
        width = next((x.width for x in vs if getattr(x, "width", None) is not None), None)
        if len(hs) == 1:
            return _Vec(hs[0], width)
        if self.kind == "sum":
            total = hs[0]
            for h in hs[1:]:
                total = total + h
            return _Vec(total, width)
        return _Vec(B.apply(nl.product(len(hs)), *hs, name=ctx.p.fresh("x")), width)

    def init(self, rng, shape):
        shapes = self._branches(shape)
        if self.kind == "concat":
            ax = self.axis % len(shapes[0])
            out = list(shapes[0])
            out[ax] = sum(s[ax] for s in shapes)
            return tuple(out), ()
        return shapes[0], ()

    def apply(self, params, x):
        xs = self._branches(x)
        if self.kind == "sum":
            return sum(xs[1:], xs[0])
        if self.kind == "prod":
            out = xs[0]
            for y in xs[1:]:
                out = out * y
            return out
        return np.concatenate(xs, axis=self.axis)


def FanInSum() -> Layer:
    """The sum of the branches (a linear combination: exact for correlated branches too)."""
    return Layer(_FanIn("sum"))


def FanInProd() -> Layer:
    """The coordinatewise product of the branches (the product nonlinearity)."""
    return Layer(_FanIn("prod"))


def FanInConcat(axis: int = -1) -> Layer:
    """Concatenation along the channel axis (the only axis of an (N, d) network)."""
    if axis not in (-1, 1):
        raise UnsupportedLayerError(f"FanInConcat(axis={axis}): tpkernel concatenates channels only (axis=-1)")
    return Layer(_FanIn("concat", -1))


# -- Dense ------------------------------------------------------------------------------

class Dense_(_NetSpec):
    def __init__(self, out_dim, W_std, b_std, parameterization, s) -> None:
        if not isinstance(out_dim, numbers.Integral) or out_dim < 1:
            raise ProgramError(f"Dense: out_dim must be a positive integer, got {out_dim!r}")
        for what, val, none_ok in (("W_std", W_std, False), ("b_std", b_std, True)):
            if val is None and none_ok:
                continue
            if not isinstance(val, numbers.Real) or not math.isfinite(val) or val < 0:
                raise ProgramError(f"Dense: {what} must be a finite number >= 0, got {val!r}")
        par = str(parameterization).lower()
        if par not in ("ntk", "standard"):
            raise ValueError(f"Parameterization not supported: {parameterization}")
        if tuple(s) != (1, 1):
            raise UnsupportedLayerError(f"Dense(s={tuple(s)}): only s=(1, 1) is supported")
        self.out_dim, self.W_std = int(out_dim), float(W_std)
        self.b_std = None if b_std is None else float(b_std)
        self.parameterization = par
        self.name = f"Dense({out_dim}, W_std={W_std}, b_std={b_std}" + \
            (", parameterization='standard')" if par == "standard" else ")")

    def compile(self, ctx, v):
        if isinstance(v, list):
            raise ProgramError(f"{self.name} reads one input; join the branches first")
        return _Dense(v, self, self.out_dim)

    def init(self, rng, shape):
        d = shape[-1]
        W = rng.standard_normal((d, self.out_dim))
        b = None if self.b_std is None else rng.standard_normal((1,) * (len(shape) - 1) + (self.out_dim,))
        if self.parameterization == "standard":
            W = W * self.W_std / math.sqrt(d)
            b = None if b is None else b * self.b_std
        return shape[:-1] + (self.out_dim,), (W, b)

    def apply(self, params, x):
        W, b = params
        if self.parameterization == "ntk":
            out = self.W_std / math.sqrt(x.shape[-1]) * (x @ W)
            return out if b is None else out + self.b_std * b
        out = x @ W
        return out if b is None else out + b


def Dense(out_dim: int, W_std: float = 1.0, b_std: float | None = None, batch_axis: int = 0,
          channel_axis: int = -1, parameterization: str = "ntk", s: tuple[int, int] = (1, 1)) -> Layer:
    """A fully connected layer, ``σ_W W x/√fan_in + σ_b b`` with W, b iid N(0, 1) (``'ntk'``), or
    W ~ N(0, σ_W²/fan_in), b ~ N(0, σ_b²) trained directly (``'standard'``: the NTK then has
    fan_in·K in place of σ_W²·K, as in neural-tangents; tpkernel writes it as a learning-rate
    multiplier lr = fan_in/σ_W² on an NTK-parametrised weight)."""
    if batch_axis != 0 or channel_axis not in (-1, 1):
        raise UnsupportedLayerError("Dense: tpkernel.stax supports batch_axis=0 and channel_axis=-1 only")
    return Layer(Dense_(out_dim, W_std, b_std, parameterization, s))


class _Identity(_NetSpec):
    name = "Identity()"

    def compile(self, ctx, v):
        return v

    def apply(self, params, x):
        return x


def Identity() -> Layer:
    """The identity (no-op)."""
    return Layer(_Identity())


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


# -- what tpkernel does not compile -----------------------------------------------------

def LayerNorm(axis=-1, eps: float = 1e-12, batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    """Not supported yet: layer normalisation needs the Moment instruction of NETSOR⊤+ (a scalar
    (1/n)Σ_α ψ(x_α)), which the engine does not have yet."""
    raise UnsupportedLayerError("LayerNorm is not supported yet: it needs scalar Moment instructions "
                                "(NETSOR⊤+), which tpkernel's engine does not have yet")


_UNSUPPORTED = {  # neural-tangents layers tpkernel does not compile, and why
    "Conv": "convolutions", "ConvTranspose": "convolutions", "ConvLocal": "convolutions",
    "AvgPool": "pooling", "SumPool": "pooling", "GlobalAvgPool": "pooling", "GlobalSumPool": "pooling",
    "Flatten": "spatial dimensions", "GlobalSelfAttention": "attention needs NETSOR⊤+ scalars",
    "Dropout": "dropout", "ImageResize": "images", "Index": "indexing", "Aggregate": "graph aggregation",
    "DotGeneral": "general tensor contractions", "ExpNormalized": "normalised exponentials need NETSOR⊤+ scalars",
    "Hermite": "normalised Hermite layers", "RectifiedMonomial": "rectified monomials",
    "Sign": "the sign function, whose derivative is zero almost everywhere", "Gabor": "Gabor",
}


def __getattr__(name: str):
    if name in _UNSUPPORTED:
        what = _UNSUPPORTED[name]

        def unsupported(*args, **kwargs):
            raise UnsupportedLayerError(f"stax.{name} is not supported by tpkernel.stax ({what}): tpkernel "
                                        "compiles fully connected networks of (N, d) inputs")
        unsupported.__name__ = name
        return unsupported
    raise AttributeError(f"module 'tpkernel.stax' has no attribute {name!r}")


# -- the program ------------------------------------------------------------------------

def program(net, input_dim: int | None = None, name: str = "stax") -> Program:
    """The tensor program a stax network compiles to (a validated :class:`~tpkernel.ir.Program`).

    ``net`` is a layer triple (or any of its three functions).  ``input_dim`` is needed only
    when the program depends on the input dimension d (``parameterization='standard'`` on
    the first layer, or FanInConcat of the raw input).
    """
    spec = _spec_of(net)
    if not isinstance(spec, _NetSpec):  # pragma: no cover - every spec is a _NetSpec
        raise ProgramError(f"{net!r} is not a tpkernel.stax network")
    return spec.program(input_dim, name)
