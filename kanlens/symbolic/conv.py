"""Symbolic reading of KAN convolutions: which kernel elements are (nearly) linear, and what the others are.

A KAN convolution whose element functions are all affine, ``phi(x) = w * x + b``, *is* an ordinary convolution
with kernel ``w`` (plus a constant). :func:`auto_symbolic_conv` fits every element of a
:class:`~kanlens.layers.conv.KANConv2d` over its input range:

* an affine least-squares fit ``a * x + b`` (vectorised over all elements) gives ``linear_r2``; elements with
  ``linear_r2 >= linear_threshold`` are *linear*;
* elements whose mean ``|phi|`` is below ``inactive_threshold`` times the largest one of the layer are
  *inactive* (they could be pruned);
* the remaining, genuinely non-linear elements are fitted against the symbolic library
  (``c * f(a * x + b) + d``, :func:`kanlens.symbolic.fit.fit_library`) and the best ranked function is reported.

The :class:`ConvSymbolicReport` summarises each filter (output channel) as ``linear`` (an ordinary convolution),
``non-linear`` or ``mixed``, exposes the equivalent linear kernel, and prints as a table.

Example:
    >>> report = auto_symbolic_conv(model.convs[0], x_batch)          # doctest: +SKIP
    >>> print(report)                                                  # doctest: +SKIP
    >>> report.linear_kernel().shape                                   # doctest: +SKIP
    torch.Size([6, 1, 3, 3])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .._checks import check_tensor
from ..layers.conv import KANConvNd

__all__ = ["ConvSymbolicReport", "ElementFit", "auto_symbolic_conv", "element_linear_fits", "element_samples"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ElementFit:
    """Best library fit of one non-linear element ``(out_channel, in_channel, offset)``: ``c*f(a*x+b)+d``."""

    out_channel: int
    in_channel: int
    offset: tuple[int, ...]
    name: str
    r2: float
    params: tuple[float, float, float, float]


def element_samples(
    layer: KANConvNd, x: torch.Tensor | None = None, num_points: int = 101
) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniform sweep over each input channel's range and every element function on it.

    The range is that of the (padded) pixels of ``x`` when given, else the grid range of each channel.

    Shapes:
        returns xs ``(num_points, in_channels)`` and ys ``(num_points, out, in_g, *K)``.
    """
    with torch.no_grad():
        if x is not None:
            x = layer.check_input(x)
            xp = layer.pad_input(x).transpose(0, 1).flatten(1)  # (C, everything)
            lo, hi = xp.amin(1), xp.amax(1)
        else:
            lo, hi = layer.grid[:, layer.k], layer.grid[:, -layer.k - 1]
        hi = torch.maximum(hi, lo + 1e-6)
        t = torch.linspace(0, 1, num_points, dtype=layer.grid.dtype, device=layer.grid.device)[:, None]
        xs = lo + (hi - lo) * t
        return xs, layer.element_functions(xs)


def element_linear_fits(xs: torch.Tensor, ys: torch.Tensor, channel_index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Least-squares ``a * x + b`` per element, vectorised; ``r2 = 1`` for constant functions.

    Shapes:
        xs ``(m, C)``, ys ``(m, out, in_g, *K)``, channel_index ``(out, in_g)`` ->
        ``slope``, ``intercept``, ``r2``, ``std`` each ``(out, in_g, *K)``.
    """
    n_k = ys.ndim - 3
    xe = xs[:, channel_index].reshape(xs.shape[0], *channel_index.shape, *([1] * n_k)).expand_as(ys).double()
    y = ys.double()
    xm, ym = xe.mean(0), y.mean(0)
    xc, yc = xe - xm, y - ym
    sxx = xc.square().sum(0)
    slope = (xc * yc).sum(0) / sxx.clamp_min(1e-30)
    intercept = ym - slope * xm
    sst = yc.square().sum(0)
    sse = (yc - slope * xc).square().sum(0)
    tiny = sst <= 1e-12 * y.square().sum(0).clamp_min(1e-30)
    r2 = torch.where(tiny, torch.ones_like(sst), 1.0 - sse / sst.clamp_min(1e-30))
    out = {"slope": slope, "intercept": intercept, "r2": r2, "std": yc.square().mean(0).sqrt()}
    return {k: v.to(ys.dtype) for k, v in out.items()}


@dataclass
class ConvSymbolicReport:
    """Per-element linearity and library fits of one KAN convolution (see :func:`auto_symbolic_conv`).

    Attributes:
        slope, intercept, linear_r2: the affine fit of every element, ``(out, in_g, *K)``.
        magnitude: mean ``|phi|`` over the data (or over the sweep without data), ``(out, in_g, *K)``.
        status: ``(out, in_g, *K)`` int tensor: 0 inactive, 1 linear, 2 non-linear.
        fits: library fits of the non-linear elements (best ranked function, its r2 and constants).
        linear_threshold, inactive_threshold, r2_threshold: the thresholds used (a fit below ``r2_threshold`` is
            listed as ``"spline"``).
    """

    slope: torch.Tensor
    intercept: torch.Tensor
    linear_r2: torch.Tensor
    magnitude: torch.Tensor
    status: torch.Tensor
    fits: list[ElementFit] = field(default_factory=list)
    linear_threshold: float = 0.99
    inactive_threshold: float = 0.02
    r2_threshold: float = 0.99

    INACTIVE, LINEAR, NONLINEAR = 0, 1, 2

    @property
    def is_linear(self) -> torch.Tensor:
        """Boolean ``(out, in_g, *K)``: active and nearly affine."""
        return self.status == self.LINEAR

    @property
    def is_nonlinear(self) -> torch.Tensor:
        """Boolean ``(out, in_g, *K)``: active and not affine."""
        return self.status == self.NONLINEAR

    def linear_kernel(self) -> torch.Tensor:
        """Slopes of the affine fits (inactive elements zeroed): the ordinary-convolution kernel closest to the layer.

        Shapes:
            ``(out, in_g, *K)``, usable as ``nn.Conv2d`` weights.
        """
        return torch.where(self.status == self.INACTIVE, torch.zeros_like(self.slope), self.slope)

    def filter_kinds(self) -> list[str]:
        """``"linear"``, ``"non-linear"``, ``"mixed"`` or ``"inactive"`` for each output channel."""
        kinds = []
        for o in range(self.status.shape[0]):
            st = self.status[o]
            n_lin, n_non = int((st == self.LINEAR).sum()), int((st == self.NONLINEAR).sum())
            if n_lin == 0 and n_non == 0:
                kinds.append("inactive")
            elif n_non == 0:
                kinds.append("linear")
            elif n_lin == 0:
                kinds.append("non-linear")
            else:
                kinds.append("mixed")
        return kinds

    def fits_for(self, out_channel: int) -> list[ElementFit]:
        """Library fits of the non-linear elements of one filter."""
        return [f for f in self.fits if f.out_channel == out_channel]

    def summary(self) -> list[dict]:
        """One dict per filter: counts of linear / non-linear / inactive elements, kind, min linear r2, functions."""
        rows = []
        kinds = self.filter_kinds()
        for o in range(self.status.shape[0]):
            st = self.status[o]
            active = st != self.INACTIVE
            r2 = self.linear_r2[o][active]
            names: dict[str, int] = {}
            for f in self.fits_for(o):
                name = f.name if f.r2 >= self.r2_threshold else "spline"
                names[name] = names.get(name, 0) + 1
            rows.append(
                {
                    "filter": o,
                    "kind": kinds[o],
                    "linear": int((st == self.LINEAR).sum()),
                    "non_linear": int((st == self.NONLINEAR).sum()),
                    "inactive": int((st == self.INACTIVE).sum()),
                    "min_linear_r2": float(r2.min()) if r2.numel() else float("nan"),
                    "functions": names,
                }
            )
        return rows

    def to_text(self) -> str:
        """A plain-text table, one line per filter."""
        head = f"{'filter':>6}  {'kind':<10} {'linear':>6} {'non-lin':>7} {'inactive':>8} {'min r2':>7}  functions"
        lines = [
            f"KAN conv: {self.status.shape[0]} filters x {self.status[0].numel()} elements; linear = r2 of the "
            f"affine fit >= {self.linear_threshold}, inactive = mean|phi| < {self.inactive_threshold} x layer max",
            head,
        ]
        for r in self.summary():
            funcs = ", ".join(f"{n} x{c}" for n, c in sorted(r["functions"].items(), key=lambda t: -t[1]))
            lines.append(
                f"{r['filter']:>6}  {r['kind']:<10} {r['linear']:>6} {r['non_linear']:>7} {r['inactive']:>8} "
                f"{r['min_linear_r2']:>7.4f}  {funcs}"
            )
        n_lin, n_non = int(self.is_linear.sum()), int(self.is_nonlinear.sum())
        lines.append(f"total: {n_lin} linear, {n_non} non-linear, {self.status.numel() - n_lin - n_non} inactive")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def auto_symbolic_conv(
    layer: KANConvNd,
    x: torch.Tensor | None = None,
    *,
    lib: Sequence[str] | object | None = None,
    linear_threshold: float = 0.99,
    inactive_threshold: float = 0.02,
    num_points: int = 101,
    fit_library: bool = True,
    max_library_fits: int | None = 64,
    r2_threshold: float = 0.99,
) -> ConvSymbolicReport:
    """Classify each kernel element of a KAN convolution as linear / non-linear / inactive; name the non-linear ones.

    Args:
        layer: a :class:`~kanlens.layers.conv.KANConv2d` (or ``KANConv1d``).
        x: example inputs ``(batch, in_channels, *spatial)``; they set each channel's input range and the
            importance (mean ``|phi|``) of every element. Without ``x`` the grid ranges and the sweep are used.
        lib: symbolic library (names or a ``SymbolicLibrary``; default: :func:`kanlens.symbolic.default_library`).
        linear_threshold: minimum r2 of the affine fit for an element to count as linear.
        inactive_threshold: elements with mean ``|phi|`` below this fraction of the layer's largest are inactive.
        num_points: points of the sweep over each channel's range.
        fit_library: fit the non-linear elements to the library (otherwise only the linear/non-linear split).
        max_library_fits: fit at most this many non-linear elements (the most important ones first).
        r2_threshold: a library fit counts as a symbolic match when its r2 reaches this; worse fits are reported
            as ``"spline"`` (no simple formula).

    Returns:
        A :class:`ConvSymbolicReport`; ``print(report)`` gives one line per filter.
    """
    if not isinstance(layer, KANConvNd):
        raise TypeError(f"layer must be a KANConv2d/KANConv1d, got {type(layer).__name__}")
    if not 0.0 < linear_threshold <= 1.0:
        raise ValueError(f"linear_threshold must be in (0, 1], got {linear_threshold}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 3:
        raise ValueError(f"num_points must be an int >= 3 (two points always fit a line), got {num_points!r}")
    if max_library_fits is not None and (isinstance(max_library_fits, bool) or not isinstance(max_library_fits, int)
                                         or max_library_fits < 0):
        raise ValueError(f"max_library_fits must be None or an int >= 0, got {max_library_fits!r}")
    if x is not None:
        check_tensor("x", x)
    xs, ys = element_samples(layer, x, num_points)
    fits = element_linear_fits(xs, ys, layer.channel_index())
    with torch.no_grad():
        magnitude = layer.element_magnitude(x) if x is not None else ys.abs().mean(0)
    mag_cut = inactive_threshold * float(magnitude.max()) if magnitude.numel() else 0.0
    status = torch.full_like(magnitude, ConvSymbolicReport.NONLINEAR, dtype=torch.long)
    status[fits["r2"] >= linear_threshold] = ConvSymbolicReport.LINEAR
    status[(magnitude < mag_cut) | (layer.mask == 0)] = ConvSymbolicReport.INACTIVE
    report = ConvSymbolicReport(
        slope=fits["slope"].detach(),
        intercept=fits["intercept"].detach(),
        linear_r2=fits["r2"].detach(),
        magnitude=magnitude.detach(),
        status=status,
        linear_threshold=linear_threshold,
        inactive_threshold=inactive_threshold,
        r2_threshold=r2_threshold,
    )
    if fit_library:
        report.fits = _library_fits(layer, xs, ys, status, magnitude, lib, max_library_fits)
    return report


def _library_fits(
    layer: KANConvNd,
    xs: torch.Tensor,
    ys: torch.Tensor,
    status: torch.Tensor,
    magnitude: torch.Tensor,
    lib: object,
    max_fits: int | None,
) -> list[ElementFit]:
    from .fit import fit_library, rank_fits
    from .library import resolve_library

    library = resolve_library(lib)  # type: ignore[arg-type]
    idx = (status == ConvSymbolicReport.NONLINEAR).nonzero().tolist()
    idx.sort(key=lambda e: -float(magnitude[tuple(e)]))
    if max_fits is not None and len(idx) > max_fits:
        logger.info("fitting the %d most important of %d non-linear elements", max_fits, len(idx))
        idx = idx[:max_fits]
    # a non-linear element is neither zero nor affine: "0" and "x" would only win on simplicity
    library = library.without([n for n in ("0", "x") if n in library])
    if idx and not len(library):
        raise ValueError("lib has no functions besides 0 and x, which cannot describe a non-linear element; "
                         "give more functions (or fit_library=False)")
    chan = layer.channel_index()
    out = []
    for e in idx:
        o, c = e[0], e[1]
        xe = xs[:, int(chan[o, c])].detach().double()
        ye = ys[(slice(None), *e)].detach().double()
        best = rank_fits(fit_library(xe, ye, library, refine_top=3))[0]
        out.append(ElementFit(o, c, tuple(e[2:]), best.name, float(best.r2), tuple(float(v) for v in best.params)))
    return out

