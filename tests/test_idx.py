"""IDX reader/writer and the MNIST-style loader, on small files made here (no ../shared needed)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from kanlens.idx import load_mnist, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_all_types(tmp_path, dtype, suffix) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / f"a-idx3{suffix}", arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    out = read_idx(path)
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out.numpy(), arr)


def test_big_endian_on_disk(tmp_path) -> None:
    write_idx(tmp_path / "b", np.array([1, 256], dtype=np.int32))
    raw = (tmp_path / "b").read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 1]) and raw[4:8] == struct.pack(">I", 2)
    assert raw[8:] == struct.pack(">ii", 1, 256)


def test_gzip_detected_by_content_not_name(tmp_path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "plain.gz", arr, compress=False)
    write_idx(tmp_path / "zipped", arr, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz").numpy(), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "zipped").numpy(), arr)


def _mnist_like(tmp_path, n=7, gz=True):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", images)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist(tmp_path, gz) -> None:
    images, labels = _mnist_like(tmp_path, gz=gz)
    x, y = load_mnist(tmp_path, split="test")
    assert x.shape == (7, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    torch.testing.assert_close(x[:, 0] * 255, torch.from_numpy(images).float())
    assert y.tolist() == labels.tolist()
    raw, _ = load_mnist(tmp_path, normalize=False)
    assert float(raw.max()) == float(images.max())


def test_load_mnist_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="did you mean 'train'"):
        load_mnist(tmp_path, split="trian")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="expected 5 labels"):
        load_mnist(tmp_path)


def test_truncated_and_corrupt_files(tmp_path) -> None:
    path = write_idx(tmp_path / "x", np.zeros((4, 5), np.uint8))
    good = path.read_bytes()
    cases = {
        "trunc_data": (good[:-3], "truncated: header says shape"),
        "trunc_header": (good[:6], "truncated inside its header"),
        "tiny": (good[:2], "too short"),
        "trailing": (good + b"\x00\x00", "trailing bytes"),
        "magic": (b"\x01" + good[1:], "not an IDX file"),
        "type": (good[:2] + b"\x07" + good[3:], "not an IDX file"),
        "ndim0": (good[:3] + b"\x00", "0 dimensions"),
        "gz_trunc": (gzip.compress(good)[:-9], "corrupt or truncated gzip"),
        "gz_garbage": (b"\x1f\x8b" + b"garbage" * 3, "corrupt or truncated gzip"),
    }
    for name, (blob, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(ValueError, match=msg):
            read_idx(p)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_idx(tmp_path / "missing")


def test_write_idx_rejects_bad_dtype(tmp_path) -> None:
    with pytest.raises(TypeError, match="unsupported dtype"):
        write_idx(tmp_path / "c", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "d", np.float32(1.0))
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("code", "dims"),
    [(0x08, (65536, 65536, 65536, 65536, 1)), (0x0E, (2**32 - 1,) * 4)],  # products overflow int64
)
def test_crafted_huge_header_is_reported_as_truncated(tmp_path, code, dims) -> None:
    path = tmp_path / "crafted-idx"
    path.write_bytes(struct.pack(f">HBB{len(dims)}I", 0, code, len(dims), *dims))
    with pytest.raises(ValueError, match=r"crafted-idx' is truncated: header says shape") as info:
        read_idx(path)
    assert "trailing" not in str(info.value)


def test_write_idx_missing_folder_names_the_folder(tmp_path) -> None:
    target = tmp_path / "no-such-folder" / "a-idx1"
    with pytest.raises(FileNotFoundError, match="no-such-folder") as info:
        write_idx(target, np.zeros(3, np.uint8))
    assert ".tmp" not in str(info.value) and str(target) in str(info.value)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        write_idx(tmp_path, np.zeros(3, np.uint8), overwrite=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.int64, torch.bool, torch.complex64])
def test_write_idx_unsupported_torch_dtype(tmp_path, dtype) -> None:
    with pytest.raises(TypeError, match=r"unsupported dtype torch\.\w+; use one of uint8, int8"):
        write_idx(tmp_path / "t", torch.ones(3, dtype=dtype))
    assert list(tmp_path.iterdir()) == []


def test_write_idx_does_not_overwrite_without_asking(tmp_path) -> None:
    first, second = np.arange(4, dtype=np.uint8), np.arange(6, dtype=np.int16)
    path = write_idx(tmp_path / "a-idx1", first)
    with pytest.raises(FileExistsError, match=r"a-idx1' already exists; pass overwrite=True"):
        write_idx(path, second)
    np.testing.assert_array_equal(read_idx(path).numpy(), first)  # untouched
    assert write_idx(path, second, overwrite=True) == path
    np.testing.assert_array_equal(read_idx(path).numpy(), second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-idx1"]  # no temp files left


def test_load_mnist_integer_dtype_needs_normalize_false(tmp_path) -> None:
    images, _ = _mnist_like(tmp_path)
    with pytest.raises(ValueError, match=r"floating dtype, got torch\.uint8; pass normalize=False"):
        load_mnist(tmp_path, dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"dtype must be a torch\.dtype"):
        load_mnist(tmp_path, dtype="float32")
    x, _ = load_mnist(tmp_path, dtype=torch.uint8, normalize=False)
    assert x.dtype == torch.uint8
    np.testing.assert_array_equal(x[:, 0].numpy(), images)
    assert load_mnist(tmp_path, dtype=torch.float64)[0].dtype == torch.float64


@pytest.mark.parametrize(
    ("labels", "msg"),
    [
        (np.array([0.7, 1.7, 2.0], np.float32), "labels must be integers, the file stores torch.float32"),
        (np.array([1.0, 2.0, 3.0], np.float64), "labels must be integers, the file stores torch.float64"),
        (np.array([3, -2, 1], np.int8), "labels must be >= 0, the file has label -2"),
        (np.array([3, -7, 1], np.int32), "labels must be >= 0, the file has label -7"),
    ],
)
def test_load_mnist_rejects_bad_labels(tmp_path, labels, msg) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte': " + msg):
        load_mnist(tmp_path)


def test_load_mnist_accepts_wide_integer_labels(tmp_path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 25, 46], np.int32))  # e.g. EMNIST classes
    assert load_mnist(tmp_path)[1].tolist() == [0, 25, 46]
