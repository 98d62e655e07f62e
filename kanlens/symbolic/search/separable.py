"""Separability (AI Feynman's tests): if a model of ``y`` is ``g(x_S) * h(x_T)`` or ``g(x_S) + h(x_T)`` for a
split of the inputs, each part is recovered by a smaller search and the combinations are refitted on the data;
the same on ``log|y|`` for ``y = exp(g * h)`` (``x1**x2``)."""

from __future__ import annotations

import logging
import math

import numpy as np
import sympy
import torch

from .. import formula as sform
from .budget import Deadline
from .candidates import Candidate, Evaluator, Provenance, as_numpy
from .compositions import compositions
from .context import SearchContext
from .parts import factor_data, second_part_data, summand_data, to_dataset
from .views import snap_views

__all__ = [
    "SEPARABLE_TOL",
    "LogSeparable",
    "Separable",
    "log_separable_search",
    "most_promising",
    "part_formulas",
    "separable_search",
    "separable_split",
]

log = logging.getLogger(__name__)

# Score of the separability test, RMS(f(a) f(c) - f(a_S, c_T) f(c_S, a_T)) / mean f^2 over random pairs: 1e-16 for
# exact products, about 2.5x the predictor's relative error for products seen through a noisy model, >= 6e-2 for
# the non-separable public benchmark formulas (e.g. 1 + x1 + 2*sqrt(x1)*cos(x2): 6.2e-2). A false positive costs
# only time: the factors' products compete with the other candidates on the real data.
SEPARABLE_TOL = 3e-2
_FRONT_ROWS = 8  # simplest rows of a part's Pareto front combined with the other part's
_OFFSET_PENALTY = 3.0
_VIEW_SECONDS = 7.5  # CPU seconds (at most) for snapping a combination in its views


def separable_split(predict, x: np.ndarray, rng: np.random.Generator):
    """The input split ``(S, T, score, op, offset)`` with the lowest separability score (None: not testable).

    ``op = "*"``: ``f = offset + g(x_S) * h(x_T)``, score ``RMS(f'(a) f'(c) - f'(a_S, c_T) f'(c_S, a_T)) / mean f'^2``
    with ``f' = f - offset`` over random pairs of points ``a, c``; the offset is 0 when the plain product passes
    the test, else the least-squares one (the score is linear in it: ``1 + x1*sin(x2)``, or a part of a sum, known
    only up to a constant), and its score is then multiplied by ``_OFFSET_PENALTY``. ``op = "+"``:
    ``f = g(x_S) + h(x_T)``, score ``RMS(f(a) + f(c) - f(a_S, c_T) - f(c_S, a_T)) / std f``. These are AI Feynman's
    separability tests. Splits tried: every subset containing input 0 for up to 5 inputs, otherwise single inputs
    against the rest.
    """
    n, d = x.shape
    if d < 2 or n < 8:
        return None
    if d <= 5:
        subsets = [[0] + [j for j in range(1, d) if mask >> (j - 1) & 1] for mask in range(2 ** (d - 1) - 1)]
    else:
        subsets = [[j] for j in range(d)]
    a, c = x[rng.integers(0, n, 512)], x[rng.integers(0, n, 512)]
    fa, fc = predict(a), predict(c)
    scale = float(np.mean(fa**2) * np.mean(fc**2)) ** 0.5
    spread = float(np.std(np.concatenate([fa, fc])))
    if not scale > 0 or not np.all(np.isfinite(fa)) or not np.all(np.isfinite(fc)):
        return None
    best, rms = None, float(np.sqrt(np.mean(fa**2)))
    for sub in subsets:
        rest = [j for j in range(d) if j not in sub]
        p, q = a.copy(), c.copy()
        p[:, rest], q[:, rest] = c[:, rest], a[:, rest]
        fp, fq = predict(p), predict(q)
        if min(np.sqrt(np.mean((fp - fa) ** 2)), np.sqrt(np.mean((fq - fa) ** 2))) < 1e-3 * rms:
            continue  # y hardly depends on one side: a "product" with a constant factor says nothing
        prod, summ = fa * fc - fp * fq, fa + fc - fp - fq
        summ_rms = float(np.sqrt(np.mean(summ**2)))
        scores = [(float(np.sqrt(np.mean(prod**2)) / scale), "*", 0.0)]
        if spread > 0:
            scores.append((summ_rms / spread, "+", 0.0))
        if not scores[0][0] < SEPARABLE_TOL and summ_rms > 1e-3 * spread:
            # (f - c) products: prod - c * summ = 0 for the right c (summ = 0 means a sum: the test above)
            off = float(np.dot(prod, summ) / np.dot(summ, summ))
            shifted = float(np.mean((fa - off) ** 2) * np.mean((fc - off) ** 2)) ** 0.5
            if shifted > 0 and abs(off) <= 10 * float(np.max(np.abs(fa))):
                # one more constant fits more (1/(1 + x1*x2*x3) gets 3e-2): a 3x stricter test
                scores.append((_OFFSET_PENALTY * float(np.sqrt(np.mean((prod - off * summ) ** 2)) / shifted), "*",
                               off))
        for score, op, off in scores:
            if math.isfinite(score) and (best is None or score < best[2]):
                best = (sub, rest, score, op, off)
    return best


def separable_search(predict, ev: Evaluator, library, variables, deadline: Deadline | float | None = None, *,
                     seed: int, dtype) -> None:
    """If ``predict`` (``x (n, d) -> y (n,)``, see :func:`~kanlens.symbolic.search.context.surrogate`) is a
    product ``g(x_S) * h(x_T)`` or a sum ``g(x_S) + h(x_T)``, recover both parts; their products (sums) go to ``ev``.

    The first part's data come from ``predict``: slices ``f(x_S, a_T)`` at many anchors ``a``, averaged by a rank-1
    fit (:func:`factor_data`) or a mean (:func:`summand_data`); once a formula reproduces them, the second part's
    data come from the labels (:func:`second_part_data`). The parts' formulas are combined, then refitted and
    snapped on the real data. A part with several inputs is searched with these tests too (it has fewer inputs).
    The test costs milliseconds; the first part's search gets half of the time left before ``deadline``, the
    second part's the rest (one deadline shared by all nested searches: no part brings a minimum of its own).
    """
    if ev.ytr.shape[1] != 1:
        return
    deadline = Deadline.coerce(deadline) or ev.deadline
    xtr, xte = ev.xtr, ev.xte
    split = separable_split(predict, xtr, np.random.default_rng(seed))
    if split is None or not split[2] < SEPARABLE_TOL:
        log.info("separability: no split of the inputs found (best score %s)", split and f"{split[2]:.2e}")
        return
    sub, rest, score, op, offset = split
    log.info("separability: y = %sg(%s) %s h(%s) (score %.2e)", f"{offset:.4g} + " if offset else "",
             [str(variables[j]) for j in sub], op, [str(variables[j]) for j in rest], score)
    # the factors' data carry the KAN's error: a factor formula this close to them is as good as they can tell
    good_enough = max(1e-5, 10 * sform.nmse(predict(xte), ev.yte[:, 0]))
    parts = factor_data if op == "*" else summand_data
    data = parts(lambda x: predict(x) - offset, xtr, xte, sub, rest, np.random.default_rng(seed))
    if data is None:
        log.info("separability: the parts' data are degenerate")
        return
    factors: list[list[sympy.Expr]] = []
    for cols, (y_tr, y_te) in zip((sub, rest), data):
        datasets = [to_dataset(xtr[:, cols], y_tr, xte[:, cols], y_te, dtype)]
        if factors:  # the first part's formulas, where they match its values, turn the labels into the second's
            datasets = second_part_data(factors[0], data[0], ev, cols, good_enough, dtype, op, offset) or datasets
        found: list[sympy.Expr] = []
        for m, ds in enumerate(datasets):
            exact = part_formulas(ds, cols, found, library, variables, deadline, good_enough,
                                   share=(2 - len(factors)) * (len(datasets) - m), seed=seed, dtype=dtype, op=op)
            if exact:
                break
        factors.append(list(dict.fromkeys(found)))
    const = sympy.Float(offset) if offset else sympy.Integer(0)
    combos = [const + g * h if op == "*" else g + h for g in factors[0] for h in factors[1]]
    cands = sorted((ev.refit([e], Provenance("separable")) for e in most_promising(combos, ev, _COMBINATION_REFITS)),
                   key=lambda c: c.test_nmse)
    log.info("separability: %d of %d combinations refitted, best test NMSE %s", len(cands), len(combos),
             [f"{c.test_nmse:.1e}" for c in cands[:3]])
    for cand in cands[:2]:  # snapped in every view, as the best formula of a run (a short slice of its own)
        if ev.near(cand.test_nmse) and not ev.exact_found:
            snap_views(cand, ev, Provenance("separable"), deadline.within(_VIEW_SECONDS))


def log_separable_search(predict, ev: Evaluator, dataset: dict, forward, wrap, library, variables,
                         deadline: Deadline | float | None = None, *,
                          seed: int, dtype) -> None:
    """``y = exp(g(x_S) * h(x_T))`` (``x1**x2``): ``log|y|`` is a product, so :func:`separable_search` runs on it
    (``log`` of ``predict`` and of the labels); its candidates close to ``log|y|`` are exponentiated (``wrap``),
    refitted and snapped on ``y``. One output whose sign does not change (the ``log`` target transform)."""
    if ev.ytr.shape[1] != 1:
        return
    logged = dict(dataset, train_label=forward(dataset["train_label"]), test_label=forward(dataset["test_label"]))
    eps = float(torch.finfo(dataset["train_label"].dtype).eps)
    var = float(logged["train_label"].double().var())
    # relative rounding of y is absolute rounding of log|y|
    ev_log = Evaluator(logged, variables, 100.0 * eps**2 / (var if var > 0 else 1.0),
                       Deadline.coerce(deadline) or ev.deadline)

    def predict_log(x: np.ndarray) -> np.ndarray:
        return forward(torch.tensor(predict(x))).numpy()  # a copy: predict may return a read-only view

    separable_search(predict_log, ev_log, library, variables, deadline, seed=seed, dtype=dtype)
    found = sorted((c for c in ev_log.seen if c.provenance.stage == "separable" and ev_log.near(c.test_nmse)),
                   key=lambda c: c.test_nmse)
    for c in found[:2]:
        cand = ev.refit([wrap[0](c.expr)], Provenance("separable", "log"))
        if ev.near(cand.test_nmse) and not ev.exact_found:
            snap_views(cand, ev, Provenance("separable", "log"), ev.deadline.within(_VIEW_SECONDS))


_COMBINATION_REFITS = 12


def most_promising(exprs: list[sympy.Expr], ev: Evaluator, keep: int) -> list[sympy.Expr]:
    """The ``keep`` formulas closest to the training labels up to a scale and an offset (a least-squares line
    through each formula's values, milliseconds each), in that order; a joint refit of all constants costs ~1 s
    per formula (P04 combines 42 pairs of part formulas)."""
    if len(exprs) <= keep:
        return exprs
    y = ev.ytr[:, 0]

    def line_nmse(e: sympy.Expr) -> float:
        try:
            v = ev.values(e, ev.xtr)
        except Exception:  # a formula that cannot be evaluated is refitted last (and fails there with a warning)
            return math.inf
        if not np.all(np.isfinite(v)):
            return math.inf
        a = np.column_stack([v, np.ones_like(v)])
        return sform.nmse(a @ np.linalg.lstsq(a, y, rcond=None)[0], y)

    order = sorted(range(len(exprs)), key=lambda k: (line_nmse(exprs[k]), k))
    return [exprs[k] for k in order[:keep]]


def part_formulas(ds: dict, cols: list[int], found: list[sympy.Expr], library, variables,
                  deadline: Deadline | float | None,
                   good_enough: float, *, share: float, seed: int, dtype, op: str) -> bool:
    """Formulas for one part of a separable function, fitted to ``ds``, appended to ``found``; True when one is
    exact on ``ds``. The run gets ``1 / share`` of the time left before ``deadline``.

    One input: a single edge first (a library function of an affine map), then two library functions composed,
    fitted directly (also when the edge is close but not exact), then a ``[1, 3, 1]`` KAN; more inputs: a
    ``[n, 2n + 1, 1]`` run with the same tests. A factor of a product is modelled on ``log`` first (when
    one-signed): factors are products of powers and exponentials more often than sums, and a run's budget here is
    often only the minimum, enough for one target (``exp(sin(pi*(x1**2 + x2**2))/2)`` in P04).
    """
    from .run import symbolic_regression  # a nested search (the orchestrator imports the stages)

    deadline = Deadline.coerce(deadline) or Deadline(None)
    n = len(cols)
    widths = [[1, 1], [1, 3, 1]] if n == 1 else [[n, 2 * n + 1, 1]]
    edge_good = False
    for k, width in enumerate(widths):
        if k == 1:
            comps = compositions(as_numpy(ds["train_input"])[:, 0], as_numpy(ds["train_label"])[:, 0], library,
                                  variables[cols[0]])
            found += [e for _, e in comps]
            if edge_good or (comps and comps[0][0] <= good_enough):
                return False
        if deadline.expired():
            return False
        budget = deadline.share(1 / share / (len(widths) - k))
        res = symbolic_regression(ds, width, seed=seed, dtype=dtype, lib=library,
                                  var=[variables[j] for j in cols], time_budget=budget, separable=n > 1,
                                  target_transforms=("log", "identity") if op == "*" else ("identity", "log"))
        log.info("separability: part in %s, width %s, budget %s -> %s", [str(variables[j]) for j in cols],
                 width, budget, res.formula)
        rows = list(res.table)
        chosen = rows[res.table.chosen]
        # the whole front: on the KAN's values nothing is exact, and the chosen formula may fit the KAN's
        # error with a complex one where a simpler row is the true part (the refit on the data decides)
        found += [chosen.expr] + [c.expr for c in rows[:_FRONT_ROWS]]
        if res.exact:
            return True
        if chosen.test_nmse <= good_enough:
            if k == 0 and n == 1:
                # close, not exact: the compositions (seconds) still run, the [1, 3, 1] run does not; on data
                # from the labels a single edge only approximates cosh(x2) (in cos(x1)*cosh(x2)), which they fit
                edge_good = True
                continue
            return False
    return False




class Separable:
    """:func:`separable_search` on the structure tests' model of ``y`` (the identity run's KAN, see
    :meth:`~kanlens.symbolic.search.context.SearchContext.surrogate`); one output."""

    name, always = "separable", False
    share = 0.5  # half of the time left: the pair and low-rank tests come after

    def applies(self, ctx: SearchContext) -> bool:
        return ctx.options.separable and ctx.one_output and ctx.surrogate() is not None

    def run(self, ctx: SearchContext) -> list[Candidate]:
        start = len(ctx.ev.seen)
        separable_search(ctx.surrogate(), ctx.ev, ctx.library, ctx.variables, ctx.deadline,
                         seed=ctx.options.seed, dtype=ctx.options.dtype)
        return ctx.ev.seen[start:]


class LogSeparable:
    """:func:`log_separable_search`: ``y = exp(g(x_S) * h(x_T))``; needs the ``log`` target transform."""

    name, always = "log separable", False
    share = 0.75  # three quarters of the time left: the low-rank test comes after

    def applies(self, ctx: SearchContext) -> bool:
        return (ctx.options.separable and ctx.one_output and ctx.surrogate() is not None
                and any(name == "log" for name, _, _ in ctx.transforms))

    def run(self, ctx: SearchContext) -> list[Candidate]:
        start = len(ctx.ev.seen)
        _, forward, wrap = next(t for t in ctx.transforms if t[0] == "log")
        log_separable_search(ctx.surrogate(), ctx.ev, ctx.dataset, forward, wrap, ctx.library, ctx.variables,
                             ctx.deadline, seed=ctx.options.seed, dtype=ctx.options.dtype)
        return ctx.ev.seen[start:]
