"""Reading and writing IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw.

Nothing is ever downloaded: the user passes the path. Compression is detected from the file's magic bytes, not
its name. Corrupt, truncated or oversized files raise ``ValueError`` naming the file and what is wrong.

IDX layout: two zero bytes, a type code, the number of dimensions ``n``, ``n`` big-endian uint32 sizes, then the
data in big-endian C order.

Example:
    >>> images, labels = load_mnist("data/mnist", split="test")   # doctest: +SKIP
    >>> images.shape, labels.shape  # doctest: +SKIP
    (torch.Size([10000, 1, 28, 28]), torch.Size([10000]))
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ._checks import check_choice
from .utils import usual_permissions

__all__ = ["MNIST_FILES", "load_mnist", "read_idx", "write_idx"]

_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(v).newbyteorder("=") if v.itemsize > 1 else v: k for k, v in _TYPES.items()}
_TORCH_TYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.float32, torch.float64)
_SUPPORTED = "uint8, int8, int16, int32, float32, float64"
_GZIP_MAGIC = b"\x1f\x8b"

#: File names of the MNIST-style splits (a ``.gz`` suffix is also accepted).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {str(path)!r}")
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{str(path)!r} is a corrupt or truncated gzip file ({exc})") from None


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read one IDX file (raw or gzip) into a tensor of its stored type (uint8 images stay uint8).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: bad magic number / type code, or a size that does not match the header.

    Shapes:
        returns the shape stored in the header, e.g. ``(10000, 28, 28)`` for MNIST images.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{str(path)!r} is too short to be an IDX file ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _TYPES:
        raise ValueError(
            f"{str(path)!r} is not an IDX file (magic bytes {data[:4].hex()}; expected 0000 then a type code in "
            f"{[hex(c) for c in _TYPES]})"
        )
    if ndim == 0:
        raise ValueError(f"{str(path)!r}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{str(path)!r} is truncated inside its header ({len(data)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _TYPES[code]
    count = math.prod(dims)  # a Python int: a crafted header cannot overflow it
    expected = header + count * dtype.itemsize
    if len(data) < expected:
        raise ValueError(
            f"{str(path)!r} is truncated: header says shape {dims} ({expected} bytes), the file has {len(data)} bytes"
        )
    if len(data) > expected:
        raise ValueError(
            f"{str(path)!r} has {len(data) - expected} unexpected trailing bytes after shape {dims}; corrupt file?"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return torch.from_numpy(arr.astype(dtype.newbyteorder("="), copy=True))


def write_idx(
    path: str | os.PathLike,
    array: torch.Tensor | np.ndarray,
    *,
    compress: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``array`` as an IDX file (atomically: temp file then rename). Gzip when ``compress`` or the name ends
    in ``.gz``. Supported dtypes: uint8, int8, int16, int32, float32, float64.

    Raises:
        TypeError: an unsupported dtype.
        FileNotFoundError: the folder of ``path`` does not exist.
        FileExistsError: ``path`` exists and ``overwrite`` is false (nothing saved is replaced without asking).
    """
    path = Path(path)
    if isinstance(array, torch.Tensor):
        if array.dtype not in _TORCH_TYPES:
            raise TypeError(f"write_idx: unsupported dtype {array.dtype}; use one of {_SUPPORTED}")
        arr = array.detach().cpu().numpy()
    else:
        arr = np.asarray(array)
    native = arr.dtype.newbyteorder("=") if arr.dtype.itemsize > 1 else arr.dtype
    if native not in _CODES:
        raise TypeError(f"write_idx: unsupported dtype {arr.dtype}; use one of {_SUPPORTED}")
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"write_idx: array must have 1 to 255 dimensions, got {arr.ndim}")
    if max(arr.shape) > 0xFFFFFFFF:
        raise ValueError(f"write_idx: IDX sizes are uint32; shape {arr.shape} does not fit")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"write_idx: folder {str(folder)!r} of {str(path)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"write_idx: {str(path)!r} is a folder, not a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"write_idx: {str(path)!r} already exists; pass overwrite=True to replace it")
    code = _CODES[native]
    payload = struct.pack(f">HBB{arr.ndim}I", 0, code, arr.ndim, *arr.shape)
    payload += np.ascontiguousarray(arr, dtype=_TYPES[code]).tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        payload = gzip.compress(payload, mtime=0)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        usual_permissions(tmp, directory=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{stem}[.gz] not found in {str(root)!r} (nothing is downloaded; pass the folder)")


def load_mnist(
    root: str | os.PathLike,
    split: str = "test",
    *,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST-style split (MNIST, Fashion-MNIST, KMNIST...) from IDX files in ``root``.

    Args:
        root: folder holding ``t10k-images-idx3-ubyte[.gz]`` etc.
        split: ``"train"`` or ``"test"``.
        normalize: scale pixels to ``[0, 1]`` (else raw 0..255 values in ``dtype``).
        dtype: of the images; a floating dtype when ``normalize`` (integer dtypes need ``normalize=False``).

    Raises:
        FileNotFoundError: a file is missing (nothing is downloaded).
        ValueError: a corrupt file, images and labels that do not match, labels that are not non-negative
            integers, or an integer ``dtype`` with ``normalize=True``.

    Shapes:
        returns images ``(N, 1, H, W)`` and int64 labels ``(N,)``.
    """
    check_choice("split", split, MNIST_FILES)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"load_mnist: dtype must be a torch.dtype, got {type(dtype).__name__}")
    if normalize and not dtype.is_floating_point:
        raise ValueError(
            f"load_mnist: normalize=True scales pixels to [0, 1], which needs a floating dtype, got {dtype}; "
            "pass normalize=False for raw 0..255 values"
        )
    root = Path(root)
    img_path, lbl_path = (_find(root, stem) for stem in MNIST_FILES[split])
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3:
        raise ValueError(f"{str(img_path)!r}: expected images of shape (N, H, W), got {tuple(images.shape)}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{str(lbl_path)!r}: expected {images.shape[0]} labels for {images.shape[0]} images, got shape "
            f"{tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise ValueError(f"{str(lbl_path)!r}: labels must be integers, the file stores {labels.dtype}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"{str(lbl_path)!r}: labels must be >= 0, the file has label {int(labels.min())}")
    x = images.to(dtype).unsqueeze(1)
    if normalize:
        x = x / 255.0
    return x, labels.long()
