r"""A program at finite width n: sampled parameters, forward and backward passes, gradients.

This is the finite-width *interpretation* of a program: every vector of width n becomes
an ``(n, N)`` NumPy array (one column per example of a batch), by one rule per node kind
(:data:`RULES`), applied in program order.  The backward program is the **same**
:func:`tpkernel.backward.backward` program the limit evaluator reads; interpreted with
the same rule table it yields ``dx = √n ∂f/∂x`` for every vector x:

==========  ===================================================================
node        value at width n (columns are examples ξ_1..ξ_N)
==========  ===================================================================
Embed       σ_U U ξ_t / √d          U ∈ R^{n×d}, U_ij ~ N(0, 1)
Bias        σ_b β                   β ~ N(0, I_n)
MatMul      σ_W W x / √n            (σ_W Wᵀ x / √n when transposed), W_ij ~ N(0, 1)
Nonlin      φ(x_1, …, x_k)          coordinatewise (products, derivatives φ')
LinComb     Σ_k c_k x_k + c_0
Seed        σ_v c_k(ξ) v            the readout's gradient, with its pooling weights
Readout     f = σ_v vᵀ x̄ / √n (+ σ_o β_o),  x̄ = Σ_k c_k(ξ) x_k (pooled)
==========  ===================================================================

The trained variables are the N(0, 1) draws (NTK parametrization, as neural-tangents'
``parameterization='ntk'``): U, W, β, v and β_o.  One draw per parameter node: a matrix
used at several places (an RNN's W) is one array (weight sharing).  Each parameter's
draw comes from its own stream, ``SeedSequence(seed, spawn_key=(crc32(name),))``, so it
depends only on the seed and the parameter's name (not on the order of the program, nor on
the input dimension of another layer); an input layer is drawn when its input dimension is
first known (from ``input_dims`` or from the first data it reads).

**Pruning.**  A parameter with a :class:`~tpkernel.ir.Mask` gets a Bernoulli(q) mask M drawn
from its own stream (``SeedSequence(seed, spawn_key=(crc32(name + "/mask"),))``): the pruned
entries of its draw are set to 0, its forward scale is σ s (s = 1/√q with rescaling, else 1),
and its gradients are restricted to the kept entries (M ⊙ ∂f/∂W): pruned weights stay 0 under
training.  ``net.masks`` holds the masks.

Per-parameter derivatives of the outputs f(ξ_i) follow from the backward values:

  ∂f/∂W = σ_W/n Σ_{uses y=Wz} dy zᵀ,   ∂f/∂U = σ_U/√(nd) Σ_{uses y=Uξ_t} dy ξ_tᵀ,
  ∂f/∂β = σ_b/√n db,   ∂f/∂v = σ_v x̄/√n,   ∂f/∂β_o = σ_o.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..backward import Backward, backward, pick_readout
from ..data import bind, check_dims, max_steps, pool
from ..errors import NumericalError, ProgramError, ShapeError
from ..rules import RuleTable
from ..ir import Bias, Data, Embed, InputLayer, LinComb, Mask, MatMul, Matrix, Nonlin, Program, Readout, Seed, mask_of

Array = np.ndarray


def _hstack(arrays: list[Array]) -> Array:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1)


def readout_bias_key(readout: str) -> str:
    """The key of a readout's output bias β_o in :attr:`Network.params`."""
    return readout + "/bias"


@dataclass(frozen=True)
class ParamInfo:
    """A trained variable: its ``kind`` ("input", "matrix", "bias", "readout",
    "readout_bias"), forward scale ``std`` and learning-rate multiplier ``lr``."""

    key: str
    kind: str
    std: float
    lr: float
    mask: Mask | None = None  # random pruning of this variable (see tpkernel.pruning)

    @property
    def scale(self) -> float:
        """The forward scale of a (kept) weight: σ, times 1/√q for a rescaled mask."""
        return self.std * (self.mask.scale2 ** 0.5 if self.mask is not None else 1.0)


def param_infos(program: Program) -> dict[str, ParamInfo]:
    """Every trained variable of ``program`` (all readouts), keyed as in :attr:`Network.params`.

    Parameter nodes keep their names; a readout's own vector v is keyed by the readout's
    name (a readout whose ``vector`` names a Bias uses that bias); its output bias by
    :func:`readout_bias_key`.
    """
    out: dict[str, ParamInfo] = {}
    for p in program.params:
        kind = {InputLayer: "input", Matrix: "matrix", Bias: "bias"}[type(p)]
        out[p.name] = ParamInfo(p.name, kind, p.std, p.lr, mask_of(p))
    for r in program.readouts:
        if r.vector is None:
            out[r.name] = ParamInfo(r.name, "readout", r.std, r.lr, mask_of(r))
        else:
            out[r.vector] = ParamInfo(r.vector, "readout", program[r.vector].std, program[r.vector].lr,
                                      mask_of(r))
        if r.b_std is not None:
            key = readout_bias_key(r.name)
            out[key] = ParamInfo(key, "readout_bias", r.b_std, r.b_lr)
    return out


def _stream(base: int, key: str) -> np.random.Generator:
    """The random stream of one parameter: depends on the seed and the parameter's name only."""
    return np.random.default_rng(np.random.SeedSequence(base, spawn_key=(zlib.crc32(key.encode()),)))


def _base_entropy(seed) -> int:
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2 ** 63 - 1))
    if isinstance(seed, np.random.SeedSequence):
        return int(seed.generate_state(2, np.uint64)[0])
    if isinstance(seed, (int, np.integer)) and seed >= 0:
        return int(seed)
    raise ValueError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")


# -------------------------------------------------------------------------------------
# evaluation of a program on one batch
# -------------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """One forward (and backward) pass of a :class:`Network` on a batch of N examples.

    ``values[name]`` is the (n, N) array of a vector (forward nodes, and with the backward
    pass the gradient nodes dx = √n ∂f/∂x); ``data[name]`` the bound (N, T, d) data;
    ``pool`` the readout's pooling weights (N, K); ``f`` the outputs (N,); ``pooled`` the
    pooled readout input x̄ (n, N); ``backward`` the gradient program (or None).
    """

    network: "Network"
    readout: Readout
    data: dict[str, Array]
    pool: Array
    values: dict[str, Array]
    pooled: Array
    f: Array
    backward: Backward | None = None

    @property
    def n(self) -> int:
        return self.network.width

    @property
    def N(self) -> int:
        return self.pool.shape[0]

    def grad(self, vector: str) -> Array:
        """dx = √n ∂f/∂x of a forward vector (zeros if f does not depend on it)."""
        if self.backward is None:
            raise ProgramError("this evaluation has no backward pass (use backward=True)")
        g = self.backward.grads.get(vector)
        return self.values[g] if g is not None else np.zeros((self.n, self.N))

    def embed_data(self, embed: str) -> Array:
        """The (N, d) data an Embed node reads (its step of its data node)."""
        node = self.network.program[embed]
        return self.data[node.data][:, node.step or 0, :]


# rule table: node kind -> value (the finite-width interpretation) --------------------

def _rule_bias(node: Bias, net: "Network", env: "_Env") -> Array:
    return np.broadcast_to(node.std * net.params[node.name][:, None], (net.width, env.N))


def _rule_embed(node: Embed, net: "Network", env: "_Env") -> Array:
    xi = env.data[node.data][:, node.step or 0, :]  # (N, d)
    U = net.params[node.layer]  # (n, d); pruned entries are 0
    return (net.infos[node.layer].scale / math.sqrt(U.shape[1])) * (U @ xi.T)


def _rule_matmul(node: MatMul, net: "Network", env: "_Env") -> Array:
    W = net.params[node.matrix]
    x = env.values[node.arg]
    y = W.T @ x if node.transpose else W @ x
    y *= net.infos[node.matrix].scale / math.sqrt(net.width)
    return y


def _fast_abrelu(a: float, b: float) -> Callable[[Array], Array] | None:
    if a == 0.0:
        return (lambda x: np.maximum(x, 0.0)) if b == 1.0 else (lambda x: b * np.maximum(x, 0.0))
    return None


def _fast_abstep(a: float, b: float) -> Callable[[Array], Array]:
    if a == 0.0:
        return (lambda x: (x > 0).astype(float)) if b == 1.0 else (lambda x: b * (x > 0))
    return lambda x: b * (x > 0) + a * (x < 0)


# Faster NumPy forms of a few registry maps (same values; tests/test_finite.py checks them
# against the registry): the piecewise-linear family is the hot loop of a ReLU network.
FAST_MAPS: dict[str, Callable[..., Callable[[Array], Array]]] = {"abrelu": _fast_abrelu, "abstep": _fast_abstep}


def numpy_map(fn) -> Callable[..., Array]:
    """The NumPy map of a nonlinearity as the finite interpreter applies it."""
    fast = FAST_MAPS.get(fn.name)
    fast = fast(*fn.params) if fast is not None else None
    return fast if fast is not None else fn


def _rule_nonlin(node: Nonlin, net: "Network", env: "_Env") -> Array:
    try:
        out = numpy_map(node.fn)(*(env.values[a] for a in node.args))
    except (NumericalError, ProgramError) as err:  # a user function's values (tpkernel.nonlin): name the node
        raise type(err)(f"node {node.name!r} at width {net.width}: {err}") from None
    return np.broadcast_to(out, (net.width, env.N))


def _rule_lincomb(node: LinComb, net: "Network", env: "_Env") -> Array:
    out = None
    for a, c in zip(node.args, node.coeffs):
        x = env.values[a]
        if out is None:
            out = x * c if c != 1.0 else np.array(x, dtype=float)  # a fresh (n, N) array
        elif c == 1.0:
            out += x
        else:
            out += c * x
    if node.const:
        out += node.const
    return np.broadcast_to(out, (net.width, env.N)) if out.shape != (net.width, env.N) else out


def _rule_seed(node: Seed, net: "Network", env: "_Env") -> Array:
    r = net.program[node.readout]
    std = net.infos[r.vector or r.name].scale
    return (std * net.readout_vector(r))[:, None] * env.pool[None, :, node.index]


#: the finite-width interpretation: the (n, N) value of each vector on a batch
RULES = RuleTable("finite width", {
    Bias: _rule_bias, Embed: _rule_embed, MatMul: _rule_matmul, Nonlin: _rule_nonlin,
    LinComb: _rule_lincomb, Seed: _rule_seed,
}, exempt={Data: "bound to the batch", InputLayer: "a sampled parameter", Matrix: "a sampled parameter",
           Readout: "the output, computed by Network.evaluate from the pooled states"})


@dataclass
class _Env:
    data: dict[str, Array]
    pool: Array
    N: int
    values: dict[str, Array] = field(default_factory=dict)


# -------------------------------------------------------------------------------------
# the network
# -------------------------------------------------------------------------------------

class Network:
    """A program instantiated at width n: ``params`` maps each trained variable to its
    N(0, 1) draw (see :func:`param_infos` for the keys).  Build one with :func:`sample`.

    Methods: :meth:`evaluate` (forward, optionally backward, on a batch), :meth:`apply`
    (outputs), :meth:`vjp` (Σ_i g_i ∂f_i/∂p per parameter), :meth:`jacobian` (per-example
    ∂f_i/∂p), :meth:`kernels` (empirical NNGP and NTK), :meth:`copy`.
    """

    def __init__(self, program: Program, width: int, params: Mapping[str, Array] | None = None,
                 seed=0, input_dims: int | Mapping[str, int] | None = None) -> None:
        program.validate()
        if not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self.program = program
        self.width = int(width)
        self.infos = param_infos(program)
        self._base = _base_entropy(seed)
        self._backward: dict[str | None, Backward] = {}
        self.params: dict[str, Array] = {}
        self.masks: dict[str, Array] = {}  # pruned variables: boolean masks (True = kept)
        n = self.width
        unknown = sorted(set(params or ()) - set(self.infos))
        if unknown:
            raise ProgramError(f"params {unknown} are not trained variables of {program.name!r} "
                               f"(those are {sorted(self.infos)})")
        for key, info in self.infos.items():
            if params is not None and key in params:
                self.params[key] = np.array(params[key], dtype=float)
            elif info.kind == "input":
                continue  # drawn when its input dimension is known
            else:
                shape = {"matrix": (n, n), "bias": (n,), "readout": (n,), "readout_bias": ()}[info.kind]
                self.params[key] = _stream(self._base, key).standard_normal(shape)
            if info.mask is not None and key in self.params:
                self._apply_mask(key)
        if input_dims is not None:
            for layer in (p.name for p in program.of_type(InputLayer)):
                d = input_dims if isinstance(input_dims, (int, np.integer)) else input_dims.get(layer)
                if d is not None:
                    self._input_layer(layer, int(d))
        self._check_shapes()

    # -- parameters ------------------------------------------------------------------
    def _apply_mask(self, key: str) -> None:
        """Draw the Bernoulli(q) mask of a pruned variable (its own stream) and zero its pruned entries."""
        arr = self.params[key]
        mask = self.masks.get(key)
        if mask is None or mask.shape != arr.shape:
            q = self.infos[key].mask.q  # (uniforms on a 2^-24 grid: P(kept) = q to 6e-8)
            mask = self.masks[key] = _stream(self._base, key + "/mask").random(arr.shape, dtype=np.float32) < q
        arr *= mask

    def _input_layer(self, layer: str, d: int) -> Array:
        U = self.params.get(layer)
        if U is None:
            U = self.params[layer] = _stream(self._base, layer).standard_normal((self.width, d))
            if self.infos[layer].mask is not None:
                self._apply_mask(layer)
                U = self.params[layer]
        elif U.shape[1] != d:
            raise ShapeError(f"input layer {layer!r} was drawn for inputs of dimension {U.shape[1]}, "
                             f"but reads data of dimension {d}")
        return U

    def _check_shapes(self) -> None:
        n = self.width
        for key, arr in self.params.items():
            kind = self.infos[key].kind
            ok = {"matrix": arr.shape == (n, n), "bias": arr.shape == (n,), "readout": arr.shape == (n,),
                  "readout_bias": arr.shape == (), "input": arr.ndim == 2 and arr.shape[0] == n}[kind]
            if not ok:
                raise ShapeError(f"parameter {key!r} ({kind}) has shape {arr.shape} at width {n}")

    def readout_vector(self, r: Readout) -> Array:
        return self.params[r.vector or r.name]

    def copy(self) -> "Network":
        """An independent copy (parameters copied)."""
        new = Network.__new__(Network)
        new.__dict__.update(self.__dict__)
        new.params = {k: v.copy() for k, v in self.params.items()}
        new.masks = dict(self.masks)
        return new

    def backward_program(self, output: str | None = None) -> Backward:
        if output not in self._backward:
            self._backward[output] = backward(self.program, output)
        return self._backward[output]

    # -- passes ----------------------------------------------------------------------
    def evaluate(self, x, lengths=None, *, output: str | None = None, backward: bool = True) -> Evaluation:
        """Forward pass (and the backward program, if ``backward``) on a batch.

        ``x``: as for :func:`tpkernel.kernels` (an array (N, d), (N, T, d), a list of
        sequences of different lengths, or a dict data-name → array); ``lengths``:
        per-example lengths of (N, T, d) sequence data.
        """
        program = self.program
        r = pick_readout(program, output)
        bound = bind(program, x, lengths, "x")
        check_dims(program, [bound])
        c = pool(program, r, bound, max_steps(program))
        data = {k: v[0] for k, v in bound.items()}
        for e in program.of_type(Embed):
            self._input_layer(e.layer, data[e.data].shape[2])
        env = _Env(data, c, c.shape[0])
        bw = self.backward_program(output) if backward else None
        nodes = bw.program if bw is not None else program
        for node in nodes:
            if node.is_vector:
                env.values[node.name] = RULES.rule(node)(node, self, env)
        pooled = np.zeros((self.width, env.N))
        for k, a in enumerate(r.args):
            if c[:, k].any():
                pooled += env.values[a] * c[None, :, k]
        std_v = self.infos[r.vector or r.name].scale
        f = (std_v / math.sqrt(self.width)) * (self.readout_vector(r) @ pooled)
        if r.b_std is not None:
            f = f + r.b_std * self.params[readout_bias_key(r.name)]
        return Evaluation(self, r, data, c, env.values, pooled, f, bw)

    def apply(self, x, lengths=None, *, output: str | None = None) -> Array:
        """The outputs f(ξ_1), …, f(ξ_N) (N,)."""
        return self.evaluate(x, lengths, output=output, backward=False).f

    # -- derivatives -----------------------------------------------------------------
    def _uses(self, ev: Evaluation):
        """Per matrix or input layer, the (gradient dy, input z, transposed) of each use
        y = W z (or y = Wᵀ z: then ∂f/∂W gets z dyᵀ), as the backward program's terms
        record them; per bias, its gradient node."""
        bw = ev.backward
        out = {key: [(u.grad, u.input, u.transpose) for u in uses] for key, uses in bw.uses.items()}
        out.update({key: [bw.grads[key]] for key, info in self.infos.items()
                    if info.kind == "bias" and key in bw.grads})
        return out

    def vjp(self, x, cotangent=None, lengths=None, *, output: str | None = None,
            evaluation: Evaluation | None = None) -> dict[str, Array]:
        """Σ_i g_i ∂f(ξ_i)/∂p for every trained variable p (g = ``cotangent``, default ones):
        the gradient of Σ_i g_i f(ξ_i), from the backward program's values."""
        ev = evaluation or self.evaluate(x, lengths, output=output)
        g = np.ones(ev.N) if cotangent is None else np.asarray(cotangent, dtype=float)
        if g.shape != (ev.N,):
            raise ShapeError(f"cotangent must have shape ({ev.N},), got {g.shape}")
        n = self.width
        grads: dict[str, Array] = {}
        uses = self._uses(ev)
        r = ev.readout
        for key, info in self.infos.items():
            if info.kind in ("matrix", "input") and uses.get(key):
                if info.kind == "matrix":
                    scale = info.scale / n
                else:
                    scale = info.scale / math.sqrt(n * self.params[key].shape[1])
                # Σ_u (dy_u g) z_uᵀ (z_u (dy_u g)ᵀ for Wᵀ) as one matmul of the stacked uses,
                # the scale on the small factor
                left, right = [], []
                for dy, z, tr in uses[key]:
                    a = ev.values[dy] * (scale * g)
                    b = ev.values[z] if info.kind == "matrix" else ev.embed_data(z).T
                    left.append(b if tr else a)
                    right.append(a if tr else b)
                grads[key] = _hstack(left) @ _hstack(right).T
            elif info.kind == "bias" and key in uses:
                grads[key] = (info.std / math.sqrt(n)) * (ev.values[uses[key][0]] @ g)
        std_v = self.infos[r.vector or r.name].scale
        grads[r.vector or r.name] = (std_v / math.sqrt(n)) * (ev.pooled @ g)
        for key, mask in self.masks.items():  # pruned weights have no gradient
            if key in grads:
                grads[key] = np.where(mask, grads[key], 0.0)
        if r.b_std is not None:
            grads[readout_bias_key(r.name)] = np.asarray(r.b_std * g.sum())
        for key, v in self.params.items():  # variables f does not depend on (other readouts)
            if key not in grads:
                grads[key] = np.zeros_like(v)
        return grads

    def jacobian(self, x, lengths=None, *, output: str | None = None) -> dict[str, Array]:
        """Per-example derivatives ∂f(ξ_i)/∂p, arrays (N, *p.shape).  Memory N·n² per
        matrix: meant for small widths (tests, inspection)."""
        ev = self.evaluate(x, lengths, output=output)
        n, N = self.width, ev.N
        jac = {k: np.zeros((N,) + v.shape) for k, v in self.params.items()}
        uses = self._uses(ev)
        r = ev.readout
        for key, info in self.infos.items():
            if info.kind == "matrix":
                for dy, z, tr in uses[key]:
                    a, b = (ev.values[z], ev.values[dy]) if tr else (ev.values[dy], ev.values[z])
                    jac[key] += np.einsum("ai,bi->iab", a, b)
                jac[key] *= info.scale / n
            elif info.kind == "input":
                for dy, e, _ in uses[key]:
                    jac[key] += np.einsum("ai,ib->iab", ev.values[dy], ev.embed_data(e))
                jac[key] *= info.scale / math.sqrt(n * self.params[key].shape[1])
            elif info.kind == "bias" and key in uses:
                jac[key] = (info.std / math.sqrt(n)) * ev.values[uses[key][0]].T
        std_v = self.infos[r.vector or r.name].scale
        jac[r.vector or r.name] = (std_v / math.sqrt(n)) * ev.pooled.T
        if r.b_std is not None:
            jac[readout_bias_key(r.name)] = np.full(N, r.b_std)
        for key, mask in self.masks.items():  # pruned weights have no derivative
            jac[key] = np.where(mask[None], jac[key], 0.0)
        return jac

    # -- kernels ---------------------------------------------------------------------
    def kernels(self, x1, x2=None, get=("nngp", "ntk"), *, output: str | None = None,
                lengths1=None, lengths2=None):
        """The empirical NNGP and NTK of this network (see :func:`tpkernel.finite.empirical_kernels`)."""
        from .kernels import network_kernels
        return network_kernels(self, x1, x2, get, output=output, lengths1=lengths1, lengths2=lengths2)

    def __repr__(self) -> str:
        return f"<Network {self.program.name!r} at width {self.width}: {len(self.params)} parameters>"


def sample(program: Program, width: int, seed=0, *, input_dims: int | Mapping[str, int] | None = None,
           params: Mapping[str, Array] | None = None) -> Network:
    """Instantiate ``program`` at width ``width``: every trained variable drawn iid N(0, 1)
    (NTK parametrization), one draw per parameter node (weight sharing).

    ``seed``: a non-negative integer or a ``numpy.random.Generator`` (explicit randomness;
    a Generator is advanced once, to derive the parameters' streams).  ``input_dims``: the
    input dimension (one int, or per input layer) to draw input layers now; otherwise each
    is drawn on the first data it reads.  ``params``: explicit values for some or all
    variables (keys as in :func:`param_infos`), e.g. to load a trained network.
    """
    return Network(program, width, params=params, seed=seed, input_dims=input_dims)
