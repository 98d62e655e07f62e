"""Direct polynomial fits of the target and of simple transforms of it (a check before the KAN runs).

Many formulas of science are low-degree polynomials in their inputs (``x1*x2**2/2``, ``x1**3 - 2*x1*x2``) or
become one after a simple transform of the target (``1/y``, ``log(y)``, ``y**2``). A KAN can represent them, but
its symbolic step must then find a particular arrangement of quadratic edges (``x1*x2 = ((x1 + x2)**2 -
(x1 - x2)**2)/4``); a linear least-squares fit over all monomials finds the polynomial in milliseconds. A fit is
returned only when it reproduces the held-out data to the label noise, after backward elimination of the
monomials it does not need, so a non-polynomial target returns nothing. Ratios of polynomials
(``x1*x2/(x1 + x2 + x3)``, ``(x1 + x2)/(1 + x1*x2)``) are fitted the same way after the linearisation
``P - y*Q = 0``. On a narrow input range a smooth function can be approximated to the label noise (``log(x1)``
on ``[1, 2]`` by a ratio of a cubic and a quadratic): the caller treats fits whose constants do not snap as
approximations.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import numpy as np
import sympy

from .formula import nmse

__all__ = ["monomial_exponents", "polynomial_candidates", "power_law_candidate"]

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
    targets = list(_targets(y, yte))
    for name, sign, t, inv_np, inv in targets:
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
            found.append((name, inv(_polynomial(variables, exps, coef), sign)))
            break  # the lowest degree that fits; higher ones only add terms to eliminate
    if not found:
        law = _power_law(x, y, xte, yte, variables, tol)
        if law is not None:
            found.append(("power law", law))
    for name, sign, t, inv_np, inv in targets:  # ratios of y, then of log(y) (exp(-x1**2/x2)), then of y**2
        if found or name not in _RATIONAL_TRANSFORMS:
            continue
        ratio = _rational(x, t, xte, yte, variables, tol, max_terms, functools.partial(inv_np, s=sign))
        if ratio is not None:
            found.append((_RATIONAL_TRANSFORMS[name], inv(ratio, sign)))
    return found


def _targets(y: np.ndarray, yte: np.ndarray):
    """``(name, sign, t(y), numpy inverse, sympy inverse)`` for each transform that applies and is finite."""
    for name, fwd, inv_np, inv in _TRANSFORMS:
        sign = _applicable(np.concatenate([y, yte]), name)
        if sign is None:
            continue
        with np.errstate(all="ignore"):
            t = fwd(y, sign)
        if np.all(np.isfinite(t)):
            yield name, sign, t, inv_np, inv


def _polynomial(variables: Sequence[sympy.Symbol], exps: Sequence[tuple[int, ...]], coef) -> sympy.Expr:
    """``sum_k coef[k] * prod_i variables[i]**exps[k][i]`` with float coefficients."""
    return sum((sympy.Float(float(c)) * _monomial(variables, e) for c, e in zip(coef, exps)), sympy.Integer(0))


_RATIONAL_TRANSFORMS = {"identity": "rational", "log": "rational log", "square": "rational square"}


_RATIONAL_DEGREES = tuple((dp, dq) for dp in range(4) for dq in (1, 2))  # numerator <= 3, denominator 1 or 2


def _rational(x: np.ndarray, y: np.ndarray, xte: np.ndarray, yte: np.ndarray, variables: Sequence[sympy.Symbol],
              tol: float, max_terms: int, inverse=None) -> sympy.Expr | None:
    """``y = P(x) / Q(x)`` with polynomials of low degree (``x1*x2/(x1 + x2 + x3)``, ``(x1 - x2)/(x1 + x2)``),
    fitted linearly: ``P - y*Q = 0`` (the null vector of ``[P monomials, -y * Q monomials]``, so a denominator
    without a constant term is found too), then reweighted by ``1/Q`` (Sanathanan-Koerner) so the error of
    ``P/Q`` itself is minimised, and sparsified like the polynomials. Degree pairs are tried smallest first; the
    first exact one on the test data, with ``Q`` keeping one sign on all data, is returned. ``y`` may be a
    transform of the labels ``yte`` are scored on: ``inverse`` maps ``P/Q`` back (default: the identity)."""
    n_vars = x.shape[1]
    pairs = sorted(_RATIONAL_DEGREES, key=lambda d: (len(monomial_exponents(n_vars, d[0]))
                                                     + len(monomial_exponents(n_vars, d[1])), d))
    for dp, dq in pairs:
        ep, eq = monomial_exponents(n_vars, dp), monomial_exponents(n_vars, dq)
        if len(ep) + len(eq) > max_terms:
            continue
        fit = _rational_fit(_design(x, ep), _design(x, eq), y)
        if fit is None:
            continue
        cp, cq, j0, system = fit
        labels = [("p", e) for e in ep] + [("q", e) for k, e in enumerate(eq) if k != j0]
        coef = np.concatenate([cp, np.delete(cq, j0)])
        score = functools.partial(_rational_score, xte=xte, yte=yte, fixed=eq[j0], x_all=np.concatenate([x, xte]),
                                  inverse=inverse)
        if not score(labels, coef) <= tol:
            continue
        labels, coef = _eliminate(*system, labels, coef, score, tol)
        (p_exps, p_coef), (q_exps, q_coef) = _split(labels, coef)
        return _polynomial(variables, p_exps, p_coef) / (_monomial(variables, eq[j0])
                                                         + _polynomial(variables, q_exps, q_coef))
    return None


def _monomial(variables: Sequence[sympy.Symbol], e: tuple[int, ...]) -> sympy.Expr:
    return sympy.Mul(*(v**k for v, k in zip(variables, e)))


def _rational_fit(mp: np.ndarray, mq: np.ndarray, y: np.ndarray, rounds: int = 3):
    """Coefficients of ``P`` and ``Q`` (``Q``'s largest one fixed to 1, index ``j0``) and the final weighted
    linear system ``(a, t)`` over the free coefficients; None when degenerate."""
    a = np.concatenate([mp, -y[:, None] * mq], axis=1)
    norms = np.linalg.norm(a, axis=0)
    if not np.all(np.isfinite(a)) or np.any(norms == 0):
        return None
    try:
        v = np.linalg.svd(a / norms, full_matrices=False)[2][-1] / norms
    except np.linalg.LinAlgError:
        return None
    npn = mp.shape[1]
    j0 = int(np.argmax(np.abs(v[npn:]) * norms[npn:]))
    if v[npn + j0] == 0:
        return None
    v = v / v[npn + j0]
    free_q = [k for k in range(mq.shape[1]) if k != j0]
    system = None
    for _ in range(rounds):
        q = mq @ v[npn:]
        if not np.all(np.isfinite(q)) or np.any(q == 0):
            return None
        w = 1.0 / np.abs(q)
        design = w[:, None] * np.concatenate([mp, -y[:, None] * mq[:, free_q]], axis=1)
        target = w * y * mq[:, j0]
        c = _lstsq(design, target)
        v = np.concatenate([c[:npn], np.insert(c[npn:], j0, 1.0)])
        system = (design, target)
    return v[:npn], v[npn:], j0, system


def _split(labels: Sequence[tuple[str, tuple[int, ...]]], coef: np.ndarray) -> tuple[tuple[list, list], ...]:
    """``((P exponents, P coefficients), (Q exponents, Q coefficients))`` of a ratio's labelled coefficients."""
    return tuple(([e for (k, e) in labels if k == kind], [c for (k, _), c in zip(labels, coef) if k == kind])
                 for kind in "pq")


def _rational_score(labels: Sequence[tuple[str, tuple[int, ...]]], coef: np.ndarray, *, xte: np.ndarray,
                    yte: np.ndarray, fixed: tuple[int, ...], x_all: np.ndarray, inverse=None) -> float:
    """Test NMSE of ``P/Q``; inf when ``Q`` changes sign (or nearly vanishes) on the data: a pole."""
    (p_exps, p_coef), (q_exps, q_coef) = _split(labels, coef)
    q_exps, q_coef = [fixed, *q_exps], np.array([1.0, *q_coef])
    p_coef = np.array(p_coef)
    q_all = _design(x_all, q_exps) @ q_coef
    if not (np.all(q_all > 0) or np.all(q_all < 0)) or np.min(np.abs(q_all)) < 1e-9 * np.max(np.abs(q_all)):
        return float("inf")
    p = _design(xte, p_exps) @ p_coef if p_exps else np.zeros(len(xte))
    with np.errstate(all="ignore"):
        ratio = p / (_design(xte, q_exps) @ q_coef)
        return nmse(ratio if inverse is None else inverse(ratio), yte)


def _power_law(x: np.ndarray, y: np.ndarray, xte: np.ndarray, yte: np.ndarray, variables: Sequence[sympy.Symbol],
               tol: float, resolution: float | None = None, robust: bool = False) -> sympy.Expr | None:
    """``y = c * prod_i x_i**a_i`` with real exponents (``x1*x2/x3**2``, ``sqrt(x1/x2)``) over the one-signed
    inputs: a linear fit of ``log|y|`` on ``log|x_i|``, kept when its test NMSE is at most ``tol``. Inputs are
    then eliminated while the fit stays within ``tol`` or, with ``resolution``, within that relative margin of the
    full fit's test NMSE (see :func:`power_law_candidate`). ``robust``: noisy labels may cross 0 where ``y`` is
    small; the fit then uses the training points of the majority sign, weighted by ``|y|`` (the log-space residual
    times ``|y|`` is the residual of ``y`` itself, to first order)."""
    weights = None
    if robust:
        sign = float(np.sign(np.median(y)))
        keep = sign * y > 0
        if sign == 0 or keep.sum() < max(20, 2 * x.shape[1] + 2):
            return None
        x, y, weights = x[keep], y[keep], np.abs(y[keep])
    else:
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
    if weights is not None:
        a, t = a * weights[:, None], t * weights
    coef = _lstsq(a, t)
    full = score(exps, coef)
    if not full <= tol:
        return None
    exps, coef = _eliminate(a, t, exps, coef, score, tol if resolution is None else full * (1 + resolution))
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
    when none does, a power law ``c * prod x_i**a_i`` (real exponents, one-signed inputs); when that fails too, a
    ratio ``P/Q`` of polynomials (degrees <= 3 and 1-2, ``Q`` one-signed on the data) fitted to ``y``, then to
    ``log|y|`` and ``y**2`` (names ``"rational"``, ``"rational log"``, ``"rational square"``).

    Args:
        x, y: training inputs ``(n, d)`` and labels ``(n, m)`` (float64 arrays).
        x_test, y_test: held-out data ``(n_test, d)``, ``(n_test, m)``: a fit counts only when its NMSE there is
            small enough (see ``floor``; at least 1e-20, the precision of the float64 fit; every output).
        variables: sympy symbols of the inputs.
        floor: NMSE of the label rounding (see :func:`~kanlens.symbolic.formula.noise_floor`); a fit counts when
            its test NMSE is at most ``floor / 30`` (exact fits sit ~2000x below ``floor``).
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
    # exact fits sit at the labels' rounding, ~10**-3.3 floor (float32 labels); a polynomial or rational
    # approximating a smooth function on a narrow range (cos(x1) + x2 on [-0.5, 0.5], log(x1) on [1, 2]) at
    # 10**-1.4 to 10**-0.1 floor; 1e-20: float64 least squares
    tol = max(floor / 30, 1e-20)
    per_output = [dict(_fit_output(x, y[:, o], x_test, y_test[:, o], variables, tol, max_degree, max_terms))
                  for o in range(y.shape[1])]
    order = [t[0] for t in _TRANSFORMS] + ["power law", *_RATIONAL_TRANSFORMS.values()]
    names = [n for n in order if all(n in found for found in per_output)]
    return [(name, [found[name] for found in per_output]) for name in names]


def power_law_candidate(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    variables: Sequence[sympy.Symbol],
    *,
    max_nmse: float = 2e-2,
    resolution: float = 0.05,
) -> sympy.Expr | None:
    """The power law ``c * prod_i x_i**a_i`` of one output fitted in log space, whatever its precision, when its
    test NMSE is at most ``max_nmse``: a candidate for noisy labels, where no fit reaches the rounding floor that
    :func:`polynomial_candidates` asks for (``x1*x2/(4*pi*x3*x4**2)`` with 1% noise; small labels may then change
    sign: the fit uses the majority sign's points, weighted by ``|y|``). Inputs whose removal raises the
    test NMSE by less than the relative ``resolution`` are dropped. The constants are to be refitted and snapped
    by the caller; whether the law is the formula is for the comparison with the other candidates to decide.

    Shapes:
        x ``(n, d)``, y ``(n,)``, x_test ``(n_test, d)``, y_test ``(n_test,)``.
    """
    x, y = np.asarray(x, float), np.asarray(y, float).reshape(-1)
    x_test, y_test = np.asarray(x_test, float), np.asarray(y_test, float).reshape(-1)
    return _power_law(x, y, x_test, y_test, variables, max_nmse, resolution, robust=True)
