"""time_budget is a hard limit on process CPU seconds, shared by nested searches; the best formula so far comes back.

The overrun allowed is 10% of the budget plus ``_SLACK`` CPU seconds: the deadline is checked between LBFGS steps,
constant refits and stages, so the last step, refit or ``auto_symbolic`` call in flight when it passes still
finishes (measured: well under a second on these problems).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import sympy
import torch

from kanlens import create_dataset
from kanlens.symbolic.search import Deadline, symbolic_regression

_SLACK = 1.0


def _within_budget(budget: float, fn):
    t0 = time.process_time()
    out = fn()
    spent = time.process_time() - t0
    assert spent <= 1.1 * budget + _SLACK, f"{spent:.1f} CPU s for a budget of {budget} s"
    return out, spent


def _finite_on_test(res, ds) -> bool:
    xs = [sympy.Symbol(f"x{k + 1}") for k in range(ds["test_input"].shape[1])]
    f = sympy.lambdify(xs, res.formula, modules=["scipy", "numpy"])
    with np.errstate(all="ignore"):
        v = np.broadcast_to(f(*ds["test_input"].double().numpy().T), (ds["test_input"].shape[0],))
    return bool(np.isfinite(np.asarray(v, dtype=complex)).all())


def test_deadline_shares_never_outlast_the_parent():
    d = Deadline(10.0)
    half = d.share(0.5)
    assert 4.9 <= half.left() <= 5.0 and half.end <= d.end
    assert d.share(3.0).end == d.end  # a share never ends after its parent
    assert d.within(100.0).end == d.end and d.within(1.0).left() <= 1.0
    assert d.cap(30.0) <= 10.0 and d.cap(None) <= 10.0 and d.cap(0.5) == 0.5
    free = Deadline(None)
    assert math.isinf(free.left()) and not free.expired() and free.share(0.5).end is None and free.cap(3.0) == 3.0
    spent = Deadline(0.0)
    assert spent.expired() and spent.left() == 0.0 and spent.share(0.5).expired()
    for bad in (-1.0, math.nan, "10", True):
        with pytest.raises(ValueError, match="time_budget"):
            Deadline(bad)


@pytest.mark.parametrize(
    "name, f, ranges",
    [
        ("asin(x1/x2)", lambda x: torch.asin(x[:, [0]] / x[:, [1]]), [[-1, 1], [1.5, 3]]),
        ("exp(-x1*x2/(x3*x4))", lambda x: torch.exp(-x[:, [0]] * x[:, [1]] / (x[:, [2]] * x[:, [3]])),
         [[0.5, 2], [0.5, 2], [1, 3], [1, 3]]),
    ],
)
def test_a_small_budget_holds_on_a_hard_target_and_returns_a_formula(name, f, ranges):
    torch.set_num_threads(1)
    ds = create_dataset(f, n_var=len(ranges), ranges=ranges, train_num=500, test_num=500, dtype=torch.float64,
                        seed=0)
    budget = 8.0
    res, spent = _within_budget(budget, lambda: symbolic_regression(ds, time_budget=budget))
    assert abs(res.cpu_seconds - spent) < 0.5  # the result reports the CPU time it used
    assert res.width[0] == len(ranges)  # no width given: the search chose [n, 2n + 1, 1] and pruned it
    assert isinstance(res.formula, sympy.Expr) and res.formula.free_symbols and _finite_on_test(res, ds)
    assert len(res.table) >= 1 and math.isfinite(res.table[res.table.chosen].test_nmse)


def test_a_shared_deadline_bounds_a_nested_search():
    """A caller's Deadline passed as time_budget: the nested search stops at it (no minimum time of its own)."""
    torch.set_num_threads(1)
    ds = create_dataset(lambda x: torch.asin(x[:, [0]] / x[:, [1]]), n_var=2, ranges=[[-1, 1], [1.5, 3]],
                        train_num=300, test_num=300, dtype=torch.float64, seed=0)
    outer = Deadline(6.0)
    res, _ = _within_budget(6.0, lambda: symbolic_regression(ds, [2, 5, 1], time_budget=outer.share(0.5)))
    assert res.cpu_seconds <= 1.1 * 3.0 + _SLACK and not outer.expired()


def test_legacy_absolute_deadlines_and_the_old_module_path():
    """``symbolic_regression`` keeps its former import path (kanlens.symbolic.pipeline) and deadlines accept the
    former convention (an absolute time.process_time value)."""
    from kanlens.symbolic import pipeline

    assert pipeline.symbolic_regression is symbolic_regression
    end = time.process_time() + 5
    d = Deadline.coerce(end)
    assert d.end == end and 4.0 < d.left() <= 5.0
    assert Deadline.coerce(None) is None and Deadline.coerce(d) is d
