"""Each closed form E[φ(u)ψ(v)] and E[φ(u)] is defined once (nonlin.CLOSED_FORMS /
nonlin.MEAN_FORMS, functions of a math back end) and both tables are made from it: the NumPy
rules of the evaluator and the sympy rules of the formulas.  They agree on random covariances,
near-collinear pairs included (sympy evaluated at 40 digits from the exact float inputs)."""

import functools
import math

import mpmath
import numpy as np
import pytest
import sympy

from tpkernel import nonlin as nl

#: parameters of every family with a closed form (several per family: signs, scales)
PARAMS = {
    "abrelu": [(0.0, 1.0), (-0.3, 1.2), (-1.0, 1.0)], "abstep": [(0.0, 1.0), (0.4, 1.3)], "erf": [()],
    "gauss": [(2 / math.sqrt(math.pi), -1.0), (0.7, -0.4), (1.0, 0.1)], "xgauss": [(1.2, -0.5), (1.0, 0.1)],
    "sin": [(0.0,), (math.pi / 2,), (0.3,)], "exp": [()], "gelu": [()], "dgelu": [()],
    "power": [(1.0,), (2.0,), (3.0,), (4.0,)], "cpower": [(2.0, 1.5), (3.0, -0.5)],
    "tanh": [()], "sigmoid": [()],
}
Q1, Q2, C = sympy.symbols("q1 q2 c", real=True)


def covariances(seed=0):
    """(q1, q2, c): random correlations and pairs within 1e-4 .. 1e-12 of ±1 (above the
    collinearity threshold nl.COLLINEAR, where the NumPy residual is exactly 0)."""
    rng = np.random.default_rng(seed)
    q1, q2 = rng.uniform(0.05, 0.45, 24), rng.uniform(0.05, 0.45, 24)  # (gauss(a, 0.1) converges)
    near = 1 - 10.0 ** -rng.uniform(4, 12, 8)
    rho = np.concatenate([rng.uniform(-0.99, 0.99, 16), near[:4], -near[4:]])
    return q1, q2, rho * np.sqrt(q1) * np.sqrt(q2)


def test_every_rule_is_made_from_one_definition_in_both_back_ends():
    assert set(nl.CLOSED_FORMS) <= set(nl.PAIR_RULES) and set(nl.CLOSED_FORMS) == set(nl.SYMPY_PAIR_RULES)
    for key, form in nl.CLOSED_FORMS.items():
        for table, back in ((nl.PAIR_RULES, nl.NUMPY), (nl.SYMPY_PAIR_RULES, nl.SYMPY)):
            rule = table[key]
            assert isinstance(rule, functools.partial) and rule.func is form and rule.args == (back,), key
    assert set(nl.MEAN_FORMS) == set(nl.SYMPY_MEAN_RULES)
    for name, form in nl.MEAN_FORMS.items():
        rule = nl.SYMPY_MEAN_RULES[name]
        assert rule.func is form and rule.args == (nl.SYMPY,), name
        assert nl.REGISTRY[name].mean.form_name == name, name  # the family's numeric mean: the same form
    # every family of the registry with a mean has it from MEAN_FORMS (no other numeric mean)
    assert {n for n, f in nl.REGISTRY.items() if f.mean is not None} == set(nl.MEAN_FORMS)
    # the pair rules of the families' keys are exactly those with a closed form
    assert {k for k in nl.PAIR_RULES if k[0] in nl.REGISTRY and k[1] in nl.REGISTRY} == set(nl.CLOSED_FORMS)


def _exact(expr, args, values):
    """expr at the exact values of the float inputs, to 40 digits."""
    f = sympy.lambdify(args, expr, "mpmath")
    with mpmath.workdps(40):
        return np.array([float(f(*(mpmath.mpf(float(v)) for v in vs))) for vs in zip(*values)])


@pytest.mark.parametrize("key", sorted(nl.CLOSED_FORMS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_pair_rules_agree_between_the_back_ends(key):
    q1, q2, c = covariances()
    rho = c / (np.sqrt(q1) * np.sqrt(q2))
    for p1 in PARAMS[key[0]]:
        for p2 in PARAMS[key[1]]:
            num = nl.PAIR_RULES[key](p1, p2, q1, q2, c)
            expr = nl.SYMPY_PAIR_RULES[key](p1, p2, Q1, Q2, C)
            exact = _exact(expr, (Q1, Q2, C), (q1, q2, c))
            err = np.abs(num - exact) / np.maximum(1.0, np.abs(exact))
            # near ±1 the angle θ ≈ √(2(1 − |ρ|)) of the arc-cosine kernels is conditioned as ε/θ
            assert np.all(err <= 1e-12 + 4e-16 / np.sqrt(1 - np.abs(rho))), (key, p1, p2, np.max(err))


@pytest.mark.parametrize("name", sorted(nl.MEAN_FORMS))
def test_mean_rules_agree_between_the_back_ends(name):
    q = np.concatenate([covariances()[0], [1e-3, 1.0, 2.0]])
    Q = sympy.Symbol("q", positive=True)
    for p in PARAMS[name]:
        num = np.broadcast_to(nl.REGISTRY[name].mean(p, q), q.shape)
        exact = _exact(nl.SYMPY_MEAN_RULES[name](p, Q), (Q,), (q,))
        assert np.allclose(num, exact, rtol=1e-13, atol=1e-15), (name, p)
        assert np.allclose(nl.mean_rule(nl.get(name, *p))(q), exact, rtol=1e-13, atol=1e-15)


def test_the_sympy_forms_print_the_textbook_closed_forms():
    q1, q2, c = Q1, Q2, C
    relu = nl.sympy_pair_rule(nl.get("relu"), nl.get("relu"))(q1, q2, c)
    s = sympy.sqrt(sympy.Max(q1 * q2 - c ** 2, 0))
    assert relu == (s + (sympy.pi - sympy.atan2(s, c)) * c) / (2 * sympy.pi)
    erf = nl.sympy_pair_rule(nl.get("erf"), nl.get("erf"))(q1, q2, c)
    assert erf == 2 / sympy.pi * sympy.asin(2 * c / sympy.sqrt((1 + 2 * q1) * (1 + 2 * q2)))
    d = nl.get("erf").derivative()
    gauss = nl.sympy_pair_rule(d, d)(q1, q2, c)
    assert sympy.simplify(gauss - 4 / sympy.pi / sympy.sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * c ** 2)) == 0
    assert not gauss.has(sympy.Max)  # hypot forms print as the determinant
