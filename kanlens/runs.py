"""The fit -> prune -> refine -> symbolic workflow behind ``kanlens fit`` and the demo, and its run folders.

:func:`run_workflow` trains a KAN with the shared schedule (:func:`kanlens.schedule.train_schedule`, or
:func:`kanlens.symbolic.search.symbolic_regression` which trains with the same schedule and then recovers a
formula), reports every finished stage as a :class:`~kanlens.schedule.StageEvent` to ``on_event`` and writes a
complete run folder (``model/``, ``formula.txt``, ``formula.tex``, ``metrics.json``, ``history.csv``, PNGs,
``report.md``; see :mod:`kanlens.run_reports`).

A run folder is written atomically: :func:`run_folder` builds it in a hidden sibling folder and renames it into
place at the end. An existing folder is never overwritten unless ``overwrite=True``, and even then only a folder
that is empty or was written by kanlens (it holds a ``.kanlens-run`` marker) is replaced.

Example:
    >>> with run_folder("runs/toy") as folder:
    ...     result = run_workflow(dataset, ["x1", "x2"], RunOptions(width=[2, 5, 1]), folder,
    ...                           on_event=lambda ev: print(ev.line()))
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import torch

from . import run_reports as reports
from .progress import live_progress, print_progress_line
from .schedule import StageEvent, train_schedule
from .utils import usual_permissions

__all__ = ["MARKER", "RunOptions", "RunResult", "StageEvent", "UsageError", "commit_out", "prepare_out",
           "run_folder", "run_workflow"]

log = logging.getLogger(__name__)
MARKER = ".kanlens-run"
OnEvent = Callable[[StageEvent], None]


class UsageError(ValueError):
    """Bad input to a run (output folder, widths, flags); the command line reports it as one line, exit code 2."""


# ---------------------------------------------------------------------------------------------- run folders
def prepare_out(out: str | os.PathLike, overwrite: bool) -> Path:
    """Check that ``out`` may be written; return a fresh hidden staging folder next to it."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {str(out)!r} exists and is not a folder")
        contents = list(out.iterdir())
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


@contextlib.contextmanager
def run_folder(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A staging folder to write a run into; renamed to ``out`` when the block ends without an error, deleted
    otherwise (``out`` is then untouched)."""
    staging = prepare_out(out, overwrite)
    try:
        yield staging
        commit_out(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- options, result
@dataclasses.dataclass
class RunOptions:
    """Settings of :func:`run_workflow` (the ``kanlens fit`` flags).

    ``steps`` LBFGS steps per training stage, ``lamb`` the sparsity weight of the sparse stage, ``refine`` the
    grid size tried after pruning (``None``: no refinement); ``symbolic=False`` stops at the spline KAN;
    ``progress`` writes one line per finished stage to stderr (and a step bar on a terminal).
    """

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
    time_budget: float | None = None  # CPU seconds of the symbolic search (a hard limit); None: no limit


@dataclasses.dataclass
class RunResult:
    """What :func:`run_workflow` produced: ``metrics`` is what ``metrics.json`` holds, ``events`` every
    :class:`~kanlens.schedule.StageEvent` in order."""

    metrics: dict[str, Any]
    model: Any
    formula: Any = None
    events: list[StageEvent] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the terminal: widths, RMSE per stage, the formula, the time."""
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


# ---------------------------------------------------------------------------------------------- events, progress
class _Events:
    """Collects the workflow's events (training stages keep a copy of their final model), forwards them to
    ``on_event`` and to the progress output."""

    def __init__(self, on_event: OnEvent | None, progress: bool, stream: TextIO) -> None:
        self.events: list[StageEvent] = []
        self.on_event, self.progress, self.stream = on_event, progress, stream
        self.bar = None
        if progress and live_progress(stream):  # a step bar only where it can be redrawn
            from tqdm.auto import tqdm

            self.bar = tqdm(desc="fit", unit="step", dynamic_ncols=True, file=stream)

    @property
    def stages(self) -> list[StageEvent]:
        return [e for e in self.events if e.history is not None]

    def emit(self, ev: StageEvent) -> None:
        if ev.history is not None:
            ev = dataclasses.replace(ev, index=len(self.stages) + 1, model=ev.model.copy())
        self.events.append(ev)
        if self.on_event is not None:
            self.on_event(ev)
        if self.progress:
            line = f"kanlens: {ev.line()}"
            if self.bar is not None:
                self.bar.write(line, file=self.stream)
            else:
                print_progress_line(line, self.stream)

    def step(self, step: int, model: Any, history: Any) -> bool:
        """A ``fit`` callback that only ticks the step bar."""
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(train=f"{history.train_loss[-1]:.2e}", test=f"{history.test_loss[-1]:.2e}")
        return False

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------- the workflow
def _rmse(model: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        pred = model(x.to(model.device, model.dtype))
    return float(torch.sqrt(torch.mean((pred.cpu().double() - y.double()) ** 2)))


def _drop_unused_inputs(model: Any, x: torch.Tensor) -> Any:
    """Remove inputs without any active edge (an exact operation: the function does not change)."""
    active = (model.layers[0].mask != 0) | (model.symbolic[0].mask != 0)
    used = [i for i in range(model.width_in[0]) if bool(active[:, i].any())]
    if len(used) == model.width_in[0] or not used:
        return model
    return model.prune_input(active_inputs=used, x=x.to(model.device, model.dtype))


def _train_symbolic(model: Any, dataset: dict, var_names: Sequence[str], opts: RunOptions,
                    events: _Events) -> tuple[Any, Any, Any, dict[str, float]]:
    """symbolic_regression (the shared schedule, then the formula search), then the symbolic KAN's own fit."""
    from .symbolic.search import symbolic_regression

    log.info("training, pruning and fitting symbolic functions (%d LBFGS steps per stage)", opts.steps)
    result = symbolic_regression(
        dataset, model=model, lib=opts.lib, lamb=opts.lamb, steps=(opts.steps,) * 3, refine_grid=opts.refine,
        prune=opts.prune, var=list(var_names), fit_kwargs={"callbacks": [events.step]}, on_stage=events.emit,
        time_budget=opts.time_budget,
    )
    spline = events.stages[-1].model if events.stages else None
    # the pipeline refits the *formula*; train the symbolic KAN's own constants too (pykan's last fit)
    final, t = result.model, time.perf_counter()
    width, grid = list(final.width), final.grid
    h = final.fit(dataset, steps=opts.steps, update_grid=False, progress=False, callbacks=[events.step])
    events.emit(StageEvent("symbolic", 0, width, grid, h, final, time.perf_counter() - t))
    events.emit(StageEvent("formula", message=str(result.formula)))
    return final, spline, result, {f"pipeline_{k}": v for k, v in result.timings.items()}


def _train_splines(model: Any, dataset: dict, opts: RunOptions, events: _Events) -> Any:
    """The shared schedule alone (one prune round per sparse fit, as the command line always did)."""
    log.info("training and pruning (splines only)")
    return train_schedule(model, dataset, steps=(opts.steps,) * 3, lamb=opts.lamb, prune=opts.prune,
                          refine_grid=(opts.refine,) if opts.refine else None, prune_rounds=1,
                          fit_kwargs={"callbacks": [events.step]}, on_stage=events.emit)


def _stage_metrics(stages: Sequence[StageEvent], final: Any, dataset: dict) -> dict[str, dict[str, Any]]:
    out = {st.name: {"width": st.width, "grid": st.grid, "steps": len(st.history), "train_rmse": st.train_rmse,
                     "test_rmse": st.test_rmse, "seconds": st.history.seconds} for st in stages}
    xtr, ytr, xte, yte = (dataset[k] for k in ("train_input", "train_label", "test_input", "test_label"))
    out["final model"] = {"width": final.width, "grid": final.grid, "steps": 0, "seconds": 0.0,
                          "train_rmse": _rmse(final, reports.model_inputs(final, xtr), ytr),
                          "test_rmse": _rmse(final, reports.model_inputs(final, xte), yte)}
    return out


def _check_width(opts: RunOptions, dataset: dict) -> list[int]:
    n_in, n_out = dataset["train_input"].shape[1], dataset["train_label"].shape[1]
    if opts.width:
        width = list(opts.width)
    elif opts.symbolic:  # the search's own choice: [n, 2n + 1, m], sparsified and pruned to what the data need
        from .symbolic.search import auto_width

        width = auto_width(dataset)
    else:
        width = [n_in, 5, 1]
    if width[0] != n_in or width[-1] != n_out:
        raise UsageError(f"--width {','.join(map(str, width))} must start with the {n_in} inputs and end with "
                         f"{n_out} output")
    return width


def run_workflow(
    dataset: dict[str, torch.Tensor],
    var_names: Sequence[str],
    opts: RunOptions,
    folder: str | os.PathLike,
    *,
    source: dict[str, Any] | None = None,
    command: str = "",
    truth: Any = None,
    on_event: OnEvent | None = None,
) -> RunResult:
    """Train, prune, refine, (symbolic) and write a complete run folder into ``folder`` (which must exist).

    With ``opts.symbolic`` the work is :func:`kanlens.symbolic.search.symbolic_regression` (the shared
    training schedule, auto_symbolic, joint refit and snapping of constants) and a last fit of the symbolic KAN;
    otherwise the shared schedule :func:`kanlens.schedule.train_schedule` alone.

    Args:
        dataset: pykan-style dataset with one output.
        var_names: input names (used in formulas and plots).
        opts: the settings.
        folder: an existing (staging) folder, e.g. from :func:`run_folder`.
        source, command: where the data came from and the command line, recorded in ``metrics.json``.
        truth: the sympy formula the data came from, if known (``metrics["matches_truth"]``).
        on_event: called with a :class:`~kanlens.schedule.StageEvent` after each step, in order: ``"start"``, the
            training stages (``"sparse spline"``, ``"spline"``, then ``"symbolic"``), ``"formula"`` (symbolic
            runs), ``"written"``.

    Shapes:
        dataset inputs ``(n, len(var_names))``, labels ``(n, 1)``.
    """
    from . import __version__
    from .model import KAN

    t0, folder = time.perf_counter(), Path(folder)
    width = _check_width(opts, dataset)
    model = KAN(width=width, grid=opts.grid, k=opts.k, seed=opts.seed, device=opts.device,
                input_names=list(var_names))
    events = _Events(on_event, opts.progress, sys.stderr)
    xtr, xte = dataset["train_input"], dataset["test_input"]
    events.emit(StageEvent("start", width=width, grid=opts.grid, message=f"KAN {width} on {xtr.shape[0]} train / "
                           f"{xte.shape[0]} test rows"))
    seconds: dict[str, float] = {}
    result = spline = None
    try:
        if opts.symbolic:
            final, spline, result, times = _train_symbolic(model, dataset, var_names, opts, events)
            seconds.update(times)
        else:
            final = _train_splines(model, dataset, opts, events)
    finally:
        events.close()
    seconds["training"] = time.perf_counter() - t0
    final = _drop_unused_inputs(final, xtr)
    metrics: dict[str, Any] = {
        "kanlens_version": __version__, "command": command, "source": source or {},
        "n_train": int(xtr.shape[0]), "n_test": int(xte.shape[0]), "inputs": list(var_names),
        "inputs_kept": [str(n) for n in (final.config.input_names or var_names)], "width_initial": width,
        "width_final": list(final.width), "settings": dataclasses.asdict(opts),
        "stages": _stage_metrics(events.stages, final, dataset), "formula": None,
    }
    if result is not None:
        metrics.update(reports.formula_metrics(result, var_names, xte, dataset["test_label"], truth))
    _write_folder(folder, metrics, events, final, spline, result, dataset, var_names, seconds, t0)
    events.progress = False  # the caller reports where the folder ends up
    events.emit(StageEvent("written", message=str(folder)))
    return RunResult(metrics, final, None if result is None else result.formula, events.events)


def _write_folder(folder: Path, metrics: dict[str, Any], events: _Events, final: Any, spline: Any, result: Any,
                  dataset: dict, var_names: Sequence[str], seconds: dict[str, float], t0: float) -> None:
    t = time.perf_counter()
    stages = events.stages
    first = stages[0].model if stages else None
    warnings_ = reports.write_plots(folder, [("network_fit.png", first), ("network_pruned.png", spline),
                                             ("network_final.png", final)], stages, dataset, var_names)
    seconds["plots"] = time.perf_counter() - t
    final.save(folder / "model")
    if spline is not None:
        spline.save(folder / "model_spline")
    reports.write_history(folder / "history.csv", stages)
    if result is not None:
        from .symbolic.export import to_latex

        (folder / "formula.txt").write_text(str(result.formula) + "\n")
        (folder / "formula.tex").write_text(to_latex(result.formula) + "\n")
    seconds["total"] = time.perf_counter() - t0
    metrics["seconds"], metrics["warnings"] = seconds, warnings_
    reports.write_metrics(folder, metrics)
