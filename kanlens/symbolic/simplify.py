"""Formula clean-up without data: :func:`normalize` (constant redundancy removed), complexity and float counts."""

from __future__ import annotations

import sympy

__all__ = ["formula_complexity", "n_floats", "normalize"]


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
