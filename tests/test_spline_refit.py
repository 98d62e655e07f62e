"""kanlens.spline_refit: the shared steps of update_grid / refine (quantile subsample, sweeps, target grid, refit)."""

from __future__ import annotations

import torch

from kanlens import splines
from kanlens.spline_refit import quantile_subsample, range_sweep, refit_coef, target_grid


def test_quantile_subsample_keeps_extremes_and_order_statistics() -> None:
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(1000, 3, generator=gen, dtype=torch.float64)
    sub = quantile_subsample(s, 11)
    assert sub.shape == (11, 3)
    torch.testing.assert_close(sub[0], s.min(0).values, atol=0, rtol=0)
    torch.testing.assert_close(sub[-1], s.max(0).values, atol=0, rtol=0)
    torch.testing.assert_close(sub[5], s.sort(0).values[500], atol=0, rtol=0)  # index round(999 / 2) = 500
    small = s[:5]
    assert quantile_subsample(small, 11) is small  # few enough rows: all of them


def test_range_sweep_and_target_grid() -> None:
    lo, hi = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 4.0])
    sw = range_sweep(lo, hi, 5)
    torch.testing.assert_close(sw[:, 1], torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]))
    g = target_grid(4, 3, lo.double(), hi.double(), None, 1.0)
    assert g.shape == (2, 4 + 7) and g.dtype == torch.float64
    torch.testing.assert_close(g[:, 3], lo.double())
    torch.testing.assert_close(g[:, -4], hi.double())
    samples = torch.tensor([[0.0, 2.0], [0.5, 3.0], [0.25, 2.5]], dtype=torch.float64)
    gs = target_grid(2, 1, lo.double(), hi.double(), samples, 1.0)
    torch.testing.assert_close(gs[:, 1], samples.min(0).values)
    torch.testing.assert_close(gs[:, -2], samples.max(0).values)


def test_refit_coef_onto_a_finer_nested_grid_is_exact() -> None:
    gen = torch.Generator().manual_seed(1)
    k, rng = 3, torch.tensor([[-1.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    old = splines.uniform_grid(4, k, 2, rng, dtype=torch.float64)
    new = splines.uniform_grid(8, k, 2, rng, dtype=torch.float64)  # contains the old knots
    coef = torch.randn(5, 2, 4 + k, generator=gen, dtype=torch.float64)
    xs = range_sweep(rng[:, 0], rng[:, 1], 8 * (8 + k) + 1)
    c2 = refit_coef(xs, old, coef, new, k)
    fresh = range_sweep(rng[:, 0], rng[:, 1], 57) + 0.001  # fresh points inside the range
    fresh = torch.minimum(fresh, rng[:, 1])
    want = splines.coef2curve(fresh, old, coef, k)
    err = (splines.coef2curve(fresh, new, c2, k) - want).abs().max()
    assert err < 1e-5 * want.abs().max()  # exact up to curve2coef's ridge term (1e-8)
    coarse = splines.uniform_grid(2, k, 2, rng, dtype=torch.float64)  # cannot hold the splines: a visible error
    assert (splines.coef2curve(fresh, coarse, refit_coef(xs, old, coef, coarse, k), k) - want).abs().max() > 100 * err
