"""The labels' noise level estimated from the data alone, and the search tolerances that follow it."""

import math

import numpy as np
import pytest
import sympy
import torch

from kanlens.symbolic.noise import noise_nmse
from kanlens.symbolic.search.candidates import NEAR_CAP, NEAR_NMSE, NEAR_NOISE, Evaluator


def _noisy(fn, ranges, eps, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(lo, hi, n) for lo, hi in ranges])
    y = fn(*x.T)
    return x, y + eps * np.std(y) * rng.standard_normal(n)


@pytest.mark.parametrize("eps", [1e-2, 3e-2, 1e-1])
def test_one_input_noise_level(eps):
    x, y = _noisy(lambda a: np.sin(3 * a) + a**2, [(-2, 2)], eps)
    assert noise_nmse(x, y) == pytest.approx(eps**2, rel=0.15)


def test_one_input_noise_free_is_near_zero():
    x, y = _noisy(lambda a: np.exp(-a) * np.cos(2 * a), [(0, 3)], 0.0)
    assert noise_nmse(x, y) < 1e-8


@pytest.mark.parametrize("eps", [1e-2, 1e-1])
def test_three_inputs_noise_level(eps):
    x, y = _noisy(lambda m, v, c: m / np.sqrt(1 - v**2 / c**2), [(1, 5), (1, 2), (3, 10)], eps)
    assert noise_nmse(x, y) == pytest.approx(eps**2, rel=0.3)


def test_curvature_is_not_taken_for_noise():
    # noise-free but curved in four inputs: the local fits cannot follow it, and the estimate says it cannot tell
    x, y = _noisy(lambda a, b, c, d: a * b / (c * d**2), [(1, 5)] * 4, 0.0)
    assert noise_nmse(x, y) == math.inf


def test_unresolved_oscillation_loosens_tolerances_only_up_to_the_cap():
    # sin(3*x1*x3) on [1, 5]^2 oscillates faster than 1,000 points in 4-D resolve: to a local fit it is noise
    x, y = _noisy(lambda a, b, c, d: a * b / (c * d**2) + np.sin(3 * a * c), [(1, 5)] * 4, 0.0, n=1600)
    assert noise_nmse(x[:800], y[:800]) > 0.1
    t = torch.tensor
    ev = Evaluator({"train_input": t(x[:800]), "train_label": t(y[:800, None]), "test_input": t(x[800:]),
                    "test_label": t(y[800:, None])}, list(sympy.symbols("x1:5")), floor=0.0)
    assert ev.near(NEAR_NOISE * NEAR_CAP) and not ev.near(1.5 * NEAR_NOISE * NEAR_CAP)


@pytest.mark.parametrize("case", ["many inputs", "constant", "nan", "few points"])
def test_unknown_level_is_inf(case):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(1, 2, (500, 3)), rng.uniform(0, 1, 500)
    if case == "many inputs":
        x = rng.uniform(1, 2, (500, 6))
    elif case == "constant":
        y = np.full(500, 2.0)
    elif case == "nan":
        y[3] = np.nan
    else:
        x, y = x[:20], y[:20]
    assert noise_nmse(x, y) == math.inf


def _evaluator(eps, seed=0):
    x, y = _noisy(lambda a, b: a * np.exp(-b), [(1, 3), (0, 2)], eps, n=1600, seed=seed)
    t = torch.tensor
    ds = {"train_input": t(x[:800]), "train_label": t(y[:800, None]), "test_input": t(x[800:]),
          "test_label": t(y[800:, None])}
    return Evaluator(ds, list(sympy.symbols("x1 x2")), floor=0.0)


def test_near_follows_the_noise_level():
    noisy = _evaluator(3e-2)  # the true formula scores about 9e-4, far above the fixed 1e-4
    assert noisy.noise == pytest.approx(9e-4, rel=0.3)
    assert noisy.near(1.2e-3) and not noisy.near(2e-2)
    clean = _evaluator(0.0)
    assert clean.noise < 1e-6
    assert clean.near(0.9 * NEAR_NMSE) and not clean.near(2 * NEAR_NMSE)


def test_note_noise_only_lowers_the_level():
    ev = _evaluator(3e-2)
    before = ev.noise
    ev.note_noise(10 * before)
    assert ev.noise == before
    ev.note_noise(before / 9)
    assert ev.noise == pytest.approx(before / 9)
    assert not ev.near(1.2e-3)  # back to the fixed tolerance: 3x the bound is below 1e-4
    ev.note_noise(math.nan)
    assert ev.noise == pytest.approx(before / 9)


def test_unknown_level_keeps_the_fixed_tolerance():
    # nine inputs: the level cannot be estimated from the data, and a poor candidate's error does not set it
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 2, (1600, 9))
    y = x.sum(1) + 0.3 * rng.standard_normal(1600)
    t = torch.tensor
    ev = Evaluator({"train_input": t(x[:800]), "train_label": t(y[:800, None]), "test_input": t(x[800:]),
                    "test_label": t(y[800:, None])}, list(sympy.symbols("x1:10")), floor=0.0)
    assert ev.noise == math.inf
    from kanlens.symbolic.search.candidates import Provenance

    cand = ev.refit([sympy.Symbol("x1")], Provenance("test"))
    assert cand.test_nmse > 0.1 and ev.noise == math.inf
    assert ev.near(0.9 * NEAR_NMSE) and not ev.near(2 * NEAR_NMSE)
    ev.note_noise(5e-4)  # a stage's flexible model fitted this close: the level is known from now on
    assert ev.near(1.4e-3) and not ev.near(1.6e-3)
