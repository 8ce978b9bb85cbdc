"""Built-in example programs.

Each function returns a fresh :class:`~tpkernel.ir.Program`.  ``phi`` is the name of a
nonlinearity in :data:`NONLINEARITIES` (or a builder function such as ``tp.tanh``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import builder as B
from .errors import ProgramError
from .builder import Program

NONLINEARITIES: dict[str, Callable] = {
    "relu": B.relu, "erf": B.erf, "tanh": B.tanh, "gelu": B.gelu, "sin": B.sin, "cos": B.cos,
    "exp": B.exp, "sigmoid": B.sigmoid, "softplus": B.softplus, "swish": B.swish, "abs": B.abs,
    "leaky_relu": B.leaky_relu, "identity": lambda x, name=None: x,
}


def _phi(phi: str | Callable) -> Callable:
    if callable(phi):
        return phi
    try:
        return NONLINEARITIES[phi]
    except KeyError:
        raise ProgramError(f"unknown nonlinearity {phi!r} for an example; "
                           f"choose from {sorted(NONLINEARITIES)}") from None


def mlp(depth: int = 2, phi: str | Callable = "relu", w_std: float = 1.5, b_std: float | None = 0.1,
        v_std: float | None = None) -> Program:
    """A fully connected network: ``depth`` hidden layers ``x^l = φ(W^l x^{l-1} + b^l)``,
    the first one ``φ(U ξ + b^1)``, and the readout ``vᵀ x^L / √n`` (+ a readout bias).

    Identical to ``stax.serial([Dense(n, w_std, b_std), φ] * depth, Dense(1, w_std, b_std))``.
    """
    if depth < 1:
        raise ProgramError(f"mlp: depth must be >= 1, got {depth}")
    f = _phi(phi)
    p = Program(f"mlp{depth}")
    xi = p.data("xi")
    x = None
    for l in range(1, depth + 1):
        h = (p.input_layer("U", w_std) @ xi) if l == 1 else (p.matrix(f"W{l}", w_std) @ x)
        if b_std is not None:
            h = h + p.bias(f"b{l}", b_std)
        x = f(h, name=f"x{l}")
    p.output(x, std=w_std if v_std is None else v_std, b_std=b_std, name="f")
    return p


def resnet(blocks: int = 2, phi: str | Callable = "relu", w_std: float = 1.0, b_std: float | None = 0.1,
           branch_std: float = 1.0) -> Program:
    """A residual MLP: ``x^0 = U ξ + b``, blocks ``x^{l} = x^{l-1} + W^l_2 φ(W^l_1 φ(x^{l-1}) + b^l)``
    (pre-activation residual blocks), readout ``vᵀ φ(x^L) / √n``."""
    f = _phi(phi)
    p = Program(f"resnet{blocks}")
    xi = p.data("xi")
    x = p.input_layer("U", w_std) @ xi
    if b_std is not None:
        x = x + p.bias("b0", b_std)
    for l in range(1, blocks + 1):
        h = p.matrix(f"W{l}a", w_std) @ f(x)
        if b_std is not None:
            h = h + p.bias(f"b{l}", b_std)
        x = x + p.matrix(f"W{l}b", branch_std) @ f(h)
    p.output(f(x, name="out"), std=w_std, b_std=b_std, name="f")
    return p


def rnn(T: int = 3, phi: str | Callable = "erf", readout: str = "last", w_std: float = 1.0,
        u_std: float = 1.0, b_std: float | None = None, v_std: float = 1.0) -> Program:
    """The simple RNN of Tensor Programs II §3.2: ``s^1 = φ(U ξ^1 + b)``,
    ``s^t = φ(W s^{t-1} + U ξ^t + b)``, one shared W, U and b, readout of the last state
    (``readout="last"``: each sequence's own last step) or the average over the states
    (``readout="mean"``)."""
    if readout not in ("last", "mean"):
        raise ProgramError(f"rnn: readout must be 'last' or 'mean', got {readout!r}")
    f = _phi(phi)
    p = Program(f"rnn{T}")
    x = p.data("xi", length=T)
    U = p.input_layer("U", u_std)
    W = p.matrix("W", w_std)
    b = p.bias("b", b_std) if b_std is not None else None
    states = []
    s = None
    for t in range(T):
        h = U @ x[t] if s is None else W @ s + U @ x[t]
        if b is not None:
            h = h + b
        s = f(h, name=f"s{t + 1}")
        states.append(s)
    p.output(states, std=v_std, pool=readout, name="f")
    return p


def gated(T: int = 3, w_std: float = 1.0, u_std: float = 1.0, b_std: float | None = 0.2,
          v_std: float = 1.0) -> Program:
    """A gated recurrent cell (GRU-like): the state update multiplies an update gate and a
    candidate, ``s^t = σ(W_z s^{t-1} + U_z ξ^t + b_z) ⊙ tanh(W_h s^{t-1} + U_h ξ^t + b_h)``,
    readout of each sequence's own last state."""
    p = Program(f"gated{T}")
    x = p.data("xi", length=T)
    Uz, Uh = p.input_layer("Uz", u_std), p.input_layer("Uh", u_std)
    Wz, Wh = p.matrix("Wz", w_std), p.matrix("Wh", w_std)
    bz = p.bias("bz", b_std) if b_std is not None else None
    bh = p.bias("bh", b_std) if b_std is not None else None
    states = []
    s = None
    for t in range(T):
        hz = Uz @ x[t] if s is None else Wz @ s + Uz @ x[t]
        hh = Uh @ x[t] if s is None else Wh @ s + Uh @ x[t]
        if bz is not None:
            hz, hh = hz + bz, hh + bh
        s = B.apply(B.nl.product(2), B.sigmoid(hz, name=f"z{t + 1}"), B.tanh(hh, name=f"c{t + 1}"),
                    name=f"s{t + 1}")
        states.append(s)
    p.output(states, std=v_std, pool="last", name="f")
    return p


EXAMPLES: dict[str, Callable[[], Program]] = {
    "mlp": lambda: mlp(2, "relu"),
    "mlp-erf": lambda: mlp(2, "erf"),
    "resnet": lambda: resnet(2),
    "rnn": lambda: rnn(3, "erf", "last"),
    "rnn-mean": lambda: rnn(3, "erf", "mean"),
    "gated": lambda: gated(3),
}


def get(name: str) -> Program:
    """A built-in example by name (see :data:`EXAMPLES`)."""
    try:
        return EXAMPLES[name]()
    except KeyError:
        raise ProgramError(f"unknown example {name!r}; choose from {', '.join(EXAMPLES)}") from None


def sample_data(program: Program, n: int = 4, d: int = 3, seed: int = 0):
    """A small data set that fits ``program``: unit-norm inputs, and for sequence data
    sequences of different lengths (returned as a list)."""
    from .ir import Data
    rng = np.random.default_rng(seed)
    datas = program.of_type(Data)
    out = {}
    for node in datas:
        if node.length is None:
            x = rng.standard_normal((n, d))
            out[node.name] = x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(d)
        else:
            lens = [node.length - (i % min(node.length, 2)) for i in range(n)]
            out[node.name] = [rng.standard_normal((L, d)) for L in lens]
    return out if len(out) != 1 else next(iter(out.values()))
