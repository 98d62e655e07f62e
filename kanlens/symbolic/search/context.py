"""What the stages of a search share: the options, the evaluator (every candidate so far), the deadline, the
trained KAN runs, and the stage interface itself (:class:`Stage`)."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import sympy
import torch

from .. import formula as sform
from .budget import Deadline
from .candidates import Candidate, Evaluator

__all__ = ["KanRun", "SearchContext", "SearchOptions", "Stage", "model_predict", "surrogate"]

log = logging.getLogger(__name__)


@dataclass
class SearchOptions:
    """The knobs of :func:`~kanlens.symbolic.search.symbolic_regression` that stages read (see its arguments)."""

    steps: tuple[int, int, int] = (50, 50, 50)
    lamb: float = 0.01
    grids: Sequence[int] = (10, 20, 50)
    prune: bool = True
    prune_rounds: int = 3
    prune_kwargs: dict = field(default_factory=dict)
    weight_simple: float = 0.8
    r2_threshold: float = 0.0
    alternatives: int = 2
    normalize_labels: bool = True
    fit_kwargs: dict = field(default_factory=dict)
    on_stage: Callable | None = None
    separable: bool = True
    polynomial: bool = True
    seed: int = 0
    dtype: torch.dtype = torch.float32


@dataclass
class KanRun:
    """One trained KAN of a search: its target transform, the KAN after ``auto_symbolic`` and the search of its
    edges, the ``auto_symbolic`` table, and the spline KAN before it (for the structure tests)."""

    name: str
    model: object
    auto: object
    spline: object


@dataclass
class SearchContext:
    """The state of one search, passed to every stage.

    Attributes:
        dataset: the ``create_dataset``-style data (tensors ``(n, d)`` inputs, ``(n, m)`` labels).
        ev: the :class:`~kanlens.symbolic.search.candidates.Evaluator`; every candidate so far is in ``ev.seen``.
        deadline: the CPU-time :class:`~kanlens.symbolic.search.budget.Deadline` of the whole search.
        transforms: ``(name, label map, formula wrap)`` of each usable target transform, in order.
        model: the KAN of the first run; ``initial``: an untrained copy for the later runs.
        runs: the KAN runs done so far, by transform name.
    """

    dataset: dict
    library: object
    variables: list[sympy.Symbol]
    var: Sequence[str] | None
    ev: Evaluator
    deadline: Deadline
    options: SearchOptions
    model: object
    transforms: list[tuple[str, Callable | None, list | None]]
    initial: object = None
    runs: dict[str, KanRun] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _surrogate: Callable | None = None

    @property
    def one_output(self) -> bool:
        return self.ev.ytr.shape[1] == 1

    @property
    def n_inputs(self) -> int:
        return self.ev.xtr.shape[1]

    def surrogate(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The structure tests' model of ``y`` (see :func:`surrogate`), made once from the identity run."""
        if self._surrogate is None and "identity" in self.runs and self.runs["identity"].spline is not None:
            self._surrogate = surrogate(self.runs["identity"].spline, self.ev)
        return self._surrogate


class Stage(Protocol):
    """One step of the search.

    ``applies(ctx)`` says whether it can run on this problem; ``run(ctx)`` adds candidates to ``ctx.ev`` (through
    ``ctx.ev.refit``) and returns the new ones. A stage with ``always = True`` runs even once an exact formula is
    known or the budget is spent (the first KAN run: it provides ``result.model``); the others are skipped then.
    ``share`` (optional, default 1): the fraction of the time left that the stage may use (``ctx.deadline`` is
    that share while it runs), so that the stages after it get their turn.
    """

    name: str
    always: bool

    def applies(self, ctx: SearchContext) -> bool: ...

    def run(self, ctx: SearchContext) -> list[Candidate]: ...


def model_predict(model) -> Callable[[np.ndarray], np.ndarray]:
    """``x (n, d) float64 numpy -> y (n,)`` of a KAN trained on the untransformed target."""

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(x, dtype=model.dtype, device=model.device))[:, 0].double().cpu().numpy()

    return predict


# a candidate formula replaces the KAN as the structure tests' model of y when its test NMSE is this many times lower
SURROGATE_GAIN = 100.0


def surrogate(model, ev: Evaluator) -> Callable[[np.ndarray], np.ndarray]:
    """The most accurate model of ``y`` for the separability and pair tests: the identity run's spline KAN, or the
    best candidate formula so far when it is ``SURROGATE_GAIN`` times more accurate on the test data.

    The tests compare ``y`` at mixed points, so the model's error sets how small their scores can get: a KAN that
    fits ``sin(x1)*sin(x2)*sin(x3)`` to 3% scores 5.5e-2 on its true split (the tolerance is 3e-2), while the
    candidate found through the sum-of-sines identity, 2e-7 from the labels with one leftover term, scores ~1e-6.
    """
    predict = model_predict(model)
    kan_nmse = sform.nmse(predict(ev.xte), ev.yte[:, 0])
    finite = [c for c in ev.seen if math.isfinite(c.test_nmse) and len(c.exprs) == 1]
    best = min(finite, key=lambda c: c.test_nmse, default=None)
    if best is None or not best.test_nmse * SURROGATE_GAIN < kan_nmse:
        return predict
    log.info("structure tests on the candidate %s (test NMSE %.1e; KAN %.1e)", best.source, best.test_nmse, kan_nmse)
    return functools.partial(ev.values, best.expr)
