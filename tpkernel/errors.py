"""The exception classes of tpkernel.

Every error raised on bad input is one of these, and its message names the
program node (or the listing line) at fault.
"""

from __future__ import annotations

import math

import numpy as np


class TPKernelError(Exception):
    """Base class of every error tpkernel raises on bad input."""


class ProgramError(TPKernelError):
    """A malformed program: a cycle, a dangling or unused node, a wrong arity,
    a matrix applied to something that is not a vector, a duplicate name..."""


class NotBPLikeError(ProgramError):
    """The program is not BP-like (Tensor Programs II, Def. A.3), so the
    gradient-independence NTK formula does not apply: a readout vector is used
    elsewhere, or a matrix is used both as W and as W^T in the forward pass."""


class MissingRuleError(ProgramError):
    """A node kind that an interpretation has no rule for (see :mod:`tpkernel.rules`): the
    message names the node, its class and the interpretation."""


class UnknownNonlinearityError(ProgramError):
    """A nonlinearity name that is not in the registry."""


class ShapeError(TPKernelError):
    """Data whose shape, dimension or sequence lengths do not fit the program."""


class NumericalError(TPKernelError):
    """Non-finite data, or a computation that cannot be done to the precision asked."""


class DataTypeError(TPKernelError, TypeError):
    """Data, targets, kernels or a nonlinearity's values that are not real numbers: complex
    (never silently truncated to the real part), strings, objects."""


class AccuracyWarning(UserWarning):
    """A kernel came back less accurate than asked: an adaptive quadrature stopped at
    ``max_deg`` short of ``quad_tol``, or an expectation was estimated by Monte Carlo (its
    standard error is in the message and in ``Kernels.report``)."""


def real_array(what: str, values) -> np.ndarray:
    """``values`` as a float64 array; a :class:`DataTypeError` naming ``what`` if they are complex
    (even with zero imaginary parts: pass ``x.real`` explicitly) or not numbers at all.
    Booleans and integers are exact in float64 and accepted."""
    arr = np.asarray(values)
    kind = arr.dtype.kind
    if kind == "c":
        imag = float(np.max(np.abs(arr.imag), initial=0.0))
        raise DataTypeError(f"{what} is complex (dtype {arr.dtype}, largest |imaginary part| {imag:.3g}); "
                            "tpkernel computes with real numbers: pass the real part explicitly if that is meant")
    if kind not in "biuf":
        try:
            return np.asarray(values, dtype=float)
        except (TypeError, ValueError) as err:
            raise DataTypeError(f"{what} is not an array of real numbers (dtype {arr.dtype}): {err}") from None
    return arr.astype(float, copy=False)


def first_index(mask) -> tuple[int, ...]:
    """The index of the first True entry of a boolean array (for error messages)."""
    return tuple(int(i) for i in np.argwhere(mask)[0])


def finite_array(what: str, values) -> np.ndarray:
    """``values`` as a float array, or a NumericalError naming ``what`` and the first NaN or
    infinite entry (never a silently propagated NaN); complex values are a DataTypeError."""
    arr = real_array(what, values)
    bad = ~np.isfinite(arr)
    if bad.any():
        where = first_index(bad)
        raise NumericalError(f"{what} has a NaN or infinite entry (at index {where if arr.ndim > 1 else where[0]})")
    return arr


def check_learning_rate(rate) -> float:
    """A learning rate: a finite number >= 0, else a ValueError."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)) \
            or not math.isfinite(rate) or rate < 0:
        raise ValueError(f"learning_rate must be a finite number >= 0, got {rate!r}")
    return float(rate)
