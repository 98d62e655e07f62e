"""Monomial-index models, found from data alone: ``y = prod_i x_i**a_i * g(prod_i x_i**b_i)`` (or ``g`` of two
such monomials).

Most laws of physics are a product of powers of their inputs times one function of one dimensionless combination
(``n0*exp(-m*g*x/(kb*T))``, ``m0/sqrt(1 - v**2/c**2)``, ``n*kb*T*log(V2/V1)``, ``asin(l/(n*d))``). With positive
inputs and ``L = log(x)`` that is ``log|y| = a . L + G(b . L)``: a linear part plus a one-dimensional ridge function.
:func:`index_models` finds ``b`` (up to scale) and ``a`` (up to multiples of ``b``) by least squares with ``G`` a
cubic spline, snaps both to small rationals, and checks the result on ``y`` itself; the caller then has a
one-input problem ``g(z)`` on ``z = prod x**b`` (see :class:`~kanlens.symbolic.search.index.MonomialIndex`).

``b`` is started from the leading eigenvector of the Hessian of a quadratic fit in ``L`` (for ``a . L + G(b . L)`` it
is ``G'' b b^T``, rank one), from every single input (``g(x_j)``) and from every ratio and product of two inputs,
and refined by variable projection (the spline and ``a`` are linear given ``b``). Outputs that change sign (the
``g`` crosses zero: ``x1*x2*sin(x3)``) are fitted on ``log|y|`` with the points near the zeros trimmed away.
When no one-index model fits (three inputs or more), two indices are tried, ``log|y| = a . L + G(b1 . L, b2 . L)``
with a tensor-product spline ``G`` (``x1*(1 + x2/x1 + 2*sqrt(x2/x1)*cos(x3))``,
``(x1 - x2*x3)/sqrt(1 - x2**2/x4**2)``).
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.interpolate import BSpline
from scipy.optimize import least_squares

__all__ = ["IndexModel", "index_models", "smooth_index_values", "snap_exponents"]


class _OutOfTime(Exception):
    """Raised inside the fits when the caller's ``stop()`` says the time is spent."""


_MAX_ROWS = 3000  # rows used (a fixed subsample of larger data): the structure does not need more

log = logging.getLogger(__name__)

_KNOTS = 8  # interior knots of the spline G (at quantiles of b . L); per axis for two indices: _KNOTS2
_KNOTS2 = 4
_PAIR_STARTS = 12  # two indices: pairs among the best one-index starts and the single inputs
_REFINE = 3  # starting directions refined by variable projection


@dataclass
class IndexModel:
    """``y ~ prod x**a * g(z_1, ..)`` with ``z_i = prod x**b[i]`` (exponents snapped to small rationals).

    Attributes:
        a: ``(d,)`` exponents of the monomial factor.
        b: ``(k, d)`` exponents of the ``k`` indices (``k`` is 1 or 2; in each row the largest magnitude is 1 or a
            small integer).
        nmse: normalised squared error of ``y`` against ``prod x**a * S(log z)`` with ``S`` a cubic (tensor) spline
            fitted by least squares on ``y`` itself: how well a smooth ``g`` explains the data.
    """

    a: np.ndarray
    b: np.ndarray
    nmse: float


def _basis(u: np.ndarray, knots: int, ref: np.ndarray | None = None) -> np.ndarray:
    """Cubic B-splines at ``u`` with knots at quantiles of ``ref`` (default ``u``); clamped to its range."""
    inner = np.unique(np.quantile(u if ref is None else ref, np.linspace(0.0, 1.0, knots + 2)))
    if len(inner) < 2:
        return np.ones((len(u), 1))
    t = np.r_[[inner[0]] * 3, inner, [inner[-1]] * 3]
    return BSpline.design_matrix(np.clip(u, inner[0], inner[-1]), t, 3).toarray()


def _design(u: np.ndarray, fine: bool = False, ref: np.ndarray | None = None) -> np.ndarray:
    """``(n, m)`` cubic B-spline basis on the index values ``u`` ``(n, k)`` (knots at quantiles of ``ref``, default
    ``u``; a tensor product for two indices); constants and lines are in its span."""
    r = u if ref is None else ref
    if u.shape[1] == 1:
        return _basis(u[:, 0], 2 * _KNOTS if fine else _KNOTS, r[:, 0])
    knots = 2 * _KNOTS2 if fine else _KNOTS2
    b1, b2 = _basis(u[:, 0], knots, r[:, 0]), _basis(u[:, 1], knots, r[:, 1])
    return (b1[:, :, None] * b2[:, None, :]).reshape(len(u), -1)


def smooth_index_values(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray,
                        at: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The smooth ``g`` of an index model at other inputs: ``S(b . log x)`` with the spline ``S`` of
    :attr:`IndexModel.nmse` (fitted by least squares on ``y`` itself, so each row counts as much as its label's
    noise allows: ``y / prod x**a`` is noisiest where the monomial is small), evaluated at each array of ``at``.

    Shapes:
        ``x`` ``(n, d)`` positive, ``y`` ``(n,)``, ``a`` ``(d,)``, ``b`` ``(k, d)``; each of ``at`` ``(m, d)``
        positive gives ``(m,)``.
    """
    logx = np.log(np.asarray(x, dtype=np.float64))
    u = logx @ b.T
    m = np.exp(logx @ a)[:, None] * _design(u, fine=True)
    coef, *_ = np.linalg.lstsq(m, np.asarray(y, dtype=np.float64).reshape(-1), rcond=None)
    return [_design(np.log(np.asarray(p, dtype=np.float64)) @ b.T, fine=True, ref=u) @ coef for p in at]


# the current call's stop(), set by index_models (a context variable: concurrent calls in threads, e.g. sweep tasks
# on one Dask worker, each see their own)
_STOP: contextvars.ContextVar[Callable[[], bool]] = contextvars.ContextVar("index_fit_stop", default=lambda: False)


def _profile(logx: np.ndarray, t: np.ndarray, b: np.ndarray, w: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted residual of ``t ~ a . L + G(b . L)`` for fixed ``b`` ``(k, d)`` (``a`` and the spline by least
    squares, rows scaled by ``w``), ``a``, and the fitted ``t``."""
    if _STOP.get()():
        raise _OutOfTime
    m = np.hstack([logx, _design(logx @ b.T)])
    if w is None:
        coef, *_ = np.linalg.lstsq(m, t, rcond=None)
    else:
        coef, *_ = np.linalg.lstsq(m * w[:, None], t * w, rcond=None)
    fit = m @ coef
    return (t - fit) if w is None else (t - fit) * w, coef[: logx.shape[1]], fit


def _unit(b: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(b, axis=-1, keepdims=True)
    return np.divide(b, n, out=np.zeros_like(b), where=n > 0)


def _single_starts(logx: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """One-index starting directions: the quadratic fit's leading Hessian eigenvector, every input, every pair
    ``i +- j``."""
    n, d = logx.shape
    lc = logx - logx.mean(0)
    pairs = list(itertools.combinations_with_replacement(range(d), 2))
    quad = np.column_stack([np.ones(n), lc] + [lc[:, i] * lc[:, j] for i, j in pairs])
    coef, *_ = np.linalg.lstsq(quad, t, rcond=None)
    h = np.zeros((d, d))
    for (i, j), c in zip(pairs, coef[1 + d:]):
        h[i, j] += c
        h[j, i] += c
    w, v = np.linalg.eigh(h)
    starts = [v[:, int(np.argmax(np.abs(w)))]]
    eye = np.eye(d)
    starts += [eye[j] for j in range(d)]
    starts += [_unit(eye[i] + s * eye[j]) for i, j in itertools.combinations(range(d), 2) for s in (1.0, -1.0)]
    return starts


def _starts(logx: np.ndarray, t: np.ndarray, k: int, w: np.ndarray | None) -> list[np.ndarray]:
    """Starting ``(k, d)`` index matrices: for two indices, pairs among the best one-index starts and the inputs."""
    single = _single_starts(logx, t)
    if k == 1:
        return [b[None, :] for b in single]
    scored = sorted(range(len(single)), key=lambda i: float(np.sum(_profile(logx, t, single[i][None, :], w)[0] ** 2)))
    d = logx.shape[1]
    pool = [single[i] for i in scored[:_PAIR_STARTS]] + list(np.eye(d))
    out = []
    for p, q in itertools.combinations(pool, 2):
        m = np.stack([p, q])
        if np.linalg.matrix_rank(m, tol=1e-6) == 2 and not any(np.allclose(m, o) for o in out):
            out.append(m)
    return out


def _refine(logx: np.ndarray, t: np.ndarray, b0: np.ndarray, scale: float, w: np.ndarray | None) -> np.ndarray:
    """``b`` ``(k, d)`` refined by variable projection from ``b0`` (Gauss-Newton steps with finite differences)."""
    if b0.shape[0] == 1 and np.count_nonzero(np.abs(b0) > 1e-12) == 1:
        return b0  # one input alone: nothing to refine (a spline of x_j is any function of it)
    shape = b0.shape

    def fun(b: np.ndarray) -> np.ndarray:
        return _profile(logx, t, _unit(b.reshape(shape)), w)[0] / scale

    try:
        res = least_squares(fun, b0.ravel(), method="trf", diff_step=1e-4, xtol=1e-10,
                            max_nfev=(20 if len(b0) == 1 else 8) * (b0.size + 1))
    except (ValueError, np.linalg.LinAlgError):
        return b0
    return _unit(res.x.reshape(shape))


def snap_exponents(v: np.ndarray, max_den: int, tol: float) -> tuple[np.ndarray, float] | None:
    """``v`` with every entry replaced by the nearest fraction of denominator <= ``max_den`` (and |value| <= 4), and
    the largest change; None when some entry is farther than ``tol`` from every such fraction."""
    out = np.empty_like(v)
    worst = 0.0
    for i, x in enumerate(v):
        f = Fraction(float(x)).limit_denominator(max_den)
        if abs(f) > 4 or abs(float(f) - x) > tol:
            return None
        out[i] = float(f)
        worst = max(worst, abs(float(f) - x))
    return out, worst


def _snap_direction(b: np.ndarray) -> list[np.ndarray]:
    """``b`` ``(d,)`` scaled so that one of its large entries is 1 and the others snap to fractions (denominator
    <= 4), with entries below 5%, 15% and 30% of the largest set to 0 (noise leaks a little of the linear part into
    ``b``), and once more to the nearest halves."""
    big = np.abs(b).max()
    out: list[np.ndarray] = []
    # the last try: halves within 0.25 (noise can bias a flat direction by 10-20%); the fit on y decides
    for floor, den, tol in ((0.05, 4, 0.06), (0.15, 4, 0.06), (0.3, 4, 0.06), (0.25, 2, 0.25)):
        best = None
        for k in np.flatnonzero(np.abs(b) >= 0.2 * big):
            r = b / b[k]
            r[np.abs(r) < floor] = 0.0
            snapped = snap_exponents(r, den, tol)
            if snapped is not None:
                key = (snapped[1] > 0.02, int(np.count_nonzero(snapped[0])), snapped[1])
                if best is None or key < best[0]:
                    best = (key, snapped[0])
        if best is None:
            continue
        s = best[1] + 0.0  # no -0.0
        s = -s if s.sum() < 0 or (s.sum() == 0 and s[np.flatnonzero(s)[0]] < 0) else s
        if not any(np.array_equal(s, o) for o in out):
            out.append(s)
    return out


def _sparsest_basis(b: np.ndarray) -> np.ndarray:
    """Rows of ``b`` ``(k, d)`` replaced by combinations with fewer nonzero entries while any exists (the same
    span: ``g(z1, z2)`` is as good a model as ``g(z1, z2 / z1**c)``), each rescaled as :func:`_snap_direction`."""
    b = b.copy()
    changed = True
    while changed and len(b) > 1:
        changed = False
        for i, j in itertools.permutations(range(len(b)), 2):
            for c in np.flatnonzero((b[i] != 0) & (b[j] != 0)):
                r = b[i] - b[i, c] / b[j, c] * b[j]
                r[np.abs(r) < 1e-9] = 0.0
                if 0 < np.count_nonzero(r) < np.count_nonzero(b[i]):
                    r = r / np.abs(r).max()
                    b[i] = -r if r.sum() < 0 or (r.sum() == 0 and r[np.flatnonzero(r)[0]] < 0) else r
                    changed = True
    return b + 0.0


def _snap_indices(b: np.ndarray) -> list[np.ndarray]:
    """Snapped ``(k, d)`` index matrices from a refined one (every combination of its rows' snaps, full rank, in
    its sparsest basis)."""
    rows = [_snap_direction(r) for r in b]
    out: list[np.ndarray] = []
    for combo in itertools.product(*rows):
        m = np.stack(combo)
        if np.linalg.matrix_rank(m, tol=1e-9) == len(m):
            snapped = snap_exponents(_sparsest_basis(m).ravel(), 4, 1e-6)
            if snapped is None:
                continue
            m = snapped[0].reshape(m.shape) + 0.0
            m = m[np.lexsort(m.T[::-1])]  # one row order: (z1, z2) and (z2, z1) are the same model
            if not any(np.array_equal(m, o) for o in out):
                out.append(m)
    return out


def _exponent_choices(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Snapped monomial exponents ``a + tau . b`` (``a`` is known up to combinations of the rows of ``b``):
    ``tau`` chosen to zero one input of each index, or 0; simplest first."""
    out: list[tuple[tuple, np.ndarray]] = []
    taus = [np.zeros(len(b))]
    for cols in itertools.product(*[np.flatnonzero(r) for r in b]):
        sub = b[:, list(cols)].T  # (k, k): tau . b[:, cols] = -a[cols]
        if len(set(cols)) == len(cols) and abs(np.linalg.det(sub)) > 1e-9:
            taus.append(np.linalg.solve(sub, -a[list(cols)]))
    for tau in taus:
        snapped = snap_exponents(a + tau @ b, 2, 0.06)
        if snapped is None:
            continue
        e = snapped[0] + 0.0
        if not any(np.array_equal(e, o) for _, o in out):
            out.append(((int(np.count_nonzero(e)), float(np.abs(e).sum()), snapped[1]), e))
    return [e for _, e in sorted(out, key=lambda p: p[0])]


def _y_fit(logx: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """NMSE of ``y`` against ``prod x**a * S(b . L)`` with the spline ``S`` fitted by least squares on ``y``."""
    mono = np.exp(logx @ a)
    m = mono[:, None] * _design(logx @ b.T, fine=True)
    coef, *_ = np.linalg.lstsq(m, y, rcond=None)
    return float(np.mean((y - m @ coef) ** 2) / max(np.var(y), 1e-300))


def _directions(logx: np.ndarray, t: np.ndarray, scale: float, w: np.ndarray | None, k: int) -> list[np.ndarray]:
    """The best ``_REFINE`` starting index matrices, refined (best start first)."""
    scored = sorted(((float(np.sum(_profile(logx, t, b, w)[0] ** 2)), i, b)
                     for i, b in enumerate(_starts(logx, t, k, w))), key=lambda s: s[:2])
    return [_refine(logx, t, b0, scale, w) for _, _, b0 in scored[:_REFINE]]


def _models(x: np.ndarray, y: np.ndarray, k: int, tol: float) -> list[IndexModel]:
    n = len(x)
    logx, t = np.log(x), np.log(np.abs(y))
    keep = np.ones(n, dtype=bool)
    if not (np.all(y > 0) or np.all(y < 0)) or np.min(np.abs(y)) < 1e-3 * np.median(np.abs(y)):
        # g changes sign (or nearly vanishes): log|g| dives at its zeros, which no spline follows; the lowest decile
        # of |y| goes
        keep = t > np.quantile(t, 0.1)
    logx, t_fit, y_fit = logx[keep], t[keep], y[keep]
    scale = float(np.std(t_fit)) * math.sqrt(len(t_fit))
    if not scale > 0:
        return []
    directions = _directions(logx, t_fit, scale, None, k)
    # noisy labels: log|y| of a small y is mostly noise (its variance is ~ sigma**2 / y**2), so the rows are
    # weighted by y_hat**2 / (y_hat**2 + sigma**2), sigma the robust spread of y around the first pass's best fit
    _, _, fit = _profile(logx, t_fit, directions[0])
    resid = np.abs(y_fit) - np.exp(fit)
    sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    w = None
    if sigma > 1e-6 * float(np.median(np.abs(y_fit))):
        yhat2 = np.exp(2 * fit)
        w = np.sqrt(yhat2 / (yhat2 + sigma**2))
        directions = _directions(logx, t_fit, scale, w, k) + directions
    models: list[IndexModel] = []
    seen: set[tuple] = set()
    full_logx = np.log(x)
    for b in (s for dm in directions for s in _snap_indices(dm)):
        _, a, _ = _profile(logx, t_fit, b, w)
        for e in _exponent_choices(a, b):
            key = (tuple(e), tuple(b.ravel()))
            if key in seen:
                continue
            seen.add(key)
            err = _y_fit(full_logx, y, e, b)
            log.debug("index model a=%s b=%s: NMSE %.2e", e, b.tolist(), err)
            if err <= tol:
                models.append(IndexModel(e, b, err))
    models.sort(key=lambda m: (m.nmse > tol / 10, int(np.count_nonzero(m.a)) + int(np.count_nonzero(m.b)), m.nmse))
    return models


def index_models(x: np.ndarray, y: np.ndarray, *, tol: float = 1e-3, max_models: int = 3,
                 max_indices: int = 2, stop: Callable[[], bool] | None = None) -> list[IndexModel]:
    """Monomial-index models of ``y`` (best first), each within ``tol`` (NMSE on ``y``) of the data; empty when the
    inputs are not all positive, or no such structure fits. One index is tried first; two (for three inputs or
    more, up to ``max_indices``) only when no one-index model fits.

    Args:
        x: ``(n, d)`` inputs, ``d >= 2``, all positive (at most 3,000 rows are used: a fixed subsample).
        y: ``(n,)`` labels.
        tol: the largest NMSE of a model (spline ``g``) on ``y`` accepted.
        max_models: at most this many models.
        max_indices: 1 or 2.
        stop: called before every fit; once it returns True the search ends (models of a finished one-index step
            are kept, an unfinished step gives none); e.g. ``Deadline.expired``.

    Shapes:
        ``x`` ``(n, d)``, ``y`` ``(n,)``; ``a`` ``(d,)``, ``b`` ``(k, d)``.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(-1)
    n, d = x.shape
    if d < 2 or n < 4 * (d + 2 * _KNOTS + 4) or not (np.all(x > 0) and np.all(np.isfinite(x))
                                                     and np.all(np.isfinite(y)) and np.all(y != 0)):
        return []
    if n > _MAX_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(n, _MAX_ROWS, replace=False))
        x, y = x[rows], y[rows]
    token = _STOP.set(stop or (lambda: False))
    try:
        for k in range(1, min(max_indices, d - 1) + 1):
            models = _models(x, y, k, tol)
            if models:
                return models[:max_models]
    except _OutOfTime:
        log.info("index models: time budget spent")
    finally:
        _STOP.reset(token)
    return []
