"""Refitting splines onto a new grid: the shared core of ``update_grid`` and ``refine`` (pure tensor math).

A grid update or a grid extension keeps every edge function while moving or refining the knots: evaluate the old
splines at sample points (the data, plus a dense sweep of a range so that the function also stays put between
samples) and least-squares fit the new coefficients there. :class:`kanlens.layers.conv.KANConv2d` builds its
``update_grid`` / ``refine`` from these steps; :class:`kanlens.layers.spline.KANLayer` follows the same recipe.
"""

from __future__ import annotations

import torch

from . import splines

__all__ = ["quantile_subsample", "range_sweep", "refit_coef", "target_grid"]


def quantile_subsample(samples: torch.Tensor, m: int) -> torch.Tensor:
    """At most ``m`` rows: evenly spaced order statistics per column (keeps min and max of every channel).

    Shapes:
        samples: ``(n, C)`` -> ``(min(n, m), C)``.
    """
    if samples.shape[0] <= m:
        return samples
    srt = torch.sort(samples, dim=0).values
    idx = torch.linspace(0, srt.shape[0] - 1, m, device=samples.device).round().long()
    return srt[idx]


def range_sweep(lo: torch.Tensor, hi: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` evenly spaced points from ``lo`` to ``hi`` (ends included) per channel.

    Shapes:
        lo, hi: ``(C,)`` -> ``(n, C)``.
    """
    t = torch.linspace(0, 1, n, dtype=lo.dtype, device=lo.device)[:, None]
    return lo + (hi - lo) * t


def target_grid(
    num: int, k: int, lo: torch.Tensor, hi: torch.Tensor, samples: torch.Tensor | None, grid_eps: float
) -> torch.Tensor:
    """A grid of ``num`` intervals: fitted to ``samples`` (``grid_eps`` rule) when given, else uniform on
    ``[lo, hi]`` per channel; in ``lo``'s dtype and device.

    Shapes:
        lo, hi: ``(C,)``; samples: ``(n, C)`` -> ``(C, num + 2k + 1)``.
    """
    if samples is not None:
        grid = splines.grid_from_samples(samples, num, k, grid_eps=grid_eps)
    else:
        grid = splines.uniform_grid(num, k, lo.shape[0], torch.stack([lo, hi], 1))
    return grid.to(lo)


def refit_coef(
    xs: torch.Tensor, old_grid: torch.Tensor, coef: torch.Tensor, grid: torch.Tensor, k: int
) -> torch.Tensor:
    """Coefficients on ``grid`` of the splines ``coef`` on ``old_grid``, least-squares matched at ``xs``.

    Shapes:
        xs: ``(n, C)``; old_grid, grid: ``(C, *)``; coef: ``(E, C, nb_old)`` -> ``(E, C, nb_new)``.
    """
    ys = splines.coef2curve(xs, old_grid, coef, k)
    return splines.curve2coef(xs, ys, grid, k)
