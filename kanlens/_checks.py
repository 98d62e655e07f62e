"""Argument checks used at public entry points: one exception type per kind of mistake.

- ``TypeError``: a value of the wrong type (``as_int("grid", 2.5)``, a list where a tensor is expected, an unknown
  keyword argument as Python itself reports it);
- ``ValueError``: a value of the right type that is not allowed (below a minimum, an unknown choice, a tensor of the
  wrong rank / feature count, empty or not finite, a device this machine lacks);
- ``IndexError``: an index out of range (an edge ``(l, i, j)`` the model does not have).

Every message names the argument and what was given; unknown names get a "did you mean" hint.
:mod:`kanlens.utils` re-exports these names (older imports keep working).
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_int",
    "check_choice",
    "check_device",
    "check_edge",
    "check_kwargs",
    "check_positive",
    "check_tensor",
    "did_you_mean",
    "is_int",
]


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (Python or numpy, e.g. ``np.int64(3)``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def as_int(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` as a Python ``int`` (numpy integers accepted, bools refused); ``TypeError`` / ``ValueError``
    naming ``name`` otherwise."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    value = int(value)  # type: ignore[call-overload]
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


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


def check_kwargs(func: Callable, kwargs: dict, ignored: Iterable[str] = ()) -> None:
    """Raise ``TypeError`` for a keyword in ``kwargs`` (the ``**`` catch-all of ``func``) that is not one of
    ``ignored`` (pykan options kanlens has no use for, e.g. ``a_range``: accepted and dropped); the hint lists
    ``func``'s own parameters and ``ignored``."""
    ignored = set(ignored)
    unknown = [key for key in kwargs if key not in ignored]
    if unknown:
        own = [p.name for p in inspect.signature(func).parameters.values()
               if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise TypeError(f"{func.__name__}() got an unexpected keyword argument {unknown[0]!r}"
                        f"{did_you_mean(unknown[0], sorted(set(own) | ignored))}")


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


def check_device(device: object, name: str = "device") -> torch.device:
    """``torch.device(device)``, checked to exist on this machine (a clear error instead of torch's assertion)."""
    try:
        dev = torch.device(device)  # type: ignore[arg-type]
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} {device!r} is not a valid torch device (e.g. 'cpu', 'cuda', 'cuda:0')") from None
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(" with arguments")[0]
        if len(first) > 100:
            first = first[:100] + "..."
        raise ValueError(f"{name} {str(dev)!r} is not available on this machine ({first}); use 'cpu' or "
                         "check torch.cuda.is_available()") from None
    return dev


def check_edge(model: Any, l: int, i: int, j: int) -> None:
    """Check that ``(l, i, j)`` is an edge of ``model`` (layer, input node, output subnode: pykan's order):
    ``TypeError`` for a non-integer index, ``IndexError`` for one out of range."""
    for name, v in (("l", l), ("i", i), ("j", j)):
        if not is_int(v):
            raise TypeError(f"{name} must be an int, got {type(v).__name__} ({v!r})")
    if not 0 <= l < model.depth:
        raise IndexError(f"l = {l} is out of range: the model has {model.depth} layers (width {model.width})")
    w_in, w_out = model.width_in[l], model.width_out[l + 1]  # nodes in, subnodes out
    if not 0 <= i < w_in:
        raise IndexError(f"i = {i} is out of range: layer {l} has {w_in} inputs (width {model.width})")
    if not 0 <= j < w_out:
        raise IndexError(f"j = {j} is out of range: layer {l} has {w_out} outputs (width {model.width})")


def check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite number ``> 0`` (``>= 0`` with ``allow_zero``), numpy scalars included."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}")
    return float(value)
