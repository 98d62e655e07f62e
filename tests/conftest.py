"""Shared test setup: a fixed hypothesis profile and a few small fixtures.

Hypothesis profiles: ``ci`` (default; bounded, derandomized, no example database, no deadline because the shared
CI machine is noisy) and ``thorough`` (for local bug hunting): ``HYPOTHESIS_PROFILE=thorough pytest ...``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=300, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small tensors: one intra-op thread avoids OpenMP spin-waits on busy machines (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def toy_formula(x: torch.Tensor) -> torch.Tensor:
    """pykan's tutorial function ``exp(sin(pi*x1) + x2^2)`` on ``(batch, 2)`` inputs."""
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


@pytest.fixture(scope="session")
def _toy_dataset_cached() -> dict[str, torch.Tensor]:
    from kanlens import create_dataset

    return create_dataset(toy_formula, n_var=2, train_num=64, test_num=32, seed=0)


@pytest.fixture
def toy_dataset(_toy_dataset_cached) -> dict[str, torch.Tensor]:
    """A small float32 dataset of the tutorial function (64 train / 32 test points); a fresh copy per test."""
    return {k: v.clone() for k, v in _toy_dataset_cached.items()}


@pytest.fixture
def small_model():
    """``KAN([2, 3, 1], grid=5, k=3, seed=0)`` that has seen 32 inputs (so ``model.acts`` is set)."""
    from kanlens import KAN

    model = KAN(width=[2, 3, 1], grid=5, k=3, seed=0)
    x = torch.linspace(-1, 1, 64).reshape(32, 2)
    with torch.no_grad():
        model(x)
    return model


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits as ``(images (n, 1, 8, 8) in [0, 1], labels (n,))`` (skipped without sklearn)."""
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target, dtype=torch.long)


@pytest.fixture(scope="module")
def bench():
    """``benchmarks/symbolic_recovery.py`` loaded as a module (its sampler, scoring and report writers)."""
    spec = importlib.util.spec_from_file_location("symbolic_recovery", ROOT / "benchmarks" / "symbolic_recovery.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
