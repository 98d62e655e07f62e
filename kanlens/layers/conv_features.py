"""The feature expansion of KAN convolutions: how a pixel becomes ``[b(x), B_0(x), ..., B_{G+k-1}(x)]``.

One question: how each pixel becomes the ``1 + nb`` feature channels of the fused convolution, fast, and how the
gradient flows back. :class:`UniformFeatures` is the uniform-grid kernel (closed-form bases from
:mod:`kanlens.cardinal`, stored channels-last, analytic backward); :class:`ConvFeaturesMixin` gives the layer its
``basis`` / ``features`` methods, choosing that kernel or the Cox-de Boor recursion of :mod:`kanlens.splines`.
The base functions and their derivatives come from :mod:`kanlens.layers.spline`.
"""

from __future__ import annotations

import math

import torch

from .. import splines
from ..cardinal import FAR, cardinal_basis, expand_rows
from .spline import BASE_DERIVATIVES, BASE_FUNCTIONS, recompute_grads

__all__ = ["ConvFeaturesMixin", "UniformFeatures"]


class UniformFeatures(torch.autograd.Function):
    """``x -> [b(x), k! B_0(x), ..., k! B_{nb-1}(x)]`` per channel on uniform grids, with an analytic backward.

    The result is ``(batch, C * (1 + nb), *S)`` stored *channels-last* (memory order ``(batch, *S, C, 1 + nb)``),
    the layout of oneDNN's fastest CPU convolution kernels (forward and weight gradient), built without a
    transposing copy of the features (see :func:`kanlens.cardinal.expand_rows`; only the input is transposed).

    Shapes:
        x: ``(batch, C, *S)``, t0 and h: ``(C,)`` -> ``(batch, C * (1 + nb), *S)``.
    """

    @staticmethod
    def forward(ctx, x, t0, h, nb: int, k: int, base_name: str):
        c, nb1 = x.shape[1], nb + 1
        lead = (x.shape[0], *x.shape[2:])
        xpm = x.movedim(1, -1).reshape(-1, c)  # (N, C) pixel-major
        t = x.new_empty(xpm.shape[0], c + 1)
        t[:, c] = 1.0
        # knot coordinates of NaN, Inf or huge inputs are moved far outside the grid (all bases 0 there): the GEMM
        # of expand_rows would otherwise spread 0 * inf = NaN to the pixel's other channels (other groups); the
        # base function still sees the value itself
        tc = torch.sub(xpm, t0, out=t[:, :c]).div_(h).clamp_(-FAR, FAR)
        torch.nan_to_num_(tc, nan=FAR)
        buf = x.new_empty(*lead, c * nb1)
        flat = buf.view(-1, c * nb1)
        expand_rows(t, nb1, k, out=flat, slot0=BASE_FUNCTIONS[base_name](xpm))
        ctx.save_for_backward(xpm, t, h, x, t0)
        ctx.k, ctx.nb1, ctx.base_name = k, nb1, base_name
        return buf.movedim(-1, 1)

    @staticmethod
    def backward(ctx, grad):
        xpm, t, h, x, t0 = ctx.saved_tensors  # xpm: (N, C) pixel-major input
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        c, nb1 = xpm.shape[1], ctx.nb1
        gl = grad.movedim(1, -1)  # (B, *S, C * nb1)
        g2 = gl.reshape(-1, c * nb1)  # a copy unless grad is channels-last already
        if torch.is_grad_enabled():
            # create_graph (second derivatives): differentiate the closed form as ordinary autograd ops instead
            k, name = ctx.k, ctx.base_name

            def expand(v: torch.Tensor) -> tuple[torch.Tensor]:
                v = v.movedim(1, -1).reshape(-1, c)
                bases = cardinal_basis((v - t0) / h, nb1 - 1, k) * math.factorial(k)  # (N, C, nb)
                return (torch.cat([BASE_FUNCTIONS[name](v).unsqueeze(-1), bases], -1).flatten(1),)

            return (*recompute_grads(expand, (x,), (True,), (g2,)), None, None, None, None, None)
        g_base = torch.empty_like(xpm)  # contiguous: on strided slices the base's backward kernels are ~15x slower
        grad_t = expand_rows(t, nb1, ctx.k, grad=g2, slot0=g_base)  # (N, C)
        base = BASE_FUNCTIONS[ctx.base_name]
        grad_x = g_base.mul_(BASE_DERIVATIVES[ctx.base_name](xpm, base(xpm))).add_(grad_t.div_(h))
        return grad_x.view(*gl.shape[:-1], c).movedim(-1, 1), None, None, None, None, None


class ConvFeaturesMixin:
    """Bases and per-pixel features of :class:`~kanlens.layers.conv.KANConvNd` (a mixin: needs its attributes)."""

    # provided by the layer class
    grid: torch.Tensor
    k: int
    num_basis: int
    in_channels: int
    base_fun_name: str
    _n: int

    def basis(self, x: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
        """B-spline bases of ``x`` on each channel's grid, inserted as a new axis right after ``channel_dim``.

        Shapes:
            x: ``(..., C, ...)`` with ``C`` at ``channel_dim`` -> same with an axis of size ``G + k`` after it.
        """
        cd = channel_dim % x.ndim
        spacing = self._uniform_spacing()
        if spacing is not None:
            t0, h = spacing
            view = [1] * x.ndim
            view[cd] = -1
            t = (x - t0.view(view)) / h.view(view)
            return cardinal_basis(t, self.num_basis, self.k, dim=cd + 1)
        xl = x.movedim(cd, -1)
        return splines.b_spline_basis(xl, self.grid, self.k).movedim(-2, cd).movedim(-1, cd + 1)

    def _inside_grid(self, xp: torch.Tensor, with_zero: bool = False) -> bool:
        """Every evaluated input value (``xp``, and 0 with ``with_zero``) lies inside every channel's grid range,
        where the bases sum to one.

        Only checked on CPU: the answer must reach the host, and on an accelerator that synchronisation costs
        more than the folded basis channel saves, so there the unfolded (equally exact) path always runs.
        """
        if xp.numel() == 0 or xp.device.type != "cpu":
            return False
        _, lo, hi = self._grid_info()
        if with_zero and not lo <= 0.0 <= hi:
            return False
        mn, mx = torch.aminmax(xp)
        return bool(mn >= lo) and bool(mx <= hi)

    def features(self, xp: torch.Tensor) -> torch.Tensor:
        """Per-pixel expansion ``[b(x), B_0(x), ..., B_{G+k-1}(x)]`` of a (padded) input.

        Channel ``c * (1 + G + k)`` is ``b(x_c)``, the next ``G + k`` are ``x_c``'s bases, so that
        ``F.conv2d(layer.features(layer.pad_input(x)), layer.conv_weight(), layer.bias)`` (``conv1d`` for
        :class:`KANConv1d`, with the layer's stride, dilation and groups) equals ``layer(x)``.

        Shapes:
            xp: ``(batch, C, *spatial)`` -> ``(batch, C * (1 + G + k), *spatial)``.
        """
        feats, unit = self._features(xp)
        if unit == 1.0:
            return feats
        scale = torch.full((1 + self.num_basis,), unit, dtype=feats.dtype, device=feats.device)
        scale[0] = 1.0
        view = feats.view(feats.shape[0], self.in_channels, 1 + self.num_basis, *feats.shape[2:])
        return (view * scale.view(-1, *([1] * self._n))).flatten(1, 2)

    def _features(self, xp: torch.Tensor, drop_last: bool = False) -> tuple[torch.Tensor, float]:
        """``(features, unit)``: :meth:`features` with the bases divided by ``unit``; with ``drop_last`` (uniform
        grids only) without each channel's last basis.

        On uniform grids (``unit = 1 / k!``) the result is stored channels-last (see
        :class:`~kanlens.layers.conv_features.UniformFeatures`).
        """
        spacing = self._uniform_spacing()
        if spacing is not None:
            nb = self.num_basis - int(drop_last)
            feats = UniformFeatures.apply(xp, *spacing, nb, self.k, self.base_fun_name)
            return feats, 1.0 / math.factorial(self.k)
        assert not drop_last
        bases = self.basis(xp, channel_dim=1)  # (B, C, nb, *S)
        return torch.cat([self.base_fun(xp).unsqueeze(2), bases], dim=2).flatten(1, 2), 1.0

