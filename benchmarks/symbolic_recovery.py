"""Symbolic-recovery benchmark: run kanlens's pipeline (and optionally pykan's) on a formula file, score recovery.

Usage:
    python benchmarks/symbolic_recovery.py --formulas ../shared/benchmarks/formulas_public.json --out results.json
    python benchmarks/symbolic_recovery.py --formulas FILE --out r.json --only P01_kan_toy_exp_sin_sq --dtype float64
    python benchmarks/symbolic_recovery.py --formulas FILE --out r.json --baseline pykan
    python benchmarks/symbolic_recovery.py --formulas FILE --out p.json --baseline pykan --skip-kanlens
    python benchmarks/symbolic_recovery.py --report r.json p.json      # markdown table of result files
    python benchmarks/symbolic_recovery.py --formulas ../shared/benchmarks/feynman_I.json --out f.json \
        --dtype float64 --time-budget 120 --noise 0.01 --jobs 2          # SRBench-style: noise, processes

The file format is the one of ``formulas_public.json`` (``formulas``: ``id, formula, n_vars, ranges, kan_width,
special_functions, ...``). Every formula gets a ``create_dataset``-style dataset (1000 train / 1000 test uniform
points, labels computed in float64 then cast), then ``kanlens.symbolic.search.symbolic_regression`` with the
file's ``kan_width`` (``--auto-width``, or a null ``kan_width``: the search chooses the network). ``--noise EPS``
adds SRBench's noise ``EPS * std(y) * N(0, 1)`` to the labels the solver sees (both of its splits: for the solver
they are all measured data); scoring is always against the noise-free formula on fresh points. ``--jobs N`` runs N
formulas at a time in separate processes (one torch thread each). Scoring follows
``conventions.recovery_criterion``:

* NRMSE = RMSE(candidate - truth) / std(truth) on 10000 fresh uniform points (seed independent of training);
  any non-finite candidate value gives inf;
* symbolic match after canonicalising the candidate's floats, by (a) snapping (``|c| < 1e-4`` -> 0, else the
  simplest p/q * K, q <= 12, K in 1, pi, 1/pi, sqrt 2, sqrt pi, sqrt(2 pi), e or inverses, or k*c, k/c for a
  constant c of the truth, within relative 1e-3, smallest denominator first) or (b) rounding every float of
  candidate and truth (pi and e included) to 3 significant digits; identity = 16 random points at 30 digits with
  ``|c - t| <= 1e-20 (1 + |t|)``;
* recovered = symbolic and NRMSE < 1e-3; exact = recovered and NRMSE < 1e-6;
* SRBench-lenient ("symbolic solution", La Cava et al. 2021): the candidate, snapped as above, differs from the
  truth by a constant or a constant factor (identity of ``cand - truth`` or ``cand / truth`` across the 16 points).

Output: ``{"results": [{id, recovered, exact, nrmse, formula, seconds, ...}], "totals": {...}}`` and a printed
table. Special functions: ``--special auto`` (default) adds the file's ``special_functions`` to the library for that
formula only; ``always`` uses every special function for every formula; ``never`` uses the default library.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import sympy
import torch

from kanlens.formula_data import formula_nrmse, library_names, numpy_function, sample_formula, special_library


# ---------------------------------------------------------------------------------------------- formulas & data
def parse_truth(text: str, n_vars: int) -> tuple[sympy.Expr, list[sympy.Symbol]]:
    """Parse a benchmark formula string (trusted file content, sympify as the file's conventions say)."""
    xs = [sympy.Symbol(f"x{k}") for k in range(1, n_vars + 1)]
    ns = {str(s): s for s in xs}
    ns.update({"besselj": sympy.besselj, "erf": sympy.erf, "fresnels": sympy.fresnels, "fresnelc": sympy.fresnelc,
               "pi": sympy.pi, "E": sympy.E})
    return sympy.sympify(text, locals=ns), xs


def parse_candidate(text: str, n_vars: int) -> sympy.Expr:
    """Parse a candidate string in x1..xn (pykan's x_1 naming accepted)."""
    import re

    text = re.sub(r"\bx_(\d+)\b", r"x\1", text)
    return parse_truth(text, n_vars)[0]


numpy_fn = numpy_function  # the library's sampler: kanlens.sweep's formula tasks sample the same data
make_dataset = sample_formula


# ---------------------------------------------------------------------------------------------- criterion
def nrmse(cand: sympy.Expr, truth: sympy.Expr, xs, ranges, *, n: int = 10000, seed: int = 12345) -> float:
    return formula_nrmse(cand, truth, xs, ranges, n=n, seed=seed)


_KS = [Fraction(1), Fraction(2), Fraction(3), Fraction(4), Fraction(1, 2), Fraction(1, 3), Fraction(1, 4)]


def _bases() -> list[sympy.Expr]:
    pi, e, two = sympy.pi, sympy.E, sympy.Integer(2)
    b = [sympy.Integer(1), pi, 1 / pi, sympy.sqrt(two), sympy.sqrt(pi), sympy.sqrt(2 * pi), e]
    return b + [1 / v for v in b[3:]]


def truth_constants(truth: sympy.Expr) -> list[sympy.Expr]:
    """Numeric constants occurring in the truth (atoms and numeric sub-expressions), excluding 0 and +-1."""
    out = []
    for node in sympy.preorder_traversal(truth):
        if node.is_number and node.is_real and node not in (0, 1, -1) and node not in out:
            out.append(node)
    return out


def snap_value(v: float, truth_consts: list[sympy.Expr]) -> sympy.Expr | None:
    if abs(v) < 1e-4:
        return sympy.Integer(0)
    bases = _bases()
    for q in range(1, 13):
        for base in bases:
            bv = float(base)
            p = round(v * q / bv)
            if p != 0 and abs(p / q * bv - v) <= 1e-3 * abs(v):
                return sympy.Rational(p, q) * base
    for c in truth_consts:
        for k in _KS:
            kr = sympy.Rational(k.numerator, k.denominator)
            for cand in (kr * c, kr / c, -kr * c, -kr / c):
                if abs(float(cand) - v) <= 1e-3 * abs(v):
                    return cand
    return None


def canon_snap(cand: sympy.Expr, truth: sympy.Expr) -> sympy.Expr:
    consts = truth_constants(truth)
    rep = {}
    for f in cand.atoms(sympy.Float):
        s = snap_value(float(f), consts)
        if s is not None:
            rep[f] = s
    return cand.xreplace(rep)


def canon_round(expr: sympy.Expr, zero_small: bool) -> sympy.Expr:
    e = expr
    if zero_small:
        e = e.xreplace({f: sympy.Integer(0) for f in e.atoms(sympy.Float) if abs(float(f)) < 1e-4})
    e = e.evalf()
    return e.xreplace({f: sympy.Float(float(f"{float(f):.3g}"), 30) for f in e.atoms(sympy.Float)})


def identical(a: sympy.Expr, b: sympy.Expr, xs, ranges, *, seed: int = 7) -> bool:
    rng = np.random.default_rng(seed)
    lo, hi = np.array(ranges, dtype=np.float64).T
    for _ in range(16):
        pt = lo + (hi - lo) * rng.random(len(xs))
        subs = {x: sympy.Float(str(v), 30) for x, v in zip(xs, pt)}
        try:
            va = complex(a.evalf(30, subs=subs))
            vb = complex(b.evalf(30, subs=subs))
        except (TypeError, ValueError, ZeroDivisionError):
            return False
        if not (np.isfinite(va) and np.isfinite(vb)) or abs(va - vb) > 1e-20 * (1 + abs(vb)):
            return False
    return True


def constant_apart(a: sympy.Expr, b: sympy.Expr, xs, ranges, *, seed: int = 7) -> bool:
    """Whether ``a - b`` or ``a / b`` is the same number at 16 random points (30 digits): SRBench's lenient
    "symbolic solution" (equal up to an additive or a multiplicative constant)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.array(ranges, dtype=np.float64).T
    diffs, ratios = [], []
    for _ in range(16):
        pt = lo + (hi - lo) * rng.random(len(xs))
        subs = {x: sympy.Float(str(v), 30) for x, v in zip(xs, pt)}
        try:
            va, vb = complex(a.evalf(30, subs=subs)), complex(b.evalf(30, subs=subs))
        except (TypeError, ValueError, ZeroDivisionError):
            return False
        if not (np.isfinite(va) and np.isfinite(vb)):
            return False
        diffs.append(va - vb)
        ratios.append(va / vb if vb != 0 else math.nan)

    def same(v: list[complex]) -> bool:
        return all(np.isfinite(u) and abs(u - v[0]) <= 1e-20 * (1 + abs(v[0])) for u in v)

    return same(diffs) or (same(ratios) and abs(ratios[0]) > 1e-12)


def score(cand_text: str, entry: dict) -> dict:
    truth, xs = parse_truth(entry["formula"], entry["n_vars"])
    try:
        cand = parse_candidate(cand_text, entry["n_vars"])
    except (sympy.SympifyError, SyntaxError, TypeError, ValueError):
        return {"recovered": False, "exact": False, "nrmse": math.inf, "symbolic": False, "match": None,
                "lenient": False}
    err = nrmse(cand, truth, xs, entry["ranges"])
    match = None
    snapped = canon_snap(cand, truth)
    if identical(snapped, truth, xs, entry["ranges"]):
        match = "snap"
    elif identical(canon_round(cand, True), canon_round(truth, False), xs, entry["ranges"]):
        match = "round"
    rec = match is not None and err < 1e-3
    lenient = match is not None or constant_apart(snapped, truth, xs, entry["ranges"])
    return {"recovered": rec, "exact": rec and err < 1e-6, "nrmse": err, "symbolic": match is not None,
            "match": match, "lenient": lenient}


# ---------------------------------------------------------------------------------------------- runners
def library_for(entry: dict, mode: str):
    from kanlens.symbolic.library import default_library

    if mode == "always":
        return default_library(special=True)
    return special_library(library_names(entry.get("special_functions", [])) if mode == "auto" else ())


def run_kanlens(entry: dict, ds: dict, args) -> str:
    from kanlens.symbolic.search import symbolic_regression

    width = entry["kan_width_min"] if args.track == "oracle" else entry.get("kan_width")
    if args.auto_width and args.track != "oracle":
        width = None  # the search chooses the network
    res = symbolic_regression(ds, width, seed=args.seed, dtype=ds["train_input"].dtype,
                              lib=library_for(entry, args.special), steps=tuple(args.steps),
                              refine_grid=args.refine_grid, lamb=args.lamb, time_budget=args.time_budget)
    if args.verbose:
        print(res.table, file=sys.stderr)
    return str(res.formula), res


def run_pykan(entry: dict, ds: dict, args) -> str:
    from kan import KAN as PyKAN
    from kan.utils import ex_round as py_ex_round

    _patch_pykan()

    width = entry["kan_width_min"] if args.track == "oracle" else entry["kan_width"]
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        os.chdir(tmp)  # pykan writes checkpoints into ./model (and prints every step)
        try:
            # pykan's defaults (auto_save=True writes ./model inside the temporary directory; its prune() and
            # refine() need that directory)
            model = PyKAN(width=list(width), grid=5, k=3, seed=args.seed)
            model.fit(ds, opt="LBFGS", steps=args.steps[0], lamb=args.lamb)
            model = model.prune()
            model.fit(ds, opt="LBFGS", steps=args.steps[1])
            if args.refine_grid:
                model = model.refine(20)
                model.fit(ds, opt="LBFGS", steps=args.steps[2])
            names = list(library_names(entry.get("special_functions", [])))
            if names and args.special != "never":
                _pykan_add_specials(names)
            model.auto_symbolic()
            # pykan's refit of the symbolic constants; no grid update (every edge is symbolic now, and pykan's
            # grid update crashes in torch.linalg.lstsq with current torch + MKL at this point)
            model.fit(ds, opt="LBFGS", steps=args.steps[1], update_grid=False)
            expr = model.symbolic_formula()[0][0]
            return _pykan_string(str(py_ex_round(expr, 4))), None
        finally:
            os.chdir(cwd)


def _patch_pykan() -> None:
    """Compatibility shim for pykan 0.2.8's ``curve2coef`` with current torch + MKL.

    pykan calls ``torch.linalg.lstsq`` on expanded tensors; on degenerate grids MKL rejects the call ("Parameter 6
    was incorrect on entry to SGELSY") and pykan then dies with ``UnboundLocalError: coef``. The shim passes
    contiguous copies and, if lstsq still fails, uses the ridge pseudo-inverse that pykan's own source keeps as a
    commented-out alternative. Same least-squares problem; pykan's algorithm is otherwise unchanged."""
    import importlib

    sp = importlib.import_module("kan.spline")
    if getattr(sp.curve2coef, "_kanlens_shim", False):
        return

    def curve2coef(x_eval, y_eval, grid, k):
        batch, in_dim, out_dim = x_eval.shape[0], x_eval.shape[1], y_eval.shape[2]
        n_coef = grid.shape[1] - k - 1
        mat = sp.B_batch(x_eval, grid, k).permute(1, 0, 2)[:, None, :, :].expand(in_dim, out_dim, batch, n_coef)
        rhs = y_eval.permute(1, 2, 0).unsqueeze(dim=3)
        try:
            return torch.linalg.lstsq(mat.contiguous(), rhs.contiguous()).solution[:, :, :, 0]
        except RuntimeError:  # pykan's own (commented-out) fallback: ridge pseudo-inverse, lamb = 1e-8
            a = torch.nan_to_num(mat.contiguous())
            b = torch.nan_to_num(rhs.contiguous())
            xtx = a.transpose(-1, -2) @ a + 1e-8 * torch.eye(n_coef, dtype=a.dtype, device=a.device)
            return (torch.linalg.pinv(xtx) @ (a.transpose(-1, -2) @ b))[:, :, :, 0]

    curve2coef._kanlens_shim = True
    for name in ("kan.spline", "kan.KANLayer", "kan.MultKAN", "kan.utils", "kan"):
        mod = importlib.import_module(name)
        if hasattr(mod, "curve2coef"):
            mod.curve2coef = curve2coef


def _pykan_add_specials(names: list[str]) -> None:
    """pykan's own way: ``add_symbolic(name, torch_fn, c=complexity)`` (it creates an undefined sympy Function)."""
    from kan.utils import add_symbolic

    fns = {"besselj0": torch.special.bessel_j0, "besselj1": torch.special.bessel_j1, "erf": torch.erf}
    for n in names:
        if n in fns:
            add_symbolic(n, fns[n], c=4)


def _pykan_string(text: str) -> str:
    """pykan prints an added function by its name: map ``besselj0(u)`` back to sympy's ``besselj(0, u)``."""
    return text.replace("besselj0(", "besselj(0, ").replace("besselj1(", "besselj(1, ")


# ---------------------------------------------------------------------------------------------- report
def markdown_report(paths: list[str]) -> str:
    """A markdown table (one row per formula, one column group per tool) from result files of this script."""
    rows: dict[str, dict[str, dict]] = {}
    tools: list[str] = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        for r in data.get("results", []) + data.get("baseline", []):
            tool = r.get("tool", "kanlens")
            if tool not in tools:
                tools.append(tool)
            rows.setdefault(r["id"], {})[tool] = r
    head = "| formula | " + " | ".join(f"{t} recovered | {t} NRMSE | {t} wall s | {t} CPU s" for t in tools) + " |"
    lines = [head, "|---|" + "---:|" * (4 * len(tools))]
    for fid, by_tool in rows.items():
        cells = []
        for t in tools:
            r = by_tool.get(t)
            if r is None:
                cells += ["not run"] * 4
                continue
            rec = "exact" if r["exact"] else ("yes" if r["recovered"] else "no")
            cells += [rec, f"{r['nrmse']:.1e}", f"{r['seconds']:.0f}", f"{r.get('cpu_seconds', math.nan):.0f}"]
        lines.append(f"| {fid} | " + " | ".join(cells) + " |")
    total = []
    for t in tools:
        rs = [by[t] for by in rows.values() if t in by]
        total += [f"**{sum(r['recovered'] for r in rs)}/{len(rs)}**", "",
                  f"**{sum(r['seconds'] for r in rs):.0f}**",
                  f"**{sum(r.get('cpu_seconds', math.nan) for r in rs):.0f}**"]
    lines.append("| total | " + " | ".join(total) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
_RUNNERS = {"kanlens": run_kanlens, "pykan": run_pykan}


def run_one(entry: dict, tool: str, args) -> dict:
    """One formula with one tool: a result row (a failed run is a row, not a crash)."""
    torch.set_num_threads(args.threads)
    truth, xs = parse_truth(entry["formula"], entry["n_vars"])
    dtype = torch.float32 if args.dtype == "float32" else torch.float64
    ds = make_dataset(truth, xs, entry["ranges"], seed=args.seed, dtype=dtype, noise=args.noise)
    if tool == "kanlens":
        import kanlens.symbolic.search  # noqa: F401  (imports are not the search's time: a fresh worker pays them)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        text, res = _RUNNERS[tool](entry, ds, args)
        error = None
    except Exception as e:
        text, res, error = "nan", None, f"{type(e).__name__}: {e}"
        print(f"{entry['id']} {tool}: {error}", file=sys.stderr)
        if args.verbose:
            import traceback

            traceback.print_exc()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {"id": entry["id"], "tool": tool, "n_vars": entry["n_vars"], "formula": text, "seconds": round(seconds, 2),
           "cpu_seconds": round(cpu, 2), "noise": args.noise, **score(text, entry)}
    if res is not None:
        row["width"] = res.width
        row["claimed_exact"] = bool(res.exact)
        row["search_cpu_seconds"] = round(float(getattr(res, "cpu_seconds", math.nan)), 2)
    if error:
        row["error"] = error
    return row


def _yes(v: bool) -> str:
    return "yes" if v else "no"


def _print_row(r: dict) -> None:
    print(f"{r['id']:<28} {r['tool']:<8} {_yes(r['recovered']):<4} {_yes(r['exact']):<4} {_yes(r['lenient']):<4} "
          f"{_yes(r.get('claimed_exact', False)):<4} {r['nrmse']:<10.2e} {r['seconds']:7.1f}s "
          f"{r['cpu_seconds']:7.1f}s cpu  {r['formula'][:80]}", flush=True)


def _totals(rows: list[dict]) -> dict:
    return {"recovered": sum(r["recovered"] for r in rows), "exact": sum(r["exact"] for r in rows),
            "lenient": sum(r["lenient"] for r in rows),
            "claimed_exact_wrong": sum(r.get("claimed_exact", False) and not r["recovered"] for r in rows),
            "n": len(rows), "seconds": round(sum(r["seconds"] for r in rows), 1),
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in rows), 1),
            "max_cpu_seconds": round(max((r["cpu_seconds"] for r in rows), default=0.0), 1)}


def _write(rows: list[dict], tools: list[str], args) -> dict:
    """Write the results file atomically; returns the totals per tool (and per number of inputs)."""
    totals = {}
    for tool in tools:
        rs = [r for r in rows if r["tool"] == tool]
        totals[tool] = _totals(rs)
        totals[tool]["by_inputs"] = {n: _totals([r for r in rs if r["n_vars"] == n])
                                     for n in sorted({r["n_vars"] for r in rs})}
    out = {"results": [r for r in rows if r["tool"] == "kanlens"], "totals": totals,
           "config": {k: v for k, v in vars(args).items()}}
    if args.baseline:
        out["baseline"] = [r for r in rows if r["tool"] != "kanlens"]
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1, default=str))
    os.replace(tmp, args.out)
    return totals


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formulas", required=True, help="formula file (format of formulas_public.json)")
    ap.add_argument("--out", required=True, help="where to write the JSON results")
    ap.add_argument("--only", nargs="*", default=None, help="formula ids (or id prefixes such as P01) to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline", choices=["pykan"], default=None)
    ap.add_argument("--skip-kanlens", action="store_true",
                    help="run only the --baseline tool (e.g. to run the slow pykan baseline in its own process)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--track", choices=["default", "oracle"], default="default",
                    help="start from kan_width (default) or kan_width_min (oracle shape)")
    ap.add_argument("--auto-width", action="store_true",
                    help="ignore the file's kan_width: the search chooses the network (always so for a null width)")
    ap.add_argument("--special", choices=["auto", "always", "never"], default="auto")
    ap.add_argument("--steps", type=int, nargs=3, default=[50, 50, 50])
    ap.add_argument("--refine-grid", type=int, nargs="*", default=[10, 20, 50],
                    help="kanlens: finer grids tried in order while they halve the test error; pykan: refine(20)")
    ap.add_argument("--lamb", type=float, default=0.01)
    ap.add_argument("--time-budget", type=float, default=60.0,
                    help="CPU seconds per formula for kanlens, a hard limit (the best formula so far is returned)")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="SRBench noise level EPS: labels + EPS * std(y) * N(0, 1) (e.g. 0.001, 0.01, 0.1)")
    ap.add_argument("--jobs", type=int, default=1, help="formulas run at a time, each in its own process")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on small data)")
    ap.add_argument("--verbose", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--report":
        if len(argv) < 2:
            print("usage: symbolic_recovery.py --report RESULTS.json [MORE.json ...]", file=sys.stderr)
            return 2
        print(markdown_report(argv[1:]))
        return 0
    ap = _parser()
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.noise < 0:
        ap.error("--jobs must be >= 1 and --noise >= 0")
    spec = json.loads(Path(args.formulas).read_text())
    entries = spec["formulas"]
    if args.only:
        entries = [e for e in entries if any(e["id"] == o or e["id"].startswith(o) for o in args.only)]
        if not entries:
            ap.error(f"--only {args.only} matches no formula id")
    tools = ([] if args.skip_kanlens else ["kanlens"]) + (["pykan"] if args.baseline == "pykan" else [])
    if not tools:
        ap.error("--skip-kanlens needs --baseline")
    tasks = [(entry, tool) for entry in entries for tool in tools]
    print(f"{'formula':<28} {'tool':<8} {'rec':<4} {'exact':<4} {'len.':<4} {'claim':<4} {'NRMSE':<10} {'wall':>8} "
          f"{'CPU':>8}      formula", flush=True)
    rows = []
    if args.jobs == 1:
        for entry, tool in tasks:
            rows.append(run_one(entry, tool, args))
            _print_row(rows[-1])
            _write(rows, tools, args)  # after every formula: a long run that dies keeps what it measured
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_one, entry, tool, args) for entry, tool in tasks]
            for fut in as_completed(futures):
                rows.append(fut.result())
                _print_row(rows[-1])
                _write(rows, tools, args)
        order = {(e["id"], t): k for k, (e, t) in enumerate(tasks)}
        rows.sort(key=lambda r: order[(r["id"], r["tool"])])
    totals = _write(rows, tools, args)
    print("\ntotals (recovered / exact / SRBench-lenient / exact claimed for a wrong formula; wall and CPU s):")
    for tool, t in totals.items():
        print(f"  {tool:<8} all      {t['recovered']}/{t['n']}  exact {t['exact']}  lenient {t['lenient']}  "
              f"wrong-exact {t['claimed_exact_wrong']}  time {t['seconds']:.1f}s (CPU {t['cpu_seconds']:.1f}s, "
              f"max {t['max_cpu_seconds']:.1f}s)")
        for n, b in t["by_inputs"].items():
            print(f"  {tool:<8} {n:>2} inputs {b['recovered']}/{b['n']}  exact {b['exact']}  lenient {b['lenient']}  "
                  f"wrong-exact {b['claimed_exact_wrong']}  CPU {b['cpu_seconds']:.1f}s "
                  f"(max {b['max_cpu_seconds']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
