"""A large kernel blockwise with dask: N = 20000 (a 3.2 GB float64 matrix per kernel).

    python benchmarks/bench_blocks.py [--n 20000] [--chunks 4000] [--depth 10] [--d 784]
                                      [--memmap DIR] [--workers 2]

The fully connected ReLU net of the other benchmarks ([Dense(√2, 0.05) + ReLU] × depth +
Dense) on N standard-normal inputs of dimension d.  ``tp.kernels(..., chunks=...)`` builds
the dask graph (tiles on and above the diagonal; those below are transposes);
:func:`tpkernel.limit.blocks.store` writes the NNGP and the NTK tile by tile into two
preallocated N × N arrays (in memory, or ``np.memmap`` files in ``--memmap DIR`` for an
out-of-core run) with the threaded scheduler.  Reported: wall time, the process's peak
resident memory (VmHWM from /proc/self/status) in GiB and in units of N²·8 bytes, and spot
checks of three tiles (one on the diagonal) against in-memory evaluations of the same blocks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tpkernel as tp  # noqa: E402
from tpkernel.limit import blocks  # noqa: E402


def vm(key: str) -> float:
    """A /proc/self/status field in GiB (VmHWM: peak resident set; VmRSS: current)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 2 ** 20
    return float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--chunks", type=int, default=4000)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--d", type=int, default=784)
    ap.add_argument("--workers", type=int, default=2, help="dask threads (tiles computed at once)")
    ap.add_argument("--memmap", type=Path, default=None, help="write the kernels to .npy files in this directory")
    args = ap.parse_args(argv)
    n, ch = args.n, args.chunks
    program = tp.examples.mlp(args.depth, "relu", w_std=2 ** 0.5, b_std=0.05)
    x = np.random.default_rng(0).standard_normal((n, args.d))
    tp.kernels(program, x[:10])  # load the compiled kernels
    base = vm("VmRSS")
    if args.memmap:
        args.memmap.mkdir(parents=True, exist_ok=True)
        nngp = np.lib.format.open_memmap(args.memmap / "nngp.npy", mode="w+", dtype=np.float64, shape=(n, n))
        ntk = np.lib.format.open_memmap(args.memmap / "ntk.npy", mode="w+", dtype=np.float64, shape=(n, n))
    else:
        nngp = np.empty((n, n))
        ntk = np.empty((n, n))
    K = tp.kernels(program, x, chunks=ch)
    nt = len(K.ntk.chunks[0])
    t = time.perf_counter()
    blocks.store(K, nngp, ntk, progress=sys.stderr.isatty(), scheduler="threads", num_workers=args.workers)
    wall = time.perf_counter() - t
    peak = vm("VmHWM")
    # spot checks: in-memory evaluations of individual blocks
    rng = np.random.default_rng(1)
    checks = []
    nb = (n + ch - 1) // ch
    pairs = [(0, 0), (0, nb - 1), (int(rng.integers(1, nb)), int(rng.integers(0, nb)))]
    for bi, bj in pairs:
        I, J = slice(bi * ch, min(n, bi * ch + ch)), slice(bj * ch, min(n, bj * ch + ch))
        sub = 500  # a 500 × 500 corner of the tile keeps the checks cheap
        I, J = slice(I.start, min(I.stop, I.start + sub)), slice(J.start, min(J.stop, J.start + sub))
        ref = tp.kernels(program, x[I]) if bi == bj else tp.kernels(program, x[I], x[J])
        err = max(float(np.abs(nngp[I, J] - ref.nngp).max() / np.abs(ref.nngp).max()),
                  float(np.abs(ntk[I, J] - ref.ntk).max() / np.abs(ref.ntk).max()))
        checks.append(((bi, bj), err))
    sym = float(np.abs(ntk[:ch:97, -ch::89] - ntk[-ch::89, :ch:97].T).max())
    unit = n * n * 8 / 2 ** 30
    where = f"np.memmap files in {args.memmap}" if args.memmap else "two in-memory N × N arrays"
    print(f"blockwise NNGP + NTK, ReLU MLP depth {args.depth}, N = {n}, d = {args.d}, float64, "
          f"chunks {ch} ({nt} × {nt} tiles, {nt * (nt + 1) // 2} computed), dask threads {args.workers}, "
          f"output: {where}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"  wall time {wall:.1f} s ({wall / (nt * (nt + 1) / 2):.1f} s per computed tile)")
    print(f"  peak resident memory (VmHWM) {peak:.2f} GiB = {peak / unit:.2f} x N²·8 bytes "
          f"(one kernel = {unit:.2f} GiB; process before the run {base:.2f} GiB)")
    for (bi, bj), err in checks:
        print(f"  tile ({bi}, {bj}) vs in-memory evaluation of the same block: max relative difference {err:.1e}")
    print(f"  symmetry of the assembled NTK (sampled): max |Θ - Θᵀ| = {sym:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
