"""Compatibility module: the one-call search now lives in :mod:`kanlens.symbolic.search` (one module per stage).

``from kanlens.symbolic.pipeline import symbolic_regression`` keeps working, as do the helpers that used to live
here under private names (``_separable_split``, ``_symmetric_pairs``, ``_factor_data``...): they are re-exported
from their new public homes (:mod:`kanlens.symbolic.search.separable`, ``.pairs``, ``.parts``, ``.context``,
``.compositions``, ``.views``, ``.edges``, ``.train``, ``.kan``, ``.low_rank``). Deadlines may still be given as
absolute :func:`time.process_time` values. New code should import from :mod:`kanlens.symbolic.search`.
"""

from __future__ import annotations

from .search import Candidate, Deadline, ParetoTable, Provenance, SymbolicResult, symbolic_regression
from .search.candidates import Evaluator as _Evaluator
from .search.candidates import as_numpy as _np
from .search.candidates import check_dataset as _check_dataset
from .search.candidates import choose as _choose
from .search.compositions import compositions as _compositions
from .search.compositions import function_plus_polynomial as _function_plus_polynomial
from .search.compositions import power_compositions as _power_compositions
from .search.compositions import power_products as _power_products
from .search.context import model_predict as _model_predict
from .search.context import surrogate as _surrogate
from .search.edges import EdgeSearch as _Search
from .search.edges import chain_collapses as _chain_collapses
from .search.edges import simplest as _simplest
from .search.edges import spline_samples as _spline_samples
from .search.edges import usable as _usable
from .search.edges import with_most_accurate as _with_most_accurate
from .search.kan import resolve_transforms as _resolve_transforms
from .search.low_rank import low_rank_search as _low_rank_search
from .search.pairs import _PAIR_OPS, _moved_alone
from .search.pairs import PAIR_TOL as _PAIR_TOL
from .search.pairs import pair_data as _pair_data
from .search.pairs import pair_search as _pair_search
from .search.pairs import power_base as _power_base
from .search.pairs import symmetric_pairs as _symmetric_pairs
from .search.parts import anchor_slices as _slices
from .search.parts import factor_data as _factor_data
from .search.parts import part_dataset as _part_dataset
from .search.parts import second_part_data as _second_part_data
from .search.parts import summand_data as _summand_data
from .search.parts import to_dataset as _dataset
from .search.separable import SEPARABLE_TOL as _SEPARABLE_TOL
from .search.separable import log_separable_search as _log_separable_search
from .search.separable import most_promising as _most_promising
from .search.separable import part_formulas as _part_formulas
from .search.separable import separable_search as _separable_search
from .search.separable import separable_split as _separable_split
from .search.train import n_edges as _n_edges
from .search.train import test_rmse as _test_rmse
from .search.train import train as _train
from .search.views import expand as _expand
from .search.views import expansion_terms as _expansion_terms
from .search.views import floatify as _floatify
from .search.views import resolve_abs as _resolve_abs
from .search.views import tidy as _tidy

__all__ = ["Candidate", "Deadline", "ParetoTable", "Provenance", "SymbolicResult", "symbolic_regression"]

# the former private names, for code written against the single-module pipeline
_COMPAT = (_Evaluator, _np, _check_dataset, _choose, _compositions, _function_plus_polynomial, _power_compositions,
           _power_products, _model_predict, _surrogate, _Search, _chain_collapses, _simplest, _spline_samples, _usable,
           _with_most_accurate, _resolve_transforms, _low_rank_search, _PAIR_OPS, _moved_alone, _PAIR_TOL, _pair_data,
           _pair_search, _power_base, _symmetric_pairs, _slices, _factor_data, _part_dataset, _second_part_data,
           _summand_data, _dataset, _SEPARABLE_TOL, _log_separable_search, _most_promising, _part_formulas,
           _separable_search, _separable_split, _n_edges, _test_rmse, _train, _expand, _expansion_terms, _floatify,
           _resolve_abs, _tidy)
