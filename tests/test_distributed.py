"""Data-parallel training on torch.distributed: 2 gloo processes on CPU (loopback) against one process.

All 2-rank checks run in one spawned process group (a spawn costs seconds); each rank saves what it saw, the test
process compares with single-process references. Long LBFGS runs amplify rounding (one process on the same rows in
another order drifts too: after 8 steps by ~1 here), so the LBFGS fits are short: 3 steps (~60 iterations),
which end ~2e-7 from the one-process fit.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import kanlens
from kanlens import KAN, create_dataset
from kanlens.distributed import DistributedMismatchError, GlobalBatches, shard
from kanlens.vision import KANConvNet, train_classifier

LBFGS = dict(opt="LBFGS", steps=3, lamb=0.01, update_grid=True, grid_update_num=2, stop_grid_update_step=4,
             progress=False)
ADAM = dict(opt="Adam", steps=12, lr=0.02, batch=16, lamb=0.005, update_grid=True, grid_update_num=3,
            stop_grid_update_step=9, progress=False)
CONV = dict(epochs=2, batch_size=6, lr=0.02, max_shift=1, grid_update_epochs=(0, 1), schedule="constant", seed=3)
TIMEOUT_S = 120


def _data() -> dict[str, torch.Tensor]:
    f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)  # noqa: E731
    return create_dataset(f, n_var=2, train_num=100, test_num=40, seed=1, dtype=torch.float64)


def _kan(width=(2, 3, 1)) -> KAN:
    return KAN(width=list(width), grid=5, k=3, seed=0, dtype=torch.float64)


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(10, 1, 8, 8, generator=g), torch.randint(0, 3, (10,), generator=g)


def _convnet() -> KANConvNet:  # one stage: no batch norm, so steps equal one process's exactly
    return KANConvNet(1, 3, channels=(2,), image_size=8, grid=3, k=2, seed=0)


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _fit_result(model: KAN, history) -> dict:
    return {"params": _params(model), "train": history.train_loss, "test": history.test_loss, "reg": history.reg,
            "grid_updates": history.grid_updates}


# ------------------------------------------------------------------------------------------- what each rank runs
def _rank_checks(rank: int, out: Path) -> dict:
    res = {}
    # 1. every rank holds the full dataset and fit shards it; rank 0 writes a checkpoint at the last step
    model = _kan()

    def checkpoint(step, m, h):
        if step == LBFGS["steps"] - 1:
            kanlens.distributed.save(m, str(out / "ckpt"))

    res["full"] = _fit_result(model, model.fit(_data(), distributed=True, callbacks=[checkpoint], **LBFGS))
    res["ckpt_seen"] = (out / "ckpt").exists()  # after the barrier in save(): on every rank
    # 2. each rank passes its own, unequal shard (70 / 30 train rows, 10 / 30 test rows)
    d = _data()
    cut = {"train": 70, "test": 10}
    mine = {k: v[: cut[k.split("_")[0]]] if rank == 0 else v[cut[k.split("_")[0]]:] for k, v in d.items()}
    model = _kan()
    res["unequal"] = _fit_result(model, model.fit(mine, **LBFGS))
    # 3. Adam on mini-batches of the global dataset
    model = _kan()
    res["adam"] = _fit_result(model, model.fit(_data(), distributed=True, **ADAM))
    # 3b. a tiny shard (3 of 100 rows) and batches of 4: most batches have no row on rank 1 (a stand-in row, weight 0)
    model = _kan()
    tiny = {k: v[:97] if rank == 0 else v[97:] for k, v in d.items() if k.startswith("train")}
    tiny.update({k: v for k, v in d.items() if k.startswith("test")})
    res["adam_tiny"] = _fit_result(model, model.fit(tiny, **dict(ADAM, batch=4)))
    # 3c. a callback that stops rank 1 only stops both
    h = _kan().fit(_data(), distributed=True, callbacks=[lambda step, m, h: rank == 1 and step == 1],
                   **dict(ADAM, steps=5))
    res["stopped"] = (len(h), h.stop_reason)
    # 4. mismatches: one clear error on both ranks, and the group stays usable
    for name, width, data in (("width", (2, 4, 1) if rank == 1 else (2, 3, 1), _data()),
                              ("dataset", (2, 3, 1), {"train_input": d["train_input"]} if rank == 1 else _data())):
        try:
            _kan(width).fit(data, distributed=True, **LBFGS)
            res[f"mismatch_{name}"] = "no error"
        except DistributedMismatchError as e:
            res[f"mismatch_{name}"] = str(e)
    # 5. KAN-conv classifier, unequal shards (6 / 4 images)
    x, y = _images()
    net = _convnet()
    part = slice(0, 6) if rank == 0 else slice(6, 10)
    res["conv_losses"] = train_classifier(net, x[part], y[part], **CONV).losses
    res["conv"] = _params(net)
    return res


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        torch.save(_rank_checks(rank, Path(out)), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    ctx = mp.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=max(0.0, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the 2-process group did not finish within {TIMEOUT_S} s (a hang in a collective?)")
    got = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r in got:
        r["out"] = out
    return got


def _assert_same_fit(got: dict, model: KAN, history, tol: float = 1e-5) -> None:
    for a, b in zip(got["params"], model.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), atol=tol, rtol=0)
    for key, ref in (("train", history.train_loss), ("test", history.test_loss), ("reg", history.reg)):
        assert len(got[key]) == len(ref) > 0
        assert max(abs(u - v) for u, v in zip(got[key], ref)) < tol, key
    assert got["grid_updates"] == history.grid_updates


# ------------------------------------------------------------------------------------------- tests
def test_two_rank_lbfgs_fit_equals_one_process(ranks) -> None:
    ref = _kan()
    history = ref.fit(_data(), **LBFGS)
    assert history.grid_updates == [0, 2] and history.reg[-1] > 0
    for r in ranks:
        _assert_same_fit(r["full"], ref, history)
    # the two ranks hold the same model, bit for bit (every decision was made on all-reduced values)
    for a, b in zip(ranks[0]["full"]["params"], ranks[1]["full"]["params"]):
        assert torch.equal(a, b)


def test_unequal_shards_weight_by_rows(ranks) -> None:
    ref = _kan()
    history = ref.fit(_data(), **LBFGS)
    for r in ranks:
        _assert_same_fit(r["unequal"], ref, history)


def test_checkpoint_written_by_rank_zero_loads(ranks) -> None:
    assert ranks[0]["ckpt_seen"] and ranks[1]["ckpt_seen"]
    loaded = KAN.load(str(ranks[0]["out"] / "ckpt"))
    for a, b in zip(loaded.parameters(), ranks[0]["full"]["params"]):
        assert torch.equal(a.detach(), b)


def test_adam_minibatches_equal_one_process(ranks) -> None:
    ref = _kan()
    history = ref.fit(_data(), **ADAM)
    for r in ranks:
        _assert_same_fit(r["adam"], ref, history, tol=1e-9)


def test_batches_without_rows_on_a_rank_equal_one_process(ranks) -> None:
    ref = _kan()
    d = _data()
    # the test split is the same on both ranks here: one process sees it twice (the mean is the same)
    history = ref.fit(dict(d, test_input=torch.cat([d["test_input"]] * 2), test_label=torch.cat([d["test_label"]] * 2)),
                      **dict(ADAM, batch=4))
    for r in ranks:
        _assert_same_fit(r["adam_tiny"], ref, history, tol=1e-9)


def test_a_callback_stopping_one_rank_stops_all(ranks) -> None:
    assert ranks[0]["stopped"] == ranks[1]["stopped"] == (2, "callback")


def test_rank_mismatch_is_one_clear_error_on_every_rank(ranks) -> None:
    for r in ranks:
        assert "disagree on model" in r["mismatch_width"] and "width=[2, 4, 1]" in r["mismatch_width"]
        assert "rank 1: ValueError: dataset is missing keys" in r["mismatch_dataset"]


def test_conv_training_equals_one_process_on_all_images(ranks) -> None:
    x, y = _images()
    net = _convnet()
    losses = train_classifier(net, x, y, **CONV).losses
    for r in ranks:
        for a, b in zip(r["conv"], net.parameters(), strict=True):
            torch.testing.assert_close(a, b.detach(), atol=1e-5, rtol=0)
        assert r["conv_losses"] == pytest.approx(losses, abs=1e-6)


def test_global_batches_split_the_single_process_batch() -> None:
    g = GlobalBatches([3, 0, 5], rank=2)
    mine, sizes = g.split(torch.tensor([7, 0, 4, 2, 3]))
    assert mine.tolist() == [4, 1, 0] and sizes == [2, 0, 3]
    t = torch.arange(10)
    assert torch.cat([shard(t, r, 3) for r in range(3)]).tolist() == t.tolist()


def test_distributed_true_without_a_group_is_refused() -> None:
    with pytest.raises(ValueError, match="needs an initialised process group"):
        _kan().fit(_data(), steps=1, distributed=True, progress=False)


def test_single_process_fit_never_loads_the_distributed_module() -> None:
    code = ("import sys, torch, kanlens; d = kanlens.create_dataset(lambda x: x[:, :1], n_var=2, train_num=20, "
            "test_num=5); kanlens.KAN(width=[2, 2, 1], seed=0).fit(d, steps=1, progress=False); "
            "assert 'kanlens.distributed' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
