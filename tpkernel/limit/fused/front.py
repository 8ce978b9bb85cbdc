"""The fused path's entry point: a chain evaluated layer by layer (numba whole-chain kernels,
else the NumPy band path), with its report."""

from __future__ import annotations


import numpy as np

import tpkernel.limit.fused as _pkg  # the flags (USE_NUMBA, ...), read at call time: tests switch them

from ...checks import check_kernel
from ...errors import NumericalError
from ...ir import Program, Readout
from ..scales import check_norms, check_variance
from .chain import Chain, Layer, chain_of
from .atan import _jit
from .bands import _Rules, _Run, _finish_np, mirror


def fused_kernels(program: Program, readout: Readout, sides, symmetric: bool, settings, wanted,
                  report, dtype="float64"):
    """(nngp, ntk) arrays of a chain program, or None when ``program`` is not a chain.

    Below :data:`_pkg.SERIAL_BELOW` elements the compiled kernels run on one thread: a parallel
    launch and its barrier cost more than they save there (much more on a loaded machine)."""
    chain = chain_of(program, readout)
    if chain is None:
        return None
    n1 = sides[0].n
    n2 = n1 if symmetric else sides[1].n
    if _pkg.USE_NUMBA and n1 * n2 < _pkg.SERIAL_BELOW:
        import numba
        prev = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return _fused_kernels(chain, program, sides, symmetric, settings, wanted, report, dtype)
        finally:
            numba.set_num_threads(prev)
    return _fused_kernels(chain, program, sides, symmetric, settings, wanted, report, dtype)


_ROW_KINDS = {"arccos": 0, "erf": 1, "identity": 2}


def _whole_chain(chain, program, layers, rules, run, K, T, kd1, kd2, ntk: bool, symmetric: bool):
    """Closed-form chains (ReLU family, erf, identity layers): one kernel runs every layer and
    the readout on a row while it is in cache (``_fused_jit._chain``), then one tiled pass
    mirrors the triangle and checks finiteness."""
    J = _jit()
    P = np.empty((len(layers), 8))
    for l, (L, R) in enumerate(zip(layers, rules)):
        if R.kind == "arccos":
            p1, p2 = R.phi.params
        elif R.kind == "erf":
            p1, p2 = R.dphi.params if ntk else (1.0, -1.0)
        else:
            p1 = p2 = 0.0
        P[l] = (L.a, L.beta, L.lam, L.mu, p1, p2, R.alpha2, _ROW_KINDS[R.kind])
    n1, n2 = K.shape
    # D[l]: the per-example K before layer l (the Gram diagonal before the first), for the
    # carried residuals
    if symmetric:
        Q1 = np.empty((len(layers), n1))
        D1 = np.empty((len(layers), n1))
        kd1 = np.diagonal(K).copy()
        J._diag_chain(kd1, P, Q1, ntk, D1)
        Q2, kd2, D2 = Q1, kd1, D1
    else:  # per-example variances as the general evaluator computes them (registry rules)
        Q1, Q2 = np.empty((len(layers), n1)), np.empty((len(layers), n2))
        D1, D2 = np.empty((len(layers), n1)), np.empty((len(layers), n2))
        for l, (L, R) in enumerate(zip(layers, rules)):
            D1[l], D2[l] = kd1, kd2
            Q1[l] = L.a * kd1 + L.beta
            Q2[l] = L.a * kd2 + L.beta
            kd1 = run.diag_layer(R, Q1[l], L.name or f"φ{l + 1}")
            kd2 = run.diag_layer(R, Q2[l], L.name or f"φ{l + 1}")
    # a kernel that leaves float64 (or the float32 storage) is refused at the layer it happens
    # (the off-diagonal entries are bounded by the diagonal ones: |K_ij| <= √(K_ii K_jj))
    for l, L in enumerate(layers):
        check_variance(Q1[l], L.node, K.dtype)
        check_variance(Q2[l], L.node, K.dtype)
    for kd in (kd1, kd2):
        check_variance(chain.v_var * kd + chain.o_var, chain.readout, K.dtype, "NNGP")
    rowcheck = np.empty(n1)
    J._chain(K, T, Q1, Q2, P, ntk, symmetric, chain.v_var, chain.o_var, chain.v_ntk, chain.o_ntk, rowcheck,
             D1, D2)
    if symmetric:
        J._mirror(K)
        if ntk:
            J._mirror(T)
    if not np.all(np.isfinite(rowcheck)):
        check_kernel(program.name, "NNGP", K, K.dtype)
        check_kernel(program.name, "NTK", T if ntk else None, K.dtype)
        raise NumericalError(f"the kernels of {program.name!r} are not finite")  # pragma: no cover
    return K, (T if ntk else None)


def _fused_kernels(chain: Chain, program: Program, sides, symmetric: bool, settings, wanted, report, dtype):
    if np.dtype(dtype) == np.float32:  # float32 storage may overflow: check_kernel names it
        with np.errstate(over="ignore", invalid="ignore"):
            return _fused_kernels_in(chain, program, sides, symmetric, settings, wanted, report, dtype)
    return _fused_kernels_in(chain, program, sides, symmetric, settings, wanted, report, dtype)


def _fused_kernels_in(chain: Chain, program: Program, sides, symmetric: bool, settings, wanted, report, dtype):
    ntk = "ntk" in wanted
    numba_ok = _pkg.USE_NUMBA
    rules = [_Rules(L, ntk, numba_ok) for L in chain.layers]
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    run = _Run(chain, settings, report, ntk, symmetric, numba_ok)
    xa = sides[0].data[chain.data][:, 0, :]
    xb = xa if symmetric else sides[1].data[chain.data][:, 0, :]
    d = xa.shape[1]
    if dt == np.float32:
        xa32 = xa.astype(np.float32)
        xb32 = xa32 if symmetric else xb.astype(np.float32)
        K = xa32 @ xb32.T
    else:
        with np.errstate(over="ignore"):  # (an overflowing |ξ|² is refused just below)
            K = xa @ xb.T  # a symmetric rank-d update (syrk) when xb is xa
    T = np.empty_like(K) if ntk else np.empty((1, 1), dtype=K.dtype)
    if symmetric:
        kd1 = kd2 = None
        check_norms(np.diagonal(K), d, chain.data, dtype=dt)
        run.g1 = run.g2 = np.diagonal(K).astype(float)  # ⟨ξ, ξ⟩ for the first layer's residual
    else:
        kd1 = np.einsum("id,id->i", xa, xa)
        kd2 = np.einsum("id,id->i", xb, xb)
        check_norms(kd1, d, chain.data, "x1", dt)
        check_norms(kd2, d, chain.data, "x2", dt)
        run.g1, run.g2 = kd1, kd2
    # K holds ⟨ξ, ξ'⟩ (not yet divided by d): the first layer's coefficients take the 1/d
    layers = list(chain.layers)
    f = layers[0]
    layers[0] = Layer(f.phi, f.alpha, f.a / d, f.beta, f.lam / d, f.mu, f.name, f.node)
    if numba_ok and all(R.kind in _ROW_KINDS for R in rules):
        return _whole_chain(chain, program, layers, rules, run, K, T, kd1, kd2, ntk, symmetric)
    for l, (L, R) in enumerate(zip(layers, rules)):
        what = L.name or f"φ{l + 1}"
        prev1, prev2 = (np.diagonal(K).astype(float),) * 2 if symmetric else (kd1, kd2)
        if symmetric:
            q1 = q2 = L.a * np.diagonal(K).astype(float) + L.beta
        else:
            q1 = L.a * kd1 + L.beta
            q2 = L.a * kd2 + L.beta
            kd1 = run.diag_layer(R, q1, what)
            kd2 = run.diag_layer(R, q2, what)
        check_variance(q1, L.node, K.dtype)
        check_variance(q2, L.node, K.dtype)
        if l > 0:  # the last layer's per-example K, for the carried residuals (NumPy path)
            run.g1, run.g2 = prev1, prev2
        run.layer(K, T, np.ascontiguousarray(q1), np.ascontiguousarray(q2), L, R, l == 0, what)
    if numba_ok:
        bad = _jit()._finish(K, T, chain.v_var, chain.o_var, chain.v_ntk, chain.o_ntk, ntk, symmetric)
    else:
        _finish_np(K, T, chain, ntk, symmetric)
        if symmetric:
            mirror(K)
            if ntk:
                mirror(T)
        bad = int(np.count_nonzero(~np.isfinite(K))) + (int(np.count_nonzero(~np.isfinite(T))) if ntk else 0)
    if bad:
        check_kernel(program.name, "NNGP", K, K.dtype)
        check_kernel(program.name, "NTK", T if ntk else None, K.dtype)
        raise NumericalError(f"the kernels of {program.name!r} are not finite")  # pragma: no cover
    return K, (T if ntk else None)

