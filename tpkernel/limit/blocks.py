r"""Blockwise evaluation with dask: ``tp.kernels(program, x1, x2=None, chunks=...)``.

The kernel matrix is cut into tiles of ``chunks`` rows × ``chunks`` columns.  A tile needs
only its own rows and columns: the forward covariances of the pairs (ξ_i, ξ'_j) of a tile
follow from the tile's own cross terms plus the per-example variances of its rows and
columns (the diagonals), which every tile recomputes for itself (a cost linear in the tile
size).  So tiles are independent tasks; each is one in-memory :func:`tpkernel.kernels` call,
and the result is a pair of ``dask.array`` s (``K.nngp``, ``K.ntk``) that share those tasks.

When x2 is x1 only the tiles on and above the diagonal are computed: a diagonal tile is the
symmetric evaluation of its block (exactly what the in-memory call computes there), a tile
below the diagonal is the transpose of its mirror image.

Nothing runs until you ask for numbers::

    K = tp.kernels(program, X, chunks=2000)          # lazy: K.nngp, K.ntk are dask arrays
    K = tp.limit.blocks.compute(K, progress=True)    # NumPy arrays, with a progress bar
    tp.limit.blocks.store(K, nngp_out, ntk_out)      # or write tile by tile (np.memmap, zarr)

It runs on whatever dask scheduler is active: the local threads by default, or a
``dask.distributed`` cluster once a ``Client`` exists (``Client(LocalCluster(...))``, or
``Client("tcp://scheduler:8786")`` for a real cluster; see docs/performance.md).  With a
distributed client the input blocks are scattered to the workers once.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..data import _bind
from ..errors import ShapeError
from ..ir import Data, Program
from .numeric import Kernels


def _tile(evaluate, program: Program, xa: dict, xb: dict | None, la: dict, lb: dict, opts: dict, wanted: tuple,
          threads: int | None):
    """One tile: a plain in-memory evaluation by ``evaluate`` (symmetric when xb is None)."""
    if threads is not None:
        _set_threads(threads)
    k = evaluate(program, xa, xb, get=wanted, lengths1=la or None, lengths2=lb or None, **opts)
    return np.stack([getattr(k, w) for w in wanted])


def _set_threads(n: int) -> None:
    """Threads of the fused kernels in this worker thread (numba's setting is per thread)."""
    from . import fused
    if fused.USE_NUMBA:
        import numba
        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def _split(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def _sides(program: Program, x, lengths, which: str):
    """Bound data of one side as {name: array as the user would pass it} and {name: lengths}."""
    bound = _bind(program, x, lengths, which)
    datas = {d.name: d for d in program.of_type(Data)}
    arrays, lens = {}, {}
    for name, (arr, ln) in bound.items():
        arrays[name] = arr[:, 0, :] if datas[name].length is None else arr
        if ln is not None:
            lens[name] = np.asarray(ln)
    n = next(iter(arrays.values())).shape[0]
    return arrays, lens, n


def _rows(d: dict, lo: int, hi: int) -> dict:
    return {k: np.ascontiguousarray(v[lo:hi]) for k, v in d.items()}


def _chunk_sizes(chunks) -> tuple[int, int]:
    if isinstance(chunks, numbers.Integral):
        rows = cols = int(chunks)
    else:
        try:
            rows, cols = (int(c) for c in chunks)
        except (TypeError, ValueError):
            raise ShapeError(f"chunks must be an int or a pair of ints, got {chunks!r}") from None
    if rows < 1 or cols < 1:
        raise ShapeError(f"chunks must be positive, got {chunks!r}")
    return rows, cols


def kernels_blockwise(program: Program, x1, x2=None, get=("nngp", "ntk"), *, chunks, output=None,
                      lengths1=None, lengths2=None, dtype="float64", threads_per_tile: int | None = 1,
                      evaluate, **opts):
    """The NNGP and NTK as dask arrays of tiles (see the module docstring).

    ``chunks``: examples per tile, an int or (rows, columns); with x2 = None rows and
    columns must be equal.  ``threads_per_tile``: threads of the fused kernels inside one
    tile (default 1: dask runs tiles in parallel; None leaves numba's setting alone).
    ``evaluate``: the in-memory evaluator of one tile (:func:`tpkernel.kernels` passes itself,
    so that this module does not import it).  Other keywords are those of :func:`tpkernel.kernels`.  Returns a
    :class:`~tpkernel.limit.kernels.Kernels` whose ``nngp``/``ntk`` are ``dask.array`` s, or
    one dask array if ``get`` is a string.
    """
    try:
        import dask
        import dask.array as da
    except ImportError as e:  # pragma: no cover - dask is a dependency
        raise ImportError("blockwise evaluation needs dask: pip install 'dask[array]'") from e
    wanted = (get,) if isinstance(get, str) else tuple(get or ("nngp", "ntk"))
    rows, cols = _chunk_sizes(chunks)
    symmetric = x2 is None
    if symmetric and rows != cols:
        raise ShapeError(f"with x2 = None the tiles must be square, got chunks={chunks!r}")
    program.validate()
    a, la, n1 = _sides(program, x1, lengths1, "x1")
    b, lb, n2 = (a, la, n1) if symmetric else _sides(program, x2, lengths2, "x2")
    opts = dict(opts, output=output, dtype=dtype)
    dt = np.dtype(dtype)
    rb, cb = _split(n1, rows), _split(n2, cols)
    client = _client()

    def put(side, lens, spans):
        """Each input block into the graph once (scattered to the workers on a cluster)."""
        xs = [_rows(side, lo, hi) for lo, hi in spans]
        ls = [{k: v[lo:hi] for k, v in lens.items()} for lo, hi in spans]
        if client is not None:
            return client.scatter(xs, broadcast=False), ls
        return [dask.delayed(x, pure=True, traverse=False) for x in xs], ls

    XA, LA = put(a, la, rb)
    XB, LB = (XA, LA) if symmetric else put(b, lb, cb)
    tile = dask.delayed(_tile, pure=True)
    W = len(wanted)
    grid = [[None] * len(cb) for _ in rb]
    for i, (r0, r1) in enumerate(rb):
        for j, (c0, c1) in enumerate(cb):
            if symmetric and j < i:
                continue
            if symmetric and i == j:
                t = tile(evaluate, program, XA[i], None, LA[i], {}, opts, wanted, threads_per_tile)
            else:
                t = tile(evaluate, program, XA[i], XB[j], LA[i], LB[j], opts, wanted, threads_per_tile)
            grid[i][j] = da.from_delayed(t, shape=(W, r1 - r0, c1 - c0), dtype=dt)
    if symmetric:
        for i in range(len(rb)):
            for j in range(i):
                grid[i][j] = grid[j][i].transpose(0, 2, 1)
    stacked = da.block([[blk for blk in row] for row in grid])
    out = {w: stacked[k] for k, w in enumerate(wanted)}
    result = Kernels(out.get("nngp"), out.get("ntk"))
    if isinstance(get, str):
        return out[get]
    return result


def _client():
    """The active dask.distributed client, if any."""
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        return None


def _arrays(K):
    return [k for k in (K.nngp, K.ntk) if k is not None] if hasattr(K, "nngp") else [K]


def compute(K, progress: bool = False, **kwargs):
    """Evaluate the tiles of a blockwise result (both kernels in one pass over the tiles).

    ``progress``: a progress bar (``distributed.progress`` on a distributed client, else
    ``dask.diagnostics.ProgressBar``).  Returns NumPy arrays in the same shape as ``K``."""
    import dask
    arrays = _arrays(K)
    client = _client()
    if client is not None:
        futures = client.compute(arrays, **kwargs)
        if progress:
            from distributed import progress as dprogress
            dprogress(futures)
        values = client.gather(futures)
    elif progress:
        from dask.diagnostics import ProgressBar
        with ProgressBar():
            values = dask.compute(*arrays, **kwargs)
    else:
        values = dask.compute(*arrays, **kwargs)
    if not hasattr(K, "nngp"):
        return values[0]
    it = iter(values)
    return K.replace(nngp=next(it) if K.nngp is not None else None,
                     ntk=next(it) if K.ntk is not None else None)


def store(K, nngp=None, ntk=None, progress: bool = False, **kwargs) -> None:
    """Write the kernels tile by tile into array-likes (``np.memmap``, zarr, h5py...):
    only the tiles in flight are in memory.  Pass a target for each kernel ``K`` holds."""
    import dask.array as da
    sources, targets = [], []
    for src, dst, name in ((getattr(K, "nngp", None), nngp, "nngp"), (getattr(K, "ntk", None), ntk, "ntk")):
        if src is None:
            continue
        if dst is None:
            raise ValueError(f"store: no target for the {name}")
        sources.append(src)
        targets.append(dst)
    if progress and _client() is None:
        from dask.diagnostics import ProgressBar
        with ProgressBar():
            da.store(sources, targets, lock=False, **kwargs)
        return
    if progress:
        from distributed import progress as dprogress
        out = da.store(sources, targets, lock=False, compute=False, **kwargs)
        fut = _client().compute(out)
        dprogress(fut)
        fut.result()
        return
    da.store(sources, targets, lock=False, **kwargs)
