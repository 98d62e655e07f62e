"""The dense layer kernel (kanlens.layers.dense): equal to the plain composition to float rounding, exact gradients
(gradcheck, gradgradcheck) on uniform and adaptive grids, inputs inside, outside and on the grid's edges."""

import pytest
import torch

from kanlens import KANLayer
from kanlens.layers import dense
from kanlens.layers.dense import _DenseLayer, dense_forward, dense_reference, uniform_knots


def _layer(in_dim, out_dim, grid, k, base_fun, dtype, adaptive, seed=0):
    gen = torch.Generator().manual_seed(seed)
    layer = KANLayer(in_dim, out_dim, grid, k, base_fun=base_fun, noise_scale=2.0, generator=gen, dtype=dtype)
    if adaptive:
        layer.update_grid(torch.randn(300, in_dim, generator=gen, dtype=dtype) * 0.6)
    with torch.no_grad():
        layer.mask[0, 0] = 0.0
    return layer


def _inputs(n, in_dim, dtype, seed=1):
    x = torch.rand(n, in_dim, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 3.0 - 1.5
    x[0, :] = -1.0  # the first knot of the default grid range's interior ...
    x[1, :] = 1.0  # ... and its last
    return x


def _args(layer, mask=True):
    return (layer.coef, layer.scale_base, layer.scale_sp, layer.mask if mask else None, layer.grid, layer.k,
            layer.base_fun_name)


CASES = [(100, 7, 5, 3, "silu", False), (3, 4, 5, 3, "silu", True), (1, 1, 1, 1, "tanh", False),
         (5, 2, 8, 2, "gelu", True), (4, 3, 7, 1, "identity", True), (2, 3, 4, 2, "zero", False)]


@pytest.mark.parametrize(("in_dim", "out_dim", "grid", "k", "base_fun", "adaptive"), CASES)
@pytest.mark.parametrize("x_grad", [False, True])
def test_fused_equals_composition_in_float32(in_dim, out_dim, grid, k, base_fun, adaptive, x_grad):
    """Output and every gradient within 1e-6 (relative to the largest entry) of the plain autograd composition."""
    layer = _layer(in_dim, out_dim, grid, k, base_fun, torch.float32, adaptive)
    assert (uniform_knots(layer.grid, k) is None) == adaptive
    x = _inputs(256, in_dim, torch.float32).requires_grad_(x_grad)
    wrt = [layer.coef, layer.scale_base, layer.scale_sp] + ([x] if x_grad else [])
    y = dense_forward(x, *_args(layer))
    y_ref = dense_reference(x, *_args(layer))
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad((y * w).sum(), wrt)
    grads_ref = torch.autograd.grad((y_ref * w).sum(), wrt)
    for got, ref in zip((y, *grads), (y_ref, *grads_ref)):
        scale = float(ref.detach().abs().max()) or 1.0
        assert float((got - ref).detach().abs().max()) <= 1e-6 * scale


@pytest.mark.parametrize(("in_dim", "out_dim", "grid", "k", "base_fun", "adaptive"), CASES[1:])
def test_fused_gradcheck_and_gradgradcheck(in_dim, out_dim, grid, k, base_fun, adaptive):
    """The hand-written backward is exact (float64 gradcheck, with and without the input's gradient), and second
    derivatives go through the composition (gradgradcheck)."""
    layer = _layer(in_dim, out_dim, grid, k, base_fun, torch.float64, adaptive)
    x = _inputs(26, in_dim, torch.float64)[2:]  # off the knots: a spline's top derivative jumps there
    mask, g, kk, name = layer.mask, layer.grid, layer.k, layer.base_fun_name

    def fused(x, coef, sb, sp):
        return _DenseLayer.apply(x, coef, sb, sp, mask, g, kk, name)

    leaves = [t.detach().clone().requires_grad_() for t in (x, layer.coef, layer.scale_base, layer.scale_sp)]
    assert torch.autograd.gradcheck(fused, leaves)
    assert torch.autograd.gradgradcheck(fused, leaves)
    leaves[0].requires_grad_(False)  # the data layer: cached features, no input gradient
    assert torch.autograd.gradcheck(fused, leaves)


def test_float64_keeps_the_composition_bit_for_bit():
    layer = _layer(3, 4, 5, 3, "silu", torch.float64, False)
    x = _inputs(50, 3, torch.float64)
    assert torch.float64 not in dense.FUSED_DTYPES
    assert torch.equal(layer(x), dense_reference(x, *_args(layer)))


def test_outside_and_nan_inputs():
    """Points outside the extended grid get only the base branch; a NaN input gives NaN in its row only."""
    layer = _layer(2, 3, 5, 3, "silu", torch.float32, False)
    x = torch.tensor([[5.0, -7.0], [0.3, float("nan")], [0.1, 0.2]])
    y = layer(x)
    base = torch.nn.functional.silu(x[0]) @ (layer.scale_base * layer.mask).T
    torch.testing.assert_close(y[0], base.detach(), rtol=1e-6, atol=1e-7)
    assert torch.isnan(y[1]).all() and torch.isfinite(y[2]).all()
    torch.testing.assert_close(y[2], dense_reference(x[2:], *_args(layer))[0].detach(), rtol=1e-6, atol=1e-7)


def test_cached_features_follow_in_place_edits():
    """The features of a constant input are cached, and rebuilt when it (or the grid) is edited in place."""
    layer = _layer(3, 2, 5, 3, "silu", torch.float32, False)
    x = _inputs(40, 3, torch.float32)
    first = layer(x).detach()
    with torch.no_grad():
        x.mul_(0.5)
    torch.testing.assert_close(layer(x), dense_reference(x, *_args(layer)), rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        layer.grid.mul_(2.0)
    torch.testing.assert_close(layer(x), dense_reference(x, *_args(layer)), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(first, layer(x))


def test_uniform_knots():
    grid = torch.linspace(-1, 1, 12).expand(3, -1).contiguous()
    t0h, inv_h = uniform_knots(grid, 3)
    torch.testing.assert_close(inv_h, torch.full((3, 1), 11 / 2.0))
    torch.testing.assert_close(t0h, torch.full((3, 1), -11 / 2.0))
    bent = grid.clone()
    bent[1, 5] += 1e-4
    assert uniform_knots(bent, 3) is None


def test_second_backward_with_retain_graph():
    """The backward writes the feature gradients into the feature buffer; a second backward rebuilds it."""
    layer = _layer(4, 3, 5, 3, "silu", torch.float32, False)
    x = _inputs(30, 4, torch.float32).requires_grad_()
    y = layer(x).square().sum()
    first = torch.autograd.grad(y, [x, layer.coef], retain_graph=True)
    second = torch.autograd.grad(y, [x, layer.coef])
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_composition_arithmetic_context():
    """Inside composition_arithmetic() (used by KAN.update_grid) float32 layers evaluate the plain composition,
    bit for bit; outside, the fused kernel (equal to rounding)."""
    layer = _layer(6, 5, 5, 3, "silu", torch.float32, False)
    x = _inputs(64, 6, torch.float32)
    ref = dense_reference(x, *_args(layer))
    with dense.composition_arithmetic():
        assert torch.equal(layer(x), ref)
    fused = layer(x)
    torch.testing.assert_close(fused, ref, rtol=1e-6, atol=1e-6)


def test_spent_buffer_reuse_gives_fresh_results():
    """The next forward reuses (and zeroes) the feature buffer a backward spent: results stay those of the
    composition, step after step, with inputs that fall into different knot intervals."""
    layer = _layer(5, 4, 5, 3, "silu", torch.float32, False)
    for seed in range(3):
        x = (_inputs(40, 5, torch.float32, seed=seed) * (1 + seed)).requires_grad_()
        y = layer(x)
        g = torch.autograd.grad(y.square().sum(), x)[0]
        x_ref = x.detach().clone().requires_grad_()
        y_ref = dense_reference(x_ref, *_args(layer))
        g_ref = torch.autograd.grad(y_ref.square().sum(), x_ref)[0]
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5)
