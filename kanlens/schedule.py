"""The training schedule of the fit -> prune -> refine workflow, written once.

:func:`train_schedule` is what ``kanlens fit`` (:func:`kanlens.runs.run_workflow`), the symbolic search
(:func:`kanlens.symbolic.pipeline.symbolic_regression`) and, through it, ``KANRegressor(symbolic=True)`` train
with: sparse fit and prune (repeated while the width shrinks, retried with a weaker penalty when pruning lost
accuracy), harder pruning while the error allows, then finer grids while they help. Every finished training stage
is reported as a :class:`StageEvent` to ``on_stage``: callers never infer stages from fit callbacks. An optional
``deadline`` (the search's :class:`~kanlens.symbolic.search.budget.Deadline`, or anything with ``limited``,
``expired()`` and ``callback()``) stops every fit once spent and skips the retries and refinements left.

Example:
    >>> events = []
    >>> model = train_schedule(KAN([2, 5, 1], seed=0), dataset, steps=(50, 50, 50), lamb=0.01,
    ...                        refine_grid=(10, 20), on_stage=events.append)
    >>> [e.stage for e in events]
    ['sparse spline', 'spline', 'spline', ...]
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .fit_history import FitHistory

if TYPE_CHECKING:  # duck-typed at run time: the schedule (level 4) does not load the symbolic package
    from .symbolic.search.budget import Deadline

__all__ = ["SPARSE_RETRY_FACTORS", "SPARSE_RETRY_RMSE", "StageEvent", "holdout_rmse", "n_edges", "train_schedule"]

log = logging.getLogger(__name__)

# A pruned KAN further than this from the (standardised) data has usually lost structure it needed: the sparsity
# weight was too strong for this target (e.g. 1 + x1 + 2*sqrt(x1)*cos(x2) collapses to [2, 1, 1] at 6% error,
# and keeps the [2, 2, 1] it needs at 0.7% with a third of the weight).
SPARSE_RETRY_RMSE = 1e-2
SPARSE_RETRY_FACTORS = (1 / 3, 1 / 10)


@dataclasses.dataclass
class StageEvent:
    """One step of a workflow, reported when it is finished.

    Attributes:
        stage: what ran: ``"sparse spline"`` / ``"spline"`` (a training stage of the spline KAN, with or without
            the sparsity penalty), ``"symbolic"`` (training the symbolic KAN's constants), or a workflow step
            without training (``"start"``, ``"formula"``, ``"written"``).
        index: 1-based number of the training stage (0 for steps without training).
        width, grid: the model's widths and grid size during the stage.
        history: the :class:`~kanlens.FitHistory` of a training stage, else ``None``.
        model: the model at the end of the stage (a copy for stages of the workflow; the live model in
            :func:`train_schedule`, which may change it later: copy it to keep it).
        seconds: wall time of the stage.
        message: a human-readable note (the formula of ``"formula"``, the folder of ``"written"``).
    """

    stage: str
    index: int = 0
    width: list[int] | None = None
    grid: int | None = None
    history: FitHistory | None = None
    model: Any = None
    seconds: float = 0.0
    message: str = ""

    @property
    def train_rmse(self) -> float:
        h = self.history
        return float(h.train_loss[-1]) if h is not None and h.train_loss else math.nan

    @property
    def test_rmse(self) -> float:
        h = self.history
        return float(h.test_loss[-1]) if h is not None and h.test_loss else math.nan

    @property
    def name(self) -> str:
        """``"1: sparse spline [2, 5, 1] grid=5"`` for a training stage, else :attr:`stage`."""
        if self.history is None:
            return self.stage
        return f"{self.index}: {self.stage} {self.width} grid={self.grid}"

    def line(self) -> str:
        """One log line describing the finished stage."""
        if self.history is None:
            return f"{self.stage}: {self.message}" if self.message else self.stage
        return (f"stage {self.name}: {len(self.history)} steps, train RMSE {self.train_rmse:.3e}, test RMSE "
                f"{self.test_rmse:.3e} ({self.seconds:.1f} s)")


OnStage = Callable[[StageEvent], None]


def holdout_rmse(model: Any, dataset: dict) -> float:
    """Test RMSE of ``model`` on ``dataset`` (``inf`` when not finite)."""
    with torch.no_grad():
        err = model(dataset["test_input"]) - dataset["test_label"].to(model.dtype)
    v = float(torch.sqrt(torch.mean(err.double() ** 2)))
    return v if math.isfinite(v) else math.inf


def n_edges(model: Any) -> int:
    """Number of active spline edges."""
    return sum(int((layer.mask != 0).sum()) for layer in model.layers)


class _Stages:
    """Runs ``model.fit`` for the schedule and reports each finished fit as a :class:`StageEvent`."""

    def __init__(self, on_stage: OnStage | None, fit_kwargs: dict) -> None:
        self.on_stage, self.fit_kwargs, self.count = on_stage, fit_kwargs, 0

    def fit(self, model: Any, dataset: dict, steps: int, lamb: float = 0.0) -> FitHistory:
        width, grid, t = list(model.width), model.grid, time.perf_counter()
        kwargs = dict(self.fit_kwargs, lamb=lamb) if lamb else self.fit_kwargs
        history = model.fit(dataset, opt="LBFGS", steps=steps, progress=False, **kwargs)
        self.count += 1
        if self.on_stage is not None:
            self.on_stage(StageEvent("sparse spline" if lamb else "spline", self.count, width, grid, history, model,
                                     time.perf_counter() - t))
        return history


def train_schedule(model: Any, dataset: dict, *, steps: Sequence[int], lamb: float,
                   refine_grid: Sequence[int] | None, prune: bool = True, prune_rounds: int = 3,
                   prune_kwargs: dict | None = None, timings: dict | None = None, fit_kwargs: dict | None = None,
                   on_stage: OnStage | None = None, deadline: Deadline | None = None) -> Any:
    """Sparse fit and prune (repeated while the width keeps shrinking), then fit and refine grids.

    When pruning leaves a model with test RMSE above 1% of std(y), the sparse stage is rerun from the initial
    model with a weaker sparsity weight (1/3, then 1/10); a rerun is kept when it at least halves the error.
    Then 3x and 10x the pruning thresholds are tried (kept while the retrained error stays within 1.5x). Grids in
    ``refine_grid`` are tried in order; refinement stops (keeping the previous model) once a finer grid no longer
    improves the test error (or improves it less than 1.5x once the error is below 0.1% of std(y)), and is skipped
    once the test error reaches float precision. With a ``deadline``, every fit stops once it is spent and the
    retries, harder pruning and refinements left are skipped, so training never outlasts the budget by more than
    one LBFGS step.

    Args:
        model: the KAN to start from (trained in place by the first stage; pruning and refining make new ones).
        dataset: pykan-style dataset on the model's device and dtype.
        steps: LBFGS steps of the (sparse, after pruning, after refining) fits.
        lamb: sparsity weight of the sparse fits.
        refine_grid: finer grid sizes tried in order (``None`` or empty: no refinement).
        prune, prune_rounds, prune_kwargs: whether to prune, how many sparse fit + prune rounds at most, and the
            thresholds passed to ``model.prune``.
        timings: filled with seconds per phase (``fit_sparse_prune``, ``prune_harder``, ``fit_refine``).
        fit_kwargs: extra options of every ``model.fit`` call (e.g. ``callbacks``).
        on_stage: called with a :class:`StageEvent` after every training stage, before the next one starts.
        deadline: a :class:`~kanlens.symbolic.search.budget.Deadline` (``None``: no limit).

    Returns:
        The trained model (``model`` itself or a pruned / refined copy), run once on the training inputs.

    Shapes:
        ``dataset["train_input"]``: ``(n, width[0])``, ``dataset["train_label"]``: ``(n, width[-1])``.
    """
    timings = {} if timings is None else timings
    prune_kwargs, fit_kwargs = prune_kwargs or {}, dict(fit_kwargs or {})
    if deadline is not None and deadline.limited:
        fit_kwargs["callbacks"] = [*fit_kwargs.get("callbacks", ()), deadline.callback()]
    expired = deadline.expired if deadline is not None else (lambda: False)
    stages = _Stages(on_stage, fit_kwargs)
    steps = list(steps)
    t = time.perf_counter()
    y_std = float(dataset["test_label"].double().std()) or 1.0
    initial = copy.deepcopy(model) if prune and lamb > 0 else None
    kw = dict(steps=steps, prune=prune, prune_rounds=prune_rounds, prune_kwargs=prune_kwargs, stages=stages)
    model, err, shrunk = _sparse_rounds(model, dataset, lamb=lamb, **kw)
    for factor in SPARSE_RETRY_FACTORS:
        if initial is None or not shrunk or err <= SPARSE_RETRY_RMSE * y_std or expired():
            break
        alt, alt_err, alt_shrunk = _sparse_rounds(copy.deepcopy(initial), dataset, lamb=lamb * factor, **kw)
        log.info("sparse retry lamb %.3g: %s test rmse %.3e -> %s %.3e", lamb * factor, model.width, err,
                 alt.width, alt_err)
        if alt_err < 0.5 * err:
            model, err, shrunk = alt, alt_err, alt_shrunk
    timings["fit_sparse_prune"] = time.perf_counter() - t
    t = time.perf_counter()
    if prune and hasattr(model, "prune") and not expired():
        model, err = _prune_harder(model, dataset, err, y_std, steps[1], prune_kwargs, stages)
    timings["prune_harder"] = time.perf_counter() - t
    t = time.perf_counter()
    model = _refine(model, dataset, err, y_std, refine_grid or (), steps[2], stages, expired)
    model(dataset["train_input"])
    timings["fit_refine"] = time.perf_counter() - t
    return model


def _refine(model: Any, dataset: dict, err: float, y_std: float, grids: Sequence[int], steps: int,
            stages: _Stages, expired: Callable[[], bool]) -> Any:
    for g in grids:
        if expired():
            break
        if err <= 1e-5 * y_std or g <= model.grid:
            continue
        finer = model.refine(g, dataset["train_input"])
        stages.fit(finer, dataset, steps)
        new_err = holdout_rmse(finer, dataset)
        log.info("refine grid %d -> %d: test rmse %.3e -> %.3e", model.grid, g, err, new_err)
        if not new_err < err:
            break
        model, gain, err = finer, err / max(new_err, 1e-300), new_err
        if gain < 1.5 and err < 1e-3 * y_std:  # still far from the data: keep refining while it improves
            break
    return model


def _prune_harder(model: Any, dataset: dict, err: float, y_std: float, steps: int, prune_kwargs: dict,
                  stages: _Stages) -> tuple[Any, float]:
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
        stages.fit(smaller, dataset, steps)
        new_err = holdout_rmse(smaller, dataset)
        log.info("prune x%g: %s (%d edges) -> %s (%d edges), test rmse %.3e -> %.3e", factor, model.width,
                 n_edges(model), smaller.width, n_edges(smaller), err, new_err)
        if new_err <= max(1.5 * err, 1e-4 * y_std):
            model, err = smaller, new_err
        else:
            break
    return model, err


def _sparse_rounds(model: Any, dataset: dict, *, steps: Sequence[int], lamb: float, prune: bool, prune_rounds: int,
                   prune_kwargs: dict, stages: _Stages) -> tuple[Any, float, bool]:
    """Sparse fit and prune (repeated while the width keeps shrinking), then a plain fit; returns the model, its
    test RMSE and whether pruning removed anything."""
    width0, edges0 = model.width, n_edges(model)
    for round_ in range(max(1, prune_rounds)):
        # a later round works on a copy: when it prunes nothing, its extra sparse fit only squeezed the already
        # pruned network (toy exp(sin(pi*x1) + x2**2): [2, 1, 1] at 3e-2 of std(y) instead of 3e-3), so it is undone
        previous = copy.deepcopy(model) if round_ > 0 else None
        stages.fit(model, dataset, steps[0], lamb=lamb)
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
    stages.fit(model, dataset, steps[1])
    return model, holdout_rmse(model, dataset), shrunk
