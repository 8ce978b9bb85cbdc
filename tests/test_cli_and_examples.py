"""The `tpkernel` command, the built-in examples and the listing."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tpkernel as tp
from tpkernel.cli import main


@pytest.mark.needs_renderer
@pytest.mark.parametrize("name", list(tp.examples.EXAMPLES))
def test_show_every_example(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # show writes its drawing to the working directory
    assert main(["show", name]) == 0
    out = capsys.readouterr().out
    assert out.startswith("program ") and "NNGP" in out and "NTK" in out
    assert "readout" in out
    (svg,) = tmp_path.glob("*.svg")
    assert f"written to {svg.name}" in out and svg.read_text().lstrip().startswith("<?xml")


def test_console_script_help(tmp_path):
    exe = [sys.executable, "-m", "tpkernel.cli"]
    res = subprocess.run(exe + ["--help"], capture_output=True, text=True, check=True)
    assert "show" in res.stdout and "examples" in res.stdout
    # run in tmp_path, importing the tpkernel under test (this checkout), whatever else is installed
    env = {**os.environ, "PYTHONPATH": str(Path(tp.__file__).parent.parent)}
    res = subprocess.run(exe + ["show", "mlp", "-n", "3", "-d", "5"], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env=env)
    assert "3 vectors in R^5 of norm √d" in res.stdout


def test_examples_listing_is_readable():
    text = tp.examples.rnn(3, "erf", "mean", b_std=0.1).listing()
    assert "data xi[3]" in text and "matrix W std=1" in text
    assert "s2 = erf(h" in text and "f = readout[mean](s1, s2, s3)" in text
    g = tp.examples.gated(2).listing()
    assert "s1 = z1 * c1" in g and "z2 = sigmoid(" in g


def test_examples_share_weights_across_time():
    p = tp.examples.rnn(4)
    matmuls = [n for n in p if type(n).__name__ == "MatMul"]
    assert len(matmuls) == 3 and {m.matrix for m in matmuls} == {"W"}
    embeds = [n for n in p if type(n).__name__ == "Embed"]
    assert [e.step for e in embeds] == [0, 1, 2, 3] and {e.layer for e in embeds} == {"U"}


def test_builder_pending_sums_are_written_once():
    p = tp.Program("p")
    xi = p.data("xi")
    W = p.matrix("W")
    b = p.bias("b")
    x = tp.relu(p.input_layer("U") @ xi)
    h = W @ x + b
    y = tp.relu(h) * tp.erf(h)
    p.output(2.0 * y - x / 4 + 1.0)
    kinds = [type(n).__name__ for n in p]
    assert kinds.count("LinComb") == 2  # h once, the output sum once
    lc = [n for n in p if type(n).__name__ == "LinComb"][-1]
    assert lc.coeffs == (2.0, -0.25) and lc.const == 1.0
    with pytest.raises(tp.ProgramError, match="belongs to program"):
        q = tp.Program("q")
        q.output(x)


def test_graph_view():
    g = tp.examples.mlp(2).graph
    assert g.has_edge("U", "h1") and g.has_edge("x2", "f")
    import networkx as nx
    assert nx.is_directed_acyclic_graph(g)


def test_sample_data_fits_examples():
    for name in tp.examples.EXAMPLES:
        p = tp.examples.get(name)
        k = tp.kernels(p, tp.examples.sample_data(p, n=3))
        assert k.ntk.shape == (3, 3) and np.all(np.isfinite(k.ntk))
