"""Padding geometry of KAN convolutions (kanlens.layers.conv_padding) and the layer's public padding accessors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kanlens.layers.conv import KANConv1d, KANConv2d
from kanlens.layers.conv_padding import check_spatial, ntuple, output_shape, pad, padded_taps, padding_pairs


@pytest.mark.parametrize(
    ("padding", "kernel_size", "dilation", "expected"),
    [
        ("valid", (3, 5), (1, 1), ((0, 0), (0, 0))),
        ("same", (3, 4), (1, 1), ((1, 1), (1, 2))),  # nn.Conv's rule: the extra pixel goes after
        ("same", (3, 3), (2, 1), ((2, 2), (1, 1))),
        (2, (3, 3), (1, 1), ((2, 2), (2, 2))),
        ((1, 0), (3, 3), (1, 1), ((1, 1), (0, 0))),
    ],
)
def test_padding_pairs(padding, kernel_size, dilation, expected) -> None:
    assert padding_pairs(padding, kernel_size, dilation) == expected


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("spatial", [(7, 9), (4, 4)])
@pytest.mark.parametrize(("k", "s", "p", "d"), [(3, 1, 1, 1), (3, 2, 0, 1), (2, 3, 2, 2), (4, 1, "same", 1)])
def test_output_shape_and_pad_match_nn_conv2d(spatial, k, s, p, d) -> None:
    ref = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    x = torch.zeros(1, 1, *spatial)
    pairs = padding_pairs(p if isinstance(p, str) else (p, p), (k, k), (d, d))
    assert output_shape(spatial, pairs, (k, k), (s, s), (d, d)) == ref(x).shape[2:]
    padded = pad(torch.rand(1, 1, *spatial), pairs, "reflect" if max(max(pairs)) < min(spatial) else "zeros")
    assert padded.shape[2:] == tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pairs))


def test_pad_modes_and_no_padding_returns_the_input() -> None:
    x = torch.arange(4.0).view(1, 1, 4)
    assert pad(x, ((0, 0),), "reflect") is x
    torch.testing.assert_close(pad(x, ((1, 2),), "zeros"), F.pad(x, [1, 2]))
    torch.testing.assert_close(pad(x, ((1, 1),), "circular"), torch.tensor([[[3.0, 0, 1, 2, 3, 0]]]))


def test_padded_taps_mark_exactly_the_taps_that_read_padding() -> None:
    spatial, pairs, ks, st, dl = (4, 3), ((1, 1), (2, 0)), (3, 2), (1, 2), (1, 1)
    outside = padded_taps(spatial, pairs, ks, st, dl, dtype=torch.float64, device=torch.device("cpu"))
    # reference: unfold an indicator image that is 1 on padded pixels
    ind = F.pad(torch.zeros(1, 1, *spatial, dtype=torch.float64), [2, 0, 1, 1], value=1.0)
    ref = F.unfold(ind, ks, stride=st)[0]  # (prod K, prod O)
    torch.testing.assert_close(outside, ref, atol=0, rtol=0)


def test_ntuple_and_check_spatial_errors() -> None:
    assert ntuple("stride", 2, 3, 1) == (2, 2, 2)
    with pytest.raises(ValueError, match="stride must have 2 entries"):
        ntuple("stride", (1, 2, 3), 2, 1)
    with pytest.raises(TypeError, match="kernel_size must be an int or a tuple"):
        ntuple("kernel_size", 1.5, 2, 1)
    with pytest.raises(ValueError, match="larger than the padded input along spatial dim 1"):
        check_spatial((1, 1, 5, 2), ((0, 0), (0, 0)), (3, 3), (1, 1), "zeros")
    with pytest.raises(ValueError, match="padding_mode='reflect' needs padding < input size"):
        check_spatial((1, 1, 2, 9), ((2, 2), (2, 2)), (3, 3), (1, 1), "reflect")


def test_layer_accessors_are_public_and_follow_attribute_changes() -> None:
    layer = KANConv2d(2, 3, (3, 4), padding="same")
    assert layer.padding_pairs == ((1, 1), (1, 2)) == layer._pad
    layer.padding = (0, 2)
    assert layer.padding_pairs == ((0, 0), (2, 2))
    x = torch.rand(1, 2, 5, 5)
    assert layer.check_input(x) is x
    with pytest.raises(ValueError, match="expects in_channels=2"):
        layer.check_input(torch.rand(1, 3, 5, 5))
    with pytest.raises(TypeError, match=r"cast one with \.to\(\)"):
        KANConv1d(1, 1, 3).check_input(torch.rand(1, 1, 5, dtype=torch.float64))
