"""No depth or length limits from Python's recursion (issue 13, item 8), and validation in
linear time, once per program (item 9).

The evaluator (tpkernel.limit.theorem) runs its rules on an explicit stack; the structure of
a program, the formulas, the listing's variable types and the drawing are computed in
program order.  Before the redesign an RNN of T ≈ 60 steps, a reference-engine MLP of depth
~70, a resnet of 100 blocks and formulas of depth ~100 died with RecursionError.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

import tpkernel as tp


def rnn(T: int, pool: str = "last") -> tp.Program:
    p = tp.Program(f"rnn{T}")
    x = p.data("x", length=T)
    U, W, b = p.input_layer("U"), p.matrix("W"), p.bias("b", std=0.1)
    s = tp.erf(U @ x[0] + b)
    states = [s]
    for t in range(1, T):
        s = tp.erf(W @ s + U @ x[t] + b)
        states.append(s)
    p.output(states, pool=pool)
    return p


def mlp(L: int) -> tp.Program:
    p = tp.Program(f"mlp{L}")
    x = p.data("xi")
    h = tp.relu(p.input_layer("U", std=1.4) @ x)
    for layer in range(L):
        h = tp.relu(p.matrix(f"W{layer}", std=1.4) @ h)
    p.output(h)
    return p


@pytest.fixture(autouse=True)
def low_recursion_limit():
    """Run with Python's default recursion limit, whatever the test runner set."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(old)


def test_mlp_of_depth_1000_reference_engine_formulas_listing_drawing():
    p = mlp(1000)
    x = np.random.default_rng(0).standard_normal((3, 4))
    K = tp.kernels(p, x, engine="reference")
    Kf = tp.kernels(p, x)  # the fused path
    assert np.allclose(K.ntk, Kf.ntk, rtol=1e-10, atol=0) and np.allclose(K.nngp, Kf.nngp, rtol=1e-10, atol=0)
    F = tp.formulas(p)
    assert len(F.equations) > 2000
    q = tp.parse(p.listing())
    assert len(q) == len(p)
    assert tp.listing.render(p, "unicode").count(":=") > 2000
    assert tp.draw(p).source.count("matmul") >= 1000


def test_resnet_of_100_blocks():
    p = tp.examples.resnet(blocks=100)
    x = tp.examples.sample_data(p, n=3)
    K = tp.kernels(p, x, engine="reference")
    assert np.all(np.isfinite(K.ntk)) and np.allclose(K.ntk, K.ntk.T)
    assert np.allclose(tp.formulas(p).evaluate(x).ntk, K.ntk, rtol=1e-10, atol=0)


def test_rnn_of_150_steps_kernels_formulas_drawing():
    """Long sequences: the kernels, the formulas and the drawing (T = 1000 is measured in the
    slow test below and in the closing note: time grows as T², the number of time-step pairs)."""
    T = 150
    p = rnn(T)
    X = np.random.default_rng(1).standard_normal((3, T, 2))
    K = tp.kernels(p, X)
    assert np.all(np.isfinite(K.ntk)) and np.allclose(K.ntk, K.ntk.T, rtol=1e-12)
    F = tp.formulas(rnn(60))
    assert len(F.equations) > 60
    assert tp.draw(p).source.count("matmul") >= T - 1


@pytest.mark.slow
def test_rnn_of_1000_steps():
    T = 1000
    p = rnn(T)
    X = np.random.default_rng(2).standard_normal((2, T, 2))
    K = tp.kernels(p, X)
    assert np.all(np.isfinite(K.ntk)) and np.allclose(K.ntk, K.ntk.T, rtol=1e-12)


def test_validation_once_and_linear():
    """Validation is one pass over the nodes (the consumers are an index kept by add), and a
    validated program is not validated again until a node is added."""
    p = mlp(2000)
    calls = {"n": 0}
    consumers = p._consumers

    class Counting(dict):
        def __getitem__(self, key):
            calls["n"] += 1
            return dict.__getitem__(self, key)

    p._consumers = Counting(consumers)
    p.validate()
    assert calls["n"] <= len(p)  # one lookup per node
    calls["n"] = 0
    p.validate()
    p.validate()
    assert calls["n"] == 0  # cached


def test_parse_a_10000_line_listing():
    p = mlp(3334)  # 3 lines a layer: 10 000 lines
    text = p.listing()
    assert text.count("\n") >= 10_000
    t0 = time.perf_counter()
    q = tp.parse(text)
    elapsed = time.perf_counter() - t0
    assert len(q) == len(p)
    print(f"parsed {text.count(chr(10))} lines in {elapsed:.2f} s")
