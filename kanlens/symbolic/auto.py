"""pykan's :func:`auto_symbolic`: every active spline edge of a model fixed to its best library function."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .._checks import check_kwargs
from .affine import AffineFit, fit_library, rank_fits
from .edge_fit import fix_symbolic
from .library import SymbolicLibrary, resolve_library

__all__ = ["AutoSymbolicTable", "EdgeChoice", "auto_symbolic"]

# pykan options with no kanlens counterpart (kanlens fits a, b without pykan's grid search): accepted, ignored
_PYKAN_AUTO = ("a_range", "b_range", "r2_loss_fun", "c_loss_fun", "log_history")


@dataclass
class EdgeChoice:
    """What :func:`auto_symbolic` did with one edge."""

    edge: tuple[int, int, int]
    status: str  # "fixed", "kept" (r2 below threshold), "symbolic" (already), "pruned"
    chosen: AffineFit | None
    candidates: list[AffineFit]
    all_fits: list[AffineFit] = field(default_factory=list, repr=False)


class AutoSymbolicTable(Sequence):
    """Per-edge outcome of :func:`auto_symbolic`; the repr lists candidates with the chosen row marked ``»``."""

    def __init__(self, rows: Sequence[EdgeChoice]) -> None:
        self.rows = list(rows)

    def __getitem__(self, k):  # type: ignore[override]
        return self.rows[k]

    def __len__(self) -> int:
        return len(self.rows)

    def chosen(self) -> dict[tuple[int, int, int], str]:
        """``{(l, i, j): function name}`` for the edges that were fixed."""
        return {r.edge: r.chosen.name for r in self.rows if r.status == "fixed" and r.chosen is not None}

    def __repr__(self) -> str:
        lines = [f"{'edge':>12} {'':2}{'function':>10} {'r2':>14} {'cplx':>4}  c*f(a*x+b)+d"]
        for r in self.rows:
            tag = f"({r.edge[0]},{r.edge[1]},{r.edge[2]})"
            if not r.candidates:
                lines.append(f"{tag:>12}   {r.status}")
                continue
            for k, c in enumerate(r.candidates):
                mark = "»" if (r.chosen is not None and c is r.chosen and r.status == "fixed") else " "
                note = "" if k else ("" if r.status == "fixed" else f"  [{r.status}]")
                lines.append(f"{tag if k == 0 else '':>12} {mark:2}{c.name:>10} {c.r2:>14.10f} {c.complexity:>4g}  "
                             f"a={c.a:.5g} b={c.b:.5g} c={c.c:.5g} d={c.d:.5g}{note}")
        return "\n".join(lines)


def _prefer_nonzero(ranked: list[AffineFit]) -> AffineFit:
    """The best row, except that ``"0"`` only wins on noise-like edges (no non-zero fit reaches r2 0.5).

    Pruning already removes negligible edges; an edge that survived it but is fitted poorly still carries signal,
    and replacing it by a constant would throw that signal away.
    """
    best = ranked[0]
    if best.name == "0" or (best.complexity == 0 and best.nmse >= 1.0):
        for r in ranked[1:]:
            if r.valid and not r.degenerate and r.r2 >= 0.5 and r.complexity > 0:
                return r
    return best


def auto_symbolic(
    model,
    lib: SymbolicLibrary | Sequence[str] | None = None,
    r2_threshold: float = 0.0,
    weight_simple: float = 0.8,
    x: torch.Tensor | None = None,
    *,
    topk: int = 3,
    verbose: int = 0,
    **pykan_options,
) -> AutoSymbolicTable:
    """Fix every active spline edge to its best library function (pykan's ``auto_symbolic``).

    Edges whose best r2 is below ``r2_threshold`` stay splines (``status="kept"``); already-symbolic edges are
    left alone. pykan's ``a_range``, ``b_range``, ``r2_loss_fun``, ``c_loss_fun`` and ``log_history`` are accepted
    and ignored; any other unknown keyword raises ``TypeError``.

    Returns:
        an :class:`AutoSymbolicTable` with the top ``topk`` candidates of each edge, the chosen one marked.
    """
    check_kwargs(auto_symbolic, pykan_options, _PYKAN_AUTO)
    if not 0.0 <= weight_simple <= 1.0:
        raise ValueError(f"weight_simple must be in [0, 1], got {weight_simple}")
    if not (isinstance(r2_threshold, (int, float)) and r2_threshold <= 1.0):
        raise ValueError(f"r2_threshold must be a number <= 1, got {r2_threshold!r}")
    library = resolve_library(lib)
    acts = model.layer_inputs(x)
    rows: list[EdgeChoice] = []
    for l in range(model.depth):
        spline_mask = model.layers[l].mask.detach().cpu()
        sym_mask = model.symbolic[l].mask.detach().cpu()
        for j in range(model.width_out[l + 1]):
            for i in range(model.width_in[l]):
                edge = (l, i, j)
                if sym_mask[j, i] != 0:
                    rows.append(EdgeChoice(edge, "symbolic", None, []))
                    continue
                if spline_mask[j, i] == 0:
                    continue  # pruned: contributes nothing
                xs = acts[l][:, i].detach().cpu().double().numpy()
                with torch.no_grad():
                    ys = model.layers[l].forward_edges(acts[l])[:, j, i].detach().cpu().double().numpy()
                ranked = rank_fits(fit_library(xs, ys, library), weight_simple=weight_simple)
                best = _prefer_nonzero(ranked)
                if best.valid and best.r2 >= r2_threshold:
                    fix_symbolic(model, l, i, j, best.name, params=best.params, lib=library)
                    rows.append(EdgeChoice(edge, "fixed", best, ranked[:topk], ranked))
                else:
                    rows.append(EdgeChoice(edge, "kept", None, ranked[:topk], ranked))
    table = AutoSymbolicTable(rows)
    if verbose:
        import logging

        logging.getLogger("kanlens.symbolic.fit").info("auto_symbolic:\n%r", table)
    return table
