"""create_dataset: pykan's dict, shapes, ranges, determinism, validation."""

import pytest
import torch

from kanlens import create_dataset


def f(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def test_shapes_ranges_and_labels():
    ds = create_dataset(f, n_var=2, ranges=[[0, 1], [-2, -1]], train_num=100, test_num=50, seed=1)
    assert ds["train_input"].shape == (100, 2) and ds["test_label"].shape == (50, 1)
    x = ds["train_input"]
    assert x[:, 0].min() >= 0 and x[:, 0].max() <= 1 and x[:, 1].min() >= -2 and x[:, 1].max() <= -1
    torch.testing.assert_close(ds["train_label"], f(x))


def test_seed_determinism_and_no_global_rng_use():
    state = torch.random.get_rng_state()
    a, b = create_dataset(f, 2, seed=5), create_dataset(f, 2, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a["train_input"], b["train_input"])
    assert not torch.equal(a["train_input"], create_dataset(f, 2, seed=6)["train_input"])


def test_dtype_and_1d_labels():
    ds = create_dataset(lambda x: x[:, 0] * 2, n_var=1, dtype=torch.float64, train_num=10, test_num=10)
    assert ds["train_label"].shape == (10, 1) and ds["train_label"].dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_var": 0}, "n_var"),
        ({"n_var": 2, "ranges": [1, -1]}, "low < high"),
        ({"n_var": 2, "ranges": [[0, 1]] * 3}, "shape"),
        ({"n_var": 2, "train_num": 0}, "train_num"),
        ({"n_var": 2, "f_mode": "column"}, "did you mean 'col'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_dataset(f, **kwargs)


def test_nonfinite_labels_rejected():
    with pytest.raises(ValueError, match="NaN or Inf"):
        create_dataset(lambda x: torch.log(x[:, [0]]), n_var=1, ranges=[-1, 1])
