"""Data-parallel fit: one KAN trained by several processes, each holding a shard of the rows.

Under torchrun every process runs this script; ``fit(..., distributed=True)`` shards the dataset (every process
builds the same one here), all-reduces losses, gradients and the sparsity penalty's magnitudes and takes the same
steps as one process on all rows. Rank 0 alone writes the checkpoint and the plot. Run with plain python, the
script starts ``--nproc`` local gloo processes itself (``--nproc 1``: one process, no torch.distributed at all).

Saves ``08_history.png`` (losses per step) and the checkpoint ``08_model/`` into ``--out``.

Run:  torchrun --nproc-per-node 2 examples/08_distributed_fit.py --out /tmp/kan08
      python examples/08_distributed_fit.py --out /tmp/kan08          (spawns 2 gloo processes on this machine)
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import kanlens.distributed as kd
from kanlens import KAN, create_dataset


def train(args: argparse.Namespace) -> None:
    """What every process runs (rank 0 writes the files)."""
    torch.set_num_threads(1)

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)

    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else "cpu"
    if torch.cuda.is_available():
        torch.cuda.set_device(device)  # NCCL: one GPU per process
    dataset = create_dataset(f, n_var=2, train_num=2000, test_num=500, seed=0, device=device)
    model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0, device=device)
    t0 = time.perf_counter()
    history = model.fit(dataset, opt="LBFGS", steps=args.steps, lamb=1e-3, progress=False,
                        distributed=dist.is_initialized())
    world = kd.rank_and_world()[1]
    kd.save(model, str(Path(args.out) / "08_model"), overwrite=True)  # rank 0 writes, every rank waits for it
    if kd.is_main_process():
        from kanlens import plot_history

        plot_history(history, title=f"fit on {world} process(es)", path=Path(args.out) / "08_history.png")
        print(f"{world} process(es): train RMSE {history.train_loss[-1]:.2e}, test RMSE {history.test_loss[-1]:.2e} "
              f"after {len(history)} steps in {time.perf_counter() - t0:.1f} s; wrote {args.out}/08_history.png "
              "and 08_model/")


def _spawned(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        train(args)
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNG and the checkpoint")
    parser.add_argument("--steps", type=int, default=20, help="LBFGS steps")
    parser.add_argument("--nproc", type=int, default=2, help="local processes when not run under torchrun")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # under torchrun: one process of the group
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        try:
            train(args)
        finally:
            dist.destroy_process_group()
    elif args.nproc > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.start_processes(_spawned, args=(args.nproc, port, args), nprocs=args.nproc, start_method="spawn")
    else:
        train(args)


if __name__ == "__main__":
    main()
