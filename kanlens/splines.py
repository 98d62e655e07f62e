"""Pure tensor math for B-splines: grids, basis, coefficient <-> curve, grids from samples.

Conventions used throughout kanlens:

* a *grid* has shape ``(in_dim, G + 2k + 1)``: ``G + 1`` knots spanning the grid range, extended by ``k``
  knots on each side so that every point of the range is covered by ``k + 1`` basis functions;
* the *basis* of ``x`` with shape ``(batch, in_dim)`` has shape ``(batch, in_dim, G + k)``;
* spline *coefficients* have shape ``(out_dim, in_dim, G + k)``; ``coef2curve`` returns per-edge values
  ``(batch, out_dim, in_dim)``.

Nothing here knows about modules; every function is a pure function of tensors.
"""

from __future__ import annotations

import weakref

import torch

__all__ = [
    "b_spline_basis",
    "coef2curve",
    "curve2coef",
    "extend_grid",
    "grid_from_samples",
    "num_basis",
    "poly_rows",
    "poly_table",
    "uniform_grid",
]


def num_basis(grid: torch.Tensor, k: int) -> int:
    """Number of B-spline basis functions of an extended grid: ``G + k``."""
    return grid.shape[-1] - k - 1


def extend_grid(grid: torch.Tensor, k: int) -> torch.Tensor:
    """Extend knots ``(in_dim, G + 1)`` by ``k`` equally spaced knots on each side -> ``(in_dim, G + 2k + 1)``."""
    h = (grid[:, -1:] - grid[:, :1]) / (grid.shape[1] - 1)
    steps = torch.arange(1, k + 1, device=grid.device, dtype=grid.dtype)
    left = grid[:, :1] - h * steps.flip(0)
    right = grid[:, -1:] + h * steps
    return torch.cat([left, grid, right], dim=1)


def uniform_grid(
    num: int,
    k: int,
    in_dim: int,
    grid_range: tuple[float, float] | torch.Tensor = (-1.0, 1.0),
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform extended grid with ``num`` intervals per input.

    Args:
        num: number of grid intervals ``G``.
        k: spline order.
        in_dim: number of inputs.
        grid_range: ``(low, high)`` for all inputs, or a tensor ``(in_dim, 2)``.

    Shapes:
        returns ``(in_dim, num + 2k + 1)``.
    """
    rng = torch.as_tensor(grid_range, dtype=dtype, device=device)
    if rng.ndim == 1:
        rng = rng.expand(in_dim, 2)
    t = torch.linspace(0.0, 1.0, num + 1, dtype=dtype, device=device)
    base = rng[:, :1] + (rng[:, 1:] - rng[:, :1]) * t
    return extend_grid(base, k)


def _basis_recursion(x: torch.Tensor, grid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bases of order ``k`` and ``k - 1`` (the latter is what the derivative needs)."""
    xg = x.unsqueeze(-1)
    g = grid.unsqueeze(0)
    basis = ((xg >= g[..., :-1]) & (xg < g[..., 1:])).to(x.dtype)
    prev = basis
    for p in range(1, k + 1):
        lo = g[..., : -(p + 1)]
        hi = g[..., p + 1 :]
        left = (xg - lo) / (g[..., p:-1] - lo) * basis[..., :-1]
        right = (hi - xg) / (hi - g[..., 1:-p]) * basis[..., 1:]
        prev, basis = basis, left + right
    return basis, prev


def value_stamp(t: torch.Tensor) -> tuple:
    """What identifies a tensor's current values for the caches of values derived from it (a grid's polynomial
    tables, a data batch's bases).

    ``(version counter, data address, copy of the values)``: the version counter catches in-place edits, the
    address ``grid.data = new`` (pykan's idiom), and the copy, on CPU, in-place edits through ``.data`` or a
    shared numpy buffer, which bump no version counter. On accelerators no copy is compared (that would
    synchronise every forward), so such edits go unseen there: edit under ``torch.no_grad()`` instead. Inference
    tensors have no version counter (``None``).
    """
    version = None if t.is_inference() else t._version
    values = t.detach().clone() if t.device.type == "cpu" else None
    return version, t.data_ptr(), values


def value_unchanged(t: torch.Tensor, stamp: tuple) -> bool:
    """Whether ``t`` still holds what :func:`value_stamp` recorded."""
    version = None if t.is_inference() else t._version
    if version != stamp[0] or t.data_ptr() != stamp[1]:
        return False
    values = stamp[2]
    return values is None or (values.shape == t.shape and values.dtype == t.dtype
                              and torch.equal(_bits(values), _bits(t.detach())))


_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as integers (a view): equal bits compare equal, NaN included."""
    if t.is_floating_point() and t.element_size() in _INT_OF_SIZE:
        return t.view(_INT_OF_SIZE[t.element_size()])
    return t


# The caches below map id(key tensor) -> (k, ((weak ref, value_stamp) of the key tensor and of each tensor the value
# depends on), value) (cached_value, remember_value). An entry dies with its key tensor and is only used for the very
# same tensor objects, so a new tensor that reuses a freed one's memory never sees a stale value; edits of any of
# them (see value_stamp) force a rebuild.
_POLY_CACHE: dict[int, tuple] = {}  # grid -> poly_table
_BASIS_CACHE: dict[int, tuple] = {}  # x (no gradient), grid -> b_spline_basis


def _forget(cache: dict, ref: weakref.ref, key: int) -> None:
    entry = cache.get(key)
    if entry is not None and entry[1][0][0] is ref:
        del cache[key]


def cached_value(cache: dict, k: int, *tensors: torch.Tensor) -> torch.Tensor | None:
    """The value remembered for ``tensors`` (the first is the key) and ``k``, if none of them changed since."""
    hit = cache.get(id(tensors[0]))
    if hit is None or hit[0] != k or len(hit[1]) != len(tensors):
        return None
    for (ref, stamp), t in zip(hit[1], tensors):
        if ref() is not t or not value_unchanged(t, stamp):
            return None
    return hit[2]


def remember_value(cache: dict, value: torch.Tensor, k: int, *tensors: torch.Tensor) -> torch.Tensor:
    """Store ``value`` for :func:`cached_value`; returns it."""
    key = id(tensors[0])
    first = weakref.ref(tensors[0], lambda r, key=key: _forget(cache, r, key))
    cache[key] = (k, ((first, value_stamp(tensors[0])), *((weakref.ref(t), value_stamp(t)) for t in tensors[1:])),
                  value)
    return value


def poly_table(grid: torch.Tensor, k: int) -> torch.Tensor:
    """Piecewise-polynomial form of the bases: ``P[i, s, p, r]`` is the coefficient of ``(x - t_s)^p`` of basis
    ``s - k + r`` on knot interval ``s`` of input ``i`` (rows ``p = 0..k``), followed by the ``k`` rows of the
    derivative's coefficients, and an all-zero interval ``M - 1`` (points outside the grid).

    Shapes:
        grid: ``(in_dim, M)`` -> ``(in_dim, M, 2k + 1, k + 1)``.

    Computed once per grid (cached until the grid changes, see :func:`value_stamp`) by sampling the Cox-de Boor
    recursion at ``k + 1`` points per interval and solving the Vandermonde system in float64.
    """
    hit = cached_value(_POLY_CACHE, k, grid)
    if hit is not None:
        return hit
    g = grid.detach().double()
    in_dim, m = g.shape
    lo, h = g[:, :-1], g[:, 1:] - g[:, :-1]  # (in, M-1)
    frac = (torch.arange(k + 1, dtype=g.dtype, device=g.device) + 0.5) / (k + 1)
    u = lo[..., None] + h[..., None] * frac  # (in, M-1, k+1) sample points strictly inside each interval
    pts = u.reshape(in_dim, -1).T  # (n_pts, in)
    dense = _basis_recursion(pts, g, k)[0]  # (n_pts, in, nb)
    dense = torch.nn.functional.pad(dense, (k, k))  # bases s-k..s of interval s sit at padded columns s..s+k
    dense = dense.permute(1, 0, 2).reshape(in_dim, m - 1, k + 1, -1)  # (in, M-1, q, nb+2k)
    cols = torch.arange(m - 1, device=g.device)[:, None] + torch.arange(k + 1, device=g.device)  # (M-1, r)
    vals = dense.gather(3, cols[None, :, None, :].expand(in_dim, m - 1, k + 1, k + 1))  # (in, M-1, q, r)
    vand = (u - lo[..., None]).unsqueeze(-1) ** torch.arange(k + 1, dtype=g.dtype, device=g.device)  # q, p
    coef = torch.linalg.solve(vand, vals)  # (in, M-1, p, r): value coefficients of t^p
    powers = torch.arange(1, k + 1, dtype=g.dtype, device=g.device)[:, None]
    deriv = coef[:, :, 1:] * powers  # (in, M-1, k, r): coefficients of t^(p-1) in the derivative
    table = torch.cat([coef, deriv], dim=2)
    # Row M-1 is all zeros: samples outside the extended grid point there (all bases vanish).
    table = torch.nn.functional.pad(table, (0, 0, 0, 0, 0, 1)).to(grid.dtype).contiguous()
    return remember_value(_POLY_CACHE, table, k, grid)


def _local_basis(x: torch.Tensor, grid: torch.Tensor, k: int, with_derivative: bool):
    """Non-zero bases of every sample: ``(idx, local, dlocal)`` with ``local``/``dlocal`` ``(..., in, k+1)``
    the values/derivatives of bases ``idx - k`` (padded column index ``idx``, ``(..., in, k+1)``) for ``x`` of
    shape ``(..., in)``."""
    in_dim, m = grid.shape
    table = poly_table(grid, k)
    _, offsets, ar, count_offsets, col_of_count = _index_consts(in_dim, m, k, grid.device)
    # (input, interval) column of every sample; points outside the extended grid and NaN get interval M - 1
    xf = x.detach().reshape(-1, in_dim)  # any leading dimensions (convolutions pass (..., in))
    count = _knot_count_index(xf.T.contiguous(), grid, k).T.reshape(x.shape)  # i * (M + 1) + knots <= x
    col = col_of_count.take(count)
    valid = (count > count_offsets.T) & (count < count_offsets.T + m)  # 1 <= knots <= x <= M - 1
    t = torch.where(valid, x - grid.reshape(-1).take(col), 0.0).unsqueeze(-1)  # (batch, in, 1)
    if not with_derivative:
        table = table[:, :, : k + 1]
    rows = table.reshape(in_dim * m, -1).index_select(0, col.reshape(-1)).view(*col.shape, -1, k + 1)
    local = rows[..., k, :]
    for p in range(k - 1, -1, -1):  # Horner
        local = torch.addcmul(rows[..., p, :], local, t)
    dlocal = None
    if with_derivative:
        dlocal = rows[..., 2 * k, :]
        for p in range(2 * k - 1, k, -1):
            dlocal = torch.addcmul(rows[..., p, :], dlocal, t)
    idx = (col - offsets.T).unsqueeze(-1) + ar.view(-1)
    return idx, local, dlocal


def _dense(idx: torch.Tensor, local: torch.Tensor, nb: int, k: int) -> torch.Tensor:
    dense = local.new_zeros(*idx.shape[:-1], nb + 2 * k + 1).scatter_(-1, idx, local)
    return dense[..., k : k + nb]


class _BSplineBasis(torch.autograd.Function):
    """B-spline bases from cached per-interval polynomials, with an analytic derivative.

    Only the ``k + 1`` non-zero bases of each sample are computed (Horner on gathered coefficients), so this needs
    far fewer and smaller tensor ops than the Cox-de Boor recursion.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:  # type: ignore[override]
        idx, local, dlocal = _local_basis(x, grid, k, with_derivative=True)
        ctx.save_for_backward(x, grid, idx, dlocal)
        ctx.k = k
        return _dense(idx, local, grid.shape[1] - k - 1, k)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, grid, idx, dlocal = ctx.saved_tensors
        k = ctx.k
        if torch.is_grad_enabled():
            # create_graph (second derivatives, e.g. a PDE residual's u_xx): the derivatives saved by the forward
            # are constants to autograd; evaluated again from x they carry their own derivative in x
            dlocal = _local_basis(x, grid, k, with_derivative=True)[2]
        g_local = torch.nn.functional.pad(grad_out, (k, k + 1)).gather(-1, idx)
        return (g_local * dlocal).sum(-1), None, None


def b_spline_basis(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """Evaluate all B-spline basis functions of order ``k``.

    Points outside the extended grid get all-zero bases (the spline part vanishes there). Differentiable in
    ``x`` (analytic derivative); the grid is treated as a constant. Equal to the Cox-de Boor recursion (and to
    ``scipy.interpolate.BSpline``) up to rounding; evaluated through cached per-interval polynomials.

    Shapes:
        x: ``(batch, in_dim)``, grid: ``(in_dim, G + 2k + 1)`` -> ``(batch, in_dim, G + k)``.
    """
    if x.requires_grad and torch.is_grad_enabled():
        return _BSplineBasis.apply(x, grid, k)
    # Inputs that need no gradient (a network's data) are usually evaluated again and again on the same batch
    # (every LBFGS line-search trial): remember the last basis of each such tensor.
    hit = cached_value(_BASIS_CACHE, k, x, grid)
    if hit is not None:
        return hit
    with torch.no_grad():
        idx, local, _ = _local_basis(x, grid, k, with_derivative=False)
        basis = _dense(idx, local, grid.shape[1] - k - 1, k)
    return basis if x.is_inference() else remember_value(_BASIS_CACHE, basis, k, x, grid)


_BASIS_BY_INPUT_CACHE: dict[int, tuple] = {}  # x, grid -> basis_by_input (see cached_value)
_POLY_ROWS_CACHE: dict[int, tuple] = {}  # grid -> poly_rows
# (in_dim, M, k, device) -> (interval of a knot count (M + 1,), row offsets ``arange(in_dim) * M`` (in, 1),
# ``arange(k + 1)`` (1, k+1, 1), count offsets ``arange(in_dim) * (M + 1)`` (in, 1), column of a count index
# ``(in * (M + 1),)``).
_INDEX_CONSTS: dict[tuple, tuple[torch.Tensor, ...]] = {}


def poly_rows(grid: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`poly_table` as ``((2k + 1) * (k + 1), in_dim * M)``: one row per (power, basis), one column per
    (input, interval), so gathering the columns of many samples leaves the samples innermost (contiguous). Cached
    per grid."""
    hit = cached_value(_POLY_ROWS_CACHE, k, grid)
    if hit is not None:
        return hit
    table = poly_table(grid, k)  # (in, M, 2k+1, k+1)
    rows = table.permute(2, 3, 0, 1).reshape((2 * k + 1) * (k + 1), -1).contiguous()
    return remember_value(_POLY_ROWS_CACHE, rows, k, grid)


def _index_consts(in_dim: int, m: int, k: int, device: torch.device):
    key = (in_dim, m, k, device)
    consts = _INDEX_CONSTS.get(key)
    if consts is None:
        # Knots <= x, minus one, is the interval; 0 knots (left of the grid, NaN) and all M knots (right of it)
        # both map to the all-zero interval M - 1 of the table.
        interval = torch.cat([torch.tensor([m - 1]), torch.arange(m - 1), torch.tensor([m - 1])]).to(device)
        rows = torch.arange(in_dim, device=device).unsqueeze(-1)
        # column i * M + interval of (input i, knot count c), at i * (M + 1) + c
        col_of_count = (rows * m + interval).reshape(-1)
        consts = _INDEX_CONSTS[key] = (interval, rows * m, torch.arange(k + 1, device=device).view(1, k + 1, 1),
                                       rows * (m + 1), col_of_count)
    return consts


# Up to this many knots per input, locate counts the knots <= x with one vectorised comparison (M compares per
# sample, SIMD); beyond it a binary search (torch.searchsorted, ~15 ns per sample on a CPU) is cheaper.
_COMPARE_MAX_KNOTS = 40


def _knot_count_index(xt: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """``i * (M + 1) + (number of knots <= x)`` of every sample ``(in_dim, batch)`` (NaN counts none), int64."""
    in_dim, m = grid.shape
    offsets = _index_consts(in_dim, m, k, grid.device)[3]
    if m <= _COMPARE_MAX_KNOTS and xt.device.type == "cpu":
        # (M, in, batch) indicators 1.0 / 0.0 of x - knot >= 0 (x >= knot: IEEE subtraction keeps the sign; NaN
        # counts none) summed in floats (exact small integers): the counts of searchsorted(right=True) for sorted
        # knots, about twice as fast on CPUs as comparisons with boolean results
        return torch.sub(xt, grid.T.unsqueeze(-1)).ge_(0.0).sum(0, dtype=torch.float32).add_(offsets).long()
    count = torch.searchsorted(grid, xt, right=True)
    return torch.add(count, offsets)


def locate_columns(xt: torch.Tensor, grid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t, col)`` of :func:`locate` (without the interval index itself)."""
    in_dim, m = grid.shape
    count = _knot_count_index(xt, grid, k)
    # index_select on flat tables: the same values as take, faster on CPUs
    col = _index_consts(in_dim, m, k, grid.device)[4].index_select(0, count.view(-1)).view(count.shape)
    return xt - grid.reshape(-1).index_select(0, col.view(-1)).view(col.shape), col


def locate(xt: torch.Tensor, grid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Knot interval and local coordinate of every sample, samples innermost.

    Returns ``s`` (interval index ``0..M-2``, or ``M-1`` for points outside the extended grid and NaN, an interval
    on which every basis vanishes), ``t = x - knot_s`` (finite for every finite ``x``) and ``col = i * M + s``, the
    column of (input ``i``, interval ``s``) in tables laid out ``(in_dim * M)``.

    Shapes:
        xt: ``(in_dim, batch)`` (contiguous), grid: ``(in_dim, M)`` -> ``s``, ``t``, ``col``: ``(in_dim, batch)``.
    """
    t, col = locate_columns(xt, grid, k)
    return col - _index_consts(grid.shape[0], grid.shape[1], k, grid.device)[1], t, col


def _basis_by_input(x: torch.Tensor, grid: torch.Tensor, k: int, with_derivative: bool):
    """Dense bases (and derivatives) laid out ``(in, nb, batch)``; see :func:`basis_by_input`."""
    in_dim, m = grid.shape
    n, nb, r = x.shape[0], m - k - 1, k + 1
    ar = _index_consts(in_dim, m, k, grid.device)[2]
    s, t, col = locate(x.detach().T.contiguous(), grid, k)  # (in, batch)
    rows = poly_rows(grid, k).index_select(1, col.reshape(-1)).view(2 * k + 1, r, in_dim, n)
    local = rows[k]
    for p in range(k - 1, -1, -1):  # Horner over the powers of t, samples innermost
        local = torch.addcmul(rows[p], local, t)
    cols = s.unsqueeze(1) + ar  # (in, k+1, batch): padded column of bases s-k..s
    basis = x.new_zeros(in_dim, nb + 2 * k + 1, n).scatter_(1, cols, local.transpose(0, 1))[:, k : k + nb]
    if not with_derivative:
        return basis, None
    dlocal = rows[2 * k]
    for p in range(2 * k - 1, k, -1):
        dlocal = torch.addcmul(rows[p], dlocal, t)
    dbasis = x.new_zeros(in_dim, nb + 2 * k + 1, n).scatter_(1, cols, dlocal.transpose(0, 1))[:, k : k + nb]
    return basis, dbasis


_POLY_MATRIX_CACHE: dict[int, tuple] = {}  # grid -> poly_coef_matrix (see cached_value)


def poly_coef_matrix(grid: torch.Tensor, k: int) -> torch.Tensor:
    """Linear map from spline coefficients to per-interval polynomials: ``coef @ Q``.

    For coefficients ``c`` laid out ``(in_dim, n, G + k)`` (any ``n``, e.g. one row per output),
    ``(c @ Q).view(in_dim, n, 2k + 1, M)[i, j, p, s]`` is the coefficient of ``(x - t_s)^p`` of spline ``c[i, j]`` on
    knot interval ``s`` (rows ``p = 0..k``), followed by the ``k`` coefficients of its derivative; interval
    ``M - 1`` (outside the grid) is all zero. Cached per grid (see :func:`value_stamp`).

    Shapes:
        grid: ``(in_dim, M)`` -> ``(in_dim, G + k, (2k + 1) * M)``.
    """
    hit = cached_value(_POLY_MATRIX_CACHE, k, grid)
    if hit is not None:
        return hit
    table = poly_table(grid, k)  # (in, M, 2k+1, r): basis s - k + r on interval s
    in_dim, m = grid.shape
    nb = m - k - 1
    q = table.new_zeros(in_dim, nb, 2 * k + 1, m)
    for r in range(k + 1):
        s = torch.arange(m, device=grid.device)
        j = s - k + r
        ok = (j >= 0) & (j < nb)
        q[:, j[ok], :, s[ok]] = table[:, s[ok], :, r].permute(1, 0, 2)
    q = q.reshape(in_dim, nb, -1).contiguous()
    return remember_value(_POLY_MATRIX_CACHE, q, k, grid)


@torch.no_grad()
def basis_by_input(
    x: torch.Tensor, grid: torch.Tensor, k: int, *, with_derivative: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """B-spline bases laid out ``(in_dim, G + k, batch)``, for hand-written backward passes (no autograd graph).

    Same values as :func:`b_spline_basis` (up to rounding), but with the samples innermost, so the per-edge
    splines of a layer are one batched matmul over inputs and every elementwise op runs over contiguous samples.
    With ``with_derivative`` the derivatives ``dB/dx`` come too (same layout); otherwise the second value is
    ``None`` and the result is cached for the very same ``x`` (the training data, evaluated again at every LBFGS
    trial point) until ``x`` or ``grid`` change.

    Shapes:
        x: ``(batch, in_dim)``, grid: ``(in_dim, G + 2k + 1)`` -> ``(in_dim, G + k, batch)`` (twice).
    """
    if with_derivative:
        return _basis_by_input(x, grid, k, True)
    hit = cached_value(_BASIS_BY_INPUT_CACHE, k, x, grid)
    if hit is not None:
        return hit, None
    basis = _basis_by_input(x, grid, k, False)[0]
    return (basis if x.is_inference() else remember_value(_BASIS_BY_INPUT_CACHE, basis, k, x, grid)), None


def coef2curve(x: torch.Tensor, grid: torch.Tensor, coef: torch.Tensor, k: int) -> torch.Tensor:
    """Evaluate per-edge splines.

    Shapes:
        x: ``(batch, in_dim)``, grid: ``(in_dim, G + 2k + 1)``, coef: ``(out_dim, in_dim, G + k)``
        -> ``(batch, out_dim, in_dim)``.
    """
    basis = b_spline_basis(x, grid, k)
    return torch.einsum("bin,oin->boi", basis, coef)


def curve2coef(
    x: torch.Tensor,
    y: torch.Tensor,
    grid: torch.Tensor,
    k: int,
    *,
    ridge: float = 1e-8,
) -> torch.Tensor:
    """Least-squares spline coefficients reproducing per-edge values ``y`` at samples ``x``.

    Solved per input with ridge-regularised normal equations in float64 (robust to rank deficiency, e.g.
    basis functions with no samples under them, which are pulled to zero).

    Shapes:
        x: ``(batch, in_dim)``, y: ``(batch, out_dim, in_dim)``, grid: ``(in_dim, G + 2k + 1)``
        -> coef ``(out_dim, in_dim, G + k)`` in the dtype of ``y``.
    """
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("curve2coef: samples contain NaN or Inf; cannot fit spline coefficients")
    a = b_spline_basis(x.double(), grid.double(), k).permute(1, 0, 2)  # (in, batch, nb)
    b = y.double().permute(2, 0, 1)  # (in, batch, out)
    ata = a.transpose(1, 2) @ a  # (in, nb, nb)
    atb = a.transpose(1, 2) @ b  # (in, nb, out)
    nb = ata.shape[-1]
    scale = ata.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1.0)[:, None, None]
    eye = torch.eye(nb, dtype=ata.dtype, device=ata.device)
    lhs = ata + ridge * scale * eye
    sol, info = torch.linalg.cholesky_ex(lhs)
    if bool((info != 0).any()):
        coef = torch.linalg.pinv(lhs) @ atb
    else:
        coef = torch.cholesky_solve(atb, sol)
    return coef.permute(2, 0, 1).to(y.dtype).contiguous()


def check_grid_eps(grid_eps: object) -> float:
    """``grid_eps`` as a float in ``[0, 1]`` (the weight of the uniform grid in the mix), else ``ValueError``."""
    if isinstance(grid_eps, bool) or not isinstance(grid_eps, (int, float)) or not 0.0 <= grid_eps <= 1.0:
        raise ValueError(f"grid_eps must be a number in [0, 1] (0: quantiles, 1: uniform), got {grid_eps!r}")
    return float(grid_eps)


def grid_from_samples(x: torch.Tensor, num: int, k: int, *, grid_eps: float = 0.02) -> torch.Tensor:
    """Grid adapted to the sample distribution (pykan's ``grid_eps`` rule).

    The knots are ``grid_eps * uniform + (1 - grid_eps) * percentiles`` of the samples of each input, so
    ``grid_eps = 1`` gives a uniform grid over ``[min, max]`` and ``grid_eps = 0`` pure percentiles.

    Shapes:
        x: ``(batch, in_dim)`` -> ``(in_dim, num + 2k + 1)``.
    """
    check_grid_eps(grid_eps)
    if x.shape[0] < 2:
        raise ValueError(f"grid_from_samples needs at least 2 samples, got {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise ValueError("grid_from_samples: samples contain NaN or Inf")
    xs = torch.sort(x, dim=0).values  # (batch, in)
    idx = torch.linspace(0, xs.shape[0] - 1, num + 1, device=x.device).round().long()
    adaptive = xs[idx].T  # (in, num+1)
    lo, hi = xs[0], xs[-1]
    span = (hi - lo).clamp_min(1e-4)
    hi = lo + span
    t = torch.linspace(0.0, 1.0, num + 1, device=x.device, dtype=x.dtype)
    uniform = lo[:, None] + span[:, None] * t
    adaptive = adaptive.clone()
    adaptive[:, 0], adaptive[:, -1] = lo, hi
    grid = grid_eps * uniform + (1.0 - grid_eps) * adaptive
    # Strictly increasing knots keep Cox-de Boor well defined even for repeated sample values.
    min_gap = span * 1e-3 / num
    knots = [grid[:, 0]]
    for i in range(1, num + 1):
        knots.append(torch.maximum(grid[:, i], knots[-1] + min_gap))
    return extend_grid(torch.stack(knots, dim=1), k)
