"""Side-by-side timing of tpkernel and neural-tangents, alternating call by call.

    python benchmarks/run_vs_nt.py [--quick] [--reps 5] [--out benchmarks/RESULTS.md]
                                   [--no-scaling] [--no-empirical] [--blocks-n 20000]

neural-tangents runs in a persistent subprocess of the peer venv (/tmp/ntpeer/venv, made by
../shared/peer/setup.sh; override with NT_PYTHON), so both libraries see the same machine
state.  For each configuration: one warm-up (neural-tangents' first call includes jit
compilation and is reported apart), then `reps` alternating timed calls, medians reported.

Sections (each one table of RESULTS.md):
1. fully connected ReLU and erf nets, N in {500, 1000, 2000, 4000}, L in {3, 10}, float64 and
   float32 (speed-ups against neural-tangents' steady state and its first call);
2. first calls in fresh processes (import included; numba's on-disk cache warm and cold);
3. tanh by quadrature against ElementwiseNumerical(deg=25) *at equal accuracy*: both are
   measured against a converged reference on 200 points, and tpkernel runs at the smallest
   fixed trapezoid degree whose error is no larger than neural-tangents' (plus its default
   adaptive rule, 1e-11, for information);
4. the RNN NTK (erf, mean readout, TP II) against a straightforward NumPy implementation of
   the TP II recursion over all pairs of time steps;
5. the empirical NTK at finite width (benchmarks/bench_empirical_ntk.py, the finite-width
   developer's script, run as is);
6. scaling: time vs N, vs depth L, vs sequence length T, with fitted exponents;
7. peak memory of the fused path (tracemalloc) in units of N1·N2·8 bytes;
8. with --blocks-n: benchmarks/bench_blocks.py (blockwise dask evaluation, peak RSS).
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
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import tpkernel as tp  # noqa: E402

NT_PYTHON = os.environ.get("NT_PYTHON", "/tmp/ntpeer/venv/bin/python")


def fc_program(act: str, depth: int) -> tp.Program:
    return tp.examples.mlp(depth, act, w_std=2 ** 0.5, b_std=0.05)


def inputs(n: int, d: int = 784, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


class NT:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([NT_PYTHON, str(HERE / "nt_worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})

    def __call__(self, job: dict) -> dict:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def med(xs):
    return statistics.median(xs)


def rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


def loadavg() -> str:
    return "{:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg())


# -- 1. fully connected ----------------------------------------------------------------

def bench_fc(nt: NT, ns, depths, dtypes, reps: int) -> list[dict]:
    rows = []
    for dtype in dtypes:
        for act in ("relu", "erf"):
            for L in depths:
                for n in ns:
                    cfg = {"op": "fc", "act": act, "n": n, "depth": L, "dtype": dtype}
                    x = inputs(n)
                    p = fc_program(act, L)
                    tp_first, _ = timed(lambda: tp.kernels(p, x, dtype=dtype))
                    nt_first = nt(cfg)["first"]
                    a, b = [], []
                    for _ in range(reps):
                        t, k = timed(lambda: tp.kernels(p, x, dtype=dtype))
                        a.append(t)
                        r = nt(cfg)
                        b.append(r["time"])
                    row = dict(cfg, tp=med(a), nt=med(b), tp_first=tp_first, nt_first=nt_first,
                               agree=abs(float(k.ntk[0, 1]) - r["ntk00"]) / abs(r["ntk00"]))
                    row["ratio"] = row["nt"] / row["tp"]
                    row["ratio_first"] = row["nt_first"] / row["tp"]
                    print(f"{cfg}: tpkernel {row['tp']:.3f}s  neural-tangents {row['nt']:.3f}s "
                          f"(first {nt_first:.2f}s)  speed-up {row['ratio']:.2f}x (vs first call "
                          f"{row['ratio_first']:.2f}x)", flush=True)
                    rows.append(row)
    return rows


# -- 2. first calls in fresh processes ----------------------------------------------------

FIRST = r'''
import time, sys
t0 = time.perf_counter()
import numpy as np, tpkernel as tp
x = np.random.default_rng(0).standard_normal((int(sys.argv[1]), 784))
p = tp.examples.mlp(int(sys.argv[2]), "relu", w_std=2 ** 0.5, b_std=0.05)
t1 = time.perf_counter()
tp.kernels(p, x)
t2 = time.perf_counter()
tp.kernels(p, x)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
'''


def bench_first(n: int, L: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as cold:
        for name, env in (("warm", {}), ("cold", {"NUMBA_CACHE_DIR": cold})):
            res = subprocess.run([sys.executable, "-c", FIRST, str(n), str(L)], capture_output=True, text=True,
                                 env={**os.environ, **env}, cwd=str(HERE.parent))
            imp, first, second = (float(v) for v in res.stdout.split())
            out[name] = {"import": imp, "first": first, "second": second}
            print(f"first call N={n} L={L} numba cache {name}: import {imp:.2f}s, first {first:.2f}s, "
                  f"second {second:.2f}s", flush=True)
    return out


# -- 3. tanh at equal accuracy ----------------------------------------------------------

def bench_tanh(nt: NT, ns, reps: int, n_cal: int = 200) -> dict:
    L = 3
    p = tp.examples.mlp(L, "tanh", w_std=2 ** 0.5, b_std=0.05)
    xc = inputs(n_cal)
    ref = tp.kernels(p, xc, quad_tol=1e-13)
    cal = {"n": n_cal, "ref": ref.report.summary().replace("\n", "; ")}
    r = nt({"op": "tanh", "n": n_cal, "depth": L, "deg": 25, "arrays": True})
    err_nt = (rel(r["nngp"], ref.nngp), rel(r["ntk"], ref.ntk))
    cal["nt25"] = err_nt
    errs = {}
    chosen = None
    for deg in (17, 21, 25, 29, 33, 41, 49, 65):
        k = tp.kernels(p, xc, quad_deg=deg)
        errs[deg] = (rel(k.nngp, ref.nngp), rel(k.ntk, ref.ntk))
        if chosen is None and errs[deg][0] <= err_nt[0] and errs[deg][1] <= err_nt[1]:
            chosen = deg
    k = tp.kernels(p, xc)
    cal["tp_default"] = (rel(k.nngp, ref.nngp), rel(k.ntk, ref.ntk))
    cal["errs"] = errs
    cal["deg"] = chosen
    print(f"tanh calibration (n={n_cal}): NT deg 25 errors {err_nt}; tpkernel trapezoid {errs}; chosen {chosen}",
          flush=True)
    rows = []
    for n in ns:
        x = inputs(n)
        cfg = {"op": "tanh", "n": n, "depth": L, "deg": 25}
        tp.kernels(p, x, quad_deg=chosen)
        nt_first = nt(cfg)["first"]
        a, b = [], []
        for _ in range(reps):
            a.append(timed(lambda: tp.kernels(p, x, quad_deg=chosen))[0])
            b.append(nt(cfg)["time"])
        t_default = timed(lambda: tp.kernels(p, x))[0]
        row = {"n": n, "tp": med(a), "nt": med(b), "nt_first": nt_first, "tp_default": t_default}
        row["ratio"] = row["nt"] / row["tp"]
        print(f"tanh N={n}: tpkernel (deg {chosen}) {row['tp']:.3f}s, neural-tangents (deg 25) {row['nt']:.3f}s, "
              f"speed-up {row['ratio']:.2f}x; tpkernel adaptive 1e-11: {t_default:.2f}s", flush=True)
        rows.append(row)
    return {"cal": cal, "rows": rows}


# -- 4. the RNN against a NumPy recursion -------------------------------------------------

def rnn_numpy(X: np.ndarray, sw=1.0, su=1.0, sv=1.0):
    """TP II's erf-RNN recursion over all pairs of time steps, mean readout, no bias:
    C_ts = σ_W² K_{t-1,s-1} + σ_U² ⟨ξ_t, ξ'_s⟩/d, K = E[erf erf'], K̇ = E[erf' erf'],
    backward D_ts = (σ_v²/T² + σ_W² D_{t+1,s+1} K̇_{t+1,s+1}) and
    Θ = Σ_ts D_ts K̇_ts (σ_W² K_{t-1,s-1} + σ_U² G_ts) + σ_v²/T² Σ_ts K_ts."""
    N, T, d = X.shape
    G = [[X[:, t] @ X[:, s].T / d for s in range(T)] for t in range(T)]
    gd = [np.einsum("id,id->i", X[:, t], X[:, t]) / d for t in range(T)]
    K = [[None] * T for _ in range(T)]
    Kd = [[None] * T for _ in range(T)]
    q = []
    kdiag = None
    for t in range(T):
        qt = su ** 2 * gd[t] + (sw ** 2 * kdiag if t else 0.0)
        kdiag = 2 / np.pi * np.arcsin(2 * qt / (1 + 2 * qt))
        q.append(qt)
    for t in range(T):
        for s in range(T):
            C = su ** 2 * G[t][s] + (sw ** 2 * K[t - 1][s - 1] if t and s else 0.0)
            a, b = 1 + 2 * q[t][:, None], 1 + 2 * q[s][None, :]
            K[t][s] = 2 / np.pi * np.arcsin(2 * C / np.sqrt(a * b))
            Kd[t][s] = 4 / np.pi / np.sqrt(a * b - 4 * C * C)
    D = [[None] * T for _ in range(T)]
    ntk = 0.0
    nngp = 0.0
    for t in reversed(range(T)):
        for s in reversed(range(T)):
            dS = sv ** 2 / T ** 2 + (sw ** 2 * D[t + 1][s + 1] if t + 1 < T and s + 1 < T else 0.0)
            D[t][s] = dS * Kd[t][s]
            ntk = ntk + D[t][s] * (su ** 2 * G[t][s] + (sw ** 2 * K[t - 1][s - 1] if t and s else 0.0))
            nngp = nngp + sv ** 2 / T ** 2 * K[t][s]
    return nngp, ntk + nngp


def bench_rnn(reps: int, n: int = 200, T: int = 8, d: int = 10) -> dict:
    X = inputs(n * T, d, seed=1).reshape(n, T, d)
    p = tp.examples.rnn(T=T, readout="mean")
    k = tp.kernels(p, X)
    ref = rnn_numpy(X)
    a, b = [], []
    for _ in range(reps):
        a.append(timed(lambda: tp.kernels(p, X))[0])
        b.append(timed(lambda: rnn_numpy(X))[0])
    row = {"n": n, "T": T, "tp": med(a), "np": med(b), "agree": max(rel(k.nngp, ref[0]), rel(k.ntk, ref[1]))}
    print(f"RNN N={n} T={T}: tpkernel {row['tp']:.3f}s, NumPy recursion {row['np']:.3f}s, "
          f"agreement {row['agree']:.1e}", flush=True)
    return row


# -- 5. empirical NTK -------------------------------------------------------------------

def bench_empirical() -> str:
    """Library defaults (every BLAS / XLA thread), then one thread each."""
    outs = []
    for extra in ([], ["--threads", "1"]):
        res = subprocess.run([sys.executable, str(HERE / "bench_empirical_ntk.py"), "--reps", "21", *extra],
                             capture_output=True, text=True)
        out = (res.stdout or "") + ("" if res.returncode == 0 else f"\n(exit {res.returncode}) {res.stderr[-500:]}")
        print(out, flush=True)
        outs.append(out.strip())
    return "\n\n".join(outs)


# -- 6. scaling ---------------------------------------------------------------------------

def fit(xs, ys) -> float:
    """Least-squares slope of log time against log size."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def fit_offset(xs, ys) -> tuple[float, float, float]:
    """(a, b, γ) of t = a + b·x^γ (a >= 0: a fixed cost, e.g. the Gram matrix, or the machine's
    per-call overheads): the exponent of the part that grows."""
    from scipy.optimize import curve_fit
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    g0 = max(0.5, fit(xs, ys))
    try:
        (a, b, g), _ = curve_fit(lambda x, a, b, g: a + b * (x / xs[-1]) ** g, xs, ys,
                                 p0=(ys[0] / 2, ys[-1], g0), bounds=([0, 0, 0.2], [np.inf, np.inf, 4]))
    except (RuntimeError, ValueError):
        return float("nan"), float("nan"), float("nan")
    return float(a), float(b), float(g)


def best(f, reps: int) -> float:
    f()
    return min(timed(f)[0] for _ in range(reps))


def bench_scaling(reps: int, quick: bool) -> dict:
    out = {}
    ns = [1000, 2000, 4000] if quick else [1000, 2000, 3000, 4000, 6000, 8000]
    for L in (3, 10):
        p = fc_program("relu", L)
        ts = [best(lambda: tp.kernels(p, inputs(n)), reps) for n in ns]
        out[f"N (ReLU, L={L})"] = (ns, ts, fit(ns[-3:], ts[-3:]), fit_offset(ns, ts))
    Ls = [1, 2, 4, 8, 16, 32]
    x = inputs(2000)
    ts = [best(lambda: tp.kernels(fc_program("relu", L), x), reps) for L in Ls]
    slope, intercept = np.polyfit(Ls, ts, 1)
    out["L (ReLU, N=2000)"] = (Ls, ts, fit(Ls[-3:], ts[-3:]), fit_offset(Ls, ts), (float(intercept), float(slope)))
    Ts = [4, 8, 16] if quick else [4, 8, 12, 16, 24, 32]
    for readout in ("mean", "last"):
        n = 200
        ts = []
        for T in Ts:
            X = inputs(n * T, 10, seed=2).reshape(n, T, 10)
            ts.append(best(lambda: tp.kernels(tp.examples.rnn(T=T, readout=readout), X), max(1, reps // 2)))
        out[f"T (erf RNN, {readout} readout, N={n})"] = (Ts, ts, fit(Ts[-3:], ts[-3:]), fit_offset(Ts, ts))
    for k, v in out.items():
        print(f"scaling in {k}: {list(zip(v[0], [round(t, 3) for t in v[1]]))}, log-log slope (3 largest) "
              f"{v[2]:.2f}, t = a + b x^γ: γ = {v[3][2]:.2f}", flush=True)
    return out


# -- 7. memory ----------------------------------------------------------------------------

def bench_memory(n: int = 2000, L: int = 10) -> dict:
    out = {}
    x = inputs(n)
    for act, dtype in (("relu", "float64"), ("relu", "float32"), ("erf", "float64"), ("gelu", "float64")):
        p = fc_program(act, L)
        tp.kernels(p, x[:10], dtype=dtype)
        tracemalloc.start()
        k = tp.kernels(p, x, dtype=dtype)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del k
        out[(act, dtype)] = peak / (n * n * 8)
        print(f"memory {act} {dtype} N={n} L={L}: peak {peak / 2 ** 20:.0f} MiB = {out[(act, dtype)]:.2f} x N²·8 B",
              flush=True)
    return out


# -- report -------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2 ** 20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    try:
        import numba
        nb = numba.__version__
    except ImportError:
        nb = "absent"
    return (f"{cpu}, {os.cpu_count()} cores{mem}, Linux {platform.release()}, Python {platform.python_version()}, "
            f"numpy {np.__version__}, numba {nb}")


def report(args, info, fc, first, tanh, rnn, emp, scaling, memory, blocks_out, load0, load1) -> str:
    L = ["# Benchmarks: tpkernel vs neural-tangents\n",
         f"Machine: {machine()}; neural-tangents {info.get('nt')} / jax {info.get('jax')} (CPU, float64 "
         f"via jax_enable_x64, jit).  Load average (1/5/15 min) at start {load0}, at end {load1} (the "
         "benchmark itself accounts for 1-2; more means other jobs shared the cores and inflated absolute "
         "times); the runner alternates the two libraries call by call, so the ratios compare like with like.\n",
         f"Command: `python benchmarks/run_vs_nt.py {' '.join(sys.argv[1:])}`.  Medians of {args.reps} alternating "
         "calls after a warm-up; NNGP+NTK of [Dense(√2, 0.05) + φ] × L + Dense on inputs N × 784 "
         "(standard normal).\n"]
    if fc:
        L += ["## 1. Fully connected networks (NNGP + NTK)\n",
              "Speed-up = neural-tangents' median / tpkernel's median; vs first call = neural-tangents' first "
              "call (jit compilation included) / tpkernel's median.  `agree`: relative difference of Θ[0, 1].\n",
              "| φ | dtype | N | L | tpkernel (s) | neural-tangents (s) | speed-up | NT first call (s) | "
              "speed-up vs NT first | tpkernel first (s) | agree |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in fc:
            L.append(f"| {r['act']} | {r['dtype']} | {r['n']} | {r['depth']} | {r['tp']:.3f} | {r['nt']:.3f} | "
                     f"**{r['ratio']:.1f}x** | {r['nt_first']:.2f} | {r['ratio_first']:.1f}x | {r['tp_first']:.3f} | "
                     f"{r['agree']:.0e} |")
        L.append("")
    if first:
        L += ["## 2. First calls in fresh processes (ReLU, N = 2000, L = 10, float64)\n",
              "| numba cache | import tpkernel (s) | first call (s) | second call (s) |", "|---|---|---|---|"]
        for k, v in first.items():
            L.append(f"| {k} | {v['import']:.2f} | {v['first']:.2f} | {v['second']:.2f} |")
        L.append("\nThe numba kernels are compiled once per machine and cached on disk (`cache=True`); "
                 "a cold cache pays their compilation on the first call.\n")
    if tanh:
        c = tanh["cal"]
        L += ["## 3. tanh by quadrature at equal accuracy (L = 3)\n",
              f"Calibration on {c['n']} points against a converged reference (tpkernel, adaptive to 1e-13: "
              f"{c['ref']}).  Relative max errors (NNGP, NTK):\n",
              f"- neural-tangents `ElementwiseNumerical(tanh, deg=25)` (Gauss-Hermite): "
              f"{c['nt25'][0]:.1e}, {c['nt25'][1]:.1e}",
              "- tpkernel, fixed trapezoid degree: " + "; ".join(f"{d}: {e[0]:.1e}, {e[1]:.1e}"
                                                                   for d, e in c["errs"].items()),
              f"- tpkernel default (adaptive, quad_tol = 1e-11): {c['tp_default'][0]:.1e}, {c['tp_default'][1]:.1e}\n",
              f"Timed: tpkernel at degree **{c['deg']}** (the smallest whose errors are both no larger than "
              "neural-tangents' at 25) against neural-tangents at 25.\n",
              "| N | tpkernel deg {} (s) | neural-tangents deg 25 (s) | speed-up | NT first call (s) | "
              "tpkernel adaptive 1e-11 (s) |".format(c["deg"]), "|---|---|---|---|---|---|"]
        for r in tanh["rows"]:
            L.append(f"| {r['n']} | {r['tp']:.3f} | {r['nt']:.3f} | **{r['ratio']:.1f}x** | {r['nt_first']:.2f} | "
                     f"{r['tp_default']:.2f} |")
        L.append("")
    if rnn:
        L += ["## 4. RNN NTK (erf, mean readout, TP II) against a NumPy recursion\n",
              "| N | T | tpkernel (s) | NumPy recursion over all (t, s) (s) | ratio | agreement |",
              "|---|---|---|---|---|---|",
              f"| {rnn['n']} | {rnn['T']} | {rnn['tp']:.3f} | {rnn['np']:.3f} | {rnn['np'] / rnn['tp']:.2f}x | "
              f"{rnn['agree']:.1e} |\n",
              "tpkernel runs the general evaluator here (an RNN is not a chain): memoised E[Z Z'] over the "
              "forward and backward programs.\n"]
    if emp:
        L += ["## 5. Empirical NTK at finite width (benchmarks/bench_empirical_ntk.py)\n", "```", emp, "```\n"]
    if scaling:
        L += ["## 6. Scaling\n",
              "| in | values | best of 3 (s) | log-log slope, 3 largest | fit t = a + b·x^γ: γ | a (s) |",
              "|---|---|---|---|---|---|"]
        for k, v in scaling.items():
            L.append(f"| {k} | {', '.join(map(str, v[0]))} | {', '.join(f'{t:.3f}' for t in v[1])} | "
                     f"{v[2]:.2f} | **{v[3][2]:.2f}** | {v[3][0]:.3f} |")
        lin = scaling.get("L (ReLU, N=2000)")
        L.append("\nγ is the exponent of the part of the time that grows (a is the fixed part: the Gram "
                 "matrix of the inputs for L, per-call overheads otherwise); the plain log-log slope "
                 "underestimates it where fixed costs still weigh."
                 + (f"  Depth: a straight line fits, time ≈ {lin[4][0]:.3f} s + {lin[4][1] * 1e3:.1f} ms × L."
                    if lin else "")
                 + "  For the RNN the general evaluator computes E[s_t s'_s] and E[ds_t ds'_s] for every pair "
                   "of steps (T² per pair of sequences), with the last-state readout too: the pooled readout "
                   "has a (zero-weighted) seed at every step.\n")
    if memory:
        L += ["## 7. Peak memory of the fused path (tracemalloc, N = 2000, L = 10)\n",
              "| φ | dtype | peak / (N1·N2·8 bytes) |", "|---|---|---|"]
        for (act, dt), v in memory.items():
            L.append(f"| {act} | {dt} | {v:.2f} |")
        L.append("\nThe fused path holds two N1 × N2 arrays (K and T, updated in place; float32 mode: two "
                 "half-size arrays) plus band temporaries: the constant is 2 (closed forms), 6 for tanh/sigmoid "
                 "quadrature layers.\n")
    if blocks_out:
        L += ["## 8. Blockwise with dask (benchmarks/bench_blocks.py)\n", "```", blocks_out, "```\n"]
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="N = 500 and 1000 only, fewer scaling points")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-empirical", action="store_true")
    ap.add_argument("--only", choices=["fc", "tanh", "rnn", "first", "memory", "scaling"], default=None)
    ap.add_argument("--blocks-n", type=int, default=None, help="run bench_blocks.py with this N")
    args = ap.parse_args(argv)
    ns = [500, 1000] if args.quick else [500, 1000, 2000, 4000]
    load0 = loadavg()
    want = (lambda s: args.only in (None, s))
    nt = NT()
    try:
        info = nt({"op": "info"})
        fc = bench_fc(nt, ns, (3, 10), ("float64", "float32"), args.reps) if want("fc") else []
    finally:
        nt.close()
    tanh = None
    if want("tanh"):
        nt = NT()  # a fresh worker: ElementwiseNumerical holds N² × deg² arrays
        try:
            tanh = bench_tanh(nt, [250, 500] if not args.quick else [250], args.reps)
        except Exception as e:  # noqa: BLE001 - report and go on (e.g. the worker ran out of memory)
            print(f"tanh benchmark failed: {e!r}", flush=True)
        finally:
            nt.close()
    first = bench_first(2000, 10) if want("first") else None
    rnn = bench_rnn(args.reps) if want("rnn") else None
    emp = bench_empirical() if want("fc") and not args.no_empirical else None
    scaling = bench_scaling(3, args.quick) if want("scaling") and not args.no_scaling else None
    memory = bench_memory() if want("memory") else None
    blocks_out = None
    if args.blocks_n:
        res = subprocess.run([sys.executable, str(HERE / "bench_blocks.py"), "--n", str(args.blocks_n)],
                             capture_output=True, text=True)
        blocks_out = res.stdout.strip() + ("" if res.returncode == 0 else f"\n(exit {res.returncode}) "
                                           f"{res.stderr[-800:]}")
        print(blocks_out, flush=True)
    load1 = loadavg()
    text = report(args, info, fc, first, tanh, rnn, emp, scaling, memory, blocks_out, load0, load1)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
