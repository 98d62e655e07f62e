"""KANConv2d speed and memory vs nn.Conv2d+SiLU and a naive per-channel-pair loop, side by side in one run.

Shapes (3x3 kernels, padding 1, grid 5, k 3, batch 64): 1x28x28 -> 8 channels and 8x14x14 -> 16 channels.
Each case times forward + backward (``out.square().mean().backward()``) with gradients for the parameters
(and, with ``--input-grad``, for the input too). Timings are medians over interleaved repetitions, so background
load hits all candidates alike; peak memory is the largest amount of CPU tensor memory alive during one
forward + backward, above what existed before it (torch profiler memory events).

Usage:
    python benchmarks/conv_speed.py [--threads 2] [--reps 30] [--input-grad] [--out docs/benchmarks_conv.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the profiler quiet

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from kanlens.layers.conv import KANConv2d
from kanlens.layers.spline import KANLayer

SHAPES = [(64, 1, 28, 8), (64, 8, 14, 16)]  # batch, in channels, size, out channels


class NaivePairLoopConv(nn.Module):
    """The Convolutional-KANs layout: one KANLayer (K*K -> 1) per (in, out) channel pair, basis recomputed each time.

    Same function and parameters as ``KANConv2d`` (zero padding); kept here only as a speed reference.
    """

    def __init__(self, in_ch: int, out_ch: int, k_size: int = 3, padding: int = 1, grid: int = 5, k: int = 3):
        super().__init__()
        self.in_ch, self.out_ch, self.k_size, self.padding = in_ch, out_ch, k_size, padding
        gen = torch.Generator().manual_seed(0)
        self.pairs = nn.ModuleList(
            KANLayer(k_size * k_size, 1, grid=grid, k=k, generator=gen) for _ in range(in_ch * out_ch)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        patches = F.unfold(x, self.k_size, padding=self.padding)  # (B, C*K*K, L)
        kk = self.k_size * self.k_size
        outs = []
        for o in range(self.out_ch):
            acc = 0
            for c in range(self.in_ch):
                p = patches[:, c * kk : (c + 1) * kk].transpose(1, 2).reshape(-1, kk)
                acc = acc + self.pairs[o * self.in_ch + c](p)
            outs.append(acc.reshape(b, h, w))
        return torch.stack(outs, 1)


def _step(module: nn.Module, x: torch.Tensor, act: Callable | None = None) -> Callable[[], None]:
    def run() -> None:
        for p in module.parameters():
            p.grad = None
        if x.grad is not None:
            x.grad = None
        out = module(x)
        if act is not None:
            out = act(out)
        out.square().mean().backward()

    return run


def peak_memory_mb(fn: Callable[[], None]) -> float:
    """Peak CPU tensor memory (MB) allocated during ``fn`` above the level before it (profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # every op's own (exclusive) allocations minus frees, in time order; "[memory]" events are frees between ops
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in events:
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak / 2**20


def time_interleaved(fns: dict[str, Callable[[], None]], reps: int, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds per call of each function; repetitions are interleaved across functions."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def run_case(b: int, c: int, size: int, o: int, reps: int, input_grad: bool, naive_reps: int) -> list[tuple]:
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(b, c, size, size, generator=gen) * 2 - 1).requires_grad_(input_grad)
    conv = nn.Conv2d(c, o, 3, padding=1)
    kan = KANConv2d(c, o, 3, padding=1, grid=5, k=3)
    with torch.no_grad():
        ref = NaivePairLoopConv(c, o)
        # same function as the fast layer, so the naive timing is of the same computation
        for oo in range(o):
            for cc in range(c):
                pair = ref.pairs[oo * c + cc]
                pair.coef.copy_(kan.coef[oo, cc].reshape(9, 1, -1).transpose(0, 1))
                pair.scale_base.copy_(kan.scale_base[oo, cc].reshape(1, 9))
                pair.scale_sp.copy_(kan.scale_sp[oo, cc].reshape(1, 9))
        err = (ref(x) + kan.bias.view(1, -1, 1, 1) - kan(x)).abs().max().item()
    fns = {"nn.Conv2d+SiLU": _step(conv, x, F.silu), "KANConv2d": _step(kan, x)}
    res = time_interleaved(fns, reps)
    res["naive loop"] = time_interleaved({"naive": _step(ref, x)}, naive_reps, warmup=1)["naive"]
    mem = {
        "nn.Conv2d+SiLU": peak_memory_mb(fns["nn.Conv2d+SiLU"]),
        "KANConv2d": peak_memory_mb(fns["KANConv2d"]),
        "naive loop": peak_memory_mb(_step(ref, x)),
    }
    params = {
        "nn.Conv2d+SiLU": sum(p.numel() for p in conv.parameters()),
        "KANConv2d": sum(p.numel() for p in kan.parameters()),
        "naive loop": sum(p.numel() for p in ref.parameters()),
    }
    base = res["nn.Conv2d+SiLU"]
    shape = f"{b}x{c}x{size}x{size} -> {o}"
    rows = []
    for name in ("nn.Conv2d+SiLU", "KANConv2d", "naive loop"):
        rows.append((shape, name, res[name], res[name] / base, mem[name], params[name]))
    rows.append((shape, "(max |naive - fast|)", err, float("nan"), float("nan"), 0))
    return rows


def format_table(rows: list[tuple]) -> str:
    lines = [
        "| shape | layer | fwd+bwd ms | x nn.Conv2d+SiLU | peak MB | params |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for shape, name, ms, ratio, mem, params in rows:
        if name.startswith("("):
            lines.append(f"| {shape} | {name} | {ms:.1e} | | | |")
        else:
            lines.append(f"| {shape} | {name} | {ms:.2f} | {ratio:.2f} | {mem:.1f} | {params} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--naive-reps", type=int, default=3)
    parser.add_argument("--input-grad", action="store_true", help="also back-propagate to the input")
    parser.add_argument("--out", default=None, help="write a markdown report to this path")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for b, c, size, o in SHAPES:
        rows += run_case(b, c, size, o, args.reps, args.input_grad, args.naive_reps)
    table = format_table(rows)
    cmd = "python benchmarks/conv_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    env = (
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"input grad: {args.input_grad}, median of {args.reps} interleaved reps"
    )
    print(env)
    print(table)
    if args.out:
        text = f"### KANConv2d speed\n\nCommand: `{cmd.strip()}`\n\n{env}\n\n{table}\n"
        tmp = args.out + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
