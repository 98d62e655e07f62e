"""Data for the parts of a separable function ``f = g(x_S) * h(x_T)`` or ``g(x_S) + h(x_T)``: the parts' values
from a model of ``f`` (averaged over many anchor points), and the second part's data from the real labels once
the first part's formula is known."""

from __future__ import annotations

import functools
import logging

import numpy as np
import sympy
import torch

from .. import formula as sform
from .candidates import Evaluator

__all__ = ["anchor_slices", "factor_data", "part_dataset", "second_part_data", "summand_data", "to_dataset"]

log = logging.getLogger(__name__)

def to_dataset(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, dtype) -> dict:
    """A ``create_dataset``-style dict from numpy inputs ``(n, d)`` and one output ``(n,)``."""
    return {"train_input": torch.as_tensor(xtr, dtype=dtype), "train_label": torch.as_tensor(ytr, dtype=dtype)[:, None],
            "test_input": torch.as_tensor(xte, dtype=dtype), "test_label": torch.as_tensor(yte, dtype=dtype)[:, None]}


_FACTOR_ANCHORS = 64


def second_part_data(first: list[sympy.Expr], first_values: tuple, ev: Evaluator, rest: list[int],
                      good_enough: float, dtype, op: str = "*", offset: float = 0.0) -> list[dict]:
    """Datasets for the second part from the real labels, ``h(x_T) = (y - offset) / g(x_S)`` (``op = "*"``) or
    ``y - g(x_S)`` (``op = "+"``), for the formulas ``g`` of the first part that reproduce its values (from the
    KAN) to ``good_enough``: the simplest and the closest one (the closest may fit the KAN's error, the simplest
    may be an approximation of the right shape: ``exp(x1)`` vs ``exp(26*tan(0.038*x1))`` in
    ``exp(x1)*x2**2 + x3``, a Gaussian bump vs ``exp(-sin(pi*(x1**2 + x2**2))/2)`` in P04); empty when none matches.

    The KAN's values of a part carry the KAN's error (NMSE ~3e-4 for ``1/(x2 + x3)`` in ``x1/(x2 + x3)``, too
    much to tell ``1/u`` from ``exp(-a*u)``), the real labels do not. For a product only points where ``|g|`` is at
    least half its maximum are used, so noise in ``y`` is amplified at most twice.
    """
    data = {"train": (ev.xtr, ev.ytr[:, 0]), "test": (ev.xte, ev.yte[:, 0])}
    matches = []
    for expr in first:
        vals = {key: ev.values(expr, x) for key, (x, _) in data.items()}
        err = sform.nmse(vals["train"], first_values[0])
        if err <= good_enough:
            matches.append((sform.formula_complexity(expr), err, vals, expr))
    if not matches:
        return []
    simplest = min(matches, key=lambda m: (m[0], m[1]))
    closest = min(matches, key=lambda m: (m[1], m[0]))
    out = []
    for _, _, vals, expr in [simplest] if simplest is closest else [simplest, closest]:
        ds = part_dataset(vals, data, rest, op, offset, dtype)
        if ds is not None:
            log.info("separability: second part's data from the labels and %s", expr)
            out.append(ds)
    return out


def part_dataset(vals: dict, data: dict, rest: list[int], op: str, offset: float, dtype) -> dict | None:
    if op == "+":
        (x_tr, y_tr), (x_te, y_te) = ((x[:, rest], y - vals[key]) for key, (x, y) in data.items())
        return to_dataset(x_tr, y_tr, x_te, y_te, dtype)
    big = 0.5 * float(np.max(np.abs(vals["train"])))
    keep = {key: np.abs(v) >= big for key, v in vals.items()}
    if not big > 0 or keep["train"].sum() < 20 or keep["test"].sum() < 10:
        return None
    (x_tr, y_tr), (x_te, y_te) = ((x[keep[key]][:, rest], (y[keep[key]] - offset) / vals[key][keep[key]])
                                  for key, (x, y) in data.items())
    return to_dataset(x_tr, y_tr, x_te, y_te, dtype)


def summand_data(predict, xtr: np.ndarray, xte: np.ndarray, sub: list[int], rest: list[int],
                  rng: np.random.Generator):
    """Values of the parts of ``f = g(x_S) + h(x_T)`` at the training and test points, offset so that
    ``g + h ~ f``: ``((g_train, g_test), (h_train, h_test))``, or None when the model is not finite there.

    Each part is the mean of the slices ``f(x_S, a_T)`` (``f(a_S, x_T)``) over ``_FACTOR_ANCHORS`` training points
    ``a_j`` (one slice carries the KAN's error at its anchor); the mean of ``f`` at the anchors is subtracted from
    ``h``, since for a sum ``mean_j f(x_S, a_T_j) + mean_j f(a_S_j, x_T) - mean_j f(a_j) = f(x)``.
    """
    idx = rng.choice(len(xtr), size=min(_FACTOR_ANCHORS, len(xtr)), replace=False)
    anchors = xtr[idx]
    offset = float(np.mean(predict(anchors)))
    out = []
    for keep, shift in ((sub, 0.0), (rest, offset)):
        vals = tuple(anchor_slices(predict, anchors, x, keep).mean(1) - shift for x in (xtr, xte))
        if not all(np.isfinite(v).all() for v in vals):
            return None
        out.append(vals)
    return tuple(out)


def anchor_slices(predict, anchors: np.ndarray, x: np.ndarray, keep: list[int]) -> np.ndarray:
    """``(n, m)``: ``f`` at the points ``x`` with the inputs outside ``keep`` taken from each of ``m`` anchors."""
    out = np.empty((len(x), len(anchors)))
    step = max(1, 2**16 // len(anchors))  # bounded memory for large datasets
    for i in range(0, len(x), step):
        xx = np.repeat(anchors[None, :, :], min(step, len(x) - i), axis=0)  # (rows, m, d)
        xx[:, :, keep] = x[i:i + step, None, keep]
        out[i:i + step] = predict(xx.reshape(-1, x.shape[1])).reshape(-1, len(anchors))
    return out


def factor_data(predict, xtr: np.ndarray, xte: np.ndarray, sub: list[int], rest: list[int],
                 rng: np.random.Generator):
    """Values of the factors of ``f = g(x_S) * h(x_T)`` at the training and test points, scaled so that
    ``g * h ~ f``: ``((g_train, g_test), (h_train, h_test))``, or None when a factor vanishes at the anchors or
    the model is not finite there.

    One slice ``f(x_S, a_T)`` carries the KAN's error at its anchor ``a`` (a slice along the domain's edge can be
    off by several percent); the slices at ``_FACTOR_ANCHORS`` training points ``a_j`` form the rank-1 matrix
    ``g(x_S) h(a_T)``, whose leading singular vector averages those errors out. ``h`` is then the least-squares
    coefficient of the slices ``f(a_S, x_T)`` on ``g(a_S)``, and ``g`` once more on ``h`` (consistent scales).
    """
    idx = rng.choice(len(xtr), size=min(_FACTOR_ANCHORS, len(xtr)), replace=False)
    anchors = xtr[idx]

    def coef(m: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Least-squares coefficient of every row of ``m`` on ``v``."""
        return m @ v / np.dot(v, v)

    slices = functools.partial(anchor_slices, predict, anchors)  # (x, keep) -> (n, anchors)
    a_tr, b_tr = slices(xtr, sub), slices(xtr, rest)  # g(x_S) h(a_T), g(a_S) h(x_T)
    if not (np.isfinite(a_tr).all() and np.isfinite(b_tr).all()):
        return None
    u, s, _ = np.linalg.svd(a_tr, full_matrices=False)
    g_a = (u[:, 0] * s[0])[idx]
    if not np.dot(g_a, g_a) > 0:
        return None
    h_a = coef(b_tr, g_a)[idx]
    if not np.dot(h_a, h_a) > 0:
        return None
    g_tr = coef(a_tr, h_a)  # g once more on h, so that the two scales multiply back to f
    g_a = g_tr[idx]
    return (g_tr, coef(slices(xte, sub), h_a)), (coef(b_tr, g_a), coef(slices(xte, rest), g_a))


