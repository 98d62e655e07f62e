"""KAN convolutions: every kernel weight becomes a learnable 1-D function (:class:`KANConv2d`, :class:`KANConv1d`).

An element ``(o, c, u)`` of the kernel (output channel ``o``, input channel ``c`` of its group, kernel offset ``u``)
computes ``phi_ocu(x) = scale_base * b(x) + scale_sp * spline_ocu(x)``, the same edge function as
:class:`~kanlens.layers.spline.KANLayer`, and an output pixel is the sum of ``phi_ocu`` over the input pixels
of its window (plus a bias).

Fast path ("expand, then one convolution"): each pixel is expanded once into ``1 + G + k`` feature channels
``[b(x), B_0(x), ..., B_{G+k-1}(x)]`` and a single ordinary convolution over ``C * (1 + G + k)`` channels with the
stacked weights ``[scale_base, scale_sp * coef]`` gives the output. Padded pixels are *evaluated* as in the
definition (``phi(0)`` is in general not 0): other padding modes pad the input before the expansion; zero padding
(equal on both sides) expands only the input's own pixels, lets the convolution zero-pad the features and adds the
padded pixels' part: the weights' tap sums of the features of ``x = 0`` times a memoised mask of the taps that
land in the padding (see :meth:`KANConvNd._border`). On CPU, when every evaluated input lies inside every
channel's grid range the bases sum to one there, so the last basis of each channel is folded into the other
weights and the bias (``C * (G + k)`` channels, see :meth:`KANConvNd._fused_weight`). The
``(batch, out, in, K, K, H, W)`` tensor of element activations is built only on demand (:meth:`forward_elements`,
the ``hook_elements`` hook point, plots and scores).

On uniform grids the expanded input is stored channels-last, memory order ``(batch, *spatial, C, 1 + G + k)``,
the layout of oneDNN's fastest CPU kernels for the forward convolution and the weight gradient. It is built without
a transposing copy: one small GEMM spreads each pixel's channel values into their feature slots, and the closed-form
basis passes then run over contiguous, cache-sized chunks of pixels (:func:`kanlens.cardinal.expand_rows`).

Grids are per *input channel* (every kernel offset of a channel sees the same pixel values), shape
``(in_channels, G + 2k + 1)``. On a uniform grid the basis is evaluated in closed form (cardinal B-splines,
about 5x cheaper than the Cox-de Boor recursion); non-uniform grids use :func:`kanlens.splines.b_spline_basis`.

The layer is assembled from rooms that each answer one question:

- :mod:`kanlens.cardinal`: the closed-form cardinal B-spline bases (pure math);
- :mod:`kanlens.layers.conv_features`: bases and per-pixel features (uniform grids: closed form, analytic backward);
- :mod:`kanlens.layers.conv_padding`: padding amounts, output sizes, input-size checks, padded taps;
- :mod:`kanlens.layers.conv_plan`: which fast path ``forward`` takes, decided once per input signature;
- :mod:`kanlens.layers.conv_inspect`: per-element activations, element functions, scores, the penalty;
- :mod:`kanlens.layers.conv_grid`: grid facts (memoised), ``update_grid`` and ``refine``;
- this module: parameters, the fused weights and the forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import splines
from .._checks import as_int, check_choice, check_tensor
from ..cardinal import cardinal_basis  # re-exported: part of this module's public names
from ..hooks import HookPoint
from . import conv_padding
from .conv_features import ConvFeaturesMixin
from .conv_grid import ConvGridMixin
from .conv_inspect import ConvInspectionMixin
from .conv_padding import PADDING_MODES, ntuple
from .conv_plan import ConvPlan, choose_kernel
from .spline import BASE_FUNCTIONS, check_grid_range

__all__ = ["KANConv1d", "KANConv2d", "KANConvNd", "cardinal_basis"]

_DIM_NAMES = {1: "L", 2: "H, W"}
_MAX_PLANS = 8  # input signatures remembered per grid (many input sizes: start over)


class KANConvNd(ConvFeaturesMixin, ConvInspectionMixin, ConvGridMixin, nn.Module):
    """Shared implementation of KAN convolutions over ``n`` spatial dimensions (see :class:`KANConv2d`)."""

    _n: int = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        grid: int = 5,
        k: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        padding_mode: str = "zeros",
        *,
        noise_scale: float = 0.5,
        scale_base_mu: float = 0.0,
        scale_base_sigma: float = 1.0,
        scale_sp: float = 1.0,
        base_fun: str = "silu",
        grid_eps: float = 1.0,
        shared_shape: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.in_channels = as_int("in_channels", in_channels, 1)
        self.out_channels = as_int("out_channels", out_channels, 1)
        self.groups = as_int("groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        self._set_geometry(kernel_size, stride, padding, dilation, padding_mode)
        self.num = as_int("grid", grid, 1)
        self.k = as_int("k", k, 1)
        check_choice("base_fun", base_fun, BASE_FUNCTIONS)
        self.base_fun_name = base_fun
        self.grid_eps = splines.check_grid_eps(grid_eps)
        if not isinstance(shared_shape, bool):
            raise TypeError(f"shared_shape must be True or False, got {shared_shape!r}")
        self.shared_shape = shared_shape
        grid_range = check_grid_range(grid_range)
        if generator is None:
            generator = torch.Generator().manual_seed(0)

        in_g = in_channels // groups
        fan_in = in_g * math.prod(self.kernel_size)
        elem_shape = (out_channels, in_g, *self.kernel_size)
        grid_t = splines.uniform_grid(self.num, self.k, in_channels, grid_range, dtype=dtype)
        self.register_buffer("grid", grid_t)
        self.register_buffer("mask", torch.ones(elem_shape, dtype=dtype))

        # Initial splines: least-squares fit of small noise at the knots, as in KANLayer.
        knots = grid_t[:, self.k : -self.k].T  # (G+1, C)
        per_channel = (out_channels // groups) * math.prod(self.kernel_size)
        noise = torch.rand(knots.shape[0], per_channel, in_channels, generator=generator, dtype=dtype) - 0.5
        coef = splines.curve2coef(knots, noise * noise_scale / self.num, grid_t, self.k)
        # (out, in_g, *K, nb); shared shapes: (out, in_g, 1, .., 1, nb), the first kernel offset's initial spline
        self.coef = nn.Parameter(self._stored_coef(self._from_channel_major(coef)))
        u = torch.rand(elem_shape, generator=generator, dtype=dtype) * 2 - 1
        self.scale_base = nn.Parameter((scale_base_mu + scale_base_sigma * u) / math.sqrt(fan_in))
        self.scale_sp = nn.Parameter(torch.full(elem_shape, scale_sp / math.sqrt(fan_in), dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(out_channels, dtype=dtype)) if bias else None
        self.hook_elements = HookPoint()
        if device is not None:
            self.to(device)

    def _set_geometry(self, kernel_size, stride, padding, dilation, padding_mode: str) -> None:
        """Check and store nn.Conv's geometry arguments (``kernel_size`` ... ``padding_mode``)."""
        n = self._n
        self.kernel_size = ntuple("kernel_size", kernel_size, n, 1)
        self.stride = ntuple("stride", stride, n, 1)
        self.dilation = ntuple("dilation", dilation, n, 1)
        self.padding_mode = check_choice("padding_mode", padding_mode, PADDING_MODES)
        self.padding: tuple[int, ...] | str
        if isinstance(padding, str):
            check_choice("padding", padding, ("valid", "same"))
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions (as in nn.Conv2d)")
            self.padding = padding
        else:
            self.padding = ntuple("padding", padding, n, 0)

    # ------------------------------------------------------------------ shapes and padding
    @property
    def num_basis(self) -> int:
        """Spline bases per element, ``G + k``."""
        return self.num + self.k

    @property
    def element_coef(self) -> torch.Tensor:
        """Spline coefficients of every element, ``(out, in_g, *K, G + k)`` (a broadcast view for shared shapes)."""
        return self.coef.expand(self.out_channels, self.in_channels // self.groups, *self.kernel_size,
                                self.num_basis)

    @property
    def base_fun(self):
        return BASE_FUNCTIONS[self.base_fun_name]

    @property
    def padding_pairs(self) -> tuple[tuple[int, int], ...]:
        """``(before, after)`` padding per spatial dim, nn.Conv's rules (``'same'`` puts the extra pixel after).

        Derived from ``padding``, ``dilation`` and ``kernel_size`` on every use, so changing those attributes
        after construction takes effect (as for ``nn.Conv2d``)."""
        return conv_padding.padding_pairs(self.padding, self.kernel_size, self.dilation)

    _pad = padding_pairs  # the former private name

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output size for a spatial input size (nn.Conv's formula)."""
        return conv_padding.output_shape(input_shape, self.padding_pairs, self.kernel_size, self.stride,
                                         self.dilation)

    def check_input(self, x: object) -> torch.Tensor:
        """``x`` as a checked input tensor: rank, channels, dtype and device, and a kernel that fits the padding.

        Raises ``TypeError`` / ``ValueError`` naming the problem (non-finite values are allowed, as in
        ``nn.Conv2d``).

        Shapes:
            x: ``(batch, in_channels, *spatial)``, returned as is.
        """
        x = check_tensor("x", x, finite=False, allow_empty=True)
        n = self._n
        if x.ndim != n + 2:
            raise ValueError(
                f"{type(self).__name__} expects x of shape (batch, channels, {_DIM_NAMES[n]})"
                f" ({n + 2}-D), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x has {x.shape[1]} channels (shape {tuple(x.shape)}) but the layer expects in_channels="
                f"{self.in_channels}"
            )
        if x.dtype != self.coef.dtype or x.device != self.coef.device:
            raise TypeError(f"x is {x.dtype} on {x.device} but the layer's weights are {self.coef.dtype} on "
                            f"{self.coef.device}; cast one with .to()")
        conv_padding.check_spatial(x.shape, self.padding_pairs, self.kernel_size, self.dilation, self.padding_mode)
        return x

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``x`` the way the layer does before evaluating any element function."""
        return conv_padding.pad(x, self.padding_pairs, self.padding_mode)

    def plan(self, x: torch.Tensor) -> ConvPlan:
        """The fast-path plan for inputs like ``x`` (see :mod:`kanlens.layers.conv_plan`), built once per input
        signature and geometry and kept until the grid changes.

        Shapes:
            x: ``(batch, in_channels, *spatial)`` (checked by :meth:`check_input`).
        """
        spatial = tuple(x.shape[2:])
        key = (spatial, x.dtype, x.device, self.padding, self.padding_mode, self.kernel_size, self.stride,
               self.dilation, self.groups, self.in_channels, self.out_channels, self.base_fun_name)
        plans = self._grid_memo().setdefault("plans", {})
        plan = plans.get(key)
        if plan is None:
            if len(plans) >= _MAX_PLANS:
                plans.clear()
            plan = plans[key] = ConvPlan.build(
                spatial, pairs=self.padding_pairs, padding_mode=self.padding_mode,
                uniform=self._uniform_spacing() is not None, in_channels=self.in_channels,
                out_channels=self.out_channels, groups=self.groups, kernel_size=self.kernel_size,
                stride=self.stride, dilation=self.dilation,
            )
        return plan

    # ------------------------------------------------------------------ weights and forward
    def conv_weight(self) -> torch.Tensor:
        """Stacked weights of the fused convolution, ``(out, in_g * (1 + G + k), *K)``.

        Channel ``c * (1 + G + k)`` of the feature map is ``b(x_c)``, the next ``G + k`` are ``x_c``'s bases.
        """
        return self._fused_weight(False)[0]

    def _fused_weight(self, drop_last: bool, unit: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight, bias)`` of the fused convolution; with ``drop_last``, for features without the last basis.

        Inside the grid the bases sum to one, ``B_last = 1 - sum_{j < last} B_j``, so
        ``sum_j w_j B_j = sum_{j < last} (w_j - w_last) B_j + w_last``: the last basis channel of every input
        channel is folded into the other weights and into the bias (every output sums ``w_last`` over its whole
        window, padded pixels included). ``unit`` multiplies the spline weights, for features that hold
        ``B_j / unit`` (the closed-form expansion leaves out the ``1 / k!``).
        ``weight``: ``(out, in_g * (1 + G + k - drop_last), *K)``.
        """
        base = (self.scale_base * self.mask).unsqueeze(-1)
        sp = self.coef * (self.scale_sp * self.mask).unsqueeze(-1)  # (out, in_g, *K, nb)
        bias = self.bias
        if drop_last:
            last = sp[..., -1:]
            sp = sp[..., :-1] - last
            folded = last.flatten(1).sum(1)
            bias = folded if bias is None else bias + folded
        if unit != 1.0:
            sp = sp * unit
        w = torch.cat([base, sp], dim=-1).movedim(-1, 2)  # (out, in_g, nb1, *K)
        return w.reshape(self.out_channels, -1, *self.kernel_size), bias

    def _conv(
        self,
        feats: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        padding: Sequence[int] | None = None,
        source: torch.Tensor | None = None,
        kernel: str | None = None,
    ) -> torch.Tensor:
        """The fused convolution of features (see :meth:`features`), zero-padded by ``padding`` (default none).
        ``source``: the values the features were expanded from (lets a depthwise 1x1 layer take its GEMM path);
        ``kernel``: the plan's choice (:func:`~kanlens.layers.conv_plan.choose_kernel`; chosen here if ``None``).

        Shapes:
            feats: ``(batch, C * (1 + nb), *S)`` -> ``(batch, out, *out_spatial)`` in feats' memory layout.
        """
        n = self._n
        padding = tuple(padding) if padding is not None else (0,) * n
        if kernel is None:
            kernel = choose_kernel(n, self.in_channels, self.out_channels, self.groups, self.kernel_size,
                                   self.stride, padding)
        if kernel == "depthwise":
            return self._depthwise(feats, weight, bias, source)
        if kernel == "conv1d":  # as a 2-D convolution over a height-1 image: one code path, channels-last kernels
            out = F.conv2d(feats.unsqueeze(2), weight.unsqueeze(2), bias, (1, *self.stride), (0, *padding),
                           (1, *self.dilation), self.groups)
            return out.squeeze(2)
        return F.conv2d(feats, weight, bias, self.stride, padding, self.dilation, self.groups)

    def _depthwise(
        self, feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, source: torch.Tensor | None
    ) -> torch.Tensor:
        """Depthwise 1x1 (a learned per-channel activation): a weighted sum over each channel's own features, ~4x
        faster than a grouped convolution with ``1 + nb`` channels per group.

        Shapes:
            feats: ``(batch, C * (1 + nb), *S)`` -> ``(batch, C, *S)``.
        """
        tail = (1,) * self._n
        c = self.in_channels
        w = weight.view(c, -1)  # (C, nb1)
        pixel_major = feats.movedim(1, -1)
        # channels-last features: one GEMM with a block-diagonal weight; only for finite inputs, since its
        # zero blocks would spread a NaN or Inf (0 * inf) to the pixel's other channels (a check that reads
        # the input back: CPU only, elsewhere the per-channel sum runs)
        if (pixel_major.is_contiguous() and source is not None and source.device.type == "cpu"
                and bool(torch.isfinite(source).all())):
            block = (w.unsqueeze(-1) * torch.eye(c, dtype=w.dtype, device=w.device).unsqueeze(1)).flatten(0, 1)
            out = (pixel_major.reshape(-1, w.numel()) @ block).view(*pixel_major.shape[:-1], c).movedim(-1, 1)
        else:
            per = feats.view(feats.shape[0], c, -1, *feats.shape[2:])  # (B, C, nb1, *S)
            out = (per * w.view(1, c, -1, *tail)).sum(2)
        return out if bias is None else out + bias.view(1, -1, *tail)

    def _border(self, weight: torch.Tensor, drop: bool, plan: ConvPlan) -> torch.Tensor:
        """What the zero-padded pixels add to every output (the features of ``x = 0`` seen through the taps that
        land in the padding).

        ``border[o, p] = sum_u (sum_c weight[o, c, u] f0[c]) * outside[u, p]``, where ``f0`` are the features of
        ``x = 0`` and ``outside[u, p]`` says whether tap ``u`` of output ``p`` reads a padded pixel
        (:func:`~kanlens.layers.conv_padding.padded_taps`). Both depend on the grid only and are memoised in the
        plan (per input size); the rest is a GEMM of ``(out, prod(K))`` by ``(prod(K), prod(out_spatial))``.

        Shapes:
            weight: ``(out, Cf / groups, *K)`` -> ``(1, out, *out_spatial)``.
        """
        if drop not in plan.border:
            with torch.no_grad():
                zero = self.grid.new_zeros(1, self.in_channels, *([1] * self._n))
                f0 = self._features(zero, drop)[0].reshape(-1)  # (Cf,)
                outside = conv_padding.padded_taps(plan.spatial, plan.pairs, self.kernel_size, self.stride,
                                                   self.dilation, dtype=f0.dtype, device=f0.device)
            plan.border[drop] = (f0, outside)  # (Cf,), (prod K, prod O)
        f0, outside = plan.border[drop]
        g = self.groups
        w = weight.reshape(g, self.out_channels // g, -1, outside.shape[0])  # (g, O_g, Cf_g, prod K)
        taps = torch.einsum("gock,gc->gok", w, f0.view(g, -1)).reshape(self.out_channels, -1)
        return (taps @ outside).view(1, self.out_channels, *plan.out_spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path: expand pixels into basis channels, one convolution (the path chosen by :meth:`plan`).

        With zero padding (the same amount on both sides) only the input's own pixels are expanded: the
        convolution pads the features with zeros and :meth:`_border` adds what the padded pixels' features
        contribute (on 14 x 14 images with padding 1 that expands 196 pixels instead of 256).

        Shapes:
            x: ``(batch, in_channels, *spatial)`` -> ``(batch, out_channels, *out_spatial)``, contiguous.
        """
        x = self.check_input(x)
        if self.hook_elements.has_hooks():
            elements = self.hook_elements(self.forward_elements(x))
            out = elements.flatten(1 + 1, 2 + self._n).sum(2)
            if self.bias is not None:
                out = out + self.bias.view(1, -1, *([1] * self._n))
            return out
        plan = self.plan(x)
        xs = x if plan.ring else self.pad_input(x)
        drop = plan.uniform and self._inside_grid(xs, with_zero=plan.ring)
        feats, unit = self._features(xs, drop)
        weight, bias = self._fused_weight(drop, unit)
        if not plan.ring:
            return self._conv(feats, weight, bias, source=xs, kernel=plan.kernel).contiguous()
        extra = self._border(weight, drop, plan)
        if bias is not None:
            extra = extra + bias.view(1, -1, *([1] * self._n))
        # (1, out, *S) first: the sum comes out contiguous in one pass, whatever the convolution's layout
        return extra + self._conv(feats, weight, None, plan.conv_padding, kernel=plan.kernel)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        if self.shared_shape:
            s += ", shared_shape=True"
        return s + f", grid={self.num}, k={self.k}, base_fun={self.base_fun_name}"


class KANConv2d(KANConvNd):
    """2-D KAN convolution: ``nn.Conv2d``'s arguments and output shapes, a learnable function per kernel weight.

    ``out[b, o, y, x] = bias[o] + sum_{c, u, v} phi_{o,c,u,v}(xpad[b, g(o) * in_g + c, y*s + u*d, x*s + v*d])`` with
    ``phi = scale_base * b + scale_sp * spline`` (as in :class:`~kanlens.layers.spline.KANLayer`). Parameters per
    ``(in, out)`` channel pair: ``K^2 * (G + k + 2)``; with ``shared_shape=True``, ``2 K^2 + G + k``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode: as in
            ``nn.Conv2d`` (``padding`` may be ``'valid'`` or ``'same'``). Padded pixels are evaluated like any
            other pixel (``phi(0) != 0`` in general), so padding changes the result the same way as in the naive
            definition.
        grid: number of grid intervals ``G``.
        k: spline order.
        grid_range: initial range covered by every channel's grid.
        noise_scale, scale_base_mu, scale_base_sigma, scale_sp, base_fun: initialisation and base function, as in
            ``KANLayer`` (scales are divided by ``sqrt(in_channels // groups * K * K)``).
        grid_eps: grid update rule (1 = uniform over the data range, the conv default; 0 = percentiles).
        shared_shape: one spline per ``(out, in)`` channel pair, scaled per kernel element:
            ``phi_{o,c,u,v} = scale_base_{o,c,u,v} * b + scale_sp_{o,c,u,v} * spline_{o,c}``. Every element still
            has its own function (a mix of ``b`` and the pair's spline), for ``2 + (G + k) / K^2`` parameters
            instead of ``G + k + 2``; ``coef`` then has shape ``(out, in_g, 1, 1, G + k)``
            (:attr:`element_coef` is the per-element view). The saving buys channels: on MNIST at ~5.8K
            parameters this layout is the more accurate one (see ``docs/benchmarks.md``).
        generator: local random generator for the initialisation (global RNGs are never touched).

    Shapes:
        ``forward``: ``(batch, in_channels, H, W) -> (batch, out_channels, H_out, W_out)`` with nn.Conv2d's sizes;
        ``forward_elements``: ``-> (batch, out_channels, in_channels // groups, Kh, Kw, H_out, W_out)``.

    Example:
        >>> conv = KANConv2d(1, 8, 3, padding=1, grid=5, k=3)
        >>> conv(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 8, 28, 28])
    """

    _n = 2


class KANConv1d(KANConvNd):
    """1-D KAN convolution with ``nn.Conv1d``'s arguments; see :class:`KANConv2d`.

    Shapes:
        ``forward``: ``(batch, in_channels, L) -> (batch, out_channels, L_out)``.

    Example:
        >>> KANConv1d(2, 4, 5, padding=2)(torch.rand(3, 2, 50)).shape
        torch.Size([3, 4, 50])
    """

    _n = 1
