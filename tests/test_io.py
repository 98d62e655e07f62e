"""Checkpoints (kanlens.io): exact round trips, atomic writes, overwrite rules, custom symbolic functions.

Corrupted and tampered checkpoints are in tests/test_faults.py.
"""

from __future__ import annotations

import json
import os
import pickle

import pytest
import sympy
import torch

import kanlens.io as kio
from kanlens import KAN, load, save
from kanlens.io import CheckpointError, read_config
from kanlens.symbolic.library import default_library


def _decorated_model(dtype: torch.dtype = torch.float32) -> KAN:
    """A model whose state differs from a fresh KAN everywhere that matters: splines, masks, affine, symbolic."""
    model = KAN(width=[3, 4, 2], grid=6, k=2, seed=7, dtype=dtype, noise_scale=2.0, input_names=["a", "b", "c"])
    with torch.no_grad():
        model.layers[0].mask[1, 2] = 0.0
        model.node_scale[0].mul_(torch.linspace(0.5, 2.0, 4, dtype=dtype))
        model.node_bias[1].add_(torch.tensor([0.25, -1.5], dtype=dtype))
        model.layers[1].grid.mul_(1.5)
    model.symbolic[0].fix(2, 1, "sin", (2.0, 0.5, -1.25, 0.125))
    model.symbolic[1].fix(3, 0, "x^2", (1.0, -0.3, 0.7, 0.0))
    model.layers[1].scale_base.requires_grad_(False)
    return model


def _assert_same_model(a: KAN, b: KAN) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], torch.Tensor):
            assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
        else:
            assert sa[k] == sb[k], k
    assert a.config == b.config
    assert [p.requires_grad for p in a.parameters()] == [p.requires_grad for p in b.parameters()]
    x = torch.rand(17, a.width[0], generator=torch.Generator().manual_seed(0), dtype=a.dtype) * 2 - 1
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_round_trip_is_exact(tmp_path, dtype):
    model = _decorated_model(dtype)
    save(model, tmp_path / "ckpt")
    loaded = load(tmp_path / "ckpt")
    _assert_same_model(model, loaded)
    assert loaded.symbolic[0].function_name(2, 1) == "sin" and loaded.symbolic[1].function_name(3, 0) == "x^2"
    assert loaded.config.input_names == ["a", "b", "c"]
    assert not loaded.layers[1].scale_base.requires_grad


def test_round_trip_after_fit_refine_and_prune(tmp_path, toy_dataset):
    model = KAN(width=[2, 4, 1], seed=1)
    model.fit(toy_dataset, steps=3, lamb=0.01, progress=False)
    fine = model.refine(8)
    small = fine.prune(node_th=0.05, edge_th=0.05, x=toy_dataset["train_input"])
    for name, m in (("fine", fine), ("small", small)):
        save(m, tmp_path / name)
        loaded = load(tmp_path / name)
        _assert_same_model(m, loaded)
    assert load(tmp_path / "fine").grid == 8
    assert load(tmp_path / "small").width == small.width


def test_model_methods_and_map_location(tmp_path):
    model = _decorated_model()
    model.save(str(tmp_path / "m"))
    for loc in ("cpu", torch.device("cpu")):
        loaded = KAN.load(str(tmp_path / "m"), map_location=loc)
        assert loaded.device == torch.device("cpu")
        _assert_same_model(model, loaded)


def test_config_json_is_self_describing(tmp_path):
    model = _decorated_model()
    save(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["format"] == "kanlens-checkpoint" and meta["format_version"] == kio.FORMAT_VERSION == 1
    assert meta["kanlens_version"] and meta["width"] == [3, 4, 2]
    assert meta["config"]["grid"] == 6 and meta["config"]["k"] == 2 and meta["input_names"] == ["a", "b", "c"]
    edges = meta["symbolic"][0]["edges"]
    assert edges == [{"i": 2, "j": 1, "name": "sin", "affine": [2.0, 0.5, -1.25, 0.125]}]
    assert meta["symbolic"][1]["function_names"][0][3] == "x^2"
    assert meta["tensors"]["entries"]["layers.0.coef"] == {"shape": [4, 3, 8], "dtype": "float32"}
    assert meta["requires_grad"]["layers.1.scale_base"] is False
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "tensors.pt"]
    assert read_config(tmp_path / "m") == meta


def test_tensor_file_holds_only_tensors(tmp_path):
    save(_decorated_model(), tmp_path / "m")
    blob = torch.load(tmp_path / "m" / "tensors.pt", weights_only=True)
    assert isinstance(blob, dict) and all(isinstance(v, torch.Tensor) for v in blob.values())


def test_load_never_uses_the_pickle_module(tmp_path, monkeypatch):
    save(_decorated_model(), tmp_path / "m")

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading a checkpoint")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    loaded = load(tmp_path / "m")
    assert loaded.width == [3, 4, 2]


def test_refuses_to_overwrite_without_flag(tmp_path):
    first, second = KAN(width=[2, 2, 1], seed=0), KAN(width=[2, 2, 1], seed=1)
    save(first, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save(second, tmp_path / "m")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    save(second, tmp_path / "m", overwrite=True)
    _assert_same_model(second, load(tmp_path / "m"))
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no backup or temporary directory left behind


@pytest.mark.parametrize("kind", ["file", "foreign_dir", "dir_with_extra_file"])
def test_overwrite_never_deletes_user_files(tmp_path, kind):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("precious")
    elif kind == "foreign_dir":
        target.mkdir()
        (target / "notes.txt").write_text("precious")
    else:
        save(KAN(width=[2, 1]), target)
        (target / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a kanlens checkpoint"):
        save(KAN(width=[2, 1]), target, overwrite=True)
    text = target.read_text() if kind == "file" else (target / "notes.txt").read_text()
    assert text == "precious"


def test_failed_save_keeps_old_checkpoint_and_leaves_no_temp(tmp_path, monkeypatch):
    old = KAN(width=[2, 2, 1], seed=0)
    save(old, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:  # leave a half-written file behind, then fail
            fh.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(kio.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save(KAN(width=[2, 2, 1], seed=1), tmp_path / "m", overwrite=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["m"]
    _assert_same_model(old, load(tmp_path / "m"))


def test_failed_rename_restores_old_checkpoint(tmp_path, monkeypatch):
    old = KAN(width=[2, 2, 1], seed=0)
    save(old, tmp_path / "m")
    real_replace, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # moving the new checkpoint into place fails
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(kio.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="rename failed"):
        save(KAN(width=[2, 2, 1], seed=1), tmp_path / "m", overwrite=True)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["m"]
    _assert_same_model(old, load(tmp_path / "m"))


def test_refuses_to_save_a_nonfinite_model(tmp_path):
    model = KAN(width=[2, 1])
    with torch.no_grad():
        model.layers[0].coef[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite.*allow_nonfinite=True"):
        save(model, tmp_path / "m")
    assert not (tmp_path / "m").exists()
    save(model, tmp_path / "m", allow_nonfinite=True)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        loaded = load(tmp_path / "m")
    assert torch.isnan(loaded.layers[0].coef[0, 0, 0])


def test_custom_symbolic_function_round_trips_by_name(tmp_path):
    lib = default_library().register("cubeplus", lambda x: x**3 + x, lambda x: x**3 + x, 3)
    model = KAN(width=[2, 1], seed=0)
    model.fix_symbolic(0, 1, 0, "cubeplus", params=(0.5, 0.1, 2.0, -0.2), lib=lib)  # the user's route
    save(model, tmp_path / "m")
    meta = read_config(tmp_path / "m")
    assert meta["custom_symbolic_functions"] == ["cubeplus"]
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    with pytest.raises(CheckpointError, match=r"config\.json.*'cubeplus'.*not in the library.*register.*library=lib"):
        load(tmp_path / "m")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    custom = default_library().register("cubeplus", lambda x: x**3 + x, sympy.Lambda(sympy.Symbol("u"), 0), 3)
    loaded = load(tmp_path / "m", library=custom)
    x = torch.rand(9, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert "besselj0" in loaded.symbolic[0].library  # the user's functions are added to the default library


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_save_load_then_training_continues_identically(tmp_path, toy_dataset, dtype):
    ds = {k: v.to(dtype) for k, v in toy_dataset.items()}
    model = KAN(width=[2, 3, 1], seed=3, dtype=dtype)
    model.fit(ds, steps=2, progress=False)
    save(model, tmp_path / "m")
    loaded = load(tmp_path / "m")
    h1 = model.fit(ds, steps=2, progress=False, update_grid=False)
    h2 = loaded.fit(ds, steps=2, progress=False, update_grid=False)
    assert h1.train_loss == h2.train_loss
    _assert_same_model(model, loaded)


def test_symbolic_function_indices_round_trip_exactly(tmp_path):
    model = KAN(width=[2, 1], seed=0)
    model.symbolic[0].fix(1, 0, "x^2", (1.0, 0.0, 1.0, 0.0))  # fixed first: index 1
    model.symbolic[0].fix(0, 0, "sin", (1.0, 0.0, 1.0, 0.0))  # fixed second: index 2
    save(model, tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert torch.equal(loaded.symbolic[0].fn_index, model.symbolic[0].fn_index)


def test_unfixed_custom_function_still_explains_registration(tmp_path):
    lib = default_library().register("cubeplus", lambda x: x**3 + x, lambda x: x**3 + x, 3)
    model = KAN(width=[2, 1], seed=0)
    model.fix_symbolic(0, 1, 0, "cubeplus", params=(0.5, 0.1, 2.0, -0.2), lib=lib)
    model.unfix_symbolic(0, 1, 0)  # no edge uses it, but the layer still lists it
    save(model, tmp_path / "m")
    with pytest.raises(CheckpointError, match=r"'cubeplus'.*library=lib"):
        load(tmp_path / "m")
    _assert_same_model(model, load(tmp_path / "m", library=lib))
