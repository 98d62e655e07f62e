"""Formulas from symbolic KANs, and formula-level clean-up: joint refit of constants and snapping.

:func:`symbolic_formula` reads a model whose active edges are all symbolic and returns one sympy expression per
output. Structural constants (``a = 1`` of a power function, ``b = 0`` of ``exp``, ``node_scale = 1``) become
exact integers, so the only floats left are genuine free constants; sympy merges numeric factors through sums,
which removes most of the remaining redundancy.

:func:`refit_constants` treats every float of an expression as a parameter and refits them all jointly on data
(Levenberg-Marquardt with an analytic Jacobian, float64). :func:`snap_constants` then replaces constants by simple
values (integers, small rationals, multiples of pi, e, sqrt 2 ...) one at a time, keeping a snap only when the
refitted loss does not get worse (beyond float rounding noise).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy
import torch

from ..utils import is_int

__all__ = [
    "ConstantFit",
    "edge_expr",
    "ex_round",
    "formula_complexity",
    "nmse",
    "noise_floor",
    "normalize",
    "refit_constants",
    "simple_constants",
    "snap_constants",
    "symbolic_formula",
]


builtins_round = round


def _num(v: float) -> sympy.Expr:
    """A sympy number: exact ``0``/``±1`` stay integers (structural constants), everything else a Float."""
    if v == 0:
        return sympy.Integer(0)
    if v in (1.0, -1.0):
        return sympy.Integer(int(v))
    return sympy.Float(float(v), 17)


def edge_expr(fn, params: Sequence[float], u: sympy.Expr) -> sympy.Expr:
    """``c * f(a * u + b) + d`` as a sympy expression (``fn`` a :class:`SymbolicFunction`)."""
    a, b, c, d = (_num(float(v)) for v in params)
    if fn.kind == "zero":
        return d
    return c * fn.sympy_fn(a * u + b) + d


def input_symbols(model, var) -> list[sympy.Symbol]:
    n_in = model.width_in[0]
    if var is None:
        ids = model.config.input_ids if getattr(model.config, "input_ids", None) is not None else range(n_in)
        return [sympy.Symbol(f"x{k + 1}") for k in ids]
    if len(var) != n_in:
        raise ValueError(f"var needs {n_in} names (one per model input), got {len(var)}")
    return [v if isinstance(v, sympy.Symbol) else sympy.Symbol(str(v)) for v in var]


def symbolic_formula(
    model,
    var: Sequence[str | sympy.Symbol] | None = None,
    simplify: bool = False,
    round: int | None = None,
) -> list[sympy.Expr]:
    """One sympy expression per output of a model whose active edges are all symbolic (pykan's ``symbolic_formula``).

    Args:
        model: a :class:`~kanlens.model.KAN` after ``auto_symbolic`` / ``fix_symbolic``.
        var: input names (default ``x1..xn``; after ``prune_input`` the original indices are kept).
        simplify: run ``sympy.simplify`` on each output (can be slow for large formulas).
        round: round floats to this many decimals (:func:`ex_round`).

    Returns:
        a list of ``width[-1]`` sympy expressions.

    Example:
        >>> model.auto_symbolic(lib=["x", "x^2", "sin", "exp"])
        >>> model.symbolic_formula()[0]
    """
    spline_left = []
    for l in range(model.depth):
        live = (model.layers[l].mask != 0).nonzero().tolist()
        spline_left += [(l, i, j) for j, i in live]
    if spline_left:
        shown = ", ".join(f"(l={l}, i={i}, j={j})" for l, i, j in spline_left[:6])
        more = f" and {len(spline_left) - 6} more" if len(spline_left) > 6 else ""
        raise ValueError(f"edges {shown}{more} are still splines; call auto_symbolic() or fix_symbolic() first")
    nodes: list[sympy.Expr] = list(input_symbols(model, var))
    for l in range(model.depth):
        nodes = _layer_exprs(model, l, nodes)
    out = nodes
    if simplify:
        out = [sympy.simplify(e) for e in out]
    if round is not None:
        out = [ex_round(e, round) for e in out]
    return out


def _floats(t) -> list:
    return t.detach().cpu().double().tolist()


def _layer_exprs(model, l: int, nodes: list[sympy.Expr]) -> list[sympy.Expr]:
    """Expressions of layer ``l``'s output nodes from those of its input nodes: the symbolic edges summed into
    subnodes, then (with multiplication nodes) the subnode affine map and the products of each node's subnodes,
    then the node affine map. Every factor of a product node appears, whatever its arity."""
    sym = model.symbolic[l]
    aff = _floats(sym.affine)
    mask = sym.mask.detach().cpu().tolist()
    subs = []
    for j in range(len(mask)):
        total = sympy.Integer(0)
        for i, on in enumerate(mask[j]):
            if on != 0:
                total = total + edge_expr(sym.library[sym.function_name(i, j)], aff[j][i], nodes[i])
        subs.append(total)
    layout = model.node_layout
    if layout.has_mult:
        s_scale, s_bias = _floats(model.subnode_scale[l]), _floats(model.subnode_bias[l])
        subs = [_num(s_scale[j]) * e + _num(s_bias[j]) for j, e in enumerate(subs)]
        subs = [sympy.Mul(*(subs[j] for j in group)) for group in layout.groups(l + 1)]
    scale, bias = _floats(model.node_scale[l]), _floats(model.node_bias[l])
    return [_num(scale[j]) * e + _num(bias[j]) for j, e in enumerate(subs)]


def ex_round(expr: sympy.Expr, n_digit: int) -> sympy.Expr:
    """Round every float in ``expr`` to ``n_digit`` decimals (pykan's ``ex_round``)."""
    if not is_int(n_digit) or n_digit < 0:
        raise ValueError(f"n_digit must be a non-negative int, got {n_digit!r}")
    expr = sympy.sympify(expr)
    for _ in range(8):  # rounded floats multiplied back together (0.9994*0.9999) are merged into new ones
        floats = expr.atoms(sympy.Float)
        rounded = {f: sympy.Float(builtins_round(float(f), n_digit), max(n_digit + 2, 15)) for f in floats}
        if all(rounded[f] == f for f in floats):
            break
        expr = expr.xreplace(rounded)
    return expr


def _lead(add: sympy.Add) -> tuple[sympy.Expr, sympy.Expr] | None:
    """Numeric coefficient and rest of the first non-constant term of a sum (``None`` if it has no float)."""
    terms = [t for t in sympy.Add.make_args(add) if not t.is_number]
    if not terms:
        return None
    coeff, rest = sorted(terms, key=sympy.default_sort_key)[0].as_coeff_Mul()
    if not isinstance(coeff, sympy.Float) or coeff == 0:
        return None
    return coeff, rest


def _divide_sum(add: sympy.Add, k: sympy.Expr, lead_rest: sympy.Expr, lead_sign: int) -> sympy.Expr:
    out = []
    for t in sympy.Add.make_args(add):
        c, rest = t.as_coeff_Mul()
        out.append(lead_sign * rest if rest == lead_rest and not t.is_number else (c / k) * rest)
    return sympy.Add(*out)


def normalize(expr: sympy.Expr) -> sympy.Expr:
    """Remove constant redundancy so every float is identifiable (the function is unchanged).

    Bottom-up: ``(k*x + b*y + c)^n -> k^n * (x + (b/k)*y + c/k)^n`` (``|k|`` for non-integer ``n``),
    ``log(k*x + c) -> log|k| + log(sign(k)*x + c/|k|)``, ``exp(u + C) -> e^C * exp(u)``, and for real arguments
    ``cos(k*|u|) -> cos(k*u)`` (also ``cosh``), ``|u|^(2n) -> u^(2n)``.
    """

    def rec(e: sympy.Basic) -> sympy.Basic:
        if not e.args:
            return e
        e = e.func(*[rec(a) for a in e.args])
        if isinstance(e, sympy.Pow) and isinstance(e.base, sympy.Add) and e.exp.is_number:
            lead = _lead(e.base)
            if lead is not None:
                k, rest = lead
                if e.exp.is_integer:
                    return k**e.exp * _divide_sum(e.base, k, rest, 1) ** e.exp
                kk = abs(k)
                return kk**e.exp * _divide_sum(e.base, kk, rest, 1 if k > 0 else -1) ** e.exp
        if isinstance(e, sympy.log) and isinstance(e.args[0], sympy.Add):
            lead = _lead(e.args[0])
            if lead is not None:
                k, rest = lead
                kk = abs(k)
                return sympy.log(kk) + sympy.log(_divide_sum(e.args[0], kk, rest, 1 if k > 0 else -1))
        if isinstance(e, (sympy.cos, sympy.cosh)):  # even: cos(k*|u|) = cos(k*u) for real u
            k, rest = e.args[0].as_coeff_Mul()
            if isinstance(rest, sympy.Abs):
                return e.func(k * rest.args[0])
        if isinstance(e, sympy.Pow) and isinstance(e.base, sympy.Abs) and e.exp.is_even:
            return e.base.args[0] ** e.exp
        if isinstance(e, sympy.exp) and isinstance(e.args[0], sympy.Add):
            const = [t for t in e.args[0].args if t.is_number]
            if const:
                c = sympy.Add(*const)
                return sympy.exp(c) * sympy.exp(e.args[0] - c)
        return e

    return rec(expr)


def formula_complexity(expr: sympy.Expr) -> int:
    """Number of nodes of the expression tree, every numeric constant (``0.3``, ``pi/2``) counting 1, like PySR."""
    if expr.is_number:
        return 1
    return 1 + sum(formula_complexity(a) for a in expr.args)


def n_floats(expr: sympy.Expr) -> int:
    """How many float constants ``expr`` still contains (0 once every constant is snapped)."""
    return sum(1 for a in sympy.preorder_traversal(expr) if isinstance(a, sympy.Float))


# ---------------------------------------------------------------------------------------------- numeric helpers
def real_values(v: object) -> np.ndarray:
    """Float64 values of an evaluated formula. Complex results (a formula with ``I`` in it, or a fractional power of
    a negative number) are NaN where the imaginary part is not negligible: such a candidate must score ``inf``, not
    be judged on its real part."""
    a = np.asarray(v)
    if np.iscomplexobj(a):
        with np.errstate(all="ignore"):
            a = np.where(np.abs(a.imag) > 1e-12 * (1.0 + np.abs(a.real)), np.nan, a.real)
    return np.asarray(a, dtype=np.float64)


def nmse(pred: np.ndarray, y: np.ndarray) -> float:
    """``mean((pred - y)^2) / var(y)``; ``inf`` if anything is non-finite (or complex)."""
    pred = np.broadcast_to(real_values(pred), y.shape)
    if not np.isfinite(pred).all():
        return math.inf
    var = float(np.var(y))
    with np.errstate(over="ignore"):  # finite but huge predictions: the error is inf, no warning needed
        return float(np.mean((pred - y) ** 2)) / (var if var > 0 else 1.0)


def noise_floor(y: np.ndarray, dtype: torch.dtype | np.dtype | None = None) -> float:
    """NMSE that float rounding of labels alone can cause (labels computed in ``dtype``)."""
    eps = float(torch.finfo(dtype).eps) if isinstance(dtype, torch.dtype) else float(np.finfo(dtype or np.float64).eps)
    var = float(np.var(y))
    return 100.0 * eps**2 * float(np.mean(y**2)) / (var if var > 0 else 1.0)


def _as_numpy(v) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().double().numpy()
    return np.asarray(v, dtype=np.float64)


_MODULES = ["scipy", "numpy"]


@dataclass
class ConstantFit:
    """An expression with its constants fitted: the expression and its NMSE on the fitting data."""

    expr: sympy.Expr
    nmse: float


def _parametrize(expr: sympy.Expr) -> tuple[sympy.Expr, list[sympy.Symbol], np.ndarray]:
    """Replace every float *occurrence* by its own parameter symbol (equal values are not tied)."""
    params: list[sympy.Symbol] = []
    values: list[float] = []

    def rec(e: sympy.Basic) -> sympy.Basic:
        if isinstance(e, sympy.Float):
            p = sympy.Symbol(f"_p{len(params)}")
            params.append(p)
            values.append(float(e))
            return p
        if not e.args:
            return e
        return e.func(*[rec(a) for a in e.args])

    template = rec(expr)
    return template, params, np.array(values, dtype=np.float64)


_SYMBOLIC_JACOBIAN = 24


class _OutOfTime(Exception):
    """Raised inside a least-squares residual when the fit's CPU time is spent."""


class _Problem:
    """A parametrised formula: vectorised value and Jacobian, least squares over any subset of parameters."""

    def __init__(self, expr: sympy.Expr, variables: Sequence[sympy.Symbol], x: np.ndarray, y: np.ndarray):
        self.template, self.params, self.theta0 = _parametrize(expr)
        self.cols = [x[:, k] for k in range(x.shape[1])]
        self.y = y
        self.scale = float(np.std(y)) or 1.0
        # real symbols: d|u|/dp = sign(u) du/dp instead of an unevaluated complex Derivative
        real = {v: sympy.Symbol(v.name, real=True) for v in [*self.params, *variables]}
        template = self.template.xreplace(real)
        args = [real[v] for v in [*self.params, *variables]]
        self.f = sympy.lambdify(args, template, modules=_MODULES)
        self.jac = None
        # a symbolic Jacobian costs one sympy.diff of the whole formula per constant (minutes for a trig expansion
        # with 60 constants); beyond _SYMBOLIC_JACOBIAN constants finite differences are far cheaper
        if self.params and len(self.params) <= _SYMBOLIC_JACOBIAN:
            grads = [sympy.diff(template, real[p]).replace(sympy.DiracDelta, lambda *a: sympy.Integer(0))
                     for p in self.params]
            if not any(g.has(sympy.Derivative, sympy.Subs) for g in grads):
                try:
                    self.jac = sympy.lambdify(args, grads, modules=_MODULES, cse=True)
                except Exception:  # a function sympy cannot print: finite differences instead
                    self.jac = None

    def value(self, theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = self.f(*theta, *self.cols)
        return np.broadcast_to(real_values(out), self.y.shape)

    def loss(self, theta: np.ndarray) -> float:
        return nmse(self.value(theta), self.y)

    def solve(self, theta: np.ndarray, free: np.ndarray, max_nfev: int = 200,
              max_seconds: float | None = None) -> tuple[np.ndarray, float]:
        """Least squares over ``theta[free]`` (others fixed); returns the better of start and result.

        ``max_seconds``: CPU seconds after which the fit stops with the best point evaluated so far (finite
        differences over dozens of constants of a long formula can otherwise run for many minutes).
        """
        from scipy.optimize import least_squares

        theta = np.asarray(theta, dtype=np.float64).copy()
        base = self.loss(theta)
        idx = np.flatnonzero(free)
        if idx.size == 0:
            return theta, base
        big = np.full(self.y.shape, 1e6)
        n = self.y.size
        stop = None if max_seconds is None else time.process_time() + max_seconds
        best = [math.inf, theta[idx].copy()]

        def full(t):
            th = theta.copy()
            th[idx] = t
            return th

        def resid(t):
            if stop is not None and time.process_time() > stop:
                raise _OutOfTime
            r = (self.value(full(t)) - self.y) / self.scale
            if not np.isfinite(r).all():
                return big
            cost = float(r @ r)
            if cost < best[0]:
                best[0], best[1] = cost, np.array(t, dtype=np.float64)
            return r

        def jac(t):
            with np.errstate(all="ignore"):
                parts = self.jac(*full(t), *self.cols)
            j = np.column_stack([np.broadcast_to(real_values(parts[k]), (n,)) for k in idx])
            j = j / self.scale
            return j if np.isfinite(j).all() else np.zeros_like(j)

        try:
            with np.errstate(over="ignore", invalid="ignore"):  # huge finite residuals: the loss is inf, no warning
                # finite differences spend idx.size evaluations per Jacobian, counted in max_nfev by MINPACK
                nfev = max_nfev if self.jac is not None else max_nfev * (idx.size + 1)
                res = least_squares(resid, theta[idx], jac=jac if self.jac is not None else "2-point",
                                    method="lm" if n >= idx.size else "trf",
                                    xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=nfev)
            found = res.x
        except _OutOfTime:
            found = best[1]
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            return theta, base
        new = full(found)
        new_loss = self.loss(new)
        return (new, new_loss) if new_loss <= base else (theta, base)

    def expr(self, theta: np.ndarray, exact: dict[int, sympy.Expr] | None = None) -> sympy.Expr:
        exact = exact or {}
        return self.template.xreplace({p: exact.get(k, sympy.Float(float(theta[k]), 17))
                                       for k, p in enumerate(self.params)})


def refit_constants(
    expr: sympy.Expr,
    variables: Sequence[sympy.Symbol],
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    max_nfev: int = 200,
    normalized: bool = True,
    max_seconds: float | None = None,
) -> ConstantFit:
    """Refit every float of ``expr`` jointly on ``(x, y)`` by least squares (float64, analytic Jacobian).

    With ``normalized`` the expression is first passed through :func:`normalize` (redundant constants removed).
    ``max_seconds``: CPU-time limit of the fit (the best point so far is kept); ``None``: no limit.
    Returns the refitted expression and its NMSE (the original one if refitting does not help).

    Shapes:
        x: ``(n, len(variables))``, y: ``(n,)`` or ``(n, 1)``.
    """
    x, y = _as_numpy(x), _as_numpy(y).reshape(-1)
    prob = _Problem(normalize(expr) if normalized else expr, list(variables), x, y)
    theta, loss = prob.solve(prob.theta0, np.ones(prob.theta0.size, bool), max_nfev=max_nfev,
                             max_seconds=max_seconds)
    return ConstantFit(prob.expr(theta), loss)


# ---------------------------------------------------------------------------------------------- snapping
_BASES: list[tuple[sympy.Expr, int]] = [
    (sympy.Integer(1), 0), (sympy.pi, 1), (1 / sympy.pi, 2), (sympy.sqrt(2), 2), (1 / sympy.sqrt(2), 2),
    (sympy.E, 1), (1 / sympy.E, 2), (sympy.sqrt(sympy.pi), 2), (1 / sympy.sqrt(sympy.pi), 3),
    (sympy.sqrt(2 * sympy.pi), 3), (1 / sympy.sqrt(2 * sympy.pi), 3),
]
_BASE_VALUES = [float(b) for b, _ in _BASES]


def _tolerance(q: int, cost: int) -> float:
    """How far (relative) a constant may be from a candidate: simple candidates may be tried from further away."""
    if cost == 0:
        return 2e-2 if q <= 4 else (1e-3 if q <= 12 else 1e-6)
    if q > 12:
        return 0.0
    return 1e-3 if q <= 4 and cost <= 2 else 1e-4


def simple_constants(v: float, *, max_den: int = 30, limit: int = 4) -> list[sympy.Expr]:
    """Simple constants near ``v`` (``p/q * K``, ``q <= max_den``, ``K`` in 1, pi, 1/pi, sqrt 2, e, ...).

    Simple candidates (integers, halves, quarters) are proposed within 2%, others only within 1e-3 or 1e-4,
    denominators above 12 and ``e^(p/q)`` only within 1e-6.
    Ranked by simplicity (denominator, ``K``, numerator) traded against closeness (``1.5 * log10`` of the relative
    distance), so ``0.39894`` proposes ``1/sqrt(2*pi)`` before ``2/5``; at most ``limit`` are returned.
    """
    if not math.isfinite(v) or v == 0:
        return []
    out: list[tuple[float, sympy.Expr]] = []
    for (base, cost), bv in zip(_BASES, _BASE_VALUES):
        for q in range(1, max_den + 1):
            p = builtins_round(v * q / bv)
            if p == 0 or math.gcd(int(abs(p)), q) != 1 or abs(p) > 1000 or (q > 12 and cost > 0):
                continue
            dist = abs(p / q * bv - v) / abs(v)
            if dist <= _tolerance(q, cost):
                key = q + 2 * cost + 0.01 * abs(p) + 1.5 * math.log10(dist + 1e-9)
                out.append((key, sympy.Rational(int(p), q) * base))
    if v > 0:  # e^(p/q): constants pulled out of an exponential (exp(u + 1/2) = sqrt(e) * exp(u))
        lv = math.log(v)
        for q in range(1, 13):
            p = builtins_round(lv * q)
            if p != 0 and math.gcd(abs(p), q) == 1 and abs(p / q - lv) <= 1e-6 * max(1.0, abs(lv)):
                out.append((q + 4 - 9.0, sympy.exp(sympy.Rational(p, q))))
    out.sort(key=lambda t: t[0])
    seen, res = set(), []
    for _, e in out:
        if e not in seen:
            seen.add(e)
            res.append(e)
    return res[:limit]


def snap_constants(
    expr: sympy.Expr,
    variables: Sequence[sympy.Symbol],
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    floor: float = 0.0,
    slack: float = 1e-2,
    zero_tol: float = 1e-4,
    max_tries: int = 60,
    max_seconds: float | None = 30.0,
    normalized: bool = True,
) -> ConstantFit:
    """Replace constants of ``expr`` by simple values while the refitted loss does not get worse.

    Greedy: the constant closest (relatively) to a simple value is tried first; the other floats are refitted
    jointly after each snap. A snap is kept when ``nmse_new <= nmse_old * (1 + slack) + floor`` (``floor``: the
    label rounding noise, see :func:`noise_floor`). Constants below ``zero_tol`` are first tried as 0. The search
    stops after ``max_seconds`` of CPU time (not wall time, so a loaded machine gives the same formula).

    Shapes:
        x: ``(n, len(variables))``, y: ``(n,)``.
    """
    t0 = time.process_time()  # CPU time: the same work on a loaded machine gives the same result
    x, y = _as_numpy(x), _as_numpy(y).reshape(-1)
    prob = _Problem(normalize(expr) if normalized else expr, list(variables), x, y)
    free = np.ones(prob.theta0.size, bool)

    def left() -> float | None:
        return None if max_seconds is None else max(0.0, max_seconds - (time.process_time() - t0))

    theta, loss = prob.solve(prob.theta0, free, max_seconds=left())
    exact: dict[int, sympy.Expr] = {}
    rejected: set[tuple[int, str]] = set()
    for _ in range(max_tries):
        if max_seconds is not None and time.process_time() - t0 > max_seconds:
            break
        options = []
        for k in np.flatnonzero(free):
            v = float(theta[k])
            cands = ([sympy.Integer(0)] if abs(v) < zero_tol else []) + simple_constants(v)
            for c in cands:
                if (k, str(c)) not in rejected:
                    dist = 0.0 if c == 0 else abs(float(c) - v) / abs(v)
                    options.append((dist, k, c))
                    break
        if not options:
            break
        _, k, c = min(options, key=lambda t: t[0])
        trial = theta.copy()
        trial[k] = float(c)
        free_k = free.copy()
        free_k[k] = False
        new_theta, new_loss = prob.solve(trial, free_k, max_seconds=left())
        if new_loss <= loss * (1 + slack) + floor:
            theta, loss, free = new_theta, new_loss, free_k
            exact[int(k)] = c
        else:
            rejected.add((int(k), str(c)))
    return ConstantFit(prob.expr(theta, exact), loss)


# ---------------------------------------------------------------------------------------------- Taylor regimes
_SMOOTH = (sympy.sin, sympy.cos, sympy.tan, sympy.tanh, sympy.exp, sympy.log, sympy.atan, sympy.asin, sympy.acos,
           sympy.atanh, sympy.erf, sympy.sinh, sympy.cosh)


# functions with a simple pole at 0 (``tan(pi/2 + u)`` evaluates to ``-cot(u)``): ``t*f(t)`` is smooth there
_POLE_AT_ZERO = (sympy.cot, sympy.csc, sympy.coth, sympy.csch)


def detaylor(
    expr: sympy.Expr,
    variables: Sequence[sympy.Symbol],
    x: np.ndarray | torch.Tensor,
    *,
    rel_tol: float = 1e-3,
) -> sympy.Expr:
    """Replace function nodes used only in their linear/quadratic regime on the data by that Taylor polynomial.

    ``sin(0.01*x)`` over ``x in [-1, 1]`` becomes ``0.01*x`` (error ``< rel_tol`` of the node's spread). Near a
    pole at 0, ``cot``, ``csc``, ``coth`` and ``csch`` of ``u`` become ``p(u)/u``, ``p`` the polynomial of
    ``t*f(t)`` (degree <= 2); ``tan`` and ``cot`` next to a pole elsewhere (``tan(1e-4*x + 11/7)``) are shifted
    there first. A function node that is constant on the data (a saturated ``tanh``) becomes that constant. A
    refit then decides whether the simpler formula is as good (see the pipeline's candidate table).
    """
    x = _as_numpy(x)
    cols = [x[:, k] for k in range(x.shape[1])]
    variables = list(variables)
    t = sympy.Dummy("t")

    def values(e: sympy.Expr) -> np.ndarray | None:
        with np.errstate(all="ignore"):
            v = np.broadcast_to(real_values(sympy.lambdify(variables, e, modules=_MODULES)(*cols)), cols[0].shape)
        return v if np.isfinite(v).all() else None

    def at_zero(e: sympy.Basic) -> tuple[int, sympy.Expr] | None:
        """``tan(u)`` near one of its poles ``pi/2 + k*pi`` as ``-cot(u - pi/2 - k*pi)``, ``cot(u)`` near ``k*pi``
        as ``cot(u - k*pi)``, i.e. ``(sign, cot(shifted u))``; None when ``e`` is neither (or needs no shift)."""
        if not (isinstance(e, (sympy.tan, sympy.cot)) and len(e.args) == 1 and e.args[0].free_symbols):
            return None
        uv = values(e.args[0])
        if uv is None:
            return None
        half = 0.5 if isinstance(e, sympy.tan) else 0.0
        k = round(float(np.mean(uv)) / math.pi - half)
        if (k == 0 and half == 0.0) or not float(np.max(np.abs(uv - (k + half) * math.pi))) < 0.5:
            return None  # already at 0, or not near a pole
        # the pole as a 30-digit float: with an exact pi/2 sympy would turn cot(u - pi/2) straight back into -tan(u)
        shifted = e.args[0] - sympy.Float((k + half) * sympy.pi.evalf(40), 30)
        return (-1 if half else 1), sympy.cot(shifted)

    def expand(e: sympy.Basic) -> sympy.Basic:
        pole = isinstance(e, _POLE_AT_ZERO) and len(e.args) == 1
        if pole or (isinstance(e, _SMOOTH) and len(e.args) == 1):
            # near a pole: the series of t*f(t), divided by u (c*cot(1e-7*u) is 1e7*c/u on the data)
            u, g_t = e.args[0], (t * e.func(t) if pole else e.func(t))
        elif isinstance(e, sympy.Pow) and e.exp.is_number and not e.exp.is_integer and not e.base.is_number:
            u, g_t = e.base, t**e.exp
        else:
            return e
        if not u.free_symbols:
            return e
        uv, fv = values(u), values(e)
        if uv is None or fv is None:
            return e
        if not pole and float(np.ptp(fv)) <= 1e-12 * max(1.0, float(np.abs(fv).max())):
            value = float(np.mean(fv))  # constant on the data (a saturated tanh(231*pi*x + 240*pi))
            return sympy.Integer(int(value)) if value.is_integer() else sympy.Float(value, 17)
        if not float(np.std(fv)) > 0:
            return e
        if pole and not (np.all(uv > 0) or np.all(uv < 0)):
            return e  # u crosses the pole
        u0 = float(np.mean(uv))
        h = uv - u0
        derivs = []
        for order in range(3):
            try:  # 30 digits: t*cot(t) at t = 1e-7 cancels 14 of them
                derivs.append(float(sympy.diff(g_t, t, order).evalf(30, subs={t: sympy.Float(u0, 30)})))
            except (TypeError, ValueError):
                return e
        for deg in ((0, 1, 2) if pole else (1, 2)):
            approx = sum(derivs[k] * h**k / math.factorial(k) for k in range(deg + 1))
            if pole:
                approx = approx / uv
            if float(np.sqrt(np.mean((fv - approx) ** 2))) <= rel_tol * float(np.std(fv)):
                uu = u - sympy.Float(u0, 17)
                series = sympy.Add(*[sympy.Float(derivs[k] / math.factorial(k), 17) * uu**k for k in range(deg + 1)])
                if not pole:
                    return series
                # 1/u with u scaled to a unit leading coefficient: c/(a*x2 + b) as (c/a)/(x2 + b/a), whose constants
                # can snap (c and a alone are only known up to a common factor)
                lead = next((t.as_coeff_Mul()[0] for t in sympy.Add.make_args(sympy.expand(u)) if t.free_symbols),
                            sympy.Integer(1))
                if lead.is_number and lead != 0:
                    monic = sympy.expand(u / lead).xreplace({sympy.Float(1.0): sympy.Integer(1)})
                    return sympy.expand(series / lead) / monic
                return series / u
        return e

    def rec(e: sympy.Basic) -> sympy.Basic:
        if not e.args:
            return e
        e = e.func(*[rec(a) for a in e.args])
        shifted = at_zero(e)
        if shifted is not None:  # a tan / cot next to a pole away from 0: expanded there, or left as it was
            sign, cot = shifted
            series = expand(cot)
            return e if series is cot else sign * series
        return expand(e)

    return rec(expr)
