"""Symbolic regression as a search built from stages.

:func:`symbolic_regression` (in :mod:`.run`) sets up a :class:`~.context.SearchContext` and runs the stages of
:data:`~.stages.STAGES` in one loop that owns timing, the exact stop and the CPU deadline (:class:`~.budget.Deadline`,
shared with nested searches). Each stage is a small class in its own module with a ``name``, ``applies(ctx)`` and
``run(ctx)`` returning the candidates it added; candidates carry a typed :class:`~.candidates.Provenance`.

Modules:
    budget: the shared CPU deadline.  candidates: candidates, the evaluator, the Pareto choice.
    context: options, the search state, the stage interface.  views: snapping in equivalent views.
    train: training and pruning the KAN.  edges: the search over the edges' functions.  kan: the KAN stage.
    polynomial, compositions, separable (+ parts), pairs, low_rank, choose: the other stages.
    stages: the registry.  run: the orchestrator.  width: the default network.
"""

from __future__ import annotations

from .budget import Deadline
from .candidates import Candidate, Evaluator, ParetoTable, Provenance, SymbolicResult
from .context import SearchContext, SearchOptions, Stage
from .run import run_stages, symbolic_regression
from .stages import STAGES
from .width import auto_width

__all__ = ["STAGES", "Candidate", "Deadline", "Evaluator", "ParetoTable", "Provenance", "SearchContext",
           "SearchOptions", "Stage", "SymbolicResult", "auto_width", "run_stages", "symbolic_regression"]
