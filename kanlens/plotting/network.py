"""The KAN diagram: nodes per layer and every active edge drawn as a small box holding its learned function.

The boxes are not matplotlib axes: each is a rectangle plus one normalised line in the diagram's own data
coordinates (1 unit = 1 inch), so a network with hundreds of edges still renders in a fraction of a second and the
figure can go into any ``ax``. Wide layers get a wider figure, smaller boxes and, past ``max_per_row`` edges,
staggered rows of boxes. Each edge curve is a ``Line2D`` with ``gid="edge-l-i-j"`` (kept as the element id in SVG).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._common import (
    SPLINE_COLOR,
    SYMBOLIC_COLOR,
    alpha_from_score,
    check_positive,
    edge_curves,
    edge_scores_for_plot,
    edge_state,
    input_names,
    layer_inputs,
    normalise,
    observed_range,
    output_names,
    pyplot,
    save_figure,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..model import KAN

__all__ = ["plot_kan"]

_MARGIN = 0.35  # inches left/right of the outermost node or box
_MAX_WIDTH = 24.0  # figure width cap (inches, before `scale`)


@dataclass
class _Layout:
    width: float  # inches
    node_y: list[float]  # y of every node row (depth + 1)
    box: list[float]  # box side per layer
    rows: list[int]  # staggered rows of boxes per layer
    height: float


def _layout(model: KAN, n_edges: list[int], scale: float, max_per_row: int, title: bool) -> _Layout:
    rows = [max(1, math.ceil(e / max_per_row)) for e in n_edges]
    per_row = [math.ceil(e / r) if e else 0 for e, r in zip(n_edges, rows)]
    crowd = max([*per_row, *model.width_in, *model.width_out])
    width = min(0.8 * crowd + 1.2, _MAX_WIDTH) * scale
    width = max(width, 3.2 * scale)
    usable = width - 2 * _MARGIN * scale
    box = [min(0.85 * usable / e * r, 0.85 * scale) if e else 0.0 for e, r in zip(n_edges, rows)]
    bottom = 0.5 * scale
    node_y = [bottom]
    for b, r in zip(box, rows):
        gap = max(1.7 * scale, r * b * 1.2 + 1.0 * scale)
        node_y.append(node_y[-1] + gap)
    height = node_y[-1] + (0.75 if title else 0.45) * scale
    return _Layout(width, node_y, box, rows, height)


def _xs(n: int, width: float, margin: float) -> np.ndarray:
    return margin + (np.arange(n) + 0.5) * (width - 2 * margin) / max(n, 1)


def plot_kan(
    model: KAN,
    x: torch.Tensor | None = None,
    *,
    beta: float = 3.0,
    in_vars: Sequence[str] | None = None,
    out_vars: Sequence[str] | None = None,
    title: str | None = None,
    scale: float = 1.0,
    metric: str = "auto",
    max_per_row: int = 40,
    n: int = 48,
    path: str | os.PathLike | None = None,
    ax: Axes | None = None,
    dpi: int = 150,
    varscale: float = 1.0,
    sample: bool = False,
    tick: bool = False,
    folder: str | os.PathLike | None = None,
) -> Figure:
    """Draw the network with every active edge's learned function (pykan's ``model.plot()``).

    Nodes are black dots, inputs at the bottom; a multiplication node is a circled ``×`` fed by its factors
    (subnodes, small dots just below it), as in pykan's MultKAN plots. Each active edge ``(l, i, j)`` is a box
    between node ``i`` and subnode ``j`` (the node itself without multiplication nodes),
    holding ``phi_lji`` over the range of the inputs that edge actually saw (each box scaled to its own curve: it
    shows the *shape*). Transparency of an edge is ``tanh(beta * score)``. Symbolic edges are red and labelled with
    their function name; pruned edges (both masks 0) are not drawn.

    Args:
        model: a :class:`~kanlens.KAN`.
        x: inputs ``(batch, width[0])`` that define the ranges and scores; default: the last batch the model saw
            (a model that saw none is probed on uniform samples of its input grid range).
        beta: transparency sharpness; 0 draws every edge faintly, large values draw all non-zero edges opaque.
        in_vars, out_vars: names of the input / output nodes (default: ``model.config.input_names``, ``x_i``, ``y``).
        title: text above the diagram.
        scale: multiplies the figure size (and the size of everything in it).
        metric: edge score behind the transparency: ``"auto"`` (= ``"attribution"``, the scores ``prune`` uses),
            ``"local"``, ``"mean_abs"`` or ``"none"``, or pykan's ``"backward"`` (= attribution), ``"forward_n"``
            (= local), ``"forward_u"`` (``std(phi)``) (see :func:`kanlens.plotting._common.edge_scores_for_plot`).
        max_per_row: more edges than this between two layers are staggered over several rows of boxes.
        n: points per edge curve.
        path: write the figure here (.png, .svg or .pdf); nothing is written without it.
        ax: draw into this axes (its aspect is set to equal); default: a new figure sized to the network.
        dpi: resolution of a PNG written to ``path``.
        varscale: size of the input / output names relative to the default (pykan's option).
        sample: also mark the data samples on every edge curve (pykan's option).
        tick: accepted for pykan's signature; the edge boxes have no axes to tick, so it has no effect.
        folder: pykan writes one PNG per edge (``sp_{l}_{i}_{j}.png``) into ``folder`` on every plot; kanlens does
            so only when ``folder`` is given (a str first argument is taken as ``folder``, as pykan's
            ``model.plot("./figures")``).

    Returns:
        the matplotlib ``Figure``.

    Shapes:
        x: ``(batch, width[0])``.

    Example:
        >>> fig = model.plot(dataset["train_input"], beta=10, in_vars=["a", "b"], path="kan.png")
    """
    if isinstance(x, (str, os.PathLike)):  # pykan's plot(folder, ...)
        x, folder = None, x
    beta = check_positive("beta", beta, allow_zero=True)
    scale = check_positive("scale", scale)
    varscale = check_positive("varscale", varscale)
    if isinstance(max_per_row, bool) or not isinstance(max_per_row, int) or max_per_row < 1:
        raise ValueError(f"max_per_row must be an int >= 1, got {max_per_row!r}")
    names_in = input_names(model, in_vars)
    names_out = output_names(model, out_vars)
    acts = layer_inputs(model, x)
    scores = edge_scores_for_plot(model, acts, metric)
    states = [edge_state(model, l) for l in range(model.depth)]
    n_edges = [int(s.active.sum()) for s in states]
    lay = _layout(model, n_edges, scale, max_per_row, title is not None)

    fig, ax, own = _canvas(ax, lay)
    margin = _MARGIN * scale
    node_x = [_xs(w, lay.width, margin) for w in model.width_in]
    sub_pos = _subnodes(model, node_x, lay, scale)
    for l in range(model.depth):
        _draw_layer(ax, model, l, acts[l], states[l], scores[l], beta, lay, node_x, sub_pos[l + 1], margin, n, sample)
    _draw_nodes(ax, model, node_x, sub_pos, lay, scale)
    _draw_names(ax, model, names_in, names_out, node_x, lay, scale * varscale)
    if title is not None:
        ax.text(lay.width / 2, lay.height - 0.15 * scale, title, ha="center", va="top", fontsize=13 * scale,
                gid="title")
    save_figure(fig, path, dpi=dpi, release=own)
    if folder is not None:
        _edge_pngs(model, acts[0], os.fspath(folder), states)
    return fig


def _canvas(ax: Axes | None, lay: _Layout) -> tuple[Figure, Axes, bool]:
    """``(figure, axes, own)``: a new figure sized by the layout (``own``), or ``ax``'s; axes set to the layout."""
    plt = pyplot()
    own = ax is None
    if own:
        fig = plt.figure(figsize=(lay.width, lay.height))
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    else:
        fig = ax.figure
    ax.set_xlim(0, lay.width)
    ax.set_ylim(0, lay.height)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    return fig, ax, own


def _draw_nodes(ax: Axes, model: KAN, node_x: list[np.ndarray], sub_pos: list, lay: _Layout, scale: float) -> None:
    """The sum nodes of every layer as dots, and the product nodes with their subnodes."""
    node_size = float(np.clip(90 * scale * min(1.0, 8 / max(model.width_in)), 8, 90))
    n_sum = model.node_layout.n_sum
    for l, xs in enumerate(node_x):
        ax.scatter(xs[: n_sum[l]], np.full(n_sum[l], lay.node_y[l]), s=node_size, color="black", zorder=5, lw=0)
        _draw_products(ax, model, l, xs, sub_pos[l], lay.node_y[l], node_size, scale)


def _edge_pngs(model: KAN, x: torch.Tensor, folder: str, states) -> None:
    """pykan's per-edge pictures ``{folder}/sp_{l}_{i}_{j}.png`` (only when a folder is given)."""
    from .edge import plot_edge

    os.makedirs(folder, exist_ok=True)
    for l, state in enumerate(states):
        n_out, n_in = state.active.shape
        for j in range(n_out):
            for i in range(n_in):
                if state.active[j, i]:
                    plot_edge(model, l, i, j, x, symbolic=0, path=os.path.join(folder, f"sp_{l}_{i}_{j}.png"))


def _subnodes(model: KAN, node_x: list[np.ndarray], lay: _Layout, scale: float) -> list[tuple[np.ndarray, float]]:
    """``(x of every subnode, y)`` per layer: the node itself for sum nodes; below a product node, its factors
    side by side (layers without products: the nodes)."""
    out = []
    layout = model.node_layout
    for l, xs in enumerate(node_x):
        if not layout.arity[l]:
            out.append((xs, lay.node_y[l]))
            continue
        step = (lay.width - 2 * _MARGIN * scale) / max(len(xs), 1)
        sub = []
        for node, group in enumerate(layout.groups(l)):
            a = len(group)
            sub += [xs[node] + (k - (a - 1) / 2) * 0.6 * step / a for k in range(a)]
        out.append((np.array(sub), lay.node_y[l] - 0.35 * scale))
    return out


def _draw_products(ax: Axes, model: KAN, l: int, xs: np.ndarray, sub: tuple[np.ndarray, float], y: float,
                   node_size: float, scale: float) -> None:
    """Multiplication nodes of layer ``l``: a circled ``×`` joined to each of its factors (pykan's mult symbol)."""
    layout = model.node_layout
    if not layout.arity[l]:
        return
    from matplotlib.collections import LineCollection

    sub_x, sub_y = sub
    groups = layout.groups(l)
    segs = [[(sub_x[s], sub_y), (xs[node], y)] for node, g in enumerate(groups) for s in g]
    ax.add_collection(LineCollection(segs, colors="black", lw=0.8, zorder=4))
    ax.scatter(sub_x, np.full(len(sub_x), sub_y), s=node_size / 4, color="black", zorder=5, lw=0)
    n_sum = layout.n_sum[l]
    for node in range(n_sum, len(groups)):
        ax.scatter([xs[node]], [y], s=node_size * 2.5, facecolor="white", edgecolor="black", zorder=5, lw=0.9,
                   gid=f"mult-{l}-{node}")
        ax.text(xs[node], y, "×", ha="center", va="center", fontsize=float(np.clip(9 * scale, 5, 12)), zorder=6)


def _draw_layer(
    ax: Axes, model: KAN, l: int, acts_l: torch.Tensor, state, score: np.ndarray, beta: float, lay: _Layout,
    node_x: list[np.ndarray], sub: tuple[np.ndarray, float], margin: float, n: int, sample: bool = False,
) -> None:
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

    edges = [(i, j) for i in range(model.width_in[l]) for j in range(model.width_out[l + 1]) if state.active[j, i]]
    if not edges:
        return
    lo, hi = observed_range(acts_l)
    xs, ys = edge_curves(model, l, lo, hi, n=n)
    alpha = alpha_from_score(score, beta)
    s, rows = lay.box[l], lay.rows[l]
    (sub_x, y1), y0 = sub, lay.node_y[l]
    mid = 0.5 * (y0 + y1)
    bx = _xs(len(edges), lay.width, margin)
    segs, colors = [], []
    lw = float(np.clip(3.0 * s, 0.6, 1.8))
    font = float(np.clip(12 * s, 4.5, 9))
    for k, (i, j) in enumerate(edges):
        cx = bx[k]
        cy = mid + ((k % rows) - (rows - 1) / 2) * s * 1.2
        sym = bool(state.symbolic[j, i])
        rgba = to_rgba(SYMBOLIC_COLOR if sym else SPLINE_COLOR, float(alpha[j, i]))
        segs += [[(node_x[l][i], y0), (cx, cy - s / 2)], [(cx, cy + s / 2), (sub_x[j], y1)]]
        colors += [rgba, rgba]
        ax.add_patch(Rectangle((cx - s / 2, cy - s / 2), s, s, facecolor="white", edgecolor=rgba, lw=0.8, zorder=2))
        top = cy + s * (0.22 if sym else 0.4)
        px = normalise(xs[:, i], cx - 0.4 * s, cx + 0.4 * s)
        py = normalise(ys[:, j, i], cy - 0.4 * s, top)
        ax.plot(px, py, color=rgba, lw=lw, zorder=3, gid=f"edge-{l}-{i}-{j}", solid_capstyle="round")
        if sample:  # the data samples, on the same normalisation as the curve
            sx = acts_l[:, i].detach().double().cpu().numpy()
            sy = model.edge_activations_layer(l, acts_l)[:, j, i].detach().double().cpu().numpy()
            ylo, yhi = float(ys[:, j, i].min()), float(ys[:, j, i].max())
            span = max(yhi - ylo, 1e-12)
            xlo, xhi = float(xs[:, i].min()), float(xs[:, i].max())
            qx = cx - 0.4 * s + 0.8 * s * (sx - xlo) / max(xhi - xlo, 1e-12)
            qy = cy - 0.4 * s + (top - cy + 0.4 * s) * (sy - ylo) / span
            ax.scatter(qx, qy, s=2, color=rgba, zorder=3, lw=0, gid=f"sample-{l}-{i}-{j}")
        if sym:
            ax.text(cx, cy + 0.33 * s, state.names[j][i], ha="center", va="center", fontsize=font, color=rgba,
                    zorder=4, gid=f"symbolic-{l}-{i}-{j}")
    ax.add_collection(LineCollection(segs, colors=colors, lw=0.8, zorder=1))


def _draw_names(
    ax: Axes, model: KAN, names_in: list[str], names_out: list[str], node_x: list[np.ndarray], lay: _Layout,
    scale: float,
) -> None:
    spacing = [(lay.width - 2 * _MARGIN * scale) / w for w in model.width_in]
    for names, xs, y, va, sp, off in (
        (names_in, node_x[0], lay.node_y[0], "top", spacing[0], -0.15),
        (names_out, node_x[-1], lay.node_y[-1], "bottom", spacing[-1], 0.15),
    ):
        longest = max(len(s) for s in names)
        font = float(np.clip(min(13 * scale, 72 * 1.4 * sp / max(longest, 3)), 5, 14))
        for name, xv in zip(names, xs):
            ax.text(xv, y + off * scale, name, ha="center", va=va, fontsize=font, zorder=6)
