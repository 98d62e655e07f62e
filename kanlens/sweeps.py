"""Many searches as Dask tasks: :func:`sweep` runs :class:`~kanlens.sweep_tasks.SweepTask` s on a cluster.

With no client it starts an in-process ``dask.distributed.LocalCluster`` (worker processes with one thread each,
``OMP_NUM_THREADS=1``); with a scheduler address (``"tcp://host:8786"``) it submits to an existing cluster, and a
:class:`distributed.Client` is used as it is. Dask does the scheduling: a worker that dies has its tasks
reassigned by the scheduler to the others, and ``retries`` covers a task that fails for another reason.

The run folder (on the machine that calls :func:`sweep`) holds::

    .kanlens-sweep       marker: written by kanlens
    sweep.json           the task list (name, kind, fingerprint and settings of every task)
    results/<name>.json  one SweepResult per finished task, written once, atomically, as soon as it arrives
    failed/<name>.json   the last failure of a task (a rerun tries it again)
    results.csv, results.md   the table, rewritten at the end of every call

Only this process writes into the folder (workers send results back), and a result file is created with an
exclusive, atomic hard link, so no result is ever written twice. A rerun with the same tasks skips the finished
ones; a folder holding another task list is refused unless ``overwrite=True`` (then results that do not match
the new tasks are deleted and matching ones kept).

Dask is an optional dependency (``pip install kanlens[distributed]``), imported only when a sweep runs.

Example (a script using a LocalCluster needs the ``if __name__ == "__main__":`` guard of multiprocessing):
    >>> from kanlens import SweepTask, sweep
    >>> tasks = [SweepTask(f"mul{s}", formula="x1*x2", seed=s, time_budget=10) for s in range(4)]
    >>> report = sweep(tasks, out="runs/mul", n_workers=2)  # doctest: +SKIP
    >>> [r.formula for r in report.results]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sweep_tasks import SweepError, SweepResult, SweepTask, run_task
from .utils import one_line

__all__ = ["SweepConnectionError", "SweepError", "SweepReport", "sweep"]

log = logging.getLogger(__name__)

MARKER = ".kanlens-sweep"
MANIFEST = "sweep.json"
_FORMAT = {"format": "kanlens-sweep", "version": 1}
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class SweepConnectionError(SweepError, ConnectionError):
    """The Dask scheduler could not be reached (the message names the address)."""


@dataclass
class SweepReport:
    """What :func:`sweep` did. ``results`` holds every finished task (this call's and earlier ones), in task order.

    Attributes:
        folder: the run folder.
        results: finished tasks (``ok`` or not); a task interrupted before it finished has none.
        ran: names of the tasks submitted by this call; ``skipped``: finished by an earlier call.
        failed: names of the tasks whose result is ``ok=False`` (or that Dask gave up on).
        seconds: wall time of the call.
    """

    folder: Path
    results: list[SweepResult]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        """The results as a markdown table (what ``results.md`` holds)."""
        return _markdown(self.results)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise ImportError("kanlens.sweep needs Dask: pip install kanlens[distributed] "
                          f"(importing dask.distributed failed: {e})") from e
    return distributed


def sweep(
    tasks: Iterable[SweepTask],
    client: Any = None,
    *,
    out: str | os.PathLike,
    n_workers: int | None = None,
    overwrite: bool = False,
    retries: int = 2,
    connect_timeout: float = 5.0,
    progress: bool | None = None,
    on_result: Callable[[SweepResult], None] | None = None,
) -> SweepReport:
    """Run many symbolic regressions / fits on a Dask cluster; every finished task is saved at once.

    Args:
        tasks: :class:`SweepTask` s with unique names (e.g. from :func:`~kanlens.sweep_tasks.load_formula_tasks`).
        client: ``None`` (start a LocalCluster with ``n_workers`` processes), a scheduler address such as
            ``"tcp://host:8786"``, or a ``distributed.Client``.
        out: the run folder (created if needed; see the module docs for its layout).
        n_workers: worker processes of the LocalCluster (default: the CPU count); only without ``client``.
        overwrite: accept a folder holding another task list (its non-matching results are deleted).
        retries: Dask retries of a task that raised (a dead worker's tasks are reassigned regardless).
        connect_timeout: seconds to reach a scheduler address.
        progress: tqdm bar (done / running / failed); default: when stderr is a terminal. Without the bar, one
            log line (``logging.INFO``) per finished task.
        on_result: called with each new result right after it is saved (an exception raised there, such as
            ``KeyboardInterrupt``, stops the sweep: unfinished tasks are cancelled, saved results stay).

    Returns:
        A :class:`SweepReport`.

    Raises:
        SweepError: duplicate task names, a folder that is not a sweep folder or holds another sweep.
        SweepConnectionError: the scheduler address cannot be reached within ``connect_timeout``.
        ImportError: Dask is not installed.
    """
    t0 = time.perf_counter()
    tasks = _check_tasks(tasks)
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1):
        raise SweepError(f"n_workers must be a positive integer, got {n_workers!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise SweepError(f"retries must be an integer >= 0, got {retries!r}")
    if not (isinstance(connect_timeout, (int, float)) and connect_timeout > 0):
        raise SweepError(f"connect_timeout must be a positive number of seconds, got {connect_timeout!r}")
    if n_workers is not None and client is not None:
        raise SweepError("n_workers sets the size of the local cluster; with a client or scheduler address the "
                         "cluster's own workers are used")
    folder = Path(out)
    finished = _prepare_folder(folder, tasks, overwrite)
    todo = [t for t in tasks if t.name not in finished]
    report = SweepReport(folder, [], ran=[t.name for t in todo], skipped=[t.name for t in tasks if t.name in finished])
    new: dict[str, SweepResult] = {}
    try:
        if todo:
            if finished:
                log.info("sweep: %d of %d tasks already finished in %s", len(finished), len(tasks), folder)
            _run(todo, client, folder, new, n_workers=n_workers, retries=retries, timeout=connect_timeout,
                 progress=progress, on_result=on_result)
    finally:
        done = {**finished, **new}
        report.results = [done[t.name] for t in tasks if t.name in done]
        report.failed = [r.name for r in report.results if not r.ok]
        report.seconds = time.perf_counter() - t0
        try:
            _write_tables(folder, report.results)
        except OSError as e:  # never mask the sweep's own outcome
            log.warning("could not write the results table: %s", e)
    return report


def _check_tasks(tasks: Iterable[SweepTask]) -> list[SweepTask]:
    tasks = list(tasks)
    if not tasks:
        raise SweepError("no tasks to run")
    seen: set[str] = set()
    for k, t in enumerate(tasks):
        if not isinstance(t, SweepTask):
            raise SweepError(f"task {k} is a {type(t).__name__}, not a SweepTask")
        if t.name in seen:
            raise SweepError(f"task {k}: duplicate task name {t.name!r}")
        seen.add(t.name)
    return tasks


# ---------------------------------------------------------------------------------------------- the run folder
def _prepare_folder(folder: Path, tasks: list[SweepTask], overwrite: bool) -> dict[str, SweepResult]:
    """Create or check the run folder; return the finished results of these tasks (name -> result)."""
    manifest = {**_FORMAT, "tasks": [{"name": t.name, "fingerprint": t.fingerprint(), "spec": t.spec()}
                                     for t in tasks]}
    if folder.exists() and not folder.is_dir():
        raise SweepError(f"out {str(folder)!r} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            what = "a kanlens fit run folder" if (folder / ".kanlens-run").exists() else "not a kanlens sweep folder"
            raise SweepError(f"out {str(folder)!r} is {what} (no {MARKER}); refusing to write into it")
        old = _read_json(folder / MANIFEST)
        problems = _differences(old.get("tasks", []), manifest["tasks"])
        if problems and not overwrite:
            raise SweepError(f"out {str(folder)!r} holds another sweep ({'; '.join(problems[:3])}"
                             f"{'; ...' if len(problems) > 3 else ''}); use a new folder, or overwrite=True / "
                             f"--overwrite to keep only the results that match these tasks")
    for sub in ("results", "failed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("written by kanlens sweep; results/ holds one JSON per finished task\n")
    _atomic_write(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    prints = {t.name: t.fingerprint() for t in tasks}
    finished = {}
    for path in sorted((folder / "results").glob("*.json")):
        res = SweepResult.from_json(_read_json(path))
        if prints.get(res.name) == res.fingerprint and path.stem == res.name:
            finished[res.name] = res
        elif overwrite:
            log.info("sweep: removing %s (not one of these tasks)", path)
            path.unlink()
        else:  # cannot happen after the manifest check unless files were moved by hand
            raise SweepError(f"{path} is not the result of any of these tasks; move it away or pass overwrite=True")
    for path in (folder / "failed").glob("*.json"):
        if path.stem not in prints or path.stem in finished:
            path.unlink()
    return finished


def _differences(old: list[dict], new: list[dict]) -> list[str]:
    """Human-readable differences between two task lists of manifests (empty when they are the same)."""
    before = {t.get("name"): t for t in old if isinstance(t, dict)}
    after = {t["name"]: t for t in new}
    out = [f"task {n!r} is new" for n in after if n not in before]
    out += [f"task {n!r} is not in these tasks" for n in before if n not in after]
    for n in after:
        if n in before and before[n].get("fingerprint") != after[n]["fingerprint"]:
            a, b = before[n].get("spec", {}), after[n]["spec"]
            keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            detail = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:2]) or "other settings"
            out.append(f"task {n!r} has other settings ({detail})")
    return out


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{path} is missing; the folder is not a complete kanlens sweep folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SweepError(f"{path} is not readable JSON ({one_line(e)})") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path} does not hold a JSON object")
    return data


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_once(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` atomically; an existing file is never replaced (``FileExistsError``)."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    try:
        os.link(tmp, path)  # atomic and exclusive: fails if the result exists
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save(folder: Path, res: SweepResult) -> None:
    text = json.dumps(res.to_json(), indent=1) + "\n"
    if res.ok:
        try:
            _write_once(folder / "results" / f"{res.name}.json", text)
        except FileExistsError:  # only when another sweep writes into the same folder at the same time
            log.warning("sweep: %s was saved already (by another sweep on %s?); kept the first", res.name, folder)
            return
        (folder / "failed" / f"{res.name}.json").unlink(missing_ok=True)
    else:
        _atomic_write(folder / "failed" / f"{res.name}.json", text)


# ---------------------------------------------------------------------------------------------- running
def _connect(client: Any, n_workers: int | None, timeout: float) -> tuple[Any, Any, bool]:
    """``(client, own cluster or None, whether the client is ours to close)``."""
    dd = _distributed()
    if client is None:
        n = n_workers or os.cpu_count() or 1
        log.info("sweep: starting a local Dask cluster with %d worker processes", n)
        cluster = dd.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  worker_dashboard_address=None, env=dict(_WORKER_ENV), silence_logs=logging.ERROR)
        client = dd.Client(cluster)
        log.info("sweep: Dask dashboard at %s", client.dashboard_link)
        return client, cluster, True
    if isinstance(client, (str, os.PathLike)):
        address = str(client)
        try:
            client = dd.Client(address, timeout=timeout)
        except Exception as e:  # OSError, TimeoutError, ValueError for a malformed address
            raise SweepConnectionError(f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s "
                                       f"({type(e).__name__}: {one_line(e)[:200]})") from None
        if not _threads(client, default=0):
            log.warning("sweep: the scheduler at %s has no workers yet; tasks wait until one joins", address)
        return client, None, True
    return client, None, False


def _run(todo: list[SweepTask], client: Any, folder: Path, new: dict[str, SweepResult], *, n_workers: int | None,
         retries: int, timeout: float, progress: bool | None, on_result: Callable | None) -> None:
    dd = _distributed()
    client, cluster, own = _connect(client, n_workers, timeout)
    futures: dict[Any, SweepTask] = {}
    bar = _Progress(len(todo), progress)
    try:
        for t in todo:
            key = f"kanlens-sweep-{t.name}-{uuid.uuid4().hex[:8]}"
            futures[client.submit(run_task, t, key=key, retries=retries)] = t
        threads = _threads(client)
        for fut in dd.as_completed(list(futures)):
            task = futures.pop(fut)
            try:
                res = fut.result()
            except Exception as e:  # Dask gave up (KilledWorker after repeated deaths, retries spent, cancelled)
                res = SweepResult(task.name, task.kind, task.fingerprint(), False,
                                  error=f"{type(e).__name__}: {one_line(e)[:500]}")
            _save(folder, res)
            new[res.name] = res
            bar.update(res, running=min(len(futures), threads))
            if on_result is not None:
                on_result(res)
    except BaseException:
        if futures:
            log.warning("sweep stopped; cancelling %d unfinished tasks (finished results are saved in %s)",
                        len(futures), folder)
            try:
                client.cancel(list(futures))
            except Exception as e:  # the cluster may be gone already
                log.debug("cancel failed: %s", e)
        raise
    finally:
        bar.close()
        if own:
            client.close()
        if cluster is not None:
            cluster.close()


def _threads(client: Any, default: int = 1) -> int:
    """Worker threads of the cluster (``default`` when there are none or the scheduler does not answer)."""
    try:
        return sum(client.nthreads().values()) or default
    except Exception:
        return default


class _Progress:
    """A tqdm bar with done / running / failed (when stderr is a terminal), else one log line per task."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        from tqdm.auto import tqdm

        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.total, self.done, self.failed = total, 0, 0
        self.bar = tqdm(total=total, desc="sweep", unit="task", disable=not self.enabled, file=sys.stderr,
                        dynamic_ncols=True)

    def update(self, res: SweepResult, running: int) -> None:
        self.done += res.ok
        self.failed += not res.ok
        if self.enabled:
            self.bar.update(1)
            self.bar.set_postfix(done=self.done, running=running, failed=self.failed)
            return
        what = f"formula {res.formula}" if res.formula is not None else (
            f"test RMSE {res.metrics.get('test_rmse', float('nan')):.3e}" if res.ok else f"FAILED {res.error}")
        log.info("sweep [%d/%d, %d running, %d failed] %s: %s (%.1f s on %s)", self.done + self.failed, self.total,
                 running, self.failed, res.name, what, res.seconds, res.worker.get("address", res.worker.get("host")))

    def close(self) -> None:
        self.bar.close()


# ---------------------------------------------------------------------------------------------- the table
_COLUMNS = ("name", "kind", "status", "formula", "exact", "truth_nrmse", "formula_test_nrmse", "test_rmse",
            "seconds", "cpu_seconds", "worker", "error")


def _rows(results: list[SweepResult]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        m = r.metrics
        rows.append({"name": r.name, "kind": r.kind, "status": "done" if r.ok else "failed", "formula": r.formula,
                     "exact": r.exact, "truth_nrmse": m.get("truth_nrmse"),
                     "formula_test_nrmse": m.get("formula_test_nrmse"), "test_rmse": m.get("test_rmse"),
                     "seconds": round(r.seconds, 2), "cpu_seconds": round(r.cpu_seconds, 2),
                     "worker": r.worker.get("address") or r.worker.get("host"), "error": r.error})
    return rows


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _markdown(results: list[SweepResult]) -> str:
    cols = [c for c in _COLUMNS if c != "worker"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in _rows(results):
        cells = [_cell(row[c]).replace("|", "\\|") for c in cols]
        cells[cols.index("formula")] = f"`{cells[cols.index('formula')]}`" if row["formula"] else ""
        lines.append("| " + " | ".join(cells) + " |")
    done = sum(r.ok for r in results)
    exact = sum(bool(r.exact) for r in results)
    lines.append(f"\n{done} done ({exact} exact), {len(results) - done} failed.")
    return "\n".join(lines) + "\n"


def _write_tables(folder: Path, results: list[SweepResult]) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in _rows(results):
        w.writerow({k: "" if v is None else v for k, v in row.items()})
    _atomic_write(folder / "results.csv", buf.getvalue())
    _atomic_write(folder / "results.md", "# kanlens sweep\n\n" + _markdown(results))

