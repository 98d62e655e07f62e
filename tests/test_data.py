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


# ---------------------------------------------------------------------------------------------- normalisation
def test_normalizing_a_constant_output_is_refused_not_nan():
    with pytest.raises(ValueError, match="cannot normalize labels: output 0 is constant"):
        create_dataset(lambda x: torch.ones(x.shape[0], 1), 1, normalize_label=True)
    with pytest.raises(ValueError, match="cannot normalize labels: output 1 is constant"):
        create_dataset(lambda x: torch.cat([x, torch.ones_like(x)], 1), 1, normalize_label=True)
    with pytest.raises(ValueError, match="cannot normalize inputs with train_num=1"):
        create_dataset(f, 2, train_num=1, normalize_input=True)
    with pytest.raises(ValueError, match=r"overflows torch\.float32"):
        create_dataset(lambda x: 3e38 * x, 1, normalize_label=True, dtype=torch.float32)


def test_normalization_uses_training_statistics():
    ds = create_dataset(f, 2, train_num=200, test_num=100, normalize_input=True, normalize_label=True)
    for key in ("train_input", "train_label"):
        torch.testing.assert_close(ds[key].mean(0), torch.zeros(ds[key].shape[1]), atol=1e-5, rtol=0)
        torch.testing.assert_close(ds[key].std(0), torch.ones(ds[key].shape[1]), atol=1e-5, rtol=0)
    assert all(bool(torch.isfinite(v).all()) for v in ds.values())


# ---------------------------------------------------------------------------------------------- f_mode and shapes
def two_outputs_row(x):
    return torch.stack([x[0], 2 * x[1]])  # x is (n_var, batch); the result (n_out, batch)


@pytest.mark.parametrize(
    "g",
    [two_outputs_row, lambda x: torch.stack([x[0], 2 * x[1]], dim=1)],  # (n_out, batch) and pykan's (batch, n_out)
)
def test_row_mode_several_outputs(g):
    ds = create_dataset(g, 2, f_mode="row", train_num=5, test_num=7)
    for split, num in (("train", 5), ("test", 7)):
        x, y = ds[f"{split}_input"], ds[f"{split}_label"]
        assert y.shape == (num, 2) and y.is_contiguous()
        assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 1], 2 * x[:, 1])


def test_row_mode_never_transposes_by_guessing():
    # train_num == n_out: (2, 2) could be (n_out, batch) or (batch, n_out); refused instead of read one way silently
    with pytest.raises(ValueError, match=r"shape \(2, 2\) for 2 inputs with f_mode='row': ambiguous"):
        create_dataset(two_outputs_row, 2, f_mode="row", train_num=2)
    ds = create_dataset(lambda x: x[0] * x[1], 2, f_mode="row", train_num=2, test_num=3)  # (batch,) is never ambiguous
    assert torch.equal(ds["train_label"][:, 0], ds["train_input"][:, 0] * ds["train_input"][:, 1])
    with pytest.raises(ValueError, match=r"\(5,\), \(n_out, 5\) or \(5, n_out\).*got \(2, 4\)"):
        create_dataset(lambda x: x[:, :4], 2, f_mode="row", train_num=5)


def test_col_mode_rejects_transposed_outputs():
    g = lambda x: torch.stack([x[:, 0], x[:, 1]])  # noqa: E731  (n_out, batch): wrong for f_mode="col"
    with pytest.raises(ValueError, match=r"got \(2, 5\); that looks like \(n_out, batch\)"):
        create_dataset(g, 2, train_num=5, test_num=7)
    with pytest.raises(ValueError, match=r"got \(2, 7\); that looks like \(n_out, batch\)"):
        create_dataset(g, 2, train_num=2, test_num=7)  # the square training labels pass; the test split catches it
    with pytest.raises(ValueError, match="1 outputs for the training samples but 2 for the test samples"):
        create_dataset(lambda x: x[:, :1] if x.shape[0] == 5 else x, 2, train_num=5, test_num=7)


# ---------------------------------------------------------------------------------------------- argument types
def test_numpy_integers_accepted_bools_refused():
    import numpy as np

    ds = create_dataset(f, np.int64(2), train_num=np.int64(10), test_num=np.int32(4), seed=np.int64(3))
    ref = create_dataset(f, 2, train_num=10, test_num=4, seed=3)
    assert all(torch.equal(ds[k], ref[k]) for k in ref)
    with pytest.raises(TypeError, match="seed must be an int"):
        create_dataset(f, 2, seed=np.bool_(True))
    with pytest.raises(ValueError, match="train_num must be a positive int"):
        create_dataset(f, 2, train_num=True)
    with pytest.raises(ValueError, match="seed must be in"):
        create_dataset(f, 2, seed=2**70)


def test_range_collapsing_in_float32_is_refused():
    with pytest.raises(ValueError, match=r"low < high and fit in torch\.float32"):
        create_dataset(f, 2, ranges=[1.0, 1.0 + 1e-10], dtype=torch.float32)
