"""pykan's ``kan.utils`` / ``kan.spline`` / ``kan.LBFGS`` helpers under their names, on kanlens's own code.

``create_dataset_from_data``, ``augment_input``, ``SYMBOLIC_LIB`` / ``add_symbolic``, ``B_batch``,
``extend_grid(grid, k_extend)``, ``sparse_mask``, ``batch_jacobian``, ``batch_hessian``, ``model2param``,
``get_derivative`` (Jacobian / Hessian of the loss in the parameters, through :func:`torch.func.functional_call`)
and the ``LBFGS`` optimizer with pykan's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import splines
from ._checks import as_int, check_choice, check_tensor

if TYPE_CHECKING:
    from .model import KAN

__all__ = [
    "LBFGS",
    "SYMBOLIC_LIB",
    "B_batch",
    "add_symbolic",
    "augment_input",
    "batch_hessian",
    "batch_jacobian",
    "create_dataset_from_data",
    "extend_grid",
    "get_derivative",
    "model2param",
    "sparse_mask",
]


def create_dataset_from_data(inputs: torch.Tensor, labels: torch.Tensor, train_ratio: float = 0.8,
                             device: torch.device | str = "cpu", *, seed: int = 0) -> dict[str, torch.Tensor]:
    """pykan's ``create_dataset_from_data``: split ``(inputs, labels)`` at random into a train part
    (``int(num * train_ratio)`` rows) and a test part (the rest). The split uses a local generator (``seed``), where
    pykan draws from numpy's global one.

    Shapes:
        inputs: ``(num, n_in)``, labels: ``(num, n_out)`` (or ``(num,)`` class indices).
    """
    check_tensor("inputs", inputs, ndim=2)
    if not isinstance(labels, torch.Tensor) or labels.shape[0] != inputs.shape[0]:
        raise ValueError(f"labels must be a tensor with {inputs.shape[0]} rows (one per input), got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    if isinstance(train_ratio, bool) or not isinstance(train_ratio, (int, float)) or not 0 < train_ratio < 1:
        raise ValueError(f"train_ratio must be in (0, 1), got {train_ratio!r}")
    num = inputs.shape[0]
    n_train = int(num * train_ratio)
    if n_train < 1 or n_train >= num:
        raise ValueError(f"train_ratio={train_ratio} of {num} rows leaves an empty train or test split")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(as_int("seed", seed)))
    train_id, test_id = perm[:n_train].sort().values, perm[n_train:].sort().values
    return {
        "train_input": inputs[train_id].detach().to(device),
        "test_input": inputs[test_id].detach().to(device),
        "train_label": labels[train_id].detach().to(device),
        "test_label": labels[test_id].detach().to(device),
    }


def augment_input(orig_vars: Sequence[Any], aux_vars: Sequence[Any], x):
    """pykan's ``augment_input``: prepend columns ``aux_vars`` (sympy expressions of ``orig_vars``) to ``x`` (a
    tensor ``(num, len(orig_vars))``, or a dataset dict whose train and test inputs are augmented in place).

    Shapes:
        x: ``(num, n)`` -> ``(num, len(aux_vars) + n)``.
    """
    if isinstance(x, dict):
        x["train_input"] = augment_input(orig_vars, aux_vars, x["train_input"])
        x["test_input"] = augment_input(orig_vars, aux_vars, x["test_input"])
        return x
    import sympy

    check_tensor("x", x, ndim=2, last_dim=len(orig_vars))
    cols = []
    for expr in aux_vars:
        fn = sympy.lambdify(list(orig_vars), expr, "numpy")
        args = [x[:, i].detach().cpu().numpy() for i in range(len(orig_vars))]
        value = np.array(np.broadcast_to(np.asarray(fn(*args), dtype=np.float64), (x.shape[0],)))
        cols.append(torch.as_tensor(value, dtype=x.dtype, device=x.device)[:, None])
    return torch.cat([*cols, x], dim=1)


def _symbolic_lib():
    from .symbolic.library import default_library

    return default_library(special=True)


def add_symbolic(name: str, fun: Callable[[torch.Tensor], torch.Tensor], c: float = 1,
                 fun_singularity: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
    """pykan's ``add_symbolic``: make ``name`` (a sympy ``Function(name)`` in formulas) usable by every new library
    (``default_library()``, ``fix_symbolic``, ``auto_symbolic(lib=[..., name])``) and :data:`SYMBOLIC_LIB`.
    ``c`` is its complexity. The one piece of global state in kanlens, as in pykan; models built earlier keep
    their libraries."""
    import sympy

    from .symbolic.library import register_global

    register_global(name, fun, sympy.Function(name), c, fun_singularity)


class _SymbolicLib:
    """pykan's ``SYMBOLIC_LIB``: name -> ``(torch_fn, sympy_fn, complexity, singularity-safe fn)``, read from the
    current default library (so :func:`add_symbolic` shows up)."""

    def _lib(self):
        return _symbolic_lib()

    def __getitem__(self, name: str):
        f = self._lib()[name]
        return (f.torch_fn, f.sympy_fn, f.complexity, f.safe_fn)

    def __contains__(self, name: object) -> bool:
        return name in self._lib()

    def __iter__(self):
        return iter(self._lib().names)

    def __len__(self) -> int:
        return len(self._lib())

    def keys(self) -> list[str]:
        return list(self._lib().names)

    def __repr__(self) -> str:
        return f"SYMBOLIC_LIB({', '.join(self.keys())})"


SYMBOLIC_LIB = _SymbolicLib()


def B_batch(x: torch.Tensor, grid: torch.Tensor, k: int = 0, extend: bool = True,
            device: str | torch.device | None = None) -> torch.Tensor:
    """pykan's ``B_batch``: all B-spline bases of order ``k`` on the (already extended) knots ``grid``.

    ``extend`` and ``device`` are accepted for pykan's signature (pykan ignores ``extend`` too).

    Shapes:
        x: ``(batch, in_dim)``, grid: ``(in_dim, n_knots)`` -> ``(batch, in_dim, n_knots - k - 1)``.
    """
    k = as_int("k", k, 0)
    if k == 0:
        xe, g = x[:, :, None], grid[None]
        return ((xe >= g[:, :, :-1]) & (xe < g[:, :, 1:])).to(x.dtype)
    return splines.b_spline_basis(x, grid, k)


def extend_grid(grid: torch.Tensor, k_extend: int = 0) -> torch.Tensor:
    """pykan's ``extend_grid``: ``k_extend`` equally spaced knots added on each side.

    Shapes:
        grid: ``(in_dim, G + 1)`` -> ``(in_dim, G + 1 + 2 k_extend)``.
    """
    return splines.extend_grid(grid, as_int("k_extend", k_extend, 0))


def sparse_mask(in_dim: int, out_dim: int) -> torch.Tensor:
    """pykan's ``sparse_mask`` ``(in_dim, out_dim)``: each node connected to its nearest node(s) of the other layer
    (nodes evenly spaced in ``[0, 1]``); ``KAN(..., sparse_init=True)`` starts from it."""
    from .layers.spline import nearest_mask

    return nearest_mask(as_int("in_dim", in_dim, 1), as_int("out_dim", out_dim, 1))


def batch_jacobian(func: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, create_graph: bool = False,
                   mode: str = "scalar") -> torch.Tensor:
    """Per-sample gradients of ``func`` (rows are independent): ``mode="scalar"`` the gradient of the first
    output ``(batch, d)``; ``"vector"`` every output ``(batch, n_out, d)`` (pykan's ``batch_jacobian``)."""
    check_choice("mode", mode, ("scalar", "vector"))
    x = x if x.requires_grad else x.detach().requires_grad_(True)  # keep the graph of an outer derivative
    with torch.enable_grad():
        y = func(x)
        outs = range(1) if mode == "scalar" else range(y.shape[1])
        rows = [torch.autograd.grad(y[:, o].sum(), x, create_graph=True)[0] for o in outs]
    jac = rows[0] if mode == "scalar" else torch.stack(rows, 1)
    return jac if create_graph else jac.detach()


def batch_hessian(func: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  create_graph: bool = False) -> torch.Tensor:
    """Per-sample Hessians of the first output of ``func`` (pykan's ``batch_hessian``).

    Shapes:
        x: ``(batch, d)`` -> ``(batch, d, d)``.
    """
    x = x if x.requires_grad else x.detach().requires_grad_(True)
    with torch.enable_grad():
        g = torch.autograd.grad(func(x)[:, 0].sum(), x, create_graph=True)[0]
        rows = [torch.autograd.grad(g[:, i].sum(), x, create_graph=True, allow_unused=True)[0]
                for i in range(x.shape[1])]
    rows = [torch.zeros_like(x) if r is None else r for r in rows]
    h = torch.stack(rows, 1)
    return h if create_graph else h.detach()


def model2param(model: torch.nn.Module) -> torch.Tensor:
    """pykan's ``model2param``: every parameter flattened into one vector (``model.parameters()`` order)."""
    return torch.cat([p.reshape(-1) for p in model.parameters()])


def get_derivative(model: KAN, inputs: torch.Tensor, labels: torch.Tensor, derivative: str = "hessian",
                   loss_mode: str = "pred", reg_metric: str = "edge_forward_spline_n", lamb: float = 0.0,
                   lamb_l1: float = 1.0, lamb_entropy: float = 0.0) -> torch.Tensor:
    """pykan's ``get_derivative``: Jacobian ``(1, P)`` or Hessian ``(1, P, P)`` of the loss in the flattened
    parameters (:func:`model2param` order). ``loss_mode``: ``"pred"`` (MSE), ``"reg"`` (pykan's regulariser under
    ``reg_metric``, see :func:`kanlens.pykan_fit.pykan_reg`) or ``"all"`` (MSE + ``lamb`` * regulariser).
    pykan's default ``reg_metric='w'`` belongs to its MLP; for a KAN it means ``"edge_forward_spline_n"``."""
    from torch.func import functional_call

    from .pykan_fit import pykan_reg

    check_choice("derivative", derivative, ("hessian", "jacobian"))
    check_choice("loss_mode", loss_mode, ("pred", "reg", "all"))
    if reg_metric == "w":
        reg_metric = "edge_forward_spline_n"
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def loss(p: torch.Tensor) -> torch.Tensor:
        params = {n: v.reshape(s) for n, v, s in zip(names, p.split(sizes), shapes)}
        total = p.new_zeros(())
        if loss_mode in ("pred", "all"):
            total = total + torch.mean((functional_call(model, params, (inputs,)) - labels) ** 2)
        if loss_mode in ("reg", "all"):
            saved = {n: t for n, t in model.named_parameters()}
            try:
                _swap(model, params)
                reg = pykan_reg(model, inputs, reg_metric, lamb_l1, lamb_entropy)
            finally:
                _swap(model, saved)
            total = total + (reg if loss_mode == "reg" else lamb * reg)
        return total

    p = model2param(model).detach()
    if derivative == "jacobian":
        return torch.autograd.functional.jacobian(loss, p)[None]
    return torch.autograd.functional.hessian(loss, p)[None]


def _swap(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> None:
    """Point the model's parameters at ``params`` (tensors, possibly non-leaf) for one evaluation."""
    for name, value in params.items():
        *path, leaf = name.split(".")
        mod = model
        for part in path:
            mod = getattr(mod, part) if not part.isdigit() else mod[int(part)]
        mod._parameters[leaf] = value


class LBFGS(torch.optim.LBFGS):
    """pykan's ``kan.LBFGS``: :class:`torch.optim.LBFGS` with the settings pykan's ``fit`` uses by default
    (``history_size=10``, ``line_search_fn="strong_wolfe"``, tolerances ``1e-32``)."""

    def __init__(self, params, lr: float = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-32, tolerance_change: float = 1e-32, tolerance_ys: float = 1e-32,
                 history_size: int = 10, line_search_fn: str | None = "strong_wolfe") -> None:
        super().__init__(params, lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                         tolerance_change=tolerance_change, history_size=history_size,
                         line_search_fn=line_search_fn)
        self.tolerance_ys = tolerance_ys
