"""Dense layers (``parameterization`` 'ntk' and 'standard') and Identity."""

from __future__ import annotations

import math
import numbers


from ..errors import ProgramError
from .core import Layer, UnsupportedLayerError, _Dense, _NetSpec


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
