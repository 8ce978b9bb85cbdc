"""The drawing interpretation: one rule per node kind (:data:`DRAWING`), and the layout of the
forward and backward rows."""

from __future__ import annotations

import html

import networkx as nx

from ..backward import Backward
from ..ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Node, Nonlin, Program, Readout, Seed
from ..rules import RuleTable
from .notation import GREEN, PRUNED, _SUB, _Text, _data, _name, _sum_text, _t
from .canvas import _Canvas
from .view import _View, _mask_of


class _Drawer:
    """Draws the forward part of a program, or its backward part, onto a canvas.

    ``prefix`` keeps node ids apart when several copies of a program share a drawing
    (draw_sgd); ``tilde`` marks the labels of the test example; ``where`` gives the
    cluster path of each part.
    """

    def __init__(self, canvas: _Canvas, view: _View, prefix: str = "", names: bool = False,
                 tilde: bool = False, readouts: bool = True,
                 where: dict[str, tuple[str, ...]] | None = None) -> None:
        self.c, self.v = canvas, view
        self.prefix = prefix
        self.names = names
        self.tilde = tilde
        self.readouts = readouts and view.bwd is None  # with a backward row, v is the seed
        self.where = where or {}
        self.part = "forward"
        self.grad_label: dict[str, _Text] = {}
        self.flow: list[tuple[str, str]] = []  # computation edges, for the spine
        self.ends: dict[str, str] = {}  # readout -> the vector its readout vector is attached to
        self.owner: dict[str, str] = {}  # backward vector -> the forward vector it sits under

    def id(self, name: str) -> str:
        return self.prefix + name

    def gid(self, name: str) -> str:
        return self.prefix + "gate/" + name

    def label(self, name: str) -> _Text | None:
        """The name written next to a vector (names=True): its program name, d(x) for the
        gradient of x; none for a backward vector that is only a term of a gradient."""
        if not self.names or (name not in self.v.forward and name not in self.grad_label):
            return None
        t = self.grad_label.get(name) or _name(name, vector=True)
        return t.tilde() if self.tilde else t

    def shown(self, x: str) -> _Text:
        """The label a forward vector carries (for the name of its gradient)."""
        node = self.v.program[x]
        if isinstance(node, Embed):
            return "(" + self._embed_label(node) + ")"
        if isinstance(node, Bias):
            return _name(x)
        return _name(x, vector=True)

    # entry points
    def run(self, part: str) -> None:
        self.part = part
        self.c.where = self.where.get(part, ())
        program = self.v.program if part == "forward" or self.v.bwd is None else self.v.bwd.program
        for node in program:
            if (node.name in self.v.forward) == (part == "forward"):
                self.rule(node)(node)

    def rule(self, node: Node):
        """The rule drawing ``node`` (:data:`DRAWING`: its class or the nearest base class),
        bound to this drawer; a class without one is a MissingRuleError naming the node."""
        fn = DRAWING.rule(node)
        return lambda n: fn(self, n)

    def straighten(self, part: str, start: str, end: str) -> list[str]:
        """Put the shortest computation path start → end (the row's spine: the skip path of
        a residual net, the chain of states of an RNN) in one graphviz group, so that dot
        draws it as a straight row."""
        try:
            path = nx.shortest_path(nx.DiGraph(self.flow), self.id(start), self.id(end))
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return []
        for n in path:
            self.c.node(n, group=self.prefix + part)
        return path

    # rules (collected in DRAWING below)
    def _draw_Data(self, node: Node) -> None:
        """The raw input is not drawn; matrices and input layers are edge and node labels."""

    _draw_InputLayer = _draw_Matrix = _draw_Data

    def _draw_Bias(self, node: Bias) -> None:
        users = self.v.users[node.name]
        if users and all(isinstance(u, Readout) and u.vector == node.name for u in users) and not self.readouts:
            return  # a readout vector, drawn as the backward seed
        where = self.c.where
        if self.v.bwd is not None and len(users) > 1 and "shared" in self.where:
            # a bias shared by several gates feeds forward and backward gates alike: outside
            # the forward row, dot puts it between the rows
            self.c.where = self.where["shared"]
        self.c.vector(self.id(node.name), False, _name(node.name), node.name, "initial bias")
        self.c.where = where

    def _embed_label(self, node: Embed) -> _Text:
        u = _name(node.layer)
        if _mask_of(self.v.program[node.layer]) is not None:
            u = "(" + _t("M", italic=True) + "⊙" + u + ")"
        return u + _data(node.data, node.step, self.tilde)

    def _draw_Embed(self, node: Embed) -> None:
        label = self._embed_label(node)
        masked = _mask_of(self.v.program[node.layer]) is not None
        self.c.vector(self.id(node.name), False, label, label.plain, "initial embed",
                      color=PRUNED if masked else None)

    def _matrix_label(self, node: MatMul) -> tuple[_Text, bool]:
        masked = _mask_of(self.v.program[node.matrix]) is not None
        w = _name(node.matrix)
        if masked:
            w = _t("M", italic=True) + "⊙" + w
        if node.transpose:
            if masked or "<SU" in w.html:
                w = "(" + w + ")"
            w = w + _Text("<SUP>⊤</SUP>", "ᵀ")
        return w, masked

    def _draw_MatMul(self, node: MatMul) -> None:
        w, masked = self._matrix_label(node)
        color = PRUNED if masked else None
        self.c.vector(self.id(node.name), False, self.label(node.name), node.name)
        self.flow.append((self.id(node.arg), self.id(node.name)))
        ends = (self.id(node.name), self.id(node.arg)) if self.part == "backward" else \
            (self.id(node.arg), self.id(node.name))
        self.c.edge(*ends, "matmul", w.plain, style="dashed", label=f"<{w.html}>", color=color, fontcolor=color)

    def _gate(self, node: Node, text: str, inputs: list[str]) -> None:
        """A gate computing ``node`` from the drawn ``inputs``, and its filled result."""
        gid, out = self.gid(node.name), self.id(node.name)
        back = self.part == "backward"
        c = self.c
        c.gate(gid, text, mirrored=back)
        c.vector(out, True, self.label(node.name), node.name)
        for i in inputs:
            if back and i in self.v.forward:  # a forward vector read by a backward gate (φ′, products)
                c.edge(self.id(i), gid, "preact", constraint="false", headport=c.up)
                continue
            self.flow.append((self.id(i), gid))
            if back:  # the backward row computes right to left: edges are declared reversed
                c.edge(gid, self.id(i), tailport=c.out)
            else:
                c.edge(self.id(i), gid, headport=c.inp)
        self.flow.append((gid, out))
        if back:
            c.edge(out, gid, headport=c.inp)
        else:
            c.edge(gid, out, tailport=c.out)

    def _draw_Nonlin(self, node: Nonlin) -> None:
        if not self.v.fused_factor(node.name):
            texts, ins = self.v.operands(node.args)
            self._gate(node, self.v.fn_text(node, texts), ins)

    def _draw_LinComb(self, node: LinComb) -> None:
        if not (self.v.fused_lin(node.name) or self.v.param_grad(node.name)):
            self._gate(node, _sum_text(node.coeffs, node.const), list(node.args))

    def _draw_Readout(self, node: Readout) -> None:
        if not self.readouts:
            return
        masked = _mask_of(node) is not None
        if node.vector is not None:
            vid, vlabel = self.id(node.vector), _name(node.vector)
        else:
            vid = self.id("readout/" + node.name)
            vlabel = _t("v", italic=True)
            if len(self.v.program.readouts) > 1:
                vlabel = vlabel + _Text(f"<SUB>{html.escape(node.name)}</SUB>", "_" + node.name)
            if masked:
                vlabel = _t("M", italic=True) + "⊙" + vlabel
            self.c.vector(vid, False, vlabel, vlabel.plain, "readout", color=PRUNED if masked else None)
        if node.pool == "mean" and len(node.args) > 1:  # vᵀ(mean of the states): a linear gate first
            k, gid, src = len(node.args), self.gid("mean/" + node.name), self.id("mean/" + node.name)
            self.c.gate(gid, f"({'+'.join('·' * k)})/{k}")
            self.c.vector(src, True, _t("mean") if self.names else None, "mean")
            for a in node.args:
                self.c.edge(self.id(a), gid, headport=self.c.inp)
                self.flow.append((self.id(a), gid))
            self.c.edge(gid, src, tailport=self.c.out)
            self.flow.append((gid, src))
            self.ends[node.name] = "mean/" + node.name
        else:  # no pool, or pool="last": the full-length sequence reads its last state
            src = self.id(node.args[-1])
            self.ends[node.name] = node.args[-1]
        # the readout vector's single edge points against the direction of computation
        self.flow.append((src, vid))
        self.c.edge(src, vid, "readout", f"{vlabel.plain}ᵀ·/√n", tailport=self.c.out, headport=self.c.inp,
                    color=PRUNED if masked else None)

    def _draw_Seed(self, node: Seed) -> None:
        r = self.v.program[node.readout]
        v = _name(r.vector) if r.vector else _t("v", italic=True)
        if _mask_of(r) is not None:
            v = _t("M", italic=True) + "⊙" + v
        if r.pool is not None and len(r.args) > 1:
            k = str(node.index + 1)
            v = _Text(f"<I>c</I><SUB>{k}</SUB>", "c" + k.translate(_SUB)) + v
        self.c.vector(self.id(node.name), False, v, v.plain, "initial seed")


#: the drawing interpretation: one method of :class:`_Drawer` per node class
DRAWING = RuleTable("drawing", {cls: getattr(_Drawer, "_draw_" + cls.__name__)
                                for cls in (Data, InputLayer, Matrix, Bias, Embed, MatMul, Nonlin, LinComb,
                                            Readout, Seed)})


def _align(d: _Drawer, bwd: Backward) -> tuple[str, str] | None:
    """Put each backward vector in the column of the forward vector whose gradient it is,
    below it (Fig. 6), name it d(that vector); return (last forward vector, its seed) for
    the forward → backward arrow."""
    view, c = d.v, d.c
    order = {n.name: i for i, n in enumerate(bwd.program)}

    def key(x: str) -> tuple:  # the latest computed vector; initial vectors last
        node = bwd.program[x]
        return isinstance(node, Bias), isinstance(node, Embed), -order[x]

    owner = d.owner
    for x, dx in bwd.grads.items():
        if view.drawn(x) and (dx not in owner or key(x) < key(owner[dx])):
            owner[dx] = x
    # the terms of a gradient sum fused into a gate (the seed c_t v, Wᵀ dh) sit with that
    # gradient's vector; those of a drawn sum gate stay free (they are computed before it)
    for x, dx in bwd.grads.items():
        node = bwd.program[dx]
        if isinstance(node, LinComb) and not view.drawn(dx) and view.drawn(x):
            for a in node.args:
                if view.drawn(a) and a not in owner and a not in view.forward:
                    owner[a] = x
    r = bwd.program[bwd.readout]
    arrow = None
    for seed in bwd.program.of_type(Seed):
        if seed.readout == r.name and seed.index == len(r.args) - 1:
            arrow = (r.args[seed.index], seed.name)
    for dx, x in owner.items():
        if view.drawn(dx) and view.drawn(x):
            d.grad_label.setdefault(dx, "d" + d.shown(x))
            c.same_rank(d.id(x), d.id(dx))
            if (x, dx) != arrow:
                c.invisible(d.id(x), d.id(dx), flat=True)  # a flat edge: x above dx
    return arrow


def _spines(d: _Drawer, program: Program, bwd: Backward | None, r: Readout) -> list[str]:
    """Straighten the forward row (first computed vector → the readout) and its mirror;
    return the forward spine (canvas ids)."""
    first = next((n.name for n in program if n.is_vector and not isinstance(n, Bias) and d.v.drawn(n.name)),
                 None)
    if first is None:
        return []
    spine = d.straighten("forward", first, d.ends.get(r.name, r.args[-1]))
    if bwd is not None and first in bwd.grads:
        seeds = [s.name for s in bwd.program.of_type(Seed) if s.readout == r.name and s.index == len(r.args) - 1]
        if seeds:
            d.straighten("backward", seeds[0], bwd.grads[first])
    return spine


def _wrap_lines(c: _Canvas, d: _Drawer, spine: list[str], per_line: int) -> int:
    """Break a long forward drawing into lines of ``per_line`` gates of the main row,
    stacked like lines of text; return the number of lines.

    A line ends after the filled output of every ``per_line``-th gate of the spine; a
    vector belongs to the line after the last line end it descends from.  An initial
    vector read in several lines (a bias shared by all steps of an RNN) is drawn once in
    each of them.  Edges between lines do not constrain the layout, so that each line
    starts again at the left margin; they run down from the end of a line, back along a
    gutter below it, and down into the next line (the "carriage return", e.g. the MatMul
    W⁶ of a depth-10 MLP).
    """
    gates = [k for k, n in enumerate(spine) if c.nodes[n].get("class") == "gate"]
    cuts = [spine[k + 1] for k in gates[per_line - 1:-1:per_line] if k + 2 < len(spine)]
    if not cuts:
        return 1
    flow = nx.DiGraph(d.flow)
    flow.add_nodes_from(c.nodes)
    below = [nx.descendants(flow, cut) for cut in cuts]
    line = {n: sum(n in b for b in below) for n in c.nodes if nx.ancestors(flow, n)}
    # initial vectors: in the line of their first reader, and copied into every other line
    copies: dict[tuple[str, int], str] = {}
    for n in list(c.nodes):
        if n in line:
            continue
        readers = sorted({line[m] for m in flow.successors(n) if m in line}) or [0]
        line[n] = readers[0]
        for k in readers[1:]:
            copies[n, k] = f"{n}@line{k}"
            c.nodes[copies[n, k]] = dict(c.nodes[n])
            c.path[copies[n, k]] = c.path[n]
            line[copies[n, k]] = k
    for n in c.nodes:
        c.path[n] = (f"cluster_line{line[n]}",) + c.path[n]
    starts = [spine[0]] + [spine[spine.index(cut) + 1] for cut in cuts]
    edges, c.edges = c.edges, []
    for t, h, attrs in edges:
        if (t, line[h]) in copies:
            t = copies[t, line[h]]
        if line[t] == line[h]:
            c.edges.append((t, h, attrs))
            continue
        # a carriage return through the gutter below the line of t
        k = line[t]
        p1, p2 = f"wrap/{t}/{h}/end", f"wrap/{t}/{h}/start"
        for p in (p1, p2):
            c.nodes[p] = {"shape": "point", "width": "0.01", "height": "0.01", "style": "invis", "label": ""}
            c.path[p] = (f"cluster_gutter{k}",)
        c.same_rank(t, p1)
        c.same_rank(h, p2)
        attrs = dict(attrs, constraint="false")
        if "label" in attrs:  # an edge label is a node of the layout: keep the gutter free of it
            attrs["xlabel"] = attrs.pop("label")
        plain = {a: v for a, v in attrs.items() if a not in ("xlabel", "tooltip", "class", "headport", "tailport")}
        c.edges.append((t, p1, dict(plain, tailport=c.down, **{"class": "wrap"})))
        c.edges.append((p1, p2, attrs))  # carries the class, label and tooltip of the edge
        c.edges.append((p2, h, dict(plain, headport=c.up, **{"class": "wrap"})))
    # stack the lines: their starts share a rank; in LR dot puts the cluster written first
    # at the bottom, so lines are written last to first with the gutters between them
    c.same_rank(*starts)
    c.order = {**{f"cluster_line{k}": -2 * k for k in range(len(starts))},
               **{f"cluster_gutter{k}": -2 * k - 1 for k in range(len(cuts))}}
    return len(cuts) + 1


def _propagation_arrow(c: _Canvas, d: _Drawer, arrow: tuple[str, str] | None, text: bool = True) -> None:
    if arrow is None:
        return
    x, seed = arrow
    attrs = {"xlabel": "forward propagation\\n→ backward propagation", "fontcolor": GREEN} if text else {}
    c.edge(d.id(x), d.id(seed), "propagation", color=GREEN, penwidth="2.2", arrowhead="normal",
           tailport=c.out, headport=c.out, **attrs)
