"""Fully connected chains: the structure the fused path evaluates (``chain_of``)."""

from __future__ import annotations

from dataclasses import dataclass



from ...ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Nonlin, Program, Readout
from ...nonlin import Nonlinearity


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
    from ...backward import readout_scale
    std_v, lr_v = readout_scale(p, readout)
    o_var = readout.b_std ** 2 if readout.b_std is not None else 0.0
    o_ntk = readout.b_lr * o_var
    return Chain(datas[0].name, tuple(reversed(layers)), std_v ** 2, lr_v * std_v ** 2, o_var, o_ntk,
                 readout.name)


