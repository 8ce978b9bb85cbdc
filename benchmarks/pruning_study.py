"""Random pruning (issue 7): the measured acceptance numbers behind docs/pruning.md.

1. limit: bias-free ReLU MLP with 3 hidden layers, hidden and output layers pruned with
   q = 0.5: Θ_pruned / Θ and Σ_pruned / Σ against q³ (and 1 with rescaling), max deviation;
2. finite: the same networks at width 2048 over 16 seeds: relative Frobenius error of the
   seed-averaged empirical kernels against the pruned limits (q³Θ, and Θ when rescaled);
3. mixture: the exact limit of a pruned input layer (d = 10, p = 0.5) against finite width
   4096 — agreement within sampling error, and the distance to q·Θ in units of that error;
4. width study: p in {0, 1/4, 1/2, 3/4, 7/8}, widths 128..4096, the width needed for a
   target NTK gap and its fit against 1/(1 − p) (slope, intercept, R²);
5. rnn: an RNN with a pruned recurrent matrix, log-log slope of the error against width.

    python benchmarks/pruning_study.py [--quick] [--only limit finite mixture width rnn] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tpkernel as tp  # noqa: E402
from tpkernel import finite, pruning  # noqa: E402
from tpkernel.finite.convergence import relative_error, width_seed  # noqa: E402


def mlp3(std: float = 1.5) -> tp.Program:
    """The bias-free ReLU MLP with 3 hidden layers (U, W2, W3, readout f)."""
    return tp.examples.mlp(3, "relu", w_std=std, b_std=None)


def unit_inputs(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(d)


def section(title: str) -> None:
    print("\n" + "=" * 100 + "\n" + title + "\n" + "=" * 100, flush=True)


# ---------------------------------------------------------------------------------------

def limit_ratios(args) -> dict:
    section("1. limit: Θ_pruned/Θ and Σ_pruned/Σ of the bias-free 3-hidden-layer ReLU MLP, "
            "hidden+output pruned, q = 0.5")
    p = mlp3()
    out = {}
    for name, x in (("8 unit-norm inputs, d = 10", unit_inputs(8, 10)),
                    ("Arora toy inputs (SPEC §4)", None)):
        if x is None:
            np.random.seed(1)
            a, b = np.random.random(10), np.random.random(10)
            x = np.stack([a / np.linalg.norm(a), b / np.linalg.norm(b)]) * np.sqrt(10)
        Kd = tp.kernels(p, x)
        for rescale, target in ((False, 0.125), (True, 1.0)):
            K = tp.kernels(pruning.prune(p, 0.5, rescale=rescale, where="hidden+output"), x)
            dev = {k: float(np.max(np.abs(getattr(K, k) / getattr(Kd, k) - target))) for k in ("ntk", "nngp")}
            key = f"{name}, {'rescaled' if rescale else 'not rescaled'}"
            out[key] = dev
            print(f"{key:55s} target {target:<6g} max|ratio − target|: NTK {dev['ntk']:.1e}  NNGP {dev['nngp']:.1e}")
    es = pruning.extra_scaling(pruning.prune(p, 0.5, where="hidden+output"), unit_inputs(8, 10))
    print(es.summary())
    out["structural"] = {"ntk": es.ntk, "nngp": es.nngp, "expr": str(es.common_q())}
    return out


def finite_width(args) -> dict:
    width, S = (512, 4) if args.quick else (2048, 16)
    section(f"2. finite width {width}, {S} seeds: seed-averaged empirical kernels against the pruned limits")
    p = mlp3()
    x = unit_inputs(8, 10)
    Kd = tp.kernels(p, x)
    out = {"width": width, "seeds": S}
    for label, prog, factor in (("dense", p, 1.0),
                                ("pruned q=0.5 (limit q³Θ)", pruning.prune(p, 0.5, where="hidden+output"), 0.125),
                                ("pruned q=0.5, rescaled (limit Θ)",
                                 pruning.prune(p, 0.5, rescale=True, where="hidden+output"), 1.0)):
        t = time.time()
        Ks = [finite.empirical_kernels(prog, x, width=width, seed=width_seed(s, width)) for s in range(S)]
        row = {}
        for kind in ("ntk", "nngp"):
            ref = factor * getattr(Kd, kind)
            mean = np.mean([getattr(k, kind) for k in Ks], axis=0)
            per = np.array([relative_error(getattr(k, kind), ref) for k in Ks])
            scale = np.array([np.sum(getattr(k, kind) * getattr(Kd, kind)) / np.sum(getattr(Kd, kind) ** 2)
                              for k in Ks])
            row[kind] = {"mean_kernel_error": relative_error(mean, ref), "per_seed_error": float(per.mean()),
                         "per_seed_sd": float(per.std(ddof=1)), "scaling": float(scale.mean()),
                         "scaling_se": float(scale.std(ddof=1) / np.sqrt(S))}
        out[label] = row
        print(f"{label:34s} ({time.time() - t:5.1f}s)  " + "  ".join(
            f"{k.upper()}: ‖mean K̂ − K‖/‖K‖ = {v['mean_kernel_error']:.4f}, per seed {v['per_seed_error']:.4f} "
            f"± {v['per_seed_sd']:.4f}, fitted c = {v['scaling']:.4f} ± {v['scaling_se']:.4f}"
            for k, v in row.items()), flush=True)
    return out


def mixture(args) -> dict:
    width, S = (1024, 8) if args.quick else (4096, 48)
    section(f"3. exact limit of a pruned input layer (d = 10, p = 0.5) against finite width {width}, {S} seeds")
    # the Arora et al. toy network of SPEC §4 (W ~ N(0,1), activations × √(2/n)), input layer pruned
    p = tp.Program("arora3")
    xi = p.data("xi")
    h = tp.relu(p.input_layer("U", std=1.0) @ xi)
    for l in (2, 3):
        h = tp.relu(p.matrix(f"W{l}", std=np.sqrt(2)) @ h)
    p.output(h, std=np.sqrt(2))
    prog = pruning.prune(p, 0.5, where="input")
    rng = np.random.default_rng(0)
    sparse = np.zeros((6, 10))
    for i, (a, b) in enumerate([(0, 1), (1, 2), (2, 3), (0, 3), (0, 2), (1, 3)]):
        sparse[i, [a, b]] = 1.0
    sparse += 0.1 * rng.standard_normal((6, 10))
    sets = {"gaussian": unit_inputs(6, 10, seed=0),
            "sparse": sparse / np.linalg.norm(sparse, axis=1, keepdims=True) * np.sqrt(10)}
    out = {"width": width, "seeds": S}
    for name, x in sets.items():
        t = time.time()
        K = tp.kernels(prog, x)
        Kq = tp.kernels(pruning.pseudo_network(prog), x)  # = q·Θ for this homogeneous network
        assert "exact limit" in K.report.summary()
        Ks = [finite.empirical_kernels(prog, x, width=width, seed=width_seed(s, width)) for s in range(S)]
        row = {}
        for kind in ("ntk", "nngp"):
            ex, q = getattr(K, kind), getattr(Kq, kind)
            A = np.array([getattr(k, kind) for k in Ks])
            mean, se = A.mean(0), A.std(0, ddof=1) / np.sqrt(S)
            D = ex - q
            proj = np.array([np.sum((a - q) * D) / np.sum(D * D) for a in A])  # 1: exact, 0: q·Θ
            pm, pse = float(proj.mean()), float(proj.std(ddof=1) / np.sqrt(S))
            iu = np.triu_indices(len(x), 1)
            row[kind] = {
                "exact_vs_qTheta": relative_error(ex, q),
                "projection": pm, "projection_se": pse,
                "z_exact": (pm - 1.0) / pse, "z_qTheta": pm / pse,
                "chi2_exact": float(np.mean(((mean - ex)[iu] / se[iu]) ** 2)),
                "chi2_qTheta": float(np.mean(((mean - q)[iu] / se[iu]) ** 2)),
                "fro_mean_exact": relative_error(mean, ex), "fro_mean_qTheta": relative_error(mean, q),
                "fro_se": float(np.linalg.norm(se) / np.linalg.norm(ex)),
            }
        out[name] = row
        print(f"data {name} ({time.time() - t:.1f}s): {K.report.summary()}")
        for kind, v in row.items():
            print(f"  {kind.upper()}: ‖K_exact − qΘ‖/‖K_exact‖ = {v['exact_vs_qTheta']:.4f}; projection of the "
                  f"finite-width mean on (K_exact − qΘ): {v['projection']:.3f} ± {v['projection_se']:.3f} "
                  f"(exact: 1, {v['z_exact']:+.2f} SE; q·Θ: 0, {v['z_qTheta']:+.1f} SE); "
                  f"χ²/dof off-diagonal: exact {v['chi2_exact']:.2f}, q·Θ {v['chi2_qTheta']:.2f}; "
                  f"‖mean − K‖/‖K‖: exact {v['fro_mean_exact']:.4f}, q·Θ {v['fro_mean_qTheta']:.4f} "
                  f"(noise {v['fro_se']:.4f})", flush=True)
    return out


def width(args) -> dict:
    widths, S = ((64, 128, 256, 512), 3) if args.quick else ((128, 256, 512, 1024, 2048, 4096), 16)
    target = 0.2 if args.quick else 0.1
    section(f"4. width study: bias-free 3-hidden-layer ReLU MLP, hidden+output pruned, {S} seeds")
    t = time.time()
    ws = pruning.width_study(mlp3(), ps=(0.0, 0.25, 0.5, 0.75, 0.875), widths=widths, seeds=S,
                             target_gap=target, x=unit_inputs(8, 10), progress=False)
    print(ws.table())
    out = {"widths": list(map(int, widths)), "seeds": S, "target_gap": target, "ps": ws.ps.tolist(),
           "gap_mean": ws.mean.tolist(), "gap_sd": ws.spread.tolist()}
    for method in ("fit", "free", "interpolate"):
        ws.method = method
        ws.__post_init__()
        out[method] = {"needed_width": ws.needed_width.tolist(), "grid_width": ws.grid_width,
                       "exponents": ws.exponents.tolist(), "extrapolated": ws.extrapolated.tolist(), **ws.fit}
        print(f"method {method:11s}: needed widths {np.round(ws.needed_width).astype(int).tolist()}  →  "
              f"{ws.fit['slope']:.1f}/(1−p) + {ws.fit['intercept']:.1f}, R² = {ws.fit['r2']:.4f}")
    print(f"({time.time() - t:.0f}s)")
    if args.plots:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        ws.method = "fit"
        ws.__post_init__()
        ws.plot_gaps(axes[0])
        ws.plot_needed(axes[1])
        fig.savefig(args.plots, bbox_inches="tight")
        print(f"plots written to {args.plots}")
    return out


def rnn(args) -> dict:
    widths, S = ((64, 256, 1024), 3) if args.quick else ((64, 128, 256, 512, 1024, 2048, 4096), 8)
    section(f"5. RNN (erf, T = 3) with its recurrent matrix pruned (p = 0.5): finite width → limit, {S} seeds")
    prog = pruning.prune(tp.examples.rnn(3), 0.5, where=["W"])
    data = tp.examples.sample_data(prog, n=4)
    t = time.time()
    conv = finite.convergence(prog, data, widths=widths, seeds=S, progress=False)
    print(conv.table())
    print(f"({time.time() - t:.0f}s)")
    return {"widths": list(map(int, widths)), "seeds": S, "slope": conv.slope, "slope_se": conv.slope_stderr,
            "rows": conv.rows()}


STEPS = {"limit": limit_ratios, "finite": finite_width, "mixture": mixture, "width": width, "rnn": rnn}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small widths and few seeds (a smoke run)")
    ap.add_argument("--only", nargs="+", choices=list(STEPS), help="run only these parts")
    ap.add_argument("--out", help="write the numbers as JSON")
    ap.add_argument("--plots", help="write the width-study plots (png/svg/pdf)")
    args = ap.parse_args()
    t0 = time.time()
    results = {}
    for name, fn in STEPS.items():
        if args.only and name not in args.only:
            continue
        results[name] = fn(args)
    print(f"\ntotal {time.time() - t0:.0f}s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=float) + "\n")
        print(f"numbers written to {args.out}")


if __name__ == "__main__":
    main()
