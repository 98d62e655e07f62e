"""The float64 LBFGS trajectory of fit() is pinned: parameters and losses after a few steps equal the values recorded
at commit 25d3dec (before the fit-loop speed work of issue 26) to 1e-10.

Speed work on the evaluation (kernels, caches, line-search bookkeeping) must not change what LBFGS does. The
reference was written by running this file as a script (``python tests/test_trajectory.py --write``) at that commit;
do not regenerate it to make a change pass.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys

import pytest
import torch

from kanlens import KAN, create_dataset

REFERENCE = pathlib.Path(__file__).parent / "data" / "lbfgs_float64_reference.json"

# name -> (width, train_num, steps, fit options): the fused sparsity objective on one and two spline paths, the
# autograd objective (lamb = 0, b_spline_basis), and mini-batches (a new data tensor at every step).
CASES = {
    "canonical": ([2, 5, 1], 1000, 12, {"lamb": 1e-3}),
    "deep": ([3, 4, 9, 2], 200, 8, {"lamb": 1e-2}),
    "no_reg": ([2, 5, 1], 300, 8, {}),
    "batch": ([2, 3, 2], 300, 8, {"lamb": 1e-3, "batch": 100}),
}


def _target(x: torch.Tensor) -> torch.Tensor:
    y = torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)
    for i in range(2, x.shape[1]):
        y = y + torch.cos(2 * x[:, [i]]) * x[:, [0]]
    return y


def _run(name: str) -> dict[str, list[float]]:
    width, num, steps, opts = CASES[name]

    def f(x):
        return _target(x).repeat(1, width[-1]) * torch.arange(1, width[-1] + 1, dtype=x.dtype)

    ds = create_dataset(f, n_var=width[0], train_num=num, test_num=100, seed=1, dtype=torch.float64)
    model = KAN(width=width, grid=5, k=3, seed=0, dtype=torch.float64)
    h = model.fit(ds, opt="LBFGS", steps=steps, progress=False, **opts)
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])
    return {"params": params.tolist(), "train_loss": list(h.train_loss), "test_loss": list(h.test_loss)}


@pytest.mark.parametrize("name", list(CASES))
def test_float64_lbfgs_trajectory_is_unchanged(name):
    ref = json.loads(REFERENCE.read_text())[name]
    got = _run(name)
    assert len(got["train_loss"]) == len(ref["train_loss"]) == CASES[name][2]
    for key in ("train_loss", "test_loss"):
        for a, b in zip(got[key], ref[key]):
            assert a == pytest.approx(b, rel=1e-10, abs=1e-14), key
    p, q = torch.tensor(got["params"], dtype=torch.float64), torch.tensor(ref["params"], dtype=torch.float64)
    assert p.shape == q.shape and math.isfinite(float(p.abs().max()))
    torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-10)


if __name__ == "__main__" and "--write" in sys.argv:
    torch.set_num_threads(1)
    REFERENCE.write_text(json.dumps({name: _run(name) for name in CASES}, indent=0) + "\n")


def test_lbfgs_step_reuses_the_accepted_point_without_changing_the_fit(monkeypatch):
    """An LBFGS step starts at the point the previous step accepted; the fused objective is not evaluated there
    again (remembered bit for bit), and the fit is the same as with the memo cleared at every step (a callback)."""
    import kanlens.training as training

    calls = {"closure": 0, "objective": 0}
    closure, objective = training._Trainer.closure, training._Trainer._fused_objective

    def counted_closure(self):
        calls["closure"] += 1
        return closure(self)

    def counted_objective(self, stack):
        calls["objective"] += 1
        return objective(self, stack)

    monkeypatch.setattr(training._Trainer, "closure", counted_closure)
    monkeypatch.setattr(training._Trainer, "_fused_objective", counted_objective)
    ds = create_dataset(_target, n_var=2, train_num=200, test_num=50, seed=1, dtype=torch.float64)
    fits = []
    for callbacks in ([], [lambda step, model, history: None]):
        calls.update(closure=0, objective=0)
        model = KAN(width=[2, 3, 1], seed=0, dtype=torch.float64)
        h = model.fit(ds, opt="LBFGS", steps=6, lamb=1e-3, update_grid=False, progress=False, callbacks=callbacks)
        fits.append((dict(calls), h.train_loss, torch.cat([p.detach().reshape(-1) for p in model.parameters()])))
    (memo_calls, loss_a, params_a), (plain_calls, loss_b, params_b) = fits
    assert plain_calls["closure"] == plain_calls["objective"] > 6
    assert memo_calls["closure"] == plain_calls["closure"]
    assert memo_calls["objective"] <= memo_calls["closure"] - 3  # most of the 5 later steps start from the memo
    assert loss_a == loss_b and torch.equal(params_a, params_b)
