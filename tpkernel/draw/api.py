"""``tp.draw`` and ``tp.draw_sgd``: the program, its backward pass and one unrolled SGD step."""

from __future__ import annotations

from collections.abc import Iterable

import graphviz

from ..backward import pick_readout
from ..backward import backward as _backward
from ..errors import ProgramError
from ..ir import Bias, Embed, InputLayer, LinComb, MatMul, Matrix, Nonlin, Program, Readout, Seed
from .notation import _SUB, _TILDE, _Text, _data, _name, _sub, _sum_text, _t
from .canvas import _Canvas, _new_graph
from .view import _View, _fn_name, _mask_of
from .drawer import _Drawer, _align, _propagation_arrow, _spines, _wrap_lines
from .legend import _legend


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
