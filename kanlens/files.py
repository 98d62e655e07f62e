"""Files written safely: paths checked, content hashed, directories replaced atomically and flushed to disk.

Used by :mod:`kanlens.io` (checkpoints); generic enough for any folder kanlens writes where the user asks.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["as_path", "fsync_dir", "replace_dir", "sha256_file"]


def as_path(arg: str, path: object) -> Path:
    """``path`` as a ``Path``: ``TypeError`` unless a str or ``os.PathLike``, ``ValueError`` when empty (``arg``
    names the argument)."""
    if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{arg} must be a str or os.PathLike, got {type(path).__name__}")
    if str(path) == "":
        raise ValueError(f"{arg} must be a non-empty path")
    return Path(path)


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk after a rename (best effort: a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_dir(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` is moved aside first and restored if the rename fails."""
    if not (path.exists() or path.is_symlink()):
        os.replace(tmp, path)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    backup.rmdir()
    os.replace(path, backup)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(backup, path)
        raise
    shutil.rmtree(backup, ignore_errors=True)
