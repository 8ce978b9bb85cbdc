"""Where numba keeps tpkernel's compiled kernels: a user cache directory, never the installed
package.

numba's default (``cache=True``) writes ``__pycache__/*.nbi`` and ``*.nbc`` beside the source
files, i.e. into ``site-packages/tpkernel/``.  pip does not know these files: uninstalling
tpkernel (as ``pip install -e .`` does after ``pip install .``) leaves the directory behind,
and that leftover ``site-packages/tpkernel/`` then shadows the editable install as an empty
namespace package.  :func:`njit` is ``numba.njit`` with the cache redirected to
:func:`cache_dir`, for tpkernel's functions only (numba's global configuration, and so the
user's own numba code, is left as it was).
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path


def _default_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tpkernel" / "numba"


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except (OSError, RuntimeError):  # RuntimeError: Path.home() without a home directory
        return False
    return True


@functools.lru_cache(maxsize=None)
def cache_dir() -> str | None:
    """The directory of the compiled kernels: ``NUMBA_CACHE_DIR`` if the user set it, else
    ``$XDG_CACHE_HOME/tpkernel/numba`` (``~/.cache/tpkernel/numba``; ``~/Library/Caches`` on
    macOS, ``%LOCALAPPDATA%`` on Windows).  None when that directory cannot be created or
    written: the kernels are then compiled afresh in every process, and nothing is written."""
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    try:
        path = Path(chosen).expanduser() if chosen else _default_dir()
    except RuntimeError:  # no home directory to expand
        return None
    return str(path.resolve()) if _writable(path) else None


def njit(*args, **options):
    """``numba.njit``; with ``cache=True`` the cache goes to :func:`cache_dir` (or, when there
    is none, caching is off), never into the package directory."""
    import numba
    if not options.get("cache"):
        return numba.njit(*args, **options)
    where = cache_dir()
    if where is None:
        return numba.njit(*args, **{**options, "cache": False})
    decorate = numba.njit(**options)

    def apply(fn):
        # numba picks the cache locator when the function is decorated (Dispatcher.enable_caching):
        # its first choice, UserProvidedCacheLocator, reads numba.config.CACHE_DIR at that moment
        saved = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = where
        try:
            return decorate(fn)
        finally:
            numba.config.CACHE_DIR = saved

    return apply(args[0]) if args else apply
