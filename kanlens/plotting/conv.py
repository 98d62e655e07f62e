"""Figures of KAN convolutions: the learned kernel functions and what a filter does to an image.

* :func:`plot_conv_kernels` — for each filter (output channel) a ``K x K`` block of small plots, one per kernel
  element, showing the learned function over the input range, faded by importance (mean ``|phi|``) and tinted
  by the slope of its affine fit (red positive, blue negative), so the block also reads as the equivalent
  ordinary kernel.
* :func:`plot_conv_response` — one filter on one image: the image with the receptive field, the input patch, each
  element's response ``phi(patch)`` (their sum plus the bias is the output pixel), the element curves with the
  patch values marked, and the whole output map.
* :func:`plot_conv_responses` — the input image and every filter's output map.

All return a matplotlib ``Figure``, accept ``ax=`` (the figure is drawn inside that axes' area) and ``path=``
(written only when given), and never call ``plt.show()``. matplotlib is imported inside the functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..layers.conv import KANConv2d
from ..symbolic.conv import element_linear_fits, element_samples
from .edge import check_positive, pyplot, save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_conv_kernels", "plot_conv_response", "plot_conv_responses"]

_Rect = tuple[float, float, float, float]


def _check_layer(layer: object) -> KANConv2d:
    if isinstance(layer, KANConv2d):
        return layer
    convs = getattr(layer, "kan_convs", None)
    if convs:
        return convs[0]
    raise TypeError(f"layer must be a KANConv2d (or a model with .kan_convs), got {type(layer).__name__}")


def _index(name: str, value: object, what: str = "an integer channel index") -> int:
    """``value`` as a Python int: ints and numpy / torch integer scalars (0-d arrays too); no bools or floats."""
    v = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    return int(v)


def _channel(name: str, value: object, n: int, hint: str = "") -> int:
    """One channel index in ``[0, n)``."""
    v = _index(name, value)
    if not 0 <= v < n:
        raise ValueError(f"{name} must be in [0, {n}){hint}, got {v}")
    return v


def _channels(name: str, value: object, n: int) -> list[int]:
    """Channel indices in ``[0, n)``: one index, a sequence of them, or a 1-D integer array / tensor."""
    if value is None:
        return list(range(n))
    v = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    if isinstance(v, np.ndarray):
        if v.ndim > 1:
            raise ValueError(f"{name} must be one index or a 1-D list of them, got shape {v.shape}")
        items = [v[()]] if v.ndim == 0 else list(v)
    elif isinstance(v, (int, np.integer)):
        items = [v]
    elif isinstance(v, Sequence) and not isinstance(v, str):
        items = list(v)
    else:
        raise TypeError(f"{name} must be a channel index or a list of them, got {type(value).__name__} {value!r}")
    if not items:
        raise ValueError(f"{name} is empty")
    out = [_index(name, item) for item in items]
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise ValueError(f"{name} must be channel indices in [0, {n}), got {bad[0]} (in {value!r})")
    return out


def _count(name: str, value: object, minimum: int = 1) -> int:
    """A positive (``>= minimum``) integer argument, numpy integers included."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def _check_common(ax: object, path: object) -> None:
    """``ax`` (an Axes or None) and the type of ``path``, checked before any drawing."""
    if ax is not None and not hasattr(ax, "inset_axes"):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")


def _image(name: str, x: torch.Tensor, layer: KANConv2d) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"{name} must be one image (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    return layer.check_input(x.to(layer.grid))


def _canvas(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, object]:
    """A figure and a function mapping a rect in [0, 1]^2 (of the figure, or of ``ax``) to a new axes."""
    if ax is None:
        plt = pyplot()
        fig = plt.figure(figsize=figsize)

        def new(rect: _Rect) -> Axes:
            return fig.add_axes(rect)

        return fig, new
    ax.set_axis_off()

    def new_in(rect: _Rect) -> Axes:
        return ax.inset_axes(rect)

    return ax.figure, new_in


def _blocks(n: int, ncols: int, kh: int, kw: int, top: float = 0.93) -> list[list[_Rect]]:
    """Rects of ``n`` filter blocks of ``kh x kw`` panels (row-major within a block), laid out ``ncols`` wide."""
    nrows = math.ceil(n / ncols)
    left, right, bottom = 0.02, 0.98, 0.02
    gap_x, gap_y = 0.25, 0.45  # gaps between blocks, in panel units
    pw = (right - left) / (ncols * kw + (ncols - 1) * gap_x)
    ph = (top - bottom) / (nrows * kh + (nrows - 1) * gap_y)
    out = []
    for b in range(n):
        r, c = divmod(b, ncols)
        x0 = left + c * (kw + gap_x) * pw
        y_top = top - r * (kh + gap_y) * ph
        rects = []
        for u in range(kh):
            for v in range(kw):
                rects.append((x0 + v * pw + 0.04 * pw, y_top - (u + 1) * ph + 0.04 * ph, 0.92 * pw, 0.92 * ph))
        out.append(rects)
    return out


def plot_conv_kernels(
    layer: KANConv2d,
    out_channels: int | Sequence[int] | np.ndarray | torch.Tensor | None = None,
    in_channel: int = 0,
    x: torch.Tensor | None = None,
    *,
    ax: Axes | None = None,
    path: str | os.PathLike | None = None,
    ncols: int | None = None,
    num_points: int = 101,
    beta: float = 3.0,
    tint: bool = True,
    title: str | None = None,
    panel_size: float = 0.42,
) -> Figure:
    """For each filter, a ``K x K`` block with the learned function of every kernel element.

    Args:
        layer: a trained :class:`~kanlens.layers.conv.KANConv2d` (or a model with ``.kan_convs``: its first).
        out_channels: filters to show (default: all): an index, a list, or a 1-D integer array / tensor.
        in_channel: which input channel (of the filter's group) the kernels are read for.
        x: example inputs ``(batch, C, H, W)``: the x-range of the curves is that of the data and importance is
            the mean ``|phi|`` over it. Without ``x``: the grid range and the sweep.
        ax: draw inside this axes' area (it is hidden); default: a new figure.
        path: write the figure there (``.png``/``.svg``/``.pdf``); nothing is written without it.
        ncols: filters per row, an int >= 1 (default: about square; at most the number of filters).
        num_points: samples per curve (>= 2).
        beta: fading: ``alpha = tanh(beta * m / m_max) / tanh(beta)`` for an element of mean ``|phi| = m``.
        tint: tint each panel by the slope of the element's affine fit (the equivalent ordinary kernel).
        panel_size: inches per panel.

    Returns:
        The figure, with ``len(out_channels) * K * K`` panel axes (plus ``ax`` when given).
    """
    layer = _check_layer(layer)
    _check_common(ax, path)
    outs = _channels("out_channels", out_channels, layer.out_channels)
    in_channel = _channel("in_channel", in_channel, layer.in_channels // layer.groups, " (channels per group)")
    num_points = _count("num_points", num_points, 2)
    beta = check_positive("beta", beta, allow_zero=True)
    panel_size = check_positive("panel_size", panel_size)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    kh, kw = layer.kernel_size
    ncols, nrows = _grid_shape(ncols, len(outs), kh / kw)

    with torch.no_grad():
        xs, ys = element_samples(layer, x, num_points)
        fits = element_linear_fits(xs, ys, layer.channel_index())
        mag = layer.element_magnitude(x) if x is not None else ys.abs().mean(0)
    chan = layer.channel_index()
    m_max = float(mag[outs, in_channel].max()) or 1.0
    slope_scale = float((fits["slope"][outs, in_channel].abs()).max()) or 1.0

    figsize = (max(ncols * kw * panel_size * 1.1 + 0.3, 3.2), nrows * kh * panel_size * 1.2 + 0.8)
    fig, new_axes = _canvas(ax, figsize)
    top = 1.0 - 0.62 / figsize[1]  # room for the three title lines
    cmap = pyplot().get_cmap("coolwarm")
    for rects, o in zip(_blocks(len(outs), ncols, kh, kw, top=top), outs):
        c = int(chan[o, in_channel])
        xv = xs[:, c].cpu().numpy()
        block = ys[:, o, in_channel].cpu().numpy()  # (m, kh, kw)
        lo, hi = float(block.min()), float(block.max())
        pad = 0.08 * (hi - lo) + 1e-9
        for idx, rect in enumerate(rects):
            u, v = divmod(idx, kw)
            pax = new_axes(rect)
            m = float(mag[o, in_channel, u, v])
            alpha = math.tanh(beta * m / m_max) / math.tanh(beta) if beta > 0 else 1.0
            alpha = max(alpha, 0.08)
            if tint:
                s = float(fits["slope"][o, in_channel, u, v]) / slope_scale
                face = cmap(0.5 + 0.5 * s)
                pax.set_facecolor((*face[:3], 0.35 * alpha))
            _curve_panel(pax, xv, block[:, u, v], alpha, (lo - pad, hi + pad))
            if idx == kw // 2:
                pax.set_title(f"filter {o}", fontsize=8, pad=2)
    _kernels_heading(fig, ax, title, in_channel, tint)
    save_figure(fig, path, release=ax is None)
    return fig


def _grid_shape(ncols: object, n: int, aspect: float) -> tuple[int, int]:
    """``(ncols, nrows)`` for ``n`` filters: ``ncols`` checked (default: about square for kernels of height /
    width ``aspect``), at most ``n``."""
    if ncols is None:
        ncols = max(1, math.ceil(math.sqrt(n * aspect)))
    ncols = min(_count("ncols", ncols), n)
    return ncols, math.ceil(n / ncols)


def _kernels_heading(fig: Figure, ax: Axes | None, title: str | None, in_channel: int, tint: bool) -> None:
    """The three title lines of :func:`plot_conv_kernels` (the figure's, or ``ax``'s when drawing inside it)."""
    head = title if title is not None else f"KAN conv kernels, input channel {in_channel}"
    head += "\ncurve: phi(x) over the input range; fade: mean |phi|"
    if tint:
        head += "\ntint: slope of the affine fit (red +, blue -)"
    if ax is None:
        fig.suptitle(head, fontsize=7, y=0.999, va="top")
    else:
        ax.set_title(head, fontsize=7)


def _curve_panel(pax: Axes, xv: np.ndarray, yv: np.ndarray, alpha: float, ylim: tuple[float, float]) -> None:
    """One kernel element's curve in a bare panel (no ticks, faint spines)."""
    pax.plot(xv, yv, color="black", lw=1.2, alpha=alpha)
    pax.set_ylim(*ylim)
    pax.set_xlim(float(xv[0]), float(xv[-1]))
    pax.set_xticks([])
    pax.set_yticks([])
    for spine in pax.spines.values():
        spine.set_linewidth(0.4)
        spine.set_alpha(0.5)


def _receptive_field(layer: KANConv2d, pos: tuple[int, int]) -> tuple[int, int, int, int]:
    """Top-left corner (in unpadded input coordinates) and span of the window of output pixel ``pos``."""
    (pt, _), (pl, _) = layer.padding_pairs
    y0 = pos[0] * layer.stride[0] - pt
    x0 = pos[1] * layer.stride[1] - pl
    hspan = layer.dilation[0] * (layer.kernel_size[0] - 1) + 1
    wspan = layer.dilation[1] * (layer.kernel_size[1] - 1) + 1
    return y0, x0, hspan, wspan


def _heat(axh: Axes, values: np.ndarray, title: str, cmap: str, symmetric: bool, annotate: bool) -> None:
    lim = float(np.abs(values).max()) or 1.0
    kw = {"vmin": -lim, "vmax": lim} if symmetric else {}
    im = axh.imshow(values, cmap=cmap, **kw)
    axh.set_title(title, fontsize=8)
    axh.set_xticks([])
    axh.set_yticks([])
    if annotate and values.size <= 49:
        for (i, j), val in np.ndenumerate(values):
            r, g, b, _ = im.cmap(im.norm(val))
            color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            axh.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=6, color=color)


def _check_position(position: object) -> tuple[int, int]:
    """An output pixel ``(row, col)`` from a pair of ints, a 1-D array or a tensor; ``TypeError`` otherwise."""
    pos = position.detach().cpu().numpy() if isinstance(position, torch.Tensor) else position
    pos = list(pos) if isinstance(pos, np.ndarray) and pos.ndim == 1 else pos
    if isinstance(pos, (str, bytes)) or not isinstance(pos, Sequence) or len(pos) != 2:
        raise TypeError(f"position must be an output pixel (row, col), got {position!r}")
    return tuple(_index("position", p, "two integers (row, col)") for p in pos)  # type: ignore[return-value]


def _element_curves(new_axes, xv: np.ndarray, block: np.ndarray, patch: np.ndarray, resp: np.ndarray) -> None:
    """The bottom half of :func:`plot_conv_response`: the ``K x K`` element curves, each patch value marked.

    Shapes:
        xv: ``(m,)``; block: ``(m, kh, kw)``; patch, resp: ``(kh, kw)``.
    """
    kh, kw = patch.shape
    lo, hi = float(block.min()), float(block.max())
    label = new_axes((0.02, 0.05, 0.2, 0.36))
    label.set_axis_off()
    label.text(0.0, 0.5, "element functions phi_uv(x)\n(red dot: the patch value x[u, v])", fontsize=8, va="center")
    pw, ph = min(0.96 / kw, 0.42 / kh * 10 / 5.6 * 0.5), 0.42 / kh
    x_left = 0.5 - kw * pw / 2
    for u in range(kh):
        for v in range(kw):
            pax = new_axes((x_left + v * pw + 0.03 * pw, 0.46 - (u + 1) * ph + 0.03 * ph, 0.94 * pw, 0.94 * ph))
            pax.plot(xv, block[:, u, v], color="black", lw=1.0)
            pax.plot([patch[u, v]], [resp[u, v]], "o", color="red", ms=3)
            pax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
            pax.set_xticks([])
            pax.set_yticks([])


def plot_conv_response(
    layer: KANConv2d,
    image: torch.Tensor,
    out_channel: int = 0,
    *,
    position: tuple[int, int] | None = None,
    in_channel: int = 0,
    ax: Axes | None = None,
    path: str | os.PathLike | None = None,
    num_points: int = 101,
) -> Figure:
    """What one filter does to one image, at one output pixel and everywhere.

    Top row: the input (channel ``in_channel``) with the receptive field of ``position``; the input patch; the
    per-element responses ``phi_ouv(patch[u, v])`` (for ``in_channel``; the title gives their sum over all
    channels plus the bias, i.e. the output pixel); the output map with ``position`` marked. Bottom: the ``K x K``
    element curves with the patch values marked.

    Args:
        layer: a :class:`~kanlens.layers.conv.KANConv2d` (or a model with ``.kan_convs``).
        image: ``(C, H, W)`` or ``(1, C, H, W)``.
        out_channel: the filter.
        position: output pixel ``(row, col)``; default: the one with the largest ``|output|``.
        in_channel: which input channel (of the filter's group) is shown.

    Returns:
        The figure: 4 image panels, a text panel and ``K * K`` curve panels (plus ``ax`` when given).
    """
    layer = _check_layer(layer)
    _check_common(ax, path)
    img = _image("image", image, layer)
    o = _channel("out_channel", out_channel, layer.out_channels)
    in_channel = _channel("in_channel", in_channel, layer.in_channels // layer.groups, " (channels per group)")
    num_points = _count("num_points", num_points, 2)
    if position is not None:
        position = _check_position(position)
    with torch.no_grad():
        out_map = layer(img)[0, o]
        elements = layer.forward_elements(img)[0, o]  # (in_g, kh, kw, Ho, Wo)
        patches = layer.patches(img)[0]  # (C, kh, kw, Ho, Wo)
        xs, ys = element_samples(layer, img, num_points)
    if position is None:
        flat = int(out_map.abs().argmax())
        position = divmod(flat, out_map.shape[1])
    r, c = position
    if not (0 <= r < out_map.shape[0] and 0 <= c < out_map.shape[1]):
        raise ValueError(f"position must be inside the output map {tuple(out_map.shape)}, got {position!r}")
    ch = int(layer.channel_index()[o, in_channel])
    patch = patches[ch, :, :, r, c].cpu().numpy()
    resp = elements[in_channel, :, :, r, c].cpu().numpy()

    fig, new_axes = _canvas(ax, (10.0, 5.6))
    top = [(0.02 + i * 0.245, 0.52, 0.22, 0.40) for i in range(4)]
    a_img, a_patch, a_resp, a_out = (new_axes(rect) for rect in top)
    a_img.imshow(img[0, ch].cpu().numpy(), cmap="gray")
    y0, x0, hspan, wspan = _receptive_field(layer, (r, c))
    from matplotlib.patches import Rectangle

    a_img.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), wspan, hspan, fill=False, ec="red", lw=1.5))
    a_img.set_title(f"input (channel {ch})", fontsize=8)
    a_img.set_xticks([])
    a_img.set_yticks([])
    _heat(a_patch, patch, "input patch x[u, v]", "gray", False, True)
    total = float(out_map[r, c])  # = sum of all elements' responses + bias
    _heat(a_resp, resp, f"phi_uv(x[u, v]); output = {total:.2f}", "coolwarm", True, True)
    lim = float(out_map.abs().max()) or 1.0
    a_out.imshow(out_map.cpu().numpy(), cmap="coolwarm", vmin=-lim, vmax=lim)
    a_out.plot([c], [r], marker="s", mfc="none", mec="black", ms=6)
    a_out.set_title(f"output map, filter {o}", fontsize=8)
    a_out.set_xticks([])
    a_out.set_yticks([])

    _element_curves(new_axes, xs[:, ch].cpu().numpy(), ys[:, o, in_channel].cpu().numpy(), patch, resp)
    save_figure(fig, path, release=ax is None)
    return fig


def plot_conv_responses(
    layer: KANConv2d,
    image: torch.Tensor,
    out_channels: int | Sequence[int] | np.ndarray | torch.Tensor | None = None,
    *,
    in_channel: int = 0,
    ax: Axes | None = None,
    path: str | os.PathLike | None = None,
    ncols: int | None = None,
) -> Figure:
    """The input image and the output map of every (chosen) filter.

    Args:
        out_channels: filters to show (default: all): an index, a list, or a 1-D integer array / tensor.
        in_channel: the input channel shown as the image.
        ncols: panels per row, an int >= 1 (default: up to 8; at most the number of panels).

    Returns:
        The figure with ``1 + len(out_channels)`` image axes (plus ``ax`` when given).
    """
    layer = _check_layer(layer)
    _check_common(ax, path)
    img = _image("image", image, layer)
    outs = _channels("out_channels", out_channels, layer.out_channels)
    in_channel = _channel("in_channel", in_channel, layer.in_channels)
    n = 1 + len(outs)
    if ncols is None:
        ncols = n if n <= 8 else math.ceil(n / math.ceil(n / 8))
    ncols = min(_count("ncols", ncols), n)
    with torch.no_grad():
        maps = layer(img)[0].cpu().numpy()
    nrows = math.ceil(n / ncols)
    fig, new_axes = _canvas(ax, (1.7 * ncols, 1.8 * nrows))
    w, h = 0.96 / ncols, 0.92 / nrows
    for i in range(n):
        rr, cc = divmod(i, ncols)
        pax = new_axes((0.02 + cc * w + 0.04 * w, 0.96 - (rr + 1) * h + 0.02 * h, 0.92 * w, 0.8 * h))
        if i == 0:
            pax.imshow(img[0, in_channel].cpu().numpy(), cmap="gray")
            pax.set_title(f"input ch {in_channel}", fontsize=8)
        else:
            m = maps[outs[i - 1]]
            lim = float(np.abs(m).max()) or 1.0
            pax.imshow(m, cmap="coolwarm", vmin=-lim, vmax=lim)
            pax.set_title(f"filter {outs[i - 1]}", fontsize=8)
        pax.set_xticks([])
        pax.set_yticks([])
    save_figure(fig, path, release=ax is None)
    return fig
