"""Datasets: pykan's ``create_dataset`` for formulas, and :func:`load_csv` for numeric CSV files."""

from __future__ import annotations

import csv
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ._checks import check_choice, check_device, did_you_mean
from .utils import default_dtype

__all__ = ["DataFileError", "column_identifier", "create_dataset", "load_csv"]


def _ranges(ranges: Sequence[float] | Sequence[Sequence[float]], n_var: int) -> torch.Tensor:
    r = torch.as_tensor(ranges, dtype=torch.float64)
    if r.ndim == 1:
        if r.shape[0] != 2:
            raise ValueError(f"ranges must be [low, high] or one [low, high] per variable, got {ranges!r}")
        r = r.expand(n_var, 2)
    if r.shape != (n_var, 2):
        raise ValueError(f"ranges must have shape ({n_var}, 2) for n_var={n_var}, got {tuple(r.shape)}")
    if not bool(torch.isfinite(r).all()) or bool((r[:, 0] >= r[:, 1]).any()):
        raise ValueError(f"every range must be finite with low < high, got {r.tolist()}")
    return r


def _is_int(value: object) -> bool:
    """An integer (Python or numpy, e.g. ``np.int64``) but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _labels(y: object, num: int, f_mode: str, dtype: torch.dtype) -> torch.Tensor:
    """``f``'s output as ``(num, n_out)`` labels, following the shape rules of :func:`create_dataset`."""
    try:
        y = torch.as_tensor(y, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"f must return a tensor or array of numbers, got {type(y).__name__} ({e})") from None
    shape = tuple(y.shape)
    if y.ndim == 1 and shape[0] == num:
        return y[:, None]
    if f_mode == "col":
        if y.ndim == 2 and shape[0] == num:
            return y
        hint = ("; that looks like (n_out, batch): return (batch, n_out), e.g. torch.stack([...], dim=1)"
                if y.ndim == 2 and shape[1] == num else "")
        raise ValueError(f"f must return shape ({num},) or ({num}, n_out) for {num} inputs (f_mode='col'), "
                         f"got {shape}{hint}")
    if y.ndim == 2 and shape == (num, num) and num > 1:
        raise ValueError(f"f returned shape {shape} for {num} inputs with f_mode='row': ambiguous between "
                         "(n_out, batch) and (batch, n_out); use train_num/test_num different from the number "
                         "of outputs, or f_mode='col'")
    if y.ndim == 2 and shape[1] == num:  # (n_out, batch): outputs along rows, like the inputs
        return y.T.contiguous()
    if y.ndim == 2 and shape[0] == num:  # (batch, n_out): pykan's convention
        return y
    raise ValueError(f"f must return shape ({num},), (n_out, {num}) or ({num}, n_out) for {num} inputs "
                     f"(f_mode='row'), got {shape}")


def _normalize(train: torch.Tensor, test: torch.Tensor, what: str, item: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise both splits with the training mean and standard deviation (pykan's normalisation)."""
    if train.shape[0] < 2:
        raise ValueError(f"cannot normalize {what} with train_num=1 (the standard deviation of one sample is "
                         "undefined); use train_num >= 2")
    mu, sd = train.mean(0), train.std(0)
    overflow = (~(torch.isfinite(mu) & torch.isfinite(sd))).nonzero()
    if overflow.numel():
        raise ValueError(f"cannot normalize {what}: the mean or standard deviation of {item} {int(overflow[0])} "
                         f"overflows {train.dtype}")
    constant = (sd == 0).nonzero()
    if constant.numel():
        raise ValueError(f"cannot normalize {what}: {item} {int(constant[0])} is constant on the training set (std 0)")
    train, test = (train - mu) / sd, (test - mu) / sd
    if not bool(torch.isfinite(train).all() & torch.isfinite(test).all()):
        raise ValueError(f"normalizing {what} produced NaN or Inf (values too large for {train.dtype})")
    return train, test


def create_dataset(
    f: Callable[[torch.Tensor], torch.Tensor],
    n_var: int = 2,
    *,
    f_mode: str = "col",
    ranges: Sequence[float] | Sequence[Sequence[float]] = (-1.0, 1.0),
    train_num: int = 1000,
    test_num: int = 1000,
    normalize_input: bool = False,
    normalize_label: bool = False,
    device: torch.device | str = "cpu",
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Sample a formula uniformly on a box (pykan's ``create_dataset``).

    Args:
        f: the formula. With ``f_mode="col"`` (pykan's default) a function of a ``(batch, n_var)`` tensor returning
            ``(batch,)`` or ``(batch, n_out)``, e.g. ``lambda x: torch.exp(x[:, [0]])``. With ``f_mode="row"`` a
            function of ``(n_var, batch)`` (``x[0]`` is the first variable) returning ``(batch,)``,
            ``(n_out, batch)`` (outputs along rows, like the inputs) or ``(batch, n_out)`` (pykan's convention); a
            square ``(batch, batch)`` result is ambiguous there and refused, nothing is transposed by guessing.
        n_var: number of input variables.
        ranges: one ``[low, high]`` for all variables or one per variable.
        train_num, test_num: sample counts.
        normalize_input, normalize_label: standardise with the training split's mean and standard deviation;
            a constant variable or output (or ``train_num=1``) is a ``ValueError``.
        seed: seed of the local generator (global RNGs are not touched).
        dtype: float32 or float64; default: torch's default dtype (see :func:`kanlens.utils.default_dtype`).

    Integer arguments accept Python and numpy integers (not bools).

    Returns:
        ``{"train_input", "train_label", "test_input", "test_label"}``.

    Shapes:
        inputs ``(num, n_var)``, labels ``(num, n_out)``.

    Example:
        >>> ds = create_dataset(lambda x: x[:, [0]] * x[:, [1]], n_var=2)
        >>> ds["train_input"].shape, ds["train_label"].shape
        (torch.Size([1000, 2]), torch.Size([1000, 1]))
    """
    if not callable(f):
        raise TypeError(f"f must be callable (a function of the inputs), got {type(f).__name__}")
    if not _is_int(seed):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} ({seed!r})")
    if not -(2**63) <= seed < 2**64:
        raise ValueError(f"seed must be in [-2**63, 2**64 - 1] (torch.Generator's range), got {seed}")
    if dtype is None:
        dtype = default_dtype()
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    check_choice("f_mode", f_mode, ("col", "row"))
    device = check_device(device)
    if not _is_int(n_var) or n_var < 1:
        raise ValueError(f"n_var must be a positive int, got {n_var!r}")
    for name, num in (("train_num", train_num), ("test_num", test_num)):
        if not _is_int(num) or num < 1:
            raise ValueError(f"{name} must be a positive int, got {num!r}")
    n_var, train_num, test_num = int(n_var), int(train_num), int(test_num)
    r = _ranges(ranges, n_var).to(dtype)
    if not bool(torch.isfinite(r).all()) or bool((r[:, 0] >= r[:, 1]).any()):
        raise ValueError(f"every range must have low < high and fit in {dtype}, got {r.tolist()} after conversion")
    gen = torch.Generator().manual_seed(int(seed))

    def sample(num: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = r[:, 0] + (r[:, 1] - r[:, 0]) * torch.rand(num, n_var, generator=gen, dtype=dtype)
        y = _labels(f(x) if f_mode == "col" else f(x.T), num, f_mode, dtype)
        if not bool(torch.isfinite(y).all()):
            raise ValueError("f returned NaN or Inf on the sampled ranges; restrict `ranges`")
        return x, y

    train_x, train_y = sample(train_num)
    test_x, test_y = sample(test_num)
    if train_y.shape[1] != test_y.shape[1]:
        raise ValueError(f"f returned {train_y.shape[1]} outputs for the training samples but {test_y.shape[1]} "
                         "for the test samples")
    if normalize_input:
        train_x, test_x = _normalize(train_x, test_x, "inputs", "variable")
    if normalize_label:
        train_y, test_y = _normalize(train_y, test_y, "labels", "output")
    return {
        "train_input": train_x.to(device),
        "train_label": train_y.to(device),
        "test_input": test_x.to(device),
        "test_label": test_y.to(device),
    }


class DataFileError(ValueError):
    """A data file that cannot be used: missing, malformed, a missing column, non-numeric or non-finite values."""


def load_csv(
    path: str | os.PathLike,
    target: str,
    features: Sequence[str] | None = None,
    *,
    test_frac: float = 0.2,
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Read a numeric CSV with a header into a pykan-style dataset (rows shuffled with ``seed``, then split).

    The reader of ``kanlens fit --csv`` and ``kanlens sweep DATA.csv``; a bad file, column or fraction raises
    :class:`DataFileError` naming the line and column (its messages speak of the command-line flags).

    Returns:
        ``(dataset, feature_names)``.

    Shapes:
        inputs ``(n, len(features))``, labels ``(n, 1)``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"--csv: no such file {str(path)!r}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DataFileError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise DataFileError(f"{path}: duplicate column names in the header {header}")
    if target not in header:
        raise DataFileError(f"--target: no column {target!r} in {path}{did_you_mean(target, header)}")
    feats = [c for c in header if c != target] if features is None else list(features)
    for c in feats:
        if c not in header:
            raise DataFileError(f"--features: no column {c!r} in {path}{did_you_mean(c, header)}")
    if target in feats:
        raise DataFileError(f"--features must not include the target column {target!r}")
    if not feats:
        raise DataFileError(f"{path}: no feature columns besides the target {target!r}")
    cols = [header.index(c) for c in [*feats, target]]
    values = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataFileError(f"{path}, line {n}: {len(row)} fields but the header has {len(header)}")
        try:
            values.append([float(row[c]) for c in cols])
        except ValueError:
            bad = next(c for c in cols if not _is_float(row[c]))
            raise DataFileError(f"{path}, line {n}, column {header[bad]!r}: not a number: {row[bad]!r}") from None
    data = torch.tensor(values, dtype=torch.float64)
    if not bool(torch.isfinite(data).all()):
        raise DataFileError(f"{path}: contains NaN or infinite values in the selected columns")
    if data.shape[0] < 10:
        raise DataFileError(f"{path}: needs at least 10 data rows, got {data.shape[0]}")
    if not 0.0 < test_frac < 1.0:
        raise DataFileError(f"--test-frac must be in (0, 1), got {test_frac}")
    perm = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))
    data = data[perm].float()
    n_test = max(1, round(test_frac * data.shape[0]))
    x, y = data[:, :-1], data[:, -1:]
    dataset = {"train_input": x[n_test:], "train_label": y[n_test:], "test_input": x[:n_test],
               "test_label": y[:n_test]}
    return dataset, feats


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def column_identifier(name: str, used: set[str]) -> str:
    """A sympy-friendly variable name for a CSV column (``"sepal length"`` -> ``"sepal_length"``)."""
    out = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name.strip()) or "x"
    if not (out[0].isalpha()):
        out = "x_" + out
    base, n = out, 2
    while out in used:
        out, n = f"{base}_{n}", n + 1
    used.add(out)
    return out
