"""The machinery of a stax network: the compile context, the layer triple
(``init_fn``, ``apply_fn``, ``kernel_fn``), the ``Kernel`` record and ``program``."""

from __future__ import annotations

import collections
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import builder as B
from ..builder import Program
from ..errors import ProgramError, ShapeError, real_array
from ..ir import Embed, MatMul
from ..limit import kernels as _kernels

if TYPE_CHECKING:  # pragma: no cover
    from .dense import Dense_


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
