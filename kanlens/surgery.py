"""pykan's in-place model surgery: edge modes and masks, removing nodes, reordering, growing, perturbing.

Every function edits the model in place, as pykan's methods do. Functions that change widths
(:func:`expand_depth`, :func:`expand_width`) rebuild the affected layers with the old edges copied exactly, so the
model computes the same function afterwards; :func:`swap` and :func:`auto_swap` only reorder nodes. Only sum nodes:
pykan's ``expand_width(sum_bool=False)`` (multiplication nodes) is refused here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch
from torch import nn

from ._checks import as_int, check_choice, check_edge, check_tensor

if TYPE_CHECKING:
    from .model import KAN

__all__ = [
    "auto_swap",
    "auto_swap_l",
    "expand_depth",
    "expand_width",
    "initialize_from_another_model",
    "initialize_grid_from_another_model",
    "module",
    "perturb",
    "remove_edge",
    "remove_node",
    "set_mode",
    "swap",
]

MODES = ("n", "s", "sn", "ns", "none")


def _edge(model: KAN, l: int, i: int, j: int) -> tuple[int, int, int]:
    check_edge(model, l, i, j)  # output index j counts subnodes with multiplication nodes
    l, i, j = int(l), int(i), int(j)
    return l, i, j


def _sum_nodes_only(model: KAN, what: str) -> None:
    """Node surgery below indexes nodes as pykan's sum-node models do; refuse models with product nodes."""
    if model.node_layout.has_mult:
        raise NotImplementedError(f"{what} on a model with multiplication nodes is not supported: its node ids "
                                  "would be ambiguous (sum node vs factor); prune() keeps product nodes whole")


@torch.no_grad()
def set_mode(model: KAN, l: int, i: int, j: int, mode: str, mask_n: float | None = None) -> None:
    """pykan's ``set_mode``: ``"n"`` spline only, ``"s"`` symbolic only, ``"sn"`` both (spline mask ``mask_n``,
    default 1), anything else neither. A symbolic edge without a function (``"0"``) contributes 0."""
    l, i, j = _edge(model, l, i, j)
    if mode == "s":
        m_n, m_s = 0.0, 1.0
    elif mode == "n":
        m_n, m_s = 1.0, 0.0
    elif mode in ("sn", "ns"):
        m_n, m_s = (1.0 if mask_n is None else float(mask_n)), 1.0
    else:
        m_n, m_s = 0.0, 0.0
    model.layers[l].mask[j, i] = m_n
    sym = model.symbolic[l]
    sym.mask[j, i] = m_s
    sym.sync_mask()
    if m_s:
        model.config.symbolic_enabled = True


@torch.no_grad()
def remove_edge(model: KAN, l: int, i: int, j: int) -> None:
    """pykan's ``remove_edge``: the spline edge ``(l, i, j)`` gets mask 0 (a symbolic edge there stays)."""
    l, i, j = _edge(model, l, i, j)
    model.layers[l].mask[j, i] = 0.0


@torch.no_grad()
def remove_node(model: KAN, l: int, i: int, mode: str = "all") -> None:
    """pykan's ``remove_node``: mask the edges into node ``(l, i)`` (``"down"``), out of it (``"up"``) or both."""
    _sum_nodes_only(model, "remove_node")
    l = as_int("l", l, 0)
    if l > model.depth:
        raise IndexError(f"l = {l} is out of range: the model has {model.depth + 1} layers of nodes")
    i = as_int("i", i, 0)
    if i >= model.width[l]:
        raise IndexError(f"i = {i} is out of range: layer {l} has {model.width[l]} nodes")
    if mode in ("down", "all") and l > 0:
        model.layers[l - 1].mask[i, :] = 0.0
        for ii in range(model.width[l - 1]):
            if (ii, i) in model.symbolic[l - 1].fixed_edges():
                model.symbolic[l - 1].unfix(ii, i)
    if mode in ("up", "all") and l < model.depth:
        model.layers[l].mask[:, i] = 0.0
        for jj in range(model.width[l + 1]):
            if (i, jj) in model.symbolic[l].fixed_edges():
                model.symbolic[l].unfix(i, jj)


def _hidden(model: KAN, l: int) -> int:
    l = as_int("l", l, 1)
    if l >= model.depth:
        raise IndexError(f"l = {l} must be a hidden layer (1..{model.depth - 1})")
    return l


@torch.no_grad()
def _permute(model: KAN, l: int, order: list[int]) -> None:
    """Reorder the nodes of hidden layer ``l`` (``new node k = old node order[k]``)."""
    n_prev, n_next = model.width[l - 1], model.width[l + 1]
    model.layers[l - 1] = model.layers[l - 1].subset(list(range(n_prev)), order)
    model.symbolic[l - 1] = model.symbolic[l - 1].subset(list(range(n_prev)), order)
    model.layers[l] = model.layers[l].subset(order, list(range(n_next)))
    model.symbolic[l] = model.symbolic[l].subset(order, list(range(n_next)))
    idx = torch.as_tensor(order, dtype=torch.long, device=model.node_scale[l - 1].device)
    model.node_scale[l - 1].copy_(model.node_scale[l - 1][idx].clone())
    model.node_bias[l - 1].copy_(model.node_bias[l - 1][idx].clone())


def swap(model: KAN, l: int, i1: int, i2: int) -> None:
    """pykan's ``swap``: exchange nodes ``i1`` and ``i2`` of hidden layer ``l``; the output is unchanged."""
    _sum_nodes_only(model, "swap")
    l = _hidden(model, l)
    i1, i2 = as_int("i1", i1, 0), as_int("i2", i2, 0)
    n = model.width[l]
    if i1 >= n or i2 >= n:
        raise IndexError(f"layer {l} has {n} nodes, got i1={i1}, i2={i2}")
    order = list(range(n))
    order[i1], order[i2] = i2, i1
    _permute(model, l, order)


def auto_swap_l(model: KAN, l: int, x: torch.Tensor | None = None) -> None:
    """pykan's ``auto_swap_l``: for each node in turn, move it to the position with the lowest connection cost."""
    _sum_nodes_only(model, "auto_swap_l")
    from .pykan_inspect import connection_cost

    l = _hidden(model, l)
    if x is None:
        x = model.layer_inputs(None)[0]
    n = model.width[l]
    for i in range(n):
        costs = []
        for j in range(n):
            swap(model, l, i, j)
            costs.append(float(connection_cost(model, x)))
            swap(model, l, i, j)
        swap(model, l, i, min(range(n), key=costs.__getitem__))


def auto_swap(model: KAN, x: torch.Tensor | None = None) -> None:
    """pykan's ``auto_swap``: :func:`auto_swap_l` on every hidden layer (on the last batch, or ``x``)."""
    _sum_nodes_only(model, "auto_swap")
    if x is None:
        x = model.layer_inputs(None)[0]
    for l in range(1, model.depth):
        auto_swap_l(model, l, x)
    with torch.no_grad():
        model(x)


def _new_layers(model: KAN, n_in: int, n_out: int):
    from .layers.spline import KANLayer
    from .layers.symbolic import SymbolicKANLayer

    c, dt, dev = model.config, model.dtype, model.device
    spline = KANLayer(n_in, n_out, c.grid, c.k, noise_scale=c.noise_scale, base_fun=c.base_fun,
                      grid_range=c.grid_range, grid_eps=c.grid_eps, dtype=dt, device=dev,
                      generator=torch.Generator().manual_seed(c.seed))
    sym = SymbolicKANLayer(n_in, n_out, library=model.symbolic[0].library, dtype=dt, device=dev)
    return spline, sym


@torch.no_grad()
def _grown(model: KAN, l: int, n_in: int, n_out: int):
    """Layer ``l`` widened to ``n_in x n_out``: old edges copied, new edges masked off."""
    old, old_sym = model.layers[l], model.symbolic[l]
    spline, sym = _new_layers(model, n_in, n_out)
    o, i = old.out_dim, old.in_dim
    spline.mask.zero_()
    spline.mask[:o, :i] = old.mask
    spline.grid[:i] = old.grid
    spline.coef[:o, :i] = old.coef
    spline.scale_base[:o, :i] = old.scale_base
    spline.scale_sp[:o, :i] = old.scale_sp
    spline.scale_base.requires_grad_(old.scale_base.requires_grad)
    spline.scale_sp.requires_grad_(old.scale_sp.requires_grad)
    sym.affine[:o, :i] = old_sym.affine
    names = [["0"] * n_in for _ in range(n_out)]
    for a, row in enumerate(old_sym.function_names()):
        names[a][:i] = row
    sym.set_function_names(names)
    sym.mask[:o, :i] = old_sym.mask
    sym.sync_mask()
    return spline, sym


@torch.no_grad()
def expand_width(model: KAN, layer_id: int, n_added_nodes: int, sum_bool: bool = True, mult_arity: int = 2) -> None:
    """pykan's ``expand_width``: ``n_added_nodes`` new sum nodes in hidden layer ``layer_id``, with all their edges
    masked off (the output is unchanged; train or :func:`perturb` to use them)."""
    _sum_nodes_only(model, "expand_width")
    l = _hidden(model, layer_id)
    n_add = as_int("n_added_nodes", n_added_nodes, 1)
    if not sum_bool:
        raise NotImplementedError("expand_width(sum_bool=False) adds multiplication nodes; build the model with "
                                  "them instead (KAN(width=[..., [n_sum, n_mult], ...], mult_arity=...))")
    w = model.width
    model.layers[l - 1], model.symbolic[l - 1] = _grown(model, l - 1, w[l - 1], w[l] + n_add)
    model.layers[l], model.symbolic[l] = _grown(model, l, w[l] + n_add, w[l + 1])
    dt, dev = model.dtype, model.device
    at = model.config.affine_trainable
    model.node_scale[l - 1] = nn.Parameter(torch.cat([model.node_scale[l - 1].detach(),
                                                      torch.ones(n_add, dtype=dt, device=dev)]), requires_grad=at)
    model.node_bias[l - 1] = nn.Parameter(torch.cat([model.node_bias[l - 1].detach(),
                                                     torch.zeros(n_add, dtype=dt, device=dev)]), requires_grad=at)
    model.config.width[l] += n_add
    model.acts = []


@torch.no_grad()
def expand_depth(model: KAN) -> None:
    """pykan's ``expand_depth``: append a layer computing the identity (symbolic ``x`` on the diagonal, splines
    masked off), so the output is unchanged."""
    _sum_nodes_only(model, "expand_depth")
    from .hooks import HookPoint

    n = model.width[-1]
    spline, sym = _new_layers(model, n, n)
    spline.mask.zero_()
    for i in range(n):
        sym.fix(i, i, "x", (1.0, 0.0, 1.0, 0.0))
    dt, dev, at = model.dtype, model.device, model.config.affine_trainable
    model.layers.append(spline)
    model.symbolic.append(sym)
    model.node_scale.append(nn.Parameter(torch.ones(n, dtype=dt, device=dev), requires_grad=at))
    model.node_bias.append(nn.Parameter(torch.zeros(n, dtype=dt, device=dev), requires_grad=at))
    model.hook_in.append(HookPoint())
    model.hook_out.append(HookPoint())
    model.config.width.append(n)
    model.config.symbolic_enabled = True
    model.acts = []


@torch.no_grad()
def perturb(model: KAN, mag: float = 1.0, mode: str = "non-intrusive") -> None:
    """pykan's ``perturb``: give spline edges mask ``mag`` by how they touch symbolic edges.

    An edge is typed by whether its input node and its output node have any symbolic edge (``a``ctive / ``i``nactive)
    and, for ``aa``, whether it is symbolic itself. ``"all"`` perturbs every edge, ``"non-intrusive"`` only ``ai``
    and ``ii`` edges (and switches on the last layer's splines with zero scales, so the output is unchanged),
    ``"minimal"`` only symbolic ``aa`` edges.
    """
    check_choice("mode", mode, ("non-intrusive", "all", "minimal"))
    on = {"all": {"aa_a", "aa_i", "ai", "ia", "ii"}, "non-intrusive": {"ai", "ii"}, "minimal": {"aa_a"}}[mode]
    for l in range(model.depth):
        names = model.symbolic[l].function_names()  # [out][in]
        last = l == model.depth - 1 and mode == "non-intrusive"
        n_in, n_out = model.layers[l].in_dim, model.layers[l].out_dim
        for j in range(n_out):
            for i in range(n_in):
                if last:
                    model.layers[l].mask[j, i] = 1.0
                    model.layers[l].scale_base[j, i] = 0.0
                    model.layers[l].scale_sp[j, i] = 0.0
                    continue
                in_active = any(names[jj][i] != "0" for jj in range(n_out))
                out_active = any(v != "0" for v in names[j])
                kind = ("a" if in_active else "i") + ("a" if out_active else "i")
                if kind == "aa":
                    kind += "_i" if names[j][i] == "0" else "_a"
                if kind in on:
                    model.layers[l].mask[j, i] = float(mag)


_GROUP = re.compile(r"^\[\s*\d+(\s*,\s*\d+)*\s*\]$")


@torch.no_grad()
def module(model: KAN, start_layer: int, chain: str) -> None:
    """pykan's ``module``: ``chain = "[0,1]->[1]->[0]"`` names node groups of consecutive layers from
    ``start_layer``; every edge between a group and the nodes outside it is cut (spline and symbolic)."""
    _sum_nodes_only(model, "module")
    start = as_int("start_layer", start_layer, 0)
    groups = [g.strip() for g in str(chain).split("->")]
    if len(groups) < 2 or not all(_GROUP.match(g) for g in groups):
        raise ValueError(f"chain must look like '[0,1]->[1]->[0]', got {chain!r}")
    ids = [[int(v) for v in g[1:-1].split(",")] for g in groups]
    if start + len(ids) - 1 > model.depth:
        raise ValueError(f"chain of {len(ids)} groups from layer {start} passes the model's {model.depth} layers")
    for k in range(len(ids) - 1):
        l = start + k
        ins, outs = ids[k], ids[k + 1]
        if max(ins) >= model.width[l] or max(outs) >= model.width[l + 1]:
            raise IndexError(f"chain {chain!r}: node ids out of range for layer {l} ({model.width[l]} -> "
                             f"{model.width[l + 1]})")
        in_other = [i for i in range(model.width[l]) if i not in ins]
        out_other = [j for j in range(model.width[l + 1]) if j not in outs]
        for layer in (model.layers[l], model.symbolic[l]):
            for a, b in ((outs, in_other), (out_other, ins)):
                if a and b:
                    layer.mask[torch.tensor(a)[:, None], torch.tensor(b)[None, :]] = 0.0
        model.symbolic[l].sync_mask()


@torch.no_grad()
def initialize_grid_from_another_model(model: KAN, other: KAN, x: torch.Tensor) -> None:
    """pykan's ``initialize_grid_from_another_model``: adapt this model's grids to ``other``'s layer inputs on
    ``x`` (this model's functions are refitted on the new grids)."""
    check_tensor("x", x, ndim=2, last_dim=other.width_in[0])
    if model.width != other.width:
        raise ValueError(f"the models have different widths: {model.width} vs {other.width}")
    acts = other.layer_inputs(x)
    for l in range(model.depth):
        model.layers[l].update_grid(acts[l])


@torch.no_grad()
def initialize_from_another_model(model: KAN, other: KAN, x: torch.Tensor) -> KAN:
    """pykan's ``initialize_from_another_model``: this model (same widths and spline order, any grid size) takes
    ``other``'s edge functions (least squares on grids adapted to ``x``), masks, scales, node affine maps and
    symbolic edges. Returns ``model``."""
    import copy

    check_tensor("x", x, ndim=2, last_dim=other.width_in[0])
    if model.width != other.width:
        raise ValueError(f"the models have different widths: {model.width} vs {other.width}")
    if model.config.k != other.config.k:
        raise ValueError(f"the models have different spline orders k: {model.config.k} vs {other.config.k}")
    acts = other.layer_inputs(x.to(other.device, other.dtype))
    for l in range(model.depth):
        new = other.layers[l].refine(model.config.grid, acts[l]).to(model.device, model.dtype)
        model.layers[l] = new
        model.symbolic[l] = copy.deepcopy(other.symbolic[l]).to(model.device, model.dtype)
        model.node_scale[l].copy_(other.node_scale[l])
        model.node_bias[l].copy_(other.node_bias[l])
    model.config.symbolic_enabled = other.config.symbolic_enabled
    with torch.no_grad():
        model(x.to(model.device, model.dtype))
    return model
