"""The monomial-index stage: before any KAN is trained, test whether ``y = prod x**a * g(prod x**b)`` (a product of
powers times one function of one monomial, or of two: see :mod:`kanlens.symbolic.index_fit`); if so, ``g`` is
recovered by a one- (two-) input search and the whole formula joins the candidates (``x1*exp(-x2*x3*x5/(x4*x6))``,
``x1/sqrt(1 - x2**2/x3**2)``, ``x1*x2*x3*log(x5/x4)``, ``x1 + x2 + 2*sqrt(x1*x2)*cos(x3)``). Cost without such a
structure: about a second for one index, 3-15 CPU s when two are tried (5-9 inputs)."""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import sympy

from .. import formula as sform
from ..index_fit import IndexModel, index_models, smooth_index_values
from ..noise import noise_nmse
from ..polyfit import polynomial_candidates
from .budget import Deadline
from .candidates import Candidate, Evaluator, Provenance
from .context import SearchContext
from .parts import to_dataset
from .views import snap, snap_views

__all__ = ["MonomialIndex", "basis_variants", "index_search", "monomial"]

log = logging.getLogger(__name__)

_MAX_RUNS = 3  # one-input searches at most (models x orientations of the index)
_VIEW_SECONDS = 7.5
_SMOOTH_ABOVE = 1e-6  # reduced labels noisier than this (NMSE) are replaced by the index spline


def monomial(variables, exponents: np.ndarray) -> sympy.Expr:
    """``prod variables[i]**exponents[i]`` with rational exponents."""
    out = sympy.Integer(1)
    for v, e in zip(variables, exponents):
        if e != 0:
            out *= v ** sympy.nsimplify(float(e), rational=True)
    return out


def _reduced(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, k)`` (the indices) and target ``(n,)`` of the reduced problem."""
    logx = np.log(x)
    return np.exp(logx @ b.T), y / np.exp(logx @ a)


def _problem(ev: Evaluator, variables, model: IndexModel, b: np.ndarray, smooth: bool = False):
    """``(model, index symbols, monomial, index expressions, (z_train, r_train, z_test, r_test))``, or None when
    the reduced data are not finite; with ``smooth`` the reduced labels are the index model's spline (see
    :func:`_noisy`)."""
    zs = [sympy.Symbol(f"index_z{i + 1}_") for i in range(len(b))]
    mono, index = monomial(variables, model.a), [monomial(variables, row) for row in b]
    (ztr, rtr), (zte, rte) = _reduced(ev.xtr, ev.ytr[:, 0], model.a, b), _reduced(ev.xte, ev.yte[:, 0], model.a, b)
    if not all(np.all(np.isfinite(v)) for v in (ztr, rtr, zte, rte)):
        return None
    if smooth:
        values = smooth_index_values(ev.xtr, ev.ytr[:, 0], model.a, b, [ev.xtr, ev.xte])
        if all(np.all(np.isfinite(v)) for v in values):
            rtr, rte = values
    return model, zs, mono, index, (ztr, rtr, zte, rte)


def _noisy(ev: Evaluator, model: IndexModel) -> bool:
    """Whether the reduced labels ``y / prod x**a`` are noisy (NMSE at least ``_SMOOTH_ABOVE``).

    They are noisiest where the monomial is small, and a one-input search on them fits look-alikes to the noise
    (``0.023*exp(4.2*z) + 0.97`` for ``1/sqrt(1 - z**2)``); the searches then see the index model's spline instead
    (fitted on ``y``, so weighted as the noise is: reduced NMSE 1.5e-2 for I.10.7 at ``eps = 1e-2``). Every formula
    they find is refitted on the real labels."""
    z, r = _reduced(ev.xtr, ev.ytr[:, 0], model.a, model.b)
    level = noise_nmse(z, r)
    if math.isfinite(level) and level >= _SMOOTH_ABOVE:
        log.info("index: noisy reduced labels (NMSE %.1e): the searches see the index spline", level)
        return True
    return False


_RUNNERS_UP = 4  # more formulas of g refitted and snapped on the real labels (briefly each)
_RUNNER_UP_SNAP_SECONDS = 3.0
_RUNNER_UP_BAND = 1.5  # ... among those within this factor of the nested search's best test NMSE


def _runners_up(cands: list[Candidate], taken) -> list[sympy.Expr]:
    """Formulas of ``g`` that fit about as well as the best, simplest first, besides those ``taken``.

    On noisy labels the nested search cannot tell ``1/sqrt(1 - z**2)`` (fitted as ``-0.008 + 1.01/sqrt(1.005 -
    z**2)``) from ``0.37 - 0.81/(z**2 - 1.27)``, and picks the one with fewer symbols; only the real labels, with
    the constants snapped, tell them apart (the true one snaps to no floats at all)."""
    finite = [c for c in cands if np.isfinite(c.test_nmse)]
    if not finite:
        return []
    best = min(c.test_nmse for c in finite)
    close = sorted((c for c in finite if c.test_nmse <= _RUNNER_UP_BAND * best and c.expr not in taken),
                   key=lambda c: (c.complexity, c.test_nmse))
    return list(dict.fromkeys(c.expr for c in close))[:_RUNNERS_UP]


def basis_variants(b: np.ndarray) -> list[np.ndarray]:
    """Bases of the span of the index rows ``b`` ``(k, d)`` with either orientation of each row; for two rows also
    each row plus -2..2 times the other (the same model: ``g(z1, z2) = g'(z1 * z2**c, z2)``)."""
    bases = [b]
    if len(b) == 2:
        for i, j in ((0, 1), (1, 0)):
            for c in (-2.0, -1.0, 1.0, 2.0):
                m = b.copy()
                m[i] = b[i] + c * b[j]
                bases.append(m)
    out: list[np.ndarray] = []
    for m in bases:
        for signs in itertools.product((1.0, -1.0), repeat=len(b)):
            v = m * np.array(signs)[:, None] + 0.0
            if not any(np.array_equal(v, o) for o in out):
                out.append(v)
    return out


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
    models = index_models(ev.xtr, ev.ytr[:, 0], tol=tol, stop=deadline.expired)
    if not models:
        log.info("index: no product of powers times a function of one monomial fits")
        return
    ev.note_noise(min(m.nmse for m in models))  # a spline model's error on the labels bounds their noise
    # one index: also 1/z as the input (asin(1/z) is harder to find than asin(z)); two: (z1, z2) as found
    # models differing only in a (x1*g(x2/x3) vs x3*g'(x2/x3)) are one problem: the simplest a only
    distinct = [m for i, m in enumerate(models) if not any(np.array_equal(m.b, o.b) for o in models[:i])]
    smooth = [_noisy(ev, m) for m in distinct[:2]]
    runs = [(m, s, smoothed) for m, smoothed in zip(distinct[:2], smooth)
            for s in ((1.0, -1.0) if len(m.b) == 1 else (1.0,))][:_MAX_RUNS]
    problems = [p for p in (_problem(ev, variables, m, m.b * sign, smoothed) for m, sign, smoothed in runs)
                if p is not None]
    # first the cheap part: g a polynomial or a ratio of polynomials (of g, 1/g, log g, g**2), for every model and
    # every basis of its indices with small integer changes and either orientation (x4*(1 - z1)/sqrt(1 - z2**2)
    # is simple in z1 = x1*x3/(x2**2*x4), z2 = x3/x2, not in the sparsest basis x1/(x3*x4), x3/x2)
    cheap = deadline.share(0.25)
    for model, smoothed in zip(distinct[:2], smooth):
        for b in basis_variants(model.b):
            problem = _problem(ev, variables, model, b, smoothed)
            if problem is None:
                continue
            _, zs, mono, index, (ztr, rtr, zte, rte) = problem
            for name, exprs in polynomial_candidates(ztr, rtr[:, None], zte, rte[:, None], zs,
                                                     sform.noise_floor(rtr, dtype)):
                snap(ev, [mono * exprs[0].xreplace(dict(zip(zs, index)))],
                     Provenance("index", step=f"polynomial {name}"))
            if ev.exact_found or cheap.expired():
                break
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
            if ev.near(cand.test_nmse):
                snap_views(cand, ev, Provenance("index"), deadline.within(_VIEW_SECONDS))
        for g in _runners_up(res.candidates, picks):
            if deadline.expired() or ev.exact_found:
                break
            cand = ev.refit([mono * g.xreplace(dict(zip(zs, index)))], Provenance("index", step="runner-up"))
            if ev.near(cand.test_nmse):
                ev.snap_seconds = _RUNNER_UP_SNAP_SECONDS
                snap(ev, cand.exprs, cand.provenance, merge=False)


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
