"""Formula utilities: ex_round, joint refit, constant snapping, export to latex / string / numpy / torch."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch

from kanlens.symbolic import export
from kanlens.symbolic import formula as sform

x1, x2 = sympy.symbols("x1 x2")


def _data(f, n=400, seed=0, lo=-1.0, hi=1.0):
    rng = np.random.default_rng(seed)
    x = lo + (hi - lo) * rng.random((n, 2))
    return x, f(x[:, 0], x[:, 1])


def test_ex_round():
    e = sympy.Float(1.23456) * sympy.sin(sympy.Float(3.14159) * x1)
    assert sform.ex_round(e, 2) == sympy.Float(1.23) * sympy.sin(sympy.Float(3.14) * x1)
    with pytest.raises(ValueError, match="n_digit"):
        sform.ex_round(e, -1)


def test_refit_recovers_all_constants_jointly():
    x, y = _data(lambda a, b: 2.5 * np.exp(0.7 * np.sin(1.3 * a) + 0.4 * b**2) - 0.3)
    start = 2.0 * sympy.exp(0.5 * sympy.sin(1.0 * x1) + 0.5 * x2**2) + 0.1
    fit = sform.refit_constants(start, [x1, x2], x, y)
    assert fit.nmse < 1e-20
    vals = sorted(float(f) for f in fit.expr.atoms(sympy.Float))
    np.testing.assert_allclose(vals, sorted([2.5, 0.7, 1.3, 0.4, -0.3]), rtol=1e-8)


def test_snap_constants_to_pi_rationals_and_zero():
    x, y = _data(lambda a, b: np.exp(np.sin(np.pi * a) + b**2) / 3)
    noisy = sympy.Float(0.33334) * sympy.exp(sympy.Float(1.00002) * sympy.sin(sympy.Float(3.14161) * x1 + 1e-6)
                                             + sympy.Float(0.99999) * x2**2) + sympy.Float(2e-6)
    snapped = sform.snap_constants(noisy, [x1, x2], x, y, floor=sform.noise_floor(y))
    assert snapped.expr.atoms(sympy.Float) == set()
    assert sympy.simplify(snapped.expr - sympy.exp(sympy.sin(sympy.pi * x1) + x2**2) / 3) == 0


def test_snap_keeps_constants_that_are_not_simple():
    x, y = _data(lambda a, b: 1.2345678 * a + np.sin(b))
    snapped = sform.snap_constants(sympy.Float(1.2) * x1 + sympy.sin(x2), [x1, x2], x, y,
                                   floor=sform.noise_floor(y))
    floats = [float(f) for f in snapped.expr.atoms(sympy.Float)]
    assert floats and abs(floats[0] - 1.2345678) < 1e-8


def test_snap_never_makes_the_loss_worse():
    x, y = _data(lambda a, b: np.tanh(2.03 * a) + b)  # 2.03 is close to 2 but 2 fits worse
    fit = sform.snap_constants(sympy.tanh(sympy.Float(2.03) * x1) + x2, [x1, x2], x, y, floor=1e-14)
    assert fit.nmse < 1e-20


def test_simple_constants():
    cands = sform.simple_constants(3.14160)
    assert cands[0] == sympy.pi
    assert sympy.Rational(1, 2) in sform.simple_constants(0.50001)
    assert sform.simple_constants(0.3989423)[0] == 1 / sympy.sqrt(2 * sympy.pi)
    assert sform.simple_constants(float("nan")) == []


def test_formula_complexity():
    assert sform.formula_complexity(x1) == 1
    assert sform.formula_complexity(sympy.sin(x1) + x2) > sform.formula_complexity(x1 + x2)


def test_export_string_latex_and_lambdify():
    e = sympy.exp(sympy.sin(sympy.pi * x1) + x2**2)
    s = export.to_string(e)
    assert sympy.sympify(s) == e
    assert "\\sin" in export.to_latex(e) and "\\pi" in export.to_latex(e)
    assert export.to_latex(sympy.Float(1.234567) * x1, n_digit=2) == "1.23 x_{1}"
    x = np.random.default_rng(0).random((7, 2))
    ref = np.exp(np.sin(np.pi * x[:, 0]) + x[:, 1] ** 2)
    np.testing.assert_allclose(export.lambdify(e)(x), ref, rtol=1e-12)
    ft = export.lambdify(e, backend="torch")
    xt = torch.tensor(x, requires_grad=True)
    out = ft(xt)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12)
    out.sum().backward()
    assert xt.grad is not None and torch.isfinite(xt.grad).all()


def test_lambdify_special_functions_torch_and_numpy_agree():
    e = sympy.besselj(0, 3 * x1) + sympy.erf(x2) + sympy.besselj(1, x1) + sympy.fresnels(x2)
    x = np.random.default_rng(1).random((5, 2))
    a = export.lambdify(e, [x1, x2])(x)
    b = export.lambdify(e, [x1, x2], backend="torch")(torch.tensor(x)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


def test_lambdify_constant_and_bad_input():
    f = export.lambdify(sympy.Integer(3), [x1, x2])
    assert f(np.zeros((4, 2))).shape == (4,)
    ft = export.lambdify(sympy.Integer(3), [x1, x2], backend="torch")
    assert ft(torch.zeros(4, 2)).tolist() == [3.0] * 4
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="did you mean 'torch'"):
        export.lambdify(x1, backend="torc")
    with pytest.raises(TypeError, match="not a list"):
        export.to_latex([x1])


def test_normalize_drops_abs_inside_even_functions() -> None:
    """cos(k|u|) = cos(ku), cosh(k|u|) = cosh(ku), |u|^2n = u^2n for real u; odd uses of |u| are kept.

    Plain symbols, as in the pipeline's formulas: with ``real=True`` sympy itself rewrites ``|u|^4``."""
    x1, x2 = sympy.symbols("x1 x2")
    cases = {
        -sympy.cos(x2) * sympy.cos(sympy.Abs(x1 + sympy.pi / 2)): sympy.sin(x1) * sympy.cos(x2),
        sympy.cosh(3 * sympy.Abs(x1 - 1)): sympy.cosh(3 * x1 - 3),
        sympy.Abs(x1 + x2) ** 4: (x1 + x2) ** 4,
    }
    for before, after in cases.items():
        got = sform.normalize(before)
        assert not got.has(sympy.Abs) and sympy.simplify(got - after) == 0
    pts = np.random.default_rng(0).uniform(-3, 3, size=(50, 2))
    for before in cases:
        f, g = (sympy.lambdify((x1, x2), e, "numpy") for e in (before, sform.normalize(before)))
        np.testing.assert_allclose(f(*pts.T), g(*pts.T), rtol=1e-12, atol=1e-12)
    kept = sympy.cos(sympy.Abs(x1) + 1), sympy.sin(2 * sympy.Abs(x1)), sympy.Abs(x1) ** 3
    for e in kept:
        assert sform.normalize(e).has(sympy.Abs)


def test_refit_of_a_formula_overflowing_on_the_data_warns_nothing():
    """Residuals near 1e174 made scipy's least squares print 'overflow encountered in dot' into the user's output."""
    import warnings

    x = np.linspace(0, 1, 100)[:, None]
    start = sympy.Float(2.0) * sympy.exp(sympy.Float(400.0) * x1) + sympy.Float(0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = sform.refit_constants(start, [x1], x, np.sin(3 * x[:, 0]))
    assert not caught
    assert fit.nmse > 1.0  # nothing of that shape fits sin(3x): the fit says so, it does not pretend


def test_detaylor_replaces_a_cotangent_near_its_pole_by_one_over_its_argument():
    # tan(pi/2 + u) prints as -cot(u): a fitted tan edge near its pole; on the data only 1/u is left
    x, _ = _data(lambda a, b: a, lo=-2.0, hi=2.0)
    a = sympy.Float(9.08e-8)
    u = a * sympy.exp(x2) + a * sympy.exp(-x2)
    plain = sform.detaylor(a * x1 * sympy.cot(u), [x1, x2], x)
    assert not plain.has(sympy.cot)
    vals = sympy.lambdify([x1, x2], plain)(x[:, 0], x[:, 1])
    np.testing.assert_allclose(vals, x[:, 0] / (np.exp(x[:, 1]) + np.exp(-x[:, 1])), rtol=1e-6)
    for far in (x1 * sympy.cot(x2 + 3), x1 * sympy.csc(sympy.Float(0.3) * x2 + 1)):  # not near the pole: kept
        assert sform.detaylor(far, [x1, x2], x) == far
    crossing = x1 * sympy.cot(sympy.Float(1e-7) * x2)  # u changes sign: no Laurent form over the data
    assert sform.detaylor(crossing, [x1, x2], x) == crossing


def test_detaylor_shifts_a_tangent_next_to_a_pole_away_from_zero():
    """A fitted ``c*x1*tan(a*x2 + 11/7)`` (11/7 just past pi/2) is ``x1/(x2 + 2)`` on the data: it must reach the
    1/u form too, while a tangent that crosses its pole or stays away from it is left alone."""
    x, _ = _data(lambda a, b: a)
    a = sympy.Float(0.000316)
    near = -a * x1 * sympy.tan(a * x2 + sympy.Rational(11, 7)) + sympy.sin(x1)
    plain = sform.detaylor(near, [x1, x2], x)
    assert not plain.has(sympy.tan) and not plain.has(sympy.cot)
    vals = sympy.lambdify([x1, x2], plain)(x[:, 0], x[:, 1])
    want = sympy.lambdify([x1, x2], near)(x[:, 0], x[:, 1])
    np.testing.assert_allclose(vals, want, rtol=1e-5, atol=1e-6 * np.std(want))
    for kept in (sympy.tan(sympy.Float(0.3) * x1 + sympy.Float(1.5707)), x2 + sympy.tan(x1)):
        assert sform.detaylor(kept, [x1, x2], x) == kept
    # a 1/u form comes out with a unit leading coefficient (snappable), and a saturated node as its constant
    saturated = sympy.sin(x1) * sympy.tanh(231 * sympy.pi * x2 + 240 * sympy.pi)
    assert sform.detaylor(saturated, [x1, x2], x) == sympy.sin(x1)
    assert sform.detaylor(sympy.cot(sympy.Float(0.001) * x1 + sympy.Float(0.01)), [x1, x2], x).has(x1 + 10.0)


def test_refit_out_of_time_keeps_the_start_and_with_time_converges():
    x, y = _data(lambda a, b: 2.5 * np.exp(0.7 * np.sin(1.3 * a) + 0.4 * b**2) - 0.3)
    start = 2.0 * sympy.exp(0.5 * sympy.sin(1.0 * x1) + 0.5 * x2**2) + 0.1
    start_nmse = sform.nmse(sympy.lambdify([x1, x2], start)(x[:, 0], x[:, 1]), y)
    stopped = sform.refit_constants(start, [x1, x2], x, y, max_seconds=0.0)
    # no time at all: the start is kept, not a half step
    assert sorted(map(float, stopped.expr.atoms(sympy.Float))) == pytest.approx([0.1, 0.5, 1.0, 2.0])  # atoms: 0.5 once
    assert stopped.nmse == pytest.approx(start_nmse, rel=1e-9)
    assert sform.refit_constants(start, [x1, x2], x, y, max_seconds=30.0).nmse < 1e-20



def test_complex_values_of_a_candidate_score_inf_not_their_real_part():
    """A candidate whose values are complex on the data (here ``I`` in it) must not be judged on its real part
    (numpy's cast would drop the imaginary part with a ComplexWarning)."""
    import math
    import warnings

    from kanlens.symbolic.formula import nmse, real_values, refit_constants

    np.testing.assert_array_equal(real_values(np.array([1 + 0j, 2 + 1e-20j, 3 + 1j])), [1.0, 2.0, np.nan])
    y = np.array([1.0, 2.0, 3.0])
    assert nmse(np.array([1 + 0j, 2, 3]), y) == 0.0 and nmse(np.array([1 + 1j, 2, 3]), y) == math.inf
    x1 = sympy.Symbol("x1")
    x = np.linspace(-1, 1, 50)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = refit_constants(1.0 * sympy.sin(1.0 * x1) + 0.5 * sympy.I * x1, [x1], x, np.sin(x[:, 0]))
    assert fit.nmse == math.inf
