"""The KAN stage: train a KAN on a (transformed) target, ``auto_symbolic``, search the edges' functions
(:class:`~kanlens.symbolic.search.edges.EdgeSearch`) and snap the best formula; one stage per target transform."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence

import sympy
import torch

from ...schedule import train_schedule
from .. import fit as sfit
from .candidates import Candidate, Provenance
from .context import KanRun, SearchContext
from .edges import EdgeSearch, spline_samples
from .views import snap_views

__all__ = ["TRANSFORMS", "KanFit", "fit_and_search", "resolve_transforms"]

log = logging.getLogger(__name__)

# share of the time left that training may use: the rest is for auto_symbolic, the edge search and snapping
_TRAIN_SHARE = 0.6

TRANSFORMS = ("identity", "log")


def resolve_transforms(names: Sequence[str] | None, dataset: dict) -> list[tuple[str, object, list | None]]:
    """``(name, label map, per-output formula wrap)`` for each usable target transform, in the given order.

    ``log`` models ``log(s*y)`` (``s`` the sign of each output, which must not change over the data): products and
    quotients of positive factors become sums, which a KAN represents with one layer less.
    """
    names = list(TRANSFORMS[:1] if names is None else names)
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown target transform(s) {unknown}; known: {list(TRANSFORMS)}")
    if not names:
        raise ValueError("target_transforms must name at least one transform (e.g. ('identity',))")
    out: list[tuple[str, object, list | None]] = []
    for name in dict.fromkeys(names):
        if name == "identity":
            out.append((name, None, None))
            continue
        ys = torch.cat([dataset["train_label"].double(), dataset["test_label"].double()])
        lo, hi = ys.min(0).values, ys.max(0).values
        sign = torch.where(lo > 0, 1.0, torch.where(hi < 0, -1.0, 0.0)).to(torch.float64)
        if bool((sign == 0).any()):
            log.info("log transform skipped: some output changes sign (or is zero)")
            continue
        ratio = (ys * sign).max(0).values / (ys * sign).min(0).values
        if not bool(torch.isfinite(ratio).all()):
            continue
        signs = [float(v) for v in sign]

        def forward(y: torch.Tensor, sign=sign) -> torch.Tensor:
            return torch.log(y.double() * sign.to(y.device))

        wrap = [(lambda e, s=s: sympy.exp(e) if s > 0 else -sympy.exp(e)) for s in signs]
        out.append((name, forward, wrap))
    return out


def fit_and_search(ctx: SearchContext, model, name: str, forward, wrap) -> KanRun:
    """Train ``model`` on the ``name`` transform of the labels (``forward``; ``wrap`` maps its formulas back to
    ``y``), auto_symbolic, search alternatives, snap; candidates go to ``ctx.ev``. Training gets at most
    ``_TRAIN_SHARE`` of the time left."""
    ev, opt, dataset = ctx.ev, ctx.options, ctx.dataset
    known_exact = ev.exact_found
    labels = {key: dataset[key] if forward is None else forward(dataset[key]) for key in ("train_label", "test_label")}
    ds_model = {key: v.to(model.device, model.dtype) for key, v in dataset.items() if isinstance(v, torch.Tensor)}
    # Train on standardised labels so the sparsity weight means the same for every target scale (the scaling is
    # folded into the output nodes after training).
    y_mean = labels["train_label"].double().mean(0)
    y_scale = labels["train_label"].double().std(0).clamp_min(1e-12)
    if not opt.normalize_labels:
        y_mean, y_scale = torch.zeros_like(y_mean), torch.ones_like(y_scale)
    for key in ("train_label", "test_label"):
        ds_model[key] = ((labels[key].double() - y_mean) / y_scale).to(model.device, model.dtype)

    tag = "" if name == "identity" else f"{name}: "
    stage_times: dict[str, float] = {}
    model = train_schedule(model, ds_model, steps=opt.steps, lamb=opt.lamb, refine_grid=opt.grids, prune=opt.prune,
                           prune_rounds=opt.prune_rounds, prune_kwargs=opt.prune_kwargs, timings=stage_times,
                           fit_kwargs=opt.fit_kwargs, on_stage=opt.on_stage,
                           deadline=ctx.deadline.share(_TRAIN_SHARE))
    ctx.timings.update({tag + key: v for key, v in stage_times.items()})  # a later run must not overwrite these
    with torch.no_grad():  # fold the label standardisation into the output nodes: the model predicts y again
        model.node_scale[-1].mul_(y_scale.to(model.node_scale[-1]))
        model.node_bias[-1].mul_(y_scale.to(model.node_bias[-1])).add_(y_mean.to(model.node_bias[-1]))

    # the spline KAN itself, for the structure tests (auto_symbolic below turns its edges into formulas)
    spline = copy.deepcopy(model) if name == "identity" and opt.separable else None
    t = time.perf_counter()
    samples = spline_samples(model, ds_model["train_input"])
    auto = sfit.auto_symbolic(model, lib=ctx.library, r2_threshold=opt.r2_threshold,
                              weight_simple=opt.weight_simple, topk=opt.alternatives + 1)
    ctx.timings[tag + "auto_symbolic"] = time.perf_counter() - t

    t = time.perf_counter()
    search = EdgeSearch(model, auto, ctx.library, ev, ctx.var, deadline=ctx.deadline, wrap=wrap, run=name)
    search.simplest_variants()
    search.chains(samples, opt.weight_simple)
    search.twin_swaps(opt.alternatives)
    search.swaps(opt.alternatives)
    ctx.timings[tag + "alternatives"] = time.perf_counter() - t
    t = time.perf_counter()
    # an exact formula from before this run (a polynomial fit) is snapped already; this run's formula is worth
    # snapping only when it is exact too (it may be simpler: sqrt((x1 - x2)**2 + (x3 - x4)**2), not expanded)
    if search.best.exact or not known_exact:
        snap_views(search.best, ev, Provenance("kan", name), ctx.deadline)
    ctx.timings[tag + "snap"] = time.perf_counter() - t
    return KanRun(name, model, auto, spline)


class KanFit:
    """The ``index``-th target transform's KAN run (see :func:`fit_and_search`). The first always runs (it gives
    ``result.model``); a later one only while no exact formula is known. Each run starts from a copy of the
    initial model."""

    always = False

    def __init__(self, index: int) -> None:
        # a later run gets half of the time left: the structure stages come after it
        self.index, self.always, self.share = index, index == 0, 1.0 if index == 0 else 0.5
        self.name = f"kan run {index + 1}"

    def applies(self, ctx: SearchContext) -> bool:
        return self.index < len(ctx.transforms)

    def run(self, ctx: SearchContext) -> list[Candidate]:
        start = len(ctx.ev.seen)
        name, forward, wrap = ctx.transforms[self.index]
        model = ctx.model if self.index == 0 else copy.deepcopy(ctx.initial)
        t = time.perf_counter()
        ctx.runs[name] = fit_and_search(ctx, model, name, forward, wrap)
        ctx.timings[f"run {name}"] = time.perf_counter() - t
        return ctx.ev.seen[start:]
