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

import math

import torch

__all__ = ["CHUNK", "FAR", "cardinal_basis", "cardinal_terms", "expand_rows"]

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


def _pow_(buf: torch.Tensor, power: int) -> torch.Tensor:
    """In place ``buf ** power`` for ``buf >= 0``, with ``0 ** 0 = 0`` (the derivative of a linear B-spline)."""
    return buf.pow_(power) if power > 0 else buf.gt_(0.0)




def expand_rows(
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
    terms = cardinal_terms(k)
    rest = terms[1:]
    derivative = grad is not None
    power = k - 1 if derivative else k
    # one pass on accelerators (every chunk is a kernel launch there)
    step = max(1, n_rows if t.device.type != "cpu" else CHUNK // max(1, width))
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

