"""The B-spline KAN layer: one learnable 1-D function per edge, evaluated as "basis expansion, then one matmul"."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import splines
from .._checks import as_int
from ..hooks import HookPoint
from ..spline_refit import range_sweep, target_grid
from .dense import dense_forward
from .reorder import swap_ids

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
BASE_DERIVATIVES = {
    "silu": _dsilu,
    "identity": lambda x, b: torch.ones_like(x),
    "zero": lambda x, b: torch.zeros_like(x),
    "tanh": lambda x, b: 1 - b * b,
    "gelu": _dgelu,
}


_ONES: dict[tuple, torch.Tensor] = {}  # (shape, dtype, device) -> ones, for _all_ones


def _all_ones(mask: torch.Tensor) -> bool:
    """Whether every entry of ``mask`` is exactly 1 (one comparison with a cached tensor of ones)."""
    key = (mask.shape, mask.dtype, mask.device)
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = torch.ones(mask.shape, dtype=mask.dtype, device=mask.device)
    return torch.equal(mask, ones)


_DATA_CACHE: dict[int, tuple] = {}  # x (data), grid -> (x.T, b(x.T), dense bases); see splines.cached_value


def _data_terms(x: torch.Tensor, grid: torch.Tensor, k: int, base_name: str):
    """``(xt, b(xt), bases)`` of an input that needs no gradient, laid out ``(in, batch)`` / ``(in, nb, batch)``;
    remembered for the very same ``x`` (the training data) until ``x`` or ``grid`` change."""
    key = (k, base_name)
    hit = splines.cached_value(_DATA_CACHE, key, x, grid)
    if hit is not None:
        return hit
    xt = x.detach().T.contiguous()
    terms = (xt, BASE_FUNCTIONS[base_name](xt), splines.basis_by_input(x, grid, k)[0])
    return terms if x.is_inference() else splines.remember_value(_DATA_CACHE, terms, key, x, grid)


def edge_forward(x, coef, scale_base, scale_sp, mask, grid, k: int, base_name: str, need_x: bool,
                 data: bool | None = None):
    """Spline layer output ``(batch, out)`` and per-edge mean magnitudes ``mean_b |phi_ji(x_bi)|`` ``(out, in)``,
    without autograd, plus what :func:`edge_backward` needs (the forward half of :class:`_EdgeMagnitude`).

    The per-edge activations are formed laid out ``(in, out, batch)`` (samples innermost). The splines come

    * from the dense bases of ``x`` when ``x`` is ``data`` (an input evaluated again and again, e.g. the training
      data; default: when it needs no gradient): the bases (and ``b(x)``) are cached across calls,
    * else, for narrow layers, from per-interval polynomials of the splines (``coef @ poly_coef_matrix``, a tiny
      matmul): each sample gathers ``2k + 1`` numbers per edge and runs Horner for the value (and the derivative
      if ``need_x``), instead of building and scattering dense bases and their derivatives,
    * else from dense bases (and derivatives) computed for ``x``.
    """
    if data is None:
        data = not need_x
    n_out, n_in, nb = coef.shape
    n, m = x.shape[0], grid.shape[1]
    if _all_ones(mask):  # the usual unpruned layer: multiplying by the mask changes nothing (x * 1.0 == x)
        w_sp, w_base, mask = scale_sp, scale_base.T.unsqueeze(-1), None
    else:
        w_sp, w_base = scale_sp * mask, (scale_base * mask).T.unsqueeze(-1)  # (out, in), (in, out, 1)
    coef_eff = (coef * w_sp.unsqueeze(-1)).transpose(0, 1)  # (in, out, nb)
    if data and not need_x:
        xt, base, basis = _data_terms(x, grid, k, base_name)
        phi = torch.baddbmm(w_base * base.unsqueeze(1), coef_eff, basis)  # (in, out, batch)
        saved = ("dense", k, base_name, xt, base, phi, coef, w_sp, w_base, mask, coef_eff, basis, None)
        return phi.sum(0).T, phi.abs().mean(-1).T, saved
    xt = x.detach().T.contiguous()  # (in, batch)
    base = BASE_FUNCTIONS[base_name](xt)
    if not data and (2 * k + 1) * n_out <= 2 * (nb + 2 * k + 1):
        t, cols = splines.locate_columns(xt, grid, k)  # cols: (in, batch) column of (in, interval)
        q = splines.poly_coef_matrix(grid, k)  # (in, nb, (2k+1) * M)
        # rows (power, out), columns (in, interval): gathering columns keeps the samples innermost
        a = torch.bmm(coef_eff, q).view(n_in, n_out, 2 * k + 1, m).permute(2, 1, 0, 3)
        rows = a.reshape(-1, n_in * m).index_select(1, cols.view(-1)).view(2 * k + 1, n_out, n_in, n)
        spline, dspline = rows[k], (rows[2 * k] if need_x else None)
        for p in range(k - 1, -1, -1):  # Horner in t = x - knot_s: values ...
            spline = torch.addcmul(rows[p], spline, t)
        for p in range(2 * k - 1, k, -1) if need_x else ():  # ... and derivatives
            dspline = torch.addcmul(rows[p], dspline, t)
        phi = torch.addcmul(spline.transpose(0, 1), w_base, base.unsqueeze(1))  # (in, out, batch) view
        saved = ("poly", k, base_name, xt, base, phi, coef, w_sp, w_base, mask, q, cols, t, dspline)
    else:
        basis, dbasis = splines.basis_by_input(x, grid, k, with_derivative=need_x)  # (in, nb, batch)
        phi = torch.baddbmm(w_base * base.unsqueeze(1), coef_eff, basis)  # (in, out, batch)
        saved = ("dense", k, base_name, xt, base, phi, coef, w_sp, w_base, mask, coef_eff, basis, dbasis)
    return phi.sum(0).T, phi.abs().mean(-1).T, saved


def _poly_coef_grad(g_phi, q, cols, t, k: int) -> torch.Tensor:
    """Gradient ``(out, in, nb)`` of the effective spline coefficients on the polynomial path: the sum over the
    samples of each interval of ``g_phi * t^p`` (one scatter), mapped back through ``poly_coef_matrix``."""
    n_in, n_out, n = g_phi.shape
    r, m = k + 1, q.shape[-1] // (2 * k + 1)
    parts = g_phi.new_empty(r, n_out, n_in, n)  # (power, out, in, batch)
    parts[0].copy_(g_phi.transpose(0, 1))
    for p in range(1, r):
        torch.mul(parts[p - 1], t, out=parts[p])
    g_a = g_phi.new_zeros(r * n_out, n_in * m).scatter_add_(
        1, cols.view(1, -1).expand(r * n_out, -1), parts.view(r * n_out, -1))
    g_a = g_a.view(r, n_out, n_in, m).permute(2, 1, 0, 3).reshape(n_in, n_out, -1)
    return torch.bmm(g_a, q[:, :, : r * m].transpose(1, 2)).transpose(0, 1)


def edge_backward(saved, g_out, g_mag, need: tuple[bool, bool, bool, bool]):
    """Gradients ``(x, coef, scale_base, scale_sp)`` (``None`` where not in ``need``) of the outputs of
    :func:`edge_forward` given their gradients ``g_out`` ``(batch, out)`` and ``g_mag`` ``(out, in)`` (or ``None``)."""
    path, k, base_name, xt, base, phi, coef, w_sp, w_base, mask, *rest = saved
    n_in, n_out, n = phi.shape
    # d/dphi of the output (sum over inputs) and of the magnitude (mean over samples of |phi|): (in, out, batch)
    if g_mag is None:
        g_phi = g_out.T.unsqueeze(0).expand(n_in, n_out, n)
    else:
        g_phi = torch.addcmul(g_out.T, phi.sign(), g_mag.T.unsqueeze(-1), value=1.0 / n)
    g_x = g_coef = g_sb = g_sp = g_ceff = None
    if path == "poly":
        q, cols, t, dspline = rest
        if need[0]:
            g_x = g_phi.transpose(0, 1) * dspline  # spline part (out, in, batch) ...
            g_x = g_x[0] if n_out == 1 else g_x.sum(0)  # ... summed over outputs (in, batch)
        if need[1] or need[3]:
            g_ceff = _poly_coef_grad(g_phi, q, cols, t, k)  # (out, in, nb)
    else:
        coef_eff, basis, dbasis = rest
        if need[0]:
            g_x = (torch.bmm(coef_eff.transpose(1, 2), g_phi) * dbasis).sum(1)  # spline part (in, batch)
        if need[1] or need[3]:
            g_ceff = torch.bmm(g_phi, basis.transpose(1, 2)).transpose(0, 1)  # (out, in, nb)
    if need[0]:
        if n_out == 1:
            g_base = g_phi[:, 0] * w_base[:, 0]  # (in, batch)
        else:
            g_base = torch.bmm(w_base.transpose(1, 2), g_phi).squeeze(1)
        g_x = torch.addcmul(g_x, g_base, BASE_DERIVATIVES[base_name](xt, base)).T
    if g_ceff is not None:
        if need[1]:
            g_coef = g_ceff * w_sp.unsqueeze(-1)
        if need[3]:
            g_sp = (g_ceff * coef).sum(-1)
            g_sp = g_sp if mask is None else g_sp * mask
    if need[2]:
        g_sb = torch.bmm(g_phi, base.unsqueeze(-1)).squeeze(-1).T
        g_sb = g_sb if mask is None else g_sb * mask
    return g_x, g_coef, g_sb, g_sp


def edge_values(x, coef, scale_base, scale_sp, mask, grid, k: int, base_name: str) -> torch.Tensor:
    """Per-edge activations ``mask * (scale_base * b(x_i) + scale_sp * spline_ji(x_i))`` as ordinary autograd ops.

    Shapes:
        x: ``(batch, in)`` -> ``(batch, out, in)``.
    """
    spline = splines.coef2curve(x, grid, coef, k)  # (batch, out, in)
    return (scale_base * BASE_FUNCTIONS[base_name](x).unsqueeze(1) + scale_sp * spline) * mask


def edge_reference(x, coef, scale_base, scale_sp, mask, grid, k: int, base_name: str):
    """:func:`edge_forward`'s ``(output, magnitudes)`` as ordinary autograd ops (differentiable to any order)."""
    edges = edge_values(x, coef, scale_base, scale_sp, mask, grid, k, base_name)
    return edges.sum(-1), edges.abs().mean(0)


def recompute_grads(fn, inputs: tuple, needs: tuple, grads_out: tuple) -> tuple:
    """Gradients of ``fn(*inputs)`` (a tuple of outputs) for the outputs' gradients ``grads_out``, by evaluating
    ``fn`` again with autograd and differentiating that with ``create_graph=True``.

    The backward of a node with a hand-written backward calls this when it runs under ``create_graph=True``
    (grad mode is on there): its own formulas treat the forward's intermediates as constants, so their result
    would be a wrong function of the inputs for a second derivative. ``None`` for inputs not in ``needs``.
    """
    with torch.enable_grad():
        outs = fn(*inputs)
    pairs = [(o, g) for o, g in zip(outs, grads_out) if g is not None and o.requires_grad]
    wrt = [inp for inp, need in zip(inputs, needs) if need]
    if not pairs or not wrt:
        return tuple(None for _ in needs)
    got = iter(torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], create_graph=True,
                                   allow_unused=True))
    return tuple(next(got) if need else None for need in needs)


class _EdgeMagnitude(torch.autograd.Function):
    """Layer output ``(batch, out)`` and per-edge mean magnitude ``mean_b |phi_ji(x_bi)|`` ``(out, in)`` in one node.

    The sparsity penalty needs ``|phi|`` of every edge, i.e. the ``(batch, out, in)`` activations; as ordinary
    autograd ops (basis, einsum, scales, mask, abs, mean and the basis' own backward) that was ~100 small tensor
    ops per layer and evaluation, which dominated LBFGS fits of small KANs. Here the forward is a handful of
    batched ops (:func:`edge_forward`) and the backward is written out by hand (:func:`edge_backward`). Tested
    against the autograd composition and with ``torch.autograd.gradcheck`` on every path.
    """

    @staticmethod
    def forward(ctx, x, coef, scale_base, scale_sp, mask, grid, k, base_name):  # type: ignore[override]
        y, mag, ctx.saved = edge_forward(x, coef, scale_base, scale_sp, mask, grid, k, base_name,
                                         ctx.needs_input_grad[0])
        ctx.save_for_backward(x, coef, scale_base, scale_sp, mask, grid)
        ctx.k, ctx.base_name = k, base_name
        return y, mag

    @staticmethod
    def backward(ctx, g_out, g_mag):  # type: ignore[override]
        need = ctx.needs_input_grad[:4]
        if torch.is_grad_enabled():  # create_graph: differentiate the autograd composition instead
            x, coef, scale_base, scale_sp, mask, grid = ctx.saved_tensors
            grads = recompute_grads(lambda *a: edge_reference(*a, mask, grid, ctx.k, ctx.base_name),
                                    (x, coef, scale_base, scale_sp), need, (g_out, g_mag))
            return (*grads, None, None, None, None)
        # ctx.saved holds intermediates only (and the coef / mask inputs, which training does not edit in place)
        return (*edge_backward(ctx.saved, g_out, g_mag, need), None, None, None, None)


def base_fun_name(base: object) -> object:
    """pykan's ``base_fun=torch.nn.SiLU()`` (a module) as kanlens's name (``"silu"``); names pass through."""
    if isinstance(base, nn.Module):
        names = {nn.SiLU: "silu", nn.Identity: "identity", nn.Tanh: "tanh", nn.GELU: "gelu"}
        if type(base) not in names:
            raise ValueError(f"base_fun={base!r} is not supported; use one of 'silu', 'identity', 'zero', 'tanh', "
                             "'gelu' (checkpoints store the name)")
        return names[type(base)]
    return base


def check_layer_input(x: object, in_dim: int, like: torch.Tensor) -> None:
    """A layer's input: a ``(batch, in_dim)`` tensor of the layer's dtype and device (cheap: no value checks)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise ValueError(f"x must have shape (batch, {in_dim}) for a layer with in_dim={in_dim}, got {tuple(x.shape)}")
    if x.dtype != like.dtype or x.device != like.device:
        raise TypeError(f"x is {x.dtype} on {x.device} but the layer is {like.dtype} on {like.device}; cast one "
                        "with .to()")


def nearest_mask(in_dim: int, out_dim: int) -> torch.Tensor:
    """``(in_dim, out_dim)`` 0/1: every node connected to the nearest node(s) of the other layer (nodes evenly
    spaced in ``[0, 1]``), pykan's ``sparse_mask``."""
    pin = (torch.arange(in_dim, dtype=torch.float64) + 0.5) / in_dim
    pout = (torch.arange(out_dim, dtype=torch.float64) + 0.5) / out_dim
    dist = (pout[:, None] - pin[None, :]).abs()
    mask = torch.zeros(in_dim, out_dim)
    mask[torch.arange(in_dim), dist.argmin(0)] = 1.0
    mask[dist.argmin(1), torch.arange(out_dim)] = 1.0
    return mask


def check_grid_range(grid_range: tuple[float, float]) -> tuple[float, float]:
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
        base_fun: name of the base function (``"silu"``, ``"identity"``, ``"zero"``, ``"tanh"``, ``"gelu"``), or
            pykan's module form (``torch.nn.SiLU()``).
        grid_range: initial range covered by the grid.
        grid_eps: 0 = fully adaptive grid updates, 1 = uniform (see :func:`kanlens.splines.grid_from_samples`).
        generator: local random generator used for initialisation (global RNGs are never touched).
        dtype: of the parameters (default: torch's default dtype).
        num: pykan's name for ``grid``.

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
        base_fun: str | nn.Module = "silu",
        grid_range: tuple[float, float] = (-1.0, 1.0),
        grid_eps: float = 0.02,
        sp_trainable: bool = True,
        sb_trainable: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        num: int | None = None,
        sparse_init: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim = as_int("in_dim", in_dim, 1)
        self.out_dim = as_int("out_dim", out_dim, 1)
        if num is not None:  # pykan's name for grid
            if grid != 5 and grid != num:
                raise ValueError(f"grid={grid} and num={num} disagree; pass one of them (num is pykan's name)")
            grid = num
        self.num = as_int("grid", grid, 1)
        self.k = as_int("k", k, 1)
        base_fun = base_fun_name(base_fun)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        if not isinstance(base_fun, str) or base_fun not in BASE_FUNCTIONS:
            from .._checks import did_you_mean

            raise ValueError(f"unknown base_fun {base_fun!r}{did_you_mean(base_fun, BASE_FUNCTIONS)}")
        self.base_fun_name = base_fun
        self.grid_eps = splines.check_grid_eps(grid_eps)
        grid_range = check_grid_range(grid_range)
        if generator is None:
            generator = torch.Generator().manual_seed(0)

        grid_t = splines.uniform_grid(self.num, self.k, in_dim, grid_range, dtype=dtype)
        self.register_buffer("grid", grid_t)
        self.register_buffer("mask", torch.ones(out_dim, in_dim, dtype=dtype))
        if sparse_init:  # pykan's sparse_init: each node wired to its nearest node(s) of the other layer
            self.mask.copy_(nearest_mask(in_dim, out_dim).T.to(dtype))

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
        check_layer_input(x, self.in_dim, self.coef)
        if self.hook_edges.has_hooks():
            edges = self.hook_edges(self.forward_edges(x))
            return edges.sum(-1)
        mask = None if _all_ones(self.mask) else self.mask
        return dense_forward(x, self.coef, self.scale_base, self.scale_sp, mask, self.grid, self.k, self.base_fun_name)

    def forward_edges(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge activations ``mask * phi_ji(x_i)``, shape ``(batch, out_dim, in_dim)``."""
        return edge_values(x, self.coef, self.scale_base, self.scale_sp, self.mask, self.grid, self.k,
                           self.base_fun_name)

    def fused_ok(self) -> bool:
        """Whether the fused sparsity path applies (no hooks on the edges, a base function with known derivative)."""
        return not self.hook_edges.has_hooks() and self.base_fun_name in BASE_DERIVATIVES

    def forward_with_magnitude(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output ``(batch, out_dim)`` and per-edge magnitudes ``mean_b |phi_ji(x_bi)|`` ``(out_dim, in_dim)``.

        Equal to ``edges = forward_edges(x); (edges.sum(-1), edges.abs().mean(0))`` but one autograd node with a
        hand-written backward (what the sparsity penalty evaluates at every optimizer step). Falls back to that
        composition when ``hook_edges`` has hooks or ``base_fun`` has no known derivative.
        """
        if not self.fused_ok():
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
        return range_sweep(new_grid[:, self.k].to(x), new_grid[:, -self.k - 1].to(x), n)

    @torch.no_grad()
    def refine(self, new_grid: int, x: torch.Tensor | None = None) -> KANLayer:
        """A new layer with ``new_grid`` intervals computing the same function (pykan's grid extension).

        With samples ``x`` the new grid adapts to them (``grid_eps`` rule); without, it is uniform on the current
        grid's range.
        """
        as_int("new_grid", new_grid, 1)
        layer = KANLayer.__new__(KANLayer)
        nn.Module.__init__(layer)
        layer.in_dim, layer.out_dim, layer.num, layer.k = self.in_dim, self.out_dim, new_grid, self.k
        layer.base_fun_name, layer.grid_eps = self.base_fun_name, self.grid_eps
        lo = self.grid[:, self.k]
        hi = self.grid[:, -self.k - 1]
        grid = target_grid(new_grid, self.k, lo, hi, None if x is None else x.detach(), self.grid_eps)
        xs = range_sweep(grid[:, self.k], grid[:, -self.k - 1], 8 * (new_grid + self.k) + 1)
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

    @torch.no_grad()
    def swap(self, i1: int, i2: int, mode: str = "in") -> None:
        """pykan's ``swap``: exchange inputs (``mode="in"``, grids included) or outputs (``"out"``) ``i1`` and
        ``i2`` in place."""
        new = self.subset(*swap_ids(self, i1, i2, mode))
        for name in ("grid", "mask", "coef", "scale_base", "scale_sp"):
            getattr(self, name).copy_(getattr(new, name))

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
