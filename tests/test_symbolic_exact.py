"""``exact`` is never raised for a formula that is not symbolically right: a smooth non-library function (erf without
the special library), a random smooth spline, and noisy labels (SRBench's noise, eps * std(y) * N(0, 1))."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch

from kanlens import create_dataset
from kanlens.symbolic.search import symbolic_regression

x1, x2 = sympy.symbols("x1 x2")


def _noisy(ds: dict, eps: float, seed: int = 0) -> dict:
    """SRBench's noise on every label the search sees."""
    g = torch.Generator().manual_seed(seed)
    scale = float(ds["train_label"].double().std())
    out = dict(ds)
    for key in ("train_label", "test_label"):
        noise = torch.randn(ds[key].shape, generator=g, dtype=torch.float64) * eps * scale
        out[key] = (ds[key].double() + noise).to(ds[key].dtype)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_erf_without_the_special_library_is_not_exact(dtype):
    torch.set_num_threads(1)
    ds = create_dataset(lambda x: torch.erf(x[:, [0]]), n_var=1, train_num=500, test_num=500, dtype=dtype, seed=0)
    res = symbolic_regression(ds, time_budget=6)
    assert not res.exact and not res.formula.has(sympy.erf)
    assert res.table[res.table.chosen].test_nmse > 1e-12


def test_a_random_smooth_spline_is_not_exact():
    from scipy.interpolate import CubicSpline

    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    spline = CubicSpline(np.linspace(-1, 1, 8), rng.normal(size=8))
    ds = create_dataset(lambda x: torch.as_tensor(spline(x[:, [0]].double().numpy())), n_var=1, train_num=500,
                        test_num=500, dtype=torch.float32, seed=0)
    res = symbolic_regression(ds, time_budget=6)
    assert not res.exact and res.table[res.table.chosen].test_nmse > 1e-8


@pytest.mark.parametrize("eps", [1e-3, 1e-1])
def test_noisy_labels_never_give_an_exact_flag_and_the_truth_still_wins(eps):
    torch.set_num_threads(1)
    ds = create_dataset(lambda x: x[:, [0]] * torch.sin(x[:, [1]]), n_var=2, ranges=[[-1, 1], [0, 3]], train_num=500,
                        test_num=500, dtype=torch.float64, seed=0)
    res = symbolic_regression(_noisy(ds, eps), time_budget=8)
    assert not res.exact
    # the chosen formula is the truth up to constants within the noise (no over-fitted patch)
    consts = sorted(res.formula.atoms(sympy.Float), key=lambda f: -abs(float(f)))
    snapped = res.formula.xreplace({f: sympy.nsimplify(round(float(f), 1)) for f in consts})
    assert sympy.simplify(snapped - x1 * sympy.sin(x2)) == 0, res.table
