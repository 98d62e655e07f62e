"""Where the time of a small LBFGS fit goes: objective evaluations, the optimizer's own work, grid updates, the
per-step measurements; CPU milliseconds per step and evaluation counts.

    OMP_NUM_THREADS=1 python benchmarks/fit_profile.py                 # the canonical fit, 3 repeats
    OMP_NUM_THREADS=1 python benchmarks/fit_profile.py --width 2 5 1 --steps 50 --train-num 1000

It wraps the private methods of ``kanlens.training._Trainer`` with process-CPU timers (a benchmark, not an API:
the names may change with the trainer). CPU time is used because it is steadier than wall-clock on a shared
machine.
"""

from __future__ import annotations

import argparse
import time

import torch

import kanlens.training as training
from kanlens import KAN, create_dataset

PARTS = {"evaluations": (training._Trainer, "closure"), "optimizer step": (training._Trainer, "optimizer_step"),
         "grid updates": (training, "_safe_grid_update"), "measure": (training._Trainer, "measure"),
         "snapshot": (training, "snapshot"), "fused objective": (training._Trainer, "_fused_objective")}


def _timed(acc: dict[str, float], calls: dict[str, int], key: str, fn):
    def wrapper(*args, **kwargs):
        t0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[key] = acc.get(key, 0.0) + time.process_time() - t0
            calls[key] = calls.get(key, 0) + 1
    return wrapper


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, nargs="+", default=[2, 5, 1])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--train-num", type=int, default=1000)
    ap.add_argument("--lamb", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    acc: dict[str, float] = {}
    calls: dict[str, int] = {}
    for key, (owner, name) in PARTS.items():
        setattr(owner, name, _timed(acc, calls, key, getattr(owner, name)))

    def target(x):
        y = torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1 % x.shape[1]]] ** 2)
        return y.repeat(1, args.width[-1])

    ds = create_dataset(target, n_var=args.width[0], train_num=args.train_num, test_num=1000, seed=0)
    print(f"# width={args.width} steps={args.steps} train_num={args.train_num} lamb={args.lamb} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    print("| repeat | CPU ms/step | evaluations | fused evaluations | ms per evaluation | optimizer's own ms/step "
          "| grid updates ms/step | measure ms/step | other ms/step |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in range(args.repeats):
        acc.clear()
        calls.clear()
        model = KAN(width=args.width, grid=5, k=3, seed=0)
        t0 = time.process_time()
        model.fit(ds, opt="LBFGS", steps=args.steps, lamb=args.lamb, progress=False)
        total = (time.process_time() - t0) * 1e3 / args.steps
        per = {k: v * 1e3 / args.steps for k, v in acc.items()}
        evals = calls.get("evaluations", 0)
        own = per.get("optimizer step", 0.0) - per.get("evaluations", 0.0)
        other = total - per.get("optimizer step", 0.0) - per.get("grid updates", 0.0) - per.get("measure", 0.0)
        print(f"| {r} | {total:.2f} | {evals} | {calls.get('fused objective', 0)} "
              f"| {per.get('evaluations', 0.0) * args.steps / max(evals, 1):.3f} | {own:.2f} "
              f"| {per.get('grid updates', 0.0):.2f} | {per.get('measure', 0.0):.2f} | {other:.2f} |")


if __name__ == "__main__":
    main()
