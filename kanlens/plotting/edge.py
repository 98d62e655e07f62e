"""One edge in detail (:func:`plot_edge`) plus the edge-data helpers shared by every KAN figure.

Everything here reads the model through its public API only: ``model.layer_inputs`` / ``model.edge_activations``
(the activation cache), ``model.edge_activations_layer`` (recomputing an edge curve from its inputs, exact because
``phi_lji`` depends only on ``x_li``), the ``mask`` / ``grid`` buffers of ``model.layers[l]`` and the symbolic layer's
``mask`` / ``function_name`` / ``library``. matplotlib is imported inside the functions only.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..utils import check_choice

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..model import KAN

__all__ = ["EdgeState", "edge_curves", "edge_scores_for_plot", "edge_state", "plot_edge", "save_figure"]

log = logging.getLogger(__name__)

METRICS = ("auto", "attribution", "local", "mean_abs", "none", "backward", "forward_n", "forward_u")
_PYKAN_METRICS = {"backward": "attribution", "forward_n": "local"}  # pykan's names; "forward_u": std(phi)
FORMATS = (".png", ".svg", ".pdf")
SPLINE_COLOR = "black"
SYMBOLIC_COLOR = "tab:red"


# ---------------------------------------------------------------------------------------------- figures & files
def pyplot():
    """``matplotlib.pyplot``, imported on first use (headless environments fall back to the Agg backend)."""
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: str | os.PathLike | None, *, dpi: int = 150, release: bool = False) -> None:
    """Write ``fig`` to ``path`` (format from the suffix: .png, .svg, .pdf) atomically; ``None`` writes nothing.

    ``release``: once written, drop the figure from pyplot's list of open figures (the plotting functions do this
    when given a ``path``, so a loop writing plots does not pile up open figures; the returned ``Figure`` stays
    usable, e.g. for another ``savefig``). With ``release``, a failed write (bad path...) drops it too, so a
    failing call leaves no open figure behind.
    """
    if path is None:
        return
    try:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in FORMATS:
            raise ValueError(f"path {path!r} must end in one of {', '.join(FORMATS)} (the suffix picks the format)")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ValueError(f"path {path!r}: folder {folder!r} does not exist")
        # a temp file next to the target, created with the usual permissions (0o666 minus umask), then renamed
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format=suffix[1:], dpi=dpi)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    finally:
        if release:
            pyplot().close(fig)


def check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite number ``> 0`` (``>= 0`` with ``allow_zero``), numpy scalars included."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}")
    return float(value)


def check_names(name: str, names: Sequence[str] | None, n: int) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"{name} must be a list of {n} strings, got {type(names).__name__}")
    if len(names) != n:
        raise ValueError(f"{name} has {len(names)} names but the model has {n} nodes there")
    return [str(v) for v in names]


def input_names(model: KAN, in_vars: Sequence[str] | None = None) -> list[str]:
    """Names of the input nodes: ``in_vars``, else ``model.config.input_names``, else ``x_1 ...`` (original ids)."""
    n = model.width_in[0]
    cfg = model.config
    ids = cfg.input_ids
    if in_vars is not None and ids is not None and len(in_vars) != n and len(in_vars) > max(ids):
        in_vars = [in_vars[int(i)] for i in ids]  # names of the original inputs, after prune_input
    names = check_names("in_vars", in_vars, n)
    if names is not None:
        return names
    if cfg.input_names is not None and len(cfg.input_names) == n:
        return [str(v) for v in cfg.input_names]
    ids = cfg.input_ids if cfg.input_ids is not None and len(cfg.input_ids) == n else range(n)
    return [f"$x_{{{int(i) + 1}}}$" for i in ids]


def output_names(model: KAN, out_vars: Sequence[str] | None = None) -> list[str]:
    n = model.width_in[-1]
    names = check_names("out_vars", out_vars, n)
    if names is not None:
        return names
    return ["$y$"] if n == 1 else [f"$y_{{{j + 1}}}$" for j in range(n)]


def node_name(model: KAN, l: int, i: int, in_vars: Sequence[str] | None = None) -> str:
    """Label of node ``i`` of layer ``l`` (inputs by name, hidden nodes as ``(l,i)``)."""
    if l == 0:
        return input_names(model, in_vars)[i]
    if l == model.depth:
        return output_names(model)[i]
    return f"node ({l},{i})"


def subnode_name(model: KAN, l: int, j: int) -> str:
    """Label of subnode ``j`` of layer ``l`` (an edge's output): its node's name, with ``×k`` for the ``k``-th
    factor of a multiplication node."""
    lay = model.node_layout
    if not lay.has_mult:
        return node_name(model, l, j)
    node = lay.node_of_subnode(l)[j]
    name = node_name(model, l, node)
    return name if node < lay.n_sum[l] else f"{name} ×{j - lay.groups(l)[node][0] + 1}"


# ---------------------------------------------------------------------------------------------- edge data
@dataclass
class EdgeState:
    """Which edges of one layer are drawn, and how (``(out, in)`` bool arrays; names ``[out][in]``)."""

    active: np.ndarray
    symbolic: np.ndarray
    names: list[list[str]]


def edge_state(model: KAN, l: int) -> EdgeState:
    """Active / symbolic edges of layer ``l`` from the public masks (pruned edges: both masks 0)."""
    spline = model.layers[l].mask.detach().cpu().numpy() != 0
    sym_layer = model.symbolic[l]
    sym = sym_layer.mask.detach().cpu().numpy() != 0
    if not model.symbolic_enabled:
        sym = np.zeros_like(sym)
    out_dim, in_dim = spline.shape
    names = [[sym_layer.function_name(i, j) if sym[j, i] else "" for i in range(in_dim)] for j in range(out_dim)]
    return EdgeState(active=spline | sym, symbolic=sym, names=names)


def layer_inputs(model: KAN, x: torch.Tensor | None) -> list[torch.Tensor]:
    """``model.layer_inputs(x)``; a model that has seen no data is probed on its first layer's grid range."""
    if x is not None:
        return model.layer_inputs(x)
    try:
        return model.layer_inputs(None)
    except ValueError:
        grid = model.layers[0].grid
        k = model.k
        lo, hi = grid[:, k], grid[:, -k - 1]
        gen = torch.Generator().manual_seed(0)
        u = torch.rand(256, model.width_in[0], generator=gen, dtype=grid.dtype).to(grid.device)
        log.info("the model has seen no data: plotting on uniform samples of its input grid range")
        return model.layer_inputs(lo + (hi - lo) * u)


def observed_range(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(min, max)`` of ``x`` ``(batch, n)``; a constant column is widened by 0.5 either side."""
    lo = x.detach().amin(0).double().cpu().numpy()
    hi = x.detach().amax(0).double().cpu().numpy()
    flat = hi - lo < 1e-9 * (1 + np.abs(lo))
    return np.where(flat, lo - 0.5, lo), np.where(flat, hi + 0.5, hi)


@torch.no_grad()
def edge_curves(
    model: KAN, l: int, lo: np.ndarray, hi: np.ndarray, n: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Every edge function of layer ``l`` on ``n`` points spanning ``[lo_i, hi_i]`` for each input ``i``.

    One call of ``model.edge_activations_layer`` for the whole layer (spline + symbolic, masked).

    Shapes:
        lo, hi: ``(in,)``; returns ``xs (n, in)`` and ``ys (n, out, in)`` as float64 numpy arrays.
    """
    ref = model.layers[l].grid
    t = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]
    xs = torch.as_tensor(lo)[None] + (torch.as_tensor(hi) - torch.as_tensor(lo))[None] * t
    ys = model.edge_activations_layer(l, xs.to(device=ref.device, dtype=ref.dtype))
    return xs.numpy(), ys.detach().double().cpu().numpy()


@torch.no_grad()
def edge_scores_for_plot(
    model: KAN, acts: list[torch.Tensor], metric: str = "auto"
) -> list[np.ndarray]:
    """Importance of every edge, one ``(out, in)`` array per layer, used for transparency.

    ``"attribution"``: :func:`kanlens.pruning.attribute` edge scores (importance for the outputs; what ``prune``
    thresholds; pykan's ``metric="backward"``); ``"local"``: :func:`kanlens.pruning.edge_scores`
    (``std(phi) / (std(x) + 0.1)``, pykan's older ``acts_scale``); ``"mean_abs"``: ``mean |phi_lji|`` divided by
    the largest such value in the layer (needs nothing but the model); ``"none"``: 1 everywhere; ``"auto"``:
    attribution when :mod:`kanlens.pruning` is available, else mean_abs. pykan's names: ``"backward"``
    (= attribution), ``"forward_n"`` (= local), ``"forward_u"`` (``std(phi)``, not normalised).
    """
    check_choice("metric", metric, METRICS)
    metric = _PYKAN_METRICS.get(metric, metric)
    if metric == "forward_u":
        return [model.edge_activations_layer(l, acts[l]).std(0).double().cpu().numpy() for l in range(model.depth)]
    if metric == "auto":
        metric = "attribution" if importlib.util.find_spec("kanlens.pruning") is not None else "mean_abs"
    if metric == "none":
        return [np.ones((model.width_out[l + 1], model.width_in[l])) for l in range(model.depth)]
    if metric in ("attribution", "local"):
        pruning = importlib.import_module("kanlens.pruning")
        if metric == "attribution":
            scores = pruning.attribute(model, acts[0]).edge_scores
        else:
            scores = pruning.edge_scores(model, acts[0])
        return [s.detach().double().cpu().numpy() for s in scores]
    out = []
    for l in range(model.depth):
        m = model.edge_activations_layer(l, acts[l]).abs().mean(0).double().cpu().numpy()
        out.append(m / m.max() if m.max() > 0 else m)
    return out


def normalise(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``v`` into ``[lo, hi]`` (a flat curve goes to the middle)."""
    vmin, vmax = float(np.min(v)), float(np.max(v))
    if not (math.isfinite(vmin) and math.isfinite(vmax)) or vmax - vmin <= 1e-9 * (1 + abs(vmax)):
        return np.full_like(v, 0.5 * (lo + hi))
    return lo + (hi - lo) * (v - vmin) / (vmax - vmin)


def alpha_from_score(score: np.ndarray, beta: float) -> np.ndarray:
    """pykan's transparency rule ``tanh(beta * score)``, clipped to ``[0, 1]``."""
    return np.clip(np.tanh(beta * np.nan_to_num(score, nan=0.0)), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- symbolic candidates
def symbolic_candidates(model: KAN, l: int, i: int, j: int, x: torch.Tensor, top: int) -> list[Any]:
    """The ``top`` best library fits ``c*f(a*x+b)+d`` of edge ``(l, i, j)`` (objects with ``name, params, r2``).

    Uses :func:`kanlens.symbolic.fit.suggest_symbolic` with the symbolic layer's library; degenerate fits and the
    zero function are skipped. Returns ``[]`` when the symbolic fitting module is not available.
    """
    try:
        sfit = importlib.import_module("kanlens.symbolic.fit")
    except ImportError:
        return []
    if not hasattr(sfit, "suggest_symbolic"):
        return []
    lib = model.symbolic[l].library
    table = sfit.suggest_symbolic(model, l, i, j, lib=lib, topk=min(top + 3, len(lib)), x=x)
    return [f for f in table.rows if f.valid and not f.degenerate and f.name != "0"][:top]


def evaluate_candidate(model: KAN, l: int, fit: Any, xs: np.ndarray) -> np.ndarray:
    a, b, c, d = fit.params
    fn = model.symbolic[l].library[fit.name]
    return c * fn.numpy(a * xs + b) + d


def _fit_label(fit: Any) -> str:
    """``"sin: r²=0.9876"``; near-perfect fits show ``1-r²`` so they stay distinguishable."""
    if fit.nmse < 1e-4:
        return f"{fit.name}: 1−r²={fit.nmse:.1e}"
    return f"{fit.name}: r²={fit.r2:.4f}"


# ---------------------------------------------------------------------------------------------- the figure
def _check_edge(model: KAN, l: int, i: int, j: int) -> None:
    for name, v, n in (("l", l, model.depth), ("i", i, None), ("j", j, None)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if n is not None and not 0 <= v < n:
            raise IndexError(f"l = {v} is out of range: the model has {n} layers")
    if not 0 <= i < model.width_in[l]:
        raise IndexError(f"i = {i} is out of range: layer {l} has {model.width_in[l]} inputs")
    if not 0 <= j < model.width_out[l + 1]:
        raise IndexError(f"j = {j} is out of range: layer {l} has {model.width_out[l + 1]} outputs")


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
    _check_edge(model, l, i, j)
    if isinstance(symbolic, bool) or not isinstance(symbolic, int) or symbolic < 0:
        raise ValueError(f"symbolic must be an int >= 0 (number of candidates), got {symbolic!r}")
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

    plt = pyplot()
    own = ax is None
    if own:
        fig, (ax, hax) = plt.subplots(
            2, 1, figsize=(6.4, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08}
        )
    else:
        fig, hax = ax.figure, ax.twinx()
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
        for r, cand in enumerate(symbolic_candidates(model, l, i, j, acts[0], symbolic)):
            ax.plot(xs, evaluate_candidate(model, l, cand, xs), ls=styles[r % len(styles)], lw=1.4, zorder=4,
                    label=_fit_label(cand), gid=f"candidate-{cand.name}")
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    ax.set_ylabel(f"φ  (l={l}, i={i}, j={j})")
    ax.set_xlim(lo, hi)
    ax.grid(alpha=0.2)
    hax.hist(xi, bins=bins, range=(lo, hi), color="tab:blue", alpha=0.5 if own else 0.25)
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
