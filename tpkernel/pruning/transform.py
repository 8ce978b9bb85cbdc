r"""Pruning as program transformations (Program → Program).

- :func:`prune`: put a random mask (pruning probability p, keep probability q = 1 − p,
  optional rescaling by 1/√q) on the matrices, input layers and/or readouts of a program;
- :func:`pseudo_network`: the *mask-induced pseudo-network*, every masked parameter
  replaced by a dense Gaussian one with the variances the mask induces;
- :func:`dense`: the program with every mask removed (the network before pruning).

None of them changes the program's structure: they rewrite parameter nodes only, so the
listing, the drawing, the formulas, the limit and the finite-width sampler all read the
result as any other program.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

from ..errors import ProgramError
from ..builder import Program
from ..ir import Bias, InputLayer, Mask, Matrix, Node, Readout, mask_of

WHERE = ("all", "hidden", "hidden+output", "input", "output")


def prunable(program: Program) -> list[Node]:
    """The nodes that can carry a mask: matrices, input layers and readouts."""
    return program.of_type(InputLayer, Matrix, Readout)


def _targets(program: Program, where: str | Iterable[str]) -> list[str]:
    """The names of the nodes ``where`` selects (readouts by name, or by their vector's name)."""
    if isinstance(where, str) and where in WHERE:
        kinds = {"all": (InputLayer, Matrix, Readout), "hidden": (Matrix,), "hidden+output": (Matrix, Readout),
                 "input": (InputLayer,), "output": (Readout,)}[where]
        return [n.name for n in program.of_type(*kinds)]
    names = [where] if isinstance(where, str) else list(where)
    by_vector = {r.vector: r.name for r in program.readouts if r.vector}
    out = []
    for name in names:
        if not isinstance(name, str):
            raise ProgramError(f"prune: where= names parameters, got {name!r}")
        if name in by_vector:
            name = by_vector[name]
        if name not in program:
            raise ProgramError(f"prune: program {program.name!r} has no parameter {name!r} "
                               f"(where= is one of {WHERE} or a list of names)")
        node = program[name]
        if isinstance(node, Bias):
            raise ProgramError(f"prune: {name!r} is a bias; masks go on matrices, input layers and readouts")
        if not isinstance(node, (InputLayer, Matrix, Readout)):
            raise ProgramError(f"prune: {name!r} is a {type(node).__name__}, not a matrix, input layer or readout")
        if name not in out:
            out.append(name)
    return out


def _check_p(p, what: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0.0 <= p < 1.0:
        raise ProgramError(f"prune: the pruning probability p of {what} must be in [0, 1), got {p!r}")
    return float(p)


def prune(program: Program, p: float, rescale: bool = False, where: str | Sequence[str] = "all",
          *, name: str | None = None) -> Program:
    """The program with random masks: each entry of the selected parameters is kept with
    probability q = 1 − p and pruned (fixed at 0, never trained) otherwise.

    ``where``: ``"all"`` (matrices, input layers and readouts), ``"hidden"`` (the n×n
    matrices), ``"hidden+output"`` (matrices and readouts), ``"input"``, ``"output"``, or a
    list of parameter names.  ``rescale``: multiply the kept weights' forward scale by 1/√q,
    which removes the extra scaling of the limit.  A parameter that already has a mask is
    pruned again: keep probabilities multiply (q = q_old·q_new); both masks must agree on
    ``rescale``.  ``p`` outside [0, 1) is a :class:`~tpkernel.errors.ProgramError`.
    """
    if not isinstance(program, Program):
        raise ProgramError(f"prune: expected a Program, got {type(program).__name__}")
    targets = _targets(program, where)
    p = _check_p(p, ", ".join(targets) or "the program")
    if not targets:
        raise ProgramError(f"prune: where={where!r} selects no parameter of {program.name!r}")
    nodes = []
    for node in program:
        if node.name in targets:
            old = mask_of(node)
            if old is None:
                new = Mask(p, bool(rescale))
            else:
                if old.rescale != bool(rescale):
                    raise ProgramError(f"prune: {node.name!r} already has a mask with rescale={old.rescale}; "
                                       f"pruning it again needs the same rescale flag")
                new = Mask(1.0 - old.q * (1.0 - p), old.rescale)
            node = dataclasses.replace(node, mask=new)
        nodes.append(node)
    return Program(name or f"{program.name}_pruned", nodes)


def masked(program: Program) -> dict[str, Mask]:
    """{name: mask} of the masked parameters (readouts by their name)."""
    return {n.name: n.mask for n in prunable(program) if mask_of(n) is not None}


def dense(program: Program, *, name: str | None = None) -> Program:
    """The program with every mask removed: the dense network before pruning."""
    nodes = [dataclasses.replace(n, mask=None) if mask_of(n) is not None else n for n in program]
    return Program(name or (program.name[:-7] if program.name.endswith("_pruned") else program.name + "_dense"),
                   nodes)


def pseudo_network(program: Program, *, name: str | None = None) -> Program:
    r"""The mask-induced pseudo-network of a pruned program (SPEC §2; see docs/pruning.md).

    Every masked parameter M ⊙ W (forward scale σ s, s = 1/√q with rescaling, else 1) is
    replaced by a dense Gaussian parameter whose entries have the variance the mask induces,

        Var((σ s M ⊙ W)_ab) = σ² s² q   →   std σ̃ = σ s √q   (σ̃ = σ with rescaling),

    and the same learning-rate multiplier: its NTK contribution lr σ̃² Σ (...) is the
    contribution lr σ² s² of one kept weight reweighted by the kept fraction q.  The result
    is an ordinary (unmasked) program: the Master Theorem applies verbatim, and it can be
    printed, drawn, evaluated and sampled at finite width like any other.

    Its limit equals the pruned network's for every masked matrix and readout.  For a masked
    *input layer* with a fixed input dimension d it is the large-d limit: the pruned network's
    embedding is a Gaussian scale mixture over the kept inputs of each row, which the
    pseudo-network replaces by one Gaussian with the same covariance (docs/pruning.md).
    """
    nodes = []
    vectors = {r.vector: r for r in program.readouts if r.vector and mask_of(r) is not None}
    for node in program:
        m = mask_of(node)
        if m is not None:
            factor = math.sqrt(m.factor)
            if isinstance(node, Readout) and node.vector is not None:
                node = dataclasses.replace(node, mask=None)  # the std is the vector's: scaled below
            else:
                node = dataclasses.replace(node, std=node.std * factor, mask=None)
        elif isinstance(node, Bias) and node.name in vectors:
            node = dataclasses.replace(node, std=node.std * math.sqrt(vectors[node.name].mask.factor))
        nodes.append(node)
    return Program(name or f"{program.name}_pseudo", nodes)
