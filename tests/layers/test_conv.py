"""KANConv1d / KANConv2d: fast path vs a naive per-element loop, shapes vs nn.Conv, grids, errors, state."""

from __future__ import annotations

import copy
import io
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kanlens import cardinal, splines
from kanlens.layers.conv import KANConv1d, KANConv2d, cardinal_basis

# ----------------------------------------------------------------------------------------------- naive reference


def _source_index(i: torch.Tensor, size: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Map (possibly out-of-range) input indices to real ones; second result: False where the pixel is a zero pad."""
    inside = (i >= 0) & (i < size)
    if mode == "zeros":
        return i.clamp(0, size - 1), inside
    if mode == "replicate":
        return i.clamp(0, size - 1), torch.ones_like(inside)
    if mode == "circular":
        return i % size, torch.ones_like(inside)
    if mode == "reflect":
        j = torch.where(i < 0, -i, i)
        j = torch.where(j >= size, 2 * (size - 1) - j, j)
        return j, torch.ones_like(inside)
    raise AssertionError(mode)


def _phi(layer, o: int, cl: int, kidx: tuple[int, ...], c: int, vals: torch.Tensor) -> torch.Tensor:
    """One element function on any tensor of values of channel ``c`` (Cox-de Boor basis, no shortcuts)."""
    flat = vals.reshape(-1, 1)
    basis = splines.b_spline_basis(flat, layer.grid[c : c + 1], layer.k)[:, 0]  # (m, nb)
    spline = basis @ layer.element_coef[(o, cl, *kidx)]
    base = layer.base_fun(flat[:, 0])
    phi = layer.scale_base[(o, cl, *kidx)] * base + layer.scale_sp[(o, cl, *kidx)] * spline
    return (phi * layer.mask[(o, cl, *kidx)]).reshape(vals.shape)


def naive_conv(layer, x: torch.Tensor) -> torch.Tensor:
    """``out[b,o,pos] = bias[o] + sum_{c,kernel offset} phi(x at pos*stride + offset*dilation - pad)``, by loops."""
    n = layer._n
    out_g, in_g = layer.out_channels // layer.groups, layer.in_channels // layer.groups
    spatial = x.shape[2:]
    out_sp = layer.output_shape(spatial)
    out = x.new_zeros(x.shape[0], layer.out_channels, *out_sp)
    for o in range(layer.out_channels):
        g = o // out_g
        if layer.bias is not None:
            out[:, o] += layer.bias[o]
        for cl in range(in_g):
            c = g * in_g + cl
            for kidx in torch.cartesian_prod(*[torch.arange(kk) for kk in layer.kernel_size]).reshape(-1, n).tolist():
                vals = x[:, c]
                valid = torch.ones(x.shape[0], *([1] * n), dtype=torch.bool)
                for d in range(n):
                    lo = layer._pad[d][0]
                    idx = torch.arange(out_sp[d]) * layer.stride[d] + kidx[d] * layer.dilation[d] - lo
                    src, ok = _source_index(idx, spatial[d], layer.padding_mode)
                    vals = vals.index_select(1 + d, src)
                    shape = [1] * (n + 1)
                    shape[1 + d] = -1
                    valid = valid & ok.view(shape)
                vals = torch.where(valid, vals, torch.zeros_like(vals))
                out[:, o] += _phi(layer, o, cl, tuple(kidx), c, vals)
    return out


# ----------------------------------------------------------------------------------------------- helpers


def _randomise(layer, seed: int) -> None:
    """Random (non-initial) parameters and mask so that every term matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (layer.coef, layer.scale_base, layer.scale_sp):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen))
        layer.mask.copy_((torch.rand(layer.mask.shape, generator=gen) > 0.2).float())


def _random_config(rng: random.Random, n: int) -> tuple[dict, tuple[int, ...]]:
    groups = rng.choice([1, 1, 2, 3])
    in_ch = groups * rng.randint(1, 3)
    out_ch = groups * rng.randint(1, 3)
    ks = tuple(rng.randint(1, 4) for _ in range(n))
    stride = tuple(rng.randint(1, 3) for _ in range(n))
    dil = tuple(rng.randint(1, 2) for _ in range(n))
    mode = rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"])
    spatial = tuple(rng.randint(d * (k - 1) + 2, d * (k - 1) + 8) for k, d in zip(ks, dil))
    if rng.random() < 0.15 and all(s == 1 for s in stride):
        padding: object = "same"
    else:
        padding = tuple(rng.randint(0, min(2, s - 1)) for s in spatial)
    kwargs = dict(
        in_channels=in_ch,
        out_channels=out_ch,
        kernel_size=ks,
        stride=stride,
        padding=padding,
        dilation=dil,
        groups=groups,
        bias=rng.random() < 0.7,
        grid=rng.randint(2, 6),
        k=rng.randint(1, 4),
        padding_mode=mode,
    )
    if padding == "same" and mode == "reflect":
        kwargs["padding_mode"] = "zeros"
    return kwargs, spatial


# ----------------------------------------------------------------------------------------------- fast vs naive


@pytest.mark.parametrize("seed", range(24))
def test_conv2d_matches_naive_random_configs(seed: int) -> None:
    rng = random.Random(seed)
    kwargs, spatial = _random_config(rng, 2)
    layer = KANConv2d(**kwargs, generator=torch.Generator().manual_seed(seed))
    _randomise(layer, seed)
    x = torch.randn(2, kwargs["in_channels"], *spatial, generator=torch.Generator().manual_seed(seed + 100)) * 1.2
    ref = naive_conv(layer, x)
    out = layer(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # the element tensor sums to the same output
    el = layer.forward_elements(x)
    bias = 0 if layer.bias is None else layer.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(el.sum(dim=(2, 3, 4)) + bias, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_conv1d_matches_naive_random_configs(seed: int) -> None:
    rng = random.Random(1000 + seed)
    kwargs, spatial = _random_config(rng, 1)
    layer = KANConv1d(**kwargs)
    _randomise(layer, seed)
    x = torch.randn(3, kwargs["in_channels"], *spatial, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(layer(x), naive_conv(layer, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_shared_shape_layers_match_naive_random_configs(seed: int) -> None:
    """One spline per channel pair, scaled per element: every element's function is still evaluated (and summed)
    as the naive definition says, on random 2-D and 1-D configurations, folded (inside the grid) or not."""
    rng = random.Random(2000 + seed)
    n = 1 + seed % 2
    kwargs, spatial = _random_config(rng, n)
    layer = (KANConv2d if n == 2 else KANConv1d)(**kwargs, shared_shape=True)
    _randomise(layer, seed)
    assert layer.coef.shape == (kwargs["out_channels"], kwargs["in_channels"] // kwargs["groups"], *[1] * n,
                                kwargs["grid"] + kwargs["k"])
    scale = 0.9 if seed < 4 else 1.2  # inside the grid [-1, 1] (folded last basis) or beyond it
    x = (torch.rand(2, kwargs["in_channels"], *spatial, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * scale
    torch.testing.assert_close(layer(x), naive_conv(layer, x), atol=1e-5, rtol=1e-5)
    el = layer.forward_elements(x).sum(dim=tuple(range(2, 3 + n)))
    bias = 0 if layer.bias is None else layer.bias.view(1, -1, *[1] * n)
    torch.testing.assert_close(el + bias, layer(x), atol=1e-5, rtol=1e-5)


def test_shared_shape_parameters_gradients_grid_update_and_state() -> None:
    layer = KANConv2d(3, 4, 3, padding=1, grid=5, k=3, bias=False, shared_shape=True)
    assert sum(p.numel() for p in layer.parameters()) == 3 * 4 * (2 * 9 + 5 + 3)
    assert "shared_shape=True" in repr(layer)
    _randomise(layer, 5)
    # each element is scale_base * silu + scale_sp * (its pair's spline): two elements of a pair differ by scales
    xs = torch.linspace(-1, 1, 50)
    f = layer.element_functions(xs)  # (m, out, in, 3, 3)
    spline = f - layer.scale_base * torch.nn.functional.silu(xs).view(-1, 1, 1, 1, 1) * layer.mask
    a, b = spline[:, 1, 2, 0, 0], spline[:, 1, 2, 2, 1]
    ratio = (layer.scale_sp[1, 2, 2, 1] / layer.scale_sp[1, 2, 0, 0]).detach()
    torch.testing.assert_close(b.detach(), a.detach() * ratio, atol=1e-5, rtol=1e-4)
    x = torch.rand(4, 3, 7, 7, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    layer(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
    before = layer(x).detach()
    layer.update_grid(x)
    assert layer.coef.shape == (4, 3, 1, 1, 8)
    rel = ((layer(x).detach() - before).square().mean() / before.square().mean()).sqrt()
    assert float(rel) < 0.03
    fine = layer.refine(10)
    assert fine.coef.shape == (4, 3, 1, 1, 13) and fine.shared_shape
    torch.testing.assert_close(fine(x), layer(x), atol=1e-4, rtol=1e-4)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    other = KANConv2d(3, 4, 3, padding=1, grid=5, k=3, bias=False, shared_shape=True,
                      generator=torch.Generator().manual_seed(9))
    other.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(other(x), layer(x), atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="size mismatch for coef"):
        KANConv2d(3, 4, 3, padding=1, grid=5, k=3, bias=False).load_state_dict(layer.state_dict())
    with pytest.raises(TypeError, match="shared_shape must be True or False"):
        KANConv2d(1, 1, 3, shared_shape="yes")


@pytest.mark.parametrize(("mode", "padding", "uniform"),
                         [("zeros", 1, True), ("replicate", 1, True), ("zeros", 0, True), ("zeros", 0, False)])
def test_depthwise_1x1_shortcut_matches_naive(mode: str, padding: int, uniform: bool) -> None:
    """The per-channel weighted sum (a block-diagonal GEMM on channels-last features, an elementwise sum on the
    non-uniform grid's features), values and gradients."""
    layer = KANConv2d(3, 3, 1, groups=3, padding=padding, padding_mode=mode, grid_eps=1.0 if uniform else 0.0)
    _randomise(layer, 4)
    x = torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(4))
    if not uniform:
        layer.update_grid(x**3)
        assert layer._uniform_spacing() is None
    grads = []
    for fn in (layer, lambda v: naive_conv(layer, v)):
        xa = x.clone().requires_grad_()
        out = fn(xa)
        grads.append((out, *torch.autograd.grad(out.square().sum(), [xa, layer.coef, layer.scale_base])))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_nonuniform_grid_path_matches_naive() -> None:
    layer = KANConv2d(2, 3, 3, padding=1, grid=4, k=3, grid_eps=0.0)
    _randomise(layer, 3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 7, 7, generator=gen) ** 3  # skewed: percentile knots are far from uniform
    layer.update_grid(x)
    assert layer._uniform_spacing() is None
    torch.testing.assert_close(layer(x), naive_conv(layer, x), atol=1e-5, rtol=1e-5)


def test_padding_is_evaluated_not_zero() -> None:
    """phi(0) != 0: zero padding contributes phi(0) at the borders, as in the naive definition."""
    layer = KANConv2d(1, 1, 3, padding=1, bias=False)
    _randomise(layer, 0)
    layer.mask.fill_(1.0)
    x = torch.full((1, 1, 5, 5), 0.7)
    out = layer(x)
    phi0 = layer.element_functions(torch.zeros(1))[0, 0, 0]  # (3, 3)
    phi7 = layer.element_functions(torch.full((1,), 0.7))[0, 0, 0]
    corner = phi0.sum() - phi0[1:, 1:].sum() + phi7[1:, 1:].sum()
    torch.testing.assert_close(out[0, 0, 0, 0], corner, atol=1e-5, rtol=1e-5)
    assert abs(float(phi0.sum().detach())) > 1e-3


# ----------------------------------------------------------------------------------------------- basis


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_cardinal_basis_equals_cox_de_boor(k: int) -> None:
    grid = splines.uniform_grid(6, k, 3, (-1.5, 2.0), dtype=torch.float64)
    x = torch.linspace(-4, 5, 1001, dtype=torch.float64)[:, None].expand(-1, 3)
    ref = splines.b_spline_basis(x, grid, k)
    t = (x - grid[:, 0]) / (grid[:, 1] - grid[:, 0])
    torch.testing.assert_close(cardinal_basis(t, 6 + k, k), ref, atol=1e-12, rtol=0)


def test_basis_channel_dim_layouts_agree() -> None:
    layer = KANConv2d(3, 2, 3, grid=5, k=3)
    x = torch.randn(2, 3, 4, 5)
    a = layer.basis(x, channel_dim=1)  # (2, 3, 8, 4, 5)
    b = layer.basis(x.movedim(1, -1), channel_dim=-1)  # (2, 4, 5, 3, 8)
    torch.testing.assert_close(a, b.permute(0, 3, 4, 1, 2))


def test_element_functions_match_kanlayer_formula() -> None:
    layer = KANConv2d(2, 3, 2, groups=1)
    _randomise(layer, 1)
    xs = torch.linspace(-1.2, 1.2, 9)
    ef = layer.element_functions(xs)  # (9, 3, 2, 2, 2)
    for o, cl, u, v in [(0, 0, 0, 0), (2, 1, 1, 0), (1, 1, 1, 1)]:
        torch.testing.assert_close(ef[:, o, cl, u, v], _phi(layer, o, cl, (u, v), cl, xs), atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------------- shapes


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    "kwargs,spatial",
    [
        (dict(kernel_size=3), (28, 28)),
        (dict(kernel_size=3, padding=1), (28, 28)),
        (dict(kernel_size=(3, 5), stride=(2, 3), padding=(1, 2), dilation=(2, 1)), (17, 23)),
        (dict(kernel_size=4, padding="same"), (9, 10)),
        (dict(kernel_size=(2, 3), padding="same", dilation=(3, 2)), (9, 10)),
        (dict(kernel_size=3, padding="valid", stride=2), (8, 8)),
        (dict(kernel_size=1, stride=3), (10, 11)),
        (dict(kernel_size=5, padding=2, padding_mode="circular"), (6, 6)),
        (dict(kernel_size=3, padding=1, padding_mode="reflect", groups=2), (6, 6)),
    ],
)
def test_output_shape_equals_nn_conv2d(kwargs: dict, spatial: tuple[int, int]) -> None:
    ref = nn.Conv2d(4, 6, **kwargs)
    layer = KANConv2d(4, 6, **kwargs)
    x = torch.rand(2, 4, *spatial) * 2 - 1
    assert layer(x).shape == ref(x).shape
    assert layer.output_shape(spatial) == tuple(ref(x).shape[2:])


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv1d_shape_equals_nn_conv1d() -> None:
    cases = [dict(kernel_size=5, padding=2), dict(kernel_size=3, stride=2, dilation=2)]
    cases.append(dict(kernel_size=4, padding="same"))
    for kwargs in cases:
        x = torch.rand(2, 3, 19)
        assert KANConv1d(3, 5, **kwargs)(x).shape == nn.Conv1d(3, 5, **kwargs)(x).shape


def test_parameter_count_per_channel_pair() -> None:
    layer = KANConv2d(3, 4, 3, grid=5, k=3, bias=False)
    assert sum(p.numel() for p in layer.parameters()) == 3 * 4 * 9 * (5 + 3 + 2)
    grouped = KANConv2d(4, 6, 3, groups=2, grid=5, k=3)
    assert sum(p.numel() for p in grouped.parameters()) == 2 * 6 * 9 * 10 + 6


# ----------------------------------------------------------------------------------------------- training behaviour


def test_gradients_reach_all_parameters_and_input() -> None:
    layer = KANConv2d(2, 3, 3, padding=1)
    x = (torch.rand(2, 2, 6, 6) * 2 - 1).requires_grad_()
    layer(x).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_input_gradient_matches_naive() -> None:
    layer = KANConv2d(2, 2, 3, padding=1, grid=4, k=3)
    _randomise(layer, 5)
    x0 = torch.rand(1, 2, 5, 5, dtype=torch.float64) * 1.6 - 0.8
    layer = layer.double()
    xa = x0.clone().requires_grad_()
    xb = x0.clone().requires_grad_()
    layer(xa).sin().sum().backward()
    naive_conv(layer, xb).sin().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_input_gradcheck_all_orders(k: int) -> None:
    """The analytic backward of the closed-form features (any order) against finite differences."""
    layer = KANConv2d(2, 2, 2, padding=1, grid=3, k=k, padding_mode="replicate").double()
    _randomise(layer, k)
    x = (torch.rand(1, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(k)) * 2.4 - 1.2)
    assert torch.autograd.gradcheck(layer, (x.requires_grad_(),), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize(
    ("in_ch", "out_ch", "ks", "padding", "spatial", "mode"),
    [(4, 3, 3, 1, (9, 11), "zeros"), (5, 2, 2, 0, (20, 18), "replicate"), (8, 4, 3, 2, (7, 7), "circular")],
)
def test_fused_path_matches_naive_and_float64_gradients(in_ch, out_ch, ks, padding, spatial, mode) -> None:
    """float32 forward and every gradient (oneDNN's channels-last kernels) against the float64 layer."""
    layer = KANConv2d(in_ch, out_ch, ks, padding=padding, padding_mode=mode, grid=5, k=3)
    _randomise(layer, in_ch)
    x = torch.randn(3, in_ch, *spatial, generator=torch.Generator().manual_seed(in_ch)) * 1.2
    feats = layer.features(layer.pad_input(x))
    assert feats.shape == (3, in_ch * 9, *(s + 2 * padding for s in spatial))
    assert feats.is_contiguous(memory_format=torch.channels_last)
    xa = x.clone().requires_grad_()
    out = layer(xa)
    assert out.is_contiguous()
    torch.testing.assert_close(out, naive_conv(layer, x), atol=1e-5, rtol=1e-5)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    params = [xa, *layer.parameters()]
    grads = torch.autograd.grad(out, params, g)
    ref_layer = copy.deepcopy(layer).double()
    xd = x.double().requires_grad_()
    ref = torch.autograd.grad(ref_layer(xd), [xd, *ref_layer.parameters()], g.double())
    for name, a, b in zip(["x"] + [n for n, _ in layer.named_parameters()], grads, ref):
        scale = b.abs().max().item()
        assert (a.double() - b).abs().max().item() <= 1e-5 * scale, name


@pytest.mark.parametrize("conv_cls", [KANConv2d, KANConv1d])
def test_features_and_conv_weight_reproduce_the_layer(conv_cls) -> None:
    """The documented identity ``conv(features(pad(x)), conv_weight(), bias) == layer(x)`` (true bases)."""
    n = 2 if conv_cls is KANConv2d else 1
    layer = conv_cls(3, 4, 3, stride=2, padding=1, dilation=1, grid=4, k=2)
    _randomise(layer, 5)
    x = torch.randn(2, 3, *([9] * n), generator=torch.Generator().manual_seed(5))
    feats = layer.features(layer.pad_input(x))
    assert feats.shape == (2, 3 * (1 + 6), *([11] * n))
    conv = F.conv2d if n == 2 else F.conv1d
    out = conv(feats, layer.conv_weight(), layer.bias, layer.stride, 0, layer.dilation, layer.groups)
    torch.testing.assert_close(out, layer(x), atol=1e-5, rtol=1e-5)
    # the bases in the features (closed form, scaled back by 1/k!) against the Cox-de Boor recursion
    bases = splines.b_spline_basis(layer.pad_input(x).movedim(1, -1), layer.grid, layer.k)  # (B, *S, C, nb)
    bases = bases.movedim(-2, 1).movedim(-1, 2)  # (B, C, nb, *S)
    torch.testing.assert_close(feats.view(2, 3, 7, *feats.shape[2:])[:, :, 1:], bases, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("layer", "shape"), [(KANConv2d(8, 4, 3, padding=1), (0, 8, 6, 6)), (KANConv1d(8, 4, 3), (0, 8, 6))]
)
def test_wide_path_empty_batch(layer, shape) -> None:
    out = layer(torch.rand(shape))
    assert out.shape == (0, 4, *layer.output_shape(shape[2:]))


def test_basis_expansion_in_pixel_chunks(monkeypatch) -> None:
    """Chunking changes nothing in the features (exact) and only the rounding of the input gradient (whose
    per-channel sums over basis slots are small GEMMs)."""
    layer = KANConv2d(3, 2, 3, padding=1, grid=4, k=3)
    _randomise(layer, 9)
    x = torch.randn(5, 3, 6, 7, generator=torch.Generator().manual_seed(9))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a = layer(xa)
    out_a.sin().sum().backward()
    monkeypatch.setattr(cardinal, "CHUNK", 250)  # 250 // (3 channels x 8 slots) = 10 pixels per chunk
    out_b = layer(xb)
    out_b.sin().sum().backward()
    torch.testing.assert_close(out_a, out_b, atol=0, rtol=0)
    torch.testing.assert_close(xa.grad, xb.grad, atol=2e-6, rtol=1e-5)


def test_zero_padded_path_gradcheck_float64() -> None:
    """Zero padding through the convolution plus the border term (:meth:`_border`), with exact gradients."""
    layer = KANConv2d(4, 2, 2, padding=1, grid=4, k=3).double()
    _randomise(layer, 11)
    x = torch.rand(2, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 2.2 - 1.1
    torch.testing.assert_close(layer(x), naive_conv(layer, x), atol=1e-12, rtol=1e-10)
    inputs = (x.requires_grad_(), layer.coef, layer.scale_base, layer.bias)
    assert torch.autograd.gradcheck(
        lambda x_, c, sb, b: torch.func.functional_call(layer, {"coef": c, "scale_base": sb, "bias": b}, (x_,)),
        inputs, eps=1e-6, atol=1e-6, fast_mode=True,
    )


def _inside(x: torch.Tensor, layer) -> torch.Tensor:
    """Map values into ``[lo, hi]``, the range inside every channel's grid (endpoints included)."""
    lo, hi = layer.grid[:, layer.k].max().item(), layer.grid[:, -layer.k - 1].min().item()
    return (lo + (hi - lo) * x).clamp(lo, hi)


@pytest.mark.parametrize("seed", range(16))
def test_inside_grid_path_matches_naive_and_float64_gradients(seed: int) -> None:
    """Inputs inside the grid: the last basis is folded into the other weights and the bias (partition of unity)."""
    rng = random.Random(500 + seed)
    n = 2 if seed < 12 else 1
    kwargs, spatial = _random_config(rng, n)
    if seed % 4 == 0:
        kwargs["padding_mode"] = "zeros"  # padded zeros are evaluated too: keep 0 inside the grid
        kwargs["grid_range"] = (-1.5, 0.5 + seed / 16)
    layer = (KANConv2d if n == 2 else KANConv1d)(**kwargs)
    _randomise(layer, seed)
    gen = torch.Generator().manual_seed(seed)
    x = _inside(torch.rand(2, kwargs["in_channels"], *spatial, generator=gen), layer)
    x.view(-1)[:2] = torch.tensor([layer.grid[:, layer.k].max(), layer.grid[:, -layer.k - 1].min()])  # both ends
    assert layer._inside_grid(layer.pad_input(x)) and not layer._inside_grid(layer.pad_input(x + 10))
    torch.testing.assert_close(layer(x), naive_conv(layer, x), atol=1e-5, rtol=1e-5)
    # float64 gradients: folded == unfolded to rounding; both == naive up to the float32 knots' deviation from a
    # uniform grid (the closed-form bases assume uniform spacing)
    ref_layer = copy.deepcopy(layer).double()
    full_layer = copy.deepcopy(ref_layer)
    full_layer._inside_grid = lambda xp, with_zero=False: False
    g = torch.randn(naive_conv(ref_layer, x.double()).shape, generator=gen, dtype=torch.float64)
    grads = []
    for lay, fn in ((ref_layer, ref_layer), (full_layer, full_layer), (ref_layer, lambda v: naive_conv(ref_layer, v))):
        xd = x.double().requires_grad_()
        grads.append(torch.autograd.grad(fn(xd), [xd, *lay.parameters()], g))
    names = ["x"] + [nm for nm, _ in ref_layer.named_parameters()]
    for name, a, b, c in zip(names, *grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10, msg=name)
        if name == "x":  # the two ends sit exactly on knots, where linear splines have a kink
            a, c = a.flatten()[2:], c.flatten()[2:]
        assert (a - c).abs().max().item() <= 1e-5 * c.abs().max().item(), name


@pytest.mark.parametrize("bias", [True, False])
def test_inside_grid_path_gradcheck(bias: bool) -> None:
    """Gradcheck of every parameter through the folded weights (without a bias the folded part becomes one)."""
    layer = KANConv2d(3, 2, 2, padding=1, grid=3, k=3, bias=bias).double()
    _randomise(layer, 21)
    x = _inside(torch.rand(2, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)), layer)
    assert layer._inside_grid(layer.pad_input(x))
    names = [nm for nm, _ in layer.named_parameters()]

    def f(x_, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x_,))

    inputs = (x.requires_grad_(), *[p.detach().clone().requires_grad_() for p in layer.parameters()])
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


def test_inside_grid_is_not_checked_off_cpu() -> None:
    """Off the CPU the fold is skipped without reading values back (a host sync); meta tensors stand in here."""
    layer = KANConv2d(2, 3, 3, grid=3, k=3)
    xp = torch.zeros(1, 2, 5, 5, device="meta")
    with pytest.raises(RuntimeError):  # what reading the range back would do
        bool(torch.aminmax(xp)[0] >= -1)
    assert layer._inside_grid(xp) is False
    assert layer._inside_grid(torch.zeros(1, 2, 5, 5)) is True


def test_inside_grid_benchmark_layer_matches_naive_and_float64_gradients() -> None:
    """The benchmark's 8 -> 16 layer with inputs inside the grid: 64 fused channels (not 72), zero padding through
    the convolution and the border term."""
    layer = KANConv2d(8, 16, 3, padding=1, grid=5, k=3)
    _randomise(layer, 8)
    x = torch.rand(4, 8, 9, 10, generator=torch.Generator().manual_seed(8)) * 2 - 1
    assert layer._inside_grid(x, with_zero=True)
    assert layer._features(x, drop_last=True)[0].shape == (4, 8 * 8, 9, 10)
    xa = x.clone().requires_grad_()
    out = layer(xa)
    assert out.is_contiguous()
    torch.testing.assert_close(out, naive_conv(layer, x), atol=1e-5, rtol=1e-5)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    grads = torch.autograd.grad(out, [xa, *layer.parameters()], g)
    ref_layer = copy.deepcopy(layer).double()
    xd = x.double().requires_grad_()
    ref = torch.autograd.grad(naive_conv(ref_layer, xd), [xd, *ref_layer.parameters()], g.double())
    for name, a, b in zip(["x"] + [n for n, _ in layer.named_parameters()], grads, ref):
        assert (a.double() - b).abs().max().item() <= 1e-5 * b.abs().max().item(), name


@pytest.mark.parametrize("inside", [True, False])
def test_border_term_equals_expanding_the_padded_input(inside: bool) -> None:
    """Zero padding inside the convolution + :meth:`_border` == expanding every padded pixel (values, gradients)."""
    layer = KANConv2d(3, 4, 3, stride=2, padding=2, dilation=2, grid=5, k=3)
    _randomise(layer, 3)
    x = torch.rand(3, 3, 9, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    x = x * (0.9 if inside else 1.5)
    assert layer._inside_grid(x, with_zero=True) is inside
    results = []
    for lay, explicit in ((layer, False), (copy.deepcopy(layer).double(), True)):
        xa = x.to(lay.coef.dtype).requires_grad_()
        if explicit:
            w, b = lay._fused_weight(inside, 1 / 6)
            out = lay._conv(lay._features(lay.pad_input(xa), inside)[0], w, b)
        else:
            out = lay(xa)
        results.append((out, *torch.autograd.grad(out.sin().sum(), [xa, *lay.parameters()])))
    for a, b in zip(*results):  # float32 through the border term vs float64 without it
        assert (a.double() - b).abs().max().item() <= 1e-5 * b.abs().max().item()


def test_update_grid_preserves_function_and_covers_data() -> None:
    layer = KANConv2d(2, 3, 3, padding=1, grid=5, k=3)
    _randomise(layer, 2)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(8, 2, 9, 9, generator=gen) * 1.6 - 0.9  # inside the initial range [-1, 1]
    before = layer(x)
    layer.update_grid(x)
    lo, hi = layer.grid[:, layer.k], layer.grid[:, -layer.k - 1]
    xp = layer.pad_input(x)
    torch.testing.assert_close(lo, xp.amin(dim=(0, 2, 3)), atol=1e-6, rtol=0)
    torch.testing.assert_close(hi, xp.amax(dim=(0, 2, 3)), atol=1e-6, rtol=0)
    assert layer._uniform_spacing() is not None  # grid_eps=1 keeps the closed-form path
    after = layer(x)
    rel_rms = ((after - before).square().mean() / before.square().mean()).sqrt()
    assert float(rel_rms.detach()) < 0.03  # random wiggly splines are re-fitted on new knots, not copied exactly


def test_refine_preserves_functions() -> None:
    layer = KANConv2d(2, 3, 3, padding=1, grid=4, k=3, groups=1)
    _randomise(layer, 6)
    x = torch.rand(2, 2, 6, 6) * 1.8 - 0.9
    fine = layer.refine(8)  # uniform 8 intervals contain the 4-interval knots: exact
    assert fine.num == 8 and fine.coef.shape == (3, 2, 3, 3, 11) and fine.grid.shape == (2, 8 + 7)
    torch.testing.assert_close(fine(x), layer(x), atol=1e-4, rtol=1e-4)
    assert layer.num == 4 and layer.coef.shape[-1] == 7  # the original is untouched
    adaptive = layer.refine(6, x)
    rel = ((adaptive(x) - layer(x)).square().mean() / layer(x).square().mean()).sqrt()
    assert float(rel.detach()) < 0.05
    with pytest.raises(ValueError, match="new_grid"):
        layer.refine(0)


def test_update_grid_expands_range_for_out_of_range_data() -> None:
    layer = KANConv2d(1, 2, 3, grid=5, k=3)
    x = torch.linspace(-3, 3, 64).reshape(1, 1, 8, 8)
    layer.update_grid(x)
    assert float(layer.grid[0, layer.k]) == pytest.approx(-3.0)
    assert float(layer.grid[0, -layer.k - 1]) == pytest.approx(3.0)


def test_regularization_and_magnitude() -> None:
    layer = KANConv2d(2, 3, 3, padding=1)
    x = torch.rand(4, 2, 6, 6) * 2 - 1
    mag = layer.element_magnitude(x)
    assert mag.shape == (3, 2, 3, 3)
    torch.testing.assert_close(mag, layer.forward_elements(x).abs().mean(dim=(0, 5, 6)))
    layer.mask[0] = 0
    assert float(layer.element_magnitude(x)[0].abs().sum().detach()) == 0.0
    reg = layer.regularization(x, lamb_l1=1.0, lamb_entropy=0.0)
    torch.testing.assert_close(reg, layer.element_magnitude(x).sum())
    reg.backward()
    assert layer.coef.grad is not None and layer.coef.grad.abs().sum() > 0


def test_hook_elements_runs_with_cache() -> None:
    from kanlens.hooks import run_with_cache

    layer = KANConv2d(2, 3, 3, padding=1)
    x = torch.rand(2, 2, 5, 5)
    out, cache = run_with_cache(layer, x, names_filter="hook_elements")
    torch.testing.assert_close(out, layer(x), atol=1e-6, rtol=1e-6)
    assert cache["hook_elements"].shape == (2, 3, 2, 3, 3, 5, 5)


# ----------------------------------------------------------------------------------------------- state and devices


def test_state_dict_round_trip_and_weights_only_load() -> None:
    a = KANConv2d(2, 4, 3, padding=1, grid=4, generator=torch.Generator().manual_seed(1))
    x = torch.rand(3, 2, 6, 6) * 2 - 1
    a.update_grid(x * 1.5)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = KANConv2d(2, 4, 3, padding=1, grid=4, generator=torch.Generator().manual_seed(2))
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert set(a.state_dict()) == {"grid", "mask", "coef", "scale_base", "scale_sp", "bias"}
    torch.testing.assert_close(a(x), b(x), atol=0, rtol=0)


def test_to_dtype_and_device() -> None:
    layer = KANConv2d(1, 2, 3).to(torch.float64)
    assert layer.grid.dtype == torch.float64 and layer.coef.dtype == torch.float64
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    assert layer(x).dtype == torch.float64
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        moved = KANConv2d(1, 2, 3, device=dev)
        assert moved.grid.device.type == dev and moved(x.float().to(dev)).device.type == dev


def test_init_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = KANConv2d(2, 3, 3, generator=torch.Generator().manual_seed(7))
    b = KANConv2d(2, 3, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(a.coef, b.coef, atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------- bad input


def test_bad_input_errors() -> None:
    layer = KANConv2d(3, 4, 3)
    with pytest.raises(ValueError, match="channels"):
        layer(torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match="4-D"):
        layer(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="larger than the padded input"):
        layer(torch.rand(1, 3, 2, 8))
    with pytest.raises(TypeError, match="floating"):
        layer(torch.ones(1, 3, 8, 8, dtype=torch.long))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        layer([[1.0]])
    with pytest.raises(ValueError, match="larger than the padded input"):
        KANConv2d(1, 1, 5, padding=1, dilation=2)(torch.rand(1, 1, 6, 6))  # span 9 > 6 + 2
    with pytest.raises(ValueError, match="3-D"):
        KANConv1d(1, 1, 3)(torch.rand(1, 1, 5, 5))


def test_bad_argument_errors() -> None:
    with pytest.raises(ValueError, match="divisible by groups"):
        KANConv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="did you mean 'reflect'"):
        KANConv2d(1, 1, 3, padding_mode="reflection")
    with pytest.raises(ValueError, match="padding"):
        KANConv2d(1, 1, 3, padding="sane")
    with pytest.raises(ValueError, match="strided"):
        KANConv2d(1, 1, 3, padding="same", stride=2)
    with pytest.raises(ValueError, match="kernel_size"):
        KANConv2d(1, 1, (3, 3, 3))
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        KANConv2d(1, 1, 0)
    with pytest.raises(TypeError, match="stride"):
        KANConv2d(1, 1, 3, stride=1.5)
    with pytest.raises(ValueError, match="grid_range"):
        KANConv2d(1, 1, 3, grid_range=(1, -1))
    with pytest.raises(ValueError, match="base_fun"):
        KANConv2d(1, 1, 3, base_fun="slu")
    with pytest.raises(ValueError, match="reflect"):
        KANConv2d(1, 1, 3, padding=4, padding_mode="reflect")(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="xs must have shape"):
        KANConv2d(2, 1, 3).element_functions(torch.rand(4, 3))


def test_matches_nn_conv2d_when_functions_are_linear() -> None:
    """With identity base and zero splines a KAN conv is an ordinary convolution."""
    ref = nn.Conv2d(3, 4, 3, stride=2, padding=1, groups=1)
    layer = KANConv2d(3, 4, 3, stride=2, padding=1, base_fun="identity")
    with torch.no_grad():
        layer.coef.zero_()
        layer.scale_base.copy_(ref.weight)
        layer.bias.copy_(ref.bias)
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(layer(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer(x), F.conv2d(x, ref.weight, ref.bias, 2, 1), atol=1e-5, rtol=1e-5)


def test_speed_benchmark_skips_the_naive_loop_with_zero_reps(monkeypatch) -> None:
    """``benchmarks/conv_speed.py --naive-reps 0`` used to crash (median of no timings); now it leaves the rows out."""
    import importlib.util
    from pathlib import Path

    bench_dir = Path(__file__).resolve().parents[2] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench_dir))
    spec = importlib.util.spec_from_file_location("conv_speed", bench_dir / "conv_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.run_case(2, 2, 6, 3, reps=1, input_grad=False, naive_reps=0)
    assert [r[1] for r in rows] == ["nn.Conv2d+SiLU", "KANConv2d"]
    assert "naive" not in mod.format_table(rows)
    rows = mod.run_case(2, 2, 6, 3, reps=1, input_grad=True, naive_reps=1)
    assert [r[1] for r in rows][:3] == ["nn.Conv2d+SiLU", "KANConv2d", "naive loop"]
    assert float(rows[-1][1].split(": ")[1].rstrip(")")) < 1e-5
    # repeats: the ratio is the median of the per-round ratios, all of which the summary lists
    rows = mod.run_case(2, 2, 6, 3, reps=2, input_grad=False, naive_reps=0, repeats=3)
    kan = rows[1]
    assert len(kan[6]) == 3 and kan[3][0] == sorted(kan[6])[1]
    summary = mod.format_summary([(1, rows[0][0], False, rows)], 3)
    assert "median of 3 rounds" in summary and f"**{kan[3][0]:.2f}**" in summary


@pytest.mark.parametrize("rows", [0, 5])
def test_expansion_runs_off_cpu_also_for_an_empty_batch(rows: int) -> None:
    """Off the CPU the expansion takes all rows at once (no chunk loop, whose step was 0 for an empty batch);
    meta tensors stand in for an accelerator."""
    t = torch.empty(rows, 3, device="meta")  # two channels and the column of ones
    out = torch.empty(rows, 2 * 8, device="meta")
    assert cardinal.expand_rows(t, 8, 3, out=out) is out
    grad = cardinal.expand_rows(t, 8, 3, grad=torch.empty(rows, 16, device="meta"))
    assert grad.shape == (rows, 2) and grad.device.type == "meta"


def test_grid_memo_follows_the_grid_and_is_not_pickled() -> None:
    """Values derived from the grid (uniform spacing, border term) are rebuilt when the grid changes, in place or
    by a new tensor, and a whole pickled layer (``torch.save(layer)``) leaves them out."""
    layer = KANConv2d(2, 3, 3, padding=1, grid=4)
    x = torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
    y = layer(x)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert "_grid_memo_store" in layer.__dict__ and "_grid_memo_store" not in loaded.__dict__
    torch.testing.assert_close(loaded(x), y, atol=0, rtol=0)
    for change in ("in place", "new tensor"):
        if change == "in place":
            layer.grid.mul_(1.5)
        else:
            layer.grid = layer.grid.clone() * 1.5
        torch.testing.assert_close(layer(x), naive_conv(layer, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 3e38])
@pytest.mark.parametrize("shape", [(2, 2, 1, 0), (4, 4, 3, 1)])
def test_a_non_finite_or_huge_pixel_stays_in_its_group(bad: float, shape: tuple) -> None:
    """As in nn.Conv2d: a bad value reaches only the outputs of its own group (no 0 * inf across channels)."""
    c, o, ksz, pad = shape
    layer = KANConv2d(c, o, ksz, groups=2, padding=pad)
    ref = nn.Conv2d(c, o, ksz, groups=2, padding=pad)
    x = torch.rand(1, c, 5, 5)
    x[0, 0, 2, 2] = bad
    got = (~torch.isfinite(layer(x))).sum((0, 2, 3))
    want = (~torch.isfinite(ref(x))).sum((0, 2, 3))
    assert torch.equal(got[o // 2:], want[o // 2:]) and int(got[o // 2:].sum()) == 0  # the other group is clean
    if bad != 3e38:
        assert int(got[: o // 2].sum()) > 0  # and the bad value is not hidden in its own group
