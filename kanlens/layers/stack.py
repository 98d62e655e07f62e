"""The fused multi-layer kernel: every spline layer and node affine map of a :class:`~kanlens.KAN` as one
autograd node.

Training's hot path. :meth:`kanlens.KAN.stack_args` gives the ``(cfg, params)`` of a model (or ``None`` when the
fused path does not apply: active symbolic edges, hooked edges, a base function without known derivative);
:func:`stack_apply` evaluates them with autograd (output and per-edge magnitudes, as
:meth:`kanlens.KAN.forward_with_magnitudes`); :func:`stack_forward` / :func:`stack_backward` are the same
computation without autograd, for training loops that form gradients themselves (see :mod:`kanlens.training`);
:func:`stack_reference` is the plain-autograd composition the kernel is tested against (and differentiated through
for higher-order gradients). The per-layer work is in :mod:`kanlens.layers.spline` (``edge_forward`` /
``edge_backward``) and :mod:`kanlens.layers.mult` (product nodes).
"""

from __future__ import annotations

import torch

from .mult import NodeMap
from .spline import edge_backward, edge_forward, edge_reference, recompute_grads

__all__ = ["stack_apply", "stack_backward", "stack_forward", "stack_reference"]


def _stride(cfg) -> int:
    """Parameters per layer in a stack: 5, or 7 with multiplication nodes (subnode scale and bias)."""
    return 5 if _node_map(cfg[0]) is None else 7


def _node_map(entry: tuple) -> NodeMap | None:
    """The node map of a stack ``cfg`` entry (``None``: no multiplication nodes; 4-entry tuples have none)."""
    return entry[4] if len(entry) > 4 else None


def stack_forward(x, cfg, params, need):
    """Spline layers and node affine maps without autograd: ``(output, [mag_l], saved)``.

    ``x`` is treated as data (its dense bases are cached across calls, see
    :func:`kanlens.layers.spline.edge_forward`).

    ``cfg[l] = (mask, grid, k, base_name[, node_map])``; ``params`` the ``(coef, scale_base, scale_sp, node_scale,
    node_bias)`` of every layer, followed by ``(subnode_scale, subnode_bias)`` in a model with multiplication nodes
    (``node_map`` not ``None``: a :class:`~kanlens.layers.mult.NodeMap`); ``need[0]`` / ``need[1 + i]``: whether
    ``x`` / ``params[i]`` need a gradient.
    """
    saved, mags = [], []
    need_x = need[0]
    p = _stride(cfg)
    for l, (mask, grid, k, base_name, *_) in enumerate(cfg):
        node_map = _node_map(cfg[l])
        coef, scale_base, scale_sp, node_scale, node_bias, *sub = params[p * l : p * l + p]
        y, mag, sv = edge_forward(x, coef, scale_base, scale_sp, mask, grid, k, base_name, need_x, data=l == 0)
        mags.append(mag)
        if node_map is None:
            saved.append((sv, y, node_scale))
            x = torch.addcmul(node_bias, y, node_scale)
        else:
            z, factors = node_map.forward(torch.addcmul(sub[1], y, sub[0]))
            saved.append((sv, y, node_scale, z, factors, sub[0], node_map))
            x = torch.addcmul(node_bias, z, node_scale)
        need_x = need_x or any(need[1 + p * l : 1 + p * l + p])  # x of the next layer depends on these
    return x, mags, saved


def stack_reference(x, cfg, params) -> tuple:
    """:func:`stack_forward`'s ``(output, *magnitudes)`` as ordinary autograd ops (differentiable to any order)."""
    mags = []
    p = _stride(cfg)
    for l, (mask, grid, k, base_name, *_) in enumerate(cfg):
        node_map = _node_map(cfg[l])
        coef, scale_base, scale_sp, node_scale, node_bias, *sub = params[p * l : p * l + p]
        y, mag = edge_reference(x, coef, scale_base, scale_sp, mask, grid, k, base_name)
        mags.append(mag)
        if node_map is not None:
            y = node_map.reference(torch.addcmul(sub[1], y, sub[0]))
        x = torch.addcmul(node_bias, y, node_scale)
    return (x, *mags)


def stack_backward(saved, need, g, g_mags):
    """Gradients ``(x, *params)`` (``None`` where not needed) of :func:`stack_forward`'s outputs given the
    gradient ``g`` of the output and ``g_mags[l]`` of the magnitudes (``None``: not used)."""
    grads: list[torch.Tensor | None] = [None] * (len(need) - 1)
    p = (len(need) - 1) // len(saved)
    for l in range(len(saved) - 1, -1, -1):
        sv, y, node_scale, *mult = saved[l]
        nl = need[1 + p * l : 1 + p * l + p]
        z = y if not mult else mult[0]
        if nl[3]:
            grads[p * l + 3] = (g * z).sum(0)
        if nl[4]:
            grads[p * l + 4] = g.sum(0)
        need_x = any(need[: 1 + p * l])
        g_y = g * node_scale
        if mult:  # through the product nodes and the subnode affine map
            _, factors, sub_scale, node_map = mult
            g_y = node_map.backward(g_y, factors)
            if nl[5]:
                grads[p * l + 5] = (g_y * y).sum(0)
            if nl[6]:
                grads[p * l + 6] = g_y.sum(0)
            g_y = g_y * sub_scale
        g_x, *g_layer = edge_backward(sv, g_y, g_mags[l], (need_x, *nl[:3]))
        grads[p * l : p * l + 3] = g_layer
        g = g_x
    return (g, *grads)


class _SparseStack(torch.autograd.Function):
    """All spline layers and node affine maps as one autograd node: ``(output, mag_0, mag_1, ...)``.

    The per-layer work is :func:`kanlens.layers.spline.edge_forward` / ``edge_backward``; one node for the whole
    stack saves the autograd bookkeeping of the per-layer nodes and affine maps at every LBFGS evaluation.
    Call as ``apply(x, cfg, *params)`` (see :func:`stack_forward`). Only for stacks without symbolic edges.
    """

    @staticmethod
    def forward(ctx, x, cfg, *params):  # type: ignore[override]
        ctx.need = (ctx.needs_input_grad[0], *ctx.needs_input_grad[2:])
        out, mags, ctx.saved = stack_forward(x, cfg, params, ctx.need)
        ctx.save_for_backward(x, *params)
        ctx.cfg = cfg
        return (out, *mags)

    @staticmethod
    def backward(ctx, g, *g_mags):  # type: ignore[override]
        if torch.is_grad_enabled():  # create_graph: differentiate the autograd composition instead
            g_x, *grads = recompute_grads(lambda x, *p: stack_reference(x, ctx.cfg, p), tuple(ctx.saved_tensors),
                                          ctx.need, (g, *g_mags))
        else:
            g_x, *grads = stack_backward(ctx.saved, ctx.need, g, g_mags)
        return (g_x, None, *grads)


def stack_apply(x: torch.Tensor, cfg: tuple, params: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The fused stack with autograd: ``(output, [mag_l])``, differentiable in ``x`` and ``params`` (to any order).

    Args:
        x: the stack's input.
        cfg: per-layer ``(mask, grid, k, base_name[, node_map])`` and ``params`` the layer parameters, as returned
            by :meth:`kanlens.KAN.stack_args` (see :func:`stack_forward`).

    Shapes:
        x: ``(batch, width_in[0])`` -> output ``(batch, width_in[-1])``; ``mag_l``: ``(out_l, in_l)``.
    """
    out = _SparseStack.apply(x, cfg, *params)
    return out[0], list(out[1:])
