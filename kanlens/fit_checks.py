"""Checks of :func:`kanlens.fit`'s arguments and data: one clear error naming the problem before training starts.

``validate_dataset`` is public (re-exported by :mod:`kanlens.training`); the rest is used by the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ._checks import as_int, check_choice, check_tensor, is_int
from .pykan_fit import PYKAN_REG_METRICS
from .regularization import REG_METRICS

if TYPE_CHECKING:
    from .model import KAN

__all__ = ["DATASET_KEYS", "OPTIMIZERS", "all_finite", "check_class_labels", "check_fit_options", "is_class_index",
           "validate_dataset", "validate_fit"]

OPTIMIZERS = ("LBFGS", "Adam")
DATASET_KEYS = ("train_input", "train_label", "test_input", "test_label")


def validate_dataset(dataset: object, n_in: int, n_out: int | None = None, *,
                     class_labels: bool = False) -> dict[str, torch.Tensor]:
    """Check a pykan-style dataset dict: keys, tensor type, shapes, matching rows, finiteness.

    ``class_labels``: also accept 1-D integer labels (class indices in ``[0, n_out)``, for a classification
    ``loss_fn`` such as ``torch.nn.CrossEntropyLoss()``).
    """
    if not isinstance(dataset, dict):
        raise TypeError(f"dataset must be a dict with keys {DATASET_KEYS}, got {type(dataset).__name__}")
    missing = [k for k in DATASET_KEYS if k not in dataset]
    if missing:
        raise ValueError(f"dataset is missing keys {missing}; expected {list(DATASET_KEYS)}")
    for split in ("train", "test"):
        x = check_tensor(f"dataset['{split}_input']", dataset[f"{split}_input"], ndim=2, last_dim=n_in)
        y = dataset[f"{split}_label"]
        name = f"dataset['{split}_label']"
        if isinstance(y, torch.Tensor) and is_class_index(y):
            if not class_labels:
                raise TypeError(f"{name} holds integer labels ({y.dtype}); fit them as class indices with a "
                                "classification loss, e.g. loss_fn=torch.nn.CrossEntropyLoss() and labels of shape "
                                "(num,), or cast regression targets to float")
            check_class_labels(name, y, x.shape[0], n_out)
            continue
        check_tensor(name, y)
        if y.ndim == 1:
            raise ValueError(f"{name} must be 2-D (num, n_out), got shape {tuple(y.shape)}; use y[:, None]")
        check_tensor(name, y, ndim=2, last_dim=n_out)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"dataset['{split}_input'] has {x.shape[0]} rows but dataset['{split}_label'] has "
                             f"{y.shape[0]} rows")
    for kind in ("input", "label"):  # a split in another precision would be scored in it (float32 test data)
        a, b = dataset[f"train_{kind}"], dataset[f"test_{kind}"]
        if a.is_floating_point() and b.is_floating_point() and a.dtype != b.dtype:
            raise TypeError(f"dataset['train_{kind}'] is {a.dtype} but dataset['test_{kind}'] is {b.dtype}; cast "
                            "both splits to one dtype")
    return dataset


def is_class_index(y: torch.Tensor) -> bool:
    return not y.is_floating_point() and not y.is_complex() and y.dtype != torch.bool


def check_class_labels(name: str, y: torch.Tensor, rows: int, n_out: int | None) -> None:
    if y.ndim != 1:
        raise ValueError(f"{name}: integer class labels must be 1-D (num,), got shape {tuple(y.shape)}")
    if y.shape[0] != rows:
        raise ValueError(f"{name} has {y.shape[0]} rows but the inputs have {rows}")
    if y.numel() == 0:
        raise ValueError(f"{name} is empty")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (n_out is not None and hi >= n_out):
        raise ValueError(f"{name}: class indices must lie in [0, {n_out}) (one output per class), got {lo}..{hi}")


def check_fit_options(opt, steps, lr, batch, lambs, reg_metric, update_grid, grid_update_num, stop_grid_update_step,
                   loss_fn, progress, callbacks, max_nonfinite) -> None:
    check_choice("opt", opt, OPTIMIZERS)
    check_choice("reg_metric", reg_metric, (*REG_METRICS, *PYKAN_REG_METRICS))
    if not is_int(steps) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    for name, val in lambs.items():
        if isinstance(val, bool) or not (isinstance(val, (int, float)) and math.isfinite(val) and val >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
    if lr is not None and (isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr)
                                                          and lr > 0)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not is_int(batch) or (batch < 1 and batch != -1):
        raise ValueError(f"batch must be -1 (full batch) or a positive int, got {batch!r}")
    for name, val in (("update_grid", update_grid), ("progress", progress)):
        if not isinstance(val, bool):
            raise TypeError(f"{name} must be a bool, got {type(val).__name__}")
    as_int("grid_update_num", grid_update_num, 1)
    as_int("stop_grid_update_step", stop_grid_update_step, 0)
    as_int("max_nonfinite", max_nonfinite, 0)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (pred, label) -> scalar tensor, got {type(loss_fn).__name__}")
    if callable(callbacks) or not isinstance(callbacks, (list, tuple)) or not all(callable(c) for c in callbacks):
        raise TypeError("callbacks must be a list of callables cb(step, model, history)")




def validate_fit(model: KAN, dataset, opt, steps, lr, batch, lambs, reg_metric, update_grid, grid_update_num,
                  stop_grid_update_step, loss_fn, progress, callbacks, max_nonfinite) -> None:
    from .model import KAN

    if not isinstance(model, KAN):
        raise TypeError(f"model must be a kanlens KAN, got {type(model).__name__}")
    check_fit_options(opt, steps, lr, batch, lambs, reg_metric, update_grid, grid_update_num, stop_grid_update_step,
                   loss_fn, progress, callbacks, max_nonfinite)
    validate_dataset(dataset, model.width_in[0], model.width_in[-1], class_labels=loss_fn is not None)
    n = dataset["train_input"].shape[0]
    if update_grid and n < 2:
        raise ValueError(f"dataset['train_input'] has {n} sample; update_grid=True needs at least 2 (grids are fitted "
                         "to the data), pass update_grid=False")
    if update_grid and batch != -1 and batch < 2:
        raise ValueError(f"batch must be >= 2 with update_grid=True (a grid needs 2 samples), got batch={batch}; "
                         "pass update_grid=False")
    if not all_finite(list(model.parameters()) + list(model.buffers())):
        raise ValueError("model has NaN or Inf parameters before training; load a finite checkpoint or re-create it")



def all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether every tensor is finite, with a single device sync."""
    tensors = [t for t in tensors if t.is_floating_point()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

