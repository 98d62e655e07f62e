"""pykan's inspection methods on a kanlens KAN: activations, single edges, attribution by layer, interactions.

Everything is recomputed from the last batch the model saw (``model.acts``, kept by ``forward``) or from an explicit
``x``; nothing is stored during ``forward``. pykan's names: :func:`get_act`, :func:`get_fun`, :func:`get_range`,
:func:`attribute` (``attribute(l, i)``), :func:`node_attribute`, :func:`feature_interaction`,
:func:`connection_cost`, :func:`evaluate`, :func:`n_edge`, and :class:`ScoreTensor` (``model.feature_score``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._checks import as_int, check_edge, check_tensor

if TYPE_CHECKING:
    from .model import KAN

__all__ = [
    "ScoreTensor",
    "attribute",
    "connection_cost",
    "evaluate",
    "feature_interaction",
    "feature_score",
    "get_act",
    "get_fun",
    "get_range",
    "n_edge",
    "node_attribute",
]

log = logging.getLogger(__name__)


class ScoreTensor(torch.Tensor):
    """A tensor that can also be called: ``model.feature_score`` is pykan's tensor (scores on the last batch),
    ``model.feature_score(x)`` computes them on ``x`` (kanlens's call). Results of operations are plain tensors."""

    _model: Any = None

    def __call__(self, x: torch.Tensor | None = None) -> torch.Tensor:
        from . import pruning

        return pruning.feature_score(self._model, x)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


class _PendingScore:
    """``model.feature_score`` of a model that has seen no data yet: callable with ``x`` only."""

    def __init__(self, model: KAN) -> None:
        self._model = model

    def __call__(self, x: torch.Tensor | None = None) -> torch.Tensor:
        from . import pruning

        return pruning.feature_score(self._model, x)

    def __repr__(self) -> str:
        return "<feature_score: the model has seen no data; call model(x) first, or model.feature_score(x)>"


def feature_score(model: KAN) -> ScoreTensor | _PendingScore:
    """pykan's ``model.feature_score``: input attribution on the last batch (a :class:`ScoreTensor`).

    Shapes:
        returns ``(width[0],)``.
    """
    from . import pruning

    if not getattr(model, "acts", None):
        return _PendingScore(model)
    t = pruning.feature_score(model, None).as_subclass(ScoreTensor)
    t._model = model
    return t


def _inputs(model: KAN, x: torch.Tensor | dict | None) -> torch.Tensor | None:
    if isinstance(x, dict):
        x = x["train_input"]
    return x


def get_act(model: KAN, x: torch.Tensor | dict | None = None) -> None:
    """pykan's ``get_act``: run ``x`` (or a dataset's ``train_input``; default: the last batch) through the model
    so that plots and scores use it."""
    x = _inputs(model, x)
    if x is None:
        x = model.layer_inputs(None)[0]
    save = model.save_act
    model.save_act = True
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.save_act = save


def _edge(model: KAN, l: int, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    check_edge(model, l, i, j)  # output index j counts subnodes with multiplication nodes
    l, i, j = int(l), int(i), int(j)
    acts = model.layer_inputs(None)
    with torch.no_grad():
        y = model.edge_activations_layer(l, acts[l])[:, j, i]
    return acts[l][:, i].detach().cpu().numpy(), y.detach().cpu().numpy()


def get_fun(model: KAN, l: int, i: int, j: int, *, plot: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """pykan's ``get_fun``: the samples ``(inputs, outputs)`` of edge ``(l, i, j)`` on the last batch, sorted by
    input, and (``plot=True``, pykan's behaviour) a small matplotlib figure of them.

    Shapes:
        two arrays ``(batch,)``.
    """
    xs, ys = _edge(model, l, i, j)
    rank = np.argsort(xs, kind="stable")
    xs, ys = xs[rank], ys[rank]
    if plot:
        from .plotting._common import pyplot

        plt = pyplot()
        plt.figure(figsize=(3, 3))
        plt.plot(xs, ys, marker="o")
    return xs, ys


def get_range(model: KAN, l: int, i: int, j: int, verbose: bool = True) -> tuple[float, float, float, float]:
    """pykan's ``get_range``: ``(x_min, x_max, y_min, y_max)`` of edge ``(l, i, j)`` on the last batch
    (``verbose`` logs them at INFO level; kanlens does not print)."""
    xs, ys = _edge(model, l, i, j)
    out = (np.float64(xs.min()), np.float64(xs.max()), np.float64(ys.min()), np.float64(ys.max()))
    if verbose:
        log.info("x range: [%.2f , %.2f ]; y range: [%.2f , %.2f ]", *out)
    return out


def attribute(model: KAN, l: int | None = None, i: int | None = None, out_score: torch.Tensor | None = None,
              plot: bool = True, *, x: torch.Tensor | None = None):
    """pykan's ``attribute(l=None, i=None, out_score=None, plot=True)``.

    Without ``l``: the full :class:`kanlens.pruning.Attribution` (pykan stores it on the model and returns None).
    With ``l``: pykan's ``node_scores_all[0]``, the attribution of every node of layer ``l`` to the inputs
    ``(width[l], width[0])``; with ``i`` as well, node ``i``'s row ``(width[0],)`` (and, with ``plot=True``, a bar
    chart of it, as pykan draws).
    """
    from . import pruning

    if l is None:
        return pruning.attribute(model, x, i=i, out_score=out_score)
    l = as_int("l", l, 1)
    res = pruning.attribute(model, x, l=l, out_score=out_score).node_scores_all[0]
    if i is None:
        return res
    i = as_int("i", i, 0)
    if i >= res.shape[0]:
        raise IndexError(f"i = {i} is out of range: layer {l} has {res.shape[0]} nodes")
    row = res[i]
    if plot:
        from .plotting._common import pyplot

        plt = pyplot()
        n = row.shape[0]
        plt.figure(figsize=(1 * n, 3))
        plt.bar(range(n), row.cpu().numpy())
        plt.xticks(range(n))
    return row


def node_attribute(model: KAN, x: torch.Tensor | None = None) -> list[torch.Tensor]:
    """pykan's ``node_attribute``: ``[attribute(l) for l in 1..depth]``, also kept as
    ``model.node_attribute_scores`` (as pykan does).

    Shapes:
        returns ``[(width[l], width[0]) for l in 1..depth]``.
    """
    scores = [attribute(model, l, x=x) for l in range(1, model.depth + 1)]
    model.node_attribute_scores = scores
    return scores


def feature_interaction(model: KAN, l: int, neuron_th: float = 1e-2, feature_th: float = 1e-2,
                        x: torch.Tensor | None = None) -> dict[tuple[int, ...], int]:
    """pykan's ``feature_interaction``: for every node of layer ``l`` whose largest input attribution exceeds
    ``neuron_th``, the tuple of inputs with attribution above ``feature_th`` times that maximum; returns how many
    nodes use each tuple of inputs."""
    scores = attribute(model, l, x=x)
    out: dict[tuple[int, ...], int] = {}
    for row in scores:
        top = float(row.max())
        if top > neuron_th:
            key = tuple(int(v) for v in torch.where(row > top * feature_th)[0].tolist())
            out[key] = out.get(key, 0) + 1
    return out


def connection_cost(model: KAN, x: torch.Tensor | None = None) -> torch.Tensor:
    """pykan's ``connection_cost``: ``sum |pos(j) - pos(i)| * edge_score(j, i)`` over the attribution edge scores,
    with nodes at evenly spaced positions in ``[0, 1]`` (what ``auto_swap`` minimises).

    Shapes:
        returns a scalar.
    """
    from . import pruning

    total = None
    for t in pruning.attribute(model, x).edge_scores:
        pos_out = (torch.arange(t.shape[0], dtype=t.dtype, device=t.device) + 0.5) / t.shape[0]
        pos_in = (torch.arange(t.shape[1], dtype=t.dtype, device=t.device) + 0.5) / t.shape[1]
        cost = ((pos_out[:, None] - pos_in[None, :]).abs() * t).sum()
        total = cost if total is None else total + cost
    return total


def n_edge(model: KAN) -> int:
    """pykan's ``n_edge``: the number of active spline edges (mask > 0)."""
    return int(sum(int((layer.mask > 0).sum()) for layer in model.layers))


@torch.no_grad()
def evaluate(model: KAN, dataset: dict[str, torch.Tensor]) -> dict[str, float]:
    """pykan's ``evaluate``: ``{"test_loss": RMSE on the test split, "n_edge": ..., "n_grid": ...}``."""
    x = check_tensor("dataset['test_input']", dataset["test_input"], ndim=2, last_dim=model.width_in[0])
    y = dataset["test_label"]
    pred = model(x.to(model.device, model.dtype))
    rmse = torch.sqrt(torch.mean((pred - y.to(pred)) ** 2)).item()
    return {"test_loss": rmse, "n_edge": n_edge(model), "n_grid": model.config.grid}
