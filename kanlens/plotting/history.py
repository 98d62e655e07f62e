"""Training curves from :func:`kanlens.fit` (train / test RMSE, regularisation, grid updates)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._common import pyplot, save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_history"]

_CURVES = (("train_loss", "train RMSE", "tab:blue", "-"), ("test_loss", "test RMSE", "tab:orange", "-"),
           ("reg", "regularisation", "tab:green", "--"))


def _get(history: Any, key: str) -> list[float]:
    try:
        values = history[key]
    except (KeyError, TypeError, AttributeError):
        values = getattr(history, key, None)
    return [] if values is None else [float(v) for v in values]


def _stages(history: Any) -> list[Any]:
    if isinstance(history, Mapping) or hasattr(history, "train_loss"):
        return [history]
    if isinstance(history, Sequence) and not isinstance(history, str) and history:
        return list(history)
    raise TypeError(
        "history must be a FitHistory (what fit() returns), a dict with 'train_loss', or a list of them; "
        f"got {type(history).__name__}"
    )


def plot_history(
    history: Any,
    *,
    log: bool = True,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    ax: Axes | None = None,
    dpi: int = 150,
) -> Figure:
    """Loss and regularisation per step; several histories (fit, refine, fit again...) are drawn end to end.

    Args:
        history: a :class:`~kanlens.training.FitHistory`, a pykan-style results dict (``train_loss``, ``test_loss``,
            ``reg``) or a list of them (consecutive training stages, separated by vertical lines).
        log: logarithmic y axis (non-positive values are masked).
        title: axes title.
        path: write the figure here (.png, .svg or .pdf); nothing is written without it.
        ax: draw into this axes; default: a new figure.
        dpi: resolution of a PNG written to ``path``.

    Returns:
        the matplotlib ``Figure``. Grid updates recorded in ``history.grid_updates`` are dotted vertical lines.

    Example:
        >>> fig = plot_history(model.fit(dataset, steps=50), path="loss.png")
    """
    stages = _stages(history)
    series: dict[str, list[float]] = {key: [] for key, *_ in _CURVES}
    bounds, grid_steps, offset = [], [], 0
    for s in stages:
        n = len(_get(s, "train_loss"))
        if n == 0:
            raise ValueError("history has no 'train_loss' values to plot (did training run any step?)")
        for key in series:
            vals = _get(s, key)
            series[key] += (vals + [np.nan] * n)[:n]
        grid_steps += [offset + g for g in _get(s, "grid_updates")]
        offset += n
        bounds.append(offset)

    plt = pyplot()
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
    else:
        fig = ax.figure
    steps = np.arange(1, offset + 1)
    for key, label, color, ls in _CURVES:
        v = np.asarray(series[key], dtype=float)
        if np.isfinite(v).any() and (not log or (v[np.isfinite(v)] > 0).any()):
            ax.plot(steps, v, label=label, color=color, ls=ls, lw=1.6)
    for k, g in enumerate(grid_steps):
        ax.axvline(g + 0.5, color="0.6", lw=0.7, ls=":", alpha=0.7, label="grid update" if k == 0 else None)
    for b in bounds[:-1]:
        ax.axvline(b + 0.5, color="0.3", lw=1.0, ls="-", alpha=0.6)
    if log:
        ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel("step")
    ax.set_ylabel("RMSE / penalty")
    ax.grid(alpha=0.25, which="both")
    ax.legend(fontsize=9)
    if title is not None:
        ax.set_title(title)
    if own:
        fig.tight_layout()
    save_figure(fig, path, dpi=dpi, release=own)
    return fig
