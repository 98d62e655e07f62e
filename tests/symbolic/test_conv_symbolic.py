"""auto_symbolic_conv: linear / non-linear / inactive elements, the equivalent kernel, library names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kanlens import splines
from kanlens.layers.conv import KANConv2d
from kanlens.symbolic.conv import auto_symbolic_conv, element_linear_fits


def _set_element(layer: KANConv2d, o: int, c: int, u: int, v: int, fn) -> None:
    """Make element (o, c, u, v) compute ``fn`` on its channel's grid range (spline only)."""
    g = layer.grid[c : c + 1]
    xs = torch.linspace(float(g[0, layer.k]), float(g[0, -layer.k - 1]), 200)[:, None]
    coef = splines.curve2coef(xs, fn(xs)[:, :, None], g, layer.k)[0, 0]
    with torch.no_grad():
        layer.coef[o, c, u, v] = coef
        layer.scale_sp[o, c, u, v] = 1.0
        layer.scale_base[o, c, u, v] = 0.0


def _known_layer() -> KANConv2d:
    layer = KANConv2d(1, 3, 2, grid=10, k=3, grid_range=(-1, 1), base_fun="identity")
    with torch.no_grad():
        layer.coef.zero_()
        layer.scale_base.copy_(torch.tensor([[[[0.5, -1.0], [2.0, 0.25]]]]).expand(3, 1, 2, 2))
    # filter 0: all linear; filter 1: one x^2 and one sin element; filter 2: a dead (masked) element + a cubic
    _set_element(layer, 1, 0, 0, 0, lambda x: x**2)
    _set_element(layer, 1, 0, 1, 1, lambda x: torch.sin(3 * x))
    layer.mask[2, 0, 0, 1] = 0.0
    _set_element(layer, 2, 0, 1, 0, lambda x: 2 * x**3 + 0.5)
    return layer


def test_linear_nonlinear_inactive_split_and_names() -> None:
    layer = _known_layer()
    report = auto_symbolic_conv(layer, lib=["x", "x^2", "sin", "x^3", "exp"])
    assert report.filter_kinds() == ["linear", "mixed", "mixed"]
    assert report.status[0].eq(report.LINEAR).all()
    assert report.status[1, 0, 0, 0] == report.NONLINEAR and report.status[1, 0, 1, 1] == report.NONLINEAR
    assert report.status[2, 0, 0, 1] == report.INACTIVE
    assert report.status[2, 0, 1, 0] == report.NONLINEAR
    names = {(f.out_channel, f.offset): f.name for f in report.fits}
    assert names == {(1, (0, 0)): "x^2", (1, (1, 1)): "sin", (2, (1, 0)): "x^3"}
    assert all(f.r2 > 0.999 for f in report.fits)
    sin_fit = next(f for f in report.fits if f.name == "sin")
    assert abs(abs(sin_fit.params[0]) - 3.0) < 1e-2  # a in c*sin(a*x+b)+d
    text = str(report)
    assert "linear" in text and "x^2 x1" in text and len(text.splitlines()) == 2 + 3 + 1


def test_linear_kernel_is_the_ordinary_convolution() -> None:
    """All-linear layer: the reported kernel reproduces the layer as an nn.Conv2d (up to the intercepts)."""
    layer = KANConv2d(2, 3, 3, padding=1, base_fun="identity")
    with torch.no_grad():
        layer.coef.zero_()
        layer.bias.normal_()
    report = auto_symbolic_conv(layer, fit_library=False)
    assert report.is_linear.all() and not report.fits
    x = torch.randn(2, 2, 6, 6)
    ref = F.conv2d(x, report.linear_kernel(), layer.bias, padding=1)
    torch.testing.assert_close(layer(x), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(report.linear_r2, torch.ones_like(report.linear_r2))


def test_data_range_and_magnitude_from_x() -> None:
    layer = _known_layer()
    x = torch.rand(4, 1, 6, 6) * 0.2  # only [0, 0.2]: x^2 is nearly linear there (r2 = 45/48 on [0, a])
    report = auto_symbolic_conv(layer, x, fit_library=False, linear_threshold=0.9)
    assert report.status[1, 0, 0, 0] == report.LINEAR
    torch.testing.assert_close(report.magnitude, layer.element_magnitude(x).detach())


def test_element_linear_fits_exact_line_and_constant() -> None:
    xs = torch.linspace(-1, 1, 50)[:, None]
    ys = torch.stack([3 * xs[:, 0] + 1, torch.full((50,), 2.0), xs[:, 0] ** 2], 1).reshape(50, 3, 1, 1, 1)
    fits = element_linear_fits(xs, ys, torch.zeros(3, 1, dtype=torch.long))
    torch.testing.assert_close(fits["slope"].flatten()[:2], torch.tensor([3.0, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(fits["intercept"].flatten()[:2], torch.tensor([1.0, 2.0]), atol=1e-5, rtol=0)
    assert fits["r2"].flatten()[:2].tolist() == pytest.approx([1.0, 1.0])
    assert float(fits["r2"].flatten()[2]) < 0.05


def test_summary_rows_and_max_fits() -> None:
    layer = _known_layer()
    report = auto_symbolic_conv(layer, lib=["x^2", "sin", "x^3"], max_library_fits=1)
    assert len(report.fits) == 1
    rows = report.summary()
    assert [r["filter"] for r in rows] == [0, 1, 2]
    assert rows[0] == {**rows[0], "linear": 4, "non_linear": 0, "inactive": 0, "kind": "linear"}
    assert rows[2]["inactive"] == 1


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="KANConv2d"):
        auto_symbolic_conv(torch.nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="linear_threshold"):
        auto_symbolic_conv(KANConv2d(1, 1, 3), linear_threshold=1.5)
    with pytest.raises(ValueError, match="channels"):
        auto_symbolic_conv(KANConv2d(2, 1, 3), torch.rand(1, 1, 5, 5))


def test_report_options_are_checked():
    layer = KANConv2d(1, 2, 3)
    with torch.no_grad():
        layer.coef.normal_(generator=torch.Generator().manual_seed(0))
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with pytest.raises(ValueError, match="num_points must be an int >= 3"):
        auto_symbolic_conv(layer, x, num_points=2)
    with pytest.raises(ValueError, match="max_library_fits must be None or an int >= 0"):
        auto_symbolic_conv(layer, x, max_library_fits=-1)
    with pytest.raises(ValueError, match="no functions besides 0 and x"):
        auto_symbolic_conv(layer, x, lib=["x", "0"])
