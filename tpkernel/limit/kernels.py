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

import warnings

import numpy as np

from ..backward import Backward, backward, readout_terms
from ..terms import contract
from ..data import _as_array, _bind, _check_dims, _pool, max_steps  # noqa: F401  (shared with tpkernel.finite)
from ..checks import check_kernel
from ..errors import AccuracyWarning
from ..ir import Program, Readout
from .numeric import Expectations, Kernels, Report, Settings, Side


# -- assembly -----------------------------------------------------------------------

def kernels(program: Program, x1, x2=None, get=("nngp", "ntk"), *, output: str | None = None,
            lengths1=None, lengths2=None, quad_deg: int | None = None, quad_rule: str = "trapezoid",
            quad_tol: float = 1e-11, nd_deg: int | None = None,
            mc_samples: int = 200_000, seed: int = 0, error_estimate: bool = False,
            dtype="float64", chunks=None, engine: str = "auto", mask_exact_d: int = 12,
            mask_samples: int = 4096):
    """The limiting NNGP and NTK of ``program`` between data sets x1 and x2 (default x1).

    ``x1``: an array (N, d), or (N, T, d) for sequence data, or a list of (T_i, d) arrays
    of different lengths, or a dict data-name → array for several data nodes.
    ``lengths1``/``lengths2``: per-example lengths of (N, T, d) sequence data.
    ``get``: "nngp", "ntk", or a tuple of them (neural-tangents semantics: a string
    returns one array, a tuple returns a :class:`Kernels`).
    ``quad_rule``/``quad_tol``/``quad_deg``: the rule ("trapezoid", "hermite") for
    expectations over 1 or 2 Gaussians without a closed form, refined until two levels agree
    to ``quad_tol`` (its error estimate goes to ``.report``), or with ``quad_deg`` nodes per
    dimension fixed; ``nd_deg``: fixed Gauss-Hermite nodes per dimension (default: adaptive
    trapezoid with an error estimate)
    over 3 or 4 Gaussians; ``mc_samples``/``seed``: the Monte
    Carlo fallback; ``error_estimate``: record quadrature error estimates in ``.report``.
    ``dtype``: "float64" (default) or "float32" (storage and Gram matrix in float32, every
    element evaluated in float64; see docs/performance.md).  ``chunks``: evaluate blockwise,
    returning dask arrays (:mod:`tpkernel.limit.blocks`).  ``engine``: "auto" (the fused
    fast path of :mod:`tpkernel.limit.fused` for fully connected chains, else the general
    evaluator), "fused" (insist on it) or "reference" (always the general evaluator).
    ``mask_exact_d``/``mask_samples``: a masked (pruned) input layer is averaged exactly over
    the 2^d masks of a row up to d = ``mask_exact_d``, beyond it by Monte Carlo over
    ``mask_samples`` masks with a standard error (:mod:`tpkernel.limit.mixture`; ``.report``
    says which).
    """
    wanted = (get,) if isinstance(get, str) else tuple(get or ("nngp", "ntk"))
    if not set(wanted) <= {"nngp", "ntk"}:
        raise ValueError(f"get must name 'nngp' and/or 'ntk', got {get!r}")
    if engine not in ("auto", "fused", "reference"):
        raise ValueError(f"engine must be 'auto', 'fused' or 'reference', got {engine!r}")
    if np.dtype(dtype) not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    if chunks is not None:
        from .blocks import kernels_blockwise
        return kernels_blockwise(program, x1, x2, get=get, chunks=chunks, output=output, lengths1=lengths1,
                                 lengths2=lengths2, quad_deg=quad_deg, quad_rule=quad_rule, quad_tol=quad_tol,
                                 nd_deg=nd_deg, mc_samples=mc_samples, seed=seed,
                                 error_estimate=error_estimate, dtype=dtype, engine=engine,
                                 mask_exact_d=mask_exact_d, mask_samples=mask_samples, evaluate=kernels)
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
                        mc_samples=mc_samples, seed=seed, error_estimate=error_estimate,
                        mask_exact_d=mask_exact_d, mask_samples=mask_samples)
    fast = None
    if engine != "reference":
        from .fused import fused_kernels
        report = Report()
        fast = fused_kernels(program, r, sides, symmetric, settings, wanted, report, dtype)
        if fast is None and engine == "fused":
            raise ValueError(f"engine='fused' needs a fully connected chain; {program.name!r} is not one "
                             "(see tpkernel.limit.fused.chain_of)")
    if fast is not None:
        nngp, ntk = fast
        nngp = nngp if "nngp" in wanted else None
        return _finish(program, nngp, ntk, report, get)
    m = Expectations(prog, sides, symmetric, settings)
    ctx = (0, 0 if symmetric else 1, False)
    shape = m.shape(ctx)

    readout_cov = m.average(_pooled(m, r, ctx), ctx)  # (averages over input masks, if any)
    table = _contraction(m, prog, ctx, readout_cov)
    nngp = ntk = None
    if "nngp" in wanted:
        nngp = contract(bw.nngp_terms if bw else readout_terms(program, r, ntk=False), table, "limit")
        nngp = np.broadcast_to(m.collapse(nngp, ctx, "NNGP"), shape).astype(float)
    if "ntk" in wanted:
        ntk = np.broadcast_to(m.collapse(contract(bw.terms, table, "limit"), ctx, "NTK"), shape).astype(float)
    for name, k in (("NNGP", nngp), ("NTK", ntk)):
        check_kernel(program.name, name, k)
    if np.dtype(dtype) != np.float64:
        k64 = {"NNGP": nngp, "NTK": ntk}
        with np.errstate(over="ignore"):  # check_kernel names a float32 overflow
            nngp = nngp.astype(dtype) if nngp is not None else None
            ntk = ntk.astype(dtype) if ntk is not None else None
        for name, k in (("NNGP", nngp), ("NTK", ntk)):
            check_kernel(program.name, name, k, dtype, computed=k64[name])
    return _finish(program, nngp, ntk, m.report, get)


def _finish(program: Program, nngp, ntk, report: Report, get):
    """The result, with an AccuracyWarning for what did not reach the tolerance (the kernels have
    been checked by :func:`tpkernel.checks.check_kernel`)."""
    short = [line[len("WARNING: "):] for line in report.summary().splitlines() if line.startswith("WARNING")]
    if report.monte_carlo:
        se = max(m["se"] for m in report.monte_carlo)
        short.append(f"{len(report.monte_carlo)} expectation(s) by Monte Carlo (standard error up to {se:.1e}; "
                     "see .report.summary())")
    if short:
        warnings.warn(AccuracyWarning(f"kernels of {program.name!r}: " + "; ".join(short)), stacklevel=3)
    result = Kernels(nngp, ntk, report)
    if isinstance(get, str):
        return getattr(result, get)
    return result


def _contraction(m: Expectations, prog: Program, ctx, readout_cov) -> dict:
    """The limit's contraction of each kind of term (:mod:`tpkernel.terms`)."""
    def matrix(t):
        return t.coeff * sum(m.ecov(u.grad, w.grad, ctx) * m.ecov(u.input, w.input, ctx)
                             for u in t.uses for w in t.uses)

    def input_layer(t):
        return t.coeff * m.average(sum(m.cov(u.grad, w.grad, ctx) * m.gram(prog[u.input], prog[w.input], ctx)
                                       for u in t.uses for w in t.uses), ctx)

    return {"matrix": matrix, "input": input_layer,
            "bias": lambda t: t.coeff * m.ecov(t.grad, t.grad, ctx),
            "readout": lambda t: t.coeff * readout_cov,
            "readout_bias": lambda t: t.coeff}


def _pooled(m: Expectations, r: Readout, ctx) -> np.ndarray:
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
