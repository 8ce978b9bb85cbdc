r"""Input scales: where float64 holds the kernels, and the checks that say so.

Every kernel of a network starts from the Gram matrix ⟨ξ, ξ'⟩/d of its inputs.  Both engines
compute it by one matrix product, so the squared norm |ξ|² of every example must be a finite
float64 (|ξ| below about 1.3e154; 3.4e38 when the kernels are stored in float32): beyond it the
Gram matrix itself overflows and :func:`check_norms` raises a :class:`NumericalError` naming the
data and the example (no rescaling is attempted: the kernel of a bias-free ReLU net is
|ξ||ξ'| times that of the unit inputs, and would not be representable either; a bounded
nonlinearity's NNGP would be, but its NTK carries ⟨ξ, ξ'⟩/d itself).  Below, squared norms
under float64's normal range (|ξ|²/d < 2.2e-308, |ξ| below about 1.5e-154·√d) are subnormal
and carry fewer significant digits: an :class:`AccuracyWarning` says so.  Between those bounds
the pair rules are scale-safe (they never form q1·q2: see :func:`tpkernel.nonlin.residual`),
so that e.g. the kernels of a bias-free ReLU net scale exactly as |ξ||ξ'|.

Deeper in a network a kernel can still overflow (a ReLU net with large weight variance, or
inputs near the bound above): the engines check each layer's variances and raise a
:class:`NumericalError` naming the node where the kernel leaves float64 (:func:`overflow_error`).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import AccuracyWarning, NumericalError


def check_norms(sq: np.ndarray, d: int, data: str, which: str = "", dtype=np.float64) -> None:
    """``sq``: the squared norms |ξ|² of the examples of data ``data`` (computed as the Gram
    matrix computes them); raise if one is not a finite number of ``dtype``, warn if one is
    subnormal after the division by d."""
    sq = np.asarray(sq, dtype=float)
    big = np.finfo(dtype).max
    bad = ~(sq <= big)
    if bad.any():
        i = int(np.argmax(bad))
        where = f"{which}: " if which else ""
        name = np.dtype(dtype).name
        fix = ("use dtype='float64' or rescale the inputs" if np.dtype(dtype) != np.float64
               else f"rescale the inputs (|ξ| below {np.sqrt(big):.2g})")
        raise NumericalError(
            f"{where}data {data!r}: example {i} has squared norm |ξ|² = {sq[i]:.3g}: its Gram entries "
            f"overflow {name} (beyond {big:.3g}), and the kernels built on them are not representable; {fix}")
    tiny = np.finfo(dtype).tiny
    small = (sq > 0) & (sq / d < tiny)
    if small.any():
        i = int(np.argmax(small))
        warnings.warn(AccuracyWarning(
            f"data {data!r}: example {i} has |ξ|²/d = {sq[i] / d:.3g}, below {np.dtype(dtype).name}'s normal "
            f"range ({tiny:.3g}): its Gram entries are subnormal and carry fewer significant digits"),
            stacklevel=4)


def overflow_error(what: str, node: str, value: float, dtype=np.float64) -> NumericalError:
    """The error for a kernel that leaves ``dtype`` at ``node``."""
    return NumericalError(
        f"the {what} at {node!r} overflows {np.dtype(dtype).name} (|value| {value:.3g} > "
        f"{np.finfo(dtype).max:.3g}): the kernel is not representable at this input scale; "
        "rescale the inputs")


def check_variance(q, node: str, dtype=np.float64, what: str = "variance") -> None:
    """The variance of a pre-activation (a Gaussian node) must be a finite ``dtype`` number:
    else the kernel overflows at ``node``."""
    q = np.asarray(q, dtype=float)
    big = np.finfo(dtype).max
    if q.size and not np.all(np.abs(q) <= big):
        bad = ~(np.abs(q) <= big)
        raise overflow_error(what, node, float(np.max(np.where(bad, np.abs(q), 0.0))), dtype)
