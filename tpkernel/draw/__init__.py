r"""Drawings of tensor programs in the graphical notation of *Tensor Programs IIb*
(Yang & Littwin, ICML 2021: Fig. 1 forward passes, Fig. 6 backpropagation, Fig. 4 and 7
NETSOR⊤+ scalars and the unrolled SGD step).

- a **hollow circle** is a G-var: an initial vector (an embedding ``Uξ``, a bias ``b``,
  the readout vector ``v``) or the result of a MatMul;
- a **filled circle** is an X-var: the result of a Nonlin;
- a **dashed edge**, labelled with the matrix, is a MatMul ``W x`` from ``x`` to the
  result (weight sharing: the same label on several edges; ``Wᵀ`` in the backward row;
  ``M⊙W`` in red for a pruned matrix);
- a **gate** (a trapezoid, wide side facing its inputs, narrow side emitting the
  result) is a Nonlin, the function written inside with one ``·`` per incoming edge.
  A linear combination read only by gates is *fused* into them, so that φ(W x + b)
  is the single gate ``φ(·+·)`` fed by the MatMul result and the bias; one read by a
  MatMul or a readout (a residual sum) is its own gate ``·+·``; a product is ``·×·``;
- initial vectors have one edge, toward the direction of computation; the readout
  vector ``v`` has one edge, against it; the raw input ξ and the scalar output are not
  nodes;
- in NETSOR⊤+ drawings (:func:`draw_sgd`) a **square** is a scalar and a gate with a
  **bar** on its output side is a Moment ``(1/n) Σ_α ψ(…)``.

Every drawing is a ``graphviz.Digraph``: ``.source`` is the DOT text,
``.pipe(format="svg")`` / ``.render(...)`` give SVG, PNG, PDF.  Nodes and edges carry a
``class`` (``gvar``, ``xvar``, ``gate``, ``moment``, ``scalar``; ``matmul``, ``arg``,
``preact``, ``readout``, ``propagation``) and a plain-text ``tooltip``; :func:`summary`
counts them.

The drawer is a table of rules (:data:`DRAWING`, one method ``_draw_<NodeType>`` per node kind: the
dispatch of sympy's printers).  ``docs/drawings.md`` shows the gallery and lists the
deliberate differences from the paper's figures.
"""

from .api import draw, draw_sgd
from .drawer import DRAWING
from .notation import PRUNED
from .summary import DrawingSummary, _attrs, summary  # noqa: F401  (_attrs: the DOT attribute reader of the tests)

__all__ = ["DRAWING", "PRUNED", "DrawingSummary", "draw", "draw_sgd", "summary"]
