"""Empirical NTK at finite width: tpkernel.finite against neural-tangents.

A ReLU MLP with ``--depth`` hidden layers of width ``--width`` (W_std = √2, b_std = 0.05,
NTK parametrization), ``--n`` inputs of dimension ``--d``.  tpkernel samples the network
(:func:`tpkernel.finite.sample`); neural-tangents receives **the same parameter values**
(``stax.Dense`` layout: W = Uᵀ, Wᵀ, v[:, None]) and computes its fastest empirical NTK
(``empirical_ntk_fn(..., implementation=STRUCTURED_DERIVATIVES, vmap_axes=0)``, jit,
float64) in a subprocess of the peer environment (``--python``, default
/tmp/ntpeer/venv/bin/python, made by shared/peer/setup.sh).  The two are timed
alternately, call by call, in the same run (the machine's load hits both alike); the
medians and their ratio are printed, and the two NTK matrices are compared.

    python benchmarks/bench_empirical_ntk.py [--width 512 --depth 3 --n 256 --d 784 --reps 9] [--threads 1]

Multi-threaded BLAS degrades badly on an oversubscribed machine (more runnable threads than
cores: its worker threads spin); ``--threads 1`` compares both libraries on one thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tpkernel as tp  # noqa: E402
from tpkernel import finite  # noqa: E402

W_STD, B_STD = 2 ** 0.5, 0.05

WORKER = r'''
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
import neural_tangents as nt
from neural_tangents import stax

path = sys.argv[1]
z = np.load(path)
depth, width = int(z["depth"]), int(z["width"])
layers = []
for _ in range(depth):
    layers += [stax.Dense(width, W_std=float(z["w_std"]), b_std=float(z["b_std"]), parameterization="ntk"), stax.Relu()]
layers.append(stax.Dense(1, W_std=float(z["w_std"]), b_std=float(z["b_std"]), parameterization="ntk"))
_, apply_fn, _ = stax.serial(*layers)
params = []
for l in range(depth + 1):
    params.append((jnp.asarray(z[f"W{l}"]), jnp.asarray(z[f"b{l}"])))
    if l < depth:
        params.append(())
x = jnp.asarray(z["x"])
ntk_fn = nt.empirical_ntk_fn(apply_fn, vmap_axes=0, implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES)
ntk = jax.jit(lambda x, p: ntk_fn(x, None, p))
t = time.perf_counter()
k = ntk(x, params).block_until_ready()
first = time.perf_counter() - t
np.save(path + ".ntk.npy", np.asarray(k))
print(json.dumps({"first": first, "jax": jax.__version__, "nt": nt.__version__, "dtype": str(k.dtype)}), flush=True)
for line in sys.stdin:
    if line.strip() != "time":
        break
    t = time.perf_counter()
    ntk(x, params).block_until_ready()
    print(json.dumps({"time": time.perf_counter() - t}), flush=True)
'''


def nt_layout(net: finite.Network, depth: int) -> dict[str, np.ndarray]:
    """Our parameters in stax.Dense's layout (x @ W + b, W of shape (fan_in, fan_out))."""
    P = net.params
    out = {"W0": P["U"].T, "b0": P["b1"]}
    for l in range(2, depth + 1):
        out[f"W{l - 1}"] = P[f"W{l}"].T
        out[f"b{l - 1}"] = P[f"b{l}"]
    out[f"W{depth}"] = P["f"][:, None]
    out[f"b{depth}"] = np.atleast_1d(P[finite.readout_bias_key("f")])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--d", type=int, default=784)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--python", default="/tmp/ntpeer/venv/bin/python")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for both sides (OpenBLAS for tpkernel, XLA's Eigen pool for neural-tangents); "
                         "default: each library's own default")
    args = ap.parse_args(argv)
    if args.threads is not None and os.environ.get("_BENCH_THREADS") != str(args.threads):
        # BLAS reads its thread count at start-up: run again with the variables set
        env = dict(os.environ, _BENCH_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
                   OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        os.execve(sys.executable, [sys.executable, __file__] + (argv if argv is not None else sys.argv[1:]), env)

    program = tp.examples.mlp(args.depth, "relu", w_std=W_STD, b_std=B_STD)
    x = np.random.default_rng(0).standard_normal((args.n, args.d))
    net = finite.sample(program, args.width, seed=0, input_dims=args.d)
    k_ours = net.kernels(x, get="ntk")  # warm-up (and the value to compare)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "params.npz")
        np.savez(path, x=x, depth=args.depth, width=args.width, w_std=W_STD, b_std=B_STD, **nt_layout(net, args.depth))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
        if args.threads is not None:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                                + ("false" if args.threads == 1 else "true")
                                + f" intra_op_parallelism_threads={args.threads}").strip()
        proc = subprocess.Popen([args.python, "-c", WORKER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            head = json.loads(proc.stdout.readline())
            k_nt = np.load(path + ".ntk.npy")
            ours, theirs = [], []
            for _ in range(args.reps):
                t = time.perf_counter()
                net.kernels(x, get="ntk")
                ours.append(time.perf_counter() - t)
                proc.stdin.write("time\n")
                proc.stdin.flush()
                theirs.append(json.loads(proc.stdout.readline())["time"])
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)

    k_nt = k_nt.reshape(args.n, args.n)
    rel = float(np.abs(k_ours - k_nt).max() / np.abs(k_nt).max())
    t_ours, t_nt = float(np.median(ours)), float(np.median(theirs))
    threads = "library defaults" if args.threads is None else f"{args.threads} thread(s) each"
    print(f"empirical NTK, ReLU MLP depth {args.depth}, width {args.width}, N = {args.n}, d = {args.d}, float64, "
          f"{args.reps} alternating calls each; {threads}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"  tpkernel.finite (numpy {np.__version__}):            median {t_ours * 1e3:8.1f} ms   "
          f"(min {min(ours) * 1e3:.1f})")
    print(f"  neural-tangents {head['nt']} (jax {head['jax']}, STRUCTURED_DERIVATIVES, jit): median "
          f"{t_nt * 1e3:8.1f} ms   (min {min(theirs) * 1e3:.1f}; first call with compilation {head['first']:.2f} s)")
    print(f"  ratio tpkernel / neural-tangents: {t_ours / t_nt:.2f}   (<= 1: tpkernel no slower)")
    print(f"  same parameters, max |Θ_tpkernel − Θ_nt| / max |Θ_nt| = {rel:.2e}  (NT dtype {head['dtype']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
