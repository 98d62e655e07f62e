"""ConvPlan: the fast-path choice of KAN convolutions, made once per input signature and kept until the grid changes."""

from __future__ import annotations

import pytest
import torch

from kanlens.layers.conv import KANConv1d, KANConv2d
from kanlens.layers.conv_plan import ConvPlan, choose_kernel


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


@pytest.mark.parametrize(
    ("layer", "shape", "ring", "conv_padding", "kernel", "out_spatial"),
    [
        (KANConv2d(2, 3, 3, padding=1), (2, 2, 7, 6), True, (1, 1), "conv2d", (7, 6)),
        (KANConv2d(2, 3, 3, padding=(2, 0), stride=2), (1, 2, 9, 9), True, (2, 0), "conv2d", (6, 4)),
        (KANConv2d(2, 3, 3), (1, 2, 5, 5), False, (0, 0), "conv2d", (3, 3)),
        (KANConv2d(2, 3, 4, padding="same"), (1, 2, 6, 6), False, (0, 0), "conv2d", (6, 6)),  # unequal sides
        (KANConv2d(2, 3, 3, padding=1, padding_mode="reflect"), (1, 2, 5, 5), False, (0, 0), "conv2d", (5, 5)),
        (KANConv2d(4, 4, 1, groups=4), (1, 4, 3, 3), False, (0, 0), "depthwise", (3, 3)),
        (KANConv2d(4, 4, 1, groups=4, padding=1), (1, 4, 3, 3), True, (1, 1), "conv2d", (5, 5)),
        (KANConv1d(2, 3, 5, padding=2), (2, 2, 11), True, (2,), "conv1d", (11,)),
    ],
)
def test_plan_choices(layer, shape, ring, conv_padding, kernel, out_spatial) -> None:
    x = _x(*shape)
    plan = layer.plan(x)
    assert (plan.ring, plan.conv_padding, plan.kernel, plan.out_spatial) == (ring, conv_padding, kernel, out_spatial)
    assert plan.uniform and plan.pairs == layer.padding_pairs and plan.spatial == tuple(shape[2:])
    assert layer(x).shape[2:] == out_spatial


def test_plan_is_built_once_per_signature_and_rebuilt_after_a_grid_change() -> None:
    layer = KANConv2d(2, 3, 3, padding=1, grid=4)
    x = _x(2, 2, 6, 6)
    first = layer.plan(x)
    y = layer(x)
    assert layer.plan(x) is first and layer.plan(_x(5, 2, 6, 6, seed=1)) is first  # batch size is not part of it
    assert set(first.border) == {True}  # the border memo lives in the plan: x is inside the grid, folded path
    other = layer.plan(_x(1, 2, 8, 5))
    assert other is not first and other.out_spatial == (8, 5)
    assert layer.plan(x.double()) is not first  # dtype is part of the signature
    layer.padding = (2, 2)  # geometry changed after construction: a new plan, as nn.Conv2d would behave
    assert layer.plan(x).conv_padding == (2, 2) and layer(x).shape == (2, 3, 8, 8)
    layer.padding = (1, 1)
    with torch.no_grad():
        layer.grid[0, 3] += 0.3  # no longer uniform: the plan must notice
    plan = layer.plan(x)
    assert plan is not first and not plan.uniform
    assert layer(x).shape == y.shape


def test_plans_are_bounded_and_not_pickled() -> None:
    layer = KANConv1d(1, 2, 3)
    for size in range(3, 3 + 20):
        layer(_x(1, 1, size))
    assert len(layer._grid_memo()["plans"]) <= 8
    state = layer.__getstate__()
    assert "_grid_memo_store" not in state


def test_choose_kernel_rules() -> None:
    assert choose_kernel(2, 4, 4, 4, (1, 1), (1, 1), (0, 0)) == "depthwise"
    assert choose_kernel(2, 4, 4, 4, (1, 1), (2, 1), (0, 0)) == "conv2d"  # strided: an ordinary convolution
    assert choose_kernel(2, 4, 8, 4, (1, 1), (1, 1), (0, 0)) == "conv2d"  # channel multiplier
    assert choose_kernel(1, 4, 4, 4, (1,), (1,), (0,)) == "depthwise"
    assert choose_kernel(1, 4, 4, 1, (3,), (1,), (0,)) == "conv1d"


def test_plan_build_is_a_pure_function_of_the_geometry() -> None:
    kw = dict(pairs=((1, 1), (0, 0)), padding_mode="zeros", uniform=False, in_channels=2, out_channels=2,
              groups=1, kernel_size=(3, 1), stride=(1, 1), dilation=(1, 1))
    a, b = ConvPlan.build((4, 4), **kw), ConvPlan.build((4, 4), **kw)
    assert a == b and a.ring and a.conv_padding == (1, 0) and a.out_spatial == (4, 4)
    assert not ConvPlan.build((4, 4), **{**kw, "padding_mode": "circular"}).ring
