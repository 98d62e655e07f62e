"""Scores (edge magnitudes, attribution) and pruning that returns a new, physically smaller KAN.

Everything here is computed from a batch of data through the per-edge path
(:meth:`KAN.edge_activations_layer`); nothing is stored during ``forward``. Scores use no randomness, so they are
identical on a copy of the model and independent of the global RNG state.

Pruning never drops a removed part's contribution silently: the *mean* of every removed edge on the data is folded
into the bias of the node it fed, so the pruned model computes the same function up to the *variation* of what was
removed (pykan 0.2.8 drops the mean, which shifts the output by a constant).

The scores pruning thresholds live in :mod:`kanlens.scores` and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ._checks import check_choice
from .scores import Attribution, active_edges, attribute, edge_scores, feature_score, node_scores, score_batch

if TYPE_CHECKING:
    from .model import KAN

__all__ = [
    "Attribution",
    "attribute",
    "edge_scores",
    "feature_score",
    "node_scores",
    "prune",
    "prune_edge",
    "prune_input",
    "prune_node",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------- helpers
def _check_threshold(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------------- surgery
@torch.no_grad()
def _fold_edges(model: KAN, l: int, x_l: torch.Tensor, remove: torch.Tensor) -> None:
    """Remove edges of layer ``l`` in place, folding their mean on ``x_l`` into the biases of the nodes they fed.

    ``x_next = node_scale * sum_i phi_ji + node_bias``, so a removed edge adds ``node_scale * mean(phi_ji)``. With
    multiplication nodes the edges feed subnodes ``subnode_scale * sum_i phi_ji + subnode_bias`` (the factors of a
    product), and the mean goes into ``subnode_bias``.
    """
    if not bool(remove.any()):
        return
    edges = model.edge_activations_layer(l, x_l)  # (batch, out, in)
    mean = (edges.mean(0) * remove).sum(-1)  # (out,)
    if model.node_layout.has_mult:
        model.subnode_bias[l].add_(model.subnode_scale[l] * mean)
    else:
        model.node_bias[l].add_(model.node_scale[l] * mean)
    model.layers[l].mask.mul_((~remove).to(model.layers[l].mask.dtype))
    sym = model.symbolic[l]
    if sym.is_active():
        rm = remove.cpu()  # one transfer, not one sync per symbolic edge
        for i, j in sym.fixed_edges():  # (input, output) pairs
            if bool(rm[j, i]):
                sym.unfix(i, j)


@torch.no_grad()
def _fold_nodes(model: KAN, x: torch.Tensor, keep: Sequence[Sequence[int]]) -> None:
    """Fold the outgoing edges of every hidden/input node not in ``keep[l]`` into downstream biases, in place.

    Layers are processed from the input side, each on the activations of the partly folded model, so every fold
    sees the data the final model will see.
    """
    for l in range(model.depth):
        drop = sorted(set(range(model.width_in[l])) - set(keep[l]))
        if not drop:
            continue
        remove = torch.zeros(model.width_out[l + 1], model.width_in[l], dtype=torch.bool, device=x.device)
        remove[:, drop] = True
        _fold_edges(model, l, model.layer_inputs(x)[l], remove)


@torch.no_grad()
def _subset(model: KAN, keep: Sequence[Sequence[int]]) -> KAN:
    """A new KAN keeping nodes ``keep[l]`` of every layer (edge functions, masks, affine maps copied).

    A product node is kept or dropped with all its subnodes. When no product node is left, the subnode affine
    maps are merged into the node affine maps (``node_scale * (s * y + b) + node_bias``) of a plain KAN.
    """
    from .model import KAN

    cfg, layout = model.config, model.node_layout
    n_in = model.width_in[0]
    ids_old = list(cfg.input_ids) if cfg.input_ids is not None else list(range(n_in))
    homogeneous = cfg.mult_arity if not isinstance(cfg.mult_arity, (list, tuple)) else None
    width, arity = layout.subset(keep, homogeneous)
    new_cfg = dataclasses.replace(
        cfg,
        width=width,
        mult_arity=arity,
        input_ids=None if cfg.input_ids is None and list(keep[0]) == list(range(n_in)) else
        [ids_old[i] for i in keep[0]],
        input_names=None if cfg.input_names is None else [cfg.input_names[i] for i in keep[0]],
    )
    new = KAN(config=new_cfg, device=model.device, save_act=model.save_act)
    dev = model.device
    for l in range(model.depth):
        groups = layout.groups(l + 1)
        subs = [s for node in keep[l + 1] for s in groups[node]]
        new.layers[l] = model.layers[l].subset(list(keep[l]), subs)
        new.symbolic[l] = model.symbolic[l].subset(list(keep[l]), subs)
        oo = torch.as_tensor(list(keep[l + 1]), dtype=torch.long, device=dev)
        ss = torch.as_tensor(subs, dtype=torch.long, device=dev)
        scale, bias = model.node_scale[l][oo], model.node_bias[l][oo]
        if layout.has_mult and new.node_layout.has_mult:
            new.subnode_scale[l].copy_(model.subnode_scale[l][ss])
            new.subnode_bias[l].copy_(model.subnode_bias[l][ss])
        elif layout.has_mult:  # every kept node is a sum node with one subnode: merge the two affine maps
            scale, bias = scale * model.subnode_scale[l][ss], torch.addcmul(bias, scale, model.subnode_bias[l][ss])
        new.node_scale[l].copy_(scale)
        new.node_bias[l].copy_(bias)
    return new


def _finish(new: KAN, x: torch.Tensor) -> KAN:
    """Leave ``x`` (already restricted to the new inputs) in ``new.acts`` so ``new.plot()`` / scores work."""
    if new.save_act:
        with torch.no_grad():
            new(x)
    return new


def _dead_hidden(model: KAN) -> list[list[int]]:
    """Hidden nodes that are constant (no active incoming edge into any of their subnodes) or unused (no active
    outgoing edge)."""
    dead: list[list[int]] = [[] for _ in range(model.depth + 1)]
    layout = model.node_layout
    for l in range(1, model.depth):
        has_in_sub = active_edges(model, l - 1).any(1).tolist()
        has_in = torch.tensor([any(has_in_sub[s] for s in g) for g in layout.groups(l)], device=model.device)
        has_out = active_edges(model, l).any(0)
        dead[l] = torch.nonzero(~(has_in & has_out)).flatten().tolist()
    return dead


def _keep_from_scores(scores: torch.Tensor, threshold: float, layer: int) -> list[int]:
    keep = torch.nonzero(scores > threshold).flatten().tolist()
    if not keep:
        best = int(torch.argmax(scores))
        log.warning("layer %d: no node scores above %g; keeping the best one (%d)", layer, threshold, best)
        keep = [best]
    return keep


# ---------------------------------------------------------------------------------------------------- public pruning
def prune_node(
    model: KAN,
    threshold: float = 1e-2,
    mode: str = "auto",
    active_neurons_id: Sequence[Sequence[int]] | None = None,
    *,
    x: torch.Tensor | None = None,
    log_history: bool = True,
) -> KAN:
    """A new, narrower KAN without the hidden nodes whose attribution score is ``<= threshold``.

    The mean contribution of every removed node on the data is folded into the next layer's biases. At least one
    node is kept per hidden layer.

    Args:
        model: the KAN (left unchanged).
        threshold: hidden nodes with ``node_scores <= threshold`` are removed.
        mode: pykan's ``"auto"`` (by ``threshold``) or ``"manual"`` (by ``active_neurons_id``, which is required
            then; giving ``active_neurons_id`` selects ``"manual"`` as in pykan).
        active_neurons_id: explicit hidden nodes to keep, one list per hidden layer (overrides ``threshold``).
        x: the data (default: the last batch the model saw).
        log_history: pykan's option, accepted; a method that returns a new model logs no checkpoint version.

    Returns:
        a new :class:`~kanlens.model.KAN` whose ``config.width`` is the pruned shape.

    Shapes:
        x: ``(batch, width[0])``.

    Example:
        >>> small = model.prune_node(1e-2)
        >>> small.width
        [2, 1, 1]
    """
    threshold = _check_threshold("threshold", threshold)
    check_choice("mode", mode, ("auto", "manual"))
    if mode == "manual" and active_neurons_id is None:
        raise ValueError("mode='manual' needs active_neurons_id (the hidden nodes to keep, one list per hidden layer)")
    x = score_batch(model, x)
    width, depth = model.width_in, model.depth
    keep = [list(range(w)) for w in width]
    if active_neurons_id is not None:
        if len(active_neurons_id) != depth - 1:
            raise ValueError(f"active_neurons_id needs one list per hidden layer ({depth - 1}), got "
                             f"{len(active_neurons_id)}")
        for l, ids in enumerate(active_neurons_id, start=1):
            ids = sorted({int(v) for v in ids})
            if not ids or any(not 0 <= v < width[l] for v in ids):
                raise ValueError(f"active_neurons_id[{l - 1}] must be non-empty indices in [0, {width[l]}), got "
                                 f"{list(active_neurons_id[l - 1])}")
            keep[l] = ids
    else:
        scores = node_scores(model, x)
        for l in range(1, depth):
            keep[l] = _keep_from_scores(scores[l], threshold, l)
    return _remove_nodes(model, x, keep)


def _remove_nodes(model: KAN, x: torch.Tensor, keep: list[list[int]]) -> KAN:
    work = model.copy()
    _fold_nodes(work, x, keep)
    new = _subset(work, keep)
    log.info("pruned widths %s -> %s", model.width, new.width)
    return _finish(new, x[:, keep[0]])


@torch.no_grad()
def prune_edge(model: KAN, threshold: float = 3e-2, *, x: torch.Tensor | None = None) -> KAN:
    """Remove (mask) the edges with attribution score ``<= threshold`` in place, as pykan does; returns ``model``.

    Each removed edge's mean on the data is folded into the bias of the node it fed. Widths are unchanged (use
    :func:`prune` for a physically smaller model); ``model.copy().prune_edge()`` keeps the original.

    Args:
        model: the KAN (changed in place).
        threshold: edges with ``attribute(...).edge_scores <= threshold`` are removed.
        x: the data (default: the last batch the model saw).

    Shapes:
        x: ``(batch, width[0])``.
    """
    threshold = _check_threshold("threshold", threshold)
    x = score_batch(model, x)
    remove = [s <= threshold for s in attribute(model, x).edge_scores]
    work = model
    for l in range(work.depth):
        _fold_edges(work, l, work.layer_inputs(x)[l], remove[l] & active_edges(work, l))
    n = sum(int(r.sum()) for r in remove)
    log.info("pruned %d edges", n)
    return _finish(work, x)


def prune(
    model: KAN, node_th: float = 1e-2, edge_th: float = 3e-2, *, x: torch.Tensor | None = None
) -> KAN:
    """pykan's ``prune``: remove unimportant hidden nodes, then unimportant edges, then nodes left dead.

    A hidden node is left dead when it has no active incoming edge (it is a constant, folded exactly) or no active
    outgoing edge (unused). Removed parts' means are folded into biases.

    Args:
        model: the KAN (left unchanged).
        node_th: threshold on node attribution scores.
        edge_th: threshold on edge attribution scores.
        x: the data (default: the last batch the model saw).

    Returns:
        a new, physically smaller KAN.

    Shapes:
        x: ``(batch, width[0])``.

    Example:
        >>> model.fit(dataset, opt="LBFGS", steps=50, lamb=0.01)
        >>> model = model.prune()
        >>> model.fit(dataset, opt="LBFGS", steps=50)
    """
    node_th = _check_threshold("node_th", node_th)
    edge_th = _check_threshold("edge_th", edge_th)
    x = score_batch(model, x)
    new = prune_node(model, node_th, x=x)
    new = prune_edge(new, edge_th, x=x)
    dead = _dead_hidden(new)
    if any(dead):
        keep = [[i for i in range(w) if i not in set(d)] for w, d in zip(new.width_in, dead)]
        scores = node_scores(new, x)
        for l in range(1, new.depth):
            if not keep[l]:
                keep[l] = [int(torch.argmax(scores[l]))]
        new = _remove_nodes(new, x, keep)
    return new


def prune_input(
    model: KAN,
    threshold: float = 1e-2,
    active_inputs: Sequence[int] | None = None,
    *,
    x: torch.Tensor | None = None,
    log_history: bool = True,
) -> KAN:
    """A new KAN without the inputs whose attribution score (:func:`feature_score`) is ``<= threshold``.

    The kept inputs' original indices and names are remembered in ``config.input_ids`` / ``config.input_names``;
    feed the new model ``x[:, new.config.input_ids]``.

    Args:
        model: the KAN (left unchanged).
        threshold: inputs with ``feature_score <= threshold`` are removed (at least one is kept).
        active_inputs: explicit input indices to keep (overrides ``threshold``).
        x: the data (default: the last batch the model saw).
        log_history: pykan's option, accepted; a method that returns a new model logs no checkpoint version.

    Shapes:
        x: ``(batch, width[0])``; the new model takes ``(batch, len(kept))``.

    Example:
        >>> small = model.prune_input()
        >>> small.config.input_ids
        [0, 1]
    """
    threshold = _check_threshold("threshold", threshold)
    x = score_batch(model, x)
    n_in = model.width_in[0]
    if active_inputs is not None:
        kept = sorted({int(v) for v in active_inputs})
        if not kept or any(not 0 <= v < n_in for v in kept):
            raise ValueError(f"active_inputs must be non-empty indices in [0, {n_in}), got {list(active_inputs)}")
    else:
        kept = _keep_from_scores(feature_score(model, x), threshold, 0)
    keep = [list(range(w)) for w in model.width_in]
    keep[0] = kept
    work = model.copy()
    _fold_nodes(work, x, keep)
    cfg = work.config
    if cfg.input_ids is None:
        cfg.input_ids = list(range(n_in))  # remember the original ids even when nothing is dropped
    new = _subset(work, keep)
    log.info("kept inputs %s", new.config.input_ids)
    return _finish(new, x[:, kept])
