r"""The fused fast path: fully connected chains evaluated layer by layer, in place.

Most networks people sweep are *chains*: ``h_1 = c_U·Uξ + Σ c_b b``, ``x_l = α_l φ_l(h_l)``,
``h_{l+1} = c_W·W x_l + Σ c_b b``, read out by ``f = σ_v vᵀ x_L/√n + σ_o β`` (every parameter
used once, no sequences, no pooling).  For them the general evaluator
(:class:`~tpkernel.limit.numeric.Expectations`, memoised over every vector of the forward and the
backward program) does far more than the math needs: this module recognises a chain
(:func:`chain_of`) and runs the same recursion with two N1 × N2 arrays,

  C_l  = a_l K_{l-1} + β_l                 (pre-activation covariance; K_0 = ⟨ξ, ξ'⟩/d)
  K_l  = α_l² E[φ_l(u) φ_l(v)],   Kd_l = α_l² E[φ_l'(u) φ_l'(v)],   (u, v) ~ N(0, [[q, C], [C, q']])
  T_l  = (a_l T_{l-1} + λ_l K_{l-1} + μ_l) Kd_l                        (T_0 = 0)
  NNGP = σ_v² K_L + σ_o²,   NTK = σ_v² T_L + lr_v σ_v² K_L + lr_o σ_o²

(a_l = c_W² σ_W², β_l = Σ c_b² σ_b², λ_l = lr_W a_l, μ_l = Σ lr_b c_b² σ_b²).  T is the
backward sum Σ_l E[dh_l dh_l'] (λ_l K_{l-1} + μ_l) of :mod:`tpkernel.backward` in Horner form,
the same numbers as the general evaluator up to the order of floating-point additions.

What makes it fast:

- **one triangle** when x2 is x1: every array is symmetric, rows are processed in pairs
  (i, N-1-i) so that both threads get the same work, and the readout's pass mirrors each
  tile of the upper triangle onto the lower one as it writes it;
- **one pass per layer**, in place: C, the closed forms of φ and φ', and the NTK update are one
  fused loop (numba, ``parallel=True``, both cores), with no temporaries;
- **one angle per element**: θ = atan2(√(q q' − C²), C) is shared by the ReLU kernel (J1) and
  the step kernel (J0); J1(−C) is only computed for leaky/abs ReLUs whose coefficient needs it;
- **the whole chain per row** when every layer has a compiled closed form (ReLU family, erf,
  identity): one kernel runs all layers and the readout on a row of K and T while it sits in
  cache (``_fused_jit._chain``), then one tiled pass mirrors the triangle; the diagonal goes
  first through the same element formulas, so that q_i equals C[i, i] to the last bit;
- a **vectorisable atan2** (``_fused_jit.atan2_pos``, stated in Python as :func:`atan2_pos_py`):
  fdlibm's reduction and polynomial written without branches, ≤ 2 ulp from ``np.arctan2``
  (measured in the tests), about 6 ns per element instead of ~40 ns for libm's scalar atan2
  from compiled code;
- the **Gram matrix** of the inputs by one BLAS call (``x @ x.T`` is a symmetric rank-k
  update when x2 is x1);
- tanh and sigmoid by **quadrature in one pass**: E[φφ'] and E[φ'φ'] share every evaluation
  (tanh' = 1 − tanh²), and along the trapezoid grid exp(−2v) is a geometric sequence, so the
  inner loop has no transcendental call at all (``_fused_jit._quad_layer``);
- below :data:`SERIAL_BELOW` elements the kernels run on one thread (a parallel launch costs
  more than it saves there).

Precision: float64 throughout.  ``dtype="float32"`` stores K and T (and computes the Gram
matrix) in float32 but evaluates every element in float64 registers (the closed forms, the
angle, and the NTK's Horner update), rounding once per layer.

Without numba (``TPKERNEL_NUMBA=0`` or not installed) the same recursion runs in NumPy over
bands of rows of the triangle (:data:`BAND` elements at a time, so temporaries stay small),
with the registry's own pair rules: then the closed-form layers compute the general
evaluator's numbers bit for bit, and the NTK differs only by the order of its additions.  Any
program that is not a chain goes to the general evaluator.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass

import numpy as np

from ..checks import check_kernel
from ..errors import NumericalError
from ..ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Nonlin, Program, Readout
from ..nonlin import REGISTRY, TAKES_RESIDUAL, Nonlinearity, input_residual, pair_rule, relu_residual
from . import gaussian
from .scales import check_norms, check_variance

#: numba is optional: without it the NumPy band path below runs.  It is imported only when a
#: chain is evaluated (:func:`_jit`), never by ``import tpkernel``.
HAVE_NUMBA = importlib.util.find_spec("numba") is not None

#: use the compiled kernels when numba is importable (tests switch this off to check the fallback)
USE_NUMBA = HAVE_NUMBA and os.environ.get("TPKERNEL_NUMBA", "1") != "0"
#: elements per band of the NumPy path (a few MB per temporary)
BAND = 1 << 18
#: kernels smaller than this (N1·N2 elements) run on one thread
SERIAL_BELOW = 1 << 19
#: families with a fused quadrature kernel (code passed to the kernel)
QUAD_FAMILIES = {"tanh": 0, "sigmoid": 1}


# ---------------------------------------------------------------------------------
# chains
# ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """One dense layer followed by an elementwise map: see the module docstring."""

    phi: Nonlinearity | None  # None: identity (x_l = h_l)
    alpha: float  # x_l = alpha · φ(h_l)
    a: float  # c_W² σ_W²  (C_l = a K_{l-1} + beta)
    beta: float  # Σ c_b² σ_b²
    lam: float  # lr_W c_W² σ_W²
    mu: float  # Σ lr_b c_b² σ_b²
    name: str | None = None  # the Nonlin node (errors name the expectation E[name·name])
    node: str = ""  # the pre-activation h_l (named by overflow errors)


@dataclass(frozen=True)
class Chain:
    data: str
    layers: tuple[Layer, ...]
    v_var: float  # σ_v²
    v_ntk: float  # lr_v σ_v²
    o_var: float  # σ_o²
    o_ntk: float  # lr_o σ_o²
    readout: str = ""


def _masked(node) -> bool:
    return getattr(node, "mask", None) is not None


def _flatten(p: Program, name: str, coeff: float, out: dict[str, float]) -> bool:
    """Expand a centred Gaussian LinComb tree into {atom: coefficient}; False if not one."""
    node = p[name]
    if node.is_gaussian_atom:
        out[name] = out.get(name, 0.0) + coeff
        return True
    if isinstance(node, LinComb) and node.const == 0.0:
        return all(_flatten(p, a, coeff * c, out) for a, c in zip(node.args, node.coeffs))
    return False


def chain_of(program: Program, readout: Readout) -> Chain | None:
    """The chain structure of ``program`` read by ``readout``, or None if it is not a chain."""
    p = program
    if readout.pool is not None or len(readout.args) != 1:
        return None
    datas = p.of_type(Data)
    if len(datas) != 1 or datas[0].length is not None:
        return None
    uses: dict[str, int] = {}
    for n in p:
        for ref in n.inputs:
            uses[ref] = uses.get(ref, 0) + 1
    if len(p.readouts) != 1:
        return None
    layers: list[Layer] = []
    x = readout.args[0]
    seen: set[str] = set()
    while True:
        node = p[x]
        alpha, phi, g = 1.0, None, x
        if isinstance(node, LinComb) and len(node.args) == 1 and node.const == 0.0 \
                and isinstance(p[node.args[0]], Nonlin):
            alpha, node = node.coeffs[0], p[node.args[0]]
            if uses.get(node.name, 0) != 1:
                return None
        if isinstance(node, Nonlin):
            if len(node.args) != 1 or node.fn.is_product or node.fn.arity != 1:
                return None
            phi, g = node.fn, node.args[0]
            if uses.get(g, 0) != 1:
                return None
        atoms: dict[str, float] = {}
        if not _flatten(p, g, 1.0, atoms):
            return None
        lin = [a for a in atoms if isinstance(p[a], (MatMul, Embed))]
        biases = [a for a in atoms if isinstance(p[a], Bias)]
        if len(lin) != 1 or len(lin) + len(biases) != len(atoms):
            return None
        if any(uses.get(b, 0) != 1 or b in seen or _masked(p[b]) for b in biases):
            return None
        seen.update(biases)
        beta = sum(atoms[b] ** 2 * p[b].std ** 2 for b in biases)
        mu = sum(p[b].lr * atoms[b] ** 2 * p[b].std ** 2 for b in biases)
        y = p[lin[0]]
        cw = atoms[lin[0]]
        if uses.get(y.name, 0) != 1:
            return None
        if isinstance(y, MatMul):
            W = p[y.matrix]
            if y.transpose or not isinstance(W, Matrix) or uses.get(W.name, 0) != 1 or _masked(W):
                return None
            if uses.get(y.arg, 0) != 1:
                return None
            nxt = y.arg
        else:
            W = p[y.layer]
            if not isinstance(W, InputLayer) or uses.get(W.name, 0) != 1 or _masked(W) \
                    or uses.get(y.data, 0) != 1 or y.step is not None:
                return None
            nxt = None
        a = cw * cw * W.std ** 2
        layers.append(Layer(phi, alpha, a, beta, W.lr * a, mu, node.name if phi is not None else None, g))
        if nxt is None:
            break
        x = nxt
    if _masked(readout):
        return None
    from ..backward import readout_scale
    std_v, lr_v = readout_scale(p, readout)
    o_var = readout.b_std ** 2 if readout.b_std is not None else 0.0
    o_ntk = readout.b_lr * o_var
    return Chain(datas[0].name, tuple(reversed(layers)), std_v ** 2, lr_v * std_v ** 2, o_var, o_ntk,
                 readout.name)


# ---------------------------------------------------------------------------------
# the vectorisable atan2 (its numba form and the kernels are in _fused_jit.py)
# ---------------------------------------------------------------------------------

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
    from . import _fused_jit
    return _fused_jit


def atan2_pos_np(s: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Vectorised :func:`atan2_pos` over arrays (numba), or ``np.arctan2`` without numba."""
    s = np.ascontiguousarray(s, dtype=float).ravel()
    c = np.ascontiguousarray(c, dtype=float).ravel()
    if not USE_NUMBA:
        return np.arctan2(s, c)
    out = np.empty_like(s)
    _jit()._vec_atan2(s, c, out)
    return out


def asin_np(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=float).ravel()
    if not USE_NUMBA:
        return np.arcsin(x)
    out = np.empty_like(x)
    _jit()._vec_asin(x, out)
    return out


# ---------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------

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
    if USE_NUMBA:
        _jit()._mirror(A)
    else:
        _mirror_np(A)


def _finish_np(K, T, ch: Chain, ntk: bool, sym: bool) -> None:
    n1, n2 = K.shape
    rows = max(1, BAND // max(n2, 1))
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
        elif self.kind == "quad" and phi.name in QUAD_FAMILIES and phi.family is REGISTRY.get(phi.name) \
                and (not ntk or self.dphi.family is REGISTRY.get("d" + phi.name)):
            self.kind = "quadfused"
            self.code = QUAD_FAMILIES[phi.name]


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
                from .numeric import _lower
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
        rows = max(1, BAND // max(n2, 1))
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
            rows = max(1, BAND // max(n2, 1))
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
                from .numeric import _lower
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


def fused_kernels(program: Program, readout: Readout, sides, symmetric: bool, settings, wanted,
                  report, dtype="float64"):
    """(nngp, ntk) arrays of a chain program, or None when ``program`` is not a chain.

    Below :data:`SERIAL_BELOW` elements the compiled kernels run on one thread: a parallel
    launch and its barrier cost more than they save there (much more on a loaded machine)."""
    chain = chain_of(program, readout)
    if chain is None:
        return None
    n1 = sides[0].n
    n2 = n1 if symmetric else sides[1].n
    if USE_NUMBA and n1 * n2 < SERIAL_BELOW:
        import numba
        prev = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return _fused_kernels(chain, program, sides, symmetric, settings, wanted, report, dtype)
        finally:
            numba.set_num_threads(prev)
    return _fused_kernels(chain, program, sides, symmetric, settings, wanted, report, dtype)


_ROW_KINDS = {"arccos": 0, "erf": 1, "identity": 2}


def _whole_chain(chain, program, layers, rules, run, K, T, kd1, kd2, ntk: bool, symmetric: bool):
    """Closed-form chains (ReLU family, erf, identity layers): one kernel runs every layer and
    the readout on a row while it is in cache (``_fused_jit._chain``), then one tiled pass
    mirrors the triangle and checks finiteness."""
    J = _jit()
    P = np.empty((len(layers), 8))
    for l, (L, R) in enumerate(zip(layers, rules)):
        if R.kind == "arccos":
            p1, p2 = R.phi.params
        elif R.kind == "erf":
            p1, p2 = R.dphi.params if ntk else (1.0, -1.0)
        else:
            p1 = p2 = 0.0
        P[l] = (L.a, L.beta, L.lam, L.mu, p1, p2, R.alpha2, _ROW_KINDS[R.kind])
    n1, n2 = K.shape
    # D[l]: the per-example K before layer l (the Gram diagonal before the first), for the
    # carried residuals
    if symmetric:
        Q1 = np.empty((len(layers), n1))
        D1 = np.empty((len(layers), n1))
        kd1 = np.diagonal(K).copy()
        J._diag_chain(kd1, P, Q1, ntk, D1)
        Q2, kd2, D2 = Q1, kd1, D1
    else:  # per-example variances as the general evaluator computes them (registry rules)
        Q1, Q2 = np.empty((len(layers), n1)), np.empty((len(layers), n2))
        D1, D2 = np.empty((len(layers), n1)), np.empty((len(layers), n2))
        for l, (L, R) in enumerate(zip(layers, rules)):
            D1[l], D2[l] = kd1, kd2
            Q1[l] = L.a * kd1 + L.beta
            Q2[l] = L.a * kd2 + L.beta
            kd1 = run.diag_layer(R, Q1[l], L.name or f"φ{l + 1}")
            kd2 = run.diag_layer(R, Q2[l], L.name or f"φ{l + 1}")
    # a kernel that leaves float64 (or the float32 storage) is refused at the layer it happens
    # (the off-diagonal entries are bounded by the diagonal ones: |K_ij| <= √(K_ii K_jj))
    for l, L in enumerate(layers):
        check_variance(Q1[l], L.node, K.dtype)
        check_variance(Q2[l], L.node, K.dtype)
    for kd in (kd1, kd2):
        check_variance(chain.v_var * kd + chain.o_var, chain.readout, K.dtype, "NNGP")
    rowcheck = np.empty(n1)
    J._chain(K, T, Q1, Q2, P, ntk, symmetric, chain.v_var, chain.o_var, chain.v_ntk, chain.o_ntk, rowcheck,
             D1, D2)
    if symmetric:
        J._mirror(K)
        if ntk:
            J._mirror(T)
    if not np.all(np.isfinite(rowcheck)):
        check_kernel(program.name, "NNGP", K, K.dtype)
        check_kernel(program.name, "NTK", T if ntk else None, K.dtype)
        raise NumericalError(f"the kernels of {program.name!r} are not finite")  # pragma: no cover
    return K, (T if ntk else None)


def _fused_kernels(chain: Chain, program: Program, sides, symmetric: bool, settings, wanted, report, dtype):
    if np.dtype(dtype) == np.float32:  # float32 storage may overflow: check_kernel names it
        with np.errstate(over="ignore", invalid="ignore"):
            return _fused_kernels_in(chain, program, sides, symmetric, settings, wanted, report, dtype)
    return _fused_kernels_in(chain, program, sides, symmetric, settings, wanted, report, dtype)


def _fused_kernels_in(chain: Chain, program: Program, sides, symmetric: bool, settings, wanted, report, dtype):
    ntk = "ntk" in wanted
    numba_ok = USE_NUMBA
    rules = [_Rules(L, ntk, numba_ok) for L in chain.layers]
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    run = _Run(chain, settings, report, ntk, symmetric, numba_ok)
    xa = sides[0].data[chain.data][:, 0, :]
    xb = xa if symmetric else sides[1].data[chain.data][:, 0, :]
    d = xa.shape[1]
    if dt == np.float32:
        xa32 = xa.astype(np.float32)
        xb32 = xa32 if symmetric else xb.astype(np.float32)
        K = xa32 @ xb32.T
    else:
        with np.errstate(over="ignore"):  # (an overflowing |ξ|² is refused just below)
            K = xa @ xb.T  # a symmetric rank-d update (syrk) when xb is xa
    T = np.empty_like(K) if ntk else np.empty((1, 1), dtype=K.dtype)
    if symmetric:
        kd1 = kd2 = None
        check_norms(np.diagonal(K), d, chain.data, dtype=dt)
        run.g1 = run.g2 = np.diagonal(K).astype(float)  # ⟨ξ, ξ⟩ for the first layer's residual
    else:
        kd1 = np.einsum("id,id->i", xa, xa)
        kd2 = np.einsum("id,id->i", xb, xb)
        check_norms(kd1, d, chain.data, "x1", dt)
        check_norms(kd2, d, chain.data, "x2", dt)
        run.g1, run.g2 = kd1, kd2
    # K holds ⟨ξ, ξ'⟩ (not yet divided by d): the first layer's coefficients take the 1/d
    layers = list(chain.layers)
    f = layers[0]
    layers[0] = Layer(f.phi, f.alpha, f.a / d, f.beta, f.lam / d, f.mu, f.name, f.node)
    if numba_ok and all(R.kind in _ROW_KINDS for R in rules):
        return _whole_chain(chain, program, layers, rules, run, K, T, kd1, kd2, ntk, symmetric)
    for l, (L, R) in enumerate(zip(layers, rules)):
        what = L.name or f"φ{l + 1}"
        prev1, prev2 = (np.diagonal(K).astype(float),) * 2 if symmetric else (kd1, kd2)
        if symmetric:
            q1 = q2 = L.a * np.diagonal(K).astype(float) + L.beta
        else:
            q1 = L.a * kd1 + L.beta
            q2 = L.a * kd2 + L.beta
            kd1 = run.diag_layer(R, q1, what)
            kd2 = run.diag_layer(R, q2, what)
        check_variance(q1, L.node, K.dtype)
        check_variance(q2, L.node, K.dtype)
        if l > 0:  # the last layer's per-example K, for the carried residuals (NumPy path)
            run.g1, run.g2 = prev1, prev2
        run.layer(K, T, np.ascontiguousarray(q1), np.ascontiguousarray(q2), L, R, l == 0, what)
    if numba_ok:
        bad = _jit()._finish(K, T, chain.v_var, chain.o_var, chain.v_ntk, chain.o_ntk, ntk, symmetric)
    else:
        _finish_np(K, T, chain, ntk, symmetric)
        if symmetric:
            mirror(K)
            if ntk:
                mirror(T)
        bad = int(np.count_nonzero(~np.isfinite(K))) + (int(np.count_nonzero(~np.isfinite(T))) if ntk else 0)
    if bad:
        check_kernel(program.name, "NNGP", K, K.dtype)
        check_kernel(program.name, "NTK", T if ntk else None, K.dtype)
        raise NumericalError(f"the kernels of {program.name!r} are not finite")  # pragma: no cover
    return K, (T if ntk else None)
