"""Pair symmetries (AI Feynman's tests): if a model of ``y`` depends on two inputs only through their ratio,
product, difference or sum (up to a power of one of them), ``y`` is recovered by a search with one input less."""

from __future__ import annotations

import logging
import operator

import numpy as np
import sympy

from .budget import Deadline
from .candidates import Candidate, Evaluator, Provenance
from .context import SearchContext
from .parts import to_dataset
from .views import snap_views

__all__ = ["PAIR_TOL", "PairSymmetries", "pair_data", "pair_search", "power_base", "symmetric_pairs"]

log = logging.getLogger(__name__)

_VIEW_SECONDS = 7.5  # CPU seconds (at most) for snapping a reduced formula in its views

_PAIR_DEGREES = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
PAIR_TOL = 2e-2  # P09 through its KAN: 8e-3; x1 + x2**2 + x3: 0.15


# ``x_i op x_j`` of a pair reduction, for numpy arrays and sympy symbols alike
_PAIR_OPS = {"/": operator.truediv, "*": operator.mul, "-": operator.sub, "+": operator.add}


def power_base(op: str, i: int, j: int) -> int:
    """The input whose power ``x**d`` multiplies ``g`` in a pair reduction (``x_j`` for ``/``, ``x_i`` otherwise)."""
    return j if op == "/" else i


def symmetric_pairs(predict, x: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int, float, float, str]]:
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


def pair_data(x: np.ndarray, y: np.ndarray, i: int, j: int, d: float, rest: list[int], op: str = "/"):
    """Inputs ``(x_rest, x_i op x_j)`` and target ``y / x_base**d`` of the reduced problem (see :func:`power_base`)."""
    with np.errstate(all="ignore"):
        u = _PAIR_OPS[op](x[:, i], x[:, j])
        return np.column_stack([x[:, rest], u]), y[:, 0] / x[:, power_base(op, i, j)] ** d


def pair_search(predict, ev: Evaluator, library, variables, deadline: Deadline | float | None = None, *,
                seed: int, dtype) -> None:
    """If ``predict`` (the structure tests' model of ``y``) depends on a pair of inputs only through
    ``u = x_i op x_j`` (a ratio, product, difference or sum, possibly times a power ``x**d``; see
    :func:`symmetric_pairs`): recover ``g`` by a smaller run on the real data ``(rest, u) -> y / x**d`` and join
    its formulas, substituted back, to the candidates (``exp(-x1**2/(2*x2**2))/sqrt(2*pi*x2**2)``,
    ``atan(x2/x1)``, ``sin(x1*x2)``, ``x3*sin(x1 - x2)``).

    One output only. At most the two best pairs are tried; the first run gets half of the time left before
    ``deadline`` (default: the evaluator's), the second the rest.
    """
    from .run import symbolic_regression  # a nested search (the orchestrator imports the stages)

    if ev.ytr.shape[1] != 1:
        return
    deadline = Deadline.coerce(deadline) or ev.deadline
    pairs = [p for p in symmetric_pairs(predict, ev.xtr, np.random.default_rng(seed))
             if p[3] < PAIR_TOL][:2]
    if not pairs:
        log.info("pairs: no pair of inputs with a symmetry of the KAN found")
        return
    dim = ev.xtr.shape[1]
    u = sympy.Symbol("pair_u_")
    for k, (i, j, d, score, op) in enumerate(pairs):
        base = variables[power_base(op, i, j)]
        log.info("pairs: y = %s**%s * g(%s %s %s, ...) (score %.2e)", base, d, variables[i], op, variables[j], score)
        rest = [m for m in range(dim) if m not in (i, j)]
        (xtr, ytr), (xte, yte) = (pair_data(ev.xtr, ev.ytr, i, j, d, rest, op),
                                  pair_data(ev.xte, ev.yte, i, j, d, rest, op))
        if not (np.all(np.isfinite(ytr)) and np.all(np.isfinite(yte))):
            continue
        ds = to_dataset(xtr, ytr, xte, yte, dtype)
        m = len(rest) + 1
        width = [1, 1] if m == 1 else [m, 2 * m + 1, 1]
        if deadline.expired():
            return
        budget = deadline.share(1 / (len(pairs) - k))
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
            cand = ev.refit([power * g.xreplace(subs)], Provenance("pair"))
            if ev.near(cand.test_nmse):
                snap_views(cand, ev, Provenance("pair"), deadline.within(_VIEW_SECONDS))
        if ev.exact_found:
            return




class PairSymmetries:
    """:func:`pair_search` on the structure tests' model of ``y``; one output, two inputs or more."""

    name, always = "pairs", False
    share = 0.67  # two thirds of the time left: the log-separability and low-rank tests come after

    def applies(self, ctx: SearchContext) -> bool:
        return ctx.options.separable and ctx.one_output and ctx.n_inputs >= 2 and ctx.surrogate() is not None

    def run(self, ctx: SearchContext) -> list[Candidate]:
        start = len(ctx.ev.seen)
        pair_search(ctx.surrogate(), ctx.ev, ctx.library, ctx.variables, ctx.deadline, seed=ctx.options.seed,
                    dtype=ctx.options.dtype)
        return ctx.ev.seen[start:]
