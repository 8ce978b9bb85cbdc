"""What the drawing needs to know of a program: which vectors are drawn, which sums are fused
into gates, the text inside each gate."""

from __future__ import annotations

import re
from collections.abc import Iterable


from ..backward import Backward
from ..errors import ProgramError
from ..ir import Bias, Data, InputLayer, LinComb, Matrix, Node, Nonlin, Program, Readout
from .notation import _SUB, _sum_text


def _fn_name(node: Nonlin) -> str:
    label = node.fn.label
    return "φ" if label.startswith("<") else label


def _mask_of(node: Node | None):
    """The pruning mask of a matrix, input layer or readout (None when dense)."""
    return None if node is None else getattr(node, "mask", None)


class _View:
    """What is drawn of a program: which linear combinations and derivatives are fused into
    gates, and how derivative gates are labelled (φ′, ∂₁ψ)."""

    def __init__(self, program: Program, forward: set[str], bwd: Backward | None = None,
                 param_grads: bool = False) -> None:
        self.program = program
        self.forward = forward
        self.bwd = bwd
        self.param_grads = param_grads  # draw the gradient sums of shared biases (draw_sgd)
        self.users: dict[str, list[Node]] = {n.name: [] for n in program}
        for n in program:
            for ref in n.inputs:
                self.users[ref].append(n)
        self.deriv_label: dict[tuple, str] = {}
        for u in program.of_type(Nonlin):
            if u.name not in forward or u.fn.family.deriv is None:
                continue
            for m in range(len(u.args)):
                try:
                    d = u.fn.derivative(m)
                except ProgramError:
                    continue
                name = _fn_name(u)
                mark = f"{name}′" if len(u.args) == 1 else f"∂{str(m + 1).translate(_SUB)}{name}"
                try:
                    self.deriv_label.setdefault((d, u.args), mark)
                except TypeError:  # a nonlinearity with unhashable parameters: generic label
                    pass

    def fused_lin(self, name: str) -> bool:
        """A LinComb read only by forward gates is written inside them (φ(·+·)).  One that a
        backward gate reads too (the pre-activation of φ′) is drawn as its own node, so that
        a single curve brings it to the backward gate, as g in the paper's Fig. 6."""
        users = self.users[name]
        forward = name in self.forward
        return isinstance(self.program[name], LinComb) and bool(users) and all(
            isinstance(u, Nonlin) and (u.name in self.forward or not forward) for u in users)

    def fused_factor(self, name: str) -> bool:
        """A backward φ′(h) read only by one product is written inside it (·×φ′(·+·))."""
        users = self.users[name]
        node = self.program[name]
        return (isinstance(node, Nonlin) and not node.fn.is_product and name not in self.forward
                and len(users) == 1 and isinstance(users[0], Nonlin) and users[0].fn.is_product)

    def param_grad(self, name: str) -> bool:
        """The gradient sum db = Σ_t dh_t of a bias shared by several gates: a parameter's
        gradient, read by nothing in the program; not drawn (Fig. 6 draws no dW, db)."""
        if self.bwd is None or self.param_grads or name in self.forward or self.users[name]:
            return False
        owners = [x for x, dx in self.bwd.grads.items() if dx == name]
        return (isinstance(self.program[name], LinComb) and bool(owners)
                and all(isinstance(self.program[x], Bias) for x in owners))

    def drawn(self, name: str) -> bool:
        if isinstance(self.program[name], (Data, InputLayer, Matrix, Readout)):
            return False
        return not (self.fused_lin(name) or self.fused_factor(name) or self.param_grad(name))

    def fn_text(self, node: Nonlin, operands: list[str]) -> str:
        if node.fn.is_product:
            return "×".join(f"({o})" if re.fullmatch(r"[−\d.e]*·([+−][\d.e]*·)+.*", o) else o for o in operands)
        try:
            label = self.deriv_label.get((node.fn, node.args)) if node.name not in self.forward else None
        except TypeError:
            label = None
        return f"{label or _fn_name(node)}({', '.join(operands)})"

    def operand(self, name: str) -> tuple[str, list[str]]:
        """(text, drawn input nodes) of one argument of a gate."""
        node = self.program[name]
        if self.fused_lin(name):
            return _sum_text(node.coeffs, node.const), list(node.args)
        if self.fused_factor(name):
            texts, ins = self.operands(node.args)
            return self.fn_text(node, texts), ins
        return "·", [name]

    def operands(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        texts, ins = [], []
        for a in names:
            t, i = self.operand(a)
            texts.append(t)
            ins += i
        return texts, ins
