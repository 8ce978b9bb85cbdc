"""Timing worker for neural-tangents, run with the peer venv's python (../shared/peer/setup.sh).

Reads one JSON job per line on stdin and answers one JSON line on stdout:
  {"op": "fc", "act": "relu"|"erf", "n": N, "depth": L, "dtype": "float64"|"float32"}
      -> {"first": seconds of the first call (compilation included), "time": one timed call}
  {"op": "tanh", "n": N, "depth": L, "deg": 25}  (ElementwiseNumerical)
  {"op": "tanh", ..., "arrays": true} also returns the kernels (for the accuracy calibration)
  {"op": "info"} -> versions
Each job after the first with the same key reuses the compiled kernel function, so the
runner can alternate tpkernel and neural-tangents calls one by one.  Inputs are
``np.random.default_rng(seed).standard_normal((n, d))`` (seed 0, d = 784 unless given), as
in the runner.
It does not import tpkernel.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

CACHE = {}


def network(job):
    act = {"relu": stax.Relu, "erf": stax.Erf}.get(job.get("act"))
    layers = []
    for _ in range(job["depth"]):
        layers.append(stax.Dense(512, W_std=2 ** 0.5, b_std=0.05))
        if job["op"] == "tanh":
            layers.append(stax.ElementwiseNumerical(jnp.tanh, deg=job["deg"]))
        else:
            layers.append(act())
    layers.append(stax.Dense(1, W_std=2 ** 0.5, b_std=0.05))
    return jax.jit(stax.serial(*layers)[2], static_argnames="get")


def main():
    for line in sys.stdin:
        job = json.loads(line)
        if job.get("op") == "info":
            import neural_tangents
            print(json.dumps({"jax": jax.__version__, "nt": neural_tangents.__version__}), flush=True)
            continue
        key = json.dumps({k: job[k] for k in sorted(job) if k not in ("rep", "arrays")})
        x = np.random.default_rng(job.get("seed", 0)).standard_normal((job["n"], job.get("d", 784)))
        x = x.astype(job.get("dtype", "float64"))
        out = {}
        if key not in CACHE:
            CACHE[key] = network(job)
            t = time.perf_counter()
            k = CACHE[key](x, None, get=("nngp", "ntk"))
            jax.block_until_ready(k)
            out["first"] = time.perf_counter() - t
        t = time.perf_counter()
        k = CACHE[key](x, None, get=("nngp", "ntk"))
        jax.block_until_ready(k)
        out["time"] = time.perf_counter() - t
        out["ntk00"] = float(k[1][0, 1])
        if job.get("arrays"):
            out["nngp"] = np.asarray(k[0]).tolist()
            out["ntk"] = np.asarray(k[1]).tolist()
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
