r"""Kernels as sums of terms: neutral data that every interpretation contracts.

A network's NNGP and NTK are sums over its trained variables (TP II, §3; SPEC §1):

  Σ(ξ, ξ') = σ_v² q_v Σ_{k,l} c_k c'_l E[x_k x'_l] + σ_o²
  Θ(ξ, ξ') = Σ_W lr σ² q Σ_{uses y=Wz, y'=Wz'} E[dy dy'] E[z z']
             + Σ_U lr σ² s² Σ_{uses y=Uξ_t, y'=Uξ'_s} E[dy dy'] ⟨ξ_t, ξ'_s⟩/d
             + Σ_b lr σ² E[db db'] + lr_v σ_v² q_v Σ c_k c'_l E[x_k x'_l] + lr_o σ_o².

Each summand is a :class:`Term`: the parameter, its kind, its σ, lr and mask, and its
:class:`Use` s (the gradient dy of the use's output, its input z, and the orientation:
y = Wᵀz has ∂f/∂W = z dyᵀ).  :func:`tpkernel.backward.backward` writes the terms once; the
limit (:mod:`tpkernel.limit.kernels`), finite width (:mod:`tpkernel.finite.kernels`), the
formulas (:mod:`tpkernel.symbolic`) and the pruning amplitudes
(:mod:`tpkernel.pruning.scaling`) each contract them with one small table keyed by
:data:`TERM_KINDS` (:func:`contract`); none of them re-derives the uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .errors import MissingRuleError
from .ir import Mask

#: the kinds of terms: a matrix, an input layer, a bias, a readout's vector, a readout's bias
TERM_KINDS = ("matrix", "input", "bias", "readout", "readout_bias")


@dataclass(frozen=True)
class Use:
    """One use y = P z of a parameter P (y = Pᵀ z when ``transpose``): ``grad`` names dy,
    ``input`` names z (a vector; for an input layer, the Embed node whose data step it reads)."""

    grad: str
    input: str
    transpose: bool = False


@dataclass(frozen=True)
class Term:
    """One trained variable's contribution to a kernel: ``coeff`` = lr σ² · ``factor`` times
    the contraction of its uses (``kind`` says which: see :data:`TERM_KINDS`).

    ``factor``: the mask's factor on the coefficient — q for a pruned matrix or readout (1
    when rescaled), s² for a pruned input layer (its q is in the masked Gram), 1 when dense.
    ``grad``: a bias's gradient node.  NNGP terms have lr = 1."""

    param: str
    kind: str
    std: float
    lr: float = 1.0
    mask: Mask | None = None
    uses: tuple[Use, ...] = ()
    grad: str | None = None
    factor: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in TERM_KINDS:
            raise MissingRuleError(f"term of {self.param!r}: unknown kind {self.kind!r} (one of {TERM_KINDS})")

    @property
    def coeff(self) -> float:
        return self.lr * self.std ** 2 * self.factor


def contract(terms: Iterable[Term], table: Mapping[str, Callable[[Term], Any]], interpretation: str,
             start: Any = 0.0) -> Any:
    """Σ_t table[t.kind](t): a kernel assembled by one interpretation's contraction table
    (with a dict ``start`` the contributions are dicts, merged: named contributions)."""
    total = start
    for t in terms:
        rule = table.get(t.kind)
        if rule is None:
            raise MissingRuleError(f"term of {t.param!r}: the {interpretation} interpretation has no contraction "
                                   f"for {t.kind!r} terms")
        total = {**total, **rule(t)} if isinstance(total, dict) else total + rule(t)
    return total
