"""The one-call pipeline: data -> KAN -> formula, with exactness decided on data, not on edge fits."""

from __future__ import annotations

import math

import pytest
import sympy
import torch

from kanlens import create_dataset
from kanlens.symbolic.library import default_library
from kanlens.symbolic.pipeline import symbolic_regression

x1, x2 = sympy.symbols("x1 x2")


def _same(a: sympy.Expr, b: sympy.Expr) -> bool:
    return sympy.simplify(a - b) == 0


def test_pipeline_recovers_1d_formula_fast():
    torch.set_num_threads(1)
    ds = create_dataset(lambda x: 0.5 * torch.sin(2 * x[:, [0]]) + 1, n_var=1, train_num=300, test_num=300,
                        dtype=torch.float64)
    res = symbolic_regression(ds, [1, 1], steps=(5, 10, 10), prune=False, refine_grid=(20,),
                              lib=["x", "x^2", "sin", "exp", "tanh"])
    assert res.exact and _same(res.formula, sympy.sin(2 * x1) / 2 + 1)
    assert "»" in repr(res.table) and res.timings["total"] > 0


def test_pipeline_does_not_claim_erf_as_tanh():
    torch.set_num_threads(1)
    ds = create_dataset(lambda x: torch.erf(2 * x[:, [0]]), n_var=1, train_num=300, test_num=300,
                        dtype=torch.float64)
    res = symbolic_regression(ds, [1, 1], steps=(5, 10, 10), prune=False, refine_grid=(20,),
                              lib=["x", "x^2", "sin", "tanh", "arctan"])
    assert not res.exact
    assert res.table[res.table.chosen].test_nmse > 1e-8
    res_sp = symbolic_regression(ds, [1, 1], steps=(5, 10, 10), prune=False, refine_grid=(20,),
                                 lib=default_library().subset(["x", "tanh"]).with_special())
    assert res_sp.exact and _same(res_sp.formula, sympy.erf(2 * x1))


def test_log_target_recovers_a_product_a_one_layer_kan_cannot_sum():
    torch.set_num_threads(1)
    ds = create_dataset(lambda x: 2 * x[:, [0]] * x[:, [1]] ** 2, n_var=2, ranges=[1, 2], train_num=300,
                        test_num=300, dtype=torch.float64)
    res = symbolic_regression(ds, [2, 1], steps=(5, 10, 10), prune=False, refine_grid=(20,),
                              lib=["x", "x^2", "sin", "exp", "log"])
    assert res.target_transform == "log"
    assert res.exact and _same(res.formula, 2 * x1 * x2**2), res.table
    assert res.table[res.table.chosen].source.startswith("log: ")
    only_y = symbolic_regression(ds, [2, 1], steps=(5, 10, 10), prune=False, refine_grid=(20,),
                                 lib=["x", "x^2", "sin", "exp", "log"], target_transforms=("identity",))
    assert only_y.target_transform == "identity" and not only_y.exact


def test_target_transforms_are_checked():
    ds = create_dataset(lambda x: x[:, [0]], n_var=1, train_num=20, test_num=20)
    with pytest.raises(ValueError, match=r"unknown target transform.*'sqrt'"):
        symbolic_regression(ds, [1, 1], target_transforms=("identity", "sqrt"))
    with pytest.raises(ValueError, match="at least one"):
        symbolic_regression(ds, [1, 1], target_transforms=())


def test_pipeline_bad_input():
    ds = create_dataset(lambda x: x[:, [0]], n_var=1, train_num=20, test_num=20)
    with pytest.raises(ValueError, match="width"):
        symbolic_regression(ds)
    bad = dict(ds, train_label=ds["train_label"].clone().fill_(math.nan))
    with pytest.raises(ValueError, match="NaN or Inf"):
        symbolic_regression(bad, [1, 1])
    with pytest.raises(ValueError, match="missing 'test_label'"):
        symbolic_regression({k: v for k, v in ds.items() if k != "test_label"}, [1, 1])
    with pytest.raises(ValueError, match="did you mean 'sin'"):
        symbolic_regression(ds, [1, 1], lib=["sinn"])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pipeline_recovers_kan_toy_exactly(dtype):
    torch.set_num_threads(1)
    f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)  # noqa: E731
    ds = create_dataset(f, n_var=2, dtype=dtype)
    res = symbolic_regression(ds, [2, 5, 1], dtype=dtype)
    assert res.exact
    assert res.formula == sympy.exp(x2**2 + sympy.sin(sympy.pi * x1))
