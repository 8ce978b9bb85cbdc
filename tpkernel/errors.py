"""The exception classes of tpkernel.

Every error raised on bad input is one of these, and its message names the
program node (or the listing line) at fault.
"""

from __future__ import annotations


class TPKernelError(Exception):
    """Base class of every error tpkernel raises on bad input."""


class ProgramError(TPKernelError):
    """A malformed program: a cycle, a dangling or unused node, a wrong arity,
    a matrix applied to something that is not a vector, a duplicate name..."""


class NotBPLikeError(ProgramError):
    """The program is not BP-like (Tensor Programs II, Def. A.3), so the
    gradient-independence NTK formula does not apply: a readout vector is used
    elsewhere, or a matrix is used both as W and as W^T in the forward pass."""


class UnknownNonlinearityError(ProgramError):
    """A nonlinearity name that is not in the registry."""


class ShapeError(TPKernelError):
    """Data whose shape, dimension or sequence lengths do not fit the program."""


class NumericalError(TPKernelError):
    """Non-finite data, or a computation that cannot be done to the precision asked."""


class AccuracyWarning(UserWarning):
    """A kernel came back less accurate than asked: an adaptive quadrature stopped at
    ``max_deg`` short of ``quad_tol``, or an expectation was estimated by Monte Carlo (its
    standard error is in the message and in ``Kernels.report``)."""
