"""The text listing of a program: one declaration or instruction per line.

::

    program mlp2
    data xi                      # a vector ξ ∈ R^d      (data x[T] for a sequence)
    input U std=1.5              # σ_U U ξ / √d
    matrix W2 std=1.5            # σ_W W x / √n
    bias b1 std=0.1              # σ_b β
    h1 = U xi                    # Embed (U x[t] for step t)
    h2 = h1 + b1                 # LinComb: c1*a + c2*b + c0
    x1 = relu(h2)                # Nonlin; abrelu[a, b](h), prod(a, b), ...
    h3 = W2 x1                   # MatMul (W2^T x1 for the transpose)
    f = readout(x2) std=1.5 b_std=0.1       # readout[last](s1, s2, s3) for pooling

The printer is a table of one function per node kind (as SymPy's printers dispatch on
the class).  Each parameter's ``lr`` is printed only when it is not 1.
"""

from __future__ import annotations

from typing import Callable

from .ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Node, Nonlin, Program, Readout, Seed


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def _opts(**kw) -> str:
    parts = [f"{k}={_num(v)}" for k, v in kw.items() if v is not None]
    return (" " + " ".join(parts)) if parts else ""


def _param(kind: str) -> Callable[[Node], str]:
    return lambda n: f"{kind} {n.name}" + _opts(std=n.std, lr=None if n.lr == 1 else n.lr)


def _lincomb(n: LinComb) -> str:
    terms = []
    for a, c in zip(n.args, n.coeffs):
        sign = "-" if c < 0 else "+"
        mag = abs(c)
        terms.append((sign, a if mag == 1 else f"{_num(mag)}*{a}"))
    if n.const:
        terms.append(("-" if n.const < 0 else "+", _num(abs(n.const))))
    text = ("-" if terms[0][0] == "-" else "") + terms[0][1]
    for sign, t in terms[1:]:
        text += f" {sign} {t}"
    return f"{n.name} = {text}"


def _nonlin(n: Nonlin) -> str:
    fn = n.fn
    if fn.name == "prod":
        return f"{n.name} = " + " * ".join(n.args)
    return f"{n.name} = {fn.label}({', '.join(n.args)})"


def _readout(n: Readout) -> str:
    head = "readout" + (f"[{n.pool}]" if n.pool else "")
    return (f"{n.name} = {head}({', '.join(n.args)})"
            + _opts(std=None if n.vector else n.std, lr=None if n.lr == 1 else n.lr, b_std=n.b_std,
                    b_lr=None if n.b_lr == 1 else n.b_lr)
            + (f" vector={n.vector}" if n.vector else ""))


PRINTERS: dict[type, Callable] = {
    Data: lambda n: f"data {n.name}" + (f"[{n.length}]" if n.length is not None else ""),
    InputLayer: _param("input"),
    Matrix: _param("matrix"),
    Bias: _param("bias"),
    Embed: lambda n: f"{n.name} = {n.layer} {n.data}" + (f"[{n.step}]" if n.step is not None else ""),
    MatMul: lambda n: f"{n.name} = {n.matrix}{'^T' if n.transpose else ''} {n.arg}",
    LinComb: _lincomb,
    Nonlin: _nonlin,
    Readout: _readout,
    Seed: lambda n: f"{n.name} = seed({n.readout}, {n.index})",
}


def line(node: Node) -> str:
    """One node as one line of the listing."""
    return PRINTERS[type(node)](node)


def listing(program: Program) -> str:
    """The whole program: declarations first (in program order), then instructions."""
    decls = [n for n in program if isinstance(n, (Data, InputLayer, Matrix, Bias))]
    instrs = [n for n in program if not isinstance(n, (Data, InputLayer, Matrix, Bias))]
    return "\n".join([f"program {program.name}"] + [line(n) for n in decls + instrs]) + "\n"
