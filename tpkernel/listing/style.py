"""The program in the algorithm style of the Tensor Programs papers (unicode or LaTeX)."""

from __future__ import annotations

import re

from ..ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Node, Nonlin, Program, Readout, Seed
from ..names import pretty
from ..rules import RuleTable
from .printer import DECLARATIONS, _mask_of, _num

_pretty = pretty


def _vtypes(program: Program) -> dict[str, str]:
    """G (Gaussian: initial vectors, MatMuls and their centred linear combinations) or X for
    every vector, in one pass in program order."""
    from ..limit.theorem import Structure
    return {u: "G" if g else "X" for u, g in Structure(program).gaussian.items()}


def _rhs_embed(node: Embed, P, tex: bool) -> str:
    gap = "\\," if tex else " "
    return f"{P(node.layer)}{gap}{P(node.data)}" + (
        (f"_{{{node.step}}}" if tex else f"[{node.step}]") if node.step is not None else "")


def _rhs_matmul(node: MatMul, P, tex: bool) -> str:
    t = (r"^{\top}" if tex else "ᵀ") if node.transpose else ""
    return f"{P(node.matrix)}{t} {P(node.arg)}" if not tex else f"{P(node.matrix)}{t}\\,{P(node.arg)}"


def _rhs_lincomb(node: LinComb, P, tex: bool) -> str:
    parts = []
    for a, c in list(zip(node.args, node.coeffs)) + ([(None, node.const)] if node.const else []):
        mag = abs(c)
        space = "\\," if tex else " "
        body = _num(mag) if a is None else (P(a) if mag == 1 else f"{_num(mag)}{space}{P(a)}")
        parts.append(("-" if c < 0 else "+", body))
    text = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    return text + "".join(f" {s} {b}" for s, b in parts[1:])


def _rhs_nonlin(node: Nonlin, P, tex: bool) -> str:
    if node.fn.is_product:
        return (r" \odot " if tex else " ⊙ ").join(P(a) for a in node.args)
    label = node.fn.label
    if tex:
        m = re.match(r"^(\w+)(?:\[(.*)\])?$", label)
        fname, params = (m.group(1), m.group(2)) if m else (label, None)
        label = r"\mathrm{%s}" % fname.replace("_", r"\_") + (f"_{{{params}}}" if params else "")
    return f"{label}({', '.join(P(a) for a in node.args)})"


def _rhs_seed(node: Seed, P, tex: bool) -> str:
    return (r"\mathrm{seed}" if tex else "seed") + f"({P(node.readout)}, {node.index})"


#: the algorithm-style rendering (:func:`render`): the right-hand side of each instruction
#: (declarations and readouts are written by :func:`render` itself)
ALGORITHM = RuleTable("algorithm style", {
    Embed: _rhs_embed, MatMul: _rhs_matmul, LinComb: _rhs_lincomb, Nonlin: _rhs_nonlin, Seed: _rhs_seed,
}, exempt={Data: "a declaration", InputLayer: "a declaration", Matrix: "a declaration",
           Bias: "a declaration", Readout: "written as the program's output line"})


def _rhs(node: Node, style: str) -> str:
    return ALGORITHM.rule(node)(node, lambda s: _pretty(s, style), style == "latex")


def render(program: Program, style: str = "unicode") -> str:
    """The program in the algorithm style of the Tensor Programs papers.

    ``"unicode"``: plain text with ξ, superscript layer indices, ``:=`` and the variable types
    ``G(n)`` (Gaussian: initial vectors, MatMuls and their linear combinations),
    ``X(n)`` (images of nonlinearities) and ``A(n, n)`` (matrices).  ``"latex"``: the same as
    an ``array`` environment (MathJax / KaTeX / amsmath).
    """
    if style not in ("unicode", "latex"):
        raise ValueError(f"style must be 'text', 'unicode' or 'latex', got {style!r}")
    tex = style == "latex"
    P = lambda s: _pretty(s, style)  # noqa: E731
    vtypes = _vtypes(program)
    G = (lambda t: r"\mathsf{%s}(n)" % t) if tex else (lambda t: f"{t}(n)")
    sig = r"\sigma" if tex else "σ"

    def params(n) -> str:
        out = f"{sig}={_num(n.std)}"
        if n.lr != 1:
            out += f", lr={_num(n.lr)}"
        p, rescale = _mask_of(n)
        if p is not None:
            out += f", mask p={_num(p)}" + (" (rescaled)" if rescale else "")
        return out

    inputs: list[tuple[str, str]] = []
    for n in program:
        if isinstance(n, Data):
            if tex:
                what = P(n.name) + (r"_{0..%d}" % (n.length - 1) if n.length else "") + r" \in \mathbb{R}^{d}"
            else:
                what = P(n.name) + (f"[0..{n.length - 1}]" if n.length else "") + " ∈ ℝᵈ"
            inputs.append((what, r"\text{data}" if tex else "data"))
        elif isinstance(n, InputLayer):
            shape = r"\mathbb{R}^{n\times d}" if tex else "ℝⁿˣᵈ"
            inputs.append((f"{P(n.name)} : {shape}", (r"\text{input layer, }" if tex else "input layer, ") + params(n)))
        elif isinstance(n, Matrix):
            shape = r"\mathsf{A}(n, n)" if tex else "A(n, n)"
            inputs.append((f"{P(n.name)} : {shape}",
                           (r"\text{matrix, }" if tex else "matrix, ") + params(n)))
        elif isinstance(n, Bias):
            inputs.append((f"{P(n.name)} : {G('G')}", (r"\text{initial vector, }" if tex else "initial vector, ")
                           + params(n)))
    body: list[tuple[str, str, str]] = []
    outputs: list[tuple[str, str]] = []
    for n in program:
        if isinstance(n, DECLARATIONS):
            continue
        if isinstance(n, Readout):
            v = P(n.vector) if n.vector else "v"
            x = ", ".join(P(a) for a in n.args)
            pool = {"last": "last", "mean": "mean"}.get(n.pool or "", "")
            if tex:
                expr = f"{P(n.name)} := {v}^{{\\top}} {x} / \\sqrt{{n}}" if not pool else \
                    f"{P(n.name)} := \\mathrm{{{pool}}}_t\\, {v}^{{\\top}} ({x}) / \\sqrt{{n}}"
            else:
                expr = f"{P(n.name)} := {v}ᵀ{x} / √n" if not pool else f"{P(n.name)} := {pool}ₜ {v}ᵀ({x}) / √n"
            note = "" if n.vector else f"{sig}_v={_num(n.std)}"
            if n.lr != 1:
                note += f", lr={_num(n.lr)}"
            if n.b_std is not None:
                note += f", {sig}_o={_num(n.b_std)}" + ("" if tex else " (+σ_o β)")
            p_mask, rescale = _mask_of(n)
            if p_mask is not None:
                note += f", mask p={_num(p_mask)}" + (" (rescaled)" if rescale else "")
            outputs.append((expr, note.lstrip(", ")))
            continue
        typ = G(vtypes[n.name])
        body.append((P(n.name), _rhs(n, style), typ))
    width = max([len(f"{a} := {b}") for a, b, _ in body] + [0])
    if tex:
        rows = [r"\begin{array}{lll}"]
        rows.append(r"\textbf{Program}\ \mathrm{%s} & & \\" % program.name.replace("_", r"\_"))
        for i, (what, note) in enumerate(inputs):
            rows.append((r"\textbf{Input:}" if i == 0 else "") + f" & {what} & {note}\\\\")
        for k, (lhs, rhs, typ) in enumerate(body, 1):
            rows.append(f"{k}: & {lhs} := {rhs} & : {typ}\\\\")
        for i, (expr, note) in enumerate(outputs):
            rows.append((r"\textbf{Output:}" if i == 0 else "") + f" & {expr} & {note}\\\\")
        rows.append(r"\end{array}")
        return "\n".join(rows) + "\n"
    iw = max([len(w) for w, _ in inputs] + [0])
    lines = [f"Program {program.name}"]
    for i, (what, note) in enumerate(inputs):
        lines.append(f"{'Input:' if i == 0 else '':8s}{what:{iw}s}   {note}")
    nw = len(str(len(body)))
    for k, (lhs, rhs, typ) in enumerate(body, 1):
        lines.append(f"{k:>{nw + 2}d}: " + f"{lhs} := {rhs}".ljust(width) + f"  : {typ}")
    for i, (expr, note) in enumerate(outputs):
        lines.append(f"{'Output:' if i == 0 else '':8s}{expr}" + (f"   ({note})" if note else ""))
    return "\n".join(lines) + "\n"
