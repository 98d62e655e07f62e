"""Sweeps (kanlens.sweep) on a real Dask LocalCluster on loopback: results, reruns, a killed worker, Ctrl-C, bad
input and the CLI. Tasks are tiny fits (a fraction of a second) or 1-2 input formulas with a short time budget."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import sympy

distributed = pytest.importorskip("distributed")

from kanlens.cli import main  # noqa: E402
from kanlens.sweep_tasks import SweepError, SweepTask, load_formula_tasks, run_task, tasks_from_csv  # noqa: E402
from kanlens.sweeps import SweepConnectionError, sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "kanlens-sweep-"


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes on loopback, shared by the tests of this file."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need _Recorder, not this file
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       worker_dashboard_address=None, env={"OMP_NUM_THREADS": "1"},
                                       silence_logs=logging.ERROR)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


class _Recorder(distributed.WorkerPlugin):
    """Appends ``key pid`` to ``log`` whenever a worker starts a sweep task. With ``kill``, the first task started
    on any worker (the exclusive creation of the file ``kill``, which then names it, decides) kills its own worker
    process ``delay`` seconds later, while the task runs (the tasks of the test take much longer)."""

    def __init__(self, log: str, kill: str | None = None, delay: float = 0.05) -> None:
        self.log, self.kill, self.delay = log, kill, delay

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or not str(key).startswith(PREFIX):
            return
        with open(self.log, "a") as f:
            f.write(f"{key} {os.getpid()}\n")
        if self.kill:
            try:
                fd = os.open(self.kill, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, f"{key} {os.getpid()}".encode())
            os.close(fd)
            threading.Timer(self.delay, os._exit, (1,)).start()


@contextmanager
def recording(client, tmp_path: Path, kill: bool = False):
    """Record task executions on the workers; yields a function returning ``[(task name, pid), ...]``."""
    log = tmp_path / f"executions-{uuid.uuid4().hex[:6]}.log"
    log.touch()
    name = f"kanlens-test-recorder-{uuid.uuid4().hex[:6]}"
    client.register_plugin(_Recorder(str(log), str(tmp_path / "killed") if kill else None), name=name)

    def executions() -> list[tuple[str, int]]:
        rows = [line.split() for line in log.read_text().splitlines()]
        return [(key[len(PREFIX):-9], int(pid)) for key, pid in rows]  # key: kanlens-sweep-<name>-<8 hex>

    try:
        yield executions
    finally:
        client.unregister_worker_plugin(name)


def fit_tasks(n: int, **kw) -> list[SweepTask]:
    opts = {"kind": "fit", "formula": "x1*x2", "width": (2, 2, 1), "n_train": 64, "n_test": 32, "steps": 5, **kw}
    return [SweepTask(f"t{k}", seed=k, **opts) for k in range(n)]


def result_files(out: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_mtime_ns for p in sorted((out / "results").glob("*.json"))}


# ---------------------------------------------------------------------------------------------- results and reruns
def test_results_are_saved_correct_and_a_rerun_skips_them(client, tmp_path, caplog):
    tasks = [*fit_tasks(3), SweepTask("sin", formula="sin(x1)", ranges=[(-2, 2)], width=(1, 1), n_train=200,
                                      n_test=200, steps=20, refine_grid=None, time_budget=1)]
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="kanlens.sweeps"):
        report = sweep(tasks, client, out=out, progress=False)
    names = [t.name for t in tasks]
    assert [r.name for r in report.results] == names and report.ran == names and not report.failed
    # without a terminal: one log line per finished task
    assert sum("sweep [" in r.getMessage() for r in caplog.records) == 4
    assert sorted(result_files(out)) == sorted(names)
    for t in tasks:
        saved = json.loads((out / "results" / f"{t.name}.json").read_text())
        assert saved["fingerprint"] == t.fingerprint() and saved["worker"]["address"].startswith("tcp://127.0.0.1")
    # a fit on a worker gives the same numbers as here (same seed, one thread)
    here = run_task(tasks[1])
    assert report.results[1].metrics["test_rmse"] == pytest.approx(here.metrics["test_rmse"], rel=1e-5)
    assert report.results[1].metrics["test_rmse"] < 0.5
    sin = report.results[3]
    assert sin.exact and sympy.simplify(sympy.sympify(sin.formula) - sympy.sin(sympy.Symbol("x1"))) == 0
    assert sin.metrics["truth_nrmse"] < 1e-6 and sin.metrics["formula_test_nrmse"] < 1e-6
    csv = (out / "results.csv").read_text().splitlines()
    assert len(csv) == 5 and csv[0].startswith("name,kind,status,formula")
    assert "| sin | symbolic | done | `sin(x1)` | True |" in (out / "results.md").read_text()

    before = result_files(out)
    with recording(client, tmp_path) as executions:
        again = sweep(tasks, client, out=out, progress=False)
        assert executions() == []
    assert again.ran == [] and again.skipped == names
    assert result_files(out) == before  # not rewritten
    assert [r.formula for r in again.results] == [r.formula for r in report.results]


def test_a_scheduler_address_is_a_cluster_to_join(client, tmp_path):
    report = sweep(fit_tasks(2), client.scheduler.address, out=tmp_path / "run", progress=False)
    assert not report.failed and sorted(result_files(tmp_path / "run")) == ["t0", "t1"]
    assert client.status == "running"  # the shared cluster was not closed by the sweep


# ---------------------------------------------------------------------------------------------- faults
def test_a_worker_killed_mid_task_has_its_task_rerun_elsewhere_and_written_once(client, tmp_path):
    tasks = fit_tasks(3, n_train=256, n_test=64, steps=30)  # ~0.4 CPU s each: the kill (after 0.05 s) lands mid-task
    out = tmp_path / "run"
    with recording(client, tmp_path, kill=True) as executions:
        report = sweep(tasks, client, out=out, progress=False)
        runs = executions()
    key, pid = (tmp_path / "killed").read_text().split()
    killed_name, killed_pid = key[len(PREFIX):-9], int(pid)
    names = [t.name for t in tasks]
    assert not report.failed and [r.name for r in report.results] == names
    assert sorted(result_files(out)) == sorted(names)
    counts = Counter(name for name, _ in runs)
    assert sorted(counts.values()) == [1, 1, 2]  # the killed attempt, then one more elsewhere
    assert counts[killed_name] == 2 and (killed_name, killed_pid) in runs
    result = json.loads((out / "results" / f"{killed_name}.json").read_text())
    assert result["worker"]["pid"] != killed_pid  # the saved result is the second attempt's
    assert not list((out / "results").glob(".*"))  # no temporary files left behind


def test_an_interrupted_sweep_reruns_only_the_missing_tasks(client, tmp_path):
    tasks = fit_tasks(5)
    out = tmp_path / "run"
    saved = []

    def ctrl_c_after_two(res):
        saved.append(res.name)
        if len(saved) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(tasks, client, out=out, on_result=ctrl_c_after_two, progress=False)
    first = result_files(out)
    assert sorted(first) == sorted(saved)
    missing = sorted({t.name for t in tasks} - set(saved))
    with recording(client, tmp_path) as executions:
        report = sweep(tasks, client, out=out, progress=False)
        runs = executions()
    assert sorted(report.skipped) == sorted(saved) and sorted(report.ran) == missing
    assert sorted(name for name, _ in runs) == missing  # each missing task ran once, nothing else
    after = result_files(out)
    assert sorted(after) == sorted(t.name for t in tasks)
    assert {k: after[k] for k in first} == first


# ---------------------------------------------------------------------------------------------- bad input
def test_an_unreachable_scheduler_is_one_clear_error_within_seconds(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with pytest.raises(SweepConnectionError, match=f"cannot reach the Dask scheduler at '{address}' within 1 s"):
        sweep(fit_tasks(1), address, out=tmp_path / "run", connect_timeout=1.0, progress=False)
    assert time.perf_counter() - t0 < 10
    with pytest.raises(SweepConnectionError, match="'not-an-address'"):
        sweep(fit_tasks(1), "not-an-address", out=tmp_path / "run", connect_timeout=1.0, progress=False)


BAD_ENTRIES = [
    ({"id": "b", "formula": "x1*", "n_vars": 1}, "entry 1 \\('b'\\): formula refused"),
    ({"id": "b", "formula": "x1*x2", "n_vars": 2, "ranges": [[-1, 1]]}, "entry 1 \\('b'\\): ranges needs 2"),
    ({"id": "b", "formula": "log(x1)", "n_vars": 1}, "entry 1 \\('b'\\): formula 'log\\(x1\\)' is not finite"),
    ({"id": "b", "formula": "x1", "n_vars": 1, "ranges": [[1, -1]]}, "entry 1 \\('b'\\): every range needs"),
    ({"id": "b", "formula": "x1", "special_functions": ["zeta"]}, "entry 1 \\('b'\\): special_functions"),
    ({"id": "b", "formula": "x1", "kan_width": [2, 1]}, "entry 1 \\('b'\\): width \\[2, 1\\] must start with the 1"),
    ({"id": "a b", "formula": "x1"}, "entry 1 \\('a b'\\): task name"),
    ({"id": "a", "formula": "x1"}, "entry 1 \\('a'\\): duplicate id 'a'"),
    ({"formula": "x1"}, "entry 1 \\(None\\): needs a string 'id'"),
    ("x1*x2", "entry 1: must be an object"),
]


@pytest.mark.parametrize(("entry", "message"), BAD_ENTRIES)
def test_a_malformed_task_file_entry_is_named_before_anything_runs(tmp_path, capsys, entry, message):
    path = tmp_path / "formulas.json"
    path.write_text(json.dumps({"formulas": [{"id": "a", "formula": "x1 + 1", "n_vars": 1}, entry]}))
    file_width = isinstance(entry, dict) and "kan_width" in entry  # a file's width is checked where it is used
    with pytest.raises(SweepError, match=message):
        load_formula_tasks(path, use_file_width=file_width)
    out = tmp_path / "run"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", *(["--use-file-width"] * file_width)]) == 2
    assert "kanlens: error:" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers sizes the local cluster"),
    (["--time-budget", "nan"], "--time-budget must be >= 0.001, got nan"),
    (["--noise", "-1"], "--noise must be >= 0, got -1.0"),
    (["--targets", "y"], "--targets and --features are for CSV files"),
])
def test_cli_flags_are_checked_before_anything_runs(tmp_path, capsys, flags, message):
    path = tmp_path / "formulas.json"
    path.write_text(json.dumps({"formulas": [{"id": "a", "formula": "x1", "n_vars": 1}]}))
    out = tmp_path / "run"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", *flags]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_cli_csv_needs_targets(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text("a,y\n" + "".join(f"{k},{2 * k}\n" for k in range(20)))
    assert main(["sweep", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "a CSV file needs --targets" in capsys.readouterr().err
    assert main(["sweep", str(path), "--targets", "z", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "--target: no column 'z'" in capsys.readouterr().err


def test_a_folder_of_another_sweep_is_refused_unless_overwrite(client, tmp_path):
    out = tmp_path / "run"
    sweep(fit_tasks(2), client, out=out, progress=False)
    first = result_files(out)
    other = [fit_tasks(1)[0], SweepTask("t1", kind="fit", formula="x1*x2", width=(2, 2, 1), n_train=64, n_test=32,
                                        steps=5, seed=7)]
    with pytest.raises(SweepError, match="holds another sweep \\(task 't1' has other settings \\(seed: 1 -> 7\\)"):
        sweep(other, client, out=out, progress=False)
    with pytest.raises(SweepError, match="task 't5' is new; task 't1' is not in these tasks"):
        sweep([fit_tasks(1)[0], SweepTask("t5", kind="fit", formula="x1", n_train=8, n_test=4, steps=1)], client,
              out=out, progress=False)
    assert result_files(out) == first  # nothing finished is lost
    report = sweep(other, client, out=out, overwrite=True, progress=False)
    assert report.skipped == ["t0"] and report.ran == ["t1"]
    assert result_files(out)["t0"] == first["t0"]
    assert json.loads((out / "results" / "t1.json").read_text())["fingerprint"] == other[1].fingerprint()


def test_folders_that_are_not_sweeps_and_duplicate_names_are_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(SweepError, match="is not a kanlens sweep folder"):
        sweep(fit_tasks(1), out=mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(SweepError, match="duplicate task name 't0'"):
        sweep(fit_tasks(1) * 2, out=tmp_path / "run")
    with pytest.raises(SweepError, match="n_workers sets the size of the local cluster"):
        sweep(fit_tasks(1), "tcp://127.0.0.1:1", out=tmp_path / "run", n_workers=2)


def test_task_checks():
    with pytest.raises(SweepError, match="give exactly one of formula= or data="):
        SweepTask("a")
    with pytest.raises(SweepError, match="unknown kind 'symbolc'; did you mean 'symbolic'"):
        SweepTask("a", kind="symbolc", formula="x1")
    with pytest.raises(SweepError, match="unknown library function 'bessel'"):
        SweepTask("a", formula="x1", lib=("bessel",))
    with pytest.raises(SweepError, match="time_budget must be a positive number"):
        SweepTask("a", formula="x1", time_budget=0)
    t = SweepTask("a", formula="x2 + 1")  # x1..x2, default box; a symbolic task leaves the width to the search
    assert t.variables == ("x1", "x2") and t.ranges == ((-1.0, 1.0), (-1.0, 1.0)) and t.width is None
    assert SweepTask("a", kind="fit", formula="x2 + 1").width == (2, 5, 1)
    assert t.fingerprint() == SweepTask("a", formula="x2 + 1").fingerprint() != SweepTask("a", formula="x2 + 2",
                                                                                          ).fingerprint()


def test_a_failing_task_is_reported_and_tried_again_by_a_rerun(client, tmp_path):
    import numpy as np

    one_row = {"train_input": np.zeros((1, 1)), "train_label": np.ones(1), "test_input": np.zeros((1, 1)),
               "test_label": np.ones(1)}
    tasks = [*fit_tasks(1), SweepTask("bad", kind="fit", data=one_row, steps=2)]
    out = tmp_path / "run"
    report = sweep(tasks, client, out=out, progress=False)
    assert report.failed == ["bad"] and "update_grid=True needs at least 2" in report.results[1].error
    assert sorted(result_files(out)) == ["t0"] and (out / "failed" / "bad.json").exists()
    assert "| bad | fit | failed |" in (out / "results.md").read_text()
    again = sweep(tasks, client, out=out, progress=False)
    assert again.ran == ["bad"] and again.skipped == ["t0"] and again.failed == ["bad"]


def test_csv_columns_become_tasks_with_their_rows(client, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (50, 2))
    rows = ["a,b,y1,y2"] + [f"{p},{q},{p * q},{p + q}" for p, q in x]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    tasks = tasks_from_csv(path, ["y1", "y2"], kind="fit", steps=5)
    assert [t.name for t in tasks] == ["y1", "y2"] and tasks[0].variables == ("a", "b")
    assert tasks[0].data["train_input"].shape == (40, 2) and tasks[0].width == (2, 5, 1)
    report = sweep(tasks, client, out=tmp_path / "run", progress=False)
    assert not report.failed and all(r.metrics["test_rmse"] < 0.5 for r in report.results)
    with pytest.raises(SweepError, match="no column 'y3'"):
        tasks_from_csv(path, ["y3"])


def test_importing_kanlens_loads_no_dask_and_a_missing_dask_names_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "import kanlens\n"
        "sweep, task = kanlens.sweep, kanlens.SweepTask('a', kind='fit', formula='x1', n_train=4, n_test=2)\n"
        "assert 'dask' not in sys.modules, 'dask imported'\n"
        "try:\n"
        f"    sweep([task], out={str(tmp_path / 'run')!r})\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "kanlens.sweep needs Dask: pip install kanlens[distributed]" in proc.stdout


# ---------------------------------------------------------------------------------------------- the CLI
def test_cli_sweeps_a_formula_file_end_to_end(tmp_path, capsys):
    path = tmp_path / "formulas.json"
    path.write_text(json.dumps({"formulas": [
        {"id": "sin", "formula": "sin(x1)", "n_vars": 1, "ranges": [[-2, 2]], "kan_width": [1, 1]},
        {"id": "sq", "formula": "x1**2 + 1", "n_vars": 1, "ranges": [[-1, 1]], "kan_width": [1, 1]},
    ]}))
    out = tmp_path / "run"
    argv = ["sweep", str(path), "--out", str(out), "--use-file-width", "--workers", "2", "--time-budget", "2",
            "--steps", "20"]  # the file's widths: a 2 s budget
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "| sin | symbolic | done | `sin(x1)` | True |" in printed.out
    assert "| sq | symbolic | done | `x1**2 + 1` | True |" in printed.out
    assert sorted(result_files(out)) == ["sin", "sq"]
    before = result_files(out)
    assert main([*argv, "--quiet"]) == 0  # a rerun: nothing to do, no cluster started
    assert result_files(out) == before
    assert main([*argv[:-2], "--steps", "30", "--quiet"]) == 2
    assert "holds another sweep (task 'sin' has other settings (steps: 20 -> 30)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the benchmark's data
BENCH_ENTRIES = [  # entries of formulas_public.json: constants, 4 inputs, shifted boxes, special functions
    {"id": "P04", "formula": "exp((sin(pi*(x1**2 + x2**2)) + sin(pi*(x3**2 + x4**2)))/2)", "n_vars": 4,
     "ranges": [[-1.0, 1.0]] * 4, "kan_width": [4, 4, 2, 1]},
    {"id": "P06", "formula": "besselj(0, 20*x1)", "n_vars": 1, "ranges": [[-1.0, 1.0]], "kan_width": [1, 1],
     "special_functions": ["besselj"]},
    {"id": "P09", "formula": "exp(-x1**2/(2*x2**2))/sqrt(2*pi*x2**2)", "n_vars": 2, "ranges": [[1.0, 3.0]] * 2,
     "kan_width": [2, 5, 5, 1]},
    {"id": "P14", "formula": "x1/(exp(x2) + exp(-x2))", "n_vars": 2, "ranges": [[0.5, 2.0], [-2.0, 2.0]],
     "kan_width": [2, 5, 5, 1], "special_functions": []},
]


@pytest.mark.parametrize("noise", [0.0, 0.01])
@pytest.mark.parametrize("entry", BENCH_ENTRIES, ids=lambda e: e["id"])
def test_a_formula_task_samples_the_benchmarks_dataset(tmp_path, bench, entry, noise):
    import torch

    from kanlens.formula_data import special_library
    from kanlens.sweep_tasks import _dataset

    path = tmp_path / "formulas.json"
    path.write_text(json.dumps({"formulas": [entry]}))
    (task,) = load_formula_tasks(path, seed=3, noise=noise)
    ds, truth = _dataset(task)
    bench_truth, xs = bench.parse_truth(entry["formula"], entry["n_vars"])
    assert sympy.simplify(truth - bench_truth) == 0
    expected = bench.make_dataset(bench_truth, xs, entry["ranges"], seed=3, dtype=torch.float32, noise=noise)
    assert sorted(ds) == sorted(expected)
    for key, value in expected.items():
        assert ds[key].dtype == torch.float32 and ds[key].shape == value.shape == (1000, value.shape[1])
        assert torch.equal(ds[key], value), key  # bit for bit
    assert (ds["train_label"] != ds["test_label"]).any()
    # the benchmark's library and search defaults
    assert task.width is None and task.steps == 50 and task.lamb == 0.01 and task.refine_grid == (10, 20, 50)
    assert task.lib == {"P06": ("besselj0", "besselj1")}.get(entry["id"], ())
    assert bench.library_for(entry, "auto").names == special_library(task.lib).names


def test_a_formula_files_width_is_used_only_when_asked(tmp_path):
    path = tmp_path / "formulas.json"
    path.write_text(json.dumps({"formulas": BENCH_ENTRIES}))
    assert [t.width for t in load_formula_tasks(path)] == [None] * 4
    assert [t.width for t in load_formula_tasks(path, use_file_width=True)] == [(4, 4, 2, 1), (1, 1), (2, 5, 5, 1),
                                                                                (2, 5, 5, 1)]


def test_a_sweep_search_budget_is_its_own_threads_cpu_time():
    import threading

    from kanlens.symbolic.search.budget import Deadline, cpu_clock

    def burn() -> None:  # another thread of the process (a Dask worker's heartbeats, transfers) spends 0.2 CPU s
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.2:
            pass

    with cpu_clock(time.thread_time):
        own = Deadline(10.0)
    process = Deadline(10.0)
    worker = threading.Thread(target=burn)
    worker.start()
    worker.join()
    assert own.spent() < 0.05 and own.left() > 9.95
    assert process.spent() >= 0.19 and process.left() <= 9.81
