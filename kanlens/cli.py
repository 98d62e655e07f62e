"""The ``kanlens`` command line: fit a KAN to a formula or a CSV file, print formulas, draw plots, run the demo.

Commands::

    kanlens fit --formula "exp(sin(pi*x1)+x2**2)" --out runs/toy
    kanlens fit --csv data.csv --target y [--features a,b] --out runs/csv
    kanlens formula runs/toy            # print the recovered formula (--latex for LaTeX)
    kanlens plot runs/toy [--edge 0,1,0] [--out edge.png]
    kanlens demo [--out runs/demo]
    kanlens sweep formulas.json --out runs/sweep [--scheduler tcp://host:8786] [--workers 2]

Exit codes: 0 success, 2 bad input (refused formula, missing file, existing output folder...), 1 unexpected
failure. Error messages are one line on stderr.

This module is the argparse parser and one ``cmd_*`` function per command; the work is elsewhere: the
fit -> prune -> refine -> symbolic workflow, its atomic run folders and reports in :mod:`kanlens.runs`, the CSV
reader in :mod:`kanlens.data`, sweeps in :mod:`kanlens.sweeps`. A run folder is never overwritten unless
``--overwrite`` is given; even then only a folder that is empty or was written by kanlens (it holds a
``.kanlens-run`` marker) is replaced.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .cli_args import (
    MAX_BUDGET,
    MAX_GRID,
    MAX_K,
    MAX_LAMB,
    MAX_ROUND,
    MAX_SAMPLES,
    MAX_STEPS,
    MAX_WORKERS,
    SEED_RANGE,
    check_limits,
    parse_device,
    parse_edge,
    parse_lib,
    parse_ranges,
    parse_width,
    positive_seconds,
)
from .data import DataFileError, column_identifier, load_csv
from .runs import MARKER, RunOptions, UsageError, run_folder, run_workflow
from .utils import one_line

__all__ = ["MARKER", "UsageError", "build_parser", "main", "parse_ranges", "parse_width"]

log = logging.getLogger("kanlens.cli")

# ---------------------------------------------------------------------------------------------- data, checkpoints
def _formula_dataset(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], list[str], Any]:
    from .data import create_dataset
    from .formula_parse import FormulaError, formula_function, parse_formula

    try:
        expr, symbols = parse_formula(args.formula)
    except FormulaError as e:
        raise UsageError(f"--formula refused: {e}") from None
    ranges = parse_ranges(args.ranges, len(symbols))
    try:
        ds = create_dataset(formula_function(expr, symbols), n_var=len(symbols), ranges=ranges,
                            train_num=args.train_num, test_num=args.test_num, seed=args.seed)
    except ValueError as e:
        raise UsageError(f"--formula: {e}") from None
    return ds, [s.name for s in symbols], expr


def _load(ckpt: Path) -> Any:
    """Load a checkpoint; a corrupt or foreign one is a one-line usage error (exit code 2), not a traceback."""
    from .io import load

    try:
        return load(ckpt)
    except ValueError as e:  # kanlens.io.CheckpointError is a ValueError naming the file and the problem
        raise UsageError(one_line(e)) from None


def _find_checkpoint(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """``(checkpoint_dir, run_dir or None)`` for a run folder or a checkpoint folder."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path, None
    if (path / "model" / "config.json").is_file():
        return path / "model", path
    raise UsageError(f"{str(path)!r} is neither a kanlens run folder (with model/) nor a checkpoint (with config.json)")


# ---------------------------------------------------------------------------------------------- commands
def cmd_fit(args: argparse.Namespace) -> int:
    if (args.formula is None) == (args.csv is None):
        raise UsageError("give exactly one of --formula or --csv")
    check_limits(
        ("--steps", args.steps, 1, MAX_STEPS), ("--grid", args.grid, 1, MAX_GRID), ("-k", args.k, 1, MAX_K),
        ("--train-num", args.train_num, 1, MAX_SAMPLES), ("--test-num", args.test_num, 1, MAX_SAMPLES),
        ("--refine", args.refine, 0, MAX_GRID), ("--seed", args.seed, *SEED_RANGE),
    )
    if not (math.isfinite(args.lamb) and 0 <= args.lamb <= MAX_LAMB):
        raise UsageError(f"--lamb must be a finite number in [0, {MAX_LAMB:g}], got {args.lamb}")
    if args.csv is not None and args.target is None:
        raise UsageError("--csv needs --target COLUMN")
    with run_folder(args.out, args.overwrite) as folder:
        dataset, var_names, source, truth = _fit_data(args)
        opts = RunOptions(
            width=parse_width(args.width) if args.width else None, grid=args.grid, k=args.k, steps=args.steps,
            lamb=args.lamb, refine=args.refine or None, seed=args.seed, device=parse_device(args.device),
            lib=parse_lib(args.lib), prune=not args.no_prune, symbolic=not args.no_symbolic, progress=not args.quiet,
            time_budget=args.time_budget,
        )
        result = run_workflow(dataset, var_names, opts, folder, source=source, command=_command_line(args),
                              truth=truth)
    out = Path(args.out)
    _say(args, f"wrote {out}/ (report.md, formula.txt, metrics.json, model/)")
    print(result.summary())
    return 0


def _fit_data(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], list[str], dict[str, Any], Any]:
    """``(dataset, variable names, source, truth formula or None)`` of ``kanlens fit --formula/--csv``."""
    if args.formula is not None:
        dataset, names, truth = _formula_dataset(args)
        return dataset, names, {"formula": args.formula, "truth": str(truth),
                                "ranges": parse_ranges(args.ranges, len(names))}, truth
    feats = None if args.features is None else [c.strip() for c in args.features.split(",") if c.strip()]
    dataset, names = load_csv(args.csv, args.target, feats, test_frac=args.test_frac, seed=args.seed)
    used: set[str] = set()
    var_names = [column_identifier(c, used) for c in names]
    return dataset, var_names, {"csv": str(args.csv), "target": args.target, "features": names}, None


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep_tasks import SweepError, load_formula_tasks, tasks_from_csv
    from .sweeps import sweep

    check_limits(("--workers", 1 if args.workers is None else args.workers, 1, MAX_WORKERS),
                  ("--steps", args.steps, 1, MAX_STEPS), ("--time-budget", args.time_budget, 1e-3, MAX_BUDGET),
                  ("--noise", args.noise, 0, MAX_LAMB), ("--seed", args.seed, *SEED_RANGE))
    if args.workers is not None and args.scheduler is not None:
        raise UsageError("--workers sizes the local cluster; with --scheduler the cluster's own workers are used")
    settings = {"noise": args.noise, "seed": args.seed, "time_budget": args.time_budget, "steps": args.steps}
    # Dask sets its loggers' levels when imported: quiet them afterwards (its INFO lines drown the progress lines);
    # without Dask, sweep() raises the ImportError that names the extra
    with contextlib.suppress(ImportError):
        import distributed  # noqa: F401
    logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        if Path(args.tasks).suffix.lower() == ".csv":
            if not args.targets:
                raise UsageError(f"{args.tasks}: a CSV file needs --targets COLUMN[,COLUMN...]")
            feats = None if args.features is None else [c.strip() for c in args.features.split(",") if c.strip()]
            tasks = tasks_from_csv(args.tasks, [c.strip() for c in args.targets.split(",") if c.strip()], feats,
                                   **settings)
        else:
            if args.targets or args.features:
                raise UsageError("--targets and --features are for CSV files (a formula file names its formulas)")
            tasks = load_formula_tasks(args.tasks, use_file_width=args.use_file_width, **settings)
        report = sweep(tasks, args.scheduler, out=args.out, n_workers=args.workers, overwrite=args.overwrite,
                       progress=False if args.quiet else None)
    except SweepError as e:
        raise UsageError(str(e)) from None
    except ImportError as e:  # no Dask: the message names the extra to install
        if "kanlens[distributed]" not in str(e):
            raise
        raise UsageError(str(e)) from None
    _say(args, f"{args.out}/: {len(report.ran)} run, {len(report.skipped)} already finished, {len(report.failed)} "
               f"failed ({report.seconds:.1f} s); results.csv, results.md, results/")
    print(report.table())
    return 1 if report.failed else 0


def cmd_formula(args: argparse.Namespace) -> int:
    if args.round is not None and not 0 <= args.round <= MAX_ROUND:
        raise UsageError(f"--round must be a number of decimals in [0, {MAX_ROUND}], got {args.round}")
    path = Path(args.path)
    name = "formula.tex" if args.latex else "formula.txt"
    if (path / name).is_file() and args.round is None:
        print((path / name).read_text().strip())
        return 0
    from .symbolic.formula import symbolic_formula

    ckpt, _ = _find_checkpoint(path)
    model = _load(ckpt)
    try:
        exprs = symbolic_formula(model, var=_var_symbols(model))
    except ValueError as e:
        raise UsageError(f"{ckpt}: {e}") from None
    from .symbolic.export import to_latex, to_string

    for e in exprs:
        # LaTeX is for reading: 4 decimals unless --round says otherwise (as formula.tex of a run folder)
        print(to_latex(e, n_digit=4 if args.round is None else args.round) if args.latex
              else to_string(e, n_digit=args.round))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plotting import plot_edge, plot_kan

    ckpt, run = _find_checkpoint(args.path)
    model = _load(ckpt)
    if args.edge is not None:
        l, i, j = parse_edge(args.edge)
        default = f"edge_{l}_{i}_{j}.png"
    else:
        default = "plot.png"
    out = Path(args.out) if args.out else (run / default if run else ckpt.with_name(f"{ckpt.name}_{default}"))
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {str(out)!r} already exists; pass --overwrite to replace it")
    names = [str(s) for s in _var_symbols(model)]
    try:
        if args.edge is not None:
            plot_edge(model, l, i, j, in_vars=names, path=out)
        else:
            plot_kan(model, in_vars=names, path=out)
    except (IndexError, ValueError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    print(out)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    argv = ["--out", args.out] + (["--overwrite"] if args.overwrite else []) + (["--quiet"] if args.quiet else [])
    return demo.main(argv)


# ---------------------------------------------------------------------------------------------- helpers
def _var_symbols(model) -> list:
    import sympy

    names = model.config.input_names
    if names is None:
        names = [f"x{k + 1}" for k in model.input_id.tolist()]
    return [sympy.Symbol(n) for n in names]


def _command_line(args: argparse.Namespace) -> str:
    import shlex

    return shlex.join(["kanlens", *getattr(args, "argv", [])])


def _say(args: argparse.Namespace, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr)


def _add_fit_parser(sub: Any) -> None:
    f = sub.add_parser("fit", help="train, prune and simplify a KAN; write a run folder",
                       description="Train a KAN on a formula or a CSV file, prune it, fit symbolic functions to its "
                       "edges and write a run folder (model/, formula.txt, formula.tex, metrics.json, "
                       "history.csv, PNGs, report.md).")
    src = f.add_argument_group("data (one of --formula / --csv)")
    src.add_argument("--formula", help='e.g. "exp(sin(pi*x1)+x2**2)" (variables x1..xn; parsed safely)')
    src.add_argument("--ranges", help="sampling box for --formula: --ranges=-1,1 (all) or --ranges=-1,1;0,2")
    src.add_argument("--train-num", type=int, default=1000, help="training samples for --formula (default 1000)")
    src.add_argument("--test-num", type=int, default=1000, help="test samples for --formula (default 1000)")
    src.add_argument("--csv", help="CSV file with a header row")
    src.add_argument("--target", help="target column of --csv")
    src.add_argument("--features", help="comma-separated feature columns (default: all but the target)")
    src.add_argument("--test-frac", type=float, default=0.2, help="test fraction of --csv rows (default 0.2)")
    m = f.add_argument_group("model and training")
    m.add_argument("--width", help="layer widths, e.g. 2,5,1 (default: chosen by the symbolic search, "
                   "n_inputs,2*n_inputs+1,1 pruned to what the data need; n_inputs,5,1 with --no-symbolic)")
    m.add_argument("--grid", type=int, default=5, help="spline grid intervals (default 5)")
    m.add_argument("-k", type=int, default=3, help="spline order (default 3)")
    m.add_argument("--steps", type=int, default=50, help="LBFGS steps of each of the 3 training stages (default 50)")
    m.add_argument("--lamb", type=float, default=0.01, help="sparsity penalty of the first stage (default 0.01)")
    m.add_argument("--refine", type=int, default=20, help="grid size after pruning (default 20; 0: no refinement)")
    m.add_argument("--lib", help="symbolic functions to try, e.g. x,x^2,sin,exp (default: the built-in library)")
    m.add_argument("--no-prune", action="store_true", help="skip pruning")
    m.add_argument("--no-symbolic", action="store_true", help="skip symbolic fitting (splines only)")
    m.add_argument("--time-budget", type=positive_seconds, default=None, metavar="SECONDS",
                   help="CPU seconds for the symbolic search, a hard limit (default: none)")
    m.add_argument("--seed", type=int, default=0, help="seed for data sampling, initialisation, batches")
    m.add_argument("--device", default="cpu", help="torch device (default cpu)")
    o = f.add_argument_group("output")
    o.add_argument("--out", required=True, help="run folder to create, e.g. runs/toy")
    o.add_argument("--overwrite", action="store_true", help="replace an existing kanlens run folder")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bars or stage messages")
    f.set_defaults(func=cmd_fit)


def _add_sweep_parser(sub: Any) -> None:
    sw = sub.add_parser("sweep", help="many symbolic regressions on a Dask cluster; one result file per task",
                        description="Run one symbolic regression per formula of a formula file (the format of "
                        "formulas_public.json) or per --targets column of a CSV file, on a local Dask cluster or "
                        "an existing one (--scheduler). Each finished task is saved at once in --out/results/; "
                        "a rerun skips finished tasks. Needs pip install kanlens[distributed].")
    sw.add_argument("tasks", metavar="FORMULAS.json|DATA.csv", help="formula file or CSV file with a header row")
    sw.add_argument("--targets", help="CSV: comma-separated target columns, one task each")
    sw.add_argument("--features", help="CSV: comma-separated feature columns (default: all but the targets)")
    sw.add_argument("--out", required=True, help="sweep folder (created; a rerun resumes it)")
    sw.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786 (default: start "
                    "a local cluster)")
    sw.add_argument("--workers", type=int, help="worker processes of the local cluster (default: CPU count)")
    sw.add_argument("--time-budget", type=float, default=60.0, metavar="S",
                    help="CPU seconds of each search after training (default 60)")
    sw.add_argument("--noise", type=float, default=0.0, metavar="EPS", help="label noise, EPS * std(y) (default 0)")
    sw.add_argument("--seed", type=int, default=0, help="seed of data sampling and initialisation (default 0)")
    sw.add_argument("--steps", type=int, default=50, help="LBFGS steps of each training stage (default 50)")
    sw.add_argument("--use-file-width", action="store_true",
                    help="formula file: start from each entry's kan_width (default: the search chooses the network)")
    sw.add_argument("--overwrite", action="store_true",
                    help="accept an --out folder holding another sweep: results not matching these tasks are deleted")
    sw.add_argument("--quiet", "-q", action="store_true", help="no progress bar or per-task lines")
    sw.set_defaults(func=cmd_sweep)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``kanlens`` command."""
    from . import __version__

    p = argparse.ArgumentParser(prog="kanlens", description="Fit, inspect and simplify Kolmogorov-Arnold Networks.")
    p.add_argument("--version", action="version", version=f"kanlens {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{fit,formula,plot,demo,sweep}")

    _add_fit_parser(sub)

    fo = sub.add_parser("formula", help="print the formula of a run folder or checkpoint")
    fo.add_argument("path", help="run folder or checkpoint folder")
    fo.add_argument("--latex", action="store_true", help="print LaTeX")
    fo.add_argument("--round", type=int, help="round constants to this many decimals")
    fo.set_defaults(func=cmd_formula)

    pl = sub.add_parser("plot", help="draw the network (or one edge) of a run folder or checkpoint")
    pl.add_argument("path", help="run folder or checkpoint folder")
    pl.add_argument("--edge", help="draw one edge l,i,j (layer, input node, output node)")
    pl.add_argument("--out", help="image file (.png/.svg/.pdf); default next to the run")
    pl.add_argument("--overwrite", action="store_true", help="replace an existing image")
    pl.set_defaults(func=cmd_plot)

    d = sub.add_parser("demo", help="fit exp(sin(pi*x1)+x2^2) end to end (what `make demo` runs)")
    d.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    d.add_argument("--overwrite", action="store_true", help="replace an existing demo run folder")
    d.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)

    _add_sweep_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kanlens`` console script; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="kanlens: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except (UsageError, DataFileError, FileExistsError, FileNotFoundError) as e:
        print(f"kanlens: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kanlens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
