"""The canvas: the elements of the notation (vectors, gates, scalars, edges), placed in
clusters when the drawing is finished."""

from __future__ import annotations

import html

import graphviz

from ..errors import ProgramError
from .notation import DOT, FONT, _GATE_SHAPE, _PORTS, _TILDE, _Text, _wrap


class _Canvas:
    """Collects nodes (each in a cluster path) and edges; :meth:`emit` writes them into a
    ``graphviz.Digraph``, every edge in the innermost cluster holding both its ends (an
    edge written inside a cluster would pull a foreign node into it)."""

    def __init__(self, rankdir: str) -> None:
        if rankdir not in _PORTS:
            raise ProgramError(f"rankdir must be one of {', '.join(_PORTS)}, got {rankdir!r}")
        self.rankdir = rankdir
        self.inp, self.out = _PORTS[rankdir]
        self.up = "n" if rankdir in ("LR", "RL") else "w"  # the side facing the forward row
        self.down = "s" if rankdir in ("LR", "RL") else "e"
        self.nodes: dict[str, dict[str, str]] = {}
        self.path: dict[str, tuple[str, ...]] = {}
        self.edges: list[tuple[str, str, dict[str, str]]] = []
        self.ranks: list[list[str]] = []
        self.where: tuple[str, ...] = ()  # the cluster path of nodes created now
        self.order: dict[str, int] = {}  # the order in which sibling clusters are written

    # nodes
    def node(self, nid: str, **attrs: str) -> None:
        if nid in self.nodes:
            self.nodes[nid].update(attrs)
            return
        self.nodes[nid] = dict(attrs)
        self.path[nid] = self.where

    def vector(self, nid: str, filled: bool, label: _Text | None, tip: str, extra: str = "",
               color: str | None = None) -> None:
        attrs = {"shape": "circle", "label": "", "width": DOT, "height": DOT, "fixedsize": "true",
                 "class": ("xvar" if filled else "gvar") + (" " + extra if extra else ""), "tooltip": tip,
                 "style": "filled", "fillcolor": "black" if filled else "white"}
        if label is not None:
            attrs["xlabel"] = f"<{label.html}>"
        if color:
            attrs["color"] = color
        self.node(nid, **attrs)

    def scalar(self, nid: str, label: _Text, tip: str) -> None:
        self.node(nid, shape="square", label="", width="0.15", height="0.15", fixedsize="true", style="filled",
                  fillcolor="white", xlabel=f"<{label.html}>", tooltip=tip, **{"class": "scalar"})

    def gate(self, nid: str, text: str, mirrored: bool = False, moment: bool = False,
             lines: list[str] | None = None) -> None:
        lines = lines or _wrap(text)
        horizontal = self.rankdir in ("LR", "RL")
        long = max(len(x.replace(_TILDE, "")) for x in lines)
        attrs = {"label": "<" + "<BR/>".join(html.escape(x) for x in lines) + ">", "margin": "0.02",
                 "fontsize": "10", "tooltip": text, "class": "moment" if moment else "gate",
                 **_GATE_SHAPE[self.rankdir][1 if mirrored else 0]}
        if horizontal:
            attrs["height"] = f"{max(0.62, 0.16 * len(lines) + 0.3):.2f}"
            attrs["width"] = f"{max(0.42, 0.075 * long + 0.12):.2f}"
        else:
            attrs["height"] = "0.42"
        self.node(nid, **attrs)

    # edges
    def edge(self, tail: str, head: str, cls: str = "arg", tip: str = "", **attrs: str | None) -> None:
        clean = {k: v for k, v in attrs.items() if v is not None}
        clean["class"] = cls
        if tip:
            clean["tooltip"] = tip
        self.edges.append((tail, head, clean))

    def bar(self, gate: str, head: str) -> None:
        """The output edge of a bar-gate (Moment): the bar is the edge's tail marker."""
        self.edge(gate, head, dir="both", arrowtail="tee", arrowsize="2.4", tailport=self.out, weight="10")

    def invisible(self, tail: str, head: str, flat: bool = False) -> None:
        """An invisible edge; ``flat=True``: tail and head share a rank and the edge puts the
        tail above the head (LR)."""
        self.edges.append((tail, head, {"style": "invis", **({"flat": "1"} if flat else {})}))

    def same_rank(self, *nids: str) -> None:
        self.ranks.append(list(nids))

    # output
    def emit(self, g: graphviz.Digraph, clusters: dict[str, dict[str, str]], reverse_in_clusters: bool = True
             ) -> None:
        """Write the drawing into ``g``.  Flat ordering edges (tail above head) are written
        as they are at the top level, and reversed inside clusters, where dot (2.43) mostly
        orders them head first (``reverse_in_clusters=False`` writes them as they are)."""
        def common(a: tuple, b: tuple) -> tuple:
            k = 0
            while k < min(len(a), len(b)) and a[k] == b[k]:
                k += 1
            return a[:k]

        edges_at: dict[tuple, list] = {}
        for t, h, attrs in self.edges:
            edges_at.setdefault(common(self.path[t], self.path[h]), []).append((t, h, attrs))

        def write(sub, here: tuple) -> None:
            children = []
            for nid, p in self.path.items():
                if len(p) > len(here) and p[:len(here)] == here and p[len(here)] not in children:
                    children.append(p[len(here)])
            children.sort(key=lambda name: self.order.get(name, 0))
            here_nodes = [nid for nid, p in self.path.items() if p == here]
            # embeddings first and biases last: dot then tends to put them above and below the
            # row, as in Fig. 1
            here_nodes.sort(key=lambda nid: ("bias" in self.nodes[nid].get("class", ""))
                            - ("embed" in self.nodes[nid].get("class", "")))
            for child in children:
                with sub.subgraph(name=child) as c:
                    c.attr(**clusters.get(child, {"peripheries": "0", "label": ""}))
                    write(c, here + (child,))
            for nid in here_nodes:
                sub.node(nid, **self.nodes[nid])
            for t, h, attrs in edges_at.get(here, []):
                if attrs.get("flat"):
                    attrs = {k: v for k, v in attrs.items() if k != "flat"}
                    if here and reverse_in_clusters:
                        t, h = h, t
                sub.edge(t, h, **attrs)

        write(g, ())
        for group in self.ranks:
            with g.subgraph() as s:
                s.attr(rank="same")
                for nid in group:
                    s.node(nid)


def _new_graph(name: str, rankdir: str, title: str | None) -> graphviz.Digraph:
    g = graphviz.Digraph(name=name)
    g.attr(rankdir=rankdir, splines="true", nodesep="0.28", ranksep="0.2", forcelabels="true",
           fontname=FONT, fontsize="11", newrank="true")
    if title:
        g.attr(label=title, labelloc="t")
    g.attr("node", fontname=FONT, fontsize="10")
    g.attr("edge", fontname=FONT, fontsize="10", arrowhead="none")
    return g
