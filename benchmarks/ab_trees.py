"""Interleaved A/B of two kanlens trees (e.g. a ``git archive`` of an old commit and the working tree).

    python benchmarks/ab_trees.py /tmp/base .  --repeats 3

Each repeat runs the same measurement, in a fresh process per tree (``PYTHONPATH=<tree>``), alternating trees, one
torch thread: a [100,100,100] KAN layer fwd+bwd (batch 1024, samples/s over 1.5 s), the canonical fit ([2,5,1],
grid 5, LBFGS 50 steps, lamb 1e-3; CPU ms per step), and ``KANConv2d(8, 16, 3)`` against ``nn.Conv2d``+SiLU on a
64x8x14x14 batch (CPU ms per fwd+bwd). Prints the medians per tree and their ratio (tree B / tree A).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

MEASURE = r'''
import json, time, torch
torch.set_num_threads(1)
import kanlens
from kanlens import KAN, KANConv2d, create_dataset

def rate_of(step, seconds):
    for _ in range(3):
        step()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        step(); n += 1
    return n / (time.perf_counter() - t0)

def fwd_bwd(m, x):
    def step():
        m.zero_grad(set_to_none=True); m(x).square().mean().backward()
    return step

m = KAN(width=[100, 100, 100], grid=5, k=3, seed=0).speed()
x = torch.rand(1024, 100, generator=torch.Generator().manual_seed(0)) * 2 - 1
layer = rate_of(fwd_bwd(m, x), 1.5) * 1024
ds = create_dataset(lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2), n_var=2, seed=0)
fit_model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0)
c0 = time.process_time()
fit_model.fit(ds, opt="LBFGS", steps=50, lamb=0.001, progress=False)
fit_ms = (time.process_time() - c0) / 50 * 1000
xc = torch.rand(64, 8, 14, 14, generator=torch.Generator().manual_seed(0))
conv_ms = {}
for name, mod in (("kan_conv", KANConv2d(8, 16, 3, padding=1, grid=5)),
                  ("conv2d_silu", torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.SiLU()))):
    step = fwd_bwd(mod, xc)
    for _ in range(3):
        step()
    c0 = time.process_time()
    for _ in range(30):
        step()
    conv_ms[name] = (time.process_time() - c0) / 30 * 1000
result = {"layer_samples_per_s": layer, "fit_cpu_ms_per_step": fit_ms}
result.update({f"{k}_cpu_ms": v for k, v in conv_ms.items()})
print(json.dumps(result))
'''


def measure(tree: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", MEASURE], cwd=tree, env=env, capture_output=True, text=True,
                         check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree_a", type=Path)
    ap.add_argument("tree_b", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
    for _ in range(args.repeats):
        runs["a"].append(measure(args.tree_a.resolve()))
        runs["b"].append(measure(args.tree_b.resolve()))
    print(f"| measurement | A: {args.tree_a} | B: {args.tree_b} | B / A |")
    print("|---|---:|---:|---:|")
    for key in runs["a"][0]:
        a = statistics.median(r[key] for r in runs["a"])
        b = statistics.median(r[key] for r in runs["b"])
        print(f"| {key} (median of {args.repeats}) | {a:,.2f} | {b:,.2f} | {b / a:.3f} |")


if __name__ == "__main__":
    main()
