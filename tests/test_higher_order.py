"""Second derivatives (``create_graph=True``) through every hand-written backward: KAN paths and KAN convolutions.

A PDE residual (``u_xx``), a gradient penalty or a Hessian-vector product differentiates a gradient. The nodes
with hand-written backward passes (the spline basis, the fused edge and stack nodes, the conv expansion) must then
give the true second derivative, not one that treats their saved intermediates as constants.
"""

from __future__ import annotations

import pytest
import torch

from kanlens import KAN, KANConv1d, KANConv2d


def _kan(seed: int = 0) -> KAN:
    torch.manual_seed(seed)
    return KAN(width=[2, 3, 1], grid=5, k=3, seed=seed).double()


def _x(n: int = 8, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 2, generator=gen, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()


@pytest.mark.parametrize("path", ["forward", "fused_stack", "edge_layer"])
def test_kan_gradgradcheck(path: str) -> None:
    model = _kan()
    if path == "forward":
        fn = model
    elif path == "fused_stack":
        assert model.stack_args() is not None  # the one-node stack path is what runs here

        def fn(a):
            out, mags = model.forward_with_magnitudes(a)
            return out.sum() + sum(m.sum() for m in mags)  # the magnitudes' second derivatives too
    else:
        layer = model.layers[0]

        def fn(a):
            y, mag = layer.forward_with_magnitude(a)
            return y.sum(1) + mag.sum()

    assert torch.autograd.gradgradcheck(fn, (_x(),))


def test_kan_second_derivative_matches_finite_differences() -> None:
    model = _kan(3)
    x0 = torch.tensor([[0.31, -0.27]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(model(x0).sum(), x0, create_graph=True)
    (uxx,) = torch.autograd.grad(g[0, 0], x0)
    h = 1e-4

    def u(a: float) -> float:
        with torch.no_grad():
            return model(torch.tensor([[a, -0.27]], dtype=torch.float64)).item()

    fd = (u(0.31 + h) - 2 * u(0.31) + u(0.31 - h)) / h**2
    assert abs(uxx[0, 0].item() - fd) < 1e-6 * max(1.0, abs(fd))
    assert abs(fd) > 1e-3  # a real curvature, not a trivially zero one


def test_pde_style_loss_trains_the_spline_curvature() -> None:
    """The parameter gradient of a loss on ``u_xx`` equals the one from finite differences of that loss."""
    model = _kan(5)
    x = _x(16, seed=7)

    def loss_of_model() -> torch.Tensor:
        (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        (gxx,) = torch.autograd.grad(g[:, 0].sum(), x, create_graph=True)
        return (gxx[:, 0] - 1.0).square().mean()

    coef = model.layers[0].coef
    model.zero_grad()
    loss_of_model().backward()
    analytic = coef.grad[1, 0, 4].item()
    eps = 1e-6
    with torch.no_grad():
        coef[1, 0, 4] += eps
    up = loss_of_model().item()
    with torch.no_grad():
        coef[1, 0, 4] -= 2 * eps
    down = loss_of_model().item()
    with torch.no_grad():
        coef[1, 0, 4] += eps
    fd = (up - down) / (2 * eps)
    assert abs(analytic - fd) < 1e-6 * max(1.0, abs(fd))
    assert abs(fd) > 1e-4


@pytest.mark.parametrize(
    "kwargs",
    [dict(padding=1), dict(padding=1, padding_mode="reflect"), dict(stride=2, groups=2), dict(k=1, grid=3)],
)
def test_conv2d_gradgradcheck(kwargs: dict) -> None:
    torch.manual_seed(0)
    layer = KANConv2d(2, 2, 3, **kwargs).double()
    gen = torch.Generator().manual_seed(2)
    x = (torch.rand(2, 2, 5, 5, generator=gen, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    assert torch.autograd.gradgradcheck(layer, (x,))


def test_conv_depthwise_and_1d_gradgradcheck_also_outside_the_grid() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    act = KANConv2d(3, 3, 1, groups=3).double()
    x = (torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    assert torch.autograd.gradgradcheck(act, (x,))
    conv1 = KANConv1d(2, 3, 3, padding=1).double()
    x1 = (torch.rand(2, 2, 7, generator=gen, dtype=torch.float64) * 3 - 1.5).requires_grad_()  # past (-1, 1)
    assert torch.autograd.gradgradcheck(conv1, (x1,))
