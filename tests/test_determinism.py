"""Determinism: ``seed=`` drives local generators only. Same seed + same machine gives a bit-identical model, history
and formula; the global RNGs (torch, numpy, random) are neither read-and-advanced nor reseeded by kanlens."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from kanlens import KAN, create_dataset, load, save


def toy_formula(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def _rng_states():
    states = {"torch": torch.get_rng_state().clone(), "numpy": np.random.get_state(), "random": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return states


def _assert_rng_unchanged(before, what: str) -> None:
    after = _rng_states()
    assert torch.equal(before["torch"], after["torch"]), f"{what} changed the global torch RNG"
    nb, na = before["numpy"], after["numpy"]
    assert nb[0] == na[0] and np.array_equal(nb[1], na[1]) and nb[2:] == na[2:], f"{what} changed numpy's RNG"
    assert before["random"] == after["random"], f"{what} changed Python's random RNG"
    if "cuda" in before:
        assert all(torch.equal(a, b) for a, b in zip(before["cuda"], after["cuda"])), f"{what} changed the CUDA RNG"


def _state(model: KAN) -> dict:
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in model.state_dict().items()}


def _assert_identical(a: KAN, b: KAN) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], torch.Tensor):
            assert torch.equal(sa[k], sb[k]), k
        else:
            assert sa[k] == sb[k], k


def test_global_rngs_untouched_by_the_whole_workflow(tmp_path):
    # Put the global RNGs in a non-default state first, so that a reseed to any fixed value would be noticed.
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        np_state, py_state = np.random.get_state(), random.getstate()
        np.random.seed(4321)
        random.seed(99)
        try:
            before = _rng_states()
            ds = create_dataset(toy_formula, n_var=2, train_num=64, test_num=32, seed=5)
            _assert_rng_unchanged(before, "create_dataset")
            model = KAN(width=[2, 3, 1], seed=5)
            KAN(width=[2, 2, 1], seed=6, dtype=torch.float64)
            _assert_rng_unchanged(before, "KAN()")
            model.fit(ds, opt="LBFGS", steps=1, lamb=0.01, progress=False)
            model.fit(ds, opt="Adam", steps=3, batch=16, progress=False)
            _assert_rng_unchanged(before, "fit")
            model = model.refine(7)
            model.update_grid(ds["train_input"])
            model(ds["train_input"])
            small = model.prune(node_th=1e-3, edge_th=1e-3)
            _assert_rng_unchanged(before, "refine/update_grid/prune")
            small.suggest_symbolic(0, 0, 0, lib=["x", "x^2", "sin"])
            small.auto_symbolic(lib=["x", "x^2", "sin", "exp"])
            _assert_rng_unchanged(before, "suggest_symbolic/auto_symbolic")
            save(small, tmp_path / "m")
            load(tmp_path / "m")
            _assert_rng_unchanged(before, "save/load")
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_same_seed_gives_bit_identical_models(dtype):
    a = KAN(width=[3, 4, 2], grid=6, k=3, seed=11, dtype=dtype)
    b = KAN(width=[3, 4, 2], grid=6, k=3, seed=11, dtype=dtype)
    _assert_identical(a, b)
    c = KAN(width=[3, 4, 2], grid=6, k=3, seed=12, dtype=dtype)
    assert not torch.equal(a.layers[0].coef, c.layers[0].coef)


def _pipeline(ds):
    model = KAN(width=[2, 3, 1], seed=0)
    h1 = model.fit(ds, opt="Adam", steps=5, batch=16, lr=0.02, progress=False)
    h2 = model.fit(ds, opt="LBFGS", steps=1, lamb=0.01, progress=False)
    model.auto_symbolic(lib=["x", "x^2", "sin", "exp"])
    formula, _ = model.symbolic_formula()
    return model, h1.train_loss + h2.train_loss + h2.reg, [str(f) for f in formula]


def test_same_seed_gives_bit_identical_training_and_formula():
    ds = create_dataset(toy_formula, n_var=2, train_num=64, test_num=32, seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(1)  # a different global state for each run must not matter
        m1, losses1, f1 = _pipeline(ds)
        torch.manual_seed(2)
        m2, losses2, f2 = _pipeline(ds)
    _assert_identical(m1, m2)
    assert losses1 == losses2
    assert f1 == f2 and all(f1)
    x = ds["test_input"]
    with torch.no_grad():
        assert torch.equal(m1(x), m2(x))


def test_create_dataset_is_seeded():
    a = create_dataset(toy_formula, n_var=2, train_num=20, test_num=10, seed=3)
    b = create_dataset(toy_formula, n_var=2, train_num=20, test_num=10, seed=3)
    c = create_dataset(toy_formula, n_var=2, train_num=20, test_num=10, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["train_input"], c["train_input"])
