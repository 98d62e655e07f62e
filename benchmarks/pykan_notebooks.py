"""Run pykan 0.2.8's tutorial notebooks cell by cell on kanlens (or on pykan itself) and count the cells that run.

The notebooks' code cells are stored under ``benchmarks/pykan_notebooks/`` (one JSON file per notebook: the repo,
path and commit they were read from, and the list of code-cell sources). Each notebook runs in its own subprocess,
in a fresh namespace and a fresh temporary working directory, its cells in order, as written (step counts
unchanged), on CPU, one thread, matplotlib ``Agg`` with ``plt.show`` a no-op. A cell that raises counts as failed
(its exception type and message are recorded); a cell that runs past ``--cell-timeout`` seconds counts as failed
``timeout``; when the notebook runs past ``--notebook-timeout`` the running cell is a ``timeout`` and the cells
after it ``not run``.

The one change to the notebooks is the import of pykan: ``from kan import *``, ``from kan.X import Y`` and
``import kan`` become imports of ``_nb_kan`` (the same rewrite for both backends). ``_nb_kan`` is the shim:

* ``--backend pykan``: ``_nb_kan`` and ``_nb_kan.X`` are pykan's ``kan`` and ``kan.X`` themselves;
* ``--backend kanlens``: ``_nb_kan`` (and every ``_nb_kan.X``) holds kanlens's public names (``kanlens.__all__``
  and the pykan-compatibility modules' ``__all__``) and the names pykan's star import brings from torch / numpy /
  sympy / matplotlib / the standard library (these win a clash, as in pykan: ``lambdify`` is sympy's). No kanlens
  name is defined here.

IPython lines (``%magic``, ``!shell``) become ``pass``. Usage::

    python benchmarks/pykan_notebooks.py --backend kanlens                       # main venv
    /work/pykanenv/bin/python benchmarks/pykan_notebooks.py --backend pykan     # pykan 0.2.8's venv
    python benchmarks/pykan_notebooks.py --backend kanlens --only API_2 --cell-timeout 30 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOKS = HERE / "pykan_notebooks"
SHIM = "_nb_kan"

# pykan's `from kan import *` brings these along (kan/MultKAN.py and kan/utils.py star-import them)
STAR_PRELUDE = """
import os, glob, copy, random
import numpy as np
import torch
import torch.nn as nn
import matplotlib.pyplot as plt
from tqdm import tqdm
from sympy import *
import sympy
"""
KANLENS_MODULES = ("kanlens", "kanlens.pykan_utils", "kanlens.hypothesis", "kanlens.compiler")
PYKAN_SUBMODULES = ("utils", "spline", "MultKAN", "KANLayer", "Symbolic_KANLayer", "hypothesis", "compiler",
                    "MLP", "LBFGS", "feynman", "experiment")


def rewrite(source: str) -> str:
    """The notebook cell with pykan's imports pointed at the shim, and IPython-only lines made no-ops."""
    out = []
    for line in source.splitlines():
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith(("%", "!")):
            out.append(f"{indent}pass  # {stripped}")
            continue
        line = re.sub(r"^(\s*)from\s+kan(\.|\s)", rf"\1from {SHIM}\2", line)
        line = re.sub(r"^(\s*)import\s+kan(\.\w+)*(\s+as\s+\w+)?\s*$",
                      lambda m: f"{m.group(1)}import {SHIM}{m.group(2) or ''}{m.group(3) or ' as kan'}", line)
        out.append(line)
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- worker (child)
def _install_shim(backend: str) -> None:
    import importlib
    import types

    if backend == "pykan":
        kan = importlib.import_module("kan")
        sys.modules[SHIM] = kan
        for sub in PYKAN_SUBMODULES:
            with contextlib.suppress(ImportError):  # a submodule this pykan version lacks
                sys.modules[f"{SHIM}.{sub}"] = importlib.import_module(f"kan.{sub}")
        return
    prelude: dict = {}
    exec(STAR_PRELUDE, prelude)
    ns: dict = {}
    for name in KANLENS_MODULES:
        mod = importlib.import_module(name)
        for attr in getattr(mod, "__all__", ()):
            if not attr.startswith("__"):
                ns[attr] = getattr(mod, attr)
    ns.update(prelude)  # as in pykan's namespace, sympy's names win (`lambdify` is sympy's there, not kanlens's)
    shim = types.ModuleType(SHIM)
    shim.__dict__.update({k: v for k, v in ns.items() if not k.startswith("__")})
    shim.__all__ = [k for k in shim.__dict__ if not k.startswith("_")]
    shim.__path__ = []  # a package, so that `import _nb_kan.utils` resolves through sys.modules
    sys.modules[SHIM] = shim
    for sub in PYKAN_SUBMODULES:
        m = types.ModuleType(f"{SHIM}.{sub}")
        m.__dict__.update({k: v for k, v in shim.__dict__.items() if not k.startswith("__")})
        m.__all__ = shim.__all__
        sys.modules[f"{SHIM}.{sub}"] = m
        if sub not in shim.__dict__:  # as in pykan, `kan.LBFGS` / `kan.MLP` stay the classes, not the submodules
            setattr(shim, sub, m)


class CellTimeout(BaseException):
    """Raised by the alarm when a cell runs past its time (BaseException: `except Exception` in a cell won't eat
    it)."""


def _worker(args: argparse.Namespace) -> None:
    import signal
    import traceback

    os.environ["MPLBACKEND"] = "Agg"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    torch.set_num_threads(1)
    plt.show = lambda *a, **k: None
    _install_shim(args.backend)
    cells = json.loads(Path(args.worker).read_text(encoding="utf-8"))["cells"]

    def alarm(signum, frame):
        raise CellTimeout()

    signal.signal(signal.SIGALRM, alarm)
    ns: dict = {"__name__": "__main__"}
    with open(args.results, "a", encoding="utf-8") as res:
        for k, src in enumerate(cells):
            res.write(json.dumps({"cell": k, "status": "started"}) + "\n")
            res.flush()
            t0 = time.perf_counter()
            rec = {"cell": k, "status": "ok"}
            signal.setitimer(signal.ITIMER_REAL, args.cell_timeout)
            try:
                exec(compile(rewrite(src), f"<cell {k}>", "exec"), ns)
            except CellTimeout:
                rec = {"cell": k, "status": "timeout", "error": f"cell ran past {args.cell_timeout} s"}
            except BaseException as err:  # a cell may raise anything, SystemExit included
                msg = " ".join(str(err).split())[:200]
                where = traceback.extract_tb(err.__traceback__)[-1]
                rec = {"cell": k, "status": "error", "error": f"{type(err).__name__}: {msg}",
                       "at": f"{Path(where.filename).name}:{where.lineno}"}
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                plt.close("all")
            rec["seconds"] = round(time.perf_counter() - t0, 2)
            res.write(json.dumps(rec) + "\n")
            res.flush()


# ---------------------------------------------------------------------------------------------- runner (parent)
def run_notebook(path: Path, backend: str, cell_timeout: float, nb_timeout: float, kanlens_root: Path = ROOT) -> dict:
    """Run one notebook in a subprocess; returns ``{"name", "cells": [...per-cell records...], "seconds"}``."""
    n_cells = len(json.loads(path.read_text(encoding="utf-8"))["cells"])
    work = Path(tempfile.mkdtemp(prefix="pykan_nb_"))
    results = work / "_results.jsonl"
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    if backend == "kanlens":
        env["PYTHONPATH"] = os.pathsep.join([str(kanlens_root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--backend", backend, "--worker", str(path),
           "--results", str(results), "--cell-timeout", str(cell_timeout)]
    t0 = time.perf_counter()
    try:
        subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=nb_timeout, check=False)
        killed = False
    except subprocess.TimeoutExpired:
        killed = True
    seconds = time.perf_counter() - t0
    done: dict[int, dict] = {}
    started = -1
    if results.exists():
        for line in results.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec["status"] == "started":
                started = rec["cell"]
            else:
                done[rec["cell"]] = rec
    shutil.rmtree(work, ignore_errors=True)
    cells = []
    for k in range(n_cells):
        if k in done:
            cells.append(done[k])
        elif k == started:
            why = f"notebook ran past {nb_timeout} s" if killed else "the worker process died in this cell"
            cells.append({"cell": k, "status": "timeout" if killed else "error", "error": why})
        else:
            cells.append({"cell": k, "status": "not run", "error": "an earlier cell ended the notebook"})
    return {"name": path.stem, "cells": cells, "seconds": round(seconds, 1)}


def report(runs: list[dict], backend: str) -> str:
    lines = [f"backend: {backend}", "", "| notebook | cells | ok | failed | seconds |",
             "| --- | ---: | ---: | ---: | ---: |"]
    tot = ok = 0
    for r in runs:
        n, k = len(r["cells"]), sum(c["status"] == "ok" for c in r["cells"])
        tot, ok = tot + n, ok + k
        lines.append(f"| {r['name']} | {n} | {k} | {n - k} | {r['seconds']} |")
    full = sum(all(c["status"] == "ok" for c in r["cells"]) for r in runs)
    lines += [f"| **total** | {tot} | {ok} | {tot - ok} | |", "",
              f"{ok} of {tot} code cells ran ({100 * ok / max(tot, 1):.0f}%); {full} of {len(runs)} notebooks ran "
              "through.", "", "First error of each failing cell:", "", "| notebook | cell | status | error |",
              "| --- | ---: | --- | --- |"]
    for r in runs:
        for c in r["cells"]:
            if c["status"] != "ok":
                err = c.get("error", "").replace("|", "\\|")
                lines.append(f"| {r['name']} | {c['cell']} | {c['status']} | {err} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("kanlens", "pykan"), default="kanlens")
    p.add_argument("--only", nargs="*", default=None, help="notebook name prefixes to run (default: all)")
    p.add_argument("--cell-timeout", type=float, default=60.0)
    p.add_argument("--notebook-timeout", type=float, default=120.0)
    p.add_argument("--json", type=Path, default=None, help="write the per-cell records here")
    p.add_argument("--kanlens-root", type=Path, default=ROOT,
                   help="folder holding the kanlens package to test (default: this checkout), e.g. an older commit's "
                        "`git archive` for a before/after comparison")
    p.add_argument("--from-json", type=Path, nargs="+", default=None,
                   help="print the report of earlier --json files (merged; a later file's notebook replaces an "
                        "earlier one's) instead of running")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--results", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    if args.from_json:
        merged: dict[str, dict] = {}
        backends = set()
        for f in args.from_json:
            data = json.loads(f.read_text(encoding="utf-8"))
            backends.add(data["backend"])
            merged.update({r["name"]: r for r in data["runs"]})
        print(report([merged[k] for k in sorted(merged)], "+".join(sorted(backends))))
        return
    paths = sorted(NOTEBOOKS.glob("*.json"))
    if args.only:
        paths = [q for q in paths if any(q.stem.startswith(o) for o in args.only)]
    if not paths:
        raise SystemExit(f"no notebooks under {NOTEBOOKS} match {args.only}")
    runs = []
    for q in paths:
        r = run_notebook(q, args.backend, args.cell_timeout, args.notebook_timeout, args.kanlens_root.resolve())
        k = sum(c["status"] == "ok" for c in r["cells"])
        print(f"{r['name']}: {k}/{len(r['cells'])} cells ({r['seconds']} s)", file=sys.stderr, flush=True)
        runs.append(r)
    print(report(runs, args.backend))
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps({"backend": args.backend, "cell_timeout": args.cell_timeout,
                                   "notebook_timeout": args.notebook_timeout, "runs": runs}, indent=1),
                       encoding="utf-8")
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
