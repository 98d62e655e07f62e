"""The record of one :func:`kanlens.fit` call: :class:`FitHistory` (pykan's ``results`` dict, plus events)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["FitHistory"]


@dataclasses.dataclass
class FitHistory:
    """What happened during :func:`fit`; ``history["train_loss"]`` works like pykan's results dict.

    Attributes:
        train_loss, test_loss: RMSE after each successful step (pykan's convention; sqrt of ``loss_fn`` for class-index
            labels).
        reg: the regularisation term per successful step.
        grid_updates: steps at which the grids were adapted to the data.
        events: human-readable notes on anything unusual (non-finite steps recovered, skipped grid updates, stops).
        nonfinite_steps: steps whose loss, gradients, parameters or predictions were not finite (rolled back).
        nonfinite_evals: LBFGS line-search evaluations that were not finite (the search backed off from them).
        stop_reason: ``""`` when all steps ran, else why training stopped (``"callback"``, ``"non-finite"``).
        lr: the learning rate at the end (halved after every non-finite step).
        seconds: wall time.
        stopped_early: whether training stopped before ``steps``.
        metrics: the values of ``fit(metrics=[f, ...])`` per successful step, by ``f.__name__`` (pykan's
            ``results[f.__name__]``; ``history["train_acc"]`` works too).

    Recorded values are ``numpy.float64`` (a ``float`` subclass), so pykan's ``history["train_loss"][-1].item()``
    works as well as plain float arithmetic and JSON.
    """

    train_loss: list[float] = dataclasses.field(default_factory=list)
    test_loss: list[float] = dataclasses.field(default_factory=list)
    reg: list[float] = dataclasses.field(default_factory=list)
    grid_updates: list[int] = dataclasses.field(default_factory=list)
    events: list[str] = dataclasses.field(default_factory=list)
    nonfinite_steps: list[int] = dataclasses.field(default_factory=list)
    nonfinite_evals: int = 0
    stop_reason: str = ""
    lr: float = math.nan
    seconds: float = 0.0
    stopped_early: bool = False
    metrics: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            from ._checks import did_you_mean

            raise KeyError(f"FitHistory has no field {key!r}{did_you_mean(key, self.keys())}")
        return self.metrics[key] if key in self.metrics else getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self.keys() else default

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)] + [k for k in self.metrics if not hasattr(self, k)]

    def __len__(self) -> int:
        return len(self.train_loss)
