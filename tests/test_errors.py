"""Bad input gets a specific error whose message names the node (or data) at fault."""

import numpy as np
import pytest

import tpkernel as tp
from tpkernel.ir import Data, Embed, InputLayer, LinComb, MatMul, Matrix, Nonlin, Program, Readout
from tpkernel.nonlin import get


def mlp_nodes():
    return [Data("xi"), InputLayer("U"), Embed("h1", "U", "xi"), Nonlin("x1", get("relu"), ("h1",)),
            Readout("f", ("x1",))]


def test_cycle_is_named():
    nodes = mlp_nodes()[:3] + [Matrix("W"), MatMul("h2", "W", "x2"), Nonlin("x2", get("relu"), ("h2",)),
                               LinComb("h3", ("h1", "x2"), (1.0, 1.0)), Readout("f", ("h3",))]
    with pytest.raises(tp.ProgramError, match=r"cycle: (h2 -> x2|x2 -> h2)"):
        Program.from_nodes("loop", nodes)


def test_from_nodes_sorts_and_reports_undefined():
    p = Program.from_nodes("mlp", list(reversed(mlp_nodes())))
    assert [n.name for n in p] == ["U", "xi", "h1", "x1", "f"]  # ties keep the given order
    with pytest.raises(tp.ProgramError, match="'x1' reads 'h9'"):
        Program.from_nodes("bad", mlp_nodes()[:3] + [Nonlin("x1", get("relu"), ("h9",))])


def test_undefined_and_duplicate_names():
    p = Program("p")
    p.add(Data("xi"))
    with pytest.raises(tp.ProgramError, match="'h1' reads 'U'"):
        p.add(Embed("h1", "U", "xi"))
    with pytest.raises(tp.ProgramError, match="duplicate node name 'xi'"):
        p.add(Data("xi"))


def test_dangling_parameter_is_named():
    p = tp.Program("p")
    xi = p.data("xi")
    U = p.input_layer("U")
    p.matrix("W_unused")
    p.output(tp.relu(U @ xi))
    with pytest.raises(tp.ProgramError, match="parameter 'W_unused' is defined but never used"):
        tp.kernels(p, np.ones((2, 3)))


def test_dangling_vector_is_named():
    p = tp.Program("p")
    xi = p.data("xi")
    h = p.input_layer("U") @ xi
    tp.erf(h, name="lost")
    p.output(tp.relu(h))
    with pytest.raises(tp.ProgramError, match="vector 'lost' is defined but never used"):
        tp.kernels(p, np.ones((2, 3)))


def test_unknown_nonlinearity():
    with pytest.raises(tp.UnknownNonlinearityError, match="'swishy'"):
        get("swishy")


def test_wrong_arity_names_node():
    p = Program("p")
    for n in mlp_nodes()[:3]:
        p.add(n)
    with pytest.raises(tp.ProgramError, match="x1: erf takes 1 argument"):
        p.add(Nonlin("x1", get("erf", arity=1).__class__(get("erf").family, (), 2), ("h1", "h1")))
    with pytest.raises(tp.ProgramError, match="takes 1 argument"):
        get("erf", arity=2)


def test_matrix_applied_to_data_or_input_layer_to_vector():
    p = tp.Program("p")
    xi = p.data("xi")
    W = p.matrix("W")
    with pytest.raises(tp.ProgramError, match="matrix 'W' applied to 'xi'.*not a vector"):
        p.add(MatMul("h1", "W", "xi"))
    U = p.input_layer("U")
    h = U @ xi
    with pytest.raises(tp.ProgramError, match="'U' is an input layer"):
        p.add(MatMul("h2", "U", h.name))
    assert W is not None


def test_readout_vector_reused_is_not_bp_like():
    p = tp.Program("p")
    xi = p.data("xi")
    b = p.bias("v", std=1.0)
    x = tp.relu(p.input_layer("U") @ xi + b)
    p.output(x, vector=b)
    with pytest.raises(tp.NotBPLikeError, match="readout vector 'v'.*also used"):
        tp.kernels(p, np.ones((2, 3)))


def test_forward_transpose_is_refused_not_computed():
    p = tp.Program("p")
    xi = p.data("xi")
    W = p.matrix("W")
    x = tp.relu(p.input_layer("U") @ xi)
    y = tp.relu(W @ x)
    p.output(W.T @ y)
    with pytest.raises(tp.NotBPLikeError, match="matrix 'W' is used both as W and as Wᵀ.*not supported yet"):
        tp.kernels(p, np.ones((2, 3)))


def test_shape_errors_name_the_data():
    p = tp.examples.mlp(2)
    with pytest.raises(tp.ShapeError, match="'xi'.*expected an array \\(N, d\\)"):
        tp.kernels(p, np.ones((2, 3, 4)))
    with pytest.raises(tp.ShapeError, match="input layer 'U' reads data of dimension 3"):
        tp.kernels(p, np.ones((2, 3)), np.ones((2, 4)))
    r = tp.examples.rnn(4)
    with pytest.raises(tp.ShapeError, match="'xi' is a sequence of length 4"):
        tp.kernels(r, np.ones((2, 3, 5)))
    with pytest.raises(tp.ShapeError, match="lengths must be in 1..4"):
        tp.kernels(r, [np.ones((5, 2)), np.ones((2, 2))])


def test_unpooled_readout_beyond_a_short_sequence():
    p = tp.Program("p")
    x = p.data("x", length=3)
    U, W = p.input_layer("U"), p.matrix("W")
    s = tp.erf(U @ x[0])
    for t in (1, 2):
        s = tp.erf(W @ s + U @ x[t], name=f"s{t}")
    p.output(s)
    with pytest.raises(tp.ShapeError, match="reads 's2', which depends on step 2 of 'x', but example 1 has length 2"):
        tp.kernels(p, [np.ones((3, 2)), np.ones((2, 2))])


def test_non_finite_data_names_example():
    X = np.ones((3, 4))
    X[2, 1] = np.nan
    with pytest.raises(tp.NumericalError, match="data 'xi' has a NaN or infinite entry \\(example 2, coordinate 1: nan\\)"):
        tp.kernels(tp.examples.mlp(1), X)
    X[2, 1] = np.inf
    with pytest.raises(tp.NumericalError, match="example 2"):
        tp.kernels(tp.examples.mlp(1), np.ones((1, 4)), X)


def test_bad_parameters_are_named():
    p = tp.Program("p")
    with pytest.raises(tp.ProgramError, match="W: std must be a finite number >= 0"):
        p.matrix("W", std=-1.0)
    with pytest.raises(tp.ProgramError, match="W2: lr must be"):
        p.matrix("W2", lr=float("nan"))


def test_diverging_expectation_is_an_error_not_a_number():
    p = tp.Program("p")
    xi = p.data("xi")
    p.output(tp.gaussian(p.input_layer("U", std=3.0) @ xi, a=1.0, b=1.0))  # E[exp(u²)] = ∞ for q >= 1/2
    with pytest.raises(tp.NumericalError, match=r"E\[gauss\[1, 1\]\(u\)·gauss\[1, 1\]\(v\)\] diverges at variances \(9, 9\)"):
        with np.errstate(invalid="ignore", divide="ignore"):
            tp.kernels(p, np.ones((2, 3)))


def test_several_readouts_need_a_choice():
    p = tp.Program("p")
    xi = p.data("xi")
    x = tp.relu(p.input_layer("U") @ xi)
    p.output(x, name="f1")
    p.output(x, name="f2")
    with pytest.raises(tp.ProgramError, match="2 readouts \\(f1, f2\\)"):
        tp.kernels(p, np.ones((2, 3)))
    k = tp.kernels(p, np.ones((2, 3)), output="f2")
    assert k.ntk.shape == (2, 2)


def test_errors_reach_the_cli_as_messages(capsys):
    from tpkernel.cli import main
    assert main(["show", "nope"]) == 2
    assert "unknown example 'nope'" in capsys.readouterr().err
