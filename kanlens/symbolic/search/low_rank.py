"""The low-rank stage (two inputs): ``y = sum_ij c_ij p_i(x1) q_j(x2)`` with a few products, found from the
singular subspaces of a model of ``y`` sampled on a grid (:mod:`kanlens.symbolic.lowrank`), without training."""

from __future__ import annotations

import logging
import math

import numpy as np

from .. import formula as sform
from .. import lowrank
from .candidates import Candidate, Evaluator, Provenance
from .context import SearchContext
from .views import snap_views

__all__ = ["LowRank", "low_rank_search"]

log = logging.getLogger(__name__)

_VIEW_SECONDS = 7.5  # CPU seconds (at most) for snapping a sum in its views
_LOW_RANK_MAX = 3  # products in a sum tried by the low-rank stage
_LOW_RANK_SNAP = 1e-8  # a sum refitted this close to the data (NMSE) is snapped
_LOW_RANK_TAIL = 0.05  # a rank is tried when the grid matrix is this close to it (relative Frobenius norm)


def low_rank_search(predict, ev: Evaluator, library, variables) -> None:
    """Two inputs: ``y = sum_ij c_ij p_i(x1) q_j(x2)`` with up to ``_LOW_RANK_MAX`` products
    (``x1*sin(x2) + x2*cos(x1)``), which neither the separability tests (no split makes it a sum or a product)
    nor the pair tests see.

    ``predict`` (the structure tests' model of ``y``) is sampled on a grid and the SVD's rank-``r`` singular
    subspaces are matched with library functions of each input (:mod:`kanlens.symbolic.lowrank`); sets that span
    them are combined by linear least squares on the real data, and the best two such sums are refitted (and
    snapped when nearly exact). A few CPU seconds (no KAN is trained). One output only.
    """
    if ev.ytr.shape[1] != 1 or ev.xtr.shape[1] != 2:
        return
    spec = lowrank.grid_spectrum(predict, ev.xtr)
    if spec is None:
        return
    xa, xb, u, s, vt = spec
    total = float(np.linalg.norm(s))
    model_err = math.sqrt(sform.nmse(predict(ev.xte), ev.yte[:, 0]))  # relative
    for r in range(1, min(_LOW_RANK_MAX, s.size - 1) + 1):
        tail = float(np.linalg.norm(s[r:]))
        if not s[r - 1] > 1e-12 * s[0] or tail > _LOW_RANK_TAIL * total:
            continue
        tol = lowrank.membership_tol(s, r, model_err)
        sides = []
        for basis, xs, var in ((u[:, :r], xa, variables[0]), (vt[:r].T, xb, variables[1])):
            members = lowrank.span_members(xs, basis, library, var, tol)
            sides.append(lowrank.spanning_sets(xs, basis, members))
            log.debug("low rank %d, %s: tol %.1e, members %s, sets %s", r, var, tol,
                      [(str(m.expr), f"{m.residual:.1e}") for m in members[:8]],
                      [[str(m.expr) for m in st] for st in sides[-1]])
        fits = [f for p in sides[0] for q in sides[1]
                if (f := lowrank.sum_of_products(p, q, ev.xtr, ev.ytr[:, 0])) is not None and ev.near(f[0])]
        log.info("low rank: rank %d (tail %.1e), %d x %d spanning sets, %d sums fit the data", r, tail / total,
                 len(sides[0]), len(sides[1]), len(fits))
        # sums at the labels' noise floor are equally exact: the simpler first (1/(x**2 + 1), not a tan pole form)
        fits.sort(key=lambda f: (max(f[0], 10 * ev.floor), sform.formula_complexity(f[1])))
        for err, expr in fits[:2]:
            log.debug("low rank %d: sum %s, data NMSE %.1e", r, expr, err)
            cand = ev.refit([expr], Provenance("low rank"))
            # snapped only when nearly exact: a rank-3 approximation of sin(3*x1*x2), 3e-5 off, would spend tens
            # of seconds in snapping views that cannot make it exact
            if cand.test_nmse <= max(_LOW_RANK_SNAP, 100 * ev.floor) and not ev.exact_found:
                snap_views(cand, ev, Provenance("low rank"), ev.deadline.within(_VIEW_SECONDS))
        if ev.exact_found:
            return


class LowRank:
    """:func:`low_rank_search` on the structure tests' model of ``y``; two inputs, one output."""

    name, always = "low rank", False

    def applies(self, ctx: SearchContext) -> bool:
        return ctx.options.separable and ctx.n_inputs == 2 and ctx.one_output and ctx.surrogate() is not None

    def run(self, ctx: SearchContext) -> list[Candidate]:
        start = len(ctx.ev.seen)
        low_rank_search(ctx.surrogate(), ctx.ev, ctx.library, ctx.variables)
        return ctx.ev.seen[start:]
