"""Figures of KANs: the network diagram, one edge, a layer's edges, training curves (and conv kernels).

Every function returns a matplotlib ``Figure``, accepts ``path=`` (.png / .svg / .pdf, written only when given)
and, where it makes sense, ``ax=``. matplotlib is imported on first use, never by ``import kanlens``;
``plt.show()`` is never called, so everything works headless (Agg).

Example:
    >>> from kanlens.plotting import plot_kan, plot_history
    >>> fig = plot_kan(model, dataset["train_input"], path="kan.png")
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from ._common import save_figure
from .edge import plot_edge
from .history import plot_history
from .layer import plot_layer
from .network import plot_kan

__all__ = ["plot_edge", "plot_history", "plot_kan", "plot_layer", "save_figure"]

# Conv-kernel figures live in .conv (another module's owner); loaded on first access so a missing or broken conv
# module never breaks the KAN figures.
_CONV = ("plot_conv_kernels", "plot_conv_response", "plot_conv_responses")


def __getattr__(name: str) -> Any:
    if (name in _CONV or name.startswith("plot_conv")) and importlib.util.find_spec(f"{__name__}.conv"):
        module = importlib.import_module(f"{__name__}.conv")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    names = set(globals()) | set(__all__)
    if importlib.util.find_spec(f"{__name__}.conv") is not None:
        names |= set(_CONV)
    return sorted(names)
