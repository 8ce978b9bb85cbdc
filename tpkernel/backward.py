r"""The backward program: Program → gradient program (NETSOR⊤), built once.

For a readout f and every forward vector x the transformation writes the node ``dx``
holding √n·∂f/∂x (coordinates of order 1 in NTK parametrization):

- readout f = σ_v vᵀ x/√n:    dx += Seed (= σ_v v, times the pooling weight c(t));
- MatMul y = W x:            dx += Wᵀ dy           (y = Wᵀ x gives dx += W dy);
- LinComb u = Σ c_k x_k:     dx_k += c_k du;
- Nonlin u = φ(x_1..x_k):    dx_m += du ⊙ ∂_mφ(x_1..x_k)  (for a product, the other factors).

Every interpretation reads forward and backward nodes alike.  The NTK is the sum over
parameter uses (:class:`NTKTerm`):

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

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from .errors import ProgramError
from .ir import Bias, Embed, InputLayer, LinComb, Mask, MatMul, Matrix, Nonlin, Program, Readout, Seed, mask_of
from .nonlin import get as get_nonlin


@dataclass(frozen=True)
class NTKTerm:
    """One parameter's contribution to the NTK.

    ``kind`` is "matrix" (uses: pairs (dy, z)), "input" (uses: pairs (dy, embed)),
    "bias" (grad: db), "readout" (the readout's own vector) or "readout_bias".
    """

    param: str
    kind: str
    coeff: float  # lr · σ² (· q for a masked matrix or readout, · s² for a masked input layer)
    uses: tuple[tuple[str, str], ...] = ()
    grad: str | None = None
    mask: Mask | None = None  # the parameter's pruning mask


@dataclass(frozen=True)
class Backward:
    program: Program  # forward nodes, then backward nodes
    readout: str
    grads: Mapping[str, str]  # forward vector -> its gradient node
    terms: tuple[NTKTerm, ...]


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


def backward(program: Program, output: str | None = None) -> Backward:
    """Build the gradient program of ``program`` for readout ``output``."""
    program.validate()
    r = pick_readout(program, output)
    out = program.copy(program.name + "_grad")
    forward = [n for n in program if n.is_vector]
    grads: dict[str, str] = {}

    def fresh_grad(name: str) -> str:
        g = "d" + name
        return g if g not in out else out.fresh(g + "_")

    for x in reversed(forward):
        contribs: list[tuple[str, float]] = []
        for k, a in enumerate(r.args):
            if a == x.name:
                contribs.append((out.add(Seed(out.fresh(f"d{r.name}_"), r.name, k)).name, 1.0))
        for u in program.consumers(x.name):
            du = grads.get(u.name)
            if du is None:
                continue
            if isinstance(u, MatMul):
                node = MatMul(out.fresh("dh"), u.matrix, du, not u.transpose)
                contribs.append((out.add(node).name, 1.0))
            elif isinstance(u, LinComb):
                contribs += [(du, c) for a, c in zip(u.args, u.coeffs) if a == x.name]
            elif isinstance(u, Nonlin):
                for m, a in enumerate(u.args):
                    if a != x.name:
                        continue
                    if u.fn.name == "prod":
                        others = u.args[:m] + u.args[m + 1:]
                    else:
                        deriv = Nonlin(out.fresh("dphi"), u.fn.derivative(m), u.args)
                        others = (out.add(deriv).name,)
                    node = Nonlin(out.fresh("dx"), get_nonlin("prod", arity=1 + len(others)), (du,) + others)
                    contribs.append((out.add(node).name, 1.0))
        if not contribs:
            continue
        if len(contribs) == 1 and contribs[0][1] == 1.0:
            grads[x.name] = contribs[0][0]
        else:
            names = tuple(c[0] for c in contribs)
            node = LinComb(fresh_grad(x.name), names, tuple(c[1] for c in contribs))
            grads[x.name] = out.add(node).name

    terms: list[NTKTerm] = []
    for p in program.params:
        coeff = p.lr * p.std ** 2
        if isinstance(p, (Matrix, InputLayer)):
            kind = "matrix" if isinstance(p, Matrix) else "input"
            uses = tuple((grads[y.name], y.arg if isinstance(y, MatMul) else y.name)
                         for y in program.consumers(p.name)
                         if isinstance(y, (MatMul, Embed)) and y.name in grads)
            m = mask_of(p)
            if m is not None:
                # kept weights only: a matrix's sum over its n² entries keeps a fraction q of them;
                # an input layer's q comes from its (conditional) masked Gram ⟨ξ_S, ξ'_S⟩/d
                coeff *= m.factor if kind == "matrix" else m.scale2
            if uses and coeff:
                terms.append(NTKTerm(p.name, kind, coeff, uses, mask=m))
        elif isinstance(p, Bias) and p.name in grads and coeff:
            terms.append(NTKTerm(p.name, "bias", coeff, grad=grads[p.name]))
    std_v, lr_v = readout_scale(program, r)
    m = mask_of(r)
    if lr_v * std_v ** 2:
        terms.append(NTKTerm(r.vector or r.name, "readout", lr_v * std_v ** 2 * (m.factor if m else 1.0),
                             mask=m))
    if r.b_std is not None and r.b_lr * r.b_std ** 2:
        terms.append(NTKTerm(r.name, "readout_bias", r.b_lr * r.b_std ** 2))
    return Backward(out, r.name, MappingProxyType(grads), tuple(terms))
