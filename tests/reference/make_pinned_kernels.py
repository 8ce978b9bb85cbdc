"""Pin the kernels of the built-in examples, the neural-tangents reference networks and
random property-test programs (tests/data/pinned_kernels.pkl), so that a redesign of the
engine can be checked to reproduce them (tests/test_pinned.py, ≤ 1e-15 relative).

Run from the checkout whose kernels are to be pinned: ``python tests/reference/make_pinned_kernels.py``.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
from hypothesis import given, settings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import tpkernel as tp  # noqa: E402
from nt_specs import build as nt_build, load as nt_load  # noqa: E402
from strategies import build, inputs, recipes, sequences  # noqa: E402

OUT = HERE.parent / "data" / "pinned_kernels.pkl"


def collect(strategy, n: int) -> list:
    out = []

    @settings(derandomize=True, max_examples=n, database=None, deadline=None)
    @given(strategy)
    def run(r):
        out.append(r)

    run()
    return out


def cases():
    """(label, kind, spec, data) for every pinned case; ``spec`` rebuilds the program."""
    for name in tp.examples.EXAMPLES:
        p = tp.examples.get(name)
        yield f"example:{name}", "example", name, tp.examples.sample_data(p)
    ref = nt_load()
    for key, case in ref["cases"].items():
        yield f"nt:{key}", "nt", case["spec"], np.asarray(ref["x1"])
    for k, r in enumerate(collect(recipes(), 12)):
        yield f"recipe:{k}", "recipe", r, inputs(k, 4)
    for k, r in enumerate(collect(recipes(sequence=True), 8)):
        yield f"seq:{k}", "recipe", r, sequences(k, 4, r.T)


def program(kind: str, spec):
    return {"example": tp.examples.get, "nt": nt_build, "recipe": build}[kind](spec)


def main() -> None:
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, kind, spec, data in cases():
            p = program(kind, spec)
            for engine in ("auto", "reference"):
                K = tp.kernels(p, data, engine=engine)
                rows.append({"label": label, "kind": kind, "spec": spec, "data": data, "engine": engine,
                             "nngp": K.nngp, "ntk": K.ntk})
    OUT.write_bytes(pickle.dumps(rows))
    print(f"{len(rows)} kernels pinned in {OUT}")


if __name__ == "__main__":
    main()
