"""One edge in detail: :func:`plot_edge` (curve, knots, samples, histogram, symbolic candidates).

The edge data it draws comes from :mod:`kanlens.plotting._common`, shared by every KAN figure; ``save_figure``,
``pyplot`` and ``check_positive`` are re-exported here for the modules that still import them from this one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._checks import check_edge
from ._common import (
    SPLINE_COLOR,
    SYMBOLIC_COLOR,
    EdgeState,
    check_positive,
    edge_curves,
    edge_state,
    evaluate_candidate,
    layer_inputs,
    node_name,
    observed_range,
    pyplot,
    save_figure,
    symbolic_candidates,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..model import KAN

__all__ = ["check_positive", "plot_edge", "pyplot", "save_figure"]


def _fit_label(fit: Any) -> str:
    """``"sin: r²=0.9876"``; near-perfect fits show ``1-r²`` so they stay distinguishable."""
    if fit.nmse < 1e-4:
        return f"{fit.name}: 1−r²={fit.nmse:.1e}"
    return f"{fit.name}: r²={fit.r2:.4f}"


@dataclass
class _EdgeData:
    """What :func:`plot_edge` draws of one edge: the curve, its samples, knots and the plotted range."""

    acts: list[torch.Tensor]
    state: EdgeState
    xs: np.ndarray
    ys: np.ndarray
    samples: np.ndarray
    xi: np.ndarray
    knots: np.ndarray
    lo: float
    hi: float

    @classmethod
    def of(cls, model: KAN, l: int, i: int, j: int, x: torch.Tensor | None, n: int) -> _EdgeData:
        acts = layer_inputs(model, x)
        state = edge_state(model, l)
        xi_t = acts[l][:, i : i + 1]
        data_lo, data_hi = observed_range(xi_t)
        knots = model.layers[l].grid[i].detach().double().cpu().numpy()
        k = model.k
        lo = min(float(data_lo[0]), float(knots[k]))
        hi = max(float(data_hi[0]), float(knots[-k - 1]))
        los, his = observed_range(acts[l])
        los[i], his[i] = lo, hi
        xs, ys = edge_curves(model, l, los, his, n=n)
        xs, ys = xs[:, i], ys[:, j, i]
        with torch.no_grad():
            samples = model.edge_activations_layer(l, acts[l])[:, j, i].double().cpu().numpy()
        xi = xi_t[:, 0].detach().double().cpu().numpy()
        return cls(acts, state, xs, ys, samples, xi, knots, lo, hi)


def _draw_curve(ax: Axes, model: KAN, l: int, i: int, j: int, d: _EdgeData, symbolic: int) -> None:
    """The edge curve, its samples, the knots and (``symbolic > 0``) the best library fits, with a legend."""
    state, xs, ys, samples, xi, knots, k = d.state, d.xs, d.ys, d.samples, d.xi, d.knots, model.k
    is_sym = bool(state.symbolic[j, i])
    color = SYMBOLIC_COLOR if is_sym else SPLINE_COLOR
    active = bool(state.active[j, i])
    label = f"symbolic: {state.names[j][i]}" if is_sym else "learned spline"
    ax.plot(xs, ys, color=color, lw=2.2, label=label if active else "pruned (0)", zorder=3, gid=f"edge-{l}-{i}-{j}")
    step = max(1, xi.size // 500)
    ax.scatter(xi[::step], samples[::step], s=6, color="tab:blue", alpha=0.35, lw=0, label="samples", zorder=2)
    interior = knots[k : len(knots) - k]
    for t in interior:
        ax.axvline(t, color="0.6", lw=0.6, ls=":", zorder=1)
    ax.plot([], [], color="0.6", lw=0.6, ls=":", label=f"knots (G={len(interior) - 1}, k={k})")
    if symbolic and active and not is_sym and np.ptp(samples) > 0:
        styles = ["--", "-.", (0, (1, 1)), (0, (5, 2, 1, 2))]
        for r, cand in enumerate(symbolic_candidates(model, l, i, j, d.acts[0], symbolic)):
            ax.plot(xs, evaluate_candidate(model, l, cand, xs), ls=styles[r % len(styles)], lw=1.4, zorder=4,
                    label=_fit_label(cand), gid=f"candidate-{cand.name}")
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    ax.set_ylabel(f"φ  (l={l}, i={i}, j={j})")
    ax.set_xlim(d.lo, d.hi)
    ax.grid(alpha=0.2)


def plot_edge(
    model: KAN,
    l: int,
    i: int,
    j: int,
    x: torch.Tensor | None = None,
    *,
    symbolic: int = 3,
    in_vars: Sequence[str] | None = None,
    bins: int = 40,
    n: int = 200,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    ax: Axes | None = None,
    dpi: int = 150,
) -> Figure:
    """One edge ``phi_{l,j,i}`` large: curve, knots, the samples it sees, their histogram, symbolic candidates.

    Args:
        model: a :class:`~kanlens.KAN`.
        l, i, j: layer, input node, output node (pykan's order).
        x: model inputs ``(batch, width[0])``; default: the last batch the model saw.
        symbolic: overlay this many best library fits ``c*f(a*x+b)+d`` of the edge samples with their r2
            (0 = none; skipped for pruned edges).
        in_vars: names of the model inputs (for the axis label of a first-layer edge).
        bins: histogram bins.
        n: points on the drawn curve.
        title: figure title (default names the edge).
        path: write the figure here (.png, .svg or .pdf); nothing is written without it.
        ax: draw the curve into this axes (the histogram goes on a twin axis); default: a new 2-panel figure.
        dpi: resolution of a PNG written to ``path``.

    Returns:
        the matplotlib ``Figure``.

    Shapes:
        x: ``(batch, width[0])``.

    Example:
        >>> fig = plot_edge(model, 0, 0, 2, dataset["train_input"], path="edge.png")
    """
    check_edge(model, l, i, j)
    if isinstance(symbolic, bool) or not isinstance(symbolic, int) or symbolic < 0:
        raise ValueError(f"symbolic must be an int >= 0 (number of candidates), got {symbolic!r}")
    d = _EdgeData.of(model, l, i, j, x, n)
    plt = pyplot()
    own = ax is None
    if own:
        fig, (ax, hax) = plt.subplots(
            2, 1, figsize=(6.4, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08}
        )
    else:
        fig, hax = ax.figure, ax.twinx()
    _draw_curve(ax, model, l, i, j, d, symbolic)
    hax.hist(d.xi, bins=bins, range=(d.lo, d.hi), color="tab:blue", alpha=0.5 if own else 0.25)
    if own:
        hax.set_ylabel("count")
        hax.set_xlabel(node_name(model, l, i, in_vars))
    else:  # twin axis: keep the histogram in the bottom quarter
        top = max(1.0, hax.get_ylim()[1])
        hax.set_ylim(0, 4 * top)
        hax.set_yticks([])
        ax.set_xlabel(node_name(model, l, i, in_vars))
    dst = node_name(model, l + 1, j)
    title = title if title is not None else f"layer {l}: {node_name(model, l, i, in_vars)} → {dst}"
    if own:
        fig.suptitle(title)
    else:
        ax.set_title(title)
    save_figure(fig, path, dpi=dpi, release=own)
    return fig
