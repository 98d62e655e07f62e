"""Conv figures: PNGs are written only when asked, are not blank, and have the expected panels."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from kanlens.layers.conv import KANConv2d  # noqa: E402
from kanlens.plotting.conv import plot_conv_kernels, plot_conv_response, plot_conv_responses  # noqa: E402
from kanlens.vision import KANConvNet, train_classifier  # noqa: E402


@pytest.fixture(scope="module")
def trained(digits):
    """A KAN-conv first layer after a short training on real digits."""
    x, y = digits
    model = KANConvNet(channels=(4, 6), image_size=8, padding=1, seed=0)
    train_classifier(model, x[:320], y[:320], epochs=2, batch_size=64, lr=2e-2)
    return model


def _pixels(path) -> torch.Tensor:
    import matplotlib.image as mpimg

    return torch.tensor(mpimg.imread(path))


def _not_blank(path) -> None:
    img = _pixels(path)[..., :3]
    assert float(img.var()) > 1e-3, "figure looks blank"


def _plt_close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_kernels_png_trained_layer(tmp_path, trained, digits) -> None:
    x, _ = digits
    path = tmp_path / "kernels.png"
    fig = plot_conv_kernels(trained.convs[0], x=x[:64], path=path)
    assert path.is_file() and path.stat().st_size > 5000
    _not_blank(path)
    assert len(fig.axes) == 4 * 3 * 3
    assert fig.axes[1].get_title() == "filter 0"
    assert len(fig.axes[0].lines) == 1
    _plt_close(fig)


def test_kernels_selected_channels_and_no_file_without_path(tmp_path, trained) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        fig = plot_conv_kernels(trained, out_channels=[1, 3], tint=False)  # model -> its first KAN conv
    finally:
        os.chdir(cwd)
    assert list(tmp_path.iterdir()) == []
    assert len(fig.axes) == 2 * 9
    assert {a.get_title() for a in fig.axes if a.get_title()} == {"filter 1", "filter 3"}
    _plt_close(fig)


def test_kernels_second_layer_in_channel_and_ax(tmp_path, trained) -> None:
    import matplotlib.pyplot as plt

    fig0, axes = plt.subplots(1, 2, figsize=(8, 4))
    fig = plot_conv_kernels(trained.convs[1], out_channels=2, in_channel=3, ax=axes[1], path=tmp_path / "k2.svg")
    assert fig is fig0
    assert len(fig.axes) == 2 and len(axes[1].child_axes) == 9  # panels are drawn inside the given axes
    assert not axes[1].axison
    assert (tmp_path / "k2.svg").is_file()
    _plt_close(fig)


def test_fading_follows_importance() -> None:
    layer = KANConv2d(1, 1, 2, grid_range=(-1, 1))
    with torch.no_grad():
        layer.coef.zero_()
        layer.scale_base.copy_(torch.tensor([[[[1.0, 0.001], [0.5, 0.0]]]]))
    fig = plot_conv_kernels(layer)
    alphas = [ax.lines[0].get_alpha() for ax in fig.axes]
    assert alphas[0] == pytest.approx(1.0) and alphas[0] > alphas[2] > alphas[1] >= alphas[3]
    _plt_close(fig)


def test_response_views(tmp_path, trained, digits) -> None:
    x, _ = digits
    path = tmp_path / "resp.png"
    fig = plot_conv_response(trained.convs[0], x[0], out_channel=1, path=path)
    _not_blank(path)
    assert len(fig.axes) == 4 + 1 + 9
    assert "output =" in fig.axes[2].get_title()
    _plt_close(fig)
    fig = plot_conv_response(trained.convs[0], x[3:4], out_channel=0, position=(2, 5))
    assert len(fig.axes) == 4 + 1 + 9
    _plt_close(fig)
    path2 = tmp_path / "maps.png"
    fig = plot_conv_responses(trained.convs[0], x[5], path=path2)
    _not_blank(path2)
    assert len(fig.axes) == 1 + 4
    _plt_close(fig)


def test_bad_arguments(trained, digits) -> None:
    x, _ = digits
    layer = trained.convs[0]
    with pytest.raises(TypeError, match="KANConv2d"):
        plot_conv_kernels(torch.nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="out_channels"):
        plot_conv_kernels(layer, out_channels=[7])
    with pytest.raises(ValueError, match="in_channel"):
        plot_conv_kernels(layer, in_channel=1)
    with pytest.raises(ValueError, match="position"):
        plot_conv_response(layer, x[0], position=(50, 0))
    with pytest.raises(ValueError, match="one image"):
        plot_conv_response(layer, x[:2])
    with pytest.raises(ValueError, match="must end in"):
        plot_conv_kernels(layer, path="kernels.jpeg")


def test_conv_modules_do_not_import_matplotlib() -> None:
    code = (
        "import sys, kanlens.layers.conv, kanlens.vision, kanlens.idx, kanlens.symbolic.conv\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def small_layer():
    torch.manual_seed(0)
    return KANConv2d(2, 4, 3, padding=1)


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        (np.int64(1), [1]),
        (np.uint8(3), [3]),
        (torch.tensor(2), [2]),
        (torch.tensor([0, 1]), [0, 1]),
        (np.array([3, 1], dtype=np.int32), [3, 1]),
        ([np.int64(0), torch.tensor(2)], [0, 2]),
        ((1,), [1]),
    ],
)
def test_numpy_and_torch_channel_indices(small_layer, chosen, expected) -> None:
    fig = plot_conv_kernels(small_layer, out_channels=chosen, in_channel=np.int64(1), num_points=np.int32(9))
    assert [a.get_title() for a in fig.axes if a.get_title()] == [f"filter {o}" for o in expected]
    _plt_close(fig)
    image = torch.rand(2, 6, 6)
    fig = plot_conv_responses(small_layer, image, out_channels=chosen, in_channel=torch.tensor(1))
    assert [a.get_title() for a in fig.axes[1:]] == [f"filter {o}" for o in expected]
    _plt_close(fig)


def test_single_channel_arguments_accept_integer_scalars(small_layer) -> None:
    image = torch.rand(2, 6, 6)
    fig = plot_conv_response(small_layer, image, out_channel=np.int64(3), in_channel=torch.tensor(1),
                             position=np.array([2, 4]))
    assert fig.axes[3].get_title() == "output map, filter 3"
    _plt_close(fig)
    fig = plot_conv_response(small_layer, image, out_channel=torch.tensor(0), position=(np.int64(1), torch.tensor(0)))
    assert len(fig.axes) == 4 + 1 + 9
    _plt_close(fig)


@pytest.mark.parametrize(
    ("chosen", "error", "msg"),
    [
        (True, TypeError, "out_channels must be an integer channel index, got bool"),
        ([0, False], TypeError, "out_channels must be an integer channel index, got bool"),
        (np.bool_(True), TypeError, "out_channels must be"),
        (torch.tensor([True, False]), TypeError, "out_channels must be an integer channel index"),
        (1.0, TypeError, "out_channels must be a channel index or a list of them, got float"),
        ([0.5], TypeError, "out_channels must be an integer channel index, got float"),
        (np.array([0.0, 1.0]), TypeError, "out_channels must be an integer channel index"),
        (torch.tensor([0.0, 1.0]), TypeError, "out_channels must be an integer channel index"),
        ("01", TypeError, "out_channels must be a channel index or a list of them, got str"),
        (torch.tensor([[0, 1]]), ValueError, r"1-D list of them, got shape \(1, 2\)"),
        (torch.tensor([0, 4]), ValueError, r"channel indices in \[0, 4\), got 4"),
        (np.int64(-1), ValueError, r"channel indices in \[0, 4\), got -1"),
        (torch.tensor([], dtype=torch.long), ValueError, "out_channels is empty"),
    ],
)
def test_bad_channel_indices(small_layer, chosen, error, msg) -> None:
    with pytest.raises(error, match=msg):
        plot_conv_kernels(small_layer, out_channels=chosen)
    with pytest.raises(error, match=msg):
        plot_conv_responses(small_layer, torch.rand(2, 6, 6), out_channels=chosen)


def test_bad_sizes_and_scalars_are_rejected_up_front(small_layer) -> None:
    import matplotlib.pyplot as plt

    image = torch.rand(2, 6, 6)
    before = plt.get_fignums()
    cases = [
        (dict(ncols=-1), ValueError, "ncols must be an int >= 1, got -1"),
        (dict(ncols=0), ValueError, "ncols must be an int >= 1, got 0"),
        (dict(ncols=1.5), TypeError, "ncols must be an int, got float"),
        (dict(ncols=True), TypeError, "ncols must be an int, got bool"),
        (dict(num_points=1), ValueError, "num_points must be an int >= 2"),
        (dict(num_points=-3), ValueError, "num_points must be an int >= 2"),
        (dict(panel_size=-0.4), ValueError, "panel_size must be > 0 and finite"),
        (dict(panel_size=float("inf")), ValueError, "panel_size must be > 0 and finite"),
        (dict(beta=float("nan")), ValueError, "beta must be >= 0 and finite"),
        (dict(beta="3"), TypeError, "beta must be a number, got str"),
        (dict(in_channel=0.0), TypeError, "in_channel must be an integer channel index, got float"),
        (dict(in_channel=2), ValueError, r"in_channel must be in \[0, 2\) \(channels per group\), got 2"),
        (dict(title=3), TypeError, "title must be a str or None"),
        (dict(ax="left"), TypeError, "ax must be a matplotlib Axes or None, got str"),
        (dict(path=3), TypeError, "path must be a str or os.PathLike, got int"),
    ]
    for kwargs, error, msg in cases:
        with pytest.raises(error, match=msg):
            plot_conv_kernels(small_layer, **kwargs)
    for kwargs, error, msg in [
        (dict(ncols=-1), ValueError, "ncols must be an int >= 1, got -1"),
        (dict(ncols=np.float64(2.0)), TypeError, "ncols must be an int, got float64"),
        (dict(in_channel=True), TypeError, "in_channel must be an integer channel index, got bool"),
        (dict(in_channel=-1), ValueError, r"in_channel must be in \[0, 2\), got -1"),
    ]:
        with pytest.raises(error, match=msg):
            plot_conv_responses(small_layer, image, **kwargs)
    for kwargs, error, msg in [
        (dict(out_channel=[1, 2]), TypeError, "out_channel must be an integer channel index, got list"),
        (dict(out_channel=1.0), TypeError, "out_channel must be an integer channel index, got float"),
        (dict(out_channel=4), ValueError, r"out_channel must be in \[0, 4\), got 4"),
        (dict(in_channel=0.5), TypeError, "in_channel must be an integer channel index, got float"),
        (dict(position=(1.5, 2)), TypeError, r"position must be two integers \(row, col\), got float"),
        (dict(position=3), TypeError, r"position must be an output pixel \(row, col\), got 3"),
        (dict(position=(1, 2, 3)), TypeError, r"position must be an output pixel \(row, col\)"),
        (dict(num_points=0), ValueError, "num_points must be an int >= 2"),
    ]:
        with pytest.raises(error, match=msg):
            plot_conv_response(small_layer, image, **kwargs)
    assert plt.get_fignums() == before  # nothing was drawn


def test_ncols_larger_than_the_panels_is_capped(small_layer) -> None:
    fig = plot_conv_responses(small_layer, torch.rand(2, 6, 6), out_channels=[0, 1], ncols=10**6)
    assert tuple(fig.get_size_inches()) == pytest.approx((1.7 * 3, 1.8))
    _plt_close(fig)
    fig = plot_conv_kernels(small_layer, out_channels=[0, 1], ncols=np.int64(10**6))
    assert fig.get_size_inches()[0] < 10
    _plt_close(fig)


@pytest.mark.parametrize("bad", ["kernels.jpg", "no-such-folder/kernels.png"])
def test_failed_save_leaves_no_open_figure(small_layer, tmp_path, bad) -> None:
    import matplotlib.pyplot as plt

    image = torch.rand(2, 6, 6)
    before = plt.get_fignums()
    for plot, args in [(plot_conv_kernels, ()), (plot_conv_response, (image,)), (plot_conv_responses, (image,))]:
        with pytest.raises(ValueError, match=r"must end in|does not exist"):
            plot(small_layer, *args, path=tmp_path / bad)
        assert plt.get_fignums() == before, plot.__name__
    assert list(tmp_path.iterdir()) == []
