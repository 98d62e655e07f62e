"""The monomial-index stage: before any KAN is trained, test whether ``y = prod x**a * g(prod x**b)`` (a product of
powers times one function of one monomial, or of two: see :mod:`kanlens.symbolic.index_fit`); if so, ``g`` is
recovered by a one- (two-) input search and the whole formula joins the candidates (``x1*exp(-x2*x3*x5/(x4*x6))``,
``x1/sqrt(1 - x2**2/x3**2)``, ``x1*x2*x3*log(x5/x4)``, ``x1 + x2 + 2*sqrt(x1*x2)*cos(x3)``). Cost without such a
structure: about a second for one index, 3-15 CPU s when two are tried (5-9 inputs)."""

from __future__ import annotations

import logging

import numpy as np
import sympy

from .. import formula as sform
from ..index_fit import IndexModel, index_models
from ..polyfit import polynomial_candidates
from .budget import Deadline
from .candidates import Candidate, Evaluator, Provenance
from .context import SearchContext
from .parts import to_dataset
from .views import snap, snap_views

__all__ = ["MonomialIndex", "index_search", "monomial"]

log = logging.getLogger(__name__)

_MAX_RUNS = 3  # one-input searches at most (models x orientations of the index)
_VIEW_SECONDS = 7.5


def monomial(variables, exponents: np.ndarray) -> sympy.Expr:
    """``prod variables[i]**exponents[i]`` with rational exponents."""
    out = sympy.Integer(1)
    for v, e in zip(variables, exponents):
        if e != 0:
            out *= v ** sympy.nsimplify(float(e), rational=True)
    return out


def _reduced(x: np.ndarray, y: np.ndarray, model: IndexModel, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, k)`` (the indices) and target ``(n,)`` of the reduced problem."""
    logx = np.log(x)
    return np.exp(sign * (logx @ model.b.T)), y / np.exp(logx @ model.a)


def index_search(ev: Evaluator, library, variables, deadline: Deadline | None = None, *, seed: int,
                 dtype, tol: float = 1e-3) -> None:
    """If ``y = prod x**a * g(z)`` with ``z = prod x**b`` (:func:`~kanlens.symbolic.index_fit.index_models` on the
    training data, within ``tol``), recover ``g`` by one-input searches on ``(z, y / prod x**a)`` (also with
    ``1/z`` as the input when the first is not exact) and add ``prod x**a * g(prod x**b)`` to the candidates; with
    two indices, by a two-input search on ``(z1, z2)``.

    One output, positive inputs. The searches share the time left before ``deadline`` (default: the evaluator's).
    """
    from .run import symbolic_regression  # a nested search (the orchestrator imports the stages)

    deadline = deadline or ev.deadline
    models = index_models(ev.xtr, ev.ytr[:, 0], tol=tol)
    if not models:
        log.info("index: no product of powers times a function of one monomial fits")
        return
    # one index: also 1/z as the input (asin(1/z) is harder to find than asin(z)); two: (z1, z2) as found
    # models differing only in a (x1*g(x2/x3) vs x3*g'(x2/x3)) are one problem: the simplest a only
    distinct = [m for i, m in enumerate(models) if not any(np.array_equal(m.b, o.b) for o in models[:i])]
    runs = [(m, s) for m in distinct[:2] for s in ((1.0, -1.0) if len(m.b) == 1 else (1.0,))][:_MAX_RUNS]
    problems = []
    for model, sign in runs:
        zs = [sympy.Symbol(f"index_z{i + 1}_") for i in range(len(model.b))]
        mono, index = monomial(variables, model.a), [monomial(variables, sign * b) for b in model.b]
        (ztr, rtr), (zte, rte) = _reduced(ev.xtr, ev.ytr[:, 0], model, sign), _reduced(ev.xte, ev.yte[:, 0], model,
                                                                                        sign)
        if all(np.all(np.isfinite(v)) for v in (ztr, rtr, zte, rte)):
            problems.append((model, zs, mono, index, (ztr, rtr, zte, rte)))
    # first the cheap part for every model: g a polynomial or a ratio of polynomials (of g, 1/g, log g, g**2)
    for _model, zs, mono, index, (ztr, rtr, zte, rte) in problems:
        floor = sform.noise_floor(rtr, dtype)
        for name, exprs in polynomial_candidates(ztr, rtr[:, None], zte, rte[:, None], zs, floor):
            snap(ev, [mono * exprs[0].xreplace(dict(zip(zs, index)))], Provenance("index", step=f"polynomial {name}"))
        if ev.exact_found:
            return
    for k, (model, zs, mono, index, (ztr, rtr, zte, rte)) in enumerate(problems):
        if deadline.expired() or ev.exact_found:
            return
        log.info("index: y = %s * g(%s) (spline NMSE %.1e)", mono, index, model.nmse)
        res = symbolic_regression(to_dataset(ztr, rtr, zte, rte, dtype), None, seed=seed, dtype=dtype, lib=library,
                                  var=[z.name for z in zs], time_budget=deadline.share(1 / (len(problems) - k)))
        log.info("index: g = %s", res.formula)
        rows = list(res.table)
        picks = dict.fromkeys([rows[res.table.chosen].expr, min(rows, key=lambda c: c.test_nmse).expr])
        for g in picks:
            cand = ev.refit([mono * g.xreplace(dict(zip(zs, index)))], Provenance("index"))
            if cand.test_nmse <= 1e-4:
                snap_views(cand, ev, Provenance("index"), deadline.within(_VIEW_SECONDS))


class MonomialIndex:
    """:func:`index_search` on the data alone (no KAN): one output, two inputs or more, all inputs positive."""

    name, always = "index", False
    share = 0.5  # half the time left at most: the KAN runs come after

    def applies(self, ctx: SearchContext) -> bool:
        ev = ctx.ev
        return (ctx.options.separable and ctx.one_output and ctx.n_inputs >= 2 and bool(np.all(ev.xtr > 0))
                and bool(np.all(ev.xte > 0)))

    def run(self, ctx: SearchContext) -> list[Candidate]:
        start = len(ctx.ev.seen)
        index_search(ctx.ev, ctx.library, ctx.variables, ctx.deadline, seed=ctx.options.seed,
                     dtype=ctx.options.dtype)
        return ctx.ev.seen[start:]
