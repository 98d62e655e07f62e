"""Data sampled from a known formula: the one sampler of the symbolic-recovery benchmark and of formula sweeps.

``benchmarks/symbolic_recovery.py`` and the formula tasks of :func:`kanlens.sweep` (see
:func:`kanlens.sweep_tasks.load_formula_tasks`) both sample here, so a sweep of a formula file sees exactly the data,
library and truth error the benchmark sees: uniform points in the formula's box (one numpy generator seeded with
``seed``: train then test), labels computed in float64 and then cast, optional SRBench noise, the default symbolic
library plus the file's special functions, and the NRMSE against the truth on 10000 fresh points.

Example:
    >>> import sympy
    >>> x1 = sympy.Symbol("x1")
    >>> ds = sample_formula(sympy.sin(x1), [x1], [(-2.0, 2.0)], seed=0, n_train=8, n_test=4)
    >>> tuple(ds["train_input"].shape), tuple(ds["test_label"].shape), ds["train_input"].dtype
    ((8, 1), (4, 1), torch.float32)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SPECIAL_FUNCTIONS", "formula_nrmse", "library_names", "numpy_function", "sample_formula",
           "special_library"]

# special-function names of a formula file (``special_functions``) -> the library functions they need
SPECIAL_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "besselj": ("besselj0", "besselj1"), "erf": ("erf",), "fresnels": ("fresnels",), "fresnelc": ("fresnelc",),
    "fresnel": ("fresnels", "fresnelc")}
TRUTH_POINTS, TRUTH_SEED = 10_000, 12345  # fresh points of the truth error (independent of any training seed)


def numpy_function(expr: Any, symbols: Sequence[Any]) -> Callable[[np.ndarray], np.ndarray]:
    """A float64 numpy function of a sympy expression (scipy special functions; complex or broken values -> nan).

    Shapes:
        ``x``: ``(n, len(symbols))``; returns ``(n,)``.
    """
    import sympy

    f = sympy.lambdify(list(symbols), expr, modules=["scipy", "numpy"])

    def g(x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = np.asarray(f(*(x[:, k] for k in range(x.shape[1]))))
        if np.iscomplexobj(out):
            out = np.where(np.abs(out.imag) > 0, np.nan, out.real)
        return np.broadcast_to(out.astype(np.float64), (x.shape[0],))

    return g


def sample_formula(expr: Any, symbols: Sequence[Any], ranges: Sequence[Sequence[float]], *, seed: int,
                   dtype: torch.dtype = torch.float32, n_train: int = 1000, n_test: int = 1000,
                   noise: float = 0.0) -> dict[str, torch.Tensor]:
    """A ``create_dataset``-style dataset of ``expr``: uniform points in ``ranges``, labels in float64 then cast.

    The points are drawn in float64 and rounded to ``dtype`` before the labels are computed (the labels are the
    formula's values at the points the model sees). ``noise`` adds SRBench's ``noise * std(y) * N(0, 1)`` to every
    label (std of the noise-free training labels; its own generator, so the points do not depend on it).

    Shapes:
        ``train_input``: ``(n_train, len(symbols))``, ``train_label``: ``(n_train, 1)``; test likewise.

    Raises:
        ValueError: the formula is not finite at a sampled point.
    """
    rng = np.random.default_rng(seed)
    noise_rng = np.random.default_rng([seed, 1])
    lo, hi = np.array(ranges, dtype=np.float64).T
    f = numpy_function(expr, symbols)
    out: dict[str, torch.Tensor] = {}
    scale = None
    for split, n in (("train", n_train), ("test", n_test)):
        x = (lo + (hi - lo) * rng.random((n, len(symbols)))).astype(np.float32 if dtype == torch.float32
                                                                      else np.float64)
        y = f(x.astype(np.float64))
        if not np.isfinite(y).all():
            raise ValueError(f"the formula {expr} is not finite on its ranges {[list(r) for r in ranges]}")
        scale = float(np.std(y)) if scale is None else scale
        if noise:
            y = y + noise * scale * noise_rng.standard_normal(y.shape)
        out[f"{split}_input"] = torch.tensor(x, dtype=dtype)
        out[f"{split}_label"] = torch.tensor(y[:, None], dtype=dtype)
    return out


def formula_nrmse(candidate: Any, truth: Any, symbols: Sequence[Any], ranges: Sequence[Sequence[float]], *,
                  n: int = TRUTH_POINTS, seed: int = TRUTH_SEED) -> float:
    """RMSE(candidate - truth) / std(truth) on ``n`` fresh uniform points of ``ranges`` (inf if not finite)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.array(ranges, dtype=np.float64).T
    x = lo + (hi - lo) * rng.random((n, len(symbols)))
    t = numpy_function(truth, symbols)(x)
    try:
        c = numpy_function(candidate, symbols)(x)
    except Exception:  # a candidate numpy cannot evaluate is no recovery
        return math.inf
    if not np.isfinite(c).all():
        return math.inf
    err = float(np.sqrt(np.mean((c - t) ** 2)) / max(float(np.std(t)), 1e-300))
    return err if math.isfinite(err) else math.inf


def library_names(specials: Sequence[str]) -> tuple[str, ...]:
    """Library functions for a formula file's ``special_functions`` (a library name passes through as itself)."""
    return tuple(dict.fromkeys(n for s in specials for n in SPECIAL_FUNCTIONS.get(s, (s,))))


def special_library(names: Sequence[str] = ()) -> Any:
    """The default symbolic library plus the special functions ``names`` (library names such as ``"erf"``)."""
    from .symbolic.library import default_library

    lib = default_library()
    extra = [n for n in names if n not in lib.names]
    return lib.with_special().subset(lib.names + extra) if extra else lib
