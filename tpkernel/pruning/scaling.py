r"""The extra scaling of a pruned program: Θ_pruned / Θ, decided structurally, checked numerically.

**The structural rule.**  In the limit, pruning multiplies the covariance a masked use creates
by its factor f (q, or 1 with rescaling).  Suppose every vector u of the (forward and
backward) program is, jointly in law, a deterministic multiple of its dense counterpart,
Z^u_pruned = α_u Z^u_dense.  Then the atoms' joint covariance is rescaled by a diagonal
matrix, and the amplitudes follow one rule per node kind (α² written as a product of the
masks' symbols q_W):

==================  =================================================================
node                α² (amplitude squared)
==================  =================================================================
W x, Wᵀ x           f_W · α²_x               (the Master Theorem's σ² E[x x'], scaled)
U ξ (input layer)   1; masked: a Gaussian scale mixture (only linear maps of it scale:
                    E_S⟨ξ_S, ξ'_S⟩/d = q ⟨ξ, ξ'⟩/d)
b (bias)            1
readout seed σ_v v  f_v
Σ c_k x_k + c_0     α² of its terms, which must agree (and be 1 if c_0 ≠ 0)
φ(x)                (α²_x)^k for φ positively homogeneous of degree k (relu: 1, its
                    derivative step: 0, x^k: k); other φ only if α²_x = 1
x · y               α²_x α²_y
==================  =================================================================

The NNGP scales by f_v α²_x (+ σ_o² unscaled), and each NTK term by f α²_dy α²_z (matrix),
α²_dy f_U (input layer), α²_db (bias), f_v α²_x (readout), 1 (readout bias).  If every
rule applies and all terms agree, Θ_pruned = c Θ for *all* inputs, with c that common
value; otherwise the ratio depends on the data and the reasons say where.  For a bias-free
ReLU MLP with m pruned hidden/output layers this gives c = q^m; a bias, a non-homogeneous
φ, or a masked input layer read by a nonlinearity break it.

**The numerical check.**  :func:`extra_scaling` also evaluates both limits on data and
reports the ratio's range: equal to c to rounding when c exists, spread out when not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import sympy

from ..backward import backward
from ..errors import ProgramError
from ..ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Nonlin, Program, Readout, Seed, mask_of
from ..rules import RuleTable
from ..terms import contract
from .transform import dense, masked


def homogeneity_degree(fn, tol: float = 1e-9) -> float | None:
    """k with φ(c x) = c^k φ(x) for all c > 0 and x (positive homogeneity), or None.

    Decided numerically on a grid (x in ±[0.01, 5], c in {0.37, 2.9}): exact for the
    piecewise-linear family (relu, leaky relu, abs: 1; their derivatives: 0) and powers."""
    x = np.concatenate([-np.geomspace(0.01, 5.0, 41), np.geomspace(0.01, 5.0, 41)])
    try:
        fx = np.asarray(fn(x), dtype=float)
    except Exception:  # pragma: no cover - a user function that does not vectorise
        return None
    if not np.all(np.isfinite(fx)):
        return None
    if np.all(fx == 0):
        return 0.0
    k = None
    for c in (0.37, 2.9):
        fcx = np.asarray(fn(c * x), dtype=float)
        nz = np.abs(fx) > 1e-12 * np.max(np.abs(fx))
        ratios = fcx[nz] / fx[nz]
        if np.any(ratios <= 0):
            return None
        kc = math.log(float(np.median(ratios))) / math.log(c)
        if not np.allclose(fcx, c ** kc * fx, rtol=tol, atol=tol * float(np.max(np.abs(fx)))):
            return None
        if k is not None and abs(k - kc) > 1e-6:
            return None
        k = kc
    r = round(k)
    return float(r) if abs(k - r) < 1e-6 else k


@dataclass
class ExtraScaling:
    r"""Θ_pruned / Θ_dense (and the NNGP's) of a pruned program.

    ``constant``: whether the ratio is one number for all inputs (structural decision);
    ``ntk``/``nngp``: that number (None if not constant); ``ntk_expr``/``nngp_expr``: as a
    sympy expression in the masks' keep probabilities q_name (None if not constant);
    ``reasons``: why not; ``masks``: {name: Mask}; ``checked``: the numerical check —
    ratio ranges of the two limits on data, and whether they confirm the decision.
    """

    program: str
    masks: dict
    constant: bool
    ntk: float | None
    nngp: float | None
    ntk_expr: sympy.Expr | None
    nngp_expr: sympy.Expr | None
    reasons: list[str] = field(default_factory=list)
    checked: dict = field(default_factory=dict)

    @property
    def q(self) -> dict[str, float]:
        return {k: m.q for k, m in self.masks.items()}

    @property
    def factor(self) -> float | None:
        """Θ_pruned / Θ when it is a constant (the NTK's; the NNGP's is :attr:`nngp`)."""
        return self.ntk

    def common_q(self) -> sympy.Expr | None:
        """The NTK factor in one symbol q when all masks have the same p (e.g. q**3)."""
        if self.ntk_expr is None:
            return None
        qs = {m.q for m in self.masks.values()}
        if len(qs) != 1:
            return self.ntk_expr
        q = sympy.Symbol("q", positive=True)
        return sympy.simplify(self.ntk_expr.subs({s: q for s in self.ntk_expr.free_symbols}))

    def summary(self) -> str:
        head = f"extra scaling of {self.program!r} (masks: " + (", ".join(
            f"{k} p={m.p:g}" + (" rescaled" if m.rescale else "") for k, m in self.masks.items()) or "none") + ")"
        lines = [head]
        if self.constant:
            lines.append(f"  constant: Θ_pruned = {self.ntk:.12g} · Θ   ({self.ntk_expr}"
                         + (f" = {self.common_q()}" if self.common_q() != self.ntk_expr else "") + ")")
            lines.append(f"            Σ_pruned = {self.nngp:.12g} · Σ   ({self.nngp_expr})")
        else:
            lines.append("  NOT a constant: the ratio depends on the inputs")
            lines += [f"  - {r}" for r in self.reasons]
        c = self.checked
        if c:
            for kind in ("ntk", "nngp"):
                lo, hi = c[kind]
                lines.append(f"  checked on {c['n']} inputs: {kind.upper()} ratio in [{lo:.12g}, {hi:.12g}]")
            lines.append("  the numbers " + ("confirm it" if c["agrees"] else "DISAGREE with the structural decision"))
        return "\n".join(lines)

    __str__ = summary


def _q_symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(f"q_{name}", positive=True)


class _Amplitudes:
    """α² per vector of the backward program (see the module docstring)."""

    def __init__(self, program: Program) -> None:
        self.fwd = program
        self.reasons: list[str] = []
        self.values: dict[str, sympy.Expr] = {}
        self.mixture: dict[str, str] = {}  # vector -> masked input layer it depends on (conditionally Gaussian)
        self._degrees: dict = {}

    def factor(self, node) -> sympy.Expr:
        m = mask_of(node)
        if m is None or m.rescale or m.p == 0.0:
            return sympy.Integer(1)
        return _q_symbol(node.name)

    def fail(self, why: str) -> None:
        if why not in self.reasons:
            self.reasons.append(why)

    def degree(self, fn) -> float | None:
        if fn not in self._degrees:
            self._degrees[fn] = homogeneity_degree(fn)
        return self._degrees[fn]

    def run(self, prog: Program) -> None:
        for node in prog:
            if not node.is_vector:
                continue
            val = self.rule(prog, node)
            if val is not None:
                self.values[node.name] = sympy.simplify(val)

    def get(self, name: str):
        return self.values.get(name)

    def rule(self, prog: Program, node):
        return AMPLITUDES.rule(node)(self, prog, node)


def _amp_bias(amp: _Amplitudes, prog: Program, node: Bias):
    return sympy.Integer(1)


def _amp_seed(amp: _Amplitudes, prog: Program, node: Seed):
    return amp.factor(prog[node.readout])


def _amp_embed(amp: _Amplitudes, prog: Program, node: Embed):
    layer = prog[node.layer]
    if mask_of(layer) is not None and mask_of(layer).p > 0:
        amp.mixture[node.name] = layer.name
    return amp.factor(layer)  # its covariance, averaged over the masks (exact for linear maps)


def _amp_matmul(amp: _Amplitudes, prog: Program, node: MatMul):
    a = amp.get(node.arg)
    return None if a is None else amp.factor(prog[node.matrix]) * a


def _mixtures(amp: _Amplitudes, args) -> list[str] | None:
    """The masked input layers the arguments are mixtures over (None: an argument has no amplitude)."""
    if any(amp.get(a) is None for a in args):
        return None
    return sorted({amp.mixture[a] for a in args if a in amp.mixture})


def _amp_lincomb(amp: _Amplitudes, prog: Program, node: LinComb):
    mix = _mixtures(amp, node.args)
    if mix is None:
        return None
    if mix:
        amp.mixture[node.name] = mix[0]
    terms = [(a, amp.get(a)) for a, c in zip(node.args, node.coeffs) if c != 0]
    vals = {sympy.simplify(v) for _, v in terms}
    if node.const != 0:
        vals.add(sympy.Integer(1))
    if len(vals) > 1:
        desc = ", ".join(f"{a} (×{v})" for a, v in terms) + (" and a constant" if node.const else "")
        kinds = [type(prog[a]).__name__ for a, _ in terms]
        why = "a bias" if "Bias" in kinds else "vectors"
        amp.fail(f"{node.name} adds {why} with different scalings: {desc}")
        return None
    return vals.pop() if vals else sympy.Integer(1)


def _amp_nonlin(amp: _Amplitudes, prog: Program, node: Nonlin):
    args = list(node.args)
    mix = _mixtures(amp, args)
    if mix is None:
        return None
    if mix:
        amp.fail(f"{node.name} = {node.fn.label}(…) is a nonlinear function of the masked input layer "
                 f"{mix[0]!r}: a Gaussian scale mixture over the kept inputs, not a scaled Gaussian "
                 "(exact for fixed d; the pseudo-network's large-d limit would scale)")
        return None
    if node.fn.is_product:
        out = sympy.Integer(1)
        for a in args:
            out = out * amp.get(a)
        return out
    vals = [amp.get(a) for a in args]
    if all(v == 1 for v in vals):
        return sympy.Integer(1)
    if len(args) == 1:
        k = amp.degree(node.fn)
        if k is not None:
            return vals[0] ** sympy.nsimplify(k)
        amp.fail(f"{node.name} = {node.fn.label}(…) is not positively homogeneous and its input is scaled "
                 f"by {vals[0]}")
        return None
    amp.fail(f"{node.name} = {node.fn.label}(…) of several scaled arguments is not homogeneous")
    return None


#: the pruning interpretation: the amplitude α (Z^u_pruned = α Z^u_dense) of each vector
AMPLITUDES = RuleTable("pruning", {
    Bias: _amp_bias, Seed: _amp_seed, Embed: _amp_embed, MatMul: _amp_matmul, LinComb: _amp_lincomb,
    Nonlin: _amp_nonlin,
}, exempt={Data: "not a vector", InputLayer: "a parameter (its factor enters through Embed)",
           Matrix: "a parameter (its factor enters through MatMul)", Readout: "an output (see structural_scaling)"})


def structural_scaling(program: Program, output: str | None = None):
    """(nngp_expr, ntk_expr, reasons): the amplitude analysis of the module docstring."""
    program.validate()
    try:
        bw = backward(program, output)
        prog, terms = bw.program, bw.terms
        r = program[bw.readout]
    except ProgramError as err:  # no derivative: the NNGP only
        if "derivative" not in str(err):
            raise
        from ..backward import pick_readout
        r = pick_readout(program, output)
        prog, terms = program, ()
    amp = _Amplitudes(program)
    amp.run(prog)
    fv = amp.factor(r)

    def same(values: list, what: str):
        vals = {sympy.simplify(v) for v in values}
        if len(vals) > 1:
            amp.fail(f"{what}: different scalings {sorted(map(str, vals))}")
            return None
        return vals.pop() if vals else None

    # NNGP
    xs = [amp.get(a) for a in r.args]
    nngp = None
    if all(x is not None for x in xs):
        nngp = same([fv * x for x in xs], f"readout {r.name} reads vectors")
        if nngp is not None and r.b_std is not None and nngp != 1:
            amp.fail(f"readout {r.name} has an output bias (σ_o² is not scaled, the rest by {nngp})")
            nngp = None
    # NTK
    def matrix(t):
        f = amp.factor(program[t.param])
        per = [amp.get(u.grad) * amp.get(u.input) if amp.get(u.grad) is not None and amp.get(u.input) is not None
               else None for u in t.uses]
        return None if any(v is None for v in per) else same([f * v for v in per], f"the uses of {t.param}")

    def input_layer(t):
        f = amp.factor(program[t.param])
        per = [amp.get(u.grad) for u in t.uses]
        if any(v is None for v in per):
            return None
        mixed = [u.grad for u in t.uses if u.grad in amp.mixture]
        if mixed:
            amp.fail(f"the gradient {mixed[0]} of the masked input layer {t.param} depends on its mask")
            return None
        return same([f * v for v in per], f"the uses of {t.param}")

    table = {"matrix": matrix, "input": input_layer, "bias": lambda t: amp.get(t.grad),
             "readout": lambda t: same([fv * x for x in xs], "readout") if all(x is not None for x in xs) else None,
             "readout_bias": lambda t: sympy.Integer(1)}
    vals = contract(terms, {k: (lambda t, f=f: [(t, f(t))]) for k, f in table.items()}, "pruning", [])
    ok = bool(terms) and all(v is not None for _, v in vals)
    vals = [(t, v) for t, v in vals if v is not None]
    ntk = None
    if ok and vals:
        distinct = {sympy.simplify(v) for _, v in vals}
        if len(distinct) == 1:
            ntk = distinct.pop()
        else:
            desc = "; ".join(f"{t.param if t.kind not in ('readout_bias',) else 'output bias'} ({t.kind}) ×{v}"
                             for t, v in vals)
            amp.fail(f"the NTK terms scale differently: {desc}")
    return nngp, ntk, amp.reasons


def extra_scaling(program: Program, x=None, *, output: str | None = None, check: bool = True,
                  rtol: float = 1e-9, **kernel_kw) -> ExtraScaling:
    """Θ_pruned / Θ of a pruned program against its dense version (:func:`dense`).

    Decided structurally (module docstring): a constant c (e.g. q^m for a bias-free ReLU MLP
    with m pruned hidden/output layers; 1 with rescaling) or "not a constant" with the
    reasons (biases, non-homogeneous φ, masked input layers read nonlinearly, ...).
    With ``check`` both limits are evaluated on ``x`` (default: a small data set, see
    :func:`tpkernel.examples.sample_data`) and the ratio's range is compared with c.
    """
    nngp_e, ntk_e, reasons = structural_scaling(program, output)
    subs = {_q_symbol(k): m.q for k, m in masked(program).items()}
    const = ntk_e is not None and nngp_e is not None

    def num(e):
        return None if e is None else float(e.subs(subs))

    res = ExtraScaling(program.name, masked(program), const, num(ntk_e) if const else None,
                       num(nngp_e) if const else None, ntk_e if const else None, nngp_e if const else None,
                       reasons)
    if not const and not reasons:  # pragma: no cover - defensive
        res.reasons.append("the NTK is not available (a nonlinearity without derivative)")
    if check:
        from .. import examples
        from ..limit import kernels
        if x is None:
            x = examples.sample_data(program, n=6, d=3, seed=1)
        kp = kernels(program, x, output=output, **kernel_kw)
        kd = kernels(dense(program), x, output=output, **kernel_kw)
        checked: dict = {"n": len(kp.nngp)}
        agrees = True
        for kind in ("ntk", "nngp"):
            a, b = getattr(kp, kind), getattr(kd, kind)
            okb = np.abs(b) > 1e-12 * np.max(np.abs(b))
            ratio = a[okb] / b[okb]
            lo, hi = float(ratio.min()), float(ratio.max())
            checked[kind] = (lo, hi)
            if const:
                c = getattr(res, kind)
                agrees &= bool(np.all(np.abs(ratio - c) <= rtol * abs(c)))
        if not const:
            agrees = any(checked[k][1] - checked[k][0] > rtol * abs(checked[k][1]) for k in ("ntk", "nngp"))
        checked["agrees"] = agrees
        res.checked = checked
    return res
