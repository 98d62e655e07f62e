"""The numpy sparsity objective of small float32 stacks (kanlens.layers.small_stack) against autograd, and where
training takes it."""

from __future__ import annotations

import pytest
import torch

from kanlens import KAN, create_dataset
from kanlens.layers import small_stack
from kanlens.layers.small_stack import SmallStack
from kanlens.layers.stack import stack_reference
from kanlens.regularization import l1_entropy

LAMBS = (1e-2, 1.0, 2.0)  # lamb, lamb_l1, lamb_entropy


def _model(width, *, base_fun="silu", seed=0, dtype=torch.float32, mult_arity=2, k=3, grid=5):
    model = KAN(width=width, grid=grid, k=k, seed=seed, base_fun=base_fun, dtype=dtype, mult_arity=mult_arity)
    for p in model.trainable_parameters():
        p.grad = torch.zeros_like(p)
    return model


def _data(model, n=300, scale=1.3, seed=0):
    """Inputs partly outside the initial grid [-1, 1] and a smooth target."""
    g = torch.Generator().manual_seed(seed)
    dt = model.dtype
    x = ((torch.rand(n, model.width_in[0], generator=g, dtype=torch.float64) * 2 - 1) * scale).to(dt)
    y = torch.sin(x.sum(1, keepdim=True) * 2).repeat(1, model.width_in[-1]).to(dt)
    return x, y


def _reference(model, x, y):
    """Objective and gradients through the plain autograd composition."""
    lamb, l1, ent = LAMBS
    cfg, params = model.stack_args()
    out = stack_reference(x, cfg, params)
    reg = sum(l1_entropy(m, l1, ent) for m in out[1:])
    total = ((out[0] - y) ** 2).mean() + lamb * reg
    grads = iter(torch.autograd.grad(total, [p for p in params if p.requires_grad]))
    return total, [next(grads) if p.requires_grad else None for p in params]


def _small(model, x, y):
    cfg, params = model.stack_args()
    need = (False, *(p.requires_grad for p in params))
    small = SmallStack.build(x, y, cfg, params, need)
    assert small is not None
    total, reg, mse, backward = small.objective(*LAMBS)
    backward()
    return total, reg, mse, [p.grad.clone() if p.requires_grad else None for p in params]


def _assert_matches(model, x, y):
    total_ref, grads_ref = _reference(model, x, y)
    total, reg, mse, grads = _small(model, x, y)
    assert total.dtype == torch.float32
    assert float(total) == pytest.approx(float(total_ref.detach()), rel=2e-6)
    assert float(total) == pytest.approx(float(mse) + LAMBS[0] * float(reg), rel=2e-6)
    assert sum(g is not None for g in grads) >= 3 * model.depth
    for g, g_ref in zip(grads, grads_ref):
        if g_ref is None:
            continue
        scale = float(g_ref.abs().max()) + 1e-6
        assert float((g - g_ref).abs().max()) <= 2e-5 * scale, (g, g_ref)


@pytest.mark.parametrize("width", [[2, 5, 1], [3, 4, 3, 2], [1, 1], [2, 3, 3, 1], [17, 16, 1]])
def test_objective_and_gradient_equal_autograd(width):
    """[17, 16, 1]: a first layer of 272 edges takes the penalty's numpy form (over 256 edges)."""
    model = _model(width)
    x, y = _data(model)
    _assert_matches(model, x, y)


@pytest.mark.parametrize(("k", "grid"), [(1, 7), (2, 4), (4, 3)])
def test_other_spline_orders(k, grid):
    """The Horner loops of the value and of the derivative for k = 1 (constant derivative), 2 and 4, on adapted
    grids. Evaluated slightly off the samples the grids were adapted to: those put the outer knots exactly on
    samples, and a k = 1 spline's derivative jumps at every knot, so a rounding difference in a hidden layer's
    input (numpy against torch) may take the other one-sided derivative there (both are subgradients)."""
    model = _model([2, 3, 2, 1], k=k, grid=grid, seed=4)
    x, y = _data(model, seed=4)
    with torch.no_grad():
        model.update_grid(x)
    _assert_matches(model, x * (1 + 1e-3), y)


@pytest.mark.parametrize(("width", "arity"), [([2, [2, 1], 1], 2), ([2, [3, 2], [1, 1]], 3)])
def test_multiplication_nodes(width, arity):
    model = _model(width, mult_arity=arity, seed=3)
    with torch.no_grad():  # subnode affine maps away from their initial identity
        for l in range(model.depth):
            model.subnode_scale[l].add_(0.1 * torch.arange(model.subnode_scale[l].numel()))
            model.subnode_bias[l].add_(0.05)
    x, y = _data(model, seed=3)
    _assert_matches(model, x, y)


@pytest.mark.parametrize("base_fun", ["tanh", "identity", "zero"])
def test_other_base_functions(base_fun):
    model = _model([2, 4, 2], base_fun=base_fun, seed=1)
    x, y = _data(model, seed=1)
    _assert_matches(model, x, y)


def test_grid_updated_and_pruned_layers():
    """Adaptive (non-uniform) grids after update_grid, and masked edges in both layers."""
    model = _model([3, 4, 2], seed=2)
    x, _ = _data(model, scale=1.0, seed=2)
    with torch.no_grad():
        model.update_grid(x)
        model.layers[0].mask[1, 2] = 0.0
        model.layers[0].mask[3, 0] = 0.0
        model.layers[1].mask[0, 1] = 0.0
    x_out, y_out = _data(model, scale=1.6, seed=3)  # partly outside the adapted grids
    _assert_matches(model, x_out, y_out)
    grads = _small(model, x_out, y_out)[3]
    # a masked edge gets no gradient on its scales
    assert float(grads[1][1, 2]) == 0.0 and float(grads[2][1, 2]) == 0.0


def test_only_small_float32_cpu_stacks_take_it():
    """float64 (pinned trajectories), gelu and gradient-carrying inputs keep the torch kernel."""
    cases = [(_model([2, 3, 1], dtype=torch.float64), False), (_model([2, [2, 1], 1]), True),
             (_model([2, 3, 1], base_fun="gelu"), False), (_model([2, 3, 1]), True)]
    for model, ok in cases:
        x, y = _data(model)
        cfg, params = model.stack_args()
        need = (False, *(p.requires_grad for p in params))
        assert (SmallStack.build(x, y, cfg, params, need) is not None) is ok
        assert SmallStack.build(x, y, cfg, params, (True, *need[1:])) is None


def _count_objective_calls(monkeypatch) -> dict:
    calls = {"n": 0}
    original = SmallStack.objective

    def counted(self, *args):
        calls["n"] += 1
        return original(self, *args)

    monkeypatch.setattr(SmallStack, "objective", counted)
    return calls


def test_fit_float32_uses_it_and_float64_does_not(monkeypatch):
    calls = _count_objective_calls(monkeypatch)
    ds = create_dataset(lambda x: torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2, n_var=2, train_num=200, seed=0)
    model = KAN(width=[2, 3, 1], grid=5, k=3, seed=0, dtype=torch.float64)
    model.fit({k: v.double() for k, v in ds.items()}, steps=2, lamb=1e-3, progress=False)
    assert calls["n"] == 0
    model = KAN(width=[2, 3, 1], grid=5, k=3, seed=0)
    h = model.fit(ds, steps=2, lamb=1e-3, progress=False)
    assert calls["n"] > 10
    assert h["train_loss"][-1] < h["train_loss"][0]


def test_fit_float32_reaches_the_torch_kernels_quality(monkeypatch):
    """The same fit with the numpy objective and with the torch kernel: comparable test RMSE (the rounding
    differs, so the trajectories do too)."""
    ds = create_dataset(lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2), n_var=2,
                        train_num=500, seed=0)
    rmse = {}
    for name in ("numpy", "torch"):
        if name == "torch":
            monkeypatch.setattr(small_stack, "SMALL_DTYPES", set())
        model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0)
        rmse[name] = model.fit(ds, steps=15, lamb=1e-3, progress=False)["test_loss"][-1]
    assert rmse["numpy"] < 0.05 and rmse["torch"] < 0.05
    assert rmse["numpy"] < 1.5 * rmse["torch"]


def test_wide_hidden_layers_keep_the_torch_kernel():
    """Where the torch kernel takes dense bases (a hidden layer with many outputs), it is the faster one."""
    cases = (([3, 10, 3], True), ([10, 10, 10], False), ([4, 6, 4], True), ([4, 6, 6], False), ([4, 6, 5, 1], False))
    for width, ok in cases:
        model = _model(width)
        x, y = _data(model, n=100)
        cfg, params = model.stack_args()
        need = (False, *(p.requires_grad for p in params))
        assert (SmallStack.build(x, y, cfg, params, need) is not None) is ok, width
