"""Finite width against the limit: the measurements behind docs/finite.md.

1. autograd: the empirical NTK of tpkernel.finite against PyTorch's Jacobian contraction
   Σ_p lr_p J_p J_pᵀ on the same sampled parameters (float64), for mlp, resnet, rnn (one
   shared W, sequences of different lengths) and the gated cell;
2. convergence: relative Frobenius error of the empirical NNGP and NTK against the limit,
   mean ± std over seeds, widths 64..4096, and the log-log slope (expected −0.5);
3. training: gradient descent on the MSE at finite width against kernel gradient descent
   with the limiting NTK driven by the same f_0, the relative gap in f_T − f_0 on train and
   test inputs, and its log-log slope against width.

    python benchmarks/finite_width_study.py [--seeds 8] [--quick] [--out DIR] [--only autograd convergence training]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the torch interpreter

import tpkernel as tp  # noqa: E402
from tpkernel import dynamics, finite  # noqa: E402

PROGRAMS = {
    "mlp": lambda: tp.examples.get("mlp"),
    "resnet": lambda: tp.examples.get("resnet"),
    "rnn": lambda: tp.examples.get("rnn"),
    "gated": lambda: tp.examples.get("gated"),
}


def torch_ntk(net: finite.Network, x) -> np.ndarray:
    """Σ_p lr_p J_p J_pᵀ by torch autograd on the network's parameter values (the independent
    torch interpreter of tests/torch_interpreter.py)."""
    from torch_interpreter import FiniteNet

    return FiniteNet(net.program, x, net.width, params=net.params).kernels()[1]


def autograd(args) -> dict:
    out = {}
    print("\n== 1. empirical NTK vs PyTorch autograd (same parameters, float64) ==")
    for name, build in PROGRAMS.items():
        p = build()
        x = tp.examples.sample_data(p, n=8, d=3, seed=1)
        worst = 0.0
        for seed in range(3):
            net = finite.sample(p, 128, seed=seed, input_dims=3)
            K = net.kernels(x, get="ntk")
            Kt = torch_ntk(net, x)
            worst = max(worst, float(np.abs(K - Kt).max() / np.abs(Kt).max()))
        out[name] = worst
        print(f"  {name:8s} width 128, 8 inputs, 3 draws: max |Θ̂ − Θ̂_torch| / max |Θ̂_torch| = {worst:.2e}")
    return out


def convergence(args) -> dict:
    out = {}
    widths = (64, 256, 1024) if args.quick else (64, 128, 256, 512, 1024, 2048, 4096)
    print(f"\n== 2. convergence to the limit: widths {widths[0]}..{widths[-1]}, {args.seeds} seeds ==")
    for name, build in PROGRAMS.items():
        p = build()
        x = tp.examples.sample_data(p, n=8, d=3, seed=0)
        t = time.time()
        c = finite.convergence(p, x, widths, args.seeds)
        print(c.table())
        print(f"  ({time.time() - t:.0f} s)")
        out[name] = {"rows": c.rows(), "slope": c.slope, "slope_stderr": c.slope_stderr}
        if args.out:
            import matplotlib
            matplotlib.use("Agg")
            c.plot().figure.savefig(Path(args.out) / f"convergence_{name}.png", dpi=120, bbox_inches="tight")
    return out


def regression_set(p, n, seed):
    x = tp.examples.sample_data(p, n=n, d=3, seed=seed)
    if isinstance(x, list):
        y = np.array([np.sin(s[:, 0].sum()) + 0.5 * np.cos(s[-1, 1]) for s in x])
    else:
        y = np.sin(x[:, 0]) + 0.5 * np.cos(x[:, 1])
    return x, y


def training(args) -> dict:
    out = {}
    widths = (64, 256, 1024) if args.quick else (64, 256, 1024, 4096)
    print(f"\n== 3. training: gradient descent vs kernel gradient descent, {args.steps} steps, "
          f"widths {widths[0]}..{widths[-1]}, {args.seeds} seeds ==")
    for name in ("mlp", "rnn"):
        p = PROGRAMS[name]()
        x, y = regression_set(p, 16, 10)
        x_test, _ = regression_set(p, 8, 11)
        t = time.time()
        c = dynamics.compare_training(p, x, y, x_test, widths, args.seeds, steps=args.steps)
        print(c.table())
        print(f"  ({time.time() - t:.0f} s)")
        out[name] = {"rows": c.rows(), "slope": c.slope, "learning_rate": c.learning_rate}
        if args.out:
            import matplotlib
            matplotlib.use("Agg")
            c.plot()[0].figure.savefig(Path(args.out) / f"training_{name}.png", dpi=120, bbox_inches="tight")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="widths up to 1024 only")
    ap.add_argument("--out", help="directory for plots and results.json")
    ap.add_argument("--only", nargs="+", choices=["autograd", "convergence", "training"],
                    default=["autograd", "convergence", "training"])
    args = ap.parse_args(argv)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    results = {}
    for part in args.only:
        results[part] = globals()[part](args)
    if args.out:
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
