"""Where the time of a dense KAN layer stack goes, next to the equal-parameter MLP of ``speed.py``.

    OMP_NUM_THREADS=1 python benchmarks/dense_profile.py                     # 1 thread, ratio + op table
    OMP_NUM_THREADS=2 python benchmarks/dense_profile.py --threads 2 --no-ops

Times fwd+bwd of ``KAN(width=[100, 100, 100], grid=5).speed()`` and of the 100-995-100 MLP on a 1024 batch, in
interleaved rounds (process CPU time at one thread, wall-clock otherwise), prints the median ratio, the minor page
faults per step of each, and (unless ``--no-ops``) the ``torch.profiler`` table of the KAN's aten ops.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch


def _models(width: list[int], grid: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    from kanlens import KAN

    kan = KAN(width=width, grid=grid, k=3, seed=0).speed()
    n_kan = sum(p.numel() for layer in kan.layers for p in layer.parameters())
    h = round((n_kan - width[-1]) / (width[0] + width[-1] + 1))
    mlp = torch.nn.Sequential(torch.nn.Linear(width[0], h), torch.nn.SiLU(), torch.nn.Linear(h, width[-1]))
    return kan, mlp


def _step(model: torch.nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, nargs="+", default=[100, 100, 100])
    ap.add_argument("--grid", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    ap.add_argument("--steps", type=int, default=15, help="fwd+bwd steps per implementation and round")
    ap.add_argument("--no-ops", action="store_true", help="skip the torch.profiler op table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    kan, mlp = _models(args.width, args.grid)
    x = torch.rand(args.batch, args.width[0], generator=torch.Generator().manual_seed(0)) * 2 - 1
    clock = time.process_time if args.threads == 1 else time.perf_counter
    ms: dict[str, list[float]] = {"kanlens": [], "mlp": []}
    faults: dict[str, list[float]] = {"kanlens": [], "mlp": []}
    for model in (kan, mlp):
        for _ in range(5):
            _step(model, x)
    for _ in range(args.rounds):
        for name, model in (("kanlens", kan), ("mlp", mlp)):
            f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, clock()
            for _ in range(args.steps):
                _step(model, x)
            ms[name].append((clock() - t0) / args.steps * 1e3)
            faults[name].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / args.steps)
    ratio = statistics.median(a / b for a, b in zip(ms["kanlens"], ms["mlp"]))
    print(f"# width={args.width} grid={args.grid} batch={args.batch} threads={torch.get_num_threads()} "
          f"torch={torch.__version__}")
    print("| impl | ms per fwd+bwd (median) | minor page faults per step (median) |")
    print("|---|---:|---:|")
    for name in ms:
        print(f"| {name} | {statistics.median(ms[name]):.2f} | {statistics.median(faults[name]):.0f} |")
    print(f"\nkanlens / MLP time per step: {ratio:.2f}x (median of {args.rounds} interleaved rounds)")
    if args.no_ops:
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.steps):
            _step(kan, x)
    print(f"\nkanlens aten ops over {args.steps} steps (self CPU time):")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=20,
                                                              max_name_column_width=28, max_shapes_column_width=60))


if __name__ == "__main__":
    main()
