r"""The exact limit of a masked (pruned) input layer: a Gaussian scale mixture over masks.

A pruned input layer acts as σ s (M ⊙ U) ξ / √d with U_{aj} ~ N(0, 1) and M_{aj} ~
Bernoulli(q) (s = 1/√q with rescaling, else 1).  Row a of the embedding sees only its kept
input coordinates S_a = {j : M_{aj} = 1}; given S_a it is Gaussian,

  Cov(Z^{Uξ_t}, Z^{Uξ'_s} | S) = σ² s² ⟨ξ_{t,S}, ξ'_{s,S}⟩ / d,

and the rows' S_a are iid: the limit Z^{Uξ} is a *Gaussian scale mixture* over
S ~ Bernoulli(q)^d, the same S for every input and every step that row reads.  With d fixed
(the input dimension does not grow with the width) this mixture does not average out: only
after the next MatMul, which sums over coordinates, is a vector again Gaussian, with the
S-averaged covariance.  The input layer's own NTK term is the average of a product,
E_S[E[dy dy' | S] ⟨ξ_S, ξ'_S⟩/d] (only kept weights have gradients).

:class:`InputMixture` gives the evaluator (:class:`~tpkernel.limit.numeric.Expectations`) these
conditional moments as arrays with leading *mask axes* — ``(R, K_1, …, K_L) + (N1, N2)``,
one axis per masked input layer and one of replicates — that broadcast through every rule
(closed forms, quadrature) unchanged, and averages them where the Master Theorem sums over
coordinates (:meth:`average`, at every MatMul and in the kernel assembly).

How S is averaged (and the report says which):

- **exact** for d <= ``Settings.mask_exact_d`` (12): all 2^d subsets, weights
  q^{|S|} (1 − q)^{d − |S|} (and the size of the arrays, 2^d·N1·N2, within
  ``Settings.mask_budget``);
- otherwise **Monte Carlo**: ``Settings.mask_samples`` draws of S in
  ``Settings.mask_replicates`` independent replicates; every replicate carries its own
  estimate through the whole program, the kernel is their mean and its standard error their
  spread / √R (:meth:`collapse`, recorded in ``K.report``).  The bias of a replicate is
  O(1/k) for k draws each, below the standard error O(1/√(R k)).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from ..errors import ProgramError
from ..ir import Embed, InputLayer


def all_subsets(d: int) -> np.ndarray:
    """The 2^d subsets of {0..d-1} as a (2^d, d) 0/1 float array (row k: the bits of k)."""
    k = np.arange(2 ** d, dtype=np.int64)[:, None]
    return ((k >> np.arange(d)) & 1).astype(float)


def subset_weights(S: np.ndarray, q: float) -> np.ndarray:
    """P(S) = q^{|S|} (1 − q)^{d − |S|} for each row of S."""
    size = S.sum(axis=-1)
    d = S.shape[-1]
    return q ** size * (1.0 - q) ** (d - size)


class InputMixture:
    """Conditional moments of the masked input layers of one :class:`~tpkernel.limit.numeric.Expectations` evaluation."""

    def __init__(self, moments) -> None:
        self.m = moments
        p = moments.p
        used = {n.layer for n in p.of_type(Embed)}
        self.layers = [n.name for n in p.of_type(InputLayer) if n.mask is not None and n.name in used]
        self.L = len(self.layers)
        self.axis = {name: 1 + j for j, name in enumerate(self.layers)}
        self._sets: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self.R = 1

    # -- the masks of a row --------------------------------------------------------------
    def _dim(self, layer: str) -> int:
        m = self.m
        for e in m.p.of_type(Embed):
            if e.layer == layer:
                for side in m.sides:
                    return side.data[e.data].shape[-1]
        raise ProgramError(f"input layer {layer!r}: no data bound")  # pragma: no cover

    def _build(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if self._sets is not None:
            return self._sets
        m = self.m
        s = m.settings
        sizes = [side.n for side in m.sides] or [1]
        pairs = sizes[0] * sizes[-1]
        plan = {}
        for name in self.layers:
            mask = m.p[name].mask
            d = self._dim(name)
            if mask.p == 0.0:
                plan[name] = ("exact", d, 1)
            elif d <= s.mask_exact_d and (2 ** d) * pairs <= s.mask_budget:
                plan[name] = ("exact", d, 2 ** d)
            else:
                plan[name] = ("mc", d, None)
        self.R = max(1, int(s.mask_replicates)) if any(v[0] == "mc" for v in plan.values()) else 1
        sets = {}
        for name in self.layers:
            mask = m.p[name].mask
            method, d, K = plan[name]
            q = mask.q
            if method == "exact":
                S = np.ones((1, d)) if K == 1 else all_subsets(d)
                w = np.ones(1) if K == 1 else subset_weights(S, q)
                S = S[None]  # (1, K, d): the same for every replicate
                line = (f"input layer {name} (mask p={mask.p:g}, d={d}): exact limit, the average over all "
                        f"{K} masks of a row's kept inputs (Gaussian scale mixture)")
            else:
                k = max(1, math.ceil(s.mask_samples / self.R))
                k = max(1, min(k, s.mask_budget // max(1, self.R * pairs)))
                rng = np.random.default_rng(np.random.SeedSequence(
                    s.seed, spawn_key=(zlib.crc32(("mask/" + name).encode()),)))
                S = (rng.random((self.R, k, d)) < q).astype(float)
                w = np.full(k, 1.0 / k)
                why = f"d > {s.mask_exact_d}" if d > s.mask_exact_d else "2^d·N1·N2 above mask_budget"
                line = (f"input layer {name} (mask p={mask.p:g}, d={d}): MONTE CARLO over the masks of a row's "
                        f"kept inputs ({why}): {self.R} replicates × {k} masks; the kernels are the replicates' "
                        "mean, standard errors below")
            sets[name] = (S, w)
            m.report.masks.append({"layer": name, "method": method, "d": d, "p": mask.p,
                                   "subsets": int(S.shape[1]), "replicates": int(S.shape[0]), "line": line})
        self._sets = sets
        return sets

    def _lead(self, layer: str, arr: np.ndarray, ctx_ndim: int) -> np.ndarray:
        """(R, K, ...ctx) → (R, 1.., K, ..1, ...ctx) with K on the layer's axis."""
        j = self.axis[layer]
        shape = (arr.shape[0],) + (1,) * (j - 1) + (arr.shape[1],) + (1,) * (self.L - j) + arr.shape[2:]
        assert len(arr.shape) == 2 + ctx_ndim
        return arr.reshape(shape)

    # -- the rules ---------------------------------------------------------------------
    def gram(self, U: Embed, V: Embed, ctx) -> np.ndarray:
        """⟨ξ_{t,S}, ξ'_{s,S}⟩ / d for every mask S of a row of the (masked) input layer."""
        S, _ = self._build()[U.layer]
        a, b, diag = ctx
        m = self.m
        xa = m.sides[a].data[U.data][:, U.step or 0, :]
        xb = m.sides[b].data[V.data][:, V.step or 0, :]
        d = xa.shape[1]
        if diag:
            g = np.einsum("rkd,id->rki", S, xa * xb) / d
            return self._lead(U.layer, g, 1)
        g = np.matmul(S[:, :, None, :] * xa[None, None], xb.T) / d  # (R, K, N1, N2)
        return self._lead(U.layer, g, 2)

    def average(self, x: np.ndarray) -> np.ndarray:
        """Σ_S P(S) x_S over every mask axis (replicates kept)."""
        sets = self._build()
        x = np.asarray(x)
        for name in self.layers:
            j = self.axis[name]
            if x.shape[j] > 1:
                w = sets[name][1]
                x = np.tensordot(x, w, axes=([j], [0]))
                x = np.expand_dims(x, -1)
                x = np.moveaxis(x, -1, j)
        return x

    def collapse(self, x: np.ndarray, ctx, what: str) -> np.ndarray:
        """The kernel: masks averaged; Monte Carlo replicates → mean, standard error → report."""
        x = self.average(x)
        lead = 1 + self.L
        if x.shape[0] > 1:
            R = x.shape[0]
            mean = x.mean(axis=0)
            se = x.std(axis=0, ddof=1) / math.sqrt(R)
            scale = float(np.max(np.abs(mean))) or 1.0
            self.m.report.masks.append({"what": what, "se": float(np.max(se)), "se_array": se.reshape(
                se.shape[lead - 1:]), "line": f"  {what}: Monte Carlo standard error over input masks up to "
                                              f"{float(np.max(se)):.2e} (relative {float(np.max(se)) / scale:.1e})"})
            x = mean[None]
        return x.reshape(x.shape[lead:])
