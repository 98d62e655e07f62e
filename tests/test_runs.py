"""The workflow of ``kanlens fit`` (kanlens.runs): stage events, atomic run folders, reports, log-friendly progress."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kanlens import KAN, create_dataset
from kanlens.runs import MARKER, RunOptions, StageEvent, UsageError, run_folder, run_workflow
from kanlens.schedule import train_schedule


def _gauss(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-2 * x[:, [0]] ** 2)


def _data(seed: int = 0) -> dict[str, torch.Tensor]:
    return create_dataset(_gauss, n_var=1, train_num=200, test_num=100, seed=seed)


def _env() -> dict[str, str]:
    """The subprocess imports this checkout's kanlens (not another installed copy), on one thread."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)


# ---------------------------------------------------------------------------------------------- the schedule
def test_train_schedule_reports_each_stage() -> None:
    ds = _data()
    events: list[StageEvent] = []
    timings: dict[str, float] = {}
    model = train_schedule(KAN([1, 3, 1], seed=0), ds, steps=(4, 3, 2), lamb=0.01, refine_grid=None, prune=False,
                           timings=timings, on_stage=events.append)
    # no pruning, no refinement: the sparse fit and the plain fit, nothing else
    assert [e.stage for e in events] == ["sparse spline", "spline"]
    assert [e.index for e in events] == [1, 2]
    assert [len(e.history) for e in events] == [4, 3]
    assert all(r > 0 for r in events[0].history.reg) and all(r == 0 for r in events[1].history.reg)
    assert events[1].model is model and events[1].width == [1, 3, 1] and events[1].grid == 5
    assert events[0].name == "1: sparse spline [1, 3, 1] grid=5"
    assert set(timings) == {"fit_sparse_prune", "prune_harder", "fit_refine"}
    with torch.no_grad():
        rmse = float(torch.sqrt(torch.mean((model(ds["test_input"]) - ds["test_label"]) ** 2)))
    assert rmse == pytest.approx(events[1].test_rmse, rel=1e-5) and rmse < 0.05


def test_train_schedule_refines_only_while_it_helps() -> None:
    events: list[StageEvent] = []
    model = train_schedule(KAN([1, 3, 1], seed=0), _data(), steps=(5, 5, 5), lamb=0.0, refine_grid=(3, 10),
                           prune=False, on_stage=events.append)
    # grid 3 is not finer than 5 and is skipped; grid 10 is fitted (a third stage)
    assert [e.grid for e in events] == [5, 5, 10]
    assert model.grid in (5, 10)
    if model.grid == 10:
        assert events[2].test_rmse < events[1].test_rmse


# ---------------------------------------------------------------------------------------------- the workflow
def test_workflow_events_metrics_and_reports(tmp_path: Path) -> None:
    seen: list[StageEvent] = []
    opts = RunOptions(width=[1, 3, 1], steps=3, refine=10, symbolic=False, progress=False)
    with run_folder(tmp_path / "run") as folder:
        result = run_workflow(_data(), ["x1"], opts, folder, source={"formula": "exp(-2*x1**2)"},
                              command="kanlens fit ...", on_event=seen.append)
    assert seen == result.events
    assert seen[0].stage == "start" and seen[0].width == [1, 3, 1] and "200 train / 100 test" in seen[0].message
    assert seen[-1].stage == "written"
    training = [e for e in seen if e.history is not None]
    assert seen[1:-1] == training  # nothing but training stages in between (no formula: splines only)
    assert [e.index for e in training] == list(range(1, len(training) + 1))
    assert training[0].stage == "sparse spline" and training[-1].stage == "spline"
    assert all(len(e.history) == 3 for e in training)
    # each stage keeps its own model (a copy): the first one still has the unpruned width
    assert training[0].model.width == [1, 3, 1] and training[0].model is not result.model
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(m["stages"]) == [e.name for e in training] + ["final model"]
    for e in training:
        assert m["stages"][e.name]["test_rmse"] == pytest.approx(e.test_rmse, rel=1e-6)
        assert m["stages"][e.name]["steps"] == 3
    assert m["formula"] is None and m["settings"]["steps"] == 3 and m["command"] == "kanlens fit ..."
    assert m["stages"]["final model"]["test_rmse"] < 0.1
    with open(tmp_path / "run" / "history.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["stage", "step", "train_rmse", "test_rmse", "reg"]
    assert len(rows) == 1 + 3 * len(training) and {r[0] for r in rows[1:]} == {e.name for e in training}
    report = (tmp_path / "run" / "report.md").read_text()
    assert report.startswith("# kanlens run") and "formula `exp(-2*x1**2)`" in report
    assert all(f"| {e.name} |" in report for e in training)
    assert {"model", "loss.png", "network_fit.png", "network_final.png", MARKER} <= {
        p.name for p in (tmp_path / "run").iterdir()}


def test_workflow_symbolic_events(tmp_path: Path) -> None:
    seen: list[StageEvent] = []
    opts = RunOptions(width=[1, 3, 1], steps=5, refine=None, progress=False, lib=["x", "x^2", "exp"])
    ds = create_dataset(lambda x: 3 * x[:, [0]] ** 2, n_var=1, train_num=200, test_num=100, seed=0)
    result = run_workflow(ds, ["x1"], opts, tmp_path, on_event=seen.append)
    kinds = [e.stage for e in seen]
    assert kinds[0] == "start" and kinds[-2:] == ["formula", "written"]
    assert kinds[-3] == "symbolic" and seen[-3].history is not None and seen[-3].index == len(
        [e for e in seen if e.history is not None])
    assert seen[-2].message == str(result.formula) == (tmp_path / "formula.txt").read_text().strip()
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["formula_test_rmse"] < 1e-3 and (tmp_path / "model_spline" / "config.json").is_file()


def test_workflow_symbolic_stage_lines_arrive_when_each_stage_ends(tmp_path: Path, monkeypatch, capsys) -> None:
    """The search reports its training stages itself (no callback sniffing): the event and the progress line of a
    stage come before the next stage's fit starts, in the schedule's order."""
    import re

    from kanlens.model import KAN as KANClass

    log: list[tuple[str, str]] = []  # ("fit", "") when a fit starts, ("event", stage) / ("line", text) when reported
    fit = KANClass.fit

    def spy(self, *args, **kwargs):
        log.extend(("line", line) for line in capsys.readouterr().err.splitlines() if line.startswith("kanlens: "))
        log.append(("fit", ""))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(KANClass, "fit", spy)
    opts = RunOptions(width=[1, 3, 1], steps=5, refine=10, progress=True, lib=["x", "x^2", "exp"])
    ds = create_dataset(lambda x: 3 * x[:, [0]] ** 2, n_var=1, train_num=200, test_num=100, seed=0)
    result = run_workflow(ds, ["x1"], opts, tmp_path, on_event=lambda ev: log.append(("event", ev.stage)))
    kinds = [e.stage for e in result.events]
    # start, the schedule's stages (sparse fits and prunes, then plain fits), the symbolic fit, formula, written
    assert re.fullmatch(r"start(,sparse spline)+(,spline)+,symbolic,formula,written", ",".join(kinds)), kinds
    training = [e for e in result.events if e.history is not None]
    assert [e.index for e in training] == list(range(1, len(training) + 1))
    assert all(len(e.history) == 5 for e in training)
    # every fit after the first starts only once the previous stage's event and progress line are out
    fits = [i for i, (kind, _) in enumerate(log) if kind == "fit"]
    assert len(fits) == len(training)
    for k in range(1, len(fits)):
        before = log[:fits[k]]
        assert sum(kind == "event" and stage in ("sparse spline", "spline") for kind, stage in before) == k
        assert sum(kind == "line" and text.startswith("kanlens: stage ") for kind, text in before) == k
        assert [t for kind, t in before if kind == "line"][-1].startswith(f"kanlens: stage {k}: ")
    assert training[0].model.width == [1, 3, 1] and training[-1].model is not result.model


def test_workflow_refuses_width_not_matching_the_data(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="must start with the 1 inputs"):
        run_workflow(_data(), ["x1"], RunOptions(width=[2, 3, 1], progress=False), tmp_path)


# ---------------------------------------------------------------------------------------------- run folders
def test_run_folder_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "r"
    with pytest.raises(RuntimeError, match="boom"), run_folder(out) as folder:
        (folder / "half.txt").write_text("written")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # neither the run nor its staging folder
    with run_folder(out) as folder:
        assert not out.exists() and folder.parent == tmp_path and folder.name.startswith(".r.tmp-")
        (folder / "a.txt").write_text("1")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt"]
    with pytest.raises(UsageError, match="already exists and is not empty"), run_folder(out):
        pass
    # a failed overwrite leaves the old run as it was
    with pytest.raises(RuntimeError), run_folder(out, overwrite=True) as folder:
        (folder / "b.txt").write_text("2")
        raise RuntimeError("late failure")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt"]
    with run_folder(out, overwrite=True) as folder:
        (folder / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_run_folder_never_replaces_foreign_folders(tmp_path: Path) -> None:
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="not a kanlens run folder"), run_folder(foreign, overwrite=True):
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"), run_folder(tmp_path / "file"):
        pass
    assert (foreign / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "thesis"]


# ---------------------------------------------------------------------------------------------- progress in logs
def test_fit_progress_into_a_pipe_is_one_line() -> None:
    code = ("import torch; from kanlens import KAN, create_dataset\n"
            "ds = create_dataset(lambda x: x[:, [0]] ** 2, n_var=1, train_num=50, test_num=20, seed=0)\n"
            "KAN([1, 2, 1], seed=0).fit(ds, steps=7, progress=True)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env())
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fit: 7/7 steps in ") and "train=" in lines[0], r.stderr


def test_cli_progress_into_a_pipe_is_a_line_per_stage(tmp_path: Path) -> None:
    args = ["fit", "--formula", "exp(-2*x1**2)", "--no-symbolic", "--steps", "3", "--train-num", "200",
            "--test-num", "100", "--refine", "10", "--out", "run"]
    r = subprocess.run([sys.executable, "-m", "kanlens", *args], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env=_env())
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "\r" not in r.stdout
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    n_stages = len(m["stages"]) - 1
    stage_lines = [line for line in r.stderr.splitlines() if line.startswith("kanlens: stage ")]
    assert len(stage_lines) == n_stages and stage_lines[0].startswith("kanlens: stage 1: sparse spline [1, 5, 1]")
    assert len(r.stderr.splitlines()) < 10 * n_stages + 10  # lines per stage, not per step
    assert max(len(line) for line in r.stderr.splitlines()) < 300
