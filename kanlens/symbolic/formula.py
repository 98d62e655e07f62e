"""Formulas from symbolic KANs: :func:`symbolic_formula` and :func:`ex_round`.

:func:`symbolic_formula` reads a model whose active edges are all symbolic and returns one sympy expression per
output. Structural constants (``a = 1`` of a power function, ``b = 0`` of ``exp``, ``node_scale = 1``) become
exact integers, so the only floats left are genuine free constants; sympy merges numeric factors through sums,
which removes most of the remaining redundancy.

The formula-level clean-up lives in one module per question and is re-exported here (the documented import path):
:mod:`kanlens.symbolic.simplify` (:func:`normalize`, :func:`formula_complexity`, :func:`n_floats`),
:mod:`kanlens.symbolic.values` (:func:`nmse`, :func:`noise_floor`, :func:`real_values`),
:mod:`kanlens.symbolic.constants` (:func:`refit_constants`: joint refit of every float; :func:`snap_constants`:
constants replaced by simple values while the refitted loss does not get worse) and
:mod:`kanlens.symbolic.detaylor` (:func:`detaylor`: function nodes used only in their Taylor regime).
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy

from .._checks import is_int
from .constants import ConstantFit, refit_constants, simple_constants, snap_constants
from .detaylor import detaylor  # noqa: F401 (re-exported: the search stages call sform.detaylor)
from .simplify import formula_complexity, n_floats, normalize  # noqa: F401 (n_floats re-exported)
from .values import nmse, noise_floor, real_values  # noqa: F401 (real_values re-exported)

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


def input_symbols(model, var) -> list[sympy.Expr]:
    """The model's input variables: ``x1..xn`` by default, else ``var`` (names, symbols or sympy expressions)."""
    n_in = model.width_in[0]
    if var is None:
        ids = model.config.input_ids if getattr(model.config, "input_ids", None) is not None else range(n_in)
        return [sympy.Symbol(f"x{k + 1}") for k in ids]
    if len(var) != n_in:
        raise ValueError(f"var needs {n_in} names (one per model input), got {len(var)}")
    return [v if isinstance(v, sympy.Expr) else sympy.Symbol(str(v)) for v in var]


def _normalizer_pair(name: str, normalizer, n: int) -> tuple[list[float], list[float]]:
    """``(mean, std)`` of ``n`` variables as two float lists; a clear error for any other shape."""
    try:
        mean, std = normalizer
        mean = [float(v) for v in (mean.reshape(-1).tolist() if hasattr(mean, "reshape") else mean)]
        std = [float(v) for v in (std.reshape(-1).tolist() if hasattr(std, "reshape") else std)]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a pair (mean, std) of {n} numbers each, got {normalizer!r}") from err
    if len(mean) != n or len(std) != n:
        raise ValueError(f"{name} must give {n} means and {n} stds (one per variable), got {len(mean)} and "
                         f"{len(std)}")
    if any(s == 0 for s in std):
        raise ValueError(f"{name}: a std of 0 cannot normalize")
    return mean, std


def symbolic_formula(
    model,
    var: Sequence[str | sympy.Expr] | None = None,
    simplify: bool = False,
    round: int | None = None,
    normalizer=None,
    output_normalizer=None,
) -> list[sympy.Expr]:
    """One sympy expression per output of a model whose active edges are all symbolic (pykan's ``symbolic_formula``).

    Args:
        model: a :class:`~kanlens.model.KAN` after ``auto_symbolic`` / ``fix_symbolic``.
        var: input names (default ``x1..xn``; after ``prune_input`` the original indices are kept).
        simplify: run ``sympy.simplify`` on each output (can be slow for large formulas).
        round: round floats to this many decimals (:func:`ex_round`).
        normalizer: pykan's ``(mean, std)`` of the inputs, when the model was trained on ``(x - mean) / std``:
            the formula is then in the raw inputs (each ``x_i`` replaced by ``(x_i - mean_i) / std_i``).
        output_normalizer: pykan's ``(mean, std)`` of the outputs, when the model was trained on normalized
            targets: each output ``y_j`` becomes ``y_j * std_j + mean_j``.

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
    if normalizer is not None:
        mean, std = _normalizer_pair("normalizer", normalizer, len(nodes))
        nodes = [(v - _num(m)) / _num(s) for v, m, s in zip(nodes, mean, std)]
    for l in range(model.depth):
        nodes = _layer_exprs(model, l, nodes)
    out = nodes
    if output_normalizer is not None:
        mean, std = _normalizer_pair("output_normalizer", output_normalizer, len(out))
        out = [e * _num(s) + _num(m) for e, m, s in zip(out, mean, std)]
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
