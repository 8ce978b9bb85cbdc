r"""The program IR: frozen nodes and the :class:`Program` that orders them.

A tensor program (NETSOR, Yang 2019) over width n is a list of instructions on named
variables.  Each node below is one instruction; its ``inputs`` name the nodes it reads.

============  ==========================================  ======================
node          meaning                                     TP kind
============  ==========================================  ======================
Data          a data placeholder ξ ∈ R^d, or (ξ_1..ξ_T)   (not a vector)
InputLayer    U ∈ R^{n×d}, acting as σ_U U ξ / √d          parameter
Matrix        W ∈ R^{n×n}, acting as σ_W W x / √n          A-var, parameter
Bias          b = σ_b β ∈ R^n                              initial G-var, parameter
Embed         U ξ_t (the input layer on step t of data)    initial G-var
MatMul        W x, or W^T x when ``transpose``             G-var
Nonlin        φ(x_1, …, x_k) coordinatewise                X-var
LinComb       Σ_k c_k x_k + c_0 (sums, scalings)           X-var (linear Nonlin)
Readout       f = σ_v vᵀ x / √n (+ σ_o β)                  output
Seed          σ_v·c(t)·v, the readout's gradient           initial G-var (backward)
============  ==========================================  ======================

Matrices, input layers and readouts may carry a :class:`Mask` (random pruning: entries
kept with probability q = 1 − p, optionally rescaled by 1/√q; see :mod:`tpkernel.pruning`).

Nodes are immutable; a :class:`Program` keeps them in order (every node after the
nodes it reads), offers a ``networkx.DiGraph`` view, and validates itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Iterable, Iterator

import networkx as nx

from .errors import NotBPLikeError, ProgramError
from .nonlin import Nonlinearity
from .rules import RuleTable


#: the sorts of program variables (Tensor Programs' types): data bound at evaluation, n×n (or
#: n×d) matrices, vectors of R^n, and scalars (outputs; NETSOR⊤+ moments).  A position axis
#: for convolutions will be a property of data and vector nodes, not a new sort.
SORTS = ("data", "matrix", "vector", "scalar")


@dataclass(frozen=True)
class Node:
    name: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return ()

    sort: ClassVar[str] = "vector"
    is_param: ClassVar[bool] = False  # trained; contributes to the NTK
    is_gaussian_atom: ClassVar[bool] = False  # an initial vector or a MatMul: jointly Gaussian in the limit

    @property
    def is_vector(self) -> bool:
        """An element of R^n (sort "vector")."""
        return self.sort == "vector"


def _check_std(name: str, what: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ProgramError(f"{name}: {what} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Data(Node):
    """A data placeholder; ``length`` is the number of steps of a sequence (None: one vector)."""

    length: int | None = None
    sort: ClassVar[str] = "data"

    def __post_init__(self) -> None:
        if self.length is not None and (not isinstance(self.length, int) or self.length < 1):
            raise ProgramError(f"data {self.name}: length must be a positive integer, got {self.length!r}")


@dataclass(frozen=True)
class Param(Node):
    std: float = 1.0
    lr: float = 1.0
    is_param: ClassVar[bool] = True
    sort: ClassVar[str] = "matrix"

    def __post_init__(self) -> None:
        _check_std(self.name, "std", self.std)
        _check_std(self.name, "lr", self.lr)


@dataclass(frozen=True)
class Mask:
    r"""A random pruning mask (Yang & Wang, AISTATS 2023): each entry of the parameter is kept
    independently with probability q = 1 − p and pruned (fixed at 0, never trained) otherwise.

    ``rescale`` multiplies the kept weights' forward scale by 1/√q.  In the limit a masked use
    multiplies the forward covariance it creates, and the parameter's NTK contribution, by
    :attr:`factor` = q (1 with rescaling).  The range 0 <= p < 1 is checked by the node that
    carries the mask (so that the error names it).
    """

    p: float
    rescale: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)):
            raise ProgramError(f"mask: the pruning probability p must be a number, got {self.p!r}")
        if not isinstance(self.rescale, bool):
            raise ProgramError(f"mask: rescale must be True or False, got {self.rescale!r}")
        object.__setattr__(self, "p", float(self.p))

    @property
    def q(self) -> float:
        """The keep probability 1 − p."""
        return 1.0 - self.p

    @property
    def scale2(self) -> float:
        """s² of the forward scale s of a kept weight: 1/q with rescaling, else 1."""
        return 1.0 / self.q if self.rescale else 1.0

    @property
    def factor(self) -> float:
        """q·s²: the factor on the forward covariance and the NTK contribution in the limit."""
        return 1.0 if self.rescale else self.q

    def __str__(self) -> str:
        return f"mask p={self.p:g}" + (" rescale" if self.rescale else "")


def _check_mask(node: Node) -> None:
    """Normalise ``node.mask`` (a :class:`Mask`, a number p, or None) and check 0 <= p < 1."""
    m = node.mask
    if m is None:
        return
    if not isinstance(m, Mask):
        if isinstance(m, bool) or not isinstance(m, (int, float)):
            raise ProgramError(f"{node.name}: mask must be a Mask or a pruning probability p, got {m!r}")
        m = Mask(float(m))
        object.__setattr__(node, "mask", m)
    if not (math.isfinite(m.p) and 0.0 <= m.p < 1.0):
        raise ProgramError(f"{node.name}: the pruning probability p of its mask must be in [0, 1), got {m.p!r}")


def mask_of(node: Node | None) -> Mask | None:
    """The pruning mask of a matrix, input layer or readout (None when dense)."""
    return None if node is None else getattr(node, "mask", None)


def mask_factor(node: Node | None) -> float:
    """q (1 with rescaling) for a masked node, 1 for a dense one."""
    m = mask_of(node)
    return 1.0 if m is None else m.factor


@dataclass(frozen=True)
class InputLayer(Param):
    """U ∈ R^{n×d}: ``Embed`` nodes apply it to data as σ_U U ξ_t / √d.

    ``mask``: a :class:`Mask` (random pruning of U's entries), or None."""

    mask: Mask | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_mask(self)


@dataclass(frozen=True)
class Matrix(Param):
    """W ∈ R^{n×n} with iid N(0, 1) entries, acting as σ_W W x / √n.

    ``mask``: a :class:`Mask` (random pruning: M ⊙ W), or None."""

    mask: Mask | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_mask(self)


@dataclass(frozen=True)
class Bias(Param):
    """An initial vector σ_b β, β iid N(0, 1): a G-var used as is."""

    sort: ClassVar[str] = "vector"
    is_gaussian_atom: ClassVar[bool] = True


@dataclass(frozen=True)
class Embed(Node):
    """σ_U U ξ_t / √d: the input layer ``layer`` applied to step ``step`` of ``data``."""

    layer: str
    data: str
    step: int | None = None
    is_gaussian_atom: ClassVar[bool] = True

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.layer, self.data)


@dataclass(frozen=True)
class MatMul(Node):
    """W x (``transpose=False``) or Wᵀ x: a G-var."""

    matrix: str
    arg: str
    transpose: bool = False
    is_gaussian_atom: ClassVar[bool] = True

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.matrix, self.arg)


@dataclass(frozen=True)
class Nonlin(Node):
    """φ(x_1, …, x_k) applied coordinatewise: an X-var."""

    fn: Nonlinearity
    args: tuple[str, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.args


@dataclass(frozen=True)
class LinComb(Node):
    """Σ_k c_k x_k + c_0: a linear Nonlin, expanded bilinearly by every evaluator."""

    args: tuple[str, ...]
    coeffs: tuple[float, ...]
    const: float = 0.0

    def __post_init__(self) -> None:
        if len(self.args) != len(self.coeffs):
            raise ProgramError(f"{self.name}: {len(self.args)} terms but {len(self.coeffs)} coefficients")
        if not all(math.isfinite(c) for c in self.coeffs + (self.const,)):
            raise ProgramError(f"{self.name}: coefficients must be finite")

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.args


POOLS = (None, "last", "mean")


@dataclass(frozen=True)
class Readout(Node):
    """f = σ_v vᵀ x / √n (+ σ_o β): a scalar output.

    With ``pool`` the readout reads a list of vectors, one per step of a sequence:
    ``"last"`` reads each example's own last step, ``"mean"`` averages its own steps.
    ``vector`` optionally names a :class:`Bias` node used as v (it must not be used
    anywhere else: BP-likeness).  ``mask``: a :class:`Mask` on v (random pruning), or None.
    """

    args: tuple[str, ...]
    std: float = 1.0
    lr: float = 1.0
    b_std: float | None = None
    b_lr: float = 1.0
    pool: str | None = None
    vector: str | None = None
    mask: Mask | None = None
    sort: ClassVar[str] = "scalar"

    def __post_init__(self) -> None:
        _check_mask(self)
        _check_std(self.name, "std", self.std)
        _check_std(self.name, "lr", self.lr)
        _check_std(self.name, "b_std", self.b_std, allow_none=True)
        _check_std(self.name, "b_lr", self.b_lr)
        if self.pool not in POOLS:
            raise ProgramError(f"readout {self.name}: pool must be one of {POOLS}, got {self.pool!r}")
        if self.pool is None and len(self.args) != 1:
            raise ProgramError(f"readout {self.name}: reads {len(self.args)} vectors; give pool='last' or 'mean'")
        if not self.args:
            raise ProgramError(f"readout {self.name}: reads no vector")

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.args + ((self.vector,) if self.vector else ())


@dataclass(frozen=True)
class Seed(Node):
    """The readout's gradient on its ``index``-th argument, σ_v·c(t)·v (backward program)."""

    readout: str
    index: int
    is_gaussian_atom: ClassVar[bool] = True

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.readout,)


# ---------------------------------------------------------------------------------

class Program:
    """An ordered list of nodes: every node comes after the nodes it reads.

    This is the container; ``tp.Program`` (:class:`tpkernel.builder.Program`) adds the
    builder methods (``data``, ``input_layer``, ``matrix``, ``bias``, ``output``,
    ``listing``).  ``program.graph`` is the dependency graph as a
    ``networkx.DiGraph`` (edge u → v when v reads u).
    """

    def __init__(self, name: str = "program", nodes: Iterable[Node] = ()) -> None:
        self.name = name
        self._nodes: dict[str, Node] = {}
        self._position: dict[str, int] = {}
        self._consumers: dict[str, list[Node]] = {}
        self._counter: dict[str, int] = {}
        self._validated = -1  # the length at which validate() last passed (nodes are only appended)
        for node in nodes:
            self.add(node)

    @classmethod
    def from_nodes(cls, name: str, nodes: Iterable[Node]) -> "Program":
        """A program from nodes in any order: sorted topologically (ties keep the given
        order); a cycle or a reference to an undefined node is a :class:`ProgramError`."""
        nodes = list(nodes)
        by_name: dict[str, Node] = {}
        for n in nodes:
            if n.name in by_name:
                raise ProgramError(f"duplicate node name {n.name!r}")
            by_name[n.name] = n
        g = nx.DiGraph()
        g.add_nodes_from(by_name)
        for n in nodes:
            for ref in n.inputs:
                if ref not in by_name:
                    raise ProgramError(f"node {n.name!r} reads {ref!r}, which is not defined")
                g.add_edge(ref, n.name)
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " -> ".join(u for u, _ in cycle) + f" -> {cycle[0][0]}"
            raise ProgramError(f"program {name!r} has a cycle: {path}")
        position = {n.name: i for i, n in enumerate(nodes)}
        order = nx.lexicographical_topological_sort(g, key=position.__getitem__)
        return cls(name, (by_name[k] for k in order))

    # -- container -----------------------------------------------------------------
    def add(self, node: Node) -> Node:
        if not isinstance(node, Node):
            raise ProgramError(f"{node!r} is not a program node")
        if not isinstance(node.name, str) or not node.name:
            raise ProgramError(f"node names must be non-empty strings, got {node.name!r}")
        if node.name in self._nodes:
            raise ProgramError(f"duplicate node name {node.name!r}")
        for ref in node.inputs:
            if ref not in self._nodes:
                raise ProgramError(f"node {node.name!r} reads {ref!r}, which is not defined before it")
        CHECKS.rule(node)(self, node)
        self._position[node.name] = len(self._nodes)
        self._nodes[node.name] = node
        self._consumers[node.name] = []
        for ref in dict.fromkeys(node.inputs):
            self._consumers[ref].append(node)
        return node

    def __getitem__(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise ProgramError(f"program {self.name!r} has no node {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def index(self, name: str) -> int:
        """The position of node ``name`` in the program."""
        try:
            return self._position[name]
        except KeyError:
            raise ProgramError(f"program {self.name!r} has no node {name!r}") from None

    def of_type(self, *types: type) -> list[Node]:
        return [n for n in self._nodes.values() if isinstance(n, types)]

    @property
    def readouts(self) -> list[Readout]:
        return self.of_type(Readout)  # type: ignore[return-value]

    @property
    def params(self) -> list[Param]:
        return self.of_type(Param)  # type: ignore[return-value]

    def consumers(self, name: str) -> list[Node]:
        """The nodes that read ``name``, in program order (an index kept by :meth:`add`)."""
        return list(self._consumers.get(name, ()))

    @property
    def graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for n in self._nodes.values():
            g.add_node(n.name, node=n)
            for ref in n.inputs:
                g.add_edge(ref, n.name)
        return g

    def fresh(self, prefix: str) -> str:
        """A node name ``prefix<k>`` not yet used."""
        k = self._counter.get(prefix, 0)
        while True:
            k += 1
            name = f"{prefix}{k}"
            if name not in self._nodes:
                self._counter[prefix] = k
                return name

    def copy(self, name: str | None = None) -> "Program":
        return type(self)(name or self.name, self._nodes.values())

    def __repr__(self) -> str:
        return f"<Program {self.name!r}: {len(self)} nodes>"

    # -- validation ----------------------------------------------------------------
    def validate(self) -> "Program":
        """Check the whole program; raise a specific error naming the node at fault.

        Each node's own inputs were checked by :meth:`add` (the :data:`CHECKS` table), and
        cycles cannot occur (:meth:`add` needs every input defined first, :meth:`from_nodes`
        rejects them).  Checks here, in one pass over the nodes (linear time; a program that
        passed is not checked again until a node is added): at least one readout; every
        parameter and vector is used (a dangling node is an error: it would silently not
        count); readout vectors are used only by their readout (BP-like); a matrix is not
        used both as W and as Wᵀ in the forward pass (general NETSOR⊤ is not supported yet).
        """
        if self._validated == len(self._nodes):
            return self
        if not any(isinstance(n, Readout) for n in self._nodes.values()):
            raise ProgramError(f"program {self.name!r} has no readout (use program.output(x))")
        for node in self._nodes.values():
            if isinstance(node, (Readout, Seed)):
                continue
            users = self._consumers[node.name]
            if not users:
                kind = "parameter" if node.is_param else ("data" if isinstance(node, Data) else "vector")
                raise ProgramError(f"{kind} {node.name!r} is defined but never used (dangling)")
            vec_users = [u for u in users if isinstance(u, Readout) and u.vector == node.name]
            if vec_users and len(users) > 1:
                others = ", ".join(repr(u.name) for u in users if u is not vec_users[0])
                raise NotBPLikeError(f"readout vector {node.name!r} of {vec_users[0].name!r} is also used by "
                                     f"{others}: the program is not BP-like")
            if isinstance(node, Matrix):
                flags = {u.transpose for u in users if isinstance(u, MatMul)}
                if flags == {True, False}:
                    raise NotBPLikeError(f"matrix {node.name!r} is used both as W and as Wᵀ in the forward pass: "
                                         "general NETSOR⊤ (the Ż correction) is not supported yet")
        self._validated = len(self._nodes)
        return self


# -- validation: one rule per node class, run by Program.add on each new node -----------

def _check_none(program: Program, node: Node) -> None:
    """Nodes that read nothing (data, parameters, biases)."""


def _check_embed(program: Program, node: Embed) -> None:
    get = program.__getitem__
    if not isinstance(get(node.layer), InputLayer):
        raise ProgramError(f"{node.name}: {node.layer!r} is not an input layer")
    data = get(node.data)
    if not isinstance(data, Data):
        raise ProgramError(f"{node.name}: input layer {node.layer!r} applied to {node.data!r}, "
                           "which is not data; use a matrix for vectors")
    if (data.length is None) != (node.step is None):
        raise ProgramError(f"{node.name}: data {data.name!r} "
                           + ("is a sequence: pick a step x[t]" if data.length else "has no steps"))
    if data.length is not None and not 0 <= node.step < data.length:
        raise ProgramError(f"{node.name}: step {node.step} outside 0..{data.length - 1} of {data.name!r}")


def _check_matmul(program: Program, node: MatMul) -> None:
    m, a = program[node.matrix], program[node.arg]
    if not isinstance(m, Matrix):
        what = "an input layer (it takes data)" if isinstance(m, InputLayer) else "not a matrix"
        raise ProgramError(f"{node.name}: {node.matrix!r} is {what}")
    if not a.is_vector:
        raise ProgramError(f"{node.name}: matrix {node.matrix!r} applied to {node.arg!r}, which is not a "
                           f"vector of width n ({type(a).__name__}); use an input layer for data")


def _check_vector_args(program: Program, node) -> None:
    for a in node.args:
        if not program[a].is_vector:
            raise ProgramError(f"{node.name}: argument {a!r} is not a vector ({type(program[a]).__name__})")


def _check_nonlin(program: Program, node: Nonlin) -> None:
    _check_vector_args(program, node)
    if not isinstance(node.fn, Nonlinearity):
        raise ProgramError(f"{node.name}: {node.fn!r} is not a nonlinearity")
    ar, args = node.fn.family.arity, node.args
    if (ar and len(args) != ar) or not args or node.fn.arity != len(args):
        raise ProgramError(f"{node.name}: {node.fn.label} takes {ar or 'one or more'} argument(s), got {len(args)}")


def _check_readout(program: Program, node: Readout) -> None:
    _check_vector_args(program, node)
    if node.vector is not None and not isinstance(program[node.vector], Bias):
        raise ProgramError(f"readout {node.name}: its vector {node.vector!r} must be an initial vector")


def _check_seed(program: Program, node: Seed) -> None:
    if not isinstance(program[node.readout], Readout):
        raise ProgramError(f"{node.name}: {node.readout!r} is not a readout")


#: the validation interpretation: checks of a node against the nodes it reads
CHECKS = RuleTable("validation", {
    Data: _check_none, InputLayer: _check_none, Matrix: _check_none, Bias: _check_none,
    Embed: _check_embed, MatMul: _check_matmul, Nonlin: _check_nonlin, LinComb: _check_vector_args,
    Readout: _check_readout, Seed: _check_seed,
})

#: every node class of the IR (tests check that each interpretation's table covers them)
NODE_CLASSES: tuple[type, ...] = (Data, InputLayer, Matrix, Bias, Embed, MatMul, Nonlin, LinComb, Readout, Seed)


def register_node_class(cls: type) -> type:
    """Add a node class to :data:`NODE_CLASSES` (an extension registers its rules in each table)."""
    global NODE_CLASSES
    if cls not in NODE_CLASSES:
        NODE_CLASSES = NODE_CLASSES + (cls,)
    return cls
