"""pykan's checkpoint vocabulary (``saveckpt``, ``loadckpt``, versions, ``rewind``, ``checkout``, ``history``) on
kanlens's safe format (:mod:`kanlens.io`: JSON + tensors, no pickle).

pykan saves a new version into ``./model`` after every change (``auto_save=True`` by default). kanlens writes only
where you ask: versions are kept once you name a folder with :func:`track`; then ``fit`` and the in-place edits of
:mod:`kanlens.surgery` (``prune_edge``, ``remove_edge``, ``swap``, ``perturb``...) save a version each, and
:func:`log_history` (``model.log_history("note")``) saves one by hand. Methods that return a new model
(``prune``, ``refine``, ``auto_symbolic``'s edits) do not log by themselves. Version ids are pykan's
``"round.state"`` strings; each version is the checkpoint folder ``{ckpt_path}/{round}.{state}`` and
``{ckpt_path}/history.txt`` holds pykan's log lines (``0.0 => fit => 0.1``).

Example:
    >>> track(model, "runs/a")            # version 0.0 written
    >>> model.fit(dataset, steps=20)      # 0.1 (history.txt: "0.0 => fit => 0.1")
    >>> old = model.rewind("0.0")         # round 1 starts from version 0.0, saved as 1.0
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ._checks import as_int

if TYPE_CHECKING:
    from .model import KAN

__all__ = ["checkout", "history", "loadckpt", "log_history", "rewind", "saveckpt", "track"]


def saveckpt(model: KAN, path: str | os.PathLike = "model", *, overwrite: bool = False) -> Path:
    """pykan's ``saveckpt``: :func:`kanlens.io.save` to the folder ``path`` (refuses to overwrite unless asked)."""
    from .io import save

    return save(model, path, overwrite=overwrite)


def loadckpt(path: str | os.PathLike = "model") -> KAN:
    """pykan's ``KAN.loadckpt``: :func:`kanlens.io.load`."""
    from .io import load

    return load(path)


def _folder(model: KAN) -> Path:
    folder = getattr(model, "ckpt_path", None)
    if folder is None:
        raise ValueError("this model keeps no versions: name a folder first, track(model, 'runs/a') or "
                         "model.ckpt_path = 'runs/a' (kanlens writes files only where you ask)")
    return Path(folder)


def _state(model: KAN) -> tuple[int, int]:
    return int(getattr(model, "round", 0)), int(getattr(model, "state_id", 0))


def _write_version(model: KAN) -> Path:
    from .io import save

    r, s = _state(model)
    return save(model, _folder(model) / f"{r}.{s}")


def _append(model: KAN, line: str) -> None:
    folder = _folder(model)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "history.txt", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def track(model: KAN, folder: str | os.PathLike) -> KAN:
    """Keep pykan-style versions of ``model`` in ``folder`` (created; must not hold versions yet): writes version
    ``0.0`` now; later versions are written by :func:`log_history`. Returns ``model``."""
    folder = Path(folder)
    if (folder / "history.txt").exists():
        raise FileExistsError(f"{folder} already holds versions (history.txt); pick a new folder")
    model.ckpt_path = str(folder)
    model.round, model.state_id = 0, 0
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "history.txt").touch()
    _write_version(model)
    return model


def log_history(model: KAN, method_name: str) -> None:
    """pykan's ``log_history``: record ``method_name`` and save the model as the next version. Does nothing when
    the model has no version folder (pykan's ``auto_save=False``)."""
    if getattr(model, "ckpt_path", None) is None:
        return
    r, s = _state(model)
    if not (_folder(model) / f"{r}.{s}").exists():
        _write_version(model)
    _append(model, f"{r}.{s} => {method_name} => {r}.{s + 1}")
    model.state_id = s + 1
    _write_version(model)


def _parse(model_id: str) -> tuple[int, int]:
    parts = str(model_id).split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"model_id must look like '0.3' (round.state), got {model_id!r}")
    return int(parts[0]), int(parts[1])


def checkout(model: KAN, model_id: str) -> KAN:
    """pykan's ``checkout``: the saved version ``model_id`` (the version folder is unchanged)."""
    r, s = _parse(model_id)
    path = _folder(model) / f"{r}.{s}"
    new = loadckpt(path)
    new.ckpt_path, new.round, new.state_id = str(_folder(model)), r, s
    return new


def rewind(model: KAN, model_id: str) -> KAN:
    """pykan's ``rewind``: version ``model_id`` becomes the start of a new round (``{round + 1}.{state}``), saved
    and logged (``### Round n ###``); returns it."""
    _, s = _parse(model_id)
    new = checkout(model, model_id)
    new.round, new.state_id = _state(model)[0] + 1, s
    _append(model, f"### Round {new.round} ###")
    _write_version(new)
    return new


def history(model: KAN, k: int | str = "all") -> list[str]:
    """pykan's ``history``: the last ``k`` lines of ``history.txt`` (returned; pykan prints them)."""
    path = _folder(model) / "history.txt"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if k == "all":
        return lines
    k = as_int("k", k, 0)
    return lines[-k:] if k else []
