"""Small shared helpers: "did you mean" hints and input validation used at public entry points."""

from __future__ import annotations

import difflib
import inspect
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Iterable

import torch

__all__ = [
    "as_int",
    "check_choice",
    "check_device",
    "check_kwargs",
    "check_tensor",
    "default_dtype",
    "did_you_mean",
    "is_int",
    "usual_permissions",
    "warn_user",
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


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside kanlens (so the warning points at user code)."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide, not thread-safe)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_permissions(path: str | os.PathLike, directory: bool) -> None:
    """Give a ``tempfile.mkdtemp`` folder (0700) or ``mkstemp`` file (0600) the permissions ``mkdir`` / ``open``
    would have given it under the current umask (saved runs are not private by accident)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def default_dtype() -> torch.dtype:
    """The dtype of a model or dataset created without ``dtype=``: torch's default dtype, as for ``torch.nn``
    layers (float32 unless ``torch.set_default_dtype(torch.float64)``, as in pykan's tutorials); other defaults
    (float16, bfloat16) give float32."""
    dt = torch.get_default_dtype()
    return dt if dt in (torch.float32, torch.float64) else torch.float32


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


_PYKAN_UTILS = ("create_dataset_from_data", "augment_input", "SYMBOLIC_LIB", "add_symbolic", "sparse_mask",
                "batch_jacobian", "batch_hessian", "model2param", "get_derivative")


def __getattr__(name: str):
    # pykan's ``from kan.utils import create_dataset_from_data`` -> ``from kanlens.utils import ...`` (loaded lazily)
    if name in _PYKAN_UTILS:
        import importlib

        return getattr(importlib.import_module("kanlens.pykan_utils"), name)
    if name in ("create_dataset", "ex_round"):
        import importlib

        return getattr(importlib.import_module("kanlens"), name)
    raise AttributeError(f"module 'kanlens.utils' has no attribute {name!r}")
