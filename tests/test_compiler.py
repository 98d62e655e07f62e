"""The KAN compiler: formula -> KAN -> formula round trips (sympy-equal), numeric equality, training on, errors."""

from __future__ import annotations

import pytest
import sympy
import torch

from kanlens import KAN, create_dataset
from kanlens.compiler import CompileError, expr2kan, kanpiler, sf2kan

x, y, z = sympy.symbols("x y z")
VARS = [x, y, z]

ROUND_TRIP = [
    x * y,
    x * y + sympy.sin(x),
    x + sympy.sin(x),  # two edges from one input into one node: one goes through its own identity node
    3 * x * y * z - 2,  # arity 3 with a scale and a constant
    (x + 1) * (y - 2) * z,  # factors that are sums take no extra layer
    x**7,  # a power outside the library: a product of seven factors
    x / y,
    -x * y + y**2,
    sympy.sqrt(x**2 + y**2),
    y * sympy.log(x**2 + 1),
    x * y / (z**2 + 1),
    sympy.sin(x * y) * sympy.cos(x + y),  # products inside and outside functions
    sympy.exp(sympy.Rational(1, 2) * x + sympy.tanh(2 * y - 1)) - 3,
    x,
]


def _points(n: int = 1000, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=gen, dtype=torch.float64) * 1.6 + 0.2  # positive: log, sqrt, 1/x defined


def _evaluate(expr: sympy.Expr, pts: torch.Tensor) -> torch.Tensor:
    fn = sympy.lambdify(VARS, expr, "numpy")
    return torch.as_tensor(fn(*pts.T.numpy()), dtype=torch.float64) * torch.ones(pts.shape[0], dtype=torch.float64)


def _read_back(model: KAN) -> sympy.Expr:
    """The model's formula with its input symbols replaced by position (whatever names the model uses)."""
    formulas, variables = model.symbolic_formula()
    return formulas[0].xreplace(dict(zip(variables, VARS)))


@pytest.mark.parametrize("expr", ROUND_TRIP, ids=str)
def test_round_trip_is_sympy_equal_and_numerically_exact(expr):
    model = kanpiler(VARS, expr, dtype=torch.float64)
    back = _read_back(model)
    assert sympy.simplify(sympy.nsimplify(back) - expr) == 0
    pts = _points()
    torch.testing.assert_close(model(pts)[:, 0].detach(), _evaluate(expr, pts), rtol=1e-12, atol=1e-12)


def test_pykan_tutorial_formula_with_pi():
    """pykan's compiler example: exp(sin(pi*a) + b^2) -> a [2, 1, 1] KAN, pi read back to float precision."""
    a, b = sympy.symbols("a b")
    expression = sympy.exp(sympy.sin(sympy.pi * a) + b**2)
    model = kanpiler([a, b], expression, dtype=torch.float64)
    assert model.width == [2, 1, 1]
    formulas, variables = model.symbolic_formula()
    back = formulas[0].xreplace(dict(zip(variables, [a, b])))
    back = back.xreplace({f: sympy.nsimplify(f, [sympy.pi]) for f in back.atoms(sympy.Float)})  # 3.14159... -> pi
    assert sympy.simplify(back - expression) == 0
    pts = torch.rand(500, 2, dtype=torch.float64) * 2 - 1
    ref = torch.exp(torch.sin(torch.pi * pts[:, 0]) + pts[:, 1] ** 2)
    torch.testing.assert_close(model(pts)[:, 0].detach(), ref, rtol=1e-12, atol=1e-12)


def test_structure_uses_multiplication_nodes_only_where_the_formula_multiplies():
    assert kanpiler(VARS, sympy.sin(x) + y**2).width == [3, 1]
    m = kanpiler(VARS, x * y * z + sympy.sin(x))
    assert m.width == [[3, 0], [1, 1], [1, 0]] and m.mult_arity == [[], [3], []]
    # every edge is symbolic: no spline left to fit
    assert all(bool((layer.mask == 0).all()) for layer in m.layers)


def test_compiled_model_trains_further_and_reads_back():
    """pykan's use: compile a guess, then fit its constants to data (1.5 x y instead of 2 x y)."""
    model = expr2kan([x, y], 2 * x * y + sympy.sin(y), dtype=torch.float64)
    data = create_dataset(lambda t: 1.5 * t[:, [0]] * t[:, [1]] + torch.sin(t[:, [1]]), n_var=2, train_num=200,
                          seed=0, dtype=torch.float64)
    before = torch.sqrt(torch.mean((model(data["test_input"]) - data["test_label"]) ** 2)).item()
    history = model.fit(data, steps=10, update_grid=False, progress=False)
    assert before > 0.1 and history["test_loss"][-1] < 1e-6
    back = _read_back(model)
    pts = _points(300)
    torch.testing.assert_close(_evaluate(back, pts), model(pts[:, :2])[:, 0].detach(), rtol=1e-9, atol=1e-9)


def test_float32_model_and_string_input():
    model = sf2kan(["x", "y"], "x*y + cos(x)")
    assert model.dtype == torch.get_default_dtype()
    pts = torch.rand(100, 2) * 2 - 1
    ref = pts[:, 0] * pts[:, 1] + torch.cos(pts[:, 0])
    torch.testing.assert_close(model(pts)[:, 0].detach(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("expr", "match"),
    [
        (x**y, "variable exponent"),
        (sympy.Max(x, y), "Max of 2 non-constant arguments"),
        (sympy.gamma(x), "gamma.*not in the symbolic library"),
        (x + sympy.Symbol("w"), "not among the variables"),
        (sympy.Integer(3), "none of the variables"),
        (x + sympy.I, "not a real number"),
    ],
)
def test_uncompilable_expressions_raise_clear_errors(expr, match):
    with pytest.raises(CompileError, match=match):
        kanpiler([x, y], expr)


def test_bad_variables():
    with pytest.raises(TypeError, match="distinct sympy Symbols"):
        kanpiler([x, x], x * 2)
