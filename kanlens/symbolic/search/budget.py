"""The CPU-time budget of a search: one :class:`Deadline` shared by the search and every search it starts.

CPU seconds are the *process's* CPU time (:func:`time.process_time`: all threads of this process, user and system
time). On a machine shared by more processes than cores this keeps the work done per budget the same as on a quiet
machine (wall time would not); with several torch threads a budget is spent correspondingly faster. Inside
:func:`cpu_clock` another clock counts instead: a sweep task on a Dask worker counts its own thread's CPU time
(:func:`time.thread_time`), as the worker's own threads (heartbeats, monitoring, transfers) would otherwise spend
the search's budget.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Callable, Iterator

__all__ = ["Deadline", "cpu_clock"]

_CLOCK: contextvars.ContextVar[Callable[[], float]] = contextvars.ContextVar("kanlens_budget_clock",
                                                                              default=time.process_time)


@contextlib.contextmanager
def cpu_clock(clock: Callable[[], float]) -> Iterator[None]:
    """Deadlines made in this context (this thread) measure CPU seconds with ``clock`` (e.g. :func:`time.thread_time`
    when all the search's work runs in this thread: one torch thread)."""
    token = _CLOCK.set(clock)
    try:
        yield
    finally:
        _CLOCK.reset(token)


class Deadline:
    """A point in process CPU time after which a search stops and returns its best formula so far.

    Nested searches (the parts of a separable function, the reduced problem of a pair symmetry) get a
    :meth:`share` of what is left: a child never ends after its parent, and no child brings a minimum of its own,
    so budgets do not stack.

    Args:
        seconds: CPU seconds from now; ``None``: no limit.

    Example:
        >>> d = Deadline(10.0)
        >>> half = d.share(0.5)          # at most 5 CPU seconds, never past d
        >>> half.left() <= d.left()
        True
    """

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or math.isnan(seconds) or seconds < 0):
            raise ValueError(f"time_budget must be a non-negative number of CPU seconds or None, got {seconds!r}")
        self.clock = _CLOCK.get()  # kept: a deadline and its children count on the clock they were made with
        self.start = self.clock()
        self.end = None if seconds is None else self.start + float(seconds)

    @classmethod
    def coerce(cls, value: Deadline | float | None) -> Deadline | None:
        """A :class:`Deadline` from a Deadline, ``None``, or (the former convention) an absolute
        :func:`time.process_time` value."""
        if value is None or isinstance(value, Deadline):
            return value
        d = cls(None)
        d.end = float(value)
        return d

    @property
    def limited(self) -> bool:
        """Whether there is a limit at all."""
        return self.end is not None

    def left(self) -> float:
        """CPU seconds left (``inf`` without a limit, never negative)."""
        return math.inf if self.end is None else max(0.0, self.end - self.clock())

    def expired(self) -> bool:
        """Whether the budget is spent."""
        return self.end is not None and self.clock() >= self.end

    def spent(self) -> float:
        """CPU seconds since this deadline was made."""
        return self.clock() - self.start

    def share(self, fraction: float) -> Deadline:
        """A child deadline at ``fraction`` of the time left (the whole rest for 1); unlimited stays unlimited."""
        child = self._child(None)
        if self.end is not None:
            child.end = min(self.end, child.start + max(0.0, fraction) * self.left())
        return child

    def within(self, seconds: float) -> Deadline:
        """A child deadline ``seconds`` from now, or at this one's end if that comes first."""
        child = self._child(seconds)
        if self.end is not None:
            child.end = min(self.end, child.end)
        return child

    def _child(self, seconds: float | None) -> Deadline:
        token = _CLOCK.set(self.clock)
        try:
            return Deadline(seconds)
        finally:
            _CLOCK.reset(token)

    def cap(self, seconds: float | None) -> float | None:
        """``seconds`` limited to the time left (``None`` stays ``None`` without a limit)."""
        left = self.left()
        if seconds is None:
            return None if math.isinf(left) else left
        return min(seconds, left)

    def callback(self):
        """A ``fit`` callback that stops training once the budget is spent."""
        return lambda step, model, history: self.expired()

    def __repr__(self) -> str:
        return f"Deadline(left={self.left():.3g} CPU s)"
