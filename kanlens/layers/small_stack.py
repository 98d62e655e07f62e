"""The fused stack's sparsity objective in numpy, for small float32 models on the CPU (training's hot path).

An LBFGS fit of a tutorial-sized KAN (``[2, 5, 1]``, 1,000 samples) evaluates the objective ``MSE + lamb * (L1 +
entropy)`` and its gradient about a thousand times. With torch (:func:`kanlens.layers.stack.stack_forward` /
``stack_backward``) one evaluation is ~350 small tensor calls whose fixed cost (~3-5 µs each) is more than half of
it. :class:`SmallStack` evaluates the same formulas on numpy views of the very same memory (parameters, their
``.grad``, the cached data bases), where a small op costs ~1 µs, and writes the gradient into the parameters'
``.grad``.

What is done once per optimizer step (grids, masks, data bases, views) lives in the :class:`SmallStack` built by
:meth:`SmallStack.build`; :meth:`SmallStack.objective` is the per-evaluation work. It applies to stacks of plain
spline layers (with or without multiplication nodes) in :data:`SMALL_DTYPES` on the CPU, with a base function of
:data:`NUMPY_BASES`; :meth:`SmallStack.build` returns ``None`` otherwise and training keeps the torch kernel.
float64 never takes this path: its LBFGS trajectories are pinned bit for bit (``tests/test_trajectory.py``).

The arithmetic is that of the torch kernel, rounded differently (numpy's float32 sums and products, the penalty in
float64): the data layer from dense cached bases (one batched matmul), every other layer from per-interval
polynomials of its splines gathered per sample (Horner for the value and the derivative), the coefficient
gradient of those layers as per-interval sums mapped back through the polynomial matrix. The gather and the
scatter of those sums are torch's ``index_select`` / ``scatter_add_`` on the same memory (faster than numpy's
``take`` / ``bincount`` here). Wide layers after the first (where the torch kernel switches to dense bases) and
very large layers keep the torch kernel, which is faster there.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import splines
from ..regularization import l1_entropy_lists

__all__ = ["NUMPY_BASES", "SMALL_DTYPES", "SmallStack"]

# dtypes that take this path (float64 keeps the torch kernel, whose trajectories are pinned)
SMALL_DTYPES: set[torch.dtype] = {torch.float32}
NUMPY_BASES = ("silu", "identity", "zero", "tanh")
_EPS = 1e-4  # inside the entropy's log, as kanlens.regularization
# at most this many (2k + 1) * out * in * batch gathered polynomial entries per layer after the first
_MAX_GATHER = 2_000_000
_LIST_MAX_EDGES = 256  # magnitudes with at most this many edges are penalised in Python floats
_MAX_KNOTS = 64  # knots per input (counted in uint8 by comparisons)


def _base(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
    """``(b(x), b'(x))`` of a base function (see :data:`kanlens.layers.spline.BASE_FUNCTIONS`)."""
    if name == "silu":
        s = np.exp(-x)
        s += 1.0
        np.reciprocal(s, out=s)  # sigmoid
        b = x * s
        return b, s + b * (1.0 - s)
    if name == "tanh":
        b = np.tanh(x)
        return b, 1.0 - b * b
    if name == "identity":
        return x, 1.0
    return np.zeros_like(x), 0.0


def _l1_entropy(mag: np.ndarray, lamb_l1: float, lamb_entropy: float) -> tuple[float, np.ndarray]:
    """Value and gradient of :func:`kanlens.regularization.l1_entropy` of an ``(out, in)`` magnitude."""
    total = lamb_l1 * float(mag.sum(dtype=np.float64))
    grad = np.full(mag.shape, lamb_l1, dtype=np.float64)
    m = mag.astype(np.float64)
    for axis, n in ((1, m.shape[0]), (0, m.shape[1])):
        denom = m.sum(axis, keepdims=True) + 1.0
        p = m / denom
        log_p = np.log2(p + _EPS)
        w = -lamb_entropy / n
        total += w * float((p * log_p).sum())
        g = w * (log_p + p / (p + _EPS) / math.log(2.0))  # d(w * entropy)/dp
        grad += (g - (g * p).sum(axis, keepdims=True)) / denom
    return total, grad


class _Layer:
    """One spline layer's per-step constants and numpy views (see :meth:`SmallStack.build`)."""

    def __init__(self, mask, grid, k, base_name, params, data_terms):
        self.k, self.base_name = k, base_name
        self.n_out, self.n_in, self.nb = params[0].shape
        self.p = [t.detach().numpy() for t in params]  # coef, scale_base, scale_sp, node_scale, node_bias
        self.g = [None if t.grad is None else t.grad.numpy() for t in params]
        all_ones = bool((mask == 1).all())
        self.mask = None if all_ones else mask.detach().numpy()
        self.data = data_terms  # (b(x) (in, batch), bases (in, nb, batch)) of the data layer, else None
        if data_terms is None:
            m = grid.shape[1]
            self.m = m
            self.knots = np.ascontiguousarray(grid.detach().numpy().T[:, :, None])  # (M, in, 1)
            self.flat_grid = grid.detach().reshape(-1).numpy()
            interval = np.concatenate([[m - 1], np.arange(m - 1), [m - 1]])  # knot count -> interval (see splines)
            self.col_of_count = (np.arange(self.n_in)[:, None] * m + interval).reshape(-1)
            self.count_offset = (np.arange(self.n_in) * (m + 1))[:, None]
            self.q = splines.poly_coef_matrix(grid, k).numpy()  # (in, nb, (2k + 1) * M)
            r = k + 1  # offsets p * out + j of the terms (power p, output j) in the scatter of _poly_coef_grad
            self.term_offsets = (np.arange(r)[:, None] * self.n_out + np.arange(self.n_out)).reshape(r, -1, 1, 1)
            self.q_low = np.ascontiguousarray(self.q[:, :, : (k + 1) * m].transpose(0, 2, 1))

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale_sp, scale_base)``, times the mask of a pruned layer."""
        sb, sp = self.p[1], self.p[2]
        if self.mask is None:
            return sp, sb
        return sp * self.mask, sb * self.mask

    def forward(self, x: np.ndarray | None):
        """``(y (out, batch), mag (out, in), saved)``; ``x`` ``(in, batch)`` (``None`` for the data layer)."""
        w_sp, w_base = self.weights()
        ceff = self.p[0] * w_sp[:, :, None]  # (out, in, nb)
        if self.data is not None:
            base, basis = self.data
            phi = np.matmul(ceff.transpose(1, 0, 2), basis)  # (in, out, batch)
            phi += w_base.T[:, :, None] * base[:, None, :]
            return phi.sum(0), np.abs(phi).sum(-1).T / phi.shape[-1], (phi, w_sp, w_base, None)
        k, m, n, n_in, n_out = self.k, self.m, x.shape[1], self.n_in, self.n_out
        base, dbase = _base(self.base_name, x)
        cmp = x[None] >= self.knots  # (M, in, batch); NaN counts no knot
        count = cmp.view(np.uint8).sum(0, dtype=np.uint8).astype(np.intp) + self.count_offset
        col = self.col_of_count[count]  # (in, batch): column i * M + interval
        t = x - self.flat_grid[col]  # (in, batch)
        # per-interval polynomials, rows (power, output), columns (input, interval): gathering the columns of the
        # samples leaves them innermost (torch's index_select, on the same memory: faster than numpy's take here)
        a = np.matmul(ceff.transpose(1, 0, 2), self.q).reshape(n_in, n_out, 2 * k + 1, m)
        table = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 1, 0, 3)).reshape((2 * k + 1) * n_out, -1))
        rows = table.index_select(1, torch.from_numpy(col.reshape(-1))).numpy().reshape(2 * k + 1, n_out, n_in, n)
        spline = rows[k] * t  # (out, in, batch)
        for p in range(k - 1, 0, -1):
            spline += rows[p]
            spline *= t
        spline += rows[0]
        dspline = rows[2 * k].copy()  # the derivative's k coefficients, rows k + 1 .. 2k
        for p in range(2 * k - 1, k, -1):
            dspline *= t
            dspline += rows[p]
        phi = spline
        phi += w_base[:, :, None] * base  # (out, in, batch)
        return phi.sum(1), np.abs(phi).sum(-1) / n, (phi, w_sp, w_base, (base, dbase, col, t, dspline))

    def backward(self, saved, g_y: np.ndarray, g_mag: np.ndarray, need_x: bool) -> np.ndarray | None:
        """Write the gradients of ``coef, scale_base, scale_sp`` into ``.grad``; the input's gradient if ``need_x``.
        ``g_y``: ``(out, batch)``, ``g_mag``: ``(out, in)``."""
        phi, w_sp, w_base, hidden = saved
        n = g_y.shape[1]
        coef = self.p[0]
        g_coef, g_sb, g_sp = self.g[0], self.g[1], self.g[2]
        if hidden is None:  # the data layer, laid out (in, out, batch)
            base, basis = self.data
            g_phi = np.sign(phi)
            g_phi *= g_mag.T[:, :, None] / n
            g_phi += g_y[None]
            g_ceff = np.matmul(g_phi, basis.transpose(0, 2, 1)).transpose(1, 0, 2)  # (out, in, nb)
            gsb = np.matmul(g_phi, base[:, :, None])[:, :, 0].T if g_sb is not None else None
            g_x = None
        else:
            base, dbase, col, t, dspline = hidden
            g_phi = np.sign(phi)  # (out, in, batch)
            g_phi *= g_mag[:, :, None] / n
            g_phi += g_y[:, None, :]
            g_ceff = self._poly_coef_grad(g_phi, col, t)
            gsb = (g_phi * base).sum(-1) if g_sb is not None else None
            g_x = None
            if need_x:
                dspline *= g_phi
                g_base = g_phi * w_base[:, :, None]
                if self.n_out == 1:
                    g_x, g_base = dspline[0], g_base[0]
                else:
                    g_x, g_base = dspline.sum(0), g_base.sum(0)
                g_base *= dbase
                g_x += g_base
        if g_coef is not None:
            np.multiply(g_ceff, w_sp[:, :, None], out=g_coef)
        if g_sp is not None:
            val = (g_ceff * coef).sum(-1)
            np.copyto(g_sp, val if self.mask is None else val * self.mask)
        if g_sb is not None:
            np.copyto(g_sb, gsb if self.mask is None else gsb * self.mask)
        return g_x

    def _poly_coef_grad(self, g_phi: np.ndarray, col: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Gradient ``(out, in, nb)`` of the effective coefficients: the per-interval sums of ``g_phi * t^p``
        (one scatter-add into the forward's table layout) mapped back through the polynomial matrix."""
        k, m, n_out, n_in = self.k, self.m, self.n_out, self.n_in
        r = k + 1
        parts = np.empty((r, *g_phi.shape), dtype=g_phi.dtype)  # (power, out, in, batch)
        parts[0] = g_phi
        for p in range(1, r):
            np.multiply(parts[p - 1], t, out=parts[p])
        # entry (input, interval, power, output) of every term
        idx = (col * (r * n_out) + self.term_offsets).reshape(-1)
        sums = np.zeros(n_in * m * r * n_out, dtype=g_phi.dtype)
        torch.from_numpy(sums).scatter_add_(0, torch.from_numpy(idx), torch.from_numpy(parts.reshape(-1)))
        g_a = sums.reshape(n_in, m, r, n_out).transpose(0, 3, 2, 1).reshape(n_in, n_out, r * m)
        return np.matmul(g_a, self.q_low).transpose(1, 0, 2)


class _Nodes:
    """A layer's subnode affine map and :class:`~kanlens.layers.mult.NodeMap` (sums pass, products multiply), on
    ``(subnode, batch)`` arrays."""

    def __init__(self, node_map) -> None:
        self.identity, self.a, self.n_nodes = node_map.identity, node_map.a, node_map.n_nodes
        self.idx, self.pos = node_map.idx.cpu().numpy(), node_map.pos.cpu().numpy()

    def forward(self, y: np.ndarray, sub_scale: np.ndarray, sub_bias: np.ndarray):
        """Nodes ``(n_nodes, batch)`` of the subnodes ``sub_bias + y * sub_scale``, and the gathered factors."""
        u = y * sub_scale[:, None]
        u += sub_bias[:, None]
        if self.identity:
            return u, None
        padded = np.concatenate([u, np.ones((1, u.shape[1]), u.dtype)])  # row n_sub: the missing factors' ones
        factors = padded[self.idx].reshape(self.n_nodes, self.a, -1)
        return factors.prod(1), factors

    def backward(self, g: np.ndarray, factors, y: np.ndarray, sub_scale: np.ndarray, g_scale, g_bias) -> np.ndarray:
        """The gradient wrt ``y`` given the nodes' gradient ``g``; writes the subnode scale's and bias's."""
        if factors is not None:
            if self.a == 2:
                others = factors[:, ::-1]
            else:  # the product of the other factors (no division)
                ones = np.ones_like(factors[:, :1])
                before = np.concatenate([ones, np.cumprod(factors[:, :-1], 1)], 1)
                after = np.concatenate([np.cumprod(factors[:, :0:-1], 1)[:, ::-1], ones], 1)
                others = before * after
            g = (g[:, None] * others).reshape(self.n_nodes * self.a, -1)[self.pos]
        if g_scale is not None:
            np.copyto(g_scale, (g * y).sum(-1))
        if g_bias is not None:
            np.copyto(g_bias, g.sum(-1))
        return g * sub_scale[:, None]


class SmallStack:
    """``MSE + lamb * sum_l (L1 + entropy)(mag_l)`` of a fused stack and its gradient, in numpy (module docstring).

    Built once per optimizer step for fixed data ``x``, labels ``y``, grids and parameter tensors; valid while
    none of these tensors is replaced (parameters may change in place, as LBFGS does).
    """

    def __init__(self, layers: list[_Layer], y: np.ndarray, dtype: torch.dtype) -> None:
        self.layers, self.y, self.dtype = layers, y, dtype

    @classmethod
    def build(cls, x: torch.Tensor, y: torch.Tensor, cfg: tuple, params: list[torch.Tensor],
              need: tuple) -> SmallStack | None:
        """The numpy objective of the stack ``(cfg, params)`` (see :func:`kanlens.layers.stack.stack_forward`) on
        ``(x, y)``, or ``None`` where it does not apply (dtype, device, base function, a gradient wanted for ``x``,
        a parameter whose ``.grad`` is missing, a layer too wide to gain).

        Shapes:
            x: ``(batch, width_in[0])``, y: ``(batch, width_in[-1])``.
        """
        stride = 5 if len(cfg[0]) < 5 or cfg[0][4] is None else 7  # 7: with subnode scale and bias
        if (x.dtype not in SMALL_DTYPES or x.device.type != "cpu" or need[0] or y.dtype != x.dtype
                or len(params) != stride * len(cfg) or y.shape != (x.shape[0], params[-stride + 3].shape[0])
                or x.shape[0] == 0):
            return None
        for i, p in enumerate(params):
            if p.dtype != x.dtype or p.device.type != "cpu" or (need[1 + i] and p.grad is None):
                return None
            if need[1 + i] and not p.grad.is_contiguous():
                return None
        layers = []
        for l, (mask, grid, k, base_name, *node_map) in enumerate(cfg):
            n_out, n_in, nb = params[stride * l].shape
            if base_name not in NUMPY_BASES or grid.shape[1] > _MAX_KNOTS:
                return None
            # a layer after the first gathers 2k + 1 polynomial coefficients per edge and sample: for wide layers
            # (the torch kernel's rule for its dense path) and large batches torch's kernel is faster
            if l > 0 and ((2 * k + 1) * n_out > 2 * (nb + 2 * k + 1)
                          or (2 * k + 1) * n_out * n_in * x.shape[0] > _MAX_GATHER):
                return None
            if n_out * n_in * x.shape[0] > _MAX_GATHER:  # the per-edge activations of a large first layer
                return None
            data = None
            if l == 0:
                basis = splines.basis_by_input(x, grid, k)[0]  # cached for the very same x (the training data)
                xt = np.ascontiguousarray(x.detach().numpy().T)
                with np.errstate(all="ignore"):
                    data = (_base(base_name, xt)[0], basis.numpy())
            lay = _Layer(mask, grid, k, base_name, params[stride * l : stride * l + stride], data)
            lay.g = [g if need[1 + stride * l + i] else None for i, g in enumerate(lay.g)]
            lay.nodes = _Nodes(node_map[0]) if node_map and node_map[0] is not None else None
            layers.append(lay)
        return cls(layers, np.ascontiguousarray(y.detach().numpy().T), x.dtype)

    def objective(self, lamb: float, lamb_l1: float, lamb_entropy: float):
        """``(total, reg, mse, backward)``: 0-dim tensors of the objective, the penalty and the MSE, and a function
        that writes the gradient of ``total`` into the parameters' ``.grad`` (call it once, after this)."""
        with np.errstate(all="ignore"):
            x, saved, mags = None, [], []
            for lay in self.layers:
                y, mag, sv = lay.forward(x)
                z, nodes_saved = (y, None) if lay.nodes is None else lay.nodes.forward(y, lay.p[5], lay.p[6])
                saved.append((sv, z, y, nodes_saved))
                mags.append(mag)
                x = z * lay.p[3][:, None]
                x += lay.p[4][:, None]
            diff = x - self.y
            mse = np.float32(np.mean(np.square(diff)))
            reg, g_mags = 0.0, []
            for mag in mags:
                if mag.size <= _LIST_MAX_EDGES:
                    value, grad = l1_entropy_lists(mag.tolist(), lamb_l1, lamb_entropy)
                    grad = np.array(grad, dtype=np.float64)
                else:
                    value, grad = _l1_entropy(mag, lamb_l1, lamb_entropy)
                reg += value
                g_mags.append((grad * lamb).astype(mag.dtype))
            reg = np.float32(reg)
            total = np.float32(mse + np.float32(lamb) * reg)

        def backward() -> None:
            with np.errstate(all="ignore"):
                g = diff * np.float32(2.0 / diff.size)
                for l in range(len(self.layers) - 1, -1, -1):
                    lay = self.layers[l]
                    sv, z, y, nodes_saved = saved[l]
                    if lay.g[3] is not None:
                        np.copyto(lay.g[3], (g * z).sum(-1))
                    if lay.g[4] is not None:
                        np.copyto(lay.g[4], g.sum(-1))
                    g = g * lay.p[3][:, None]
                    if lay.nodes is not None:
                        g = lay.nodes.backward(g, nodes_saved, y, lay.p[5], lay.g[5], lay.g[6])
                    g = lay.backward(sv, g, g_mags[l], l > 0)

        out = torch.tensor([float(total), float(reg), float(mse)], dtype=self.dtype)
        return out[0], out[1], out[2], backward
