"""What every KAN figure shares: pyplot access, atomic figure files, argument checks, node names, and the edge data
(curves, states, scores) read from a model.

Everything here reads the model through its public API only: ``model.layer_inputs`` / ``model.edge_activations``
(the activation cache), ``model.edge_activations_layer`` (recomputing an edge curve from its inputs, exact because
``phi_lji`` depends only on ``x_li``), the ``mask`` / ``grid`` buffers of ``model.layers[l]`` and the symbolic layer's
``mask`` / ``function_name`` / ``library``. matplotlib is imported inside the functions only. The figure modules
(:mod:`~kanlens.plotting.edge`, ``layer``, ``network``, ``history``, ``tree``) import from here.
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

from .._checks import check_choice, check_positive

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..model import KAN

__all__ = [
    "FORMATS", "METRICS", "SPLINE_COLOR", "SYMBOLIC_COLOR", "EdgeState", "alpha_from_score", "check_names",
    "check_positive", "edge_curves", "edge_scores_for_plot", "edge_state", "evaluate_candidate", "input_names",
    "layer_inputs", "node_name", "normalise", "observed_range", "output_names", "pyplot", "save_figure",
    "subnode_name", "symbolic_candidates",
]

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
