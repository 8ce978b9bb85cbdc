r"""The backward program: Program → gradient program (NETSOR⊤), built once.

For a readout f and every forward vector x the transformation writes the node ``dx``
holding √n·∂f/∂x (coordinates of order 1 in NTK parametrization):

- readout f = σ_v vᵀ x/√n:    dx += Seed (= σ_v v, times the pooling weight c(t));
- MatMul y = W x:            dx += Wᵀ dy           (y = Wᵀ x gives dx += W dy);
- LinComb u = Σ c_k x_k:     dx_k += c_k du;
- Nonlin u = φ(x_1..x_k):    dx_m += du ⊙ ∂_mφ(x_1..x_k)  (for a product, the other factors).

Every interpretation reads forward and backward nodes alike.  The NTK is the sum over
parameter uses (:class:`~tpkernel.terms.Term`, one per trained variable):

  Θ = Σ_W lr σ² Σ_{(y=Wz),(y'=Wz')} E[dy dy'] E[z z'] + Σ_U lr σ² Σ E[dy dy'] ⟨ξ,ξ'⟩/d
      + Σ_b lr σ² E[db db'] + lr_v σ_v² E[x x'] + lr_o σ_o².

A masked parameter (random pruning, :class:`~tpkernel.ir.Mask`) has gradients on its kept
weights only: the sum over its entries keeps a fraction q of them, so its coefficient is
lr σ² q (lr σ² with rescaling) for a matrix or readout; for an input layer the fraction is
the masked Gram ⟨ξ_S, ξ'_S⟩/d of each row's kept coordinates S, averaged by the evaluator,
and the coefficient is lr σ² s² (s² = 1/q with rescaling, else 1).

BP-likeness (Tensor Programs II, Def. A.3) is what makes the limit of this sum computable
with W and Wᵀ treated as independent matrices; :meth:`Program.validate` enforces it and
raises :class:`NotBPLikeError` naming the node otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from .errors import ProgramError
from .ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Nonlin, Program, Readout, Seed, mask_of
from .nonlin import product
from .rules import RuleTable
from .terms import Term, Use


@dataclass(frozen=True)
class Backward:
    program: Program  # forward nodes, then backward nodes
    readout: str
    grads: Mapping[str, str]  # forward vector -> its gradient node
    terms: tuple[Term, ...]  # the NTK's terms (trained variables with lr σ² ≠ 0)
    nngp_terms: tuple[Term, ...] = ()  # the NNGP's terms (the readout and its bias)
    uses: Mapping[str, tuple[Use, ...]] = field(default_factory=dict)  # every matrix and input layer's uses


def readout_scale(program: Program, r: Readout) -> tuple[float, float]:
    """(σ_v, lr_v) of a readout: its own, or those of the initial vector it names."""
    if r.vector is not None:
        v = program[r.vector]
        return v.std, v.lr
    return r.std, r.lr


def pick_readout(program: Program, output: str | None = None) -> Readout:
    outs = program.readouts
    if output is not None:
        node = program[output]
        if not isinstance(node, Readout):
            raise ProgramError(f"{output!r} is not a readout of program {program.name!r}")
        return node
    if len(outs) != 1:
        names = ", ".join(r.name for r in outs)
        raise ProgramError(f"program {program.name!r} has {len(outs)} readouts ({names}); pick one with output=")
    return outs[0]


class _Grad:
    """The gradient program under construction: ``out`` (forward nodes, then backward ones),
    the readout, and the gradient node of each forward vector done so far."""

    def __init__(self, program: Program, r: Readout) -> None:
        self.out = program.copy(program.name + "_grad")
        self.r = r
        self.grads: dict[str, str] = {}

    def add(self, node) -> str:
        return self.out.add(node).name

    def fresh(self, prefix: str) -> str:
        return self.out.fresh(prefix)


# -- the backward interpretation: local derivative (transpose) rules -------------------
# A rule (g, u, x) returns the contributions (node, coefficient) of consumer u to dx,
# the gradient of its argument x, given g.grads[u] (the rule reads it when it needs it).

def _vjp_none(g: _Grad, u, x: str) -> list[tuple[str, float]]:
    """Nodes that read no vector (data, parameters, embeddings, seeds)."""
    return []


def _vjp_readout(g: _Grad, u: Readout, x: str) -> list[tuple[str, float]]:
    if u.name != g.r.name:  # another output: not differentiated here
        return []
    return [(g.add(Seed(g.fresh(f"d{u.name}_"), u.name, k)), 1.0) for k, a in enumerate(u.args) if a == x]


def _vjp_matmul(g: _Grad, u: MatMul, x: str) -> list[tuple[str, float]]:
    du = g.grads.get(u.name)
    if du is None:
        return []
    return [(g.add(MatMul(g.fresh("dh"), u.matrix, du, not u.transpose)), 1.0)]


def _vjp_lincomb(g: _Grad, u: LinComb, x: str) -> list[tuple[str, float]]:
    du = g.grads.get(u.name)
    if du is None:
        return []
    return [(du, c) for a, c in zip(u.args, u.coeffs) if a == x]


def _vjp_nonlin(g: _Grad, u: Nonlin, x: str) -> list[tuple[str, float]]:
    du = g.grads.get(u.name)
    if du is None:
        return []
    out = []
    for m, a in enumerate(u.args):
        if a != x:
            continue
        if u.fn.is_product:
            others = u.args[:m] + u.args[m + 1:]
        else:
            others = (g.add(Nonlin(g.fresh("dphi"), u.fn.derivative(m), u.args)),)
        prod = product(1 + len(others))
        out.append((g.add(Nonlin(g.fresh("dx"), prod, (du,) + others)), 1.0))
    return out


#: the backward interpretation: how each node passes gradients to the vectors it reads
VJP = RuleTable("backward", {
    Data: _vjp_none, InputLayer: _vjp_none, Matrix: _vjp_none, Bias: _vjp_none, Embed: _vjp_none,
    Seed: _vjp_none, MatMul: _vjp_matmul, LinComb: _vjp_lincomb, Nonlin: _vjp_nonlin, Readout: _vjp_readout,
})


# -- the terms of the kernels ----------------------------------------------------------

def _uses(program: Program, param: str, grads: Mapping[str, str]) -> tuple[Use, ...]:
    """The uses y = P z (MatMul) or y = U ξ_t (Embed) of a matrix or input layer."""
    out = []
    for y in program.consumers(param):
        if y.name not in grads:
            continue
        if isinstance(y, MatMul):
            out.append(Use(grads[y.name], y.arg, y.transpose))
        elif isinstance(y, Embed):
            out.append(Use(grads[y.name], y.name))
    return tuple(out)


def readout_terms(program: Program, r: Readout, ntk: bool) -> list[Term]:
    """The readout's vector and bias terms (of the NTK, or with lr = 1 of the NNGP)."""
    std_v, lr_v = readout_scale(program, r)
    m = mask_of(r)
    out = [Term(r.vector or r.name, "readout", std_v, lr_v if ntk else 1.0, m, factor=m.factor if m else 1.0)]
    if r.b_std is not None:
        out.append(Term(r.name, "readout_bias", r.b_std, r.b_lr if ntk else 1.0))
    return [t for t in out if t.coeff]


def ntk_terms(program: Program, r: Readout, grads: Mapping[str, str],
              uses: Mapping[str, tuple[Use, ...]]) -> tuple[Term, ...]:
    terms: list[Term] = []
    for p in program.params:
        m = mask_of(p)
        if isinstance(p, (Matrix, InputLayer)):
            kind = "matrix" if isinstance(p, Matrix) else "input"
            # kept weights only: a matrix's sum over its n² entries keeps a fraction q of them;
            # an input layer's q comes from its (conditional) masked Gram ⟨ξ_S, ξ'_S⟩/d
            factor = 1.0 if m is None else (m.factor if kind == "matrix" else m.scale2)
            t = Term(p.name, kind, p.std, p.lr, m, uses[p.name], factor=factor)
            if t.uses and t.coeff:
                terms.append(t)
        elif isinstance(p, Bias) and p.name in grads:
            t = Term(p.name, "bias", p.std, p.lr, grad=grads[p.name])
            if t.coeff:
                terms.append(t)
    return tuple(terms) + tuple(readout_terms(program, r, ntk=True))


def backward(program: Program, output: str | None = None) -> Backward:
    """Build the gradient program of ``program`` for readout ``output``, and the terms of its
    NTK and NNGP.  Forward vectors are visited in reverse program order (no recursion)."""
    program.validate()
    r = pick_readout(program, output)
    g = _Grad(program, r)
    out = g.out
    for x in reversed([n for n in program if n.is_vector]):
        contribs: list[tuple[str, float]] = []
        users = sorted(program.consumers(x.name), key=lambda u: u.name != r.name)  # the readout's seeds first
        for u in users:
            contribs += VJP.rule(u)(g, u, x.name)
        if not contribs:
            continue
        if len(contribs) == 1 and contribs[0][1] == 1.0:
            g.grads[x.name] = contribs[0][0]
        else:
            name = "d" + x.name
            name = name if name not in out else out.fresh(name + "_")
            node = LinComb(name, tuple(c[0] for c in contribs), tuple(c[1] for c in contribs))
            g.grads[x.name] = out.add(node).name
    grads = MappingProxyType(g.grads)
    uses = MappingProxyType({p.name: _uses(program, p.name, grads) for p in program.of_type(Matrix, InputLayer)})
    return Backward(out, r.name, grads, ntk_terms(program, r, grads, uses),
                    tuple(readout_terms(program, r, ntk=False)), uses)
