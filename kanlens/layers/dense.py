"""The dense spline-layer kernel behind :meth:`kanlens.KANLayer.forward`: one GEMM over the concatenated B-spline
and base-function features, with a hand-written backward.

A layer's output is ``y = b(x) @ Wb^T + basis(x) @ Ws^T``. Here both feature blocks live in one buffer laid out
``(slot, in, batch)`` (samples innermost): ``nb`` spline slots, then the base function's slot, so the forward is
one ``mm`` and the backward two (weights and, when needed, features). Only the ``k + 1`` nonzero bases of each sample
are evaluated (``(k + 1, in, batch)``, contiguous elementwise passes) and scattered into the buffer; ``k`` rows of
padding around the slots take the bases that fall off the grid's ends, so no index is clamped and nothing is masked
(the first junk row on the right is the base function's: the base is written after the scatter, and the
backward zeroes that row's gradient before it gathers). The nonzero bases come

* on a *uniform* grid (the default, and any grid within a few float roundings of one), from the cardinal
  B-spline's ``k + 1`` pieces as polynomials in the position within the knot interval (no gathers),
* otherwise from the per-interval polynomials of :mod:`kanlens.splines` (one gather of ``(k + 1)^2`` coefficients
  per sample).

Both equal :func:`kanlens.splines.b_spline_basis` to float rounding. Only dtypes in :data:`FUSED_DTYPES` (float32)
take this kernel; float64 keeps the plain autograd composition, bit for bit the arithmetic of earlier releases.
The features of an input that needs no gradient (a network's data, evaluated again at every LBFGS trial) are cached
for the very same tensor until it or the grid change, as :func:`kanlens.splines.b_spline_basis` does. Under
``create_graph`` the backward differentiates the autograd composition (:func:`dense_reference`) instead, so higher
derivatives stay exact.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

from .. import splines

__all__ = ["FUSED_DTYPES", "composition_arithmetic", "dense_forward", "dense_reference", "uniform_knots"]

# Dtypes that take the fused kernel. float64 keeps the plain composition (:func:`dense_reference`), bit for bit the
# arithmetic of earlier releases: float64 is the reproducibility mode, and its LBFGS trajectories (pinned by
# tests/test_trajectory.py) amplify any change of rounding. Edit this set to opt float64 in (or float32 out).
FUSED_DTYPES: set[torch.dtype] = {torch.float32}
_COMPOSITION = contextvars.ContextVar("kanlens_dense_composition", default=False)


@contextlib.contextmanager
def composition_arithmetic() -> Iterator[None]:
    """Inside the block :func:`dense_forward` evaluates the plain composition (:func:`dense_reference`) in every
    dtype: the arithmetic of earlier releases, bit for bit. :meth:`kanlens.KAN.update_grid` uses it, so grids (and
    with them whole fits) come out exactly as before the fused kernel."""
    token = _COMPOSITION.set(True)
    try:
        yield
    finally:
        _COMPOSITION.reset(token)


_UNIFORM_CACHE: dict[int, tuple] = {}  # grid -> ((t0 / h, 1 / h) or None,); see splines.cached_value
_FEATURE_CACHE: dict[int, tuple] = {}  # x (no gradient), grid -> features; see splines.cached_value
_PIECES: dict[tuple, torch.Tensor] = {}  # (k, dtype, device) -> cardinal pieces, see _cardinal_pieces
_ULPS = 8  # a grid is uniform when every knot is within this many roundings (of the grid's largest knot) of one


def uniform_knots(grid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(t0 / h, 1 / h)`` per input (``(in, 1)`` each) when every row of ``grid`` is uniform to a few float
    roundings, else ``None``: the position of ``x`` in knot units is then ``x / h - t0 / h``. Cached per grid.

    Shapes:
        grid: ``(in, M)`` -> ``(in, 1)``, ``(in, 1)``.
    """
    hit = splines.cached_value(_UNIFORM_CACHE, k, grid)
    if hit is not None:
        return hit[0]
    g = grid.detach().double()
    m = g.shape[1]
    h = (g[:, -1:] - g[:, :1]) / (m - 1)  # (in, 1)
    ideal = g[:, :1] + h * torch.arange(m, dtype=g.dtype, device=g.device)
    tol = _ULPS * torch.finfo(grid.dtype).eps * float(g.abs().max().clamp_min(1e-30))
    ok = bool((h > 0).all()) and float((g - ideal).abs().max()) <= tol
    value = ((g[:, :1] / h).to(grid.dtype), (1.0 / h).to(grid.dtype)) if ok else None
    splines.remember_value(_UNIFORM_CACHE, (value,), k, grid)
    return value


def _cardinal_pieces(k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``C[p, r]``: coefficient of ``u^p`` of local basis ``r`` (basis ``s - k + r`` on knot interval ``s``,
    ``u`` the position within it) on a unit-spaced grid, followed by the ``k`` rows of the derivative's
    coefficients. Shape ``(2k + 1, k + 1, 1, 1)``; computed once per ``k`` in float64 (Cox-de Boor, Vandermonde)."""
    key = (k, dtype, device)
    hit = _PIECES.get(key)
    if hit is None:
        unit = torch.arange(-k, k + 2, dtype=torch.float64)[None]  # one interval of knots, k extended on each side
        table = splines.poly_table(unit, k)[0, k]  # interval k: its k + 1 bases all exist; (2k + 1, k + 1)
        hit = _PIECES[key] = table.to(dtype=dtype, device=device).view(2 * k + 1, k + 1, 1, 1)
    return hit


def _horner(coefs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``sum_p coefs[p] * t^p`` (Horner), broadcasting ``coefs[p]`` against ``t``; plain in-place products and sums
    (``addcmul`` with a broadcast operand runs several times slower on CPUs)."""
    out = torch.mul(coefs[-1], t)
    if coefs.shape[0] == 1:
        return out.copy_(coefs[0].expand_as(out))
    for p in range(coefs.shape[0] - 2, -1, -1):
        out.add_(coefs[p])
        if p:
            out.mul_(t)
    return out


def _locate(xt: torch.Tensor, grid: torch.Tensor, k: int):
    """``(s, t, rows)``: knot interval ``s`` of every sample (``M - 1`` outside the grid, NaN included), its local
    coordinate ``t`` (``u`` in ``[0, 1)`` on uniform grids, ``x - knot_s`` otherwise) and, on non-uniform grids, the
    gathered per-interval polynomial rows (``None`` on uniform grids)."""
    m = grid.shape[1]
    uni = uniform_knots(grid, k)
    if uni is None:
        s, t, col = splines.locate(xt, grid, k)
        rows = splines.poly_rows(grid, k).index_select(1, col.view(-1))
        return s, t, rows.view(2 * k + 1, k + 1, *xt.shape)
    pos = torch.mul(xt, uni[1]).sub_(uni[0])  # knot units from the first knot
    fl = pos.floor()
    outside = ~((fl >= 0) & (fl <= m - 2))  # NaN is outside too
    u = pos.sub_(fl).masked_fill_(outside, 0.0)
    return fl.masked_fill_(outside, m - 1).long(), u, None


# Spent feature buffers of the last backward passes, one per shape, reused (zeroed) by the next forward: on CPUs a
# fresh multi-megabyte buffer per step costs more in page faults than filling it (glibc hands big blocks back to
# the system). At most _SPARE_MAX buffers (the oldest shape goes first) of at most _SPARE_MAX_BYTES each; only CPU
# tensors.
_SPARE: dict[tuple, torch.Tensor] = {}
_SPARE_MAX = 4
_SPARE_MAX_BYTES = 64 << 20


def _spare_key(t: torch.Tensor) -> tuple:
    return tuple(t.shape), t.dtype, t.device


def _spare_buffer(shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """A zeroed buffer of ``shape`` (a spent one when there is, see ``_SPARE``)."""
    buf = _SPARE.pop((shape, like.dtype, like.device), None) if like.device.type == "cpu" else None
    return like.new_zeros(shape) if buf is None else buf.zero_()


def _features(xt: torch.Tensor, grid: torch.Tensor, k: int, base_name: str):
    """The padded feature buffer ``(nb + 2k + 1, in, batch)`` and what the backward needs ``(idx, t, rows)``.

    Rows ``k .. k + nb - 1`` hold the bases, row ``k + nb`` the base function, the other rows junk (bases that fall
    off the grid's ends; the first one on the right shares its row with the base function, written last).
    ``idx`` ``(k + 1, in, batch)`` is the row ``s + r`` of basis ``s - k + r`` of each sample.
    """
    from .spline import BASE_FUNCTIONS

    n_in, n = xt.shape
    m = grid.shape[1]
    nb = m - k - 1
    s, t, rows = _locate(xt, grid, k)
    if rows is None:
        local = _horner(_cardinal_pieces(k, xt.dtype, xt.device)[: k + 1], t)  # (k + 1, in, batch)
    else:
        local = _horner(rows[: k + 1], t)
    idx = s + torch.arange(k + 1, device=xt.device).view(-1, 1, 1)  # padded row of basis s - k + r
    buf = _spare_buffer((nb + 2 * k + 1, n_in, n), xt)
    buf.scatter_(0, idx, local)
    buf[nb + k] = BASE_FUNCTIONS[base_name](xt)  # after the scatter: basis nb (junk) lands on this row too
    return buf, idx, t, rows


def _cached_features(x: torch.Tensor, grid: torch.Tensor, k: int, base_name: str):
    """:func:`_features` of an input that needs no gradient, remembered for the very same tensor."""
    key = (k, base_name)
    hit = splines.cached_value(_FEATURE_CACHE, key, x, grid)
    if hit is not None:
        return hit
    value = _features(x.detach().T.contiguous(), grid, k, base_name)
    return value if x.is_inference() else splines.remember_value(_FEATURE_CACHE, value, key, x, grid)


def _weights(coef, scale_base, scale_sp, mask):
    """``(W, w_sp)``: the weights ``(out, nb + 1, in)`` of the feature slots and the spline scale ``(out, in)``."""
    n_out, n_in, nb = coef.shape
    if mask is None:
        w_sp, w_base = scale_sp, scale_base
    else:
        w_sp, w_base = scale_sp * mask, scale_base * mask
    w = coef.new_empty(n_out, nb + 1, n_in)
    torch.mul(coef.transpose(1, 2), w_sp.unsqueeze(1), out=w[:, :nb])
    w[:, nb] = w_base
    return w, w_sp


class _DenseLayer(torch.autograd.Function):
    """``y = [basis(x), b(x)] @ W^T`` as one node (see the module docstring). Call as
    ``apply(x, coef, scale_base, scale_sp, mask, grid, k, base_name)``; ``mask`` ``None`` for an all-ones mask."""

    @staticmethod
    def forward(ctx, x, coef, scale_base, scale_sp, mask, grid, k, base_name):  # type: ignore[override]
        inner = _state(x, coef, scale_base, scale_sp, mask, grid, k, base_name, ctx.needs_input_grad[0])
        buf, w = inner[0], inner[5]
        n_out, nb = coef.shape[0], coef.shape[2]
        y = torch.mm(w.view(n_out, -1), buf[k : k + nb + 1].view(-1, x.shape[0])).T  # (batch, out) from (out, batch)
        ctx.save_for_backward(x, coef, scale_base, scale_sp, mask, grid)
        ctx.inner, ctx.k, ctx.base_name = inner, k, base_name
        return y

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        need = ctx.needs_input_grad[:4]
        x, coef, scale_base, scale_sp, mask, grid = ctx.saved_tensors
        k, base_name = ctx.k, ctx.base_name
        if torch.is_grad_enabled():  # create_graph: differentiate the autograd composition instead
            from .spline import recompute_grads

            grads = recompute_grads(lambda *a: (dense_reference(*a, mask, grid, k, base_name),),
                                    (x, coef, scale_base, scale_sp), need, (g,))
            return (*grads, None, None, None, None)
        inner = ctx.inner
        if inner is None:  # a second backward (retain_graph): the first one wrote its gradients into the features
            inner = _state(x, coef, scale_base, scale_sp, mask, grid, k, base_name, need[0])
        grads = _dense_backward(g, need, coef, mask, grid, k, base_name, *inner)
        if need[0]:  # the feature buffer (not the cached one of a constant input) is spent: a spare for the next
            ctx.inner = None
            spent = inner[0]
            if spent.device.type == "cpu" and spent.numel() * spent.element_size() <= _SPARE_MAX_BYTES:
                _SPARE[_spare_key(spent)] = spent
                while len(_SPARE) > _SPARE_MAX:
                    del _SPARE[next(iter(_SPARE))]
        return (*grads, None, None, None, None)


def _state(x, coef, scale_base, scale_sp, mask, grid, k, base_name, need_x: bool) -> tuple:
    """``(buf, idx, t, rows, xt, w, w_sp)``: the features (cached for a constant input) and the weights."""
    if need_x:
        xt = x.detach().T.contiguous()
        buf, idx, t, rows = _features(xt, grid, k, base_name)
    else:
        buf, idx, t, rows = _cached_features(x, grid, k, base_name)
        xt = None
    return (buf, idx, t, rows, xt, *_weights(coef, scale_base, scale_sp, mask))


def _dense_backward(g, need, coef, mask, grid, k, base_name, buf, idx, t, rows, xt, w, w_sp):
    """Gradients ``(x, coef, scale_base, scale_sp)`` of :class:`_DenseLayer` (``None`` where not in ``need``).
    With ``need[0]`` the gradients of the features are written into ``buf`` (the weight gradient is formed first)."""
    from .spline import BASE_DERIVATIVES

    n_out, n_in, nb = coef.shape
    n = g.shape[0]
    g_x = g_coef = g_sb = g_sp = None
    if need[1] or need[2] or need[3]:
        g_w = torch.mm(g.T, buf[k : k + nb + 1].view(-1, n).T).view(n_out, nb + 1, n_in)
        g_ceff = g_w[:, :nb].transpose(1, 2)  # (out, in, nb)
        if need[1]:
            g_coef = g_ceff * w_sp.unsqueeze(-1)
        if need[2]:
            g_sb = g_w[:, nb] if mask is None else g_w[:, nb] * mask
        if need[3]:
            g_sp = (g_ceff * coef).sum(-1)
            g_sp = g_sp if mask is None else g_sp * mask
    if need[0]:
        d_base = BASE_DERIVATIVES[base_name](xt, buf[nb + k])
        g_feat = buf  # padded like the features; the junk rows must be zero for the gather below
        g_feat[:k].zero_()
        g_feat[k + nb + 1 :].zero_()
        torch.mm(w.view(n_out, -1).T, g.T, out=g_feat[k : k + nb + 1].view(-1, n))
        g_x = torch.mul(g_feat[k + nb], d_base)
        g_feat[k + nb].zero_()  # the row basis nb (junk) shares with the base function
        if rows is None:  # d/dx = (d/du) / h on a uniform grid
            dlocal = _horner(_cardinal_pieces(k, g.dtype, g.device)[k + 1 :], t).mul_(uniform_knots(grid, k)[1])
        else:
            dlocal = _horner(rows[k + 1 :], t)
        g_x = g_x.add_(dlocal.mul_(g_feat.gather(0, idx)).sum(0)).T  # (batch, in)
    return g_x, g_coef, g_sb, g_sp


def dense_reference(x, coef, scale_base, scale_sp, mask, grid, k: int, base_name: str) -> torch.Tensor:
    """:func:`dense_forward` as ordinary autograd ops (differentiable to any order)."""
    from .spline import BASE_FUNCTIONS

    basis = splines.b_spline_basis(x, grid, k)  # (batch, in, nb)
    w_sp = scale_sp if mask is None else scale_sp * mask
    w_base = scale_base if mask is None else scale_base * mask
    w = coef * w_sp.unsqueeze(-1)
    return BASE_FUNCTIONS[base_name](x) @ w_base.T + basis.flatten(1) @ w.flatten(1).T


def dense_forward(x, coef, scale_base, scale_sp, mask, grid, k: int, base_name: str) -> torch.Tensor:
    """A spline layer's output ``sum_i mask_ji (scale_base_ji b(x_i) + scale_sp_ji spline_ji(x_i))``, differentiable
    in ``x``, ``coef``, ``scale_base`` and ``scale_sp`` (to any order; see the module docstring).

    Args:
        mask: ``(out, in)``, or ``None`` for an all-ones mask (skips the products).

    Shapes:
        x: ``(batch, in)``; coef: ``(out, in, nb)``; scale_base, scale_sp, mask: ``(out, in)``;
        grid: ``(in, nb + k + 1)`` -> ``(batch, out)``.
    """
    if x.dtype not in FUSED_DTYPES or _COMPOSITION.get():
        return dense_reference(x, coef, scale_base, scale_sp, mask, grid, k, base_name)
    return _DenseLayer.apply(x, coef, scale_base, scale_sp, mask, grid, k, base_name)
