"""Compatibility module: the one-call search now lives in :mod:`kanlens.symbolic.search` (one module per stage).

``from kanlens.symbolic.pipeline import symbolic_regression`` keeps working, as do the structure tests that used
to live here under private names (``_separable_split``, ``_symmetric_pairs``, ``_factor_data``...): they are
re-exported from their new public homes (:mod:`kanlens.symbolic.search.separable`, ``.pairs``, ``.parts``,
``.context``). New code should import from :mod:`kanlens.symbolic.search`.
"""

from __future__ import annotations

from .search import Candidate, Deadline, ParetoTable, Provenance, SymbolicResult, symbolic_regression
from .search.candidates import Evaluator as _Evaluator
from .search.candidates import choose as _choose
from .search.compositions import compositions as _compositions
from .search.context import model_predict as _model_predict
from .search.context import surrogate as _surrogate
from .search.low_rank import low_rank_search as _low_rank_search
from .search.pairs import PAIR_TOL as _PAIR_TOL
from .search.pairs import pair_search as _pair_search
from .search.pairs import symmetric_pairs as _symmetric_pairs
from .search.parts import factor_data as _factor_data
from .search.parts import summand_data as _summand_data
from .search.separable import SEPARABLE_TOL as _SEPARABLE_TOL
from .search.separable import log_separable_search as _log_separable_search
from .search.separable import separable_search as _separable_search
from .search.separable import separable_split as _separable_split

__all__ = ["Candidate", "Deadline", "ParetoTable", "Provenance", "SymbolicResult", "symbolic_regression"]

# the old private names, for code written against the single-module pipeline
_COMPAT = (_Evaluator, _choose, _compositions, _model_predict, _surrogate, _low_rank_search, _PAIR_TOL, _pair_search,
           _symmetric_pairs, _factor_data, _summand_data, _SEPARABLE_TOL, _log_separable_search, _separable_search,
           _separable_split)
