"""A CSV workflow with the ``kanlens`` command line: data file in, run folder with formula, report and plots out.

Writes ``pendulum.csv`` (a made-up lab table: the energy-like quantity ``y = 2*sin(pi*angle) + length^2`` of two
measured columns, plus a ``humidity`` column that has nothing to do with it), then runs, as a user would::

    kanlens fit --csv pendulum.csv --target y --out <out>/06_run --overwrite
    kanlens formula <out>/06_run
    kanlens plot <out>/06_run --edge 0,0,0 --out <out>/06_edge.png

and prints the report's key numbers. The fit prunes ``humidity`` away. Copies the run's network diagram and loss
curves to ``06_network.png`` and ``06_loss.png`` in ``--out``.

Run:  python examples/06_csv_cli.py --out docs/images/   (about 40 s on a laptop CPU)
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def kanlens(*args: str) -> str:
    """Run the ``kanlens`` command (as ``python -m kanlens.cli`` so it works without installing the script)."""
    cmd = [sys.executable, "-m", "kanlens.cli", *args]
    print("$ kanlens", " ".join(args))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"kanlens failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


def write_csv(path: Path, n: int = 600, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-1, 1, n)
    length = rng.uniform(-1, 1, n)
    humidity = rng.uniform(-1, 1, n)
    y = 2 * np.sin(np.pi * angle) + length**2
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["angle", "humidity", "length", "y"])
        for row in zip(angle, humidity, length, y):
            w.writerow([f"{v:.9g}" for v in row])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs and the run (default: docs/images)")
    parser.add_argument("--steps", type=int, default=50, help="LBFGS steps per training stage")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pendulum.csv"
        write_csv(data)
        run = Path(tmp) / "06_run"
        print(kanlens("fit", "--csv", str(data), "--target", "y", "--steps", str(args.steps), "--out", str(run),
                      "--quiet"))
        print("formula:", kanlens("formula", str(run)))
        print(kanlens("plot", str(run), "--edge", "0,0,0", "--out", str(out / "06_edge.png"), "--overwrite"))
        metrics = json.loads((run / "metrics.json").read_text())
        print(f"inputs {metrics['inputs']} -> kept {metrics['inputs_kept']}; "
              f"formula test RMSE {metrics['formula_test_rmse']:.2e}")
        for src, dst in (("network_final.png", "06_network.png"), ("loss.png", "06_loss.png")):
            if (run / src).exists():
                shutil.copyfile(run / src, out / dst)
        print("run folder:", sorted(p.name for p in run.iterdir()))
    print(f"done in {time.perf_counter() - t0:.1f} s; images in {out}/")


if __name__ == "__main__":
    main()
