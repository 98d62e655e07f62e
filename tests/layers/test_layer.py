"""KANLayer: fast path equals the per-edge sum, grid updates and refinement preserve the function."""

import pytest
import torch

from kanlens import KANLayer, run_with_cache, splines


def naive_layer(layer: KANLayer, x: torch.Tensor) -> torch.Tensor:
    """Reference: loop over every edge and evaluate phi_ji(x_i) from the spline definition."""
    from scipy.interpolate import BSpline

    out = torch.zeros(x.shape[0], layer.out_dim, dtype=torch.float64)
    xs = x.double()
    for j in range(layer.out_dim):
        for i in range(layer.in_dim):
            spl = BSpline(layer.grid[i].double().numpy(), layer.coef[j, i].double().detach().numpy(), layer.k,
                          extrapolate=False)
            s = torch.from_numpy(spl(xs[:, i].numpy())).nan_to_num(0.0)
            phi = layer.scale_base[j, i].double() * torch.nn.functional.silu(xs[:, i]) + layer.scale_sp[j, i] * s
            out[:, j] += layer.mask[j, i].double() * phi.detach()
    return out


@pytest.mark.parametrize(("in_dim", "out_dim", "grid", "k"), [(3, 4, 5, 3), (1, 1, 1, 1), (5, 2, 8, 2)])
def test_fast_path_equals_naive_edges(in_dim, out_dim, grid, k):
    gen = torch.Generator().manual_seed(in_dim)
    layer = KANLayer(in_dim, out_dim, grid, k, generator=gen, noise_scale=2.0)
    layer.mask[0, 0] = 0.0
    x = torch.rand(64, in_dim, generator=gen) * 2 - 1
    fast = layer(x)
    torch.testing.assert_close(fast, layer.forward_edges(x).sum(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.double(), naive_layer(layer, x), atol=1e-5, rtol=0)


def test_fast_path_does_not_build_edge_tensor(monkeypatch):
    layer = KANLayer(3, 4)
    monkeypatch.setattr(KANLayer, "forward_edges", lambda *a: pytest.fail("per-edge path used on the fast path"))
    assert layer(torch.zeros(5, 3)).shape == (5, 4)


def test_hooked_layer_exposes_edges_and_same_output():
    layer = KANLayer(2, 3, generator=torch.Generator().manual_seed(0))
    x = torch.rand(10, 2)
    out, cache = run_with_cache(layer, x, names_filter="hook_edges")
    assert cache["hook_edges"].shape == (10, 3, 2)
    torch.testing.assert_close(out, layer(x), atol=1e-6, rtol=0)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / (b.max() - b.min()))


def _smooth_layer(grid: int, dtype: torch.dtype) -> KANLayer:
    """A 2->3 layer whose splines are least-squares fits of smooth functions."""
    layer = KANLayer(2, 3, grid, 3, dtype=dtype)
    t = torch.linspace(-1, 1, 400, dtype=dtype)[:, None].expand(-1, 2)
    fns = [torch.sin(2 * t), t**2, torch.exp(t)]
    y = torch.stack([f for f in fns], dim=1)  # (batch, out=3, in=2)
    with torch.no_grad():
        layer.coef.copy_(splines.curve2coef(t, y, layer.grid, 3))
    return layer


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / (b.max() - b.min()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_update_grid_preserves_function_on_samples(dtype):
    gen = torch.Generator().manual_seed(0)
    layer = _smooth_layer(10, dtype)
    x = (torch.randn(1000, 2, generator=gen, dtype=dtype) * 0.35).clamp(-1, 1)
    with torch.no_grad():
        before = layer(x)
        layer.update_grid(x)
        after = layer(x)
    assert layer.grid[:, 3].sub(x.min(0).values).abs().max() < 1e-5
    assert _rel_err(after, before) < 1e-3


@pytest.mark.parametrize("use_samples", [False, True])
def test_refine_preserves_function(use_samples):
    gen = torch.Generator().manual_seed(1)
    layer = _smooth_layer(5, torch.float64)
    x = torch.rand(300, 2, generator=gen, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        fine = layer.refine(20, x if use_samples else None)
        assert fine.num == 20 and fine.grid.shape == (2, 27) and fine.coef.shape == (3, 2, 23)
        assert _rel_err(fine(x), layer(x)) < 1e-3


def test_subset_keeps_selected_edges():
    layer = KANLayer(3, 4, generator=torch.Generator().manual_seed(2))
    sub = layer.subset([0, 2], [1, 3])
    x = torch.rand(8, 3)
    torch.testing.assert_close(sub.forward_edges(x[:, [0, 2]]), layer.forward_edges(x)[:, [1, 3]][:, :, [0, 2]])


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"in_dim": 0, "out_dim": 2}, ValueError, "in_dim"),
        ({"in_dim": 2, "out_dim": 2.5}, TypeError, "out_dim"),
        ({"in_dim": 2, "out_dim": 2, "grid": 0}, ValueError, "grid"),
        ({"in_dim": 2, "out_dim": 2, "k": 0}, ValueError, "k must"),
        ({"in_dim": 2, "out_dim": 2, "base_fun": "slu"}, ValueError, "did you mean 'silu'"),
        ({"in_dim": 2, "out_dim": 2, "grid_range": (1, -1)}, ValueError, "grid_range"),
    ],
)
def test_layer_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        KANLayer(**kwargs)


@pytest.mark.parametrize("base_fun", ["silu", "identity", "zero", "tanh", "gelu"])
# (2, 9, 3, 3) is wide enough for the dense-basis path of a non-constant input, the others use spline polynomials
@pytest.mark.parametrize(("in_dim", "out_dim", "grid", "k"), [(3, 4, 5, 3), (1, 1, 1, 1), (2, 3, 4, 2), (2, 9, 3, 3)])
def test_forward_with_magnitude_matches_edges_and_gradcheck(base_fun, in_dim, out_dim, grid, k):
    """The fused (output, mean |phi|) node of the sparsity path: same values and gradients as the per-edge
    composition, and an exact hand-written backward (float64 gradcheck, inputs inside and outside the grid)."""
    gen = torch.Generator().manual_seed(in_dim * 10 + k)
    layer = KANLayer(in_dim, out_dim, grid, k, base_fun=base_fun, noise_scale=2.0, generator=gen, dtype=torch.float64)
    layer.mask[0, 0] = 0.0
    x = (torch.rand(40, in_dim, generator=gen, dtype=torch.float64) * 2.6 - 1.3).requires_grad_()
    params = [x, layer.coef, layer.scale_base, layer.scale_sp]
    y, mag = layer.forward_with_magnitude(x)
    edges = layer.forward_edges(x)
    y_ref, mag_ref = edges.sum(-1), edges.abs().mean(0)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(mag, mag_ref)
    wy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    wm = torch.randn(mag.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((y * wy).sum() + (mag * wm).sum(), params)
    grads_ref = torch.autograd.grad((y_ref * wy).sum() + (mag_ref * wm).sum(), params)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref)

    from kanlens.layers.spline import _EdgeMagnitude

    def fused(x, coef, sb, sp):
        return _EdgeMagnitude.apply(x, coef, sb, sp, layer.mask, layer.grid, k, base_fun)

    leaves = [p.detach().clone().requires_grad_() for p in params]
    assert torch.autograd.gradcheck(fused, leaves)
    # with a constant input (the data layer): the basis comes from the cache and no input gradient is formed
    leaves[0].requires_grad_(False)
    assert torch.autograd.gradcheck(fused, leaves)


def test_forward_with_magnitude_falls_back_when_edges_are_hooked():
    layer = KANLayer(2, 3)
    x = torch.rand(8, 2)
    seen = []
    layer.hook_edges.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    y, mag = layer.forward_with_magnitude(x)
    assert seen == [(8, 3, 2)] and y.shape == (8, 3) and mag.shape == (3, 2)
