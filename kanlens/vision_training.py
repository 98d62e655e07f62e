"""Training and evaluation of the image classifiers of :mod:`kanlens.vision` (Adam, schedules, augmentation).

:func:`train_classifier` trains any ``nn.Module`` classifier with Adam on shuffled mini-batches from a local
generator (optionally data-parallel over ``torch.distributed``, see :mod:`kanlens.distributed`, and with random
shifts as augmentation); :func:`evaluate` measures accuracy. The names are re-exported by :mod:`kanlens.vision`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import as_int, check_choice, check_tensor

__all__ = ["TrainResult", "evaluate", "random_shift", "shift_images", "train_classifier"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train_classifier` measured: per-epoch mean loss and (optional) validation accuracy, times."""

    losses: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    epochs: int = 0


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    schedule: str = "onecycle",
    grid_update_epochs: Sequence[int] = (),
    max_shift: int = 0,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    seed: int = 0,
    callback: Callable[[int, TrainResult], None] | None = None,
    distributed: bool | None = None,
) -> TrainResult:
    """Train with Adam (cross-entropy, shuffled mini-batches from a local generator).

    Args:
        schedule: ``"onecycle"`` (warm-up then cosine decay to ~0), ``"cosine"`` or ``"constant"``.
        grid_update_epochs: epochs (0-based) before which ``model.update_grid`` runs on a 1024-image batch, for
            models that have it.
        max_shift: data augmentation: shift every training image by a random offset of up to ``max_shift``
            pixels in each direction (zero fill); 0 disables it.
        x_val, y_val: evaluated after every epoch when given.
        callback: ``callback(epoch, result)`` after every epoch.
        distributed: data-parallel on an initialised ``torch.distributed`` process group (e.g. under ``torchrun``):
            ``None`` (default) when a group of several processes runs, each rank passing its shard of the images;
            ``True``: every rank passes all images and keeps its shard; ``False``: train alone. Every rank takes
            the batches one process would take on all images, computes on the images of each batch it holds and
            the gradients are summed over ranks (see :mod:`kanlens.distributed`). Batch-norm statistics stay per
            rank (as in DDP without ``SyncBatchNorm``), so steps equal one process's only for models without
            batch norm in training mode.

    Shapes:
        x: ``(N, C, H, W)`` float, y: ``(N,)`` int64 class labels.
    """
    def validate() -> None:
        _check_train_args(x, y, schedule, batch_size, epochs, max_shift)

    group = None
    if distributed is not None or (torch.distributed.is_available() and torch.distributed.is_initialized()):
        options = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                   "schedule": schedule, "grid_update_epochs": list(grid_update_epochs), "max_shift": max_shift,
                   "seed": seed, "validation": x_val is not None}
        data = {"x": x, "y": y, "x_val": x_val, "y_val": y_val}
        data, group = _data_parallel(model, data, options, validate, distributed)
        x, y, x_val, y_val = data["x"], data["y"], data["x_val"], data["y_val"]
    if group is None:
        validate()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = x.shape[0] if group is None else group.total
    steps_per_epoch = math.ceil(n / batch_size)
    sched = _lr_schedule(opt, schedule, lr, int(epochs) * steps_per_epoch)  # an int for OneCycleLR
    result = TrainResult()
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        model.train()
        if epoch in grid_update_epochs and hasattr(model, "update_grid"):
            idx = torch.randperm(n, generator=gen)[:1024]
            model.update_grid(x[idx] if group is None else group.gather(x, idx))
        perm = torch.randperm(n, generator=gen)
        batches = [perm[i * batch_size : (i + 1) * batch_size] for i in range(steps_per_epoch)]
        total_loss = _train_epoch(model, opt, sched, x, y, batches, max_shift, gen, group)
        if group is not None:
            total_loss = group.epoch_end(model, total_loss)
        result.losses.append(total_loss / n)
        if x_val is not None and y_val is not None:
            acc = evaluate(model, x_val, y_val)
            result.val_accuracy.append(acc if group is None else group.mean(acc, x_val.shape[0]))
        result.epochs = epoch + 1
        result.seconds = time.perf_counter() - t0
        result.cpu_seconds = time.process_time() - c0
        logger.info("epoch %d loss %.4f %s", epoch, result.losses[-1], result.val_accuracy[-1:])
        if callback is not None:
            callback(epoch, result)
    return result


def _data_parallel(model: nn.Module, data: dict, options: dict, validate: Callable[[], None],
                   distributed: bool | None) -> tuple[dict, object]:
    """``(data, group)``: this rank's images and the data-parallel group, or the data as given and ``None`` when
    training alone (see :func:`kanlens.distributed.setup_classifier`)."""
    from . import distributed as dp

    if not dp.use_data_parallel(distributed):
        return data, None
    return dp.setup_classifier(model, data, options, validate, shard_full=distributed is True)


def _lr_schedule(opt: torch.optim.Optimizer, schedule: str, lr: float, total: int):
    """The learning-rate scheduler of ``schedule`` over ``total`` steps (``None`` for a constant rate)."""
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1), pct_start=0.15)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
    return None


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched, x: torch.Tensor, y: torch.Tensor,
                 batches: Sequence[torch.Tensor], max_shift: int, gen: torch.Generator, group) -> float:
    """One pass over ``batches`` (index tensors): summed loss of this process's images (before any all-reduce).

    Shapes:
        x: ``(N, C, H, W)``, y: ``(N,)``.
    """
    total_loss = 0.0
    for idx in batches:
        shifts = torch.randint(0, 2 * max_shift + 1, (2, idx.numel()), generator=gen) if max_shift else None
        opt.zero_grad(set_to_none=True)
        if group is not None:  # this rank's images of the global batch; gradients summed over ranks
            total_loss += group.step(model, x, y, idx, shifts, max_shift)
        else:
            xb = x[idx] if shifts is None else shift_images(x[idx], max_shift, shifts)
            loss = F.cross_entropy(model(xb), y[idx])
            loss.backward()
            total_loss += float(loss.detach()) * idx.numel()
        opt.step()
        if sched is not None:
            sched.step()
    return total_loss


def _check_train_args(x, y, schedule, batch_size, epochs, max_shift) -> None:
    check_tensor("x", x, ndim=4)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != (x.shape[0],):
        got = (f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__)
        raise ValueError(f"y must be an int64 tensor of class labels of shape ({x.shape[0]},), got {got}")
    check_choice("schedule", schedule, ("onecycle", "cosine", "constant"))
    as_int("batch_size", batch_size, minimum=1)
    as_int("epochs", epochs, minimum=0)
    as_int("max_shift", max_shift, minimum=0)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by its own random offset in ``[-max_shift, max_shift]^2`` (zero fill).

    Shapes:
        ``(B, C, H, W) -> (B, C, H, W)``.
    """
    m = int(max_shift)
    return shift_images(x, m, torch.randint(0, 2 * m + 1, (2, x.shape[0]), generator=generator))


def shift_images(x: torch.Tensor, m: int, shifts: torch.Tensor) -> torch.Tensor:
    """Shift image ``i`` by ``shifts[:, i] - m`` pixels (rows, columns); zero fill (:func:`random_shift` with the
    offsets given; the data-parallel trainer draws them once for all ranks).

    Shapes:
        x: ``(B, C, H, W)``, shifts: ``(2, B)`` ints in ``[0, 2m]`` -> ``(B, C, H, W)``.
    """
    b, _, h, w = x.shape
    shifts = shifts.to(x.device)
    xp = F.pad(x, (m, m, m, m)).permute(0, 2, 3, 1)  # (B, H + 2m, W + 2m, C)
    rows = (shifts[0, :, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (shifts[1, :, None] + torch.arange(w, device=x.device))[:, None, :]
    return xp[torch.arange(b, device=x.device)[:, None, None], rows, cols].permute(0, 3, 1, 2)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> float:
    """Classification accuracy in ``[0, 1]`` (model in eval mode, restored afterwards).

    Shapes:
        x: ``(N, C, H, W)``, y: ``(N,)``.
    """
    x = check_tensor("x", x, allow_empty=True)
    batch_size = as_int("batch_size", batch_size, minimum=1)
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],) or y.is_floating_point() or y.is_complex():
        got = (f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__)
        raise ValueError(f"y must be an integer tensor of class labels of shape ({x.shape[0]},), got {got}")
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(x.shape[0], 1)
