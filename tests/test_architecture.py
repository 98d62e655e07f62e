"""Import direction and private names, checked on the source with ``ast`` (nothing is imported).

DESIGN.md: imports flow one way, ``splines, hooks -> layers -> model -> training, pruning, symbolic -> plotting,
graph, io, runs -> sklearn, cli``. A module may import (at module level) modules of its own level or lower; a
higher one only inside a function (the documented lazy imports, e.g. the pykan-style ``KAN`` methods) or under
``if TYPE_CHECKING:``. No module imports a private name (``_x``) from another kanlens module.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kanlens"

# Levels, lowest first. A key names a module (``"model"``) or a package and everything in it (``"layers.*"``);
# the longest matching key wins. A new module must be placed here (the test says so).
LEVELS: dict[str, int] = {
    # 0, foundations: argument checks and small helpers, splines, hook points, datasets, the LBFGS step, indices
    "_checks": 0, "utils": 0, "files": 0, "splines": 0, "hooks": 0, "data": 0, "_lbfgs": 0, "idx": 0,
    "progress": 0,
    "cardinal": 0, "spline_refit": 0,  # cardinal B-spline kernels and grid-refit helpers next to splines
    # 1, pure building blocks the layers use: the symbolic function library, penalties, formula strings
    "symbolic.library": 1, "regularization": 1, "formula_parse": 1, "formula_data": 1,
    # 2, layers: KANLayer, SymbolicKANLayer, multiplication nodes, the fused stack kernel, convolutions
    "layers": 2, "layers.*": 2,
    # 3, models: KAN (with its config and pykan method mixin), the MLP baseline, the vision models
    "model": 3, "config": 3, "pykan_api": 3, "mlp": 3, "vision": 3, "vision_training": 3,
    # 4, what is done to a model: training, pruning, symbolic regression, surgery, inspection, compiling formulas
    "training": 4, "scores": 4, "pruning": 4, "symbolic": 4, "symbolic.*": 4, "pykan_fit": 4, "pykan_inspect": 4,
    "pykan_utils": 4, "surgery": 4, "hypothesis": 4, "checkpoints": 4, "compiler": 4,
    "fit_checks": 4, "fit_history": 4, "fit_optim": 4, "schedule": 4,
    # 5, results out: plots, graphs, files, run folders and workflows, sweeps (local or on Dask)
    "plotting": 5, "plotting.*": 5, "graph": 5, "io": 5, "runs": 5, "run_reports": 5, "workflow": 5,
    "sweep_tasks": 5, "sweeps": 5, "distributed": 5,
    # 6, front ends over the public API
    "sklearn": 6, "cli": 6, "cli_args": 6, "demo": 6, "__main__": 6,
    "": 6,  # the package itself (kanlens/__init__.py)
}

# Module-level imports against the direction that other branches of issue 25 still have; the lead removes each
# entry once its branch is merged and the test passes without it. Pairs (importer, imported).
UPWARD_ALLOWED: set[tuple[str, str]] = set()

# Private names still imported across modules in files other branches own (importer, "module:name"). The lead
# shrinks this after merging; nothing may be added for files without a pending branch.
PRIVATE_ALLOWED: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _level(module: str) -> int | None:
    if module in LEVELS:
        return LEVELS[module]
    parts = module.split(".")
    for n in range(len(parts) - 1, 0, -1):
        key = ".".join(parts[:n]) + ".*"
        if key in LEVELS:
            return LEVELS[key]
    return None


def _resolve(importer: str, node: ast.ImportFrom, is_package: bool) -> str | None:
    """The kanlens module an ``from ... import`` names (relative to the package), or ``None`` if not kanlens."""
    if node.level == 0:
        name = node.module or ""
        if name != "kanlens" and not name.startswith("kanlens."):
            return None
        return name.removeprefix("kanlens").removeprefix(".")
    base = importer.split(".") if importer else []
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(importer: str, node: ast.ImportFrom, is_package: bool) -> list[tuple[str, str | None]]:
    """``(module, name)`` pairs: ``from . import pruning`` imports the module ``pruning`` (name ``None``)."""
    mod = _resolve(importer, node, is_package)
    if mod is None:
        return []
    out = []
    for alias in node.names:
        sub = f"{mod}.{alias.name}" if mod else alias.name
        out.append((sub, None) if sub in MODULES else (mod, alias.name))
    return out


def _module_level_imports(tree: ast.Module):
    """Import nodes executed at import time: top level, inside ``try`` / ``if`` blocks except ``TYPE_CHECKING``."""
    stack = list(tree.body)
    while stack:
        node = stack.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                stack[:0] = node.body + node.orelse
        elif isinstance(node, ast.Try):
            stack[:0] = node.body + [n for h in node.handlers for n in h.body] + node.orelse + node.finalbody


def _parse(module: str) -> ast.Module:
    return _parse_file(MODULES[module])


@functools.cache
def _parse_file(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_every_module_has_a_level():
    missing = [m for m in MODULES if _level(m) is None]
    assert not missing, f"place these modules in LEVELS of tests/test_architecture.py: {missing}"


def test_level_table_matches_design_order():
    # the DESIGN.md chain, as levels: splines, hooks -> layers -> model -> training, pruning, symbolic ->
    # plotting, graph, io, runs -> sklearn, cli
    chain = [["splines", "hooks"], ["layers.spline"], ["model"], ["training", "pruning", "symbolic.fit"],
             ["plotting.edge", "graph", "io", "runs"], ["sklearn", "cli"]]
    levels = [{_level(m) for m in group} for group in chain]
    assert all(len(s) == 1 for s in levels), levels
    flat = [s.pop() for s in levels]
    assert flat == sorted(flat) and len(set(flat)) == len(flat), flat


def _upward_imports() -> list[tuple[str, str]]:
    bad = []
    for module, path in MODULES.items():
        is_package = path.name == "__init__.py"
        own = _level(module)
        for node in _module_level_imports(_parse(module)):
            if isinstance(node, ast.Import):
                targets = [(a.name.removeprefix("kanlens."), None) for a in node.names
                           if a.name.startswith("kanlens.")]
            else:
                targets = _targets(module, node, is_package)
            for target, _ in targets:
                lvl = _level(target)
                if own is not None and lvl is not None and lvl > own and (module, target) not in UPWARD_ALLOWED:
                    bad.append((module, target))
    return sorted(set(bad))


def test_no_module_level_import_of_a_higher_layer():
    bad = _upward_imports()
    assert not bad, ("module-level imports against DESIGN.md's direction (move the import into the function "
                     f"that needs it, or the code to the right layer): {bad}")


def _private_imports() -> list[tuple[str, str]]:
    """``from kanlens.x import _y`` anywhere in a module (also inside functions), and ``x._y`` on a kanlens module
    bound by an import (``from . import formula; formula._helper(...)``)."""
    found = []
    for module, path in MODULES.items():
        is_package = path.name == "__init__.py"
        tree = _parse(module)
        bound: dict[str, str] = {}  # local name -> kanlens module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias, (target, name) in zip(node.names, _targets(module, node, is_package)):
                    if name is None:
                        bound[alias.asname or alias.name] = target
                    elif name.startswith("_") and not name.startswith("__") and target != module:
                        found.append((module, f"{target}:{name}"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("kanlens.") and alias.asname:
                        bound[alias.asname] = alias.name.removeprefix("kanlens.")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append((module, f"{bound[node.value.id]}:{node.attr}"))
    return sorted(set(found))


def test_no_private_name_imported_across_modules():
    found = [pair for pair in _private_imports() if pair not in PRIVATE_ALLOWED]
    assert not found, f"private names used across modules (make them public or move the code): {found}"


def test_allow_lists_have_no_stale_entries():
    """An allow-list entry that no longer matches anything must go (the lists only shrink)."""
    assert not (UPWARD_ALLOWED - set(_upward_imports()))
    assert not (PRIVATE_ALLOWED - set(_private_imports()))


@pytest.mark.parametrize(("source", "expected"), [
    ("from .model import KAN", [("model", "KAN")]),
    ("from . import pruning", [("pruning", None)]),
    ("from ..layers.spline import KANLayer", [("layers.spline", "KANLayer")]),
])
def test_resolver_on_known_imports(source, expected):
    node = ast.parse(source).body[0]
    importer = "plotting.edge" if source.startswith("from ..") else "model"
    assert _targets(importer, node, is_package=False) == expected


def test_checker_catches_an_upward_import(monkeypatch, tmp_path):
    """The checks can fail: a fake low-level module importing the model is reported, and so is a private name."""
    fake = tmp_path / "splines_fake.py"
    fake.write_text("from .model import KAN\nfrom .pruning import _helper\n", encoding="utf-8")
    monkeypatch.setitem(MODULES, "splines_fake", fake)
    monkeypatch.setitem(LEVELS, "splines_fake", 0)
    assert ("splines_fake", "model") in _upward_imports()
    assert ("splines_fake", "pruning:_helper") in _private_imports()
