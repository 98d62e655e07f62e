"""The ``kanlens`` command line: refusals (exit code 2, one line, nothing created), run folders, formula, plot."""

from __future__ import annotations

import csv
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import sympy

from kanlens.cli import MARKER, UsageError, main, parse_ranges, parse_width
from kanlens.data import DataFileError, load_csv

FAST = ["--steps", "3", "--train-num", "200", "--test-num", "100", "--refine", "0", "--quiet"]


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "kanlens.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


# ---------------------------------------------------------------------------------------------- refusals
MALICIOUS = [
    "__import__('os').system('touch PWNED')",
    "x1.__class__",
    "lambda: 0",
    "exp(sin(pi*x1)",
    "x1 + y",
    "open('PWNED', 'w')",
]


def test_malicious_formula_subprocess_creates_nothing(tmp_path: Path) -> None:
    r = run_cli(["fit", "--formula", "__import__('os').system('touch PWNED')", "--out", "runs/t"], tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kanlens: error: --formula refused:")
    assert "dunder" in lines[0]
    assert list(tmp_path.iterdir()) == [tmp_path / "runs"] or list(tmp_path.iterdir()) == []
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "runs" / "t").exists()
    assert not list(tmp_path.rglob("*PWNED*"))


@pytest.mark.parametrize("formula", MALICIOUS)
def test_bad_formulas_exit_2_with_one_line(formula: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "--formula", formula, "--out", "runs/t", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("kanlens: error:")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "runs" / "t").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--out", "r"], "exactly one of --formula or --csv"),
        (["fit", "--formula", "x1", "--csv", "a.csv", "--out", "r"], "exactly one of"),
        (["fit", "--csv", "a.csv", "--out", "r"], "--csv needs --target"),
        (["fit", "--csv", "missing.csv", "--target", "y", "--out", "r"], "no such file"),
        (["fit", "--formula", "x1", "--width", "2,x", "--out", "r"], "--width"),
        (["fit", "--formula", "x1+x2", "--ranges=1,0", "--out", "r"], "low < high"),
        (["fit", "--formula", "x1+x2", "--ranges=-1,1;0,1;2,3", "--out", "r"], "--ranges needs"),
        (["fit", "--formula", "x1", "--device", "tpu:9", "--out", "r"], "--device"),
        (["fit", "--formula", "x1", "--lib", "sin,sinn", "--out", "r"], "did you mean 'sin'"),
        (["fit", "--formula", "log(x1)", "--out", "r"], "NaN or Inf"),
        (["fit", "--formula", "x1", "--steps", "0", "--out", "r"], "--steps must be >= 1"),
        (["fit", "--formula", "x1", "--lamb", "-1", "--out", "r"], "--lamb must be"),
        (["fit", "--formula", "x1", "--lamb", "nan", "--out", "r"], "--lamb must be"),
        (["formula", "nowhere"], "neither a kanlens run folder"),
        (["plot", "nowhere"], "neither a kanlens run folder"),
        # out-of-range numbers: one line up front, not an OverflowError / allocator traceback later
        (["fit", "--formula", "x1", "--lamb", "1e308", "--out", "r"], "--lamb must be a finite number in [0, 1e+30]"),
        (["fit", "--formula", "x1", "--grid", "100000", "--out", "r"], "--grid must be <= 1000"),
        (["fit", "--formula", "x1", "--refine", "100000", "--out", "r"], "--refine must be <= 1000"),
        (["fit", "--formula", "x1", "--steps", "100000000000000000000", "--out", "r"], "--steps must be <= 1000000"),
        (["fit", "--formula", "x1", "--train-num", "100000000000", "--out", "r"], "--train-num must be <="),
        (["fit", "--formula", "x1", "-k", "50", "--out", "r"], "-k must be <= 10"),
        (["fit", "--formula", "x1", "--seed", str(2**70), "--out", "r"], "--seed must be <="),
        (["fit", "--formula", "x1", "--width", "1,100000,1", "--out", "r"], "at most 10000 nodes per layer"),
        (["fit", "--formula", "sqrt(-2)*x1", "--out", "r"], "not a real number"),
        (["formula", "nowhere", "--round", "-1"], "--round must be a number of decimals in [0, 50], got -1"),
    ],
)
def test_usage_errors(argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert not (tmp_path / "r").exists()


def test_width_must_match_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--formula", "x1+x2", "--width", "3,2,1", "--out", "r", *FAST]) == 2
    assert "must start with the 2 inputs" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--steps", "many", "--out", "r"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    for bad in ("0", "-3", "nan", "soon"):
        with pytest.raises(SystemExit) as info:
            main(["fit", "--formula", "x1", "--time-budget", bad, "--out", "r"])
        assert info.value.code == 2
    assert "--time-budget" in capsys.readouterr().err


def test_parsers() -> None:
    assert parse_width("2, 5,1") == [2, 5, 1]
    with pytest.raises(UsageError):
        parse_width("2")
    with pytest.raises(UsageError):
        parse_width("2,0,1")
    assert parse_ranges(None, 2) == [[-1.0, 1.0], [-1.0, 1.0]]
    assert parse_ranges("-2,2", 3) == [[-2.0, 2.0]] * 3
    assert parse_ranges("[0,1];[-1,3]", 2) == [[0.0, 1.0], [-1.0, 3.0]]
    with pytest.raises(UsageError):
        parse_ranges("0,1,2", 1)


# ---------------------------------------------------------------------------------------------- CSV loading
def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_load_csv_split_and_features(tmp_path: Path) -> None:
    rows = [[i, 2 * i, i % 3, 10 * i] for i in range(20)]
    path = _write_csv(tmp_path / "d.csv", ["a", "b", "c", "y"], rows)
    ds, names = load_csv(path, "y", ["b", "a"], test_frac=0.25, seed=1)
    assert names == ["b", "a"]
    assert ds["train_input"].shape == (15, 2) and ds["test_input"].shape == (5, 2)
    for split in ("train", "test"):  # columns follow --features order; labels stay attached to their rows
        x, y = ds[f"{split}_input"], ds[f"{split}_label"]
        assert (x[:, 0] == 2 * x[:, 1]).all() and (y[:, 0] == 10 * x[:, 1]).all()
    _, names2 = load_csv(path, "y")
    assert names2 == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("header", "rows", "kwargs", "message"),
    [
        (["a", "y"], [[1, 2]] * 20, {"target": "Y"}, "did you mean 'y'"),
        (["a", "y"], [[1, 2]] * 20, {"target": "y", "features": ["b"]}, "no column 'b'"),
        (["a", "a", "y"], [[1, 1, 2]] * 20, {"target": "y"}, "duplicate column"),
        (["a", "y"], [[1, 2]] * 19 + [["oops", 2]], {"target": "y"}, "line 21, column 'a': not a number"),
        (["a", "y"], [[1, 2]] * 19 + [[1]], {"target": "y"}, "line 21: 1 fields"),
        (["a", "y"], [[1, 2]] * 5, {"target": "y"}, "at least 10 data rows"),
        (["a", "y"], [[1, 2]] * 19 + [["nan", 2]], {"target": "y"}, "NaN"),
        (["y"], [[2]] * 20, {"target": "y"}, "no feature columns"),
        (["a", "y"], [[1, 2]] * 20, {"target": "y", "features": ["y"]}, "must not include the target"),
    ],
)
def test_load_csv_errors(tmp_path: Path, header, rows, kwargs, message) -> None:
    path = _write_csv(tmp_path / "d.csv", header, rows)
    with pytest.raises(DataFileError, match=message):
        load_csv(path, **kwargs)


# ---------------------------------------------------------------------------------------------- a real (tiny) run
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "runs" / "t"
    assert main(["fit", "--formula", "x1**2 + sin(pi*x2)", "--out", str(out), *FAST]) == 0
    return out


def test_run_folder_contents(run_dir: Path) -> None:
    for name in ["model/config.json", "model/tensors.pt", "formula.txt", "formula.tex", "metrics.json",
                 "history.csv", "report.md", "network_fit.png", "network_final.png", "loss.png", MARKER]:
        assert (run_dir / name).is_file(), name
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["width_initial"] == [2, 5, 1] and m["inputs"] == ["x1", "x2"]
    assert m["source"]["formula"] == "x1**2 + sin(pi*x2)"
    assert m["command"].startswith("kanlens fit --formula 'x1**2 + sin(pi*x2)' --out ")
    assert m["formula"] == (run_dir / "formula.txt").read_text().strip()
    assert sympy.sympify(m["formula"]).free_symbols <= set(sympy.symbols("x1 x2"))
    assert 0 <= m["formula_test_rmse"] < 1.0
    assert isinstance(m["matches_truth"], bool)
    assert sum(c["chosen"] for c in m["candidates"]) == 1
    assert m["seconds"]["total"] > 0
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"stage", "step", "train_rmse", "test_rmse", "reg"} <= set(rows[0])
    assert len(rows) == sum(st["steps"] for st in m["stages"].values())
    report = (run_dir / "report.md").read_text()
    assert m["formula"] in report and "![loss curves](loss.png)" in report and "network_final.png" in report


def test_formula_command(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["formula", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == (run_dir / "formula.txt").read_text().strip()
    assert main(["formula", str(run_dir), "--latex"]) == 0
    assert capsys.readouterr().out.strip() == (run_dir / "formula.tex").read_text().strip()
    # from the checkpoint: the symbolic KAN's own formula (KAN-level constants), in the same variables
    assert main(["formula", str(run_dir / "model"), "--round", "3"]) == 0
    out = capsys.readouterr().out.strip()
    assert sympy.sympify(out).free_symbols <= set(sympy.symbols("x1 x2"))
    assert main(["formula", str(run_dir / "model"), "--round", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "kanlens: error: --round must be a number of decimals in [0, 50], got -1"
    # LaTeX from the checkpoint: 4 decimals by default, as formula.tex (no 17-digit constants)
    assert main(["formula", str(run_dir / "model"), "--latex"]) == 0
    latex = capsys.readouterr().out
    assert not re.search(r"\d\.\d{5,}", latex), latex


def test_plot_command(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["plot", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "plot.png")
    assert (run_dir / "plot.png").stat().st_size > 1000
    assert main(["plot", str(run_dir)]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["plot", str(run_dir), "--overwrite"]) == 0
    out = run_dir.parent / "edge.png"
    assert main(["plot", str(run_dir / "model"), "--edge", "0,0,0", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert main(["plot", str(run_dir), "--edge", "5,0,0", "--out", str(out), "--overwrite"]) == 2
    assert main(["plot", str(run_dir), "--edge", "0,0", "--out", str(out), "--overwrite"]) == 2


def test_overwrite_rules(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # an existing kanlens run folder is refused without --overwrite ...
    before = (run_dir / "metrics.json").read_text()
    assert main(["fit", "--formula", "x1", "--out", str(run_dir), *FAST]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (run_dir / "metrics.json").read_text() == before
    # ... and a foreign non-empty folder is refused even with --overwrite
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    assert main(["fit", "--formula", "x1", "--out", str(foreign), "--overwrite", *FAST]) == 2
    assert "not a kanlens run folder" in capsys.readouterr().err
    assert (foreign / "thesis.tex").read_text() == "precious" and len(list(foreign.iterdir())) == 1
    # a file in the way
    (tmp_path / "f").write_text("x")
    assert main(["fit", "--formula", "x1", "--out", str(tmp_path / "f"), *FAST]) == 2


def test_overwrite_replaces_run_and_empty_dir_is_fine(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()  # an empty folder may be used without --overwrite
    args = ["fit", "--formula", "2*x1", "--no-symbolic", "--no-prune", "--out", str(out), *FAST]
    assert main(args) == 0
    m1 = json.loads((out / "metrics.json").read_text())
    assert m1["formula"] is None and not (out / "formula.txt").exists()
    assert main([*args[:-len(FAST)], "--overwrite", "--seed", "1", *FAST]) == 0
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["settings"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_formula_with_constant_calls_and_stage_names(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """sqrt(2*pi) is a constant (torch.sqrt(2) was a TypeError); --no-symbolic stages are named as in the pipeline
    ("1: sparse spline", not "1: sparse sparse")."""
    out = tmp_path / "r"
    assert main(["fit", "--formula", "exp(-x1**2/2)/sqrt(2*pi)", "--no-symbolic", "--out", str(out), *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    names = list(m["stages"])
    assert names[0] == "1: sparse spline [1, 5, 1] grid=5", names
    assert names[1].startswith("2: spline ") and names[-1] == "final model"
    assert not any("sparse sparse" in n for n in names)
    assert "1: sparse spline [1, 5, 1] grid=5" in capsys.readouterr().out
    assert m["stages"]["final model"]["test_rmse"] < 0.1  # labels are the Gaussian density (max 0.399), not NaN


def test_python_dash_m_kanlens(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "kanlens", "--help"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: kanlens ") and "{fit,formula,plot,demo,sweep}" in r.stdout
    r = subprocess.run([sys.executable, "-m", "kanlens", "formula", "nowhere"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().startswith("kanlens: error:") and "\n" not in r.stderr.strip()


# ---------------------------------------------------------------------------------------------- acceptance (slow)
@pytest.mark.slow
def test_acceptance_formula_recovered_under_a_minute_of_cpu(tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run_cli(["fit", "--formula", "exp(sin(pi*x1)+x2**2)", "--out", "runs/t", "--quiet"], tmp_path, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert r.returncode == 0, r.stderr
    got = sympy.sympify((tmp_path / "runs/t/formula.txt").read_text())
    x1, x2 = sympy.symbols("x1 x2")
    assert sympy.simplify(got - sympy.exp(sympy.sin(sympy.pi * x1) + x2**2)) == 0
    assert cpu < 60, f"used {cpu:.1f} s of CPU"


@pytest.mark.slow
def test_acceptance_csv_with_junk_column(tmp_path: Path) -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.rand(600, 3, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.sin(torch.pi * x[:, 0]) + x[:, 2] ** 2  # column "junk" (x[:, 1]) plays no role
    _write_csv(tmp_path / "data.csv", ["a", "junk", "b", "y"],
               [[f"{v:.10g}" for v in row] for row in torch.cat([x, y[:, None]], 1).tolist()])
    r = run_cli(["fit", "--csv", "data.csv", "--target", "y", "--out", "runs/csv", "--quiet"], tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "runs/csv/metrics.json").read_text())
    assert m["inputs"] == ["a", "junk", "b"]
    assert m["inputs_kept"] == ["a", "b"]
    assert "junk" not in m["formula"]
    assert m["formula_test_rmse"] < 1e-2
    assert "a" in m["formula_variables"] and "b" in m["formula_variables"]


def test_formulas_equal() -> None:
    from kanlens.run_reports import formulas_equal

    x1, x2 = sympy.symbols("x1 x2", real=True)  # the truth may carry assumptions; names decide
    truth = sympy.exp(sympy.sin(sympy.pi * x1) + x2**2)
    assert formulas_equal(sympy.sympify("exp(x2**2)*exp(sin(pi*x1))"), truth)
    assert not formulas_equal(sympy.sympify("exp(x2**2 + sin(3.14159*x1))"), truth)
    assert not formulas_equal(sympy.sympify("exp(x2**2 + sin(pi*x1)) + 1e-3"), truth)
    assert not formulas_equal(sympy.sympify("x1"), sympy.sympify("x2"))


def test_corrupt_checkpoint_is_a_usage_error(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run_dir / "model", bad)
    data = bytearray((bad / "tensors.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "tensors.pt").write_bytes(bytes(data))
    for argv in (["formula", str(bad)], ["plot", str(bad), "--out", str(tmp_path / "p.png")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("kanlens: error:") and "\n" not in err and "tensors.pt" in err
    assert not (tmp_path / "p.png").exists()


def test_demo_refuses_an_existing_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--overwrite"]) == 2  # not a kanlens run folder: never replaced
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
