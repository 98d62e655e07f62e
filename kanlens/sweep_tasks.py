"""What one search of a sweep is: :class:`SweepTask`, its :class:`SweepResult`, readers and the worker-side runner.

A task is small and cheap to send: either a *recipe* (a formula string, its sampling box, sizes and seed: the
worker samples the data itself) or the rows themselves as float64 numpy arrays (a CSV column). Every task is
checked when it is made (name, kind, formula, ranges, widths, library names, sizes), so a malformed entry of a
task file is refused before anything runs. :func:`run_task` runs one task wherever it is called (a Dask worker,
or this process) and never raises for a failing search: the failure is a result with ``ok=False``.

This module imports no Dask. :func:`kanlens.sweep` (in :mod:`kanlens.sweeps`) schedules tasks on a cluster.

Example:
    >>> from kanlens.sweep_tasks import SweepTask, run_task
    >>> task = SweepTask("mul", kind="fit", formula="x1*x2", width=(2, 2, 1), n_train=64, n_test=32, steps=5)
    >>> result = run_task(task)
    >>> result.ok, sorted(result.metrics)
    (True, ['test_rmse', 'train_rmse', 'width'])
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .formula_data import SPECIAL_FUNCTIONS, formula_nrmse, library_names, sample_formula, special_library
from .utils import jsonable, one_line

__all__ = ["KINDS", "SPECIAL_FUNCTIONS", "SweepError", "SweepResult", "SweepTask", "load_formula_tasks",
           "run_task", "tasks_from_csv"]

log = logging.getLogger(__name__)

KINDS = ("symbolic", "fit")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_DATA_KEYS = ("train_input", "train_label", "test_input", "test_label")
_MAX_SAMPLES = 10_000_000


class SweepError(ValueError):
    """Bad sweep input (a task, a task file, an output folder, a scheduler address); the message names it."""


@dataclass(frozen=True)
class SweepTask:
    """One search of a sweep: a symbolic regression (``kind="symbolic"``) or one KAN fit (``kind="fit"``).

    Give exactly one data source: ``formula`` (sampled on the worker by :func:`kanlens.formula_data.sample_formula`,
    the symbolic-recovery benchmark's sampler: uniformly on ``ranges``, ``n_train`` / ``n_test`` points with
    ``seed``) or ``data`` (``create_dataset``-style arrays; labels ``(n,)`` or ``(n, 1)``).

    Args:
        name: unique in a sweep; letters, digits, ``._-`` (it names the result file).
        kind: ``"symbolic"`` (:func:`kanlens.symbolic_regression`) or ``"fit"`` (``KAN.fit``, RMSEs only).
        formula: e.g. ``"exp(sin(pi*x1) + x2**2)"`` in ``variables`` (default ``x1..xn``); parsed safely.
        ranges: one ``(low, high)`` per variable (default ``(-1, 1)`` each).
        data: the rows instead of a formula (float arrays, kept as float64).
        variables: input names (default ``x1..xn``).
        width: KAN widths (default: a symbolic task lets the search choose, see
            :func:`kanlens.symbolic.search.auto_width`; a fit task uses ``(n_inputs, 5, 1)``).
        lib: special functions added to the default symbolic library (``"besselj0"``, ``"erf"``, ...).
        noise: Gaussian noise of ``noise * std(y)`` added to all labels (seeded by ``seed``; for a formula as the
            benchmark's ``--noise``).
        time_budget: CPU seconds of the symbolic search (see :func:`kanlens.symbolic_regression`).
        steps, lamb, refine_grid: training settings (LBFGS steps per stage, sparsity weight, finer grids).
    """

    name: str
    kind: str = "symbolic"
    formula: str | None = None
    ranges: tuple[tuple[float, float], ...] | None = None
    data: Mapping[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    variables: tuple[str, ...] | None = None
    width: tuple[int, ...] | None = None
    lib: tuple[str, ...] = ()
    n_train: int = 1000
    n_test: int = 1000
    noise: float = 0.0
    seed: int = 0
    time_budget: float | None = None
    steps: int = 50
    lamb: float = 0.01
    refine_grid: tuple[int, ...] | None = (10, 20, 50)

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and _NAME.fullmatch(self.name)):
            raise SweepError(f"task name {self.name!r} must be 1-100 letters, digits, '.', '_' or '-' (it names a "
                             f"file), starting with a letter or digit")
        if self.kind not in KINDS:
            from ._checks import did_you_mean

            raise SweepError(f"task {self.name!r}: unknown kind {self.kind!r}{did_you_mean(str(self.kind), KINDS)}")
        if (self.formula is None) == (self.data is None):
            raise SweepError(f"task {self.name!r}: give exactly one of formula= or data=")
        n_in = self._check_formula() if self.formula is not None else self._check_data()
        self._check_settings(n_in)

    # ------------------------------------------------------------------------------------------ checks
    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _check_formula(self) -> int:
        from .formula_parse import FormulaError, formula_function, parse_formula

        n = len(self.ranges) if self.ranges is not None else None
        names = self.variables if self.variables is not None else (
            [f"x{k}" for k in range(1, n + 1)] if n else None)
        try:
            expr, symbols = parse_formula(self.formula, names)
        except (FormulaError, TypeError) as e:
            raise SweepError(f"task {self.name!r}: formula refused: {one_line(e)}") from None
        self._set("variables", tuple(s.name for s in symbols))
        ranges = self.ranges if self.ranges is not None else ((-1.0, 1.0),) * len(symbols)
        try:
            ranges = tuple((float(lo), float(hi)) for lo, hi in ranges)
        except (TypeError, ValueError):
            raise SweepError(f"task {self.name!r}: ranges must be [low, high] pairs, got {self.ranges!r}") from None
        if len(ranges) != len(symbols):
            raise SweepError(f"task {self.name!r}: ranges needs {len(symbols)} [low, high] pairs (one per "
                             f"variable), got {len(ranges)}")
        if not all(math.isfinite(lo) and math.isfinite(hi) and lo < hi for lo, hi in ranges):
            raise SweepError(f"task {self.name!r}: every range needs finite low < high, got {list(ranges)}")
        self._set("ranges", ranges)
        # the formula must be finite on its box: found here, not minutes later on a worker
        lo, hi = np.array(ranges).T
        x = torch.as_tensor(lo + (hi - lo) * np.random.default_rng(0).random((256, len(ranges))))
        with np.errstate(all="ignore"):
            y = formula_function(expr, symbols)(x)
        if not bool(torch.isfinite(y).all()):
            raise SweepError(f"task {self.name!r}: formula {self.formula!r} is not finite everywhere on its "
                             f"ranges {list(ranges)}")
        return len(symbols)

    def _check_data(self) -> int:
        if not isinstance(self.data, Mapping) or set(self.data) != set(_DATA_KEYS):
            raise SweepError(f"task {self.name!r}: data must be a dict with keys {', '.join(_DATA_KEYS)}")
        data = {}
        for key in _DATA_KEYS:
            try:
                a = np.array(self.data[key], dtype=np.float64)
            except (TypeError, ValueError):
                raise SweepError(f"task {self.name!r}: data[{key!r}] is not a numeric array") from None
            a = a[:, None] if key.endswith("label") and a.ndim == 1 else a
            if a.ndim != 2 or a.shape[0] < 1 or not np.isfinite(a).all():
                raise SweepError(f"task {self.name!r}: data[{key!r}] must be a finite 2-D array with rows, got "
                                 f"shape {a.shape}")
            data[key] = np.ascontiguousarray(a)
        for split in ("train", "test"):
            if data[f"{split}_input"].shape[0] != data[f"{split}_label"].shape[0]:
                raise SweepError(f"task {self.name!r}: {split} inputs and labels have different row counts")
        if data["train_input"].shape[1] != data["test_input"].shape[1] or data["train_label"].shape[1] != 1:
            raise SweepError(f"task {self.name!r}: train and test inputs need the same columns and one label column")
        self._set("data", data)
        n = data["train_input"].shape[1]
        names = self.variables if self.variables is not None else tuple(f"x{k}" for k in range(1, n + 1))
        if len(names) != n or not all(isinstance(v, str) and v.isidentifier() for v in names):
            raise SweepError(f"task {self.name!r}: variables must be {n} identifiers, got {names!r}")
        self._set("variables", tuple(names))
        return n

    def _check_settings(self, n_in: int) -> None:
        if self.width is not None or self.kind != "symbolic":  # no width: the symbolic search chooses one
            self._check_width(n_in)
        self._check_options()

    def _check_width(self, n_in: int) -> None:
        width = self.width if self.width is not None else (n_in, 5, 1)
        try:
            width = tuple(int(w) for w in width)
        except (TypeError, ValueError):
            raise SweepError(f"task {self.name!r}: width must be integers such as (2, 5, 1), got "
                             f"{self.width!r}") from None
        if len(width) < 2 or width[0] != n_in or width[-1] != 1 or min(width) < 1:
            raise SweepError(f"task {self.name!r}: width {list(width)} must start with the {n_in} inputs, end with 1 "
                             f"output and have positive entries")
        self._set("width", width)

    def _check_options(self) -> None:
        lib = (self.lib,) if isinstance(self.lib, str) else tuple(self.lib)
        if lib:
            from ._checks import did_you_mean
            from .symbolic.library import default_library

            known = default_library(special=True)
            for n in lib:
                if n not in known:
                    raise SweepError(f"task {self.name!r}: unknown library function {n!r}{did_you_mean(n, known)}")
        self._set("lib", lib)
        for key, low in (("n_train", 2), ("n_test", 1), ("steps", 1)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not low <= v <= _MAX_SAMPLES:
                raise SweepError(f"task {self.name!r}: {key} must be an integer in [{low}, {_MAX_SAMPLES}], got {v!r}")
            self._set(key, int(v))
        for key in ("noise", "lamb"):
            v = getattr(self, key)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise SweepError(f"task {self.name!r}: {key} must be a finite number >= 0, got {v!r}")
            self._set(key, float(v))
        if self.time_budget is not None and not (isinstance(self.time_budget, (int, float))
                                                 and math.isfinite(self.time_budget) and self.time_budget > 0):
            raise SweepError(f"task {self.name!r}: time_budget must be a positive number of seconds or None, got "
                             f"{self.time_budget!r}")
        if self.refine_grid is not None:
            grids = (self.refine_grid,) if isinstance(self.refine_grid, int) else tuple(self.refine_grid)
            if not all(isinstance(g, int) and g >= 2 for g in grids):
                raise SweepError(f"task {self.name!r}: refine_grid must be grid sizes >= 2, got {self.refine_grid!r}")
            self._set("refine_grid", grids)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise SweepError(f"task {self.name!r}: seed must be an integer, got {self.seed!r}")
        self._set("seed", int(self.seed))

    # ------------------------------------------------------------------------------------------ identity
    def spec(self) -> dict[str, Any]:
        """The task as JSON-ready values (``data`` replaced by its row counts and a SHA-256 of its bytes)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "data"}
        out = json.loads(json.dumps(out))  # tuples -> lists
        if self.data is not None:
            h = hashlib.sha256()
            for key in _DATA_KEYS:
                a = self.data[key]
                h.update(f"{key}{a.shape}".encode())
                h.update(a.tobytes())
            out["data"] = {"train_rows": int(self.data["train_input"].shape[0]),
                           "test_rows": int(self.data["test_input"].shape[0]), "sha256": h.hexdigest()}
        return out

    def fingerprint(self) -> str:
        """A SHA-256 of :meth:`spec`: two tasks with the same fingerprint do the same work."""
        return hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()


@dataclass
class SweepResult:
    """What one task produced (one JSON file ``results/<name>.json`` of a sweep folder).

    Attributes:
        ok: the task finished; otherwise ``error`` says why.
        formula: the chosen formula (``kind="symbolic"``), as a string in the task's variables.
        exact: the formula reproduces the test data to float precision.
        metrics: ``train_rmse``/``test_rmse`` (fit), ``formula_test_nrmse`` (symbolic; RMSE / std on the test
            split), ``truth_nrmse`` (formula tasks: against the true formula on 10000 fresh points), ``width``.
        seconds, cpu_seconds: wall and CPU time of the task on its worker.
        worker: ``address`` (Dask worker, if any), ``host`` and ``pid`` of the process that ran it.
    """

    name: str
    kind: str
    fingerprint: str
    ok: bool
    formula: str | None = None
    exact: bool | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    finished: str = ""

    def to_json(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SweepResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------------------------- task files
def load_formula_tasks(path: str | os.PathLike, *, use_file_width: bool = False,
                       **settings: Any) -> list[SweepTask]:
    """Tasks from a formula file in the format of ``formulas_public.json``.

    The file holds ``{"formulas": [entry, ...]}`` (or the bare list); an entry has ``id`` and ``formula`` and
    optionally ``n_vars``, ``ranges``, ``kan_width`` and ``special_functions`` (``besselj``, ``erf``, ``fresnels``,
    ``fresnelc``); other keys are ignored. ``settings`` (``kind``, ``noise``, ``seed``, ``time_budget``,
    ``steps``, ...) apply to every task. Every entry is checked here: a malformed one raises :class:`SweepError`
    naming it (its position and id) before anything runs.

    With the default settings a task does what ``benchmarks/symbolic_recovery.py --auto-width`` does for the
    entry: the same data (:func:`kanlens.formula_data.sample_formula`), library and search settings. The entry's
    ``kan_width`` is used only with ``use_file_width=True`` (otherwise the search chooses the network).
    """
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"no such task file {str(path)!r}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SweepError(f"{path}: not a readable JSON formula file ({one_line(e)})") from None
    entries = spec.get("formulas") if isinstance(spec, dict) else spec
    if not isinstance(entries, list) or not entries:
        raise SweepError(f"{path}: expected {{\"formulas\": [...]}} with at least one entry")
    tasks, seen = [], set()
    for k, entry in enumerate(entries):
        where = f"{path}: entry {k}" + (f" ({entry.get('id')!r})" if isinstance(entry, dict) else "")
        try:
            task = _entry_task(entry, settings, use_file_width)
        except SweepError as e:
            raise SweepError(f"{where}: {e}") from None
        if task.name in seen:
            raise SweepError(f"{where}: duplicate id {task.name!r}")
        seen.add(task.name)
        tasks.append(task)
    return tasks


def _entry_task(entry: Any, settings: Mapping[str, Any], use_file_width: bool) -> SweepTask:
    if not isinstance(entry, dict):
        raise SweepError(f"must be an object with 'id' and 'formula', got {type(entry).__name__}")
    for key in ("id", "formula"):
        if not isinstance(entry.get(key), str):
            raise SweepError(f"needs a string {key!r}")
    n = entry.get("n_vars")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise SweepError(f"n_vars must be a positive integer, got {n!r}")
    ranges = entry.get("ranges")
    if ranges is not None and n is not None and (not isinstance(ranges, list) or len(ranges) != n):
        raise SweepError(f"ranges needs {n} [low, high] pairs (n_vars = {n}), got {ranges!r}")
    if ranges is None and n is not None:
        ranges = [[-1.0, 1.0]] * n
    specials = entry.get("special_functions") or []
    if not isinstance(specials, list) or any(s not in SPECIAL_FUNCTIONS for s in specials):
        raise SweepError(f"special_functions must be a list of {sorted(SPECIAL_FUNCTIONS)}, got {specials!r}")
    lib = library_names(specials)
    width = entry.get("kan_width")
    if width is not None and not (isinstance(width, list) and all(isinstance(w, int) for w in width)):
        raise SweepError(f"kan_width must be a list of integers, got {width!r}")
    width = width if use_file_width else None  # by default the search chooses the network
    try:
        return SweepTask(entry["id"], formula=entry["formula"], ranges=ranges, width=width, lib=lib, **settings)
    except SweepError as e:  # the entry is named by the caller: drop the task prefix
        raise SweepError(re.sub(r"^task '[^']*': ", "", str(e))) from None
    except TypeError as e:  # a wrong setting name is the caller's mistake, not the file's
        raise TypeError(one_line(e)) from None


def tasks_from_csv(path: str | os.PathLike, targets: Sequence[str], features: Sequence[str] | None = None, *,
                   test_frac: float = 0.2, **settings: Any) -> list[SweepTask]:
    """One task per target column of a numeric CSV (features: the given columns, default all non-targets).

    Rows are shuffled with ``settings["seed"]`` (default 0) and split into train / test; the rows travel with
    the tasks (float64). ``settings`` as in :func:`load_formula_tasks`.
    """
    from .data import DataFileError, column_identifier, load_csv  # the CSV reader of ``kanlens fit --csv``

    targets = list(targets)
    if not targets:
        raise SweepError("give at least one target column")
    if len(set(targets)) != len(targets):
        raise SweepError(f"duplicate target columns in {targets}")
    seed = settings.get("seed", 0)
    tasks = []
    try:
        if features is None:  # every column but the targets
            _, cols = load_csv(path, targets[0], None, test_frac=test_frac, seed=seed)
            features = [c for c in cols if c not in targets]
        for target in targets:
            ds, feats = load_csv(path, target, list(features), test_frac=test_frac, seed=seed)
            used: set[str] = set()
            names = tuple(column_identifier(c, used) for c in feats)
            data = {k: v.double().numpy() for k, v in ds.items()}
            name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in target)[:100] or "y"
            tasks.append(SweepTask(name, data=data, variables=names, **settings))
    except DataFileError as e:
        raise SweepError(str(e)) from None
    if len({t.name for t in tasks}) != len(tasks):
        raise SweepError(f"target columns {targets} give the same file-safe task name twice")
    return tasks


# ---------------------------------------------------------------------------------------------- worker side
def run_task(task: SweepTask) -> SweepResult:
    """Run one task here (with one torch thread) and return its result; a failing search is ``ok=False``."""
    t0, c0 = time.perf_counter(), time.process_time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    fields: dict[str, Any] = {}
    try:
        dataset, truth = _dataset(task)
        fields = _symbolic(task, dataset, truth) if task.kind == "symbolic" else _fit(task, dataset)
        ok, error = True, None
    except Exception as e:  # a failing search is a result; infrastructure failures are Dask's to retry
        ok, error = False, f"{type(e).__name__}: {one_line(e)}"
        log.warning("task %s failed: %s", task.name, error)
    finally:
        torch.set_num_threads(threads)
    return SweepResult(task.name, task.kind, task.fingerprint(), ok, error=error, seconds=time.perf_counter() - t0,
                       cpu_seconds=time.process_time() - c0, worker=_worker_info(),
                       finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **fields)


def _worker_info() -> dict[str, Any]:
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        from distributed import get_worker  # only present inside a Dask worker

        info["address"] = get_worker().address
    except (ImportError, ValueError):
        pass
    return info


def _dataset(task: SweepTask) -> tuple[dict[str, torch.Tensor], Any]:
    """The task's dataset (float32, labels ``(n, 1)``) and the true formula (``None`` for data tasks)."""
    truth = None
    if task.formula is not None:
        from .formula_parse import parse_formula

        truth, symbols = parse_formula(task.formula, task.variables)
        return sample_formula(truth, symbols, task.ranges, seed=task.seed, n_train=task.n_train,
                              n_test=task.n_test, noise=task.noise), truth  # the benchmark's sampler
    ds = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in task.data.items()}
    if task.noise > 0:
        gen = torch.Generator().manual_seed(task.seed + 1)
        scale = task.noise * float(ds["train_label"].double().std())
        for key in ("train_label", "test_label"):
            ds[key] = ds[key] + scale * torch.randn(ds[key].shape, generator=gen, dtype=ds[key].dtype)
    return ds, truth


def _symbolic(task: SweepTask, ds: dict[str, torch.Tensor], truth: Any) -> dict[str, Any]:
    from .symbolic.search import symbolic_regression
    from .symbolic.search.budget import cpu_clock

    width = None if task.width is None else list(task.width)
    with cpu_clock(time.thread_time):  # one torch thread: the budget is this thread's CPU time, not the worker's
        res = symbolic_regression(ds, width, seed=task.seed, dtype=ds["train_input"].dtype,
                                  lib=special_library(task.lib), steps=task.steps, refine_grid=task.refine_grid,
                                  lamb=task.lamb, time_budget=task.time_budget, var=list(task.variables))
    chosen = res.table[res.table.chosen]
    metrics: dict[str, Any] = {"formula_test_nrmse": math.sqrt(chosen.test_nmse),
                               "formula_train_nrmse": math.sqrt(chosen.train_nmse), "width": list(res.width),
                               "timings": {k: round(v, 3) for k, v in res.timings.items()}}
    if truth is not None:
        metrics["truth_nrmse"] = _truth_nrmse(res.formula, truth, task)
    return {"formula": str(res.formula), "exact": bool(res.exact), "metrics": metrics}


def _truth_nrmse(formula: Any, truth: Any, task: SweepTask) -> float:
    """RMSE(formula - truth) / std(truth) on 10000 fresh uniform points of the task's box (inf if not finite)."""
    import sympy

    return formula_nrmse(formula, truth, [sympy.Symbol(v) for v in task.variables], task.ranges)


def _fit(task: SweepTask, ds: dict[str, torch.Tensor]) -> dict[str, Any]:
    from .model import KAN

    model = KAN(width=list(task.width), grid=5, k=3, seed=task.seed)
    model.fit(ds, opt="LBFGS", steps=task.steps, lamb=task.lamb, progress=False)
    with torch.no_grad():
        rmse = {split: float(torch.sqrt(torch.mean((model(ds[f"{split}_input"]) - ds[f"{split}_label"]) ** 2)))
                for split in ("train", "test")}
    return {"metrics": {"train_rmse": rmse["train"], "test_rmse": rmse["test"], "width": list(model.width)}}
