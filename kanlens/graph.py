"""The KAN as a ``networkx.DiGraph``: a node per neuron, an edge per active KAN edge (networkx imported lazily).

Node ids are strings ``"{layer}_{index}"`` so the graph survives GraphML export unchanged. Layouts can use the
``layer`` attribute, e.g. ``networkx.multipartite_layout(G, subset_key="layer")``. With multiplication nodes the
KAN edges end in *subnodes* ``"{layer}_s{index}"`` (``kind="subnode"``), each joined to the node it feeds by an
edge with ``mode="sum"`` or ``mode="mult"``; neurons then carry ``op="sum"`` or ``op="mult"``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import networkx as nx

    from .model import KAN

__all__ = ["node_id", "subnode_id", "to_networkx", "write_graphml"]


def node_id(layer: int, index: int) -> str:
    """The graph id of node ``index`` in layer ``layer`` (layer 0 = inputs)."""
    return f"{layer}_{index}"


def subnode_id(layer: int, index: int) -> str:
    """The graph id of subnode ``index`` of layer ``layer`` (a KAN edge's end in a model with products)."""
    return f"{layer}_s{index}"


def _node_names(model: KAN) -> list[list[str]]:
    cfg = model.config
    width = model.width_in
    ids = list(cfg.input_ids) if cfg.input_ids is not None else list(range(width[0]))
    inputs = list(cfg.input_names) if cfg.input_names is not None else [f"x{i + 1}" for i in ids]
    names = [inputs]
    for l in range(1, len(width) - 1):
        names.append([f"h{l}_{i}" for i in range(width[l])])
    names.append([f"y{i + 1}" for i in range(width[-1])])
    return names


def to_networkx(model: KAN, x: torch.Tensor | None = None, *, scores: bool | None = None) -> nx.DiGraph:
    """Build a directed graph of the network.

    Nodes carry ``layer``, ``index``, ``name`` (input names from ``config.input_names``, else ``x<original id>``;
    ``h<layer>_<index>`` for hidden nodes; ``y<k>`` for outputs), ``kind`` (``input``/``hidden``/``output``) and
    ``score`` (attribution, see :func:`kanlens.pruning.attribute`). Edges exist only for active KAN edges and carry
    ``layer``, ``i`` (input index), ``j`` (output index), ``mode`` (``"spline"``, ``"symbolic"`` or ``"mixed"``
    when both parts are on), ``function`` (the symbolic function's name, ``""`` for pure splines), ``score``
    (attribution) and ``magnitude`` (:func:`kanlens.pruning.edge_scores`). Scores are ``nan`` when no data is
    available. The graph attributes hold ``width`` (``"2,5,1"``), ``depth`` and ``has_scores``.

    Args:
        model: the KAN.
        x: data for the scores (default: the last batch the model saw).
        scores: ``True`` requires data; ``False`` skips scores (``nan``); ``None`` computes them when data exists.

    Returns:
        a ``networkx.DiGraph``.

    Shapes:
        x: ``(batch, width[0])``.

    Example:
        >>> G = model.to_networkx()
        >>> G.number_of_nodes() == sum(model.width)
        True
    """
    import networkx as nx

    from . import pruning

    if scores is None:
        scores = x is not None or bool(getattr(model, "acts", None))
    width, depth, layout = model.width_in, model.depth, model.node_layout
    w_out = model.width_out
    if scores:
        attr = pruning.attribute(model, x)
        node_sc = [s.tolist() for s in attr.node_scores]
        edge_sc = [s.tolist() for s in attr.edge_scores]
        mag = [s.tolist() for s in pruning.edge_scores(model, x)]
    else:
        nan = float("nan")
        node_sc = [[nan] * w for w in width]
        edge_sc = [[[nan] * width[l] for _ in range(w_out[l + 1])] for l in range(depth)]
        mag = edge_sc

    shown = model.width if layout.has_mult else width
    G = nx.DiGraph(width=",".join(str(w).replace(" ", "") for w in shown), depth=depth, has_scores=bool(scores))
    names = _node_names(model)
    for l, w in enumerate(width):
        kind = "input" if l == 0 else "output" if l == depth else "hidden"
        for i in range(w):
            G.add_node(node_id(l, i), layer=l, index=i, name=names[l][i], kind=kind, score=float(node_sc[l][i]),
                       **({"op": "sum" if i < layout.n_sum[l] else "mult"} if layout.has_mult else {}))
    end = node_id
    if layout.has_mult:
        end = subnode_id
        for l in range(1, depth + 1):
            for node, group in enumerate(layout.groups(l)):
                op = "sum" if node < layout.n_sum[l] else "mult"
                for s in group:
                    G.add_node(subnode_id(l, s), layer=l, index=s, name=f"{names[l][node]}.{s}", kind="subnode",
                               score=float(node_sc[l][node]))
                    G.add_edge(subnode_id(l, s), node_id(l, node), layer=l, i=s, j=node, mode=op, function="",
                               score=float(node_sc[l][node]), magnitude=float("nan"))
    for l in range(depth):
        spline_on = (model.layers[l].mask != 0).cpu()
        sym = model.symbolic[l]
        use_sym = model.config.symbolic_enabled and sym.is_active()
        sym_on = (sym.mask != 0).cpu() if use_sym else torch.zeros_like(spline_on)
        fn_names = sym.function_names() if use_sym else None
        for j, i in torch.nonzero(spline_on | sym_on).tolist():
            s, y = bool(spline_on[j, i]), bool(sym_on[j, i])
            mode = "mixed" if s and y else "symbolic" if y else "spline"
            G.add_edge(
                node_id(l, i), end(l + 1, j), layer=l, i=i, j=j, mode=mode,
                function=fn_names[j][i] if y and fn_names is not None else "",
                score=float(edge_sc[l][j][i]), magnitude=float(mag[l][j][i]),
            )
    return G


def write_graphml(model: KAN, path: str | os.PathLike, x: torch.Tensor | None = None, **kwargs: Any) -> Path:
    """Write :func:`to_networkx` of ``model`` to a GraphML file at ``path`` (atomically); returns the path.

    Read it back with ``networkx.read_graphml(path)``.
    """
    import networkx as nx

    path = Path(path)
    G = to_networkx(model, x, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # normal permissions, unlike mkstemp's 0600
    try:
        nx.write_graphml(G, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
