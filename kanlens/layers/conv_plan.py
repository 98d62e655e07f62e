"""Execution plans of KAN convolutions: which fast path ``forward`` takes, decided once per input signature.

A :class:`ConvPlan` answers, for one input signature (spatial size, channels, dtype, device) and the layer's
geometry (padding and its mode, kernel size, stride, dilation, groups) and grid kind:

- **padding** (``ring``): with zero padding equal on both sides only the input's own pixels are expanded, the
  convolution zero-pads the *features* (``conv_padding``) and a border term adds what the padded pixels'
  features contribute (memoised per plan in :attr:`ConvPlan.border`); otherwise the input is padded first;
- **features** (``uniform``): closed-form cardinal bases stored channels-last
  (:class:`~kanlens.layers.conv_features.UniformFeatures`) on uniform grids, Cox-de Boor otherwise; only on
  uniform grids may the last basis of each channel be folded into the weights, which needs every evaluated value
  inside the grid: a fact about the *values*, so it stays a per-call check;
- **kernel**: ``"depthwise"`` (a 1x1 depthwise layer, i.e. a learned per-channel activation: a weighted sum of
  each channel's own features, ~4x faster than a grouped convolution), ``"conv1d"`` (run as a 2-D convolution over
  a height-1 image, one code path with channels-last kernels) or ``"conv2d"``.

Choices that depend on values (inside the grid, finite input for the depthwise GEMM) or on hooks registered at
any time stay per call. The layer caches its plans with the other grid-derived values, so a grid change (which may
make it non-uniform) or a new input signature builds a fresh plan; gradient mode changes no choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .conv_padding import Pairs, output_shape

__all__ = ["ConvPlan", "choose_kernel"]


def choose_kernel(
    n: int, in_channels: int, out_channels: int, groups: int, kernel_size: Sequence[int], stride: Sequence[int],
    padding: Sequence[int],
) -> str:
    """``"depthwise"``, ``"conv1d"`` or ``"conv2d"``: how the fused convolution over features runs."""
    if (
        groups == in_channels == out_channels
        and not any(padding)
        and all(kk == 1 and s == 1 for kk, s in zip(kernel_size, stride))
    ):
        return "depthwise"
    return "conv1d" if n == 1 else "conv2d"


@dataclass(frozen=True)
class ConvPlan:
    """How ``forward`` runs for one input signature (see the module docstring).

    Attributes:
        pairs: ``(before, after)`` padding per spatial dim.
        ring: zero padding equal on both sides, applied to the features plus a border term.
        conv_padding: zero padding of the fused convolution (``pairs``' first entries with ``ring``, else zeros).
        uniform: closed-form features (uniform grids); the last basis may then be folded when values allow.
        kernel: ``"depthwise"``, ``"conv1d"`` or ``"conv2d"``.
        spatial: the input's spatial size; out_spatial: the output's.
        border: memo of the border term's grid-only factors per ``drop_last`` flag (filled by the layer).
    """

    pairs: Pairs
    ring: bool
    conv_padding: tuple[int, ...]
    uniform: bool
    kernel: str
    spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    border: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        spatial: Sequence[int],
        *,
        pairs: Pairs,
        padding_mode: str,
        uniform: bool,
        in_channels: int,
        out_channels: int,
        groups: int,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        dilation: Sequence[int],
    ) -> ConvPlan:
        """The plan for inputs of spatial size ``spatial`` under the given geometry."""
        n = len(kernel_size)
        pads = tuple(lo for lo, _ in pairs)
        ring = padding_mode == "zeros" and any(pads) and all(lo == hi for lo, hi in pairs)
        conv_padding = pads if ring else (0,) * n
        kernel = choose_kernel(n, in_channels, out_channels, groups, kernel_size, stride, conv_padding)
        return cls(
            pairs=pairs,
            ring=ring,
            conv_padding=conv_padding,
            uniform=uniform,
            kernel=kernel,
            spatial=tuple(spatial),
            out_spatial=output_shape(spatial, pairs, kernel_size, stride, dilation),
        )
