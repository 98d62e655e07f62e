"""The recovery criterion of benchmarks/symbolic_recovery.py (snap / round canonicalisation, NRMSE, identity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _entry(formula: str, n_vars: int, ranges) -> dict:
    return {"id": "T", "formula": formula, "n_vars": n_vars, "ranges": ranges, "special_functions": []}


def test_truth_is_recovered_exactly(bench):
    e = _entry("exp(sin(pi*x1) + x2**2)", 2, [[-1, 1], [-1, 1]])
    r = bench.score("exp(x2**2 + sin(pi*x1))", e)
    assert r["recovered"] and r["exact"] and r["nrmse"] == 0.0


def test_near_constants_snap_but_wrong_structure_does_not(bench):
    e = _entry("exp(sin(pi*x1) + x2**2)", 2, [[-1, 1], [-1, 1]])
    ok = bench.score("1.00003*exp(0.99998*x2**2 + 1.00001*sin(3.14161*x1)) - 2e-5", e)
    assert ok["recovered"] and not ok["exact"] and ok["match"] == "snap"
    bad = bench.score("0.9991*exp(0.0121*(9.0986*x2)**2 + 1.0006*sin(3.1418*x1))", e)  # pykan's answer
    assert not bad["recovered"]


def test_equivalent_forms_and_pykan_names(bench):
    e = _entry("(x1 + x2)/(1 + x1*x2)", 2, [[-0.9, 0.9], [-0.9, 0.9]])
    assert bench.score("tanh(atanh(x_1) + atanh(x_2))", e)["recovered"]
    e8 = _entry("exp(-x1**2/2)/sqrt(2*pi)", 1, [[-3, 3]])
    assert bench.score("0.39894*exp(-(0.70711*x1)**2)", e8)["recovered"]


def test_near_fit_is_not_recovered_and_nonfinite_is_inf(bench):
    e = _entry("erf(2*x1)", 1, [[-1, 1]])
    r = bench.score("1.0304*tanh(2.2595*x1)", e)
    assert not r["recovered"] and 1e-3 < r["nrmse"] < 0.1
    assert bench.score("log(x1)", e)["nrmse"] == float("inf")
    assert not bench.score("not a formula (", e)["recovered"]


def test_rounding_path(bench):
    e = _entry("x1*x2/(4*pi)", 2, [[0.1, 1], [0.1, 1]])
    r = bench.score("0.0795775*x1*x2", e)
    assert r["recovered"]


def test_public_file_parses_and_every_truth_scores_itself(bench):
    path = ROOT.parent / "shared" / "benchmarks" / "formulas_public.json"
    if not path.exists():
        pytest.skip("public formula file not available")
    for e in json.loads(path.read_text())["formulas"][:4]:
        assert bench.score(e["ka_construction"], e)["recovered"], e["id"]


def test_markdown_report_merges_tools(bench, tmp_path):
    a = {"results": [{"id": "F1", "tool": "kanlens", "recovered": True, "exact": True, "nrmse": 0.0,
                      "seconds": 3.0, "cpu_seconds": 2.5}]}
    b = {"baseline": [{"id": "F1", "tool": "pykan", "recovered": False, "exact": False, "nrmse": 0.25,
                       "seconds": 30.0, "cpu_seconds": 20.0}]}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    text = bench.markdown_report([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    lines = text.splitlines()
    assert lines[0].count("recovered") == 2 and len(lines) == 4
    assert lines[2] == "| F1 | exact | 0.0e+00 | 3 | 2 | no | 2.5e-01 | 30 | 20 |"
    assert lines[3].startswith("| total | **1/1**") and "**0/1**" in lines[3]
