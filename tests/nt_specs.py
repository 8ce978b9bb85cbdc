"""Rebuild the networks of tests/data/nt_reference.json as tpkernel programs.

The JSON (made by tests/reference/make_nt_reference.py with neural-tangents) describes
each network as a list of layers ``[kind, params]``; this module writes the same network
with the builder, independently of tpkernel.stax.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import tpkernel as tp

REFERENCE = Path(__file__).parent / "data" / "nt_reference.json"


def load():
    return json.loads(REFERENCE.read_text())


def _elementwise(kind: str, a: dict, h):
    if kind == "Relu":
        return tp.relu(h)
    if kind == "Erf":
        return a["a"] * tp.erf(a["b"] * h) + a["c"]
    if kind == "Gelu":
        return tp.gelu(h)
    if kind in ("Sin", "Cos"):
        shift = a["c"] + (math.pi / 2 if kind == "Cos" else 0.0)
        return a["a"] * tp.apply(tp.nonlin.get("sin", shift), a["b"] * h)
    if kind == "ABRelu":
        return tp.abrelu(h, a["a"], a["b"])
    if kind == "LeakyRelu":
        return tp.leaky_relu(h, a["alpha"])
    if kind == "Abs":
        return tp.abs(h)
    if kind == "Sigmoid_like":
        return 0.5 * tp.erf(h / 2.4020563531719796) + 0.5
    if kind == "Exp":
        return a["a"] * tp.exp(a["b"] * h)
    if kind == "Gaussian":
        return tp.gaussian(h, a["a"], a["b"])
    if kind == "Identity":
        return h
    if kind == "ElementwiseNumerical":
        assert a["fn"] == "tanh"
        return tp.tanh(h)
    raise KeyError(kind)


def build(spec: list, name: str = "net") -> tp.Program:
    p = tp.Program(name)
    xi = p.data("xi")
    state = {"h": None, "k": 0}

    def run(layers, h, last_is_output):
        for i, (kind, a) in enumerate(layers):
            if kind == "Dense":
                if last_is_output and i == len(layers) - 1:
                    return ("out", h, a)
                state["k"] += 1
                k = state["k"]
                h = (p.input_layer(f"U{k}", a["W_std"]) @ xi) if h is None else (p.matrix(f"W{k}", a["W_std"]) @ h)
                if a.get("b_std") is not None:
                    h = h + p.bias(f"b{k}", a["b_std"])
            elif kind == "Residual":
                h = h + run(a["branch"], h, False)
            else:
                h = _elementwise(kind, a, h)
        return h

    _, h, a = run(spec, None, True)
    p.output(h, std=a["W_std"], b_std=a.get("b_std"), name="f")
    return p
