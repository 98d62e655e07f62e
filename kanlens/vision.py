"""A small model zoo for images: a KAN-conv classifier, an equal-parameter CNN baseline, Adam training and eval.

Both classifiers share one skeleton, so a comparison isolates the convolution type::

    [conv -> (ReLU for the CNN) -> max-pool 2] x len(channels) -> flatten -> linear (or KAN) head

The KAN-conv stages use :class:`~kanlens.layers.conv.KANConv2d` (no activation: the learned element functions are
the non-linearity); every stage after the first is preceded by a parameter-free batch norm so its inputs stay on
the spline grid.

Training and evaluation (:func:`train_classifier`, :func:`evaluate`, augmentation) live in
:mod:`kanlens.vision_training` and are re-exported here.

Example:
    >>> model = KANConvNet(channels=(6, 8), grid=(1, 3), k=(1, 3), activation=(False, True))
    >>> cnn = matched_cnn(count_parameters(model))
    >>> cnn.config["channels"]
    (9, 17)
    >>> result = train_classifier(model, x_train, y_train, epochs=10)     # doctest: +SKIP
    >>> evaluate(model, x_test, y_test)                                    # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice
from .layers.conv import KANConv2d
from .layers.spline import KANLayer
from .vision_training import TrainResult, evaluate, random_shift, shift_images, train_classifier

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
