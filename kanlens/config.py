"""What a :class:`~kanlens.KAN` is built from: :class:`KANConfig` (saved as JSON in checkpoints) and the checks and
pykan translations that turn ``KAN(...)``'s arguments into one."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch

from ._checks import as_int, did_you_mean
from .layers.mult import node_layout
from .layers.spline import base_fun_name
from .utils import default_dtype

__all__ = [
    "DTYPES", "PYKAN_IGNORED", "KANConfig", "build_config", "dtype_name", "normalize_width", "pykan_options",
    "validate_config",
]

#: the dtypes a model may have, by their config name
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def normalize_width(width: object, mult_arity: object = 2) -> list:
    """The config form of ``width``: plain ints (``[2, 5, 1]``) without multiplication nodes, else pykan's
    ``[[n_sum, n_mult], ...]`` for every entry; checks ``mult_arity`` against it."""
    return node_layout(width, mult_arity).width()


@dataclasses.dataclass
class KANConfig:
    """Everything needed to rebuild a :class:`KAN` (saved as JSON in checkpoints)."""

    width: list
    grid: int = 5
    k: int = 3
    seed: int = 0
    noise_scale: float = 0.5
    scale_base_mu: float = 0.0
    scale_base_sigma: float = 1.0
    base_fun: str = "silu"
    grid_range: tuple[float, float] = (-1.0, 1.0)
    grid_eps: float = 0.02
    affine_trainable: bool = False
    symbolic_enabled: bool = True
    dtype: str = "float32"
    input_names: list[str] | None = None
    input_ids: list[int] | None = None
    mult_arity: int | list[list[int]] = 2

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["grid_range"] = list(self.grid_range)
        if not any(isinstance(w, (list, tuple)) for w in self.width):
            d.pop("mult_arity")  # no multiplication nodes: the same JSON as before they existed
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KANConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown KANConfig fields {sorted(unknown)}")
        d = dict(d)
        if "grid_range" in d:
            d["grid_range"] = tuple(d["grid_range"])
        return cls(**d)


# pykan KAN options with no effect in kanlens (it never writes files on its own and keeps no history of states)
PYKAN_IGNORED = ("auto_save", "ckpt_path", "state_id", "round", "first_init")


def pykan_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
    """Split pykan-only ``KAN`` options off ``kwargs``: dropped (``auto_save``...) or returned as layer flags
    (``sp_trainable``, ``sb_trainable``); clear errors for the ones kanlens cannot honour."""
    kwargs = dict(kwargs)
    for name in PYKAN_IGNORED:
        kwargs.pop(name, None)
    if "base_fun" in kwargs:
        kwargs["base_fun"] = base_fun_name(kwargs["base_fun"])
    trainable = {}
    for name in ("sp_trainable", "sb_trainable", "sparse_init"):
        if name in kwargs:
            value = kwargs.pop(name)
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r}")
            trainable[name] = value
    return kwargs, trainable


def validate_config(c: KANConfig) -> None:
    """Range checks of a config (types of grid/k/widths are checked by the layers)."""
    if not (isinstance(c.grid_eps, (int, float)) and 0.0 <= c.grid_eps <= 1.0):
        raise ValueError(f"grid_eps must be in [0, 1], got {c.grid_eps!r}")
    for name in ("noise_scale", "scale_base_mu", "scale_base_sigma"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    for name in ("input_names", "input_ids"):
        v = getattr(c, name)
        n_in = node_layout(c.width, c.mult_arity).width_in[0]
        if v is not None and len(v) != n_in:
            raise ValueError(f"{name} must have one entry per input ({n_in}), got {len(v)}: {v!r}")
    if c.input_ids is not None and (len(set(c.input_ids)) != len(c.input_ids) or min(c.input_ids) < 0):
        raise ValueError(f"input_ids must be unique non-negative ints, got {c.input_ids!r}")


def dtype_name(dtype: torch.dtype | str) -> str:
    for name, dt in DTYPES.items():
        if dtype in (dt, name):
            return name
    raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")


def build_config(width: object, grid: object, k: object, seed: object, dtype: object, symbolic_enabled: bool,
                 config: KANConfig | None, kwargs: dict[str, Any]) -> tuple[KANConfig, dict[str, bool]]:
    """The checked :class:`KANConfig` of ``KAN(...)``'s arguments (a copy of ``config`` when given) and the layer
    flags among pykan's options (``sp_trainable``...)."""
    if config is None:
        if width is None:
            raise ValueError("KAN needs `width`, e.g. KAN(width=[2, 5, 1])")
        kwargs, trainable = pykan_options(kwargs)
        fields = [f.name for f in dataclasses.fields(KANConfig)]
        for name in kwargs:
            if name not in fields or name in ("width", "grid", "k", "seed", "dtype", "symbolic_enabled"):
                known = [*fields, *PYKAN_IGNORED, "sp_trainable", "sb_trainable"]
                raise TypeError(f"unknown KAN option {name!r}{did_you_mean(name, known)}")
        config = KANConfig(
            width=normalize_width(width, kwargs.get("mult_arity", 2)), grid=as_int("grid", grid, 1),
            k=as_int("k", k, 1), seed=as_int("seed", seed),
            dtype=dtype_name(default_dtype() if dtype is None else dtype),
            symbolic_enabled=symbolic_enabled, **kwargs,
        )
    else:
        config = copy.deepcopy(config)
        config.width = normalize_width(config.width, config.mult_arity)
        trainable = {}
    validate_config(config)
    return config, trainable
