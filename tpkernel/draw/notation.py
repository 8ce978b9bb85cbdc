"""The notation's constants and its text: HTML labels with a plain-text twin (names with the
papers' indices, data symbols, coefficients of sums)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass


from ..names import DRAW_NAME, SUB, SUP, UNICODE_GREEK


_PORTS = {"LR": ("w", "e"), "RL": ("e", "w"), "TB": ("n", "s"), "BT": ("s", "n")}
# gate polygons with the wide side on the input side: (forward, mirrored)
_GATE_SHAPE = {
    "LR": ({"shape": "trapezium", "orientation": "270"}, {"shape": "trapezium", "orientation": "90"}),
    "RL": ({"shape": "trapezium", "orientation": "90"}, {"shape": "trapezium", "orientation": "270"}),
    "TB": ({"shape": "invtrapezium"}, {"shape": "trapezium"}),
    "BT": ({"shape": "trapezium"}, {"shape": "invtrapezium"}),
}

FONT = "DejaVu Sans"
GREEN = "#4a7f2c"  # the paper's forward → backward arrow
PRUNED = "#b2182b"  # pruned (masked) matrices
DOT = "0.17"  # diameter of a vector node, inches

_GREEK, _SUP, _SUB, _NAME = UNICODE_GREEK, SUP, SUB, DRAW_NAME
_TILDE = "\u0303"


# -- text ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Text:
    """A label in two forms: graphviz HTML (italics, <SUP>, <SUB>) and plain unicode."""

    html: str
    plain: str

    def __add__(self, other: _Text | str) -> _Text:
        o = _Text(html.escape(other), other) if isinstance(other, str) else other
        return _Text(self.html + o.html, self.plain + o.plain)

    def __radd__(self, other: str) -> _Text:
        return _Text(html.escape(other) + self.html, other + self.plain)

    def tilde(self) -> _Text:
        """The same symbol for the test example: a tilde on its first letter (x̃₁)."""
        h = self.html.replace("</I>", _TILDE + "</I>", 1) if "<I>" in self.html else self.html + _TILDE
        return _Text(h, self.plain[:1] + _TILDE + self.plain[1:])


def _t(s: str, italic: bool = False) -> _Text:
    h = html.escape(s)
    return _Text(f"<I>{h}</I>" if italic else h, s)


def _sub(s: str) -> _Text:
    return _Text(f"<SUB>{html.escape(s)}</SUB>", s.translate(_SUB))


def _name(name: str, vector: bool = False) -> _Text:
    """``W2`` → W² (parameters: superscript layer index, as in the paper's W², b¹);
    ``x1`` → x₁ (vectors: subscript); ``Wz`` → W_z; ``W1a`` → W¹ᵃ; ``xi`` → ξ; anything
    else verbatim (in italics)."""
    if name in _GREEK:
        return _t(_GREEK[name])
    m = _NAME.match(name)
    if not m:
        return _t(name, italic=True)
    base, letter, index = m.groups()
    out = _t(base, italic=True)
    if letter:
        out = out + _Text(f"<SUB>{letter}</SUB>", "_" + letter)
    if index:
        tag = "SUB" if vector else "SUP"
        out = out + _Text(f"<{tag}>{html.escape(index)}</{tag}>", index.translate(_SUB if vector else _SUP))
    return out


def _data(name: str, step: int | None, tilde: bool = False) -> _Text:
    """ξ, ξ² (step 1 of a sequence is ξ¹, as in the paper), ξ̃ for the test example."""
    sym = _GREEK.get(name, name) + (_TILDE if tilde else "")
    t = _t(sym, italic=True)
    if step is not None:
        t = t + _Text(f"<SUP>{step + 1}</SUP>", str(step + 1).translate(_SUP))
    return t


def _coeff(c: float) -> str:
    if c == 1.0:
        return ""
    if c == -1.0:
        return "−"
    return f"{c:g}".replace("-", "−")


def _sum_text(coeffs: Iterable[float], const: float = 0.0) -> str:
    """``·+·``, ``·−·``, ``2·+·``, ``·+·+0.5``: a linear combination, one ``·`` per input."""
    out = ""
    for k, c in enumerate(coeffs):
        term = _coeff(c) + "·"
        if k and not term.startswith("−"):
            out += "+"
        out += term
    if const:
        out += f"{const:+g}".replace("-", "−")
    return out


def _wrap(text: str, width: int = 7) -> list[str]:
    """Gates are drawn tall and narrow: ``relu(·+·)`` becomes ``relu`` over ``(·+·)``;
    ``(·+·)×erf′(·+·)`` three lines (breaks after ``×`` and before a call's parenthesis)."""
    if len(text) <= width:
        return [text]
    pieces, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(" and depth == 0 and cur and cur[-1] not in "×(+−·":
            pieces.append(cur)
            cur = ""
        cur += ch
        depth += ch == "("
        depth -= ch == ")"
        if ch == "×" and depth == 0:
            pieces.append(cur)
            cur = ""
    pieces.append(cur)
    lines: list[str] = []
    for p in pieces:
        if lines and len(lines[-1]) + len(p) <= width and not lines[-1].endswith("×"):
            lines[-1] += p
        else:
            lines.append(p)
    return [x for x in lines if x]
