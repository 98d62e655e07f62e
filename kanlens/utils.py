"""Small shared helpers: user warnings attributed to user code, the default dtype, file permissions, messages and
values fit for logs and JSON (:func:`one_line`, :func:`jsonable`), and pykan's
``kan.utils`` names (loaded lazily). The argument checks (``as_int``, ``check_tensor``, ...) are in
:mod:`kanlens._checks` and re-exported here."""

from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Any

import numpy as np
import torch

# The argument checks live in kanlens._checks; re-exported here for the imports that still name kanlens.utils.
from ._checks import as_int, check_choice, check_device, check_kwargs, check_tensor, did_you_mean, is_int

__all__ = [
    "as_int",
    "check_choice",
    "check_device",
    "check_kwargs",
    "check_tensor",
    "default_dtype",
    "did_you_mean",
    "is_int",
    "jsonable",
    "one_line",
    "usual_permissions",
    "warn_user",
]


def one_line(e: BaseException | str) -> str:
    """An exception (or message) as one line: whitespace runs, newlines included, become single spaces."""
    return " ".join(str(e).split())


def jsonable(v: Any) -> Any:
    """``v`` as strict JSON data: dicts (keys as strings), lists and tuples recursively; floats (numpy ones
    included) as Python floats, non-finite ones as ``None``; numpy integers and bools as Python ones; ``str``,
    ``int``, ``bool`` and ``None`` as they are; any other object as its ``str``."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, (np.integer, np.bool_)):
        return v.item()
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)


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
