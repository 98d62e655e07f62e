"""One call from data to formula: fit (sparse) -> prune -> refine -> fit -> auto_symbolic -> refit -> snap -> pick.

:func:`symbolic_regression` is a plain function over the public API (used by the demo, the CLI and the benchmark).
Training guards the structure: a sparse round that prunes nothing is undone (its extra sparsity only squeezes the
pruned KAN), and when the pruned KAN stays further than 1% of std(y) from the data the sparse stage is rerun with a
weaker sparsity weight. After ``auto_symbolic`` it works on *formulas*: every candidate formula gets all its
constants refitted jointly on the training data; if that is not already exact to float precision, edges are tried
with their runner-up functions (one at a time, and edges leaving one node with the same function together; kept
when the refitted loss drops). Constants are snapped to simple values when the loss does not get
worse. All candidates go into a small Pareto table (complexity vs test error); the chosen one is the simplest
exact candidate if any, else PySR's "best" rule (largest drop in log-loss per unit of complexity among candidates
within 1.5x of the lowest loss). When no run is exact, a KAN that is a product ``g(x_S) * h(x_T)`` of two input
groups has each factor recovered by a smaller run on its values (multiplicative separability).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy
import torch

from . import fit as sfit
from . import formula as sform
from . import lowrank
from .library import SymbolicLibrary, resolve_library
from .polyfit import polynomial_candidates

__all__ = ["Candidate", "ParetoTable", "SymbolicResult", "symbolic_regression"]

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One candidate formula (per output) with its complexity and errors (NMSE = MSE / var(y))."""

    exprs: list[sympy.Expr]
    complexity: int
    train_nmse: float
    test_nmse: float
    source: str
    exact: bool = False

    @property
    def expr(self) -> sympy.Expr:
        return self.exprs[0]


class ParetoTable(Sequence):
    """Candidates on the complexity / test-error Pareto front, simplest first; ``chosen`` is marked ``»``."""

    def __init__(self, rows: Sequence[Candidate], chosen: int) -> None:
        self.rows, self.chosen = list(rows), chosen

    def __getitem__(self, k):  # type: ignore[override]
        return self.rows[k]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        lines = [f"{'':2}{'cplx':>5} {'test NRMSE':>11} {'train NRMSE':>11}  {'source':<18} formula"]
        for k, c in enumerate(self.rows):
            mark = "»" if k == self.chosen else " "
            f = " ; ".join(str(sform.ex_round(e, 5)) for e in c.exprs)
            lines.append(f"{mark:2}{c.complexity:>5} {math.sqrt(c.test_nmse):>11.3e} {math.sqrt(c.train_nmse):>11.3e}"
                         f"  {c.source[:18]:<18} {f}")
        return "\n".join(lines)


@dataclass
class SymbolicResult:
    """Output of :func:`symbolic_regression`.

    Attributes:
        formula: chosen formula of the first output (``formulas`` has one per output).
        exact: the chosen formula reproduces the test data to float precision.
        table: the Pareto table of candidates.
        model: the KAN after ``auto_symbolic`` (its symbolic constants are the KAN-level fit, not the refit) of
            the run that produced the chosen formula; it predicts ``target_transform`` of ``y``.
        auto: the :class:`~kanlens.symbolic.fit.AutoSymbolicTable`.
        timings: seconds per stage.
    """

    formula: sympy.Expr
    formulas: list[sympy.Expr]
    exact: bool
    table: ParetoTable
    model: object
    auto: object
    width: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    target_transform: str = "identity"

    def __repr__(self) -> str:
        return (f"SymbolicResult(formula={self.formula}, exact={self.exact}, width={self.width})\n{self.table!r}")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _check_dataset(dataset: dict) -> None:
    from ..utils import check_tensor

    if not isinstance(dataset, dict):
        raise TypeError(f"dataset must be a dict like create_dataset's, got {type(dataset).__name__}")
    for key in ("train_input", "train_label", "test_input", "test_label"):
        if key not in dataset:
            raise ValueError(f"dataset is missing {key!r} (expected keys train_input, train_label, test_input, "
                             f"test_label)")
        check_tensor(f"dataset[{key!r}]", dataset[key], ndim=2)


# exact formulas longer than this (per problem) do not end the search: public and probe formulas are <= 26 long
# for <= 4 inputs, P05's ten-input sum is 92
_SETTLED_COMPLEXITY, _SETTLED_PER_INPUT = 40, 15
_SETTLED_FLOATS = 2


class _Evaluator:
    """Refits candidate formulas on the training data and scores them on the test data."""

    def __init__(self, dataset: dict, variables: list[sympy.Symbol], floor: float):
        self.xtr, self.ytr = _np(dataset["train_input"]), _np(dataset["train_label"])
        self.xte, self.yte = _np(dataset["test_input"]), _np(dataset["test_label"])
        self.variables, self.floor = variables, floor
        self.snap_seconds = 20.0
        # a refit of a long view with dozens of constants (finite-difference Jacobians) can run for many minutes;
        # cut off, it keeps its best point so far and competes as it is
        self.refit_seconds = 10.0
        self.seen: list[Candidate] = []

    def settled(self, c: Candidate) -> bool:
        """Exact and simple enough to end the search: a long formula with dozens of fitted constants (a trig
        expansion of ``x3*sin(x1 - x2)``, complexity 233) can reach the label-rounding floor without being the
        formula, so it must not stop the later stages that would find the short one. Nor can one with more than
        ``_SETTLED_FLOATS`` unsnapped constants (``(x1 + x2)**2 + sin(x3)`` was exact as ``0.005*x1**4 -
        0.733*x1**2 + 2*x1*x2 + x2**2 + sin(x3) - 99.5*cos(0.187*x1) + 99.5``), or a polynomial-stage formula with
        any. Such formulas stay candidates; only the search goes on."""
        floats = sum(sform.n_floats(e) for e in c.exprs)
        if c.source.startswith("polynomial") and floats:
            # a fitted polynomial or rational whose constants did not snap is more likely an approximation of a
            # smooth function on a narrow range (tanh(x1) on [-0.5, 0.5] by (x1 + 0.066*x1**3)/(1 + 0.4*x1**2))
            return False
        return (c.exact and c.complexity <= _SETTLED_COMPLEXITY + _SETTLED_PER_INPUT * len(self.variables)
                and floats <= _SETTLED_FLOATS)

    @property
    def exact_found(self) -> bool:
        """Whether any candidate so far is exact and short enough to end the search (see :meth:`settled`)."""
        return any(self.settled(c) for c in self.seen)

    def _test(self, exprs: list[sympy.Expr]) -> float:
        errs = []
        for o, e in enumerate(exprs):
            f = sympy.lambdify(self.variables, e, modules=["scipy", "numpy"])
            with np.errstate(all="ignore"):
                pred = f(*(self.xte[:, k] for k in range(self.xte.shape[1])))
            errs.append(sform.nmse(pred, self.yte[:, o]))
        return max(errs)

    def same_values(self, a: list[sympy.Expr], b: list[sympy.Expr]) -> bool:
        """Whether two formulas agree on the test inputs to 1e-9 relative (guards cosmetic rewrites)."""
        try:
            for ea, eb in zip(a, b):
                va = self._values(ea, self.xte)
                vb = self._values(eb, self.xte)
                if not (np.isfinite(va).all() and np.isfinite(vb).all()):
                    return False  # an infinite tolerance would call any two such formulas the same
                if not np.allclose(va, vb, rtol=1e-9, atol=1e-12 * (1 + float(np.abs(vb).max()))):
                    return False
            return True
        except Exception:
            return False

    def _values(self, e: sympy.Expr, x: np.ndarray) -> np.ndarray:
        f = sympy.lambdify(self.variables, e, modules=["scipy", "numpy"])
        with np.errstate(all="ignore"):
            return np.broadcast_to(sform.real_values(f(*(x[:, k] for k in range(x.shape[1])))), (x.shape[0],))

    def refit(self, exprs: list[sympy.Expr], source: str, snap: bool = False) -> Candidate:
        outs, trains = [], []
        for o, e in enumerate(exprs):
            try:
                if snap:
                    r = sform.snap_constants(e, self.variables, self.xtr, self.ytr[:, o], floor=self.floor,
                                             max_seconds=self.snap_seconds)
                else:
                    r = sform.refit_constants(e, self.variables, self.xtr, self.ytr[:, o],
                                              max_seconds=self.refit_seconds)
                outs.append(r.expr)
                trains.append(r.nmse)
            except Exception as err:  # one unprintable / unevaluable candidate must not end the search
                log.warning("refit of %s failed (%s: %s)", source, type(err).__name__, err)
                outs.append(e)
                trains.append(math.inf)
        try:
            test = self._test(outs)
        except Exception:
            test = math.inf
        cand = Candidate(outs, sum(sform.formula_complexity(e) for e in outs), max(trains), test, source)
        cand.exact = cand.train_nmse <= self.floor and cand.test_nmse <= 10 * self.floor
        self.seen.append(cand)
        return cand


def _test_rmse(model, dataset: dict) -> float:
    with torch.no_grad():
        err = model(dataset["test_input"]) - dataset["test_label"].to(model.dtype)
    v = float(torch.sqrt(torch.mean(err.double() ** 2)))
    return v if math.isfinite(v) else math.inf


def _spline_samples(model, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Layer inputs and spline edge values ``(batch, out, in)`` of every layer, before anything is symbolic."""
    with torch.no_grad():
        acts = model.layer_inputs(x)
        edges = [model.layers[l].forward_edges(acts[l]) for l in range(model.depth)]
    return acts, edges


def _chain_collapses(model, samples, current: dict, library, weight_simple: float, top: int = 3):
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
            good = _with_most_accurate(_usable(ranked), top)
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


def _n_edges(model) -> int:
    return sum(int((layer.mask != 0).sum()) for layer in model.layers)


def _prune_harder(model, dataset: dict, err: float, y_std: float, steps: int, prune_kwargs: dict,
                  fit_kwargs: dict):
    """Try 3x and 10x the pruning thresholds; keep a smaller model while its retrained test error stays within
    1.5x of the current one (or below 1e-4 of std(y))."""
    node_th = float(prune_kwargs.get("node_th", 1e-2))
    edge_th = float(prune_kwargs.get("edge_th", 3e-2))
    for factor in (3.0, 10.0):
        try:
            model(dataset["train_input"])
            smaller = model.prune(node_th=node_th * factor, edge_th=edge_th * factor)
        except Exception as e:
            log.warning("aggressive prune failed (%s)", e)
            break
        if smaller.width == model.width and _n_edges(smaller) == _n_edges(model):
            continue
        smaller.fit(dataset, opt="LBFGS", steps=steps, progress=False, **fit_kwargs)
        new_err = _test_rmse(smaller, dataset)
        log.info("prune x%g: %s (%d edges) -> %s (%d edges), test rmse %.3e -> %.3e", factor, model.width,
                 _n_edges(model), smaller.width, _n_edges(smaller), err, new_err)
        if new_err <= max(1.5 * err, 1e-4 * y_std):
            model, err = smaller, new_err
        else:
            break
    return model, err


def _sparse_rounds(model, dataset: dict, *, steps: Sequence[int], lamb: float, prune: bool, prune_rounds: int,
                   prune_kwargs: dict, fit_kwargs: dict):
    """Sparse fit and prune (repeated while the width keeps shrinking), then a plain fit; returns the model, its
    test RMSE and whether pruning removed anything."""
    width0, edges0 = model.width, _n_edges(model)
    for round_ in range(max(1, prune_rounds)):
        # a later round works on a copy: when it prunes nothing, its extra sparse fit only squeezed the already
        # pruned network (toy exp(sin(pi*x1) + x2**2): [2, 1, 1] at 3e-2 of std(y) instead of 3e-3), so it is undone
        previous = copy.deepcopy(model) if round_ > 0 else None
        model.fit(dataset, opt="LBFGS", steps=steps[0], lamb=lamb, progress=False, **fit_kwargs)
        if not (prune and hasattr(model, "prune")):
            break
        before, edges = model.width, _n_edges(model)
        try:
            model(dataset["train_input"])
            model = model.prune(**prune_kwargs)
        except Exception as e:  # pruning is optional: never lose the run over it
            log.warning("prune failed (%s); continuing with the unpruned model", e)
            break
        log.info("prune round %d: %s -> %s", round_, before, model.width)
        if previous is not None and model.width == before and _n_edges(model) == edges:
            model = previous
            break
        if model.width == before:
            break
    shrunk = model.width != width0 or _n_edges(model) != edges0  # pruning only removes: compare end and start
    model.fit(dataset, opt="LBFGS", steps=steps[1], progress=False, **fit_kwargs)
    return model, _test_rmse(model, dataset), shrunk


# A pruned KAN further than this from the (standardised) data has usually lost structure it needed: the sparsity
# weight was too strong for this target (e.g. 1 + x1 + 2*sqrt(x1)*cos(x2) collapses to [2, 1, 1] at 6% error,
# and keeps the [2, 2, 1] it needs at 0.7% with a third of the weight).
_SPARSE_RETRY_RMSE = 1e-2
_SPARSE_RETRY_FACTORS = (1 / 3, 1 / 10)


def _train(model, dataset: dict, *, steps: Sequence[int], lamb: float, refine_grid: Sequence[int],
           prune: bool, prune_rounds: int, prune_kwargs: dict, timings: dict, fit_kwargs: dict):
    """Sparse fit and prune (repeated while the width keeps shrinking), then fit and refine grids.

    When pruning leaves a model with test RMSE above 1% of std(y), the sparse stage is rerun from the initial
    model with a weaker sparsity weight (1/3, then 1/10); a rerun is kept when it at least halves the error.
    Grids in ``refine_grid`` are tried in order; refinement stops (keeping the previous model) once a finer grid
    no longer improves the test error (or improves it less than 1.5x once the error is below 0.1% of std(y)),
    and stops early when the test error reaches float precision.
    """
    t = time.perf_counter()
    y_std = float(dataset["test_label"].double().std()) or 1.0
    initial = copy.deepcopy(model) if prune and lamb > 0 else None
    kw = dict(steps=steps, prune=prune, prune_rounds=prune_rounds, prune_kwargs=prune_kwargs,
              fit_kwargs=fit_kwargs)
    model, err, shrunk = _sparse_rounds(model, dataset, lamb=lamb, **kw)
    for factor in _SPARSE_RETRY_FACTORS:
        if initial is None or not shrunk or err <= _SPARSE_RETRY_RMSE * y_std:
            break
        alt, alt_err, alt_shrunk = _sparse_rounds(copy.deepcopy(initial), dataset, lamb=lamb * factor, **kw)
        log.info("sparse retry lamb %.3g: %s test rmse %.3e -> %s %.3e", lamb * factor, model.width, err,
                 alt.width, alt_err)
        if alt_err < 0.5 * err:
            model, err, shrunk = alt, alt_err, alt_shrunk
    timings["fit_sparse_prune"] = time.perf_counter() - t
    t = time.perf_counter()
    if prune and hasattr(model, "prune"):
        model, err = _prune_harder(model, dataset, err, y_std, steps[1], prune_kwargs, fit_kwargs)
    timings["prune_harder"] = time.perf_counter() - t
    t = time.perf_counter()
    for g in refine_grid:
        if err <= 1e-5 * y_std or g <= model.grid:
            continue
        finer = model.refine(g, dataset["train_input"])
        finer.fit(dataset, opt="LBFGS", steps=steps[2], progress=False, **fit_kwargs)
        new_err = _test_rmse(finer, dataset)
        log.info("refine grid %d -> %d: test rmse %.3e -> %.3e", model.grid, g, err, new_err)
        if not new_err < err:
            break
        model, gain, err = finer, err / max(new_err, 1e-300), new_err
        if gain < 1.5 and err < 1e-3 * y_std:  # still far from the data: keep refining while it improves
            break
    model(dataset["train_input"])
    timings["fit_refine"] = time.perf_counter() - t
    return model


def _choose(cands: list[Candidate]) -> tuple[list[Candidate], int]:
    """Pareto front (simplest first) and the chosen index."""
    finite = [c for c in cands if math.isfinite(c.test_nmse)]
    if not finite:
        return cands[:1], 0
    finite.sort(key=lambda c: (c.complexity, c.test_nmse))
    front: list[Candidate] = []
    for c in finite:
        if not front or c.test_nmse < front[-1].test_nmse * (1 - 1e-9):
            if front and front[-1].complexity == c.complexity:
                front[-1] = c
            else:
                front.append(c)
    exact = [c for c in finite if c.exact]
    if exact:  # the simplest exact candidate; among equals the one with fewest leftover floats
        pick = min(exact, key=lambda c: (c.complexity, sum(sform.n_floats(e) for e in c.exprs), c.test_nmse))
        front = sorted([c for c in front if not c.exact] + [pick], key=lambda c: (c.complexity, c.test_nmse))
        return front, front.index(pick)
    best_loss = min(c.test_nmse for c in front)
    best_k, best_score = len(front) - 1, -math.inf
    for k, c in enumerate(front):
        if c.test_nmse > 1.5 * best_loss * 1.5:  # PySR: within 1.5x of the best loss (RMSE-scale, hence 1.5^2)
            continue
        if k == 0:
            score = 0.0
        else:
            prev = front[k - 1]
            score = -(math.log(max(c.test_nmse, 1e-300)) - math.log(max(prev.test_nmse, 1e-300))) / max(
                c.complexity - prev.complexity, 1)
        if score > best_score:
            best_k, best_score = k, score
    return front, best_k


class _Search:
    """Which library function each edge gets: starts from ``auto_symbolic``'s choice and keeps any assignment
    whose formula, refitted jointly on the data, has a lower training loss."""

    def __init__(self, model, auto, library, ev: _Evaluator, var, deadline: float | None, wrap=None,
                 tag: str = ""):
        self.model, self.library, self.ev, self.var, self.deadline = model, library, ev, var, deadline
        self.wrap, self.tag = wrap, tag
        for r in auto:  # edges below r2_threshold stay splines in the KAN; the formula needs a function
            if r.status == "kept":
                sfit.fix_symbolic(model, *r.edge, r.candidates[0].name, params=r.candidates[0].params, lib=library)
        self.choices = {r.edge: r.candidates for r in auto if r.candidates}
        self.full = {r.edge: r.all_fits or r.candidates for r in auto if r.candidates}
        self.current = {e: (r.chosen or r.candidates[0]) for r in auto if r.candidates for e in [r.edge]}
        self.tried = {_key(self.current)}
        self.best = ev.refit(self.formula(), self.tag + "auto_symbolic")

    def formula(self) -> list[sympy.Expr]:
        exprs = sform.symbolic_formula(self.model, var=self.var)
        return exprs if self.wrap is None else [w(e) for w, e in zip(self.wrap, exprs)]

    def done(self) -> bool:
        if self.ev.settled(self.best) or self.ev.exact_found:  # e.g. a polynomial fit before the KAN run
            return True
        return self.deadline is not None and time.process_time() > self.deadline

    def attempt(self, assign: dict, source: str, factor: float = 1.0) -> bool:
        """Refit the formula of ``assign``; keep it when its training loss is below ``factor`` times the best."""
        if _key(assign) in self.tried:
            return False
        self.tried.add(_key(assign))
        _apply(self.model, assign, self.library)
        trial = self.ev.refit(self.formula(), self.tag + source)
        if trial.train_nmse < factor * self.best.train_nmse:
            self.best, self.current = trial, assign
            return True
        _apply(self.model, self.current, self.library)
        return False

    def simplest_variants(self) -> None:
        """Every edge takes the simplest function reaching r2 >= tau: a joint change that one-edge swaps cannot
        find (e.g. all inner edges linear and all outer edges quadratic for x1*x2)."""
        for tau in (0.9, 0.99, 0.999, 0.9999):
            if self.done():
                return
            assign = {e: _simplest(fits, tau) or self.current[e] for e, fits in self.full.items()}
            self.attempt(assign, f"simplest r2>={tau}")

    def chains(self, samples, weight_simple: float) -> None:
        """A hidden node with one incoming and one outgoing edge computes one 1-D function of the upstream value;
        the KAN may split it arbitrarily between the two edges, so the composite is fitted directly."""
        for name, assign in _chain_collapses(self.model, samples, self.current, self.library, weight_simple):
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
            fits = [{f.name: f for f in _usable(self.full[e])} for e in edges]
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
            ranked += [f for f in _with_most_accurate(_usable(self.full[edge]), 0, 2) if f.name not in names]
            for cand in ranked:
                if self.done():
                    return
                if cand.name == self.current[edge].name or not cand.valid or cand.degenerate:
                    continue
                assign = dict(self.current)
                assign[edge] = cand
                self.attempt(assign, f"swap {edge}->{cand.name}", factor=0.5)


def _floatify(e: sympy.Expr) -> sympy.Expr:
    """Irrational exact constants (``362*pi``, ``sqrt(2)/3``) back to floats, so expansions merge like terms."""
    if e.is_number and not e.is_Rational:
        try:
            return sympy.Float(float(e), 17)
        except (TypeError, ValueError):
            return e
    if not e.args:
        return e
    return e.func(*[_floatify(a) for a in e.args])


def _derived_views(exprs: list[sympy.Expr], variables, x: np.ndarray) -> list[tuple[str, list[sympy.Expr]]]:
    """Equivalent forms worth refitting: expanded, and with Taylor-regime functions replaced by polynomials
    (also after expanding trig identities such as ``cos(a*x1 - x2) - cos(a*x1 + x2) = 2 sin(a*x1) sin(x2)``)."""
    out = []
    expanded = [_expand(e) for e in exprs]
    if all(v is not None for v in expanded) and expanded != exprs:
        out.append(("expanded ", expanded))
    for name, pre in (("taylor ", lambda e: e), ("trig taylor ", sympy.expand_trig)):
        try:
            plain = [sform.detaylor(pre(e), variables, x) for e in exprs]
        except Exception as err:
            log.warning("%sview failed (%s: %s)", name, type(err).__name__, err)
            continue
        if plain != exprs:
            plain_exp = [_expand(e) for e in plain]
            out.append((name, plain_exp if all(v is not None for v in plain_exp) else plain))
    return out


_LARGE_FORMULA = 200


def _snap_views(best: Candidate, ev: _Evaluator, variables: list[sympy.Symbol], tag: str = "",
                deadline: float | None = None) -> None:
    """Refit and snap the best formula in several equivalent views (raw, expanded, Taylor regimes removed).

    Views are derived from the formula before and after its own snapping refit (a joint refit can move functions
    into their Taylor regime, e.g. ``cos(0.02*x1 + 0.02*x2)``). The raw view is always snapped; further views
    only until ``deadline`` (``time.process_time()``).
    """
    # huge formulas, or ones far from the data (NRMSE > 1%, snapping cannot make them exact): only the raw view,
    # briefly snapped
    large = best.complexity > _LARGE_FORMULA or not best.test_nmse <= 1e-4
    ev.snap_seconds = 5.0 if large else 20.0
    raw = _snap(ev, best.exprs, tag, merge=not large)
    if large:
        return
    views: list[tuple[str, list[sympy.Expr]]] = []
    for source in (best.exprs, [_floatify(e) for e in raw.exprs]):
        for name, exprs in _derived_views(source, variables, ev.xtr):
            if all(exprs != v[1] for v in views):
                views.append((name, exprs))
    log.info("views: %s", [v[0].strip() for v in views])
    for name, exprs in views:
        if deadline is not None and time.process_time() > deadline:
            log.info("time budget spent: %d view(s) not snapped", len(views))
            break
        if sum(map(sform.formula_complexity, exprs)) > _LARGE_FORMULA:
            continue  # an expansion far longer than the formula (trig products): no simpler constants to find
        ev.refit(exprs, tag + name.strip())
        _snap(ev, exprs, tag + name)


def _snap(ev: _Evaluator, exprs: list[sympy.Expr], tag: str, merge: bool = True) -> Candidate:
    """Refit with snapping, tidy; then merge like terms and snap again when that is simpler.

    Snapping can leave like terms apart (``-0.0859*sqrt(2)*x1*sin(x2) + 1.1215*x1*sin(x2)``, together
    ``1.0000000017*x1*sin(x2)``): merged (expanded with float constants) they snap as one constant.
    """
    cand = ev.refit(exprs, tag + "snapped", snap=True)
    _tidy_candidate(cand, ev)
    if merge:
        merged = [_expand(_floatify(e)) for e in cand.exprs]
        if all(m is not None for m in merged) and sum(map(sform.formula_complexity, merged)) < cand.complexity:
            _tidy_candidate(ev.refit(merged, tag + "merged snapped", snap=True), ev)
    return cand


def _tidy_candidate(cand: Candidate, ev: _Evaluator) -> None:
    tidy = [_tidy(_resolve_abs(e, ev)) for e in cand.exprs]
    if tidy != cand.exprs and ev.same_values(tidy, cand.exprs):
        cand.exprs = tidy
        cand.complexity = sum(sform.formula_complexity(e) for e in tidy)


def _resolve_abs(expr: sympy.Expr, ev: _Evaluator) -> sympy.Expr:
    """``|u| -> u`` (or ``-u``) where ``u`` keeps one sign on every training and test input.

    The formula describes the data's range; there ``(1/4 - |x3 - 1|/4) * r`` is ``x3 * r / 4`` for ``x3 <= 1``.
    """
    reps = {}
    for a in expr.atoms(sympy.Abs):
        try:
            v = np.concatenate([ev._values(a.args[0], ev.xtr), ev._values(a.args[0], ev.xte)])
        except Exception:  # an argument that cannot be evaluated keeps its |.|
            continue
        if np.isfinite(v).all() and ((v >= 0).all() or (v <= 0).all()):
            reps[a] = a.args[0] if (v >= 0).all() else -a.args[0]
    return expr.xreplace(reps) if reps else expr


def symbolic_regression(
    dataset: dict[str, torch.Tensor],
    width: Sequence[int] | None = None,
    *,
    model=None,
    grid: int = 5,
    k: int = 3,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    lib: SymbolicLibrary | Sequence[str] | None = None,
    lamb: float = 0.01,
    steps: int | Sequence[int] = (50, 50, 50),
    refine_grid: int | Sequence[int] | None = (10, 20, 50),
    prune: bool = True,
    prune_rounds: int = 3,
    prune_kwargs: dict | None = None,
    weight_simple: float = 0.8,
    r2_threshold: float = 0.0,
    alternatives: int = 2,
    time_budget: float | None = None,
    var: Sequence[str] | None = None,
    normalize_labels: bool = True,
    fit_kwargs: dict | None = None,
    target_transforms: Sequence[str] | None = ("identity", "log"),
    separable: bool = True,
    polynomial: bool = True,
) -> SymbolicResult:
    """Recover a closed-form formula from data with a KAN.

    Args:
        dataset: ``create_dataset``-style dict (``train_input`` ``(n, d)``, ``train_label`` ``(n, m)``, test too).
        width: KAN widths (e.g. ``[2, 5, 1]``); not needed when ``model`` is given.
        dtype: dtype of the KAN (default: the dataset's); formula refits always run in float64.
        model: an existing (possibly trained) KAN to start from; it is trained further in place.
        lib: symbolic library or names (default library; add ``default_library(special=True)`` for specials).
        lamb: sparsity weight of the first fit.
        steps: LBFGS steps of the three fits (sparse, after pruning, after refining); one int for all three.
        refine_grid: finer grid sizes tried in order (``None`` skips refinement); a finer grid is kept only while
            it lowers the test error (refinement stops after a gain below 1.5x once the error is under 0.1% of
            std(y)).
        prune: call ``model.prune()`` after the sparse fit (skipped when the model has no ``prune``).
        prune_rounds: sparse fit + prune is repeated up to this many times while the width keeps shrinking.
        prune_kwargs: passed to ``model.prune`` (``node_th``, ``edge_th``).
        weight_simple, r2_threshold: passed to ``auto_symbolic``.
        alternatives: runner-up functions tried per edge when the first formula is not exact.
        time_budget: CPU seconds for the whole call (``time.process_time``: less sensitive to load than wall
            time, but a machine shared by more processes than cores still gets less done per CPU second, and a
            formula found near the end of the budget may then be missed). Training stages always complete; once
            the budget is spent the search for alternatives stops (after a short minimum slice), only the raw
            formula is snapped and no further target transform is tried. ``None``: no limit.
        var: input names (default ``x1..xn``).
        normalize_labels: train the KAN on standardised labels (the sparsity penalty is not scale-invariant);
            the scaling is folded into the output nodes afterwards, so the returned model predicts ``y``.
        target_transforms: targets the KAN is trained on, in order: ``"identity"`` (``y``) and ``"log"``
            (``log(y)``, formula ``exp(...)``; only when each output keeps one sign, its negative is modelled
            for negative outputs). A later transform runs only while no exact formula has been found; all
            candidates compete in one Pareto table on the original ``y``. ``result.target_transform`` names the
            run of the chosen formula (its ``model`` predicts that transform of ``y``). The separability and pair
            stages below test the identity run's network, so they need that run.
        separable: when no run found an exact formula (one output): with one input, fit compositions
            ``c*F(a*G(x) + b) + d`` of two library functions directly (``log(1 + x**2)``), then a library function
            plus a quadratic, ``c*F(a*x + b) + p(x)`` (``x + sin(x)``; also two exponentials, ``cosh(x) - x**2/2``);
            with more, test on the trained KAN whether ``y = g(x_S) * h(x_T)`` or ``y = g(x_S) + h(x_T)`` for a
            split of the inputs (``f(a) f(c) = f(a_S, c_T) f(c_S, a_T)``, or the same with sums; the tests ask
            the best candidate formula instead of the KAN when it is 100x more accurate:
            ``sin(x1)*sin(x2)*sin(x3)``); if so, ``g`` and ``h`` are recovered by smaller runs (``[|S|, 2|S| + 1,
            1]`` KANs, within the remaining budget; the first on the tested model's values, the second on the
            labels divided by, or minus, the first's formula) and their combination, refitted and snapped on the
            data, joins the candidates. Products
            whose factors change sign (``sqrt(x1) * x2``), where ``log(y)`` cannot be used, factors that need a
            deeper KAN than the whole (``x3 * sqrt(x1**2 + x2**2)``) and sums with a product inside
            (``exp(x1)*x2**2 + x3``) are the target. When the ``log`` run exists, the same search also runs on
            ``log|y|`` (``x1**x2 = exp(x2*log(x1))``).
            Then, still without an exact formula, the pair tests: if moving two inputs together leaves the KAN
            unchanged up to a power, ``y = x**d * g(u, rest)`` with ``u`` their ratio (``y(.., l*x_i, .., l*x_j, ..)
            = l**d * y``), product (``y(.., l*x_i, .., x_j/l, ..) = l**d * y``), difference (``y(.., x_i + e, ..,
            x_j + e, ..) = y``) or sum (``x_j - e``); ``g`` is recovered by a smaller run on the real data
            (``atan(x2/x1)``, ``exp(-x1**2/(2*x2**2))/sqrt(2*pi*x2**2)``, ``sin(x1*x2)``, ``x3*sin(x1 - x2)``).
            Last, for two inputs, the low-rank test: the KAN sampled on a grid is a matrix whose rank ``r <= 3``
            means ``y = sum_ij c_ij p_i(x1) q_j(x2)`` with ``r`` products (``x1*sin(x2) + x2*cos(x1)``); library
            functions spanning its singular subspaces and the coefficients are found without training (see
            :mod:`kanlens.symbolic.lowrank`). ``separable=False`` skips all of these.
        polynomial: before the KAN runs, fit polynomials of total degree <= 4 in the inputs to ``y``, ``1/y``,
            ``log(y)`` and ``y**2`` (the last three for one-signed outputs) by linear least squares; a fit that
            reproduces the test data to the label noise, with the monomials it does not need eliminated, is
            snapped and joins the candidates (``x1**3 - 2*x1*x2``, ``1/(1 + x1*x2)``); when none fits, a power law
            ``c * x1**a1 * x2**a2 ...`` with real exponents (``x1*x2/x3**2``), then a ratio of polynomials (numerator
            degree <= 3, denominator 1 or 2: ``x1*x2/(x1 + x2 + x3)``; also of ``log(y)`` and ``y**2``). Such a
            fit ends the search only when its constants snap to simple values (otherwise it may approximate a
            smooth function on a narrow range). See
            :func:`~kanlens.symbolic.polyfit.polynomial_candidates`. The KAN is still trained (``result.model``),
            but its search stops once an exact formula is known.

    Returns:
        a :class:`SymbolicResult`.

    Shapes:
        dataset inputs ``(n, d)``, labels ``(n, m)``.

    Example:
        >>> ds = create_dataset(lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2), n_var=2)
        >>> res = symbolic_regression(ds, [2, 5, 1])
        >>> res.formula
        exp(x2**2 + sin(pi*x1))
    """
    _check_dataset(dataset)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    library = resolve_library(lib)
    if model is None:
        if width is None:
            raise ValueError("symbolic_regression needs `width` (e.g. [2, 5, 1]) or a `model`")
        from ..model import KAN

        model = KAN(width=list(width), grid=grid, k=k, seed=seed, dtype=dtype or dataset["train_input"].dtype)
    if model.node_layout.has_mult:
        raise ValueError("symbolic_regression searches KANs with sum nodes only (its chain and low-rank stages assume "
                         "sums); for multiplication nodes use model.fit, model.auto_symbolic() and "
                         "model.symbolic_formula()")
    grids = [] if refine_grid is None else ([refine_grid] if isinstance(refine_grid, int) else list(refine_grid))
    if isinstance(steps, int) and not isinstance(steps, bool):
        steps = (steps, steps, steps)
    if not isinstance(steps, Sequence) or len(steps) != 3:
        raise ValueError(f"steps must be one step count or three (sparse, after prune, after refine), got {steps!r}")
    transforms = _resolve_transforms(target_transforms, dataset)
    initial = copy.deepcopy(model) if len(transforms) > 1 else None
    variables = sform._variables(model, var)
    floor = sform.noise_floor(_np(dataset["train_label"]), dataset["train_label"].dtype)
    ev = _Evaluator(dataset, variables, floor)
    runs: dict[str, tuple] = {}
    splines: dict[str, object] = {}  # tag -> the trained spline KAN (before auto_symbolic), for the separability test
    cpu_deadline = None if time_budget is None else time.process_time() + time_budget
    if polynomial:
        t = time.perf_counter()
        for name, exprs in polynomial_candidates(ev.xtr, ev.ytr, ev.xte, ev.yte, variables, floor):
            log.info("polynomial fit of %s: %s", name, exprs)
            _snap(ev, exprs, f"polynomial {name} ")
        timings["polynomial"] = time.perf_counter() - t
    for n_run, (name, forward, wrap) in enumerate(transforms):
        if n_run and ev.exact_found:
            break  # an exact formula is found: no need to model a transformed target
        if n_run and cpu_deadline is not None and time.process_time() > cpu_deadline:
            log.info("time budget spent: target transform %r not tried", name)
            break
        run_model = model if n_run == 0 else copy.deepcopy(initial)
        tag = "" if name == "identity" else f"{name}: "
        t = time.perf_counter()
        run_model, auto = _fit_and_search(run_model, dataset, forward, wrap, tag, ev, library, var=var,
                                          steps=steps, lamb=lamb, grids=grids, prune=prune,
                                          prune_rounds=prune_rounds, prune_kwargs=prune_kwargs or {},
                                          fit_kwargs=fit_kwargs or {}, normalize_labels=normalize_labels,
                                          weight_simple=weight_simple, r2_threshold=r2_threshold,
                                          alternatives=alternatives, deadline=cpu_deadline, timings=timings,
                                          surrogates=splines if separable and forward is None else None)
        timings[f"run {name}"] = time.perf_counter() - t
        runs[tag] = (name, run_model, auto)
    one_to_one = dataset["train_input"].shape[1] == 1 and dataset["train_label"].shape[1] == 1
    if separable and one_to_one and not ev.exact_found:
        # one input: a function of a function (log(1 + x**2)) is not one edge; fit the composition directly
        t = time.perf_counter()
        for _, expr in _compositions(ev.xtr[:, 0], ev.ytr[:, 0], library, variables[0], top=3):
            if ev.refit([expr], "composition").test_nmse <= 1e-4:
                _snap(ev, [expr], "composition ")
        if not ev.exact_found:
            for _, expr in _function_plus_polynomial(ev.xtr[:, 0], ev.ytr[:, 0], library, variables[0]):
                if ev.refit([expr], "function + polynomial").test_nmse <= 1e-4:
                    _snap(ev, [expr], "function + polynomial ")
        timings["compositions"] = time.perf_counter() - t
    if separable and not ev.exact_found and "" in splines:
        t = time.perf_counter()
        predict = _surrogate(splines[""], ev)
        _separable_search(predict, ev, library, variables, cpu_deadline, seed=seed,
                          dtype=dtype or dataset["train_input"].dtype)
        timings["separable"] = time.perf_counter() - t
        if not ev.exact_found:
            t = time.perf_counter()
            _pair_search(predict, ev, library, variables, cpu_deadline, seed=seed,
                         dtype=dtype or dataset["train_input"].dtype)
            timings["pairs"] = time.perf_counter() - t
        logged = next(((fw, wr) for n, fw, wr in transforms if n == "log"), None)
        if not ev.exact_found and logged is not None:
            t = time.perf_counter()
            _log_separable_search(predict, ev, dataset, *logged, library, variables, cpu_deadline, seed=seed,
                                  dtype=dtype or dataset["train_input"].dtype)
            timings["log separable"] = time.perf_counter() - t
        if not ev.exact_found:
            t = time.perf_counter()
            _low_rank_search(predict, ev, library, variables)
            timings["low rank"] = time.perf_counter() - t
    front, chosen = _choose(ev.seen)
    pick = front[chosen]
    if pick.exact and pick.complexity <= 200 and any(sform.n_floats(e) for e in pick.exprs):
        # an exact formula with leftover floats (e.g. 1.0000000017*x1*sin(x2) from a view the budget left
        # unsnapped): one short snap outside the budget, so the result does not depend on machine load
        ev.snap_seconds = 5.0
        _snap(ev, pick.exprs, pick.source + " ")
        front, chosen = _choose(ev.seen)
        pick = front[chosen]
    tag = next((tg for tg in runs if tg and pick.source.startswith(tg)), "" if "" in runs else next(iter(runs)))
    name, run_model, auto = runs[tag]
    timings["total"] = time.perf_counter() - t_start
    return SymbolicResult(pick.exprs[0], pick.exprs, pick.exact, ParetoTable(front, chosen), run_model, auto,
                          list(run_model.width), timings, target_transform=name)


# Score of the separability test, RMS(f(a) f(c) - f(a_S, c_T) f(c_S, a_T)) / mean f^2 over random pairs: 1e-16 for
# exact products, about 2.5x the predictor's relative error for products seen through a noisy model, >= 6e-2 for
# the non-separable public benchmark formulas (e.g. 1 + x1 + 2*sqrt(x1)*cos(x2): 6.2e-2). A false positive costs
# only time: the factors' products compete with the other candidates on the real data.
_SEPARABLE_TOL = 3e-2
_FRONT_ROWS = 8  # simplest rows of a part's Pareto front combined with the other part's
_OFFSET_PENALTY = 3.0
_SEPARABLE_MIN_SECONDS = 15.0


def _dataset(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, dtype) -> dict:
    """A ``create_dataset``-style dict from numpy inputs ``(n, d)`` and one output ``(n,)``."""
    return {"train_input": torch.as_tensor(xtr, dtype=dtype), "train_label": torch.as_tensor(ytr, dtype=dtype)[:, None],
            "test_input": torch.as_tensor(xte, dtype=dtype), "test_label": torch.as_tensor(yte, dtype=dtype)[:, None]}


def _model_predict(model):
    """``x (n, d) float64 numpy -> y (n,)`` of a KAN trained on the untransformed target."""

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(x, dtype=model.dtype, device=model.device))[:, 0].double().cpu().numpy()

    return predict


# a candidate formula replaces the KAN as the structure tests' model of y when its test NMSE is this many times lower
_SURROGATE_GAIN = 100.0


def _surrogate(model, ev: _Evaluator):
    """The most accurate model of ``y`` for the separability and pair tests: the identity run's spline KAN, or the
    best candidate formula so far when it is ``_SURROGATE_GAIN`` times more accurate on the test data.

    The tests compare ``y`` at mixed points, so the model's error sets how small their scores can get: a KAN that
    fits ``sin(x1)*sin(x2)*sin(x3)`` to 3% scores 5.5e-2 on its true split (the tolerance is 3e-2), while the
    candidate found through the sum-of-sines identity, 2e-7 from the labels with one leftover term, scores ~1e-6.
    """
    predict = _model_predict(model)
    kan_nmse = sform.nmse(predict(ev.xte), ev.yte[:, 0])
    finite = [c for c in ev.seen if math.isfinite(c.test_nmse) and len(c.exprs) == 1]
    best = min(finite, key=lambda c: c.test_nmse, default=None)
    if best is None or not best.test_nmse * _SURROGATE_GAIN < kan_nmse:
        return predict
    log.info("structure tests on the candidate %s (test NMSE %.1e; KAN %.1e)", best.source, best.test_nmse, kan_nmse)
    return functools.partial(ev._values, best.expr)


def _separable_split(predict, x: np.ndarray, rng: np.random.Generator):
    """The input split ``(S, T, score, op, offset)`` with the lowest separability score (None: not testable).

    ``op = "*"``: ``f = offset + g(x_S) * h(x_T)``, score ``RMS(f'(a) f'(c) - f'(a_S, c_T) f'(c_S, a_T)) / mean f'^2``
    with ``f' = f - offset`` over random pairs of points ``a, c``; the offset is 0 when the plain product passes
    the test, else the least-squares one (the score is linear in it: ``1 + x1*sin(x2)``, or a part of a sum, known
    only up to a constant), and its score is then multiplied by ``_OFFSET_PENALTY``. ``op = "+"``:
    ``f = g(x_S) + h(x_T)``, score ``RMS(f(a) + f(c) - f(a_S, c_T) - f(c_S, a_T)) / std f``. These are AI Feynman's
    separability tests. Splits tried: every subset containing input 0 for up to 5 inputs, otherwise single inputs
    against the rest.
    """
    n, d = x.shape
    if d < 2 or n < 8:
        return None
    if d <= 5:
        subsets = [[0] + [j for j in range(1, d) if mask >> (j - 1) & 1] for mask in range(2 ** (d - 1) - 1)]
    else:
        subsets = [[j] for j in range(d)]
    a, c = x[rng.integers(0, n, 512)], x[rng.integers(0, n, 512)]
    fa, fc = predict(a), predict(c)
    scale = float(np.mean(fa**2) * np.mean(fc**2)) ** 0.5
    spread = float(np.std(np.concatenate([fa, fc])))
    if not scale > 0 or not np.all(np.isfinite(fa)) or not np.all(np.isfinite(fc)):
        return None
    best, rms = None, float(np.sqrt(np.mean(fa**2)))
    for sub in subsets:
        rest = [j for j in range(d) if j not in sub]
        p, q = a.copy(), c.copy()
        p[:, rest], q[:, rest] = c[:, rest], a[:, rest]
        fp, fq = predict(p), predict(q)
        if min(np.sqrt(np.mean((fp - fa) ** 2)), np.sqrt(np.mean((fq - fa) ** 2))) < 1e-3 * rms:
            continue  # y hardly depends on one side: a "product" with a constant factor says nothing
        prod, summ = fa * fc - fp * fq, fa + fc - fp - fq
        summ_rms = float(np.sqrt(np.mean(summ**2)))
        scores = [(float(np.sqrt(np.mean(prod**2)) / scale), "*", 0.0)]
        if spread > 0:
            scores.append((summ_rms / spread, "+", 0.0))
        if not scores[0][0] < _SEPARABLE_TOL and summ_rms > 1e-3 * spread:
            # (f - c) products: prod - c * summ = 0 for the right c (summ = 0 means a sum: the test above)
            off = float(np.dot(prod, summ) / np.dot(summ, summ))
            shifted = float(np.mean((fa - off) ** 2) * np.mean((fc - off) ** 2)) ** 0.5
            if shifted > 0 and abs(off) <= 10 * float(np.max(np.abs(fa))):
                # one more constant fits more (1/(1 + x1*x2*x3) gets 3e-2): a 3x stricter test
                scores.append((_OFFSET_PENALTY * float(np.sqrt(np.mean((prod - off * summ) ** 2)) / shifted), "*",
                               off))
        for score, op, off in scores:
            if math.isfinite(score) and (best is None or score < best[2]):
                best = (sub, rest, score, op, off)
    return best


def _separable_search(predict, ev: _Evaluator, library, variables, deadline, *, seed: int, dtype) -> None:
    """If ``predict`` (``x (n, d) -> y (n,)``, see :func:`_surrogate`) is a product ``g(x_S) * h(x_T)`` or a sum
    ``g(x_S) + h(x_T)``, recover both parts; their products (sums) go to ``ev``.

    The first part's data come from ``predict``: slices ``f(x_S, a_T)`` at many anchors ``a``, averaged by a rank-1
    fit (:func:`_factor_data`) or a mean (:func:`_summand_data`); once a formula reproduces them, the second part's
    data come from the labels (:func:`_second_part_data`). The parts' formulas are combined, then refitted and
    snapped on the real data. A part with several inputs is searched with these tests too (it has fewer inputs).
    The test costs milliseconds; each part's run gets half of the remaining budget, at least
    ``_SEPARABLE_MIN_SECONDS`` (its training always completes).
    """
    if ev.ytr.shape[1] != 1:
        return
    xtr, xte = ev.xtr, ev.xte
    split = _separable_split(predict, xtr, np.random.default_rng(seed))
    if split is None or not split[2] < _SEPARABLE_TOL:
        log.info("separability: no split of the inputs found (best score %s)", split and f"{split[2]:.2e}")
        return
    sub, rest, score, op, offset = split
    log.info("separability: y = %sg(%s) %s h(%s) (score %.2e)", f"{offset:.4g} + " if offset else "",
             [str(variables[j]) for j in sub], op, [str(variables[j]) for j in rest], score)
    # the factors' data carry the KAN's error: a factor formula this close to them is as good as they can tell
    good_enough = max(1e-5, 10 * sform.nmse(predict(xte), ev.yte[:, 0]))
    parts = _factor_data if op == "*" else _summand_data
    data = parts(lambda x: predict(x) - offset, xtr, xte, sub, rest, np.random.default_rng(seed))
    if data is None:
        log.info("separability: the parts' data are degenerate")
        return
    factors: list[list[sympy.Expr]] = []
    for cols, (y_tr, y_te) in zip((sub, rest), data):
        datasets = [_dataset(xtr[:, cols], y_tr, xte[:, cols], y_te, dtype)]
        if factors:  # the first part's formulas, where they match its values, turn the labels into the second's
            datasets = _second_part_data(factors[0], data[0], ev, cols, good_enough, dtype, op, offset) or datasets
        found: list[sympy.Expr] = []
        for m, ds in enumerate(datasets):
            exact = _part_formulas(ds, cols, found, library, variables, deadline, good_enough,
                                   share=(2 - len(factors)) * (len(datasets) - m), seed=seed, dtype=dtype, op=op)
            if exact:
                break
        factors.append(list(dict.fromkeys(found)))
    const = sympy.Float(offset) if offset else sympy.Integer(0)
    combos = [const + g * h if op == "*" else g + h for g in factors[0] for h in factors[1]]
    cands = sorted((ev.refit([e], "separable") for e in _most_promising(combos, ev, _COMBINATION_REFITS)),
                   key=lambda c: c.test_nmse)
    log.info("separability: %d of %d combinations refitted, best test NMSE %s", len(cands), len(combos),
             [f"{c.test_nmse:.1e}" for c in cands[:3]])
    for cand in cands[:2]:  # snapped in every view, as the best formula of a run (a short slice of its own)
        if cand.test_nmse <= 1e-4 and not ev.exact_found:
            _snap_views(cand, ev, variables, "separable ", time.process_time() + _SEPARABLE_MIN_SECONDS / 2)


def _log_separable_search(predict, ev: _Evaluator, dataset: dict, forward, wrap, library, variables, deadline, *,
                          seed: int, dtype) -> None:
    """``y = exp(g(x_S) * h(x_T))`` (``x1**x2``): ``log|y|`` is a product, so :func:`_separable_search` runs on it
    (``log`` of ``predict`` and of the labels); its candidates close to ``log|y|`` are exponentiated (``wrap``),
    refitted and snapped on ``y``. One output whose sign does not change (the ``log`` target transform)."""
    if ev.ytr.shape[1] != 1:
        return
    logged = dict(dataset, train_label=forward(dataset["train_label"]), test_label=forward(dataset["test_label"]))
    eps = float(torch.finfo(dataset["train_label"].dtype).eps)
    var = float(logged["train_label"].double().var())
    # relative rounding of y is absolute rounding of log|y|
    ev_log = _Evaluator(logged, variables, 100.0 * eps**2 / (var if var > 0 else 1.0))

    def predict_log(x: np.ndarray) -> np.ndarray:
        return forward(torch.tensor(predict(x))).numpy()  # a copy: predict may return a read-only view

    _separable_search(predict_log, ev_log, library, variables, deadline, seed=seed, dtype=dtype)
    found = sorted((c for c in ev_log.seen if c.source.startswith("separable") and c.test_nmse <= 1e-4),
                   key=lambda c: c.test_nmse)
    for c in found[:2]:
        cand = ev.refit([wrap[0](c.expr)], "log: separable")
        if cand.test_nmse <= 1e-4 and not ev.exact_found:
            _snap_views(cand, ev, variables, "log: separable ", time.process_time() + _SEPARABLE_MIN_SECONDS / 2)


_LOW_RANK_MAX = 3  # products in a sum tried by the low-rank stage
_LOW_RANK_SNAP = 1e-8  # a sum refitted this close to the data (NMSE) is snapped
_LOW_RANK_TAIL = 0.05  # a rank is tried when the grid matrix is this close to it (relative Frobenius norm)


def _low_rank_search(predict, ev: _Evaluator, library, variables) -> None:
    """Two inputs: ``y = sum_ij c_ij p_i(x1) q_j(x2)`` with up to ``_LOW_RANK_MAX`` products
    (``x1*sin(x2) + x2*cos(x1)``), which neither the separability tests (no split makes it a sum or a product)
    nor the pair tests see.

    ``predict`` (see :func:`_surrogate`) is sampled on a grid and the SVD's rank-``r`` singular subspaces are matched
    with library functions of each input (:mod:`kanlens.symbolic.lowrank`); sets that span them are combined by
    linear least squares on the real data, and the best two such sums are refitted (and snapped when nearly
    exact). A few CPU seconds (no KAN is trained), so it runs whatever budget is left. One output only.
    """
    if ev.ytr.shape[1] != 1 or ev.xtr.shape[1] != 2:
        return
    spec = lowrank.grid_spectrum(predict, ev.xtr)
    if spec is None:
        return
    xa, xb, u, s, vt = spec
    total = float(np.linalg.norm(s))
    model_err = math.sqrt(sform.nmse(predict(ev.xte), ev.yte[:, 0]))  # relative
    for r in range(1, min(_LOW_RANK_MAX, s.size - 1) + 1):
        tail = float(np.linalg.norm(s[r:]))
        if not s[r - 1] > 1e-12 * s[0] or tail > _LOW_RANK_TAIL * total:
            continue
        tol = lowrank.membership_tol(s, r, model_err)
        sides = []
        for basis, xs, var in ((u[:, :r], xa, variables[0]), (vt[:r].T, xb, variables[1])):
            members = lowrank.span_members(xs, basis, library, var, tol)
            sides.append(lowrank.spanning_sets(xs, basis, members))
            log.debug("low rank %d, %s: tol %.1e, members %s, sets %s", r, var, tol,
                      [(str(m.expr), f"{m.residual:.1e}") for m in members[:8]],
                      [[str(m.expr) for m in st] for st in sides[-1]])
        fits = [f for p in sides[0] for q in sides[1]
                if (f := lowrank.sum_of_products(p, q, ev.xtr, ev.ytr[:, 0])) is not None and f[0] <= 1e-4]
        log.info("low rank: rank %d (tail %.1e), %d x %d spanning sets, %d sums fit the data", r, tail / total,
                 len(sides[0]), len(sides[1]), len(fits))
        # sums at the labels' noise floor are equally exact: the simpler first (1/(x**2 + 1), not a tan pole form)
        fits.sort(key=lambda f: (max(f[0], 10 * ev.floor), sform.formula_complexity(f[1])))
        for err, expr in fits[:2]:
            log.debug("low rank %d: sum %s, data NMSE %.1e", r, expr, err)
            cand = ev.refit([expr], "low rank")
            # snapped only when nearly exact: a rank-3 approximation of sin(3*x1*x2), 3e-5 off, would spend tens
            # of seconds in snapping views that cannot make it exact
            if cand.test_nmse <= max(_LOW_RANK_SNAP, 100 * ev.floor) and not ev.exact_found:
                _snap_views(cand, ev, variables, "low rank ", time.process_time() + _SEPARABLE_MIN_SECONDS / 2)
        if ev.exact_found:
            return


_COMBINATION_REFITS = 12


def _most_promising(exprs: list[sympy.Expr], ev: _Evaluator, keep: int) -> list[sympy.Expr]:
    """The ``keep`` formulas closest to the training labels up to a scale and an offset (a least-squares line
    through each formula's values, milliseconds each), in that order; a joint refit of all constants costs ~1 s
    per formula (P04 combines 42 pairs of part formulas)."""
    if len(exprs) <= keep:
        return exprs
    y = ev.ytr[:, 0]

    def line_nmse(e: sympy.Expr) -> float:
        try:
            v = ev._values(e, ev.xtr)
        except Exception:  # a formula that cannot be evaluated is refitted last (and fails there with a warning)
            return math.inf
        if not np.all(np.isfinite(v)):
            return math.inf
        a = np.column_stack([v, np.ones_like(v)])
        return sform.nmse(a @ np.linalg.lstsq(a, y, rcond=None)[0], y)

    order = sorted(range(len(exprs)), key=lambda k: (line_nmse(exprs[k]), k))
    return [exprs[k] for k in order[:keep]]


_PAIR_DEGREES = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
_PAIR_TOL = 2e-2  # P09 through its KAN: 8e-3; x1 + x2**2 + x3: 0.15


# ``x_i op x_j`` of a pair reduction, for numpy arrays and sympy symbols alike
_PAIR_OPS = {"/": operator.truediv, "*": operator.mul, "-": operator.sub, "+": operator.add}


def _power_base(op: str, i: int, j: int) -> int:
    """The input whose power ``x**d`` multiplies ``g`` in a pair reduction (``x_j`` for ``/``, ``x_i`` otherwise)."""
    return j if op == "/" else i


def _symmetric_pairs(predict, x: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int, float, float, str]]:
    """``(i, j, d, score, op)``, best first: pairs of inputs the function depends on through ``x_i op x_j`` only.

    * ``op = "/"``: ``f(.., l*x_i, .., l*x_j, ..) = l**d f(x)``, so ``f = x_j**d * g(x_i / x_j, other inputs)``
      (``x_j`` must keep one sign away from 0).
    * ``op = "*"``: ``f(.., l*x_i, .., x_j/l, ..) = l**d f(x)``, so ``f = x_i**d * g(x_i * x_j, other inputs)``
      (``d != 0`` only for a one-signed ``x_i``).
    * ``op = "-"``: ``f(.., x_i + e, .., x_j + e, ..) = f(x)``, so ``f = g(x_i - x_j, other inputs)``.
    * ``op = "+"``: ``f(.., x_i + e, .., x_j - e, ..) = f(x)``, so ``f = g(x_i + x_j, other inputs)``.

    One input less in every case (AI Feynman's symmetry tests). Moved points must stay inside the training
    inputs' box (the KAN is not valid outside it), and moving ``x_i`` or ``x_j`` alone must change ``f`` (a pair
    it does not depend on passes every test and says nothing). ``score`` is
    ``RMS(f(moved x) - l**d f(x)) / std(f)`` at the best degree ``d``.
    """
    n, dim = x.shape
    lo, hi = x.min(0), x.max(0)
    one_signed = [(lo[j] > 0 or hi[j] < 0) and min(abs(lo[j]), abs(hi[j])) >= 1e-3 * max(abs(lo[j]), abs(hi[j]))
                  for j in range(dim)]
    tests = [(i, j, "/") for j in range(dim) if one_signed[j] for i in range(dim) if i != j]
    # x_i * x_j: both orders only where x_i can carry a power (d = 0 is the same test either way)
    tests += [(i, j, "*") for i in range(dim) for j in range(dim) if i < j or (i > j and one_signed[i])]
    tests += [(i, j, op) for op in "-+" for i in range(dim) for j in range(i + 1, dim)]
    out = []
    for i, j, op in tests:
        a = x[rng.integers(0, n, 2048)]
        b = a.copy()
        if op in "/*":
            lam = rng.uniform(0.8, 1.25, len(a))
            b[:, i] *= lam
            b[:, j] = b[:, j] * lam if op == "/" else b[:, j] / lam
        else:  # shifts by up to a quarter of the narrower input's range
            lam = np.ones(len(a))
            e = rng.uniform(-0.25, 0.25, len(a)) * min(hi[i] - lo[i], hi[j] - lo[j])
            b[:, i] += e
            b[:, j] = b[:, j] + e if op == "-" else b[:, j] - e
        inside = np.all((b >= lo) & (b <= hi), axis=1)
        if inside.sum() < 64:
            continue
        a, b, lam = a[inside], b[inside], lam[inside]
        fa, fb = predict(a), predict(b)
        # relative to f's variation, not its size: an offset must not make every pair look homogeneous
        spread = float(np.std(fa))
        if not (spread > 1e-9 * float(np.sqrt(np.mean(fa**2))) and np.all(np.isfinite(fa))
                and np.all(np.isfinite(fb))):
            continue  # f hardly varies: nothing to learn
        if any(_moved_alone(predict, a, b, fa, m) < 1e-2 * spread for m in (i, j)):
            continue  # f (almost) does not depend on x_i or x_j
        if op == "/" or (op == "*" and one_signed[i]):
            degrees = _PAIR_DEGREES if i < j or op == "/" else _PAIR_DEGREES[1:]
        else:
            degrees = (0.0,)
        score, d = min((float(np.sqrt(np.mean((fb - lam**d * fa) ** 2)) / spread), d) for d in degrees)
        out.append((i, j, d, score, op))
    return sorted(out, key=lambda t: t[3])


def _moved_alone(predict, a: np.ndarray, b: np.ndarray, fa: np.ndarray, m: int) -> float:
    """RMS change of ``f`` when only input ``m`` takes its moved values ``b[:, m]``."""
    c = a.copy()
    c[:, m] = b[:, m]
    return float(np.sqrt(np.mean((predict(c) - fa) ** 2)))


def _pair_data(x: np.ndarray, y: np.ndarray, i: int, j: int, d: float, rest: list[int], op: str = "/"):
    """Inputs ``(x_rest, x_i op x_j)`` and target ``y / x_base**d`` of the reduced problem (see :func:`_power_base`)."""
    with np.errstate(all="ignore"):
        u = _PAIR_OPS[op](x[:, i], x[:, j])
        return np.column_stack([x[:, rest], u]), y[:, 0] / x[:, _power_base(op, i, j)] ** d


def _pair_search(predict, ev: _Evaluator, library, variables, deadline, *, seed: int, dtype) -> None:
    """If ``predict`` (see :func:`_surrogate`) depends on a pair of inputs only through ``u = x_i op x_j`` (a ratio,
    product, difference or sum, possibly times a power ``x**d``; see :func:`_symmetric_pairs`): recover ``g`` by a
    smaller run on the real data ``(rest, u) -> y / x**d`` and join its formulas, substituted back, to the
    candidates (``exp(-x1**2/(2*x2**2))/sqrt(2*pi*x2**2)``, ``atan(x2/x1)``, ``sin(x1*x2)``, ``x3*sin(x1 - x2)``).

    One output only. At most the two best pairs are tried; each run gets half the remaining budget, at least
    ``_SEPARABLE_MIN_SECONDS``.
    """
    if ev.ytr.shape[1] != 1:
        return
    pairs = [p for p in _symmetric_pairs(predict, ev.xtr, np.random.default_rng(seed))
             if p[3] < _PAIR_TOL][:2]
    if not pairs:
        log.info("pairs: no pair of inputs with a symmetry of the KAN found")
        return
    dim = ev.xtr.shape[1]
    u = sympy.Symbol("pair_u_")
    for k, (i, j, d, score, op) in enumerate(pairs):
        base = variables[_power_base(op, i, j)]
        log.info("pairs: y = %s**%s * g(%s %s %s, ...) (score %.2e)", base, d, variables[i], op, variables[j], score)
        rest = [m for m in range(dim) if m not in (i, j)]
        (xtr, ytr), (xte, yte) = (_pair_data(ev.xtr, ev.ytr, i, j, d, rest, op),
                                  _pair_data(ev.xte, ev.yte, i, j, d, rest, op))
        if not (np.all(np.isfinite(ytr)) and np.all(np.isfinite(yte))):
            continue
        ds = _dataset(xtr, ytr, xte, yte, dtype)
        m = len(rest) + 1
        width = [1, 1] if m == 1 else [m, 2 * m + 1, 1]
        budget = None if deadline is None else max(
            _SEPARABLE_MIN_SECONDS, (deadline - time.process_time()) / (len(pairs) - k))
        names = [str(variables[r]) for r in rest] + [u.name]
        res = symbolic_regression(ds, width, seed=seed, dtype=dtype, lib=library, var=names, time_budget=budget,
                                  separable=True)
        log.info("pairs: g = %s", res.formula)
        subs = {sympy.Symbol(str(variables[r])): variables[r] for r in rest}
        subs[u] = _PAIR_OPS[op](variables[i], variables[j])
        rows = list(res.table)
        picks = dict.fromkeys([rows[res.table.chosen].expr, min(rows, key=lambda c: c.test_nmse).expr])
        power = base ** sympy.nsimplify(d)
        for g in picks:
            cand = ev.refit([power * g.xreplace(subs)], "pair")
            if cand.test_nmse <= 1e-4:
                _snap_views(cand, ev, variables, "pair ", time.process_time() + _SEPARABLE_MIN_SECONDS / 2)
        if ev.exact_found:
            return


_FACTOR_ANCHORS = 64


def _part_formulas(ds: dict, cols: list[int], found: list[sympy.Expr], library, variables, deadline,
                   good_enough: float, *, share: float, seed: int, dtype, op: str) -> bool:
    """Formulas for one part of a separable function, fitted to ``ds``, appended to ``found``; True when one is
    exact on ``ds``. The run gets ``1 / share`` of the remaining budget (at least ``_SEPARABLE_MIN_SECONDS``).

    One input: a single edge first (a library function of an affine map), then two library functions composed,
    fitted directly (also when the edge is close but not exact), then a ``[1, 3, 1]`` KAN; more inputs: a
    ``[n, 2n + 1, 1]`` run with the same tests. A factor of a product is modelled on ``log`` first (when
    one-signed): factors are products of powers and exponentials more often than sums, and a run's budget here is
    often only the minimum, enough for one target (``exp(sin(pi*(x1**2 + x2**2))/2)`` in P04).
    """
    n = len(cols)
    widths = [[1, 1], [1, 3, 1]] if n == 1 else [[n, 2 * n + 1, 1]]
    edge_good = False
    for k, width in enumerate(widths):
        if k == 1:
            comps = _compositions(_np(ds["train_input"])[:, 0], _np(ds["train_label"])[:, 0], library,
                                  variables[cols[0]])
            found += [e for _, e in comps]
            if edge_good or (comps and comps[0][0] <= good_enough):
                return False
        budget = None if deadline is None else max(
            _SEPARABLE_MIN_SECONDS, (deadline - time.process_time()) / share / (len(widths) - k))
        res = symbolic_regression(ds, width, seed=seed, dtype=dtype, lib=library,
                                  var=[variables[j] for j in cols], time_budget=budget, separable=n > 1,
                                  target_transforms=("log", "identity") if op == "*" else ("identity", "log"))
        log.info("separability: part in %s, width %s, budget %s CPU s -> %s", [str(variables[j]) for j in cols],
                 width, budget and round(budget), res.formula)
        rows = list(res.table)
        chosen = rows[res.table.chosen]
        # the whole front: on the KAN's values nothing is exact, and the chosen formula may fit the KAN's
        # error with a complex one where a simpler row is the true part (the refit on the data decides)
        found += [chosen.expr] + [c.expr for c in rows[:_FRONT_ROWS]]
        if res.exact:
            return True
        if chosen.test_nmse <= good_enough:
            if k == 0 and n == 1:
                # close, not exact: the compositions (seconds) still run, the [1, 3, 1] run does not; on data
                # from the labels a single edge only approximates cosh(x2) (in cos(x1)*cosh(x2)), which they fit
                edge_good = True
                continue
            return False
    return False


def _second_part_data(first: list[sympy.Expr], first_values: tuple, ev: _Evaluator, rest: list[int],
                      good_enough: float, dtype, op: str = "*", offset: float = 0.0) -> list[dict]:
    """Datasets for the second part from the real labels, ``h(x_T) = (y - offset) / g(x_S)`` (``op = "*"``) or
    ``y - g(x_S)`` (``op = "+"``), for the formulas ``g`` of the first part that reproduce its values (from the
    KAN) to ``good_enough``: the simplest and the closest one (the closest may fit the KAN's error, the simplest
    may be an approximation of the right shape: ``exp(x1)`` vs ``exp(26*tan(0.038*x1))`` in
    ``exp(x1)*x2**2 + x3``, a Gaussian bump vs ``exp(-sin(pi*(x1**2 + x2**2))/2)`` in P04); empty when none matches.

    The KAN's values of a part carry the KAN's error (NMSE ~3e-4 for ``1/(x2 + x3)`` in ``x1/(x2 + x3)``, too
    much to tell ``1/u`` from ``exp(-a*u)``), the real labels do not. For a product only points where ``|g|`` is at
    least half its maximum are used, so noise in ``y`` is amplified at most twice.
    """
    data = {"train": (ev.xtr, ev.ytr[:, 0]), "test": (ev.xte, ev.yte[:, 0])}
    matches = []
    for expr in first:
        vals = {key: ev._values(expr, x) for key, (x, _) in data.items()}
        err = sform.nmse(vals["train"], first_values[0])
        if err <= good_enough:
            matches.append((sform.formula_complexity(expr), err, vals, expr))
    if not matches:
        return []
    simplest = min(matches, key=lambda m: (m[0], m[1]))
    closest = min(matches, key=lambda m: (m[1], m[0]))
    out = []
    for _, _, vals, expr in [simplest] if simplest is closest else [simplest, closest]:
        ds = _part_dataset(vals, data, rest, op, offset, dtype)
        if ds is not None:
            log.info("separability: second part's data from the labels and %s", expr)
            out.append(ds)
    return out


def _part_dataset(vals: dict, data: dict, rest: list[int], op: str, offset: float, dtype) -> dict | None:
    if op == "+":
        (x_tr, y_tr), (x_te, y_te) = ((x[:, rest], y - vals[key]) for key, (x, y) in data.items())
        return _dataset(x_tr, y_tr, x_te, y_te, dtype)
    big = 0.5 * float(np.max(np.abs(vals["train"])))
    keep = {key: np.abs(v) >= big for key, v in vals.items()}
    if not big > 0 or keep["train"].sum() < 20 or keep["test"].sum() < 10:
        return None
    (x_tr, y_tr), (x_te, y_te) = ((x[keep[key]][:, rest], (y[keep[key]] - offset) / vals[key][keep[key]])
                                  for key, (x, y) in data.items())
    return _dataset(x_tr, y_tr, x_te, y_te, dtype)


def _summand_data(predict, xtr: np.ndarray, xte: np.ndarray, sub: list[int], rest: list[int],
                  rng: np.random.Generator):
    """Values of the parts of ``f = g(x_S) + h(x_T)`` at the training and test points, offset so that
    ``g + h ~ f``: ``((g_train, g_test), (h_train, h_test))``, or None when the model is not finite there.

    Each part is the mean of the slices ``f(x_S, a_T)`` (``f(a_S, x_T)``) over ``_FACTOR_ANCHORS`` training points
    ``a_j`` (one slice carries the KAN's error at its anchor); the mean of ``f`` at the anchors is subtracted from
    ``h``, since for a sum ``mean_j f(x_S, a_T_j) + mean_j f(a_S_j, x_T) - mean_j f(a_j) = f(x)``.
    """
    idx = rng.choice(len(xtr), size=min(_FACTOR_ANCHORS, len(xtr)), replace=False)
    anchors = xtr[idx]
    offset = float(np.mean(predict(anchors)))
    out = []
    for keep, shift in ((sub, 0.0), (rest, offset)):
        vals = tuple(_slices(predict, anchors, x, keep).mean(1) - shift for x in (xtr, xte))
        if not all(np.isfinite(v).all() for v in vals):
            return None
        out.append(vals)
    return tuple(out)


def _slices(predict, anchors: np.ndarray, x: np.ndarray, keep: list[int]) -> np.ndarray:
    """``(n, m)``: ``f`` at the points ``x`` with the inputs outside ``keep`` taken from each of ``m`` anchors."""
    out = np.empty((len(x), len(anchors)))
    step = max(1, 2**16 // len(anchors))  # bounded memory for large datasets
    for i in range(0, len(x), step):
        xx = np.repeat(anchors[None, :, :], min(step, len(x) - i), axis=0)  # (rows, m, d)
        xx[:, :, keep] = x[i:i + step, None, keep]
        out[i:i + step] = predict(xx.reshape(-1, x.shape[1])).reshape(-1, len(anchors))
    return out


def _factor_data(predict, xtr: np.ndarray, xte: np.ndarray, sub: list[int], rest: list[int],
                 rng: np.random.Generator):
    """Values of the factors of ``f = g(x_S) * h(x_T)`` at the training and test points, scaled so that
    ``g * h ~ f``: ``((g_train, g_test), (h_train, h_test))``, or None when a factor vanishes at the anchors or
    the model is not finite there.

    One slice ``f(x_S, a_T)`` carries the KAN's error at its anchor ``a`` (a slice along the domain's edge can be
    off by several percent); the slices at ``_FACTOR_ANCHORS`` training points ``a_j`` form the rank-1 matrix
    ``g(x_S) h(a_T)``, whose leading singular vector averages those errors out. ``h`` is then the least-squares
    coefficient of the slices ``f(a_S, x_T)`` on ``g(a_S)``, and ``g`` once more on ``h`` (consistent scales).
    """
    idx = rng.choice(len(xtr), size=min(_FACTOR_ANCHORS, len(xtr)), replace=False)
    anchors = xtr[idx]

    def coef(m: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Least-squares coefficient of every row of ``m`` on ``v``."""
        return m @ v / np.dot(v, v)

    slices = functools.partial(_slices, predict, anchors)  # (x, keep) -> (n, anchors)
    a_tr, b_tr = slices(xtr, sub), slices(xtr, rest)  # g(x_S) h(a_T), g(a_S) h(x_T)
    if not (np.isfinite(a_tr).all() and np.isfinite(b_tr).all()):
        return None
    u, s, _ = np.linalg.svd(a_tr, full_matrices=False)
    g_a = (u[:, 0] * s[0])[idx]
    if not np.dot(g_a, g_a) > 0:
        return None
    h_a = coef(b_tr, g_a)[idx]
    if not np.dot(h_a, h_a) > 0:
        return None
    g_tr = coef(a_tr, h_a)  # g once more on h, so that the two scales multiply back to f
    g_a = g_tr[idx]
    return (g_tr, coef(slices(xte, sub), h_a)), (coef(b_tr, g_a), coef(slices(xte, rest), g_a))


# plain inner functions G, by library name; "cosh" is (exp(x) + exp(-x)) / 2, written with the library's exp
_INNER = ("x^2", "exp", "log", "sqrt", "1/x", "cosh")


def _inner_expr(name: str, library, var: sympy.Symbol) -> sympy.Expr | None:
    """``G(var)`` for an ``_INNER`` name, None when the library lacks the functions it is written with."""
    if name == "cosh":
        if "exp" not in library:
            return None
        return (sform.edge_expr(library["exp"], (1.0, 0.0, 1.0, 0.0), var)
                + sform.edge_expr(library["exp"], (-1.0, 0.0, 1.0, 0.0), var)) / 2
    if name not in library:
        return None
    return sform.edge_expr(library[name], (1.0, 0.0, 1.0, 0.0), var)


def _compositions(x: np.ndarray, y: np.ndarray, library, var: sympy.Symbol, top: int = 6, per_inner: int = 3):
    """``(nmse, c*F(a*G(x) + b) + d)``, best first: a library function ``F`` of a plain inner function ``G``.

    One input needing two nested functions (``1/(1 + x**2)``, ``log(1 + x**2)``, ``1/sqrt(1 - x**2)``,
    ``1/(exp(x) + exp(-x))``) is one edge of neither a ``[1, 1]`` KAN nor, often, of the pruned ``[1, 3, 1]``, whose
    inner edge tends to stay linear. Products of a power and a library function (``x*exp(-x)``, see
    :func:`_power_products`) compete in the same list.
    """
    out = []
    inners = _inner_values(x, library, var)
    for inner, u in inners:
        if not _varies(u):
            continue
        with np.errstate(all="ignore"):
            fits = _usable(sfit.rank_fits(sfit.fit_library(u, y, library, refine_top=None)))
        if not fits:
            continue
        # the data come from a KAN: several functions fit them about equally (1/(a*u + b) and the pole form
        # tan(a*u - pi/2)); keep the simplest few close to the best, the refit on the real data decides
        best = min(f.nmse for f in fits)
        close = [f for f in fits if f.nmse <= 10 * best + 1e-12]
        for f in sorted(close, key=lambda f: (f.complexity, f.nmse))[:per_inner]:
            out.append((f.nmse, sform.edge_expr(library[f.name], f.params, inner)))
    out += _power_products(x, y, library, var, per_power=per_inner)
    out += _power_compositions(x, y, library, var, inners)
    return sorted(out, key=lambda t: t[0])[:top]


_PLUS_DEGREE = 2  # degree of the polynomial added to a library function (a cubic: the polynomial stage's)
_PLUS_STARTS = 4  # coarse grid points zoomed into, per function


def _plus_functions(library) -> list[tuple[str, object, object]]:
    """``(name, numpy F(u), sympy F(u))`` for the library functions that a low-degree polynomial does not already
    contain."""
    out = []
    for name, fn in library.items():
        if fn.kind in ("zero", "identity") or (fn.kind == "power" and float(fn.degree).is_integer()
                                                 and 0 <= fn.degree <= _PLUS_DEGREE):
            continue
        out.append((name, fn.numpy, fn.sympy_fn))
    return out


def _function_plus_polynomial(x: np.ndarray, y: np.ndarray, library, var: sympy.Symbol, top: int = 3,
                              max_points: int = 256) -> list[tuple[float, sympy.Expr]]:
    """``(nmse, c*F(a*x + b) + p(x))``, best first: a library function plus a polynomial of degree
    ``_PLUS_DEGREE`` (``x + sin(x)``; and a pair of exponentials, ``cosh(x) - x**2/2``).

    A KAN prunes such a one-input function to one edge, and the sum is no library function. ``(a, b)`` come from a
    grid over the standardised input (``c`` and ``p`` eliminated by least squares: the residual of ``y`` against
    the polynomials, projected on ``F``'s); the joint refit of all constants on the real data polishes them.
    ``nmse``: the grid optimum's, on a subsample of ``max_points`` points.
    """
    xs, ys = sfit._subsample(x, y, max_points)
    mx, sx = float(xs.mean()), float(xs.std())
    if not sx > 0:
        return []
    t = (xs - mx) / sx
    q, _ = np.linalg.qr(np.vander(t, _PLUS_DEGREE + 1))
    yr = ys - q @ (q.T @ ys)
    var_y, var_r = float(np.sum((ys - ys.mean()) ** 2)), float(yr @ yr)
    if not var_r > 1e-20 * var_y:
        return []  # y is itself a low-degree polynomial: the polynomial stage's
    tv = (var - sympy.Float(mx)) / sympy.Float(sx)  # t as a sympy expression of var

    def scores(f_np, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """NMSE of ``y`` against the polynomials plus ``F(a*t + b)`` at each ``(a, b)`` (inf where unusable)."""
        nmse = np.full(a.size, np.inf)
        with np.errstate(all="ignore"):
            f = f_np(a[:, None] * t[None, :] + b[:, None])
            ok = np.isfinite(f).all(1) & (np.abs(f).max(1) < 1e12)
            if not ok.any():
                return nmse
            f = f[ok]
            fr = f - (f @ q) @ q.T
            norm = np.einsum("gn,gn->g", fr, fr)
            proj = fr @ yr
            # F must add something the polynomial does not have (not a Taylor-regime quadratic)
            new = norm > 1e-10 * np.einsum("gn,gn->g", f, f)
            nmse[ok] = np.where(new, (var_r - proj**2 / np.maximum(norm, 1e-300)) / var_y, np.inf)
        return nmse

    a_all, b_all = sfit.affine_grid()
    out = []
    for _, f_np, f_sym in _plus_functions(library):
        err, ak, bk = math.inf, 0.0, 0.0
        coarse = scores(f_np, a_all, b_all)
        for k in np.argsort(coarse)[:_PLUS_STARTS]:
            if not math.isfinite(coarse[k]):
                continue
            # zoom in: the polynomial takes most of y, and the residual left for F is sensitive to (a, b) (cosh(x)
            # - x**2/2: b off by one coarse step leaves nmse 7e-3, the right one 3e-14)
            e0, a0, b0 = sfit.zoom_affine(functools.partial(scores, f_np), float(a_all[k]), float(b_all[k]),
                                          float(coarse[k]), 0.2, float(sfit.GRID_SHIFTS[1] - sfit.GRID_SHIFTS[0]))
            if e0 < err:
                err, ak, bk = e0, a0, b0
        if not math.isfinite(err):
            continue
        with np.errstate(all="ignore"):
            fk = f_np(ak * t + bk)
        term = f_sym(sympy.Float(ak) * tv + sympy.Float(bk))
        out.append((err, _plus_polynomial_expr([fk], [term], t, ys, tv)))
    if "exp" in library:
        out += _exponential_pair_plus_polynomial(t, ys, yr, q, var_y, library["exp"].sympy_fn, tv)
    return sorted(out, key=lambda r: r[0])[:top]


def _plus_polynomial_expr(cols: list[np.ndarray], terms: list[sympy.Expr], t: np.ndarray, y: np.ndarray,
                          tv: sympy.Expr) -> sympy.Expr:
    """``sum_k c_k * terms[k] + p(tv)`` with ``c`` and the polynomial ``p`` (degree ``_PLUS_DEGREE``) fitted by
    least squares to ``y``; ``cols`` are the terms' values at the standardised inputs ``t`` (``tv`` in sympy)."""
    coef = np.linalg.lstsq(np.column_stack([*cols, np.vander(t, _PLUS_DEGREE + 1)]), y, rcond=None)[0]
    k = len(terms)
    poly = sum(sympy.Float(c) * tv ** (_PLUS_DEGREE - j) for j, c in enumerate(coef[k:]))
    return sympy.Add(*[sympy.Float(c) * e for c, e in zip(coef[:k], terms)]) + sympy.expand(poly)


def _exponential_pair_plus_polynomial(t: np.ndarray, y: np.ndarray, yr: np.ndarray, q: np.ndarray, var_y: float,
                                      exp_sym, tv: sympy.Expr) -> list[tuple[float, sympy.Expr]]:
    """``(nmse, c1*exp(a*x) + c2*exp(-a*x) + p(x))``: cosh and sinh with any shift (``cosh(x) - x**2/2``; pykan's
    library has neither), a 1-D search over ``a`` with ``c1``, ``c2`` and ``p`` linear (see
    :func:`_function_plus_polynomial`, whose standardised input ``t`` (``tv`` in sympy), data ``y``, their residual
    ``yr`` off the polynomials and the polynomial basis ``q`` it takes)."""

    def err(a: float) -> tuple[float, np.ndarray]:
        with np.errstate(all="ignore"):
            cols = np.column_stack([np.exp(a * t), np.exp(-a * t)])
        if not np.isfinite(cols).all() or np.abs(cols).max() > 1e12:
            return math.inf, cols
        cr = cols - q @ (q.T @ cols)
        c = np.linalg.lstsq(cr, yr, rcond=None)[0]
        r = yr - cr @ c
        return float(r @ r) / var_y, cols

    grid = np.geomspace(0.05, 10.0, 120)
    errs = [err(float(a))[0] for a in grid]
    k = int(np.argmin(errs))
    if not math.isfinite(errs[k]):
        return []
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    for _ in range(3):  # zoom in on the bracket
        fine = np.linspace(lo, hi, 21)
        fe = [err(float(a))[0] for a in fine]
        j = int(np.argmin(fe))
        lo, hi = fine[max(j - 1, 0)], fine[min(j + 1, fine.size - 1)]
    a = float(fine[j])
    e, cols = err(a)
    terms = [exp_sym(sympy.Float(a) * tv), exp_sym(-sympy.Float(a) * tv)]
    return [(e, _plus_polynomial_expr([cols[:, 0], cols[:, 1]], terms, t, y, tv))]


def _inner_values(x: np.ndarray, library, var: sympy.Symbol) -> list[tuple[sympy.Expr, np.ndarray]]:
    """``(G(var), G(x))`` for each ``_INNER`` function the library can write (values may be non-finite: callers
    check :func:`_varies` on the points they use)."""
    out = []
    for name in _INNER:
        inner = _inner_expr(name, library, var)
        if inner is None:
            continue
        with np.errstate(all="ignore"):
            u = sform.real_values(sympy.lambdify([var], inner, modules="numpy")(x))
        if u.shape == x.shape:
            out.append((inner, u))
    return out


def _varies(u: np.ndarray) -> bool:
    """Finite everywhere and not constant: usable as the argument of a fitted function."""
    return bool(np.isfinite(u).all() and np.ptp(u) > 0)


_POWERS = (1, 2, 3, -1, -2, 0.5, -0.5)


def _power_quotients(x: np.ndarray, y: np.ndarray, var: sympy.Symbol, max_points: int):
    """``(x**p, keep, y / x**p on keep)`` for each power ``p`` in ``_POWERS`` that is finite on ``x``; ``keep``
    selects (at most ``max_points`` of) the points where ``|x**p|`` is at least a tenth of its maximum (near
    ``x = 0`` the quotient would amplify the data's error)."""
    for p in _POWERS:
        with np.errstate(all="ignore"):
            xp = np.power(x, p)
        if not np.isfinite(xp).all():
            continue  # a fractional power of negative inputs, or a negative power of 0
        keep = np.flatnonzero(np.abs(xp) >= 0.1 * np.abs(xp).max())[:max_points]
        if keep.size < 20:
            continue
        yield var ** (sympy.Rational(p).limit_denominator(2)), keep, y[keep] / xp[keep]


def _power_products(x: np.ndarray, y: np.ndarray, library, var: sympy.Symbol, per_power: int = 3,
                    max_points: int = 256) -> list[tuple[float, sympy.Expr]]:
    """``(nmse, x**p * (c*F(a*x + b) + d))``: a power of the input times a library function (``x*exp(-x)``).

    ``F`` is fitted to ``y / x**p`` (see :func:`_power_quotients`); ``nmse`` is that fit's, on a subsample of
    ``max_points`` points.
    """
    out = []
    for power, keep, zs in _power_quotients(x, y, var, max_points):
        with np.errstate(all="ignore"):
            fits = _usable(sfit.rank_fits(sfit.fit_library(x[keep], zs, library, refine_top=None)))
        for f in sorted(fits, key=lambda f: f.nmse)[:per_power]:
            out.append((f.nmse, power * sform.edge_expr(library[f.name], f.params, var)))
    return out


_OUTER = ("1/x", "1/x^2", "exp", "log", "sqrt", "1/sqrt(x)")


def _power_compositions(x: np.ndarray, y: np.ndarray, library, var: sympy.Symbol,
                        inners: list[tuple[sympy.Expr, np.ndarray]] | None = None,
                        max_points: int = 128) -> list[tuple[float, sympy.Expr]]:
    """``(nmse, x**p * (c*F(a*G(x) + b) + d))``: a power times a reciprocal, root, exponential or logarithm of a
    plain inner function (``x**3/(exp(x) - 1)``, ``x/(1 + x**2)**2``); the best ``F`` per power and inner function.

    As :func:`_power_products`, on ``y / x**p`` (:func:`_power_quotients`); ``F`` only from ``_OUTER`` and
    ``max_points`` points, since the search runs ``len(_POWERS) * len(_INNER)`` fits. ``inners``: the values of
    :func:`_inner_values` on ``x``, when already computed.
    """
    outer = library.subset([n for n in _OUTER if n in library])
    if not len(outer):
        return []
    inners = _inner_values(x, library, var) if inners is None else inners
    out = []
    for power, keep, zs in _power_quotients(x, y, var, max_points):
        for inner, u_all in inners:
            u = u_all[keep]
            if not _varies(u):
                continue
            with np.errstate(all="ignore"):
                fits = _usable(sfit.rank_fits(sfit.fit_library(u, zs, outer, refine_top=2)))
            if fits:
                f = min(fits, key=lambda f: f.nmse)
                out.append((f.nmse, power * sform.edge_expr(outer[f.name], f.params, inner)))
    return out


_TRANSFORMS = ("identity", "log")
_MIN_SEARCH_SECONDS = 10.0


def _resolve_transforms(names: Sequence[str] | None, dataset: dict) -> list[tuple[str, object, list | None]]:
    """``(name, label map, per-output formula wrap)`` for each usable target transform, in the given order.

    ``log`` models ``log(s*y)`` (``s`` the sign of each output, which must not change over the data): products and
    quotients of positive factors become sums, which a KAN represents with one layer less.
    """
    names = list(_TRANSFORMS[:1] if names is None else names)
    unknown = [n for n in names if n not in _TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown target transform(s) {unknown}; known: {list(_TRANSFORMS)}")
    if not names:
        raise ValueError("target_transforms must name at least one transform (e.g. ('identity',))")
    out: list[tuple[str, object, list | None]] = []
    for name in dict.fromkeys(names):
        if name == "identity":
            out.append((name, None, None))
            continue
        ys = torch.cat([dataset["train_label"].double(), dataset["test_label"].double()])
        lo, hi = ys.min(0).values, ys.max(0).values
        sign = torch.where(lo > 0, 1.0, torch.where(hi < 0, -1.0, 0.0)).to(torch.float64)
        if bool((sign == 0).any()):
            log.info("log transform skipped: some output changes sign (or is zero)")
            continue
        ratio = (ys * sign).max(0).values / (ys * sign).min(0).values
        if not bool(torch.isfinite(ratio).all()):
            continue
        signs = [float(v) for v in sign]

        def forward(y: torch.Tensor, sign=sign) -> torch.Tensor:
            return torch.log(y.double() * sign.to(y.device))

        wrap = [(lambda e, s=s: sympy.exp(e) if s > 0 else -sympy.exp(e)) for s in signs]
        out.append((name, forward, wrap))
    return out


def _fit_and_search(model, dataset: dict, forward, wrap, tag: str, ev: _Evaluator, library, *, var, steps,
                    lamb: float, grids, prune: bool, prune_rounds: int, prune_kwargs: dict, fit_kwargs: dict,
                    normalize_labels: bool, weight_simple: float, r2_threshold: float, alternatives: int,
                    deadline: float | None, timings: dict, surrogates: dict | None = None):
    """Train the KAN on (transformed) labels, auto_symbolic, search alternatives, snap; candidates go to ``ev``."""
    known_exact = ev.exact_found
    labels = {key: dataset[key] if forward is None else forward(dataset[key]) for key in ("train_label", "test_label")}
    ds_model = {key: v.to(model.device, model.dtype) for key, v in dataset.items() if isinstance(v, torch.Tensor)}
    # Train on standardised labels so the sparsity weight means the same for every target scale (the scaling is
    # folded into the output nodes after training).
    y_mean = labels["train_label"].double().mean(0)
    y_scale = labels["train_label"].double().std(0).clamp_min(1e-12)
    if not normalize_labels:
        y_mean, y_scale = torch.zeros_like(y_mean), torch.ones_like(y_scale)
    for key in ("train_label", "test_label"):
        ds_model[key] = ((labels[key].double() - y_mean) / y_scale).to(model.device, model.dtype)

    stage_times: dict[str, float] = {}
    model = _train(model, ds_model, steps=steps, lamb=lamb, refine_grid=grids, prune=prune,
                   prune_rounds=prune_rounds, prune_kwargs=prune_kwargs, timings=stage_times, fit_kwargs=fit_kwargs)
    timings.update({tag + key: v for key, v in stage_times.items()})  # a later run must not overwrite these
    with torch.no_grad():  # fold the label standardisation into the output nodes: the model predicts y again
        model.node_scale[-1].mul_(y_scale.to(model.node_scale[-1]))
        model.node_bias[-1].mul_(y_scale.to(model.node_bias[-1])).add_(y_mean.to(model.node_bias[-1]))

    if surrogates is not None:  # the spline KAN itself: auto_symbolic below turns its edges into formulas
        surrogates[tag] = copy.deepcopy(model)
    t = time.perf_counter()
    samples = _spline_samples(model, ds_model["train_input"])
    auto = sfit.auto_symbolic(model, lib=library, r2_threshold=r2_threshold, weight_simple=weight_simple,
                              topk=alternatives + 1)
    timings[tag + "auto_symbolic"] = time.perf_counter() - t

    t = time.perf_counter()
    # CPU seconds, not wall seconds: on a loaded machine the search must do the same work, not less. Training
    # always completes; the search then gets at least a short slice even when the budget is spent.
    if deadline is not None:
        deadline = max(deadline, time.process_time() + _MIN_SEARCH_SECONDS)
    search = _Search(model, auto, library, ev, var, deadline=deadline, wrap=wrap, tag=tag)
    search.simplest_variants()
    search.chains(samples, weight_simple)
    search.twin_swaps(alternatives)
    search.swaps(alternatives)
    timings[tag + "alternatives"] = time.perf_counter() - t
    t = time.perf_counter()
    # an exact formula from before this run (a polynomial fit) is snapped already; this run's formula is worth
    # snapping only when it is exact too (it may be simpler: sqrt((x1 - x2)**2 + (x3 - x4)**2), not expanded)
    if search.best.exact or not known_exact:
        _snap_views(search.best, ev, ev.variables, tag, deadline)
    timings[tag + "snap"] = time.perf_counter() - t
    return model, auto


def _with_most_accurate(fits: Sequence[sfit.AffineFit], top: int, accurate: int = 2) -> list[sfit.AffineFit]:
    """The first ``top`` fits (in the given order) plus the ``accurate`` ones with the lowest error.

    The complexity-weighted ranking can put a simple near-fit (``sin`` imitating a flat ``tanh``) above the exact
    function when the spline samples are slightly off; the most accurate fits are always worth one refit.
    """
    out = list(fits[:top])
    for f in sorted(fits, key=lambda f: f.nmse)[:accurate]:
        if f not in out:
            out.append(f)
    return out


def _key(assign: dict) -> tuple:
    return tuple(sorted((e, f.name) for e, f in assign.items()))


def _usable(fits: Sequence[sfit.AffineFit]) -> list[sfit.AffineFit]:
    """Fits a formula can use: valid, not a degenerate (Taylor-limit) fit, not the ``"0"`` function."""
    return [f for f in fits if f.valid and not f.degenerate and f.complexity > 0]


def _simplest(fits: Sequence[sfit.AffineFit], tau: float) -> sfit.AffineFit | None:
    """The lowest-complexity non-degenerate fit with ``r2 >= tau`` (best r2 among equals), ignoring ``"0"``."""
    ok = [f for f in _usable(fits) if f.r2 >= tau]
    return min(ok, key=lambda f: (f.complexity, -f.r2)) if ok else None


def _apply(model, assign: dict, library) -> None:
    for (l, i, j), f in assign.items():
        lib = library if f.name in library else None  # e.g. "x" for a chain when the user's lib lacks it
        sfit.fix_symbolic(model, l, i, j, f.name, params=f.params, lib=lib)


def _expansion_terms(expr: sympy.Expr) -> int:
    """An upper bound on the terms of ``expr``'s expansion (multinomials ``(a + b + ...)**n`` and products of sums)."""
    if expr.is_Atom:
        return 1
    if isinstance(expr, sympy.Add):
        return sum(_expansion_terms(a) for a in expr.args)
    if isinstance(expr, sympy.Mul):
        return math.prod(_expansion_terms(a) for a in expr.args)
    if isinstance(expr, sympy.Pow):
        base, n = _expansion_terms(expr.base), expr.exp
        if n.is_Integer and abs(int(n)) > 1 and base > 1:
            return math.comb(abs(int(n)) + base - 1, base - 1) if abs(int(n)) < 10_000 else 10**12
        return base
    return max((_expansion_terms(a) for a in expr.args), default=1)  # a function: its arguments expand alone


def _expand(expr: sympy.Expr, max_ops: int = 300) -> sympy.Expr | None:
    """Polynomial expansion (also inside function arguments); ``None`` when it blows up."""
    if _expansion_terms(expr) > 4 * max_ops:  # e.g. (x1 + 0.3*x2 + ...)**23: sympy would need gigabytes
        return None
    try:
        e = sympy.expand(expr, deep=True, power_exp=False, power_base=False, log=False)
    except (TypeError, ValueError, RecursionError):
        return None
    return e if sympy.count_ops(e) <= max_ops else None


def _tidy(expr: sympy.Expr) -> sympy.Expr:
    """Light, bounded rewriting of a snapped formula (``e^c * exp(u) -> exp(u + c)``); no floats change.

    ``sympy.simplify`` is deliberately not used: it can run for minutes on nested exp/log formulas.
    """
    try:
        # floats that are integers to machine precision are integers (exactly equal, so no refit needed)
        ints = {f: sympy.Integer(round(float(f))) for f in expr.atoms(sympy.Float)
                if abs(float(f) - round(float(f))) <= 1e-12 * max(1.0, abs(float(f)))}
        expr = expr.xreplace(ints)
        e = sympy.powsimp(sympy.expand_power_exp(expr))
        return e if sform.formula_complexity(e) <= sform.formula_complexity(expr) else expr
    except (TypeError, ValueError, RecursionError):
        return expr
