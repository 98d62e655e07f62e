"""What a run folder holds besides the model: plots, ``history.csv``, ``metrics.json`` and ``report.md``.

Writers used by :func:`kanlens.runs.run_workflow`; each takes the folder to write into (the run's hidden staging
folder, renamed into place when everything is written) and the values to write.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .schedule import StageEvent
from .utils import jsonable, one_line  # jsonable: re-exported (a public name of this module)

__all__ = ["formula_metrics", "formulas_equal", "jsonable", "model_inputs", "report_markdown", "write_history",
           "write_metrics", "write_plots"]

log = logging.getLogger(__name__)


def model_inputs(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The columns of ``x`` that ``model`` reads (all, or ``config.input_ids`` after input pruning)."""
    ids = model.config.input_ids
    return x if ids is None else x[:, ids]


def formula_metrics(result: Any, var_names: Sequence[str], xte: torch.Tensor, yte: torch.Tensor,
                    truth: Any) -> dict[str, Any]:
    """``metrics.json`` entries of a :class:`~kanlens.symbolic.search.SymbolicResult`: the formula, its test
    RMSE, the candidates table and (with ``truth``) whether it is sympy-equal to the truth."""
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


def write_plots(folder: Path, jobs: Sequence[tuple[str, Any]], stages: Sequence[StageEvent], dataset: dict,
                var_names: Sequence[str]) -> list[str]:
    """Network diagrams of the given ``(file name, model)`` pairs and the loss curves of ``stages``
    (``loss.png``); a failing plot is reported in the returned list, never fatal."""
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
            x = model_inputs(m, dataset["train_input"]).to(m.device, m.dtype)
            fig = plot_kan(m, x, in_vars=[str(n) for n in (m.config.input_names or var_names)],
                           title=fname[:-4].replace("_", " "), path=folder / fname)
            plt.close(fig)
        except Exception as e:
            problems.append(f"{fname}: {type(e).__name__}: {one_line(e)}")
    try:
        if stages:
            fig = plot_history([st.history for st in stages], path=folder / "loss.png",
                               title="training (stages separated by vertical lines)")
            plt.close(fig)
    except Exception as e:
        problems.append(f"loss.png: {type(e).__name__}: {one_line(e)}")
    for p in problems:
        log.warning("plot failed: %s", p)
    return problems


def write_history(path: Path, stages: Sequence[StageEvent]) -> None:
    """``history.csv``: per-step train/test RMSE and regularisation of every training stage."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stage", "step", "train_rmse", "test_rmse", "reg"])
        for st in stages:
            h = st.history
            for s, (tr, te, rg) in enumerate(zip(h.train_loss, h.test_loss, h.reg)):
                w.writerow([st.name, s, f"{tr:.8g}", f"{te:.8g}", f"{rg:.8g}"])


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json`` and ``report.md`` of a run."""
    (folder / "metrics.json").write_text(json.dumps(jsonable(metrics), indent=2) + "\n")
    (folder / "report.md").write_text(report_markdown(metrics, folder))


def _report_formula(m: dict[str, Any], folder: Path) -> list[str]:
    tex = (folder / "formula.tex").read_text().strip() if (folder / "formula.tex").exists() else ""
    lines = ["## Formula", "", "```", m["formula"], "```", "", f"$$ {tex} $$" if tex else "", "",
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
    return [*lines, ""]


def report_markdown(m: dict[str, Any], folder: Path) -> str:
    """``report.md`` of a run from its metrics (and the formula / plot files already in ``folder``)."""
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
        lines += _report_formula(m, folder)
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
