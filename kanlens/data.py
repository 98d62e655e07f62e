"""Datasets: pykan's ``create_dataset`` for formulas, and loaders for user data."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
        f: function of a ``(batch, n_var)`` tensor returning ``(batch,)`` or ``(batch, n_out)``
            (``f_mode="col"``, pykan's convention, e.g. ``lambda x: torch.exp(x[:, [0]])``), or of
            ``(n_var, batch)`` with ``f_mode="row"``.
        n_var: number of input variables.
        ranges: one ``[low, high]`` for all variables or one per variable.
        train_num, test_num: sample counts.
        seed: seed of the local generator (global RNGs are not touched).
        dtype: float32 or float64; default: torch's default dtype (see :func:`kanlens.utils.default_dtype`).

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
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} ({seed!r})")
    if dtype is None:
        dtype = default_dtype()
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    check_choice("f_mode", f_mode, ("col", "row"))
    device = check_device(device)
    if isinstance(n_var, bool) or not isinstance(n_var, int) or n_var < 1:
        raise ValueError(f"n_var must be a positive int, got {n_var!r}")
    for name, num in (("train_num", train_num), ("test_num", test_num)):
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"{name} must be a positive int, got {num!r}")
    r = _ranges(ranges, n_var).to(dtype)
    gen = torch.Generator().manual_seed(int(seed))

    def sample(num: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = r[:, 0] + (r[:, 1] - r[:, 0]) * torch.rand(num, n_var, generator=gen, dtype=dtype)
        y = f(x) if f_mode == "col" else f(x.T)
        y = torch.as_tensor(y, dtype=dtype)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[0] != num:
            raise ValueError(
                f"f must return shape ({num},) or ({num}, n_out) for {num} inputs, got {tuple(y.shape)}"
            )
        if not bool(torch.isfinite(y).all()):
            raise ValueError("f returned NaN or Inf on the sampled ranges; restrict `ranges`")
        return x, y

    train_x, train_y = sample(train_num)
    test_x, test_y = sample(test_num)
    if normalize_input:
        mu, sd = train_x.mean(0), train_x.std(0)
        train_x, test_x = (train_x - mu) / sd, (test_x - mu) / sd
    if normalize_label:
        mu, sd = train_y.mean(0), train_y.std(0)
        train_y, test_y = (train_y - mu) / sd, (test_y - mu) / sd
    return {
        "train_input": train_x.to(device),
        "train_label": train_y.to(device),
        "test_input": test_x.to(device),
        "test_label": test_y.to(device),
    }
