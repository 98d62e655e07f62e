"""Inspection of KAN convolutions: per-element activations, element functions on a sweep, scores, the penalty.

The fast path (:meth:`kanlens.layers.conv.KANConvNd.forward`) never builds the ``(batch, out, in, *K, *out_spatial)``
tensor of element activations; :class:`ConvInspectionMixin` builds it on demand (the ``hook_elements`` hook point,
plots, scores, the sample-based sparsity penalty) straight from the definition, which also makes it the reference
the fast path is tested against.
"""

from __future__ import annotations

import torch

from .._checks import check_tensor

__all__ = ["ConvInspectionMixin", "mean_abs_over_positions"]

_AXES = "yz"  # output positions in einsum strings
_KAX = "uv"  # kernel offsets in einsum strings


def mean_abs_over_positions(el: torch.Tensor, n: int) -> torch.Tensor:
    """Mean ``|el|`` over the batch and the trailing ``n`` output-position axes.

    Shapes:
        el: ``(batch, *E, *out_spatial)`` -> ``E``.
    """
    return el.abs().mean(dim=(0, *range(el.ndim - n, el.ndim)))


class ConvInspectionMixin:
    """The inspection API of :class:`~kanlens.layers.conv.KANConvNd` (a mixin: needs the layer's attributes)."""

    # provided by the layer class
    grid: torch.Tensor
    coef: torch.Tensor
    element_coef: torch.Tensor
    scale_base: torch.Tensor
    scale_sp: torch.Tensor
    mask: torch.Tensor
    in_channels: int
    out_channels: int
    groups: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    num_basis: int
    _n: int

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Input values seen by each kernel offset at each output position (after padding).

        Shapes:
            x: ``(batch, C, *spatial)`` -> ``(batch, C, *K, *out_spatial)``.
        """
        p = self.pad_input(x)
        n = self._n
        for d in range(n):
            span = self.dilation[d] * (self.kernel_size[d] - 1) + 1
            p = p.unfold(2 + d, span, self.stride[d])[..., :: self.dilation[d]]
        # now (B, C, *O, *K)
        perm = [0, 1, *range(2 + n, 2 + 2 * n), *range(2, 2 + n)]
        return p.permute(perm)

    def forward_elements(self, x: torch.Tensor) -> torch.Tensor:
        """Per-element activations ``mask * phi_ocu(x)`` at every output position (no bias).

        Summing over the input-channel and kernel axes gives ``forward(x) - bias``. Memory grows as
        ``batch * out * in_g * prod(K) * prod(out_spatial)``: use small batches.

        Shapes:
            x: ``(batch, in_channels, *spatial)`` -> ``(batch, out_channels, in_channels // groups, *K, *out_spatial)``.
        """
        x = self.check_input(x)
        n, g = self._n, self.groups
        out_g, in_g = self.out_channels // g, self.in_channels // g
        p = self.patches(x)  # (B, C, *K, *O)
        b = p.shape[0]
        kdims, odims = p.shape[2 : 2 + n], p.shape[2 + n :]
        bases = self.basis(p, channel_dim=1)  # (B, C, nb, *K, *O)
        bases = bases.reshape(b, g, in_g, self.num_basis, *kdims, *odims)
        coef = self.element_coef.reshape(g, out_g, in_g, *self.kernel_size, self.num_basis)
        ks, os_ = _KAX[:n], _AXES[:n]
        spline = torch.einsum(f"bgin{ks}{os_},goi{ks}n->bgoi{ks}{os_}", bases, coef)
        spline = spline.reshape(b, self.out_channels, in_g, *kdims, *odims)
        base = self.base_fun(p).reshape(b, g, 1, in_g, *kdims, *odims)
        base = base.expand(b, g, out_g, in_g, *kdims, *odims).reshape(b, self.out_channels, in_g, *kdims, *odims)
        tail = (1,) * n
        sb = self.scale_base.view(1, *self.scale_base.shape, *tail)
        ss = self.scale_sp.view(1, *self.scale_sp.shape, *tail)
        mask = self.mask.view(1, *self.mask.shape, *tail)
        return (sb * base + ss * spline) * mask

    def channel_index(self) -> torch.Tensor:
        """Input channel read by each ``(out_channel, in_channel_of_group)`` pair, shape ``(out, in_g)``."""
        out_g, in_g = self.out_channels // self.groups, self.in_channels // self.groups
        o = torch.arange(self.out_channels, device=self.grid.device)[:, None]
        return (o // out_g) * in_g + torch.arange(in_g, device=self.grid.device)

    def element_functions(self, xs: torch.Tensor) -> torch.Tensor:
        """Every element function evaluated at sample values ``xs`` of its input channel (for plots and fits).

        Shapes:
            xs: ``(m,)`` (shared by all channels) or ``(m, in_channels)`` ->
            ``(m, out_channels, in_channels // groups, *K)`` (masked, no bias).
        """
        xs = check_tensor("xs", xs)
        if xs.ndim == 1:
            xs = xs[:, None].expand(-1, self.in_channels)
        if xs.ndim != 2 or xs.shape[1] != self.in_channels:
            raise ValueError(f"xs must have shape (m,) or (m, {self.in_channels}), got {tuple(xs.shape)}")
        ci = self.channel_index()
        ks = _KAX[: self._n]
        bases = self.basis(xs, channel_dim=1)[:, ci]  # (m, out, in_g, nb)
        spline = torch.einsum(f"moin,oi{ks}n->moi{ks}", bases, self.element_coef)
        base = self.base_fun(xs)[:, ci].reshape(xs.shape[0], *ci.shape, *([1] * self._n))
        return (self.scale_base * base + self.scale_sp * spline) * self.mask

    # ------------------------------------------------------------------ scores and regularisation
    def element_magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """Mean ``|phi|`` of each element over the batch and all output positions (the KAN paper's edge score).

        Shapes:
            x: ``(batch, in_channels, *spatial)`` -> ``(out_channels, in_channels // groups, *K)``.
        """
        return mean_abs_over_positions(self.forward_elements(x), self._n)

    def regularization(
        self,
        x: torch.Tensor,
        *,
        lamb_l1: float = 1.0,
        lamb_entropy: float = 2.0,
        lamb_coef: float = 0.0,
        lamb_coefdiff: float = 0.0,
    ) -> torch.Tensor:
        """The KANLayer sparsity penalty on this layer's elements (see :mod:`kanlens.regularization`).

        Each output channel is a node whose inputs are its ``in_g * prod(K)`` kernel elements.
        """
        from ..regularization import coef_penalty, l1_entropy

        mag = self.element_magnitude(x).flatten(1)
        reg = l1_entropy(mag, lamb_l1, lamb_entropy)
        return reg + coef_penalty(self.coef.flatten(1, -2), lamb_coef, lamb_coefdiff)
