"""The polynomial stage: exact polynomials, power laws and ratios of polynomials of the inputs, fitted to ``y`` (and
``1/y``, ``log|y|``, ``y**2``) by linear least squares before any KAN is trained (see
:func:`~kanlens.symbolic.polyfit.polynomial_candidates`)."""

from __future__ import annotations

import logging

from ..polyfit import polynomial_candidates, power_law_candidate
from .candidates import Candidate, Provenance
from .context import SearchContext
from .views import snap

__all__ = ["Polynomial"]

log = logging.getLogger(__name__)


class Polynomial:
    """Every fit that reproduces the test data to the label rounding is snapped and joins the candidates. Such a
    fit ends the search only when its constants snap (see
    :meth:`~kanlens.symbolic.search.candidates.Evaluator.settled`). When none does, the best power law within 2e-2
    (NMSE) of the test data is snapped and competes as a candidate (noisy labels)."""

    name, always = "polynomial", False

    def applies(self, ctx: SearchContext) -> bool:
        return ctx.options.polynomial

    def run(self, ctx: SearchContext) -> list[Candidate]:
        ev, start = ctx.ev, len(ctx.ev.seen)
        for name, exprs in polynomial_candidates(ev.xtr, ev.ytr, ev.xte, ev.yte, ctx.variables, ev.floor):
            log.info("polynomial fit of %s: %s", name, exprs)
            snap(ev, exprs, Provenance("polynomial", step=name))
        if len(ev.seen) == start and ctx.one_output:
            # nothing at the rounding floor (noisy labels?): the power law as a candidate like any other
            law = power_law_candidate(ev.xtr, ev.ytr[:, 0], ev.xte, ev.yte[:, 0], ctx.variables,
                                      resolution=ev.resolution)
            if law is not None:
                log.info("power law (not at the rounding floor): %s", law)
                snap(ev, [law], Provenance("polynomial", step="power law"), merge=False)
        return ev.seen[start:]
