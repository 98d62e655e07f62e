"""All edge functions of one layer as a grid of panels (rows: output nodes, columns: input nodes).

Up to ``max_axes`` panels each panel is a real matplotlib axes with ticks (values readable). Bigger layers switch
to a compact grid drawn in one axes (boxes with shape-normalised curves, like the network diagram): creating
hundreds of axes costs tens of milliseconds each, the compact grid renders a 20 x 20 layer in well under a second.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .._checks import is_int
from ._common import (
    SPLINE_COLOR,
    SYMBOLIC_COLOR,
    edge_curves,
    edge_state,
    layer_inputs,
    node_name,
    normalise,
    observed_range,
    pyplot,
    save_figure,
    subnode_name,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..model import KAN

__all__ = ["plot_layer"]

_MAX_SIDE = 24.0  # inches


def plot_layer(
    model: KAN,
    l: int,
    x: torch.Tensor | None = None,
    *,
    in_vars: Sequence[str] | None = None,
    sharey: bool = False,
    compact: bool | None = None,
    max_axes: int = 64,
    n: int = 100,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    dpi: int = 150,
) -> Figure:
    """A grid of the ``out x in`` edge functions of layer ``l``, each over the range of inputs it saw.

    Panel ``(j, i)`` shows ``phi_{l,j,i}``; symbolic edges are red with their function name as panel title,
    pruned edges are empty panels marked "pruned". Rows are output nodes, columns input nodes. Curves fade with
    their range relative to the layer's widest edge (``tanh(3 * range / max range)``, at least 0.15).

    Args:
        model: a :class:`~kanlens.KAN`.
        l: layer index.
        x: model inputs ``(batch, width[0])``; default: the last batch the model saw.
        in_vars: names of the model inputs (column titles of layer 0).
        sharey: one y scale for all panels (compare magnitudes) instead of one per panel (compare shapes); not
            used by the compact grid.
        compact: draw the grid in one axes without ticks; default: when the layer has more than ``max_axes`` edges.
        max_axes: the edge count above which ``compact`` turns on by default.
        n: points per curve.
        title: figure title (default names the layer and its size).
        path: write the figure here (.png, .svg or .pdf); nothing is written without it.
        dpi: resolution of a PNG written to ``path``.

    Returns:
        the matplotlib ``Figure`` (``out * in`` axes, or one axes in compact mode). Every drawn curve is a
        ``Line2D`` with ``gid="edge-l-i-j"``.

    Shapes:
        x: ``(batch, width[0])``.

    Example:
        >>> fig = plot_layer(model, 0, dataset["train_input"], path="layer0.png")
    """
    if not is_int(l):
        raise TypeError(f"l must be an int, got {type(l).__name__}")
    if not 0 <= l < model.depth:
        raise IndexError(f"l = {l} is out of range: the model has {model.depth} layers")
    n_in, n_out = model.width_in[l], model.width_out[l + 1]
    acts = layer_inputs(model, x)
    lo, hi = observed_range(acts[l])
    xs, ys = edge_curves(model, l, lo, hi, n=n)
    state = edge_state(model, l)

    if compact is None:
        compact = n_in * n_out > max_axes
    head = title if title is not None else f"layer {l}: edges from {n_in} inputs to {n_out} outputs"
    draw = _compact_grid if compact else _axes_grid
    fig = draw(model, l, xs, ys, state, in_vars, sharey, head)
    save_figure(fig, path, dpi=dpi, release=True)
    return fig


def _amplitude_alpha(ys: np.ndarray) -> np.ndarray:
    """Opacity ``(out, in)`` from each edge's range relative to the layer's largest: tiny edges fade (floor 0.15)."""
    amp = np.ptp(ys, axis=0)
    if not amp.max() > 0:
        return np.ones_like(amp)
    return np.clip(np.tanh(3 * amp / amp.max()), 0.15, 1.0)


def _axes_grid(model: KAN, l: int, xs: np.ndarray, ys: np.ndarray, state, in_vars, sharey: bool, title: str) -> Figure:
    n_in, n_out = model.width_in[l], model.width_out[l + 1]
    panel = min(1.7, _MAX_SIDE / n_in, _MAX_SIDE / n_out)
    font = float(np.clip(6 * panel, 4, 9))
    alpha = _amplitude_alpha(ys)
    plt = pyplot()
    fig, axes = plt.subplots(
        n_out, n_in, figsize=(panel * n_in + 0.9, panel * 0.85 * n_out + 0.8), squeeze=False, sharey=sharey,
        gridspec_kw={"wspace": 0.35, "hspace": 0.45},
    )
    for j in range(n_out):
        for i in range(n_in):
            ax = axes[j, i]
            ax.tick_params(labelsize=font * 0.85, length=2, pad=1)
            if not state.active[j, i]:
                ax.text(0.5, 0.5, "pruned", ha="center", va="center", transform=ax.transAxes, color="0.6",
                        fontsize=font)
                ax.set_xticks([])
                ax.set_yticks([])
                for side in ax.spines.values():
                    side.set_color("0.85")
            else:
                sym = bool(state.symbolic[j, i])
                ax.plot(xs[:, i], ys[:, j, i], color=SYMBOLIC_COLOR if sym else SPLINE_COLOR, lw=1.4,
                        alpha=float(alpha[j, i]), gid=f"edge-{l}-{i}-{j}")
                ax.axhline(0, color="0.8", lw=0.5, zorder=0)
                if sym:
                    ax.set_title(state.names[j][i], color=SYMBOLIC_COLOR, fontsize=font, pad=2)
            ax.yaxis.get_offset_text().set_fontsize(font * 0.7)
            if j == 0:
                head = node_name(model, l, i, in_vars)
                ax.set_title(head if not ax.get_title() else f"{head}: {ax.get_title()}", fontsize=font, pad=7)
            if i == 0:
                ax.set_ylabel(subnode_name(model, l + 1, j), fontsize=font)
    fig.suptitle(title, fontsize=font + 3)
    fig.subplots_adjust(left=0.6 / fig.get_figwidth() + 0.02, right=0.98, bottom=0.3 / fig.get_figheight(),
                        top=1 - 0.8 / fig.get_figheight())
    return fig


def _compact_grid(
    model: KAN, l: int, xs: np.ndarray, ys: np.ndarray, state, in_vars, sharey: bool, title: str
) -> Figure:
    from matplotlib.patches import Rectangle

    n_in, n_out = model.width_in[l], model.width_out[l + 1]
    box = min(0.9, (_MAX_SIDE - 1.2) / n_in, (_MAX_SIDE - 1.0) / n_out)
    font = float(np.clip(10 * box, 4, 9))
    left, top = 1.1, 0.45 + 0.25 * box
    width, height = left + n_in * box + 0.2, top + n_out * box + 0.2
    fig = pyplot().figure(figsize=(width, height))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    s = 0.88 * box
    alpha = _amplitude_alpha(ys)
    for j in range(n_out):
        cy = height - top - (j + 0.5) * box
        ax.text(left - 0.1, cy, subnode_name(model, l + 1, j), ha="right", va="center", fontsize=font)
        for i in range(n_in):
            cx = left + (i + 0.5) * box
            active, sym = bool(state.active[j, i]), bool(state.symbolic[j, i])
            color = SYMBOLIC_COLOR if sym else SPLINE_COLOR
            ax.add_patch(Rectangle((cx - s / 2, cy - s / 2), s, s, facecolor="white" if active else "0.95",
                                   edgecolor="0.6", lw=0.5))
            if not active:
                continue
            y_top = cy + (0.15 if sym else 0.4) * s
            ax.plot(normalise(xs[:, i], cx - 0.42 * s, cx + 0.42 * s), normalise(ys[:, j, i], cy - 0.4 * s, y_top),
                    color=color, alpha=float(alpha[j, i]), lw=float(np.clip(2 * box, 0.6, 1.4)),
                    gid=f"edge-{l}-{i}-{j}")
            if sym:
                ax.text(cx, cy + 0.32 * s, state.names[j][i], ha="center", va="center", color=color,
                        fontsize=font * 0.8)
    for i in range(n_in):
        ax.text(left + (i + 0.5) * box, height - top + 0.05, node_name(model, l, i, in_vars), ha="center",
                va="bottom", fontsize=font, rotation=90 if n_in > 12 else 0)
    ax.text(width / 2, height - 0.08, title, ha="center", va="top", fontsize=font + 3)
    return fig
