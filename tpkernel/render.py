"""Rendering a drawing (a ``graphviz.Digraph`` from :mod:`tpkernel.draw`) to SVG, PNG or PDF,
with or without Graphviz installed on the system.

Renderers, in order of preference (``TPKERNEL_RENDERER=dot|pygraphviz|none`` forces one):

- ``dot``: Graphviz's ``dot`` program on the PATH (what ``Digraph.pipe`` runs);
- ``pygraphviz``: the Graphviz library inside pygraphviz's wheels (a dependency of tpkernel
  on the platforms it has wheels for: Linux x86-64 and aarch64, macOS arm64, Windows x64),
  so that ``pip install`` alone draws;
- none: :func:`save` writes the DOT source instead (``NAME.gv``) and says how to render it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import graphviz

from .errors import TPKernelError

#: the formats a drawing is rendered to, and the suffixes of its DOT source
FORMATS = ("svg", "png", "pdf")
SOURCE_SUFFIXES = ("dot", "gv")

INSTALL_HINT = "apt-get install graphviz, brew install graphviz or conda install graphviz"


class RenderError(TPKernelError):
    """A drawing that cannot be rendered: no renderer, an unknown format, or Graphviz failed."""


def renderer() -> str | None:
    """``"dot"``, ``"pygraphviz"`` or None: what :func:`pipe` would use now."""
    choice = os.environ.get("TPKERNEL_RENDERER", "auto").strip().lower() or "auto"
    if choice not in ("auto", "dot", "pygraphviz", "none"):
        raise RenderError(f"TPKERNEL_RENDERER={choice!r}: use dot, pygraphviz, none or auto")
    if choice in ("auto", "dot") and shutil.which("dot") is not None:
        return "dot"
    if choice in ("auto", "pygraphviz") and importlib.util.find_spec("pygraphviz") is not None:
        return "pygraphviz"
    return None


def _no_renderer() -> str:
    forced = os.environ.get("TPKERNEL_RENDERER", "auto").strip().lower()
    if forced not in ("", "auto"):
        return f"TPKERNEL_RENDERER={forced} and that renderer is not available"
    return "Graphviz's dot is not installed (and pygraphviz is not importable)"


def pipe(graph: graphviz.Digraph, fmt: str = "svg") -> bytes:
    """The drawing rendered to ``fmt`` (any Graphviz output format: svg, png, pdf, plain, ...)
    by :func:`renderer`; a :class:`RenderError` when there is none or Graphviz fails."""
    which = renderer()
    if which == "dot":
        try:
            return graph.pipe(format=fmt)
        except graphviz.ExecutableNotFound:  # on the PATH a moment ago, not runnable now
            which = "pygraphviz" if importlib.util.find_spec("pygraphviz") is not None else None
        except graphviz.CalledProcessError as err:
            msg = (err.stderr or b"").decode(errors="replace").strip() or str(err)
            raise RenderError(f"dot could not render the drawing as {fmt}: {msg}") from None
    if which == "pygraphviz":
        import pygraphviz
        try:
            return pygraphviz.AGraph(string=graph.source).draw(format=fmt, prog="dot")
        except (ValueError, TypeError, OSError) as err:  # DotError is a ValueError
            raise RenderError(f"pygraphviz could not render the drawing as {fmt}: {err}") from None
    raise RenderError(f"cannot render the drawing: {_no_renderer()} ({INSTALL_HINT})")


@dataclass(frozen=True)
class Saved:
    """What :func:`save` wrote: ``path``, and ``note`` (one line) when it is the DOT source
    instead of the rendered drawing that was asked for (None when rendered as asked)."""

    path: Path
    note: str | None = None


def save(graph: graphviz.Digraph, path: str | os.PathLike) -> Saved:
    """Write the drawing to ``path``, in the format its suffix names (.svg, .png, .pdf; .dot or
    .gv for the DOT source).  Without a renderer the DOT source goes to ``path`` with the
    suffix .gv, and :attr:`Saved.note` says why and how to render it.  Errors (an unknown
    suffix, a path that cannot be written) are :class:`RenderError`."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if path.is_dir():
        raise RenderError(f"{str(path)!r} is a directory; give a file name such as {path / 'drawing.svg'}")
    if fmt not in FORMATS + SOURCE_SUFFIXES:
        raise RenderError(f"{str(path)!r}: unknown drawing format {path.suffix or '(no suffix)'!r} "
                          f"(use .svg, .png, .pdf, or .dot/.gv for the DOT source)")
    note = None
    if fmt in SOURCE_SUFFIXES:
        data = graph.source.encode()
    elif renderer() is None:
        source = path.with_suffix(".gv")
        note = (f"{_no_renderer()}: wrote the DOT source to {source}; render it with "
                f"`dot -T{fmt} {source} -o {path}` after {INSTALL_HINT}")
        path, data = source, graph.source.encode()
    else:
        data = pipe(graph, fmt)
    try:
        path.write_bytes(data)
    except OSError as err:
        raise RenderError(f"cannot write the drawing to {str(path)!r}: {err.strerror or err}") from None
    return Saved(path, note)
