"""The vectorisable atan2 and arcsine (their numba forms and the kernels are in
``tpkernel.limit._fused_jit``): fdlibm's reductions with minimax coefficients, stated in Python."""

from __future__ import annotations

import math

import numpy as np

import tpkernel.limit.fused as _pkg  # the flags (USE_NUMBA, ...), read at call time: tests switch them



# fdlibm's atan (Sun Microsystems, 1993: "Permission to use, copy, modify, and distribute this
# software is freely granted, provided that this notice is preserved."): the reduction points
# 7/16, 11/16 and the minimax coefficients aT[0..10], with atan(1/2), atan(1) split hi + lo.
_AT = (3.33333333333329318027e-01, -1.99999999998764832476e-01, 1.42857142725034663711e-01,
       -1.11111104054623557880e-01, 9.09088713343650656196e-02, -7.69187620504482999495e-02,
       6.66107313738753120669e-02, -5.83357013379057348645e-02, 4.97687799461593236017e-02,
       -3.65315727442169155270e-02, 1.62858201153657823623e-02)
_A0, _A1, _A2, _A3, _A4, _A5, _A6, _A7, _A8, _A9, _A10 = _AT
_HI0, _LO0 = 4.63647609000806093515e-01, 2.26987774529616870924e-17
_HI1, _LO1 = 7.85398163397448278999e-01, 3.06161699786838301793e-17
_PIO2_HI, _PIO2_LO = 1.57079632679489655800e+00, 6.12323399573676603587e-17
_PI_HI, _PI_LO = 3.1415926535897931160e+00, 1.2246467991473531772e-16
_UP, _DOWN = 2.0 ** 600, 2.0 ** -600
PI = math.pi
TWO_PI = 2 * math.pi
INV_TWO_PI = 1 / (2 * math.pi)


def atan2_pos_py(s: float, c: float) -> float:
    """The scalar algorithm of ``_fused_jit.atan2_pos`` in plain Python (documentation and tests):
    atan2(s, c) for s >= 0, without a branch in the compiled form so that loops vectorise.

    t = min/max of (s, |c|) ∈ [0, 1] is reduced to [0, 7/16] by atan(t) = atan(1/2) +
    atan((t − 1/2)/(1 + t/2)) or atan(1) + atan((t − 1)/(t + 1)) (numerators exact by Sterbenz's
    lemma, one division in all), then fdlibm's odd minimax polynomial; the swap and the sign are
    folded back with π/2 and π split into hi + lo.  Arguments beyond 2^±600 are rescaled by a
    power of two (exact) so that subnormal or huge inputs keep full precision."""
    ac = abs(c)
    swap = s > ac
    num, den = min(s, ac), max(s, ac)
    sc = _UP if den < _DOWN else (_DOWN if den > _UP else 1.0)
    num, den = num * sc, den * sc
    r0, r1 = num <= 0.4375 * den, num < 0.6875 * den
    p = num if r0 else (num - 0.5 * den if r1 else num - den)
    q = den if r0 else (0.5 * num + den if r1 else num + den)
    x = p / q if den > 0.0 else 0.0
    hi = 0.0 if r0 else (_HI0 if r1 else _HI1)
    lo = 0.0 if r0 else (_LO0 if r1 else _LO1)
    z = x * x
    w = z * z
    s1 = z * (_A0 + w * (_A2 + w * (_A4 + w * (_A6 + w * (_A8 + w * _A10)))))
    s2 = w * (_A1 + w * (_A3 + w * (_A5 + w * (_A7 + w * _A9))))
    xs = x * (s1 + s2)
    a = (x - xs) if r0 else (hi - ((xs - lo) - x))
    a = (_PIO2_HI - (a - _PIO2_LO)) if swap else a
    neg = (math.copysign(1.0, c) < 0.0) and (c != 0.0 or s == 0.0)  # atan2(s > 0, -0) = π/2
    return (_PI_HI - (a - _PI_LO)) if neg else a


def _jit():
    """The module of compiled kernels (imports numba on first use)."""
    from .. import _fused_jit
    return _fused_jit


def atan2_pos_np(s: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Vectorised :func:`atan2_pos` over arrays (numba), or ``np.arctan2`` without numba."""
    s = np.ascontiguousarray(s, dtype=float).ravel()
    c = np.ascontiguousarray(c, dtype=float).ravel()
    if not _pkg.USE_NUMBA:
        return np.arctan2(s, c)
    out = np.empty_like(s)
    _jit()._vec_atan2(s, c, out)
    return out


def asin_np(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=float).ravel()
    if not _pkg.USE_NUMBA:
        return np.arcsin(x)
    out = np.empty_like(x)
    _jit()._vec_asin(x, out)
    return out


