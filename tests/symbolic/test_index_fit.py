"""Monomial-index models (``y = prod x**a * g(prod x**b)``) found from data alone, and the search stage using them."""

import numpy as np
import pytest
import sympy
import torch

from kanlens.symbolic.index_fit import index_models, snap_exponents
from kanlens.symbolic.search.index import MonomialIndex, monomial


def _sample(fn, ranges, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(lo, hi, n) for lo, hi in ranges])
    return x, fn(*x.T)


def test_exponential_of_a_monomial():
    x, y = _sample(lambda a, b, c, d: a * np.exp(-b * c / d), [(1, 5)] * 4)
    models = index_models(x, y)
    assert models, "no model found"
    m = models[0]
    assert m.a.tolist() == [1, 0, 0, 0]
    assert m.b.tolist() == [[0, 1, 1, -1]]
    assert m.nmse < 1e-6


def test_relativistic_factor_and_half_powers():
    x, y = _sample(lambda m, v, c: m * v / np.sqrt(1 - v**2 / c**2), [(1, 5), (1, 2), (3, 10)])
    m = index_models(x, y)[0]
    assert m.b.tolist() == [[0, 1, -1]]
    # a is known up to multiples of b: x1*x2*g(x2/x3) and x1*x3*g'(x2/x3) are both right; the simplest is first
    assert m.a.tolist() in ([1, 1, 0], [1, 0, 1])
    x, y = _sample(lambda a, b: np.sqrt(a) * b ** 1.5 * np.sin(a / b), [(1, 3), (1, 3)])
    m = index_models(x, y)[0]
    assert sorted(np.abs(m.b[0]).tolist()) == [1, 1] and m.b.sum() == 0


def test_sign_change_in_g_is_handled():
    # sin(x3) crosses zero: log|y| dives there, the trimmed fit still finds x1*x2 * g(x3)
    x, y = _sample(lambda a, b, c: a * b * np.sin(c), [(1, 5), (1, 5), (0.1, 5)])
    m = index_models(x, y)[0]
    assert m.a.tolist() == [1, 1, 0] and m.b.tolist() == [[0, 0, 1]]
    x, y = _sample(lambda a, b, c, d: a * b * np.log(d / c), [(1, 5)] * 4)
    m = index_models(x, y)[0]
    assert m.a.tolist() == [1, 1, 0, 0] and sorted(m.b[0].tolist()) == [-1, 0, 0, 1]


def test_two_indices_when_one_is_not_enough():
    # x1 + x2 + 2*sqrt(x1*x2)*cos(x3) = x1 * g(x2/x1, x3): no single monomial carries all of it
    x, y = _sample(lambda a, b, c: a + b + 2 * np.sqrt(a * b) * np.cos(c), [(1, 5), (1, 5), (0.5, 2)])
    assert index_models(x, y, max_indices=1) == []
    m = index_models(x, y)[0]
    assert m.b.shape == (2, 3) and m.nmse < 1e-6
    rows = sorted(m.b.tolist())
    assert rows == [[-1, 1, 0], [0, 0, 1]] or rows == [[0, 0, 1], [1, -1, 0]]
    assert m.a.tolist() in ([1, 0, 0], [0, 1, 0])  # x1 * g(x2/x1, x3) or x2 * g'(x2/x1, x3)


def test_sparsest_basis_of_the_index_span():
    from kanlens.symbolic.index_fit import _sparsest_basis

    b = _sparsest_basis(np.array([[0.0, 0.0, 0.0, 0.0, 1.0], [0.0, -1.0, 1.0, 1.0, 3.5]]))
    assert sorted(b.tolist()) == [[0, -1, 1, 1, 0], [0, 0, 0, 0, 1]]


def test_no_model_without_the_structure():
    x, y = _sample(lambda a, b, c: a + b**2 + np.sin(c), [(1, 5)] * 3)
    assert index_models(x, y) == []
    x, y = _sample(lambda a, b: a * b, [(-1, 1), (1, 2)])  # an input that is not positive: log space is out
    assert index_models(x, y) == []
    x, y = _sample(lambda a: np.exp(a), [(1, 2)])  # one input: nothing to reduce
    assert index_models(x, y) == []


def test_snap_exponents():
    out, worst = snap_exponents(np.array([0.999, -0.501, 1.33]), 3, 0.01)
    assert out.tolist() == [1.0, -0.5, pytest.approx(4 / 3)] and worst < 0.01
    assert snap_exponents(np.array([0.37]), 2, 0.05) is None
    assert snap_exponents(np.array([7.0]), 1, 0.05) is None  # beyond |4|


def test_monomial_expression():
    x1, x2, x3 = sympy.symbols("x1 x2 x3")
    assert monomial([x1, x2, x3], np.array([1.0, -0.5, 0.0])) == x1 / sympy.sqrt(x2)


def test_stage_applies_only_to_positive_inputs():
    from types import SimpleNamespace

    stage = MonomialIndex()
    opts = SimpleNamespace(separable=True)
    pos = SimpleNamespace(xtr=np.ones((4, 2)), xte=np.ones((4, 2)))
    neg = SimpleNamespace(xtr=-np.ones((4, 2)), xte=np.ones((4, 2)))
    assert stage.applies(SimpleNamespace(options=opts, one_output=True, n_inputs=2, ev=pos))
    assert not stage.applies(SimpleNamespace(options=opts, one_output=True, n_inputs=2, ev=neg))
    assert not stage.applies(SimpleNamespace(options=opts, one_output=True, n_inputs=1, ev=pos))


@pytest.mark.slow
def test_search_recovers_a_boltzmann_factor_without_width():
    from kanlens import symbolic_regression
    from kanlens.formula_data import sample_formula

    xs = sympy.symbols("x1:5")
    target = xs[0] * sympy.exp(-xs[1] * xs[2] / xs[3])
    ds = sample_formula(target, list(xs), [(1.0, 5.0)] * 4, seed=0, dtype=torch.float64)
    res = symbolic_regression(ds, time_budget=40, seed=0)
    assert res.exact
    assert sympy.simplify(res.formula.subs({sympy.Symbol(f"x{i + 1}"): xs[i] for i in range(4)}) - target) == 0
    assert res.table[res.table.chosen].provenance.stage == "index"
    assert res.cpu_seconds < 40 * 1.1 + 1


def test_basis_variants_cover_small_integer_changes_and_orientations():
    from kanlens.symbolic.search.index import basis_variants

    b = np.array([[-1.0, 0.0, 1.0, 1.0], [0.0, 1.0, -1.0, 0.0]])  # x3*x4/x1, x2/x3
    variants = basis_variants(b)
    assert len(variants) == len({tuple(v.ravel()) for v in variants}) == 36
    # x1*x3/(x2**2*x4) = 1 / ((x3*x4/x1) * (x2/x3)**2), with x3/x2: the basis where g is simplest for I.15.3t
    assert any(np.array_equal(v, [[1.0, -2.0, 1.0, -1.0], [0.0, -1.0, 1.0, 0.0]]) for v in variants)
    assert [v.tolist() for v in basis_variants(np.array([[0.0, 1.0, -1.0]]))] == [[[0, 1, -1]], [[0, -1, 1]]]


def test_stop_ends_the_search_and_large_data_is_subsampled():
    import time

    x, y = _sample(lambda a, b, c, d, e: a + b + c * d + np.sin(e), [(1, 5)] * 5, n=20000)
    t = time.process_time()
    assert index_models(x, y, stop=lambda: time.process_time() - t > 0.2) == []
    assert time.process_time() - t < 1.0
    x, y = _sample(lambda a, b, c: a * np.exp(-b / c), [(1, 5)] * 3, n=20000)
    t = time.process_time()
    m = index_models(x, y)[0]
    assert m.b.tolist() == [[0, 1, -1]] and time.process_time() - t < 10


def test_search_with_the_index_stage_keeps_a_small_budget():
    # a four-input problem where the index stage tries two indices and finds nothing: the whole search still ends
    # within its budget (10% + 1 CPU s of interpreter overhead, as in test_symbolic_budget.py)
    from kanlens import symbolic_regression
    from kanlens.formula_data import sample_formula

    xs = sympy.symbols("x1:5")
    target = xs[0] + xs[1] ** 2 + sympy.sin(xs[2]) * xs[3] + xs[2]
    ds = sample_formula(target, list(xs), [(1.0, 3.0)] * 4, seed=0, dtype=torch.float64)
    res = symbolic_regression(ds, time_budget=6.0, seed=0)
    assert res.cpu_seconds <= 6.0 * 1.1 + 1.0


def test_index_spline_denoises_the_reduced_labels():
    # y = x1/sqrt(1 - (x2/x3)**2) with SRBench noise eps = 1e-2: y / x1 is noisiest where x1 is small (reduced NMSE
    # ~1.5e-2); the index model's spline, fitted on y itself, follows g within a small fraction of that
    from kanlens.symbolic.index_fit import smooth_index_values
    from kanlens.symbolic.noise import noise_nmse

    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(1, 5, 2000), rng.uniform(1, 2, 2000), rng.uniform(3, 10, 2000)])
    g = 1 / np.sqrt(1 - (x[:, 1] / x[:, 2]) ** 2)
    y = x[:, 0] * g
    y = y + 1e-2 * np.std(y) * rng.standard_normal(len(y))
    tr, te = slice(0, 1000), slice(1000, 2000)
    a, b = np.array([1.0, 0.0, 0.0]), np.array([[0.0, 1.0, -1.0]])
    r = y / x[:, 0]
    raw = np.mean((r[te] - g[te]) ** 2) / np.var(g[te])
    assert noise_nmse((x[tr, 1] / x[tr, 2])[:, None], r[tr]) > 1e-3  # the reduced labels are noisy
    s_tr, s_te = smooth_index_values(x[tr], y[tr], a, b, [x[tr], x[te]])
    assert s_tr.shape == (1000,) and s_te.shape == (1000,)
    smooth = np.mean((s_te - g[te]) ** 2) / np.var(g[te])
    assert smooth < raw / 30


def test_noisy_reduced_labels_are_searched_through_the_spline():
    from kanlens.symbolic.search.candidates import Evaluator
    from kanlens.symbolic.search.index import _noisy

    rng = np.random.default_rng(1)
    x = np.column_stack([rng.uniform(1, 5, 1600), rng.uniform(1, 2, 1600), rng.uniform(3, 10, 1600)])
    clean = x[:, 0] / np.sqrt(1 - (x[:, 1] / x[:, 2]) ** 2)
    model = index_models(x[:800], clean[:800])[0]
    for eps, noisy in ((0.0, False), (1e-2, True)):
        y = clean + eps * np.std(clean) * rng.standard_normal(len(clean))
        t = torch.tensor
        ds = {"train_input": t(x[:800]), "train_label": t(y[:800, None]), "test_input": t(x[800:]),
              "test_label": t(y[800:, None])}
        assert _noisy(Evaluator(ds, list(sympy.symbols("x1:4")), floor=0.0), model) is noisy
