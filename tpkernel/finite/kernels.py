r"""Empirical kernels of a finite-width network: the same sum over parameter uses as the limit.

With dx = √n ∂f/∂x from the backward program (columns are examples), the exact
finite-width NTK Θ̂(ξ, ξ') = Σ_p lr_p ⟨∂f(ξ)/∂p, ∂f(ξ')/∂p⟩ is

  Θ̂ = Σ_W lr σ² Σ_{(y=Wz),(y'=Wz')} (dyᵀdy'/n) ⊙ (zᵀz'/n)
     + Σ_U lr σ² Σ_{(y=Uξ_t),(y'=Uξ'_s)} (dyᵀdy'/n) ⊙ (ξ_t·ξ'_s/d)
     + Σ_b lr σ² dbᵀdb'/n + lr_v σ_v² x̄ᵀx̄'/n + lr_o σ_o²,

term by term the list :attr:`tpkernel.backward.Backward.terms` that the limit evaluates
with E[Z Z'] in place of (1/n) Σ_α.  A pruned parameter (mask M, kept weights only, forward
scale σ s) contributes lr σ² s² Σ_{ab} M_ab dy_a dy'_a z_b z'_b / n² (the Gram products no
longer factorise: one product M · (z ⊙ z') per pair of uses), its input-layer analogue
with Σ_j M_aj ξ_j ξ'_j / d, and a pruned readout lr σ_v² s² Σ_a m_a x̄_a x̄'_a / n.  The empirical NNGP is the readout's conditional
covariance σ_v² x̄ᵀx̄'/n + σ_o².  Every (1/n) Σ_α is a Gram product (one BLAS matmul);
a weight-shared parameter with u uses costs one Gram of the stacked (n, u·N) arrays.
"""

from __future__ import annotations

import numpy as np

from ..errors import NumericalError
from ..limit.kernels import Kernels
from ..terms import contract
from .network import Evaluation, Network, sample

Array = np.ndarray


def _stack(arrays: list[Array]) -> Array:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1)


def _gram(a: Array, b: Array, same: bool) -> Array:
    """aᵀb (columns are examples); exactly symmetric when a is b."""
    g = a.T @ b
    if same:
        g = 0.5 * (g + g.T)
    return g


def _shared_sum(A1: list[Array], A2: list[Array], B1: list[Array], B2: list[Array],
                same: bool) -> Array:
    """Σ_{u,u'} (A1_uᵀ A2_u') ⊙ (B1_uᵀ B2_u'): one Gram of the stacked arrays per factor."""
    N1, N2 = A1[0].shape[1], A2[0].shape[1]
    if len(A1) == 1:
        return _gram(A1[0], A2[0], same) * _gram(B1[0], B2[0], same)
    u = len(A1)
    ga = _gram(_stack(A1), _stack(A2), same).reshape(u, N1, u, N2)
    gb = _gram(_stack(B1), _stack(B2), same).reshape(u, N1, u, N2)
    return np.einsum("aibj,aibj->ij", ga, gb, optimize=True)


def _data_t(ev: Evaluation, embed: str) -> Array:
    """The data an Embed reads as (d, N) columns."""
    return ev.embed_data(embed).T


class _Grams:
    """Memoised Gram products uᵀu' of the vectors of two evaluations (each computed once:
    the gradient dh of a layer serves both its matrix and its bias)."""

    def __init__(self, ev1: Evaluation, ev2: Evaluation, same: bool) -> None:
        self.ev1, self.ev2, self.same = ev1, ev2, same
        self.memo: dict[str, Array] = {}

    def __call__(self, name: str) -> Array:
        if name not in self.memo:
            if name == "__pooled__":
                a, b = self.ev1.pooled, self.ev2.pooled
            else:
                a, b = self.ev1.values[name], self.ev2.values[name]
            self.memo[name] = _gram(a, b, self.same)
        return self.memo[name]


def ntk_from_evaluations(ev1: Evaluation, ev2: Evaluation | None = None) -> Array:
    """Θ̂ between the batches of two evaluations (with backward passes) of one network."""
    same = ev2 is None
    ev2 = ev1 if same else ev2
    net = ev1.network
    n = net.width
    bw = ev1.backward
    v1, v2 = ev1.values, ev2.values
    gram = _Grams(ev1, ev2, same)

    def matrix(t):
        dys, zs = [u.grad for u in t.uses], [u.input for u in t.uses]
        if len(dys) == 1:
            return (t.coeff / n ** 2) * (gram(dys[0]) * gram(zs[0]))
        return (t.coeff / n ** 2) * _shared_sum([v1[a] for a in dys], [v2[a] for a in dys],
                                                [v1[z] for z in zs], [v2[z] for z in zs], same)

    def input_layer(t):
        dys, es = [u.grad for u in t.uses], [u.input for u in t.uses]
        d = ev1.embed_data(es[0]).shape[1]
        if len(dys) == 1:
            xx = _gram(_data_t(ev1, es[0]), _data_t(ev2, es[0]), same)
            return (t.coeff / (n * d)) * (gram(dys[0]) * xx)
        return (t.coeff / (n * d)) * _shared_sum([v1[a] for a in dys], [v2[a] for a in dys],
                                                 [_data_t(ev1, e) for e in es], [_data_t(ev2, e) for e in es], same)

    dense = {"matrix": matrix, "input": input_layer,
             "bias": lambda t: (t.coeff / n) * gram(t.grad),
             "readout": lambda t: (t.coeff / n) * gram("__pooled__"),
             "readout_bias": lambda t: t.coeff}
    # a pruned parameter: gradients of its kept weights only (the Gram products no longer factorise)
    table = {kind: (lambda t, rule=rule: _masked_term(t, ev1, ev2, same) if t.mask is not None else rule(t))
             for kind, rule in dense.items()}
    return contract(bw.terms, table, "finite width", np.zeros((ev1.N, ev2.N)))


def _masked_sum(M: Array, A1: list[Array], A2: list[Array], B1: list[Array], B2: list[Array],
                same: bool) -> Array:
    """Σ_{u,u'} Σ_{a,b} M_ab A1_u[a,i] A2_u'[a,j] B1_u[b,i] B2_u'[b,j]: the NTK sum of a pruned
    parameter (M: n×m mask; A: (n, N) arrays per use; B: (m, N) arrays per use)."""
    u, N1, N2 = len(A1), A1[0].shape[1], A2[0].shape[1]
    a1, a2, b1, b2 = _stack(A1), _stack(A2), _stack(B1), _stack(B2)
    n, m = a1.shape[0], b1.shape[0]
    out = np.zeros((u * N1, u * N2))
    Mf = M.astype(float)
    step = max(1, (1 << 22) // max(1, n * a2.shape[1]))  # columns of B per block: n·block·uN2 floats
    for i0 in range(0, u * N1, step):
        i1 = min(u * N1, i0 + step)
        Q = (b1[:, i0:i1, None] * b2[:, None, :]).reshape(m, -1)  # (m, block·uN2)
        R = (Mf @ Q).reshape(n, i1 - i0, -1)
        out[i0:i1] = np.einsum("ai,aj,aij->ij", a1[:, i0:i1], a2, R, optimize=True)
    out = out.reshape(u, N1, u, N2).sum(axis=(0, 2))
    return 0.5 * (out + out.T) if same else out


def _masked_term(t, ev1: Evaluation, ev2: Evaluation, same: bool) -> Array:
    """The empirical NTK term of a pruned parameter: gradients of its kept weights only."""
    net = ev1.network
    n = net.width
    info = net.infos[t.param]
    c = info.lr * info.scale ** 2  # per kept weight: lr σ² s²
    M = net.masks[t.param]
    v1, v2 = ev1.values, ev2.values
    if t.kind == "matrix":  # y = Wᵀ z has ∂f/∂W_ab = z_a dy_b
        rows = [u.input if u.transpose else u.grad for u in t.uses]
        cols = [u.grad if u.transpose else u.input for u in t.uses]
        return (c / n ** 2) * _masked_sum(M, [v1[a] for a in rows], [v2[a] for a in rows],
                                          [v1[z] for z in cols], [v2[z] for z in cols], same)
    if t.kind == "input":
        dys, es = [u.grad for u in t.uses], [u.input for u in t.uses]
        d = ev1.embed_data(es[0]).shape[1]
        return (c / (n * d)) * _masked_sum(M, [v1[a] for a in dys], [v2[a] for a in dys],
                                           [_data_t(ev1, e) for e in es], [_data_t(ev2, e) for e in es], same)
    # the readout vector: Σ_a m_a x̄_a x̄'_a
    return (c / n) * _gram(ev1.pooled * M[:, None], ev2.pooled, same)


def nngp_from_evaluations(ev1: Evaluation, ev2: Evaluation | None = None) -> Array:
    """σ_v² x̄ᵀx̄'/n (+ σ_o²): the covariance of the outputs given the last hidden layer."""
    same = ev2 is None
    ev2 = ev1 if same else ev2
    r = ev1.readout
    net = ev1.network
    key = r.vector or r.name
    std_v = net.infos[key].scale
    x1 = ev1.pooled if key not in net.masks else ev1.pooled * net.masks[key][:, None]  # a pruned v: Σ m_a x_a x'_a
    k = (std_v ** 2 / net.width) * _gram(x1, ev2.pooled, same)
    if r.b_std is not None:
        k = k + r.b_std ** 2
    return k


def network_kernels(net: Network, x1, x2=None, get=("nngp", "ntk"), *, output: str | None = None,
                    lengths1=None, lengths2=None):
    wanted = (get,) if isinstance(get, str) else tuple(get or ("nngp", "ntk"))
    if not set(wanted) <= {"nngp", "ntk"}:
        raise ValueError(f"get must name 'nngp' and/or 'ntk', got {get!r}")
    need_bw = "ntk" in wanted
    ev1 = net.evaluate(x1, lengths1, output=output, backward=need_bw)
    ev2 = None if x2 is None else net.evaluate(x2, lengths2, output=output, backward=need_bw)
    nngp = nngp_from_evaluations(ev1, ev2) if "nngp" in wanted else None
    ntk = ntk_from_evaluations(ev1, ev2) if need_bw else None
    for name, k in (("NNGP", nngp), ("NTK", ntk)):
        if k is not None and not np.all(np.isfinite(k)):
            raise NumericalError(f"the empirical {name} of {net.program.name!r} at width {net.width} "
                                 "is not finite (overflow in the forward or backward pass?)")
    result = Kernels(nngp, ntk)
    return getattr(result, get) if isinstance(get, str) else result


def empirical_kernels(program, x1, x2=None, get=("nngp", "ntk"), *, width: int = 1024, seed=0,
                      output: str | None = None, lengths1=None, lengths2=None, network: Network | None = None):
    """The empirical NNGP and NTK of ``program`` sampled at width ``width`` with ``seed``
    (or of a given ``network``), between x1 and x2 (default x1).

    Same arguments and result type as :func:`tpkernel.kernels` (a :class:`Kernels` with
    ``.nngp`` and ``.ntk``, or one array when ``get`` is a string):

    - ``.nngp`` = σ_v² x̄ᵀx̄'/n (+ σ_o²), x̄ the pooled readout input;
    - ``.ntk``  = Σ_p lr_p ⟨∂f/∂p, ∂f'/∂p⟩, exact at width n, computed as the limit's sum
      over parameter uses with (1/n) Σ_α in place of E.
    """
    net = network if network is not None else sample(program, width, seed)
    if network is not None and network.program is not program:
        raise ValueError("network= was sampled from another program")
    return network_kernels(net, x1, x2, get, output=output, lengths1=lengths1, lengths2=lengths2)
