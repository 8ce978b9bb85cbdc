"""Counting a drawing's elements by class (what the tests and the docs rely on)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import graphviz



@dataclass
class DrawingSummary:
    """Counts of the elements of a drawing (the legend excluded)."""

    hollow: int = 0  # G-vars ○
    filled: int = 0  # X-vars ●
    gates: int = 0  # Nonlin gates (bar-gates not included)
    moments: int = 0  # bar-gates (NETSOR⊤+ Moment)
    scalars: int = 0  # squares
    dashed: Counter = field(default_factory=Counter)  # MatMul edges per matrix label
    preact: int = 0  # curved edges bringing forward vectors to backward gates
    edges: int = 0  # all visible edges
    gate_labels: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)  # tooltips of the vector and scalar nodes


_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|<(?:[^<>]|<(?:[^<>]|<[^<>]*>)*>)*>|[^\s\]]+)')


def _attrs(line: str) -> dict[str, str]:
    i = line.find("[")
    if i < 0:
        return {}
    out = {}
    for k, v in _ATTR.findall(line[i + 1:]):
        out[k] = v[1:-1].replace('\\"', '"') if v.startswith('"') else v
    return out


def summary(graph: graphviz.Digraph | str) -> DrawingSummary:
    """Count the elements of a drawing from its DOT source (by their ``class``)."""
    src = graph if isinstance(graph, str) else graph.source
    s = DrawingSummary()
    for line in src.splitlines():
        a = _attrs(line)
        cls = a.get("class", "").split()
        if not cls or "legend" in cls:
            continue
        if "->" in line.split("[", 1)[0]:
            if a.get("style") == "invis":
                continue
            s.edges += 1
            s.dashed.update([a.get("tooltip", "")] if "matmul" in cls else [])
            s.preact += "preact" in cls
            continue
        kind, tip = cls[0], a.get("tooltip", "")
        if kind in ("gvar", "xvar", "scalar"):
            s.labels[tip] += 1
        if kind == "gvar":
            s.hollow += 1
        elif kind == "xvar":
            s.filled += 1
        elif kind == "gate":
            s.gates += 1
            s.gate_labels[tip] += 1
        elif kind == "moment":
            s.moments += 1
            s.gate_labels[tip] += 1
        elif kind == "scalar":
            s.scalars += 1
    return s
