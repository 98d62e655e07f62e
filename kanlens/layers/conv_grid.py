"""Grids of KAN convolutions: per-channel grid facts (memoised), coefficient layouts, ``update_grid`` and ``refine``.

A KAN convolution keeps one grid per *input channel* (every kernel offset of a channel sees the same pixel
values), shape ``(in_channels, G + 2k + 1)``. :class:`ConvGridMixin` holds what depends on that grid alone (is it
uniform, which range lies inside every channel's grid), memoised until the grid changes, and moves or refines the
grids while keeping every element function, with the refit steps of :mod:`kanlens.spline_refit` that
:class:`~kanlens.layers.spline.KANLayer` follows as well.
"""

from __future__ import annotations

import copy
import math
import weakref

import torch
from torch import nn

from .. import splines
from .._checks import as_int
from ..spline_refit import quantile_subsample, range_sweep, refit_coef, target_grid

__all__ = ["ConvGridMixin"]


class ConvGridMixin:
    """Grid state and grid changes of :class:`~kanlens.layers.conv.KANConvNd` (a mixin: needs its attributes)."""

    # provided by the layer class
    grid: torch.Tensor
    coef: nn.Parameter
    element_coef: torch.Tensor
    k: int
    num: int
    grid_eps: float
    in_channels: int
    out_channels: int
    groups: int
    kernel_size: tuple[int, ...]
    shared_shape: bool
    _n: int

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_grid_memo_store", None)  # derived values (and a weak reference): rebuilt on first use
        return state

    def _grid_memo(self) -> dict:
        """Values derived from the grid alone, kept until the grid changes (a new tensor, an in-place change such
        as ``update_grid`` or ``load_state_dict``, or an edit through ``.data``: see
        :func:`kanlens.splines.value_stamp`)."""
        g = self.grid
        memo = self.__dict__.get("_grid_memo_store")
        # a weak reference, not the address: a new grid tensor may reuse a freed one's memory and version number
        if memo is None or memo[0]() is not g or not splines.value_unchanged(g, memo[1]):
            memo = (weakref.ref(g), splines.value_stamp(g), {})
            self.__dict__["_grid_memo_store"] = memo
        return memo[2]

    def _grid_info(self) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, float, float]:
        """``(spacing, lo, hi)``: :meth:`_uniform_spacing`'s result and the range ``[lo, hi]`` inside every channel's
        grid (``lo`` = largest first inner knot, ``hi`` = smallest last one).

        Memoised (:meth:`_grid_memo`): the uniformity test costs ~10 small ops and a sync per forward otherwise.
        """
        memo = self._grid_memo()
        if "info" in memo:
            return memo["info"]
        g = self.grid
        with torch.no_grad():
            d = g[:, 1:] - g[:, :-1]
            h = d[:, :1]
            spacing = None
            if bool(((d - h).abs() <= 1e-4 * h.abs()).all()):
                spacing = g[:, 0].clone(), (g[:, -1] - g[:, 0]) / (g.shape[1] - 1)
            lo, hi = g[:, self.k].max().item(), g[:, -self.k - 1].min().item()
        memo["info"] = (spacing, lo, hi)
        return memo["info"]

    def _uniform_spacing(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(t_0, h)`` per channel when every channel's grid is uniform, else ``None``."""
        return self._grid_info()[0]

    # ------------------------------------------------------------------ coefficient layouts
    def _stored_coef(self, full: torch.Tensor) -> torch.Tensor:
        """The ``coef`` parameter's layout of per-element coefficients ``full`` (shared shapes: the first offset's;
        after a grid update all offsets of a pair hold the same refitted spline)."""
        if not self.shared_shape:
            return full
        return full[(slice(None), slice(None), *([slice(0, 1)] * self._n))].contiguous()

    def _to_channel_major(self, t: torch.Tensor) -> torch.Tensor:
        """``(out, in_g, *K, *rest)`` -> ``(out_g * prod(K), in_channels, *rest)`` (elements grouped per channel)."""
        g, n, ksize = self.groups, self._n, self.kernel_size
        out_g = self.out_channels // g
        rest = t.shape[2 + n :]
        t = t.reshape(g, out_g, t.shape[1], *ksize, *rest)
        perm = [1, *range(3, 3 + n), 0, 2, *range(3 + n, t.ndim)]
        return t.permute(perm).reshape(out_g * math.prod(ksize), self.in_channels, *rest)

    def _from_channel_major(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_to_channel_major`."""
        g, n, ksize = self.groups, self._n, self.kernel_size
        out_g, in_g = self.out_channels // g, self.in_channels // g
        rest = t.shape[2:]
        t = t.reshape(out_g, *ksize, g, in_g, *rest)
        perm = [1 + n, 0, 2 + n, *range(1, 1 + n), *range(3 + n, t.ndim)]
        return t.permute(perm).reshape(self.out_channels, in_g, *ksize, *rest).contiguous()

    # ------------------------------------------------------------------ grid changes
    def _pixel_samples(self, x: torch.Tensor, max_samples: int) -> torch.Tensor:
        """Checked, padded pixel values of ``x`` as ``(n, in_channels)`` rows, at most ``max_samples`` of them."""
        x = self.check_input(x)
        samples = self.pad_input(x.detach()).movedim(1, -1).reshape(-1, self.in_channels)
        return quantile_subsample(samples, max_samples)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, *, grid_eps: float | None = None, max_samples: int = 4096) -> None:
        """Fit each channel's grid to the (padded) pixel values of ``x``, keeping every element function.

        ``grid_eps=1`` (the conv default) spreads knots uniformly over ``[min, max]`` of the pixels, which keeps
        the closed-form fast basis; image pixels are too spiky (e.g. most MNIST pixels are exactly 0) for
        percentile knots.

        Shapes:
            x: ``(batch, in_channels, *spatial)``.
        """
        eps = self.grid_eps if grid_eps is None else grid_eps
        samples = self._pixel_samples(x, max_samples)
        grid = splines.grid_from_samples(samples, self.num, self.k, grid_eps=eps)
        sweep = range_sweep(grid[:, self.k], grid[:, -self.k - 1], 8 * (self.num + self.k) + 1)
        xs = torch.cat([samples, sweep], dim=0)
        coef = refit_coef(xs, self.grid, self._to_channel_major(self.element_coef), grid, self.k)
        self.coef.data = self._stored_coef(self._from_channel_major(coef))
        self.grid.copy_(grid)

    @torch.no_grad()
    def refine(self, new_grid: int, x: torch.Tensor | None = None):  # -> same type as self
        """A copy with ``new_grid`` intervals per channel computing the same functions (pykan's grid extension).

        Without ``x`` the new grid is uniform on the current range (a finer uniform grid whose knots contain the
        old ones reproduces the old splines exactly); with ``x`` it follows the padded pixels (``grid_eps`` rule).
        """
        as_int("new_grid", new_grid, 1)
        lo, hi = self.grid[:, self.k], self.grid[:, -self.k - 1]
        samples = None if x is None else self._pixel_samples(x, 4096)
        grid = target_grid(new_grid, self.k, lo, hi, samples, self.grid_eps)
        xs = range_sweep(lo, hi, 8 * (new_grid + self.k) + 1)  # keep the functions over the current grid range
        if samples is not None:
            xs = torch.cat([xs, samples.to(xs)], 0)  # ... and on the samples
        coef = refit_coef(xs, self.grid, self._to_channel_major(self.element_coef), grid, self.k)
        layer = copy.deepcopy(self)
        layer.num = new_grid
        layer.grid = grid
        layer.coef = nn.Parameter(self._stored_coef(self._from_channel_major(coef)))
        return layer
