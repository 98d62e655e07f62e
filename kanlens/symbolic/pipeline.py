"""Compatibility module: the one-call search now lives in :mod:`kanlens.symbolic.search` (one module per stage).

``from kanlens.symbolic.pipeline import symbolic_regression`` keeps working. The helpers that used to live here
under private names are public in their stage modules (:mod:`kanlens.symbolic.search.separable`, ``.pairs``,
``.parts``, ``.context``, ``.compositions``, ``.views``, ``.edges``, ``.train``, ``.kan``, ``.low_rank``); new code
imports from :mod:`kanlens.symbolic.search`.
"""

from __future__ import annotations

from .search import Candidate, Deadline, ParetoTable, Provenance, SymbolicResult, symbolic_regression

__all__ = ["Candidate", "Deadline", "ParetoTable", "Provenance", "SymbolicResult", "symbolic_regression"]
