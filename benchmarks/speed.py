"""Layer throughput, peak memory and canonical-fit time: kanlens vs pykan vs an equal-parameter MLP.

Everything is measured side by side in one run; compare the ratios, not the absolute numbers (machines are noisy).

    python benchmarks/speed.py                 # full table (pykan columns only if `import kan` works)
    python benchmarks/speed.py --threads 1 2   # the layer table at one and at two torch threads
    python benchmarks/speed.py --no-fit        # skip the canonical-fit timing
    python benchmarks/speed.py --device cuda   # on a GPU machine
    python benchmarks/speed.py --mult-only     # only the multiplication-node (MultKAN) comparison
    python benchmarks/speed.py --no-mult       # everything but the MultKAN comparison

Ratios are medians over interleaved rounds (each round times every implementation once, back to back), so load
that comes and goes on a shared machine hits both sides of a ratio alike.

pykan is used only here, as a baseline (`pip install pykan==0.2.8`); kanlens never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from _machine import cpu_description

WIDTH = [100, 100, 100]
GRID, K, BATCH = 5, 3, 1024
MULT_WIDTH, MULT_ARITY = [100, [50, 25], 100], 2  # 50 sum and 25 product nodes: the first layer has 100 subnodes
MULT_FIT_WIDTH = [2, [5, 2], 1]  # the MultKAN of the issue (pykan Interp tutorials)


def toy(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def have_pykan() -> bool:
    try:
        import kan  # noqa: F401
    except Exception:
        return False
    return True


def build(impl: str, device: str, width: list = WIDTH, mult_arity: int = 2) -> torch.nn.Module:
    if impl == "kanlens":
        from kanlens import KAN

        return KAN(width=width, grid=GRID, k=K, seed=0, device=device, mult_arity=mult_arity).speed()
    if impl == "pykan":
        import copy

        from kan import KAN as PyKAN

        ckpt = tempfile.mkdtemp(prefix="pykan-bench-")
        model = PyKAN(width=copy.deepcopy(width), grid=GRID, k=K, seed=0, auto_save=False, ckpt_path=ckpt,
                      device=device, mult_arity=mult_arity)
        return model.speed()
    if impl == "mlp":
        kan = build("kanlens", "cpu", width)
        n_kan = sum(p.numel() for layer in kan.layers for p in layer.parameters())
        # One hidden layer 100-H-100 with (about) as many parameters as the KAN's spline edges (coefficients and
        # scales; the symbolic branch's affine parameters are not counted): 100-995-100 for the default setting.
        h = round((n_kan - width[-1]) / (width[0] + width[-1] + 1))
        return torch.nn.Sequential(
            torch.nn.Linear(width[0], h), torch.nn.SiLU(), torch.nn.Linear(h, width[-1])
        ).to(device)
    raise ValueError(impl)


def n_params(model: torch.nn.Module) -> int:
    """Trainable parameters, without the (unused) affine parameters of symbolic edges in kanlens and pykan."""
    names = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return sum(p.numel() for n, p in names if not n.startswith(("symbolic", "symbolic_fun")))


def step(model: torch.nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(models: dict[str, torch.nn.Module], device: str, seconds: float,
               rounds: int, n_in: int = WIDTH[0]) -> dict[str, list[float]]:
    """fwd+bwd samples/s of every round; implementations are interleaved round by round."""
    x = torch.rand(BATCH, n_in, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device)
    rates: dict[str, list[float]] = {name: [] for name in models}
    for m in models.values():
        for _ in range(3):
            step(m, x)
    for _ in range(rounds):
        for name, m in models.items():
            sync(device)
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < seconds:
                step(m, x)
                n += 1
            sync(device)
            rates[name].append(n * BATCH / (time.perf_counter() - t0))
    return rates


def median_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of ``num[r] / den[r]`` (both measured in the same round)."""
    return statistics.median(a / b for a, b in zip(num, den))


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def memory_worker(impl: str, device: str) -> None:
    """Child process: peak memory growth of one fwd+bwd batch (RSS high-water mark on CPU, allocator on CUDA)."""
    model = build(impl, device)
    x = torch.rand(BATCH, WIDTH[0]).mul(2).sub(1).to(device)
    step(model, x)  # warm-up: allocate gradients once so they are not counted as growth
    model.zero_grad(set_to_none=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(model, x)
        torch.cuda.synchronize()
        growth = torch.cuda.max_memory_allocated() - base
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the RSS high-water mark
        base = _rss_kib("VmRSS:") * 1024
        step(model, x)
        growth = _rss_kib("VmHWM:") * 1024 - base
    print(json.dumps({"growth_bytes": growth}))


def peak_memory(impl: str, device: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-worker", impl, "--device", device],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["growth_bytes"] / 2**20


def canonical_fit(impl: str, device: str, steps: int) -> tuple[float, float, float]:
    """Wall seconds, process CPU seconds and final test RMSE of the tutorial fit: [2,5,1], grid 5, k 3, LBFGS,
    lamb=0.001 (CPU time is the steadier measure on a shared machine)."""
    if impl == "kanlens":
        from kanlens import KAN, create_dataset

        ds = create_dataset(toy, n_var=2, seed=0, device=device)
        model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0, device=device)
        t0, c0 = time.perf_counter(), time.process_time()
        h = model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001, progress=False)
        return time.perf_counter() - t0, time.process_time() - c0, h.test_loss[-1]
    from kan import KAN as PyKAN
    from kan.utils import create_dataset as py_create_dataset

    ds = py_create_dataset(toy, n_var=2, seed=0, device=device)
    model = PyKAN(width=[2, 5, 1], grid=5, k=3, seed=0, auto_save=False,
                  ckpt_path=tempfile.mkdtemp(prefix="pykan-bench-"), device=device)
    t0, c0 = time.perf_counter(), time.process_time()
    res = model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001, log=10**9)
    return time.perf_counter() - t0, time.process_time() - c0, float(res["test_loss"][-1])


def layer_tables(impls: list[str], args: argparse.Namespace) -> None:
    """The layer throughput table (and kanlens vs MLP) at every requested thread count, plus peak memory."""
    models = {name: build(name, args.device) for name in impls}
    mem = {name: peak_memory(name, args.device) for name in impls}
    edge_mib = BATCH * WIDTH[0] * WIDTH[1] * 4 / 2**20
    summary = []
    for threads in args.threads:
        if threads:
            torch.set_num_threads(threads)
        rates = throughput(models, args.device, args.seconds, args.rounds)
        med = {name: statistics.median(r) for name, r in rates.items()}
        print(f"\n## Layer fwd+bwd throughput at {torch.get_num_threads()} torch thread(s), peak memory growth for one "
              f"batch (one (batch,out,in) tensor = {edge_mib:.1f} MiB); medians of {args.rounds} interleaved rounds")
        print("| impl | params | samples/s | vs kanlens | peak mem growth (MiB) | mem vs kanlens |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in impls:
            print(f"| {name} | {n_params(models[name]):,} | {med[name]:,.0f} "
                  f"| {median_ratio(rates[name], rates['kanlens']):.2f}x | {mem[name]:.1f} "
                  f"| {mem[name] / max(mem['kanlens'], 1e-9):.2f}x |")
        mlp = median_ratio(rates["mlp"], rates["kanlens"])
        summary.append((torch.get_num_threads(), mlp))
        if "pykan" in rates:
            kp = median_ratio(rates["kanlens"], rates["pykan"])
            print(f"\nkanlens / pykan throughput: {kp:.1f}x (target >= 10x); "
                  f"pykan / kanlens peak memory: {mem['pykan'] / max(mem['kanlens'], 1e-9):.1f}x (target >= 10x)")
        print(f"MLP / kanlens throughput: {mlp:.2f}x (target <= 1.3x)")
    if len(summary) > 1:
        print("\n## kanlens vs MLP by thread count (MLP / kanlens throughput, median of interleaved rounds)")
        print("| threads | MLP / kanlens | vs first row |")
        print("|---:|---:|---:|")
        for threads, ratio in summary:
            print(f"| {threads} | {ratio:.2f}x | {ratio / summary[0][1]:.2f}x |")


def fit_table(args: argparse.Namespace, impls: list[str]) -> None:
    """Canonical fit, interleaved repeats; the speed-up is the median of the per-repeat ratios."""
    print(f"\n## Canonical fit: [2,5,1] grid 5 k 3, 1000 points, LBFGS {args.fit_steps} steps, lamb=0.001, "
          f"{torch.get_num_threads()} torch thread(s), {args.fit_repeats} interleaved repeats")
    torch.optim.LBFGS([torch.zeros(1, requires_grad=True)])  # pay torch's one-time optimizer imports up front
    names = [n for n in impls if n != "mlp"]
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for _ in range(args.fit_repeats):
        for name in names:
            runs[name].append(canonical_fit(name, args.device, args.fit_steps))
    print("| impl | seconds (median) | s/step | CPU seconds (median) | test RMSE |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        sec = statistics.median(r[0] for r in runs[name])
        cpu = statistics.median(r[1] for r in runs[name])
        print(f"| {name} | {sec:.2f} | {sec / args.fit_steps * 1e3:.1f} ms | {cpu:.2f} | {runs[name][-1][2]:.4f} |")
    if "pykan" in runs:
        wall = median_ratio([r[0] for r in runs["pykan"]], [r[0] for r in runs["kanlens"]])
        cpu = median_ratio([r[1] for r in runs["pykan"]], [r[1] for r in runs["kanlens"]])
        print(f"\nkanlens fit speed-up over pykan: {wall:.1f}x wall-clock (target >= 10x), {cpu:.1f}x CPU time")


def mult_target(x: torch.Tensor) -> torch.Tensor:
    return x[:, [0]] * x[:, [1]] + torch.sin(x[:, [0]])


def mult_fit(impl: str, device: str, steps: int) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and test RMSE of an LBFGS fit (lamb=0.001) of x1*x2 + sin(x1) with a
    ``MULT_FIT_WIDTH`` MultKAN (5 sum and 2 product nodes), grid 5, k 3, 1000 points."""
    import copy

    if impl == "kanlens":
        from kanlens import KAN, create_dataset

        ds = create_dataset(mult_target, n_var=2, seed=0, device=device)
        model = KAN(width=copy.deepcopy(MULT_FIT_WIDTH), grid=5, k=3, seed=0, device=device)
        t0, c0 = time.perf_counter(), time.process_time()
        h = model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001, progress=False)
        return time.perf_counter() - t0, time.process_time() - c0, h.test_loss[-1]
    from kan import KAN as PyKAN
    from kan.utils import create_dataset as py_create_dataset

    ds = py_create_dataset(mult_target, n_var=2, seed=0, device=device)
    model = PyKAN(width=copy.deepcopy(MULT_FIT_WIDTH), grid=5, k=3, seed=0, auto_save=False,
                  ckpt_path=tempfile.mkdtemp(prefix="pykan-bench-"), device=device)
    t0, c0 = time.perf_counter(), time.process_time()
    res = model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001, log=10**9)
    return time.perf_counter() - t0, time.process_time() - c0, float(res["test_loss"][-1])


def mult_section(args: argparse.Namespace, with_pykan: bool) -> None:
    """Multiplication nodes: fwd+bwd throughput of the same MultKAN width, and an LBFGS fit, side by side."""
    impls = ["kanlens"] + (["pykan"] if with_pykan else [])
    models = {name: build(name, args.device, MULT_WIDTH, MULT_ARITY) for name in impls}
    rates = throughput(models, args.device, args.seconds, args.rounds, n_in=MULT_WIDTH[0])
    tput = {name: statistics.median(r) for name, r in rates.items()}
    print(f"\n## Multiplication nodes: width={MULT_WIDTH} mult_arity={MULT_ARITY}, fwd+bwd, batch {BATCH}")
    print("| impl | params | samples/s | vs kanlens |")
    print("|---|---:|---:|---:|")
    for name in impls:
        print(f"| {name} | {n_params(models[name]):,} | {tput[name]:,.0f} | {tput[name] / tput['kanlens']:.3f}x |")
    if "pykan" in tput:
        print(f"\nkanlens / pykan MultKAN throughput: {median_ratio(rates['kanlens'], rates['pykan']):.1f}x, median "
              f"of {args.rounds} interleaved rounds (target >= 10x)")
    if args.no_fit:
        return
    print(f"\n## MultKAN fit: {MULT_FIT_WIDTH} on x1*x2 + sin(x1), grid 5 k 3, LBFGS {args.fit_steps} steps, "
          "lamb=0.001")
    print("| impl | seconds | s/step | CPU seconds | test RMSE |")
    print("|---|---:|---:|---:|---:|")
    fits = {}
    for name in impls:
        sec, cpu, rmse = mult_fit(name, args.device, args.fit_steps)
        fits[name] = sec, cpu
        print(f"| {name} | {sec:.2f} | {sec / args.fit_steps * 1e3:.0f} ms | {cpu:.2f} | {rmse:.4f} |")
    if "pykan" in fits:
        print(f"\nkanlens MultKAN fit speed-up over pykan: {fits['pykan'][0] / fits['kanlens'][0]:.1f}x wall-clock "
              f"(target >= 10x), {fits['pykan'][1] / fits['kanlens'][1]:.1f}x CPU time")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=2.0, help="timing window per implementation and round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the layer timing (>= 3)")
    ap.add_argument("--fit-steps", type=int, default=50)
    ap.add_argument("--fit-repeats", type=int, default=3, help="interleaved repeats of the canonical fit")
    ap.add_argument("--no-fit", action="store_true")
    ap.add_argument("--no-layer", action="store_true", help="skip the layer throughput tables")
    ap.add_argument("--no-pykan", action="store_true")
    ap.add_argument("--mult-only", action="store_true", help="only the multiplication-node comparison")
    ap.add_argument("--no-mult", action="store_true", help="skip the multiplication-node comparison")
    ap.add_argument("--threads", type=int, nargs="+", default=[0],
                    help="torch thread counts to time the layers at (0 = torch default); the fit uses the first")
    ap.add_argument("--memory-worker", metavar="IMPL", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads[0]:
        torch.set_num_threads(args.threads[0])
    if args.memory_worker:
        memory_worker(args.memory_worker, args.device)
        return
    with_pykan = not args.no_pykan and have_pykan()
    impls = ["kanlens", "mlp"] + (["pykan"] if with_pykan else [])
    print(f"# device={args.device} torch={torch.__version__} threads={args.threads} cpus={os.cpu_count()} "
          f"width={WIDTH} grid={GRID} k={K} batch={BATCH} float32")
    print(f"# cpu: {cpu_description()}")
    if args.mult_only:
        mult_section(args, with_pykan)
        return
    if not args.no_layer:
        layer_tables(impls, args)
    if not args.no_fit:
        if args.threads[0]:
            torch.set_num_threads(args.threads[0])
        fit_table(args, impls)
    if not args.no_mult:
        mult_section(args, with_pykan)


if __name__ == "__main__":
    main()
