"""Every user error of the `tpkernel` command is one line `tpkernel: error: ...` and exit status
2, never a traceback (issue 13): bad numbers for every numeric flag, unknown examples and
formats, missing, malformed and unwritable files, directories given as files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpkernel.cli import main

ROOT = Path(__file__).parent.parent


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A working directory with good and bad input files."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("")
    (tmp_path / "bad.tp").write_text("garbage ((\n")
    (tmp_path / "cycle.tp").write_text("program p\ndata xi\nh = relu(h)\nf = readout(h)\n")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    (tmp_path / "text.npy").write_text("not an array\n")
    (tmp_path / "empty.csv").write_text("")
    np.save(tmp_path / "x.npy", np.ones((3, 3)))
    np.save(tmp_path / "nan.npy", np.full((3, 3), np.nan))
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    np.savez(tmp_path / "two.npz", a=np.ones((2, 3)), b=np.ones((2, 3)))
    return tmp_path


BAD = {
    # numeric flags: zero, negative, not a number
    "show -d 0": ["show", "mlp", "-d", "0"],
    "show -d -2": ["show", "mlp", "-d=-2"],
    "show -n 0": ["show", "mlp", "-n", "0"],
    "show -n x": ["show", "mlp", "-n", "x"],
    "show --seed -1": ["show", "mlp", "--seed=-1"],
    "show --seed 1.5": ["show", "mlp", "--seed", "1.5"],
    "check --widths 0": ["check", "mlp", "--widths", "0", "64"],
    "check --widths x": ["check", "mlp", "--widths", "x"],
    "check one width": ["check", "mlp", "--widths", "64"],
    "check equal widths": ["check", "mlp", "--widths", "64", "64"],
    "check --seeds 0": ["check", "mlp", "--seeds", "0"],
    "check -d 0": ["check", "mlp", "-d", "0"],
    "check -n -1": ["check", "mlp", "-n=-1"],
    "check --data-seed -1": ["check", "mlp", "--data-seed=-1"],
    "formula -T 0": ["formula", "rnn", "-T", "0"],
    "formula -T x": ["formula", "rnn", "-T", "x"],
    "formula -T on an mlp": ["formula", "mlp", "-T", "3"],
    "draw --wrap 0": ["draw", "mlp", "--wrap", "0"],
    "prune -p 1": ["prune", "mlp", "-p", "1"],
    "prune -p nan": ["prune", "mlp", "-p", "nan"],
    "prune -p -0.5": ["prune", "mlp", "-p=-0.5"],
    "prune -p inf": ["prune", "mlp", "-p", "inf"],
    "prune --width 0": ["prune", "mlp", "-p", "0.5", "--width", "0"],
    "prune --seeds 0": ["prune", "mlp", "-p", "0.5", "--width", "8", "--seeds", "0"],
    "prune -d 0": ["prune", "mlp", "-p", "0.5", "-d", "0"],
    "prune --where unknown": ["prune", "mlp", "-p", "0.5", "--where", "W9"],
    "prune --where empty": ["prune", "mlp", "-p", "0.5", "--where", ","],
    # unknown names and choices
    "no command": [],
    "unknown command": ["nosuch"],
    "show unknown example": ["show", "mlp3000"],
    "formula unknown example": ["formula", "nope"],
    "check unknown example": ["check", "nope"],
    "show --style": ["show", "mlp", "--style", "html"],
    "kernel --get": ["kernel", "mlp", "--data", "x.npy", "--get", "both2"],
    "kernel --output unknown": ["kernel", "mlp", "--data", "x.npy", "--output", "nope"],
    "draw --sgd --backward": ["draw", "mlp", "--sgd", "--backward"],
    # listing files: missing, malformed, a directory
    "show missing listing": ["show", "nope.tp"],
    "formula missing listing": ["formula", "nope.tp"],
    "show malformed listing": ["show", "bad.tp"],
    "formula malformed listing": ["formula", "bad.tp"],
    "kernel malformed listing": ["kernel", "bad.tp", "--data", "x.npy"],
    "show cyclic listing": ["show", "cycle.tp"],
    "show a directory": ["show", "adir"],
    # drawings: unknown format, a directory, a folder that does not exist, unwritable
    "show --draw .jpg": ["show", "mlp", "--draw", "out.jpg"],
    "show --draw no suffix": ["show", "mlp", "--draw", "out"],
    "show --draw directory": ["show", "mlp", "--draw", "adir"],
    "show --draw missing folder": ["show", "mlp", "--draw", "nofolder/x.svg"],
    "show --draw under a file": ["show", "mlp", "--draw", "afile/x.svg"],
    "draw -o .jpg": ["draw", "mlp", "-o", "x.jpg"],
    "draw -o directory": ["draw", "mlp", "-o", "adir"],
    "draw -o missing folder": ["draw", "mlp", "-o", "nofolder/x.gv"],
    "draw -o under a file": ["draw", "mlp", "-o", "afile/x.gv"],
    "check --plot format": ["check", "mlp", "--plot", "conv.xyz"],
    "check --plot directory": ["check", "mlp", "--plot", "adir"],
    # data files and kernel outputs
    "kernel no --data": ["kernel", "mlp"],
    "kernel missing data": ["kernel", "mlp", "--data", "nope.npy"],
    "kernel data directory": ["kernel", "mlp", "--data", "adir"],
    "kernel NaN data": ["kernel", "mlp", "--data", "nan.npy"],
    "kernel NaN data2": ["kernel", "mlp", "--data", "x.npy", "--data2", "nan.npy"],
    "kernel strings": ["kernel", "mlp", "--data", "strings.npy"],
    "kernel not an npy": ["kernel", "mlp", "--data", "text.npy"],
    "kernel ragged csv": ["kernel", "mlp", "--data", "ragged.csv"],
    "kernel empty csv": ["kernel", "mlp", "--data", "empty.csv"],
    "kernel two arrays": ["kernel", "mlp", "--data", "two.npz"],
    "kernel unknown data format": ["kernel", "mlp", "--data", "bad.tp"],
    "kernel wrong dimension": ["kernel", "rnn", "--data", "x.npy"],
    "kernel --lengths x": ["kernel", "rnn", "--data", "x.npy", "--lengths", "1,x"],
    "kernel --lengths not sequences": ["kernel", "mlp", "--data", "x.npy", "--lengths", "3,3,3"],
    "kernel unnamed data": ["kernel", "mlp", "--data", "a=x.npy", "--data", "x.npy"],
    "kernel --out format": ["kernel", "mlp", "--data", "x.npy", "--out", "k.txt"],
    "kernel --out directory": ["kernel", "mlp", "--data", "x.npy", "--out", "adir"],
    "kernel --out missing folder": ["kernel", "mlp", "--data", "x.npy", "--out", "nofolder/k.npy"],
    "kernel --out under a file": ["kernel", "mlp", "--data", "x.npy", "--out", "afile/k.npy"],
}


@pytest.mark.parametrize("argv", BAD.values(), ids=BAD.keys())
def test_bad_command_lines(argv, files, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("tpkernel: error: ")]
    assert len(lines) == 1, err
    assert len(lines[0]) > len("tpkernel: error: ") + 10  # says what is wrong


def test_messages_name_what_is_wrong(files, capsys):
    for argv, words in [(["show", "mlp", "-d", "0"], ["show: argument -d", ">= 1", "got 0"]),
                        (["prune", "mlp", "-p", "1"], ["argument -p", "[0, 1)", "got 1"]),
                        (["check", "mlp", "--widths", "64"], ["two different widths", "64"]),
                        (["show", "mlp", "--draw", "adir"], ["--draw", "'adir' is a directory"]),
                        (["draw", "mlp", "-o", "afile/x.gv"], ["cannot write the drawing", "afile/x.gv"]),
                        (["kernel", "mlp", "--data", "x.npy", "--out", "k.txt"], ["--out", "'.txt'", ".npz"]),
                        (["formula", "nope.tp"], ["no such listing file", "nope.tp"])]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        for w in words:
            assert w in err, (argv, err)


def test_output_checked_before_the_work(files, capsys):
    """A bad output path is reported at once, not after the computation."""
    assert main(["show", "mlp", "--draw", "out.jpg"]) == 2
    assert capsys.readouterr().out == ""  # nothing computed or printed
    assert main(["check", "mlp", "--plot", "adir"]) == 2
    assert "relative Frobenius" not in capsys.readouterr().out


NUMERIC = [("show", "mlp", "-n", 1), ("show", "mlp", "-d", 1), ("show", "mlp", "--seed", 0),
           ("check", "mlp", "--seeds", 1), ("check", "mlp", "-n", 1), ("check", "mlp", "-d", 1),
           ("check", "mlp", "--data-seed", 0), ("formula", "rnn", "-T", 1), ("draw", "mlp", "--wrap", 1),
           ("prune", "mlp -p 0.5", "--width", 1), ("prune", "mlp -p 0.5", "--seeds", 1),
           ("prune", "mlp -p 0.5", "-n", 1), ("prune", "mlp -p 0.5", "-d", 1)]


def _not_an_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return True
    return False


@settings(max_examples=60, deadline=None)
@given(flag=st.sampled_from(NUMERIC), data=st.data())
def test_every_numeric_flag_refuses_what_it_cannot_use(flag, data):
    cmd, name, opt, low = flag
    value = data.draw(st.one_of(st.integers(max_value=low - 1).map(str),
                                st.text(max_size=8).filter(_not_an_integer)), label="value")
    argv = [cmd, *name.split(), f"{opt}={value}"]
    res_err = _run_main(argv)
    assert res_err[0] == 2 and res_err[1].splitlines()[-1].startswith("tpkernel: error: "), (argv, res_err)


@settings(max_examples=40, deadline=None)
@given(p=st.one_of(st.floats(allow_nan=True).filter(lambda p: not 0 <= p < 1).map(repr),
                   st.text(max_size=6).filter(lambda t: not _is_float(t))))
def test_prune_p_refuses_what_is_not_a_probability(p):
    code, err = _run_main(["prune", "mlp", f"-p={p}"])
    assert code == 2 and err.splitlines()[-1].startswith("tpkernel: error: ")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _run_main(argv):
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def test_console_errors_have_no_traceback(tmp_path):
    """The real command (a subprocess): exit 2, one line, no traceback."""
    (tmp_path / "afile").write_text("")
    for argv in (["show", "mlp", "-d", "0"], ["draw", "mlp", "-o", "afile/x.svg"],
                 ["kernel", "mlp", "--data", "missing.npy"], ["check", "mlp", "--widths", "8"]):
        res = subprocess.run([sys.executable, "-m", "tpkernel.cli", *argv], capture_output=True, text=True,
                             cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": ""})
        assert res.returncode == 2, (argv, res.stderr)
        assert "Traceback" not in res.stderr and res.stderr.splitlines()[-1].startswith("tpkernel: error: ")
