"""Small shared helpers: "did you mean" hints and input validation used at public entry points."""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Iterable

import torch

__all__ = ["check_choice", "check_tensor", "did_you_mean", "warn_user"]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``"; did you mean 'x'?"`` suffix for error messages (empty when nothing is close)."""
    choices = list(choices)
    by_lower = {str(c).lower(): c for c in reversed(choices)}
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.5)
    hint = f"; did you mean {by_lower[close[0]]!r}?" if close else ""
    return f"{hint} (choices: {', '.join(map(str, choices))})" if len(choices) <= 40 else hint


def check_choice(arg: str, value: str, choices: Iterable[str]) -> str:
    """Raise ``ValueError`` naming ``arg`` when ``value`` is not one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"unknown {arg} {value!r}{did_you_mean(value, choices)}")
    return value


def check_tensor(
    name: str,
    x: object,
    *,
    ndim: int | None = None,
    last_dim: int | None = None,
    finite: bool = True,
    allow_empty: bool = False,
) -> torch.Tensor:
    """Validate a user tensor: type, floating dtype, rank, feature count, emptiness and finiteness."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point()):
        raise TypeError(f"{name} must have a floating dtype (float32/float64), got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if last_dim is not None and x.shape[-1] != last_dim:
        raise ValueError(f"{name} must have {last_dim} features (last dim), got shape {tuple(x.shape)}")
    if not allow_empty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside kanlens (so the warning points at user code)."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
