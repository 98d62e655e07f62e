"""Scores (edge magnitudes, attribution) and pruning that returns a new, physically smaller KAN.

Everything here is computed from a batch of data through the per-edge path
(:meth:`KAN.edge_activations_layer`); nothing is stored during ``forward``. Scores use no randomness, so they are
identical on a copy of the model and independent of the global RNG state.

Pruning never drops a removed part's contribution silently: the *mean* of every removed edge on the data is folded
into the bias of the node it fed, so the pruned model computes the same function up to the *variation* of what was
removed (pykan 0.2.8 drops the mean, which shifts the output by a constant).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ._checks import check_tensor

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

_EPS = 1e-4  # pykan's guard against dividing by the spread of a constant node


@dataclasses.dataclass
class Attribution:
    """Importance scores back-propagated from the outputs (pykan's ``attribute``).

    Attributes:
        node_scores: one ``(width_in[l],)`` tensor per layer ``l = 0..L`` (summed over the queried nodes).
        edge_scores: one ``(width_out[l+1], width_in[l])`` tensor per layer ``l = 0..L-1`` (``[out, in]``; ``out``
            counts subnodes, which are the nodes of a KAN without multiplication nodes).
        node_scores_all: like ``node_scores`` but per queried node: ``(n_query, width_in[l])``.
        edge_scores_all: like ``edge_scores`` but per queried node: ``(n_query, width_out[l+1], width_in[l])``.
    """

    node_scores: list[torch.Tensor]
    edge_scores: list[torch.Tensor]
    node_scores_all: list[torch.Tensor]
    edge_scores_all: list[torch.Tensor]


# ---------------------------------------------------------------------------------------------------- helpers
def _batch(model: KAN, x: torch.Tensor | None) -> torch.Tensor:
    """The input batch scores are computed on: ``x``, or the inputs of the last batch the model saw."""
    if x is None:
        if not getattr(model, "acts", None):
            raise ValueError(
                "x is None and the model has not seen any data yet (or keeps no activations, e.g. after "
                "speed()): pass x=<a (batch, n_in) tensor>, or call model(x) first"
            )
        x = model.layer_inputs(None)[0]  # the last batch, with its warning / error when it is too small
    check_tensor("x", x, ndim=2, last_dim=model.width_in[0])
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least 2 samples to measure spreads, got shape {tuple(x.shape)}")
    return x.detach()


def _check_threshold(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _layer_stats(model: KAN, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: layer inputs ``(batch, in)``, edge spreads ``std(phi)`` ``(out, in)``, spreads of the summed edges
    ``(out,)`` (``out``: the layer's subnodes, which are its output nodes without multiplication nodes)."""
    acts = model.layer_inputs(x)
    edge_std, node_std = [], []
    for l in range(model.depth):
        edges = model.edge_activations_layer(l, acts[l])  # (batch, out, in)
        edge_std.append(edges.std(0))
        node_std.append(edges.sum(-1).std(0))  # spread of the summed node input, before node_scale/bias
    return acts, edge_std, node_std


def _active_edges(model: KAN, l: int) -> torch.Tensor:
    """Boolean ``(out, in)``: edges of layer ``l`` that contribute (spline or enabled symbolic)."""
    active = model.layers[l].mask != 0
    sym = model.symbolic[l]
    if model.config.symbolic_enabled and sym.is_active():
        active = active | (sym.mask != 0)
    return active


# ---------------------------------------------------------------------------------------------------- scores
@torch.no_grad()
def edge_scores(model: KAN, x: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Local edge magnitudes: ``std_x(phi_ji(x_i)) / (std_x(x_i) + 0.1)`` (pykan's ``acts_scale``).

    This is how strongly each edge function varies over the data, relative to how much its input varies. It does
    not look downstream; for importance to the outputs use :func:`attribute`.

    Args:
        model: the KAN.
        x: a batch of inputs (default: the last batch the model saw).

    Returns:
        one tensor per layer.

    Shapes:
        x: ``(batch, width[0])``; returns ``[(width_out[l+1], width_in[l]) for l in range(depth)]``.

    Example:
        >>> model(dataset["train_input"])
        >>> [s.shape for s in model.edge_scores()]
    """
    x = _batch(model, x)
    acts = model.layer_inputs(x)
    out = []
    for l in range(model.depth):
        edges = model.edge_activations_layer(l, acts[l])
        out.append(edges.std(0) / (acts[l].std(0) + 0.1))
    return out


@torch.no_grad()
def attribute(
    model: KAN,
    x: torch.Tensor | None = None,
    *,
    l: int | None = None,
    i: int | None = None,
    out_score: torch.Tensor | None = None,
) -> Attribution:
    """Attribution scores back-propagated from the outputs (pykan 0.2's ``attribute``).

    Every queried node starts with a score (1 per output by default). A node's score is shared among its incoming
    edges in proportion to their spread on the data, ``std(phi_ji) / std(sum_i phi_ji)``, and a node's score is the
    sum of the scores of its outgoing edges. An input that only feeds unimportant edges ends with a low score.
    Scores are dimensionless (fractions of the outputs' variation) and invariant to ``node_scale``.

    Args:
        model: the KAN.
        x: a batch of inputs (default: the last batch the model saw).
        l: start from the nodes of layer ``l`` (``1..depth``) instead of the outputs; as in pykan, each start node
            is weighted by its own overall score unless ``out_score`` is given.
        i: with ``l``, start from node ``i`` of layer ``l`` only (pykan's ``attribute(l, i)`` is
            ``attribute(l=l, i=i).node_scores[0]``).
        out_score: starting scores of the queried layer's nodes, ``(width[l],)``.

    Returns:
        an :class:`Attribution` (lists cover layers ``0..l``).

    Shapes:
        x: ``(batch, width[0])``.

    Example:
        >>> scores = model.attribute(dataset["train_input"])
        >>> scores.node_scores[0]  # importance of each input
    """
    x = _batch(model, x)
    depth = model.depth
    if l is None:
        l_end = depth
        if i is not None:
            raise ValueError("i selects a node of layer l: pass l as well")
    else:
        if isinstance(l, bool) or not isinstance(l, int) or not 1 <= l <= depth:
            raise ValueError(f"l must be an int in [1, {depth}] (a layer of nodes after the inputs), got {l!r}")
        l_end = l
    width, layout = model.width_in, model.node_layout
    _, edge_std, node_std = _layer_stats(model, x)
    dev, dt = x.device, x.dtype
    if out_score is None:
        if l is None or l == depth:
            start = torch.ones(width[l_end], device=dev, dtype=dt)
        else:
            start = attribute(model, x).node_scores[l]
    else:
        start = torch.as_tensor(out_score, device=dev, dtype=dt).flatten()
        if start.shape[0] != width[l_end]:
            raise ValueError(f"out_score must have {width[l_end]} entries (width of layer {l_end}), "
                             f"got {start.shape[0]}")
    query = torch.diag(start)
    if i is not None:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < width[l_end]:
            raise ValueError(f"i must be an int in [0, {width[l_end]}), got {i!r}")
        query = query[i : i + 1]
    node_all = [query]
    edge_all = []
    for layer in range(l_end - 1, -1, -1):
        # edge (j, i) gets subnode j's score times its share of subnode j's spread; as in pykan, every factor of
        # a product node gets the node's whole score
        share = edge_std[layer] / (node_std[layer][:, None] + _EPS)  # (out, in)
        sub = node_all[-1]
        if layout.has_mult:
            sub = sub[:, layout.node_of_subnode(layer + 1)]
        e = sub[:, :, None] * share[None]  # (n_query, out, in)
        edge_all.append(e)
        node_all.append(e.sum(1))
    node_all.reverse()
    edge_all.reverse()
    return Attribution(
        node_scores=[s.sum(0) for s in node_all],
        edge_scores=[s.sum(0) for s in edge_all],
        node_scores_all=node_all,
        edge_scores_all=edge_all,
    )


def node_scores(model: KAN, x: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Attribution score of every node (``attribute(model, x).node_scores``).

    Shapes:
        returns ``[(width[l],) for l in range(depth + 1)]``; the outputs score 1 each.
    """
    return attribute(model, x).node_scores


def feature_score(model: KAN, x: torch.Tensor | None = None) -> torch.Tensor:
    """Importance of each input for the outputs (pykan's ``feature_score``).

    Shapes:
        x: ``(batch, width[0])``; returns ``(width[0],)``.
    """
    return attribute(model, x).node_scores[0]


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
        has_in_sub = _active_edges(model, l - 1).any(1).tolist()
        has_in = torch.tensor([any(has_in_sub[s] for s in g) for g in layout.groups(l)], device=model.device)
        has_out = _active_edges(model, l).any(0)
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
    *,
    x: torch.Tensor | None = None,
    active_neurons_id: Sequence[Sequence[int]] | None = None,
) -> KAN:
    """A new, narrower KAN without the hidden nodes whose attribution score is ``<= threshold``.

    The mean contribution of every removed node on the data is folded into the next layer's biases. At least one
    node is kept per hidden layer.

    Args:
        model: the KAN (left unchanged).
        threshold: hidden nodes with ``node_scores <= threshold`` are removed.
        x: the data (default: the last batch the model saw).
        active_neurons_id: explicit hidden nodes to keep, one list per hidden layer (overrides ``threshold``).

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
    x = _batch(model, x)
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
    x = _batch(model, x)
    remove = [s <= threshold for s in attribute(model, x).edge_scores]
    work = model
    for l in range(work.depth):
        _fold_edges(work, l, work.layer_inputs(x)[l], remove[l] & _active_edges(work, l))
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
    x = _batch(model, x)
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
    *,
    x: torch.Tensor | None = None,
    active_inputs: Sequence[int] | None = None,
) -> KAN:
    """A new KAN without the inputs whose attribution score (:func:`feature_score`) is ``<= threshold``.

    The kept inputs' original indices and names are remembered in ``config.input_ids`` / ``config.input_names``;
    feed the new model ``x[:, new.config.input_ids]``.

    Args:
        model: the KAN (left unchanged).
        threshold: inputs with ``feature_score <= threshold`` are removed (at least one is kept).
        x: the data (default: the last batch the model saw).
        active_inputs: explicit input indices to keep (overrides ``threshold``).

    Shapes:
        x: ``(batch, width[0])``; the new model takes ``(batch, len(kept))``.

    Example:
        >>> small = model.prune_input()
        >>> small.config.input_ids
        [0, 1]
    """
    threshold = _check_threshold("threshold", threshold)
    x = _batch(model, x)
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
