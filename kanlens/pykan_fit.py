"""pykan 0.2's ``fit`` conventions: its regularisation metrics and its extra options (metrics, figures, display).

:func:`kanlens.training.fit` keeps one training loop; this module turns pykan's options into what that loop
understands (callbacks, a progress-bar selection) and computes the sparsity penalties under pykan's metric names:

* ``"edge_forward_spline_n"``: ``std(phi) / (std(x) + 0.1)`` of the spline part (kanlens's ``"std_n"``).
* ``"edge_forward_sum"``: the same with symbolic edges included.
* ``"edge_forward_spline_u"``: ``std(phi)`` of every edge (symbolic included), not normalised.
* ``"edge_backward"``: the attribution edge scores (:func:`kanlens.pruning.attribute`), differentiable.
* ``"node_backward"``: for every layer ``l >= 1`` the attribution of its nodes to the inputs (pykan's
  ``node_attribute``), a ``(width[l], width[0])`` matrix per layer.

Each score matrix ``m`` adds ``lamb_l1 * sum(m) + lamb_entropy * (row + column entropy)``, and every layer
``lamb_coef * sum_{i,b} mean_j |c_jib| + lamb_coefdiff * sum_{i,b} mean_j |c_ji(b+1) - c_jib|`` (pykan's
coefficient penalties, averaged over outputs; kanlens's own ``"abs"`` / ``"std_n"`` use
:func:`kanlens.regularization.coef_penalty`, averaged over the basis).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._checks import as_int, did_you_mean
from .regularization import l1_entropy

if TYPE_CHECKING:
    from .model import KAN

__all__ = ["PYKAN_REG_METRICS", "PykanFitOptions", "pykan_objective", "pykan_options", "pykan_reg", "score_matrices"]

PYKAN_REG_METRICS = ("edge_forward_spline_n", "edge_forward_sum", "edge_forward_spline_u", "edge_backward",
                     "node_backward")
_EPS = 1e-4
_OPTIONS = ("metrics", "display_metrics", "log", "save_fig", "save_fig_freq", "img_folder", "in_vars", "out_vars",
            "beta", "singularity_avoiding", "y_th")


def _layer_pass(model: KAN, x: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Differentiable forward keeping, per layer, the input, the spline edges, all edges and the node sums."""
    stats = []
    for l in range(model.depth):
        spline = model.layers[l].forward_edges(x)
        edges = spline
        sym = model.symbolic[l]
        if model.config.symbolic_enabled and sym.is_active():
            edges = spline + sym.forward_edges(x)
        y = edges.sum(-1)
        stats.append({"x": x, "spline": spline, "edges": edges, "y": y})
        x = model.node_scale[l] * y + model.node_bias[l]
    return x, stats


def _backward_scores(stats: list[dict[str, torch.Tensor]], start: torch.Tensor, l_end: int):
    """Attribution from the nodes of layer ``l_end`` (query matrix ``start`` ``(q, width[l_end])``) to the inputs:
    ``(node_scores_all, edge_scores_all)`` for layers ``0..l_end`` (pykan's rule, differentiable)."""
    node, nodes, edges = start, [start], []
    for l in range(l_end - 1, -1, -1):
        e_std = stats[l]["edges"].std(0)  # (out, in)
        share = e_std / (stats[l]["y"].std(0)[:, None] + _EPS)
        e = node[:, :, None] * share[None]
        edges.append(e)
        node = e.sum(1)
        nodes.append(node)
    return nodes[::-1], edges[::-1]


def score_matrices(model: KAN, x: torch.Tensor, metric: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(output, [score matrix per layer])`` under one of pykan's ``reg_metric`` names (differentiable).

    Shapes:
        x: ``(batch, width[0])``; matrices ``(width[l+1], width[l])`` (``node_backward``: ``(width[l], width[0])``).
    """
    out, stats = _layer_pass(model, x)
    if metric in ("edge_forward_spline_n", "std_n"):
        return out, [s["spline"].std(0) / (s["x"].std(0) + 0.1) for s in stats]
    if metric == "edge_forward_sum":
        return out, [s["edges"].std(0) / (s["x"].std(0) + 0.1) for s in stats]
    if metric == "edge_forward_spline_u":
        return out, [s["edges"].std(0) for s in stats]
    depth = model.depth
    eye = torch.eye(out.shape[1], dtype=out.dtype, device=out.device)
    nodes_all, edges_all = _backward_scores(stats, eye, depth)
    if metric == "edge_backward":
        return out, [e.mean(0) for e in edges_all]
    if metric == "node_backward":
        node_scores = [n.mean(0) for n in nodes_all]
        mats = []
        for l in range(1, depth + 1):
            mats.append(_backward_scores(stats, torch.diag(node_scores[l]), l)[0][0])
        return out, mats
    raise ValueError(f"unknown reg_metric {metric!r}{did_you_mean(metric, PYKAN_REG_METRICS)}")


def pykan_reg(model: KAN, x: torch.Tensor, reg_metric: str = "edge_forward_spline_n", lamb_l1: float = 1.0,
              lamb_entropy: float = 2.0, lamb_coef: float = 0.0, lamb_coefdiff: float = 0.0) -> torch.Tensor:
    """pykan's ``model.get_reg(reg_metric, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)`` on inputs ``x``.

    Shapes:
        x: ``(batch, width[0])``; returns a scalar.
    """
    return _reg(model, score_matrices(model, x, reg_metric)[1], lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)


def _reg(model: KAN, mats: Sequence[torch.Tensor], lamb_l1: float, lamb_entropy: float, lamb_coef: float,
         lamb_coefdiff: float) -> torch.Tensor:
    reg = sum((l1_entropy(m, lamb_l1, lamb_entropy) for m in mats), mats[0].new_zeros(()))
    for layer in model.layers:
        if lamb_coef:
            reg = reg + lamb_coef * layer.coef.abs().mean(0).sum()
        if lamb_coefdiff:
            reg = reg + lamb_coefdiff * layer.coef.diff(dim=-1).abs().mean(0).sum()
    return reg


def pykan_objective(model: KAN, x: torch.Tensor, metric: str, lambs: dict[str, float]):
    """``(prediction, regulariser)`` for :func:`kanlens.training.fit` under a pykan ``reg_metric``."""
    out, mats = score_matrices(model, x, metric)
    return out, _reg(model, mats, lambs["lamb_l1"], lambs["lamb_entropy"], lambs["lamb_coef"], lambs["lamb_coefdiff"])


@dataclasses.dataclass
class PykanFitOptions:
    """What :func:`pykan_options` made of pykan's extra ``fit`` options."""

    callbacks: list[Callable] = dataclasses.field(default_factory=list)
    display: list[str] | None = None
    log: int = 1


def _metric_callback(metrics: Sequence[Callable[[], Any]]):
    def record(step: int, model: KAN, history) -> None:
        for f in metrics:
            v = f()
            history.metrics.setdefault(f.__name__, []).append(np.float64(v.item() if hasattr(v, "item") else v))

    return record


def _figure_callback(folder: str, freq: int, in_vars, out_vars, beta: float):
    def draw(step: int, model: KAN, history) -> None:
        if step % freq == 0:
            fig = model.plot(in_vars=in_vars, out_vars=out_vars, title=f"Step {step}", beta=beta,
                             path=os.path.join(folder, f"{step}.png"))
            del fig

    return draw


def pykan_options(options: dict[str, Any], progress: bool = True) -> PykanFitOptions:
    """Validate pykan's extra ``fit`` options and turn them into callbacks (see :func:`kanlens.training.fit`).

    ``save_fig=True`` writes ``{img_folder}/{step}.png`` (pykan writes ``.jpg``; the folder is created, as pykan
    does); nothing is written otherwise. ``singularity_avoiding`` / ``y_th`` are checked and have no further effect:
    kanlens evaluates symbolic functions in their singularity-safe form always.
    """
    unknown = [k for k in options if k not in _OPTIONS]
    if unknown:
        import inspect

        from .training import fit

        known = [*inspect.signature(fit).parameters, *_OPTIONS]
        raise TypeError(f"fit() got an unexpected keyword argument {unknown[0]!r}{did_you_mean(unknown[0], known)}")
    res = PykanFitOptions(log=as_int("log", options.get("log", 1), 1))
    metrics = options.get("metrics") or []
    if callable(metrics) or not all(callable(f) and hasattr(f, "__name__") for f in metrics):
        raise TypeError("metrics must be a list of functions without arguments (e.g. def train_acc(): ...)")
    if metrics:
        res.callbacks.append(_metric_callback(list(metrics)))
    display = options.get("display_metrics")
    if display is not None:
        names = ["train_loss", "test_loss", "reg", *(f.__name__ for f in metrics)]
        display = [display] if isinstance(display, str) else list(display)
        for name in display:
            if name not in names:
                raise ValueError(f"display_metrics: {name!r} is not recorded{did_you_mean(name, names)}")
        res.display = display
    for name in ("save_fig", "singularity_avoiding"):
        if not isinstance(options.get(name, False), bool):
            raise TypeError(f"{name} must be a bool, got {options[name]!r}")
    y_th = options.get("y_th", 1000.0)
    if isinstance(y_th, bool) or not isinstance(y_th, (int, float)) or not (math.isfinite(y_th) and y_th > 0):
        raise ValueError(f"y_th must be a positive number, got {y_th!r}")
    if options.get("save_fig", False):
        folder = os.fspath(options.get("img_folder", "./video"))
        os.makedirs(folder, exist_ok=True)
        freq = as_int("save_fig_freq", options.get("save_fig_freq", 1), 1)
        res.callbacks.append(_figure_callback(folder, freq, options.get("in_vars"), options.get("out_vars"),
                                              options.get("beta", 3)))
    return res
