"""Pure tensor math for B-splines: grids, basis, coefficient <-> curve, grids from samples.

Conventions used throughout kanlens:

* a *grid* has shape ``(in_dim, G + 2k + 1)``: ``G + 1`` knots spanning the grid range, extended by ``k``
  knots on each side so that every point of the range is covered by ``k + 1`` basis functions;
* the *basis* of ``x`` with shape ``(batch, in_dim)`` has shape ``(batch, in_dim, G + k)``;
* spline *coefficients* have shape ``(out_dim, in_dim, G + k)``; ``coef2curve`` returns per-edge values
  ``(batch, out_dim, in_dim)``.

Nothing here knows about modules; every function is a pure function of tensors.
"""

from __future__ import annotations

import torch

__all__ = [
    "b_spline_basis",
    "coef2curve",
    "curve2coef",
    "extend_grid",
    "grid_from_samples",
    "num_basis",
    "uniform_grid",
]


def num_basis(grid: torch.Tensor, k: int) -> int:
    """Number of B-spline basis functions of an extended grid: ``G + k``."""
    return grid.shape[-1] - k - 1


def extend_grid(grid: torch.Tensor, k: int) -> torch.Tensor:
    """Extend knots ``(in_dim, G + 1)`` by ``k`` equally spaced knots on each side -> ``(in_dim, G + 2k + 1)``."""
    h = (grid[:, -1:] - grid[:, :1]) / (grid.shape[1] - 1)
    steps = torch.arange(1, k + 1, device=grid.device, dtype=grid.dtype)
    left = grid[:, :1] - h * steps.flip(0)
    right = grid[:, -1:] + h * steps
    return torch.cat([left, grid, right], dim=1)


def uniform_grid(
    num: int,
    k: int,
    in_dim: int,
    grid_range: tuple[float, float] | torch.Tensor = (-1.0, 1.0),
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform extended grid with ``num`` intervals per input.

    Args:
        num: number of grid intervals ``G``.
        k: spline order.
        in_dim: number of inputs.
        grid_range: ``(low, high)`` for all inputs, or a tensor ``(in_dim, 2)``.

    Shapes:
        returns ``(in_dim, num + 2k + 1)``.
    """
    rng = torch.as_tensor(grid_range, dtype=dtype, device=device)
    if rng.ndim == 1:
        rng = rng.expand(in_dim, 2)
    t = torch.linspace(0.0, 1.0, num + 1, dtype=dtype, device=device)
    base = rng[:, :1] + (rng[:, 1:] - rng[:, :1]) * t
    return extend_grid(base, k)


def _basis_recursion(x: torch.Tensor, grid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bases of order ``k`` and ``k - 1`` (the latter is what the derivative needs)."""
    xg = x.unsqueeze(-1)
    g = grid.unsqueeze(0)
    basis = ((xg >= g[..., :-1]) & (xg < g[..., 1:])).to(x.dtype)
    prev = basis
    for p in range(1, k + 1):
        lo = g[..., : -(p + 1)]
        hi = g[..., p + 1 :]
        left = (xg - lo) / (g[..., p:-1] - lo) * basis[..., :-1]
        right = (hi - xg) / (hi - g[..., 1:-p]) * basis[..., 1:]
        prev, basis = basis, left + right
    return basis, prev


class _BSplineBasis(torch.autograd.Function):
    """B-spline bases with an analytic derivative: much less autograd bookkeeping than differentiating the
    recursion op by op (training steps of small KANs are dominated by per-op overhead)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:  # type: ignore[override]
        basis, prev = _basis_recursion(x, grid, k)
        ctx.save_for_backward(grid, prev)
        ctx.k = k
        return basis

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        grid, prev = ctx.saved_tensors
        k = ctx.k
        g = grid.unsqueeze(0)
        # d/dx B_{i,k} = k * (B_{i,k-1} / (t_{i+k} - t_i) - B_{i+1,k-1} / (t_{i+k+1} - t_{i+1}))
        left = prev[..., :-1] / (g[..., k:-1] - g[..., : -(k + 1)])
        right = prev[..., 1:] / (g[..., k + 1 :] - g[..., 1:-k])
        d = k * (left - right)
        return (grad_out * d).sum(-1), None, None


def b_spline_basis(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """Evaluate all B-spline basis functions of order ``k`` (Cox-de Boor recursion).

    Points outside the extended grid get all-zero bases (the spline part vanishes there). Differentiable in
    ``x`` (analytic derivative); the grid is treated as a constant.

    Shapes:
        x: ``(batch, in_dim)``, grid: ``(in_dim, G + 2k + 1)`` -> ``(batch, in_dim, G + k)``.
    """
    if x.requires_grad and torch.is_grad_enabled():
        return _BSplineBasis.apply(x, grid, k)
    with torch.no_grad():
        return _basis_recursion(x, grid, k)[0]


def coef2curve(x: torch.Tensor, grid: torch.Tensor, coef: torch.Tensor, k: int) -> torch.Tensor:
    """Evaluate per-edge splines.

    Shapes:
        x: ``(batch, in_dim)``, grid: ``(in_dim, G + 2k + 1)``, coef: ``(out_dim, in_dim, G + k)``
        -> ``(batch, out_dim, in_dim)``.
    """
    basis = b_spline_basis(x, grid, k)
    return torch.einsum("bin,oin->boi", basis, coef)


def curve2coef(
    x: torch.Tensor,
    y: torch.Tensor,
    grid: torch.Tensor,
    k: int,
    *,
    ridge: float = 1e-8,
) -> torch.Tensor:
    """Least-squares spline coefficients reproducing per-edge values ``y`` at samples ``x``.

    Solved per input with ridge-regularised normal equations in float64 (robust to rank deficiency, e.g.
    basis functions with no samples under them, which are pulled to zero).

    Shapes:
        x: ``(batch, in_dim)``, y: ``(batch, out_dim, in_dim)``, grid: ``(in_dim, G + 2k + 1)``
        -> coef ``(out_dim, in_dim, G + k)`` in the dtype of ``y``.
    """
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("curve2coef: samples contain NaN or Inf; cannot fit spline coefficients")
    a = b_spline_basis(x.double(), grid.double(), k).permute(1, 0, 2)  # (in, batch, nb)
    b = y.double().permute(2, 0, 1)  # (in, batch, out)
    ata = a.transpose(1, 2) @ a  # (in, nb, nb)
    atb = a.transpose(1, 2) @ b  # (in, nb, out)
    nb = ata.shape[-1]
    scale = ata.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1.0)[:, None, None]
    eye = torch.eye(nb, dtype=ata.dtype, device=ata.device)
    lhs = ata + ridge * scale * eye
    sol, info = torch.linalg.cholesky_ex(lhs)
    if bool((info != 0).any()):
        coef = torch.linalg.pinv(lhs) @ atb
    else:
        coef = torch.cholesky_solve(atb, sol)
    return coef.permute(2, 0, 1).to(y.dtype).contiguous()


def grid_from_samples(x: torch.Tensor, num: int, k: int, *, grid_eps: float = 0.02) -> torch.Tensor:
    """Grid adapted to the sample distribution (pykan's ``grid_eps`` rule).

    The knots are ``grid_eps * uniform + (1 - grid_eps) * percentiles`` of the samples of each input, so
    ``grid_eps = 1`` gives a uniform grid over ``[min, max]`` and ``grid_eps = 0`` pure percentiles.

    Shapes:
        x: ``(batch, in_dim)`` -> ``(in_dim, num + 2k + 1)``.
    """
    if x.shape[0] < 2:
        raise ValueError(f"grid_from_samples needs at least 2 samples, got {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise ValueError("grid_from_samples: samples contain NaN or Inf")
    xs = torch.sort(x, dim=0).values  # (batch, in)
    idx = torch.linspace(0, xs.shape[0] - 1, num + 1, device=x.device).round().long()
    adaptive = xs[idx].T  # (in, num+1)
    lo, hi = xs[0], xs[-1]
    span = (hi - lo).clamp_min(1e-4)
    hi = lo + span
    t = torch.linspace(0.0, 1.0, num + 1, device=x.device, dtype=x.dtype)
    uniform = lo[:, None] + span[:, None] * t
    adaptive = adaptive.clone()
    adaptive[:, 0], adaptive[:, -1] = lo, hi
    grid = grid_eps * uniform + (1.0 - grid_eps) * adaptive
    # Strictly increasing knots keep Cox-de Boor well defined even for repeated sample values.
    min_gap = span * 1e-3 / num
    knots = [grid[:, 0]]
    for i in range(1, num + 1):
        knots.append(torch.maximum(grid[:, i], knots[-1] + min_gap))
    return extend_grid(torch.stack(knots, dim=1), k)
