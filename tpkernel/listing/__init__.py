r"""The text listing of a program: a small language close to the programs printed in the
Tensor Programs papers, with a grammar (lark), a parser whose errors give line and column,
a printer, and a unicode / LaTeX rendering in the papers' algorithm style.

::

    program mlp2
    data xi                      # a vector ξ ∈ R^d       (data x[T]: a sequence x[0..T-1])
    input U std=1.5              # σ_U U ξ / √d            (an input layer)
    matrix W2 std=1.5            # σ_W W x / √n            (an n×n matrix; lr=..., mask=p)
    bias b1 std=0.1              # σ_b β                   (an initial vector)
    h1 = U xi                    # Embed                   (U x[t] for step t)
    h2 = h1 + b1                 # LinComb: 2*a - 0.5*b + 1
    x1 = relu(h2)                # Nonlin: abrelu[a, b](h), leaky_relu[0.1](h), erf(h), ...
    h3 = W2 x1                   # MatMul                  (W2^T x1, or W2ᵀ x1, for Wᵀ)
    p1 = x1 * x2                 # the product Nonlin
    f = readout(x2) std=1.5 b_std=0.1    # readout[last](s1, s2, s3) pools a sequence

The printer writes exactly one instruction per line, every node with its name, so
``parse(program.listing())`` rebuilds the very same nodes.  The parser also accepts
*compound* expressions, as the papers write them (``x1 := relu(W2 x0 + b1)``,
``s2 = erf(W s1 + U x[2] + b)``); each sub-expression becomes a node named after the
assignment (``x1_1``, ``x1_2``, ...).  ``:=`` may be written for ``=``; ``#`` starts a comment.

Grammar (:data:`GRAMMAR`; reserved words: ``program data input matrix bias readout``)::

    statement  := "program" NAME | "data" NAME ["[" T "]"]
                | ("input" | "matrix" | "bias") NAME option*
                | NAME "=" "readout" ["[" pool "]"] "(" expr, ... ")" option*
                | NAME "=" expr
    expr       := ["+"|"-"] term (("+"|"-") term)*
    term       := factor (("*"|"/") factor)*             # a·x, x·y (product), x/2
    factor     := NUMBER | NAME | NAME "[" numbers "]"   # data step x[t]
                | NAME ["[" numbers "]"] "(" expr, ... ")"   # φ[params](args), W(x)
                | NAME ["^T"|"ᵀ"] factor                 # W x, Wᵀ x, U x[t]
                | "(" expr ")"
    option     := NAME "=" (number | NAME) | NAME        # std=1.5 lr=2 mask=0.5 rescale

Errors are :class:`ListingError` (a :class:`~tpkernel.errors.ProgramError`) with ``.line``,
``.column`` (1-based), ``.kind`` and the offending source line.

The printer is a table of one function per node kind (as SymPy's printers dispatch on the
class).  Each parameter's ``lr`` is printed only when it is not 1.
"""

from .parser import CALLS, GRAMMAR, ListingError, parse, parse_file
from .printer import DECLARATIONS, PRINTERS, line, text
from .style import ALGORITHM, render


def listing(program, style: str = "text") -> str:
    """The whole program: declarations first (in program order), then instructions.

    ``style="text"`` is the parseable listing; ``"unicode"`` and ``"latex"`` render it in
    the algorithm style of the Tensor Programs papers (see :func:`render`).
    """
    return text(program) if style == "text" else render(program, style)

__all__ = ["listing", "line", "parse", "parse_file", "render", "ListingError", "GRAMMAR", "PRINTERS",
           "ALGORITHM", "CALLS", "DECLARATIONS"]
