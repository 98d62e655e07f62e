"""Training the KAN of a search run: sparse fit and prune (repeated while the width shrinks, retried with a weaker
sparsity weight when pruning lost too much), harder pruning while the error allows, then grid refinement. Every
fit stops at the run's :class:`~kanlens.symbolic.search.budget.Deadline`."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence

import torch

from .budget import Deadline

__all__ = ["n_edges", "test_rmse", "train"]

log = logging.getLogger(__name__)


def test_rmse(model, dataset: dict) -> float:
    with torch.no_grad():
        err = model(dataset["test_input"]) - dataset["test_label"].to(model.dtype)
    v = float(torch.sqrt(torch.mean(err.double() ** 2)))
    return v if math.isfinite(v) else math.inf


def n_edges(model) -> int:
    return sum(int((layer.mask != 0).sum()) for layer in model.layers)


def prune_harder(model, dataset: dict, err: float, y_std: float, steps: int, prune_kwargs: dict,
                  fit_kwargs: dict):
    """Try 3x and 10x the pruning thresholds; keep a smaller model while its retrained test error stays within
    1.5x of the current one (or below 1e-4 of std(y))."""
    node_th = float(prune_kwargs.get("node_th", 1e-2))
    edge_th = float(prune_kwargs.get("edge_th", 3e-2))
    for factor in (3.0, 10.0):
        try:
            model(dataset["train_input"])
            smaller = model.prune(node_th=node_th * factor, edge_th=edge_th * factor)
        except Exception as e:
            log.warning("aggressive prune failed (%s)", e)
            break
        if smaller.width == model.width and n_edges(smaller) == n_edges(model):
            continue
        smaller.fit(dataset, opt="LBFGS", steps=steps, progress=False, **fit_kwargs)
        new_err = test_rmse(smaller, dataset)
        log.info("prune x%g: %s (%d edges) -> %s (%d edges), test rmse %.3e -> %.3e", factor, model.width,
                 n_edges(model), smaller.width, n_edges(smaller), err, new_err)
        if new_err <= max(1.5 * err, 1e-4 * y_std):
            model, err = smaller, new_err
        else:
            break
    return model, err


def sparse_rounds(model, dataset: dict, *, steps: Sequence[int], lamb: float, prune: bool, prune_rounds: int,
                   prune_kwargs: dict, fit_kwargs: dict):
    """Sparse fit and prune (repeated while the width keeps shrinking), then a plain fit; returns the model, its
    test RMSE and whether pruning removed anything."""
    width0, edges0 = model.width, n_edges(model)
    for round_ in range(max(1, prune_rounds)):
        # a later round works on a copy: when it prunes nothing, its extra sparse fit only squeezed the already
        # pruned network (toy exp(sin(pi*x1) + x2**2): [2, 1, 1] at 3e-2 of std(y) instead of 3e-3), so it is undone
        previous = copy.deepcopy(model) if round_ > 0 else None
        model.fit(dataset, opt="LBFGS", steps=steps[0], lamb=lamb, progress=False, **fit_kwargs)
        if not (prune and hasattr(model, "prune")):
            break
        before, edges = model.width, n_edges(model)
        try:
            model(dataset["train_input"])
            model = model.prune(**prune_kwargs)
        except Exception as e:  # pruning is optional: never lose the run over it
            log.warning("prune failed (%s); continuing with the unpruned model", e)
            break
        log.info("prune round %d: %s -> %s", round_, before, model.width)
        if previous is not None and model.width == before and n_edges(model) == edges:
            model = previous
            break
        if model.width == before:
            break
    shrunk = model.width != width0 or n_edges(model) != edges0  # pruning only removes: compare end and start
    model.fit(dataset, opt="LBFGS", steps=steps[1], progress=False, **fit_kwargs)
    return model, test_rmse(model, dataset), shrunk


# A pruned KAN further than this from the (standardised) data has usually lost structure it needed: the sparsity
# weight was too strong for this target (e.g. 1 + x1 + 2*sqrt(x1)*cos(x2) collapses to [2, 1, 1] at 6% error,
# and keeps the [2, 2, 1] it needs at 0.7% with a third of the weight).
_SPARSE_RETRY_RMSE = 1e-2
_SPARSE_RETRY_FACTORS = (1 / 3, 1 / 10)


def train(model, dataset: dict, *, steps: Sequence[int], lamb: float, refine_grid: Sequence[int],
          prune: bool, prune_rounds: int, prune_kwargs: dict, timings: dict, fit_kwargs: dict,
          deadline: Deadline | None = None):
    """Sparse fit and prune (repeated while the width keeps shrinking), then fit and refine grids.

    When pruning leaves a model with test RMSE above 1% of std(y), the sparse stage is rerun from the initial
    model with a weaker sparsity weight (1/3, then 1/10); a rerun is kept when it at least halves the error.
    Grids in ``refine_grid`` are tried in order; refinement stops (keeping the previous model) once a finer grid
    no longer improves the test error (or improves it less than 1.5x once the error is below 0.1% of std(y)),
    and stops early when the test error reaches float precision. Every fit stops once ``deadline`` is spent (the
    retries and refinements are then skipped), so training never outlasts the budget by more than one LBFGS step.

    Shapes:
        dataset inputs ``(n, d)``, labels ``(n, m)`` (standardised labels work best: see ``lamb``).
    """
    deadline = deadline or Deadline(None)
    if deadline.limited:
        fit_kwargs = dict(fit_kwargs, callbacks=[*fit_kwargs.get("callbacks", ()), deadline.callback()])
    t = time.perf_counter()
    y_std = float(dataset["test_label"].double().std()) or 1.0
    initial = copy.deepcopy(model) if prune and lamb > 0 else None
    kw = dict(steps=steps, prune=prune, prune_rounds=prune_rounds, prune_kwargs=prune_kwargs,
              fit_kwargs=fit_kwargs)
    model, err, shrunk = sparse_rounds(model, dataset, lamb=lamb, **kw)
    for factor in _SPARSE_RETRY_FACTORS:
        if initial is None or not shrunk or err <= _SPARSE_RETRY_RMSE * y_std or deadline.expired():
            break
        alt, alt_err, alt_shrunk = sparse_rounds(copy.deepcopy(initial), dataset, lamb=lamb * factor, **kw)
        log.info("sparse retry lamb %.3g: %s test rmse %.3e -> %s %.3e", lamb * factor, model.width, err,
                 alt.width, alt_err)
        if alt_err < 0.5 * err:
            model, err, shrunk = alt, alt_err, alt_shrunk
    timings["fit_sparse_prune"] = time.perf_counter() - t
    t = time.perf_counter()
    if prune and hasattr(model, "prune") and not deadline.expired():
        model, err = prune_harder(model, dataset, err, y_std, steps[1], prune_kwargs, fit_kwargs)
    timings["prune_harder"] = time.perf_counter() - t
    t = time.perf_counter()
    for g in refine_grid:
        if deadline.expired():
            break
        if err <= 1e-5 * y_std or g <= model.grid:
            continue
        finer = model.refine(g, dataset["train_input"])
        finer.fit(dataset, opt="LBFGS", steps=steps[2], progress=False, **fit_kwargs)
        new_err = test_rmse(finer, dataset)
        log.info("refine grid %d -> %d: test rmse %.3e -> %.3e", model.grid, g, err, new_err)
        if not new_err < err:
            break
        model, gain, err = finer, err / max(new_err, 1e-300), new_err
        if gain < 1.5 and err < 1e-3 * y_std:  # still far from the data: keep refining while it improves
            break
    model(dataset["train_input"])
    timings["fit_refine"] = time.perf_counter() - t
    return model


