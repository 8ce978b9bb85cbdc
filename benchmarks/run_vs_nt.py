"""Side-by-side timing of tpkernel and neural-tangents, alternating call by call.

    python benchmarks/run_vs_nt.py [--quick] [--reps 5] [--out benchmarks/RESULTS.md]

neural-tangents runs in a persistent subprocess of the peer venv (/tmp/ntpeer/venv, made by
../shared/peer/setup.sh; override with NT_PYTHON), so both libraries see the same machine
state.  For each configuration: one warm-up (neural-tangents' first call includes jit
compilation and is reported apart), then `reps` alternating timed calls, medians reported.
Benchmarks are not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import tpkernel as tp

HERE = Path(__file__).parent
NT_PYTHON = os.environ.get("NT_PYTHON", "/tmp/ntpeer/venv/bin/python")


def fc_program(act: str, depth: int) -> tp.Program:
    return tp.examples.mlp(depth, act, w_std=2 ** 0.5, b_std=0.05)


class NT:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([NT_PYTHON, str(HERE / "nt_worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})

    def __call__(self, job: dict) -> dict:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def time_tp(program, x, **kw) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    k = tp.kernels(program, x, **kw)
    return time.perf_counter() - t, k.ntk


def run(configs, reps: int, nt: NT) -> list[dict]:
    rows = []
    for cfg in configs:
        x = np.random.default_rng(0).standard_normal((cfg["n"], 784))
        if cfg["op"] == "tanh":
            program = tp.examples.mlp(cfg["depth"], "tanh", w_std=2 ** 0.5, b_std=0.05)
        else:
            program = fc_program(cfg["act"], cfg["depth"])
        first_tp, _ = time_tp(program, x)
        first_nt = nt(cfg)["first"]
        t_tp, t_nt = [], []
        for _ in range(reps):
            t, k = time_tp(program, x)
            t_tp.append(t)
            r = nt(cfg)
            t_nt.append(r["time"])
        row = dict(cfg, tp=statistics.median(t_tp), nt=statistics.median(t_nt), tp_first=first_tp,
                   nt_first=first_nt, ntk01=(float(k[0, 1]), r["ntk00"]))
        row["ratio"] = row["nt"] / row["tp"]
        row["ratio_first"] = row["nt_first"] / row["tp_first"]
        print(f"{cfg}: tpkernel {row['tp']:.3f}s  neural-tangents {row['nt']:.3f}s (first {first_nt:.2f}s)"
              f"  speed-up {row['ratio']:.2f}x (first call {row['ratio_first']:.2f}x)", flush=True)
        rows.append(row)
    return rows


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="only N = 500 and 1000")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    ns = [500, 1000] if args.quick else [500, 1000, 2000, 4000]
    configs = [{"op": "fc", "act": a, "n": n, "depth": L, "dtype": "float64"}
               for a in ("relu", "erf") for L in (3, 10) for n in ns]
    configs += [{"op": "tanh", "n": n, "depth": 3, "deg": 25} for n in ns[:2]]
    nt = NT()
    try:
        rows = run(configs, args.reps, nt)
    finally:
        nt.close()
    if args.out:
        lines = [f"# Benchmarks: tpkernel vs neural-tangents\n", f"Machine: {machine()}\n",
                 f"Medians of {args.reps} alternating calls after a warm-up; NNGP+NTK, inputs N x 784, "
                 "[Dense(√2, 0.05) + φ] x L + Dense.\n",
                 "| net | N | L | tpkernel (s) | neural-tangents (s) | speed-up | NT first call (s) | speed-up vs first |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            name = r.get("act", "tanh (quadrature vs ElementwiseNumerical deg 25)")
            lines.append(f"| {name} | {r['n']} | {r['depth']} | {r['tp']:.3f} | {r['nt']:.3f} | {r['ratio']:.2f}x | "
                         f"{r['nt_first']:.2f} | {r['ratio_first']:.2f}x |")
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
