"""The constants of a formula fitted to data: :func:`refit_constants` (joint least squares) and
:func:`snap_constants` (constants replaced by simple values while the refitted loss does not get worse).

:func:`refit_constants` treats every float of an expression as a parameter and refits them all jointly on data
(Levenberg-Marquardt with an analytic Jacobian, float64). :func:`snap_constants` then replaces constants by simple
values (integers, small rationals, multiples of pi, e, sqrt 2 ...) one at a time, keeping a snap only when the
refitted loss does not get worse (beyond float rounding noise).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy
import torch

from .simplify import normalize
from .values import LAMBDIFY_MODULES, as_float64, nmse, real_values

__all__ = ["ConstantFit", "refit_constants", "simple_constants", "snap_constants"]


@dataclass
class ConstantFit:
    """An expression with its constants fitted: the expression and its NMSE on the fitting data."""

    expr: sympy.Expr
    nmse: float


def _parametrize(expr: sympy.Expr) -> tuple[sympy.Expr, list[sympy.Symbol], np.ndarray]:
    """Replace every float *occurrence* by its own parameter symbol (equal values are not tied)."""
    params: list[sympy.Symbol] = []
    values: list[float] = []

    def rec(e: sympy.Basic) -> sympy.Basic:
        if isinstance(e, sympy.Float):
            p = sympy.Symbol(f"_p{len(params)}")
            params.append(p)
            values.append(float(e))
            return p
        if not e.args:
            return e
        return e.func(*[rec(a) for a in e.args])

    template = rec(expr)
    return template, params, np.array(values, dtype=np.float64)


_SYMBOLIC_JACOBIAN = 24


class _OutOfTime(Exception):
    """Raised inside a least-squares residual when the fit's CPU time is spent."""


class _Problem:
    """A parametrised formula: vectorised value and Jacobian, least squares over any subset of parameters."""

    def __init__(self, expr: sympy.Expr, variables: Sequence[sympy.Symbol], x: np.ndarray, y: np.ndarray):
        self.template, self.params, self.theta0 = _parametrize(expr)
        self.cols = [x[:, k] for k in range(x.shape[1])]
        self.y = y
        self.scale = float(np.std(y)) or 1.0
        # real symbols: d|u|/dp = sign(u) du/dp instead of an unevaluated complex Derivative
        real = {v: sympy.Symbol(v.name, real=True) for v in [*self.params, *variables]}
        template = self.template.xreplace(real)
        args = [real[v] for v in [*self.params, *variables]]
        self.f = sympy.lambdify(args, template, modules=LAMBDIFY_MODULES)
        self.jac = None
        # a symbolic Jacobian costs one sympy.diff of the whole formula per constant (minutes for a trig expansion
        # with 60 constants); beyond _SYMBOLIC_JACOBIAN constants finite differences are far cheaper
        if self.params and len(self.params) <= _SYMBOLIC_JACOBIAN:
            grads = [sympy.diff(template, real[p]).replace(sympy.DiracDelta, lambda *a: sympy.Integer(0))
                     for p in self.params]
            if not any(g.has(sympy.Derivative, sympy.Subs) for g in grads):
                try:
                    self.jac = sympy.lambdify(args, grads, modules=LAMBDIFY_MODULES, cse=True)
                except Exception:  # a function sympy cannot print: finite differences instead
                    self.jac = None

    def value(self, theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = self.f(*theta, *self.cols)
        return np.broadcast_to(real_values(out), self.y.shape)

    def loss(self, theta: np.ndarray) -> float:
        return nmse(self.value(theta), self.y)

    def solve(self, theta: np.ndarray, free: np.ndarray, max_nfev: int = 200,
              max_seconds: float | None = None) -> tuple[np.ndarray, float]:
        """Least squares over ``theta[free]`` (others fixed); returns the better of start and result.

        ``max_seconds``: CPU seconds after which the fit stops with the best point evaluated so far (finite
        differences over dozens of constants of a long formula can otherwise run for many minutes).
        """
        from scipy.optimize import least_squares

        theta = np.asarray(theta, dtype=np.float64).copy()
        base = self.loss(theta)
        idx = np.flatnonzero(free)
        if idx.size == 0:
            return theta, base
        big = np.full(self.y.shape, 1e6)
        n = self.y.size
        stop = None if max_seconds is None else time.process_time() + max_seconds
        best = [math.inf, theta[idx].copy()]

        def full(t):
            th = theta.copy()
            th[idx] = t
            return th

        def resid(t):
            if stop is not None and time.process_time() > stop:
                raise _OutOfTime
            r = (self.value(full(t)) - self.y) / self.scale
            if not np.isfinite(r).all():
                return big
            cost = float(r @ r)
            if cost < best[0]:
                best[0], best[1] = cost, np.array(t, dtype=np.float64)
            return r

        def jac(t):
            with np.errstate(all="ignore"):
                parts = self.jac(*full(t), *self.cols)
            j = np.column_stack([np.broadcast_to(real_values(parts[k]), (n,)) for k in idx])
            j = j / self.scale
            return j if np.isfinite(j).all() else np.zeros_like(j)

        try:
            with np.errstate(over="ignore", invalid="ignore"):  # huge finite residuals: the loss is inf, no warning
                # finite differences spend idx.size evaluations per Jacobian, counted in max_nfev by MINPACK
                nfev = max_nfev if self.jac is not None else max_nfev * (idx.size + 1)
                res = least_squares(resid, theta[idx], jac=jac if self.jac is not None else "2-point",
                                    method="lm" if n >= idx.size else "trf",
                                    xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=nfev)
            found = res.x
        except _OutOfTime:
            found = best[1]
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            return theta, base
        new = full(found)
        new_loss = self.loss(new)
        return (new, new_loss) if new_loss <= base else (theta, base)

    def expr(self, theta: np.ndarray, exact: dict[int, sympy.Expr] | None = None) -> sympy.Expr:
        exact = exact or {}
        return self.template.xreplace({p: exact.get(k, sympy.Float(float(theta[k]), 17))
                                       for k, p in enumerate(self.params)})


def refit_constants(
    expr: sympy.Expr,
    variables: Sequence[sympy.Symbol],
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    max_nfev: int = 200,
    normalized: bool = True,
    max_seconds: float | None = None,
) -> ConstantFit:
    """Refit every float of ``expr`` jointly on ``(x, y)`` by least squares (float64, analytic Jacobian).

    With ``normalized`` the expression is first passed through :func:`normalize` (redundant constants removed).
    ``max_seconds``: CPU-time limit of the fit (the best point so far is kept); ``None``: no limit.
    Returns the refitted expression and its NMSE (the original one if refitting does not help).

    Shapes:
        x: ``(n, len(variables))``, y: ``(n,)`` or ``(n, 1)``.
    """
    x, y = as_float64(x), as_float64(y).reshape(-1)
    prob = _Problem(normalize(expr) if normalized else expr, list(variables), x, y)
    theta, loss = prob.solve(prob.theta0, np.ones(prob.theta0.size, bool), max_nfev=max_nfev,
                             max_seconds=max_seconds)
    return ConstantFit(prob.expr(theta), loss)


# ---------------------------------------------------------------------------------------------- snapping
_BASES: list[tuple[sympy.Expr, int]] = [
    (sympy.Integer(1), 0), (sympy.pi, 1), (1 / sympy.pi, 2), (sympy.sqrt(2), 2), (1 / sympy.sqrt(2), 2),
    (sympy.E, 1), (1 / sympy.E, 2), (sympy.sqrt(sympy.pi), 2), (1 / sympy.sqrt(sympy.pi), 3),
    (sympy.sqrt(2 * sympy.pi), 3), (1 / sympy.sqrt(2 * sympy.pi), 3),
]
_BASE_VALUES = [float(b) for b, _ in _BASES]


def _tolerance(q: int, cost: int) -> float:
    """How far (relative) a constant may be from a candidate: simple candidates may be tried from further away."""
    if cost == 0:
        return 2e-2 if q <= 4 else (1e-3 if q <= 12 else 1e-6)
    if q > 12:
        return 0.0
    return 1e-3 if q <= 4 and cost <= 2 else 1e-4


def simple_constants(v: float, *, max_den: int = 30, limit: int = 4) -> list[sympy.Expr]:
    """Simple constants near ``v`` (``p/q * K``, ``q <= max_den``, ``K`` in 1, pi, 1/pi, sqrt 2, e, ...).

    Simple candidates (integers, halves, quarters) are proposed within 2%, others only within 1e-3 or 1e-4,
    denominators above 12 and ``e^(p/q)`` only within 1e-6.
    Ranked by simplicity (denominator, ``K``, numerator) traded against closeness (``1.5 * log10`` of the relative
    distance), so ``0.39894`` proposes ``1/sqrt(2*pi)`` before ``2/5``; at most ``limit`` are returned.
    """
    if not math.isfinite(v) or v == 0:
        return []
    out: list[tuple[float, sympy.Expr]] = []
    for (base, cost), bv in zip(_BASES, _BASE_VALUES):
        for q in range(1, max_den + 1):
            p = round(v * q / bv)
            if p == 0 or math.gcd(int(abs(p)), q) != 1 or abs(p) > 1000 or (q > 12 and cost > 0):
                continue
            dist = abs(p / q * bv - v) / abs(v)
            if dist <= _tolerance(q, cost):
                key = q + 2 * cost + 0.01 * abs(p) + 1.5 * math.log10(dist + 1e-9)
                out.append((key, sympy.Rational(int(p), q) * base))
    if v > 0:  # e^(p/q): constants pulled out of an exponential (exp(u + 1/2) = sqrt(e) * exp(u))
        lv = math.log(v)
        for q in range(1, 13):
            p = round(lv * q)
            if p != 0 and math.gcd(abs(p), q) == 1 and abs(p / q - lv) <= 1e-6 * max(1.0, abs(lv)):
                out.append((q + 4 - 9.0, sympy.exp(sympy.Rational(p, q))))
    out.sort(key=lambda t: t[0])
    seen, res = set(), []
    for _, e in out:
        if e not in seen:
            seen.add(e)
            res.append(e)
    return res[:limit]


def snap_constants(
    expr: sympy.Expr,
    variables: Sequence[sympy.Symbol],
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    floor: float = 0.0,
    slack: float = 1e-2,
    zero_tol: float = 1e-4,
    max_tries: int = 60,
    max_seconds: float | None = 30.0,
    normalized: bool = True,
) -> ConstantFit:
    """Replace constants of ``expr`` by simple values while the refitted loss does not get worse.

    Greedy: the constant closest (relatively) to a simple value is tried first; the other floats are refitted
    jointly after each snap. A snap is kept when ``nmse_new <= nmse_old * (1 + slack) + floor`` (``floor``: the
    label rounding noise, see :func:`noise_floor`). Constants below ``zero_tol`` are first tried as 0. The search
    stops after ``max_seconds`` of CPU time (not wall time, so a loaded machine gives the same formula).

    Shapes:
        x: ``(n, len(variables))``, y: ``(n,)``.
    """
    t0 = time.process_time()  # CPU time: the same work on a loaded machine gives the same result
    x, y = as_float64(x), as_float64(y).reshape(-1)
    prob = _Problem(normalize(expr) if normalized else expr, list(variables), x, y)
    free = np.ones(prob.theta0.size, bool)

    def left() -> float | None:
        return None if max_seconds is None else max(0.0, max_seconds - (time.process_time() - t0))

    theta, loss = prob.solve(prob.theta0, free, max_seconds=left())
    exact: dict[int, sympy.Expr] = {}
    rejected: set[tuple[int, str]] = set()
    for _ in range(max_tries):
        if max_seconds is not None and time.process_time() - t0 > max_seconds:
            break
        options = []
        for k in np.flatnonzero(free):
            v = float(theta[k])
            cands = ([sympy.Integer(0)] if abs(v) < zero_tol else []) + simple_constants(v)
            for c in cands:
                if (k, str(c)) not in rejected:
                    dist = 0.0 if c == 0 else abs(float(c) - v) / abs(v)
                    options.append((dist, k, c))
                    break
        if not options:
            break
        _, k, c = min(options, key=lambda t: t[0])
        trial = theta.copy()
        trial[k] = float(c)
        free_k = free.copy()
        free_k[k] = False
        new_theta, new_loss = prob.solve(trial, free_k, max_seconds=left())
        if new_loss <= loss * (1 + slack) + floor:
            theta, loss, free = new_theta, new_loss, free_k
            exact[int(k)] = c
        else:
            rejected.add((int(k), str(c)))
    return ConstantFit(prob.expr(theta, exact), loss)
