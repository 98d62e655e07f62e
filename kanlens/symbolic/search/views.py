"""Snapping a formula in equivalent views (raw, expanded, Taylor regimes removed) and the bounded rewriting that
goes with it (expansion with a size guard, float/int tidying, ``|u|`` resolved where ``u`` keeps one sign)."""

from __future__ import annotations

import logging
import math

import numpy as np
import sympy

from .. import formula as sform
from .budget import Deadline
from .candidates import Candidate, Evaluator, Provenance

__all__ = ["derived_views", "drop_terms", "expand", "expansion_terms", "floatify", "resolve_abs", "snap", "snap_views",
           "tidy"]

log = logging.getLogger(__name__)


def floatify(e: sympy.Expr) -> sympy.Expr:
    """Irrational exact constants (``362*pi``, ``sqrt(2)/3``) back to floats, so expansions merge like terms."""
    if e.is_number and not e.is_Rational:
        try:
            return sympy.Float(float(e), 17)
        except (TypeError, ValueError):
            return e
    if not e.args:
        return e
    return e.func(*[floatify(a) for a in e.args])


def derived_views(exprs: list[sympy.Expr], variables, x: np.ndarray) -> list[tuple[str, list[sympy.Expr]]]:
    """Equivalent forms worth refitting: expanded, and with Taylor-regime functions replaced by polynomials
    (also after expanding trig identities such as ``cos(a*x1 - x2) - cos(a*x1 + x2) = 2 sin(a*x1) sin(x2)``)."""
    out = []
    expanded = [expand(e) for e in exprs]
    if all(v is not None for v in expanded) and expanded != exprs:
        out.append(("expanded ", expanded))
    for name, pre in (("taylor ", lambda e: e), ("trig taylor ", sympy.expand_trig)):
        try:
            plain = [sform.detaylor(pre(e), variables, x) for e in exprs]
        except Exception as err:
            log.warning("%sview failed (%s: %s)", name, type(err).__name__, err)
            continue
        if plain != exprs:
            plain_exp = [expand(e) for e in plain]
            out.append((name, plain_exp if all(v is not None for v in plain_exp) else plain))
    return out


_LARGE_FORMULA = 200


def snap_views(best: Candidate, ev: Evaluator, source: Provenance, deadline: Deadline | None = None) -> None:
    """Refit and snap the best formula in several equivalent views (raw, expanded, Taylor regimes removed).

    Views are derived from the formula before and after its own snapping refit (a joint refit can move functions
    into their Taylor regime, e.g. ``cos(0.02*x1 + 0.02*x2)``). The raw view is always snapped (within the
    evaluator's deadline); further views only until ``deadline``. New candidates' provenance is ``source`` plus the
    view and ``snapped``.
    """
    # huge formulas, or ones far from the data (NRMSE > 1%, snapping cannot make them exact): only the raw view,
    # briefly snapped
    large = best.complexity > _LARGE_FORMULA or not ev.near(best.test_nmse)
    ev.snap_seconds = 5.0 if large else 20.0
    start = len(ev.seen)
    raw = snap(ev, best.exprs, source, merge=not large)
    if large:
        return
    views: list[tuple[str, list[sympy.Expr]]] = []
    for base in (best.exprs, [floatify(e) for e in raw.exprs]):
        for name, exprs in derived_views(base, ev.variables, ev.xtr):
            if all(exprs != v[1] for v in views):
                views.append((name, exprs))
    log.info("views: %s", [v[0].strip() for v in views])
    for name, exprs in views:
        if ev.deadline.expired() or (deadline is not None and deadline.expired()):
            log.info("time budget spent: %d view(s) not snapped", len(views))
            break
        if sum(map(sform.formula_complexity, exprs)) > _LARGE_FORMULA:
            continue  # an expansion far longer than the formula (trig products): no simpler constants to find
        ev.refit(exprs, source.then(name.strip()))
        snap(ev, exprs, source.then(name.strip()))
    closest = min(ev.seen[start:], key=lambda c: c.test_nmse)
    if not closest.exact and closest.test_nmse <= _DROP_NMSE:  # noisy labels: a term fitted to the noise may be left
        drop_terms(closest, ev, source, deadline)


_MAX_DROP_TERMS = 8  # at most this many thinned formulas are refitted (terms dropped, floats set to 0)
_DROP_NMSE = 5e-2  # nor formulas further than this from the data (noise up to ~20% of std(y))


def drop_terms(cand: Candidate, ev: Evaluator, source: Provenance, deadline: Deadline | None = None) -> None:
    """Each additive term of a one-output formula dropped in turn, and each float constant set to 0 in turn
    (smallest first), the rest refitted; a thinner formula whose training loss stays within the evaluator's
    resolution (relative) is snapped and joins the candidates.

    On noisy labels a term or a shift fitted to the noise survives snapping (``x1*sin(x2) - 0.0002*x1**2*cos(x2)``,
    ``exp(-x1*(x1 + 0.0006)/2)``: removing it costs a little training loss, more than the snapping tolerance
    allows, and its constant is no simple value). Only removes, so it never makes a formula fit better than the
    one it starts from.
    """
    if len(cand.exprs) != 1 or not math.isfinite(cand.train_nmse):
        return
    expr = cand.expr
    terms = sympy.Add.make_args(expr)
    trials = [expr - t for t in terms] if len(terms) >= 2 else []
    floats = sorted(expr.atoms(sympy.Float), key=lambda f: abs(float(f)))
    trials += [expr.xreplace({f: sympy.Integer(0)}) for f in floats]
    try:
        base = ev.values(expr, ev.xte)
    except Exception:  # a formula that cannot be evaluated is not thinned
        return
    seen: set = set()
    tried = 0
    for rest in trials:
        if ev.deadline.expired() or (deadline is not None and deadline.expired()) or tried >= _MAX_DROP_TERMS:
            return
        if rest.is_number or rest in seen or rest == expr:
            continue
        seen.add(rest)
        try:  # a removal that moves the values by more than the formula's own error is not worth a refit
            moved = sform.nmse(ev.values(rest, ev.xte), base)
        except Exception:
            continue
        if not moved <= 10 * max(cand.test_nmse, ev.floor):
            continue
        tried += 1
        trial = ev.refit([rest], source.then("dropped"))
        if trial.train_nmse <= cand.train_nmse * (1 + ev.resolution) + ev.floor:
            log.info("thinned %s -> %s: train NMSE %.3e -> %.3e", expr, rest, cand.train_nmse, trial.train_nmse)
            snap(ev, trial.exprs, source.then("dropped"), merge=False)


def snap(ev: Evaluator, exprs: list[sympy.Expr], source: Provenance, merge: bool = True) -> Candidate:
    """Refit with snapping, tidy; then merge like terms and snap again when that is simpler.

    Snapping can leave like terms apart (``-0.0859*sqrt(2)*x1*sin(x2) + 1.1215*x1*sin(x2)``, together
    ``1.0000000017*x1*sin(x2)``): merged (expanded with float constants) they snap as one constant.
    """
    cand = ev.refit(exprs, source.then("snapped"), snap=True)
    tidy_candidate(cand, ev)
    if merge:
        merged = [expand(floatify(e)) for e in cand.exprs]
        if all(m is not None for m in merged) and sum(map(sform.formula_complexity, merged)) < cand.complexity:
            tidy_candidate(ev.refit(merged, source.then("merged snapped"), snap=True), ev)
    return cand


def tidy_candidate(cand: Candidate, ev: Evaluator) -> None:
    """Tidy the formulas of ``cand`` in place when the tidy form has the same values on the test inputs."""
    tidied = [tidy(resolve_abs(e, ev)) for e in cand.exprs]
    if tidied != cand.exprs and ev.same_values(tidied, cand.exprs):
        cand.exprs = tidied
        cand.complexity = sum(sform.formula_complexity(e) for e in tidied)


def resolve_abs(expr: sympy.Expr, ev: Evaluator) -> sympy.Expr:
    """``|u| -> u`` (or ``-u``) where ``u`` keeps one sign on every training and test input.

    The formula describes the data's range; there ``(1/4 - |x3 - 1|/4) * r`` is ``x3 * r / 4`` for ``x3 <= 1``.
    """
    reps = {}
    for a in expr.atoms(sympy.Abs):
        try:
            v = np.concatenate([ev.values(a.args[0], ev.xtr), ev.values(a.args[0], ev.xte)])
        except Exception:  # an argument that cannot be evaluated keeps its |.|
            continue
        if np.isfinite(v).all() and ((v >= 0).all() or (v <= 0).all()):
            reps[a] = a.args[0] if (v >= 0).all() else -a.args[0]
    return expr.xreplace(reps) if reps else expr


def expansion_terms(expr: sympy.Expr) -> int:
    """An upper bound on the terms of ``expr``'s expansion (multinomials ``(a + b + ...)**n`` and products of sums)."""
    if expr.is_Atom:
        return 1
    if isinstance(expr, sympy.Add):
        return sum(expansion_terms(a) for a in expr.args)
    if isinstance(expr, sympy.Mul):
        return math.prod(expansion_terms(a) for a in expr.args)
    if isinstance(expr, sympy.Pow):
        base, n = expansion_terms(expr.base), expr.exp
        if n.is_Integer and abs(int(n)) > 1 and base > 1:
            return math.comb(abs(int(n)) + base - 1, base - 1) if abs(int(n)) < 10_000 else 10**12
        return base
    return max((expansion_terms(a) for a in expr.args), default=1)  # a function: its arguments expand alone


def expand(expr: sympy.Expr, max_ops: int = 300) -> sympy.Expr | None:
    """Polynomial expansion (also inside function arguments); ``None`` when it blows up."""
    if expansion_terms(expr) > 4 * max_ops:  # e.g. (x1 + 0.3*x2 + ...)**23: sympy would need gigabytes
        return None
    try:
        e = sympy.expand(expr, deep=True, power_exp=False, power_base=False, log=False)
    except (TypeError, ValueError, RecursionError):
        return None
    return e if sympy.count_ops(e) <= max_ops else None


def tidy(expr: sympy.Expr) -> sympy.Expr:
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
