"""Evaluating formulas on data: real float64 values, NMSE, the label rounding floor, the lambdify backends."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["LAMBDIFY_MODULES", "as_float64", "nmse", "noise_floor", "real_values"]


def real_values(v: object) -> np.ndarray:
    """Float64 values of an evaluated formula. Complex results (a formula with ``I`` in it, or a fractional power of
    a negative number) are NaN where the imaginary part is not negligible: such a candidate must score ``inf``, not
    be judged on its real part."""
    a = np.asarray(v)
    if np.iscomplexobj(a):
        with np.errstate(all="ignore"):
            a = np.where(np.abs(a.imag) > 1e-12 * (1.0 + np.abs(a.real)), np.nan, a.real)
    return np.asarray(a, dtype=np.float64)


def nmse(pred: np.ndarray, y: np.ndarray) -> float:
    """``mean((pred - y)^2) / var(y)``; ``inf`` if anything is non-finite (or complex)."""
    pred = np.broadcast_to(real_values(pred), y.shape)
    if not np.isfinite(pred).all():
        return math.inf
    var = float(np.var(y))
    with np.errstate(over="ignore"):  # finite but huge predictions: the error is inf, no warning needed
        return float(np.mean((pred - y) ** 2)) / (var if var > 0 else 1.0)


def noise_floor(y: np.ndarray, dtype: torch.dtype | np.dtype | None = None) -> float:
    """NMSE that float rounding of labels alone can cause (labels computed in ``dtype``)."""
    eps = float(torch.finfo(dtype).eps) if isinstance(dtype, torch.dtype) else float(np.finfo(dtype or np.float64).eps)
    var = float(np.var(y))
    return 100.0 * eps**2 * float(np.mean(y**2)) / (var if var > 0 else 1.0)


def as_float64(v) -> np.ndarray:
    """``v`` (tensor, array or sequence) as a float64 numpy array."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().double().numpy()
    return np.asarray(v, dtype=np.float64)


LAMBDIFY_MODULES = ["scipy", "numpy"]  # sympy.lambdify backends of every numeric evaluation of a formula
