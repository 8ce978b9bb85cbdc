"""A fresh machine (issue 13): drawings without Graphviz's dot binary (tpkernel.render), and
numba's compiled kernels kept out of the installed package (tpkernel._numba_cache)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tpkernel as tp
from tpkernel import _numba_cache, render
from tpkernel.render import RenderError

PACKAGE = Path(tp.__file__).parent
SVG, PNG, PDF = b"<svg", b"\x89PNG\r\n\x1a\n", b"%PDF"


def _env(tmp_path, **extra) -> dict:
    """The environment of a `tpkernel` run on a machine without Graphviz's dot: PATH holds only
    an empty folder (the interpreter is called by its full path)."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TPKERNEL_RENDERER", "NUMBA_CACHE_DIR")}
    env.update(PATH=str(empty), PYTHONPATH=str(PACKAGE.parent), **extra)
    return env


# -- drawings: dot, pygraphviz, or the DOT source ----------------------------------------------

def test_save_without_a_renderer_writes_the_dot_source(tmp_path, monkeypatch):
    monkeypatch.setenv("TPKERNEL_RENDERER", "none")
    assert render.renderer() is None
    g = tp.draw(tp.examples.mlp(2))
    saved = render.save(g, tmp_path / "mlp.svg")
    assert saved.path == tmp_path / "mlp.gv" and not (tmp_path / "mlp.svg").exists()
    assert saved.path.read_text() == g.source
    assert "\n" not in saved.note
    for hint in ("apt-get install graphviz", "brew install graphviz", "conda install graphviz",
                 f"dot -Tsvg {tmp_path / 'mlp.gv'} -o {tmp_path / 'mlp.svg'}"):
        assert hint in saved.note
    with pytest.raises(RenderError, match="TPKERNEL_RENDERER=none"):
        render.pipe(g, "svg")
    # the DOT source needs no renderer
    assert render.save(g, tmp_path / "g.dot") == render.Saved(tmp_path / "g.dot", None)


def test_save_refuses_bad_paths(tmp_path, monkeypatch):
    g = tp.draw(tp.examples.mlp(2))
    with pytest.raises(RenderError, match=r"unknown drawing format '\.jpg'"):
        render.save(g, tmp_path / "x.jpg")
    with pytest.raises(RenderError, match="is a directory"):
        render.save(g, tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(RenderError, match="cannot write the drawing"):
        render.save(g, tmp_path / "file" / "x.gv")
    monkeypatch.setenv("TPKERNEL_RENDERER", "cairo")
    with pytest.raises(RenderError, match="use dot, pygraphviz, none or auto"):
        render.renderer()


@pytest.mark.needs_pygraphviz
def test_pygraphviz_renders_without_the_dot_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on PATH
    monkeypatch.delenv("TPKERNEL_RENDERER", raising=False)
    assert render.renderer() == "pygraphviz"
    g = tp.draw(tp.examples.rnn(3), backward=True, legend=True)
    svg = render.pipe(g, "svg")
    assert SVG in svg[:400] and svg.rstrip().endswith(b"</svg>")
    # the notation survives: trapezium gates (4-point polygons), HTML labels (<i>U</i>), dashed W edges
    text = svg.decode()
    assert text.count('stroke-dasharray') >= g.source.count("style=dashed")
    assert "font-style=\"italic\"" in text and "<polygon" in text
    assert render.pipe(g, "png").startswith(PNG) and render.pipe(g, "pdf").startswith(PDF)
    saved = render.save(tp.draw_sgd(tp.examples.mlp(2)), tmp_path / "sgd.svg")
    assert saved.note is None and SVG in saved.path.read_bytes()[:400]
    with pytest.raises(RenderError, match="pygraphviz could not render"):
        render.pipe(g, "no-such-format")


@pytest.mark.needs_dot
def test_dot_binary_is_preferred(monkeypatch):
    monkeypatch.delenv("TPKERNEL_RENDERER", raising=False)
    assert render.renderer() == "dot"
    g = tp.draw(tp.examples.mlp(2))
    assert render.pipe(g, "svg") == g.pipe(format="svg")


def test_main_job_without_graphviz(tmp_path):
    """The README's main job on a machine with neither dot nor pygraphviz: everything printed,
    the DOT source written, one line on how to render it, exit 0."""
    res = subprocess.run([sys.executable, "-m", "tpkernel.cli", "show", "mlp"], capture_output=True, text=True,
                         cwd=tmp_path, env=_env(tmp_path, TPKERNEL_RENDERER="none"))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "NNGP" in res.stdout and "Recurrences" in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "mlp2.gv"]
    assert (tmp_path / "mlp2.gv").read_text() == tp.draw(tp.examples.get("mlp")).source
    (line,) = [ln for ln in res.stdout.splitlines() if "mlp2.gv" in ln]
    assert "apt-get install graphviz" in line and "dot -Tsvg mlp2.gv -o mlp2.svg" in line
    res = subprocess.run([sys.executable, "-m", "tpkernel.cli", "draw", "rnn", "--backward", "-o", "r.pdf"],
                         capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path, TPKERNEL_RENDERER="none"))
    assert res.returncode == 0 and (tmp_path / "r.gv").is_file() and "dot -Tpdf r.gv -o r.pdf" in res.stdout


@pytest.mark.needs_pygraphviz
def test_main_job_with_pygraphviz_only(tmp_path):
    res = subprocess.run([sys.executable, "-m", "tpkernel.cli", "show", "mlp", "--no-formula"], capture_output=True,
                         text=True, cwd=tmp_path, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "written to mlp2.svg" in res.stdout and SVG in (tmp_path / "mlp2.svg").read_bytes()[:400]


# -- numba's cache: a user directory, never the package ----------------------------------------

def _compiled_files(root: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.suffix in (".nbi", ".nbc")}


def test_cache_dir_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _numba_cache.cache_dir.cache_clear()
    try:
        if sys.platform.startswith("linux"):
            assert _numba_cache.cache_dir() == str((tmp_path / "xdg" / "tpkernel" / "numba").resolve())
        monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
        _numba_cache.cache_dir.cache_clear()
        assert _numba_cache.cache_dir() == str((tmp_path / "mine").resolve())
        (tmp_path / "file").write_text("")
        monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "file" / "numba"))  # cannot be created
        _numba_cache.cache_dir.cache_clear()
        assert _numba_cache.cache_dir() is None
    finally:
        _numba_cache.cache_dir.cache_clear()


def _add_one(x):
    return x + 1


def test_njit_redirects_only_its_own_functions(tmp_path, monkeypatch):
    numba = pytest.importorskip("numba")
    before = numba.config.CACHE_DIR
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    _numba_cache.cache_dir.cache_clear()
    try:
        f = _numba_cache.njit(cache=True)(_add_one)
        assert Path(f._cache._cache_path).is_relative_to((tmp_path / "mine").resolve())
        assert numba.config.CACHE_DIR == before  # restored after decorating
        assert f(1) == 2 and list((tmp_path / "mine").rglob("*.nbi"))
        # an unwritable cache directory: no cache at all (never numba's fallback, the package directory)
        (tmp_path / "file").write_text("")
        monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "file" / "numba"))
        _numba_cache.cache_dir.cache_clear()
        g = _numba_cache.njit(cache=True)(_add_one)
        assert type(g._cache).__name__ == "NullCache" and g(2) == 3
        assert not list(Path(__file__).parent.rglob("*.nbi"))
    finally:
        _numba_cache.cache_dir.cache_clear()


def test_compiled_kernels_go_to_the_user_cache(tmp_path):
    """End to end in a fresh process: a fused (numba) kernel computation writes its compiled
    kernels under $XDG_CACHE_HOME/tpkernel/numba and nothing into the package directory, and
    numba's global CACHE_DIR (the user's own numba code) is left as it was."""
    pytest.importorskip("numba")
    before = _compiled_files(PACKAGE)
    code = ("import numpy as np, numba, tpkernel as tp\n"
            "from tpkernel.limit import fused\n"
            "assert fused.USE_NUMBA\n"
            "X = np.random.default_rng(0).standard_normal((40, 3))\n"
            "k = tp.kernels(tp.examples.get('mlp'), X)\n"
            "from tpkernel.limit import _fused_jit\n"
            "print(repr(numba.config.CACHE_DIR), _fused_jit._chain._cache._cache_path)\n")
    env = _env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "xdg"), TPKERNEL_NUMBA="1")
    env["PATH"] = os.environ.get("PATH", "")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    global_dir, chain_dir = res.stdout.split()
    assert global_dir == "''"  # numba's own setting: unchanged
    cache = (tmp_path / "xdg" / "tpkernel" / "numba").resolve()
    assert Path(chain_dir).is_relative_to(cache)
    written = list(cache.rglob("_fused_jit.*.nbi"))
    assert any("_chain" in p.name for p in written) and list(cache.rglob("_fused_jit.*.nbc"))
    assert _compiled_files(PACKAGE) == before
