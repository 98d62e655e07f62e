"""The kanlens demo (``make demo``, ``kanlens demo``, ``python -m kanlens.demo --out runs/demo``).

Fits pykan's toy formula ``f(x1, x2) = exp(sin(pi*x1) + x2^2)`` with ``KAN([2, 5, 1])``, prints the test RMSE,
prunes the network, recovers the formula symbolically and writes a run folder with plots and a report
(``report.md``). Takes well under a minute or two on a laptop CPU.

The output folder is never silently overwritten: if ``--out`` exists and is not empty the demo stops with exit
code 2 unless ``--overwrite`` is given, and even then it only replaces a folder written by kanlens (one holding a
``.kanlens-run`` marker); the new run is built in a hidden sibling folder and swapped in at the end.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["TOY_FORMULA", "main", "toy_function"]

TOY_FORMULA = "exp(sin(pi*x1) + x2**2)"


def toy_function(x: torch.Tensor) -> torch.Tensor:
    """``exp(sin(pi*x1) + x2^2)`` in pykan's column convention.

    Shapes:
        ``(batch, 2) -> (batch, 1)``.
    """
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit code (0 ok, 2 refused output folder)."""
    import logging

    import sympy

    from .data import create_dataset
    from .runs import RunOptions, UsageError, run_folder, run_workflow

    p = argparse.ArgumentParser(prog="python -m kanlens.demo", description=__doc__.split("\n\n")[1])
    p.add_argument("--out", default="runs/demo", help="run folder to write (default runs/demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing kanlens run folder")
    p.add_argument("--steps", type=int, default=50, help="LBFGS steps per training stage (default 50)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="kanlens: %(message)s", stream=sys.stderr)
    try:
        with run_folder(args.out, args.overwrite) as folder:
            print(f"kanlens demo: fitting f(x1, x2) = {TOY_FORMULA} with KAN(width=[2, 5, 1], grid=5, k=3, seed=0)",
                  flush=True)
            dataset = create_dataset(toy_function, n_var=2, seed=0)
            x1, x2 = sympy.symbols("x1 x2")
            truth = sympy.exp(sympy.sin(sympy.pi * x1) + x2**2)
            opts = RunOptions(width=[2, 5, 1], steps=args.steps, progress=not args.quiet)
            command = "python -m kanlens.demo " + " ".join(argv if argv is not None else sys.argv[1:])
            result = run_workflow(dataset, ["x1", "x2"], opts, folder, truth=truth, command=command,
                                  source={"formula": TOY_FORMULA, "ranges": [[-1, 1]] * 2})
    except UsageError as e:
        print(f"kanlens demo: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    out = Path(args.out)
    m = result.metrics
    stages = m["stages"]
    spline = [st for name, st in stages.items() if " spline " in name]
    print(f"test RMSE after the first (sparse) fit: {spline[0]['test_rmse']:.2e}")
    print(f"pruned width:                           {m['width_initial']} -> {spline[-1]['width']}")
    print(f"test RMSE of the pruned spline KAN:     {spline[-1]['test_rmse']:.2e} (grid={spline[-1]['grid']})")
    print(f"test RMSE of the final (symbolic) KAN:  {stages['final model']['test_rmse']:.2e}")
    if m.get("formula") is not None:
        print(f"recovered formula:                      {m['formula']}")
        print(f"formula test RMSE:                      {m['formula_test_rmse']:.2e}")
        print(f"sympy-equal to {TOY_FORMULA}: {m['matches_truth']}")
    print(f"total time: {m['seconds']['total']:.1f} s; wrote {out}/report.md and its plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
