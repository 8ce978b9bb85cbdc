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
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tpkernel as tp  # noqa: E402
from tpkernel import dynamics, finite  # noqa: E402

PROGRAMS = {
    "mlp": lambda: tp.examples.get("mlp"),
    "resnet": lambda: tp.examples.get("resnet"),
    "rnn": lambda: tp.examples.get("rnn"),
    "gated": lambda: tp.examples.get("gated"),
}


def torch_ntk(net: finite.Network, x) -> np.ndarray:
    """Σ_p lr_p J_p J_pᵀ by torch autograd on the network's parameter values."""
    import torch

    from tpkernel.backward import readout_scale
    from tpkernel.data import bind, max_steps, pool
    from tpkernel.ir import Bias, Embed, LinComb, MatMul, Nonlin

    maps = {"abrelu": lambda a, b: (lambda h: a * torch.clamp(h, max=0.0) + b * torch.clamp(h, min=0.0)),
            "erf": lambda: torch.special.erf, "tanh": lambda: torch.tanh, "sigmoid": lambda: torch.sigmoid,
            "prod": lambda: (lambda *hs: math.prod(hs[1:], start=hs[0]))}
    p, n = net.program, net.width
    r = p.readouts[0]
    bound = bind(p, x, None, "x")
    c = torch.tensor(pool(p, r, bound, max_steps(p)))
    data = {k: torch.tensor(v[0]) for k, v in bound.items()}
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    vals = {}
    for node in p:
        if isinstance(node, Bias):
            vals[node.name] = node.std * leaves[node.name][:, None]
        elif isinstance(node, Embed):
            U = leaves[node.layer]
            vals[node.name] = p[node.layer].std * (U @ data[node.data][:, node.step or 0].T) / math.sqrt(U.shape[1])
        elif isinstance(node, MatMul):
            W = leaves[node.matrix]
            vals[node.name] = p[node.matrix].std * ((W.T if node.transpose else W) @ vals[node.arg]) / math.sqrt(n)
        elif isinstance(node, Nonlin):
            vals[node.name] = maps[node.fn.name](*node.fn.params)(*(vals[a] for a in node.args))
        elif isinstance(node, LinComb):
            vals[node.name] = node.const + sum(k * vals[a] for a, k in zip(node.args, node.coeffs))
    xbar = sum(c[:, k][None, :] * vals[a] for k, a in enumerate(r.args))
    f = readout_scale(p, r)[0] * (leaves[r.vector or r.name] @ xbar) / math.sqrt(n)
    if r.b_std is not None:
        f = f + r.b_std * leaves[finite.readout_bias_key(r.name)]
    K = np.zeros((len(f), len(f)))
    for k, leaf in leaves.items():
        J = torch.stack([torch.autograd.grad(f[i], leaf, retain_graph=True)[0].reshape(-1) for i in range(len(f))])
        K += net.infos[k].lr * (J @ J.T).numpy()
    return K


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
