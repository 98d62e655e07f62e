"""The search behind the affine fit ``y ~ c*f(a*x+b)+d``: parameterisations, grids, refinement, canonical form.

Each library function is fitted in a *reduced* parameterisation without redundant constants (see
:class:`~kanlens.symbolic.library.SymbolicFunction.kind`): :class:`Parameterisation` maps a vector ``theta`` of the
1-2 nonlinear parameters to ``u = a*x + b``, gives a coarse grid of it, and evaluates ``f(u)``; :func:`linear_fit`
solves the linear constants ``(c, d)`` in closed form for many rows at once; :func:`refine_theta` polishes ``theta``
by Levenberg-Marquardt with ``(c, d)`` projected out (variable projection); :func:`canonical_params` removes the
redundancy of the result. :func:`affine_grid`, :func:`zoom_affine` and :func:`subsample_points` serve searches that
score many ``(a, b)`` with a criterion of their own. :mod:`kanlens.symbolic.affine` drives these per function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .library import SymbolicFunction

__all__ = [
    "GRID_SHIFTS",
    "GRID_SLOPES",
    "Parameterisation",
    "affine_grid",
    "canonical_params",
    "linear_fit",
    "parameterisations",
    "refine_theta",
    "row_values",
    "subsample_points",
    "zoom_affine",
]


def linear_fit(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
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
class Parameterisation:
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


def parameterisations(fn: SymbolicFunction, mx: float, sx: float) -> list[Parameterisation]:
    signs = (1.0,) if fn.parity is not None else (1.0, -1.0)
    if fn.kind in ("power", "log"):
        return [Parameterisation(fn, "shift", s, mx, sx) for s in signs]
    if fn.kind == "exp":
        return [Parameterisation(fn, "scale", s, mx, sx) for s in (1.0, -1.0)]
    return [Parameterisation(fn, "general", s, mx, sx) for s in signs]


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


def row_values(p: Parameterisation, theta: np.ndarray, x: np.ndarray) -> np.ndarray | None:
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


def refine_theta(p: Parameterisation, theta0: np.ndarray, x: np.ndarray, y: np.ndarray, max_iter: int) -> np.ndarray:
    """Levenberg-Marquardt over the 1-2 nonlinear parameters (central-difference Jacobian, one batched call).

    Steps that leave the function's domain are rejected like steps that increase the cost.
    """
    yc = (y - y.mean()) / (float(np.linalg.norm(y - y.mean())) + 1e-300)
    theta = np.asarray(theta0, dtype=np.float64).copy()
    k = theta.size
    f0 = row_values(p, theta, x)
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
            f_new = row_values(p, theta + delta, x)
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
