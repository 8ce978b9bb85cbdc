#!/usr/bin/env python
"""Generate the drawing gallery: docs/gallery/*.svg and the gallery section of docs/drawings.md.

    python scripts/make_gallery.py            # (re)write the files
    python scripts/make_gallery.py --check    # exit 1 if docs/drawings.md's gallery is stale

Every built-in example is drawn forward and backward, plus the counterparts of the paper's
figures (Tensor Programs IIb, Fig. 1, 6, 7), a depth-10 MLP broken into lines, and a pruned
matrix.  The section between the markers ``<!-- gallery:start -->`` and ``<!-- gallery:end -->``
of docs/drawings.md is replaced by the list of drawings and the table of their structural
counts (measured on the DOT source by ``tpkernel.draw.summary``); the rest of the page is
written by hand.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tpkernel as tp
from tpkernel.ir import Matrix, Program

D = sys.modules["tpkernel.draw"]
GALLERY = ROOT / "docs" / "gallery"
PAGE = ROOT / "docs" / "drawings.md"
START, END = "<!-- gallery:start -->", "<!-- gallery:end -->"


@dataclass(frozen=True)
class PrunedMatrix(Matrix):
    """A matrix with a mask attribute, as the pruning transformation will write it."""

    mask: object = None


def pruned_mlp() -> Program:
    p = tp.examples.mlp(2)
    nodes = [PrunedMatrix(n.name, n.std, n.lr, mask="M") if n.name == "W2" else n for n in p]
    return Program.from_nodes("mlp2_pruned", nodes)


def entries():
    """(file stem, title, caption, graphviz.Digraph)."""
    ex = tp.examples
    out = []
    for name in ex.EXAMPLES:
        p = ex.get(name)
        out.append((f"{name}", f"`{name}` forward", f"`tp.draw(tp.examples.get({name!r}))`", tp.draw(p)))
        out.append((f"{name}-backward", f"`{name}` backward",
                    f"`tp.draw(tp.examples.get({name!r}), backward=True)`", tp.draw(p, backward=True)))
    out += [
        ("fig1-mlp", "Fig. 1, MLP", "`tp.draw(tp.examples.mlp(3), legend=True)`: 3 hidden layers with biases",
         tp.draw(ex.mlp(3), legend=True)),
        ("fig1-rnn", "Fig. 1, RNN", "`tp.draw(tp.examples.rnn(3, b_std=0.1))`: one W, U and b for all steps",
         tp.draw(ex.rnn(3, b_std=0.1))),
        ("fig6-mlp-backward", "Fig. 6, backpropagation of an MLP",
         "`tp.draw(tp.examples.mlp(3, b_std=None), backward=True)`: no biases, as in the paper",
         tp.draw(ex.mlp(3, b_std=None), backward=True)),
        ("fig7-mlp-sgd", "Fig. 7, one SGD step",
         "`tp.draw_sgd(tp.examples.mlp(2, b_std=None), legend=True)`: the paper's MLP (middle layer trained)",
         tp.draw_sgd(ex.mlp(2, b_std=None), legend=True)),
        ("mlp-sgd", "`mlp` SGD step", "`tp.draw_sgd(tp.examples.get('mlp'))`: with biases (not trained)",
         tp.draw_sgd(ex.get("mlp"))),
        ("rnn-sgd", "`rnn` SGD step", "`tp.draw_sgd(tp.examples.get('rnn'))`: W shared, (T−1)² kernels θ",
         tp.draw_sgd(ex.get("rnn"))),
        ("rnn5-backward", "RNN, T = 5, backward", "`tp.draw(tp.examples.rnn(5), backward=True)`",
         tp.draw(ex.rnn(5), backward=True)),
        ("mlp10-wrapped", "MLP of depth 10, in two lines", "`tp.draw(tp.examples.mlp(10), wrap=5)`",
         tp.draw(ex.mlp(10), wrap=5)),
        ("resnet-backward-legend", "residual net, backward, with the legend",
         "`tp.draw(tp.examples.get('resnet'), backward=True, legend=True)`",
         tp.draw(ex.get("resnet"), backward=True, legend=True)),
        ("mlp-pruned", "a pruned matrix", "a Matrix node with a `mask` attribute: `M⊙W²` in red",
         tp.draw(pruned_mlp(), legend=True)),
    ]
    return out


def label_key(label: str):
    """W², W³, …, W¹⁰ in numeric order, transposes after."""
    import re
    plain = label.translate(str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789"))
    digits = re.findall(r"\d+", plain)
    return ("ᵀ" in label, re.sub(r"[\d()ᵀ]", "", plain), int(digits[0]) if digits else 0, plain)


def size(g) -> str:
    line = g.pipe(format="plain").decode().splitlines()[0].split()
    return f'{float(line[2]):.1f}″ × {float(line[3]):.1f}″'


def section(items) -> str:
    rows = [("| drawing | ○ G-vars | ● X-vars | gates | bar-gates | squares | dashed edges per label "
             "| curved | size |"), "|---|---|---|---|---|---|---|---|---|"]
    for stem, title, _, g in items:
        s = D.summary(g)
        dashed = ", ".join(f"{k} {v}" for k, v in sorted(s.dashed.items(), key=lambda kv: label_key(kv[0])))
        rows.append(f"| [{title}](gallery/{stem}.svg) | {s.hollow} | {s.filled} | {s.gates} | {s.moments} "
                    f"| {s.scalars} | {dashed} | {s.preact} | {size(g)} |")
    figures = []
    for stem, title, caption, _ in items:
        figures.append(f"### {title}\n\n{caption}\n\n![{title}](gallery/{stem}.svg)\n")
    intro = ("Structural counts, measured on the DOT source (`tpkernel.draw.summary`, legend excluded; "
             "*curved* = edges bringing a forward vector to a backward gate; size at 100 %):")
    return "\n".join([START, "", "*Generated by `python scripts/make_gallery.py`; do not edit by hand.*", "",
                      intro, "", *rows, "", *figures, END])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that docs/drawings.md is up to date")
    args = ap.parse_args(argv)
    items = entries()
    page = PAGE.read_text()
    if START not in page or END not in page:
        raise SystemExit(f"{PAGE}: the markers {START} and {END} are missing")
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    new = head + section(items) + tail
    if args.check:
        missing = [s for s, *_ in items if not (GALLERY / f"{s}.svg").is_file()]
        if new != page or missing:
            print("the gallery is stale: run python scripts/make_gallery.py", file=sys.stderr)
            return 1
        return 0
    GALLERY.mkdir(parents=True, exist_ok=True)
    for stem, _, _, g in items:
        (GALLERY / f"{stem}.svg").write_bytes(g.pipe(format="svg"))
    PAGE.write_text(new)
    print(f"wrote {len(items)} drawings to {GALLERY.relative_to(ROOT)} and the gallery of {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
