"""How noisy are the labels? An estimate of the label noise from the data alone, before any model is fitted.

The search compares formulas with the data: "close enough to be worth snapping", "a part found to within ...".
Fixed tolerances (NMSE 1e-4) fail exactly where measurements are noisy: with SRBench's noise ``eps * std(y)`` the
true formula itself scores ``eps**2`` (1e-4 at ``eps = 1e-2``). :func:`noise_nmse` estimates that level as the
NMSE of a local fit that is too flexible to be biased much by a smooth function yet cannot follow the noise:

* one input: the difference-based estimator of Gasser, Sroka and Jennen-Steinmetz (1986): on sorted inputs each
  label against the straight line through its two neighbours;
* two to five inputs: each label against the local quadratic fit of its ``k`` nearest neighbours (itself left
  out), the fit's own variance at the point taken out. A neighbourhood twice as large tells noise from curvature:
  noise gives the same error at both sizes, the fit's bias (the function curving within a neighbourhood) about
  twice the error (1.7-2.5x on the Feynman equations without noise). The bias share is removed by that ratio; when
  it is above 35% the estimate is "unknown" (``inf``; unless even the
  upper bound is tiny). So is it for more than five inputs, where a thousand points
  cannot tell noise from curvature.

The estimate is used to loosen tolerances (never to call a formula exact), so an unknown level keeps the fixed
ones. A function that oscillates faster than the points resolve is noise to any local estimate: callers cap what
they make of it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["noise_nmse"]

_MAX_POINTS = 2000  # larger samples are subsampled (the estimate needs a few hundred points, not all)


def noise_nmse(x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> float:
    """Estimated ``var(noise) / var(y)`` of labels ``y`` ``(n,)`` at inputs ``x`` ``(n, d)``.

    About ``0`` for noise-free smooth data, about ``eps**2`` for labels with noise ``eps * std(y)``; ``inf`` when it
    cannot be told (too few points, non-finite values, constant labels, or curvature that dominates).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim == 1:
        x = x[:, None]
    n, d = x.shape
    var = float(np.var(y)) if n else 0.0
    if not (var > 0 and np.isfinite(x).all() and np.isfinite(y).all()):
        return math.inf
    if n > _MAX_POINTS:
        keep = np.random.default_rng(seed).choice(n, _MAX_POINTS, replace=False)
        x, y, n = x[keep], y[keep], _MAX_POINTS
    scale = x.std(0)
    x = (x - x.mean(0)) / np.where(scale > 0, scale, 1.0)
    if d == 1:
        return _sorted_differences(x[:, 0], y) / var if n >= 8 else math.inf
    if d > _MAX_INPUTS:
        return math.inf
    k1 = 2 * ((d + 1) * (d + 2) // 2) + 2  # twice the quadratic's terms, and two more
    if n < 2 * k1 + 1:
        return math.inf
    e1, e2 = _local_fit(x, y, k1), _local_fit(x, y, 2 * k1)
    if not (math.isfinite(e1) and math.isfinite(e2)):
        return math.inf
    if e2 > _MAX_GROWTH * e1:  # curvature dominates: e1 is only an upper bound, worth giving when it is tiny
        return e1 / var if e1 <= _TINY * var else math.inf
    return e1 * min(1.0, 2.0 - e2 / e1) / var  # bias doubling with the neighbourhood: its share is e2/e1 - 1


_MAX_INPUTS = 5
_MAX_GROWTH = 1.35
_TINY = 1e-6


def _sorted_differences(x: np.ndarray, y: np.ndarray) -> float:
    """Gasser et al.'s pseudo-residuals: ``y_i`` minus the line through its sorted neighbours, normalised."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    left, right = x[1:-1] - x[:-2], x[2:] - x[1:-1]
    span = left + right
    ok = span > 0
    if ok.sum() < 3:
        return math.inf
    a, b = right[ok] / span[ok], left[ok] / span[ok]
    e = a * y[:-2][ok] + b * y[2:][ok] - y[1:-1][ok]
    return float(np.mean(e**2 / (a**2 + b**2 + 1.0)))


def _features(dx: np.ndarray) -> np.ndarray:
    """``(..., terms)``: 1, the offsets and their products (a quadratic in the offsets)."""
    d = dx.shape[-1]
    cols = [np.ones(dx.shape[:-1])] + [dx[..., i] for i in range(d)]
    cols += [dx[..., i] * dx[..., j] for i in range(d) for j in range(i, d)]
    return np.stack(cols, axis=-1)


def _local_fit(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Mean squared leave-one-out residual of a local quadratic fit on the ``k`` nearest neighbours, per unit of
    the variance it carries (``1 + the fit's variance at the point``)."""
    n = len(x)
    sq = np.einsum("nd,nd->n", x, x)
    dist = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.fill_diagonal(dist, np.inf)
    nbr = np.argpartition(dist, k - 1, axis=1)[:, :k]  # (n, k)
    design = _features(x[nbr] - x[:, None, :])  # (n, k, terms): neighbours relative to the point
    terms = design.shape[-1]
    gram = np.einsum("nki,nkj->nij", design, design) + 1e-10 * np.eye(terms)
    rhs = np.stack([np.einsum("nki,nk->ni", design, y[nbr]), np.broadcast_to(np.eye(terms)[0], (n, terms))], -1)
    try:
        sol = np.linalg.solve(gram, rhs)  # (n, terms, 2): the coefficients, and the first column of the inverse
    except np.linalg.LinAlgError:
        return math.inf
    resid, inv00 = y - sol[:, 0, 0], sol[:, 0, 1]  # at the point itself (offset 0) the fit is its intercept
    ok = np.isfinite(resid) & np.isfinite(inv00) & (inv00 > 0)
    if ok.sum() < max(3, n // 2):
        return math.inf
    return float(np.mean(resid[ok] ** 2 / (1.0 + inv00[ok])))
