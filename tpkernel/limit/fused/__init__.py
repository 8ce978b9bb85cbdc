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
import os

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


# the vectorisable atan2's constants (read by the numba kernels of tpkernel.limit._fused_jit) and
# its Python and NumPy forms
from .atan import (_A0, _A1, _A2, _A3, _A4, _A5, _A6, _A7, _A8, _A9, _A10, _DOWN, _HI0, _HI1,  # noqa: F401,E402
                   _LO0, _LO1, _PI_HI, _PI_LO, _PIO2_HI, _PIO2_LO, _UP, INV_TWO_PI, PI, TWO_PI, _jit, asin_np,
                   atan2_pos_np, atan2_pos_py)
from .bands import mirror  # noqa: E402
from .chain import Chain, Layer, chain_of  # noqa: E402
from .front import fused_kernels  # noqa: E402

__all__ = ["BAND", "HAVE_NUMBA", "QUAD_FAMILIES", "SERIAL_BELOW", "USE_NUMBA", "Chain", "Layer", "chain_of",
           "fused_kernels", "mirror", "atan2_pos_py", "atan2_pos_np", "asin_np", "PI", "TWO_PI", "INV_TWO_PI"]
