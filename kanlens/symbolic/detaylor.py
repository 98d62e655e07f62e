"""Function nodes that a formula only uses in their Taylor regime on the data, replaced by that polynomial.

:func:`detaylor` walks the expression bottom-up; :class:`_Expander` holds the data and does the per-node work:
evaluate a subexpression on the data, move a ``tan``/``cot`` next to a pole away from 0 there, and replace a node
by its low-degree Taylor polynomial (or ``p(u)/u`` near a pole at 0) when that is within ``rel_tol`` on the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import sympy
import torch

from .values import LAMBDIFY_MODULES, as_float64, real_values

__all__ = ["detaylor"]

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
    return _Expander(variables, x, rel_tol).rec(expr)


class _Expander:
    """The data of one :func:`detaylor` call and the bottom-up rewrite of an expression on it."""

    def __init__(self, variables: Sequence[sympy.Symbol], x: np.ndarray | torch.Tensor, rel_tol: float) -> None:
        x = as_float64(x)
        self.cols = [x[:, k] for k in range(x.shape[1])]
        self.variables = list(variables)
        self.rel_tol = rel_tol
        self.t = sympy.Dummy("t")

    def values(self, e: sympy.Expr) -> np.ndarray | None:
        """``e`` on the data (real float64), or None when a value is not finite."""
        cols = self.cols
        with np.errstate(all="ignore"):
            f = sympy.lambdify(self.variables, e, modules=LAMBDIFY_MODULES)
            v = np.broadcast_to(real_values(f(*cols)), cols[0].shape)
        return v if np.isfinite(v).all() else None

    def at_zero(self, e: sympy.Basic) -> tuple[int, sympy.Expr] | None:
        """``tan(u)`` near one of its poles ``pi/2 + k*pi`` as ``-cot(u - pi/2 - k*pi)``, ``cot(u)`` near ``k*pi``
        as ``cot(u - k*pi)``, i.e. ``(sign, cot(shifted u))``; None when ``e`` is neither (or needs no shift)."""
        if not (isinstance(e, (sympy.tan, sympy.cot)) and len(e.args) == 1 and e.args[0].free_symbols):
            return None
        uv = self.values(e.args[0])
        if uv is None:
            return None
        half = 0.5 if isinstance(e, sympy.tan) else 0.0
        k = round(float(np.mean(uv)) / math.pi - half)
        if (k == 0 and half == 0.0) or not float(np.max(np.abs(uv - (k + half) * math.pi))) < 0.5:
            return None  # already at 0, or not near a pole
        # the pole as a 30-digit float: with an exact pi/2 sympy would turn cot(u - pi/2) straight back into -tan(u)
        shifted = e.args[0] - sympy.Float((k + half) * sympy.pi.evalf(40), 30)
        return (-1 if half else 1), sympy.cot(shifted)

    def expand(self, e: sympy.Basic) -> sympy.Basic:
        """``e`` replaced by its Taylor polynomial in its argument when that fits the data (else ``e`` itself)."""
        t = self.t
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
        uv, fv = self.values(u), self.values(e)
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
        derivs = self.derivatives(g_t, u0)
        if derivs is None:
            return e
        return self.polynomial(e, u, uv, fv, u0, derivs, pole)

    def derivatives(self, g_t: sympy.Expr, u0: float) -> list[float] | None:
        """``g(u0), g'(u0), g''(u0)`` as floats, or None when sympy cannot evaluate one."""
        t = self.t
        derivs = []
        for order in range(3):
            try:  # 30 digits: t*cot(t) at t = 1e-7 cancels 14 of them
                derivs.append(float(sympy.diff(g_t, t, order).evalf(30, subs={t: sympy.Float(u0, 30)})))
            except (TypeError, ValueError):
                return None
        return derivs

    def polynomial(self, e: sympy.Basic, u: sympy.Expr, uv: np.ndarray, fv: np.ndarray, u0: float,
                   derivs: list[float], pole: bool) -> sympy.Basic:
        """The lowest-degree Taylor polynomial in ``u`` around ``u0`` (over ``u`` near a pole) within ``rel_tol``."""
        h = uv - u0
        for deg in ((0, 1, 2) if pole else (1, 2)):
            approx = sum(derivs[k] * h**k / math.factorial(k) for k in range(deg + 1))
            if pole:
                approx = approx / uv
            if float(np.sqrt(np.mean((fv - approx) ** 2))) <= self.rel_tol * float(np.std(fv)):
                uu = u - sympy.Float(u0, 17)
                series = sympy.Add(*[sympy.Float(derivs[k] / math.factorial(k), 17) * uu**k for k in range(deg + 1)])
                return _over(series, u) if pole else series
        return e

    def rec(self, e: sympy.Basic) -> sympy.Basic:
        """Bottom-up rewrite of ``e``."""
        if not e.args:
            return e
        e = e.func(*[self.rec(a) for a in e.args])
        shifted = self.at_zero(e)
        if shifted is not None:  # a tan / cot next to a pole away from 0: expanded there, or left as it was
            sign, cot = shifted
            series = self.expand(cot)
            return e if series is cot else sign * series
        return self.expand(e)


def _over(series: sympy.Expr, u: sympy.Expr) -> sympy.Expr:
    """``series / u`` with ``u`` scaled to a unit leading coefficient: ``c/(a*x2 + b)`` as ``(c/a)/(x2 + b/a)``,
    whose constants can snap (``c`` and ``a`` alone are only known up to a common factor)."""
    lead = next((t.as_coeff_Mul()[0] for t in sympy.Add.make_args(sympy.expand(u)) if t.free_symbols),
                sympy.Integer(1))
    if lead.is_number and lead != 0:
        monic = sympy.expand(u / lead).xreplace({sympy.Float(1.0): sympy.Integer(1)})
        return sympy.expand(series / lead) / monic
    return series / u
