"""kanlens: fast, inspectable Kolmogorov-Arnold Networks with pykan's vocabulary.

Example:
    >>> import torch
    >>> from kanlens import KAN, create_dataset
    >>> f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)
    >>> dataset = create_dataset(f, n_var=2)
    >>> model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0)
    >>> history = model.fit(dataset, opt="LBFGS", steps=50, lamb=0.001, progress=False)
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from . import splines
from .data import create_dataset
from .hooks import ActivationCache, HookPoint, run_with_cache
from .io import CheckpointError, CheckpointNotFoundError, load, save
from .layers.spline import KANLayer
from .model import KAN, KANConfig, MultKAN
from .training import FitHistory, fit

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Heavier or optional parts load on first access (PEP 562) so `import kanlens` never pulls matplotlib/networkx.
_LAZY: dict[str, tuple[str, str]] = {
    # symbolic regression
    "SymbolicKANLayer": ("kanlens.layers.symbolic", "SymbolicKANLayer"),
    "Symbolic_KANLayer": ("kanlens.layers.symbolic", "Symbolic_KANLayer"),
    "SymbolicLibrary": ("kanlens.symbolic.library", "SymbolicLibrary"),
    "default_library": ("kanlens.symbolic.library", "default_library"),
    "fit_affine": ("kanlens.symbolic.fit", "fit_affine"),
    "ex_round": ("kanlens.symbolic.formula", "ex_round"),
    "to_latex": ("kanlens.symbolic.export", "to_latex"),
    "to_string": ("kanlens.symbolic.export", "to_string"),
    "lambdify": ("kanlens.symbolic.export", "lambdify"),
    "symbolic_regression": ("kanlens.symbolic.search", "symbolic_regression"),
    "kanpiler": ("kanlens.compiler", "kanpiler"),
    # pruning and graphs
    "to_networkx": ("kanlens.graph", "to_networkx"),
    "write_graphml": ("kanlens.graph", "write_graphml"),
    # plotting (matplotlib loads on first use)
    "plot_kan": ("kanlens.plotting", "plot_kan"),
    "plot_edge": ("kanlens.plotting", "plot_edge"),
    "plot_layer": ("kanlens.plotting", "plot_layer"),
    "plot_history": ("kanlens.plotting", "plot_history"),
    "plot_conv_kernels": ("kanlens.plotting.conv", "plot_conv_kernels"),
    "plot_conv_response": ("kanlens.plotting.conv", "plot_conv_response"),
    # convolution
    "KANConv1d": ("kanlens.layers.conv", "KANConv1d"),
    "KANConv2d": ("kanlens.layers.conv", "KANConv2d"),
    "KANConvNet": ("kanlens.vision", "KANConvNet"),
    "CNN": ("kanlens.vision", "CNN"),
    "train_classifier": ("kanlens.vision", "train_classifier"),
    "auto_symbolic_conv": ("kanlens.symbolic.conv", "auto_symbolic_conv"),
    "read_idx": ("kanlens.idx", "read_idx"),
    "load_mnist": ("kanlens.idx", "load_mnist"),
    # data-parallel training (torch.distributed)
    "DistributedMismatchError": ("kanlens.distributed", "DistributedMismatchError"),
    # pykan's kan.utils / kan.spline / kan.hypothesis / kan.MLP / kan.LBFGS names
    "create_dataset_from_data": ("kanlens.pykan_utils", "create_dataset_from_data"),
    "augment_input": ("kanlens.pykan_utils", "augment_input"),
    "SYMBOLIC_LIB": ("kanlens.pykan_utils", "SYMBOLIC_LIB"),
    "add_symbolic": ("kanlens.pykan_utils", "add_symbolic"),
    "B_batch": ("kanlens.pykan_utils", "B_batch"),
    "extend_grid": ("kanlens.pykan_utils", "extend_grid"),
    "sparse_mask": ("kanlens.pykan_utils", "sparse_mask"),
    "batch_jacobian": ("kanlens.pykan_utils", "batch_jacobian"),
    "batch_hessian": ("kanlens.pykan_utils", "batch_hessian"),
    "model2param": ("kanlens.pykan_utils", "model2param"),
    "get_derivative": ("kanlens.pykan_utils", "get_derivative"),
    "LBFGS": ("kanlens.pykan_utils", "LBFGS"),
    "MLP": ("kanlens.mlp", "MLP"),
    "detect_separability": ("kanlens.hypothesis", "detect_separability"),
    "test_separability": ("kanlens.hypothesis", "test_separability"),
    "test_general_separability": ("kanlens.hypothesis", "test_general_separability"),
    "test_symmetry": ("kanlens.hypothesis", "test_symmetry"),
    "get_dependence": ("kanlens.hypothesis", "get_dependence"),
    "get_molecule": ("kanlens.hypothesis", "get_molecule"),
    "get_tree_node": ("kanlens.hypothesis", "get_tree_node"),
    "plot_tree": ("kanlens.hypothesis", "plot_tree"),
    # sweeps on a Dask cluster (optional extra: dask loads only when a sweep runs)
    "sweep": ("kanlens.sweeps", "sweep"),
    "SweepReport": ("kanlens.sweeps", "SweepReport"),
    "SweepTask": ("kanlens.sweep_tasks", "SweepTask"),
    "SweepResult": ("kanlens.sweep_tasks", "SweepResult"),
    "SweepError": ("kanlens.sweep_tasks", "SweepError"),
    # scikit-learn front end (optional extra)
    "KANRegressor": ("kanlens.sklearn", "KANRegressor"),
    "KANClassifier": ("kanlens.sklearn", "KANClassifier"),
}

__all__ = [
    "KAN",
    "KANConfig",
    "MultKAN",
    "KANLayer",
    "FitHistory",
    "ActivationCache",
    "CheckpointError",
    "CheckpointNotFoundError",
    "HookPoint",
    "create_dataset",
    "fit",
    "load",
    "run_with_cache",
    "save",
    "splines",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'kanlens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
