"""Symbolic regression on KANs: function library, edge fitting, formula extraction, export, one-call pipeline.

Modules:
    library: :class:`SymbolicLibrary`, :func:`default_library` (named functions with torch/sympy/safe versions).
    fit: :func:`fit_affine` (``y ~ c*f(a*x+b)+d``), ``suggest_symbolic`` / ``fix_symbolic`` / ``auto_symbolic``;
        re-exports ``affine`` (fitting one function or a library), ``affine_search`` (parameterisations, grids,
        refinement), ``edge_fit`` (suggest/fix/unfix on a model) and ``auto`` (``auto_symbolic``).
    formula: ``symbolic_formula``, ``ex_round``; re-exports ``simplify`` (``normalize``, complexity), ``values``
        (``nmse``, ``noise_floor``), ``constants`` (joint refit and snapping of constants) and ``detaylor``.
    export: ``to_latex``, ``to_string``, ``lambdify`` (numpy / torch).
    search: ``symbolic_regression``, a search built from stages (polynomial fits, KAN runs with an edge search,
        compositions, separability, pair symmetries, low rank) under one CPU deadline; ``pipeline`` re-exports it.

Only the library and the pure fitting helpers load eagerly (the model imports this package); the rest loads on
first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

from .library import SymbolicFunction, SymbolicLibrary, default_library, resolve_library

_LAZY = {
    "fit_affine": "kanlens.symbolic.fit",
    "fit_library": "kanlens.symbolic.fit",
    "rank_fits": "kanlens.symbolic.fit",
    "suggest_symbolic": "kanlens.symbolic.fit",
    "fix_symbolic": "kanlens.symbolic.fit",
    "unfix_symbolic": "kanlens.symbolic.fit",
    "auto_symbolic": "kanlens.symbolic.fit",
    "symbolic_formula": "kanlens.symbolic.formula",
    "ex_round": "kanlens.symbolic.formula",
    "to_latex": "kanlens.symbolic.export",
    "to_string": "kanlens.symbolic.export",
    "lambdify": "kanlens.symbolic.export",
    "symbolic_regression": "kanlens.symbolic.search",
}

__all__ = ["SymbolicFunction", "SymbolicLibrary", "default_library", "resolve_library", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in ("library", "fit", "formula", "export", "pipeline", "search"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
