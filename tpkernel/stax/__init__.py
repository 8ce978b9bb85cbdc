r"""neural-tangents-compatible combinators, compiled to tensor programs.

``from tpkernel import stax`` in place of ``from neural_tangents import stax``: every layer
returns ``(init_fn, apply_fn, kernel_fn)`` as in neural-tangents, and combinators compose
them.  Underneath, a network is compiled to a :class:`~tpkernel.ir.Program`
(:func:`program`), so its kernels are computed by the Master Theorem like any other program:

* the first ``Dense`` reading the input is an input layer ``σ_W U ξ/√d (+ σ_b b)``; later
  ``Dense`` layers are n×n matrices ``σ_W W x/√n (+ σ_b b)``; a ``Dense`` that is the last
  layer of the network is the readout ``σ_W vᵀx/√n (+ σ_b β)``;
* a network that does not end in ``Dense`` (e.g. ``serial(Dense(512), Relu())``) is read out
  with a fixed unit vector (``std=1, lr=0``): its kernels are those of one output coordinate,
  as neural-tangents reports them;
* ``Erf(a, b, c)`` is ``a·erf(b·x) + c``, ``Sigmoid_like()`` is ``0.5·erf(x/2.4020563531719796) + 0.5``,
  ``Sin(a, b, c)`` is ``a·sin(b·x + c)``, ``Cos(a, b, c) = Sin(a, b, c + π/2)``, ``Exp(a, b)`` is
  ``a·exp(b·x)``, ``Gaussian(a, b)`` is ``a·exp(b·x²)``, ``Rbf(γ)`` is
  ``√2·sin(√(2γ)·x + π/4)``, ``Monomial(k)`` is ``x^k``, ``Polynomial(c)`` is ``Σ c_k x^k``:
  linear maps stay linear combinations, so they cost no integral;
* ``FanOut`` copies a value (the *same* vector), ``parallel`` runs layers side by side,
  ``FanInSum`` adds (a linear combination), ``FanInProd`` multiplies (the product
  nonlinearity), ``FanInConcat`` concatenates channels (a following ``Dense`` reads each
  part with its own block of weights, scaled by the part's share of the width).

**Where tpkernel differs from neural-tangents on purpose.**  neural-tangents propagates one
kernel per branch and assumes that the inputs of a fan-in are independent and that the
input of a nonlinearity is Gaussian.  The Master Theorem needs neither: tpkernel computes
the exact limit when branches are correlated — two nonlinearities in a row (neural-tangents
raises ``ValueError``), ``FanInSum`` of a non-Gaussian skip connection (neural-tangents
raises ``NotImplementedError``), ``FanInSum``/``FanInProd`` of branches that read the same
vector without an independent ``Dense`` in between (neural-tangents silently returns the
kernel of independent branches, e.g. ``2K`` instead of ``4K`` for ``x + x``).  See
``docs/stax.md``; the tests check these cases against independent quadrature over the
Gaussian atoms and against finite-width networks.

``ElementwiseNumerical(fn, deg)`` integrates ``fn`` with tpkernel's adaptive quadrature
(converged to ~1e-11), not with ``deg`` Gauss-Hermite nodes; ``deg`` is accepted and
ignored.  ``Elementwise(fn, nngp_fn, d_nngp_fn)`` uses the given closed forms for
expectations over one Gaussian pair, and ``fn`` (by quadrature) wherever the closed form does
not apply.  ``LayerNorm`` and the convolutional / pooling / attention layers raise
:class:`UnsupportedLayerError`.
"""

from .combinators import FanInConcat, FanInProd, FanInSum, FanOut, parallel, repeat, serial
from .core import Kernel, Layer, UnsupportedLayerError, program
from .dense import Dense, Identity
from .elementwise import (ABRelu, Abs, Cos, Elementwise, ElementwiseNumerical, Erf, Exp, Gaussian, Gelu, LeakyRelu,
                          Monomial, Polynomial, Rbf, Relu, Sigmoid_like, Sin)
from .unsupported import LayerNorm, __getattr__  # noqa: F401  (stax.Conv & co. raise UnsupportedLayerError)

__all__ = [
    "serial", "parallel", "repeat", "Dense", "Identity", "Relu", "ABRelu", "LeakyRelu", "Abs", "Erf",
    "Sigmoid_like", "Gelu", "Sin", "Cos", "Exp", "Gaussian", "Rbf", "Monomial", "Polynomial",
    "Elementwise", "ElementwiseNumerical", "FanOut", "FanInSum", "FanInProd", "FanInConcat", "LayerNorm",
    "program", "Kernel", "Layer", "UnsupportedLayerError",
]
