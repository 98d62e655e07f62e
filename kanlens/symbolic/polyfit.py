"""Direct polynomial fits of the target and of simple transforms of it (a check before the KAN runs).

Many formulas of science are low-degree polynomials in their inputs (``x1*x2**2/2``, ``x1**3 - 2*x1*x2``) or
become one after a simple transform of the target (``1/y``, ``log(y)``, ``y**2``). A KAN can represent them, but
its symbolic step must then find a particular arrangement of quadratic edges (``x1*x2 = ((x1 + x2)**2 -
(x1 - x2)**2)/4``); a linear least-squares fit over all monomials finds the polynomial in milliseconds. A fit is
returned only when it reproduces the held-out data to the label noise, after backward elimination of the
monomials it does not need, so a non-polynomial target returns nothing.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import numpy as np
import sympy

from .formula import nmse

__all__ = ["monomial_exponents", "polynomial_candidates"]

# Transforms t of the target: fit P(x) ~ t(y); the formula is the inverse applied to P, numerically (to score a fit)
# and symbolically. ``s`` is the sign of y (all transforms but the identity need a one-signed target).
_Transform = tuple[str, Callable[[np.ndarray, float], np.ndarray], Callable[[np.ndarray, float], np.ndarray],
                   Callable[[sympy.Expr, float], sympy.Expr]]
_TRANSFORMS: list[_Transform] = [
    ("identity", lambda y, s: y, lambda p, s: p, lambda p, s: p),
    ("reciprocal", lambda y, s: 1.0 / y, lambda p, s: 1.0 / p, lambda p, s: 1 / p),
    ("log", lambda y, s: np.log(s * y), lambda p, s: s * np.exp(p), lambda p, s: s * sympy.exp(p)),
    ("square", lambda y, s: y * y, lambda p, s: s * np.sqrt(p), lambda p, s: s * sympy.sqrt(p)),
]


def monomial_exponents(n_vars: int, degree: int) -> list[tuple[int, ...]]:
    """Exponent tuples of all monomials of total degree ``<= degree`` in ``n_vars`` variables, lowest first."""
    out: list[tuple[int, ...]] = []
    for d in range(degree + 1):
        for combo in itertools.combinations_with_replacement(range(n_vars), d):
            e = [0] * n_vars
            for v in combo:
                e[v] += 1
            out.append(tuple(e))
    return out


def _design(x: np.ndarray, exps: Sequence[tuple[int, ...]]) -> np.ndarray:
    cols = [np.prod([x[:, v] ** p for v, p in enumerate(e) if p], axis=0) if any(e) else np.ones(len(x))
            for e in exps]
    return np.stack(cols, axis=1)


def _lstsq(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=0)
    norms[norms == 0] = 1.0
    c, *_ = np.linalg.lstsq(a / norms, t, rcond=None)
    return c / norms


def _applicable(y: np.ndarray, name: str) -> float | None:
    """The sign to use for transform ``name`` on ``y``, or None when it does not apply."""
    if name == "identity":
        return 1.0
    if not (np.all(y > 0) or np.all(y < 0)):
        return None
    a = np.abs(y)
    if name in ("reciprocal", "log") and a.min() < 1e-6 * a.max():
        return None  # values close to 0: 1/y and log(y) are dominated by their rounding
    return float(np.sign(y[0]))


def _fit_output(x: np.ndarray, y: np.ndarray, xte: np.ndarray, yte: np.ndarray, variables: Sequence[sympy.Symbol],
                tol: float, max_degree: int, max_terms: int) -> list[tuple[str, sympy.Expr]]:
    """Exact sparse polynomial formulas of one output, one per transform that gives one."""
    found = []
    for name, fwd, inv_np, inv in _TRANSFORMS:
        sign = _applicable(np.concatenate([y, yte]), name)
        if sign is None:
            continue
        with np.errstate(all="ignore"):
            t = fwd(y, sign)
        if not np.all(np.isfinite(t)):
            continue
        score = functools.partial(_score, xte=xte, yte=yte, inverse=inv_np, sign=sign)

        for degree in range(1, max_degree + 1):
            exps = monomial_exponents(x.shape[1], degree)
            if len(exps) > max_terms:
                break
            a = _design(x, exps)
            coef = _lstsq(a, t)
            if not score(exps, coef) <= tol:
                continue
            exps, coef = _eliminate(a, t, exps, coef, score, tol)
            p = sum((sympy.Float(float(c)) * sympy.Mul(*(v**k for v, k in zip(variables, e)))
                     for c, e in zip(coef, exps)), sympy.Integer(0))
            found.append((name, inv(p, sign)))
            break  # the lowest degree that fits; higher ones only add terms to eliminate
    if not found:
        law = _power_law(x, y, xte, yte, variables, tol)
        if law is not None:
            found.append(("power law", law))
    return found


def _power_law(x: np.ndarray, y: np.ndarray, xte: np.ndarray, yte: np.ndarray, variables: Sequence[sympy.Symbol],
               tol: float) -> sympy.Expr | None:
    """``y = c * prod_i x_i**a_i`` with real exponents (``x1*x2/x3**2``, ``sqrt(x1/x2)``) over the one-signed
    inputs: a linear fit of ``log|y|`` on ``log|x_i|``, kept when it is exact on the test data."""
    sign = _applicable(np.concatenate([y, yte]), "log")
    if sign is None:
        return None
    xs = np.concatenate([x, xte])
    cols = [i for i in range(x.shape[1]) if _applicable(xs[:, i], "log") is not None]  # one sign, away from 0
    if not cols:
        return None
    with np.errstate(all="ignore"):
        lx, lxt, t = np.log(np.abs(x[:, cols])), np.log(np.abs(xte[:, cols])), np.log(sign * y)
    exps = monomial_exponents(len(cols), 1)
    score = functools.partial(_score, xte=lxt, yte=yte, inverse=lambda p, s: s * np.exp(p), sign=sign)
    a = _design(lx, exps)
    coef = _lstsq(a, t)
    if not score(exps, coef) <= tol:
        return None
    exps, coef = _eliminate(a, t, exps, coef, score, tol)
    out: sympy.Expr = sympy.Float(sign)
    for c, e in zip(coef, exps):
        if not any(e):
            out = out * sympy.Float(float(np.exp(c)))
        else:
            i = cols[e.index(1)]
            out = out * (sympy.Float(float(np.sign(x[0, i]))) * variables[i]) ** sympy.Float(float(c))
    return out


def _score(exps: Sequence[tuple[int, ...]], coef: np.ndarray, *, xte: np.ndarray, yte: np.ndarray, inverse,
           sign: float) -> float:
    """Test NMSE of the polynomial ``coef . monomials(exps)`` mapped back through the transform's inverse."""
    with np.errstate(all="ignore"):
        return nmse(inverse(_design(xte, exps) @ coef, sign), yte)


def _eliminate(a: np.ndarray, t: np.ndarray, exps: list, coef: np.ndarray, score, tol: float):
    """Backward elimination: drop the monomial of smallest contribution while the fit stays within ``tol``."""
    keep = list(range(len(exps)))
    while len(keep) > 1:
        contrib = np.abs(coef) * np.linalg.norm(a[:, keep], axis=0)
        order = np.argsort(contrib)
        for j in order[:3]:  # the weakest few; usually the first works
            trial = keep[:j] + keep[j + 1:]
            c = _lstsq(a[:, trial], t)
            if score([exps[i] for i in trial], c) <= tol:
                keep, coef = trial, c
                break
        else:
            break
    return [exps[i] for i in keep], coef


def polynomial_candidates(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    variables: Sequence[sympy.Symbol],
    floor: float,
    *,
    max_degree: int = 4,
    max_terms: int | None = None,
    max_points: int = 2000,
) -> list[tuple[str, list[sympy.Expr]]]:
    """Sparse polynomial formulas (of ``y``, ``1/y``, ``log|y|`` or ``y**2``) that fit the test data to ``floor``;
    when none does, a power law ``c * prod x_i**a_i`` (real exponents, one-signed inputs).

    Args:
        x, y: training inputs ``(n, d)`` and labels ``(n, m)`` (float64 arrays).
        x_test, y_test: held-out data ``(n_test, d)``, ``(n_test, m)``: a fit counts only when its NMSE there is
            at most ``floor`` (at least 1e-20, the precision of the float64 fit; every output).
        variables: sympy symbols of the inputs.
        floor: NMSE of the label rounding (see :func:`~kanlens.symbolic.formula.noise_floor`).
        max_degree: highest total degree tried (the lowest degree that fits is used).
        max_terms: most monomials in one fit (default ``n / 5``, at most 500, so the fit stays over-determined).
        max_points: only the first ``max_points`` training and test points are used.

    Returns:
        ``(transform name, one formula per output)`` for every transform whose fit is exact for all outputs; the
        formulas have float coefficients, to be refitted and snapped by the caller.
    """
    x, y = np.asarray(x, float), np.asarray(y, float).reshape(len(x), -1)
    x_test, y_test = np.asarray(x_test, float), np.asarray(y_test, float).reshape(len(x_test), -1)
    # an exact fit is exact on any subset: large datasets are cut so the check stays at milliseconds
    x, y, x_test, y_test = x[:max_points], y[:max_points], x_test[:max_points], y_test[:max_points]
    if max_terms is None:
        max_terms = min(500, len(x) // 5)
    tol = max(floor, 1e-20)  # exact fits sit ~1e-3 floor (float32 labels); 1e-20: float64 least squares
    per_output = [dict(_fit_output(x, y[:, o], x_test, y_test[:, o], variables, tol, max_degree, max_terms))
                  for o in range(y.shape[1])]
    names = [n for n in [t[0] for t in _TRANSFORMS] + ["power law"] if all(n in found for found in per_output)]
    return [(name, [found[name] for found in per_output]) for name in names]
