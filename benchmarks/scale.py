"""Scaling out: data-parallel ``fit`` on torch.distributed (part ``ddp``) and sweeps on Dask (part ``sweep``).

Everything is measured side by side in one run; compare the ratios, not the absolute numbers.

    python benchmarks/scale.py --part ddp --rows 1000000 --steps 10   # 2 gloo processes vs 1, on this machine
    python benchmarks/scale.py --part all

Organisation: one function per part, ``run_ddp(args)`` and ``run_sweep(args)``, each printing its own markdown
table; ``main()`` parses the shared options (``--rows``, ``--steps``, ``--part``, ...) and dispatches.

Part ``ddp``: a [10, 10, 1] KAN fitted on ``--rows`` rows (float32, full-batch Adam, sparsity penalty on, no grid
updates so that every step does the same work) by 1 process with ``--threads`` threads and by 2 gloo processes
(loopback) with ``--threads // 2`` threads each, each holding half of the rows (and, for reference, by 1 process
with ``--threads // 2`` threads). Every configuration runs in freshly
spawned processes; the time per step is the median over the steps after the first.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

DDP_WIDTH = [10, 10, 1]


# ---------------------------------------------------------------------------------------------- part ddp
def _ddp_data(rows: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(rows, DDP_WIDTH[0], generator=g) * 2 - 1
    y = (torch.sin(torch.pi * x[:, :5]).sum(1, keepdim=True) + (x[:, 5:] ** 2).sum(1, keepdim=True))
    n_test = max(rows // 10, 1)
    return {"train_input": x[n_test:], "train_label": y[n_test:], "test_input": x[:n_test], "test_label": y[:n_test]}


def _ddp_worker(rank: int, world: int, port: int, rows: int, steps: int, threads: int, out: str) -> None:
    import torch.distributed as dist

    from kanlens import KAN
    from kanlens.distributed import shard_dataset

    torch.set_num_threads(threads)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(minutes=10))
    data = _ddp_data(rows)
    if world > 1:
        data = shard_dataset(data, rank, world)  # each rank holds (and keeps in memory) only its shard
    model = KAN(width=DDP_WIDTH, grid=5, k=3, seed=0)
    stamps: list[float] = []
    t0 = time.perf_counter()
    history = model.fit(data, opt="Adam", lr=1e-2, steps=steps, lamb=1e-3, update_grid=False, progress=False,
                        callbacks=[lambda s, m, h: stamps.append(time.perf_counter())])
    per_step = [b - a for a, b in zip([t0, *stamps[:-1]], stamps)][1:] or [stamps[0] - t0]
    if rank == 0:
        Path(out).write_text(f"{statistics.median(per_step)} {history.train_loss[-1]}")
    if world > 1:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _time_ddp(world: int, rows: int, steps: int, threads: int) -> tuple[float, float]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.txt")
        mp.start_processes(_ddp_worker, args=(world, _free_port(), rows, steps, threads, out), nprocs=world,
                           start_method="spawn")
        sec, loss = Path(out).read_text().split()
    return float(sec), float(loss)


def run_ddp(args: argparse.Namespace) -> list[dict]:
    """1 process vs 2 gloo processes fitting one [10, 10, 1] KAN on ``args.rows`` rows; prints a markdown table."""
    threads = max(args.threads, 2)
    rows_train = args.rows - max(args.rows // 10, 1)
    configs = [(1, threads), (1, threads // 2), (2, threads // 2)]
    results = []
    for world, per_proc in configs:
        sec, loss = _time_ddp(world, args.rows, args.steps, per_proc)
        results.append({"processes": world, "threads": per_proc, "s_per_step": sec, "rows_per_s": rows_train / sec,
                        "train_rmse": loss})
    base = results[0]["s_per_step"]
    flags = f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, " \
            f"{os.cpu_count()} logical CPUs, gloo over 127.0.0.1"
    print(f"\n### Data-parallel fit: KAN {DDP_WIDTH}, {rows_train} train rows, full-batch Adam, lamb=1e-3, "
          f"{args.steps} steps\n")
    print(f"{flags}\n")
    print("| processes x threads | s / step | train rows / s | speed-up vs 1 process | train RMSE at the end |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['processes']} x {r['threads']} | {r['s_per_step']:.4f} | {r['rows_per_s']:.3g} | "
              f"{base / r['s_per_step']:.2f}x | {r['train_rmse']:.5f} |")
    return results


# ---------------------------------------------------------------------------------------------- part sweep
def run_sweep(args: argparse.Namespace) -> dict:
    """The Dask sweep part: :func:`benchmarks.scale_sweep.run_sweep` (the public formulas, 1 vs 2 workers)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scale_sweep import run_sweep as sweep_part

    return sweep_part(args)


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("ddp", "sweep", "all"), default="all", help="which benchmark to run")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the data-parallel fit (part ddp)")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps of the data-parallel fit (part ddp)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                   help="torch threads in total (1 process: all; 2 processes: half each)")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scale_sweep import add_arguments

    add_arguments(p)  # --formulas, --time-budget, --limit, --workers, --seed, --out (part sweep)
    args = p.parse_args(argv)
    if args.rows < 20 or args.steps < 1:
        p.error("--rows must be >= 20 and --steps >= 1")
    if args.part in ("ddp", "all"):
        run_ddp(args)
    if args.part in ("sweep", "all"):
        run_sweep(args)


if __name__ == "__main__":
    main()
