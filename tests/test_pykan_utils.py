"""kan.utils / kan.spline / kan.MLP / kan.LBFGS names on kanlens, with pykan 0.2.8 reference numbers.

Reference values were printed by pykan 0.2.8 on the same inputs (``benchmarks/pykan_reference.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch

from kanlens import (
    KAN,
    LBFGS,
    MLP,
    SYMBOLIC_LIB,
    B_batch,
    add_symbolic,
    augment_input,
    batch_hessian,
    batch_jacobian,
    create_dataset,
    create_dataset_from_data,
    extend_grid,
    get_derivative,
    model2param,
)

# pykan 0.2.8: extend_grid(linspace(-1, 1, 5)[None].repeat(2, 1), k_extend=3)[0]
REF_EXT = [-2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
# pykan 0.2.8: B_batch(xs, that grid, k=3)[:, 0] and B_batch(xs, grid, k=0)[:, 1]
REF_BB3 = [[0.08533333333333334, 0.6306666666666667, 0.2826666666666666, 0.0013333333333333324, 0.0, 0.0, 0.0],
           [0.0, 0.0, 0.08533333333333334, 0.6306666666666667, 0.2826666666666667, 0.0013333333333333335, 0.0],
           [0.0, 0.0, 0.0, 0.12149999999999997, 0.6571666666666667, 0.22116666666666673, 0.0001666666666666671]]
REF_BB0_ONES = [5, 6, 4]  # the one nonzero basis of input 1 per sample


def test_extend_grid_and_b_batch_as_pykan():
    grid = torch.linspace(-1, 1, 5, dtype=torch.float64)[None].repeat(2, 1)
    ge = extend_grid(grid, k_extend=3)
    assert ge[0].tolist() == pytest.approx(REF_EXT, abs=1e-12)
    xs = torch.tensor([[-0.9, 0.3], [0.1, 0.77], [0.55, -0.2]], dtype=torch.float64)
    torch.testing.assert_close(B_batch(xs, ge, k=3)[:, 0], torch.tensor(REF_BB3, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    b0 = B_batch(xs, ge, k=0)[:, 1]
    assert b0.sum(1).tolist() == [1.0, 1.0, 1.0] and b0.argmax(1).tolist() == REF_BB0_ONES
    assert extend_grid(grid, k_extend=np.int64(0)).shape == grid.shape


def test_create_dataset_from_data():
    x = torch.linspace(0, 1, 50)[:, None].repeat(1, 2)
    y = x.sum(1, keepdim=True)
    ds = create_dataset_from_data(x, y, train_ratio=0.8)
    assert ds["train_input"].shape == (40, 2) and ds["test_input"].shape == (10, 2)
    torch.testing.assert_close(ds["train_input"].sum(1, keepdim=True), ds["train_label"])
    both = torch.cat([ds["train_input"][:, 0], ds["test_input"][:, 0]]).sort().values
    torch.testing.assert_close(both, x[:, 0])  # a partition of the rows
    model = KAN(width=[2, 1], seed=0)
    h = model.fit(ds, steps=2, progress=False)
    assert h["test_loss"][-1] < 0.5
    with pytest.raises(ValueError, match="train_ratio"):
        create_dataset_from_data(x, y, train_ratio=1.5)


def test_augment_input():
    x1, x2 = sympy.symbols("x_1 x_2")
    ds = create_dataset(lambda x: x[:, [0]] * x[:, [1]], n_var=2, train_num=20, test_num=10, seed=0)
    x = ds["train_input"].clone()
    out = augment_input([x1, x2], [x1 * x2, x1 - x2], x)
    assert out.shape == (20, 4)
    torch.testing.assert_close(out[:, 0], x[:, 0] * x[:, 1])
    torch.testing.assert_close(out[:, 1], x[:, 0] - x[:, 1])
    torch.testing.assert_close(out[:, 2:], x)
    augment_input([x1, x2], [x1 * x2], ds)
    assert ds["train_input"].shape == (20, 3) and ds["test_input"].shape == (10, 3)


def test_add_symbolic_reaches_new_models():
    assert "sin" in SYMBOLIC_LIB and SYMBOLIC_LIB["sin"][2] == 2
    add_symbolic("J0", torch.special.bessel_j0, c=1)
    try:
        model = KAN(width=[1, 1], seed=0)
        x = torch.linspace(-1, 1, 50)[:, None]
        model(x)
        model.fix_symbolic(0, 0, 0, "J0", fit_params=False)
        assert "J0" in SYMBOLIC_LIB
        torch.testing.assert_close(model(x)[:, 0], torch.special.bessel_j0(x[:, 0]), atol=1e-6, rtol=0)
        assert str(model.symbolic_formula()[0][0]) == "J0(x_1)"
    finally:
        from kanlens.symbolic import library

        library._ADDED.pop("J0", None)


def test_get_derivative_matches_autograd():
    model = KAN(width=[1, 1], grid=3, k=3, seed=0, dtype=torch.float64)
    x = torch.linspace(-1, 1, 20, dtype=torch.float64)[:, None]
    y = torch.sin(x)
    p = model2param(model)
    jac = get_derivative(model, x, y, derivative="jacobian")
    hess = get_derivative(model, x, y, derivative="hessian")
    assert jac.shape == (1, p.numel()) and hess.shape == (1, p.numel(), p.numel())
    loss = torch.mean((model(x) - y) ** 2)
    with torch.no_grad():
        for q in model.parameters():
            q.requires_grad_(True)  # the derivative in every parameter, frozen ones too (as get_derivative)
    loss = torch.mean((model(x) - y) ** 2)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    flat = torch.cat([(torch.zeros_like(q) if g is None else g).reshape(-1)
                      for q, g in zip(model.parameters(), grads)])
    torch.testing.assert_close(jac[0], flat, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(hess[0], hess[0].T, atol=1e-10, rtol=0)
    reg = get_derivative(model, x, y, derivative="jacobian", loss_mode="reg")
    assert reg.shape == (1, p.numel()) and float(reg.abs().sum()) > 0


def test_mlp_and_lbfgs():
    ds = create_dataset(lambda x: x[:, [0]] ** 2 + x[:, [1]], n_var=2, train_num=200, test_num=100, seed=0)
    model = MLP(width=[2, 8, 1], seed=0)
    res = model.fit(ds, opt="LBFGS", steps=20, lamb=0.0)
    assert res["test_loss"][-1].item() < 0.05
    model.attribute()
    assert model.node_scores[0].shape == (2,) and float(model.node_scores[0].min()) > 0
    y = model(ds["test_input"]).detach()
    cost = float(model.connection_cost)
    model.auto_swap()
    torch.testing.assert_close(model(ds["test_input"]), y, atol=1e-6, rtol=0)
    assert float(model.connection_cost) <= cost + 1e-6
    fig = model.plot(metric="fa")
    assert fig.axes
    p = torch.nn.Parameter(torch.tensor([1.5, -0.5]))
    opt = LBFGS([p], lr=1)

    def closure():
        opt.zero_grad()
        loss = ((p - torch.tensor([0.3, 0.2])) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(p.detach(), torch.tensor([0.3, 0.2]), atol=1e-6, rtol=0)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_batch_jacobian_and_hessian():
    x = torch.tensor([[0.5, -1.0], [2.0, 3.0]], dtype=torch.float64)

    def f(z):
        return torch.cat([z[:, [0]] ** 2 * z[:, [1]], z[:, [0]] + z[:, [1]]], 1)

    jac = batch_jacobian(f, x)  # first output: (2 x0 x1, x0^2)
    torch.testing.assert_close(jac, torch.tensor([[-1.0, 0.25], [12.0, 4.0]], dtype=torch.float64))
    assert batch_jacobian(f, x, mode="vector").shape == (2, 2, 2)
    hess = batch_hessian(f, x)  # [[2 x1, 2 x0], [2 x0, 0]]
    torch.testing.assert_close(hess, torch.tensor([[[-2.0, 1.0], [1.0, 0.0]], [[6.0, 4.0], [4.0, 0.0]]],
                                                  dtype=torch.float64))
