"""Padding geometry of KAN convolutions: padding amounts, output sizes, input-size checks, the padded taps.

Pure functions of ``nn.Conv``-style arguments (``padding``, ``kernel_size``, ``stride``, ``dilation``); nothing here
knows about splines. :class:`kanlens.layers.conv.KANConv2d` derives its padding from them on every use, so changing
those attributes after construction takes effect (as for ``nn.Conv2d``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .._checks import as_int

__all__ = [
    "PADDING_MODES",
    "check_spatial",
    "ntuple",
    "output_shape",
    "pad",
    "padded_taps",
    "padding_pairs",
]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

Pairs = tuple[tuple[int, int], ...]


def ntuple(name: str, value: int | Sequence[int], n: int, minimum: int) -> tuple[int, ...]:
    """``value`` as ``n`` ints ``>= minimum`` (an int is repeated), with errors naming ``name``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * n
    try:
        vals = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}") from None
    if len(vals) != n:
        raise ValueError(f"{name} must have {n} entries, got {value!r}")
    for v in vals:
        as_int(name, v, minimum)
    return vals


def padding_pairs(
    padding: tuple[int, ...] | int | str, kernel_size: Sequence[int], dilation: Sequence[int]
) -> Pairs:
    """``(before, after)`` padding per spatial dim, nn.Conv's rules (``'same'`` puts the extra pixel after)."""
    n = len(kernel_size)
    if padding == "valid":
        return tuple((0, 0) for _ in range(n))
    if padding == "same":
        total = [d * (kk - 1) for d, kk in zip(dilation, kernel_size)]
        return tuple((t // 2, t - t // 2) for t in total)
    amounts = padding if isinstance(padding, tuple) else ntuple("padding", padding, n, 0)  # type: ignore[arg-type]
    return tuple((p, p) for p in amounts)


def output_shape(
    input_shape: Sequence[int], pairs: Pairs, kernel_size: Sequence[int], stride: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, ...]:
    """Spatial output size for a spatial input size (nn.Conv's formula)."""
    out = []
    for size, (lo, hi), d, kk, s in zip(input_shape, pairs, dilation, kernel_size, stride):
        out.append((size + lo + hi - d * (kk - 1) - 1) // s + 1)
    return tuple(out)


def check_spatial(
    shape: Sequence[int], pairs: Pairs, kernel_size: Sequence[int], dilation: Sequence[int], padding_mode: str
) -> None:
    """Raise ``ValueError`` when the kernel does not fit the padded input or reflect padding is too wide.

    Shapes:
        shape: the full input shape ``(batch, C, *spatial)`` (quoted in the error).
    """
    spatial = shape[2:]
    for i, (size, (lo, hi), d, kk) in enumerate(zip(spatial, pairs, dilation, kernel_size)):
        span = d * (kk - 1) + 1
        if size + lo + hi < span:
            raise ValueError(
                f"kernel (size {kk}, dilation {d}, span {span}) is larger than the padded input along spatial dim "
                f"{i} ({size} + padding {lo + hi} = {size + lo + hi}) for x of shape {tuple(shape)}"
            )
    if padding_mode == "reflect":
        for i, (size, (lo, hi)) in enumerate(zip(spatial, pairs)):
            if max(lo, hi) >= size:
                raise ValueError(
                    f"padding_mode='reflect' needs padding < input size, got padding {max(lo, hi)} for size {size} "
                    f"along spatial dim {i}"
                )


def pad(x: torch.Tensor, pairs: Pairs, padding_mode: str) -> torch.Tensor:
    """``x`` padded by ``pairs`` (``(before, after)`` per spatial dim) in ``padding_mode``; ``x`` itself if none.

    Shapes:
        x: ``(batch, C, *spatial)`` -> ``(batch, C, *padded_spatial)``.
    """
    pads = [v for lo_hi in reversed(pairs) for v in lo_hi]
    if not any(pads):
        return x
    if padding_mode == "zeros":
        return F.pad(x, pads)
    return F.pad(x, pads, mode=padding_mode)


def padded_taps(
    spatial: Sequence[int], pairs: Pairs, kernel_size: Sequence[int], stride: Sequence[int],
    dilation: Sequence[int], *, dtype: torch.dtype, device: torch.device,
) -> torch.Tensor:
    """``outside[u, p] = 1`` where kernel tap ``u`` of output position ``p`` reads a padded pixel, else 0.

    Taps and positions are flattened in row-major order over the spatial dims.

    Shapes:
        returns ``(prod(kernel_size), prod(out_spatial))``.
    """
    inside = torch.ones(1, 1, dtype=dtype, device=device)
    out = output_shape(spatial, pairs, kernel_size, stride, dilation)
    for size, (lo, _), kk, s, d, o in zip(spatial, pairs, kernel_size, stride, dilation, out):
        pos = torch.arange(o, device=device)[None] * s + torch.arange(kk, device=device)[:, None] * d
        inside = torch.kron(inside, ((pos >= lo) & (pos < lo + size)).to(dtype))  # (K_d, O_d)
    return 1.0 - inside
