"""The compiled kernels of :mod:`tpkernel.limit.fused` (numba; imported only when a chain is
evaluated with numba available, so that ``import tpkernel`` and other programs never pay for
importing numba).  The algorithms are documented in :mod:`tpkernel.limit.fused`."""

import math

import numpy as np
from numba import prange

from .._numba_cache import njit  # numba.njit, with cache=True kept out of the package directory
from ..nonlin import COLLINEAR
from .fused import (_A0, _A1, _A2, _A3, _A4, _A5, _A6, _A7, _A8, _A9, _A10, _DOWN, _HI0, _HI1, _LO0, _LO1,
                    _PI_HI, _PI_LO, _PIO2_HI, _PIO2_LO, _UP, INV_TWO_PI, PI)

_jit = dict(error_model="numpy", cache=True, nogil=True)  # cached in _numba_cache.cache_dir()


@njit(inline="always", error_model="numpy")
def atan2_pos(s, c):
    """atan2(s, c) for s >= 0 (θ ∈ [0, π]), branch-free so that loops vectorise.

    |t| = min/max of (s, |c|) ∈ [0, 1] is reduced to [0, 7/16] by atan(t) = atan(1/2) +
    atan((t − 1/2)/(1 + t/2)) or atan(1) + atan((t − 1)/(t + 1)) (numerators exact by
    Sterbenz's lemma, one division in all), then fdlibm's odd minimax polynomial; swap and
    sign are folded back with π/2 and π split into hi + lo.  Arguments beyond 2^±600 are
    rescaled by a power of two (exact) so that subnormal or huge inputs keep full precision."""
    ac = abs(c)
    swap = s > ac
    num = min(s, ac)
    den = max(s, ac)
    sc = _UP if den < _DOWN else (_DOWN if den > _UP else 1.0)
    num = num * sc
    den = den * sc
    r0 = num <= 0.4375 * den
    r1 = num < 0.6875 * den
    p = num if r0 else (num - 0.5 * den if r1 else num - den)
    q = den if r0 else (0.5 * num + den if r1 else num + den)
    x = p / q
    x = x if den > 0.0 else 0.0
    hi = 0.0 if r0 else (_HI0 if r1 else _HI1)
    lo = 0.0 if r0 else (_LO0 if r1 else _LO1)
    z = x * x
    w = z * z
    s1 = z * (_A0 + w * (_A2 + w * (_A4 + w * (_A6 + w * (_A8 + w * _A10)))))
    s2 = w * (_A1 + w * (_A3 + w * (_A5 + w * (_A7 + w * _A9))))
    xs = x * (s1 + s2)
    a = (x - xs) if r0 else (hi - ((xs - lo) - x))
    a = (_PIO2_HI - (a - _PIO2_LO)) if swap else a
    neg = (math.copysign(1.0, c) < 0.0) & ((c != 0.0) | (s == 0.0))  # atan2(s > 0, -0) = π/2
    return (_PI_HI - (a - _PI_LO)) if neg else a

@njit(inline="always", error_model="numpy")
def asin_fast(x):
    """arcsin(x) = atan2(x, √((1 − x)(1 + x))) for |x| <= 1 (1 − |x| is exact)."""
    ax = abs(x)
    r = atan2_pos(ax, math.sqrt((1.0 - ax) * (1.0 + ax)))
    return -r if x < 0.0 else r

@njit(inline="always", error_model="numpy")
def residual_r(ri, rj, c):
    """s = √(q q' − C²) from the roots ri = √q, rj = √q' without forming q q' (scale-safe), 0
    when |ρ| is 1 to rounding: the element form of :func:`tpkernel.nonlin.residual`."""
    n = ri * rj
    ac = abs(c)
    e = n - ac
    return math.sqrt(e) * math.sqrt(n + ac) if e > COLLINEAR * n else 0.0


@njit(inline="always", error_model="numpy")
def residual(qi, qj, c):
    return residual_r(math.sqrt(qi), math.sqrt(qj), c)


@njit(inline="always", error_model="numpy")
def hyp(x, y):
    """hypot(x, y) without a libm call (which would keep loops from vectorising):
    m·√(1 + (min/max)²), m = max(|x|, |y|); ~1 ulp."""
    x = abs(x)
    y = abs(y)
    m = max(x, y)
    r = min(x, y) / m if m > 0.0 else 0.0
    return m * math.sqrt(1.0 + r * r)


@njit(inline="always", error_model="numpy")
def input_s(gi, gj, g, a, beta):
    """√(q q' − C²) of an input layer's pre-activations from the Gram structure (gi, gj, g:
    ⟨ξ, ξ⟩, ⟨ξ', ξ'⟩, ⟨ξ, ξ'⟩; C = a g + β): the element form of
    :func:`tpkernel.nonlin.input_residual`."""
    return input_s_sg(gi, gj, g, a, beta, residual(gi, gj, g))


@njit(inline="always", error_model="numpy")
def input_s_sg(gi, gj, g, a, beta, sg):
    """:func:`input_s` with the residual sg of (gi, gj, g) given (carried from the last layer)."""
    n = math.sqrt(gi) * math.sqrt(gj)
    den = n + g
    m = sg * (sg / den) if (g > 0.0) & (den > 0.0) else n - g
    t = hyp(math.sqrt(a * gi) - math.sqrt(a * gj), math.sqrt(2 * a * max(m, 0.0)))
    return hyp(a * sg, math.sqrt(beta) * t)


@njit(inline="always", error_model="numpy")
def erf_parts(qi, qj, c, gb, ntk, s_in=-1.0):
    """(E[erf erf'], √det of the derivative kernel gauss(·, gb)): (2/π) atan2(2C, hypot(√(1 + 2q
    + 2q'), 2s)) and hypot(√(1 − 2gb(q + q')), 2|gb| s), s from :func:`residual` (no product of
    variances; the arcsin as an atan2, stable near ±1)."""
    s = residual(qi, qj, c) if s_in < 0.0 else s_in
    kn = (2 / PI) * atan2_signed(2 * c, hyp(math.sqrt(1 + 2 * (qi + qj)), 2 * s))
    sd = 1.0
    if ntk:
        sd = hyp(math.sqrt(1 - 2 * gb * (qi + qj)), 2 * abs(gb) * s)
    return kn, sd


@njit(inline="always", error_model="numpy")
def atan2_signed(y, x):
    """atan2(y, x) for x >= 0 (in [−π/2, π/2]) by the vectorisable :func:`atan2_pos`."""
    r = atan2_pos(abs(y), x)
    return r if y >= 0.0 else -r

@njit(parallel=True, **_jit)
def _vec_atan2(s, c, out):
    for i in prange(s.shape[0]):
        out[i] = atan2_pos(s[i], c[i])

@njit(parallel=True, **_jit)
def _vec_asin(x, out):
    for i in prange(x.shape[0]):
        out[i] = asin_fast(x[i])

# Each kernel walks rows in parallel and hands a row *slice* to a serial row function: a
# loop over range(len(slice)) is one LLVM can vectorise (an offset start is not, because
# of numba's negative-index wraparound), and loop-invariant flags are unswitched.

@njit(**_jit)
def _row_arccos(Ki, Ti, qi, q2, a, beta, lam, mu, first, ntk, cpos, cneg, alpha2, gi, g2):
    if first:  # (two loops: the first layer's residual from the Gram structure, the others')
        for j in range(Ki.shape[0]):
            _el_row_arccos(Ki, Ti, j, qi, q2[j], a, beta, lam, mu, True, ntk, cpos, cneg, alpha2,
                           input_s(gi, g2[j], Ki[j] * 1.0, a, beta))
    else:
        ri = math.sqrt(qi)
        for j in range(Ki.shape[0]):
            _el_row_arccos(Ki, Ti, j, qi, q2[j], a, beta, lam, mu, False, ntk, cpos, cneg, alpha2,
                           residual_r(ri, math.sqrt(q2[j]), a * (Ki[j] * 1.0) + beta))


@njit(inline="always", error_model="numpy")
def _el_row_arccos(Ki, Ti, j, qi, qj, a, beta, lam, mu, first, ntk, cpos, cneg, alpha2, s):
    if True:
        k = Ki[j] * 1.0
        c = a * k + beta
        th = atan2_pos(s, c)
        kn = cpos * ((s + (PI - th) * c) * INV_TWO_PI)  # (a product, not a division: 1 ulp)
        thm = 0.0
        if cneg != 0.0:
            thm = atan2_pos(s, -c)
            kn = kn - cneg * ((s + (PI - thm) * (-c)) * INV_TWO_PI)
        Ki[j] = alpha2 * kn
        if ntk:
            pos = (qi > 0.0) & (qj > 0.0)
            kd = cpos * ((PI - th) * INV_TWO_PI if pos else 0.0)
            if cneg != 0.0:
                kd = kd + cneg * ((PI - thm) * INV_TWO_PI if pos else 0.0)
            kd = alpha2 * kd
            t = lam * k + mu
            if not first:
                t = a * Ti[j] + t
            Ti[j] = t * kd

@njit(parallel=True, **_jit)
def _layer_arccos(K, T, q1, q2, a, beta, lam, mu, first, ntk, sym, pa, pb, alpha2, g1, g2):
    """One abrelu(pa, pb) layer (relu, leaky, abs): K <- α² E[φφ'], T <- Horner update.

    E[φ(u)φ(v)] = (pb² + pa²) J1(C) − 2 pa pb J1(−C) and E[φ'φ'] = (pb² + pa²) J0(C) +
    2 pa pb J0(−C), with J1 = (s + (π − θ) C)/(2π), J0 = (π − θ)/(2π), s = √(q q' − C²),
    θ = atan2(s, C): the formulas of :func:`tpkernel.nonlin.arccos_1` / ``arccos_0``, one
    angle for both; the angle at −C only when pa ≠ 0."""
    n1, n2 = K.shape
    npairs = (n1 + 1) // 2 if sym else n1
    cpos = pb * pb + pa * pa
    cneg = pa * pb + pb * pa
    for r in prange(npairs):
        for second in range(2 if sym else 1):  # rows (r, n1-1-r): both threads get equal work
            i = n1 - 1 - np.int64(r) if second == 1 else np.int64(r)  # (prange indices are unsigned)
            if second == 1 and i == r:
                continue
            j0 = i if sym else 0
            _row_arccos(K[i, j0:], T[i, j0:] if ntk else T[0, :0], q1[i], q2[j0:], a, beta, lam, mu,
                        first, ntk, cpos, cneg, alpha2, g1[i], g2[j0:])

@njit(**_jit)
def _row_erf(Ki, Ti, qi, q2, a, beta, lam, mu, first, ntk, g2, gb, b4, alpha2, gi, gr2):
    if first:
        for j in range(Ki.shape[0]):
            _el_row_erf(Ki, Ti, j, qi, q2[j], a, beta, lam, mu, True, ntk, g2, gb, alpha2,
                        input_s(gi, gr2[j], Ki[j] * 1.0, a, beta))
    else:
        for j in range(Ki.shape[0]):
            _el_row_erf(Ki, Ti, j, qi, q2[j], a, beta, lam, mu, False, ntk, g2, gb, alpha2, -1.0)


@njit(inline="always", error_model="numpy")
def _el_row_erf(Ki, Ti, j, qi, qj, a, beta, lam, mu, first, ntk, g2, gb, alpha2, s_in):
    if True:
        k = Ki[j] * 1.0
        c = a * k + beta
        kn, sd = erf_parts(qi, qj, c, gb, ntk, s_in)
        Ki[j] = alpha2 * kn
        if ntk:
            kd = alpha2 * (g2 / sd)
            t = lam * k + mu
            if not first:
                t = a * Ti[j] + t
            Ti[j] = t * kd

@njit(parallel=True, **_jit)
def _layer_erf(K, T, q1, q2, a, beta, lam, mu, first, ntk, sym, ga, gb, alpha2, g1, g2):
    """One erf layer: E[erf erf'] = (2/π) asin(2C/√((1+2q)(1+2q'))), and the derivative
    kernel gauss(ga, gb) (ga = 2/√π, gb = -1): ga² / √((1−2gb q)(1−2gb q') − 4gb² C²)."""
    n1, n2 = K.shape
    npairs = (n1 + 1) // 2 if sym else n1
    for r in prange(npairs):
        for second in range(2 if sym else 1):
            i = n1 - 1 - np.int64(r) if second == 1 else np.int64(r)
            if second == 1 and i == r:
                continue
            j0 = i if sym else 0
            _row_erf(K[i, j0:], T[i, j0:] if ntk else T[0, :0], q1[i], q2[j0:], a, beta, lam, mu,
                     first, ntk, ga * ga, gb, 4 * gb * gb, alpha2, g1[i], g2[j0:])

@njit(inline="always", error_model="numpy")
def _qfun(code, e):
    """From e = exp(-2v) (tanh) or exp(-v) (sigmoid): (φ(v), φ'(v))."""
    inv = 1.0 / (1.0 + e)
    if code == 0:
        return (1.0 - e) * inv, 4.0 * e * inv * inv
    return inv, e * inv * inv

@njit(parallel=True, **_jit)
def _quad_layer(K, q1, q2, a, beta, sym, code, ntk, t, w, wc, f1, d1, KN, KC, DN, DC):
    """E[φ(u)φ(v)] and E[φ'(u)φ'(v)] (tanh: code 0, sigmoid: code 1) on the pre-activation
    covariance C = a K + beta by the 2D trapezoid rule of :func:`gaussian.expect_2d`:
    u = √q t_k (outer), v = α_ij t_k + β_ij t_l (inner), α = √q' ρ, β = √q' √(1 − ρ²).

    f1[i, k], d1[i, k] are φ(√q_i t_k) and φ'(√q_i t_k).  Along l the inner argument is an
    arithmetic sequence, so exp(−κv) is a geometric one, e_kl = e_k0 r^l with
    r = exp(−κ β h): the inner loop runs over k (vectorised) with one division and no
    transcendental call, and φ' comes with φ (tanh' = 1 − tanh², σ' = σ(1 − σ)).  ``wc``
    are the weights of the nested grid with half the nodes (0 between its nodes): KC and DC
    receive its values, whose difference to KN and DN is the adaptive rule's estimate."""
    n1, n2 = K.shape
    npairs = (n1 + 1) // 2 if sym else n1
    m = t.shape[0]
    h = t[1] - t[0] if m > 1 else 1.0
    kap = 2.0 if code == 0 else 1.0
    t0 = t[0]
    for r in prange(npairs):
        e = np.empty(m)
        s1 = np.empty(m)
        s2 = np.empty(m)
        c1 = np.empty(m)
        c2 = np.empty(m)
        for second in range(2 if sym else 1):  # rows (r, n1-1-r): both threads get equal work
            i = n1 - 1 - np.int64(r) if second == 1 else np.int64(r)  # (prange indices are unsigned)
            if second == 1 and i == r:
                continue
            qi = q1[i]
            j0 = i if sym else 0
            for j in range(j0, n2):
                c = a * (K[i, j] * 1.0) + beta
                qj = q2[j]
                qq = math.sqrt(qi) * math.sqrt(qj)  # (not √(q q'): scale-safe)
                rho = c / qq if qq > 0.0 else 0.0
                rho = min(1.0, max(-1.0, rho))
                s2q = math.sqrt(qj)
                aa = s2q * rho
                bb = s2q * math.sqrt(1 - rho * rho)
                span = (abs(aa) + bb) * abs(t0)
                # exp(-κv) could overflow, or (tanh) v is small everywhere, where (1 - e)/(1 + e)
                # loses the relative precision of tanh(v) ≈ v (kernels ~q then): evaluate directly
                big = kap * span > 600.0 or (code == 0 and span < 1.0)
                rr = math.exp(-kap * bb * h)
                for kk in range(m):
                    e[kk] = math.exp(-kap * (aa * t[kk] + bb * t0))
                    s1[kk] = 0.0
                    s2[kk] = 0.0
                    c1[kk] = 0.0
                    c2[kk] = 0.0
                for ll in range(m):
                    wl = w[ll]
                    wcl = wc[ll]
                    if big:
                        for kk in range(m):
                            v = aa * t[kk] + bb * t[ll]
                            if code == 0:
                                g = math.tanh(v)
                                gd = 1.0 - g * g
                            else:
                                g = 1.0 / (1.0 + math.exp(-v))
                                gd = g * (1.0 - g)
                            s1[kk] += wl * g
                            s2[kk] += wl * gd
                            c1[kk] += wcl * g
                            c2[kk] += wcl * gd
                    else:
                        for kk in range(m):
                            ek = e[kk]
                            g, gd = _qfun(code, ek)
                            s1[kk] += wl * g
                            s2[kk] += wl * gd
                            c1[kk] += wcl * g
                            c2[kk] += wcl * gd
                            e[kk] = ek * rr
                kn = 0.0
                kd = 0.0
                knc = 0.0
                kdc = 0.0
                for kk in range(m):
                    kn += w[kk] * f1[i, kk] * s1[kk]
                    knc += wc[kk] * f1[i, kk] * c1[kk]
                    if ntk:
                        kd += w[kk] * d1[i, kk] * s2[kk]
                        kdc += wc[kk] * d1[i, kk] * c2[kk]
                KN[i, j] = kn
                KC[i, j] = knc
                if ntk:
                    DN[i, j] = kd
                    DC[i, j] = kdc

@njit(**_jit)
def _row_update(Ki, Ti, KNi, DNi, a, lam, mu, alpha2, first, ntk):
    for j in range(Ki.shape[0]):
        k = Ki[j] * 1.0
        if ntk:
            t = lam * k + mu
            if not first:
                t = a * Ti[j] + t
            Ti[j] = t * (alpha2 * DNi[j])
        Ki[j] = alpha2 * KNi[j]

@njit(parallel=True, **_jit)
def _update(K, T, KN, DN, a, lam, mu, alpha2, first, ntk, sym):
    """K <- α² KN and T <- (a T + λ K + μ) α² DN on the triangle (after quadrature)."""
    n1, n2 = K.shape
    npairs = (n1 + 1) // 2 if sym else n1
    for r in prange(npairs):
        for second in range(2 if sym else 1):
            i = n1 - 1 - np.int64(r) if second == 1 else np.int64(r)
            if second == 1 and i == r:
                continue
            j0 = i if sym else 0
            _row_update(K[i, j0:], T[i, j0:] if ntk else T[0, :0], KN[i, j0:], DN[i, j0:], a, lam, mu,
                        alpha2, first, ntk)

@njit(**_jit)
def _fin(K, T, i, j, v_var, o_var, v_ntk, o_ntk, ntk):
    k = K[i, j] * 1.0
    if ntk:
        T[i, j] = v_var * T[i, j] + v_ntk * k + o_ntk
    K[i, j] = v_var * k + o_var

@njit(parallel=True, **_jit)
def _finish(K, T, v_var, o_var, v_ntk, o_ntk, ntk, sym):
    """NNGP = σ_v² K + σ_o², NTK = σ_v² T + lr_v σ_v² K + lr_o σ_o², in place; when
    ``sym``, in tiles of the upper triangle, each copied onto its mirror image right away
    (one pass instead of two).  Returns the number of non-finite entries."""
    n1, n2 = K.shape
    B = 64
    nb1 = (n1 + B - 1) // B
    nb2 = (n2 + B - 1) // B
    bad = 0
    for bi in prange(nb1):
        for bj in range(bi if sym else 0, nb2):
            for i in range(bi * B, min(n1, bi * B + B)):
                for j in range(max(i, bj * B) if sym else bj * B, min(n2, bj * B + B)):
                    _fin(K, T, i, j, v_var, o_var, v_ntk, o_ntk, ntk)
                    if not (math.isfinite(K[i, j]) and (not ntk or math.isfinite(T[i, j]))):
                        bad += 1
            if sym and bj > bi:
                for j in range(bj * B, min(n2, bj * B + B)):
                    for i in range(bi * B, min(n1, bi * B + B)):
                        K[j, i] = K[i, j]
                        if ntk:
                            T[j, i] = T[i, j]
            elif sym:
                for i in range(bi * B, min(n1, bi * B + B)):
                    for j in range(bi * B, i):
                        K[i, j] = K[j, i]
                        if ntk:
                            T[i, j] = T[j, i]
    return bad

@njit(parallel=True, **_jit)
def _mirror(A):
    """Copy the upper triangle onto the lower one, in cache-sized tiles."""
    n = A.shape[0]
    B = 64
    nb = (n + B - 1) // B
    for bi in prange(nb):
        for bj in range(bi + 1):
            for i in range(bi * B, min(n, bi * B + B)):
                for j in range(bj * B, min(i, bj * B + B)):
                    A[i, j] = A[j, i]


# -- the whole chain, row by row ----------------------------------------------------------
# A row of K and T stays in cache while every layer updates it (one pass over memory instead
# of one per layer), then the readout transform; the diagonal runs through the same element
# formulas first (_diag_chain), so that q_i = C[i, i] to the last bit.  P[l] holds layer l's
# (a, β, λ, μ, p1, p2, α², kind): kind 0 = abrelu(p1, p2), 1 = erf (derivative gauss(p1, p2)),
# 2 = identity.

@njit(inline="always", error_model="numpy")
def _el_arccos(k, qi, qj, a, beta, cpos, cneg, ntk, s_in=-1.0):
    c = a * k + beta
    s = residual(qi, qj, c) if s_in < 0.0 else s_in
    th = atan2_pos(s, c)
    kn = cpos * ((s + (PI - th) * c) * INV_TWO_PI)
    thm = 0.0
    if cneg != 0.0:
        thm = atan2_pos(s, -c)
        kn = kn - cneg * ((s + (PI - thm) * (-c)) * INV_TWO_PI)
    kd = 0.0
    if ntk:
        pos = (qi > 0.0) & (qj > 0.0)
        kd = cpos * ((PI - th) * INV_TWO_PI if pos else 0.0)
        if cneg != 0.0:
            kd = kd + cneg * ((PI - thm) * INV_TWO_PI if pos else 0.0)
    return kn, kd


@njit(inline="always", error_model="numpy")
def _el_erf(k, qi, qj, a, beta, g2, gb, b4, ntk, s_in=-1.0):
    c = a * k + beta
    kn, sd = erf_parts(qi, qj, c, gb, ntk, s_in)
    kd = 0.0
    if ntk:
        kd = g2 / sd
    return kn, kd


@njit(inline="always", error_model="numpy")
def input_s_carried(ri, rj, g, sa, sb, a, sg):
    """:func:`input_s_sg` from the roots ri = √gi, rj = √gj (sa = √a, sb = √β): the deeper
    layers' form, with fewer square roots (t² = a((√gi − √gj)² + 2m) is of the order of g:
    no hypot needed there)."""
    n = ri * rj
    den = n + g
    m = sg * (sg / den) if (g > 0.0) & (den > 0.0) else n - g
    d = ri - rj
    t = sa * math.sqrt(d * d + 2 * max(m, 0.0))
    return hyp(a * sg, sb * t)


@njit(inline="always", error_model="numpy")
def _el_relu_s(k, qi, qj, a, beta, ntk, s):
    """(J1, J0, s_K) of a relu pair with carried s: the element form of
    :func:`tpkernel.nonlin.relu_residual` (sin θ − θ cos θ by its series below θ = 1/2)."""
    c = a * k + beta
    th = atan2_pos(s, c)
    j1 = (s + (PI - th) * c) * INV_TWO_PI
    j0 = 0.0
    if ntk:
        j0 = (PI - th) * INV_TWO_PI if (qi > 0.0) & (qj > 0.0) else 0.0
    n = math.sqrt(qi) * math.sqrt(qj)
    t2 = th * th
    ser = _S8
    ser = _S7 + t2 * ser
    ser = _S6 + t2 * ser
    ser = _S5 + t2 * ser
    ser = _S4 + t2 * ser
    ser = _S3 + t2 * ser
    ser = _S2 + t2 * ser
    ser = _S1 + t2 * ser
    ser = ser * t2 * th
    f = ser if th < 0.5 else (s - th * c) / n
    den = n + c
    gap = s * (s / den) if (c > 0.0) & (den > 0.0) else n - c
    lo = max(PI * gap - n * f, 0.0) * INV_TWO_PI
    hi = max(0.5 * n + j1, 0.0)
    return j1, j0, math.sqrt(lo) * math.sqrt(hi)


#: the series of sin θ − θ cos θ = Σ_k (−1)^(k+1) 2k θ^(2k+1)/(2k+1)!
_S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8 = [(-1) ** (k + 1) * 2 * k / math.factorial(2 * k + 1) for k in range(1, 9)]


@njit(**_jit)
def _row_layer(Ki, Ti, qi, q2, a, beta, lam, mu, p1, p2, al2, kind, first, ntk, gi, gr2, S, have):
    """:func:`_row_layer_plain`, carrying the residual s (row buffer ``S``: the last layer's
    post-activation s where ``have``) through relu (p1 = 0) and identity layers; returns
    whether ``S`` now holds this layer's.  gi, gr2: the last layer's K on the diagonal (the Gram
    diagonal on the first layer)."""
    if kind == 0 and p1 == 0.0 and (first or have):
        cpos = p2 * p2  # (the products in the order of _el_arccos and _row_layer_plain: bit for bit)
        ri, sa, sb = math.sqrt(gi), math.sqrt(a), math.sqrt(beta)
        for j in range(Ki.shape[0]):
            k = Ki[j] * 1.0
            s = input_s(gi, gr2[j], k, a, beta) if first else input_s_carried(ri, math.sqrt(gr2[j]), k, sa, sb, a, S[j])
            j1, j0, sk = _el_relu_s(k, qi, q2[j], a, beta, ntk, s)
            Ki[j] = al2 * (cpos * j1)
            S[j] = al2 * (cpos * sk)
            if ntk:
                t = lam * k + mu
                if not first:
                    t = a * Ti[j] + t
                Ti[j] = t * (al2 * (cpos * j0))
        return True
    if kind == 2 and (first or have):
        for j in range(Ki.shape[0]):
            k = Ki[j] * 1.0
            S[j] = input_s(gi, gr2[j], k, a, beta) if first else input_s_sg(gi, gr2[j], k, a, beta, S[j])
    _row_layer_plain(Ki, Ti, qi, q2, a, beta, lam, mu, p1, p2, al2, kind, first, ntk, gi, gr2)
    return kind == 2 and (first or have)


@njit(**_jit)
def _row_layer_plain(Ki, Ti, qi, q2, a, beta, lam, mu, p1, p2, al2, kind, first, ntk, gi, gr2):
    """One layer on a row slice; on the first layer (``first``) the residual √(q q' − C²) comes
    from the Gram structure (gi = ⟨ξ_i, ξ_i⟩, gr2 = ⟨ξ'_j, ξ'_j⟩: :func:`input_s`)."""
    if kind == 0:
        cpos = p2 * p2 + p1 * p1
        cneg = p1 * p2 + p2 * p1
        if first:  # (two loops: the first layer's residual from the Gram structure, the others')
            for j in range(Ki.shape[0]):
                k = Ki[j] * 1.0
                kn, kd = _el_arccos(k, qi, q2[j], a, beta, cpos, cneg, ntk, input_s(gi, gr2[j], k, a, beta))
                Ki[j] = al2 * kn
                if ntk:
                    Ti[j] = (lam * k + mu) * (al2 * kd)
        else:
            ri = math.sqrt(qi)
            for j in range(Ki.shape[0]):
                k = Ki[j] * 1.0
                kn, kd = _el_arccos(k, qi, q2[j], a, beta, cpos, cneg, ntk,
                                    residual_r(ri, math.sqrt(q2[j]), a * k + beta))
                Ki[j] = al2 * kn
                if ntk:
                    Ti[j] = (a * Ti[j] + (lam * k + mu)) * (al2 * kd)
    elif kind == 1:
        g2 = p1 * p1
        b4 = 4 * p2 * p2
        if first:
            for j in range(Ki.shape[0]):
                k = Ki[j] * 1.0
                kn, kd = _el_erf(k, qi, q2[j], a, beta, g2, p2, b4, ntk, input_s(gi, gr2[j], k, a, beta))
                Ki[j] = al2 * kn
                if ntk:
                    Ti[j] = (lam * k + mu) * (al2 * kd)
        else:
            for j in range(Ki.shape[0]):
                k = Ki[j] * 1.0
                kn, kd = _el_erf(k, qi, q2[j], a, beta, g2, p2, b4, ntk, -1.0)
                Ki[j] = al2 * kn
                if ntk:
                    Ti[j] = (a * Ti[j] + (lam * k + mu)) * (al2 * kd)
    else:
        for j in range(Ki.shape[0]):
            k = Ki[j] * 1.0
            c = a * k + beta
            Ki[j] = c
            if ntk:
                t = lam * k + mu
                if not first:
                    t = a * Ti[j] + t
                Ti[j] = t


@njit(**_jit)
def _diag_chain(kdiag, P, Q, ntk, D):
    """Q[l, i] = a_l K_{l-1}[i, i] + β_l through the same element formulas as the rows
    (``kdiag`` has K's dtype, so that float32 storage rounds the same way)."""
    n = kdiag.shape[0]
    for l in range(P.shape[0]):
        a, beta, p1, p2, al2, kind = P[l, 0], P[l, 1], P[l, 4], P[l, 5], P[l, 6], int(P[l, 7])
        for i in range(n):
            k = kdiag[i] * 1.0
            q = a * k + beta
            Q[l, i] = q
            D[l, i] = k
            if kind == 0:
                kn, kd = _el_arccos(k, q, q, a, beta, p2 * p2 + p1 * p1, p1 * p2 + p2 * p1, False)
                kdiag[i] = al2 * kn
            elif kind == 1:
                kn, kd = _el_erf(k, q, q, a, beta, p1 * p1, p2, 4 * p2 * p2, False)
                kdiag[i] = al2 * kn
            else:
                kdiag[i] = q


@njit(parallel=True, **_jit)
def _chain(K, T, Q1, Q2, P, ntk, sym, v_var, o_var, v_ntk, o_ntk, rowcheck, D1, D2):
    """Every layer of a chain and the readout, row by row (upper triangle when ``sym``);
    ``rowcheck[i]`` is NaN when row i has a non-finite entry (Σ 0·x, a vectorised test)."""
    n1, n2 = K.shape
    npairs = (n1 + 1) // 2 if sym else n1
    L = P.shape[0]
    for r in prange(npairs):
        for second in range(2 if sym else 1):
            i = n1 - 1 - np.int64(r) if second == 1 else np.int64(r)
            if second == 1 and i == r:
                continue
            j0 = i if sym else 0
            Ki = K[i, j0:]
            Ti = T[i, j0:] if ntk else T[0, :0]
            S = np.empty(Ki.shape[0])  # the carried residuals of this row
            have = False
            for l in range(L):
                have = _row_layer(Ki, Ti, Q1[l, i], Q2[l, j0:], P[l, 0], P[l, 1], P[l, 2], P[l, 3], P[l, 4],
                                  P[l, 5], P[l, 6], int(P[l, 7]), l == 0, ntk, D1[l, i], D2[l, j0:], S, have)
            z = 0.0
            for j in range(Ki.shape[0]):
                k = Ki[j] * 1.0
                if ntk:
                    tn = v_var * Ti[j] + v_ntk * k + o_ntk
                    Ti[j] = tn
                    z += 0.0 * tn
                kn = v_var * k + o_var
                Ki[j] = kn
                z += 0.0 * kn
            rowcheck[i] = z
