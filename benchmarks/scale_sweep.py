"""Sweep scaling: the public formulas as one kanlens.sweep on a LocalCluster with 1 and with 2 worker processes.

Usage:
    python benchmarks/scale_sweep.py --formulas ../shared/benchmarks/formulas_public.json
    python benchmarks/scale_sweep.py --formulas FILE --limit 2 --time-budget 5      # a quick check

Each setting runs the same tasks (every formula of the file, or the first ``--limit``) into its own fresh run
folder; the wall time includes starting and closing the cluster. Prints a markdown table: wall seconds, the
sum of the tasks' own wall and CPU seconds, formulas recovered (``benchmarks/symbolic_recovery.py``'s criterion:
symbolic match and NRMSE < 1e-3 on fresh points), and the speedup over 1 worker (target: 2 workers >= 1.7x on a
2-core machine). ``LPT bound`` is the best speedup any order of these tasks could reach with their 1-worker
durations (longest-processing-time-first schedule): tasks of very different lengths cap the achievable ratio.
``run_sweep(args)`` is the entry point used by ``benchmarks/scale.py``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_description

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FORMULAS = ROOT.parent / "shared" / "benchmarks" / "formulas_public.json"


def lpt_makespan(durations: list[float], workers: int) -> float:
    """Makespan of the longest-processing-time-first schedule of ``durations`` on ``workers`` machines."""
    loads = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + d)
    return max(loads)


def _score(report, entries: dict) -> int:
    """Formulas recovered by ``symbolic_recovery.py``'s criterion (symbolic match and NRMSE < 1e-3)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    from symbolic_recovery import score

    return sum(bool(r.ok and score(r.formula, entries[r.name])["recovered"]) for r in report.results)


def run_sweep(args: argparse.Namespace) -> dict:
    """Run the sweep with each worker count of ``args.workers``; print the table; return the measurements."""
    from kanlens import sweep
    from kanlens.sweep_tasks import load_formula_tasks

    tasks = load_formula_tasks(args.formulas, use_file_width=args.use_file_width, time_budget=args.time_budget,
                               seed=args.seed)
    if args.limit:
        tasks = tasks[: args.limit]
    entries = {e["id"]: e for e in json.loads(Path(args.formulas).read_text())["formulas"]}
    print(f"# sweep scaling: {len(tasks)} formulas of {args.formulas}, time budget {args.time_budget:g} CPU s each")
    print(f"# {cpu_description()}")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="kanlens-scale-sweep-") as tmp:
        base = Path(args.out) if args.out else Path(tmp)
        for n in args.workers:
            out = base / f"workers{n}-{time.strftime('%Y%m%d-%H%M%S')}"
            t0 = time.perf_counter()
            report = sweep(tasks, out=out, n_workers=n, progress=False)
            wall = time.perf_counter() - t0
            rows[n] = {"wall": wall, "task_seconds": sum(r.seconds for r in report.results),
                       "task_cpu": sum(r.cpu_seconds for r in report.results), "failed": len(report.failed),
                       "recovered": _score(report, entries), "durations": [r.seconds for r in report.results]}
            print(f"# {n} worker(s): {wall:.1f} s wall, folder {out}", flush=True)
    one = rows.get(1)
    print("\n| workers | wall s | sum of task wall s | sum of task CPU s | recovered | failed | speedup | LPT bound |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in rows.items():
        speed = f"{one['wall'] / r['wall']:.2f}x" if one else "n/a"
        bound = f"{sum(one['durations']) / lpt_makespan(one['durations'], n):.2f}x" if one else "n/a"
        print(f"| {n} | {r['wall']:.1f} | {r['task_seconds']:.1f} | {r['task_cpu']:.1f} | "
              f"{r['recovered']}/{len(tasks)} | {r['failed']} | {speed} | {bound} |")
    if one and 2 in rows:
        print(f"\n2 workers vs 1: {one['wall'] / rows[2]['wall']:.2f}x faster (target >= 1.7x on 2 cores)")
    return rows


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of this benchmark (shared with ``benchmarks/scale.py``)."""
    ap.add_argument("--formulas", default=str(DEFAULT_FORMULAS), help="formula file (format of formulas_public.json)")
    ap.add_argument("--time-budget", type=float, default=60.0, help="CPU seconds of each search (default 60)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N formulas (0: all)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare (default 1 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--use-file-width", action="store_true",
                    help="start from each formula's kan_width (default: the search chooses, as --auto-width of "
                    "symbolic_recovery.py)")
    ap.add_argument("--out", help="keep the run folders here (default: a temporary folder)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    run_sweep(ap.parse_args(argv))
    return 0


if __name__ == "__main__":  # the guard matters: LocalCluster workers are spawned processes
    sys.exit(main())
