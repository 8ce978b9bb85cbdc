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

from .errors import NumericalError, first_index

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
    at = first_index(bad)
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


# -- closed forms that diverge -----------------------------------------------------------
# The closed-form rules of tpkernel.nonlin are formulas, valid where the expectation
# converges.  Outside it they return NaN or, worse, a finite number (the Gaussian family's
# determinant is positive again when both factors are negative).  The families whose
# expectation can diverge are a·exp(b x²) and a·x·exp(b x²) with b > 0 (E[exp(b z²)] = ∞ for
# 2·b·Var z >= 1); their domain is checked before the rule is used.

_GAUSSIAN_FAMILIES = ("gauss", "xgauss")


def _b(phi) -> float:
    return float(phi.params[1]) if phi is not None and phi.name in _GAUSSIAN_FAMILIES else 0.0


def guard_pair(rule, phi, psi):
    """``rule`` (q1, q2, c) → E[φ(u) ψ(v)], raising a NumericalError where the expectation of
    two members of the Gaussian family with b > 0 diverges: it converges iff
    1 − 2 b1 q1 > 0, 1 − 2 b2 q2 > 0 and (1 − 2 b1 q1)(1 − 2 b2 q2) − 4 b1 b2 c² > 0."""
    if rule is None:
        return None
    b1, b2 = _b(phi), _b(psi)
    if b1 <= 0 and b2 <= 0:
        return rule

    def guarded(q1, q2, c, **kw):  # kw: s = √(q1q2 − c²) when the caller has it (nonlin.TAKES_RESIDUAL)
        q1, q2, c = (np.asarray(a, dtype=float) for a in (q1, q2, c))
        f1, f2 = 1 - 2 * b1 * q1, 1 - 2 * b2 * q2
        det = f1 * f2 - 4 * b1 * b2 * c * c
        bad = ~((f1 > 0) & (f2 > 0) & (det > 0))
        if np.any(bad):
            at = tuple(int(i) for i in np.argwhere(np.broadcast_to(bad, np.broadcast_shapes(
                q1.shape, q2.shape, c.shape)))[0])
            v = [float(np.broadcast_to(a, bad.shape)[at]) for a in (q1, q2, c)]
            raise NumericalError(
                f"E[{phi.label}(u)·{psi.label}(v)] diverges at variances ({v[0]:.6g}, {v[1]:.6g}) and covariance "
                f"{v[2]:.6g}: the Gaussian integral of exp(b1 u² + b2 v²) needs 1 − 2·b·Var > 0 for each factor "
                f"and (1 − 2b1q1)(1 − 2b2q2) − 4b1b2c² > 0 (b1 = {b1:g}, b2 = {b2:g})")
        return rule(q1, q2, c, **kw)
    return guarded


def guard_mean(rule, phi):
    """``rule`` q → E[φ(u)], raising a NumericalError where it diverges (Gaussian family, b > 0:
    1 − 2 b q <= 0)."""
    b = _b(phi)
    if b <= 0:
        return rule

    def guarded(q):
        qa = np.asarray(q, dtype=float)
        bad = ~(1 - 2 * b * qa > 0)
        if np.any(bad):
            v = float(qa[tuple(np.argwhere(bad)[0])] if qa.ndim else qa)
            raise NumericalError(f"E[{phi.label}(u)] diverges at variance {v:.6g}: E[exp(b u²)] needs "
                                 f"1 − 2·b·Var > 0 (b = {b:g})")
        return rule(q)
    return guarded
