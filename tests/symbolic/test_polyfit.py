"""Direct polynomial fits (kanlens.symbolic.polyfit) and their place in symbolic_regression."""

import math

import numpy as np
import pytest
import sympy
import torch

from kanlens import create_dataset
from kanlens.symbolic.formula import noise_floor
from kanlens.symbolic.polyfit import monomial_exponents, polynomial_candidates
from kanlens.symbolic.search import symbolic_regression

X = sympy.symbols("x1:5")
x1, x2, x3 = X[:3]


def _data(f, n_vars, lo=-1.0, hi=1.0, dtype=np.float32, n=600, seed=0):
    rng = np.random.default_rng(seed)
    x, xt = rng.uniform(lo, hi, (n, n_vars)), rng.uniform(lo, hi, (n, n_vars))
    y = np.asarray(f(x), float).reshape(n, -1).astype(dtype).astype(float)
    yt = np.asarray(f(xt), float).reshape(n, -1).astype(dtype).astype(float)
    return x, y, xt, yt, noise_floor(y, dtype)


def _clean(e):
    return sympy.nsimplify(e, tolerance=1e-6, rational=True)


def test_monomial_exponents_lists_every_monomial_once_lowest_degree_first():
    exps = monomial_exponents(3, 4)
    assert len(exps) == math.comb(3 + 4, 4) == len(set(exps))
    assert exps[0] == (0, 0, 0) and exps[1:4] == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert [sum(e) for e in exps] == sorted(sum(e) for e in exps)
    assert monomial_exponents(2, 0) == [(0, 0)]


@pytest.mark.parametrize(
    "f, truth, n_vars, lo, hi, name",
    [
        (lambda x: x[:, 0] ** 3 - 2 * x[:, 0] * x[:, 1], x1**3 - 2 * x1 * x2, 2, -1, 1, "identity"),
        (lambda x: 1 / (1 + x[:, 0] * x[:, 1]), 1 / (1 + x1 * x2), 2, 0.5, 2, "reciprocal"),
        (lambda x: np.exp(-x[:, 0] * x[:, 1]), sympy.exp(-x1 * x2), 2, 0, 2, "log"),
        (lambda x: -np.sqrt(1 + x[:, 0] ** 2 + x[:, 1] ** 2), -sympy.sqrt(1 + x1**2 + x2**2), 2, -2, 2, "square"),
        (lambda x: x[:, 0] * x[:, 1] * x[:, 2] / 2 + x[:, 1] ** 2, x1 * x2 * x3 / 2 + x2**2, 3, -1, 1, "identity"),
    ],
)
def test_exact_polynomials_of_transformed_targets_are_found_and_sparse(f, truth, n_vars, lo, hi, name):
    x, y, xt, yt, floor = _data(f, n_vars, lo, hi)
    found = dict(polynomial_candidates(x, y, xt, yt, X[:n_vars], floor))
    assert name in found
    got = _clean(found[name][0])
    assert sympy.simplify(got - truth) == 0, got
    assert sympy.count_ops(got) <= sympy.count_ops(truth) + 2  # unneeded monomials eliminated


@pytest.mark.parametrize(
    "f, truth, lo, hi",
    [
        (lambda x: x[:, 0] * x[:, 1] / x[:, 2] ** 2, x1 * x2 / x3**2, [1, 1, 1], [2, 2, 2]),
        # x3 is unused and changes sign
        (lambda x: 3 * np.sqrt(x[:, 0] / x[:, 1]), 3 * sympy.sqrt(x1) / sympy.sqrt(x2), [1, 1, -1], [2, 2, 1]),
        (lambda x: -x[:, 0] * (-x[:, 1]) ** 1.5, -x1 * (-x2) ** sympy.Rational(3, 2), [1, -2, 0], [2, -1, 1]),
    ],
)
def test_power_laws_with_real_exponents_are_found_when_no_polynomial_fits(f, truth, lo, hi):
    rng = np.random.default_rng(0)
    x, xt = rng.uniform(lo, hi, (600, 3)), rng.uniform(lo, hi, (600, 3))
    y, yt = f(x).astype(np.float32).astype(float)[:, None], f(xt).astype(np.float32).astype(float)[:, None]
    found = dict(polynomial_candidates(x, y, xt, yt, X[:3], noise_floor(y, np.float32)))
    assert list(found) == ["power law"]
    got = _clean(found["power law"][0])
    assert sympy.simplify(got - truth) == 0, got


def test_float64_labels_use_a_numerical_tolerance_not_the_tiny_label_floor():
    f = lambda x: x[:, 0] ** 3 - 2 * x[:, 0] * x[:, 1] + x[:, 2] ** 2 * x[:, 1]  # noqa: E731
    x, y, xt, yt, floor = _data(f, 3, 1.0, 100.0, dtype=np.float64)
    assert floor < 1e-28
    found = dict(polynomial_candidates(x, y, xt, yt, X[:3], floor))
    assert sympy.simplify(_clean(found["identity"][0]) - (x1**3 - 2 * x1 * x2 + x3**2 * x2)) == 0


@pytest.mark.parametrize(
    "f, n_vars",
    [
        (lambda x: np.exp(np.sin(np.pi * x[:, 0]) + x[:, 1] ** 2), 2),
        (lambda x: np.sin(x[:, 0]), 1),
        (lambda x: x[:, 0] * np.exp(-x[:, 0]), 1),
        (lambda x: np.sqrt(np.abs(x[:, 0])) * x[:, 1], 2),
        (lambda x: np.exp(x[:, 0]) * (x[:, 1] + 2), 2),  # one-signed: the power law is tried, and fails
    ],
)
def test_non_polynomial_targets_give_nothing(f, n_vars):
    x, y, xt, yt, floor = _data(f, n_vars)
    assert polynomial_candidates(x, y, xt, yt, X[:n_vars], floor) == []


def test_noisy_labels_give_nothing_and_a_sign_change_leaves_only_the_identity():
    rng = np.random.default_rng(1)
    x, y, xt, yt, floor = _data(lambda x: x[:, 0] * x[:, 1], 2)
    assert polynomial_candidates(x, y + 1e-3 * rng.standard_normal(y.shape), xt, yt, X[:2], floor) == []
    found = dict(polynomial_candidates(x, y, xt, yt, X[:2], floor))
    assert list(found) == ["identity"]  # x1*x2 changes sign: no 1/y, log(y) or y**2 fit


def test_every_output_must_be_polynomial():
    both = _data(lambda x: np.stack([x[:, 0] * x[:, 1], x[:, 0] ** 2 - x[:, 1]], 1), 2)
    found = dict(polynomial_candidates(*both[:4], X[:2], both[4]))
    assert [sympy.simplify(_clean(e) - t) for e, t in zip(found["identity"], [x1 * x2, x1**2 - x2])] == [0, 0]
    one = _data(lambda x: np.stack([x[:, 0] * x[:, 1], np.sin(x[:, 0])], 1), 2)
    assert polynomial_candidates(*one[:4], X[:2], one[4]) == []


def test_max_degree_and_max_terms_bound_the_fit():
    x, y, xt, yt, floor = _data(lambda x: x[:, 0] ** 4 * x[:, 1], 2)  # degree 5
    assert polynomial_candidates(x, y, xt, yt, X[:2], floor) == []  # default max_degree 4
    found = dict(polynomial_candidates(x, y, xt, yt, X[:2], floor, max_degree=5))
    assert sympy.simplify(_clean(found["identity"][0]) - x1**4 * x2) == 0
    assert polynomial_candidates(x, y, xt, yt, X[:2], floor, max_degree=5, max_terms=20) == []  # 21 monomials


def test_large_datasets_are_cut_to_max_points():
    import time

    x, y, xt, yt, floor = _data(lambda x: x[:, 0] * x[:, 1] ** 2 - x[:, 2], 3, n=200_000)
    t = time.process_time()
    found = dict(polynomial_candidates(x, y, xt, yt, X[:3], floor))
    assert time.process_time() - t < 5.0
    assert sympy.simplify(_clean(found["identity"][0]) - (x1 * x2**2 - x3)) == 0
    assert polynomial_candidates(x, y, xt, yt, X[:3], floor, max_points=10) == []  # 10 points: max_terms 2


def test_pipeline_takes_an_exact_polynomial_and_stops_searching(monkeypatch):
    from kanlens.symbolic.search import kan, polynomial

    torch.set_num_threads(1)
    ds = create_dataset(lambda x: x[:, [0]] ** 3 - 2 * x[:, [0]] * x[:, [1]], n_var=2, train_num=300, test_num=300,
                        seed=0)
    res = symbolic_regression(ds, [2, 3, 1], steps=(5, 5, 5), refine_grid=None, time_budget=60)
    chosen = res.table[res.table.chosen]
    assert res.exact and chosen.source.startswith("polynomial identity")
    assert sympy.simplify(res.formula - (x1**3 - 2 * x1 * x2)) == 0
    assert res.timings["polynomial"] < 5 and res.timings["snap"] < 1  # the KAN's formula is not snapped
    assert res.timings["alternatives"] < 2 and "log: auto_symbolic" not in res.timings  # nor searched, nor log(y)

    def forbidden(*args, **kwargs):
        raise AssertionError("polynomial_candidates called with polynomial=False")

    monkeypatch.setattr(polynomial, "polynomial_candidates", forbidden)
    monkeypatch.setattr(kan, "snap_views", lambda *args, **kwargs: None)  # only to keep the test short
    off = symbolic_regression(ds, [2, 3, 1], steps=(5, 5, 5), refine_grid=None, time_budget=2, polynomial=False,
                              target_transforms=("identity",), separable=False, alternatives=0)
    assert "polynomial" not in off.timings and not off.exact


@pytest.mark.parametrize(
    "f, truth, n_vars, lo, hi, name",
    [
        (lambda x: x[:, 0] * x[:, 1] / (x[:, 0] + x[:, 1] + x[:, 2]), x1 * x2 / (x1 + x2 + x3), 3, 1, 2, "rational"),
        (lambda x: (x[:, 0] + x[:, 1]) / (1 + x[:, 0] * x[:, 1]), (x1 + x2) / (1 + x1 * x2), 2, -0.9, 0.9,
         "rational"),
        (lambda x: x[:, 0] ** 2 / (1 + x[:, 0]), x1**2 / (1 + x1), 1, 0, 3, "rational"),
        (lambda x: x[:, 0] / (1 + x[:, 1] ** 2), x1 / (1 + x2**2), 2, -1, 1, "rational"),
        (lambda x: np.exp(-x[:, 0] / (1 + x[:, 1] ** 2)), sympy.exp(-x1 / (1 + x2**2)), 2, -1, 1, "rational log"),
        (lambda x: np.sqrt(x[:, 0] / (1 + x[:, 1])), sympy.sqrt(x1 / (1 + x2)), 2, 0.5, 2, "rational square"),
    ],
)
def test_ratios_of_polynomials_are_found_sparse_when_no_polynomial_fits(f, truth, n_vars, lo, hi, name):
    x, y, xt, yt, floor = _data(f, n_vars, lo, hi)
    found = dict(polynomial_candidates(x, y, xt, yt, X[:n_vars], floor))
    assert list(found) == [name]
    got = _clean(found[name][0])
    assert sympy.simplify(got - truth) == 0, got


@pytest.mark.parametrize(
    "f, lo, hi",
    [
        (lambda x: np.cos(x[:, 0]) + x[:, 1], -0.5, 0.5),  # a quartic polynomial is close: 10**-0.9 floor
        (lambda x: np.log(x[:, 0] + 2) * x[:, 1], -1, 1),
        (lambda x: np.sin(3 * x[:, 0]) / (1 + x[:, 1] ** 2), -1, 1),
        (lambda x: np.exp(-x[:, 0] * x[:, 1]) + x[:, 0], -1, 1),
    ],
)
def test_smooth_functions_are_not_taken_for_polynomials_or_ratios(f, lo, hi):
    x, y, xt, yt, floor = _data(f, 2, lo, hi)
    assert polynomial_candidates(x, y, xt, yt, X[:2], floor) == []


def test_pipeline_takes_an_exact_ratio_of_polynomials():
    torch.set_num_threads(1)
    ds = create_dataset(lambda x: x[:, [0]] * x[:, [1]] / (x[:, [0]] + x[:, [1]] + x[:, [2]]), n_var=3,
                        ranges=[1, 2], train_num=300, test_num=300, seed=0)
    res = symbolic_regression(ds, [3, 3, 1], steps=(5, 5, 5), refine_grid=None, time_budget=60)
    assert res.exact and res.table[res.table.chosen].source.startswith("polynomial rational")
    assert sympy.simplify(res.formula - x1 * x2 / (x1 + x2 + x3)) == 0
    assert res.timings["alternatives"] < 2 and "log: auto_symbolic" not in res.timings  # the search ended


def test_exact_fits_with_unsnapped_constants_do_not_end_the_search():
    from kanlens.symbolic.search import Candidate, Evaluator, Provenance

    ds = create_dataset(lambda x: x[:, [0]], n_var=1, train_num=20, test_num=20, seed=0)
    ev = Evaluator(ds, [x1], floor=1e-12)
    approx = Candidate([(x1 + sympy.Float(0.0659) * x1**3) / (1 + sympy.Float(0.399) * x1**2)], 19, 0.0, 0.0,
                       Provenance("polynomial", step="rational snapped"), exact=True)
    snapped = Candidate([x1 / (1 + x1**2)], 9, 0.0, 0.0, Provenance("polynomial", step="rational snapped"), exact=True)
    from_kan = Candidate([sympy.Float(0.0659) * x1], 3, 0.0, 0.0, Provenance("kan", step="snapped"), exact=True)
    patch = Candidate([sympy.Float(0.005) * x1**4 - sympy.Float(0.733) * x1**2
                       - sympy.Float(99.5) * sympy.cos(sympy.Float(0.187) * x1)], 20, 0.0, 0.0,
                      Provenance("kan", step="snapped"), exact=True)  # more than two unsnapped constants
    assert [ev.settled(c) for c in (approx, snapped, from_kan, patch)] == [False, True, True, False]


@pytest.mark.parametrize("eps", [1e-2, 1e-1])
def test_a_power_law_is_found_under_noise_even_where_small_labels_change_sign(eps):
    """SRBench noise on x1*x2/(4*pi*x3*x4**2) over [1, 5]: labels near 0 turn negative, so log|y| cannot be taken
    everywhere; the robust fit (majority sign, weighted by |y|) still gives exponents within a few percent."""
    from kanlens.symbolic.polyfit import power_law_candidate

    rng = np.random.default_rng(0)
    x, xt = rng.uniform(1, 5, (1000, 4)), rng.uniform(1, 5, (1000, 4))

    def f(v):
        return v[:, 0] * v[:, 1] / (4 * np.pi * v[:, 2] * v[:, 3] ** 2)

    y, yt = f(x), f(xt)
    y, yt = y + eps * y.std() * rng.standard_normal(1000), yt + eps * y.std() * rng.standard_normal(1000)
    assert (y < 0).any() or eps < 1e-1  # the case the robust fit is for
    law = power_law_candidate(x, y, xt, yt, X[:4], resolution=1 / np.sqrt(1000))
    assert law is not None
    powers = {str(b): float(e) for b, e in (a.as_base_exp() for a in sympy.Mul.make_args(law)) if b.is_Symbol}
    assert set(powers) == {"x1", "x2", "x3", "x4"}
    for name, want in {"x1": 1, "x2": 1, "x3": -1, "x4": -2}.items():
        assert abs(powers[name] - want) < 0.1 * abs(want), powers
    assert power_law_candidate(x, np.sin(x[:, 0]) + x[:, 1], xt, np.sin(xt[:, 0]) + xt[:, 1], X[:4]) is None
