import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import importlib.util
import os
import shutil

import pytest

# What the drawing tests need beyond pip.  Absent, such a test is skipped with the reason, except
# under CI (CI=true), where .ci/run installs Graphviz and pygraphviz comes with the package: there
# the absence is a failure, so that a CI run cannot pass by skipping every rendering test.
_NEEDS = {
    "needs_dot": (lambda: shutil.which("dot") is not None,
                  "Graphviz's dot binary is not on PATH (apt-get install graphviz, brew install graphviz "
                  "or conda install graphviz)"),
    "needs_renderer": (lambda: __import__("tpkernel.render").render.renderer() is not None,
                       "no renderer for drawings: neither Graphviz's dot binary nor pygraphviz, or "
                       "TPKERNEL_RENDERER=none (apt-get install graphviz, or pip install pygraphviz)"),
    "needs_pygraphviz": (lambda: importlib.util.find_spec("pygraphviz") is not None,
                         "pygraphviz is not installed (a dependency of tpkernel on Linux x86-64/aarch64, macOS arm64 "
                         "and Windows x64 only)"),
}


def pytest_runtest_setup(item):
    for name, (available, reason) in _NEEDS.items():
        if item.get_closest_marker(name) is not None and not available():
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true but {reason}", pytrace=False)
            pytest.skip(reason)
