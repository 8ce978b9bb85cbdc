r"""Binding data to a program: shared by every interpretation (limit and finite width).

- :func:`bind` turns what a user passes (an array ``(N, d)``, ``(N, T, d)`` with optional
  per-example lengths, a list of ``(T_i, d)`` sequences of different lengths, or a dict
  data-name → array) into ``{data name: ((N, T, d) float64 array, lengths or None)}``;
  steps past an example's length are zeroed.
- :func:`check_dims` checks that every input layer reads data of one dimension.
- :func:`max_steps` gives, for each vector, the last data step it depends on.
- :func:`pool` gives a readout's pooling weights ``c`` (N, K) on one data set: 1 for a
  plain readout; the one-hot of each example's own last step for ``pool="last"``; 1/L on
  its own L steps for ``pool="mean"``; a readout that is not pooled must read a vector
  every example reaches (otherwise a :class:`ShapeError` names it).

An example of length L <= T is the program truncated to its first L steps: later steps
are computed on zero padding and carry zero pooling weight.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .errors import NumericalError, ShapeError, first_index, real_array
from .ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Nonlin, Program, Readout, Seed
from .rules import RuleTable


def _as_array(x, name: str, length: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, T, d) float64 array and lengths (None when every example has full length)."""
    if isinstance(x, (list, tuple)) and length is not None and x and np.ndim(x[0]) == 2:
        seqs = [real_array(f"data {name!r} (sequence {i})", s) for i, s in enumerate(x)]
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
    arr = real_array(f"data {name!r}", x)
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
            i, t, k = first_index(bad)
            where = f"example {i}, coordinate {k}" if d.length is None else f"example {i}, step {t}, coordinate {k}"
            raise NumericalError(f"{which}: data {d.name!r} has a NaN or infinite entry ({where}: {arr[i, t, k]})")
        if arr.shape[0] == 0:
            raise ShapeError(f"{which}: data {d.name!r} has no examples")
        if arr.shape[2] == 0:
            raise ShapeError(f"{which}: data {d.name!r} has dimension d = 0 (shape {arr.shape[:1] + arr.shape[2:]}"
                             f"{'' if d.length is None else ' per step'}): the input layers divide by d")
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


def _steps_of_inputs(node, out: dict[str, int]) -> int:
    return max((out.get(a, -1) for a in node.inputs), default=-1)


#: the data/steps interpretation: the last data step each vector depends on
STEPS = RuleTable("steps", {
    Embed: lambda node, out: node.step or 0,
    Bias: _steps_of_inputs, MatMul: _steps_of_inputs, Nonlin: _steps_of_inputs, LinComb: _steps_of_inputs,
    Seed: _steps_of_inputs,
}, exempt={Data: "bound to arrays", InputLayer: "a parameter", Matrix: "a parameter",
           Readout: "an output (its pooling weights are computed by pool())"})


def max_steps(program: Program) -> dict[str, int]:
    """For each vector, the last data step it depends on (-1 for none)."""
    out: dict[str, int] = {}
    for node in program:
        if node.is_vector:
            out[node.name] = STEPS.rule(node)(node, out)
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


# public names
bind = _bind
check_dims = _check_dims
pool = _pool
