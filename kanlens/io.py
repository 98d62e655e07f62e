"""Checkpoints: a directory with ``config.json`` and ``tensors.pt`` (a state dict loaded with ``weights_only=True``).

No pickle of Python objects, never the training data. Writes are atomic (temporary directory + rename) and an
existing checkpoint is never overwritten unless ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .model import KAN

__all__ = ["FORMAT_VERSION", "load", "save"]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSORS_FILE = "tensors.pt"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(model: KAN, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to the directory ``path`` atomically.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    from . import __version__

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
        extra = {k: v for k, v in model.state_dict().items() if not isinstance(v, torch.Tensor)}
        torch.save({"tensors": state, "extra": extra}, tmp / TENSORS_FILE)
        meta: dict[str, Any] = {
            "format": "kanlens-checkpoint",
            "format_version": FORMAT_VERSION,
            "kanlens_version": __version__,
            "config": model.config.to_dict(),
            "tensors_sha256": _sha256(tmp / TENSORS_FILE),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        if path.exists():
            backup = path.with_name(f".{path.name}.old")
            os.replace(path, backup)
            os.replace(tmp, path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def load(path: str | os.PathLike, *, map_location: torch.device | str | None = None) -> KAN:
    """Load a checkpoint written by :func:`save`; corrupt or foreign files raise ``ValueError`` naming the file."""
    from .model import KAN, KANConfig

    path = Path(path)
    cfg_path, ten_path = path / CONFIG_FILE, path / TENSORS_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"no kanlens checkpoint directory at {path}")
    for p in (cfg_path, ten_path):
        if not p.is_file():
            raise ValueError(f"checkpoint {path} is incomplete: missing {p.name}")
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != "kanlens-checkpoint":
        raise ValueError(f"{cfg_path}: not a kanlens checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{cfg_path}: unsupported format_version {meta.get('format_version')!r} (this kanlens reads "
            f"{FORMAT_VERSION})"
        )
    if meta.get("tensors_sha256") != _sha256(ten_path):
        raise ValueError(f"{ten_path}: checksum mismatch (file truncated, corrupted or modified)")
    try:
        config = KANConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{cfg_path}: invalid config ({e})") from None
    try:
        blob = torch.load(ten_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{ten_path}: cannot be read as a weights-only tensor file ({type(e).__name__})") from None
    if not isinstance(blob, dict) or "tensors" not in blob:
        raise ValueError(f"{ten_path}: unexpected content")
    model = KAN(config=config)
    state = dict(blob["tensors"])
    state.update(blob.get("extra", {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{ten_path}: tensors do not match the config ({str(e).splitlines()[0]})") from None
    if map_location is not None:
        model.to(map_location)
    return model
