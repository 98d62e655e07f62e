"""Splines against scipy's BSpline, least-squares round trips, adaptive grids."""

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanlens import splines


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_basis_matches_scipy(dtype, tol, k):
    gen = torch.Generator().manual_seed(k)
    grid = splines.uniform_grid(7, k, 3, (-1.5, 2.0), dtype=dtype)
    x = torch.rand(200, 3, generator=gen, dtype=dtype) * 3.5 - 1.5
    coef = torch.randn(2, 3, 7 + k, generator=gen, dtype=dtype)
    y = splines.coef2curve(x, grid, coef, k)
    for o in range(2):
        for i in range(3):
            ref = BSpline(grid[i].double().numpy(), coef[o, i].double().numpy(), k, extrapolate=False)(
                x[:, i].double().numpy()
            )
            np.testing.assert_allclose(y[:, o, i].double().numpy(), ref, atol=tol, rtol=0)


def test_basis_is_partition_of_unity_inside_range():
    grid = splines.uniform_grid(5, 3, 1, dtype=torch.float64)
    x = torch.linspace(-1, 0.999, 101, dtype=torch.float64)[:, None]
    basis = splines.b_spline_basis(x, grid, 3)
    torch.testing.assert_close(basis.sum(-1), torch.ones(101, 1, dtype=torch.float64), atol=1e-12, rtol=0)


def test_basis_outside_extended_grid_is_zero_and_finite():
    grid = splines.uniform_grid(5, 3, 1)
    x = torch.tensor([[-10.0], [10.0], [1e30]])
    basis = splines.b_spline_basis(x, grid, 3)
    assert torch.isfinite(basis).all() and basis.abs().max() == 0


def test_analytic_gradient_matches_finite_differences():
    grid = splines.uniform_grid(6, 3, 2, dtype=torch.float64)
    x = (torch.rand(40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.8 - 0.9)
    assert torch.autograd.gradcheck(lambda t: splines.b_spline_basis(t, grid, 3), (x.requires_grad_(),))


def test_curve2coef_recovers_coefficients():
    gen = torch.Generator().manual_seed(1)
    grid = splines.uniform_grid(5, 3, 2, dtype=torch.float64)
    x = torch.rand(2000, 2, generator=gen, dtype=torch.float64) * 2 - 1
    coef = torch.randn(4, 2, 8, generator=gen, dtype=torch.float64)
    y = splines.coef2curve(x, grid, coef, 3)
    fitted = splines.curve2coef(x, y, grid, 3)
    torch.testing.assert_close(splines.coef2curve(x, grid, fitted, 3), y, atol=1e-6, rtol=0)


def test_curve2coef_rejects_nonfinite():
    grid = splines.uniform_grid(5, 3, 1)
    x = torch.zeros(10, 1)
    y = torch.full((10, 1, 1), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        splines.curve2coef(x, y, grid, 3)


def test_curve2coef_is_robust_to_rank_deficiency():
    # All samples at one point: most bases have no support; the ridge keeps the solve finite.
    grid = splines.uniform_grid(5, 3, 1)
    x = torch.full((50, 1), 0.3)
    coef = splines.curve2coef(x, torch.ones(50, 1, 1), grid, 3)
    assert torch.isfinite(coef).all()
    torch.testing.assert_close(splines.coef2curve(x, grid, coef, 3), torch.ones(50, 1, 1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("eps", [0.0, 0.02, 1.0])
def test_grid_from_samples(eps):
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    grid = splines.grid_from_samples(x, 6, 3, grid_eps=eps)
    assert grid.shape == (2, 6 + 2 * 3 + 1)
    assert (grid.diff(dim=1) > 0).all()
    torch.testing.assert_close(grid[:, 3], x.min(0).values)
    torch.testing.assert_close(grid[:, -4], x.max(0).values, atol=1e-5, rtol=0)
    if eps == 1.0:
        torch.testing.assert_close(grid.diff(dim=1), grid.diff(dim=1)[:, :1].expand(-1, 12), atol=1e-5, rtol=0)


def test_grid_from_constant_samples_is_strictly_increasing():
    grid = splines.grid_from_samples(torch.zeros(100, 1), 5, 3)
    assert (grid.diff(dim=1) > 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_basis_by_input_matches_basis_and_derivative(dtype, k):
    gen = torch.Generator().manual_seed(k)
    grid = splines.grid_from_samples(torch.randn(200, 3, generator=gen, dtype=dtype), 6, k)
    x = torch.randn(100, 3, generator=gen, dtype=dtype) * 2
    x[0] = torch.tensor([100.0, -100.0, float("nan")], dtype=dtype)  # outside the grid / NaN: all bases zero
    basis, dbasis = splines.basis_by_input(x, grid, k, with_derivative=True)
    ref = splines.b_spline_basis(x, grid, k)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(basis.permute(2, 0, 1), ref, atol=tol, rtol=0)
    assert torch.equal(dbasis[..., 0], torch.zeros_like(dbasis[..., 0]))
    xr = x[1:].clone().requires_grad_()
    d_ref = torch.autograd.grad(splines.b_spline_basis(xr, grid, k).sum(), xr)[0]
    torch.testing.assert_close(dbasis[..., 1:].sum(1).T, d_ref, atol=100 * tol, rtol=0)
    # without derivative: the same values, cached for the same tensor until the tensor or the grid change
    cached, none = splines.basis_by_input(x, grid, k)
    assert none is None and torch.equal(cached, basis)
    assert splines.basis_by_input(x, grid, k)[0] is cached
    grid.mul_(1.5)
    assert splines.basis_by_input(x, grid, k)[0] is not cached
