"""The legend of the notation."""

from __future__ import annotations

from collections.abc import Iterable

import graphviz

from .notation import DOT, FONT, PRUNED, _GATE_SHAPE, _PORTS


def _legend(g: graphviz.Digraph, rankdir: str, extra: Iterable[str] = (), after: str | None = None) -> None:
    """The paper's legend box: G-var, X-var, Nonlin, MatMul (+ backward gate, M⊙W, scalar,
    Moment).  Each row is a real element of the notation (two columns: a MatMul is two
    nodes) followed by its text; the box is placed after ``after``, to the right of the
    drawing, so that its texts do not widen the drawing's columns."""
    extra = set(extra)
    L = {"class": "legend"}
    out = _PORTS[rankdir][1]
    with g.subgraph(name="cluster_legend") as c:
        c.attr(label="Legend", style="solid", color="black", fontname=FONT, fontsize="11", margin="8",
               peripheries="1")
        rows: list[tuple[str, str, str]] = []

        def vec(nid: str, filled: bool) -> str:
            c.node(nid, label="", shape="circle", width=DOT, height=DOT, fixedsize="true", style="filled",
                   fillcolor="black" if filled else "white", **L)
            return nid

        def gate(nid: str, mirrored: bool = False, label: str = "φ") -> str:
            c.node(nid, label=label, margin="0.02", height="0.40", width="0.34", fontsize="10",
                   **_GATE_SHAPE[rankdir][1 if mirrored else 0], **L)
            return nid

        def square(nid: str) -> str:
            c.node(nid, label="", shape="square", width="0.15", height="0.15", fixedsize="true", **L)
            return nid

        def row(first: str, second: str | None, words: str) -> None:
            k = len(rows)
            if second is None:
                second = f"legend/pad{k}"
                c.node(second, label="", shape="point", width="0.01", style="invis", **L)
            text = f"legend/text{k}"
            c.node(text, label=words, shape="plaintext", fontsize="10", margin="0.02,0", height="0.3", **L)
            rows.append((first, second, text))

        row(vec("legend/g", False), None, "G-var")
        row(vec("legend/x", True), None, "X-var")
        row(gate("legend/gate"), None, "Nonlin")
        row(vec("legend/m1", True), vec("legend/m2", False), "MatMul")
        c.edge("legend/m1", "legend/m2", style="dashed", **L)
        if "pruned" in extra:
            row(vec("legend/p1", True), vec("legend/p2", False), "by a pruned M⊙W")
            c.edge("legend/p1", "legend/p2", style="dashed", color=PRUNED, **L)
        if "backward" in extra:
            row(gate("legend/bg", mirrored=True, label=""), None, "backward Nonlin")
        if "scalars" in extra:
            row(square("legend/s"), None, "scalar")
            row(gate("legend/mo", label="ψ"), square("legend/mos"), "Moment")
            c.edge("legend/mo", "legend/mos", dir="both", arrowtail="tee", arrowsize="2.4", tailport=out, **L)
        for col in range(3):
            with c.subgraph() as s:
                s.attr(rank="same")
                for r in rows:
                    s.node(r[col])
        for k, r in enumerate(rows):
            for n in r:
                c.node(n, group=f"legend{k}")
            c.edge(r[1], r[2], style="invis", weight="20", **L)
            if r[1].startswith("legend/pad"):
                c.edge(r[0], r[1], style="invis", weight="20", **L)
    if after is not None:
        g.edge(after, rows[0][0], style="invis", minlen="2", **L)
