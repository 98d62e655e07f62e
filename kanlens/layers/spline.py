"""The B-spline KAN layer: one learnable 1-D function per edge, evaluated as "basis expansion, then one matmul"."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import splines
from ..hooks import HookPoint

__all__ = ["BASE_FUNCTIONS", "KANLayer"]

BASE_FUNCTIONS = {
    "silu": F.silu,
    "identity": lambda x: x,
    "zero": torch.zeros_like,
    "tanh": torch.tanh,
    "gelu": F.gelu,
}


def _dsilu(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s + b * (1 - s)  # silu' = s + x s (1 - s) = s + silu(x) (1 - s)


def _dgelu(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x * math.sqrt(0.5))) + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


# Derivatives ``b'(x)`` given ``x`` and ``b(x)``, for the hand-written backward of ``_EdgeMagnitude``.
_BASE_DERIVATIVES = {
    "silu": _dsilu,
    "identity": lambda x, b: torch.ones_like(x),
    "zero": lambda x, b: torch.zeros_like(x),
    "tanh": lambda x, b: 1 - b * b,
    "gelu": _dgelu,
}


class _EdgeMagnitude(torch.autograd.Function):
    """Layer output ``(batch, out)`` and per-edge mean magnitude ``mean_b |phi_ji(x_bi)|`` ``(out, in)`` in one node.

    The sparsity penalty needs ``|phi|`` of every edge, i.e. the ``(batch, out, in)`` activations; as ordinary
    autograd ops (basis, einsum, scales, mask, abs, mean and the basis' own backward) that was ~100 small tensor
    ops per layer and evaluation, which dominated LBFGS fits of small KANs. Here the forward is a handful of
    batched ops laid out ``(in, out, batch)`` (samples innermost) and the backward is written out by hand. Tested
    against the autograd composition and with ``torch.autograd.gradcheck``.
    """

    @staticmethod
    def forward(ctx, x, coef, scale_base, scale_sp, mask, grid, k, base_name):  # type: ignore[override]
        need_x = ctx.needs_input_grad[0]
        basis, dbasis = splines.basis_by_input(x, grid, k, with_derivative=need_x)  # (in, nb, batch)
        xt = x.T  # (in, batch)
        base = BASE_FUNCTIONS[base_name](xt)
        w_sp = scale_sp * mask
        w_base = (scale_base * mask).T.unsqueeze(-1)  # (in, out, 1)
        coef_eff = (coef * w_sp.unsqueeze(-1)).transpose(0, 1)  # (in, out, nb)
        phi = torch.baddbmm(w_base * base.unsqueeze(1), coef_eff, basis)  # (in, out, batch)
        ctx.save_for_backward(x, basis, dbasis, base, phi, coef, coef_eff, w_sp, w_base, mask)
        ctx.base_name = base_name
        return phi.sum(0).T, phi.abs().mean(-1).T

    @staticmethod
    def backward(ctx, g_out, g_mag):  # type: ignore[override]
        x, basis, dbasis, base, phi, coef, coef_eff, w_sp, w_base, mask = ctx.saved_tensors
        need = ctx.needs_input_grad
        # d/dphi of the output (sum over inputs) and of the magnitude (mean over samples of |phi|): (in, out, batch)
        g_phi = torch.addcmul(g_out.T, phi.sign(), g_mag.T.unsqueeze(-1), value=1.0 / phi.shape[-1])
        g_x = g_coef = g_sb = g_sp = None
        if need[0]:
            g_xt = (torch.bmm(coef_eff.transpose(1, 2), g_phi) * dbasis).sum(1)  # spline part (in, batch)
            g_base = torch.bmm(w_base.transpose(1, 2), g_phi).squeeze(1)  # (in, batch)
            g_x = torch.addcmul(g_xt, g_base, _BASE_DERIVATIVES[ctx.base_name](x.T, base)).T
        if need[1] or need[3]:
            g_ceff = torch.bmm(g_phi, basis.transpose(1, 2)).transpose(0, 1)  # (out, in, nb)
            if need[1]:
                g_coef = g_ceff * w_sp.unsqueeze(-1)
            if need[3]:
                g_sp = (g_ceff * coef).sum(-1) * mask
        if need[2]:
            g_sb = torch.bmm(g_phi, base.unsqueeze(-1)).squeeze(-1).T * mask
        return g_x, g_coef, g_sb, g_sp, None, None, None, None


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_range(grid_range: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in grid_range)
    except (TypeError, ValueError):
        raise ValueError(f"grid_range must be a pair (low, high), got {grid_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"grid_range must be finite with low < high, got {grid_range!r}")
    return lo, hi


class KANLayer(nn.Module):
    """A layer of ``out_dim x in_dim`` learnable edge functions.

    Each edge computes ``phi_ji(x_i) = scale_base_ji * b(x_i) + scale_sp_ji * spline_ji(x_i)`` and output ``j``
    is ``sum_i mask_ji * phi_ji(x_i)``. ``b`` is SiLU by default.

    Args:
        in_dim: number of inputs.
        out_dim: number of outputs.
        grid: number of grid intervals ``G``.
        k: spline order (3 = cubic).
        noise_scale: amplitude of the random initial spline coefficients.
        scale_base_mu, scale_base_sigma: initial base scale is ``(mu + sigma * U(-1, 1)) / sqrt(in_dim)``.
        scale_sp: initial spline scale (divided by ``sqrt(in_dim)``).
        base_fun: name of the base function (``"silu"``, ``"identity"``, ``"zero"``, ``"tanh"``, ``"gelu"``).
        grid_range: initial range covered by the grid.
        grid_eps: 0 = fully adaptive grid updates, 1 = uniform (see :func:`kanlens.splines.grid_from_samples`).
        generator: local random generator used for initialisation (global RNGs are never touched).

    Shapes:
        ``forward``: ``(batch, in_dim) -> (batch, out_dim)``;
        ``forward_edges``: ``(batch, in_dim) -> (batch, out_dim, in_dim)``.

    Example:
        >>> layer = KANLayer(2, 3, grid=5, k=3)
        >>> layer(torch.zeros(4, 2)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        grid: int = 5,
        k: int = 3,
        *,
        noise_scale: float = 0.5,
        scale_base_mu: float = 0.0,
        scale_base_sigma: float = 1.0,
        scale_sp: float = 1.0,
        base_fun: str = "silu",
        grid_range: tuple[float, float] = (-1.0, 1.0),
        grid_eps: float = 0.02,
        sp_trainable: bool = True,
        sb_trainable: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_dim = _check_int("in_dim", in_dim, 1)
        self.out_dim = _check_int("out_dim", out_dim, 1)
        self.num = _check_int("grid", grid, 1)
        self.k = _check_int("k", k, 1)
        if base_fun not in BASE_FUNCTIONS:
            from ..utils import did_you_mean

            raise ValueError(f"unknown base_fun {base_fun!r}{did_you_mean(base_fun, BASE_FUNCTIONS)}")
        self.base_fun_name = base_fun
        self.grid_eps = float(grid_eps)
        grid_range = _check_range(grid_range)
        if generator is None:
            generator = torch.Generator().manual_seed(0)

        grid_t = splines.uniform_grid(self.num, self.k, in_dim, grid_range, dtype=dtype)
        self.register_buffer("grid", grid_t)
        self.register_buffer("mask", torch.ones(out_dim, in_dim, dtype=dtype))

        # Initial splines: least-squares fit of small noise at the grid knots (pykan's initialisation).
        knots = grid_t[:, self.k : -self.k].T  # (G+1, in)
        noise = (torch.rand(knots.shape[0], out_dim, in_dim, generator=generator, dtype=dtype) - 0.5)
        noise = noise * noise_scale / self.num
        coef = splines.curve2coef(knots, noise, grid_t, self.k)
        self.coef = nn.Parameter(coef)

        u = torch.rand(out_dim, in_dim, generator=generator, dtype=dtype) * 2 - 1
        sb = (scale_base_mu + scale_base_sigma * u) / math.sqrt(in_dim)
        self.scale_base = nn.Parameter(sb, requires_grad=sb_trainable)
        sp = torch.full((out_dim, in_dim), scale_sp / math.sqrt(in_dim), dtype=dtype)
        self.scale_sp = nn.Parameter(sp, requires_grad=sp_trainable)

        self.hook_edges = HookPoint()
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------ evaluation
    @property
    def base_fun(self):
        return BASE_FUNCTIONS[self.base_fun_name]

    def spline_weight(self) -> torch.Tensor:
        """Effective spline weights ``scale_sp * mask * coef``, shape ``(out_dim, in_dim, G + k)``."""
        return self.coef * (self.scale_sp * self.mask).unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path: ``b(x) @ Wb^T + basis(x) @ Ws^T``; never builds ``(batch, out, in)`` unless hooked."""
        if self.hook_edges.has_hooks():
            edges = self.hook_edges(self.forward_edges(x))
            return edges.sum(-1)
        basis = splines.b_spline_basis(x, self.grid, self.k)  # (batch, in, nb)
        w_sp = self.spline_weight().flatten(1)  # (out, in*nb)
        w_base = self.scale_base * self.mask
        return self.base_fun(x) @ w_base.T + basis.flatten(1) @ w_sp.T

    def forward_edges(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge activations ``mask * phi_ji(x_i)``, shape ``(batch, out_dim, in_dim)``."""
        spline = splines.coef2curve(x, self.grid, self.coef, self.k)  # (batch, out, in)
        base = self.base_fun(x).unsqueeze(1)  # (batch, 1, in)
        return (self.scale_base * base + self.scale_sp * spline) * self.mask

    def forward_with_magnitude(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output ``(batch, out_dim)`` and per-edge magnitudes ``mean_b |phi_ji(x_bi)|`` ``(out_dim, in_dim)``.

        Equal to ``edges = forward_edges(x); (edges.sum(-1), edges.abs().mean(0))`` but one autograd node with a
        hand-written backward (what the sparsity penalty evaluates at every optimizer step). Falls back to that
        composition when ``hook_edges`` has hooks or ``base_fun`` has no known derivative.
        """
        if self.hook_edges.has_hooks() or self.base_fun_name not in _BASE_DERIVATIVES:
            edges = self.hook_edges(self.forward_edges(x))
            return edges.sum(-1), edges.abs().mean(0)
        return _EdgeMagnitude.apply(x, self.coef, self.scale_base, self.scale_sp, self.mask, self.grid, self.k,
                                    self.base_fun_name)

    def spline_edges(self, x: torch.Tensor) -> torch.Tensor:
        """Raw spline values (no scales, no mask), shape ``(batch, out_dim, in_dim)``."""
        return splines.coef2curve(x, self.grid, self.coef, self.k)

    # ------------------------------------------------------------------ grids
    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, *, grid_eps: float | None = None) -> None:
        """Move the grid to the distribution of ``x`` and refit coefficients so each spline is preserved on ``x``.

        Shapes:
            x: ``(batch, in_dim)``.
        """
        eps = self.grid_eps if grid_eps is None else grid_eps
        x = x.detach()
        y = self.spline_edges(x)
        new_grid = splines.grid_from_samples(x, self.num, self.k, grid_eps=eps)
        # Fit on the samples plus a dense sweep of the old grid's interior, so the spline also stays put
        # between samples and where the data is sparse.
        xs = torch.cat([x, self._dense_points(x, new_grid)], dim=0)
        ys = torch.cat([y, self.spline_edges(xs[x.shape[0]:])], dim=0)
        self.coef.data = splines.curve2coef(xs, ys, new_grid, self.k)
        self.grid.copy_(new_grid)

    def _dense_points(self, x: torch.Tensor, new_grid: torch.Tensor, n: int = 64) -> torch.Tensor:
        lo = new_grid[:, self.k]
        hi = new_grid[:, -self.k - 1]
        t = torch.linspace(0, 1, n, dtype=x.dtype, device=x.device)[:, None]
        return lo + (hi - lo) * t

    @torch.no_grad()
    def refine(self, new_grid: int, x: torch.Tensor | None = None) -> KANLayer:
        """A new layer with ``new_grid`` intervals computing the same function (pykan's grid extension).

        With samples ``x`` the new grid adapts to them (``grid_eps`` rule); without, it is uniform on the current
        grid's range.
        """
        _check_int("new_grid", new_grid, 1)
        layer = KANLayer.__new__(KANLayer)
        nn.Module.__init__(layer)
        layer.in_dim, layer.out_dim, layer.num, layer.k = self.in_dim, self.out_dim, new_grid, self.k
        layer.base_fun_name, layer.grid_eps = self.base_fun_name, self.grid_eps
        lo = self.grid[:, self.k]
        hi = self.grid[:, -self.k - 1]
        if x is not None:
            grid = splines.grid_from_samples(x.detach(), new_grid, self.k, grid_eps=self.grid_eps)
        else:
            grid = splines.uniform_grid(new_grid, self.k, self.in_dim, torch.stack([lo, hi], 1))
        grid = grid.to(self.grid)
        t = torch.linspace(0, 1, 8 * (new_grid + self.k) + 1, dtype=grid.dtype, device=grid.device)[:, None]
        xs = grid[:, self.k] + (grid[:, -self.k - 1] - grid[:, self.k]) * t
        if x is not None:
            xs = torch.cat([xs, x.detach().to(xs)], 0)
        coef = splines.curve2coef(xs, self.spline_edges(xs), grid, self.k)
        layer.register_buffer("grid", grid)
        layer.register_buffer("mask", self.mask.clone())
        layer.coef = nn.Parameter(coef)
        layer.scale_base = nn.Parameter(self.scale_base.detach().clone(), self.scale_base.requires_grad)
        layer.scale_sp = nn.Parameter(self.scale_sp.detach().clone(), self.scale_sp.requires_grad)
        layer.hook_edges = HookPoint()
        return layer

    def subset(self, in_ids: list[int], out_ids: list[int]) -> KANLayer:
        """A smaller layer keeping only inputs ``in_ids`` and outputs ``out_ids`` (edge functions unchanged)."""
        layer = KANLayer.__new__(KANLayer)
        nn.Module.__init__(layer)
        layer.in_dim, layer.out_dim, layer.num, layer.k = len(in_ids), len(out_ids), self.num, self.k
        layer.base_fun_name, layer.grid_eps = self.base_fun_name, self.grid_eps
        ii = torch.as_tensor(in_ids, dtype=torch.long, device=self.grid.device)
        oo = torch.as_tensor(out_ids, dtype=torch.long, device=self.grid.device)
        layer.register_buffer("grid", self.grid[ii].clone())
        layer.register_buffer("mask", self.mask[oo][:, ii].clone())
        layer.coef = nn.Parameter(self.coef.detach()[oo][:, ii].clone())
        layer.scale_base = nn.Parameter(self.scale_base.detach()[oo][:, ii].clone(), self.scale_base.requires_grad)
        layer.scale_sp = nn.Parameter(self.scale_sp.detach()[oo][:, ii].clone(), self.scale_sp.requires_grad)
        layer.hook_edges = HookPoint()
        return layer

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, grid={self.num}, k={self.k}, "
            f"base_fun={self.base_fun_name}"
        )
