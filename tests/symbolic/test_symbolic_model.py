"""suggest/fix/unfix/auto_symbolic and symbolic_formula on small KANs (no training: splines are set directly)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
import torch

from kanlens import KAN, create_dataset
from kanlens.splines import curve2coef
from kanlens.symbolic import fit as sfit
from kanlens.symbolic import formula as sform
from kanlens.symbolic.export import lambdify


def _spline_model(fns, grid=40) -> KAN:
    """A [n, 1] KAN (float64) whose edge i is the spline of fns[i] on [-1, 1] (base branch off)."""
    n = len(fns)
    model = KAN(width=[n, 1], grid=grid, k=3, seed=0, dtype=torch.float64)
    layer = model.layers[0]
    x = torch.linspace(-1, 1, 801, dtype=torch.float64)[:, None].expand(-1, n)
    y = torch.stack([f(x[:, i]) for i, f in enumerate(fns)], -1)[:, None, :]  # (batch, 1, n)
    with torch.no_grad():
        layer.coef.copy_(curve2coef(x, y, layer.grid, layer.k))
        layer.scale_base.zero_()
        layer.scale_sp.fill_(1.0)
    gen = torch.Generator().manual_seed(1)
    model(torch.rand(500, n, generator=gen, dtype=torch.float64) * 2 - 1)
    return model


def test_suggest_symbolic_ranks_true_function_first():
    model = _spline_model([lambda t: 0.5 * torch.sin(2 * t) + 0.1, lambda t: t**2])
    table = model.suggest_symbolic(0, 0, 0) if hasattr(model, "suggest_symbolic") else sfit.suggest_symbolic(
        model, 0, 0, 0)
    assert table[0].name == "sin" and table.best.r2 > 1 - 1e-8
    np.testing.assert_allclose([table[0].a, table[0].c], [2.0, 0.5], rtol=1e-3)
    assert "»" in repr(table) and len(table) == 5
    t2 = sfit.suggest_symbolic(model, 0, 1, 0, lib=["x", "x^2", "sin"], topk=2)
    assert t2.names[0] == "x^2" and len(t2) == 2


def test_fix_symbolic_switches_branches_and_formula_matches_forward():
    model = _spline_model([lambda t: torch.sin(math.pi * t), lambda t: t**2])
    x = model.acts[0]
    r2 = sfit.fix_symbolic(model, 0, 0, 0, "sin")
    assert r2 > 1 - 1e-8
    assert model.layers[0].mask[0, 0] == 0 and model.symbolic[0].mask[0, 0] == 1
    with pytest.raises(ValueError, match="still splines"):
        sform.symbolic_formula(model)
    sfit.fix_symbolic(model, 0, 1, 0, "x^2")
    expr = sform.symbolic_formula(model)[0]
    f = lambdify(expr, sympy.symbols("x1 x2"))
    with torch.no_grad():
        np.testing.assert_allclose(f(x.numpy()), model(x)[:, 0].numpy(), rtol=1e-10, atol=1e-10)
    y = torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2
    snapped = sform.snap_constants(expr, sympy.symbols("x1 x2"), x, y, floor=sform.noise_floor(y.numpy()))
    assert sympy.simplify(snapped.expr - (sympy.sin(sympy.pi * sympy.Symbol("x1")) + sympy.Symbol("x2") ** 2)) == 0


def test_unfix_restores_spline_edge():
    model = _spline_model([lambda t: torch.tanh(t)])
    x = model.acts[0]
    before = model(x).detach()
    sfit.fix_symbolic(model, 0, 0, 0, "tanh")
    sfit.unfix_symbolic(model, 0, 0, 0)
    assert model.layers[0].mask[0, 0] == 1 and not model.symbolic[0].is_active()
    torch.testing.assert_close(model(x).detach(), before)


def test_fix_with_explicit_params_and_no_fit():
    model = KAN(width=[1, 1], grid=5, k=3, seed=0, dtype=torch.float64)
    assert sfit.fix_symbolic(model, 0, 0, 0, "exp", params=(2.0, 0.0, 0.5, 0.1)) is None
    assert sfit.fix_symbolic(model, 0, 0, 0, "sin", fit_params=False) is None
    assert model.symbolic[0].affine[0, 0].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_auto_symbolic_fixes_every_edge():
    model = _spline_model([lambda t: torch.exp(0.7 * t), lambda t: torch.cos(2 * t), lambda t: 0 * t])
    table = sfit.auto_symbolic(model)
    chosen = table.chosen()
    assert chosen[(0, 0, 0)] == "exp" and chosen[(0, 1, 0)] == "cos"
    assert "»" in repr(table)
    assert not any(bool((layer.mask != 0).any()) for layer in model.layers)
    expr = sform.symbolic_formula(model)[0]
    x = model.acts[0]
    np.testing.assert_allclose(lambdify(expr, sympy.symbols("x1:4"))(x.numpy()), model(x)[:, 0].detach().numpy(),
                               rtol=1e-9, atol=1e-9)


def test_auto_symbolic_threshold_keeps_splines():
    model = _spline_model([lambda t: torch.erf(2 * t)])
    table = sfit.auto_symbolic(model, lib=["x", "x^2"], r2_threshold=0.9999)
    assert table[0].status == "kept" and model.layers[0].mask[0, 0] == 1


def test_state_dict_round_trip_keeps_symbolic_edges():
    model = _spline_model([lambda t: torch.sin(3 * t), lambda t: t**3])
    sfit.auto_symbolic(model)
    x = model.acts[0]
    new = KAN(width=[2, 1], grid=40, k=3, seed=5, dtype=torch.float64)
    new.load_state_dict(model.state_dict())
    torch.testing.assert_close(new(x), model(x))
    assert new.symbolic[0].function_names() == model.symbolic[0].function_names()


def test_bad_input_errors():
    model = _spline_model([lambda t: t, lambda t: t**2])
    with pytest.raises(ValueError, match="did you mean 'sin'"):
        sfit.fix_symbolic(model, 0, 0, 0, "sinn")
    with pytest.raises(IndexError, match="i = 5 is out of range"):
        sfit.fix_symbolic(model, 0, 5, 0, "sin")
    with pytest.raises(IndexError, match="l = 3 is out of range"):
        sfit.suggest_symbolic(model, 3, 0, 0)
    with torch.no_grad():
        model.layers[0].mask[0, 1] = 0.0
    with pytest.raises(ValueError, match="pruned"):
        sfit.fix_symbolic(model, 0, 1, 0, "x^2")
    with pytest.raises(ValueError, match="pruned"):
        sfit.suggest_symbolic(model, 0, 1, 0)
    bad = torch.full((10, 2), float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match="NaN or Inf"):
        sfit.suggest_symbolic(model, 0, 0, 0, x=bad)
    with pytest.raises(ValueError, match="topk"):
        sfit.suggest_symbolic(model, 0, 0, 0, topk=0)
    fresh = KAN(width=[2, 1], seed=0)
    with pytest.raises(ValueError, match="model\\(x\\) first"):
        sfit.suggest_symbolic(fresh, 0, 0, 0)


def test_fix_symbolic_warns_about_a_taylor_limit_fit_and_reports_r2_in_the_models_dtype():
    """sin fitted to a small quadratic needs a tiny slope and huge cancelling constants: in float32 the edge then
    evaluates to something else, and the returned r2 must say so (not the float64 fit's 0.998)."""
    ds = create_dataset(lambda x: 0.01 * x**2 - 0.001 * x**3, 1, train_num=200, test_num=100, seed=0)
    model = KAN(width=[1, 1], seed=0)
    model.fit(ds, steps=20, progress=False)
    model(ds["train_input"])
    with pytest.warns(UserWarning, match="only as a Taylor limit"):
        r2 = model.fix_symbolic(0, 0, 0, "sin")
    assert r2 < 0.9
    model.unfix_symbolic(0, 0, 0)
    assert model.fix_symbolic(0, 0, 0, "x^2") > 0.99  # a well-conditioned fit: no warning, r2 as fitted
