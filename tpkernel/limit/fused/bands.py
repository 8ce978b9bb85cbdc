"""The NumPy band path of the fused chain evaluator: per-layer rules, rows of the kernel in
bands of at most ``BAND`` elements, the mirror of the triangle."""

from __future__ import annotations


import numpy as np

import tpkernel.limit.fused as _pkg  # the flags (USE_NUMBA, ...), read at call time: tests switch them

from ...nonlin import REGISTRY, TAKES_RESIDUAL, Nonlinearity, input_residual, pair_rule, relu_residual
from .. import gaussian
from .chain import Chain, Layer
from .atan import _jit


def _mirror_block(blk: np.ndarray) -> None:
    """Upper triangle → lower triangle of a square block, in place."""
    low = np.tril_indices(blk.shape[0], -1)
    blk[low] = blk.T[low]


def _mirror_np(A: np.ndarray) -> None:
    n = A.shape[0]
    B = 256
    for i0 in range(0, n, B):
        i1 = min(n, i0 + B)
        _mirror_block(A[i0:i1, i0:i1])
        A[i1:, i0:i1] = A[i0:i1, i1:].T


def mirror(A: np.ndarray) -> None:
    """Upper triangle → lower triangle, in place."""
    if _pkg.USE_NUMBA:
        _jit()._mirror(A)
    else:
        _mirror_np(A)


def _finish_np(K, T, ch: Chain, ntk: bool, sym: bool) -> None:
    n1, n2 = K.shape
    rows = max(1, _pkg.BAND // max(n2, 1))
    for i0 in range(0, n1, rows):
        i1 = min(n1, i0 + rows)
        j0 = i0 if sym else 0
        k = K[i0:i1, j0:].astype(float)
        if ntk:
            T[i0:i1, j0:] = ch.v_var * T[i0:i1, j0:] + ch.v_ntk * k + ch.o_ntk
        K[i0:i1, j0:] = ch.v_var * k + ch.o_var


class _Rules:
    """How one layer's elementwise maps are evaluated: K and Kd as functions of (q1, q2, C).

    ``kind``: "identity" (no φ), "arccos" / "erf" (numba kernels), "quadfused" (tanh and
    sigmoid by the fused quadrature kernel), "rule" (the registry's NumPy pair rules over
    bands) or "quad" (:func:`gaussian.expect_2d` over the matrix)."""

    def __init__(self, layer: Layer, ntk: bool, numba_ok: bool) -> None:
        phi = layer.phi
        self.alpha2 = layer.alpha ** 2
        self.phi = phi
        self.dphi = None
        self.k = self.kd = None
        self.code = None
        if phi is None:
            self.kind = "identity"
            return
        self.k = pair_rule(phi, phi)
        if ntk:
            self.dphi = phi.derivative()
            self.kd = pair_rule(self.dphi, self.dphi)
        self.kind = "rule" if self.k is not None and (not ntk or self.kd is not None) else "quad"
        if not numba_ok:
            return
        if phi.name == "abrelu" and self.kind == "rule":
            self.kind = "arccos"
        elif phi.name == "erf" and self.kind == "rule" and (not ntk or self.dphi.name == "gauss"):
            self.kind = "erf"
        elif self.kind == "quad" and phi.name in _pkg.QUAD_FAMILIES and phi.family is REGISTRY.get(phi.name) \
                and (not ntk or self.dphi.family is REGISTRY.get("d" + phi.name)):
            self.kind = "quadfused"
            self.code = _pkg.QUAD_FAMILIES[phi.name]


def _residual_kwargs(phi: Nonlinearity, s, c) -> dict:
    """How a pair rule of φ with itself takes a known residual s = √(q q' − C²)."""
    if phi.name in ("abrelu", "abstep"):
        return {"angles": lambda sign: (s, np.arctan2(s, sign * c))}
    return {"s": s} if (phi.name, phi.name) in TAKES_RESIDUAL else {}


class _Run:
    """One fused evaluation: the arrays K, T and the per-example variances."""

    def __init__(self, chain: Chain, settings, report, ntk: bool, sym: bool, numba_ok: bool) -> None:
        self.chain = chain
        self.s = settings
        self.report = report
        self.ntk = ntk
        self.sym = sym
        self.numba = numba_ok
        #: the NumPy path's carried residuals: S = √(K11K22 − K12²) of the last layer's
        #: post-activations (where K is written), or None when that layer has no closed form for
        #: it (then the next layer computes s from (q, q', C) as before); g1, g2: the diagonal
        #: of the last K (⟨ξ, ξ⟩ before the first layer)
        self.S = None

    def _quadrature(self, integral, what: str):
        """The general evaluator's rule: adaptive to quad_tol, or quad_deg fixed."""
        s = self.s
        converged = None
        integral = gaussian.named(integral, what)  # errors name the expectation
        if s.quad_deg is None:
            val, deg, err = gaussian.adaptive(integral, 65, s.quad_tol, s.max_deg)
            converged = err <= s.quad_tol
        else:
            deg = s.quad_deg
            val = integral(deg)
            err = None
            if s.error_estimate:
                from ..numeric import _lower
                err = float(np.max(np.abs(val - integral(_lower(deg)))))
        self.report.quadrature.append({"dim": 2, "deg": deg, "rule": s.quad_rule, "what": what, "error": err,
                                       "converged": converged})
        return val

    def diag_layer(self, rules: _Rules, q: np.ndarray, what: str) -> np.ndarray:
        """α² E[φ(h)²] per example, as Expectations.cov(x, x, (a, a, True)) computes it."""
        if rules.kind == "identity":
            return q
        if rules.k is not None:
            val = rules.k(q, q, q)
        else:
            rule = self.s.quad_rule
            val = self._quadrature(lambda deg: gaussian.expect_2d(rules.phi, rules.phi, q, q, q, deg, rule),
                                   f"{what}·{what}")
        return rules.alpha2 * val if rules.alpha2 != 1.0 else val

    # -- one layer on the matrix -------------------------------------------------------
    def layer(self, K, T, q1, q2, L: Layer, rules: _Rules, first: bool, what: str) -> None:
        ntk, sym = self.ntk, self.sym
        if rules.kind not in ("rule", "identity"):
            self.S = None  # (only the NumPy band path carries residuals)
        if rules.kind == "arccos":
            pa, pb = rules.phi.params
            _jit()._layer_arccos(K, T, q1, q2, L.a, L.beta, L.lam, L.mu, first, ntk, sym, pa, pb, rules.alpha2,
                                 self.g1, self.g2)
        elif rules.kind == "erf":
            ga, gb = rules.dphi.params if ntk else (1.0, -1.0)
            _jit()._layer_erf(K, T, q1, q2, L.a, L.beta, L.lam, L.mu, first, ntk, sym, ga, gb, rules.alpha2,
                              self.g1, self.g2)
        elif rules.kind == "quadfused" and self.s.quad_rule == "trapezoid":
            self._quad_fused(K, T, q1, q2, L, rules, first, what)
        elif rules.kind in ("quad", "quadfused"):
            if sym:  # the whole-matrix rule reads both triangles
                mirror(K)
                if ntk and not first:
                    mirror(T)
            self._quad_matrix(K, T, q1, q2, L, rules, first, what)
        else:
            self._bands(K, T, q1, q2, L, rules, first)

    def _bands(self, K, T, q1, q2, L: Layer, rules: _Rules, first: bool) -> None:
        """The NumPy path: the registry's pair rules over bands of rows of the triangle."""
        n1, n2 = K.shape
        rows = max(1, _pkg.BAND // max(n2, 1))
        ntk, al2 = self.ntk, rules.alpha2
        S_in = None if first else self.S
        # this layer's post-activation residual, for the next layer: identity (s itself) and the
        # relu family without a negative slope (α² b² · relu_residual); None for the others
        phi = rules.phi
        post = None
        if rules.kind == "identity":
            post = 1.0
        elif phi.name == "abrelu" and phi.params[0] == 0.0:
            post = al2 * phi.params[1] ** 2
        S_out = None
        if post is not None:
            S_out = S_in if S_in is not None else np.zeros(K.shape)
        self.S = S_out
        for i0 in range(0, n1, rows):
            i1 = min(n1, i0 + rows)
            j0 = i0 if self.sym else 0
            carried = S_in is not None
            if self.sym:  # a compiled layer before may have left this block's lower part stale
                _mirror_block(K[i0:i1, i0:i1])
                if ntk and not first:
                    _mirror_block(T[i0:i1, i0:i1])
                if carried:
                    _mirror_block(S_in[i0:i1, i0:i1])
            k = K[i0:i1, j0:].astype(float, copy=False)
            c = L.a * k + L.beta
            qa, qb = q1[i0:i1, None], q2[None, j0:]
            kd = 1.0
            s = None
            if first or carried:  # √(q q' − C²) from the structure (input_residual), not from (q, q', C)
                s = input_residual(self.g1[i0:i1, None], self.g2[None, j0:], k, L.a, L.beta,
                                   sg=S_in[i0:i1, j0:] if carried else None)
            if rules.kind == "identity":
                kn = c
                if S_out is not None:
                    S_out[i0:i1, j0:] = s
            else:
                extra = {}
                if s is not None:
                    extra = _residual_kwargs(rules.phi, s, c)
                if S_out is not None:
                    S_out[i0:i1, j0:] = post * relu_residual(qa, qb, c, s)
                kn = rules.k(qa, qb, c, **extra)
                if ntk:
                    kd = rules.kd(qa, qb, c, **(_residual_kwargs(rules.dphi, s, c) if s is not None else {}))
                if al2 != 1.0:
                    kn = al2 * kn
                    kd = al2 * kd
            if ntk:
                t = L.lam * k + L.mu
                if not first:
                    t = L.a * T[i0:i1, j0:] + t
                T[i0:i1, j0:] = t * kd
            K[i0:i1, j0:] = kn

    def _quad_matrix(self, K, T, q1, q2, L: Layer, rules: _Rules, first: bool, what: str) -> None:
        """Quadrature without a fused kernel: :func:`gaussian.expect_2d` on the whole matrix
        (the adaptive rule decides on all elements at once, as the general evaluator does)."""
        k = K.astype(float)
        C = L.a * k + L.beta
        q1m, q2m = q1[:, None], q2[None, :]
        rule = self.s.quad_rule
        if rules.k is not None:  # a closed form for one of the two expectations only
            kn = rules.k(q1m, q2m, C)
        else:
            kn = self._quadrature(lambda deg: gaussian.expect_2d(rules.phi, rules.phi, q1m, q2m, C, deg, rule),
                                  f"{what}·{what}")
        if self.ntk:
            if rules.kd is not None:
                kd = rules.kd(q1m, q2m, C)
            else:
                kd = self._quadrature(lambda deg: gaussian.expect_2d(rules.dphi, rules.dphi, q1m, q2m, C, deg,
                                                                     rule), f"d{what}·d{what}")
            t = L.lam * k + L.mu
            if not first:
                t = L.a * T + t
            T[...] = t * (rules.alpha2 * kd)
        K[...] = rules.alpha2 * kn

    def _quad_fused(self, K, T, q1, q2, L: Layer, rules: _Rules, first: bool, what: str) -> None:
        """tanh / sigmoid: one kernel pass per level of nested trapezoid grids gives both
        expectations at that level and at the next coarser one (the adaptive rule's estimate)."""
        s, ntk = self.s, self.ntk
        shape = K.shape
        KN, KC = np.empty(shape), np.empty(shape)
        DN, DC = (np.empty(shape), np.empty(shape)) if ntk else (KN, KC)
        fixed = s.quad_deg is not None
        start = 65
        deg = s.quad_deg if fixed else 2 * start - 1
        single = not fixed and deg > s.max_deg  # no refinement possible: one level, error unknown
        if single:
            deg, fixed = start, True

        def run(deg: int, nested: bool):
            t, w = gaussian.nodes(deg, "trapezoid")
            wc = np.zeros_like(w)
            if nested:
                wc[::2] = gaussian.nodes((deg + 1) // 2, "trapezoid")[1]
            sq = np.sqrt(q1)[:, None] * t[None, :]
            f1 = np.ascontiguousarray(rules.phi(sq), dtype=float)
            d1 = np.ascontiguousarray(rules.dphi(sq), dtype=float) if ntk else f1
            _jit()._quad_layer(K, q1, q2, L.a, L.beta, self.sym, rules.code, ntk, t, w, wc, f1, d1,
                               KN, KC, DN, DC)

        def max_diff(A, B, relative: bool) -> float:
            """max |A − B| (over max(1, |A|) when ``relative``) over the computed part, by bands."""
            n1, n2 = A.shape
            rows = max(1, _pkg.BAND // max(n2, 1))
            out = 0.0
            for i0 in range(0, n1, rows):
                j0 = i0 if self.sym else 0
                a, b = A[i0:i0 + rows, j0:], B[i0:i0 + rows, j0:]
                d = np.abs(a - b) / np.maximum(1.0, np.abs(a)) if relative else np.abs(a - b)
                out = max(out, float(np.max(np.triu(d) if self.sym else d, initial=0.0)))
            return out

        if fixed:
            run(deg, nested=False)
            err_k = err_d = None
            if single:
                err_k, err_d = float("inf"), (float("inf") if ntk else None)
            elif s.error_estimate:  # as the general evaluator: compare with ceil(3 deg / 4) nodes
                from ..numeric import _lower
                kn, dn = KN.copy(), (DN.copy() if ntk else None)
                run(_lower(deg), nested=False)
                err_k = max_diff(kn, KN, relative=False)
                err_d = max_diff(dn, DN, relative=False) if ntk else None
                KN[...] = kn
                if ntk:
                    DN[...] = dn
            keep_k, keep_d = [KN, deg, err_k], [DN, deg, err_d]
        else:
            keep_k = keep_d = None
            while True:
                run(deg, nested=True)
                last = 2 * deg - 1 > s.max_deg
                if keep_k is None:
                    dk = max_diff(KN, KC, relative=True)
                    if dk <= s.quad_tol or last:
                        keep_k = [KN, deg, dk]
                if ntk and keep_d is None:
                    dd = max_diff(DN, DC, relative=True)
                    if dd <= s.quad_tol or last:
                        keep_d = [DN, deg, dd]
                if keep_k is not None and (not ntk or keep_d is not None):
                    break
                for keep, arr in ((keep_k, KN), (keep_d, DN)):
                    if keep is not None and keep[0] is arr:
                        keep[0] = arr.copy()
                deg = 2 * deg - 1
            if keep_d is None:
                keep_d = keep_k
        adaptive = s.quad_deg is None  # as the general evaluator: only the adaptive rule can fall short
        for name, (_, deg_used, err) in (("", keep_k), ("d", keep_d))[:2 if ntk else 1]:
            self.report.quadrature.append({"dim": 2, "deg": deg_used, "rule": "trapezoid",
                                           "what": f"{name}{what}·{name}{what}", "error": err,
                                           "converged": (err <= s.quad_tol) if adaptive else None})
        _jit()._update(K, T, keep_k[0], keep_d[0] if ntk else keep_k[0], L.a, L.lam, L.mu,
                       rules.alpha2, first, ntk, self.sym)

