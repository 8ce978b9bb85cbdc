r"""Drawings of tensor programs in the graphical notation of *Tensor Programs IIb*
(Yang & Littwin, ICML 2021: Fig. 1 forward passes, Fig. 6 backpropagation, Fig. 4 and 7
NETSOR⊤+ scalars and the unrolled SGD step).

- a **hollow circle** is a G-var: an initial vector (an embedding ``Uξ``, a bias ``b``,
  the readout vector ``v``) or the result of a MatMul;
- a **filled circle** is an X-var: the result of a Nonlin;
- a **dashed edge**, labelled with the matrix, is a MatMul ``W x`` from ``x`` to the
  result (weight sharing: the same label on several edges; ``Wᵀ`` in the backward row;
  ``M⊙W`` in red for a pruned matrix);
- a **gate** (a trapezoid, wide side facing its inputs, narrow side emitting the
  result) is a Nonlin, the function written inside with one ``·`` per incoming edge.
  A linear combination read only by gates is *fused* into them, so that φ(W x + b)
  is the single gate ``φ(·+·)`` fed by the MatMul result and the bias; one read by a
  MatMul or a readout (a residual sum) is its own gate ``·+·``; a product is ``·×·``;
- initial vectors have one edge, toward the direction of computation; the readout
  vector ``v`` has one edge, against it; the raw input ξ and the scalar output are not
  nodes;
- in NETSOR⊤+ drawings (:func:`draw_sgd`) a **square** is a scalar and a gate with a
  **bar** on its output side is a Moment ``(1/n) Σ_α ψ(…)``.

Every drawing is a ``graphviz.Digraph``: ``.source`` is the DOT text,
``.pipe(format="svg")`` / ``.render(...)`` give SVG, PNG, PDF.  Nodes and edges carry a
``class`` (``gvar``, ``xvar``, ``gate``, ``moment``, ``scalar``; ``matmul``, ``arg``,
``preact``, ``readout``, ``propagation``) and a plain-text ``tooltip``; :func:`summary`
counts them.

The drawer is a table of rules, one method ``_draw_<NodeType>`` per node kind (the
dispatch of sympy's printers).  ``docs/drawings.md`` shows the gallery and lists the
deliberate differences from the paper's figures.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import graphviz
import networkx as nx

from .backward import Backward, pick_readout
from .backward import backward as _backward
from .errors import ProgramError
from .ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Node, Nonlin, Program, Readout, Seed
from .rules import RuleTable

__all__ = ["DrawingSummary", "draw", "draw_sgd", "summary"]

# (input side, output side) of a forward gate, as compass points of the final drawing
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

_GREEK = {"xi": "ξ", "phi": "φ", "psi": "ψ", "theta": "θ", "chi": "χ", "sigma": "σ", "alpha": "α",
          "beta": "β", "gamma": "γ", "delta": "δ", "eta": "η", "zeta": "ζ", "mu": "μ", "nu": "ν",
          "tau": "τ", "omega": "ω", "lambda": "λ", "rho": "ρ", "epsilon": "ε", "kappa": "κ"}
_SUP = str.maketrans("0123456789+-()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁽⁾")
_SUB = str.maketrans("0123456789+-()", "₀₁₂₃₄₅₆₇₈₉₊₋₍₎")
_NAME = re.compile(r"^([A-Za-z])(?:([A-Za-z])|(\d+[A-Za-z]*))?$")
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


# -- the summary that tests and docs rely on ---------------------------------------------------

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


# -- the canvas: elements of the notation, placed in clusters at the end ----------------------

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


# -- program analysis -------------------------------------------------------------------------

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


# -- the drawer: one rule per node kind --------------------------------------------------------

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


# -- legend --------------------------------------------------------------------------------------

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


# -- public API ------------------------------------------------------------------------------------

def _rows_in_order(g: graphviz.Digraph, pairs: list[tuple[str, str]], rankdir: str) -> float:
    """The fraction of ``pairs`` whose forward vector the laid-out drawing puts above (LR,
    RL) or left of (TB, BT) its backward vector; 1 when the dot binary is not available."""
    try:
        out = g.pipe(format="plain").decode()
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError):
        return 1.0
    pos = {ln.split()[1].strip('"'): (float(ln.split()[2]), float(ln.split()[3]))
           for ln in out.splitlines() if ln.startswith("node ")}
    pairs = [(x, dx) for x, dx in pairs if x in pos and dx in pos]
    if not pairs:
        return 1.0
    if rankdir in ("LR", "RL"):
        return sum(pos[x][1] > pos[dx][1] for x, dx in pairs) / len(pairs)
    return sum(pos[x][0] < pos[dx][0] for x, dx in pairs) / len(pairs)


def _check(program: Program) -> None:
    if not isinstance(program, Program):
        raise ProgramError(f"draw: expected a Program, got {type(program).__name__}")
    program.validate()


def _masked(program: Program) -> bool:
    return any(_mask_of(n) is not None for n in program.of_type(Matrix, InputLayer, Readout))


_ROW = {"peripheries": "0", "label": "", "margin": "4"}
_DRAW_WHERE: dict[str, tuple[str, ...]] = {}
_SGD_WHERE = {"forward": ("cluster_train",), "backward": ("cluster_train",)}  # both rows in the grey box


def draw(program: Program, backward: bool = False, legend: bool = False, rankdir: str = "LR",
         names: bool | None = None, output: str | None = None, title: str | None = None,
         wrap: int | None = None) -> graphviz.Digraph:
    r"""The program drawn in the notation of Tensor Programs IIb, as a ``graphviz.Digraph``.

    ``backward=True`` draws the forward row on top and the backward program of
    :func:`tpkernel.backward.backward` below it (for readout ``output`` when the program has
    several): mirrored gates, the transposed MatMuls as dashed edges labelled ``Wᵀ``, a
    curved edge bringing each forward vector a backward gate reads (the pre-activation of
    φ′, the other factor of a product), and the green "forward propagation → backward
    propagation" arrow around the right end.  ``legend=True`` adds the paper's legend;
    ``names`` writes the program's vector names next to the nodes (default: only in
    backward drawings, as in the paper's Fig. 6; initial vectors are always named);
    ``rankdir`` is the direction of computation (``"LR"`` as in the paper, ``"TB"``,
    ``"RL"``, ``"BT"``).  ``wrap=k`` breaks a long forward drawing into lines of k gates of
    the main row, stacked like lines of text (a depth-10 MLP on a page: ``wrap=5``).

    >>> import tpkernel as tp
    >>> from tpkernel.draw import summary
    >>> g = tp.draw(tp.examples.mlp(2))
    >>> summary(g).hollow, summary(g).filled, summary(g).dashed["W²"]
    (5, 2, 1)
    """
    _check(program)
    names = backward if names is None else names
    canvas = _Canvas(rankdir)
    bwd = _backward(program, output) if backward else None
    forward = {n.name for n in program}
    view = _View(bwd.program if bwd else program, forward, bwd)
    # the forward row is one cluster: the backward row, drawn outside it, stays below it
    where = dict(_DRAW_WHERE) if bwd else {}
    d = _Drawer(canvas, view, names=names, where=where)
    d.run("forward")
    arrow = None
    if bwd is not None:
        arrow = _align(d, bwd)
        d.run("backward")
    spines = [_spines(d, program, bwd, r)
              for r in ([pick_readout(program, output)] if bwd is not None else program.readouts)]
    _propagation_arrow(canvas, d, arrow)
    if wrap is not None:
        if not isinstance(wrap, int) or wrap < 1:
            raise ProgramError(f"draw: wrap must be a positive number of gates per line, got {wrap!r}")
        if bwd is not None:
            raise ProgramError("draw: wrap= breaks forward drawings into lines; a backward drawing is drawn "
                               "in one piece (scale it with graph.attr(size=...))")
        if spines and spines[0]:
            _wrap_lines(canvas, d, spines[0], wrap)
    g = _new_graph(program.name, rankdir, title)
    canvas.emit(g, {"cluster_forward": _ROW, "cluster_backward": _ROW})
    if legend:
        ends = [n for n in canvas.nodes if "readout" in canvas.nodes[n].get("class", "")]
        after = arrow and d.id(arrow[1]) or (ends[-1] if ends else (spines[0][-1] if spines and spines[0] else None))
        _legend(g, rankdir, (["backward"] if backward else []) + (["pruned"] if _masked(program) else []), after)
    return g


def draw_sgd(program: Program, steps: int = 1, train: str | Iterable[str] = "matrices", legend: bool = False,
             rankdir: str = "LR", output: str | None = None, title: str | None = None) -> graphviz.Digraph:
    r"""One unrolled SGD step as a NETSOR⊤+ program, drawn like Fig. 7 of Tensor Programs IIb.

    What is drawn (``docs/drawings.md`` has the full account):

    - grey box, *train example ξ*: the forward and backward pass of the program, as
      ``draw(program, backward=True)``;
    - blue box, *test example ξ̃*: the forward pass on ξ̃ (labels with a tilde);
    - the scalar f = f(ξ) as an input square (the program is conditioned on it) and the
      loss derivative χ = L′(f) made by a bar-gate;
    - for every trained matrix W, every use y = W z on ξ and every use ỹ = W z̃ on ξ̃:
      the kernel scalar θ = zᵀz̃/n made by a bar-gate from z and z̃;
    - the update of the test pass, δũ = √n(ũ₁ − ũ): for ỹ = W z̃ the gate ``·−χθ·``
      receives W δz̃ (a dashed edge W from δz̃, when z̃ moved) and, per use of W, χ, θ and
      the train gradient dy; a Nonlin u = φ(h) gives the gate √n(φ(h̃+δh̃/√n) − φ(h̃)) fed
      by the test pre-activation and its update; linear combinations move linearly;
    - the bar-gate vᵀ δx̃/n producing the square f̃₁ − f̃.

    ``train="matrices"`` (default) trains only the n×n matrices: the setting of the paper's
    Setup D.1 (A1) and of its Fig. 7.  ``train="all"`` also trains the input layers (θ =
    ⟨ξ, ξ̃⟩/d, an input square), the biases (δb = −χ db) and the readout (−χ xᵀx̃/n, −χ for
    its bias); or give the parameter names.  The O(1/√n) term (W₁ − W₀)δz̃ of the paper's
    Eq. (79), which vanishes in the limit, is not drawn.  Only ``steps=1`` is drawn.
    """
    _check(program)
    if steps != 1:
        raise ProgramError(f"draw_sgd: steps={steps!r}: only one unrolled SGD step (steps=1) is drawn; "
                           "later steps repeat the construction with the updated vectors")
    params = {p.name for p in program.params} | {r.name for r in program.readouts}
    if train == "matrices":
        trained = {p.name for p in program.of_type(Matrix)}
    elif train == "all":
        trained = params
    else:
        trained = {train} if isinstance(train, str) else set(train)
        unknown = trained - params
        if unknown:
            raise ProgramError(f"draw_sgd: {', '.join(sorted(unknown))} is not a parameter of {program.name!r}")
    bwd = _backward(program, output)
    r = bwd.program[bwd.readout]
    forward = {n.name for n in program}
    c = _Canvas(rankdir)
    tr = _Drawer(c, _View(bwd.program, forward, bwd, param_grads=True), prefix="tr/", names=True,
                 where=_SGD_WHERE)
    tr.run("forward")
    arrow = _align(tr, bwd)
    tr.run("backward")
    _spines(tr, program, bwd, r)
    _propagation_arrow(c, tr, arrow, text=False)
    test_view = _View(program, forward)
    te = _Drawer(c, test_view, prefix="te/", names=True, tilde=True, readouts=False,
                 where={"forward": ("cluster_test",)})
    te.run("forward")
    _spines(te, program, None, r)

    c.where = ()
    grads = bwd.grads
    chi = "sgd/chi"

    def gate(name: str, text: str, inputs: list[str], out: str, moment: bool = False,
             lines: list[str] | None = None) -> None:
        gid = "sgd/gate/" + name
        c.gate(gid, text, moment=moment, lines=lines)
        for i in inputs:
            c.edge(i, gid, headport=c.inp)
        if moment:
            c.bar(gid, out)
        else:
            c.edge(gid, out, tailport=c.out)

    def moved(name: str, label: _Text, filled: bool = True) -> str:
        nid = "sgd/d/" + name
        c.vector(nid, filled, label, label.plain)
        return nid

    def delta(name: str) -> _Text:
        return "δ" + te.label(name)  # type: ignore[operator]

    c.scalar("sgd/f", _t("f", italic=True), "f = f(ξ)")
    c.scalar(chi, _t("χ"), "χ = L′(f)")
    gate("chi", "L′(·)", ["sgd/f"], chi, moment=True)
    thetas: list[str] = []

    def theta(text: _Text, tip: str, inputs: list[str] | None) -> str:
        k = str(len(thetas) + 1)
        nid = "sgd/theta" + k
        thetas.append(nid)
        label = _t("θ") + _sub(k) + (" = " + text if inputs is None else _t(""))
        c.scalar(nid, label, f"θ{k.translate(_SUB)} = {tip}")
        if inputs is not None:
            gate("theta" + k, "·ᵀ·/n", inputs, nid, moment=True)
        return nid

    dl: dict[str, str] = {}  # test vector -> the node holding its update δ
    for node in program:
        if isinstance(node, Bias) and node.name in trained and node.name in grads:
            dl[node.name] = moved(node.name, "δ" + _name(node.name))
            gate("d/" + node.name, "−χ·", [chi, tr.id(grads[node.name])], dl[node.name])
        elif isinstance(node, Embed) and node.layer in trained:
            ins, text = [], ""
            for y in program.consumers(node.layer):
                if isinstance(y, Embed) and y.name in grads:
                    a, b = _data(y.data, y.step), _data(node.data, node.step, tilde=True)
                    ins += [chi, theta(a + "·" + b + "/" + _t("d", italic=True), f"{a.plain}·{b.plain}/d", None),
                            tr.id(grads[y.name])]
                    text += "−χθ·"
            if ins:
                dl[node.name] = moved(node.name, delta(node.name))
                gate("d/" + node.name, text, ins, dl[node.name])
        elif isinstance(node, MatMul):
            ins, text = [], ""
            if node.arg in dl:  # W δz̃: the change of the input, through the same W
                w = _name(node.matrix)
                wd = moved("W/" + node.name, w + delta(node.arg), filled=False)
                c.edge(dl[node.arg], wd, "matmul", w.plain, style="dashed", label=f"<{w.html}>")
                ins.append(wd)
                text += "·"
            if node.matrix in trained:
                for y in program.consumers(node.matrix):
                    if isinstance(y, MatMul) and y.name in grads:
                        th = theta(_t(""), f"{y.arg}ᵀ{node.arg}{_TILDE}/n", [tr.id(y.arg), te.id(node.arg)])
                        ins += [chi, th, tr.id(grads[y.name])]
                        text += "−χθ·"
            if text == "·":
                dl[node.name] = ins[0]
            elif text:
                dl[node.name] = moved(node.name, delta(node.name))
                gate("d/" + node.name, text, ins, dl[node.name])
        elif isinstance(node, LinComb) and not test_view.fused_lin(node.name):
            terms = [(a, k) for a, k in zip(node.args, node.coeffs) if a in dl]
            if len(terms) == 1 and terms[0][1] == 1.0:
                dl[node.name] = dl[terms[0][0]]
            elif terms:
                dl[node.name] = moved(node.name, delta(node.name))
                gate("d/" + node.name, _sum_text([k for _, k in terms]), [dl[a] for a, _ in terms], dl[node.name])
        elif isinstance(node, Nonlin):
            _, test_ins = test_view.operands(node.args)
            changes = [dl[a] for a in test_ins if a in dl]
            if changes:
                fn = "Π" if node.fn.is_product else _fn_name(node)
                lines = ["√n(", f"{fn}(h̃+δh̃/√n)", f"−{fn}(h̃))"]
                dl[node.name] = moved(node.name, delta(node.name))
                gate("d/" + node.name, "".join(lines), [te.id(a) for a in test_ins] + changes, dl[node.name],
                     lines=lines)
    # the readout: f̃₁ − f̃ = vᵀ δx̃ / n   (− χ xᵀx̃/n when v is trained, − χ for its bias)
    args = list(r.args) if r.pool == "mean" else [r.args[-1]]
    seed = next(s.name for s in bwd.program.of_type(Seed) if s.readout == r.name and s.index == len(r.args) - 1)
    ins = [tr.id(seed)] + [dl[a] for a in args if a in dl]
    k = len(ins) - 1
    text = ("vᵀ·/n" if len(args) == 1 else f"vᵀ({'+'.join('·' * k)})/({len(args)}n)") if k else ""
    if (r.vector or r.name) in trained:
        for a in args:
            ins += [chi, tr.id(a), te.id(a)]
            text += "−χ·ᵀ·/n" if len(args) == 1 else f"−χ·ᵀ·/({len(args)}n)"
        if r.b_std is not None:
            text += "−χ"
    if not text:
        raise ProgramError(f"draw_sgd: training {train!r} does not change the output of {program.name!r}")
    c.scalar("sgd/df", _Text(f"<I>f{_TILDE}</I><SUB>1</SUB> − <I>f{_TILDE}</I>", "f̃₁ − f̃"), "f̃₁ − f̃")
    gate("df", text, ins, "sgd/df", moment=True)

    clusters = {
        "cluster_train": {"label": "first forward/backward pass on train example ξ", "style": "filled",
                          "fillcolor": "#ececec", "color": "#ececec", "labeljust": "l", "fontsize": "11"},
        "cluster_test": {"label": "first forward pass on test example ξ̃", "style": "filled",
                         "fillcolor": "#dde6f3", "color": "#dde6f3", "labeljust": "l", "labelloc": "b",
                         "fontsize": "11"},
    }
    pairs = [(tr.id(x), tr.id(dx)) for dx, x in tr.owner.items() if tr.id(x) in c.nodes and tr.id(dx) in c.nodes]
    # Inside the grey box dot may stack the two rows either way, whatever the ordering edges
    # say: lay out a few equivalent variants and keep the first with the forward row on top.
    train_fwd = {n for n in c.nodes if n.startswith("tr/") and (n[3:] in forward or n[8:] in forward)}
    train_bwd = {n for n in c.nodes if n.startswith("tr/")} - train_fwd
    best: tuple[float, graphviz.Digraph] | None = None
    for rows, reverse in ((None, True), (None, False), (("f", "b"), True), (("b", "f"), True)):
        if rows is not None:
            for n in train_fwd | train_bwd:
                c.path[n] = ("cluster_train", "cluster_train_" + ("f" if n in train_fwd else "b"))
            c.order = {"cluster_train_" + r: k for k, r in enumerate(rows)}
        g = _new_graph(program.name + "_sgd", rankdir, title)
        c.emit(g, {**clusters, "cluster_train_f": _ROW, "cluster_train_b": _ROW}, reverse_in_clusters=reverse)
        score = _rows_in_order(g, pairs, rankdir)
        if best is None or score > best[0]:
            best = (score, g)
        if score == 1.0:
            break
    assert best is not None
    g = best[1]
    if legend:
        _legend(g, rankdir, ["backward", "scalars"] + (["pruned"] if _masked(program) else []), "sgd/df")
    return g

