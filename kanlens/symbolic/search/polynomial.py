"""The polynomial stage: exact polynomials, power laws and ratios of polynomials of the inputs, fitted to ``y`` (and
``1/y``, ``log|y|``, ``y**2``) by linear least squares before any KAN is trained (see
:func:`~kanlens.symbolic.polyfit.polynomial_candidates`)."""

from __future__ import annotations

import logging

from ..polyfit import polynomial_candidates
from .candidates import Candidate, Provenance
from .context import SearchContext
from .views import snap

__all__ = ["Polynomial"]

log = logging.getLogger(__name__)


class Polynomial:
    """Every fit that reproduces the test data to the label noise is snapped and joins the candidates. Such a fit
    ends the search only when its constants snap (see :meth:`~kanlens.symbolic.search.candidates.Evaluator.settled`).
    """

    name, always = "polynomial", False

    def applies(self, ctx: SearchContext) -> bool:
        return ctx.options.polynomial

    def run(self, ctx: SearchContext) -> list[Candidate]:
        ev, start = ctx.ev, len(ctx.ev.seen)
        for name, exprs in polynomial_candidates(ev.xtr, ev.ytr, ev.xte, ev.yte, ctx.variables, ev.floor):
            log.info("polynomial fit of %s: %s", name, exprs)
            snap(ev, exprs, Provenance("polynomial", step=name))
        return ev.seen[start:]
