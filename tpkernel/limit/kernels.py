r"""Kernel assembly: the NNGP and the NTK of a program on data.

  NNGP(ξ, ξ') = σ_v² Σ_{k,l} c_k(ξ) c_l(ξ') E[Z^{x_k} Z^{x'_l}] + σ_o²
  NTK(ξ, ξ')  = Σ over the terms of :mod:`tpkernel.backward`

where x_k are the vectors the readout reads and c_k its pooling weights (1 for a plain
readout; the one-hot of each example's own last step for ``pool="last"``; 1/L on its
own L steps for ``pool="mean"``).

**Sequences of different lengths.**  A program with ``p.data("x", length=T)`` is
unrolled to T steps.  An example of length L <= T is the same program truncated to its
first L steps: a pooled readout reads that example's own last state (or averages its own
L states); the later steps are computed on zero padding and carry zero weight, so they
contribute nothing to either kernel.  A readout that is not pooled must only read vectors
that every example reaches; otherwise a :class:`ShapeError` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..backward import Backward, backward, readout_scale
from ..errors import ShapeError, NumericalError
from ..ir import Data, Embed, Program, Readout
from .moments import Moments, Report, Settings, Side


@dataclass(frozen=True)
class Kernels:
    """The limiting kernels; ``nngp`` and ``ntk`` are (N1, N2) float64 arrays (or None
    if not asked for).  ``report`` says which expectations needed numerical integration."""

    nngp: np.ndarray | None
    ntk: np.ndarray | None
    report: Report = field(default_factory=Report, repr=False, compare=False)

    def replace(self, **kw) -> "Kernels":
        from dataclasses import replace
        return replace(self, **kw)


# -- data binding -------------------------------------------------------------------

def _as_array(x, name: str, length: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, T, d) float64 array and lengths (None when every example has full length)."""
    if isinstance(x, (list, tuple)) and length is not None and x and np.ndim(x[0]) == 2:
        seqs = [np.asarray(s, dtype=float) for s in x]
        dims = {s.shape[1] for s in seqs}
        if len(dims) != 1:
            raise ShapeError(f"data {name!r}: sequences have different dimensions {sorted(dims)}")
        lens = np.array([s.shape[0] for s in seqs])
        if lens.max() > length or lens.min() < 1:
            raise ShapeError(f"data {name!r}: sequence lengths must be in 1..{length}, got {lens.tolist()}")
        arr = np.zeros((len(seqs), length, dims.pop()))
        for i, s in enumerate(seqs):
            arr[i, :len(s)] = s
        return arr, (lens if (lens < length).any() else None)
    arr = np.asarray(x, dtype=float)
    if length is None:
        if arr.ndim != 2:
            raise ShapeError(f"data {name!r}: expected an array (N, d), got shape {arr.shape}")
        return arr[:, None, :], None
    if arr.ndim != 3 or arr.shape[1] != length:
        raise ShapeError(f"data {name!r} is a sequence of length {length}: expected (N, {length}, d), "
                         f"got shape {arr.shape}")
    return arr, None


def _bind(program: Program, x, lengths, which: str) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    datas = program.of_type(Data)
    if isinstance(x, Mapping):
        missing = [d.name for d in datas if d.name not in x]
        extra = [k for k in x if k not in {d.name for d in datas}]
        if missing or extra:
            raise ShapeError(f"{which}: data {missing} not given" if missing else f"{which}: unknown data {extra}")
        xs = dict(x)
    else:
        if len(datas) != 1:
            raise ShapeError(f"{which}: program has data nodes {[d.name for d in datas]}; pass a dict")
        xs = {datas[0].name: x}
    if lengths is not None and not isinstance(lengths, Mapping):
        seqs = [d.name for d in datas if d.length is not None]
        if len(seqs) != 1:
            raise ShapeError(f"{which}: lengths given but the program has sequence data {seqs}")
        lengths = {seqs[0]: lengths}
    out = {}
    for d in datas:
        arr, lens = _as_array(xs[d.name], d.name, d.length)
        if lengths and d.name in lengths:
            lens = np.asarray(lengths[d.name])
            if lens.shape != (arr.shape[0],) or not np.issubdtype(lens.dtype, np.integer):
                raise ShapeError(f"{which}: lengths of {d.name!r} must be {arr.shape[0]} integers")
            if lens.min() < 1 or lens.max() > d.length:
                raise ShapeError(f"{which}: lengths of {d.name!r} must be in 1..{d.length}")
        if lens is not None:
            arr = arr.copy()
            for i, L in enumerate(lens):
                arr[i, L:] = 0.0
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argwhere(bad)[0][0])
            raise NumericalError(f"{which}: data {d.name!r} has a NaN or infinite entry (example {i})")
        if arr.shape[0] == 0:
            raise ShapeError(f"{which}: data {d.name!r} has no examples")
        out[d.name] = (arr, lens)
    ns = {v[0].shape[0] for v in out.values()}
    if len(ns) != 1:
        raise ShapeError(f"{which}: data nodes have different numbers of examples {sorted(ns)}")
    return out


def _check_dims(program: Program, bound: Sequence[dict]) -> None:
    dims: dict[str, tuple[int, str]] = {}
    for e in program.of_type(Embed):
        for side in bound:
            d = side[e.data][0].shape[2]
            if e.layer in dims and dims[e.layer][0] != d:
                raise ShapeError(f"input layer {e.layer!r} reads data of dimension {dims[e.layer][0]} "
                                 f"({dims[e.layer][1]!r}) and {d} ({e.data!r})")
            dims[e.layer] = (d, e.data)


def max_steps(program: Program) -> dict[str, int]:
    """For each vector, the last data step it depends on (-1 for none)."""
    out: dict[str, int] = {}
    for node in program:
        if isinstance(node, Embed):
            out[node.name] = node.step or 0
        elif node.is_vector:
            out[node.name] = max((out.get(a, -1) for a in node.inputs), default=-1)
    return out


def _pool(program: Program, r: Readout, bound: dict, steps: dict[str, int]) -> np.ndarray:
    """Pooling weights (N, K) of readout r on one data set, checking lengths."""
    n = next(iter(bound.values()))[0].shape[0]
    K = len(r.args)
    seq = [(name, lens) for name, (arr, lens) in bound.items() if lens is not None]
    lens = seq[0][1] if seq else None
    if lens is None:
        lens = np.full(n, K)
    elif r.pool is not None and program[seq[0][0]].length != K:
        raise ShapeError(f"readout {r.name!r} pools {K} vectors but data {seq[0][0]!r} has "
                         f"{program[seq[0][0]].length} steps")
    if len(seq) > 1:
        raise ShapeError("per-example lengths are supported for one sequence data node")
    c = np.zeros((n, K))
    rows = np.arange(n)
    if r.pool is None:
        c[:, 0] = 1.0
    elif r.pool == "last":
        c[rows, lens - 1] = 1.0
    else:
        c = (np.arange(K)[None, :] < lens[:, None]) / lens[:, None].astype(float)
    if seq:
        for k, a in enumerate(r.args):
            too_far = (c[:, k] != 0) & (steps[a] >= lens)
            if too_far.any():
                i = int(np.argmax(too_far))
                hint = "" if r.pool else "; read a list of states with pool='last' or 'mean'"
                raise ShapeError(f"readout {r.name!r} reads {a!r}, which depends on step {steps[a]} of "
                                 f"{seq[0][0]!r}, but example {i} has length {lens[i]}{hint}")
    return c


# -- assembly -----------------------------------------------------------------------

def kernels(program: Program, x1, x2=None, get=("nngp", "ntk"), *, output: str | None = None,
            lengths1=None, lengths2=None, quad_deg: int | None = None, quad_rule: str = "trapezoid",
            quad_tol: float = 1e-11, nd_deg: int = 12,
            mc_samples: int = 200_000, seed: int = 0, error_estimate: bool = False):
    """The limiting NNGP and NTK of ``program`` between data sets x1 and x2 (default x1).

    ``x1``: an array (N, d), or (N, T, d) for sequence data, or a list of (T_i, d) arrays
    of different lengths, or a dict data-name → array for several data nodes.
    ``lengths1``/``lengths2``: per-example lengths of (N, T, d) sequence data.
    ``get``: "nngp", "ntk", or a tuple of them (neural-tangents semantics: a string
    returns one array, a tuple returns a :class:`Kernels`).
    ``quad_rule``/``quad_tol``/``quad_deg``: the rule ("trapezoid", "hermite") for
    expectations over 1 or 2 Gaussians without a closed form, refined until two levels agree
    to ``quad_tol`` (its error estimate goes to ``.report``), or with ``quad_deg`` nodes per
    dimension fixed; ``nd_deg``: Gauss-Hermite nodes per dimension
    over 3 or 4 Gaussians; ``mc_samples``/``seed``: the Monte
    Carlo fallback; ``error_estimate``: record quadrature error estimates in ``.report``.
    """
    wanted = (get,) if isinstance(get, str) else tuple(get or ("nngp", "ntk"))
    if not set(wanted) <= {"nngp", "ntk"}:
        raise ValueError(f"get must name 'nngp' and/or 'ntk', got {get!r}")
    bw: Backward = backward(program, output) if "ntk" in wanted else None
    prog = bw.program if bw else program.validate()
    from ..backward import pick_readout
    r = pick_readout(program, output)
    symmetric = x2 is None
    bound = [_bind(program, x1, lengths1, "x1")]
    if not symmetric:
        bound.append(_bind(program, x2, lengths2, "x2"))
    _check_dims(program, bound)
    steps = max_steps(program)
    sides = [Side({k: v[0] for k, v in b.items()}, {r.name: _pool(program, r, b, steps)},
                  next(iter(b.values()))[0].shape[0]) for b in bound]
    settings = Settings(quad_deg=quad_deg, quad_rule=quad_rule, quad_tol=quad_tol, nd_deg=nd_deg,
                        mc_samples=mc_samples, seed=seed, error_estimate=error_estimate)
    m = Moments(prog, sides, symmetric, settings)
    ctx = (0, 0 if symmetric else 1, False)
    shape = m.shape(ctx)

    std_v, _ = readout_scale(program, r)
    readout_cov = _pooled(m, r, ctx)
    nngp = ntk = None
    if "nngp" in wanted:
        nngp = std_v ** 2 * readout_cov + (r.b_std ** 2 if r.b_std is not None else 0.0)
        nngp = np.broadcast_to(nngp, shape).astype(float)
    if "ntk" in wanted:
        total = 0.0
        for t in bw.terms:
            if t.kind == "matrix":
                total = total + t.coeff * sum(m.cov(dy, dy2, ctx) * m.cov(z, z2, ctx)
                                              for dy, z in t.uses for dy2, z2 in t.uses)
            elif t.kind == "input":
                total = total + t.coeff * sum(m.cov(dy, dy2, ctx) * m.gram(prog[e], prog[e2], ctx)
                                              for dy, e in t.uses for dy2, e2 in t.uses)
            elif t.kind == "bias":
                total = total + t.coeff * m.cov(t.grad, t.grad, ctx)
            elif t.kind == "readout":
                total = total + t.coeff * readout_cov
            else:
                total = total + t.coeff
        ntk = np.broadcast_to(total, shape).astype(float)
    for name, k in (("NNGP", nngp), ("NTK", ntk)):
        if k is not None and not np.all(np.isfinite(k)):
            raise NumericalError(f"the {name} of {program.name!r} is not finite (diverging expectation?)")
    result = Kernels(nngp, ntk, m.report)
    if isinstance(get, str):
        return getattr(result, get)
    return result


def _pooled(m: Moments, r: Readout, ctx) -> np.ndarray:
    """Σ_{k,l} c_k c'_l E[x_k x'_l]."""
    a, b, _ = ctx
    ca, cb = m.sides[a].pool[r.name], m.sides[b].pool[r.name]
    total = 0.0
    for k, xk in enumerate(r.args):
        if not ca[:, k].any():
            continue
        for l, xl in enumerate(r.args):
            if not cb[:, l].any():
                continue
            total = total + m.on_a(ca[:, k], ctx) * m.on_b(cb[:, l], ctx) * m.cov(xk, xl, ctx)
    return total
