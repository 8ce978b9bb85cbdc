"""The rule tables (tpkernel.rules): every interpretation covers every node class, an
unknown node kind is a specific error naming the node and the interpretation, and a new
node kind is added by registering one rule per table — checked here with a toy kind, the
scaled copy y = c·x, through every interpretation (limit, finite width against autograd,
formulas, listing round trip, drawing, pruning)."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import tpkernel as tp
from tpkernel import data, ir, listing, rules
from tpkernel.backward import VJP
from tpkernel.builder import Vec, materialize
from tpkernel.draw import DRAWING
from tpkernel.errors import MissingRuleError
from tpkernel.finite import network
from tpkernel.limit.theorem import LIMIT, Linear
from tpkernel.pruning.scaling import AMPLITUDES


def test_every_table_covers_every_node_class():
    tables = rules.tables()
    assert {"validation", "backward", "limit", "finite width", "listing", "algorithm style", "drawing",
            "pruning", "steps"} <= set(tables)
    assert list(rules.uncovered()) == []


@dataclass(frozen=True)
class Mystery(ir.Node):
    """A node kind no interpretation knows."""

    arg: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.arg,)


@pytest.mark.parametrize("name", sorted(rules.tables()))
def test_unknown_node_kind_names_node_and_interpretation(name):
    table = rules.tables()[name]
    with pytest.raises(MissingRuleError) as err:
        table.rule(Mystery("m7", "x"))
    assert "'m7'" in str(err.value) and name in str(err.value) and "Mystery" in str(err.value)


def test_unknown_node_kind_refused_when_added():
    p = tp.Program("p")
    x = p.data("xi")
    U = p.input_layer("U")
    h = U @ x
    with pytest.raises(MissingRuleError, match="'m1'.*validation"):
        p.add(Mystery("m1", materialize(p, h)))


# -- a toy node kind: y = c·x -------------------------------------------------------------

@dataclass(frozen=True)
class Scaled(ir.Node):
    """y = c·x, a scaled copy (a linear node)."""

    arg: str
    c: float

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.arg,)


def _check_scaled(p, node):
    if not p[node.arg].is_vector:
        raise tp.ProgramError(f"{node.name}: {node.arg!r} is not a vector")


def _register_scaled():
    """One rule per table: everything it takes to add the node kind."""
    ir.register_node_class(Scaled)
    ir.CHECKS.register(Scaled, _check_scaled)
    LIMIT.register(Scaled, Linear(lambda n: ((n.arg, n.c),)))
    VJP.register(Scaled, lambda g, u, x: [(g.grads[u.name], u.c)] if u.name in g.grads else [])
    network.RULES.register(Scaled, lambda n, net, env: n.c * env.values[n.arg])
    data.STEPS.register(Scaled, lambda n, out: out[n.arg])
    listing.PRINTERS.register(Scaled, lambda n: f"{n.name} = scaled[{n.c!r}]({n.arg})")
    listing.CALLS["scaled"] = lambda name, params, args: Scaled(name, args[0], params[0])
    listing.ALGORITHM.register(Scaled, lambda n, P, tex: f"{n.c!r}·{P(n.arg)}")
    DRAWING.register(Scaled, lambda d, n: d._gate(n, f"{n.c:g}·", [n.arg]))
    AMPLITUDES.register(Scaled, lambda amp, prog, n: amp.get(n.arg))


@pytest.fixture
def scaled_kind():
    _register_scaled()
    yield Scaled
    for table in rules.tables().values():
        table.rules.pop(Scaled, None)
    listing.CALLS.pop("scaled")
    ir.NODE_CLASSES = tuple(c for c in ir.NODE_CLASSES if c is not Scaled)


def _program(kind: str) -> tp.Program:
    """A residual erf net whose skip path is scaled by 0.7: by the toy node or a LinComb."""
    p = tp.Program("toy")
    x = p.data("xi")
    U = p.input_layer("U", std=1.2)
    W = p.matrix("W", std=1.4)
    b = p.bias("b", std=0.3)
    h = tp.erf(U @ x + b)
    if kind == "scaled":
        skip = Vec(p, p.add(Scaled("s1", materialize(p, h), 0.7)).name)
    else:
        skip = 0.7 * h
    y = tp.relu(W @ skip + b) + skip
    p.output(y, std=0.9, b_std=0.2)
    return p


def test_scaled_node_kind_everywhere(scaled_kind):
    lines = len(inspect.getsource(_register_scaled).splitlines()) - 2  # without the def line and docstring
    assert lines == 11
    p, ref = _program("scaled"), _program("lincomb")
    x = tp.examples.sample_data(p, n=5, d=3, seed=2)
    # limit: the same kernels as the program written with a LinComb
    K, Kref = tp.kernels(p, x), tp.kernels(ref, x)
    for k in ("nngp", "ntk"):
        assert np.allclose(getattr(K, k), getattr(Kref, k), rtol=1e-14, atol=0)
    # formulas: the same rules on sympy, evaluated
    F = tp.formulas(p)
    Kf = F.evaluate(x)
    assert np.allclose(Kf.ntk, K.ntk, rtol=1e-12, atol=0) and np.allclose(Kf.nngp, K.nngp, rtol=1e-12, atol=0)
    # listing: round trip to the same nodes and kernels
    text = p.listing()
    assert "s1 = scaled[0.7](x" in text
    q = tp.parse(text)
    assert [type(n) for n in q] == [type(n) for n in p] and q["s1"] == p["s1"]
    assert np.array_equal(tp.kernels(q, x).ntk, K.ntk)
    assert "0.7·" in listing.render(p, "unicode")
    # drawing: forward and backward
    g = tp.draw(p, backward=True)
    assert "0.7·" in g.source
    # finite width: the same network sampled, its empirical NTK against autograd
    torch = pytest.importorskip("torch")
    from torch_interpreter import EXTRA_FORWARD, FiniteNet
    EXTRA_FORWARD[Scaled] = lambda n, vals, N, width: n.c * vals[n.arg]
    try:
        net = tp.finite.sample(p, 48, seed=3, input_dims=3)
        Ke = tp.finite.empirical_kernels(p, x, network=net)
        tnet = FiniteNet(p, x, 48, params=net.params)
        _, J, _ = tnet.jacobians()
        ntk_t = tnet.ntk_from(J)
        assert np.max(np.abs(Ke.ntk - ntk_t)) / np.max(np.abs(ntk_t)) < 1e-10
    finally:
        EXTRA_FORWARD.pop(Scaled)
    assert torch is not None
    # and it converges to the limit as the width grows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        errs = [np.linalg.norm(np.mean([tp.finite.empirical_kernels(p, x, width=w, seed=s).ntk
                                        for s in range(4)], axis=0) - K.ntk) for w in (64, 1024)]
    assert errs[1] < errs[0] / 2
    # pruning: the amplitude rule carries the structural analysis through the toy node; it
    # decides as for the LinComb program (the skip sum mixes q_W-scaled and unscaled vectors)
    got = tp.pruning.extra_scaling(tp.pruning.prune(p, p=0.5, where="hidden"), x)
    want = tp.pruning.extra_scaling(tp.pruning.prune(ref, p=0.5, where="hidden"), x)
    assert (got.constant, len(got.reasons)) == (want.constant, len(want.reasons)) == (False, 1)
    assert "q_W" in got.reasons[0]
    assert np.allclose(got.checked["ntk"], want.checked["ntk"], rtol=1e-13)
