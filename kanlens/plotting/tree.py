"""The tree of symmetric input groups drawn by :func:`kanlens.hypothesis.plot_tree` (pykan's ``model.tree()``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._common import pyplot, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw_tree"]


def _names(n: int, in_var: Sequence | None) -> list[str]:
    if in_var is None:
        return [f"$x_{{{i + 1}}}$" for i in range(n)]
    if len(in_var) != n:
        raise ValueError(f"in_var needs {n} names (one per input), got {len(in_var)}")
    import sympy

    return [f"${sympy.latex(v)}$" if isinstance(v, sympy.Basic) else str(v) for v in in_var]


def draw_tree(levels: list, arities: list, props: list, n: int, *, in_var: Sequence | None = None,
              style: str = "tree", path: str | os.PathLike | None = None) -> Figure:
    """Inputs at the bottom; each group of a level is a node above its children: separable groups as joining
    lines (``+`` / ``*`` marked for the top level's ``Add`` / ``Mul``), ``Id`` as a straight line, untested or
    non-separable groups as boxes. ``style="box"``: every group as a box labelled with its property."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * n), 1.2 * len(levels) + 1))
    delta, a, b, y0 = 1 / n, 0.3, 0.15, 0.5
    last_centers: list[float] = []
    width_y = 2 * b

    def box(cx: float, cy: float, wx: float, wy: float) -> None:
        ax.plot([cx - wx / 2, cx + wx / 2, cx + wx / 2, cx - wx / 2, cx - wx / 2],
                [cy - wy / 2, cy - wy / 2, cy + wy / 2, cy + wy / 2, cy - wy / 2], color="k")

    for l in range(len(levels) - 1):
        mols = levels[l + 1]
        centers, used = [], 0
        for i, _mol in enumerate(mols):
            start = sum(len(m) for m in mols[:i])
            end = start + len(mols[i])
            cx, cy = (start + (end - 1 - start) / 2) * delta + delta / 2, (l + 0.5) * y0
            wx = (end - start - 1 + 2 * a) * delta
            prop = props[l][i]
            if style == "box":
                box(cx, cy, wx, width_y)
                ax.text(cx, cy, prop, fontsize=12, ha="center", va="center")
            elif prop in ("GS", "Add", "Mul"):
                for j in range(arities[l][i]):
                    x0 = (start + j) * delta + delta / 2 if l == 0 else last_centers[used + j]
                    ax.plot([x0, cx], [cy - b, cy + b], color="blue")
                if prop in ("Add", "Mul"):
                    ax.text(cx, cy + b, "+" if prop == "Add" else "*", ha="center", va="center", color="red",
                            fontsize=28)
            elif prop == "Id":
                ax.plot([cx, cx], [cy - b, cy + b], color="black")
            else:
                box(cx, cy, wx, width_y)
            used += arities[l][i]
            ax.plot([cx, cx], [cy + b, cy + y0 - b], color="k")
            centers.append(cx)
        last_centers = centers
    names = _names(n, in_var)
    for i in range(n):
        xi = (i + 0.5) * delta
        ax.plot([xi, xi], [0, y0 / 2 - b], color="k")
        ax.text(xi, -0.05 * max(1, len(levels) - 1), names[levels[0][i][0]], fontsize=14, ha="center")
    ax.set_xlim(0, 1)
    ax.axis("off")
    save_figure(fig, path, release=path is not None)
    return fig
