"""The KAN model: a stack of spline (and optional symbolic) layers with node-level affine maps.

The layers are in :mod:`kanlens.layers` (``spline``, ``symbolic``, ``mult`` for product nodes, ``stack`` for the
fused multi-layer kernel that training evaluates through :meth:`KAN.stack_args`); :class:`KANConfig` and the
argument checks are in :mod:`kanlens.config`. User-facing pykan names (``fit``, ``prune``, ``auto_symbolic``,
...) are the functions of the modules that implement them, bound to the model (:class:`_Delegation`: same
signature and docstring, imported on first use since those modules build on this one), so this file stays about
the model itself.
"""

from __future__ import annotations

import copy
import importlib
import types
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._checks import as_int, check_device, check_tensor
from .config import DTYPES, KANConfig, build_config, dtype_name
from .hooks import HookPoint, run_with_cache
from .layers.dense import composition_arithmetic
from .layers.mult import NodeLayout, NodeMap, node_layout
from .layers.spline import KANLayer
from .layers.stack import stack_apply
from .layers.symbolic import SymbolicKANLayer
from .pykan_api import PykanMethods
from .utils import warn_user

__all__ = ["KAN", "KANConfig", "MultKAN"]




class _Delegation:
    """A :class:`KAN` method that is the function ``kanlens<module>.<name>(model, ...)``, bound to the model.

    ``model.prune`` *is* :func:`kanlens.pruning.prune` with ``model`` as first argument: same signature, same
    docstring (``help(model.prune)``), nothing to keep in step. The target module is imported on first use: this
    is the documented lazy import of the pykan-style convenience methods (``pruning``, ``symbolic``, ``training``
    and ``graph`` build on this module, so it cannot import them at module level).
    """

    def __init__(self, module: str, name: str | None = None) -> None:
        self.module, self.name = module, name

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    def __get__(self, obj: object, owner: type | None = None):
        target = getattr(importlib.import_module(self.module, __package__), self.name)
        return target if obj is None else types.MethodType(target, obj)


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
        config, trainable = build_config(width, grid, k, seed, dtype, symbolic_enabled, config, kwargs)
        if not isinstance(save_act, bool):
            raise TypeError(f"save_act must be a bool, got {save_act!r}")
        if device is not None:
            device = check_device(device)
        self.config = config
        self.save_act = save_act
        dt = DTYPES[config.dtype]
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
        """Number of layers."""
        return len(self.layers)

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.layers[0].grid.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the parameters (float32 or float64)."""
        return self.layers[0].grid.dtype

    @property
    def grid(self) -> int:
        """Grid intervals per spline (``config.grid``)."""
        return self.config.grid

    @property
    def k(self) -> int:
        """Spline order (``config.k``)."""
        return self.config.k

    @property
    def symbolic_enabled(self) -> bool:
        """Whether symbolic edges are evaluated (``False``: splines only, faster)."""
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

    def stack_args(self) -> tuple[tuple, list[torch.Tensor]] | None:
        """``(cfg, params)`` for the fused kernel (:func:`kanlens.layers.stack.stack_apply`, ``stack_forward``), or
        ``None`` when the fused path does not apply (active symbolic edges, hooked edges, a base function without
        known derivative). ``params`` are the model's own parameters, in the kernel's order."""
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

    def forward_with_magnitudes(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Output and per-edge spline magnitudes ``mean_b |phi|`` of every layer (training's sparsity path: the
        fused kernel when :meth:`stack_args` allows; no input checks, nothing saved in ``acts``). The output equals
        :meth:`forward`.

        Shapes:
            x: ``(batch, width_in[0])`` -> ``(batch, width_in[-1])`` and one ``(out_l, in_l)`` per layer.
        """
        args = self.stack_args()
        if args is not None:
            return stack_apply(x, *args)
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
        with composition_arithmetic():  # the activations of earlier releases, bit for bit (see layers.dense)
            for l in range(self.depth):
                self.layers[l].update_grid(x)
                if l + 1 < self.depth:  # the last layer's output is not needed
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

    fit = _Delegation(".training")

    # ------------------------------------------------------------------ scores & pruning (scores.py, pruning.py)
    edge_scores = _Delegation(".scores")
    node_scores = _Delegation(".scores")
    prune = _Delegation(".pruning")
    prune_node = _Delegation(".pruning")
    prune_input = _Delegation(".pruning")
    to_networkx = _Delegation(".graph")

    # ------------------------------------------------------------------ symbolic (symbolic/)
    suggest_symbolic = _Delegation(".symbolic.fit")
    fix_symbolic = _Delegation(".symbolic.fit")
    unfix_symbolic = _Delegation(".symbolic.fit")
    auto_symbolic = _Delegation(".symbolic.fit")

    def symbolic_formula(self, var=None, **kwargs: Any):
        """pykan's pair ``(formulas, variables)``: one sympy expression per output and the input symbols.

        ``model.symbolic_formula()[0][0]`` is the first output's formula, as in pykan's tutorials, in pykan's
        variables ``x_1, x_2, ...`` (so ``f.subs('x_1', 0.3)`` works);
        :func:`kanlens.symbolic.formula.symbolic_formula` returns just the list. Options: ``var`` (input names or
        sympy expressions), ``normalizer`` / ``output_normalizer`` (pykan's ``(mean, std)`` pairs: the formula in
        un-normalized inputs and outputs), ``simplify``, ``round``.
        """
        import sympy

        from .symbolic import formula

        if var is None:  # pykan's names x_1, x_2, ... (kanlens's formula functions say x1, x2, ...)
            var = [f"x_{k + 1}" for k in self.input_id.tolist()]
        exprs = formula.symbolic_formula(self, var=var, **kwargs)
        return exprs, [v if isinstance(v, sympy.Expr) else sympy.Symbol(str(v)) for v in var]

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
        if self.dtype in DTYPES.values():
            self.config.dtype = dtype_name(self.dtype)
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


#: pykan 0.2's class name (``from kan.MultKAN import MultKAN``; KAN 2.0): the same class as :class:`KAN`, which
#: takes multiplication nodes through ``width=[2, [5, 2], 1]`` and ``mult_arity``.
MultKAN = KAN
