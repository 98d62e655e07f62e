"""The docs: every public name is in the API reference, nav and links point at real files, the strict build passes."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import kanlens

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
_DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)


def _resolve(path: str) -> object:
    """Import ``a.b.c.Name`` (the longest importable module prefix, then attributes)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def _directives() -> dict[str, str]:
    """``{dotted path: page}`` of every mkdocstrings directive in docs/api."""
    found = {}
    for page in sorted(API.glob("*.md")):
        for path in _DIRECTIVE.findall(page.read_text()):
            found[path] = page.name
    return found


def test_every_directive_resolves() -> None:
    bad = []
    for path, page in _directives().items():
        try:
            _resolve(path)
        except (ImportError, AttributeError) as e:
            bad.append(f"{page}: {path} ({e})")
    assert not bad, bad


def test_every_public_name_is_in_the_api_reference() -> None:
    """Each name of ``kanlens.__all__`` is rendered by a directive pointing at the very same object."""
    documented = [_resolve(p) for p in _directives()]
    ids = {id(o) for o in documented}
    text = "\n".join(p.read_text() for p in API.glob("*.md"))
    missing = []
    for name in kanlens.__all__:
        obj = getattr(kanlens, name)
        if isinstance(obj, (str, int, float)):  # __version__
            if f"kanlens.{name}" not in text:
                missing.append(name)
            continue
        if id(obj) in ids:
            continue
        if isinstance(obj, type) and any(isinstance(d, type) and d is obj for d in documented):
            continue
        if isinstance(obj, types.ModuleType) and obj.__name__ in _directives():
            continue
        missing.append(name)
    assert not missing, f"public names without an API directive in docs/api/*.md: {missing}"


def _nav_files(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [f for item in nav for f in _nav_files(item)]
    if isinstance(nav, dict):
        return [f for v in nav.values() for f in _nav_files(v)]
    return []


def _mkdocs_nav() -> list[str]:
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return _nav_files(cfg["nav"])


def test_nav_pages_exist_and_api_pages_are_in_nav() -> None:
    nav = _mkdocs_nav()
    # docs/benchmarks.md belongs to the lead; everything else must be here
    missing = [f for f in nav if not (DOCS / f).is_file() and f != "benchmarks.md"]
    assert not missing, missing
    assert {f"api/{p.name}" for p in API.glob("*.md")} <= set(nav)


def test_local_links_and_images_exist() -> None:
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    broken = []
    for page in DOCS.rglob("*.md"):
        for target in link.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if target == "benchmarks.md" or target.endswith("/benchmarks.md"):
                continue  # the lead's page, checked by the strict build
            if not (page.parent / target).resolve().exists():
                broken.append(f"{page.relative_to(DOCS)} -> {target}")
    assert not broken, broken


def test_gallery_covers_every_example() -> None:
    gallery = (DOCS / "gallery.md").read_text()
    for script in sorted((ROOT / "examples").glob("[0-9][0-9]_*.py")):
        assert f"examples/{script.name}" in gallery, f"{script.name} is not in docs/gallery.md"


def test_cli_page_lists_every_fit_option() -> None:
    from kanlens.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    fit = sub.choices["fit"]
    page = (DOCS / "cli.md").read_text()
    options = [s for a in fit._actions for s in a.option_strings if s.startswith("--") and s != "--help"]
    missing = [o for o in options if o not in page]
    assert not missing, f"docs/cli.md does not mention {missing}"


@pytest.mark.slow
def test_mkdocs_strict_build(tmp_path: Path) -> None:
    """``mkdocs build --strict`` (needs mkdocs-material and mkdocstrings[python], the ``docs`` extra)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    assert (DOCS / "benchmarks.md").is_file(), "docs/benchmarks.md (the lead's page, in the nav) is missing"
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    r = subprocess.run([mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "api" / "model" / "index.html").is_file()
