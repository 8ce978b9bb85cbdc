"""Hypothesis strategies for random tensor programs (used by tests/test_properties.py).

A program is drawn as a *recipe*: a plain, printable description (so that hypothesis
shrinks it and shows it on failure) that :func:`build` turns into a
:class:`tpkernel.Program` with the builder API.

Feed-forward recipe::

    xi -> U @ xi (+ b) -> op_1 -> ... -> op_k -> readout

Sequence recipe: the same list of ops is a recurrent *cell*, applied at every step t
to ``Wr @ s[t-1] + U @ xi[t]`` (every parameter is shared by all steps), and a pooled
readout reads the states ``s[0..T-1]``.

Ops act on a pool of available vectors (indices are taken modulo the pool size):

- ``("matmul", m, i, b)``: ``W_m @ pool[i]`` (+ bias ``b_b``); reusing ``m`` shares the
  matrix between different vectors (weight sharing); a matrix may be drawn transposed
  (then every use of it is ``W_m.T @ x``, which keeps the program BP-like);
- ``("bias", i, b)``: ``pool[i] + b_b`` (biases are shared too);
- ``("lincomb", i, j, a, c)``: ``a * pool[i] + c * pool[j]``;
- ``("nonlin", k, i, pa, pb)``: ``NONLINS[k](pool[i])`` (``pa``, ``pb``: abrelu's slopes);
- ``("product", i, j)``: ``pool[i] * pool[j]``, at most one per program, of non-product
  vectors.

Parameters are declared only when first used, and every vector created is consumed:
the vectors no op has read are folded into the readout input by a LinComb sum, so the
program always validates (no dangling node).

To keep the Master-Theorem integrals low-dimensional (closed forms, or quadrature over
at most four Gaussians), a nonlinearity (or a product) is applied only to an argument
that is Gaussian or depends on at most two Gaussian atoms; an op that would break this
is skipped.  Programs that still need Monte Carlo are filtered out by the tests (see
:func:`uses_monte_carlo`): Monte Carlo estimates (standard error ~1e-3) cannot satisfy
identities at 1e-10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import tpkernel as tp
from tpkernel.builder import materialize
from tpkernel.ir import Bias, Embed, LinComb, MatMul, Nonlin

D = 3  # input dimension

#: (label, builder function(x, pa, pb)); tanh is the only quadrature family
NONLINS = (
    ("relu", lambda h, a, b: tp.relu(h)),
    ("erf", lambda h, a, b: tp.erf(h)),
    ("gelu", lambda h, a, b: tp.gelu(h)),
    ("sin", lambda h, a, b: tp.sin(h)),
    ("cos", lambda h, a, b: tp.cos(h)),
    ("abrelu", lambda h, a, b: tp.abrelu(h, a, b)),
    ("leaky_relu", lambda h, a, b: tp.leaky_relu(h)),
    ("abs", lambda h, a, b: tp.abs(h)),
    ("tanh", lambda h, a, b: tp.tanh(h)),
)
QUADRATURE_NONLINS = {"tanh"}

N_MATRICES = 3
N_BIASES = 3


@dataclass(frozen=True)
class Recipe:
    ops: tuple
    u_std: float
    in_bias: int | None  # bias added to the embedding (None: none)
    mat_std: tuple  # std of W_0..W_2
    mat_t: tuple  # whether W_m is used transposed
    bias_std: tuple  # std of b_0..b_2
    v_std: float
    v_lr: float
    b_std: float | None  # readout bias
    # sequence programs only
    T: int | None = None
    rec: int = 0  # matrix id of the recurrent matrix
    pool: str = "last"

    @property
    def nonlins(self) -> set[str]:
        return {NONLINS[op[1]][0] for op in self.ops if op[0] == "nonlin"}


# -- building -----------------------------------------------------------------------

class _Builder:
    def __init__(self, recipe: Recipe, program: tp.Program) -> None:
        self.r = recipe
        self.p = program
        self.mats: dict[int, object] = {}
        self.biases: dict[int, tp.builder.Vec] = {}
        self.has_product = False
        self.product_derived: set[str] = set()

    def matrix(self, m: int):
        if m not in self.mats:
            W = self.p.matrix(f"W{m}", std=self.r.mat_std[m])
            self.mats[m] = W.T if self.r.mat_t[m] else W
        return self.mats[m]

    def bias(self, b: int):
        if b not in self.biases:
            self.biases[b] = self.p.bias(f"b{b}", std=self.r.bias_std[b])
        return self.biases[b]

    # structure of a vector, as the evaluator sees it
    def atoms(self, name: str) -> frozenset:
        node = self.p[name]
        if isinstance(node, (Bias, Embed, MatMul)):
            return frozenset([name])
        return frozenset().union(*(self.atoms(a) for a in node.inputs))

    def gaussian(self, name: str) -> bool:
        node = self.p[name]
        if isinstance(node, (Bias, Embed, MatMul)):
            return True
        return isinstance(node, LinComb) and node.const == 0.0 and all(self.gaussian(a) for a in node.args)

    def nonlin_ok(self, names) -> bool:
        if len(names) == 1 and self.gaussian(names[0]):
            return True
        return len(frozenset().union(*(self.atoms(n) for n in names))) <= 2

    def vec(self, x) -> tp.builder.Vec:
        """Write a pending sum as a node now, so that every pool entry is a node."""
        return tp.builder.Vec(self.p, materialize(self.p, x))

    def cell(self, start) -> tp.builder.Vec:
        """Apply the ops to the pool [start]; return the cell output (every vector used)."""
        pool = [self.vec(start)]
        used: set[str] = set()
        for op in self.r.ops:
            kind = op[0]
            n = len(pool)
            if kind == "matmul":
                _, m, i, b = op
                x = pool[i % n]
                h = self.matrix(m) @ x
                if b is not None:
                    h = h + self.bias(b)
                new = self.vec(h)
                used.add(x.name)
            elif kind == "bias":
                _, i, b = op
                x = pool[i % n]
                new = self.vec(x + self.bias(b))
                used.add(x.name)
            elif kind == "lincomb":
                _, i, j, a, c = op
                x, y = pool[i % n], pool[j % n]
                if x.name == y.name:
                    continue
                new = self.vec(a * x + c * y)
                used |= {x.name, y.name}
            elif kind == "nonlin":
                _, k, i, pa, pb = op
                x = pool[i % n]
                if not self.nonlin_ok([x.name]):
                    continue
                new = NONLINS[k][1](x, pa, pb)
                used.add(x.name)
                if x.name in self.product_derived:
                    self.product_derived.add(new.name)
            elif kind == "product":
                _, i, j = op
                x, y = pool[i % n], pool[j % n]
                if (self.has_product or x.name in self.product_derived or y.name in self.product_derived
                        or not self.nonlin_ok([x.name, y.name])):
                    continue
                new = x * y
                self.has_product = True
                self.product_derived.add(new.name)
                used |= {x.name, y.name}
            else:  # pragma: no cover
                raise ValueError(op)
            pool.append(new)
            if any(a in self.product_derived for a in self.p[new.name].inputs):
                self.product_derived.add(new.name)
        last = pool[-1]
        unused = []
        for v in pool[:-1]:
            if v.name not in used and v.name != last.name and v.name not in {u.name for u in unused}:
                unused.append(v)
        out = last
        for v in unused:
            out = out + v
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
        out = B.cell(h)
        p.output(out, std=recipe.v_std, lr=recipe.v_lr, b_std=recipe.b_std, name="f")
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
slopes = st.floats(-1.5, 1.5).filter(lambda s: s != 0.0)
idx = st.integers(0, 7)

ops = st.one_of(
    st.tuples(st.just("matmul"), st.integers(0, N_MATRICES - 1), idx, st.none() | st.integers(0, N_BIASES - 1)),
    st.tuples(st.just("bias"), idx, st.integers(0, N_BIASES - 1)),
    st.tuples(st.just("lincomb"), idx, idx, coeffs, coeffs),
    st.tuples(st.just("nonlin"), st.integers(0, len(NONLINS) - 1), idx, slopes, slopes),
    st.tuples(st.just("product"), idx, idx),
)


@st.composite
def recipes(draw, sequence: bool = False, max_ops: int = 5) -> Recipe:
    n_ops = draw(st.integers(1, max_ops if not sequence else min(max_ops, 3)))
    return Recipe(
        ops=tuple(draw(ops) for _ in range(n_ops)),
        u_std=draw(stds),
        in_bias=draw(st.none() | st.integers(0, N_BIASES - 1)),
        mat_std=tuple(draw(stds) for _ in range(N_MATRICES)),
        mat_t=tuple(draw(st.booleans()) for _ in range(N_MATRICES)),
        bias_std=tuple(draw(stds) for _ in range(N_BIASES)),
        v_std=draw(stds),
        v_lr=draw(st.sampled_from([1.0, 0.5, 2.0])),
        b_std=draw(st.none() | stds),
        T=draw(st.integers(2, 3)) if sequence else None,
        rec=draw(st.integers(0, N_MATRICES - 1)),
        pool=draw(st.sampled_from(["last", "mean"])) if sequence else "last",
    )


# -- data -------------------------------------------------------------------------------

def inputs(seed: int, n: int) -> np.ndarray:
    """n nonzero inputs in R^D (standard normal, norms bounded away from 0)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms < 0.1, x / norms * 0.1, x)


def sequences(seed: int, n: int, T: int, ragged: bool = True) -> list[np.ndarray]:
    """n sequences of nonzero steps in R^D, of lengths in 1..T (different ones if ragged)."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, T + 1, size=n) if ragged else np.full(n, T)
    return [inputs(int(rng.integers(2**32)), int(L)) for L in lens]


def uses_monte_carlo(program: tp.Program, T: int | None) -> bool:
    """Whether some expectation of the program's kernels falls back to Monte Carlo
    (structure only: probed on one example, with few samples)."""
    x = inputs(0, 1) if T is None else inputs(0, T)[None]
    K = tp.kernels(program, x, mc_samples=16)
    return bool(K.report.monte_carlo)
