"""The ``tpkernel`` command.

  tpkernel show NAME|FILE   listing and limiting kernels of a built-in example or a .tp listing
  tpkernel kernel FILE|NAME --data X.npy [--data2 Y.npy] [--out K.npy|.npz|.json]
                            the limiting kernels on your data
  tpkernel examples         the built-in examples
  tpkernel formula NAME     the NNGP/NTK recurrences as text or LaTeX (--latex, --closed-form)
  tpkernel check NAME       finite width vs the limit (convergence table, log-log slope)
  tpkernel draw NAME|FILE   the drawing in the notation of TP IIb (--backward, --sgd, -o out.svg)
  tpkernel prune NAME|FILE -p 0.5 [--rescale] [--where hidden+output|all|hidden|NAMES]
                            the pruned listing, its extra scaling, pruned vs dense kernels
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import numpy as np

from . import examples
from .errors import TPKernelError
from .limit import kernels


class _Parser(argparse.ArgumentParser):
    """argparse, with every usage error as one line ``tpkernel: error: [SUBCOMMAND: ]...`` after
    the usage (exit status 2), like the errors of the library."""

    def error(self, message):
        self.print_usage(sys.stderr)
        sub = self.prog.partition(" ")[2]
        self.exit(2, f"tpkernel: error: {sub + ': ' if sub else ''}{message}\n")


def _integer(low: int):
    """An argparse ``type``: an integer >= ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def _probability(text: str) -> float:
    """An argparse ``type``: a pruning probability p in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value < 1):
        raise argparse.ArgumentTypeError(f"the pruning probability must be in [0, 1), got {text}")
    return value


_positive, _natural = _integer(1), _integer(0)


def _output_path(text: str, flag: str, suffixes: tuple[str, ...]):
    """``text`` as the path of an output file, checked before any work is done: one of
    ``suffixes``, not a directory, in a folder that exists."""
    from pathlib import Path
    path = Path(text)
    if path.is_dir():
        raise TPKernelError(f"{flag}: {text!r} is a directory; give a file name (ending in {suffixes[0]})")
    if path.suffix.lower() not in suffixes:
        raise TPKernelError(f"{flag}: unknown format {path.suffix or '(no suffix)'!r} in {text!r} "
                            f"(use {', '.join(suffixes)})")
    if not path.parent.is_dir():
        raise TPKernelError(f"{flag}: the folder {str(path.parent)!r} of {text!r} does not exist")
    return path


_DRAWING = (".svg", ".png", ".pdf", ".dot", ".gv")


def load_program(name: str):
    """A built-in example by name, or the program of a listing file (``.tp``)."""
    from pathlib import Path

    from .listing import parse_file
    path = Path(name)
    if name in examples.EXAMPLES and not path.is_file():
        return examples.get(name)
    if path.is_file():
        return parse_file(path)
    if path.suffix == ".tp" or "/" in name or "\\" in name:
        raise TPKernelError(f"no such listing file: {name!r}")
    raise TPKernelError(f"unknown example {name!r}; choose from {', '.join(examples.EXAMPLES)}, "
                        "or give a listing file (.tp)")


def _describe(data, d: int) -> str:
    """What :func:`tpkernel.examples.sample_data` made, in a few words."""
    if isinstance(data, dict):
        return "; ".join(f"{k}: {_describe(v, d)}" for k, v in data.items())
    if isinstance(data, list):
        return "sequences of lengths " + ", ".join(str(len(s)) for s in data) + f" in R^{d}"
    return f"{len(data)} vectors in R^{d} of norm √d"


def _show(args: argparse.Namespace) -> int:
    program = load_program(args.name)
    if args.draw not in (None, "none"):
        _output_path(args.draw, "--draw", _DRAWING)
    print(program.listing(args.style))
    data = examples.sample_data(program, n=args.n, d=args.d, seed=args.seed)
    k = kernels(program, data)
    print(f"data: {_describe(data, args.d)}, seed {args.seed}")
    with np.printoptions(precision=6, suppress=True, linewidth=120):
        print("\nNNGP Σ(ξ_i, ξ_j):")
        print(k.nngp)
        print("\nNTK Θ(ξ_i, ξ_j):")
        print(k.ntk)
    print("\n" + k.report.summary())
    if not args.no_formula:
        from .symbolic import formulas
        print("\nRecurrences (tpkernel formula NAME --closed-form substitutes the closed forms):")
        if isinstance(data, list):
            print(f"(for sequences of the full length {max(len(x) for x in data)}; the kernels above read "
                  "each sequence's own steps, as tp.formulas(program, lengths='any') writes out)")
        print(formulas(program))
    if args.draw != "none":
        from .draw import draw
        from .render import save
        saved = save(draw(program), args.draw or f"{program.name}.svg")
        if saved.note is None:
            print(f"\ndrawing (Tensor Programs IIb notation) written to {saved.path}")
        else:
            print(f"\ndrawing (Tensor Programs IIb notation): {saved.note}")
    return 0


def _load_data(spec: str, program, which: str):
    """``--data PATH`` or ``--data NAME=PATH`` (.npy, .npz with one array, .csv/.txt)."""
    from pathlib import Path
    name, _, path = spec.rpartition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
    p = Path(path)
    if not p.is_file():
        raise TPKernelError(f"{which}: no such data file: {path!r}")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise TPKernelError(f"{which}: {path!r} holds {len(z.files)} arrays ({', '.join(z.files)}); "
                                        "give one array per file")
                arr = z[z.files[0]]
        elif p.suffix in (".csv", ".txt"):
            with warnings.catch_warnings():  # an empty file is refused below, with its name
                warnings.simplefilter("ignore", UserWarning)
                arr = np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=2)
        else:
            raise TPKernelError(f"{which}: unknown data format {p.suffix!r} (use .npy, .npz, .csv or .txt)")
    except (OSError, ValueError) as err:
        raise TPKernelError(f"{which}: cannot read {path!r}: {err}") from None
    if not np.issubdtype(np.asarray(arr).dtype, np.number):
        raise TPKernelError(f"{which}: {path!r} does not hold numbers (dtype {arr.dtype})")
    return name, np.asarray(arr, dtype=float)


def _bind(specs: list[str] | None, program, which: str):
    if not specs:
        return None
    pairs = [_load_data(s, program, which) for s in specs]
    if len(pairs) == 1 and not pairs[0][0]:
        return pairs[0][1]
    if any(not n for n, _ in pairs):
        raise TPKernelError(f"{which}: with several data files, name each: --data NAME=PATH")
    return {n: a for n, a in pairs}


def _lengths(text: str | None, which: str):
    if text is None:
        return None
    try:
        return np.array([int(t) for t in text.split(",")])
    except ValueError:
        raise TPKernelError(f"{which}: lengths are comma-separated integers, got {text!r}") from None


def _kernel(args: argparse.Namespace) -> int:
    """The limiting kernels of a program on data files."""
    import json
    program = load_program(args.program)
    out = None if args.out is None else _output_path(args.out, "--out", (".npy", ".npz", ".json"))
    x1 = _bind(args.data, program, "--data")
    x2 = _bind(args.data2, program, "--data2")
    get = ("nngp", "ntk") if args.get == "both" else (args.get,)
    k = kernels(program, x1, x2, get=get, output=args.output, lengths1=_lengths(args.lengths, "--lengths"),
                lengths2=_lengths(args.lengths2, "--lengths2"))
    arrays = {g: getattr(k, g) for g in get}
    if args.out is None:
        with np.printoptions(precision=8, suppress=True, linewidth=120):
            for g, a in arrays.items():
                print(f"{'NNGP Σ' if g == 'nngp' else 'NTK Θ'} {a.shape[0]}×{a.shape[1]}:")
                print(a)
        print(k.report.summary())
        return 0
    if out.suffix.lower() == ".npy":
        np.save(out, arrays[get[0]] if len(get) == 1 else np.stack([arrays["nngp"], arrays["ntk"]]))
    elif out.suffix.lower() == ".npz":
        np.savez(out, **arrays)
    else:
        out.write_text(json.dumps({"program": program.name, **{g: a.tolist() for g, a in arrays.items()},
                                   "numerics": k.report.summary()}, indent=1) + "\n")
    what = " and ".join(arrays)
    stacked = " stacked as [nngp, ntk]" if out.suffix == ".npy" and len(get) == 2 else ""
    print(f"{what} ({'×'.join(map(str, next(iter(arrays.values())).shape))}) written to {out}{stacked}")
    return 0


def _examples(args: argparse.Namespace) -> int:
    for name, build in examples.EXAMPLES.items():
        p = build()
        print(f"{name:10s} {p.name:10s} {len(p)} nodes")
    return 0


def _check(args: argparse.Namespace) -> int:
    """Finite width against the limit: the convergence table and the log-log slope."""
    from . import finite
    program = load_program(args.name)
    if len(set(args.widths)) < 2:
        raise TPKernelError(f"--widths: the log-log slope needs at least two different widths, got "
                            f"{' '.join(map(str, args.widths))}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.figure import Figure
        kinds = tuple(f".{k}" for k in Figure().canvas.get_supported_filetypes())
        _output_path(args.plot, "--plot", kinds)
    data = examples.sample_data(program, n=args.n, d=args.d, seed=args.data_seed)
    print(f"{program.name}: empirical kernels at finite width against the limit, on {_describe(data, args.d)}")
    conv = finite.convergence(program, data, widths=args.widths, seeds=args.seeds, progress=args.progress)
    print(conv.table())
    if args.plot:
        conv.plot().figure.savefig(args.plot, bbox_inches="tight")
        print(f"plot written to {args.plot}")
    return 0


def _formula(args: argparse.Namespace) -> int:
    """The limiting kernels as recurrences (tpkernel.symbolic): text, or a LaTeX align block."""
    from .symbolic import formulas
    steps = {"rnn": lambda T: examples.rnn(T, "erf", "last"), "rnn-mean": lambda T: examples.rnn(T, "erf", "mean"),
             "gated": lambda T: examples.gated(T)}
    if args.steps is not None:
        if args.name not in steps:
            raise TPKernelError(f"-T applies to the recurrent examples ({', '.join(steps)}), not {args.name!r}")
        program = steps[args.name](args.steps)
    else:
        program = load_program(args.name)
    f = formulas(program, closed_form=args.closed_form)
    print(f.latex() if args.latex else f.legend() + "\n" + str(f))
    return 0


def _draw(args: argparse.Namespace) -> int:
    """The program drawn in the notation of Tensor Programs IIb (tpkernel.draw)."""
    from .draw import draw, draw_sgd
    program = load_program(args.name)
    if args.sgd:
        if args.wrap is not None or args.backward:
            raise TPKernelError("--sgd draws the forward and backward passes itself; drop --wrap/--backward")
        g = draw_sgd(program, legend=args.legend, rankdir=args.rankdir)
    else:
        g = draw(program, backward=args.backward, legend=args.legend, rankdir=args.rankdir, wrap=args.wrap)
    if args.out is None:
        print(g.source)
        return 0
    from .render import save
    saved = save(g, args.out)
    what = f"{'SGD step' if args.sgd else 'backward pass' if args.backward else 'drawing'} of {program.name}"
    print(f"{what} written to {saved.path}" if saved.note is None else f"{what}: {saved.note}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    """Random pruning: the pruned listing, the extra scaling, and pruned vs dense kernels."""
    from . import pruning
    program = load_program(args.name)
    where = args.where if args.where in pruning.WHERE else [w for w in args.where.split(",") if w]
    pruned = pruning.prune(program, args.p, rescale=args.rescale, where=where)
    print(pruned.listing())
    data = examples.sample_data(program, n=args.n, d=args.d, seed=args.seed)
    es = pruning.extra_scaling(pruned, data)
    print(es.summary())
    kp, kd = kernels(pruned, data), kernels(pruning.dense(pruned), data)
    print(f"\ndata: {_describe(data, args.d)}, seed {args.seed}")
    with np.printoptions(precision=6, suppress=True, linewidth=120):
        for kind, name in (("nngp", "NNGP Σ"), ("ntk", "NTK Θ")):
            print(f"\n{name} pruned:")
            print(getattr(kp, kind))
            print(f"{name} dense:")
            print(getattr(kd, kind))
            print(f"{name} pruned / dense:")
            print(getattr(kp, kind) / getattr(kd, kind))
    summary = kp.report.summary()
    if summary != "all expectations in closed form":
        print("\n" + summary)
    if args.width:
        print()
        print(pruning.compare(pruned, data, width=args.width, seeds=args.seeds).table())
    return 0


def parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="tpkernel",
        description="Neural architectures as tensor programs, and their infinite-width kernels "
                    "(NNGP Σ and NTK Θ).")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("show", help="listing, kernels, formulas and drawing of an example or a listing file",
                       description="Print the program listing, the NNGP and NTK on a small built-in data set "
                                   "(unit-norm inputs; sequences of different lengths for recurrent examples), "
                                   "the recurrences of the kernels, and write the drawing in the notation of "
                                   "Tensor Programs IIb.")
    s.add_argument("name", help=f"a built-in example ({', '.join(examples.EXAMPLES)}) or a listing file (.tp)")
    s.add_argument("--style", choices=("text", "unicode", "latex"), default="text",
                   help="the listing as text (default), or in the papers' algorithm style (unicode, latex)")
    s.add_argument("-n", type=_positive, default=4, help="number of data points (default 4)")
    s.add_argument("-d", type=_positive, default=3, help="input dimension (default 3)")
    s.add_argument("--seed", type=_natural, default=0, help="seed of the data set (default 0)")
    s.add_argument("--no-formula", action="store_true", help="do not print the recurrences")
    s.add_argument("--draw", metavar="FILE", default=None,
                   help="where to write the drawing (.svg, .png, .pdf, or .gv for the DOT source; default "
                        "NAME.svg; 'none' to skip).  Without Graphviz the DOT source NAME.gv is written")
    s.set_defaults(run=_show)
    k = sub.add_parser("kernel", help="the limiting NNGP and NTK of a program on data files",
                       description="Compute the limiting kernels of a built-in example or a listing file on "
                                   "your data: --data X.npy (N, d), or (N, T, d) for sequence data with "
                                   "--lengths; several data nodes: --data NAME=PATH for each.  Prints the "
                                   "kernels, or writes them with --out: .npy (one kernel, or both stacked "
                                   "as [nngp, ntk]), .npz (named arrays) or .json.")
    k.add_argument("program", metavar="FILE|NAME", help="a listing file (.tp) or a built-in example")
    k.add_argument("--data", action="append", required=True, metavar="[NAME=]X",
                   help="the data x1: .npy, .npz (one array), .csv or .txt")
    k.add_argument("--data2", action="append", metavar="[NAME=]X", help="a second data set x2 (default: x1)")
    k.add_argument("--lengths", help="per-example lengths of (N, T, d) sequence data x1, e.g. 3,2,3")
    k.add_argument("--lengths2", help="per-example lengths of x2")
    k.add_argument("--get", choices=("both", "nngp", "ntk"), default="both", help="which kernel(s) (default both)")
    k.add_argument("--output", metavar="READOUT", help="the readout, for programs with several")
    k.add_argument("--out", metavar="K.npy|K.npz|K.json", help="write the kernels to a file instead of printing")
    k.set_defaults(run=_kernel)
    e = sub.add_parser("examples", help="list the built-in examples")
    e.set_defaults(run=_examples)
    fo = sub.add_parser("formula", help="print the NNGP and NTK recurrences (sympy; --latex for an align block)",
                        description="Print, for every vector of the program, the recurrence of its covariance "
                                    "Σ and of its gradient covariance D, then the NNGP Σ(ξ,ξ') and the NTK "
                                    "Θ(ξ,ξ') as a sum over parameter uses (tpkernel.symbolic).")
    fo.add_argument("name", help=f"a built-in example ({', '.join(examples.EXAMPLES)}) or a .tp listing file")
    fo.add_argument("--latex", action="store_true", help="print a LaTeX align block")
    fo.add_argument("--closed-form", action="store_true",
                    help="substitute the closed forms of the expectations (arc-cosine, arcsin, ...)")
    fo.add_argument("-T", "--steps", type=_positive, default=None, help="number of steps of a recurrent example")
    fo.set_defaults(run=_formula)
    c = sub.add_parser("check", help="finite width vs the limit: convergence table and log-log slope",
                       description="Sample the program at each width with several seeds, compute the "
                                   "empirical NNGP and NTK (tpkernel.finite) and print the relative Frobenius "
                                   "error against the limit (mean ± std over seeds) and the fitted log-log "
                                   "slope (expected -0.5).")
    c.add_argument("name", help=f"a built-in example ({', '.join(examples.EXAMPLES)}) or a listing file")
    c.add_argument("--widths", type=_positive, nargs="+", default=[64, 256, 1024],
                   help="widths, at least two different ones (default 64 256 1024)")
    c.add_argument("--seeds", type=_positive, default=8, help="seeds per width (default 8)")
    c.add_argument("-n", type=_positive, default=6, help="number of data points (default 6)")
    c.add_argument("-d", type=_positive, default=3, help="input dimension (default 3)")
    c.add_argument("--data-seed", type=_natural, default=0, help="seed of the data set (default 0)")
    c.add_argument("--plot", metavar="FILE", help="also write the log-log plot (png, svg, pdf)")
    c.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: only on a terminal)")
    c.set_defaults(run=_check)
    dr = sub.add_parser("draw", help="draw a program in the notation of Tensor Programs IIb (svg, png, pdf, dot)",
                        description="Draw a built-in example or a listing file as in Tensor Programs IIb: hollow "
                                    "circles G-vars, filled circles X-vars, dashed edges MatMuls labelled with "
                                    "the matrix, trapezoid gates Nonlins.  --backward adds the backward pass "
                                    "below the forward one; --sgd draws one unrolled SGD step (NETSOR⊤+).  "
                                    "Without -o the DOT text is printed.")
    dr.add_argument("name", help=f"a built-in example ({', '.join(examples.EXAMPLES)}) or a listing file (.tp)")
    dr.add_argument("--backward", action="store_true", help="the forward row and the backward program below it")
    dr.add_argument("--sgd", action="store_true", help="one unrolled SGD step (train and test example)")
    dr.add_argument("--legend", action="store_true", help="add the legend of the notation")
    dr.add_argument("--rankdir", choices=("LR", "TB", "RL", "BT"), default="LR",
                    help="direction of computation (default LR, as in the paper)")
    dr.add_argument("--wrap", type=_positive, default=None, metavar="K",
                    help="break a long forward drawing into lines of K gates")
    dr.add_argument("-o", "--out", metavar="FILE",
                    help="write .svg, .png, .pdf, or .dot/.gv for the DOT source (default: print DOT); without "
                         "Graphviz (dot or pygraphviz) the DOT source FILE.gv is written instead")
    dr.set_defaults(run=_draw)
    pr = sub.add_parser("prune", help="random pruning: the pruned listing, its extra scaling, pruned vs dense "
                                      "kernels",
                        description="Put random masks on the parameters of a program (each weight kept with "
                                    "probability q = 1 - p; --rescale multiplies the kept weights by 1/√q), print "
                                    "the pruned listing, the extra scaling Θ_pruned/Θ (a constant such as q^m, or "
                                    "why it is not one), and the limiting kernels of the pruned and the dense "
                                    "program on a small data set (tpkernel.pruning).  --width adds the pruned "
                                    "network, its mask-induced pseudo-network and the dense network at finite "
                                    "width side by side.")
    pr.add_argument("name", help=f"a built-in example ({', '.join(examples.EXAMPLES)}) or a listing file (.tp)")
    pr.add_argument("-p", type=_probability, required=True, help="the pruning probability p in [0, 1)")
    pr.add_argument("--rescale", action="store_true", help="rescale the kept weights by 1/√(1-p)")
    pr.add_argument("--where", default="all",
                    help="which parameters: all (default), hidden, hidden+output, input, output, or "
                         "comma-separated names (e.g. W2,W3)")
    pr.add_argument("-n", type=_positive, default=4, help="number of data points (default 4)")
    pr.add_argument("-d", type=_positive, default=3, help="input dimension (default 3)")
    pr.add_argument("--seed", type=_natural, default=0, help="seed of the data set (default 0)")
    pr.add_argument("--width", type=_positive, default=None, help="also sample at this width (side by side)")
    pr.add_argument("--seeds", type=_positive, default=4, help="seeds for --width (default 4)")
    pr.set_defaults(run=_prune)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command; the exit status: 0, or 2 for an error in the input (one line
    ``tpkernel: error: ...`` on stderr, never a traceback)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as done:  # --help (0), or a usage error already reported (2)
        return done.code if isinstance(done.code, int) else 2
    try:
        return args.run(args)
    except TPKernelError as err:
        print(f"tpkernel: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the output was piped into `head` or similar: stop quietly
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as err:  # a file that cannot be read or written
        where = f" {str(err.filename)!r}" if err.filename is not None else ""
        print(f"tpkernel: error: cannot read or write{where}: {err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
