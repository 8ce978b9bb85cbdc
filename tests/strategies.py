"""Hypothesis strategies for random tensor programs (used by tests/test_properties.py).

A program is drawn as a *recipe*: a plain, printable description (hypothesis shrinks it
and prints it on failure) that :func:`build` turns into a :class:`tpkernel.Program`
with the builder API.

Feed-forward recipe::

    xi -> U @ xi (+ b) -> op_1 -> ... -> op_k -> readout

Sequence recipe: the same list of ops is a recurrent *cell*, applied at every step t
to ``W_r @ s[t-1] + U @ xi[t] (+ b)`` (every parameter is shared by all steps), and a
pooled readout (``pool="last"`` or ``"mean"``) reads the states ``s[0..T-1]``.

Ops act on a pool of available vectors (indices are taken modulo the pool size):

- ``("matmul", m, i, b)``: ``W_m @ pool[i]`` (+ bias ``b_b``); reusing ``m`` shares the
  matrix between different vectors (weight sharing); a matrix may be drawn transposed
  (then every use of it is ``W_m.T @ x``, which keeps the program BP-like);
- ``("dense", k, m, i, b)``: ``φ_k(W_m @ pool[i] (+ b_b))``, a whole layer in one op;
- ``("bias", i, b)``: ``pool[i] + b_b`` (biases are shared too);
- ``("lincomb", i, j, a, c)``: ``a * pool[i] + c * pool[j]``;
- ``("nonlin", k, i, pa, pb)``: ``φ_k(pool[i])`` (``pa``, ``pb``: abrelu's slopes);
- ``("compose", k, l, i, b)``: ``φ_k(φ_l(pool[i]) (+ b_b))``, a composition (pool[i] or
  the nearest Gaussian vector before it; the bias, a second Gaussian leaf, only where
  two leaves are allowed);
- ``("product", i, j)``: ``pool[i] * pool[j]``, at most one per program (so its factors
  are never products themselves).

Parameters are declared only when first used, and every vector created is consumed:
the vectors no op has read are folded into the cell output by a LinComb sum, so the
program always validates (no dangling node).

Which integrals the evaluator needs depends on the program's shape.  The recipes keep
them cheap (most kernels in milliseconds) and free of Monte Carlo:

- a *kinked* recipe (``smooth=False``) draws from all nine nonlinearities (relu, erf,
  gelu, sin, cos, abrelu(a, b), leaky_relu, abs, tanh); compositions and correlated
  products stay functions of one Gaussian leaf (``relu(erf(h))``, ``h * relu(h)``:
  the polar rule over two Gaussians resolves kinks at a leaf's zero; kinked integrands
  over more leaves go to Monte Carlo), and relu-like functions of sin or cos are not
  composed (kinks away from the leaf's zero: the rule refines to 1025 nodes);
- a *smooth* recipe (``smooth=True``) draws from erf, gelu, sin, cos and tanh; with
  ``max_leaves=2`` (``recipes(four_gaussians=True)``) its compositions and correlated
  products may depend on two leaves (``gelu(tanh(h) + b)``, ``erf(h) * sin(h + b)``):
  integrals over four Gaussians, whose default adaptive rule (up to 33⁴ nodes) takes
  ~20 s per kernel, so the tests run those programs with Gauss-Hermite (``nd_deg``).

Every composition (at most one per program: they cost the most) and correlated product
must be read only by the new node, through unit coefficients: its gradient is then a
product du ⊙ φ'(..) ⊙ ψ'(..) that the evaluator factorises (a sum or multiple of such
gradients is a LinComb it integrates whole, with its backward leaves: Monte Carlo).  An
op that does not fit is skipped.  The rare programs that still need Monte Carlo are
discarded by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import tpkernel as tp
from tpkernel.builder import Vec, materialize
from tpkernel.ir import Bias, Embed, LinComb, MatMul

D = 3  # input dimension

#: (label, builder function(x, pa, pb)); tanh is the only one without closed forms
NONLINS = (
    ("relu", lambda h, a, b: tp.relu(h)),
    ("erf", lambda h, a, b: tp.erf(h)),
    ("gelu", lambda h, a, b: tp.gelu(h)),
    ("sin", lambda h, a, b: tp.sin(h)),
    ("cos", lambda h, a, b: tp.cos(h)),
    ("abrelu", lambda h, a, b: tp.abrelu(h, a, b if (a or b) else 1.0)),
    ("leaky_relu", lambda h, a, b: tp.leaky_relu(h)),
    ("abs", lambda h, a, b: tp.abs(h)),
    ("tanh", lambda h, a, b: tp.tanh(h)),
)
#: the smooth ones: a recipe drawn ``smooth`` uses only these
SMOOTH = tuple(f for f in NONLINS if f[0] in {"erf", "gelu", "sin", "cos", "tanh"})
KINKED = {"relu", "abrelu", "leaky_relu", "abs"}

N_MATRICES = 3
N_BIASES = 3


@dataclass(frozen=True)
class Recipe:
    ops: tuple
    smooth: bool  # smooth nonlinearities only, which may then be composed
    u_std: float
    in_bias: int | None  # bias added to the embedding (None: none)
    mat_std: tuple  # std of W_0..W_2
    mat_t: tuple  # whether W_m is used transposed
    bias_std: tuple  # std of b_0..b_2
    v_std: float  # readout
    v_lr: float
    b_std: float | None  # readout bias (None: none)
    # sequence programs only
    T: int | None = None
    rec: int = 0  # matrix id of the recurrent matrix
    pool: str = "last"
    max_leaves: int = 1  # Gaussian leaves of a composition or correlated product (0: none of them)


# -- building -----------------------------------------------------------------------

class _Builder:
    def __init__(self, recipe: Recipe, program: tp.Program) -> None:
        self.r = recipe
        self.p = program
        self.mats: dict[int, object] = {}
        self.biases: dict[int, Vec] = {}
        self.has_product = False
        self.has_composition = False
        self.locked: set[str] = set()  # read by a composition: no further reader

    def matrix(self, m: int):
        if m not in self.mats:
            W = self.p.matrix(f"W{m}", std=self.r.mat_std[m])
            self.mats[m] = W.T if self.r.mat_t[m] else W
        return self.mats[m]

    def bias(self, b: int) -> Vec:
        if b not in self.biases:
            self.biases[b] = self.p.bias(f"b{b}", std=self.r.bias_std[b])
        return self.biases[b]

    def nonlin(self, k: int):
        table = SMOOTH if self.r.smooth else NONLINS
        return table[k % len(table)][1]

    def label(self, k: int) -> str:
        table = SMOOTH if self.r.smooth else NONLINS
        return table[k % len(table)][0]

    def vec(self, x) -> Vec:
        """Write a pending sum as a node now, so that every pool entry is a node."""
        return Vec(self.p, materialize(self.p, x))

    # -- the structure of a vector, as the evaluator sees it ---------------------------
    def gaussian(self, name: str) -> bool:
        node = self.p[name]
        if isinstance(node, (Bias, Embed, MatMul)):
            return True
        return isinstance(node, LinComb) and node.const == 0.0 and all(self.gaussian(a) for a in node.args)

    def leaves(self, name: str) -> frozenset:
        """The maximal Gaussian vectors it is a function of (what the evaluator integrates over)."""
        if self.gaussian(name):
            return frozenset([name])
        return frozenset().union(*(self.leaves(a) for a in self.p[name].inputs))

    def atoms(self, name: str) -> frozenset:
        node = self.p[name]
        if isinstance(node, (Bias, Embed, MatMul)):
            return frozenset([name])
        return frozenset().union(*(self.atoms(a) for a in node.inputs))

    def keys(self, name: str) -> frozenset:
        """The independent Gaussian families of its atoms (a matrix, the input layer, a bias)."""
        out = set()
        for a in self.atoms(name):
            node = self.p[a]
            out.add(("W", node.matrix) if isinstance(node, MatMul) else ("U",) if isinstance(node, Embed) else a)
        return frozenset(out)

    def chain(self, name: str) -> set[str]:
        """The non-Gaussian vectors it is a function of without a MatMul in between."""
        if self.gaussian(name):
            return set()
        out = {name}
        for a in self.p[name].inputs:
            out |= self.chain(a)
        return out

    def composable(self, names) -> bool:
        """Whether a nonlinear function of these vectors keeps every integral, forward and
        backward, within four Gaussians: at most two leaves, and a chain that only the new
        node reads, through unit coefficients."""
        if len(frozenset().union(*(self.leaves(n) for n in names))) > self.r.max_leaves:
            return False
        for top in names:
            if self.p.consumers(top):
                return False
            for v in self.chain(top) - {top}:
                users = self.p.consumers(v)
                if len(users) != 1:
                    return False
                u = users[0]
                if isinstance(u, LinComb) and u.coeffs[u.args.index(v)] != 1.0:
                    return False
        return True

    # -- the ops -------------------------------------------------------------------------
    def op(self, op, pool):
        """Apply one op; return (new vector, vectors read), or None to skip it."""
        kind, n = op[0], len(pool)
        if kind == "matmul":
            _, m, i, b = op
            x = pool[i % n]
            h = self.matrix(m) @ x
            return self.vec(h + self.bias(b) if b is not None else h), [x]
        if kind == "dense":
            _, k, m, i, b = op
            x = pool[i % n]
            h = self.matrix(m) @ x
            return self.nonlin(k)(h + self.bias(b) if b is not None else h, 0.3, 1.0), [x]
        if kind == "bias":
            _, i, b = op
            x = pool[i % n]
            return self.vec(x + self.bias(b)), [x]
        if kind == "lincomb":
            _, i, j, a, c = op
            x, y = pool[i % n], pool[j % n]
            if x.name == y.name:
                return None
            return self.vec(a * x + c * y), [x, y]
        if kind == "nonlin":
            _, k, i, pa, pb = op
            x = pool[i % n]
            if self.gaussian(x.name):
                return self.nonlin(k)(x, pa, pb), [x]
            if not self.r.smooth or self.has_composition or not self.composable([x.name]):
                return None
            self.has_composition = True
            self.locked |= self.chain(x.name)
            return self.nonlin(k)(x, pa, pb), [x]
        if kind == "compose":
            _, k, l, i, b = op
            x = pool[i % n]
            if not self.gaussian(x.name):  # the nearest Gaussian before it (pool[0] is one)
                x = next(v for v in reversed(pool[:i % n]) if self.gaussian(v.name))
            inner = self.nonlin(l)(x, 0.3, 1.0)
            if self.has_composition or not self.r.max_leaves:
                return inner, [x]
            if self.r.smooth:
                if b is not None and self.r.max_leaves > 1:  # a second Gaussian leaf
                    inner = self.vec(inner + self.bias(b))
            elif self.label(k) in KINKED and self.label(l) in ("sin", "cos"):
                return inner, [x]  # kinks where sin/cos vanish, away from the leaf's zero
            self.has_composition = True
            self.locked |= self.chain(inner.name)
            return self.nonlin(k)(inner, 0.3, 1.0), [x]
        if kind == "product":
            _, i, j = op
            x, y = pool[i % n], pool[j % n]
            if self.has_product:
                return None
            if not self.keys(x.name) & self.keys(y.name):  # independent factors
                pass
            elif x.name == y.name:
                if not self.gaussian(x.name):
                    return None
            elif not self.composable([x.name, y.name]):
                return None
            else:
                self.locked |= self.chain(x.name) | self.chain(y.name)
            self.has_product = True
            return x * y, [x, y]
        raise ValueError(op)  # pragma: no cover

    def cell(self, start) -> Vec:
        """Apply the ops to the pool [start]; return the cell output (every vector read)."""
        pool = [self.vec(start)]
        used: set[str] = set()
        for op in self.r.ops:
            out = self.op(op, [v for v in pool if v.name not in self.locked])
            if out is None:
                continue
            new, read = out
            used |= {v.name for v in read}
            pool.append(new)
        last = pool[-1]
        out, seen = last, {last.name}
        for v in pool[:-1]:  # fold the vectors nothing has read into the output
            if v.name not in used and v.name not in seen:
                out = out + v
                seen.add(v.name)
        return self.vec(out)


def build(recipe: Recipe) -> tp.Program:
    """The program a recipe describes (validated)."""
    p = tp.Program("rand")
    B = _Builder(recipe, p)
    U = p.input_layer("U", std=recipe.u_std)
    if recipe.T is None:
        xi = p.data("xi")
        h = U @ xi
        if recipe.in_bias is not None:
            h = h + B.bias(recipe.in_bias)
        p.output(B.cell(h), std=recipe.v_std, lr=recipe.v_lr, b_std=recipe.b_std, name="f")
    else:
        xi = p.data("xi", length=recipe.T)
        states = []
        for t in range(recipe.T):
            h = U @ xi[t]
            if t > 0:
                h = B.matrix(recipe.rec) @ states[-1] + h
            if recipe.in_bias is not None:
                h = h + B.bias(recipe.in_bias)
            states.append(B.cell(h))
        p.output(states, std=recipe.v_std, lr=recipe.v_lr, b_std=recipe.b_std, pool=recipe.pool, name="f")
    return p.validate()


# -- strategies -----------------------------------------------------------------------

stds = st.floats(0.5, 1.5)
coeffs = st.sampled_from([2.0, -0.5, 1.0, -1.0, 0.75, 1.5, -1.25])
slopes = st.sampled_from([-1.5, -1.0, -0.5, -0.2, 0.0, 0.3, 0.5, 1.0, 1.5])
idx = st.integers(0, 7)
nonlin_id = st.integers(0, len(NONLINS) - 1)
mat_id = st.integers(0, N_MATRICES - 1)
bias_id = st.integers(0, N_BIASES - 1)

ops = st.one_of(
    st.tuples(st.just("matmul"), mat_id, idx, st.none() | bias_id),
    st.tuples(st.just("dense"), nonlin_id, mat_id, idx, st.none() | bias_id),
    st.tuples(st.just("bias"), idx, bias_id),
    st.tuples(st.just("lincomb"), idx, idx, coeffs, coeffs),
    st.tuples(st.just("nonlin"), nonlin_id, idx, slopes, slopes),
    st.tuples(st.just("compose"), nonlin_id, nonlin_id, idx, st.none() | bias_id),
    st.tuples(st.just("product"), idx, idx),
)


@st.composite
def recipes(draw, sequence: bool = False, four_gaussians: bool = False) -> Recipe:
    """Feed-forward recipes of 1-5 ops, or sequence recipes (T = 2..3) of 1-3 ops without
    compositions or correlated products (their quadratures, repeated over time steps,
    would dominate the tests' time).

    ``four_gaussians``: smooth recipes of 1-2 ops, whose compositions and correlated
    products may depend on two Gaussian leaves (integrals over four Gaussians), starting
    with such a composition."""
    n_ops = draw(st.integers(1, 2 if four_gaussians else 3 if sequence else 5))
    first = (draw(st.tuples(st.just("compose"), nonlin_id, nonlin_id, idx, bias_id)),) if four_gaussians else ()
    return Recipe(
        ops=first + tuple(draw(ops) for _ in range(n_ops - len(first))),
        smooth=four_gaussians or draw(st.booleans()),
        max_leaves=2 if four_gaussians else 0 if sequence else 1,
        u_std=draw(stds),
        in_bias=draw(st.none() | bias_id),
        mat_std=tuple(draw(stds) for _ in range(N_MATRICES)),
        mat_t=tuple(draw(st.booleans()) for _ in range(N_MATRICES)),
        bias_std=tuple(draw(stds) for _ in range(N_BIASES)),
        v_std=draw(stds),
        v_lr=draw(st.sampled_from([1.0, 0.5, 2.0])),
        b_std=draw(st.none() | stds),
        T=draw(st.integers(2, 3)) if sequence else None,
        rec=draw(mat_id),
        pool=draw(st.sampled_from(["last", "mean"])) if sequence else "last",
    )


@st.composite
def chains(draw) -> Recipe:
    """Fully connected chains, φ_0(U ξ (+ b)) -> φ_1(W_1 x (+ b)) -> ..., every parameter used
    once, any of the nine nonlinearities: the programs ``engine="auto"`` evaluates with the
    fused fast path (:mod:`tpkernel.limit.fused`)."""
    depth = draw(st.integers(0, N_MATRICES))
    biases = draw(st.permutations(range(N_BIASES)))
    use = [draw(st.booleans()) for _ in range(depth + 1)]
    ops = (("nonlin", draw(nonlin_id), 0, draw(slopes), draw(slopes)),)
    ops += tuple(("dense", draw(nonlin_id), m, -1, biases[m + 1] if m + 1 < N_BIASES and use[m + 1] else None)
                 for m in range(depth))
    return Recipe(
        ops=ops, smooth=False, u_std=draw(stds), in_bias=biases[0] if use[0] else None,
        mat_std=tuple(draw(stds) for _ in range(N_MATRICES)), mat_t=(False,) * N_MATRICES,
        bias_std=tuple(draw(stds) for _ in range(N_BIASES)), v_std=draw(stds),
        v_lr=draw(st.sampled_from([1.0, 0.5, 2.0])), b_std=draw(st.none() | stds))


# -- data -------------------------------------------------------------------------------

def inputs(seed: int, n: int) -> np.ndarray:
    """n nonzero inputs in R^D: random directions, |ξ|²/D uniform in [0.25, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D))
    radius = np.sqrt(D) * rng.uniform(0.5, 1.0, size=(n, 1))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * radius


def sequences(seed: int, n: int, T: int) -> list[np.ndarray]:
    """n >= 2 sequences of nonzero steps in R^D with lengths in 1..T, at least one of
    length T and one of length 1 (ragged)."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, T + 1, size=n)
    lens[rng.choice(n, size=2, replace=False)] = (T, 1)
    return [inputs(int(rng.integers(2**32)), int(L)) for L in lens]
