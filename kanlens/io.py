"""Checkpoints: a directory with ``config.json`` and ``tensors.pt``; nothing is ever unpickled.

Layout of a checkpoint directory::

    config.json   format + format_version, kanlens/torch versions, the full KANConfig, widths, input names/ids,
                  symbolic function *names* with their affine constants, non-tensor module state, which parameters
                  are trainable, a manifest of the tensors (shape, dtype, size, sha256) and a checksum of itself
    tensors.pt    ``torch.save`` of a flat ``{name: tensor}`` state dict, read back with ``weights_only=True``

Safety properties (tested in ``tests/test_io.py`` and ``tests/test_faults.py``):

* writes are atomic: everything goes to a temporary directory next to ``path`` that is renamed into place, so a
  crash or an error mid-save leaves either the old checkpoint or nothing, never a mix;
* an existing path is replaced only with ``overwrite=True``, and only if it *is* a kanlens checkpoint (a file or a
  directory with other content is never deleted);
* loading checks sizes and SHA-256 checksums *before* parsing the tensors, then parses them with torch's
  weights-only unpickler (which refuses to build arbitrary objects), so a truncated, bit-flipped or tampered file
  (e.g. a pickle payload) raises :class:`CheckpointError` -- a ``ValueError`` naming the file and the problem --
  without executing anything; loading never writes;
* symbolic edges are saved by function name; loading a name that the library does not know explains how to
  register it (``load(path, library=lib)``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._checks import check_device
from .files import as_path, fsync_dir, replace_dir, sha256_file
from .utils import usual_permissions

if TYPE_CHECKING:
    from .model import KAN
    from .symbolic.library import SymbolicLibrary

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "TENSORS_FILE",
    "CheckpointError",
    "CheckpointNotFoundError",
    "load",
    "read_config",
    "save",
]

FORMAT = "kanlens-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSORS_FILE = "tensors.pt"
_CHECKPOINT_FILES = frozenset({CONFIG_FILE, TENSORS_FILE})
_MAX_CONFIG_BYTES = 64 * 1024 * 1024  # a config.json bigger than this is not ours
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's (zip) format; anything else is refused before torch.load sees it


class CheckpointError(ValueError):
    """A checkpoint cannot be read: the message names the file and the problem. Nothing was executed or written."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at the given path (both a ``ValueError`` and a ``FileNotFoundError``)."""


# ---------------------------------------------------------------------------------------------- helpers
def _meta_checksum(meta: Mapping[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def _tensor_dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _is_checkpoint_dir(path: Path) -> bool:
    """A directory holding only checkpoint files, whose config.json (if any) says it is a kanlens checkpoint."""
    if not path.is_dir() or path.is_symlink():
        return False
    names = {p.name for p in path.iterdir()}
    if not names <= _CHECKPOINT_FILES:
        return False
    if CONFIG_FILE in names:
        try:
            with open(path / CONFIG_FILE, "rb") as f:
                meta = json.loads(f.read(_MAX_CONFIG_BYTES))
        except (OSError, ValueError):
            return False
        return isinstance(meta, dict) and meta.get("format") == FORMAT
    return True


# ---------------------------------------------------------------------------------------------- save
def _symbolic_section(model: KAN) -> tuple[list[dict[str, Any]], list[str]]:
    """Per layer: function names ``[out][in]`` and the fixed edges with their ``(a, b, c, d)``; custom names."""
    from .symbolic.library import default_library

    builtin = set(default_library(special=True).names)
    layers, custom = [], set()
    for l, sym in enumerate(model.symbolic):
        names = sym.function_names()
        aff = sym.affine.detach().cpu().double()
        edges = []
        for i, j in sym.fixed_edges():
            edges.append({"i": i, "j": j, "name": names[j][i], "affine": [float(v) for v in aff[j, i]]})
            if names[j][i] not in builtin:
                custom.add(names[j][i])
        layers.append({"layer": l, "function_names": names, "edges": edges})
    return layers, sorted(custom)


def _json_state(key: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot save module state {key!r}: it is not JSON-serialisable ({e})") from None


def _build_meta(model: KAN, tensors: dict[str, torch.Tensor], tensors_path: Path) -> dict[str, Any]:
    from . import __version__

    cfg = model.config.to_dict()
    state = model.state_dict()
    extra = {k: _json_state(k, v) for k, v in state.items() if not isinstance(v, torch.Tensor)}
    symbolic, custom = _symbolic_section(model)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kanlens_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "model_class": type(model).__name__,
        "config": cfg,
        "width": list(model.width),
        "input_names": cfg.get("input_names"),
        "input_ids": cfg.get("input_ids"),
        "symbolic": symbolic,
        "custom_symbolic_functions": custom,
        "extra_state": extra,
        "requires_grad": {n: bool(p.requires_grad) for n, p in model.named_parameters()},
        "tensors": {
            "file": TENSORS_FILE,
            "bytes": tensors_path.stat().st_size,
            "sha256": sha256_file(tensors_path),
            "entries": {k: {"shape": list(v.shape), "dtype": _tensor_dtype(v.dtype)} for k, v in tensors.items()},
        },
    }
    meta["checksum"] = _meta_checksum(meta)
    return meta


def save(
    model: KAN,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    allow_nonfinite: bool = False,
) -> Path:
    """Write ``model`` to the checkpoint directory ``path`` atomically.

    Args:
        model: the :class:`~kanlens.model.KAN` to save.
        path: directory to create (its parent is created if needed).
        overwrite: replace an existing checkpoint at ``path``. Even then, only a kanlens checkpoint directory is
            replaced: a file or a directory with other content is never deleted.
        allow_nonfinite: save a model with NaN/Inf parameters (refused by default, so a broken model never
            replaces a good checkpoint by accident).

    Returns:
        The checkpoint path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False, or it is not a kanlens checkpoint.
        ValueError: the model has non-finite parameters and ``allow_nonfinite`` is False.

    Example:
        >>> save(model, "runs/model_ckpt")
        >>> model2 = load("runs/model_ckpt")
    """
    from .model import KAN

    if not isinstance(model, KAN):
        raise TypeError(f"model must be a kanlens KAN, got {type(model).__name__}")
    if _tensor_dtype(model.dtype) != model.config.dtype:
        raise TypeError(f"checkpoints store float32 or float64 models; this one is {model.dtype}: cast it with "
                        "model.float() or model.double() before saving")
    path = as_path("path", path)
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"path {path} already exists; pass overwrite=True to replace the checkpoint")
        if not _is_checkpoint_dir(path):
            raise FileExistsError(
                f"path {path} exists and is not a kanlens checkpoint directory; refusing to replace it even with "
                "overwrite=True (choose another path or remove it yourself)"
            )
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()
               if isinstance(v, torch.Tensor)}
    if not allow_nonfinite:
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise ValueError(
                f"model has non-finite values in {bad[:5]}; refusing to save (pass allow_nonfinite=True to save anyway)"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    usual_permissions(tmp, directory=True)
    try:
        torch.save(tensors, tmp / TENSORS_FILE)
        meta = _build_meta(model, tensors, tmp / TENSORS_FILE)
        with open(tmp / CONFIG_FILE, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        with open(tmp / TENSORS_FILE, "rb+") as f:
            os.fsync(f.fileno())
        replace_dir(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


# ---------------------------------------------------------------------------------------------- load
def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The verified ``config.json`` of a checkpoint as a dict (checksum and format checked; tensors not read)."""
    path = as_path("path", path)
    _check_dir(path)
    return _read_meta(path / CONFIG_FILE)


def _check_dir(path: Path) -> None:
    if not path.exists():
        raise CheckpointNotFoundError(f"no kanlens checkpoint at {path} (path does not exist)")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file, not a kanlens checkpoint directory (expected {CONFIG_FILE} and "
                              f"{TENSORS_FILE} inside)")


def _read_meta(cfg_path: Path) -> dict[str, Any]:
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: missing file; the checkpoint is incomplete")
    size = cfg_path.stat().st_size
    if size > _MAX_CONFIG_BYTES:
        raise CheckpointError(f"{cfg_path}: {size} bytes is far too large for a kanlens config")
    try:
        meta = json.loads(cfg_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON, the file is truncated or corrupted ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: not a kanlens checkpoint (no \"format\": \"{FORMAT}\")")
    version = meta.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        hint = (f"it was written by a newer kanlens ({meta.get('kanlens_version')!r}); upgrade kanlens"
                if newer else "this kanlens cannot read it")
        raise CheckpointError(
            f"{cfg_path}: unsupported format_version {version!r} (this kanlens reads {FORMAT_VERSION}); {hint}"
        )
    try:
        expected = _meta_checksum(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: invalid content ({e})") from None
    if meta.get("checksum") != expected:
        raise CheckpointError(f"{cfg_path}: checksum mismatch, the file was corrupted or edited after saving")
    for key, kind in (("config", dict), ("tensors", dict), ("symbolic", list), ("extra_state", dict),
                      ("requires_grad", dict)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{cfg_path}: field {key!r} is missing or not a {kind.__name__}")
    return meta


def _read_tensors(ten_path: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Verify size, checksum and magic, then parse with the weights-only unpickler; compare with the manifest."""
    if not ten_path.is_file():
        raise CheckpointError(f"{ten_path}: missing file; the checkpoint is incomplete")
    size = ten_path.stat().st_size
    if size != manifest.get("bytes"):
        what = "truncated" if isinstance(manifest.get("bytes"), int) and size < manifest["bytes"] else "wrong size"
        raise CheckpointError(f"{ten_path}: {what}: {size} bytes on disk, {manifest.get('bytes')!r} when saved")
    if sha256_file(ten_path) != manifest.get("sha256"):
        raise CheckpointError(f"{ten_path}: checksum mismatch, the file was corrupted or modified after saving")
    with open(ten_path, "rb") as f:
        magic = f.read(len(_ZIP_MAGIC))
    if magic != _ZIP_MAGIC:
        raise CheckpointError(f"{ten_path}: not a torch tensor archive (refusing to parse a raw pickle)")
    try:
        blob = torch.load(ten_path, map_location="cpu", weights_only=True)
    # torch.load raises many types on hostile input (UnpicklingError, RuntimeError, EOFError, zipfile errors, ...);
    # all of them mean "not a valid tensor file", and weights_only=True guarantees nothing was executed.
    except Exception as e:
        raise CheckpointError(
            f"{ten_path}: cannot be read as a weights-only tensor file ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''})"
        ) from None
    if not isinstance(blob, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                             for k, v in blob.items()):
        raise CheckpointError(f"{ten_path}: unexpected content (expected a flat dict of named tensors)")
    entries = manifest.get("entries")
    if not isinstance(entries, dict) or set(entries) != set(blob):
        raise CheckpointError(f"{ten_path}: tensor names do not match the manifest in {CONFIG_FILE}")
    for k, v in blob.items():
        e = entries[k]
        if not isinstance(e, dict) or e.get("shape") != list(v.shape) or e.get("dtype") != _tensor_dtype(v.dtype):
            raise CheckpointError(f"{ten_path}: tensor {k!r} does not match the manifest in {CONFIG_FILE}")
    return blob


def _config_from_meta(cfg_path: Path, meta: dict[str, Any], total_numel: int):
    from .model import KANConfig

    try:
        config = KANConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: invalid config ({e})") from None
    from .layers.mult import node_layout

    w, grid, k = config.width, config.grid, config.k
    try:  # plain ints, or [n_sum, n_mult] entries checked against mult_arity
        layout = node_layout(w, config.mult_arity) if isinstance(w, list) else None
    except (TypeError, ValueError):
        layout = None
    ok = (layout is not None and all(isinstance(v, list) or (type(v) is int) for v in w)
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (grid, k)))
    if not ok:
        raise CheckpointError(f"{cfg_path}: invalid config (width={w!r}, mult_arity={config.mult_arity!r}, "
                              f"grid={grid!r}, k={k!r})")
    if meta.get("width") != w:
        raise CheckpointError(f"{cfg_path}: 'width' {meta.get('width')!r} disagrees with config width {w!r}")
    # The spline coefficients alone need sum w_l * w_{l+1} * (grid + k) numbers (nodes in, subnodes out): refuse
    # before allocating a model that the tensor file cannot possibly fill (a tampered width must not exhaust memory).
    implied = sum(a * b for a, b in zip(layout.width_in[:-1], layout.width_out[1:])) * (grid + k)
    if implied > total_numel:
        raise CheckpointError(
            f"{cfg_path}: config (width={w}, grid={grid}, k={k}) needs {implied} spline coefficients but "
            f"{TENSORS_FILE} holds only {total_numel} numbers (mismatched shape)"
        )
    return config


def _resolve_map_location(map_location: object) -> torch.device | None:
    if map_location is None:
        return None
    if not isinstance(map_location, (str, torch.device)):
        raise TypeError(f"map_location must be a str or torch.device, got {type(map_location).__name__}")
    return check_device(map_location, "map_location")  # a clear error for a device this machine lacks


def _merged_library(base: SymbolicLibrary, extra: SymbolicLibrary) -> SymbolicLibrary:
    """``base`` plus every function of ``extra`` (``extra`` wins on equal names)."""
    fixed = {"name", "torch_fn", "sympy_fn", "complexity", "safe_fn"}
    lib = base.copy()
    for fn in extra.values():
        props = {f.name: getattr(fn, f.name) for f in dataclasses.fields(fn) if f.name not in fixed}
        lib.register(fn.name, fn.torch_fn, fn.sympy_fn, fn.complexity, fn.safe_fn, **props)
    return lib


def _set_libraries(model: KAN, library: SymbolicLibrary | None, meta: dict[str, Any], cfg_path: Path) -> None:
    """Give every symbolic layer ``library`` and check every saved function name resolves, with a helpful error."""
    from .symbolic.library import SymbolicLibrary

    if library is not None:
        if not isinstance(library, SymbolicLibrary):
            raise TypeError(f"library must be a kanlens SymbolicLibrary or None, got {type(library).__name__}")
        for sym in model.symbolic:
            sym.library = _merged_library(sym.library, library)
    for entry in meta["symbolic"]:
        names = entry.get("function_names") if isinstance(entry, dict) else None
        l = entry.get("layer") if isinstance(entry, dict) else None
        if not (isinstance(l, int) and 0 <= l < model.depth and isinstance(names, list)):
            raise CheckpointError(f"{cfg_path}: malformed 'symbolic' entry {str(entry)[:100]}")
        # the layer's saved state may also list functions that no edge uses any more (its function_list)
        extra = meta["extra_state"].get(f"symbolic.{l}._extra_state")
        listed = extra.get("function_list") if isinstance(extra, dict) else None
        flat = [n for row in names for n in (row if isinstance(row, list) else [row])]
        flat += listed if isinstance(listed, list) else []
        lib = model.symbolic[l].library
        for name in dict.fromkeys(flat):
            if not isinstance(name, str):
                raise CheckpointError(f"{cfg_path}: symbolic function names must be strings, got {name!r}")
            if name not in lib:
                raise CheckpointError(
                    f"{cfg_path}: layer {l} uses symbolic function {name!r}, which is not in the library. "
                    "Register it and pass the library when loading, e.g. "
                    "lib = kanlens.symbolic.default_library(special=True); "
                    f"lib.register({name!r}, torch_fn, sympy_fn, complexity); "
                    "model = kanlens.load(path, library=lib)"
                )


def load(
    path: str | os.PathLike,
    *,
    map_location: torch.device | str | None = None,
    library: SymbolicLibrary | None = None,
) -> KAN:
    """Load a checkpoint written by :func:`save` (never unpickles objects; never writes).

    Args:
        path: the checkpoint directory.
        map_location: device to put the model on (default: CPU).
        library: :class:`~kanlens.symbolic.library.SymbolicLibrary` holding any custom symbolic functions the
            model uses (default: the built-in library with the special functions).

    Raises:
        CheckpointNotFoundError: nothing at ``path`` (a ``ValueError`` and a ``FileNotFoundError``).
        CheckpointError: a ``ValueError`` naming the file and the problem: missing file, truncated or corrupted
            content, a tampered tensor file, an unsupported ``format_version``, shapes that do not match the
            config, an unregistered symbolic function.

    Example:
        >>> model = load("runs/model_ckpt", map_location="cpu")
    """
    from .model import KAN

    path = as_path("path", path)
    device = _resolve_map_location(map_location)
    _check_dir(path)
    cfg_path, ten_path = path / CONFIG_FILE, path / TENSORS_FILE
    meta = _read_meta(cfg_path)
    if meta.get("tensors", {}).get("file") != TENSORS_FILE:
        raise CheckpointError(f"{cfg_path}: unexpected tensor file name {meta['tensors'].get('file')!r}")
    tensors = _read_tensors(ten_path, meta["tensors"])
    config = _config_from_meta(cfg_path, meta, sum(v.numel() for v in tensors.values()))
    try:
        model = KAN(config=config)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
        raise CheckpointError(f"{cfg_path}: invalid config ({e})") from None
    _set_libraries(model, library, meta, cfg_path)
    _load_state(model, tensors, meta, cfg_path, ten_path)
    if device is not None:
        model.to(device)
    return model


def _load_state(model: KAN, tensors: dict[str, torch.Tensor], meta: dict[str, Any], cfg_path: Path,
                ten_path: Path) -> None:
    expected = model.state_dict()
    want = {k for k, v in expected.items() if isinstance(v, torch.Tensor)}
    missing, unexpected = sorted(want - set(tensors)), sorted(set(tensors) - want)
    if missing or unexpected:
        raise CheckpointError(
            f"{ten_path}: tensors do not match the config in {CONFIG_FILE} (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]})"
        )
    for k in sorted(want):
        e, t = expected[k], tensors[k]
        if e.shape != t.shape:
            raise CheckpointError(f"{ten_path}: mismatched shape for {k!r}: {tuple(t.shape)} in the file, "
                                  f"{tuple(e.shape)} implied by {CONFIG_FILE}")
        if e.dtype != t.dtype:
            raise CheckpointError(f"{ten_path}: {k!r} has dtype {t.dtype} but the config implies {e.dtype}")
    extra_keys = {k for k, v in expected.items() if not isinstance(v, torch.Tensor)}
    if set(meta["extra_state"]) != extra_keys:
        raise CheckpointError(f"{cfg_path}: 'extra_state' keys {sorted(meta['extra_state'])} do not match the "
                              f"model's {sorted(extra_keys)}")
    state: dict[str, Any] = dict(tensors)
    state.update(meta["extra_state"])
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as e:
        raise CheckpointError(f"{ten_path}: cannot restore the model ({str(e).splitlines()[0][:300]})") from None
    flags = meta["requires_grad"]
    for name, p in model.named_parameters():
        flag = flags.get(name)
        if not isinstance(flag, bool):
            raise CheckpointError(f"{cfg_path}: 'requires_grad' has no boolean entry for parameter {name!r}")
        p.requires_grad_(flag)
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        warnings.warn(f"{ten_path}: the saved model has non-finite values in {bad[:5]}", RuntimeWarning,
                      stacklevel=3)

