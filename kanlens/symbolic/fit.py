"""Fitting library functions to edges: the affine fit ``y ~ c*f(a*x+b)+d`` and pykan's suggest/fix/auto_symbolic.

The pure part (:func:`fit_affine`, :func:`fit_library`, :func:`rank_fits`) knows nothing about models. It fits
each function in a *reduced* parameterisation without redundant constants (see :class:`SymbolicFunction.kind`):
a coarse grid over the nonlinear parameters with the linear ones ``(c, d)`` in closed form for every grid point
at once, then ``scipy.optimize.least_squares`` from the best few grid points (variable projection: ``(c, d)`` stay
closed form during refinement). Fits that only work in a degenerate limit (``cos(0.001*x)`` imitating ``x^2``,
``(x + 1000)^2`` imitating a line) are flagged ``degenerate`` and ranked last.

The model-facing part (:func:`suggest_symbolic`, :func:`fix_symbolic`, :func:`unfix_symbolic`, :func:`auto_symbolic`)
reads edge samples from a :class:`kanlens.model.KAN` and writes into its symbolic layers.

The code lives in one module per question; this module re-exports it (the documented import path):
:mod:`kanlens.symbolic.affine` (fitting one function or a library to samples), :mod:`kanlens.symbolic.affine_search`
(parameterisations, grids, refinement), :mod:`kanlens.symbolic.edge_fit` (suggest/fix/unfix on a model's edge) and
:mod:`kanlens.symbolic.auto` (``auto_symbolic``).
"""

from __future__ import annotations

from .affine import EXACT_NMSE, AffineFit, fit_affine, fit_library, rank_fits
from .affine_search import (  # noqa: F401 (the grid helpers: kept importable from here for the search stages)
    GRID_SHIFTS,
    GRID_SLOPES,
    affine_grid,
    canonical_params,
    subsample_points,
    zoom_affine,
)
from .auto import AutoSymbolicTable, EdgeChoice, auto_symbolic  # noqa: F401 (EdgeChoice: kept importable here)
from .edge_fit import SuggestionTable, edge_samples, fix_symbolic, suggest_symbolic, unfix_symbolic

__all__ = [
    "EXACT_NMSE",
    "AffineFit",
    "AutoSymbolicTable",
    "SuggestionTable",
    "auto_symbolic",
    "canonical_params",
    "edge_samples",
    "fit_affine",
    "fit_library",
    "fix_symbolic",
    "rank_fits",
    "suggest_symbolic",
    "unfix_symbolic",
]
