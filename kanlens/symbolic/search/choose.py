"""The last stage: the chosen formula (see :func:`~kanlens.symbolic.search.candidates.choose`), when exact (or, on
noisy labels, at their noise level) but left with unsnapped floats by a budget that ran out
(``1.0000000017*x1*sin(x2)``), gets one short snap."""

from __future__ import annotations

from .. import formula as sform
from .candidates import Candidate, choose
from .context import SearchContext
from .views import snap

__all__ = ["Choose"]

_SNAP_SECONDS = 5.0
_MAX_COMPLEXITY = 200


class Choose:
    """Snap the chosen exact (or noise-level) formula's leftover floats (skipped once the budget is spent)."""

    name, always = "choose", True

    def applies(self, ctx: SearchContext) -> bool:
        return bool(ctx.ev.seen) and not ctx.deadline.expired()

    def run(self, ctx: SearchContext) -> list[Candidate]:
        ev, start = ctx.ev, len(ctx.ev.seen)
        front, chosen = choose(ev.seen, ev.resolution)
        pick = front[chosen]
        # noisy labels: nothing is exact, but a pick at the noise level is as worth tidying
        if ((pick.exact or ev.near(pick.test_nmse)) and pick.complexity <= _MAX_COMPLEXITY
                and any(sform.n_floats(e) for e in pick.exprs)):
            ev.snap_seconds = _SNAP_SECONDS
            snap(ev, pick.exprs, pick.provenance)
        return ev.seen[start:]
