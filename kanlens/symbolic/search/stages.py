"""The registry: the stages of a search, in the order they run. A new stage is one module with a class that has a
``name``, ``always``, ``applies(ctx)`` and ``run(ctx)`` (see :class:`~kanlens.symbolic.search.context.Stage`), and
one line here."""

from __future__ import annotations

from .choose import Choose
from .compositions import Compositions
from .context import Stage
from .index import MonomialIndex
from .kan import KanFit
from .low_rank import LowRank
from .pairs import PairSymmetries
from .polynomial import Polynomial
from .separable import LogSeparable, Separable

__all__ = ["STAGES"]

STAGES: list[Stage] = [
    Polynomial(),
    Compositions(),  # one input: library compositions fitted directly (seconds, before any KAN is trained)
    MonomialIndex(),  # a product of powers times a function of one monomial, from the data alone
    KanFit(0),  # the first target transform (always runs: it gives result.model)
    KanFit(1),  # the second, while no exact formula is known
    Separable(),
    PairSymmetries(),
    LogSeparable(),
    LowRank(),
    Choose(),
]
