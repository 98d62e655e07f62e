"""Which library function each edge of a KAN gets: starting from ``auto_symbolic``'s choice, joint variants
(the simplest functions reaching an r2), collapsed two-edge chains, swaps of edges leaving one node together and
one edge at a time, each kept when the formula refitted on the data gets a lower training loss."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sympy
import torch

from .. import fit as sfit
from .. import formula as sform
from .budget import Deadline
from .candidates import Evaluator, Provenance

__all__ = ["EdgeSearch", "apply_assignment", "assignment_key", "chain_collapses", "simplest", "spline_samples",
           "usable", "with_most_accurate"]

log = logging.getLogger(__name__)


def spline_samples(model, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Layer inputs and spline edge values ``(batch, out, in)`` of every layer, before anything is symbolic."""
    with torch.no_grad():
        acts = model.layer_inputs(x)
        edges = [model.layers[l].forward_edges(acts[l]) for l in range(model.depth)]
    return acts, edges


def chain_collapses(model, samples, current: dict, library, weight_simple: float, top: int = 3):
    """Candidate assignments collapsing two-edge chains ``(l-1, i, k) -> (l, k, j)`` into ``x`` + one function."""
    acts, edges = samples
    out = []
    for l in range(1, model.depth):
        for k in range(model.width[l]):
            ins = [i for i in range(model.width[l - 1]) if (l - 1, i, k) in current]
            outs = [j for j in range(model.width[l + 1]) if (l, k, j) in current]
            if len(ins) != 1 or len(outs) != 1:
                continue
            i, j = ins[0], outs[0]
            h = acts[l - 1][:, i].double().cpu().numpy()
            y = edges[l][:, j, k].double().cpu().numpy()
            try:
                ranked = sfit.rank_fits(sfit.fit_library(h, y, library), weight_simple=weight_simple)
            except ValueError:
                continue
            s_k = float(model.node_scale[l - 1][k])
            t_k = float(model.node_bias[l - 1][k])
            if s_k == 0:
                continue
            good = with_most_accurate(usable(ranked), top)
            for f in good:  # spline-level noise can rank a simpler near-fit above the exact function: try a few
                # m = s_k * h + t_k  =>  a*h + b = (a / s_k) * m + (b - a * t_k / s_k)
                down = sfit.AffineFit(f.name, f.a / s_k, f.b - f.a * t_k / s_k, f.c, f.d, f.r2, f.nmse,
                                      f.complexity)
                ident = sfit.AffineFit("x", 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0)
                assign = dict(current)
                assign[(l - 1, i, k)] = ident
                assign[(l, k, j)] = down
                out.append((f"chain ({l},{k})->{f.name}", assign))
    return out


class EdgeSearch:
    """Which library function each edge gets: starts from ``auto_symbolic``'s choice and keeps any assignment
    whose formula, refitted jointly on the data, has a lower training loss."""

    def __init__(self, model, auto, library, ev: Evaluator, var, deadline: Deadline | None = None, wrap=None,
                 run: str = "identity"):
        self.model, self.library, self.ev, self.var = model, library, ev, var
        self.deadline = deadline or Deadline(None)
        self.wrap, self.run = wrap, run
        for r in auto:  # edges below r2_threshold stay splines in the KAN; the formula needs a function
            if r.status == "kept":
                sfit.fix_symbolic(model, *r.edge, r.candidates[0].name, params=r.candidates[0].params, lib=library)
        self.choices = {r.edge: r.candidates for r in auto if r.candidates}
        self.full = {r.edge: r.all_fits or r.candidates for r in auto if r.candidates}
        self.current = {e: (r.chosen or r.candidates[0]) for r in auto if r.candidates for e in [r.edge]}
        self.tried = {assignment_key(self.current)}
        self.best = ev.refit(self.formula(), self.source("auto_symbolic"))

    def source(self, step: str) -> Provenance:
        """Provenance of a candidate of this search."""
        return Provenance("kan", self.run, step)

    def formula(self) -> list[sympy.Expr]:
        """The model's formulas (wrapped back to ``y`` for a transformed target)."""
        exprs = sform.symbolic_formula(self.model, var=self.var)
        return exprs if self.wrap is None else [w(e) for w, e in zip(self.wrap, exprs)]

    def done(self) -> bool:
        """An exact, short formula is known, or the budget is spent."""
        if self.ev.settled(self.best) or self.ev.exact_found:  # e.g. a polynomial fit before the KAN run
            return True
        return self.deadline.expired()

    def attempt(self, assign: dict, source: str, factor: float = 1.0) -> bool:
        """Refit the formula of ``assign``; keep it when its training loss is below ``factor`` times the best."""
        if assignment_key(assign) in self.tried:
            return False
        self.tried.add(assignment_key(assign))
        apply_assignment(self.model, assign, self.library)
        trial = self.ev.refit(self.formula(), self.source(source))
        if trial.train_nmse < factor * self.best.train_nmse:
            self.best, self.current = trial, assign
            return True
        apply_assignment(self.model, self.current, self.library)
        return False

    def simplest_variants(self) -> None:
        """Every edge takes the simplest function reaching r2 >= tau: a joint change that one-edge swaps cannot
        find (e.g. all inner edges linear and all outer edges quadratic for x1*x2)."""
        for tau in (0.9, 0.99, 0.999, 0.9999):
            if self.done():
                return
            assign = {e: simplest(fits, tau) or self.current[e] for e, fits in self.full.items()}
            self.attempt(assign, f"simplest r2>={tau}")

    def chains(self, samples, weight_simple: float) -> None:
        """A hidden node with one incoming and one outgoing edge computes one 1-D function of the upstream value;
        the KAN may split it arbitrarily between the two edges, so the composite is fitted directly."""
        for name, assign in chain_collapses(self.model, samples, self.current, self.library, weight_simple):
            if self.done():
                return
            self.attempt(assign, name)

    def twin_swaps(self, alternatives: int) -> None:
        """Edges leaving one node with the same function often play one role in a symmetric construction
        (``cos(x2 - g(x1)) - cos(x2 + g(x1)) = 2 sin(x2) sin(g(x1))``, exact only for ``g = asin``): swapping
        one of them breaks the symmetry, so the alternatives that fit all of them are tried on all together
        (most accurate first); kept when the loss halves."""
        groups: dict[tuple, list[tuple]] = {}
        for edge in sorted(self.current):
            groups.setdefault((edge[0], edge[1], self.current[edge].name), []).append(edge)
        for (_, _, name), edges in groups.items():
            if len(edges) < 2:
                continue
            fits = [{f.name: f for f in usable(self.full[e])} for e in edges]
            shared = set.intersection(*(set(f) for f in fits)) - {name}
            ranked = sorted(shared, key=lambda n: sum(f[n].nmse for f in fits))
            for alt in ranked[: alternatives + 1]:
                if self.done():
                    return
                assign = dict(self.current)
                assign.update({e: f[alt] for e, f in zip(edges, fits)})
                self.attempt(assign, f"twin swap {edges[0][:2]}->{alt}", factor=0.5)

    def swaps(self, alternatives: int) -> None:
        """One edge at a time (worst-fitting first), the runner-up functions; kept when the loss halves."""
        for edge in sorted(self.choices, key=lambda e: -self.current[e].nmse):
            ranked = list(self.choices[edge][: alternatives + 1])
            names = {c.name for c in ranked}
            ranked += [f for f in with_most_accurate(usable(self.full[edge]), 0, 2) if f.name not in names]
            for cand in ranked:
                if self.done():
                    return
                if cand.name == self.current[edge].name or not cand.valid or cand.degenerate:
                    continue
                assign = dict(self.current)
                assign[edge] = cand
                self.attempt(assign, f"swap {edge}->{cand.name}", factor=0.5)


def with_most_accurate(fits: Sequence[sfit.AffineFit], top: int, accurate: int = 2) -> list[sfit.AffineFit]:
    """The first ``top`` fits (in the given order) plus the ``accurate`` ones with the lowest error.

    The complexity-weighted ranking can put a simple near-fit (``sin`` imitating a flat ``tanh``) above the exact
    function when the spline samples are slightly off; the most accurate fits are always worth one refit.
    """
    out = list(fits[:top])
    for f in sorted(fits, key=lambda f: f.nmse)[:accurate]:
        if f not in out:
            out.append(f)
    return out


def assignment_key(assign: dict) -> tuple:
    """A hashable summary of an assignment (edges and function names)."""
    return tuple(sorted((e, f.name) for e, f in assign.items()))


def usable(fits: Sequence[sfit.AffineFit]) -> list[sfit.AffineFit]:
    """Fits a formula can use: valid, not a degenerate (Taylor-limit) fit, not the ``"0"`` function."""
    return [f for f in fits if f.valid and not f.degenerate and f.complexity > 0]


def simplest(fits: Sequence[sfit.AffineFit], tau: float) -> sfit.AffineFit | None:
    """The lowest-complexity non-degenerate fit with ``r2 >= tau`` (best r2 among equals), ignoring ``"0"``."""
    ok = [f for f in usable(fits) if f.r2 >= tau]
    return min(ok, key=lambda f: (f.complexity, -f.r2)) if ok else None


def apply_assignment(model, assign: dict, library) -> None:
    """Fix every edge of ``assign`` (``{(l, i, j): AffineFit}``) to its function."""
    for (l, i, j), f in assign.items():
        lib = library if f.name in library else None  # e.g. "x" for a chain when the user's lib lacks it
        sfit.fix_symbolic(model, l, i, j, f.name, params=f.params, lib=lib)


