"""Checks and parsers of the ``kanlens`` command's flags: each bad value is one :class:`~kanlens.runs.UsageError`
naming the flag (exit code 2), raised before any work starts.
"""

from __future__ import annotations

import argparse
import math

import torch

from ._checks import did_you_mean
from .runs import UsageError

__all__ = [
    "MAX_BUDGET",
    "MAX_GRID",
    "MAX_K",
    "MAX_LAMB",
    "MAX_ROUND",
    "MAX_SAMPLES",
    "MAX_STEPS",
    "MAX_WIDTH",
    "MAX_WORKERS",
    "SEED_RANGE",
    "check_limits",
    "parse_device",
    "parse_edge",
    "parse_lib",
    "parse_ranges",
    "parse_width",
    "positive_seconds",
]

# generous upper bounds of numeric flags: beyond them a run would overflow float32 or exhaust memory (a one-line
# usage error up front instead of an OverflowError / allocator traceback minutes later)
MAX_GRID = 1000  # --grid and --refine
MAX_K = 10  # spline order; k = 20 already gives NaN losses in float32
MAX_STEPS = 1_000_000
MAX_SAMPLES = 10_000_000  # --train-num, --test-num
MAX_WIDTH = 10_000  # nodes per layer
MAX_LAMB = 1e30  # the penalty is computed in float32 (max ~3.4e38)
MAX_ROUND = 50  # decimals of `kanlens formula --round`
SEED_RANGE = (-(2**63), 2**63 - 1)  # torch.Generator.manual_seed
MAX_WORKERS = 1024  # --workers of `kanlens sweep` (local worker processes)
MAX_BUDGET = 1e7  # --time-budget seconds (~4 months)



def parse_width(text: str) -> list[int]:
    """``"2,5,1"`` -> ``[2, 5, 1]``."""
    try:
        width = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"--width must be comma-separated integers such as 2,5,1, got {text!r}") from None
    if len(width) < 2 or any(w < 1 for w in width):
        raise UsageError(f"--width needs at least two positive integers such as 2,5,1, got {text!r}")
    if max(width) > MAX_WIDTH:
        raise UsageError(f"--width: at most {MAX_WIDTH} nodes per layer, got {max(width)}")
    return width


def parse_ranges(text: str | None, n_var: int) -> list[list[float]]:
    """``"-1,1"`` (all variables) or ``"-1,1;0,2"`` (one pair per variable) -> ``[[low, high], ...]``."""
    if text is None:
        return [[-1.0, 1.0]] * n_var
    try:
        pairs = [[float(v) for v in part.strip().strip("[]()").split(",")] for part in text.split(";")]
    except ValueError:
        raise UsageError(f"--ranges must look like -1,1 or -1,1;0,2 (one pair per variable), got {text!r}") from None
    if len(pairs) == 1:
        pairs = pairs * n_var
    if len(pairs) != n_var or any(len(p) != 2 for p in pairs):
        raise UsageError(f"--ranges needs one low,high pair or {n_var} pairs separated by ';', got {text!r}")
    for lo, hi in pairs:
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise UsageError(f"--ranges: every range needs finite low < high, got {lo},{hi}")
    return pairs


def parse_edge(text: str) -> tuple[int, int, int]:
    try:
        l, i, j = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--edge must be three integers l,i,j (layer, input, output node), got {text!r}") from None
    return l, i, j


def check_limits(*limits: tuple[str, float, float, float]) -> None:
    """``(flag, value, low, high)``: a one-line usage error for a value outside ``[low, high]``."""
    for flag, value, low, high in limits:
        if not value >= low:  # also NaN
            raise UsageError(f"{flag} must be >= {low}, got {value}")
        if value > high:
            raise UsageError(f"{flag} must be <= {high}, got {value}")


def parse_device(text: str) -> str:
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device: unknown device {text!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (use --device cpu)")
    return str(dev)


def parse_lib(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from .symbolic.library import default_library

    names = [v.strip() for v in text.split(",") if v.strip()]
    lib = default_library()
    for n in names:
        if n not in lib:
            raise UsageError(f"--lib: unknown function {n!r}{did_you_mean(n, list(lib))}")
    return names


def positive_seconds(text: str) -> float:
    """argparse type of ``--time-budget``: a positive, finite number of CPU seconds (at most ``MAX_BUDGET``)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(v) and 0 < v <= MAX_BUDGET):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds (at most {MAX_BUDGET:g}), got {text!r}")
    return v
