"""Shared helper of the benchmark scripts: write a named section into a markdown file."""

from __future__ import annotations

import os
from pathlib import Path


def write_section(path: str, name: str, text: str) -> None:
    """Replace (or append) the block between ``<!-- name -->`` markers in a markdown file, atomically."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    old = Path(path).read_text() if os.path.exists(path) else ""
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) + 1 :]
    else:
        new = old + ("\n" if old and not old.endswith("\n") else "") + block
    tmp = f"{path}.tmp"
    Path(tmp).write_text(new)
    os.replace(tmp, path)
