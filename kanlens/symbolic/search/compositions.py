"""One input, one output: formulas a single KAN edge cannot write, fitted directly. Compositions
``c*F(a*G(x) + b) + d`` of two library functions (``log(1 + x**2)``), powers times library functions
(``x*exp(-x)``, ``x**3/(exp(x) - 1)``), and a library function plus a quadratic (``x + sin(x)``, ``cosh(x) - x**2/2``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sympy

from .. import fit as sfit
from .. import formula as sform
from ..values import LAMBDIFY_MODULES
from .candidates import Candidate, Provenance
from .context import SearchContext
from .edges import usable
from .views import snap

__all__ = ["Compositions", "compositions", "function_plus_polynomial", "power_compositions", "power_products"]


# plain inner functions G, by library name; "cosh" is (exp(x) + exp(-x)) / 2, written with the library's exp
_INNER = ("x^2", "exp", "log", "sqrt", "1/x", "cosh")


def _inner_expr(name: str, library, var: sympy.Symbol) -> sympy.Expr | None:
    """``G(var)`` for an ``_INNER`` name, None when the library lacks the functions it is written with."""
    if name == "cosh":
        if "exp" not in library:
            return None
        return (sform.edge_expr(library["exp"], (1.0, 0.0, 1.0, 0.0), var)
                + sform.edge_expr(library["exp"], (-1.0, 0.0, 1.0, 0.0), var)) / 2
    if name not in library:
        return None
    return sform.edge_expr(library[name], (1.0, 0.0, 1.0, 0.0), var)


def compositions(x: np.ndarray, y: np.ndarray, library, var: sympy.Symbol, top: int = 6, per_inner: int = 3):
    """``(nmse, c*F(a*G(x) + b) + d)``, best first (NMSE against ``y``): a library function ``F`` of a plain inner
    function ``G``.

    One input needing two nested functions (``1/(1 + x**2)``, ``log(1 + x**2)``, ``1/sqrt(1 - x**2)``,
    ``1/(exp(x) + exp(-x))``) is one edge of neither a ``[1, 1]`` KAN nor, often, of the pruned ``[1, 3, 1]``, whose
    inner edge tends to stay linear. Products of a power and a library function (``x*exp(-x)``, see
    :func:`power_products`) compete in the same list.
    """
    out = []
    inners = _inner_values(x, library, var)
    for inner, u in inners:
        if not _varies(u):
            continue
        with np.errstate(all="ignore"):
            fits = usable(sfit.rank_fits(sfit.fit_library(u, y, library, refine_top=None)))
        if not fits:
            continue
        # the data come from a KAN: several functions fit them about equally (1/(a*u + b) and the pole form
        # tan(a*u - pi/2)); keep the simplest few close to the best, the refit on the real data decides
        best = min(f.nmse for f in fits)
        close = [f for f in fits if f.nmse <= 10 * best + 1e-12]
        for f in sorted(close, key=lambda f: (f.complexity, f.nmse))[:per_inner]:
            out.append((f.nmse, sform.edge_expr(library[f.name], f.params, inner)))
    out += power_products(x, y, library, var, per_power=per_inner)
    out += power_compositions(x, y, library, var, inners)
    # each family reports the NMSE of its own fit (of y, of y / x**p, of a subsample): ranked together they are
    # scored again on (x, y) itself, else a quotient's 4e-7 outranks the composition that fits y best
    scored = [(_nmse_on(e, var, x, y), e) for _, e in out]
    return sorted(scored, key=lambda t: t[0])[:top]


def _nmse_on(expr: sympy.Expr, var: sympy.Symbol, x: np.ndarray, y: np.ndarray) -> float:
    """NMSE of ``expr`` (of ``var``) against ``y`` at ``x``; ``inf`` where it cannot be evaluated."""
    try:
        f = sympy.lambdify([var], expr, modules=LAMBDIFY_MODULES)
        with np.errstate(all="ignore"):
            return sform.nmse(f(x), y)
    except Exception:  # an unevaluable formula ranks last
        return math.inf


_PLUS_DEGREE = 2  # degree of the polynomial added to a library function (a cubic: the polynomial stage's)
_PLUS_STARTS = 4  # coarse grid points zoomed into, per function


def _plus_functions(library) -> list[tuple[str, object, object]]:
    """``(name, numpy F(u), sympy F(u))`` for the library functions that a low-degree polynomial does not already
    contain."""
    out = []
    for name, fn in library.items():
        if fn.kind in ("zero", "identity") or (fn.kind == "power" and float(fn.degree).is_integer()
                                                 and 0 <= fn.degree <= _PLUS_DEGREE):
            continue
        out.append((name, fn.numpy, fn.sympy_fn))
    return out


def function_plus_polynomial(x: np.ndarray, y: np.ndarray, library, var: sympy.Symbol, top: int = 3,
                              max_points: int = 256) -> list[tuple[float, sympy.Expr]]:
    """``(nmse, c*F(a*x + b) + p(x))``, best first: a library function plus a polynomial of degree
    ``_PLUS_DEGREE`` (``x + sin(x)``; and a pair of exponentials, ``cosh(x) - x**2/2``).

    A KAN prunes such a one-input function to one edge, and the sum is no library function. ``(a, b)`` come from a
    grid over the standardised input (``c`` and ``p`` eliminated by least squares: the residual of ``y`` against
    the polynomials, projected on ``F``'s); the joint refit of all constants on the real data polishes them.
    ``nmse``: the grid optimum's, on a subsample of ``max_points`` points.
    """
    xs, ys = sfit.subsample_points(x, y, max_points)
    mx, sx = float(xs.mean()), float(xs.std())
    if not sx > 0:
        return []
    t = (xs - mx) / sx
    q, _ = np.linalg.qr(np.vander(t, _PLUS_DEGREE + 1))
    yr = ys - q @ (q.T @ ys)
    var_y, var_r = float(np.sum((ys - ys.mean()) ** 2)), float(yr @ yr)
    if not var_r > 1e-20 * var_y:
        return []  # y is itself a low-degree polynomial: the polynomial stage's
    tv = (var - sympy.Float(mx)) / sympy.Float(sx)  # t as a sympy expression of var

    def scores(f_np, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """NMSE of ``y`` against the polynomials plus ``F(a*t + b)`` at each ``(a, b)`` (inf where unusable)."""
        nmse = np.full(a.size, np.inf)
        with np.errstate(all="ignore"):
            f = f_np(a[:, None] * t[None, :] + b[:, None])
            ok = np.isfinite(f).all(1) & (np.abs(f).max(1) < 1e12)
            if not ok.any():
                return nmse
            f = f[ok]
            fr = f - (f @ q) @ q.T
            norm = np.einsum("gn,gn->g", fr, fr)
            proj = fr @ yr
            # F must add something the polynomial does not have (not a Taylor-regime quadratic)
            new = norm > 1e-10 * np.einsum("gn,gn->g", f, f)
            nmse[ok] = np.where(new, (var_r - proj**2 / np.maximum(norm, 1e-300)) / var_y, np.inf)
        return nmse

    a_all, b_all = sfit.affine_grid()
    out = []
    for _, f_np, f_sym in _plus_functions(library):
        err, ak, bk = math.inf, 0.0, 0.0
        coarse = scores(f_np, a_all, b_all)
        for k in np.argsort(coarse)[:_PLUS_STARTS]:
            if not math.isfinite(coarse[k]):
                continue
            # zoom in: the polynomial takes most of y, and the residual left for F is sensitive to (a, b) (cosh(x)
            # - x**2/2: b off by one coarse step leaves nmse 7e-3, the right one 3e-14)
            e0, a0, b0 = sfit.zoom_affine(functools.partial(scores, f_np), float(a_all[k]), float(b_all[k]),
                                          float(coarse[k]), 0.2, float(sfit.GRID_SHIFTS[1] - sfit.GRID_SHIFTS[0]))
            if e0 < err:
                err, ak, bk = e0, a0, b0
        if not math.isfinite(err):
            continue
        with np.errstate(all="ignore"):
            fk = f_np(ak * t + bk)
        term = f_sym(sympy.Float(ak) * tv + sympy.Float(bk))
        out.append((err, _plus_polynomial_expr([fk], [term], t, ys, tv)))
    if "exp" in library:
        out += _exponential_pair_plus_polynomial(t, ys, yr, q, var_y, library["exp"].sympy_fn, tv)
    return sorted(out, key=lambda r: r[0])[:top]


def _plus_polynomial_expr(cols: list[np.ndarray], terms: list[sympy.Expr], t: np.ndarray, y: np.ndarray,
                          tv: sympy.Expr) -> sympy.Expr:
    """``sum_k c_k * terms[k] + p(tv)`` with ``c`` and the polynomial ``p`` (degree ``_PLUS_DEGREE``) fitted by
    least squares to ``y``; ``cols`` are the terms' values at the standardised inputs ``t`` (``tv`` in sympy)."""
    coef = np.linalg.lstsq(np.column_stack([*cols, np.vander(t, _PLUS_DEGREE + 1)]), y, rcond=None)[0]
    k = len(terms)
    poly = sum(sympy.Float(c) * tv ** (_PLUS_DEGREE - j) for j, c in enumerate(coef[k:]))
    return sympy.Add(*[sympy.Float(c) * e for c, e in zip(coef[:k], terms)]) + sympy.expand(poly)


def _exponential_pair_plus_polynomial(t: np.ndarray, y: np.ndarray, yr: np.ndarray, q: np.ndarray, var_y: float,
                                      exp_sym, tv: sympy.Expr) -> list[tuple[float, sympy.Expr]]:
    """``(nmse, c1*exp(a*x) + c2*exp(-a*x) + p(x))``: cosh and sinh with any shift (``cosh(x) - x**2/2``; pykan's
    library has neither), a 1-D search over ``a`` with ``c1``, ``c2`` and ``p`` linear (see
    :func:`function_plus_polynomial`, whose standardised input ``t`` (``tv`` in sympy), data ``y``, their residual
    ``yr`` off the polynomials and the polynomial basis ``q`` it takes)."""

    def err(a: float) -> tuple[float, np.ndarray]:
        with np.errstate(all="ignore"):
            cols = np.column_stack([np.exp(a * t), np.exp(-a * t)])
        if not np.isfinite(cols).all() or np.abs(cols).max() > 1e12:
            return math.inf, cols
        cr = cols - q @ (q.T @ cols)
        c = np.linalg.lstsq(cr, yr, rcond=None)[0]
        r = yr - cr @ c
        return float(r @ r) / var_y, cols

    grid = np.geomspace(0.05, 10.0, 120)
    errs = [err(float(a))[0] for a in grid]
    k = int(np.argmin(errs))
    if not math.isfinite(errs[k]):
        return []
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    for _ in range(3):  # zoom in on the bracket
        fine = np.linspace(lo, hi, 21)
        fe = [err(float(a))[0] for a in fine]
        j = int(np.argmin(fe))
        lo, hi = fine[max(j - 1, 0)], fine[min(j + 1, fine.size - 1)]
    a = float(fine[j])
    e, cols = err(a)
    terms = [exp_sym(sympy.Float(a) * tv), exp_sym(-sympy.Float(a) * tv)]
    return [(e, _plus_polynomial_expr([cols[:, 0], cols[:, 1]], terms, t, y, tv))]


def _inner_values(x: np.ndarray, library, var: sympy.Symbol) -> list[tuple[sympy.Expr, np.ndarray]]:
    """``(G(var), G(x))`` for each ``_INNER`` function the library can write (values may be non-finite: callers
    check :func:`_varies` on the points they use)."""
    out = []
    for name in _INNER:
        inner = _inner_expr(name, library, var)
        if inner is None:
            continue
        with np.errstate(all="ignore"):
            u = sform.real_values(sympy.lambdify([var], inner, modules="numpy")(x))
        if u.shape == x.shape:
            out.append((inner, u))
    return out


def _varies(u: np.ndarray) -> bool:
    """Finite everywhere and not constant: usable as the argument of a fitted function."""
    return bool(np.isfinite(u).all() and np.ptp(u) > 0)


_POWERS = (1, 2, 3, -1, -2, 0.5, -0.5)


def _power_quotients(x: np.ndarray, y: np.ndarray, var: sympy.Symbol, max_points: int):
    """``(x**p, keep, y / x**p on keep)`` for each power ``p`` in ``_POWERS`` that is finite on ``x``; ``keep``
    selects (at most ``max_points`` of) the points where ``|x**p|`` is at least a tenth of its maximum (near
    ``x = 0`` the quotient would amplify the data's error)."""
    for p in _POWERS:
        with np.errstate(all="ignore"):
            xp = np.power(x, p)
        if not np.isfinite(xp).all():
            continue  # a fractional power of negative inputs, or a negative power of 0
        keep = np.flatnonzero(np.abs(xp) >= 0.1 * np.abs(xp).max())[:max_points]
        if keep.size < 20:
            continue
        yield var ** (sympy.Rational(p).limit_denominator(2)), keep, y[keep] / xp[keep]


def power_products(x: np.ndarray, y: np.ndarray, library, var: sympy.Symbol, per_power: int = 3,
                    max_points: int = 256) -> list[tuple[float, sympy.Expr]]:
    """``(nmse, x**p * (c*F(a*x + b) + d))``: a power of the input times a library function (``x*exp(-x)``).

    ``F`` is fitted to ``y / x**p`` (see :func:`_power_quotients`); ``nmse`` is that fit's, on a subsample of
    ``max_points`` points.
    """
    out = []
    for power, keep, zs in _power_quotients(x, y, var, max_points):
        with np.errstate(all="ignore"):
            fits = usable(sfit.rank_fits(sfit.fit_library(x[keep], zs, library, refine_top=None)))
        for f in sorted(fits, key=lambda f: f.nmse)[:per_power]:
            out.append((f.nmse, power * sform.edge_expr(library[f.name], f.params, var)))
    return out


_OUTER = ("1/x", "1/x^2", "exp", "log", "sqrt", "1/sqrt(x)")


def power_compositions(x: np.ndarray, y: np.ndarray, library, var: sympy.Symbol,
                        inners: list[tuple[sympy.Expr, np.ndarray]] | None = None,
                        max_points: int = 128) -> list[tuple[float, sympy.Expr]]:
    """``(nmse, x**p * (c*F(a*G(x) + b) + d))``: a power times a reciprocal, root, exponential or logarithm of a
    plain inner function (``x**3/(exp(x) - 1)``, ``x/(1 + x**2)**2``); the best ``F`` per power and inner function.

    As :func:`power_products`, on ``y / x**p`` (:func:`_power_quotients`); ``F`` only from ``_OUTER`` and
    ``max_points`` points, since the search runs ``len(_POWERS) * len(_INNER)`` fits. ``inners``: the values of
    :func:`_inner_values` on ``x``, when already computed.
    """
    outer = library.subset([n for n in _OUTER if n in library])
    if not len(outer):
        return []
    inners = _inner_values(x, library, var) if inners is None else inners
    out = []
    for power, keep, zs in _power_quotients(x, y, var, max_points):
        for inner, u_all in inners:
            u = u_all[keep]
            if not _varies(u):
                continue
            with np.errstate(all="ignore"):
                fits = usable(sfit.rank_fits(sfit.fit_library(u, zs, outer, refine_top=2)))
            if fits:
                f = min(fits, key=lambda f: f.nmse)
                out.append((f.nmse, power * sform.edge_expr(outer[f.name], f.params, inner)))
    return out




_MIN_SECONDS = 5.0


class Compositions:
    """One input and one output: :func:`compositions`, then :func:`function_plus_polynomial`; fits near the data
    (:meth:`~kanlens.symbolic.search.candidates.Evaluator.near`) are snapped."""

    name, always = "compositions", False

    def applies(self, ctx: SearchContext) -> bool:
        # the library fits are not interruptible (about 3.5 CPU s for 1,000 points): not started on a budget that
        # cannot hold them (a 1 s search then goes straight to the KAN, whose fit stops at the deadline)
        return (ctx.options.separable and ctx.n_inputs == 1 and ctx.one_output
                and ctx.deadline.left() >= _MIN_SECONDS)

    def run(self, ctx: SearchContext) -> list[Candidate]:
        ev, start = ctx.ev, len(ctx.ev.seen)
        x, y = ev.xtr[:, 0], ev.ytr[:, 0]
        for _, expr in compositions(x, y, ctx.library, ctx.variables[0], top=3):
            if ev.near(ev.refit([expr], Provenance("composition")).test_nmse):
                snap(ev, [expr], Provenance("composition"))
        if not (ev.exact_found or ctx.deadline.expired()):
            for _, expr in function_plus_polynomial(x, y, ctx.library, ctx.variables[0]):
                if ev.near(ev.refit([expr], Provenance("function + polynomial")).test_nmse):
                    snap(ev, [expr], Provenance("function + polynomial"))
        return ev.seen[start:]
