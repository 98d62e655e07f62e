"""The KAN compiler (pykan's ``kanpiler``): a sympy formula becomes an exactly equivalent KAN with symbolic edges.

The formula is read as a tree of KAN nodes: a sum ``sum_k c_k f_k(a_k u_k + b_k) + d`` is a sum node whose edges
apply library functions ``f_k`` to child nodes ``u_k``; a product of two or more non-constant factors is a
multiplication node whose factors are subnodes (each a sum of edges, so ``(x + 1) * sin(y)`` takes one layer);
variables are the inputs. Integer powers outside the library become products (``x**7``: seven factors ``x``).
Every node sits at its height above the inputs; an edge that skips layers passes through identity nodes (shared
per node and layer). Identical sub-expressions share one node. The result reads back with
:meth:`KAN.symbolic_formula` and trains further with :meth:`KAN.fit` like any KAN.

Example:
    >>> import sympy
    >>> x, y = sympy.symbols("x y")
    >>> model = kanpiler([x, y], sympy.exp(sympy.sin(sympy.pi * x) + y**2))
    >>> model.width
    [2, 1, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy
import torch

from .model import KAN
from .symbolic.library import SymbolicLibrary, default_library

__all__ = ["CompileError", "expr2kan", "kanpiler", "sf2kan"]

_U = sympy.Symbol("u")


class CompileError(ValueError):
    """The expression has a part the compiler cannot express with the library's functions."""


class _Node:
    """A KAN node: ``op`` ``"input"`` (``index`` = variable), ``"sum"`` (one subnode) or ``"mult"`` (one subnode
    per factor); a subnode is ``(edges, bias)`` with edges ``(name, (a, b, c, d), child)``."""

    def __init__(self, op: str, subnodes: list | None = None, scale: float = 1.0, index: int = 0) -> None:
        self.op, self.subnodes, self.scale, self.index = op, subnodes or [], scale, index
        self.height = 0 if op == "input" else 1 + max(
            (child.height for edges, _ in self.subnodes for *_, child in edges), default=0)


class _Compiler:
    def __init__(self, variables: list[sympy.Symbol], library: SymbolicLibrary) -> None:
        self.vars = variables
        self.inputs = {v: _Node("input", index=i) for i, v in enumerate(variables)}
        self.cache: dict[sympy.Expr, _Node] = {}
        self.keys: dict[sympy.Expr, str] = {}  # f(u) -> library name
        for name in library.names:
            fn = library[name]
            if fn.kind != "zero":
                self.keys.setdefault(sympy.sympify(fn.sympy_fn(_U)), name)
        # integer powers the library has (x^2, 1/x, ...); other integer powers become products
        self.powers = {int(k.exp) for k in self.keys if isinstance(k, sympy.Pow) and k.base == _U and k.exp.is_Integer}

    # ------------------------------------------------------------------ expression -> tree
    def node(self, e: sympy.Expr) -> _Node:
        if e in self.inputs:
            return self.inputs[e]
        if e not in self.cache:
            self.cache[e] = self._build(e)
        return self.cache[e]

    def _build(self, e: sympy.Expr) -> _Node:
        coeff, rest = e.as_independent(*self.vars, as_Add=False)
        factors = list(sympy.Mul.make_args(rest))
        if isinstance(e, sympy.Mul) and len(factors) >= 2:
            return _Node("mult", [self.terms(f) for f in factors], scale=self.number(coeff, e))
        power = self._power(e)
        if power is not None and power[1] not in self.powers:
            base, n = power
            name = "x" if n > 0 else "1/x"
            child = self.node(base)
            return _Node("mult", [([(name, (1.0, 0.0, 1.0, 0.0), child)], 0.0) for _ in range(abs(n))])
        return _Node("sum", [self.terms(e)])

    def _power(self, e: sympy.Expr) -> tuple[sympy.Expr, int] | None:
        """``(base, n)`` for an integer power ``base**n`` (``|n| >= 2``) of a non-constant base, else ``None``."""
        if isinstance(e, sympy.Pow) and e.exp.is_Integer and abs(int(e.exp)) >= 2 and not e.base.is_number:
            return e.base, int(e.exp)
        return None

    def terms(self, e: sympy.Expr) -> tuple[list, float]:
        """``e`` as ``(edges, bias)``: one edge per non-constant term; a repeated child gets its own identity node
        (a KAN has one edge per pair of nodes)."""
        bias, rest = e.as_independent(*self.vars, as_Add=True)
        edges, used = [], set()
        for t in sympy.Add.make_args(rest):
            name, params, child = self.edge(t)
            if id(child) in used:
                child = _Node("sum", [([("x", (1.0, 0.0, 1.0, 0.0), child)], 0.0)])
            used.add(id(child))
            edges.append((name, params, child))
        return edges, self.number(bias, e)

    def edge(self, t: sympy.Expr) -> tuple[str, tuple[float, ...], _Node]:
        """``t = c * f(a * u + b)`` as ``(f's name, (a, b, c, 0), node of u)``."""
        c, rest = t.as_independent(*self.vars, as_Add=False)
        c = self.number(c, t)
        power = self._power(rest)
        if rest in self.inputs or isinstance(rest, sympy.Mul) or (power and power[1] not in self.powers):
            return "x", (1.0, 0.0, c, 0.0), self.node(rest)
        if isinstance(rest, sympy.Pow) and rest.base.is_number:  # 2**x = exp(log(2) x)
            rest = sympy.exp(rest.exp * sympy.log(rest.base))
        name, arg = self.function(rest)
        b, lin = arg.as_independent(*self.vars, as_Add=True)
        a, inner = lin.as_independent(*self.vars, as_Add=False)
        return name, (self.number(a, t), self.number(b, t), c, 0.0), self.node(inner)

    def function(self, e: sympy.Expr) -> tuple[str, sympy.Expr]:
        """The library function applied by ``e`` and its argument."""
        if isinstance(e, sympy.Pow):
            exp = sympy.nsimplify(e.exp) if e.exp.is_Float else e.exp
            if exp.free_symbols & set(self.vars):
                raise CompileError(f"cannot compile {e}: a power with a variable exponent (write it with exp/log)")
            key, arg = _U**exp, e.base
        else:
            moving = [a for a in e.args if a.free_symbols & set(self.vars)]
            if len(moving) != 1:
                raise CompileError(f"cannot compile {e}: {type(e).__name__} of {len(moving)} non-constant arguments "
                                   "(edges apply functions of one variable)")
            key, arg = e.xreplace({moving[0]: _U}), moving[0]
        if key not in self.keys:
            rewritten = e.rewrite(sympy.exp)  # cosh(x) -> (exp(x) + exp(-x)) / 2: an identity edge into its node
            if rewritten != e:
                return "x", rewritten
            raise CompileError(f"cannot compile {e}: {key.subs(_U, sympy.Symbol('x'))} is not in the symbolic "
                               f"library (known: {', '.join(sorted(set(self.keys.values())))})")
        return self.keys[key], arg

    def number(self, v: sympy.Expr, where: sympy.Expr) -> float:
        extra = v.free_symbols - set(self.vars)
        if extra:
            raise CompileError(f"{where} contains {sorted(map(str, extra))}, which are not among the variables "
                               f"{[str(s) for s in self.vars]}; pass them as variables or substitute numbers")
        try:
            return float(v)
        except TypeError:
            raise CompileError(f"cannot compile {where}: the constant {v} is not a real number") from None


def _layers(root: _Node, n_in: list[_Node]) -> list[list[_Node]]:
    """Nodes per layer (inputs first, the root last); edges that skip layers are routed through identity nodes."""
    depth = root.height
    layers: list[list[_Node]] = [list(n_in)] + [[] for _ in range(depth)]
    through: dict[tuple[int, int], _Node] = {}

    def lift(child: _Node, layer: int) -> _Node:
        if child.height == layer:
            return child
        key = (id(child), layer)
        if key not in through:
            through[key] = _Node("sum", [([("x", (1.0, 0.0, 1.0, 0.0), lift(child, layer - 1))], 0.0)])
            through[key].height = layer
            layers[layer].append(through[key])
        return through[key]

    seen: set[int] = set()

    def visit(node: _Node, layer: int) -> None:
        if id(node) in seen or node.op == "input":
            return
        seen.add(id(node))
        node.height = layer
        layers[layer].append(node)
        for s, (edges, bias) in enumerate(node.subnodes):
            lifted = []
            for name, params, child in edges:
                visit(child, child.height)
                lifted.append((name, params, lift(child, layer - 1)))
            node.subnodes[s] = (lifted, bias)

    visit(root, depth)
    for l in range(1, depth + 1):  # sum nodes first, then products (pykan's order within a layer)
        layers[l].sort(key=lambda n: n.op == "mult")
    return layers


def kanpiler(
    variables: Sequence[sympy.Symbol | str],
    expr: sympy.Expr | str,
    grid: int = 5,
    k: int = 3,
    *,
    library: SymbolicLibrary | None = None,
    auto_save: bool = False,
    **kan_options: Any,
) -> KAN:
    """Compile a sympy formula into a KAN whose symbolic edges compute it exactly (pykan's ``kanpiler``).

    Args:
        variables: the input symbols, in input order (every free symbol of ``expr`` must be one of them).
        expr: the formula (a sympy expression or a string sympy can parse).
        grid, k: spline grid and order of the KAN (its splines are off until you unfix an edge).
        library: the symbolic library whose functions the edges use (default: kanlens's, with special functions).
        auto_save: pykan's option; ignored (kanlens writes no files unasked).
        kan_options: further :class:`~kanlens.KAN` options (``seed``, ``dtype``, ``device``...).

    Returns:
        a :class:`~kanlens.KAN`: multiplication nodes where the formula multiplies, ``model(x)`` equal to the
        formula, ``model.symbolic_formula()`` the formula back.

    Raises:
        CompileError: a part of ``expr`` has no KAN form here (a variable exponent, a function outside the library,
            a function of several variables other than ``+`` and ``*``), with the part named.

    Shapes:
        the model maps ``(batch, len(variables)) -> (batch, 1)``.

    Example:
        >>> x, y = sympy.symbols("x y")
        >>> model = kanpiler([x, y], x * y + sympy.sin(x))
        >>> formula = model.symbolic_formula()[0][0]  # x*y + sin(x) in the model's input names
    """
    del auto_save
    variables = [sympy.Symbol(v) if isinstance(v, str) else v for v in variables]
    if not variables or not all(isinstance(v, sympy.Symbol) for v in variables) or len(set(variables)) != len(
            variables):
        raise TypeError(f"variables must be distinct sympy Symbols (or names), got {variables!r}")
    expr = sympy.sympify(expr, locals={str(v): v for v in variables})
    if not isinstance(expr, sympy.Expr):
        raise CompileError(f"expr must be a sympy expression, got {type(expr).__name__}")
    if not expr.free_symbols & set(variables):
        raise CompileError(f"{expr} has none of the variables {variables}: a constant needs no KAN")
    lib = library if library is not None else default_library(special=True)
    comp = _Compiler(variables, lib)
    root = comp.node(expr)
    if root.op == "input":  # the formula is a variable itself: one identity edge
        root = _Node("sum", [([("x", (1.0, 0.0, 1.0, 0.0), root)], 0.0)])
    layers = _layers(root, [comp.inputs[v] for v in variables])
    return _to_kan(layers, grid, k, lib, kan_options)


def _to_kan(layers: list[list[_Node]], grid: int, k: int, lib: SymbolicLibrary, options: dict[str, Any]) -> KAN:
    """The KAN of the layered nodes: width and arities, every edge fixed symbolic, affine maps set."""
    arity = [[len(n.subnodes) for n in layer if n.op == "mult"] for layer in layers]
    width = [[len(layer) - len(a), len(a)] for layer, a in zip(layers, arity)]
    mult = any(arity)
    model = KAN(width=width if mult else [w for w, _ in width], mult_arity=arity if mult else 2, grid=grid, k=k,
                **options)
    for sym in model.symbolic:
        sym.library = lib
    index = [{id(n): i for i, n in enumerate(layer)} for layer in layers]
    index[0] = {id(n): n.index for n in layers[0]}
    with torch.no_grad():
        for l in range(model.depth):
            model.layers[l].mask.zero_()
            sub = 0
            for j, node in enumerate(layers[l + 1]):
                model.node_scale[l][j] = node.scale
                for edges, bias in node.subnodes:
                    if model.node_layout.has_mult:
                        model.subnode_bias[l][sub] = bias
                    else:
                        model.node_bias[l][j] = bias
                    for name, params, child in edges:
                        model.symbolic[l].fix(index[l][id(child)], sub, name, params)
                    sub += 1
    return model


expr2kan = sf2kan = kanpiler
