"""Checks shared by the interpretations that compute kernels (``tp.kernels``, its fused
engine, ``tp.formulas(...).evaluate``): one function, so that every entry point refuses the
same things with the same message.

By the time a kernel is assembled, the causes a user can act on have been refused where they
arise, naming what is at fault: NaN / infinite / complex data (:mod:`tpkernel.data`, naming
the argument, example and coordinate), d = 0 (a ShapeError naming the data node), NaN or
negative parameters (:mod:`tpkernel.ir`, naming the parameter), a user function that is not
coordinatewise or returns NaN at finite arguments (:mod:`tpkernel.nonlin`, naming the
function; the node when it is made with ``tp.nonlin``, the expectation ``E[node·node]`` when
it happens in the limit), a diverging numerical expectation (:func:`tpkernel.limit.gaussian.
check_tails`).  What can still make a kernel non-finite is named here: an overflow of
float32 storage (``dtype="float32"``), or a closed-form rule that overflows or is undefined.
"""

from __future__ import annotations

import numpy as np

from .errors import NumericalError

FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_kernel(program: str, name: str, k, dtype=np.float64, *, computed=None) -> None:
    """A NumericalError unless every entry of kernel ``k`` (the ``name`` = "NNGP" / "NTK" of
    program ``program``) is finite, naming the first bad entry (i, j) and its likely cause:

    - ``dtype`` float32 and the float64 values (``computed``, when known) finite: they
      overflow float32 (> 3.4e38); retry with ``dtype="float64"``;
    - ``dtype`` float32 otherwise: the float32 arithmetic overflowed;
    - float64: a closed-form rule overflowed float64 or is undefined at that pair of inputs
      (numerical expectations and every user input have been checked before)."""
    if k is None:
        return
    arr = np.asarray(k)
    bad = ~np.isfinite(arr)
    if not bad.any():
        return
    at = tuple(int(i) for i in np.argwhere(bad)[0])
    head = f"the {name} of {program!r} is {arr[at]} at entry {at}"
    if np.dtype(dtype) == np.float32:
        if computed is not None and np.all(np.isfinite(computed)):
            big = float(np.max(np.abs(computed)))
            raise NumericalError(f"{head}: its float64 values (up to {big:.3g}) overflow float32 (largest "
                                 f"{FLOAT32_MAX:.3g}); use dtype='float64'")
        raise NumericalError(f"{head}: the computation in float32 (dtype='float32') overflowed (float32 values "
                             f"stop at {FLOAT32_MAX:.3g}); use dtype='float64'")
    raise NumericalError(f"{head}: no numerical expectation diverged and the inputs are finite, so a closed-form "
                         "rule overflowed float64 or is undefined there (an expectation that diverges in closed "
                         "form, such as E[a·exp(b z²)·...] with 2·b·Var z >= 1, or inputs whose scale overflows)")
