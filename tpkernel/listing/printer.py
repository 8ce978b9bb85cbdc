"""The listing printer: one line of text per node (the ``listing`` rule table), so that
``parse(program.listing())`` rebuilds the very same nodes."""

from __future__ import annotations

from typing import Callable

from ..ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Node, Nonlin, Program, Readout, Seed
from ..rules import RuleTable

def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def _opts(**kw) -> str:
    parts = [f"{k}={_num(v)}" for k, v in kw.items() if v is not None]
    return (" " + " ".join(parts)) if parts else ""


def _mask_of(node: Node) -> tuple[float | None, bool]:
    """(pruning probability p, rescale) of a node's mask, if the IR has masks."""
    m = getattr(node, "mask", None)
    if m is None:
        return None, False
    if isinstance(m, (int, float)):
        return float(m), bool(getattr(node, "rescale", False))
    p = getattr(m, "p", None)
    if p is None and getattr(m, "q", None) is not None:
        p = 1.0 - m.q
    return (None if p is None else float(p)), bool(getattr(m, "rescale", getattr(node, "rescale", False)))


def _mask_opts(node: Node) -> str:
    p, rescale = _mask_of(node)
    if p is None:
        return ""
    return f" mask={_num(p)}" + (" rescale" if rescale else "")


def _param(kind: str) -> Callable[[Node], str]:
    return lambda n: f"{kind} {n.name}" + _opts(std=n.std, lr=None if n.lr == 1 else n.lr) + _mask_opts(n)


def _lincomb(n: LinComb) -> str:
    terms = []
    for a, c in zip(n.args, n.coeffs):
        sign = "-" if c < 0 else "+"
        mag = abs(c)
        terms.append((sign, a if mag == 1 else f"{_num(mag)}*{a}"))
    if n.const:
        terms.append(("-" if n.const < 0 else "+", _num(abs(n.const))))
    text = ("-" if terms[0][0] == "-" else "") + terms[0][1]
    for sign, t in terms[1:]:
        text += f" {sign} {t}"
    return f"{n.name} = {text}"


def _nonlin(n: Nonlin) -> str:
    fn = n.fn
    if fn.is_product:
        return f"{n.name} = " + " * ".join(n.args)
    return f"{n.name} = {fn.label}({', '.join(n.args)})"


def _readout(n: Readout) -> str:
    head = "readout" + (f"[{n.pool}]" if n.pool else "")
    return (f"{n.name} = {head}({', '.join(n.args)})"
            + _opts(std=None if n.vector else n.std, lr=None if n.lr == 1 else n.lr, b_std=n.b_std,
                    b_lr=None if n.b_lr == 1 else n.b_lr)
            + (f" vector={n.vector}" if n.vector else "") + _mask_opts(n))


#: the listing interpretation: one line of text per node
PRINTERS = RuleTable("listing", {
    Data: lambda n: f"data {n.name}" + (f"[{n.length}]" if n.length is not None else ""),
    InputLayer: _param("input"),
    Matrix: _param("matrix"),
    Bias: _param("bias"),
    Embed: lambda n: f"{n.name} = {n.layer} {n.data}" + (f"[{n.step}]" if n.step is not None else ""),
    MatMul: lambda n: f"{n.name} = {n.matrix}{'^T' if n.transpose else ''} {n.arg}",
    LinComb: _lincomb,
    Nonlin: _nonlin,
    Readout: _readout,
    Seed: lambda n: f"{n.name} = seed({n.readout}, {n.index})",
})

DECLARATIONS = (Data, InputLayer, Matrix, Bias)



def line(node: Node) -> str:
    """One node as one line of the listing."""
    return PRINTERS.rule(node)(node)


def text(program: Program) -> str:
    """The whole program: declarations first (in program order), then instructions."""
    decls = [n for n in program if isinstance(n, DECLARATIONS)]
    instrs = [n for n in program if not isinstance(n, DECLARATIONS)]
    return "\n".join([f"program {program.name}"] + [line(n) for n in decls + instrs]) + "\n"
