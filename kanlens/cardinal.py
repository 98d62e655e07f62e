"""Cardinal B-splines: every B-spline basis of a *uniform* grid in closed form (pure tensor math).

On a uniform grid every basis is the same cardinal B-spline shifted by one knot, so the whole basis comes from the
symmetric truncated-power formula ``beta_k(y) = 1/k! * sum_i (-1)^i C(k+1, i) ((k+1)/2 - i - |y|)_+^k`` in a few
elementwise passes, about 5x cheaper than the Cox-de Boor recursion of :func:`kanlens.splines.b_spline_basis`
(which it equals to float rounding on the same grid).

Functions:
    cardinal_basis: all bases of positions ``t`` in knot units (autograd-friendly, for inspection and tests).
    cardinal_terms: the nonzero terms of the truncated-power formula.
    expand_rows: the cache-blocked kernel behind the convolution's fast path (forward values or the contracted
        derivative, ``k!`` times the bases, written into a caller-owned buffer).

Like :mod:`kanlens.splines` this module knows nothing about layers: :mod:`kanlens.layers.conv_features` builds
the convolution's feature expansion on top of it.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["CHUNK", "FAR", "cardinal_basis", "cardinal_terms", "contract_rows", "expand_rows"]

FAR = 1e6  # a knot coordinate far outside any grid
CHUNK = 1 << 17  # elements per pixel chunk of the basis expansion: two 512 KB scratch buffers that stay in L2


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


def cardinal_terms(k: int) -> list[tuple[float, float]]:
    """``(shift_i, (-1)^i C(k+1, i))`` of the symmetric truncated-power formula, nonzero shifts only."""
    half = (k + 1) / 2
    return [(half - i, (-1) ** i * math.comb(k + 1, i)) for i in range(k + 2) if half - i > 0]


@functools.lru_cache(maxsize=32)
def _spread(c: int, nb1: int, k: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spread, gather)`` of :func:`expand_rows` for ``c`` channels of ``nb1`` slots (built once per signature).

    ``spread`` ``(C + 1, C * nb1)``: ``t @ spread`` puts each channel's knot coordinate into its slots minus the
    slot's centre (the last row of ``t`` is ones); ``gather`` ``(C * nb1, C)``: sums each channel's basis slots
    (not its base-function slot)."""
    centres = (torch.arange(nb1, device=device, dtype=dtype) - 1 + (k + 1) / 2).repeat(c)
    eye = torch.eye(c, device=device, dtype=dtype).repeat_interleave(nb1, dim=1)
    spread = torch.cat([eye, -centres[None]])
    gather = eye.T.clone()
    gather[::nb1] = 0.0
    return spread, gather


def _power(src: torch.Tensor, power: int, out: torch.Tensor) -> torch.Tensor:
    """``out = src ** power`` for ``src >= 0`` by repeated products (``pow`` is several times slower), with
    ``0 ** 0 = 0`` (the derivative of a linear B-spline)."""
    if power == 0:
        return torch.gt(src, 0.0, out=out) if out.dtype == torch.bool else out.copy_(src).gt_(0.0)
    if power == 1:
        return out.copy_(src)
    torch.mul(src, src, out=out)
    for _ in range(power - 2):
        out.mul_(src)
    return out


def _term_power(w: torch.Tensor, power: int, scratch: torch.Tensor | None) -> torch.Tensor:
    """``w ** power`` for ``w >= 0`` (``0 ** 0 = 0``): ``w`` itself for power 1, else written into ``scratch``."""
    if power == 1:
        return w
    assert scratch is not None
    return _power(w, power, scratch)


def _truncated_sum(
    y: torch.Tensor,
    terms: list[tuple[float, float]],
    power: int,
    dest: torch.Tensor,
    tmp: torch.Tensor,
    tmp2: torch.Tensor | None,
    lower: torch.Tensor | None = None,
) -> torch.Tensor:
    """``dest = sum_i coeff_i * w_i ** power`` with ``w_i = (shift_i - |y|)_+`` over ``terms``, overwriting ``y``
    and the scratch buffers; with ``lower`` (``power >= 1``) also ``lower = sum_i coeff_i * w_i ** (power - 1)``
    from the same passes (the derivative's magnitude). Shifts decrease by one from term to term, so each ``w`` is
    the previous one minus one, clamped."""
    s0 = terms[0][0]
    # (shift_0 - |y|)_+; a 0-dim tensor as the minuend: one pass instead of neg_ and add_
    u = torch.sub(y.new_full((), s0), y.abs_(), out=y).clamp_min_(0.0)
    if lower is None:
        _power(u, power, dest)
    else:
        torch.mul(_power(u, power - 1, lower), u, out=dest)
    rest = terms[1:]
    for i, (shift, coeff) in enumerate(rest):
        if i == len(rest) - 1:  # last term: reuse the buffer, (u - d)_+ = (shift - |y|)_+
            w, scratch = u.sub_(s0 - shift).clamp_min_(0.0), tmp
        else:
            w, scratch = torch.sub(u, s0 - shift, out=tmp).clamp_min_(0.0), tmp2
        if lower is not None:
            q = _term_power(w, power - 1, scratch)
            dest.addcmul_(q, w, value=coeff)
            lower.add_(q, alpha=coeff)
        elif power == 0:
            dest.add_(w.gt_(0.0), alpha=coeff)
        elif power == 1:
            dest.add_(w, alpha=coeff)
        else:
            dest.addcmul_(_term_power(w, power - 1, scratch), w, value=coeff)
    return dest


def expand_rows(
    t: torch.Tensor,
    nb1: int,
    k: int,
    out: torch.Tensor | None = None,
    grad: torch.Tensor | None = None,
    slot0: torch.Tensor | None = None,
    slope: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unnormalised cardinal B-splines of every row of ``t``, or their derivative contracted with ``grad``.

    ``t`` holds each pixel's knot coordinates ``t_c = (x_c - t0_c) / h_c`` and a last column of ones. Slot
    ``s >= 1`` of channel ``c`` gets ``k! * beta_k(t_c - (s - 1) - (k + 1) / 2)``, i.e. ``k!`` times basis
    ``s - 1``; slot 0 gets ``slot0`` (the base function, ``(N, C)``; without ``slot0`` its values are
    meaningless). In the backward pass ``slot0`` receives the gradient's slot-0 values instead.
    One small GEMM, ``y = t @ [spread; -centres]``, puts each pixel's values into their slots minus the slot's
    centre, so every later pass runs over contiguous, cache-sized chunks (the ``k!`` is folded into the weights);
    powers are repeated products and every pass is in place (about ten passes per chunk).

    Forward (``grad`` None): writes into ``out``, ``(N, C * nb1)``, and returns it; with ``slope`` (same shape)
    also writes there, from the same passes, each slot's derivative ``d/dt_c (k! beta)`` divided by ``-k`` (slot
    0 meaningless), for :func:`contract_rows` in the backward pass. Backward (``grad``): returns ``(N, C)``,
    ``sum_s grad[:, c * nb1 + s] * d/dt_c (k! beta)`` over slots ``s >= 1``.

    Shapes:
        t: ``(N, C + 1)``; out, grad, slope: ``(N, C * nb1)``.
    """
    n_rows, c = t.shape[0], t.shape[1] - 1
    width = c * nb1
    spread, gather = _spread(c, nb1, k, t.dtype, t.device)
    terms = cardinal_terms(k)
    derivative = grad is not None
    power = k - 1 if derivative else k
    step = _rows_per_chunk(n_rows, width, t.device)
    rows = min(step, n_rows)
    y_buf, tmp_buf = t.new_empty(rows, width), t.new_empty(rows, width)
    tmp2_buf = t.new_empty(rows, width) if len(terms) > 2 and power > 2 else None
    sign_buf = t.new_empty(rows, width) if derivative or slope is not None else None
    if derivative:
        dest_buf = t.new_empty(rows, width)
        result = t.new_empty(n_rows, c)
    else:
        assert out is not None
        result = out
        lower_buf = t.new_empty(rows, width) if slope is not None else None
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        m = r1 - r0
        y = torch.mm(t[r0:r1], spread, out=y_buf[:m])  # y = t - centre
        tmp2 = None if tmp2_buf is None else tmp2_buf[:m]
        if derivative:
            sign = torch.sign(y, out=sign_buf[:m]).mul_(grad[r0:r1])
            dest = _truncated_sum(y, terms, power, dest_buf[:m], tmp_buf[:m], tmp2)
            torch.mm(dest.mul_(sign), gather, out=result[r0:r1])
            if slot0 is not None:  # the base function's gradient, read while the chunk is in cache
                slot0[r0:r1] = grad[r0:r1].view(m, c, nb1)[:, :, 0]
            continue
        dest = out[r0:r1]
        if slope is None:
            _truncated_sum(y, terms, power, dest, tmp_buf[:m], tmp2)
        else:  # the slopes from the same passes, written once: -k sign(y) (s - |y|)_+^(k-1) without the -k
            sign = torch.sign(y, out=sign_buf[:m])
            lower = lower_buf[:m]
            _truncated_sum(y, terms, power, dest, tmp_buf[:m], tmp2, lower=lower)
            torch.mul(sign, lower, out=slope[r0:r1])
        if slot0 is not None:  # the base function, written while the chunk is in cache
            dest.view(m, c, nb1)[:, :, 0] = slot0[r0:r1]
    if derivative:
        result.mul_(-k)  # d/dy (s - |y|)_+^k = -k sign(y) (s - |y|)_+^(k-1)
    return result


def _rows_per_chunk(n_rows: int, width: int, device: torch.device) -> int:
    """Rows per pass of :func:`expand_rows` / :func:`contract_rows`: cache-sized chunks on the CPU, one pass on
    accelerators (every chunk is a kernel launch there)."""
    return max(1, n_rows if device.type != "cpu" else CHUNK // max(1, width))


def contract_rows(
    slope: torch.Tensor, grad: torch.Tensor, nb1: int, k: int, slot0: torch.Tensor | None = None
) -> torch.Tensor:
    """``sum_{s >= 1} grad[:, c * nb1 + s] * d/dt_c (k! beta)`` per channel from the ``slope`` that
    :func:`expand_rows` saved: its backward in two passes per chunk instead of recomputing the bases.

    ``slot0`` receives the gradient's slot-0 values (the base function's gradient), as in :func:`expand_rows`.

    Shapes:
        slope, grad: ``(N, C * nb1)`` -> ``(N, C)``.
    """
    n_rows, width = slope.shape
    c = width // nb1
    _, gather = _spread(c, nb1, 1, slope.dtype, slope.device)
    step = _rows_per_chunk(n_rows, width, slope.device)
    scratch = slope.new_empty(min(step, n_rows), width)
    result = slope.new_empty(n_rows, c)
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        g = grad[r0:r1]
        torch.mm(torch.mul(slope[r0:r1], g, out=scratch[: r1 - r0]), gather, out=result[r0:r1])
        if slot0 is not None:  # read while the chunk is in cache
            slot0[r0:r1] = g.view(r1 - r0, c, nb1)[:, :, 0]
    return result.mul_(-k)  # d/dy (s - |y|)_+^k = -k sign(y) (s - |y|)_+^(k-1)
