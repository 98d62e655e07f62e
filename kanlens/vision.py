"""A small model zoo for images: a KAN-conv classifier, an equal-parameter CNN baseline, Adam training and eval.

Both classifiers share one skeleton, so a comparison isolates the convolution type::

    [conv -> (ReLU for the CNN) -> max-pool 2] x len(channels) -> flatten -> linear (or KAN) head

The KAN-conv stages use :class:`~kanlens.layers.conv.KANConv2d` (no activation: the learned element functions are
the non-linearity); every stage after the first is preceded by a parameter-free batch norm so its inputs stay on
the spline grid.

Example:
    >>> model = KANConvNet(channels=(6, 8), grid=(1, 3), k=(1, 3), activation=(False, True))
    >>> cnn = matched_cnn(count_parameters(model))
    >>> cnn.config["channels"]
    (9, 17)
    >>> result = train_classifier(model, x_train, y_train, epochs=10)     # doctest: +SKIP
    >>> evaluate(model, x_test, y_test)                                    # doctest: +SKIP
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

from .layers.conv import KANConv2d
from .layers.spline import KANLayer
from .utils import check_choice, check_tensor, is_int

__all__ = [
    "CNN",
    "KANConvNet",
    "TrainResult",
    "count_parameters",
    "evaluate",
    "matched_cnn",
    "random_shift",
    "shift_images",
    "train_classifier",
]

logger = logging.getLogger(__name__)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _per_stage(name: str, value: object, n: int) -> tuple:
    """One value for every stage: a scalar is repeated, a sequence must have one entry per stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} must be one value or one per stage ({n}), got {value!r}")
        return tuple(value)
    return (value,) * n


def _spatial_after(size: int, stages: int, kernel_size: int, padding: int) -> int:
    for _ in range(stages):
        size = (size + 2 * padding - kernel_size + 1) // 2
        if size < 1:
            raise ValueError(f"image_size is too small for {stages} conv+pool stages")
    return size


class _Skeleton(nn.Module):
    """Shared ``[norm -> conv -> activation -> max-pool 2] x n -> flatten -> head`` stack."""

    def __init__(
        self,
        convs: list[nn.Module],
        norms: list[nn.Module],
        acts: list[nn.Module],
        flat: int,
        head: nn.Module,
        act_after_pool: bool = False,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.acts = nn.ModuleList(acts)
        self.head = head
        self.flat_features = flat
        self.act_after_pool = bool(act_after_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: ``(batch, in_channels, H, W) -> (batch, num_classes)`` logits."""
        cfg = getattr(self, "config", None)
        if cfg is not None and isinstance(x, torch.Tensor):
            c, size = cfg["in_channels"], cfg["image_size"]
            if x.ndim != 4 or x.shape[1] != c or tuple(x.shape[2:]) != (size, size):
                raise ValueError(f"{type(self).__name__} expects images of shape (batch, {c}, {size}, {size}) "
                                 f"(in_channels={c}, image_size={size}), got shape {tuple(x.shape)}")
        for norm, conv, act in zip(self.norms, self.convs, self.acts):
            if self.act_after_pool:
                x = act(F.max_pool2d(conv(norm(x)), 2))
            else:
                x = F.max_pool2d(act(conv(norm(x))), 2)
        return self.head(x.flatten(1))


class KANConvNet(_Skeleton):
    """KAN-conv classifier: ``[KANConv2d -> (learned activation) -> max-pool 2] x n -> flatten -> linear``.

    Args:
        in_channels, num_classes, image_size: input and output sizes (square images).
        channels: output channels of each KAN-conv stage.
        kernel_size, padding: of every stage (3 and 0 by default: 28 -> 26 -> 13 -> 11 -> 5).
        grid, k: spline grid intervals and order of the KAN convolutions (one value, or one per stage).
        input_range: expected pixel range of the input (the first layer's grid range).
        hidden_range: grid range of later stages (their inputs are batch-normalised).
        head: ``"linear"`` or ``"kan"`` (a :class:`~kanlens.layers.spline.KANLayer`, 10x the parameters).
        activation: after a KAN-conv stage (one flag, or one per stage), a learned per-channel activation (batch
            norm, then a depthwise 1x1 KAN convolution: one spline per channel, ``G + k + 2`` parameters each)
            before the pooling.
        activation_grid, activation_k: grid and order of those 1x1 activations (default: the stage's).
        activation_after_pool: apply the learned activations after the max-pooling instead of before (a
            non-monotone activation does not commute with the pooling; 4x fewer pixels to evaluate).
        groups: of every KAN-conv stage (one value, or one per stage; as ``nn.Conv2d``'s ``groups``).
        shared_shape: one spline per channel pair in a stage, scaled per kernel element (one flag, or one per
            stage; see :class:`~kanlens.layers.conv.KANConv2d`): ~2.7 instead of 8 parameters per 3x3 element at
            grid 3, k 3, which buys channels.
        affine_norm: learned scale and shift in the batch norms before later stages and activations (where the
            inputs fall on the spline grid is then learned; for a linear convolution it is a reparametrisation).
        seed: seed of the local generator used for all initialisations.

    Shapes:
        ``(batch, in_channels, image_size, image_size) -> (batch, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (4, 8),
        *,
        image_size: int = 28,
        kernel_size: int = 3,
        padding: int = 0,
        grid: int | Sequence[int] = 5,
        k: int | Sequence[int] = 3,
        input_range: tuple[float, float] = (0.0, 1.0),
        hidden_range: tuple[float, float] = (-2.0, 2.0),
        head: str = "linear",
        activation: bool | Sequence[bool] = False,
        activation_grid: int | Sequence[int] | None = None,
        activation_k: int | Sequence[int] | None = None,
        activation_after_pool: bool = False,
        groups: int | Sequence[int] = 1,
        shared_shape: bool | Sequence[bool] = False,
        affine_norm: bool = False,
        seed: int = 0,
    ) -> None:
        check_choice("head", head, ("linear", "kan"))
        if not channels:
            raise ValueError("channels must list at least one stage")
        n = len(channels)
        grids, ks, use_act = _per_stage("grid", grid, n), _per_stage("k", k, n), _per_stage("activation", activation, n)
        act_grids = grids if activation_grid is None else _per_stage("activation_grid", activation_grid, n)
        act_ks = ks if activation_k is None else _per_stage("activation_k", activation_k, n)
        stage_groups = _per_stage("groups", groups, n)
        shared = _per_stage("shared_shape", shared_shape, n)
        gen = torch.Generator().manual_seed(seed)
        convs: list[nn.Module] = []
        norms: list[nn.Module] = []
        prev = in_channels
        acts: list[nn.Module] = []
        for i, ch in enumerate(channels):
            rng = input_range if i == 0 else hidden_range
            g, kk = grids[i], ks[i]
            convs.append(
                KANConv2d(
                    prev, ch, kernel_size, padding=padding, groups=stage_groups[i], grid=g, k=kk, grid_range=rng,
                    shared_shape=bool(shared[i]), generator=gen,
                )
            )
            norms.append(nn.Identity() if i == 0 else nn.BatchNorm2d(prev, affine=affine_norm))
            if use_act[i]:
                act = KANConv2d(
                    ch, ch, 1, groups=ch, grid=act_grids[i], k=act_ks[i], grid_range=hidden_range, generator=gen
                )
                acts.append(nn.Sequential(nn.BatchNorm2d(ch, affine=affine_norm), act))
            else:
                acts.append(nn.Identity())
            prev = ch
        side = _spatial_after(image_size, len(channels), kernel_size, padding)
        flat = prev * side * side
        head_mod: nn.Module
        if head == "linear":
            head_mod = _linear(flat, num_classes, gen)
        else:
            kan_head = KANLayer(flat, num_classes, grid=grids[-1], k=ks[-1], grid_range=hidden_range, generator=gen)
            head_mod = nn.Sequential(nn.BatchNorm1d(flat, affine=False), kan_head)
        super().__init__(convs, norms, acts, flat, head_mod, act_after_pool=activation_after_pool)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, channels=tuple(channels),
                           image_size=image_size, kernel_size=kernel_size, padding=padding, grid=grids, k=ks,
                           input_range=tuple(input_range), hidden_range=tuple(hidden_range), head=head,
                           activation=use_act, activation_grid=act_grids, activation_k=act_ks,
                           activation_after_pool=bool(activation_after_pool), groups=stage_groups,
                           shared_shape=tuple(bool(v) for v in shared),
                           affine_norm=bool(affine_norm), seed=seed)

    @property
    def kan_convs(self) -> list[KANConv2d]:
        """All KAN convolutions (stage kernels and 1x1 activations) in forward order."""
        return [m for m in self.modules() if isinstance(m, KANConv2d)]

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor) -> None:
        """Fit every KAN-conv grid to the inputs it sees for the batch ``x`` (as pykan's ``update_grid``)."""
        inputs: dict[nn.Module, torch.Tensor] = {}
        handles = [
            m.register_forward_pre_hook(lambda mod, args: inputs.__setitem__(mod, args[0])) for m in self.kan_convs
        ]
        was_training = self.training
        try:
            self.eval()
            self(x)
        finally:
            for h in handles:
                h.remove()
            self.train(was_training)
        for conv in self.kan_convs:
            conv.update_grid(inputs[conv])


class CNN(_Skeleton):
    """The CNN baseline with the same skeleton: ``[Conv2d -> ReLU -> max-pool 2] x n -> flatten -> linear``.

    ``CNN(channels=(8, 16))`` on 28x28 digits is the 5.3K-parameter anchor of the conv benchmark. Later stages get
    the same parameter-free batch norm as :class:`KANConvNet` when ``norm=True``.

    Shapes:
        ``(batch, in_channels, image_size, image_size) -> (batch, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (8, 16),
        *,
        image_size: int = 28,
        kernel_size: int = 3,
        padding: int = 0,
        norm: bool = True,
        seed: int = 0,
    ) -> None:
        if not channels:
            raise ValueError("channels must list at least one stage")
        gen = torch.Generator().manual_seed(seed)
        convs: list[nn.Module] = []
        norms: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate(channels):
            convs.append(_conv2d(prev, ch, kernel_size, padding, gen))
            norms.append(nn.BatchNorm2d(prev, affine=False) if (norm and i > 0) else nn.Identity())
            prev = ch
        side = _spatial_after(image_size, len(channels), kernel_size, padding)
        head = _linear(prev * side * side, num_classes, gen)
        super().__init__(convs, norms, [nn.ReLU() for _ in convs], prev * side * side, head)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, channels=tuple(channels),
                           image_size=image_size, kernel_size=kernel_size, padding=padding, norm=norm, seed=seed)


def _uniform_(t: torch.Tensor, bound: float, gen: torch.Generator) -> None:
    with torch.no_grad():
        t.copy_(torch.rand(t.shape, generator=gen) * 2 * bound - bound)


def _linear(n_in: int, n_out: int, gen: torch.Generator) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default init drawn from a local generator (the global RNG is not touched)."""
    layer = torch.nn.utils.skip_init(nn.Linear, n_in, n_out)
    _uniform_(layer.weight, 1.0 / math.sqrt(n_in), gen)
    _uniform_(layer.bias, 1.0 / math.sqrt(n_in), gen)
    return layer


def _conv2d(c_in: int, c_out: int, kernel_size: int, padding: int, gen: torch.Generator) -> nn.Conv2d:
    conv = torch.nn.utils.skip_init(nn.Conv2d, c_in, c_out, kernel_size, padding=padding)
    bound = 1.0 / math.sqrt(c_in * kernel_size * kernel_size)
    _uniform_(conv.weight, bound, gen)
    _uniform_(conv.bias, bound, gen)
    return conv


def matched_cnn(target_params: int, *, ratio: float = 2.0, **kwargs) -> CNN:
    """The two-stage :class:`CNN` ``(c1, c2)`` whose parameter count is closest to ``target_params``.

    Only shapes like the anchor ``(8, 16)`` are considered: ``c2 / c1`` within a factor 1.5 of ``ratio``.
    """
    if isinstance(target_params, bool) or not isinstance(target_params, int) or target_params < 1:
        raise ValueError(f"target_params must be a positive int, got {target_params!r}")
    if not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be a positive number, got {ratio!r}")
    size = kwargs.get("image_size", 28)
    ksz, pad, c_in = kwargs.get("kernel_size", 3), kwargs.get("padding", 0), kwargs.get("in_channels", 1)
    n_cls = kwargs.get("num_classes", 10)
    side = _spatial_after(size, 2, ksz, pad)

    def n_params(c1: int, c2: int) -> int:
        return (c_in * ksz * ksz + 1) * c1 + (c1 * ksz * ksz + 1) * c2 + (c2 * side * side + 1) * n_cls

    best = None
    for c1 in range(1, 257):
        if n_params(c1, 1) > 2 * target_params:
            break
        for c2 in range(1, 513):
            p = n_params(c1, c2)
            shape_gap = abs(math.log(c2 / (ratio * c1)))
            key = (abs(p - target_params), shape_gap)
            if shape_gap <= math.log(1.5) and (best is None or key < best[0]):
                best = (key, c1, c2)
            if p > target_params:
                break
    if best is None:
        raise ValueError(f"no two-stage CNN with c2 / c1 near {ratio} has about {target_params} parameters")
    cnn = CNN(channels=(best[1], best[2]), **kwargs)
    assert count_parameters(cnn) == n_params(best[1], best[2])
    return cnn


@dataclass
class TrainResult:
    """What :func:`train_classifier` measured: per-epoch mean loss and (optional) validation accuracy, times."""

    losses: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    epochs: int = 0


def _positive_int(name: str, value: object) -> None:
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


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
    sched = _lr_schedule(opt, schedule, lr, epochs * steps_per_epoch)
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
    _positive_int("batch_size", batch_size)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0, got {max_shift!r}")


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
    _positive_int("batch_size", batch_size)
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
