"""Every ```python block of the docs and the README runs (blocks of one page share a namespace)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
# pages whose examples render a drawing (tpkernel.render: Graphviz's dot or pygraphviz)
RENDERS = [pytest.param(p, marks=pytest.mark.needs_renderer) if "render import" in p.read_text() else p
           for p in PAGES]


@pytest.mark.parametrize("page", RENDERS, ids=lambda p: p.name)
def test_python_blocks_run(page):
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)
