"""Combinators: serial, repeat, parallel, FanOut, FanInSum, FanInProd, FanInConcat."""

from __future__ import annotations

import numbers

import numpy as np

from .. import builder as B
from .. import nonlin as nl
from ..errors import ProgramError
from .core import Layer, Spec, UnsupportedLayerError, _Concat, _Input, _NetSpec, _Vec, _spec_of


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
