"""KANConv2d speed and memory vs nn.Conv2d+SiLU and a naive per-channel-pair loop, side by side in one run.

Shapes (3x3 kernels, padding 1, grid 5, k 3, batch 64): 1x28x28 -> 8 channels and 8x14x14 -> 16 channels.
Each case times forward + backward (``out.square().mean().backward()``) with gradients for the parameters, and
(by default in the same run) also with the input's gradient. Repetitions are interleaved, so background load hits
all candidates alike; process CPU time is reported next to wall time (on a shared machine wall time also counts
waiting for a core, which inflates long calls more than short ones). The summary's ratio is the median over
``--repeats`` independent interleaved rounds (each round's ratio is a ratio of CPU-time medians), at every thread
count of ``--threads``; the machine's CPU model and SIMD flags are printed with it. Peak memory is the largest
amount of CPU tensor memory alive during one forward + backward, above what existed before it (torch profiler
memory events).

Usage:
    python benchmarks/conv_speed.py [--threads 1 2] [--reps 30] [--repeats 3] [--grad both|params|input]
        [--breakdown] [--out docs/benchmarks_conv.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _machine import cpu_description
from _markdown import write_section

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

    saved = os.dup(2)  # the profiler's C++ side logs to stderr; keep the table readable
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    # every op's own (exclusive) allocations minus frees, in time order; "[memory]" events are frees between ops
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in events:
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak / 2**20


def time_interleaved(
    fns: dict[str, Callable[[], None]], reps: int, warmup: int = 3
) -> dict[str, dict[str, float]]:
    """Per function: median and min milliseconds of wall-clock and of process CPU time per call.

    Repetitions are interleaved across functions. On a shared machine the CPU time is the robust measure (wall
    time also counts the time the process waits for a core).
    """
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    for _ in range(reps):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {
        name: {
            "wall_med": statistics.median(wall[name]) * 1e3,
            "cpu_med": statistics.median(cpu[name]) * 1e3,
            "cpu_min": min(cpu[name]) * 1e3,
        }
        for name in fns
    }


def run_case(
    b: int, c: int, size: int, o: int, reps: int, input_grad: bool, naive_reps: int, repeats: int = 1
) -> list[tuple]:
    """Table rows for one shape; ``naive_reps=0`` skips the naive loop (its rows and its correctness check).

    The two fast layers are timed in ``repeats`` interleaved rounds of ``reps`` calls; a row's times are the
    medians over rounds of each round's median (CPU) and its ratios the medians of the per-round ratios.
    """
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(b, c, size, size, generator=gen) * 2 - 1).requires_grad_(input_grad)
    conv = nn.Conv2d(c, o, 3, padding=1)
    kan = KANConv2d(c, o, 3, padding=1, grid=5, k=3)
    models: dict[str, nn.Module] = {"nn.Conv2d+SiLU": conv, "KANConv2d": kan}
    fns = {"nn.Conv2d+SiLU": _step(conv, x, F.silu), "KANConv2d": _step(kan, x)}
    rounds = [time_interleaved(fns, reps) for _ in range(max(1, repeats))]
    res = {name: {key: statistics.median(r[name][key] for r in rounds) for key in rounds[0][name]} for name in fns}
    ratios_by_name = {
        name: tuple(
            statistics.median(r[name][key] / r["nn.Conv2d+SiLU"][key] for r in rounds)
            for key in ("cpu_med", "cpu_min", "wall_med")
        )
        for name in fns
    }
    spread = {name: [r[name]["cpu_med"] / r["nn.Conv2d+SiLU"]["cpu_med"] for r in rounds] for name in fns}
    err = None
    if naive_reps > 0:
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
        models["naive loop"] = ref
        fns["naive loop"] = _step(ref, x)
        res["naive loop"] = time_interleaved({"naive": fns["naive loop"]}, naive_reps, warmup=1)["naive"]
        base = res["nn.Conv2d+SiLU"]
        r = res["naive loop"]
        ratios_by_name["naive loop"] = (r["cpu_med"] / base["cpu_med"], r["cpu_min"] / base["cpu_min"],
                                        r["wall_med"] / base["wall_med"])
        spread["naive loop"] = [ratios_by_name["naive loop"][0]]
    shape = f"{b}x{c}x{size}x{size} -> {o}"
    rows = []
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        rows.append((shape, name, res[name], ratios_by_name[name], peak_memory_mb(fns[name]), params, spread[name]))
    if err is not None:
        rows.append((shape, f"(max abs naive - fast: {err:.1e})", None, None, None, None, None))
    return rows


def breakdown(b: int, c: int, size: int, o: int, reps: int, input_grad: bool, repeats: int) -> dict[str, float]:
    """Where a KANConv2d step's time goes: CPU ms (median over rounds of each round's median) of the whole step,
    the feature expansion alone (forward, plus its backward with ``input_grad``), ``F.conv2d`` over the same
    precomputed features (forward + backward, same loss) and ``nn.Conv2d``+SiLU; the rest (weights, border term,
    checks, layout) is the step minus the two parts. All interleaved in every round."""
    from kanlens.layers.conv_features import UniformFeatures

    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(b, c, size, size, generator=gen) * 2 - 1).requires_grad_(input_grad)
    kan = KANConv2d(c, o, 3, padding=1, grid=5, k=3)
    conv = nn.Conv2d(c, o, 3, padding=1)
    drop = kan._inside_grid(x, with_zero=True)
    nb = kan.num_basis - int(drop)
    spacing = kan._uniform_spacing()
    assert spacing is not None
    with torch.no_grad():
        feats0 = UniformFeatures.apply(x, *spacing, nb, kan.k, kan.base_fun_name)
    feats = feats0.detach().requires_grad_(input_grad)
    weight = kan._fused_weight(drop, 1.0)[0].detach().requires_grad_()
    grad_feats = torch.rand(feats0.shape, generator=gen).to(memory_format=torch.channels_last)

    def expansion() -> None:
        x.grad = None
        out = UniformFeatures.apply(x, *spacing, nb, kan.k, kan.base_fun_name)
        if input_grad:
            out.backward(grad_feats)

    def conv_only() -> None:
        weight.grad = feats.grad = None
        F.conv2d(feats, weight, None, 1, 1).square().mean().backward()

    fns = {"KANConv2d step": _step(kan, x), "feature expansion": expansion, "F.conv2d on the features": conv_only,
           "nn.Conv2d+SiLU": _step(conv, x, F.silu)}
    rounds = [time_interleaved(fns, reps) for _ in range(max(1, repeats))]
    res = {name: statistics.median(r[name]["cpu_med"] for r in rounds) for name in fns}
    res["rest (step - expansion - conv)"] = (res["KANConv2d step"] - res["feature expansion"]
                                             - res["F.conv2d on the features"])
    return res


def format_breakdown(parts: list[tuple[int, str, bool, dict[str, float]]]) -> str:
    """One row per part, one column per (threads, shape, gradients) case, each also as a multiple of the
    baseline."""
    names = list(parts[0][3])
    head = " | ".join(f"{t}t {shape} {'params + input' if xg else 'params'}" for t, shape, xg, _ in parts)
    lines = [f"| part (CPU ms, x nn.Conv2d+SiLU) | {head} |", "|---|" + "---:|" * len(parts)]
    for name in names:
        cells = " | ".join(f"{p[name]:.2f} ({p[name] / p['nn.Conv2d+SiLU']:.2f}x)" for *_, p in parts)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def format_table(rows: list[tuple]) -> str:
    lines = [
        "| shape | layer | CPU ms median | CPU ms min | wall ms median | x Conv2d+SiLU (CPU median / CPU min / "
        "wall median) | peak MB | params |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for shape, name, r, ratios, mem, params, _ in rows:
        if r is None:
            lines.append(f"| {shape} | {name} | | | | | | |")
        else:
            rat = " / ".join(f"{v:.2f}" for v in ratios)
            lines.append(
                f"| {shape} | {name} | {r['cpu_med']:.2f} | {r['cpu_min']:.2f} | {r['wall_med']:.2f} | {rat} | "
                f"{mem:.1f} | {params} |"
            )
    return "\n".join(lines)


def format_summary(summary: list[tuple[int, str, bool, tuple]], repeats: int) -> str:
    """The headline table: KANConv2d / nn.Conv2d+SiLU per thread count, shape and gradient mode."""
    lines = [
        f"| threads | shape | gradients | Conv2d+SiLU CPU ms | KANConv2d CPU ms | x Conv2d+SiLU (median of {repeats} "
        "rounds) | per-round ratios |",
        "|---:|---|---|---:|---:|---:|---|",
    ]
    for threads, shape, input_grad, rows in summary:
        conv = next(r for r in rows if r[1] == "nn.Conv2d+SiLU")
        kan = next(r for r in rows if r[1] == "KANConv2d")
        grads = "params + input" if input_grad else "params"
        per_round = " ".join(f"{v:.2f}" for v in kan[6])
        lines.append(f"| {threads} | {shape} | {grads} | {conv[2]['cpu_med']:.2f} | {kan[2]['cpu_med']:.2f} | "
                     f"**{kan[3][0]:.2f}** | {per_round} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts, e.g. 1 2")
    parser.add_argument("--reps", type=int, default=30, help="interleaved calls per candidate per round")
    parser.add_argument("--repeats", type=int, default=3, help="independent rounds; ratios are their median")
    parser.add_argument("--naive-reps", type=int, default=3, help="0 skips the naive loop")
    parser.add_argument("--grad", choices=("both", "params", "input"), default="both",
                        help="gradients for the parameters only, also for the input, or both runs")
    parser.add_argument("--input-grad", action="store_true", help="same as --grad input (the former flag)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the feature expansion and the convolution over the features alone")
    parser.add_argument("--out", default=None, help="write a markdown report to this path")
    args = parser.parse_args(argv)
    modes = {"both": (False, True), "params": (False,), "input": (True,)}["input" if args.input_grad else args.grad]
    summary, detail, parts = [], [], []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for input_grad in modes:
            rows_of_mode = []
            for b, c, size, o in SHAPES:
                # the naive loop (seconds per call) only once, at the first thread count, without the input grad
                naive = args.naive_reps if threads == args.threads[0] and not input_grad else 0
                rows = run_case(b, c, size, o, args.reps, input_grad, naive, repeats=args.repeats)
                summary.append((threads, rows[0][0], input_grad, rows))
                rows_of_mode += rows
                if args.breakdown:
                    parts.append((threads, rows[0][0], input_grad,
                                  breakdown(b, c, size, o, args.reps, input_grad, args.repeats)))
            detail.append((threads, input_grad, rows_of_mode))
    cmd = "python benchmarks/conv_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    env = (f"{cpu_description()}; threads {' '.join(map(str, args.threads))}; {args.reps} interleaved calls per "
           f"round, {args.repeats} rounds (naive loop: {args.naive_reps} calls)")
    text = [env, "", format_summary(summary, args.repeats)]
    if parts:
        text += ["", "Where the time goes (medians over rounds):", "", format_breakdown(parts)]
    for threads, input_grad, rows in detail:
        text += ["", f"{threads} thread(s), gradients: {'params + input' if input_grad else 'params'}", "",
                 format_table(rows)]
    report = "\n".join(text)
    print(report)
    if args.out:
        text = f"### KANConv2d speed\n\nCommand: `{cmd.strip()}`\n\n{report}\n"
        write_section(args.out, "conv_speed", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
