"""A finite-width PyTorch interpreter of tpkernel programs.

This module is an *independent* implementation of what a :class:`tpkernel.Program`
means at finite width n.  It reads only the program IR (``tpkernel.ir`` node classes and
the ``name``/``params`` of each nonlinearity); it does not use ``tpkernel.limit``,
``tpkernel.backward`` or the numpy maps of ``tpkernel.nonlin``.

Conventions (NTK parametrisation, the ones the README states):

* InputLayer U ∈ R^{n×d}, U_ij ~ N(0, 1): ``Embed`` is σ_U U ξ_t / √d (step None = step 0);
* Matrix W ∈ R^{n×n}, W_ij ~ N(0, 1): ``MatMul`` is σ_W W x / √n, or σ_W Wᵀ x / √n;
* Bias β ∈ R^n, β_i ~ N(0, 1): the vector σ_b β;
* Readout f = σ_v vᵀ x̄ / √n (+ σ_o β_o), x̄ the pooled input (own last step / own mean);
* the trained variables are the N(0, 1) tensors (U, W, β, v, β_o); the empirical NTK is
  Σ_p lr_p J_p J_pᵀ with J_p = ∂f/∂p computed by ``torch.autograd``.

They are keyed as ``tpkernel.finite.Network.params`` documents them (parameter nodes by
name, the readout's own vector by the readout's name, its output bias by ``NAME/bias``),
so that a network sampled by tpkernel can be run here on the *same* values (``params=``).

All tensors are float64.  Every vector of width n is stored as an (N, n) tensor, one row
per example, so one forward pass computes f(ξ_1), …, f(ξ_N).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch

from tpkernel.ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Nonlin, Readout

DTYPE = torch.float64

#: node kinds added by extensions (tests of the rule tables): class → (node, values, N, n) → tensor
EXTRA_FORWARD: dict[type, Callable] = {}

# ---------------------------------------------------------------------------------
# nonlinearities, written from their definitions (not from tpkernel.nonlin's maps)
# ---------------------------------------------------------------------------------


def _abrelu(a: float, b: float) -> Callable:
    return lambda x: a * torch.clamp(x, max=0.0) + b * torch.clamp(x, min=0.0)


def _prod(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


_BUILTIN: dict[str, Callable[..., Callable]] = {
    "abrelu": _abrelu,
    "erf": lambda: torch.special.erf,
    "sin": lambda c: (lambda x: torch.sin(x + c)),
    "exp": lambda: torch.exp,
    "gelu": lambda: (lambda x: x * 0.5 * (1.0 + torch.special.erf(x / math.sqrt(2.0)))),
    "tanh": lambda: torch.tanh,
    "sigmoid": lambda: torch.sigmoid,
    "gauss": lambda a, b: (lambda x: a * torch.exp(b * x * x)),
    "power": lambda k: (lambda x: x ** int(k)),
    "prod": lambda: _prod,
    "softplus": lambda: (lambda x: torch.logaddexp(torch.zeros_like(x), x)),
    "swish": lambda: (lambda x: x * torch.sigmoid(x)),
}


def torch_nonlin(fn, user_fns: Mapping[str, Callable] | None = None) -> Callable:
    """A torch function for a :class:`tpkernel.nonlin.Nonlinearity`, by family name and
    parameters; user nonlinearities are looked up by name in ``user_fns``."""
    name, params = fn.name, tuple(fn.params)
    if user_fns and name in user_fns:
        return user_fns[name]
    if name not in _BUILTIN:
        raise NotImplementedError(f"no torch version of nonlinearity {name!r} (params {params})")
    return _BUILTIN[name](*params)


# ---------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------


def _as_padded(x, length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(N, T, d) array padded with zeros, and the per-example lengths."""
    if length is None:
        arr = np.asarray(x, dtype=np.float64)
        assert arr.ndim == 2, arr.shape
        return arr[:, None, :], np.ones(arr.shape[0], dtype=int)
    if isinstance(x, (list, tuple)):
        seqs = [np.asarray(s, dtype=np.float64) for s in x]
        lens = np.array([s.shape[0] for s in seqs])
        assert lens.max() <= length and lens.min() >= 1
        arr = np.zeros((len(seqs), length, seqs[0].shape[1]))
        for i, s in enumerate(seqs):
            arr[i, :len(s)] = s
        return arr, lens
    arr = np.asarray(x, dtype=np.float64)
    assert arr.ndim == 3 and arr.shape[1] == length, arr.shape
    return arr, np.full(arr.shape[0], length)


def bind(program, X) -> tuple[dict[str, torch.Tensor], np.ndarray | None, int]:
    """Data tensors by data-node name, the sequence lengths (N,) (None without sequence
    data), and N."""
    datas = [n for n in program.nodes if isinstance(n, Data)]
    xs = dict(X) if isinstance(X, Mapping) else {datas[0].name: X}
    assert set(xs) == {d.name for d in datas}
    out, lens = {}, None
    for d in datas:
        arr, ls = _as_padded(xs[d.name], d.length)
        out[d.name] = torch.tensor(arr, dtype=DTYPE)
        if d.length is not None:
            assert lens is None, "one sequence data node only"
            lens = ls
    N = next(iter(out.values())).shape[0]
    return out, lens, N


def pool_weights(r: Readout, lens: np.ndarray | None, N: int) -> torch.Tensor:
    """(N, K) weights of the K readout arguments for each example (an example of length
    L reads its own step L-1, or averages its steps 0..L-1; no sequence data: L = K)."""
    K = len(r.args)
    if lens is None:
        lens = np.full(N, K)
    c = np.zeros((N, K))
    if r.pool is None:
        c[:, 0] = 1.0
    elif r.pool == "last":
        c[np.arange(N), lens - 1] = 1.0
    elif r.pool == "mean":
        for i, L in enumerate(lens):
            c[i, :L] = 1.0 / L
    else:
        raise ValueError(r.pool)
    return torch.tensor(c, dtype=DTYPE)


# ---------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------


class FiniteNet:
    """One random draw of the width-n network of ``program`` on the data X."""

    def __init__(self, program, X, n: int, generator: torch.Generator | None = None,
                 user_fns: Mapping[str, Callable] | None = None, output: str | None = None,
                 params: Mapping[str, np.ndarray] | None = None) -> None:
        """Parameters drawn from ``generator``, or taken from ``params`` (every trained
        variable, e.g. ``tpkernel.finite.Network.params``)."""
        self.p = program
        self.n = n
        self.data, self.lens, self.N = bind(program, X)
        readouts = [r for r in program.nodes if isinstance(r, Readout)]
        self.r = next(r for r in readouts if r.name == output) if output else readouts[0]
        assert output or len(readouts) == 1
        self.fns = {node.name: torch_nonlin(node.fn, user_fns)
                    for node in program.nodes if isinstance(node, Nonlin)}
        # dimension of each input layer, from the data it is applied to
        dims = {}
        for node in program.nodes:
            if isinstance(node, Embed):
                dims[node.layer] = self.data[node.data].shape[2]

        # parameters: the N(0, 1) variables, in program order, then the readout's
        shapes: dict[str, tuple[int, ...]] = {}
        self.lr: dict[str, float] = {}
        self.std: dict[str, float] = {}
        for node in program.nodes:
            if isinstance(node, InputLayer):
                shapes[node.name] = (n, dims[node.name])
            elif isinstance(node, Matrix):
                shapes[node.name] = (n, n)
            elif isinstance(node, Bias):
                shapes[node.name] = (n,)
            else:
                continue
            self.lr[node.name], self.std[node.name] = node.lr, node.std
        r = self.r
        self.v_key = r.vector or r.name  # v of the readout itself, or a named Bias
        if r.vector is None:
            shapes[r.name] = (n,)
            self.lr[r.name], self.std[r.name] = r.lr, r.std
        self.bo_key = r.name + "/bias"
        if r.b_std is not None:
            shapes[self.bo_key] = ()
            self.lr[self.bo_key], self.std[self.bo_key] = r.b_lr, r.b_std
        if params is None:
            self.params = {k: torch.randn(s, generator=generator, dtype=DTYPE) for k, s in shapes.items()}
        else:
            self.params = {k: torch.tensor(np.asarray(params[k], dtype=np.float64).reshape(s)) for k, s in shapes.items()}
        self.c = pool_weights(r, self.lens, self.N)

    # -- forward -------------------------------------------------------------------
    def forward(self, params: Mapping[str, torch.Tensor] | None = None):
        """(f, pooled): the outputs (N,) and the readout's pooled input (N, n)."""
        P = self.params if params is None else params
        n, std = self.n, self.std
        vals: dict[str, torch.Tensor] = {}
        for node in self.p.nodes:
            if isinstance(node, (Data, InputLayer, Matrix)):
                continue
            if isinstance(node, Bias):
                vals[node.name] = (std[node.name] * P[node.name]).expand(self.N, n)
            elif isinstance(node, Embed):
                xi = self.data[node.data][:, 0 if node.step is None else node.step, :]  # (N, d)
                U = P[node.layer]
                vals[node.name] = std[node.layer] * xi @ U.T / math.sqrt(U.shape[1])
            elif isinstance(node, MatMul):
                W, x = P[node.matrix], vals[node.arg]
                # rows are examples: (W x)ᵀ = xᵀ Wᵀ,  (Wᵀ x)ᵀ = xᵀ W
                y = x @ W if node.transpose else x @ W.T
                vals[node.name] = std[node.matrix] * y / math.sqrt(n)
            elif isinstance(node, Nonlin):
                vals[node.name] = self.fns[node.name](*(vals[a] for a in node.args))
            elif isinstance(node, LinComb):
                out = node.const + sum(c * vals[a] for a, c in zip(node.args, node.coeffs))
                vals[node.name] = out if torch.is_tensor(out) else torch.full((self.N, n), out, dtype=DTYPE)
            elif isinstance(node, Readout):
                continue  # handled below (only the chosen readout)
            elif type(node) in EXTRA_FORWARD:
                vals[node.name] = EXTRA_FORWARD[type(node)](node, vals, self.N, n)
            else:
                raise NotImplementedError(f"node kind {type(node).__name__} in a forward program")
        r = self.r
        pooled = sum(self.c[:, k:k + 1] * vals[a] for k, a in enumerate(r.args))
        v, std_v = P[self.v_key], std[self.v_key]
        f = std_v * pooled @ v / math.sqrt(n)
        if r.b_std is not None:
            f = f + r.b_std * P[self.bo_key]
        return f, pooled

    # -- empirical kernels -----------------------------------------------------------
    def _nngp_from(self, pooled: torch.Tensor) -> np.ndarray:
        r = self.r
        K = self.std[self.v_key] ** 2 * pooled @ pooled.T / self.n
        if r.b_std is not None:
            K = K + r.b_std ** 2
        return K.numpy()

    def nngp(self) -> np.ndarray:
        """σ_v² x̄ x̄ᵀ / n (+ σ_o²), x̄ the pooled readout input (N, n)."""
        with torch.no_grad():
            _, pooled = self.forward()
        return self._nngp_from(pooled)

    def jacobians(self) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """(f, {p: J_p}, NNGP): the outputs (N,), the per-parameter Jacobians J_p = ∂f/∂p
        (N × size of p, by reverse-mode autodiff: one backward pass per output, batched with
        ``is_grads_batched`` over the N outputs) and the NNGP, from one forward pass."""
        names = list(self.params)
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in self.params.items()}
        f, pooled = self.forward(leaves)
        eye = torch.eye(self.N, dtype=DTYPE)
        grads = torch.autograd.grad(f, [leaves[k] for k in names], grad_outputs=eye,
                                    is_grads_batched=True, allow_unused=True)
        J = {k: (torch.zeros((self.N, leaves[k].numel()), dtype=DTYPE) if g is None else g.reshape(self.N, -1))
             for k, g in zip(names, grads)}  # row i: ∂f(ξ_i)/∂p
        return f.detach().numpy(), {k: j.numpy() for k, j in J.items()}, self._nngp_from(pooled.detach())

    def ntk_from(self, J: Mapping[str, np.ndarray]) -> np.ndarray:
        """Σ_p lr_p J_p J_pᵀ for per-parameter Jacobians J (as :meth:`jacobians` returns them)."""
        return sum(self.lr[k] * j @ j.T for k, j in J.items())

    def kernels(self) -> tuple[np.ndarray, np.ndarray]:
        """(NNGP, NTK): NTK = Σ_p lr_p J_p J_pᵀ."""
        _, J, nngp = self.jacobians()
        return nngp, self.ntk_from(J)

    def ntk(self) -> np.ndarray:
        return self.kernels()[1]


def empirical_kernels(program, X, n: int, seeds, user_fns=None) -> tuple[np.ndarray, np.ndarray]:
    """(NNGP, NTK) of width-n networks, one network per seed: arrays (S, N, N)."""
    nngps, ntks = [], []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        nngp, ntk = FiniteNet(program, X, n, g, user_fns).kernels()
        nngps.append(nngp)
        ntks.append(ntk)
    return np.stack(nngps), np.stack(ntks)
