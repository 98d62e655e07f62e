"""pykan 0.2 (``MultKAN``) methods of :class:`kanlens.KAN` that the core model does not need.

:class:`PykanMethods` is a mixin of thin delegations: the work lives in :mod:`kanlens.pykan_inspect` (activations,
attribution by layer, interactions), :mod:`kanlens.surgery` (editing masks and nodes, growing and reordering
networks), :mod:`kanlens.checkpoints` (pykan's versioned checkpoints, in a folder you name) and
:mod:`kanlens.hypothesis` (separability, symmetry, ``tree``). Names, argument names and defaults are pykan's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import nn

    from .model import KAN

__all__ = ["PykanMethods"]


class PykanMethods:
    """pykan's ``MultKAN`` methods (mixed into :class:`kanlens.KAN`)."""

    def __call__(self, *args: Any, singularity_avoiding: bool = False, y_th: float = 10.0, **kwargs: Any):
        """``model(x)``; pykan's ``model(x, singularity_avoiding=True, y_th=...)`` is accepted too: kanlens always
        evaluates symbolic functions in their singularity-safe form (see
        :class:`kanlens.symbolic.library.SymbolicFunction`), so the options change nothing."""
        if not isinstance(singularity_avoiding, bool):
            raise TypeError(f"singularity_avoiding must be a bool, got {singularity_avoiding!r}")
        return super().__call__(*args, **kwargs)  # type: ignore[misc]

    # ------------------------------------------------------------------ pykan's attribute names
    @property
    def act_fun(self) -> nn.ModuleList:
        """pykan's ``model.act_fun``: the spline layers (:class:`kanlens.KANLayer`, tensors stored ``(out, in)``,
        where pykan's ``mask`` is ``(in, out)``)."""
        return self.layers  # type: ignore[attr-defined]

    @property
    def symbolic_fun(self) -> nn.ModuleList:
        """pykan's ``model.symbolic_fun``: the symbolic layers (:class:`kanlens.SymbolicKANLayer`)."""
        return self.symbolic  # type: ignore[attr-defined]

    @property
    def feature_score(self):
        """pykan's ``model.feature_score``: input attribution on the last batch, a tensor ``(width[0],)`` that can
        also be called, ``model.feature_score(x)``, to score another batch (kanlens's method form). pykan averages
        over outputs where kanlens sums (the same for one output)."""
        from .pykan_inspect import feature_score

        return feature_score(self)

    @property
    def n_edge(self) -> int:
        """pykan's ``model.n_edge``: the number of active spline edges."""
        from .pykan_inspect import n_edge

        return n_edge(self)

    @property
    def connection_cost(self) -> torch.Tensor:
        """pykan's ``model.connection_cost`` on the last batch (see :func:`kanlens.pykan_inspect.connection_cost`)."""
        from .pykan_inspect import connection_cost

        return connection_cost(self)

    # ------------------------------------------------------------------ inspection (pykan_inspect.py)
    @property
    def input_id(self) -> torch.Tensor:
        """pykan's ``model.input_id``: the original indices ``(n_in,)`` (long) of the inputs the model kept after
        ``prune_input`` (``0 .. n_in - 1`` when none was removed)."""
        ids = self.config.input_ids if self.config.input_ids is not None else range(self.width_in[0])
        return torch.tensor(list(ids), dtype=torch.long)

    @property
    def cache_data(self) -> torch.Tensor | None:
        """pykan's ``model.cache_data``: the input ``(batch, n_in)`` of the last forward pass that kept its
        activations (``save_act``; detached), ``None`` before one."""
        return self.acts[0] if self.acts else None

    def get_act(self, x: torch.Tensor | dict | None = None) -> None:
        """pykan's ``get_act``: run ``x`` (default: the last batch) so plots and scores use it."""
        from .pykan_inspect import get_act

        return get_act(self, x)

    def get_fun(self, l: int, i: int, j: int, *, plot: bool = True):
        """pykan's ``get_fun``: sorted samples ``(inputs, outputs)`` of edge ``(l, i, j)`` and (``plot=True``) a
        small plot."""
        from .pykan_inspect import get_fun

        return get_fun(self, l, i, j, plot=plot)

    def get_range(self, l: int, i: int, j: int, verbose: bool = True):
        """pykan's ``get_range``: ``(x_min, x_max, y_min, y_max)`` of edge ``(l, i, j)`` on the last batch."""
        from .pykan_inspect import get_range

        return get_range(self, l, i, j, verbose=verbose)

    def attribute(self, *args: Any, **kwargs: Any):
        """Attribution scores: pykan's ``attribute(l=None, i=None, out_score=None, plot=True)`` and kanlens's
        ``attribute(x)`` (a first argument that is not an int, or ``x=``): see
        :func:`kanlens.pykan_inspect.attribute` and :func:`kanlens.pruning.attribute`."""
        from ._checks import is_int

        if (args and not (args[0] is None or is_int(args[0]))) or "x" in kwargs:
            from . import pruning

            if args:
                kwargs["x"] = args[0]
                args = args[1:]
            if args:
                raise TypeError("attribute(x, ...): pass l, i, out_score as keywords")
            return pruning.attribute(self, kwargs.pop("x"), **kwargs)
        from .pykan_inspect import attribute

        return attribute(self, *args, **kwargs)

    def node_attribute(self) -> list[torch.Tensor]:
        """pykan's ``node_attribute``: per layer ``l >= 1`` the attribution of its nodes to the inputs."""
        from .pykan_inspect import node_attribute

        return node_attribute(self)

    def feature_interaction(self, l: int, neuron_th: float = 1e-2, feature_th: float = 1e-2) -> dict:
        """pykan's ``feature_interaction``: how many nodes of layer ``l`` use each group of inputs."""
        from .pykan_inspect import feature_interaction

        return feature_interaction(self, l, neuron_th=neuron_th, feature_th=feature_th)

    def reg(self, reg_metric: str, lamb_l1: float, lamb_entropy: float, lamb_coef: float,
            lamb_coefdiff: float) -> torch.Tensor:
        """pykan's ``reg`` on the last batch (see :func:`kanlens.pykan_fit.pykan_reg`)."""
        from .pykan_fit import pykan_reg

        return pykan_reg(self, self.layer_inputs(None)[0], reg_metric, lamb_l1, lamb_entropy, lamb_coef,  # type: ignore[attr-defined]
                         lamb_coefdiff)

    def get_reg(self, reg_metric: str, lamb_l1: float, lamb_entropy: float, lamb_coef: float,
                lamb_coefdiff: float) -> torch.Tensor:
        """pykan's ``get_reg`` (= :meth:`reg`)."""
        return self.reg(reg_metric, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)

    def evaluate(self, dataset: dict[str, torch.Tensor]) -> dict[str, float]:
        """pykan's ``evaluate``: test RMSE, number of edges, grid size."""
        from .pykan_inspect import evaluate

        return evaluate(self, dataset)

    def get_params(self):
        """pykan's ``get_params`` (= ``parameters()``)."""
        return self.parameters()  # type: ignore[attr-defined]

    def tree(self, x: torch.Tensor | None = None, in_var=None, style: str = "tree", sym_th: float = 1e-3,
             sep_th: float = 1e-1, skip_sep_test: bool = False, verbose: bool = False):
        """pykan's ``tree``: the model's tree of symmetric groups of inputs (a matplotlib Figure); see
        :func:`kanlens.hypothesis.plot_tree`."""
        from .hypothesis import plot_tree

        if x is None:
            x = self.layer_inputs(None)[0]  # type: ignore[attr-defined]
        return plot_tree(self, x, in_var=in_var, style=style, sym_th=sym_th, sep_th=sep_th,
                         skip_sep_test=skip_sep_test, verbose=verbose)

    # ------------------------------------------------------------------ surgery (surgery.py)
    def prune_edge(self, threshold: float = 3e-2, log_history: bool = True, **kwargs: Any) -> KAN:
        """pykan's ``prune_edge``: mask low-attribution edges in place (their means folded into biases); returns
        the model itself. See :func:`kanlens.pruning.prune_edge`."""
        from . import pruning

        out = pruning.prune_edge(self, threshold=threshold, **kwargs)
        self._logged("prune_edge", log_history)
        return out

    def set_mode(self, l: int, i: int, j: int, mode: str, mask_n: float | None = None) -> None:
        """pykan's ``set_mode``: edge ``(l, i, j)`` spline (``"n"``), symbolic (``"s"``), both or neither."""
        from .surgery import set_mode

        return set_mode(self, l, i, j, mode, mask_n)

    def remove_edge(self, l: int, i: int, j: int, log_history: bool = True) -> None:
        """pykan's ``remove_edge``: mask spline edge ``(l, i, j)`` in place."""
        from .surgery import remove_edge

        remove_edge(self, l, i, j)
        self._logged("remove_edge", log_history)

    def remove_node(self, l: int, i: int, mode: str = "all", log_history: bool = True) -> None:
        """pykan's ``remove_node``: mask every edge into (``"down"``) and/or out of (``"up"``) node ``(l, i)``."""
        from .surgery import remove_node

        remove_node(self, l, i, mode)
        self._logged("remove_node", log_history)

    def swap(self, l: int, i1: int, i2: int, log_history: bool = True) -> None:
        """pykan's ``swap``: exchange nodes ``i1`` and ``i2`` of hidden layer ``l`` (the function is unchanged)."""
        from .surgery import swap

        swap(self, l, i1, i2)
        self._logged("swap", log_history)

    def auto_swap_l(self, l: int) -> None:
        """pykan's ``auto_swap_l``: reorder the nodes of layer ``l`` to lower :attr:`connection_cost`."""
        from .surgery import auto_swap_l

        return auto_swap_l(self, l)

    def auto_swap(self) -> None:
        """pykan's ``auto_swap``: :meth:`auto_swap_l` on every hidden layer."""
        from .surgery import auto_swap

        auto_swap(self)
        self._logged("auto_swap")

    def expand_depth(self) -> None:
        """pykan's ``expand_depth``: append an identity layer (symbolic ``x`` edges), in place."""
        from .surgery import expand_depth

        expand_depth(self)
        self._logged("expand_depth")

    def expand_width(self, layer_id: int, n_added_nodes: int, sum_bool: bool = True, mult_arity: int = 2) -> None:
        """pykan's ``expand_width``: add ``n_added_nodes`` unconnected sum nodes to layer ``layer_id``, in place."""
        from .surgery import expand_width

        expand_width(self, layer_id, n_added_nodes, sum_bool=sum_bool, mult_arity=mult_arity)
        self._logged("expand_width")

    def perturb(self, mag: float = 1.0, mode: str = "non-intrusive") -> None:
        """pykan's ``perturb``: switch spline edges back on around symbolic ones (``"all"``, ``"non-intrusive"``,
        ``"minimal"``)."""
        from .surgery import perturb

        perturb(self, mag=mag, mode=mode)
        self._logged("perturb")

    def module(self, start_layer: int, chain: str) -> None:
        """pykan's ``module``: cut the edges between a group of nodes and the rest, e.g. ``"[0,1]->[1]->[0]"``."""
        from .surgery import module

        module(self, start_layer, chain)
        self._logged("module")

    def initialize_from_another_model(self, another_model: KAN, x: torch.Tensor) -> KAN:
        """pykan's ``initialize_from_another_model``: this model (same widths, any grid) takes over the other's
        functions, fitted on ``x``; returns ``self``."""
        from .surgery import initialize_from_another_model

        return initialize_from_another_model(self, another_model, x)

    def initialize_grid_from_another_model(self, model: KAN, x: torch.Tensor) -> None:
        """pykan's ``initialize_grid_from_another_model``: adapt this model's grids to the other model's
        activations on ``x``."""
        from .surgery import initialize_grid_from_another_model

        return initialize_grid_from_another_model(self, model, x)

    def unfix_symbolic_all(self, log_history: bool = True) -> None:
        """pykan's ``unfix_symbolic_all``: every edge back to its spline."""
        for l in range(self.depth):  # type: ignore[attr-defined]
            for i, j in self.symbolic[l].fixed_edges():  # type: ignore[attr-defined]
                self.unfix_symbolic(l, i, j, log_history=False)  # type: ignore[attr-defined]
        self._logged("unfix_symbolic_all", log_history)

    def disable_symbolic_in_fit(self, lamb: float):
        """pykan's ``disable_symbolic_in_fit``: ``(old save_act, old symbolic_enabled)``; kanlens's fit decides this
        itself, so nothing changes."""
        return self.save_act, self.config.symbolic_enabled  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ checkpoints (checkpoints.py)
    def _logged(self, method_name: str, log_history: bool = True) -> None:
        """pykan's automatic version after an edit, only for a model with a version folder (``track``)."""
        if log_history and getattr(self, "ckpt_path", None) is not None:
            self.log_history(method_name)

    def saveckpt(self, path: str = "model", *, overwrite: bool = False) -> None:
        """pykan's ``saveckpt``: write the model to the checkpoint folder ``path`` (JSON + tensors, no pickle)."""
        from .checkpoints import saveckpt

        return saveckpt(self, path, overwrite=overwrite)

    @staticmethod
    def loadckpt(path: str = "model") -> KAN:
        """pykan's ``KAN.loadckpt(path)``."""
        from .checkpoints import loadckpt

        return loadckpt(path)

    def log_history(self, method_name: str) -> None:
        """pykan's ``log_history``: save a new version to ``model.ckpt_path`` (only when you set one)."""
        from .checkpoints import log_history

        return log_history(self, method_name)

    def rewind(self, model_id: str) -> KAN:
        """pykan's ``rewind``: version ``model_id`` ("round.state") as the start of a new round."""
        from .checkpoints import rewind

        return rewind(self, model_id)

    def checkout(self, model_id: str) -> KAN:
        """pykan's ``checkout``: load version ``model_id`` ("round.state")."""
        from .checkpoints import checkout

        return checkout(self, model_id)

    def history(self, k: int | str = "all") -> list[str]:
        """pykan's ``history``: the last ``k`` lines of the version log (returned; pykan prints them)."""
        from .checkpoints import history

        return history(self, k)
