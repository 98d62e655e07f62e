"""The orchestrator: :func:`symbolic_regression` sets up a search and runs its stages (:data:`STAGES
<kanlens.symbolic.search.stages.STAGES>`) in one loop that owns timing, the exact stop and the deadline."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence

import torch

from ...schedule import OnStage
from .. import formula as sform
from ..library import SymbolicLibrary, resolve_library
from .budget import Deadline
from .candidates import Evaluator, ParetoTable, SymbolicResult, as_numpy, check_dataset, choose
from .context import SearchContext, SearchOptions, Stage
from .kan import resolve_transforms
from .stages import STAGES
from .width import auto_width

__all__ = ["run_stages", "symbolic_regression"]

log = logging.getLogger(__name__)


def symbolic_regression(
    dataset: dict[str, torch.Tensor],
    width: Sequence[int] | None = None,
    *,
    model=None,
    grid: int = 5,
    k: int = 3,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    lib: SymbolicLibrary | Sequence[str] | None = None,
    lamb: float = 0.01,
    steps: int | Sequence[int] = (50, 50, 50),
    refine_grid: int | Sequence[int] | None = (10, 20, 50),
    prune: bool = True,
    prune_rounds: int = 3,
    prune_kwargs: dict | None = None,
    weight_simple: float = 0.8,
    r2_threshold: float = 0.0,
    alternatives: int = 2,
    time_budget: float | Deadline | None = None,
    var: Sequence[str] | None = None,
    normalize_labels: bool = True,
    fit_kwargs: dict | None = None,
    target_transforms: Sequence[str] | None = ("identity", "log"),
    separable: bool = True,
    polynomial: bool = True,
    on_stage: OnStage | None = None,
) -> SymbolicResult:
    """Recover a closed-form formula from data with a KAN.

    Args:
        dataset: ``create_dataset``-style dict (``train_input`` ``(n, d)``, ``train_label`` ``(n, m)``, test too).
        width: KAN widths (e.g. ``[2, 5, 1]``); default (and no ``model``): chosen from the data by
            :func:`~kanlens.symbolic.search.width.auto_width` (``[n, 2n + 1, m]``: wide enough for any sum of
            one-input functions of sums; sparsification and pruning shrink it to what the data need).
        dtype: dtype of the KAN (default: the dataset's); formula refits always run in float64.
        model: an existing (possibly trained) KAN to start from; it is trained further in place.
        lib: symbolic library or names (default library; add ``default_library(special=True)`` for specials).
        lamb: sparsity weight of the first fit.
        steps: LBFGS steps of the three fits (sparse, after pruning, after refining); one int for all three.
        refine_grid: finer grid sizes tried in order (``None`` skips refinement); a finer grid is kept only while
            it lowers the test error (refinement stops after a gain below 1.5x once the error is under 0.1% of
            std(y)).
        prune: call ``model.prune()`` after the sparse fit (skipped when the model has no ``prune``).
        prune_rounds: sparse fit + prune is repeated up to this many times while the width keeps shrinking.
        prune_kwargs: passed to ``model.prune`` (``node_th``, ``edge_th``).
        weight_simple, r2_threshold: passed to ``auto_symbolic``.
        alternatives: runner-up functions tried per edge when the first formula is not exact.
        time_budget: a hard limit in CPU seconds for the whole call, nested searches included (process CPU time,
            :func:`time.process_time`: less sensitive to load than wall time; see
            :mod:`~kanlens.symbolic.search.budget`), or a :class:`~kanlens.symbolic.search.budget.Deadline` shared
            with a calling search. Training stops at the deadline (the first KAN run's training gets at most 60%
            of it, so that a formula is extracted); later stages are skipped once it is spent, and the best formula
            so far is returned. ``None``: no limit.
        var: input names (default ``x1..xn``).
        normalize_labels: train the KAN on standardised labels (the sparsity penalty is not scale-invariant);
            the scaling is folded into the output nodes afterwards, so the returned model predicts ``y``.
        target_transforms: targets the KAN is trained on, in order: ``"identity"`` (``y``) and ``"log"``
            (``log(y)``, formula ``exp(...)``; only when each output keeps one sign, its negative is modelled
            for negative outputs). A later transform runs only while no exact formula has been found; all
            candidates compete in one Pareto table on the original ``y``. ``result.target_transform`` names the
            run of the chosen formula (its ``model`` predicts that transform of ``y``). The separability and pair
            stages below test the identity run's network, so they need that run.
        separable: when no run found an exact formula (one output): with one input, fit compositions
            ``c*F(a*G(x) + b) + d`` of two library functions directly (``log(1 + x**2)``), then a library function
            plus a quadratic, ``c*F(a*x + b) + p(x)`` (``x + sin(x)``; also two exponentials, ``cosh(x) - x**2/2``);
            with more, test on the trained KAN whether ``y = g(x_S) * h(x_T)`` or ``y = g(x_S) + h(x_T)`` for a
            split of the inputs (``f(a) f(c) = f(a_S, c_T) f(c_S, a_T)``, or the same with sums; the tests ask
            the best candidate formula instead of the KAN when it is 100x more accurate:
            ``sin(x1)*sin(x2)*sin(x3)``); if so, ``g`` and ``h`` are recovered by smaller runs (``[|S|, 2|S| + 1,
            1]`` KANs, sharing the remaining budget; the first on the tested model's values, the second on the
            labels divided by, or minus, the first's formula) and their combination, refitted and snapped on the
            data, joins the candidates. Products
            whose factors change sign (``sqrt(x1) * x2``), where ``log(y)`` cannot be used, factors that need a
            deeper KAN than the whole (``x3 * sqrt(x1**2 + x2**2)``) and sums with a product inside
            (``exp(x1)*x2**2 + x3``) are the target. When the ``log`` run exists, the same search also runs on
            ``log|y|`` (``x1**x2 = exp(x2*log(x1))``).
            Then, still without an exact formula, the pair tests: if moving two inputs together leaves the KAN
            unchanged up to a power, ``y = x**d * g(u, rest)`` with ``u`` their ratio (``y(.., l*x_i, .., l*x_j, ..)
            = l**d * y``), product (``y(.., l*x_i, .., x_j/l, ..) = l**d * y``), difference (``y(.., x_i + e, ..,
            x_j + e, ..) = y``) or sum (``x_j - e``); ``g`` is recovered by a smaller run on the real data
            (``atan(x2/x1)``, ``exp(-x1**2/(2*x2**2))/sqrt(2*pi*x2**2)``, ``sin(x1*x2)``, ``x3*sin(x1 - x2)``).
            Last, for two inputs, the low-rank test: the KAN sampled on a grid is a matrix whose rank ``r <= 3``
            means ``y = sum_ij c_ij p_i(x1) q_j(x2)`` with ``r`` products (``x1*sin(x2) + x2*cos(x1)``); library
            functions spanning its singular subspaces and the coefficients are found without training (see
            :mod:`kanlens.symbolic.lowrank`). ``separable=False`` skips all of these.
        polynomial: before the KAN runs, fit polynomials of total degree <= 4 in the inputs to ``y``, ``1/y``,
            ``log(y)`` and ``y**2`` (the last three for one-signed outputs) by linear least squares; a fit that
            reproduces the test data to the label noise, with the monomials it does not need eliminated, is
            snapped and joins the candidates (``x1**3 - 2*x1*x2``, ``1/(1 + x1*x2)``); when none fits, a power law
            ``c * x1**a1 * x2**a2 ...`` with real exponents (``x1*x2/x3**2``), then a ratio of polynomials (numerator
            degree <= 3, denominator 1 or 2: ``x1*x2/(x1 + x2 + x3)``; also of ``log(y)`` and ``y**2``). Such a
            fit ends the search only when its constants snap to simple values (otherwise it may approximate a
            smooth function on a narrow range). See
            :func:`~kanlens.symbolic.polyfit.polynomial_candidates`. The KAN is still trained (``result.model``),
            but its search stops once an exact formula is known.
        on_stage: called with a :class:`~kanlens.schedule.StageEvent` when each training stage of a KAN run ends
            (see :func:`~kanlens.schedule.train_schedule`: all runs train with that shared schedule; its ``model``
            is the live, label-standardised model: copy it to keep it). Nested searches do not report.

    Returns:
        a :class:`SymbolicResult`.

    Shapes:
        dataset inputs ``(n, d)``, labels ``(n, m)``.

    Example:
        >>> ds = create_dataset(lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2), n_var=2)
        >>> res = symbolic_regression(ds, [2, 5, 1])
        >>> res.formula
        exp(x2**2 + sin(pi*x1))
    """
    check_dataset(dataset)
    t_start = time.perf_counter()
    deadline = time_budget if isinstance(time_budget, Deadline) else Deadline(time_budget)
    library = resolve_library(lib)
    if model is None:
        from ...model import KAN

        width = auto_width(dataset) if width is None else list(width)
        model = KAN(width=width, grid=grid, k=k, seed=seed, dtype=dtype or dataset["train_input"].dtype)
    if model.node_layout.has_mult:
        raise ValueError("symbolic_regression searches KANs with sum nodes only (its chain and low-rank stages assume "
                         "sums); for multiplication nodes use model.fit, model.auto_symbolic() and "
                         "model.symbolic_formula()")
    if isinstance(steps, int) and not isinstance(steps, bool):
        steps = (steps, steps, steps)
    if not isinstance(steps, Sequence) or len(steps) != 3:
        raise ValueError(f"steps must be one step count or three (sparse, after prune, after refine), got {steps!r}")
    transforms = resolve_transforms(target_transforms, dataset)
    if not transforms:
        raise ValueError(f"no usable target transform in {list(target_transforms or ())}: 'log' needs outputs "
                         f"that keep one sign; add 'identity'")
    variables = sform.input_symbols(model, var)
    floor = sform.noise_floor(as_numpy(dataset["train_label"]), dataset["train_label"].dtype)
    options = SearchOptions(
        steps=tuple(steps), lamb=lamb, prune=prune, prune_rounds=prune_rounds, prune_kwargs=dict(prune_kwargs or {}),
        grids=[] if refine_grid is None else ([refine_grid] if isinstance(refine_grid, int) else list(refine_grid)),
        weight_simple=weight_simple, r2_threshold=r2_threshold, alternatives=alternatives,
        normalize_labels=normalize_labels, fit_kwargs=dict(fit_kwargs or {}), on_stage=on_stage,
        separable=separable, polynomial=polynomial, seed=seed, dtype=dtype or dataset["train_input"].dtype)
    ctx = SearchContext(dataset, library, variables, var, Evaluator(dataset, variables, floor, deadline), deadline,
                        options, model, transforms, initial=copy.deepcopy(model) if len(transforms) > 1 else None)
    run_stages(ctx, STAGES)
    front, chosen = choose(ctx.ev.seen, ctx.ev.resolution)
    pick = front[chosen]
    run = ctx.runs.get(pick.provenance.run) or ctx.runs.get("identity") or next(iter(ctx.runs.values()))
    ctx.timings["total"] = time.perf_counter() - t_start
    return SymbolicResult(pick.exprs[0], pick.exprs, pick.exact, ParetoTable(front, chosen), run.model, run.auto,
                          list(run.model.width), ctx.timings, target_transform=run.name,
                          cpu_seconds=deadline.spent(), candidates=list(ctx.ev.seen))


def run_stages(ctx: SearchContext, stages: Sequence[Stage]) -> None:
    """The orchestrator: each stage in turn, timed, under its ``share`` of the time left (default all of it); once
    an exact (short) formula is known or the budget is spent, only the stages marked ``always`` still run.
    Candidates accumulate in ``ctx.ev``."""
    for stage in stages:
        if not stage.always and (ctx.ev.exact_found or ctx.deadline.expired()):
            log.info("stage %s skipped (%s)", stage.name, "exact formula known" if ctx.ev.exact_found
                     else "time budget spent")
            continue
        if not stage.applies(ctx):
            continue
        t, cpu = time.perf_counter(), time.process_time()
        outer = ctx.deadline  # the stage may use its share of the time left: later stages get their turn
        ctx.deadline = ctx.ev.deadline = outer.share(getattr(stage, "share", 1.0))
        try:
            found = stage.run(ctx)
        finally:
            ctx.deadline = ctx.ev.deadline = outer
        ctx.timings[stage.name] = time.perf_counter() - t
        best = min((c.test_nmse for c in found), default=math.inf)
        log.info("stage %s: %d candidates (best test NMSE %.2e), %.1f CPU s, %.1f CPU s left", stage.name,
                 len(found), best, time.process_time() - cpu, ctx.deadline.left())
