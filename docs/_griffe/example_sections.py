"""Griffe extension for the docs build: read kanlens's ``Example:`` docstring sections as Google "Examples".

kanlens docstrings use the singular ``Example:`` heading; griffe's Google parser only knows ``Examples:``, and would
otherwise render the ``>>>`` lines as Markdown text (where ``x[0][1]`` looks like a link).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headings to ``Examples:`` in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and "Example:" in obj.docstring.value:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
