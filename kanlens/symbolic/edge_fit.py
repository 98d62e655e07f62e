"""pykan's per-edge symbolic API on a model: :func:`suggest_symbolic`, :func:`fix_symbolic`, :func:`unfix_symbolic`.

Reads edge samples from a :class:`kanlens.model.KAN` (:func:`edge_samples`), fits library functions to them with
:mod:`kanlens.symbolic.affine` and writes the chosen one into the model's symbolic layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .._checks import check_edge, check_kwargs, check_tensor, is_int
from ..utils import warn_user
from .affine import AffineFit, fit_affine, fit_library, rank_fits
from .library import SymbolicFunction, SymbolicLibrary, resolve_library

__all__ = ["SuggestionTable", "edge_samples", "fix_symbolic", "suggest_symbolic", "unfix_symbolic"]


class SuggestionTable(Sequence):
    """Ranked candidate functions for one edge (``suggest_symbolic``'s result); ``table[0]`` is the best.

    Each row is an :class:`AffineFit` (``name, r2, complexity, a, b, c, d, score``); the repr is a small table.
    """

    def __init__(self, edge: tuple[int, int, int] | None, rows: Sequence[AffineFit]) -> None:
        self.edge = edge
        self.rows = list(rows)

    def __getitem__(self, k):  # type: ignore[override]
        return self.rows[k]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def best(self) -> AffineFit:
        return self.rows[0]

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rows]

    def to_dicts(self) -> list[dict]:
        keys = ("name", "r2", "nmse", "complexity", "a", "b", "c", "d", "score", "degenerate")
        return [{k: getattr(r, k) for k in keys} for r in self.rows]

    def __repr__(self) -> str:
        head = "" if self.edge is None else f"edge (l={self.edge[0]}, i={self.edge[1]}, j={self.edge[2]})\n"
        lines = [f"{'':2}{'function':>10} {'r2':>14} {'1-r2':>9} {'cplx':>4} {'score':>8}  c*f(a*x+b)+d"]
        for k, r in enumerate(self.rows):
            mark = "»" if k == 0 else " "
            flag = " (degenerate)" if r.degenerate else ""
            lines.append(f"{mark:2}{r.name:>10} {r.r2:>14.10f} {r.nmse:>9.2e} {r.complexity:>4g} {r.score:>8.3f}  "
                         f"a={r.a:.5g} b={r.b:.5g} c={r.c:.5g} d={r.d:.5g}{flag}")
        return head + "\n".join(lines)


def _edge_is_pruned(model, l: int, i: int, j: int) -> bool:
    spline_on = bool(model.layers[l].mask[j, i] != 0)
    sym_on = bool(model.symbolic[l].mask[j, i] != 0)
    return not (spline_on or sym_on)


def edge_samples(model, l: int, i: int, j: int, x: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``(x_li, phi_lji(x_li))`` of one edge, from ``x`` or the last batch the model saw.

    The edge value is the spline branch (``layers[l].forward_edges``); for an edge that is already symbolic it is
    the symbolic branch.

    Shapes:
        returns two arrays ``(batch,)``.
    """
    check_edge(model, l, i, j)
    if x is not None:
        check_tensor("x", x, ndim=2, last_dim=model.width_in[0])
    acts = model.layer_inputs(x)
    x_l = acts[l]
    if not bool(torch.isfinite(x_l).all()):
        raise ValueError(f"the inputs of layer {l} contain NaN or Inf; cannot fit symbolic functions")
    with torch.no_grad():
        if bool(model.layers[l].mask[j, i] != 0):
            y = model.layers[l].forward_edges(x_l)[:, j, i]
        else:
            y = model.symbolic[l].forward_edges(x_l)[:, j, i]
    return x_l[:, i].detach().cpu().double().numpy(), y.detach().cpu().double().numpy()


def suggest_symbolic(
    model,
    l: int,
    i: int,
    j: int,
    lib: SymbolicLibrary | Sequence[str] | None = None,
    topk: int = 5,
    weight_simple: float = 0.8,
    x: torch.Tensor | None = None,
    *,
    verbose: bool = False,
    **pykan_options,
) -> SuggestionTable:
    """Rank library functions for edge ``(l, i, j)`` (layer, input, output) like pykan's ``suggest_symbolic``.

    Args:
        model: a :class:`~kanlens.model.KAN` that has seen data (``model(x)``) or ``x``.
        lib: function names (``['x', 'x^2', 'sin']``), a :class:`SymbolicLibrary`, or ``None`` (default library).
        topk: rows returned.
        weight_simple: 0 ranks by fit quality only, 1 by complexity only (see :func:`rank_fits`).
        x: inputs to evaluate the edge on (default: the last batch the model saw).
        verbose: log the table at INFO level.
        pykan_options: pykan's ``a_range``, ``b_range``, ``r2_loss_fun``, ``c_loss_fun`` are accepted and ignored
            (kanlens fits ``a, b`` without a grid); any other keyword raises ``TypeError``.

    Returns:
        a :class:`SuggestionTable` (best first).

    Example:
        >>> model(dataset["train_input"])
        >>> model.suggest_symbolic(0, 0, 0, lib=["x", "x^2", "sin"])
    """
    check_kwargs(suggest_symbolic, pykan_options, _PYKAN_SUGGEST)
    if not is_int(topk) or topk < 1:
        raise ValueError(f"topk must be a positive int, got {topk!r}")
    check_edge(model, l, i, j)
    if _edge_is_pruned(model, l, i, j):
        raise ValueError(f"edge (l={l}, i={i}, j={j}) is pruned (mask 0); there is no function to fit")
    xs, ys = edge_samples(model, l, i, j, x)
    library = resolve_library(lib)
    rows = rank_fits(fit_library(xs, ys, library), weight_simple=weight_simple)
    table = SuggestionTable((l, i, j), rows[:topk])
    if verbose:
        import logging

        logging.getLogger("kanlens.symbolic.fit").info("%r", table)
    return table


# pykan options with no kanlens counterpart (kanlens fits a, b without pykan's grid search): accepted, ignored
_PYKAN_SUGGEST = ("a_range", "b_range", "r2_loss_fun", "c_loss_fun")
_PYKAN_FIX = ("a_range", "b_range", "verbose", "random", "log_history")


def fix_symbolic(
    model,
    l: int,
    i: int,
    j: int,
    name: str,
    fit_params: bool = True,
    x: torch.Tensor | None = None,
    *,
    params: Sequence[float] | None = None,
    lib: SymbolicLibrary | Sequence[str] | None = None,
    fit_params_bool: bool | None = None,
    **pykan_options,
) -> float | None:
    """Replace edge ``(l, i, j)`` by ``c*f(a*x+b)+d`` (pykan's ``fix_symbolic``); returns the fit's r2.

    The spline edge is switched off (``layers[l].mask[j, i] = 0``) and the symbolic one on, as in pykan.

    Args:
        name: library function name (unknown names raise ``ValueError`` with a "did you mean" hint).
        fit_params: fit ``(a, b, c, d)`` to the edge's current samples; otherwise use ``params`` or ``(1, 0, 1, 0)``.
        x: inputs for the fit (default: the last batch the model saw).
        params: explicit ``(a, b, c, d)`` (implies ``fit_params=False``).
        lib: library that knows ``name`` (default: the symbolic layer's library).
        fit_params_bool: pykan's name for ``fit_params``.
        pykan_options: pykan's ``a_range``, ``b_range``, ``verbose``, ``random``, ``log_history`` are accepted and
            ignored; any other keyword raises ``TypeError``.

    Returns:
        r2 of the fit, or ``None`` when nothing was fitted.
    """
    check_kwargs(fix_symbolic, pykan_options, _PYKAN_FIX)
    if fit_params_bool is not None:
        fit_params = bool(fit_params_bool)
    check_edge(model, l, i, j)
    if _edge_is_pruned(model, l, i, j):
        raise ValueError(f"edge (l={l}, i={i}, j={j}) is pruned (mask 0); fix_symbolic needs an active edge")
    sym = model.symbolic[l]
    library = resolve_library(lib, base=sym.library)
    fn = library[name]
    if fn.name not in sym.library:
        sym.library = sym.library.copy().register(fn.name, fn.torch_fn, fn.sympy_fn, fn.complexity, fn.safe_fn,
                                                  **_structural(fn))
    r2 = None
    if params is not None:
        p = tuple(float(v) for v in params)
    elif fit_params:
        xs, ys = edge_samples(model, l, i, j, x)
        fit = fit_affine(xs, ys, fn)
        if not fit.valid:
            raise ValueError(f"{fn.name!r} cannot be fitted to edge (l={l}, i={i}, j={j}): its argument leaves the "
                             f"function's domain for every candidate (a, b); try another function")
        p, r2 = fit.params, _r2_in_dtype(fn, fit.params, xs, ys, model.dtype)
        if fit.degenerate:
            warn_user(f"{fn.name!r} fits edge (l={l}, i={i}, j={j}) only as a Taylor limit (a = {p[0]:.3g}, "
                      f"c = {p[2]:.3g}, d = {p[3]:.3g}): the edge looks like a low-degree polynomial, and constants "
                      f"that cancel lose digits in {model.dtype}; r2 as the model computes it: {r2:.6g}. Try a "
                      f"polynomial (x^2, x^3) or auto_symbolic")
    else:
        p = (1.0, 0.0, 1.0, 0.0)
    with torch.no_grad():
        model.layers[l].mask[j, i] = 0.0
    sym.fix(i, j, fn.name, p)
    model.symbolic_enabled = True  # speed() may have switched the symbolic branch off; it is in use now
    return r2


def _r2_in_dtype(fn: SymbolicFunction, params: Sequence[float], xs: np.ndarray, ys: np.ndarray,
                 dtype: torch.dtype) -> float:
    """r2 of ``c*f(a*x+b)+d`` against ``ys`` with the function evaluated in ``dtype``, as the model will: for
    constants that nearly cancel (a Taylor-limit fit) float32 loses what float64 fitting found."""
    with torch.no_grad():
        xt = torch.as_tensor(xs, dtype=dtype)
        a, b, c, d = (torch.tensor(v, dtype=dtype) for v in params)
        yt = (c * fn.torch_fn(a * xt + b) + d).double().numpy()
    yc = ys - ys.mean()
    sst = float(yc @ yc)
    if not sst > 0:
        return 1.0 if np.allclose(yt, ys) else -math.inf
    resid = yt - ys
    return 1.0 - float(resid @ resid) / sst


def _structural(fn: SymbolicFunction) -> dict:
    keep = ("kind", "degree", "parity", "odd_shift", "period", "half_period_flips", "domain", "poles", "pole_period",
            "special", "numpy_fn")
    return {k: getattr(fn, k) for k in keep}


def unfix_symbolic(model, l: int, i: int, j: int, log_history: bool = True) -> None:
    """Turn edge ``(l, i, j)`` back into a spline edge (pykan's ``unfix_symbolic``); with ``log_history`` a
    tracked model (:func:`kanlens.checkpoints.track`) saves a version, as pykan's does."""
    check_edge(model, l, i, j)
    model.symbolic[l].unfix(i, j)
    with torch.no_grad():
        model.layers[l].mask[j, i] = 1.0
    if hasattr(model, "_logged"):
        model._logged("unfix_symbolic", log_history)
