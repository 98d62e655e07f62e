"""The ``kanlens`` command line: fit a KAN to a formula or a CSV file, print formulas, draw plots, run the demo.

Commands::

    kanlens fit --formula "exp(sin(pi*x1)+x2**2)" --out runs/toy
    kanlens fit --csv data.csv --target y [--features a,b] --out runs/csv
    kanlens formula runs/toy            # print the recovered formula (--latex for LaTeX)
    kanlens plot runs/toy [--edge 0,1,0] [--out edge.png]
    kanlens demo [--out runs/demo]

Exit codes: 0 success, 2 bad input (refused formula, missing file, existing output folder...), 1 unexpected
failure. Error messages are one line on stderr.

A run folder is written atomically (built in a hidden sibling folder, renamed at the end) and is never
overwritten unless ``--overwrite`` is given; even then only a folder that is empty or was written by kanlens
(it holds a ``.kanlens-run`` marker) is replaced.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .utils import usual_permissions

__all__ = ["UsageError", "build_parser", "load_csv", "main", "parse_ranges", "parse_width", "prepare_out"]

log = logging.getLogger("kanlens.cli")
MARKER = ".kanlens-run"

# generous upper bounds of numeric flags: beyond them a run would overflow float32 or exhaust memory (a one-line
# usage error up front instead of an OverflowError / allocator traceback minutes later)
MAX_GRID = 1000  # --grid and --refine
MAX_K = 10  # spline order; k = 20 already gives NaN losses in float32
MAX_STEPS = 1_000_000
MAX_SAMPLES = 10_000_000  # --train-num, --test-num
MAX_WIDTH = 10_000  # nodes per layer
MAX_LAMB = 1e30  # the penalty is computed in float32 (max ~3.4e38)
MAX_ROUND = 50  # decimals of `kanlens formula --round`
SEED_RANGE = (-(2**63), 2**63 - 1)  # torch.Generator.manual_seed


class UsageError(ValueError):
    """Bad command-line input; reported as one line with exit code 2."""


# ---------------------------------------------------------------------------------------------- argument parsing
def _positive_float(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return v


def parse_width(text: str) -> list[int]:
    """``"2,5,1"`` -> ``[2, 5, 1]``."""
    try:
        width = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"--width must be comma-separated integers such as 2,5,1, got {text!r}") from None
    if len(width) < 2 or any(w < 1 for w in width):
        raise UsageError(f"--width needs at least two positive integers such as 2,5,1, got {text!r}")
    if max(width) > MAX_WIDTH:
        raise UsageError(f"--width: at most {MAX_WIDTH} nodes per layer, got {max(width)}")
    return width


def parse_ranges(text: str | None, n_var: int) -> list[list[float]]:
    """``"-1,1"`` (all variables) or ``"-1,1;0,2"`` (one pair per variable) -> ``[[low, high], ...]``."""
    if text is None:
        return [[-1.0, 1.0]] * n_var
    try:
        pairs = [[float(v) for v in part.strip().strip("[]()").split(",")] for part in text.split(";")]
    except ValueError:
        raise UsageError(f"--ranges must look like -1,1 or -1,1;0,2 (one pair per variable), got {text!r}") from None
    if len(pairs) == 1:
        pairs = pairs * n_var
    if len(pairs) != n_var or any(len(p) != 2 for p in pairs):
        raise UsageError(f"--ranges needs one low,high pair or {n_var} pairs separated by ';', got {text!r}")
    for lo, hi in pairs:
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise UsageError(f"--ranges: every range needs finite low < high, got {lo},{hi}")
    return pairs


def _edge(text: str) -> tuple[int, int, int]:
    try:
        l, i, j = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--edge must be three integers l,i,j (layer, input, output node), got {text!r}") from None
    return l, i, j


def _identifier(name: str, used: set[str]) -> str:
    """A sympy-friendly variable name for a CSV column (``"sepal length"`` -> ``"sepal_length"``)."""
    out = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name.strip()) or "x"
    if not (out[0].isalpha()):
        out = "x_" + out
    base, n = out, 2
    while out in used:
        out, n = f"{base}_{n}", n + 1
    used.add(out)
    return out


# ---------------------------------------------------------------------------------------------- data
def load_csv(
    path: str | os.PathLike,
    target: str,
    features: Sequence[str] | None = None,
    *,
    test_frac: float = 0.2,
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Read a numeric CSV with a header into a pykan-style dataset (rows shuffled with ``seed``, then split).

    Returns:
        ``(dataset, feature_names)``.

    Shapes:
        inputs ``(n, len(features))``, labels ``(n, 1)``.
    """
    from .utils import did_you_mean

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--csv: no such file {str(path)!r}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise UsageError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise UsageError(f"{path}: duplicate column names in the header {header}")
    if target not in header:
        raise UsageError(f"--target: no column {target!r} in {path}{did_you_mean(target, header)}")
    feats = [c for c in header if c != target] if features is None else list(features)
    for c in feats:
        if c not in header:
            raise UsageError(f"--features: no column {c!r} in {path}{did_you_mean(c, header)}")
    if target in feats:
        raise UsageError(f"--features must not include the target column {target!r}")
    if not feats:
        raise UsageError(f"{path}: no feature columns besides the target {target!r}")
    cols = [header.index(c) for c in [*feats, target]]
    values = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UsageError(f"{path}, line {n}: {len(row)} fields but the header has {len(header)}")
        try:
            values.append([float(row[c]) for c in cols])
        except ValueError:
            bad = next(c for c in cols if not _is_float(row[c]))
            raise UsageError(f"{path}, line {n}, column {header[bad]!r}: not a number: {row[bad]!r}") from None
    data = torch.tensor(values, dtype=torch.float64)
    if not bool(torch.isfinite(data).all()):
        raise UsageError(f"{path}: contains NaN or infinite values in the selected columns")
    if data.shape[0] < 10:
        raise UsageError(f"{path}: needs at least 10 data rows, got {data.shape[0]}")
    if not 0.0 < test_frac < 1.0:
        raise UsageError(f"--test-frac must be in (0, 1), got {test_frac}")
    perm = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))
    data = data[perm].float()
    n_test = max(1, round(test_frac * data.shape[0]))
    x, y = data[:, :-1], data[:, -1:]
    dataset = {"train_input": x[n_test:], "train_label": y[n_test:], "test_input": x[:n_test],
               "test_label": y[:n_test]}
    return dataset, feats


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


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


# ---------------------------------------------------------------------------------------------- run folders
def prepare_out(out: str | os.PathLike, overwrite: bool) -> Path:
    """Check that ``out`` may be written; return a fresh hidden staging folder next to it."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {str(out)!r} exists and is not a folder")
        contents = [p for p in out.iterdir()]
        if contents and not overwrite:
            raise UsageError(f"--out {str(out)!r} already exists and is not empty; pass --overwrite to replace it")
        if contents and not (out / MARKER).exists():
            raise UsageError(f"--out {str(out)!r} is not a kanlens run folder (no {MARKER}); refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    usual_permissions(staging, directory=True)
    return staging


def commit_out(staging: Path, out: str | os.PathLike) -> Path:
    """Move the finished staging folder to ``out`` (replacing an old run folder atomically)."""
    out = Path(out)
    (staging / MARKER).write_text("written by kanlens; `kanlens fit --overwrite` may replace this folder\n")
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, backup)
        os.replace(staging, out)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, out)
    return out


def _load(ckpt: Path) -> Any:
    """Load a checkpoint; a corrupt or foreign one is a one-line usage error (exit code 2), not a traceback."""
    from .io import load

    try:
        return load(ckpt)
    except ValueError as e:  # kanlens.io.CheckpointError is a ValueError naming the file and the problem
        raise UsageError(_one_line(e)) from None


def _find_checkpoint(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """``(checkpoint_dir, run_dir or None)`` for a run folder or a checkpoint folder."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path, None
    if (path / "model" / "config.json").is_file():
        return path / "model", path
    raise UsageError(f"{str(path)!r} is neither a kanlens run folder (with model/) nor a checkpoint (with config.json)")


# ---------------------------------------------------------------------------------------------- the fit pipeline
@dataclasses.dataclass
class RunOptions:
    """Settings of :func:`run_fit` (the ``kanlens fit`` flags)."""

    width: list[int] | None = None
    grid: int = 5
    k: int = 3
    steps: int = 50
    lamb: float = 0.01
    refine: int | None = 20
    seed: int = 0
    device: str = "cpu"
    lib: list[str] | None = None
    prune: bool = True
    symbolic: bool = True
    progress: bool = True
    time_budget: float | None = None


@dataclasses.dataclass
class RunResult:
    """What :func:`run_fit` produced: ``metrics`` is what ``metrics.json`` holds."""

    metrics: dict[str, Any]
    model: Any
    formula: Any = None

    def summary(self) -> str:
        m = self.metrics
        lines = [f"width: {m['width_initial']} -> {m['width_final']}  (inputs used: {', '.join(m['inputs_kept'])})"]
        for name, st in m["stages"].items():
            lines.append(f"{name:<36} train RMSE {st['train_rmse']:.3e}  test RMSE {st['test_rmse']:.3e}")
        if m.get("formula") is not None:
            lines.append(f"formula: {m['formula']}")
            lines.append(f"formula test RMSE: {m['formula_test_rmse']:.3e}"
                         + ("" if m.get("matches_truth") is None else f"  (sympy-equal to the truth: "
                                                                      f"{m['matches_truth']})"))
        lines.append(f"total time: {m['seconds']['total']:.1f} s")
        return "\n".join(lines)


class _StageRecorder:
    """A ``fit`` callback: keeps every training stage (history, width, grid and a copy of its final model) and drives
    one progress bar over all of them. Stages are told apart by their :class:`~kanlens.FitHistory` objects."""

    def __init__(self, steps: int, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.steps = steps
        self.label = "fit"
        self.stages: list[dict[str, Any]] = []
        self.bar = tqdm(disable=not progress, desc="fit", unit="step", dynamic_ncols=True, file=sys.stderr)

    def __call__(self, step: int, model: Any, history: Any) -> bool:
        if not self.stages or history is not self.stages[-1]["history"]:
            self.stages.append({"label": self.label, "history": history, "model": model, "width": model.width,
                                "grid": model.grid})
            self.bar.set_description(f"stage {len(self.stages)}: {self.label} {model.width}")
        if step == self.steps - 1:
            self.stages[-1]["model"] = model.copy()  # later stages may change the model in place (auto_symbolic)
        self.bar.update(1)
        self.bar.set_postfix(train=f"{history.train_loss[-1]:.2e}", test=f"{history.test_loss[-1]:.2e}")
        return False

    def close(self) -> None:
        self.bar.close()


def _rmse(model: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        pred = model(x.to(model.device, model.dtype))
    return float(torch.sqrt(torch.mean((pred.cpu().double() - y.double()) ** 2)))


def _inputs(model: Any, x: torch.Tensor) -> torch.Tensor:
    ids = model.config.input_ids
    return x if ids is None else x[:, ids]


def _drop_unused_inputs(model: Any, x: torch.Tensor) -> Any:
    """Remove inputs without any active edge (an exact operation: the function does not change)."""
    active = (model.layers[0].mask != 0) | (model.symbolic[0].mask != 0)
    used = [i for i in range(model.width[0]) if bool(active[:, i].any())]
    if len(used) == model.width[0] or not used:
        return model
    return model.prune_input(active_inputs=used, x=x.to(model.device, model.dtype))


def run_fit(
    dataset: dict[str, torch.Tensor],
    var_names: Sequence[str],
    opts: RunOptions,
    folder: str | os.PathLike,
    *,
    source: dict[str, Any] | None = None,
    command: str = "",
    truth: Any = None,
) -> RunResult:
    """Train, prune, (symbolic) and write a complete run folder into ``folder`` (which must exist).

    With ``opts.symbolic`` the work is :func:`kanlens.symbolic.search.symbolic_regression` (sparse fit, prune,
    fit, refine, fit, auto_symbolic, joint refit and snapping of constants); otherwise fit, prune, fit with splines.

    Shapes:
        dataset inputs ``(n, len(var_names))``, labels ``(n, 1)``.
    """
    from . import __version__
    from .model import KAN

    t0 = time.perf_counter()
    folder = Path(folder)
    n_in = dataset["train_input"].shape[1]
    if opts.width:
        width = list(opts.width)
    elif opts.symbolic:  # the search's own choice: [n, 2n + 1, 1], sparsified and pruned to what the data need
        from .symbolic.search import auto_width

        width = auto_width(dataset)
    else:
        width = [n_in, 5, 1]
    if width[0] != n_in or width[-1] != dataset["train_label"].shape[1]:
        raise UsageError(f"--width {','.join(map(str, width))} must start with the {n_in} inputs and end with "
                         f"{dataset['train_label'].shape[1]} output")
    model = KAN(width=width, grid=opts.grid, k=opts.k, seed=opts.seed, device=opts.device,
                input_names=list(var_names))
    rec = _StageRecorder(opts.steps, opts.progress)
    seconds: dict[str, float] = {}
    result = None
    try:
        if opts.symbolic:
            from .symbolic.search import symbolic_regression

            log.info("training, pruning and fitting symbolic functions (%d LBFGS steps per stage)", opts.steps)
            rec.label = "spline"
            result = symbolic_regression(
                dataset, model=model, lib=opts.lib, lamb=opts.lamb, steps=(opts.steps,) * 3,
                refine_grid=opts.refine, prune=opts.prune, var=list(var_names), fit_kwargs={"callbacks": [rec]},
                time_budget=opts.time_budget,
            )
            seconds.update({f"pipeline_{k}": v for k, v in result.timings.items()})
            spline = rec.stages[-1]["model"] if rec.stages else None
            # the pipeline refits the *formula*; train the symbolic KAN's own constants too (pykan's last fit)
            final, rec.label = result.model, "symbolic"
            final.fit(dataset, steps=opts.steps, update_grid=False, progress=False, callbacks=[rec])
        else:
            log.info("training and pruning (splines only)")
            rec.label = "spline"  # named "sparse spline" (as in the symbolic pipeline) while the penalty is on
            model.fit(dataset, steps=opts.steps, lamb=opts.lamb, progress=False, callbacks=[rec])
            final = model.prune(x=dataset["train_input"].to(model.device)) if opts.prune else model
            rec.label = "spline"
            final.fit(dataset, steps=opts.steps, progress=False, callbacks=[rec])
            if opts.refine:
                final = final.refine(opts.refine, dataset["train_input"].to(final.device))
                final.fit(dataset, steps=opts.steps, progress=False, callbacks=[rec])
            spline = None
    finally:
        rec.close()
    seconds["training"] = time.perf_counter() - t0
    final = _drop_unused_inputs(final, dataset["train_input"])
    kept = [str(n) for n in (final.config.input_names or var_names)]
    stages = {}
    for n, st in enumerate(rec.stages, start=1):
        h = st["history"]
        sparse = "sparse " if any(r > 0 for r in h.reg) else ""
        st["name"] = f"{n}: {sparse}{st['label']} {st['width']} grid={st['grid']}"
        stages[st["name"]] = {"width": st["width"], "grid": st["grid"], "steps": len(h.train_loss),
                              "train_rmse": h.train_loss[-1] if h.train_loss else math.nan,
                              "test_rmse": h.test_loss[-1] if h.test_loss else math.nan, "seconds": h.seconds}
    xte, yte = dataset["test_input"], dataset["test_label"]
    xtr, ytr = dataset["train_input"], dataset["train_label"]
    stages["final model"] = {"width": final.width, "grid": final.grid, "steps": 0, "seconds": 0.0,
                             "train_rmse": _rmse(final, _inputs(final, xtr), ytr),
                             "test_rmse": _rmse(final, _inputs(final, xte), yte)}
    metrics: dict[str, Any] = {
        "kanlens_version": __version__, "command": command, "source": source or {},
        "n_train": int(xtr.shape[0]), "n_test": int(xte.shape[0]), "inputs": list(var_names),
        "inputs_kept": kept, "width_initial": width, "width_final": list(final.width),
        "settings": dataclasses.asdict(opts), "stages": stages, "formula": None,
    }
    formula = None
    if result is not None:
        formula = result.formula
        metrics.update(_formula_metrics(result, var_names, xte, yte, truth))
    t = time.perf_counter()
    first = rec.stages[0]["model"] if rec.stages else None
    warnings_ = _write_plots(folder, [("network_fit.png", first), ("network_pruned.png", spline),
                                      ("network_final.png", final)], rec, dataset, var_names)
    seconds["plots"] = time.perf_counter() - t
    final.save(folder / "model")
    if spline is not None:
        spline.save(folder / "model_spline")
    _write_history(folder / "history.csv", rec.stages)
    if formula is not None:
        from .symbolic.export import to_latex

        (folder / "formula.txt").write_text(str(formula) + "\n")
        (folder / "formula.tex").write_text(to_latex(formula) + "\n")
    seconds["total"] = time.perf_counter() - t0
    metrics["seconds"] = seconds
    metrics["warnings"] = warnings_
    (folder / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2) + "\n")
    (folder / "report.md").write_text(_report(metrics, folder))
    return RunResult(metrics, final, formula)


def _formula_metrics(result: Any, var_names: Sequence[str], xte: torch.Tensor, yte: torch.Tensor,
                     truth: Any) -> dict[str, Any]:
    import numpy as np
    import sympy

    symbols = [sympy.Symbol(n) for n in var_names]
    f = sympy.lambdify(symbols, result.formula, modules=["scipy", "numpy"])
    x = xte.double().numpy()
    with np.errstate(all="ignore"):
        pred = np.broadcast_to(np.asarray(f(*(x[:, k] for k in range(x.shape[1]))), dtype=np.float64), (x.shape[0],))
    rmse = float(np.sqrt(np.mean((pred - yte[:, 0].double().numpy()) ** 2)))
    out: dict[str, Any] = {
        "formula": str(result.formula), "formula_test_rmse": rmse, "formula_exact": bool(result.exact),
        "formula_variables": sorted(str(s) for s in result.formula.free_symbols),
        "candidates": [
            {"chosen": k == result.table.chosen, "complexity": c.complexity, "test_nrmse": math.sqrt(c.test_nmse),
             "train_nrmse": math.sqrt(c.train_nmse), "source": c.source, "formula": str(c.expr)}
            for k, c in enumerate(result.table)
        ],
        "matches_truth": None,
    }
    if truth is not None:
        out["matches_truth"] = formulas_equal(result.formula, truth)
    return out


def formulas_equal(a: Any, b: Any) -> bool:
    """Whether two sympy formulas are mathematically equal (symbols compared by name).

    A numeric comparison at random points comes first, so that ``sympy.simplify`` (slow on large expressions)
    only runs on candidates that already agree numerically.
    """
    import numpy as np
    import sympy

    a, b = (e.xreplace({s: sympy.Symbol(s.name) for s in e.free_symbols}) for e in (a, b))
    if a == b:
        return True
    symbols = sorted(a.free_symbols | b.free_symbols, key=lambda s: s.name)
    pts = np.random.default_rng(0).uniform(0.1, 0.9, (16, len(symbols)))
    try:
        fa, fb = (sympy.lambdify(symbols, e, modules=["scipy", "numpy"]) for e in (a, b))
        with np.errstate(all="ignore"):
            va = np.broadcast_to(np.asarray(fa(*pts.T), dtype=float), (16,))
            vb = np.broadcast_to(np.asarray(fb(*pts.T), dtype=float), (16,))
    except (TypeError, ValueError, NameError, ZeroDivisionError):
        return False
    ok = np.isfinite(va) & np.isfinite(vb)
    if not ok.any() or not np.allclose(va[ok], vb[ok], rtol=1e-6, atol=1e-9):
        return False
    try:
        return bool(sympy.simplify(a - b) == 0)
    except (TypeError, ValueError, RecursionError):
        return False


def _write_plots(folder: Path, jobs: Sequence[tuple[str, Any]], rec: _StageRecorder, dataset: dict,
                 var_names: Sequence[str]) -> list[str]:
    """Network diagrams of the given models and the loss curves; a failing plot is reported, never fatal."""
    problems = []
    jobs = [(f, m) for f, m in jobs if m is not None]
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from .plotting import plot_history, plot_kan
    except Exception as e:  # pragma: no cover - plotting is a hard dependency, but never lose a run over it
        return [f"plots skipped: {type(e).__name__}: {e}"]
    for fname, m in jobs:
        try:
            x = _inputs(m, dataset["train_input"]).to(m.device, m.dtype)
            fig = plot_kan(m, x, in_vars=[str(n) for n in (m.config.input_names or var_names)],
                           title=fname[:-4].replace("_", " "), path=folder / fname)
            plt.close(fig)
        except Exception as e:
            problems.append(f"{fname}: {type(e).__name__}: {_one_line(e)}")
    try:
        if rec.stages:
            fig = plot_history([st["history"] for st in rec.stages], path=folder / "loss.png",
                               title="training (stages separated by vertical lines)")
            plt.close(fig)
    except Exception as e:
        problems.append(f"loss.png: {type(e).__name__}: {_one_line(e)}")
    for p in problems:
        log.warning("plot failed: %s", p)
    return problems


def _write_history(path: Path, stages: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stage", "step", "train_rmse", "test_rmse", "reg"])
        for st in stages:
            h = st["history"]
            for s, (tr, te, rg) in enumerate(zip(h.train_loss, h.test_loss, h.reg)):
                w.writerow([st["name"], s, f"{tr:.8g}", f"{te:.8g}", f"{rg:.8g}"])


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _report(m: dict[str, Any], folder: Path) -> str:
    src = m["source"]
    data = (f"formula `{src['formula']}` sampled on {src.get('ranges')}" if "formula" in src else
            f"`{src.get('csv')}`, target `{src.get('target')}`, features {', '.join(src.get('features', []))}")
    lines = [
        "# kanlens run", "",
        f"- data: {data} ({m['n_train']} train / {m['n_test']} test rows)",
        f"- command: `{m['command']}`" if m["command"] else "- command: (Python API)",
        f"- width: {m['width_initial']} -> {m['width_final']}; inputs used: {', '.join(m['inputs_kept'])}",
        f"- kanlens {m['kanlens_version']}, total {m['seconds']['total']:.1f} s", "",
        "## Training", "", "Every LBFGS stage (the first ones with the sparsity penalty, pruning in between):", "",
        "| stage | train RMSE | test RMSE | steps | seconds |", "|---|---|---|---|---|",
    ]
    for name, st in m["stages"].items():
        lines.append(f"| {name} | {st['train_rmse']:.3e} | {st['test_rmse']:.3e} | {st['steps']} | "
                     f"{st['seconds']:.1f} |")
    lines += ["", "![loss curves](loss.png)", ""]
    if m.get("formula") is not None:
        tex = (folder / "formula.tex").read_text().strip() if (folder / "formula.tex").exists() else ""
        lines += ["## Formula", "", "```", m["formula"], "```", "", f"$$ {tex} $$" if tex else "", "",
                  f"- test RMSE of the formula: {m['formula_test_rmse']:.3e}",
                  f"- exact to float precision: {m['formula_exact']}"]
        if m.get("matches_truth") is not None:
            lines.append(f"- sympy-equal to the formula the data came from: {m['matches_truth']}")
        lines += ["", "Candidates (Pareto front, simplest first; **chosen** in bold):", "",
                  "| complexity | test NRMSE | train NRMSE | source | formula |", "|---|---|---|---|---|"]
        for c in m["candidates"]:
            b = "**" if c["chosen"] else ""
            lines.append(f"| {b}{c['complexity']}{b} | {c['test_nrmse']:.3e} | {c['train_nrmse']:.3e} | "
                         f"{c['source']} | `{c['formula']}` |")
        lines.append("")
    lines += ["## Network", ""]
    for fname, caption in (("network_fit.png", "after the sparse fit"), ("network_pruned.png", "after pruning"),
                           ("network_final.png", "final model (symbolic edges in red)")):
        if (folder / fname).exists():
            lines += [f"### {caption}", "", f"![{caption}]({fname})", ""]
    lines += ["## Files", "", "- `model/`: final checkpoint (`kanlens.load`); `model_spline/`: the spline model "
              "before symbolic fitting (when fitted)", "- `formula.txt`, `formula.tex`, `metrics.json`, "
              "`history.csv` (per-step RMSE of every stage)", ""]
    if m["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in m["warnings"]] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- commands
def cmd_fit(args: argparse.Namespace) -> int:
    if (args.formula is None) == (args.csv is None):
        raise UsageError("give exactly one of --formula or --csv")
    for flag, value, low, high in (
        ("--steps", args.steps, 1, MAX_STEPS), ("--grid", args.grid, 1, MAX_GRID), ("-k", args.k, 1, MAX_K),
        ("--train-num", args.train_num, 1, MAX_SAMPLES), ("--test-num", args.test_num, 1, MAX_SAMPLES),
        ("--refine", args.refine, 0, MAX_GRID), ("--seed", args.seed, *SEED_RANGE),
    ):
        if value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
        if value > high:
            raise UsageError(f"{flag} must be <= {high}, got {value}")
    if not (math.isfinite(args.lamb) and 0 <= args.lamb <= MAX_LAMB):
        raise UsageError(f"--lamb must be a finite number in [0, {MAX_LAMB:g}], got {args.lamb}")
    if args.csv is not None and args.target is None:
        raise UsageError("--csv needs --target COLUMN")
    staging = prepare_out(args.out, args.overwrite)
    try:
        if args.formula is not None:
            dataset, names, truth = _formula_dataset(args)
            source = {"formula": args.formula, "truth": str(truth), "ranges": parse_ranges(args.ranges, len(names))}
            var_names = names
        else:
            truth = None
            feats = None if args.features is None else [c.strip() for c in args.features.split(",") if c.strip()]
            dataset, names = load_csv(args.csv, args.target, feats, test_frac=args.test_frac, seed=args.seed)
            used: set[str] = set()
            var_names = [_identifier(c, used) for c in names]
            source = {"csv": str(args.csv), "target": args.target, "features": names}
        opts = RunOptions(
            width=parse_width(args.width) if args.width else None, grid=args.grid, k=args.k, steps=args.steps,
            lamb=args.lamb, refine=args.refine or None, seed=args.seed, device=_device(args.device),
            lib=_lib(args.lib), prune=not args.no_prune, symbolic=not args.no_symbolic, progress=not args.quiet,
            time_budget=args.time_budget,
        )
        result = run_fit(dataset, var_names, opts, staging, source=source, command=_command_line(args), truth=truth)
        out = commit_out(staging, args.out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    _say(args, f"wrote {out}/ (report.md, formula.txt, metrics.json, model/)")
    print(result.summary())
    return 0


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
        l, i, j = _edge(args.edge)
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
        ids = model.config.input_ids if model.config.input_ids is not None else range(model.width[0])
        names = [f"x{k + 1}" for k in ids]
    return [sympy.Symbol(n) for n in names]


def _device(text: str) -> str:
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device: unknown device {text!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (use --device cpu)")
    return str(dev)


def _lib(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from .symbolic.library import default_library

    names = [v.strip() for v in text.split(",") if v.strip()]
    lib = default_library()
    from .utils import did_you_mean

    for n in names:
        if n not in lib:
            raise UsageError(f"--lib: unknown function {n!r}{did_you_mean(n, list(lib))}")
    return names


def _command_line(args: argparse.Namespace) -> str:
    import shlex

    return shlex.join(["kanlens", *getattr(args, "argv", [])])


def _say(args: argparse.Namespace, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``kanlens`` command."""
    from . import __version__

    p = argparse.ArgumentParser(prog="kanlens", description="Fit, inspect and simplify Kolmogorov-Arnold Networks.")
    p.add_argument("--version", action="version", version=f"kanlens {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{fit,formula,plot,demo}")

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
    m.add_argument("--time-budget", type=_positive_float, default=None, metavar="SECONDS",
                   help="CPU seconds for the symbolic search, a hard limit (default: none)")
    m.add_argument("--seed", type=int, default=0, help="seed for data sampling, initialisation, batches")
    m.add_argument("--device", default="cpu", help="torch device (default cpu)")
    o = f.add_argument_group("output")
    o.add_argument("--out", required=True, help="run folder to create, e.g. runs/toy")
    o.add_argument("--overwrite", action="store_true", help="replace an existing kanlens run folder")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bars or stage messages")
    f.set_defaults(func=cmd_fit)

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
    except (UsageError, FileExistsError, FileNotFoundError) as e:
        print(f"kanlens: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kanlens: interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
