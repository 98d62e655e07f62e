"""The affine fit of one library function to samples, ``y ~ c*f(a*x+b)+d``, for one function or a whole library.

The pure part of edge fitting (:func:`fit_affine`, :func:`fit_library`, :func:`rank_fits`) knows nothing about
models. Each function gets a coarse grid over its nonlinear parameters with the linear ones ``(c, d)`` in closed
form for every grid point at once, then least squares from the best few grid points (variable projection: ``(c, d)``
stay closed form during refinement); the numerics live in :mod:`kanlens.symbolic.affine_search`. Fits that only work
in a degenerate limit (``cos(0.001*x)`` imitating ``x^2``, ``(x + 1000)^2`` imitating a line) are flagged
``degenerate`` and ranked last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from .affine_search import Parameterisation, canonical_params, linear_fit, parameterisations, refine_theta, row_values
from .library import SymbolicFunction, SymbolicLibrary, resolve_library

__all__ = ["EXACT_NMSE", "AffineFit", "fit_affine", "fit_library", "rank_fits"]

EXACT_NMSE = 1e-10  # SSE/SST below this (NRMSE ~ 1e-5) counts as an exact fit of the samples
_DEGENERATE_CV = 1e-2  # std(f)/rms(f) below this: the function is only used as a nearly-constant Taylor limit
_MAX_GRID_POINTS = 128


@dataclass(frozen=True)
class AffineFit:
    """Result of fitting ``y ~ c*f(a*x+b)+d`` for one library function.

    Attributes:
        name: library function name.
        a, b, c, d: fitted constants (canonical: redundant ones fixed, see :func:`canonical_params`).
        r2: coefficient of determination ``1 - SSE/SST`` (0 for the ``"0"`` function; ``-inf`` if no valid fit).
        nmse: ``SSE/SST`` (``1 - r2``, kept separately because ``r2`` rounds to 1 for excellent fits).
        complexity: the function's library complexity.
        degenerate: the fit only works as a Taylor limit of ``f`` (ranked last).
        score: ranking score (lower is better; set by :func:`rank_fits`).
    """

    name: str
    a: float
    b: float
    c: float
    d: float
    r2: float
    nmse: float
    complexity: float
    degenerate: bool = False
    score: float = math.nan

    @property
    def params(self) -> tuple[float, float, float, float]:
        return (self.a, self.b, self.c, self.d)

    @property
    def exact(self) -> bool:
        """Whether the fit reproduces the samples to ``nmse <= EXACT_NMSE`` (and is not a degenerate limit)."""
        return self.nmse <= EXACT_NMSE and not self.degenerate

    @property
    def valid(self) -> bool:
        return math.isfinite(self.nmse)


# ---------------------------------------------------------------------------------------------- numerics
def _to_float64(name: str, v: object) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(v, dtype=np.float64).reshape(-1)
    if arr.size < 3:
        raise ValueError(f"{name} needs at least 3 samples, got {arr.size}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf values; cannot fit a symbolic function")
    return arr


@dataclass
class _Prepared:
    """Samples in float64 (sorted by x), their grid subsample and standardisation."""

    x: np.ndarray
    y: np.ndarray
    xg: np.ndarray
    yg: np.ndarray
    mx: float
    sx: float
    constant: bool


def _prepare(x: object, y: object, max_grid_points: int) -> _Prepared:
    x = _to_float64("x", x)
    y = _to_float64("y", y)
    if x.size != y.size:
        raise ValueError(f"x and y must have the same number of samples, got {x.size} and {y.size}")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    mx, sx = float(x.mean()), float(x.std())
    var_y, mean_y = float(y.var()), float(y.mean())
    constant = var_y <= 1e-30 * (mean_y**2 + 1e-300)
    if sx <= 0 and not constant:
        raise ValueError("x has zero spread; cannot fit a function of it")
    idx = np.unique(np.round(np.linspace(0, x.size - 1, min(max_grid_points, x.size))).astype(int))
    return _Prepared(x, y, x[idx], y[idx], mx, sx, constant)


def _special_fit(fn: SymbolicFunction, d: _Prepared) -> AffineFit | None:
    """Functions that need no search: ``0``, ``x`` and anything on a constant edge."""
    mean_y = float(d.y.mean())
    if d.constant:  # constant edge: "0" (plus the constant d) is exact, everything else is uninformative
        return AffineFit(fn.name, 1.0, 0.0, 0.0, mean_y, 1.0, 0.0, fn.complexity, degenerate=fn.kind != "zero")
    if fn.kind == "zero":
        return AffineFit(fn.name, 0.0, 0.0, 0.0, mean_y, 0.0, 1.0, fn.complexity)
    if fn.kind == "identity":
        c, dd, nmse, _ = linear_fit(d.x[None, :], d.y)
        return AffineFit(fn.name, 1.0, 0.0, float(c[0]), float(dd[0]), 1 - float(nmse[0]), float(nmse[0]),
                         fn.complexity)
    return None


def _grid_phase(fn: SymbolicFunction, d: _Prepared, n_starts: int) -> list[tuple[float, Parameterisation, np.ndarray]]:
    """Best grid points (by subsample nmse, degenerate rows penalised) over all sign variants."""
    xs_sorted = (d.xg - d.mx) / d.sx
    cands: list[tuple[float, Parameterisation, np.ndarray]] = []
    for p in parameterisations(fn, d.mx, d.sx):
        thetas = p.grid(xs_sorted)
        _, _, nmse, cv = linear_fit(p.evaluate(thetas, d.xg), d.yg)
        nmse = np.where(cv < _DEGENERATE_CV, nmse + 1.0, nmse)  # degenerate rows only as a last resort
        for k in np.argsort(nmse, kind="stable")[: max(1, n_starts)]:
            if math.isfinite(float(nmse[k])):
                cands.append((float(nmse[k]), p, thetas[k]))
    cands.sort(key=lambda t: t[0])
    return cands[: max(1, n_starts)]


def _taylor_regime(fn: SymbolicFunction, f: np.ndarray, d: _Prepared) -> bool:
    """``f(a*x+b)`` over the data is a quadratic polynomial of ``x`` (to nmse 1e-8): a simpler function explains it.

    ``x`` and ``x^2`` themselves are exempt; so is anything on a nearly constant edge.
    """
    if fn.kind == "identity" or (fn.kind == "power" and fn.degree == 2):
        return False
    xs = (d.x - d.mx) / d.sx
    basis = np.stack([np.ones_like(xs), xs, xs * xs], 1)
    with np.errstate(over="ignore", invalid="ignore"):  # values overflowing float64 squares: not a quadratic
        fc = f - f.mean()
        var = float(fc @ fc)
        if not (var > 0 and math.isfinite(var)):
            return False
        coef, *_ = np.linalg.lstsq(basis, f, rcond=None)
        resid = f - basis @ coef
        return float(resid @ resid) / var < 1e-8


def _finish(fn: SymbolicFunction, d: _Prepared, p: Parameterisation, theta: np.ndarray) -> AffineFit:
    a, b = (float(v) for v in p.ab(theta))
    f = p.evaluate(theta[None, :], d.x)
    c, dd, nmse, cv = linear_fit(f, d.y)
    a, b, c, dd = canonical_params(fn, a, b, float(c[0]), float(dd[0]))
    nmse_v = float(nmse[0])
    degenerate = float(cv[0]) < _DEGENERATE_CV or (np.isfinite(f).all() and _taylor_regime(fn, f[0], d))
    return AffineFit(fn.name, a, b, c, dd, 1.0 - nmse_v, nmse_v, fn.complexity, degenerate=degenerate)


def _invalid(fn: SymbolicFunction) -> AffineFit:
    return AffineFit(fn.name, math.nan, math.nan, math.nan, math.nan, -math.inf, math.inf, fn.complexity,
                     degenerate=True)


def _refine_phase(fn: SymbolicFunction, d: _Prepared,
                  cands: list[tuple[float, Parameterisation, np.ndarray]]) -> AffineFit:
    step = fn.kind == "power" and fn.degree == 0  # piecewise-constant objective: the grid is the optimum
    best: tuple[float, Parameterisation, np.ndarray] | None = None
    for grid_err, p, theta0 in cands:
        if best is not None and (best[0] < 1e-3 * EXACT_NMSE or grid_err > 1e3 * max(best[0], 1e-12)):
            break  # already exact, or the remaining starts are hopeless
        theta = theta0 if step else refine_theta(p, theta0, d.xg, d.yg, 60)
        f = row_values(p, theta, d.xg)
        if f is None:
            continue
        _, _, n_sub, cv_sub = linear_fit(f[None, :], d.yg)
        err = float(n_sub[0]) + (1.0 if float(cv_sub[0]) < _DEGENERATE_CV else 0.0)
        if math.isfinite(err) and (best is None or err < best[0]):
            best = (err, p, theta)
    if best is None:
        return _invalid(fn)
    _, p, theta = best
    if step and d.xg.size < d.x.size:  # exhaustive search over the full-data midpoints near the grid optimum
        xs = (d.x - d.mx) / d.sx
        mids = 0.5 * (xs[1:] + xs[:-1])
        gap = 2.0 * float(np.max(np.diff((d.xg - d.mx) / d.sx), initial=0.0))
        near = mids[np.abs(mids - theta[0]) <= gap]
        if near.size:
            _, _, nm, _ = linear_fit(p.evaluate(near[:, None], d.x), d.y)
            if math.isfinite(float(nm.min())):
                theta = near[int(np.argmin(nm))][None]
    if not step and d.xg.size < d.x.size:  # polish on all samples
        polished = refine_theta(p, theta, d.x, d.y, 20)
        if row_values(p, polished, d.x) is not None:
            theta = polished
    return _finish(fn, d, p, theta)


def fit_affine(
    x: torch.Tensor | np.ndarray | Sequence[float],
    y: torch.Tensor | np.ndarray | Sequence[float],
    fn: SymbolicFunction | str,
    *,
    lib: SymbolicLibrary | None = None,
    n_starts: int = 3,
    max_grid_points: int = _MAX_GRID_POINTS,
) -> AffineFit:
    """Fit ``y ~ c*f(a*x+b)+d`` for one library function.

    Args:
        x, y: samples of the edge input and output.
        fn: a :class:`SymbolicFunction` or a name looked up in ``lib`` (default library).
        n_starts: number of grid optima refined with least squares.
        max_grid_points: the coarse grid uses at most this many samples (spread over the range of ``x``).

    Shapes:
        x, y: ``(n,)`` (or anything reshapeable to it).

    Example:
        >>> xs = torch.linspace(-1, 1, 200)
        >>> fit = fit_affine(xs, 2 * torch.sin(3 * xs + 0.5) + 1, "sin")
        >>> [round(v, 5) for v in fit.params]
        [3.0, 0.5, 2.0, 1.0]
    """
    if isinstance(fn, str):
        fn = resolve_library(lib)[fn]
    d = _prepare(x, y, max_grid_points)
    special = _special_fit(fn, d)
    if special is not None:
        return special
    cands = _grid_phase(fn, d, n_starts)
    return _refine_phase(fn, d, cands) if cands else _invalid(fn)


def fit_library(
    x: torch.Tensor | np.ndarray | Sequence[float],
    y: torch.Tensor | np.ndarray | Sequence[float],
    lib: SymbolicLibrary | Sequence[str] | None = None,
    *,
    n_starts: int = 3,
    max_grid_points: int = _MAX_GRID_POINTS,
    refine_top: int | None = 8,
) -> list[AffineFit]:
    """:func:`fit_affine` for every function of ``lib`` (library order); see :func:`rank_fits` to sort.

    All functions get the coarse grid; least-squares refinement runs for the ``refine_top`` functions with the
    best grid error plus any within a factor 100 of the best (``refine_top=None`` refines all). Functions that
    were not refined keep their grid constants (their r2 is a lower bound).

    Shapes:
        x, y: ``(n,)``.
    """
    library = resolve_library(lib)
    d = _prepare(x, y, max_grid_points)
    out: dict[str, AffineFit] = {}
    grids: dict[str, list] = {}
    for name, fn in library.items():
        special = _special_fit(fn, d)
        if special is not None:
            out[name] = special
        else:
            grids[name] = _grid_phase(fn, d, n_starts)
    errs = {n: (c[0][0] if c else math.inf) for n, c in grids.items()}
    best_err = min(errs.values(), default=math.inf)
    ranked = sorted(errs, key=lambda n: errs[n])
    chosen = set(ranked if refine_top is None else ranked[:refine_top])
    chosen |= {n for n, e in errs.items() if e <= 100 * max(best_err, 1e-14)}
    for name, cands in grids.items():
        fn = library[name]
        if not cands:
            out[name] = _invalid(fn)
        elif name in chosen:
            out[name] = _refine_phase(fn, d, cands)
        else:
            out[name] = _finish(fn, d, cands[0][1], cands[0][2])
    return [out[n] for n in library]


def rank_fits(fits: Sequence[AffineFit], *, weight_simple: float = 0.8, nmse_floor: float = 1e-12) -> list[AffineFit]:
    """Sort fits by pykan's score ``weight_simple * complexity + (1 - weight_simple) * log2(nmse + floor)``.

    Lower is better. pykan uses a floor of ``1e-5`` (``log2(1 + 1e-5 - r2)``), which cannot tell an r2 of
    0.99999 from an exact fit; the default floor here is ``1e-12``. Degenerate and invalid fits go last.
    """
    if not 0.0 <= weight_simple <= 1.0:
        raise ValueError(f"weight_simple must be in [0, 1], got {weight_simple}")
    out = []
    for f in fits:
        score = weight_simple * f.complexity + (1 - weight_simple) * math.log2(max(f.nmse, 0.0) + nmse_floor)
        if f.degenerate or not f.valid:
            score = math.inf if not f.valid else score + 1e6
        out.append(replace(f, score=score))
    # near-ties (e.g. sin(u) and cos(u - pi/2)) go to the simpler complexity, then to the smaller shift |b|
    return sorted(out, key=lambda f: (round(f.score, 3), f.complexity, abs(f.b) > 1e-6, abs(f.b), f.score))
