"""Datasets: pykan's ``create_dataset`` for formulas, and loaders for user data."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .utils import check_choice, check_device, default_dtype

__all__ = ["create_dataset"]


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
