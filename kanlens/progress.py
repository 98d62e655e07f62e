"""Progress output fit for both terminals and logs.

A carriage-return progress bar (tqdm) is only drawn where something redraws it: a terminal or a notebook. When
stderr is a file or a pipe (``make demo > log``, CI, a batch job), training and the workflow report one line per
stage instead (:func:`print_progress_line`, on the stream tqdm would have drawn on), so a log holds readable
lines, not kilobytes of ``\\r`` redraws. Only ``progress=True`` (or the command line) asks for either.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["live_progress", "print_progress_line"]


def live_progress(stream: object = None) -> bool:
    """Whether a redrawn progress bar is welcome: ``stream`` (default ``sys.stderr``) is a terminal, or a Jupyter
    kernel is running (tqdm then draws a widget)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed stream
        tty = False
    return tty or "ipykernel" in sys.modules


def print_progress_line(line: str, stream: TextIO | None = None) -> None:
    """Write one finished progress line (no carriage return) to ``stream`` (default ``sys.stderr``) and flush."""
    stream = sys.stderr if stream is None else stream
    stream.write(line.rstrip("\n") + "\n")
    stream.flush()
