"""Fitting library functions to edges: the affine fit ``y ~ c*f(a*x+b)+d`` and pykan's suggest/fix/auto_symbolic.

The pure part (:func:`fit_affine`, :func:`fit_library`, :func:`rank_fits`) knows nothing about models. It fits
each function in a *reduced* parameterisation without redundant constants (see :class:`SymbolicFunction.kind`):
a coarse grid over the nonlinear parameters with the linear ones ``(c, d)`` in closed form for every grid point
at once, then ``scipy.optimize.least_squares`` from the best few grid points (variable projection: ``(c, d)`` stay
closed form during refinement). Fits that only work in a degenerate limit (``cos(0.001*x)`` imitating ``x^2``,
``(x + 1000)^2`` imitating a line) are flagged ``degenerate`` and ranked last.

The model-facing part (:func:`suggest_symbolic`, :func:`fix_symbolic`, :func:`unfix_symbolic`, :func:`auto_symbolic`)
reads edge samples from a :class:`kanlens.model.KAN` and writes into its symbolic layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..utils import check_kwargs, is_int, warn_user
from .library import SymbolicFunction, SymbolicLibrary, resolve_library

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


def _linear_fit(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Closed-form ``(c, d, nmse, cv)`` of ``y ~ c f + d`` for each row of ``f`` ``(R, n)``; invalid rows -> inf."""
    finite = np.isfinite(f).all(-1)
    f = np.where(finite[:, None], f, 0.0)
    fm = f.mean(-1, keepdims=True)
    fc = f - fm
    yc = y - y.mean()
    var_f = np.einsum("rn,rn->r", fc, fc) / f.shape[-1]
    var_y = float(yc @ yc) / y.size
    cov = fc @ yc / y.size
    ok = finite & (var_f > 1e-300)
    c = np.where(ok, cov / np.maximum(var_f, 1e-300), 0.0)
    d = y.mean() - c * fm[:, 0]
    if var_y <= 0:
        nmse = np.zeros_like(cov)
    else:
        resid = yc[None, :] - c[:, None] * fc
        nmse = np.einsum("rn,rn->r", resid, resid) / y.size / var_y
    nmse = np.where(ok, nmse, np.inf)
    with np.errstate(over="ignore", invalid="ignore"):  # huge values of a function far outside its range
        rms = np.sqrt(np.einsum("rn,rn->r", f, f) / f.shape[-1])
        cv = np.sqrt(var_f) / np.maximum(rms, 1e-300)
    return c, d, nmse, cv


@dataclass(frozen=True)
class _Param:
    """How a reduced parameter vector ``theta`` maps to ``u = a*x + b`` for one function (and one sign)."""

    fn: SymbolicFunction
    mode: str  # "shift" (u = s*(x - x0)), "scale" (u = alpha*xs), "general" (u = alpha*xs + beta)
    sign: float
    mx: float
    sx: float

    def ab(self, theta: np.ndarray) -> tuple[float, float]:
        if self.mode == "shift":
            x0 = self.mx + self.sx * theta[0]
            return self.sign, -self.sign * x0
        if self.mode == "scale":
            return theta[0] / self.sx, -theta[0] * self.mx / self.sx
        return theta[0] / self.sx, theta[1] - theta[0] * self.mx / self.sx

    def grid(self, xs_sorted: np.ndarray) -> np.ndarray:
        fn = self.fn
        if self.mode == "shift":
            if fn.degree == 0:  # step: every midpoint between samples (objective is piecewise constant)
                mids = 0.5 * (xs_sorted[1:] + xs_sorted[:-1])
                return np.concatenate([mids, xs_sorted[:1] - 1, xs_sorted[-1:] + 1])[:, None]
            far = np.array([5.0, 7.0, 10.0, 15.0, 25.0, 50.0])
            return np.concatenate([np.linspace(-4, 4, 81), far, -far])[:, None]
        if self.mode == "scale":
            return (self.sign * np.logspace(-2, math.log10(25.0), 48))[:, None]
        alphas = self.sign * np.logspace(math.log10(0.03), math.log10(40.0), 52)
        if fn.period is not None:
            span = fn.period / 2 if fn.half_period_flips else fn.period
            betas = np.linspace(-span / 2, span / 2, 13)[:-1]
            aa, bb = np.meshgrid(alphas, betas, indexing="ij")
            return np.stack([aa.reshape(-1), bb.reshape(-1)], -1)
        # centre t = -beta/alpha of the feature, in standard units; the step shrinks as the feature gets steeper
        rows = []
        for al in alphas:
            n_t = int(np.clip(np.ceil(7.0 * abs(al) / 1.0), 21, 401)) | 1
            t = np.linspace(-3.5, 3.5, n_t)
            rows.append(np.stack([np.full_like(t, al), -al * t], -1))
        return np.concatenate(rows)

    def evaluate(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``f(u)`` for each row of ``theta`` ``(R, p)`` at samples ``x`` ``(n,)`` -> ``(R, n)`` (NaN rows: invalid)."""
        if self.mode == "shift":
            u = self.sign * (x[None, :] - (self.mx + self.sx * theta[:, :1]))
        else:
            xs = (x[None, :] - self.mx) / self.sx
            u = theta[:, :1] * xs if self.mode == "scale" else theta[:, :1] * xs + theta[:, 1:2]
        ok = self.fn.interval_ok(u.min(-1), u.max(-1))
        f = self.fn.numpy(u)
        return np.where(ok[:, None], f, np.nan)


def _parameterisations(fn: SymbolicFunction, mx: float, sx: float) -> list[_Param]:
    signs = (1.0,) if fn.parity is not None else (1.0, -1.0)
    if fn.kind in ("power", "log"):
        return [_Param(fn, "shift", s, mx, sx) for s in signs]
    if fn.kind == "exp":
        return [_Param(fn, "scale", s, mx, sx) for s in (1.0, -1.0)]
    return [_Param(fn, "general", s, mx, sx) for s in signs]


# coarse (a, b) grid of F(a*t + b) on a standardised input t, for searches that score many (a, b) at once with a
# criterion of their own (a function plus a polynomial; membership of a singular subspace)
GRID_SLOPES = np.geomspace(0.1, 10.0, 25)  # |a|
GRID_SHIFTS = np.linspace(-4.0, 4.0, 33)


def affine_grid(slopes: np.ndarray = GRID_SLOPES, shifts: np.ndarray = GRID_SHIFTS) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(a, b)`` with ``a`` in ``+-slopes`` and ``b`` in ``shifts``, as two flat arrays (``a`` major)."""
    a = np.concatenate([-slopes, slopes])
    return np.repeat(a, shifts.size), np.tile(shifts, a.size)


def zoom_affine(score, a0: float, b0: float, e0: float, ra: float, rb: float,
                rounds: int = 4) -> tuple[float, float, float]:
    """``(e, a, b)``: ``(a0, b0)`` (score ``e0``) moved to the best point of ``rounds`` finer 11 x 11 grids around
    the current best, ``a`` scaled by ``exp(+-ra)``, ``b`` shifted by ``+-rb``, both ranges shrinking 4x per round.

    ``score(a, b)``: flat arrays -> scores (lower is better, ``inf`` for unusable points).
    """
    for _ in range(rounds):
        ga, gb = a0 * np.exp(np.linspace(-ra, ra, 11)), b0 + np.linspace(-rb, rb, 11)
        aa, bb = np.repeat(ga, gb.size), np.tile(gb, ga.size)
        e = score(aa, bb)
        j = int(np.argmin(e))
        if e[j] < e0:
            e0, a0, b0 = float(e[j]), float(aa[j]), float(bb[j])
        ra, rb = ra / 4, rb / 4
    return e0, a0, b0


def subsample_points(x: np.ndarray, y: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= m:
        return x, y
    order = np.argsort(x)
    idx = order[np.round(np.linspace(0, x.size - 1, m)).astype(int)]
    return x[idx], y[idx]


def _row(p: _Param, theta: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """``f(u)`` at one parameter vector, or ``None`` when ``u`` leaves the domain (cheap: ``u`` is monotone)."""
    if p.mode == "shift":
        u = p.sign * (x - (p.mx + p.sx * theta[0]))
    elif p.mode == "scale":
        u = theta[0] * (x - p.mx) / p.sx
    else:
        u = theta[0] * (x - p.mx) / p.sx + theta[1]
    lo, hi = (u[0], u[-1]) if u[0] <= u[-1] else (u[-1], u[0])  # x is sorted
    if not bool(p.fn.interval_ok(np.array([lo]), np.array([hi]))[0]):
        return None
    f = p.fn.numpy(u)
    return f if np.isfinite(f).all() else None


def _projected_residuals(f: np.ndarray, yc: np.ndarray) -> np.ndarray:
    """Residual rows of ``y ~ c f + d`` with ``(c, d)`` eliminated (variable projection); ``f`` ``(R, n)``."""
    fc = f - f.mean(-1, keepdims=True)
    var = np.einsum("rn,rn->r", fc, fc)
    c = (fc @ yc) / np.maximum(var, 1e-300)
    return yc[None, :] - c[:, None] * fc


def _refine(p: _Param, theta0: np.ndarray, x: np.ndarray, y: np.ndarray, max_iter: int) -> np.ndarray:
    """Levenberg-Marquardt over the 1-2 nonlinear parameters (central-difference Jacobian, one batched call).

    Steps that leave the function's domain are rejected like steps that increase the cost.
    """
    yc = (y - y.mean()) / (float(np.linalg.norm(y - y.mean())) + 1e-300)
    theta = np.asarray(theta0, dtype=np.float64).copy()
    k = theta.size
    f0 = _row(p, theta, x)
    if f0 is None:
        return theta
    r = _projected_residuals(f0[None, :], yc)[0]
    cost = float(r @ r)
    lam = 1e-3
    eye = np.eye(k)
    for _ in range(max_iter):
        h = 1e-6 * np.maximum(np.abs(theta), 1e-3)
        rows = np.concatenate([theta[None, :] + np.diag(h), theta[None, :] - np.diag(h)])
        f = p.evaluate(rows, x)
        ok = np.isfinite(f).all(-1)
        res = _projected_residuals(np.where(ok[:, None], f, 0.0), yc)
        jac = np.zeros((x.size, k))
        for j in range(k):
            if ok[j] and ok[k + j]:
                jac[:, j] = (res[j] - res[k + j]) / (2 * h[j])
            elif ok[j]:
                jac[:, j] = (res[j] - r) / h[j]
            elif ok[k + j]:
                jac[:, j] = (r - res[k + j]) / h[j]
        a_mat, g = jac.T @ jac, jac.T @ r
        if not np.isfinite(a_mat).all() or float(np.abs(g).max()) < 1e-30:
            break
        improved = False
        while lam < 1e12:
            try:
                delta = np.linalg.solve(a_mat + lam * (np.diag(np.diag(a_mat)) + 1e-30 * eye), -g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            f_new = _row(p, theta + delta, x)
            if f_new is not None:
                r_new = _projected_residuals(f_new[None, :], yc)[0]
                cost_new = float(r_new @ r_new)
                if cost_new < cost:
                    rel = (cost - cost_new) / max(cost, 1e-300)
                    theta, r, cost = theta + delta, r_new, cost_new
                    lam = max(lam / 5, 1e-12)
                    improved = True
                    break
            lam *= 4
        if not improved or rel < 1e-12 or cost < 1e-30:
            break
    return theta


def canonical_params(fn: SymbolicFunction, a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
    """Equivalent constants with the redundancy of ``c*f(a*x+b)+d`` removed.

    ``power`` functions get ``|a| = 1`` (``a = 1`` when even/odd), ``log`` ``|a| = 1``, ``exp`` ``b = 0``; even/odd
    functions get ``a > 0``; periodic functions get ``b`` reduced modulo the (half) period.
    """
    if fn.kind == "zero":
        return (0.0, 0.0, 0.0, d)
    if fn.kind == "identity":
        return (1.0, 0.0, c * a, c * b + d)
    if fn.kind == "power" and a != 0:
        k = abs(a)
        c, a, b = c * k**fn.degree, a / k, b / k
    elif fn.kind == "log" and a != 0:
        k = abs(a)
        d, a, b = d + c * math.log(k), a / k, b / k
    elif fn.kind == "exp":
        scale = math.exp(b) if abs(b) < 700 else None
        if scale is not None and math.isfinite(c * scale):
            c, b = c * scale, 0.0
    if a < 0 and fn.parity == "even":
        a, b = -a, -b
    elif a < 0 and fn.parity == "odd":
        a, b, d, c = -a, -b, d + c * fn.odd_shift, -c
    if fn.period is not None and a != 0:
        span = fn.period / 2 if fn.half_period_flips else fn.period
        n = math.floor((b + span / 2) / span)
        if n:
            b -= n * span
            if fn.half_period_flips and n % 2:
                c = -c
    return (a, b, c, d)


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
        c, dd, nmse, _ = _linear_fit(d.x[None, :], d.y)
        return AffineFit(fn.name, 1.0, 0.0, float(c[0]), float(dd[0]), 1 - float(nmse[0]), float(nmse[0]),
                         fn.complexity)
    return None


def _grid_phase(fn: SymbolicFunction, d: _Prepared, n_starts: int) -> list[tuple[float, _Param, np.ndarray]]:
    """Best grid points (by subsample nmse, degenerate rows penalised) over all sign variants."""
    xs_sorted = (d.xg - d.mx) / d.sx
    cands: list[tuple[float, _Param, np.ndarray]] = []
    for p in _parameterisations(fn, d.mx, d.sx):
        thetas = p.grid(xs_sorted)
        _, _, nmse, cv = _linear_fit(p.evaluate(thetas, d.xg), d.yg)
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


def _finish(fn: SymbolicFunction, d: _Prepared, p: _Param, theta: np.ndarray) -> AffineFit:
    a, b = (float(v) for v in p.ab(theta))
    f = p.evaluate(theta[None, :], d.x)
    c, dd, nmse, cv = _linear_fit(f, d.y)
    a, b, c, dd = canonical_params(fn, a, b, float(c[0]), float(dd[0]))
    nmse_v = float(nmse[0])
    degenerate = float(cv[0]) < _DEGENERATE_CV or (np.isfinite(f).all() and _taylor_regime(fn, f[0], d))
    return AffineFit(fn.name, a, b, c, dd, 1.0 - nmse_v, nmse_v, fn.complexity, degenerate=degenerate)


def _invalid(fn: SymbolicFunction) -> AffineFit:
    return AffineFit(fn.name, math.nan, math.nan, math.nan, math.nan, -math.inf, math.inf, fn.complexity,
                     degenerate=True)


def _refine_phase(fn: SymbolicFunction, d: _Prepared, cands: list[tuple[float, _Param, np.ndarray]]) -> AffineFit:
    step = fn.kind == "power" and fn.degree == 0  # piecewise-constant objective: the grid is the optimum
    best: tuple[float, _Param, np.ndarray] | None = None
    for grid_err, p, theta0 in cands:
        if best is not None and (best[0] < 1e-3 * EXACT_NMSE or grid_err > 1e3 * max(best[0], 1e-12)):
            break  # already exact, or the remaining starts are hopeless
        theta = theta0 if step else _refine(p, theta0, d.xg, d.yg, 60)
        f = _row(p, theta, d.xg)
        if f is None:
            continue
        _, _, n_sub, cv_sub = _linear_fit(f[None, :], d.yg)
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
            _, _, nm, _ = _linear_fit(p.evaluate(near[:, None], d.x), d.y)
            if math.isfinite(float(nm.min())):
                theta = near[int(np.argmin(nm))][None]
    if not step and d.xg.size < d.x.size:  # polish on all samples
        polished = _refine(p, theta, d.x, d.y, 20)
        if _row(p, polished, d.x) is not None:
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


# ============================================================================================== model-facing API
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


def _check_edge(model, l: int, i: int, j: int) -> None:
    for name, v in (("l", l), ("i", i), ("j", j)):
        if not is_int(v):
            raise TypeError(f"{name} must be an int, got {type(v).__name__} ({v!r})")
    if not 0 <= l < model.depth:
        raise IndexError(f"l = {l} is out of range: the model has {model.depth} layers (width {model.width})")
    w_in, w_out = model.width_in[l], model.width_out[l + 1]  # nodes in, subnodes out
    if not 0 <= i < w_in:
        raise IndexError(f"i = {i} is out of range: layer {l} has {w_in} inputs (width {model.width})")
    if not 0 <= j < w_out:
        raise IndexError(f"j = {j} is out of range: layer {l} has {w_out} outputs (width {model.width})")


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
    _check_edge(model, l, i, j)
    if x is not None:
        from ..utils import check_tensor

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
    _check_edge(model, l, i, j)
    if _edge_is_pruned(model, l, i, j):
        raise ValueError(f"edge (l={l}, i={i}, j={j}) is pruned (mask 0); there is no function to fit")
    xs, ys = edge_samples(model, l, i, j, x)
    library = resolve_library(lib)
    rows = rank_fits(fit_library(xs, ys, library), weight_simple=weight_simple)
    table = SuggestionTable((l, i, j), rows[:topk])
    if verbose:
        import logging

        logging.getLogger(__name__).info("%r", table)
    return table


# pykan options with no kanlens counterpart (kanlens fits a, b without pykan's grid search): accepted, ignored
_PYKAN_SUGGEST = ("a_range", "b_range", "r2_loss_fun", "c_loss_fun")
_PYKAN_FIX = ("a_range", "b_range", "verbose", "random", "log_history")
_PYKAN_AUTO = ("a_range", "b_range", "r2_loss_fun", "c_loss_fun", "log_history")


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
    _check_edge(model, l, i, j)
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


def unfix_symbolic(model, l: int, i: int, j: int) -> None:
    """Turn edge ``(l, i, j)`` back into a spline edge (pykan's ``unfix_symbolic``)."""
    _check_edge(model, l, i, j)
    model.symbolic[l].unfix(i, j)
    with torch.no_grad():
        model.layers[l].mask[j, i] = 1.0


@dataclass
class EdgeChoice:
    """What :func:`auto_symbolic` did with one edge."""

    edge: tuple[int, int, int]
    status: str  # "fixed", "kept" (r2 below threshold), "symbolic" (already), "pruned"
    chosen: AffineFit | None
    candidates: list[AffineFit]
    all_fits: list[AffineFit] = field(default_factory=list, repr=False)


class AutoSymbolicTable(Sequence):
    """Per-edge outcome of :func:`auto_symbolic`; the repr lists candidates with the chosen row marked ``»``."""

    def __init__(self, rows: Sequence[EdgeChoice]) -> None:
        self.rows = list(rows)

    def __getitem__(self, k):  # type: ignore[override]
        return self.rows[k]

    def __len__(self) -> int:
        return len(self.rows)

    def chosen(self) -> dict[tuple[int, int, int], str]:
        """``{(l, i, j): function name}`` for the edges that were fixed."""
        return {r.edge: r.chosen.name for r in self.rows if r.status == "fixed" and r.chosen is not None}

    def __repr__(self) -> str:
        lines = [f"{'edge':>12} {'':2}{'function':>10} {'r2':>14} {'cplx':>4}  c*f(a*x+b)+d"]
        for r in self.rows:
            tag = f"({r.edge[0]},{r.edge[1]},{r.edge[2]})"
            if not r.candidates:
                lines.append(f"{tag:>12}   {r.status}")
                continue
            for k, c in enumerate(r.candidates):
                mark = "»" if (r.chosen is not None and c is r.chosen and r.status == "fixed") else " "
                note = "" if k else ("" if r.status == "fixed" else f"  [{r.status}]")
                lines.append(f"{tag if k == 0 else '':>12} {mark:2}{c.name:>10} {c.r2:>14.10f} {c.complexity:>4g}  "
                             f"a={c.a:.5g} b={c.b:.5g} c={c.c:.5g} d={c.d:.5g}{note}")
        return "\n".join(lines)


def _prefer_nonzero(ranked: list[AffineFit]) -> AffineFit:
    """The best row, except that ``"0"`` only wins on noise-like edges (no non-zero fit reaches r2 0.5).

    Pruning already removes negligible edges; an edge that survived it but is fitted poorly still carries signal,
    and replacing it by a constant would throw that signal away.
    """
    best = ranked[0]
    if best.name == "0" or (best.complexity == 0 and best.nmse >= 1.0):
        for r in ranked[1:]:
            if r.valid and not r.degenerate and r.r2 >= 0.5 and r.complexity > 0:
                return r
    return best


def auto_symbolic(
    model,
    lib: SymbolicLibrary | Sequence[str] | None = None,
    r2_threshold: float = 0.0,
    weight_simple: float = 0.8,
    x: torch.Tensor | None = None,
    *,
    topk: int = 3,
    verbose: int = 0,
    **pykan_options,
) -> AutoSymbolicTable:
    """Fix every active spline edge to its best library function (pykan's ``auto_symbolic``).

    Edges whose best r2 is below ``r2_threshold`` stay splines (``status="kept"``); already-symbolic edges are
    left alone. pykan's ``a_range``, ``b_range``, ``r2_loss_fun``, ``c_loss_fun`` and ``log_history`` are accepted
    and ignored; any other unknown keyword raises ``TypeError``.

    Returns:
        an :class:`AutoSymbolicTable` with the top ``topk`` candidates of each edge, the chosen one marked.
    """
    check_kwargs(auto_symbolic, pykan_options, _PYKAN_AUTO)
    if not 0.0 <= weight_simple <= 1.0:
        raise ValueError(f"weight_simple must be in [0, 1], got {weight_simple}")
    if not (isinstance(r2_threshold, (int, float)) and r2_threshold <= 1.0):
        raise ValueError(f"r2_threshold must be a number <= 1, got {r2_threshold!r}")
    library = resolve_library(lib)
    acts = model.layer_inputs(x)
    rows: list[EdgeChoice] = []
    for l in range(model.depth):
        spline_mask = model.layers[l].mask.detach().cpu()
        sym_mask = model.symbolic[l].mask.detach().cpu()
        for j in range(model.width_out[l + 1]):
            for i in range(model.width_in[l]):
                edge = (l, i, j)
                if sym_mask[j, i] != 0:
                    rows.append(EdgeChoice(edge, "symbolic", None, []))
                    continue
                if spline_mask[j, i] == 0:
                    continue  # pruned: contributes nothing
                xs = acts[l][:, i].detach().cpu().double().numpy()
                with torch.no_grad():
                    ys = model.layers[l].forward_edges(acts[l])[:, j, i].detach().cpu().double().numpy()
                ranked = rank_fits(fit_library(xs, ys, library), weight_simple=weight_simple)
                best = _prefer_nonzero(ranked)
                if best.valid and best.r2 >= r2_threshold:
                    fix_symbolic(model, l, i, j, best.name, params=best.params, lib=library)
                    rows.append(EdgeChoice(edge, "fixed", best, ranked[:topk], ranked))
                else:
                    rows.append(EdgeChoice(edge, "kept", None, ranked[:topk], ranked))
    table = AutoSymbolicTable(rows)
    if verbose:
        import logging

        logging.getLogger(__name__).info("auto_symbolic:\n%r", table)
    return table
