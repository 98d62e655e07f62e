"""Conv figures: PNGs are written only when asked, are not blank, and have the expected panels."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from kanlens.layers.conv import KANConv2d  # noqa: E402
from kanlens.models import KANConvNet, train_classifier  # noqa: E402
from kanlens.plotting.conv import plot_conv_kernels, plot_conv_response, plot_conv_responses  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target, dtype=torch.long)


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
        "import sys, kanlens.layers.conv, kanlens.models, kanlens.idx, kanlens.conv_symbolic\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
