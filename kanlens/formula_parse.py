"""Safe parsing of user-typed formulas such as ``"exp(sin(pi*x1) + x2**2)"`` (the CLI's ``--formula``).

sympy's ``parse_expr`` ends in ``eval``, so it must never see arbitrary text. :func:`parse_formula` first
tokenizes the string with Python's own tokenizer and accepts only

* decimal numbers (``2``, ``0.5``, ``1e-3``),
* the operators ``+ - * / ** ^`` (``^`` means power), parentheses and commas,
* names from a fixed namespace: math functions (``sin``, ``exp``, ``log``...), constants (``pi``, ``e``) and the
  variables ``x1, x2, ...`` (or the names passed as ``variables``).

Anything else (attribute access ``.``, strings, brackets, ``lambda``, ``import``, ``__dunder__`` names, unknown
names, keyword arguments, unbalanced parentheses) raises :class:`FormulaError` *before* sympy is called. sympy
then evaluates the token stream with empty builtins and a namespace holding only the allowed names, and the result
is checked again (only allowed symbols, no huge numeric powers or numbers, no complex constants such as
``sqrt(-2)``).

Example:
    >>> expr, symbols = parse_formula("exp(sin(pi*x1) + x2^2)")
    >>> expr, symbols
    (exp(x2**2 + sin(pi*x1)), [x1, x2])
"""

from __future__ import annotations

import io
import keyword
import math
import re
import tokenize
from collections.abc import Callable, Sequence

import numpy as np
import sympy
import torch

from ._checks import did_you_mean
from .utils import one_line

__all__ = ["CONSTANTS", "FUNCTIONS", "FormulaError", "formula_function", "parse_formula"]

MAX_LENGTH = 2000
MAX_POWER = 100  # |numeric exponent| above this is refused (no 9**9**9 bombs)
MAX_BITS = 1100  # exact integers / rationals beyond this are refused (gamma(100)**100; float64 ends at 2**1024)

FUNCTIONS: dict[str, sympy.FunctionClass] = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot,
    "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
    "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
    "asinh": sympy.asinh, "acosh": sympy.acosh, "atanh": sympy.atanh,
    "arcsinh": sympy.asinh, "arccosh": sympy.acosh, "arctanh": sympy.atanh,
    "exp": sympy.exp, "log": sympy.log, "ln": sympy.log, "sqrt": sympy.sqrt,
    "abs": sympy.Abs, "Abs": sympy.Abs, "sign": sympy.sign,
    "erf": sympy.erf, "gamma": sympy.gamma, "besselj": sympy.besselj,
}
CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "e": sympy.E, "E": sympy.E}

_DEFAULT_VAR = re.compile(r"x([1-9][0-9]{0,2})")
_NUMBER = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_OPS = {"+", "-", "*", "/", "**", "^", "(", ")", ","}


class FormulaError(ValueError):
    """A formula string was refused; the message is one line and says why."""


def _tokens(text: str) -> list[tokenize.TokenInfo]:
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError) as e:
        msg = e.args[0] if e.args else str(e)
        if "EOF" in str(msg) or "parenthes" in str(msg):
            raise FormulaError("unbalanced parentheses") from None
        raise FormulaError(f"cannot tokenize formula: {one_line(msg)}") from None
    skip = {tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT}
    return [t for t in toks if t.type not in skip]


def _check_tokens(toks: list[tokenize.TokenInfo], variables: Sequence[str] | None) -> list[str]:
    """Validate the token stream; return the variable names used (in order of first use)."""
    used: list[str] = []
    depth = 0
    var_help = ", ".join(variables) if variables is not None else "x1, x2, ..."
    for n, tok in enumerate(toks):
        s, col = tok.string, tok.start[1] + 1
        nxt = toks[n + 1].string if n + 1 < len(toks) else ""
        if tok.type == tokenize.NAME:
            if s.startswith("__") or s.endswith("__"):
                raise FormulaError(f"name {s!r} is not allowed (dunder names are never evaluated)")
            if keyword.iskeyword(s) or keyword.issoftkeyword(s):
                raise FormulaError(f"Python keyword {s!r} is not allowed in a formula")
            if s in FUNCTIONS:
                if nxt != "(":
                    raise FormulaError(f"function {s!r} at column {col} must be called, e.g. {s}(x1)")
            elif s in CONSTANTS:
                pass
            elif (s in variables) if variables is not None else bool(_DEFAULT_VAR.fullmatch(s)):
                if nxt == "(":
                    raise FormulaError(f"variable {s!r} at column {col} is not a function (write {s}*(...))")
                if s not in used:
                    used.append(s)
            else:
                if nxt == "(":
                    hint = did_you_mean(s, FUNCTIONS).split(" (choices")[0]
                    raise FormulaError(f"unknown function {s!r}{hint}; functions: {', '.join(sorted(FUNCTIONS))}")
                names = list(CONSTANTS) + (list(variables) if variables is not None else ["x1", "x2", "x3"])
                hint = did_you_mean(s, names).split(" (choices")[0]
                raise FormulaError(f"unknown variable {s!r}{hint}; variables: {var_help}; constants: pi, e")
        elif tok.type == tokenize.NUMBER:
            if not _NUMBER.fullmatch(s):
                raise FormulaError(f"number {s!r} at column {col}: only decimal real numbers are allowed")
        elif tok.type == tokenize.OP:
            if s == ".":
                raise FormulaError(f"attribute access ('.') at column {col} is not allowed")
            if s == "=":
                raise FormulaError(f"'=' at column {col} is not allowed (keyword arguments and assignments)")
            if s not in _OPS:
                raise FormulaError(f"operator or symbol {s!r} at column {col} is not allowed")
            if s == "(":
                depth += 1
            elif s == ")":
                depth -= 1
                if depth < 0:
                    raise FormulaError(f"unbalanced parentheses: unexpected ')' at column {col}")
        elif tok.type == tokenize.STRING:
            raise FormulaError(f"string literals are not allowed (column {col})")
        else:
            raise FormulaError(f"unexpected {s!r} at column {col}")
    if depth != 0:
        raise FormulaError("unbalanced parentheses: missing ')'")
    return used


def _check_expr(expr: sympy.Basic, allowed: set[sympy.Symbol]) -> None:
    if not isinstance(expr, sympy.Expr):
        raise FormulaError(f"the formula must be a real expression, got {type(expr).__name__}")
    extra = expr.free_symbols - allowed
    if extra:
        raise FormulaError(f"unknown symbols {sorted(map(str, extra))}")
    for node in sympy.postorder_traversal(expr):  # inner powers first
        if isinstance(node, sympy.core.function.AppliedUndef):
            raise FormulaError(f"unknown function {node.func}")
        if isinstance(node, sympy.Rational) and max(abs(node.p), node.q).bit_length() > MAX_BITS:
            raise FormulaError(f"a number in the formula is too large (more than {MAX_BITS} bits, beyond float64)")
        if isinstance(node, sympy.Pow) and node.exp.is_number:
            try:
                big = abs(float(node.exp)) > MAX_POWER
            except (TypeError, ValueError, OverflowError):
                big = True
            if big:
                raise FormulaError(f"exponent {node.exp} is too large (|exponent| <= {MAX_POWER})")
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise FormulaError("the formula is undefined (division by zero or infinity)")


def parse_formula(text: str, variables: Sequence[str] | None = None) -> tuple[sympy.Expr, list[sympy.Symbol]]:
    """Parse ``text`` into a sympy expression without executing anything the user typed.

    Args:
        text: the formula, e.g. ``"exp(sin(pi*x1) + x2**2)"``; ``^`` is accepted for powers.
        variables: allowed variable names; default ``x1, x2, ..., x999``.

    Returns:
        ``(expr, symbols)``: the expression and its input variables. With the default variables these are
        ``x1..xn`` where ``n`` is the largest index used (an unused ``x2`` in ``"x1 + x3"`` still becomes an input);
        with explicit ``variables``, all of them in the given order.

    Raises:
        FormulaError: (a ``ValueError``) with a one-line reason for anything outside the grammar above.
    """
    if not isinstance(text, str):
        raise TypeError(f"formula must be a str, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula is too long ({len(text)} characters, at most {MAX_LENGTH})")
    if not text.strip():
        raise FormulaError("formula is empty")
    if not text.isascii():
        raise FormulaError("formula must be plain ASCII (write pi, not the Greek letter)")
    if any(ch in text for ch in "\n\r\\;#") or not text.isprintable():
        raise FormulaError("formula must be a single line without ';', '#', '\\' or control characters")
    if variables is not None:
        variables = list(variables)
        for v in variables:
            if not (isinstance(v, str) and v.isidentifier()) or v.startswith("__") or keyword.iskeyword(v):
                raise FormulaError(f"invalid variable name {v!r}")
            if v in FUNCTIONS or v in CONSTANTS:
                raise FormulaError(f"variable name {v!r} clashes with a function or constant")
    used = _check_tokens(_tokens(text), variables)
    if variables is None:
        if not used:
            raise FormulaError("the formula uses no variable (write x1, x2, ...)")
        n = max(int(_DEFAULT_VAR.fullmatch(v).group(1)) for v in used)
        names = [f"x{i}" for i in range(1, n + 1)]
    else:
        names = variables
    symbols = [sympy.Symbol(v) for v in names]
    local = {**FUNCTIONS, **CONSTANTS, **dict(zip(names, symbols))}
    glob = {"__builtins__": {}, "Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational,
            "Symbol": sympy.Symbol, "Add": sympy.Add, "Mul": sympy.Mul, "Pow": sympy.Pow}
    from sympy.parsing.sympy_parser import auto_number, convert_xor, parse_expr

    try:
        # evaluate=False first so that huge numeric powers are caught before sympy computes them
        raw = parse_expr(text, local_dict=local, global_dict=glob, transformations=(auto_number, convert_xor),
                         evaluate=False)
        _check_expr(raw, set(symbols))
        expr = parse_expr(text, local_dict=local, global_dict=glob, transformations=(auto_number, convert_xor))
    except FormulaError:
        raise
    except Exception as e:  # sympy raises many types for malformed input (SyntaxError, TypeError, ...)
        raise FormulaError(f"malformed formula: {one_line(f'{type(e).__name__}: {e}')}") from None
    _check_expr(expr, set(symbols))
    fold_constants(expr)  # refuses complex constants such as sqrt(-2) or log(-1)
    return expr, symbols


def torch_namespace() -> dict[str, object]:
    """torch versions of the elementary functions sympy prints, for ``sympy.lambdify(..., modules=[namespace])``
    (:mod:`kanlens.symbolic.export` adds the special functions and constants)."""
    return {
        "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "cot": lambda x: 1 / torch.tan(x),
        "asin": torch.asin, "acos": torch.acos, "atan": torch.atan, "sinh": torch.sinh, "cosh": torch.cosh,
        "tanh": torch.tanh, "asinh": torch.asinh, "acosh": torch.acosh, "atanh": torch.atanh, "exp": torch.exp,
        "log": torch.log, "sqrt": torch.sqrt, "Abs": torch.abs, "sign": torch.sign, "erf": torch.erf,
    }


_BIG_INT = 2**53  # integers beyond this are not exact in float64 (and beyond 2**63 torch refuses them)


def _short(node: sympy.Expr) -> str:
    text = str(node)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} characters)"


def _constant(node: sympy.Expr) -> sympy.Float:
    """The float64 value of a numeric sub-expression (as a Float that prints back exactly).

    Computed with numpy/scipy in float64, never with sympy's arbitrary precision: ``exp(exp(exp(100)))`` must not
    hang. A complex, undefined or overflowing value is a :class:`FormulaError`.
    """
    big = {r: sympy.Float(r, 17) for r in node.atoms(sympy.Rational) if abs(r.p) > _BIG_INT or r.q > _BIG_INT}
    fn = sympy.lambdify([], node.xreplace(big), modules=["scipy", "numpy"])  # numpy has no ufuncs for huge ints
    with np.errstate(all="ignore"):
        try:
            value = complex(fn())
        except (ArithmeticError, TypeError, ValueError):
            value = complex(math.nan)
    if value.imag != 0 and abs(value.imag) > 1e-12 * max(1.0, abs(value.real)):
        raise FormulaError(f"the constant {_short(node)} is not a real number (e.g. the square root or log of a "
                           "negative number)")
    if math.isnan(value.real):
        raise FormulaError(f"the constant {_short(node)} is undefined or not a real number")
    if math.isinf(value.real):
        raise FormulaError(f"the constant {_short(node)} overflows float64")
    return sympy.Float(value.real, 17)  # 17 digits: printed and read back as the same float64


def fold_constants(expr: sympy.Expr) -> sympy.Expr:
    """Replace every constant sub-expression (``sqrt(2)``, ``log(2)``, ``cos(1)``, ``pi``...) by its float value.

    torch functions take tensors only (``torch.sqrt(2)`` is a TypeError), so the torch code must never call them
    on constants. Integers and rationals stay exact (``x1**2`` keeps its integer power) unless they are too big
    for float64 / torch; each sum or product gets at most one folded constant.
    """
    if isinstance(expr, sympy.Rational):  # Integer included
        return _constant(expr) if abs(expr.p) > _BIG_INT or expr.q > _BIG_INT else expr
    if isinstance(expr, sympy.Float):
        return expr if math.isfinite(float(expr)) else _constant(expr)
    if expr.is_number:  # pi, E, sqrt(2), log(2), cos(1), sqrt(2)*I (refused)...
        return _constant(expr)
    if not expr.args:  # a variable
        return expr
    args = list(expr.args)
    if isinstance(expr, (sympy.Add, sympy.Mul)):  # one constant per sum / product: sqrt(2)*I, not I alone
        numbers = [a for a in args if a.is_number]
        if len(numbers) > 1:
            args = [expr.func(*numbers)] + [a for a in args if not a.is_number]
    return expr.func(*(fold_constants(a) for a in args))


def formula_function(
    expr: sympy.Expr, symbols: Sequence[sympy.Symbol]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``create_dataset``-style function ``(batch, n_var) -> (batch, 1)`` evaluating ``expr``.

    Evaluated with torch in the dtype of its input (so ``exp(sin(pi*x1)+x2**2)`` gives the same labels, bit for
    bit, as the hand-written ``torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)``); formulas with
    ``gamma`` or ``besselj`` are evaluated with numpy/scipy in float64. Constant sub-expressions (``sqrt(2*pi)``,
    ``log(2)``, ``cos(1)``) are computed once in float64, so torch functions only ever see tensors. The code is
    generated by ``sympy.lambdify`` from the validated expression tree, never from user text.

    Shapes:
        ``(batch, len(symbols)) -> (batch, 1)``.
    """
    symbols = list(symbols)
    use_numpy = expr.has(sympy.gamma, sympy.besselj)
    if use_numpy:
        fn = sympy.lambdify(symbols, expr, modules=["scipy", "numpy"])
    else:  # constants folded to floats (torch functions take tensors only); sign printed as a call, not Python's
        plain = fold_constants(expr).replace(sympy.sign, sympy.Function("sign"))  # `0 if x == 0 else copysign`
        fn = sympy.lambdify(symbols, plain, modules=[torch_namespace()])

    def f(x: torch.Tensor) -> torch.Tensor:
        if use_numpy:
            cols = x.detach().cpu().double().numpy().T
            with np.errstate(all="ignore"):
                y = torch.as_tensor(np.asarray(fn(*cols), dtype=np.float64), dtype=x.dtype, device=x.device)
        else:
            y = torch.as_tensor(fn(*x.unbind(1)), dtype=x.dtype, device=x.device)
        return y.expand(x.shape[0]).clone()[:, None]

    return f
