"""The KAN model: a stack of spline (and optional symbolic) layers with node-level affine maps.

User-facing pykan names (``fit``, ``prune``, ``auto_symbolic``, ``plot``, ...) are thin delegations to the
modules that implement them, so this file stays about the model itself.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .hooks import HookPoint, run_with_cache
from .layers.mult import NodeLayout, NodeMap, node_layout
from .layers.spline import KANLayer, base_fun_name, edge_backward, edge_forward, edge_reference, recompute_grads
from .layers.symbolic import SymbolicKANLayer
from .pykan_api import PykanMethods
from .utils import as_int, check_device, check_tensor, default_dtype, warn_user

__all__ = ["KAN", "KANConfig"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


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


def _normalize_width(width: object, mult_arity: object = 2) -> list:
    """The config form of ``width``: plain ints (``[2, 5, 1]``) without multiplication nodes, else pykan's
    ``[[n_sum, n_mult], ...]`` for every entry; checks ``mult_arity`` against it."""
    return node_layout(width, mult_arity).width()


@dataclasses.dataclass
class KANConfig:
    """Everything needed to rebuild a :class:`KAN` (saved as JSON in checkpoints)."""

    width: list
    grid: int = 5
    k: int = 3
    seed: int = 0
    noise_scale: float = 0.5
    scale_base_mu: float = 0.0
    scale_base_sigma: float = 1.0
    base_fun: str = "silu"
    grid_range: tuple[float, float] = (-1.0, 1.0)
    grid_eps: float = 0.02
    affine_trainable: bool = False
    symbolic_enabled: bool = True
    dtype: str = "float32"
    input_names: list[str] | None = None
    input_ids: list[int] | None = None
    mult_arity: int | list[list[int]] = 2

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["grid_range"] = list(self.grid_range)
        if not any(isinstance(w, (list, tuple)) for w in self.width):
            d.pop("mult_arity")  # no multiplication nodes: the same JSON as before they existed
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KANConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown KANConfig fields {sorted(unknown)}")
        d = dict(d)
        if "grid_range" in d:
            d["grid_range"] = tuple(d["grid_range"])
        return cls(**d)


class KAN(PykanMethods, nn.Module):
    """Kolmogorov-Arnold Network (pykan-compatible vocabulary).

    Args:
        width: nodes per layer, e.g. ``[2, 5, 1]``; an entry ``[n_sum, n_mult]`` adds multiplication nodes
            (pykan's MultKAN: ``[2, [5, 2], 1]`` has 5 sum and 2 product nodes in its hidden layer).
        grid: number of spline grid intervals.
        k: spline order.
        seed: seed of the local generator used for initialisation (global RNGs are never touched).
        device: where parameters live.
        dtype: ``torch.float32`` or ``torch.float64``; default: torch's default dtype, as for ``torch.nn`` layers
            (float32 unless ``torch.set_default_dtype(torch.float64)``).
        save_act: keep the last inputs of every layer (detached) so edge curves can be recomputed later
            (plots, scores); ``False`` keeps nothing.
        symbolic_enabled: evaluate symbolic edges (set ``False`` to use splines only, faster).
        **kwargs: further :class:`KANConfig` fields (``mult_arity``: factors per multiplication node, an int or one
            list per width entry such as ``[[], [2, 3], []]``; ``noise_scale``, ``base_fun``, ``grid_range``...);
            pykan's ``sp_trainable`` / ``sb_trainable`` (freeze the spline / base scales), ``base_fun=torch.nn.SiLU()``
            and its file options ``auto_save``, ``ckpt_path``, ``state_id``, ``round``, ``first_init`` (ignored:
            kanlens writes files only where you ask) are accepted too.

    Shapes:
        ``forward``: ``(batch, width_in[0]) -> (batch, width_in[-1])`` (``width[0] -> width[-1]`` for plain widths).

    Example:
        >>> model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0)
        >>> model(torch.rand(8, 2)).shape
        torch.Size([8, 1])
        >>> KAN(width=[2, [0, 1], 1], mult_arity=2).width  # one product node
        [[2, 0], [0, 1], [1, 0]]
    """

    def __init__(
        self,
        width: Sequence[int] | None = None,
        grid: int = 5,
        k: int = 3,
        *,
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        save_act: bool = True,
        symbolic_enabled: bool = True,
        config: KANConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if config is None:
            if width is None:
                raise ValueError("KAN needs `width`, e.g. KAN(width=[2, 5, 1])")
            kwargs, trainable = _pykan_options(kwargs)
            fields = [f.name for f in dataclasses.fields(KANConfig)]
            for name in kwargs:
                if name not in fields or name in ("width", "grid", "k", "seed", "dtype", "symbolic_enabled"):
                    from .utils import did_you_mean

                    known = [*fields, *_PYKAN_IGNORED, "sp_trainable", "sb_trainable"]
                    raise TypeError(f"unknown KAN option {name!r}{did_you_mean(name, known)}")
            config = KANConfig(
                width=_normalize_width(width, kwargs.get("mult_arity", 2)), grid=as_int("grid", grid, 1),
                k=as_int("k", k, 1), seed=as_int("seed", seed),
                dtype=_dtype_name(default_dtype() if dtype is None else dtype),
                symbolic_enabled=symbolic_enabled, **kwargs,
            )
        else:
            config = copy.deepcopy(config)
            config.width = _normalize_width(config.width, config.mult_arity)
            trainable = {}
        _validate_config(config)
        if not isinstance(save_act, bool):
            raise TypeError(f"save_act must be a bool, got {save_act!r}")
        if device is not None:
            device = check_device(device)
        self.config = config
        self.save_act = save_act
        dt = _DTYPES[config.dtype]
        gen = torch.Generator().manual_seed(config.seed)
        self._layout: NodeLayout = node_layout(config.width, config.mult_arity)
        self._maps: dict[str, list[NodeMap]] = {}
        w, w_sub = self._layout.width_in, self._layout.width_out
        self.layers = nn.ModuleList(
            KANLayer(
                w[l], w_sub[l + 1], config.grid, config.k, noise_scale=config.noise_scale,
                scale_base_mu=config.scale_base_mu, scale_base_sigma=config.scale_base_sigma,
                base_fun=config.base_fun, grid_range=config.grid_range, grid_eps=config.grid_eps,
                generator=gen, dtype=dt, **trainable,
            )
            for l in range(len(w) - 1)
        )
        self.symbolic = nn.ModuleList(SymbolicKANLayer(w[l], w_sub[l + 1], dtype=dt) for l in range(len(w) - 1))
        # Node-level affine maps (pykan's node_scale / node_bias); frozen unless affine_trainable.
        at = config.affine_trainable
        self.node_scale = nn.ParameterList(
            nn.Parameter(torch.ones(w[l + 1], dtype=dt), requires_grad=at) for l in range(len(w) - 1)
        )
        self.node_bias = nn.ParameterList(
            nn.Parameter(torch.zeros(w[l + 1], dtype=dt), requires_grad=at) for l in range(len(w) - 1)
        )
        if self._layout.has_mult:
            # pykan's subnode affine maps, before the products (a pruned edge's mean is folded in here)
            self.subnode_scale = nn.ParameterList(
                nn.Parameter(torch.ones(w_sub[l + 1], dtype=dt), requires_grad=at) for l in range(len(w) - 1)
            )
            self.subnode_bias = nn.ParameterList(
                nn.Parameter(torch.zeros(w_sub[l + 1], dtype=dt), requires_grad=at) for l in range(len(w) - 1)
            )
        self.hook_in = nn.ModuleList(HookPoint() for _ in range(len(w) - 1))
        self.hook_out = nn.ModuleList(HookPoint() for _ in range(len(w) - 1))
        self.acts: list[torch.Tensor] = []
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------ properties
    @property
    def width(self) -> list:
        """Current widths (after pruning, the pruned shape): ints such as ``[2, 5, 1]``, or with multiplication
        nodes pykan's ``[[n_sum, n_mult], ...]`` form (``[[2, 0], [5, 2], [1, 0]]``)."""
        return copy.deepcopy(self.config.width)

    @property
    def width_in(self) -> list[int]:
        """Nodes per layer, sum and product nodes together (pykan's ``width_in``)."""
        return self._layout.width_in

    @property
    def width_out(self) -> list[int]:
        """Subnodes per layer: what the KAN layer before it outputs (pykan's ``width_out``; ``width_in`` without
        multiplication nodes)."""
        return self._layout.width_out

    @property
    def n_sum(self) -> list[int]:
        """Sum nodes of every hidden layer (pykan's ``n_sum``)."""
        return list(self._layout.n_sum[1:-1])

    @property
    def n_mult(self) -> list[int]:
        """Multiplication nodes of every hidden layer (pykan's ``n_mult``)."""
        return self._layout.n_mult[1:-1]

    @property
    def mult_arity(self) -> int | list[list[int]]:
        """Factors per multiplication node: an int, or one list per layer of nodes (pykan's ``mult_arity``)."""
        return copy.deepcopy(self.config.mult_arity)

    @property
    def node_layout(self) -> NodeLayout:
        """Sum/product nodes and arities of every layer (see :class:`kanlens.layers.mult.NodeLayout`)."""
        return self._layout

    def _node_maps(self, device: torch.device) -> list[NodeMap]:
        maps = self._maps.get(str(device))
        if maps is None:
            maps = [NodeMap(self._layout.groups(l + 1), device) for l in range(self.depth)]
            self._maps[str(device)] = maps
        return maps

    def subnodes_to_nodes(self, l: int, y: torch.Tensor) -> torch.Tensor:
        """Layer ``l``'s outputs from its subnodes ``y`` (the summed edges): subnode affine map, products, node
        affine map (only the node affine map without multiplication nodes).

        Shapes:
            y: ``(batch, width_out[l + 1])`` -> ``(batch, width_in[l + 1])``.
        """
        if self._layout.has_mult:
            y = self._node_maps(y.device)[l].reference(self.subnode_scale[l] * y + self.subnode_bias[l])
        return self.node_scale[l] * y + self.node_bias[l]

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def device(self) -> torch.device:
        return self.layers[0].grid.device

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].grid.dtype

    @property
    def grid(self) -> int:
        return self.config.grid

    @property
    def k(self) -> int:
        return self.config.k

    @property
    def symbolic_enabled(self) -> bool:
        return self.config.symbolic_enabled

    @symbolic_enabled.setter
    def symbolic_enabled(self, value: bool) -> None:
        self.config.symbolic_enabled = bool(value)

    # ------------------------------------------------------------------ evaluation
    def _check_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        check_tensor(name, x, ndim=2, last_dim=self.width_in[0], finite=False)
        if x.device != self.device:
            raise ValueError(f"{name} is on {x.device} but the model is on {self.device}; move one with .to()")
        if x.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but the model uses {self.dtype}; cast with .to(dtype)")
        return x

    def _layer_out(self, l: int, x: torch.Tensor) -> torch.Tensor:
        y = self.layers[l](x)
        sym = self.symbolic[l]
        if self.config.symbolic_enabled and sym.is_active():
            y = y + sym(x)
        return self.subnodes_to_nodes(l, self.hook_out[l](y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the network; with ``save_act`` the layer inputs are kept (detached) in ``self.acts``."""
        self._check_input(x)
        acts = []
        for l in range(self.depth):
            x = self.hook_in[l](x)
            if self.save_act:
                acts.append(x.detach())
            x = self._layer_out(l, x)
        if self.save_act:
            acts.append(x.detach())
            self.acts = acts
        return x

    def forward_with_edges(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Forward that also returns the spline edge activations ``(batch, out, in)`` and inputs of every layer.

        Used by sparsity regularisation; the output equals :meth:`forward` (same edges, summed).
        """
        self._check_input(x)
        edges_all, inputs = [], []
        for l in range(self.depth):
            inputs.append(x)
            edges = self.layers[l].forward_edges(x)
            edges_all.append(edges)
            y = edges.sum(-1)
            sym = self.symbolic[l]
            if self.config.symbolic_enabled and sym.is_active():
                y = y + sym(x)
            x = self.subnodes_to_nodes(l, y)
        if self.save_act:
            self.acts = [a.detach() for a in inputs] + [x.detach()]
        return x, edges_all, inputs

    def _stack_args(self) -> tuple[tuple, list[torch.Tensor]] | None:
        """``(cfg, params)`` for :func:`stack_forward`, or ``None`` when the fused path does not apply (active
        symbolic edges, hooked edges, a base function without known derivative)."""
        if (self.config.symbolic_enabled and any(s.is_active() for s in self.symbolic)) or not all(
                layer.fused_ok() for layer in self.layers):
            return None
        mult = self._layout.has_mult
        maps = self._node_maps(self.device) if mult else [None] * self.depth
        cfg = tuple((layer.mask, layer.grid, layer.k, layer.base_fun_name, m) for layer, m in zip(self.layers, maps))
        params = []
        for l, layer in enumerate(self.layers):
            params += [layer.coef, layer.scale_base, layer.scale_sp, self.node_scale[l], self.node_bias[l]]
            if mult:
                params += [self.subnode_scale[l], self.subnode_bias[l]]
        return cfg, params

    def _forward_with_magnitudes(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Output and per-edge spline magnitudes ``mean_b |phi|`` ``(out, in)`` of every layer (training's sparsity
        path; no input checks, nothing saved in ``acts``). The output equals :meth:`forward`."""
        args = self._stack_args()
        if args is not None:
            out = _SparseStack.apply(x, args[0], *args[1])
            return out[0], list(out[1:])
        mags = []
        for l in range(self.depth):
            y, mag = self.layers[l].forward_with_magnitude(x)
            mags.append(mag)
            sym = self.symbolic[l]
            if self.config.symbolic_enabled and sym.is_active():
                y = y + sym(x)
            x = self.subnodes_to_nodes(l, y)
        return x, mags

    def layer_inputs(self, x: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Inputs of every layer (plus the output): from ``x``, or the last batch the model saw.

        Shapes:
            a list of ``depth + 1`` tensors ``(batch, width[l])``.
        """
        if x is None:
            if not self.acts:
                raise ValueError("the model has not seen any data yet (or keeps no activations, e.g. after speed()): "
                                 "pass x, or call model(x) first with model.save_act = True")
            n = self.acts[0].shape[0]
            intervals = max(layer.grid.shape[1] - 2 * layer.k - 1 for layer in self.layers)
            few = max(20, 2 * intervals)
            hint = ("pass x= (e.g. the training inputs), or call model(train_input) first: the last forward pass "
                    "decides what grids, fits, plots and scores see")
            if n < 2:
                raise ValueError(f"the last batch the model saw has {n} sample(s) (a prediction on a single input?); "
                                 + hint)
            if n < few:
                warn_user(f"using the last batch the model saw, which has only {n} samples (fewer than {few}); "
                          + hint)
            return self.acts
        with torch.no_grad():
            self._check_input(x)
            acts = [x]
            for l in range(self.depth):
                acts.append(self._layer_out(l, acts[-1]))
        return acts

    def edge_activations(self, x: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per-edge activations ``(batch, out, in)`` of every layer (spline + symbolic, masked)."""
        acts = self.layer_inputs(x)
        return [self.edge_activations_layer(l, acts[l]) for l in range(self.depth)]

    def edge_activations_layer(self, l: int, x_l: torch.Tensor) -> torch.Tensor:
        """Per-edge activations of layer ``l`` given its inputs ``x_l`` ``(batch, in)`` -> ``(batch, out, in)``."""
        edges = self.layers[l].forward_edges(x_l)
        sym = self.symbolic[l]
        if self.config.symbolic_enabled and sym.is_active():
            edges = edges + sym.forward_edges(x_l)
        return edges

    def run_with_cache(self, x: torch.Tensor, names_filter=None):
        """``(output, ActivationCache)`` for one call; see :func:`kanlens.hooks.run_with_cache`."""
        return run_with_cache(self, x, names_filter=names_filter)

    # ------------------------------------------------------------------ grids
    @torch.no_grad()
    def update_grid(self, x: torch.Tensor) -> None:
        """Adapt every layer's grid to the activations produced by ``x`` (pykan's ``update_grid_from_samples``)."""
        self._check_input(x)
        check_tensor("x", x)
        if x.shape[0] < 2:
            raise ValueError(f"x needs at least 2 samples to adapt grids, got {x.shape[0]}")
        for l in range(self.depth):
            self.layers[l].update_grid(x)
            x = self._layer_out(l, x)

    update_grid_from_samples = update_grid

    @torch.no_grad()
    def refine(self, new_grid: int, x: torch.Tensor | None = None) -> KAN:
        """A new model with ``new_grid`` intervals per spline computing the same function (grid extension).

        Args:
            new_grid: the finer grid size.
            x: samples for adaptive grids (defaults to the last inputs seen, if any; else uniform grids).
        """
        if x is not None:
            self._check_input(x)
            check_tensor("x", x)
            if x.shape[0] < 2:
                raise ValueError(f"x needs at least 2 samples to adapt grids, got {x.shape[0]}")
        new_grid = as_int("new_grid", new_grid, 1)
        acts = self.layer_inputs(x) if (x is not None or self.acts) else None
        new = copy.deepcopy(self)
        new.config.grid = new_grid
        for l in range(self.depth):
            new.layers[l] = self.layers[l].refine(new_grid, None if acts is None else acts[l])
        new.acts = []
        return new

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters that take part in training: ``requires_grad`` ones, without the affine parameters of
        symbolic layers that have no symbolic edge (they do not affect the output)."""
        skip = {id(p) for s in self.symbolic if not s.is_active() for p in s.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in skip]

    # ------------------------------------------------------------------ training (training.py)
    def train(self, mode: bool = True, **kwargs: Any) -> KAN:  # type: ignore[override]
        """``nn.Module.train`` (training mode on or off). pykan 0.1 trained with ``model.train(dataset, ...)``:
        that call is refused with a pointer to :meth:`fit` rather than torch's "mode is expected to be boolean"."""
        if isinstance(mode, dict) or kwargs:
            raise TypeError("model.train(dataset, ...) was pykan 0.1's training call; in kanlens (and pykan 0.2) "
                            "use model.fit(dataset, ...). model.train(mode) only switches training mode")
        return super().train(mode)

    def fit(self, dataset: dict[str, torch.Tensor], **kwargs: Any):
        """Train on ``dataset`` (pykan's ``fit``); see :func:`kanlens.training.fit` for all options."""
        from .training import fit

        return fit(self, dataset, **kwargs)

    # ------------------------------------------------------------------ pruning & scores (pruning.py)
    def edge_scores(self, x: torch.Tensor | None = None) -> list[torch.Tensor]:
        from . import pruning

        return pruning.edge_scores(self, x)

    def node_scores(self, x: torch.Tensor | None = None) -> list[torch.Tensor]:
        from . import pruning

        return pruning.node_scores(self, x)

    def prune(self, node_th: float = 1e-2, edge_th: float = 3e-2, **kwargs: Any) -> KAN:
        from . import pruning

        return pruning.prune(self, node_th=node_th, edge_th=edge_th, **kwargs)

    def prune_node(self, threshold: float = 1e-2, **kwargs: Any) -> KAN:
        from . import pruning

        return pruning.prune_node(self, threshold=threshold, **kwargs)

    def prune_input(self, threshold: float = 1e-2, **kwargs: Any) -> KAN:
        from . import pruning

        return pruning.prune_input(self, threshold=threshold, **kwargs)

    def to_networkx(self, **kwargs: Any):
        from .graph import to_networkx

        return to_networkx(self, **kwargs)

    # ------------------------------------------------------------------ symbolic (symbolic/)
    def suggest_symbolic(self, l: int, i: int, j: int, **kwargs: Any):
        from .symbolic import fit as sfit

        return sfit.suggest_symbolic(self, l, i, j, **kwargs)

    def fix_symbolic(self, l: int, i: int, j: int, name: str, **kwargs: Any):
        from .symbolic import fit as sfit

        return sfit.fix_symbolic(self, l, i, j, name, **kwargs)

    def unfix_symbolic(self, l: int, i: int, j: int) -> None:
        from .symbolic import fit as sfit

        return sfit.unfix_symbolic(self, l, i, j)

    def auto_symbolic(self, **kwargs: Any):
        from .symbolic import fit as sfit

        return sfit.auto_symbolic(self, **kwargs)

    def symbolic_formula(self, var=None, **kwargs: Any):
        """pykan's pair ``(formulas, variables)``: one sympy expression per output and the input symbols.

        ``model.symbolic_formula()[0][0]`` is the first output's formula, as in pykan's tutorials, in pykan's
        variables ``x_1, x_2, ...`` (so ``f.subs('x_1', 0.3)`` works);
        :func:`kanlens.symbolic.formula.symbolic_formula` returns just the list. Options: ``var`` (input names),
        ``simplify``, ``round``.
        """
        from .symbolic import formula

        if var is None:  # pykan's names x_1, x_2, ... (kanlens's formula functions say x1, x2, ...)
            ids = self.config.input_ids if self.config.input_ids is not None else range(self.width_in[0])
            var = [f"x_{int(k) + 1}" for k in ids]
        exprs = formula.symbolic_formula(self, var=var, **kwargs)
        return exprs, formula._variables(self, var)

    # ------------------------------------------------------------------ plotting & io
    def plot(self, x: torch.Tensor | None = None, **kwargs: Any):
        """Draw the network with every learned edge function; returns a matplotlib Figure."""
        from .plotting import plot_kan

        return plot_kan(self, x, **kwargs)

    def save(self, path: str, *, overwrite: bool = False, allow_nonfinite: bool = False):
        """Save to a checkpoint directory (``config.json`` + tensors, no pickle); see :func:`kanlens.io.save`."""
        from .io import save

        return save(self, path, overwrite=overwrite, allow_nonfinite=allow_nonfinite)

    @classmethod
    def load(cls, path: str, *, map_location: torch.device | str | None = None, library=None) -> KAN:
        """Load a checkpoint written by :meth:`save` (weights-only, verified); see :func:`kanlens.io.load`."""
        from .io import load

        return load(path, map_location=map_location, library=library)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        # .to(dtype) / .double() / .float() cast the tensors: keep the config (saved with them) in step
        out = super()._apply(fn, recurse)
        if self.dtype in _DTYPES.values():
            self.config.dtype = _dtype_name(self.dtype)
        return out

    def copy(self) -> KAN:
        """A deep copy (parameters, buffers, symbolic edges, config)."""
        return copy.deepcopy(self)

    def speed(self, compile: bool = False) -> KAN:
        """pykan compatibility: stop keeping activations and skip the (unused) symbolic branch (``compile=True``:
        return ``torch.compile(self)``, as pykan)."""
        self.save_act = False
        self.acts = []
        if not any(s.is_active() for s in self.symbolic):
            self.symbolic_enabled = False  # never drop symbolic edges that are in use
        return torch.compile(self) if compile else self


# pykan KAN options with no effect in kanlens (it never writes files on its own and keeps no history of states)
_PYKAN_IGNORED = ("auto_save", "ckpt_path", "state_id", "round", "first_init")


def _pykan_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
    """Split pykan-only ``KAN`` options off ``kwargs``: dropped (``auto_save``...) or returned as layer flags
    (``sp_trainable``, ``sb_trainable``); clear errors for the ones kanlens cannot honour."""
    kwargs = dict(kwargs)
    for name in _PYKAN_IGNORED:
        kwargs.pop(name, None)
    if "base_fun" in kwargs:
        kwargs["base_fun"] = base_fun_name(kwargs["base_fun"])
    trainable = {}
    for name in ("sp_trainable", "sb_trainable", "sparse_init"):
        if name in kwargs:
            value = kwargs.pop(name)
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r}")
            trainable[name] = value
    return kwargs, trainable


def _validate_config(c: KANConfig) -> None:
    """Range checks of a config (types of grid/k/widths are checked by the layers)."""
    import math

    if not (isinstance(c.grid_eps, (int, float)) and 0.0 <= c.grid_eps <= 1.0):
        raise ValueError(f"grid_eps must be in [0, 1], got {c.grid_eps!r}")
    for name in ("noise_scale", "scale_base_mu", "scale_base_sigma"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    for name in ("input_names", "input_ids"):
        v = getattr(c, name)
        n_in = node_layout(c.width, c.mult_arity).width_in[0]
        if v is not None and len(v) != n_in:
            raise ValueError(f"{name} must have one entry per input ({n_in}), got {len(v)}: {v!r}")
    if c.input_ids is not None and (len(set(c.input_ids)) != len(c.input_ids) or min(c.input_ids) < 0):
        raise ValueError(f"input_ids must be unique non-negative ints, got {c.input_ids!r}")


def _dtype_name(dtype: torch.dtype | str) -> str:
    for name, dt in _DTYPES.items():
        if dtype in (dt, name):
            return name
    raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
