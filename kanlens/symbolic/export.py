"""Export formulas: LaTeX, plain strings in ``x1..xn``, and callables for numpy and torch.

Example:
    >>> import sympy
    >>> x1, x2 = sympy.symbols("x1 x2")
    >>> to_string(sympy.exp(sympy.sin(sympy.pi * x1) + x2**2))
    'exp(x2**2 + sin(pi*x1))'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import sympy
import torch

from .._checks import check_choice

__all__ = ["free_variables", "lambdify", "to_latex", "to_string"]


def _as_expr(expr) -> sympy.Expr:
    if isinstance(expr, (list, tuple)):
        raise TypeError("pass one expression (e.g. model.symbolic_formula()[0]), not a list")
    if isinstance(expr, str):
        return sympy.sympify(expr)
    if not isinstance(expr, sympy.Basic):
        raise TypeError(f"expr must be a sympy expression or a string, got {type(expr).__name__}")
    return expr


def free_variables(expr: sympy.Expr, n_var: int | None = None) -> list[sympy.Symbol]:
    """Variables ``x1..xn`` of ``expr`` in numeric order (``n_var`` forces ``x1..x{n_var}`` even if unused)."""
    expr = _as_expr(expr)
    if n_var is not None:
        return [sympy.Symbol(f"x{k}") for k in range(1, n_var + 1)]

    def order(s: sympy.Symbol) -> tuple:
        name = s.name.replace("_", "")
        return (0, int(name[1:])) if name[:1] == "x" and name[1:].isdigit() else (1, s.name)

    return sorted(expr.free_symbols, key=order)


def to_string(expr, *, n_digit: int | None = None) -> str:
    """A sympy-parsable string (``sympy.sympify(to_string(e)) == e``), optionally with floats rounded."""
    expr = _as_expr(expr)
    if n_digit is not None:
        from .formula import ex_round

        expr = ex_round(expr, n_digit)
    return str(expr)


def to_latex(expr, *, n_digit: int | None = 4) -> str:
    """LaTeX for a formula (floats rounded to ``n_digit`` decimals; ``None`` keeps full precision)."""
    expr = _as_expr(expr)
    if n_digit is not None:
        from .formula import ex_round

        expr = ex_round(expr, n_digit)
    return sympy.latex(expr)


def _torch_namespace() -> dict[str, object]:
    def besselj(n, x):
        if n == 0:
            return torch.special.bessel_j0(x)
        if n == 1:
            return torch.special.bessel_j1(x)
        raise ValueError(f"besselj({n}, x) has no torch implementation (only orders 0 and 1)")

    from ..formula_parse import torch_namespace
    from .library import default_library

    lib = default_library(special=True)
    return {
        **torch_namespace(), "besselj": besselj, "fresnels": lib["fresnels"].torch_fn,
        "fresnelc": lib["fresnelc"].torch_fn, "pi": math.pi, "E": math.e, "exp1": math.e,
    }


def lambdify(
    expr,
    variables: Sequence[sympy.Symbol | str] | None = None,
    backend: str = "numpy",
) -> Callable:
    """A vectorised callable ``f(X)`` for a formula.

    Args:
        expr: sympy expression (or string).
        variables: argument order (default: ``x1..xn`` found in ``expr``, in numeric order).
        backend: ``"numpy"`` (scipy for special functions) or ``"torch"`` (differentiable, device-agnostic).

    Returns:
        ``f(X)`` with ``X`` of shape ``(batch, n_var)`` (numpy array or torch tensor) returning ``(batch,)``.

    Example:
        >>> f = lambdify("exp(sin(pi*x1) + x2**2)", backend="torch")
        >>> f(torch.zeros(3, 2))
        tensor([1., 1., 1.])
    """
    check_choice("backend", backend, ("numpy", "torch"))
    expr = _as_expr(expr)
    vs = free_variables(expr) if variables is None else [sympy.Symbol(v) if isinstance(v, str) else v
                                                          for v in variables]
    if backend == "numpy":
        raw = sympy.lambdify(vs, expr, modules=["scipy", "numpy"])
    else:  # functions the plain Python printer does not know are printed by name and found in the namespace
        from ..formula_parse import fold_constants

        # constant calls (sqrt(2), log(2)) folded to floats: torch functions take tensors only; sign by name, not
        # as the printer's `0 if x == 0 else copysign(1, x)`
        plain = fold_constants(expr).replace(sympy.sign, sympy.Function("sign"))
        for cls in (sympy.fresnels, sympy.fresnelc, sympy.besselj):
            plain = plain.replace(cls, sympy.Function(cls.__name__))
        raw = sympy.lambdify(vs, plain, modules=[_torch_namespace()])
    n = len(vs)

    def f(x):
        if x.ndim != 2 or x.shape[1] != n:
            raise ValueError(f"X must have shape (batch, {n}) for variables {[str(v) for v in vs]}, got "
                             f"{tuple(x.shape)}")
        out = raw(*(x[:, k] for k in range(n)))
        if backend == "numpy":
            return np.broadcast_to(np.asarray(out, dtype=np.float64 if x.dtype != np.float32 else np.float32),
                                   (x.shape[0],))
        if not isinstance(out, torch.Tensor):
            out = torch.full((x.shape[0],), float(out), dtype=x.dtype, device=x.device)
        return out.expand(x.shape[0])

    f.variables = vs  # type: ignore[attr-defined]
    f.expr = expr  # type: ignore[attr-defined]
    return f
