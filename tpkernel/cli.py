"""The ``tpkernel`` command.

  tpkernel show NAME        listing and limiting kernels of a built-in example
  tpkernel examples         the built-in examples
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import examples
from .errors import TPKernelError
from .limit import kernels


def _show(args: argparse.Namespace) -> int:
    program = examples.get(args.name)
    print(program.listing())
    data = examples.sample_data(program, n=args.n, d=args.d, seed=args.seed)
    k = kernels(program, data)
    shape = "sequences of lengths " + ", ".join(str(len(s)) for s in data) if isinstance(data, list) \
        else f"{args.n} unit-norm vectors in R^{args.d} (scaled by √d)"
    print(f"data: {shape}, seed {args.seed}")
    with np.printoptions(precision=6, suppress=True, linewidth=120):
        print("\nNNGP Σ(ξ_i, ξ_j):")
        print(k.nngp)
        print("\nNTK Θ(ξ_i, ξ_j):")
        print(k.ntk)
    print("\n" + k.report.summary())
    return 0


def _examples(args: argparse.Namespace) -> int:
    for name, build in examples.EXAMPLES.items():
        p = build()
        print(f"{name:10s} {p.name:10s} {len(p)} nodes")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="tpkernel",
        description="Neural architectures as tensor programs, and their infinite-width kernels "
                    "(NNGP Σ and NTK Θ).")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("show", help="print the listing and the limiting kernels of a built-in example",
                       description="Print the program listing, then the NNGP and NTK on a small "
                                   "built-in data set (unit-norm inputs; sequences of different lengths "
                                   "for recurrent examples).")
    s.add_argument("name", help=f"a built-in example: {', '.join(examples.EXAMPLES)}")
    s.add_argument("-n", type=int, default=4, help="number of data points (default 4)")
    s.add_argument("-d", type=int, default=3, help="input dimension (default 3)")
    s.add_argument("--seed", type=int, default=0, help="seed of the data set (default 0)")
    s.set_defaults(run=_show)
    e = sub.add_parser("examples", help="list the built-in examples")
    e.set_defaults(run=_examples)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except TPKernelError as err:
        print(f"tpkernel: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
