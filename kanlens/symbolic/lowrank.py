"""Sums of products of one-input functions, ``y = sum_ij c_ij p_i(x1) q_j(x2)``: a rank test and basis matching.

A function of two inputs sampled on a grid, ``M[a, b] = f(x1_a, x2_b)``, has rank ``r`` when ``f`` is a sum of
``r`` products (``x1*sin(x2) + x2*cos(x1)``: rank 2; ``g(x1) + h(x2)``: rank 2; ``g(x1) * h(x2)``: rank 1). Its
left singular vectors span the values of the ``p_i`` at the grid's ``x1``, but mixed (any invertible combination
of ``x1`` and ``cos(x1)`` spans the same space). The library functions that lie in that space are found by a
projection test (a function of an affine map of the input or of its square, ``F(a*x + b)``, ``F(a*x**2 + b)``:
``(a, b)`` by a grid, zoom and least-squares polish of the projection residual), sets of ``r`` of them that span
it are ranked, and the coefficients ``c_ij`` of a pair of sets are fitted by linear least squares on the data,
unneeded products dropped.

Everything here is numpy on a few thousand points (milliseconds per function): no KAN is trained.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy
from scipy.optimize import least_squares

from . import fit as sfit
from . import formula as sform

__all__ = ["Member", "grid_spectrum", "membership_tol", "span_members", "spanning_sets", "sum_of_products"]

_STARTS = 3  # optima polished per function
_ZOOMED = 30  # distinct coarse-grid optima zoomed into per function
_MAX_VALUE = 1e8  # a candidate this large on the samples (a pole inside the range) is not a basis function
_TAYLOR = 1e-4  # F(a*t + b) this close (relative) to a cubic in t is in its Taylor regime
_MIN_WINDOW = 0.1  # F(a*t + b) must see an argument window |a| * ptp(t) at least this wide
_NEW_DIRECTION = 1e-6  # a member this close to the span of simpler members adds nothing


@dataclass
class Member:
    """A one-input function whose values lie (nearly) in a singular subspace.

    Attributes:
        expr: the function of the input symbol (sympy, float constants).
        fn: numpy version, raw input values -> function values.
        residual: distance of its normalised sample values from the subspace (0 = inside).
        complexity: :func:`kanlens.symbolic.formula.formula_complexity` of ``expr``.
    """

    expr: sympy.Expr
    fn: Callable[[np.ndarray], np.ndarray]
    residual: float
    complexity: int


def grid_spectrum(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, points: int = 48):
    """Sample ``predict`` on the grid of per-input quantiles of ``x`` and take its SVD.

    Returns ``(xa, xb, u, s, vt)`` (``xa``, ``xb``: the grid values of inputs 0 and 1; ``u s vt`` the SVD of the
    ``(len(xa), len(xb))`` matrix of values), or None when the samples are not finite or too few distinct values
    exist.

    Shapes:
        x: ``(n, 2)``; predict: ``(m, 2) -> (m,)``.
    """
    qs = np.linspace(0.0, 1.0, points)
    xa, xb = (np.unique(np.quantile(x[:, j], qs)) for j in (0, 1))
    if min(xa.size, xb.size) < 8:
        return None
    grid = np.column_stack([np.repeat(xa, xb.size), np.tile(xb, xa.size)])
    with np.errstate(all="ignore"):
        m = np.asarray(predict(grid), dtype=float).reshape(xa.size, xb.size)
    if not np.isfinite(m).all() or not np.abs(m).max() > 0:
        return None
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    return xa, xb, u, s, vt


def _residuals(f: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Relative distance of each row of ``f`` ``(g, m)`` from the span of the orthonormal columns of ``basis``."""
    proj = (f @ basis) @ basis.T
    norm = np.sqrt(np.einsum("gm,gm->g", f, f))
    res = np.sqrt(np.einsum("gm,gm->g", f - proj, f - proj))
    with np.errstate(all="ignore"):
        return np.where(norm > 0, res / np.maximum(norm, 1e-300), np.inf)


def _usable_rows(f: np.ndarray) -> np.ndarray:
    return np.isfinite(f).all(1) & (np.abs(f).max(1) < _MAX_VALUE) & (np.ptp(f, axis=1) > 0)


def _affine_fit(f_np, t: np.ndarray, basis: np.ndarray, kind: str = "general") -> list[tuple[float, float, float]]:
    """``(residual, a, b)`` of the best ``F(a*t + b)`` for up to ``_STARTS`` distinct optima: a coarse grid over
    ``(a, b)``, the ``_ZOOMED`` best distinct grid points zoomed in (vectorised finer grids), the best of those
    polished by least squares. ``kind`` (the library's) drops the parameter a scale absorbs: ``b`` for ``exp``
    (``exp(u + b) = e^b exp(u)``), ``|a|`` for powers (``(a*t + b)**d = a**d (t + b/a)**d``)."""
    poly, _ = np.linalg.qr(np.vander(t, 4))

    def residuals(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances from the subspace (inf in the Taylor regime) and from the cubics."""
        with np.errstate(all="ignore"):
            f = f_np(a[:, None] * t[None, :] + b[:, None])
        ok = _usable_rows(f)
        res, cubic = np.full(a.size, np.inf), np.full(a.size, np.inf)
        if ok.any():
            res[ok] = _residuals(f[ok], basis)
            cubic[ok] = _residuals(f[ok], poly)
            # F in its Taylor regime (cos(0.003*t + pi) ~ -1 + 5e-6 * t**2) is nearly a cubic, which a subspace
            # holding the constant matches closely without being F: such points must not crowd out the true (a, b)
            res[cubic < _TAYLOR] = np.inf
        return res, cubic

    slopes = np.array([1.0]) if kind == "power" else sfit.GRID_SLOPES
    shifts = np.array([0.0]) if kind == "exp" else sfit.GRID_SHIFTS
    a_all, b_all = sfit.affine_grid(slopes, shifts)
    res, cubic = residuals(a_all, b_all)
    # two rankings of the coarse points, taken in turn: by distance, and by the distance relative to what makes F
    # more than a cubic; a slowly varying F (cos(0.24*t + 3)) is close to any subspace with smooth functions in it,
    # on a coarse grid closer than the true F (cos(2.37*t), 4% off in a: distance 0.1), while the second ranking
    # would put a smooth true F (exp(-0.58*t)) behind such look-alikes
    with np.errstate(all="ignore"):
        rel = res / np.maximum(cubic, _TAYLOR)
    order = [int(k) for pair in zip(np.argsort(res), np.argsort(rel)) for k in pair]
    step_a = float(np.log(sfit.GRID_SLOPES[1] / sfit.GRID_SLOPES[0]))
    step_b = float(sfit.GRID_SHIFTS[1] - sfit.GRID_SHIFTS[0])
    zoom_a = step_a if slopes.size > 1 else 0.0
    zoom_b = step_b if shifts.size > 1 else 0.0
    starts: list[tuple[float, float, float]] = []
    seen: list[tuple[float, float]] = []
    for k in order:
        if len(seen) >= _ZOOMED:
            break
        if not math.isfinite(res[k]):
            continue
        a0, b0 = float(a_all[k]), float(b_all[k])
        if any(np.sign(a0) == np.sign(a) and abs(np.log(abs(a0 / a))) <= 2.5 * step_a and abs(b0 - b) <= 2.5 * step_b
               for a, b in seen):
            continue  # a neighbour of a grid point already taken: the same optimum
        seen.append((a0, b0))
        starts.append(sfit.zoom_affine(lambda a, b: residuals(a, b)[0], a0, b0, float(res[k]), zoom_a, zoom_b))

    def params(p: np.ndarray, a0: float, b0: float) -> tuple[float, float]:
        """The polished parameters: both, or the one the kind leaves free (the other stays at its grid value)."""
        if kind == "exp":
            return float(p[0]), b0
        if kind == "power":
            return a0, float(p[0])
        return float(p[0]), float(p[1])

    out = []
    for r0, a0, b0 in sorted(starts)[:_STARTS]:

        def vector(p: np.ndarray, a0: float = a0, b0: float = b0) -> np.ndarray:
            a, b = params(p, a0, b0)
            with np.errstate(all="ignore"):
                v = f_np(a * t + b)
            if not np.isfinite(v).all() or not np.abs(v).max() < _MAX_VALUE:
                return np.full(t.size, 1e3)
            n = float(np.linalg.norm(v))
            return (v - basis @ (basis.T @ v)) / n if n > 0 else np.full(t.size, 1e3)

        p0 = [a0] if kind == "exp" else [b0] if kind == "power" else [a0, b0]
        try:
            fit = least_squares(vector, p0, x_scale="jac", max_nfev=100)
            (a, b), r = params(fit.x, a0, b0), float(np.linalg.norm(fit.fun))
        except (ValueError, FloatingPointError):
            (a, b), r = (a0, b0), r0
        if (not r < r0 or not math.isfinite(float(residuals(np.array([a]), np.array([b]))[0][0]))
                or abs(a) * float(np.ptp(t)) < _MIN_WINDOW):
            # the polish failed, or walked into a regime where F sees so little of its argument that it mimics a
            # simpler function: a polynomial (Taylor), or 1/u next to a pole (tan(0.0008*x**2 - 1.5700))
            (a, b), r = (a0, b0), r0
        out.append((r, a, b))
    return out


def membership_tol(s: np.ndarray, r: int, model_err: float = 0.0) -> float:
    """Distance from the rank-``r`` subspace up to which a function counts as a member, for singular values ``s``
    of a model with relative error ``model_err`` on the data: ten times the noise (the spectrum's tail beyond ``r``,
    or the model's error, whichever is larger) over the subspace's weakest direction, within ``[1e-6, 0.05]``.

    A surrogate formula can be exactly rank 2 with the wrong functions (``cos(0.027*x1)`` for ``x1**2``, 8e-6 off),
    so the tail alone would make the test too strict.
    """
    noise = float(np.linalg.norm(s[r:]))
    if math.isfinite(model_err):
        noise = max(noise, model_err * float(np.linalg.norm(s)))
    return min(max(10.0 * noise / float(s[r - 1]), 1e-6), 5e-2)


def span_members(x: np.ndarray, basis: np.ndarray, library, var: sympy.Symbol, tol: float) -> list[Member]:
    """Library functions of ``var`` whose values at ``x`` lie in the span of ``basis`` (relative residual
    ``<= tol``), best first: the constant ``1``, every library function of ``var`` itself, and each non-polynomial
    one of an affine map of ``var`` or of ``var**2``, ``F(a*var + b)``, ``F(a*var**2 + b)`` (``(a, b)`` fitted to
    the subspace; ``1/(1 + x**2)``). Members in the span of simpler ones are dropped.

    Shapes:
        x: ``(m,)`` sample values, basis: ``(m, r)`` orthonormal columns.
    """
    found: list[Member] = []
    res1 = _residuals(np.ones((1, x.size)), basis)[0]
    if res1 <= tol:
        found.append(Member(sympy.Integer(1), lambda v: np.ones_like(v, dtype=float), float(res1), 0))
    # inner functions G of F(a*G + b): the input, and its square (when that is not an affine map of the input)
    inners: list[tuple[sympy.Expr, Callable[[np.ndarray], np.ndarray]]] = [(var, lambda v: v)]
    if np.ptp(np.abs(x)) < np.ptp(x):  # x changes sign: x**2 is no affine map of x on the samples
        inners.append((var**2, np.square))
    for fn in library.values():
        if fn.kind == "zero":
            continue
        with np.errstate(all="ignore"):
            plain = fn.numpy(x)[None, :]
        if _usable_rows(plain)[0]:
            r = float(_residuals(plain, basis)[0])
            if r <= tol:
                expr = fn.sympy_fn(var)
                found.append(Member(expr, fn.numpy, r, sform.formula_complexity(expr)))
        if fn.kind in ("identity", "power") and float(fn.degree).is_integer() and fn.degree >= 0:
            continue  # shifted monomials are polynomials: found as 1, x, x**2 ... themselves
        for g_expr, g_np in inners:
            g = g_np(x)
            mg, sg = float(g.mean()), float(g.std())
            if not sg > 0:
                continue
            for r, a, b in _affine_fit(fn.numpy, (g - mg) / sg, basis, fn.kind):
                if r > tol:
                    continue
                # back to the raw inner function: F(a*t + b) = F(a/sg * G + (b - a*mg/sg))
                ar, br = a / sg, b - a * mg / sg
                expr = fn.sympy_fn(sympy.Float(ar) * g_expr + sympy.Float(br))
                found.append(Member(expr, lambda v, f=fn.numpy, gn=g_np, ar=ar, br=br: f(ar * gn(v) + br), r,
                                    sform.formula_complexity(expr)))
    kept: list[Member] = []
    span = np.zeros((x.size, 0))
    for m in sorted(found, key=lambda m: (m.complexity, m.residual)):
        with np.errstate(all="ignore"):
            v = np.asarray(m.fn(x), dtype=float)[None, :]
        # cos(x1 - 1.52) next to sin(x1) and cos(x1), or sin(0.0003*x2) next to 1 and x2
        if span.shape[1] and _residuals(v, span)[0] < _NEW_DIRECTION:
            continue
        kept.append(m)
        span = np.linalg.qr(np.column_stack([span, v[0]]))[0]
    return sorted(kept, key=lambda m: (m.residual, m.complexity))


def spanning_sets(x: np.ndarray, basis: np.ndarray, members: list[Member], keep: int = 3,
                  pool: int = 8) -> list[list[Member]]:
    """Sets of ``r = basis.shape[1]`` members whose values span the subspace, best first (the largest principal
    angle's sine, sets within 3x of the best ranked by total complexity); at most ``keep`` sets from the ``pool``
    best members. Sets of nearly dependent functions are skipped.

    Shapes:
        x: ``(m,)``, basis: ``(m, r)`` orthonormal.
    """
    r = basis.shape[1]
    cands = members[:pool]
    if len(cands) < r:
        return []
    with np.errstate(all="ignore"):
        vals = [np.asarray(m.fn(x), dtype=float) for m in cands]
    scored = []
    for combo in itertools.combinations(range(len(cands)), r):
        a = np.column_stack([vals[k] / np.linalg.norm(vals[k]) for k in combo])
        sv = np.linalg.svd(a, compute_uv=False)
        if not sv[-1] > 1e-4 * sv[0]:
            continue
        q, _ = np.linalg.qr(a)
        # the subspace's directions the set misses (largest over the basis vectors)
        miss = float(np.linalg.norm(basis - q @ (q.T @ basis), axis=0).max())
        scored.append((miss, sum(cands[k].complexity for k in combo), combo))
    if not scored:
        return []
    best = min(s[0] for s in scored)
    scored.sort(key=lambda s: (s[0] > 3 * best + 1e-12, s[1], s[0]))
    return [[cands[k] for k in combo] for _, _, combo in scored[:keep]]


def sum_of_products(p: list[Member], q: list[Member], x: np.ndarray,
                    y: np.ndarray) -> tuple[float, sympy.Expr] | None:
    """``(nmse, sum_ij c_ij p_i(x1) q_j(x2))`` (``p``: members in the first input's symbol, ``q``: in the second's)
    fitted by linear least squares on the data; products whose removal does not raise the error (to ``10 x`` the
    full fit's, plus 1e-14) are dropped, smallest first. None when the functions cannot be evaluated on the data.

    Shapes:
        x: ``(n, 2)``, y: ``(n,)``.
    """
    with np.errstate(all="ignore"):
        pv = [np.broadcast_to(np.asarray(m.fn(x[:, 0]), dtype=float), (x.shape[0],)) for m in p]
        qv = [np.broadcast_to(np.asarray(m.fn(x[:, 1]), dtype=float), (x.shape[0],)) for m in q]
    terms = [(i, j) for i in range(len(p)) for j in range(len(q))]
    cols = {t: pv[t[0]] * qv[t[1]] for t in terms}
    if not all(np.isfinite(c).all() for c in cols.values()):
        return None

    def fit(ts: list[tuple[int, int]]) -> tuple[float, np.ndarray]:
        a = np.column_stack([cols[t] for t in ts])
        c = np.linalg.lstsq(a, y, rcond=None)[0]
        return sform.nmse(a @ c, y), c

    err, coef = fit(terms)
    limit = 10 * err + 1e-14
    while len(terms) > 1:
        scale = [abs(c) * float(np.linalg.norm(cols[t])) for c, t in zip(coef, terms)]
        for k in np.argsort(scale):
            trial = terms[:k] + terms[k + 1:]
            e, c = fit(trial)
            if e <= limit:
                terms, err, coef = trial, e, c
                break
        else:
            break
    return err, sympy.Add(*[sympy.Float(c) * p[i].expr * q[j].expr for c, (i, j) in zip(coef, terms)])
