"""Sums of products of one-input functions (x1*sin(x2) + x2*cos(x1)): rank test, basis matching, coefficients."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sympy
import torch

from kanlens import create_dataset
from kanlens.symbolic import formula as sform
from kanlens.symbolic import lowrank
from kanlens.symbolic.library import default_library

x1, x2 = sympy.symbols("x1 x2")
LIB = default_library()


def _w01(x: np.ndarray) -> np.ndarray:
    return x[:, 0] * np.sin(x[:, 1]) + x[:, 1] * np.cos(x[:, 0])


def _mix(x: np.ndarray) -> np.ndarray:  # rank 3, with a constant and a scaled argument
    return np.exp(x[:, 0]) * x[:, 1] ** 2 + np.cos(2 * x[:, 0]) * x[:, 1] + 1


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    return np.random.default_rng(0).uniform(-2, 2, (1000, 2))


def _members(f, x: np.ndarray, r: int, side: int, var: sympy.Symbol) -> list[lowrank.Member]:
    xa, xb, u, s, vt = lowrank.grid_spectrum(f, x)
    basis, xs = (u[:, :r], xa) if side == 0 else (vt[:r].T, xb)
    return lowrank.spanning_sets(xs, basis, lowrank.span_members(xs, basis, LIB, var, lowrank.membership_tol(s, r)))


def test_grid_spectrum_shows_the_number_of_products(points):
    for f, rank in ((_w01, 2), (_mix, 3), (lambda x: np.sin(x[:, 0]) * np.exp(x[:, 1]), 1)):
        xa, xb, u, s, vt = lowrank.grid_spectrum(f, points, points=40)
        assert xa.shape == xb.shape == (40,) and u.shape == (40, 40) and vt.shape == (40, 40)
        assert s[rank - 1] / s[0] > 1e-2 and s[rank] / s[0] < 1e-12
    assert lowrank.grid_spectrum(lambda x: np.full(len(x), np.nan), points) is None


def test_span_members_find_the_functions_behind_mixed_singular_vectors(points):
    (p,) = _members(_w01, points, 2, 0, x1)[:1]
    assert {str(m.expr) for m in p} == {"x1", "cos(x1)"}
    (q,) = _members(_w01, points, 2, 1, x2)[:1]
    assert {str(m.expr) for m in q} == {"x2", "sin(x2)"}
    # cos(2*x1) needs its inner slope fitted to the subspace; the Taylor-regime look-alikes (cos(0.2*x1 + 3)) that
    # a subspace holding smooth functions nearly contains must not crowd it out
    best = _members(_mix, points, 3, 0, x1)[0]
    exprs = [sympy.nsimplify(m.expr, tolerance=1e-8, rational=True) for m in best]
    assert sympy.Integer(1) in exprs and sympy.exp(x1) in exprs and sympy.cos(2 * x1) in exprs
    # an affine map of x**2 inside a library function; not tan(0.0008*x1**2 - 1.5700), its pole-regime look-alike
    lorentz = lambda x: np.cos(x[:, 1]) / (1 + x[:, 0] ** 2) + np.sin(x[:, 1])  # noqa: E731
    (p,) = _members(lorentz, points, 2, 0, x1)[:1]
    xs = np.linspace(-2, 2, 50)
    ratios = [m.fn(xs) * (1 + xs**2) for m in p]  # constant for a multiple of 1/(1 + x1**2)
    assert any(np.ptp(r) < 1e-6 * np.abs(r).max() for r in ratios) and not any(m.expr.has(sympy.tan) for m in p)
    # exp(-x1) with its shift fixed (a scale), on a one-signed range
    pos = points + 2
    decay = lambda x: np.exp(-x[:, 0]) * np.cos(x[:, 1]) - np.exp(-x[:, 1]) * np.sin(x[:, 0])  # noqa: E731
    (q,) = _members(decay, pos, 2, 1, x2)[:1]
    assert any(m.expr.has(sympy.exp) for m in q) and any(m.expr.has(sympy.cos) for m in q)


def test_sum_of_products_drops_the_products_it_does_not_need(points):
    p = _members(_w01, points, 2, 0, x1)[0]
    q = _members(_w01, points, 2, 1, x2)[0]
    err, expr = lowrank.sum_of_products(p, q, points, _w01(points))
    assert err < 1e-20 and len(expr.args) == 2
    assert sympy.simplify(sympy.nsimplify(expr, tolerance=1e-10, rational=True)
                          - (x1 * sympy.sin(x2) + x2 * sympy.cos(x1))) == 0
    bad = [lowrank.Member(sympy.log(x1), np.log, 0.0, 2)]  # log of negative inputs: not evaluable
    assert lowrank.sum_of_products(bad, q[:1], points, _w01(points)) is None


@pytest.mark.parametrize("noise", [0.0, 1e-3])
def test_low_rank_search_recovers_a_sum_of_cross_products(noise):
    """x1*sin(x2) + x2*cos(x1) is neither a sum nor a product of parts: only the rank test sees its structure. With
    a model 0.1% off (a smooth error, as a KAN's) the subspaces are approximate; the refit on the data is exact."""
    from kanlens.symbolic.search import Evaluator
    from kanlens.symbolic.search.low_rank import low_rank_search

    torch.set_num_threads(1)
    ds = create_dataset(lambda t: torch.as_tensor(_w01(t.numpy()))[:, None], n_var=2, ranges=[[-2, 2], [-2, 2]],
                        train_num=400, test_num=400, dtype=torch.float64, seed=1)
    ev = Evaluator(ds, [x1, x2], sform.noise_floor(ds["train_label"].numpy(), torch.float64))

    def predict(x: np.ndarray) -> np.ndarray:
        return _w01(x) * (1 + noise * np.sin(x[:, 0] + 2 * x[:, 1]))

    t0 = time.process_time()
    low_rank_search(predict, ev, LIB.subset(["x", "x^2", "sin", "cos", "exp", "tanh"]), [x1, x2])
    exact = [c for c in ev.seen if c.exact and c.provenance.stage == "low rank"]
    assert exact and any(sympy.simplify(c.expr - (x1 * sympy.sin(x2) + x2 * sympy.cos(x1))) == 0 for c in exact)
    assert time.process_time() - t0 < 60


def test_low_rank_search_trusts_the_model_only_to_its_own_error():
    """A surrogate formula that is exactly rank 2 with a wrong function (cos(0.03*x1) in place of x1**2, 1e-5 off
    the data): the membership tolerance follows the model's error on the data, not its spectrum, so x1**2 is
    found."""
    from kanlens.symbolic.search import Evaluator
    from kanlens.symbolic.search.low_rank import low_rank_search

    truth = lambda x: x[:, 0] ** 2 * np.sin(x[:, 1]) + np.cos(x[:, 1])  # noqa: E731
    ds = create_dataset(lambda t: torch.as_tensor(truth(t.numpy()))[:, None], n_var=2, ranges=[[-1, 1], [-2, 2]],
                        train_num=400, test_num=400, dtype=torch.float64, seed=1)
    ev = Evaluator(ds, [x1, x2], sform.noise_floor(ds["train_label"].numpy(), torch.float64))
    k = 0.03

    def surrogate(x: np.ndarray) -> np.ndarray:
        return 2 * (1 - np.cos(k * x[:, 0])) / k**2 * np.sin(x[:, 1]) + np.cos(x[:, 1])

    assert 1e-14 < sform.nmse(surrogate(ev.xte), ev.yte[:, 0]) < 1e-8
    low_rank_search(surrogate, ev, LIB.subset(["x", "x^2", "sin", "cos", "exp"]), [x1, x2])
    exact = [c for c in ev.seen if c.exact and c.provenance.stage == "low rank"]
    assert exact and any(sympy.simplify(c.expr - (x1**2 * sympy.sin(x2) + sympy.cos(x2))) == 0 for c in exact)


def test_low_rank_search_leaves_other_shapes_alone(points):
    """sin(3*x1*x2) is no sum of up to three products: its low-rank approximations are refitted but none is exact
    (nor snapped); a three-input problem is not the stage's, and nothing is even tried."""
    from kanlens.symbolic.search import Evaluator
    from kanlens.symbolic.search.low_rank import low_rank_search

    for f, n in ((lambda t: torch.sin(3 * t[:, 0] * t[:, 1]), 2), (lambda t: t.sum(1), 3)):
        ds = create_dataset(lambda t, f=f: f(t)[:, None], n_var=n, train_num=200, test_num=200,
                            dtype=torch.float64, seed=0)
        ev = Evaluator(ds, [x1, x2, sympy.Symbol("x3")][:n], 1e-28)
        low_rank_search(lambda x, f=f: f(torch.as_tensor(x)).numpy(), ev, LIB, ev.variables)
        if n == 3:
            assert ev.seen == []
        else:
            assert ev.seen and all(c.provenance.stage == "low rank" and not c.exact for c in ev.seen)
