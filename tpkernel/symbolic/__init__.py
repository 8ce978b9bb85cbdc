r"""Symbolic formulas: the limiting kernels of a program as sympy recurrences.

Another interpretation of the IR (see DESIGN.md): a vector becomes a sympy expression.
For two inputs ξ, ξ' the interpretation writes, for every vector u of the program,

  Σ[u](ξ, ξ') = E[Z^u(ξ) Z^u(ξ')]          (forward: the NNGP recurrence)
  D[u](ξ, ξ') = E[Z^{du}(ξ) Z^{du}(ξ')]    (backward: du = √n ∂f/∂u, the gradient)

and the kernels as sums over the terms of :mod:`tpkernel.terms`.  The rules are those of the
numeric evaluator, written once in :mod:`tpkernel.limit.theorem`; this package is their
sympy back end (:mod:`.theorem`), the sympy objects and printers (:mod:`.functions`), the
:class:`Formulas` object with its evaluation by lambdify (:mod:`.formulas`) and the docs
page (:mod:`.docs`).

Symbols:

- ``<ξ_t, ξ'_s>/d`` (:class:`Gram`): the input Gram entries, per step pair for sequences;
- ``σ_p``, ``η_p`` (:class:`Param`): std and learning-rate multiplier of parameter ``p``
  (the readout's are ``σ_v``, ``η_v``, its bias ``σ_o``); ``η`` is shown only when ≠ 1;
- ``V[φ,ψ](q1, q2, c)`` (:class:`Expectation`) = E[φ(u)ψ(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]),
  ``V[φ]`` = ``V[φ,φ]``, φ' the derivative; ``M[φ](q)`` = E[φ(u)], u ~ N(0, q); with
  ``closed_form=True`` they are replaced by the registry's closed forms;
- ``c_k(ξ)`` (:class:`PoolWeight`): pooling weights of a readout over sequences of any length.

A vector gets its own line when it is a nonlinearity, a pre-activation (read by a
nonlinearity or the readout) or a sum read by something other than a sum; other linear
vectors are expanded in place, so a residual net prints Σ[x^l] = Σ[x^{l-1}] + σ² Σ[φ(h^l)].
"""

from ..names import latex_name
from .docs import examples_markdown
from .formulas import Formulas, formulas
from .functions import (XI, XI2, D, Equation, Expectation, GaussianIntegral, Gram, Kernel, Mean, Param,
                        PoolWeight, Sigma, expectation, mean)
from .theorem import SymbolicTheorem

__all__ = [
    "XI", "XI2", "D", "Equation", "Expectation", "Formulas", "GaussianIntegral", "Gram", "Kernel", "Mean",
    "Param", "PoolWeight", "Sigma", "SymbolicTheorem", "examples_markdown", "expectation", "formulas",
    "latex_name", "mean",
]
