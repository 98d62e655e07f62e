"""The convolution's feature expansion on uniform grids: ``x -> [b(x), k! B_0(x), ...]`` with an analytic backward.

One question: how a pixel becomes the ``1 + nb`` feature channels of the fused convolution fast, and how the
gradient flows back. The closed-form bases come from :mod:`kanlens.cardinal`; the base functions and their
derivatives from :mod:`kanlens.layers.spline`. Used by :class:`kanlens.layers.conv.KANConv2d` (and ``KANConv1d``).
"""

from __future__ import annotations

import math

import torch

from ..cardinal import FAR, cardinal_basis, expand_rows
from .spline import _BASE_DERIVATIVES, BASE_FUNCTIONS, recompute_grads

__all__ = ["UniformFeatures"]


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
        grad_x = g_base.mul_(_BASE_DERIVATIVES[ctx.base_name](xpm, base(xpm))).add_(grad_t.div_(h))
        return grad_x.view(*gl.shape[:-1], c).movedim(-1, 1), None, None, None, None, None

