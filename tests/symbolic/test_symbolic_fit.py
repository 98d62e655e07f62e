"""The affine fit y ~ c*f(a*x+b)+d: recovers constants, ranks exact fits first, refuses near-fits as exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kanlens.symbolic.fit import EXACT_NMSE, canonical_params, fit_affine, fit_library, rank_fits
from kanlens.symbolic.library import default_library

# (name, (a, b, c, d) in canonical form, x range)
CASES = [
    ("x", (1.0, 0.0, 1.7, -0.4), (-1, 1)),
    ("x^2", (1.0, 0.3, 1.5, -0.2), (-1, 1)),
    ("x^3", (1.0, -0.2, 0.8, 0.1), (-1, 1)),
    ("x^4", (1.0, 0.25, 0.6, 0.3), (-1, 1)),
    ("x^5", (1.0, 0.1, 1.3, -0.5), (-1, 1)),
    ("1/x", (1.0, 1.5, 0.7, 0.1), (-1, 1)),
    ("1/x^2", (1.0, 1.6, 0.9, -0.3), (-1, 1)),
    ("1/x^3", (1.0, -1.7, 0.5, 0.2), (-1, 1)),
    ("sqrt", (1.0, 1.2, 1.1, -0.6), (-1, 1)),
    ("sqrt", (-1.0, 1.3, 0.8, 0.2), (-1, 1)),
    ("x^1.5", (1.0, 1.2, 0.7, 0.1), (-1, 1)),
    ("1/sqrt(x)", (1.0, 1.4, 0.9, 0.05), (-1, 1)),
    ("exp", (1.3, 0.0, 0.5, 0.2), (-1, 1)),
    ("exp", (-2.1, 0.0, 1.5, -0.7), (-1, 1)),
    ("log", (-1.0, 1.5, 0.8, 0.3), (-1, 1)),
    ("abs", (1.0, 0.2, 1.4, -0.3), (-1, 1)),
    ("sin", (2.5, 0.4, 1.2, -0.3), (-1, 1)),
    ("sin", (3.14159, 0.0, 1.0, 0.0), (-1, 1)),
    ("cos", (2.5, 0.4, 1.2, -0.3), (-1, 1)),
    ("tan", (1.2, 0.1, 0.6, 0.2), (-1, 1)),
    ("tanh", (2.0, 0.5, 1.1, 0.3), (-1, 1)),
    ("arcsin", (0.8, 0.1, 0.9, -0.1), (-1, 1)),
    ("arccos", (0.8, 0.1, 0.9, -0.1), (-1, 1)),
    ("arctan", (2.0, 0.5, 1.2, 0.4), (-1, 1)),
    ("arctanh", (0.8, 0.1, 0.7, 0.2), (-1, 1)),
    ("gaussian", (1.5, 0.3, 1.3, -0.2), (-1, 1)),
    ("besselj0", (20.0, 0.0, 1.0, 0.0), (-1, 1)),
    ("besselj0", (3.0, 0.5, 1.2, 0.1), (-1, 1)),
    ("besselj1", (3.0, 0.5, 0.8, -0.2), (-1, 1)),
    ("erf", (2.0, 0.3, 1.1, 0.2), (-1, 1)),
    ("fresnels", (1.5, 0.2, 0.9, 0.1), (-1, 1)),
    ("fresnelc", (1.5, 0.2, 0.9, 0.1), (-1, 1)),
    ("log", (1.0, 0.0, 1.0, 0.0), (1, 3)),
    ("x^2", (1.0, 0.0, -0.5, 0.0), (1, 3)),
    ("1/x", (1.0, 1.0, 1.0, 0.0), (0.5, 2)),
]


@pytest.mark.parametrize(("name", "params", "rng"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_fit_recovers_constants(name, params, rng):
    lib = default_library(special=True)
    fn = lib[name]
    gen = torch.Generator().manual_seed(0)
    x = rng[0] + (rng[1] - rng[0]) * torch.rand(1000, generator=gen, dtype=torch.float64)
    a, b, c, d = params
    y = c * fn.torch_fn(a * x + b) + d
    fit = fit_affine(x, y, fn)
    np.testing.assert_allclose(fit.params, params, rtol=1e-3, atol=1e-6)
    assert fit.exact and fit.r2 > 1 - 1e-10


def test_sgn_threshold_within_sample_spacing():
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64) + 2.5e-4  # no sample exactly at the step
    y = 0.8 * torch.sign(x + 0.3) + 0.1
    fit = fit_affine(x, y, "sgn")
    assert fit.a == 1.0 and abs(fit.b - 0.3) <= 1e-3
    np.testing.assert_allclose([fit.c, fit.d], [0.8, 0.1], rtol=1e-9)


def test_zero_and_constant_edges():
    x = torch.linspace(-1, 1, 50, dtype=torch.float64)
    fit = fit_affine(x, x + 0.5, "0")
    assert fit.d == pytest.approx(0.5) and fit.r2 == 0.0 and not fit.exact
    fit = fit_affine(x, torch.full_like(x, 0.5), "0")
    assert fit.d == pytest.approx(0.5) and fit.exact
    ranked = rank_fits(fit_library(x, torch.full_like(x, 0.5)))
    assert ranked[0].name == "0"


def test_erf_is_not_claimed_as_tanh():
    x = torch.linspace(-1, 1, 1000, dtype=torch.float64)
    y = torch.erf(2 * x)
    ranked = rank_fits(fit_library(x, y))  # default library: no erf
    tanh = next(f for f in ranked if f.name == "tanh")
    assert 0.999 < tanh.r2 < 1 - 1e-5 and not tanh.exact
    assert not any(f.exact for f in ranked)
    ranked_sp = rank_fits(fit_library(x, y, default_library(special=True)))
    assert ranked_sp[0].name == "erf" and ranked_sp[0].exact


def test_ranking_prefers_exact_over_simpler_near_fit():
    x = torch.linspace(-1, 1, 500, dtype=torch.float64)
    y = torch.tanh(1.5 * x)
    ranked = rank_fits(fit_library(x, y))
    assert ranked[0].name == "tanh" and ranked[0].nmse < EXACT_NMSE


def test_degenerate_limits_are_not_preferred():
    x = torch.linspace(-1, 1, 500, dtype=torch.float64)
    ranked = rank_fits(fit_library(x, 0.7 * x**2 - 0.1))
    assert ranked[0].name == "x^2"
    cos = next(f for f in ranked if f.name == "cos")
    assert cos.degenerate or cos.nmse > 1e-8


def test_canonical_params_are_equivalent():
    lib = default_library()
    x = torch.linspace(0.2, 0.9, 30, dtype=torch.float64)
    for name, p in [("x^2", (-2.0, 0.5, 0.3, 0.1)), ("exp", (1.5, 0.7, 0.3, 0.1)), ("sin", (-2.0, 4.0, 0.3, 0.1)),
                    ("log", (-3.0, 3.5, 0.3, 0.1)), ("arccos", (-0.5, 0.1, 0.3, 0.1)), ("cos", (2.0, 7.0, 1.0, 0.0)),
                    ("sqrt", (2.5, 0.1, 1.0, 0.0)), ("1/x^3", (-2.0, 3.0, 1.0, 0.0))]:
        fn = lib[name]
        q = canonical_params(fn, *p)
        y1 = p[2] * fn.torch_fn(p[0] * x + p[1]) + p[3]
        y2 = q[2] * fn.torch_fn(q[0] * x + q[1]) + q[3]
        torch.testing.assert_close(y1, y2, rtol=1e-10, atol=1e-12)
        if fn.kind == "power":
            assert abs(q[0]) == 1.0


def test_bad_input():
    x = torch.linspace(-1, 1, 10)
    with pytest.raises(ValueError, match="NaN or Inf"):
        fit_affine(x, x.clone().fill_(float("nan")), "sin")
    with pytest.raises(ValueError, match="same number"):
        fit_affine(x, x[:5], "sin")
    with pytest.raises(ValueError, match="did you mean 'sin'"):
        fit_affine(x, x, "sinn")
    with pytest.raises(ValueError, match="weight_simple"):
        rank_fits([], weight_simple=2.0)
