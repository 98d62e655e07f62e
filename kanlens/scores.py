"""Scores of edges, nodes and inputs on a batch of data: local edge magnitudes and attribution from the outputs
(pykan's ``acts_scale`` and ``attribute``).

Everything here is computed from a batch of data through the per-edge path
(:meth:`KAN.edge_activations_layer`); nothing is stored during ``forward``. Scores use no randomness, so they are
identical on a copy of the model and independent of the global RNG state. :mod:`kanlens.pruning` thresholds them
(and re-exports them: ``kanlens.pruning.attribute`` is :func:`attribute`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from ._checks import check_tensor

if TYPE_CHECKING:
    from .model import KAN

__all__ = ["Attribution", "attribute", "edge_scores", "feature_score", "node_scores"]

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
def score_batch(model: KAN, x: torch.Tensor | None) -> torch.Tensor:
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


def layer_stats(model: KAN, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: layer inputs ``(batch, in)``, edge spreads ``std(phi)`` ``(out, in)``, spreads of the summed edges
    ``(out,)`` (``out``: the layer's subnodes, which are its output nodes without multiplication nodes)."""
    acts = model.layer_inputs(x)
    edge_std, node_std = [], []
    for l in range(model.depth):
        edges = model.edge_activations_layer(l, acts[l])  # (batch, out, in)
        edge_std.append(edges.std(0))
        node_std.append(edges.sum(-1).std(0))  # spread of the summed node input, before node_scale/bias
    return acts, edge_std, node_std


def active_edges(model: KAN, l: int) -> torch.Tensor:
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
    x = score_batch(model, x)
    acts = model.layer_inputs(x)
    out = []
    for l in range(model.depth):
        edges = model.edge_activations_layer(l, acts[l])
        out.append(edges.std(0) / (acts[l].std(0) + 0.1))
    return out


def _query(model: KAN, x: torch.Tensor, l: int | None, i: int | None,
           out_score: torch.Tensor | None) -> tuple[int, torch.Tensor]:
    """:func:`attribute`'s start: the queried layer ``l_end`` and one row of starting node scores per queried node
    ``(n_query, width_in[l_end])``."""
    depth = model.depth
    if l is None:
        l_end = depth
        if i is not None:
            raise ValueError("i selects a node of layer l: pass l as well")
    else:
        if isinstance(l, bool) or not isinstance(l, int) or not 1 <= l <= depth:
            raise ValueError(f"l must be an int in [1, {depth}] (a layer of nodes after the inputs), got {l!r}")
        l_end = l
    width = model.width_in
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
    return l_end, query


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
    x = score_batch(model, x)
    l_end, query = _query(model, x, l, i, out_score)
    layout = model.node_layout
    _, edge_std, node_std = layer_stats(model, x)
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
