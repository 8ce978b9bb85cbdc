"""The engine reproduces the kernels pinned from the release before the rule-table redesign
(tests/reference/make_pinned_kernels.py): built-in examples, the neural-tangents reference
networks and random property-test programs (feed-forward and ragged sequences), with the
fused and the general engine, to 1e-15 relative (max |ΔK| / max |K|)."""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "reference"))

from make_pinned_kernels import OUT, program  # noqa: E402

import tpkernel as tp  # noqa: E402

ROWS = pickle.loads(OUT.read_bytes())


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['label']}-{r['engine']}" for r in ROWS])
def test_pinned_kernels(row):
    p = program(row["kind"], row["spec"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        K = tp.kernels(p, row["data"], engine=row["engine"])
    for name in ("nngp", "ntk"):
        ref, got = row[name], getattr(K, name)
        scale = max(float(np.max(np.abs(ref))), 1e-300)
        assert np.max(np.abs(got - ref)) / scale <= 1e-15, f"{row['label']} {name}"
