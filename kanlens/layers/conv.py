"""KAN convolutions: every kernel weight becomes a learnable 1-D function (:class:`KANConv2d`, :class:`KANConv1d`).

An element ``(o, c, u)`` of the kernel (output channel ``o``, input channel ``c`` of its group, kernel offset ``u``)
computes ``phi_ocu(x) = scale_base * b(x) + scale_sp * spline_ocu(x)``, the same edge function as
:class:`~kanlens.layers.spline.KANLayer`, and an output pixel is the sum of ``phi_ocu`` over the input pixels
of its window (plus a bias).

Fast path ("expand, then one convolution"): each pixel is expanded once into ``1 + G + k`` feature channels
``[b(x), B_0(x), ..., B_{G+k-1}(x)]`` and a single ordinary convolution over ``C * (1 + G + k)`` channels with the
stacked weights ``[scale_base, scale_sp * coef]`` gives the output. Padded pixels are *evaluated* as in the
definition (``phi(0)`` is in general not 0): other padding modes pad the input before the expansion; zero padding
(equal on both sides) expands only the input's own pixels, lets the convolution zero-pad the features and adds the
padded pixels' part: the weights' tap sums of the features of ``x = 0`` times a memoised mask of the taps that
land in the padding (see :meth:`_KANConvNd._border`). On CPU, when every evaluated input lies inside every
channel's grid range the bases sum to one there, so the last basis of each channel is folded into the other
weights and the bias (``C * (G + k)`` channels, see :meth:`_KANConvNd._fused_weight`). The
``(batch, out, in, K, K, H, W)`` tensor of element activations is built only on demand (:meth:`forward_elements`,
the ``hook_elements`` hook point, plots and scores).

On uniform grids the expanded input is stored channels-last, memory order ``(batch, *spatial, C, 1 + G + k)``,
the layout of oneDNN's fastest CPU kernels for the forward convolution and the weight gradient. It is built without
a transposing copy: one small GEMM spreads each pixel's channel values into their feature slots, and the closed-form
basis passes then run over contiguous, cache-sized chunks of pixels (:func:`_expand_rows`).

Grids are per *input channel* (every kernel offset of a channel sees the same pixel values), shape
``(in_channels, G + 2k + 1)``. On a uniform grid the basis is evaluated in closed form (cardinal B-splines,
about 5x cheaper than the Cox-de Boor recursion); non-uniform grids use :func:`kanlens.splines.b_spline_basis`.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import splines
from ..hooks import HookPoint
from ..utils import check_choice, check_tensor
from .spline import _BASE_DERIVATIVES, BASE_FUNCTIONS, _check_int, _check_range, recompute_grads

__all__ = ["KANConv1d", "KANConv2d", "cardinal_basis"]


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_AXES = "yz"  # output positions in einsum strings
_KAX = "uv"  # kernel offsets in einsum strings
_DIM_NAMES = {1: "L", 2: "H, W"}


def _ntuple(name: str, value: int | Sequence[int], n: int, minimum: int) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * n
    try:
        vals = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}") from None
    if len(vals) != n:
        raise ValueError(f"{name} must have {n} entries, got {value!r}")
    for v in vals:
        _check_int(name, v, minimum)
    return vals


def cardinal_basis(t: torch.Tensor, nb: int, k: int, dim: int = -1) -> torch.Tensor:
    """All ``nb`` B-spline bases of order ``k`` on a *uniform* grid, in closed form.

    ``t`` is the position in knot units from the first (extended) knot, ``t = (x - t_0) / h``. Basis ``j`` is the
    cardinal B-spline centred at ``j + (k + 1) / 2``, evaluated with the symmetric truncated-power formula
    ``beta_k(y) = 1/k! * sum_i (-1)^i C(k+1, i) ((k+1)/2 - i - |y|)_+^k``. Equal (to float rounding) to the
    Cox-de Boor recursion of :func:`kanlens.splines.b_spline_basis` on the same grid; zero outside the grid.

    Shapes:
        t: any shape ``S``; returns ``S`` with a new axis of size ``nb`` inserted at ``dim``.
    """
    shape = [1] * (t.ndim + 1)
    axis = dim if dim >= 0 else t.ndim + 1 + dim
    shape[axis] = nb
    centres = (torch.arange(nb, device=t.device, dtype=t.dtype) + (k + 1) / 2).view(shape)
    y = (t.unsqueeze(axis) - centres).abs()
    half = (k + 1) / 2
    out = None
    for i in range(k + 2):
        shift = half - i
        if shift <= 0:
            break
        coeff = (-1) ** i * math.comb(k + 1, i) / math.factorial(k)
        term = (shift - y).clamp_min(0.0) ** k
        out = coeff * term if out is None else out + coeff * term
    assert out is not None
    return out


def _cardinal_terms(k: int) -> list[tuple[float, float]]:
    """``(shift_i, (-1)^i C(k+1, i))`` of the symmetric truncated-power formula, nonzero shifts only."""
    half = (k + 1) / 2
    return [(half - i, (-1) ** i * math.comb(k + 1, i)) for i in range(k + 2) if half - i > 0]


def _pow_(buf: torch.Tensor, power: int) -> torch.Tensor:
    """In place ``buf ** power`` for ``buf >= 0``, with ``0 ** 0 = 0`` (the derivative of a linear B-spline)."""
    return buf.pow_(power) if power > 0 else buf.gt_(0.0)


_FAR = 1e6  # a knot coordinate far outside any grid
_CHUNK = 1 << 17  # elements per pixel chunk of the basis expansion: two 512 KB scratch buffers that stay in L2


def _expand_rows(
    t: torch.Tensor,
    nb1: int,
    k: int,
    out: torch.Tensor | None = None,
    grad: torch.Tensor | None = None,
    slot0: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unnormalised cardinal B-splines of every row of ``t``, or their derivative contracted with ``grad``.

    ``t`` holds each pixel's knot coordinates ``t_c = (x_c - t0_c) / h_c`` and a last column of ones. Slot
    ``s >= 1`` of channel ``c`` gets ``k! * beta_k(t_c - (s - 1) - (k + 1) / 2)``, i.e. ``k!`` times basis
    ``s - 1``; slot 0 gets ``slot0`` (the base function, ``(N, C)``), written chunk by chunk while the chunk is
    in cache (without ``slot0`` its values are meaningless). In the backward pass ``slot0`` receives the gradient's
    slot-0 values instead.
    One small GEMM, ``y = t @ [spread; -centres]``, puts each pixel's values into their slots minus the slot's
    centre, so every later pass runs over contiguous, cache-sized chunks (the ``k!`` is folded into the weights).

    Forward (``grad`` None): writes into ``out``, ``(N, C * nb1)``, and returns it. Backward: returns ``(N, C)``,
    ``sum_s grad[:, c * nb1 + s] * d/dt_c (k! beta)`` over slots ``s >= 1``.

    Shapes:
        t: ``(N, C + 1)``; out, grad: ``(N, C * nb1)``.
    """
    n_rows, c = t.shape[0], t.shape[1] - 1
    width = c * nb1
    centres = (torch.arange(nb1, device=t.device, dtype=t.dtype) - 1 + (k + 1) / 2).repeat(c)
    spread = torch.cat([torch.eye(c, device=t.device, dtype=t.dtype).repeat_interleave(nb1, dim=1),
                        -centres[None]])  # (C + 1, C * nb1)
    terms = _cardinal_terms(k)
    rest = terms[1:]
    derivative = grad is not None
    power = k - 1 if derivative else k
    # one pass on accelerators (every chunk is a kernel launch there)
    step = max(1, n_rows if t.device.type != "cpu" else _CHUNK // max(1, width))
    rows = min(step, n_rows)
    s0_buf = t.new_empty(rows, width)
    tmp_buf = torch.empty_like(s0_buf) if len(terms) > 2 else None
    sign_buf = dest_buf = None
    if derivative:
        sign_buf, dest_buf = torch.empty_like(s0_buf), torch.empty_like(s0_buf)
        result = t.new_empty(n_rows, c)
        gather = spread[:c].T.clone()  # (C * nb1, C): sums each channel's basis slots ...
        gather[::nb1] = 0.0  # ... but not its base-function slot
    else:
        assert out is not None
        result = out
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        m = r1 - r0
        s0 = torch.mm(t[r0:r1], spread, out=s0_buf[:m])  # y = t - centre
        if derivative:
            sign = torch.sign(s0, out=sign_buf[:m])
            dest = dest_buf[:m]
        else:
            dest = out[r0:r1]
        s0.abs_().neg_().add_(terms[0][0]).clamp_min_(0.0)  # (shift_0 - |y|)_+
        if power > 0:
            torch.pow(s0, power, out=dest)
        else:
            dest.copy_(s0).gt_(0.0)
        for i, (shift, coeff) in enumerate(rest):
            if i == len(rest) - 1:  # last term: reuse the buffer, (s0 - d)_+ = (shift - |y|)_+
                tmp = s0.sub_(terms[0][0] - shift).clamp_min_(0.0)
            else:
                assert tmp_buf is not None
                tmp = torch.sub(s0, terms[0][0] - shift, out=tmp_buf[:m]).clamp_min_(0.0)
            dest.add_(_pow_(tmp, power), alpha=coeff)
        if slot0 is not None:  # forward: write the base function; backward: read its gradient
            if derivative:
                slot0[r0:r1] = grad[r0:r1].view(m, c, nb1)[:, :, 0]
            else:
                dest.view(m, c, nb1)[:, :, 0] = slot0[r0:r1]
        if derivative:
            dest.mul_(sign).mul_(grad[r0:r1])
            torch.mm(dest, gather, out=result[r0:r1])
    if derivative:
        result.mul_(-k)  # d/dy (s - |y|)_+^k = -k sign(y) (s - |y|)_+^(k-1)
    return result


class _UniformFeatures(torch.autograd.Function):
    """``x -> [b(x), k! B_0(x), ..., k! B_{nb-1}(x)]`` per channel on uniform grids, with an analytic backward.

    The result is ``(batch, C * (1 + nb), *S)`` stored *channels-last* (memory order ``(batch, *S, C, 1 + nb)``),
    the layout of oneDNN's fastest CPU convolution kernels (forward and weight gradient), built without a
    transposing copy of the features (see :func:`_expand_rows`; only the input is transposed).

    Shapes:
        x: ``(batch, C, *S)``, t0 and h: ``(C,)`` -> ``(batch, C * (1 + nb), *S)``.
    """

    @staticmethod
    def forward(ctx, x, t0, h, nb: int, k: int, base_name: str):
        c, nb1 = x.shape[1], nb + 1
        lead = (x.shape[0], *x.shape[2:])
        xpm = x.movedim(1, -1).reshape(-1, c)  # (N, C) pixel-major
        t = x.new_empty(xpm.shape[0], c + 1)
        t[:, c] = 1.0
        # knot coordinates of NaN, Inf or huge inputs are moved far outside the grid (all bases 0 there): the GEMM
        # of _expand_rows would otherwise spread 0 * inf = NaN to the pixel's other channels (other groups); the
        # base function still sees the value itself
        tc = torch.sub(xpm, t0, out=t[:, :c]).div_(h).clamp_(-_FAR, _FAR)
        torch.nan_to_num_(tc, nan=_FAR)
        buf = x.new_empty(*lead, c * nb1)
        flat = buf.view(-1, c * nb1)
        _expand_rows(t, nb1, k, out=flat, slot0=BASE_FUNCTIONS[base_name](xpm))
        ctx.save_for_backward(xpm, t, h, x, t0)
        ctx.k, ctx.nb1, ctx.base_name = k, nb1, base_name
        return buf.movedim(-1, 1)

    @staticmethod
    def backward(ctx, grad):
        xpm, t, h, x, t0 = ctx.saved_tensors  # xpm: (N, C) pixel-major input
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        c, nb1 = xpm.shape[1], ctx.nb1
        gl = grad.movedim(1, -1)  # (B, *S, C * nb1)
        g2 = gl.reshape(-1, c * nb1)  # a copy unless grad is channels-last already
        if torch.is_grad_enabled():
            # create_graph (second derivatives): differentiate the closed form as ordinary autograd ops instead
            k, name = ctx.k, ctx.base_name

            def expand(v: torch.Tensor) -> tuple[torch.Tensor]:
                v = v.movedim(1, -1).reshape(-1, c)
                bases = cardinal_basis((v - t0) / h, nb1 - 1, k) * math.factorial(k)  # (N, C, nb)
                return (torch.cat([BASE_FUNCTIONS[name](v).unsqueeze(-1), bases], -1).flatten(1),)

            return (*recompute_grads(expand, (x,), (True,), (g2,)), None, None, None, None, None)
        g_base = torch.empty_like(xpm)  # contiguous: on strided slices the base's backward kernels are ~15x slower
        grad_t = _expand_rows(t, nb1, ctx.k, grad=g2, slot0=g_base)  # (N, C)
        base = BASE_FUNCTIONS[ctx.base_name]
        grad_x = g_base.mul_(_BASE_DERIVATIVES[ctx.base_name](xpm, base(xpm))).add_(grad_t.div_(h))
        return grad_x.view(*gl.shape[:-1], c).movedim(-1, 1), None, None, None, None, None


class _KANConvNd(nn.Module):
    """Shared implementation of KAN convolutions over ``n`` spatial dimensions (see :class:`KANConv2d`)."""

    _n: int = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        grid: int = 5,
        k: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        padding_mode: str = "zeros",
        *,
        noise_scale: float = 0.5,
        scale_base_mu: float = 0.0,
        scale_base_sigma: float = 1.0,
        scale_sp: float = 1.0,
        base_fun: str = "silu",
        grid_eps: float = 1.0,
        shared_shape: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        n = self._n
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.out_channels = _check_int("out_channels", out_channels, 1)
        self.groups = _check_int("groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        self.kernel_size = _ntuple("kernel_size", kernel_size, n, 1)
        self.stride = _ntuple("stride", stride, n, 1)
        self.dilation = _ntuple("dilation", dilation, n, 1)
        self.padding_mode = check_choice("padding_mode", padding_mode, PADDING_MODES)
        self.padding: tuple[int, ...] | str
        if isinstance(padding, str):
            check_choice("padding", padding, ("valid", "same"))
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions (as in nn.Conv2d)")
            self.padding = padding
        else:
            self.padding = _ntuple("padding", padding, n, 0)
        self.num = _check_int("grid", grid, 1)
        self.k = _check_int("k", k, 1)
        check_choice("base_fun", base_fun, BASE_FUNCTIONS)
        self.base_fun_name = base_fun
        self.grid_eps = splines.check_grid_eps(grid_eps)
        if not isinstance(shared_shape, bool):
            raise TypeError(f"shared_shape must be True or False, got {shared_shape!r}")
        self.shared_shape = shared_shape
        grid_range = _check_range(grid_range)
        if generator is None:
            generator = torch.Generator().manual_seed(0)

        in_g = in_channels // groups
        fan_in = in_g * math.prod(self.kernel_size)
        elem_shape = (out_channels, in_g, *self.kernel_size)
        grid_t = splines.uniform_grid(self.num, self.k, in_channels, grid_range, dtype=dtype)
        self.register_buffer("grid", grid_t)
        self.register_buffer("mask", torch.ones(elem_shape, dtype=dtype))

        # Initial splines: least-squares fit of small noise at the knots, as in KANLayer.
        knots = grid_t[:, self.k : -self.k].T  # (G+1, C)
        per_channel = (out_channels // groups) * math.prod(self.kernel_size)
        noise = torch.rand(knots.shape[0], per_channel, in_channels, generator=generator, dtype=dtype) - 0.5
        coef = splines.curve2coef(knots, noise * noise_scale / self.num, grid_t, self.k)
        # (out, in_g, *K, nb); shared shapes: (out, in_g, 1, .., 1, nb), the first kernel offset's initial spline
        self.coef = nn.Parameter(self._stored_coef(self._from_channel_major(coef)))
        u = torch.rand(elem_shape, generator=generator, dtype=dtype) * 2 - 1
        self.scale_base = nn.Parameter((scale_base_mu + scale_base_sigma * u) / math.sqrt(fan_in))
        self.scale_sp = nn.Parameter(torch.full(elem_shape, scale_sp / math.sqrt(fan_in), dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(out_channels, dtype=dtype)) if bias else None
        self.hook_elements = HookPoint()
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------ shapes and layout helpers
    @property
    def num_basis(self) -> int:
        """Spline bases per element, ``G + k``."""
        return self.num + self.k

    @property
    def element_coef(self) -> torch.Tensor:
        """Spline coefficients of every element, ``(out, in_g, *K, G + k)`` (a broadcast view for shared shapes)."""
        return self.coef.expand(self.out_channels, self.in_channels // self.groups, *self.kernel_size,
                                self.num_basis)

    def _stored_coef(self, full: torch.Tensor) -> torch.Tensor:
        """The ``coef`` parameter's layout of per-element coefficients ``full`` (shared shapes: the first offset's;
        after a grid update all offsets of a pair hold the same refitted spline)."""
        if not self.shared_shape:
            return full
        return full[(slice(None), slice(None), *([slice(0, 1)] * self._n))].contiguous()

    @property
    def base_fun(self):
        return BASE_FUNCTIONS[self.base_fun_name]

    @property
    def _pad(self) -> tuple[tuple[int, int], ...]:
        """``(before, after)`` padding per spatial dim, nn.Conv's rules (``'same'`` puts the extra pixel after).

        Derived from ``padding``, ``dilation`` and ``kernel_size`` on every use, so changing those attributes
        after construction takes effect (as for ``nn.Conv2d``)."""
        if self.padding == "valid":
            return tuple((0, 0) for _ in range(self._n))
        if self.padding == "same":
            total = [d * (kk - 1) for d, kk in zip(self.dilation, self.kernel_size)]
            return tuple((t // 2, t - t // 2) for t in total)
        pad = self.padding if isinstance(self.padding, tuple) else _ntuple("padding", self.padding, self._n, 0)
        return tuple((p, p) for p in pad)

    def _to_channel_major(self, t: torch.Tensor) -> torch.Tensor:
        """``(out, in_g, *K, *rest)`` -> ``(out_g * prod(K), in_channels, *rest)`` (elements grouped per channel)."""
        g, n = self.groups, self._n
        out_g = self.out_channels // g
        rest = t.shape[2 + n :]
        t = t.reshape(g, out_g, t.shape[1], *self.kernel_size, *rest)
        perm = [1, *range(3, 3 + n), 0, 2, *range(3 + n, t.ndim)]
        return t.permute(perm).reshape(out_g * math.prod(self.kernel_size), self.in_channels, *rest)

    def _from_channel_major(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_to_channel_major`."""
        g, n = self.groups, self._n
        out_g, in_g = self.out_channels // g, self.in_channels // g
        rest = t.shape[2:]
        t = t.reshape(out_g, *self.kernel_size, g, in_g, *rest)
        perm = [1 + n, 0, 2 + n, *range(1, 1 + n), *range(3 + n, t.ndim)]
        return t.permute(perm).reshape(self.out_channels, in_g, *self.kernel_size, *rest).contiguous()

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output size for a spatial input size (nn.Conv's formula)."""
        out = []
        for size, (lo, hi), d, kk, s in zip(input_shape, self._pad, self.dilation, self.kernel_size, self.stride):
            out.append((size + lo + hi - d * (kk - 1) - 1) // s + 1)
        return tuple(out)

    def _check_input(self, x: object) -> torch.Tensor:
        x = check_tensor("x", x, finite=False, allow_empty=True)
        n = self._n
        if x.ndim != n + 2:
            raise ValueError(
                f"{type(self).__name__} expects x of shape (batch, channels, {_DIM_NAMES[n]})"
                f" ({n + 2}-D), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x has {x.shape[1]} channels (shape {tuple(x.shape)}) but the layer expects in_channels="
                f"{self.in_channels}"
            )
        if x.dtype != self.coef.dtype or x.device != self.coef.device:
            raise TypeError(f"x is {x.dtype} on {x.device} but the layer's weights are {self.coef.dtype} on "
                            f"{self.coef.device}; cast one with .to()")
        spatial = x.shape[2:]
        for i, (size, (lo, hi), d, kk) in enumerate(zip(spatial, self._pad, self.dilation, self.kernel_size)):
            span = d * (kk - 1) + 1
            if size + lo + hi < span:
                raise ValueError(
                    f"kernel (size {kk}, dilation {d}, span {span}) is larger than the padded input along spatial dim "
                    f"{i} ({size} + padding {lo + hi} = {size + lo + hi}) for x of shape {tuple(x.shape)}"
                )
        if self.padding_mode == "reflect":
            for i, (size, (lo, hi)) in enumerate(zip(spatial, self._pad)):
                if max(lo, hi) >= size:
                    raise ValueError(
                        f"padding_mode='reflect' needs padding < input size, got padding {max(lo, hi)} for size {size} "
                        f"along spatial dim {i}"
                    )
        return x

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``x`` the way the layer does before evaluating any element function."""
        pads = [v for lo_hi in reversed(self._pad) for v in lo_hi]
        if not any(pads):
            return x
        if self.padding_mode == "zeros":
            return F.pad(x, pads)
        return F.pad(x, pads, mode=self.padding_mode)

    # ------------------------------------------------------------------ basis
    def _uniform_spacing(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(t_0, h)`` per channel when every channel's grid is uniform, else ``None``."""
        return self._grid_info()[0]

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_grid_memo_store", None)  # derived values (and a weak reference): rebuilt on first use
        return state

    def _grid_memo(self) -> dict:
        """Values derived from the grid alone, kept until the grid changes (a new tensor, an in-place change such
        as ``update_grid`` or ``load_state_dict``, or an edit through ``.data``: see
        :func:`kanlens.splines.value_stamp`)."""
        g = self.grid
        memo = self.__dict__.get("_grid_memo_store")
        # a weak reference, not the address: a new grid tensor may reuse a freed one's memory and version number
        if memo is None or memo[0]() is not g or not splines.value_unchanged(g, memo[1]):
            memo = (weakref.ref(g), splines.value_stamp(g), {})
            self.__dict__["_grid_memo_store"] = memo
        return memo[2]

    def _grid_info(self) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, float, float]:
        """``(spacing, lo, hi)``: :meth:`_uniform_spacing`'s result and the range ``[lo, hi]`` inside every channel's
        grid (``lo`` = largest first inner knot, ``hi`` = smallest last one).

        Memoised (:meth:`_grid_memo`): the uniformity test costs ~10 small ops and a sync per forward otherwise.
        """
        memo = self._grid_memo()
        if "info" in memo:
            return memo["info"]
        g = self.grid
        with torch.no_grad():
            d = g[:, 1:] - g[:, :-1]
            h = d[:, :1]
            spacing = None
            if bool(((d - h).abs() <= 1e-4 * h.abs()).all()):
                spacing = g[:, 0].clone(), (g[:, -1] - g[:, 0]) / (g.shape[1] - 1)
            lo, hi = g[:, self.k].max().item(), g[:, -self.k - 1].min().item()
        memo["info"] = (spacing, lo, hi)
        return memo["info"]

    def basis(self, x: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
        """B-spline bases of ``x`` on each channel's grid, inserted as a new axis right after ``channel_dim``.

        Shapes:
            x: ``(..., C, ...)`` with ``C`` at ``channel_dim`` -> same with an axis of size ``G + k`` after it.
        """
        cd = channel_dim % x.ndim
        spacing = self._uniform_spacing()
        if spacing is not None:
            t0, h = spacing
            view = [1] * x.ndim
            view[cd] = -1
            t = (x - t0.view(view)) / h.view(view)
            return cardinal_basis(t, self.num_basis, self.k, dim=cd + 1)
        xl = x.movedim(cd, -1)
        return splines.b_spline_basis(xl, self.grid, self.k).movedim(-2, cd).movedim(-1, cd + 1)

    # ------------------------------------------------------------------ weights and forward
    def conv_weight(self) -> torch.Tensor:
        """Stacked weights of the fused convolution, ``(out, in_g * (1 + G + k), *K)``.

        Channel ``c * (1 + G + k)`` of the feature map is ``b(x_c)``, the next ``G + k`` are ``x_c``'s bases.
        """
        return self._fused_weight(False)[0]

    def _fused_weight(self, drop_last: bool, unit: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight, bias)`` of the fused convolution; with ``drop_last``, for features without the last basis.

        Inside the grid the bases sum to one, ``B_last = 1 - sum_{j < last} B_j``, so
        ``sum_j w_j B_j = sum_{j < last} (w_j - w_last) B_j + w_last``: the last basis channel of every input
        channel is folded into the other weights and into the bias (every output sums ``w_last`` over its whole
        window, padded pixels included). ``unit`` multiplies the spline weights, for features that hold
        ``B_j / unit`` (the closed-form expansion leaves out the ``1 / k!``).
        ``weight``: ``(out, in_g * (1 + G + k - drop_last), *K)``.
        """
        base = (self.scale_base * self.mask).unsqueeze(-1)
        sp = self.coef * (self.scale_sp * self.mask).unsqueeze(-1)  # (out, in_g, *K, nb)
        bias = self.bias
        if drop_last:
            last = sp[..., -1:]
            sp = sp[..., :-1] - last
            folded = last.flatten(1).sum(1)
            bias = folded if bias is None else bias + folded
        if unit != 1.0:
            sp = sp * unit
        w = torch.cat([base, sp], dim=-1).movedim(-1, 2)  # (out, in_g, nb1, *K)
        return w.reshape(self.out_channels, -1, *self.kernel_size), bias

    def _inside_grid(self, xp: torch.Tensor, with_zero: bool = False) -> bool:
        """Every evaluated input value (``xp``, and 0 with ``with_zero``) lies inside every channel's grid range,
        where the bases sum to one.

        Only checked on CPU: the answer must reach the host, and on an accelerator that synchronisation costs
        more than the folded basis channel saves, so there the unfolded (equally exact) path always runs.
        """
        if xp.numel() == 0 or xp.device.type != "cpu":
            return False
        _, lo, hi = self._grid_info()
        if with_zero and not lo <= 0.0 <= hi:
            return False
        mn, mx = torch.aminmax(xp)
        return bool(mn >= lo) and bool(mx <= hi)

    def features(self, xp: torch.Tensor) -> torch.Tensor:
        """Per-pixel expansion ``[b(x), B_0(x), ..., B_{G+k-1}(x)]`` of a (padded) input.

        Channel ``c * (1 + G + k)`` is ``b(x_c)``, the next ``G + k`` are ``x_c``'s bases, so that
        ``F.conv2d(layer.features(layer.pad_input(x)), layer.conv_weight(), layer.bias)`` (``conv1d`` for
        :class:`KANConv1d`, with the layer's stride, dilation and groups) equals ``layer(x)``.

        Shapes:
            xp: ``(batch, C, *spatial)`` -> ``(batch, C * (1 + G + k), *spatial)``.
        """
        feats, unit = self._features(xp)
        if unit == 1.0:
            return feats
        scale = torch.full((1 + self.num_basis,), unit, dtype=feats.dtype, device=feats.device)
        scale[0] = 1.0
        view = feats.view(feats.shape[0], self.in_channels, 1 + self.num_basis, *feats.shape[2:])
        return (view * scale.view(-1, *([1] * self._n))).flatten(1, 2)

    def _features(self, xp: torch.Tensor, drop_last: bool = False) -> tuple[torch.Tensor, float]:
        """``(features, unit)``: :meth:`features` with the bases divided by ``unit``; with ``drop_last`` (uniform
        grids only) without each channel's last basis.

        On uniform grids (``unit = 1 / k!``) the result is stored channels-last (see :class:`_UniformFeatures`).
        """
        spacing = self._uniform_spacing()
        if spacing is not None:
            nb = self.num_basis - int(drop_last)
            feats = _UniformFeatures.apply(xp, *spacing, nb, self.k, self.base_fun_name)
            return feats, 1.0 / math.factorial(self.k)
        assert not drop_last
        bases = self.basis(xp, channel_dim=1)  # (B, C, nb, *S)
        return torch.cat([self.base_fun(xp).unsqueeze(2), bases], dim=2).flatten(1, 2), 1.0

    def _conv(
        self,
        feats: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        padding: Sequence[int] | None = None,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The fused convolution of features (see :meth:`features`), zero-padded by ``padding`` (default none).
        ``source``: the values the features were expanded from (lets a depthwise 1x1 layer take its GEMM path).

        Shapes:
            feats: ``(batch, C * (1 + nb), *S)`` -> ``(batch, out, *out_spatial)`` in feats' memory layout.
        """
        n = self._n
        padding = tuple(padding) if padding is not None else (0,) * n
        tail = (1,) * n
        if (
            self.groups == self.in_channels == self.out_channels
            and not any(padding)
            and all(kk == 1 and s == 1 for kk, s in zip(self.kernel_size, self.stride))
        ):
            # depthwise 1x1 (a learned per-channel activation): a weighted sum over each channel's own features
            # is ~4x faster than a grouped convolution with 1 + nb channels per group
            c = self.in_channels
            w = weight.view(c, -1)  # (C, nb1)
            pixel_major = feats.movedim(1, -1)
            # channels-last features: one GEMM with a block-diagonal weight; only for finite inputs, since its
            # zero blocks would spread a NaN or Inf (0 * inf) to the pixel's other channels (a check that reads
            # the input back: CPU only, elsewhere the per-channel sum runs)
            if (pixel_major.is_contiguous() and source is not None and source.device.type == "cpu"
                    and bool(torch.isfinite(source).all())):
                block = (w.unsqueeze(-1) * torch.eye(c, dtype=w.dtype, device=w.device).unsqueeze(1)).flatten(0, 1)
                out = (pixel_major.reshape(-1, w.numel()) @ block).view(*pixel_major.shape[:-1], c).movedim(-1, 1)
            else:
                per = feats.view(feats.shape[0], c, -1, *feats.shape[2:])  # (B, C, nb1, *S)
                out = (per * w.view(1, c, -1, *tail)).sum(2)
            return out if bias is None else out + bias.view(1, -1, *tail)
        if n == 1:  # as a 2-D convolution over a height-1 image: one code path, channels-last kernels included
            out = F.conv2d(feats.unsqueeze(2), weight.unsqueeze(2), bias, (1, *self.stride), (0, *padding),
                           (1, *self.dilation), self.groups)
            return out.squeeze(2)
        return F.conv2d(feats, weight, bias, self.stride, padding, self.dilation, self.groups)

    def _border(self, weight: torch.Tensor, drop: bool, spatial: Sequence[int]) -> torch.Tensor:
        """What the zero-padded pixels add to every output (the features of ``x = 0`` seen through the taps that
        land in the padding).

        ``border[o, p] = sum_u (sum_c weight[o, c, u] f0[c]) * outside[u, p]``, where ``f0`` are the features of
        ``x = 0`` and ``outside[u, p]`` says whether tap ``u`` of output ``p`` reads a padded pixel. Both depend
        on the grid only and are memoised per input size; the rest is a GEMM of ``(out, prod(K))`` by
        ``(prod(K), prod(out_spatial))``.

        Shapes:
            weight: ``(out, Cf / groups, *K)`` -> ``(1, out, *out_spatial)``.
        """
        cache = self._grid_memo().setdefault("border", {})
        pad = self._pad
        key = (drop, tuple(spatial), pad, tuple(self.stride), tuple(self.dilation))
        if key not in cache:
            with torch.no_grad():
                zero = self.grid.new_zeros(1, self.in_channels, *([1] * self._n))
                f0 = self._features(zero, drop)[0].reshape(-1)  # (Cf,)
                inside = torch.ones(1, 1, dtype=f0.dtype, device=f0.device)
                for size, (lo, _), kk, s, d, o in zip(spatial, pad, self.kernel_size, self.stride,
                                                     self.dilation, self.output_shape(spatial)):
                    pos = torch.arange(o, device=f0.device)[None] * s + torch.arange(kk, device=f0.device)[:, None] * d
                    inside = torch.kron(inside, ((pos >= lo) & (pos < lo + size)).to(f0.dtype))  # (K_d, O_d)
            if len(cache) >= 8:  # many input sizes: start over
                cache.clear()
            cache[key] = (f0, 1.0 - inside)  # (Cf,), (prod K, prod O)
        f0, outside = cache[key]
        g = self.groups
        w = weight.reshape(g, self.out_channels // g, -1, outside.shape[0])  # (g, O_g, Cf_g, prod K)
        taps = torch.einsum("gock,gc->gok", w, f0.view(g, -1)).reshape(self.out_channels, -1)
        return (taps @ outside).view(1, self.out_channels, *self.output_shape(spatial))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path: expand pixels into basis channels, one convolution.

        With zero padding (the same amount on both sides) only the input's own pixels are expanded: the
        convolution pads the features with zeros and :meth:`_border` adds what the padded pixels' features
        contribute (on 14 x 14 images with padding 1 that expands 196 pixels instead of 256).

        Shapes:
            x: ``(batch, in_channels, *spatial)`` -> ``(batch, out_channels, *out_spatial)``, contiguous.
        """
        x = self._check_input(x)
        if self.hook_elements.has_hooks():
            elements = self.hook_elements(self.forward_elements(x))
            out = elements.flatten(1 + 1, 2 + self._n).sum(2)
            if self.bias is not None:
                out = out + self.bias.view(1, -1, *([1] * self._n))
            return out
        pad = self._pad
        pads = [lo for lo, _ in pad]
        ring = self.padding_mode == "zeros" and any(pads) and all(lo == hi for lo, hi in pad)
        xs = x if ring else self.pad_input(x)
        drop = self._uniform_spacing() is not None and self._inside_grid(xs, with_zero=ring)
        feats, unit = self._features(xs, drop)
        weight, bias = self._fused_weight(drop, unit)
        if not ring:
            return self._conv(feats, weight, bias, source=xs).contiguous()
        extra = self._border(weight, drop, x.shape[2:])
        if bias is not None:
            extra = extra + bias.view(1, -1, *([1] * self._n))
        # (1, out, *S) first: the sum comes out contiguous in one pass, whatever the convolution's layout
        return extra + self._conv(feats, weight, None, pads)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Input values seen by each kernel offset at each output position (after padding).

        Shapes:
            x: ``(batch, C, *spatial)`` -> ``(batch, C, *K, *out_spatial)``.
        """
        p = self.pad_input(x)
        n = self._n
        for d in range(n):
            span = self.dilation[d] * (self.kernel_size[d] - 1) + 1
            p = p.unfold(2 + d, span, self.stride[d])[..., :: self.dilation[d]]
        # now (B, C, *O, *K)
        perm = [0, 1, *range(2 + n, 2 + 2 * n), *range(2, 2 + n)]
        return p.permute(perm)

    def forward_elements(self, x: torch.Tensor) -> torch.Tensor:
        """Per-element activations ``mask * phi_ocu(x)`` at every output position (no bias).

        Summing over the input-channel and kernel axes gives ``forward(x) - bias``. Memory grows as
        ``batch * out * in_g * prod(K) * prod(out_spatial)``: use small batches.

        Shapes:
            x: ``(batch, in_channels, *spatial)`` -> ``(batch, out_channels, in_channels // groups, *K, *out_spatial)``.
        """
        x = self._check_input(x)
        n, g = self._n, self.groups
        out_g, in_g = self.out_channels // g, self.in_channels // g
        p = self.patches(x)  # (B, C, *K, *O)
        b = p.shape[0]
        kdims, odims = p.shape[2 : 2 + n], p.shape[2 + n :]
        bases = self.basis(p, channel_dim=1)  # (B, C, nb, *K, *O)
        bases = bases.reshape(b, g, in_g, self.num_basis, *kdims, *odims)
        coef = self.element_coef.reshape(g, out_g, in_g, *self.kernel_size, self.num_basis)
        ks, os_ = _KAX[:n], _AXES[:n]
        spline = torch.einsum(f"bgin{ks}{os_},goi{ks}n->bgoi{ks}{os_}", bases, coef)
        spline = spline.reshape(b, self.out_channels, in_g, *kdims, *odims)
        base = self.base_fun(p).reshape(b, g, 1, in_g, *kdims, *odims)
        base = base.expand(b, g, out_g, in_g, *kdims, *odims).reshape(b, self.out_channels, in_g, *kdims, *odims)
        tail = (1,) * n
        sb = self.scale_base.view(1, *self.scale_base.shape, *tail)
        ss = self.scale_sp.view(1, *self.scale_sp.shape, *tail)
        mask = self.mask.view(1, *self.mask.shape, *tail)
        return (sb * base + ss * spline) * mask

    def channel_index(self) -> torch.Tensor:
        """Input channel read by each ``(out_channel, in_channel_of_group)`` pair, shape ``(out, in_g)``."""
        out_g, in_g = self.out_channels // self.groups, self.in_channels // self.groups
        o = torch.arange(self.out_channels, device=self.grid.device)[:, None]
        return (o // out_g) * in_g + torch.arange(in_g, device=self.grid.device)

    def element_functions(self, xs: torch.Tensor) -> torch.Tensor:
        """Every element function evaluated at sample values ``xs`` of its input channel (for plots and fits).

        Shapes:
            xs: ``(m,)`` (shared by all channels) or ``(m, in_channels)`` ->
            ``(m, out_channels, in_channels // groups, *K)`` (masked, no bias).
        """
        xs = check_tensor("xs", xs)
        if xs.ndim == 1:
            xs = xs[:, None].expand(-1, self.in_channels)
        if xs.ndim != 2 or xs.shape[1] != self.in_channels:
            raise ValueError(f"xs must have shape (m,) or (m, {self.in_channels}), got {tuple(xs.shape)}")
        ci = self.channel_index()
        ks = _KAX[: self._n]
        bases = self.basis(xs, channel_dim=1)[:, ci]  # (m, out, in_g, nb)
        spline = torch.einsum(f"moin,oi{ks}n->moi{ks}", bases, self.element_coef)
        base = self.base_fun(xs)[:, ci].reshape(xs.shape[0], *ci.shape, *([1] * self._n))
        return (self.scale_base * base + self.scale_sp * spline) * self.mask

    # ------------------------------------------------------------------ scores and regularisation
    def element_magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """Mean ``|phi|`` of each element over the batch and all output positions (the KAN paper's edge score).

        Shapes:
            x: ``(batch, in_channels, *spatial)`` -> ``(out_channels, in_channels // groups, *K)``.
        """
        return _mean_over(self.forward_elements(x), self._n)

    def regularization(
        self,
        x: torch.Tensor,
        *,
        lamb_l1: float = 1.0,
        lamb_entropy: float = 2.0,
        lamb_coef: float = 0.0,
        lamb_coefdiff: float = 0.0,
    ) -> torch.Tensor:
        """The KANLayer sparsity penalty on this layer's elements (see :mod:`kanlens.regularization`).

        Each output channel is a node whose inputs are its ``in_g * prod(K)`` kernel elements.
        """
        from ..regularization import coef_penalty, l1_entropy

        mag = self.element_magnitude(x).flatten(1)
        reg = l1_entropy(mag, lamb_l1, lamb_entropy)
        return reg + coef_penalty(self.coef.flatten(1, -2), lamb_coef, lamb_coefdiff)

    # ------------------------------------------------------------------ grids
    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, *, grid_eps: float | None = None, max_samples: int = 4096) -> None:
        """Fit each channel's grid to the (padded) pixel values of ``x``, keeping every element function.

        ``grid_eps=1`` (the conv default) spreads knots uniformly over ``[min, max]`` of the pixels, which keeps
        the closed-form fast basis; image pixels are too spiky (e.g. most MNIST pixels are exactly 0) for
        percentile knots.

        Shapes:
            x: ``(batch, in_channels, *spatial)``.
        """
        x = self._check_input(x)
        eps = self.grid_eps if grid_eps is None else grid_eps
        samples = self.pad_input(x.detach()).movedim(1, -1).reshape(-1, self.in_channels)
        samples = _quantile_subsample(samples, max_samples)
        coef = self._to_channel_major(self.element_coef)  # (E, C, nb)
        new_grid = splines.grid_from_samples(samples, self.num, self.k, grid_eps=eps)
        lo, hi = new_grid[:, self.k], new_grid[:, -self.k - 1]
        t = torch.linspace(0, 1, 8 * self.num_basis + 1, dtype=x.dtype, device=x.device)[:, None]
        xs = torch.cat([samples, lo + (hi - lo) * t], dim=0)
        ys = splines.coef2curve(xs, self.grid, coef, self.k)
        self.coef.data = self._stored_coef(self._from_channel_major(splines.curve2coef(xs, ys, new_grid, self.k)))
        self.grid.copy_(new_grid)

    @torch.no_grad()
    def refine(self, new_grid: int, x: torch.Tensor | None = None) -> _KANConvNd:
        """A copy with ``new_grid`` intervals per channel computing the same functions (pykan's grid extension).

        Without ``x`` the new grid is uniform on the current range (a finer uniform grid whose knots contain the
        old ones reproduces the old splines exactly); with ``x`` it follows the padded pixels (``grid_eps`` rule).
        """
        _check_int("new_grid", new_grid, 1)
        lo, hi = self.grid[:, self.k], self.grid[:, -self.k - 1]
        samples = None
        if x is not None:
            x = self._check_input(x)
            samples = self.pad_input(x.detach()).movedim(1, -1).reshape(-1, self.in_channels)
            samples = _quantile_subsample(samples, 4096)
            grid = splines.grid_from_samples(samples, new_grid, self.k, grid_eps=self.grid_eps)
        else:
            grid = splines.uniform_grid(new_grid, self.k, self.in_channels, torch.stack([lo, hi], 1))
        grid = grid.to(self.grid)
        t = torch.linspace(0, 1, 8 * (new_grid + self.k) + 1, dtype=grid.dtype, device=grid.device)[:, None]
        xs = lo + (hi - lo) * t  # preserve the functions over the current grid range (and on the samples)
        if samples is not None:
            xs = torch.cat([xs, samples.to(xs)], 0)
        ys = splines.coef2curve(xs, self.grid, self._to_channel_major(self.element_coef), self.k)
        layer = copy.deepcopy(self)
        layer.num = new_grid
        layer.grid = grid
        layer.coef = nn.Parameter(self._stored_coef(self._from_channel_major(splines.curve2coef(xs, ys, grid, self.k))))
        return layer

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        if self.shared_shape:
            s += ", shared_shape=True"
        return s + f", grid={self.num}, k={self.k}, base_fun={self.base_fun_name}"


def _mean_over(el: torch.Tensor, n: int) -> torch.Tensor:
    """Mean ``|el|`` over batch and the trailing ``n`` output-position axes."""
    return el.abs().mean(dim=(0, *range(el.ndim - n, el.ndim)))


def _quantile_subsample(samples: torch.Tensor, m: int) -> torch.Tensor:
    """At most ``m`` rows: evenly spaced order statistics per column (keeps min and max of every channel)."""
    if samples.shape[0] <= m:
        return samples
    srt = torch.sort(samples, dim=0).values
    idx = torch.linspace(0, srt.shape[0] - 1, m, device=samples.device).round().long()
    return srt[idx]


class KANConv2d(_KANConvNd):
    """2-D KAN convolution: ``nn.Conv2d``'s arguments and output shapes, a learnable function per kernel weight.

    ``out[b, o, y, x] = bias[o] + sum_{c, u, v} phi_{o,c,u,v}(xpad[b, g(o) * in_g + c, y*s + u*d, x*s + v*d])`` with
    ``phi = scale_base * b + scale_sp * spline`` (as in :class:`~kanlens.layers.spline.KANLayer`). Parameters per
    ``(in, out)`` channel pair: ``K^2 * (G + k + 2)``; with ``shared_shape=True``, ``2 K^2 + G + k``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode: as in
            ``nn.Conv2d`` (``padding`` may be ``'valid'`` or ``'same'``). Padded pixels are evaluated like any
            other pixel (``phi(0) != 0`` in general), so padding changes the result the same way as in the naive
            definition.
        grid: number of grid intervals ``G``.
        k: spline order.
        grid_range: initial range covered by every channel's grid.
        noise_scale, scale_base_mu, scale_base_sigma, scale_sp, base_fun: initialisation and base function, as in
            ``KANLayer`` (scales are divided by ``sqrt(in_channels // groups * K * K)``).
        grid_eps: grid update rule (1 = uniform over the data range, the conv default; 0 = percentiles).
        shared_shape: one spline per ``(out, in)`` channel pair, scaled per kernel element:
            ``phi_{o,c,u,v} = scale_base_{o,c,u,v} * b + scale_sp_{o,c,u,v} * spline_{o,c}``. Every element still
            has its own function (a mix of ``b`` and the pair's spline), for ``2 + (G + k) / K^2`` parameters
            instead of ``G + k + 2``; ``coef`` then has shape ``(out, in_g, 1, 1, G + k)``
            (:attr:`element_coef` is the per-element view). The saving buys channels: on MNIST at ~5.8K
            parameters this layout is the more accurate one (see ``docs/benchmarks.md``).
        generator: local random generator for the initialisation (global RNGs are never touched).

    Shapes:
        ``forward``: ``(batch, in_channels, H, W) -> (batch, out_channels, H_out, W_out)`` with nn.Conv2d's sizes;
        ``forward_elements``: ``-> (batch, out_channels, in_channels // groups, Kh, Kw, H_out, W_out)``.

    Example:
        >>> conv = KANConv2d(1, 8, 3, padding=1, grid=5, k=3)
        >>> conv(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 8, 28, 28])
    """

    _n = 2


class KANConv1d(_KANConvNd):
    """1-D KAN convolution with ``nn.Conv1d``'s arguments; see :class:`KANConv2d`.

    Shapes:
        ``forward``: ``(batch, in_channels, L) -> (batch, out_channels, L_out)``.

    Example:
        >>> KANConv1d(2, 4, 5, padding=2)(torch.rand(3, 2, 50)).shape
        torch.Size([3, 4, 50])
    """

    _n = 1
