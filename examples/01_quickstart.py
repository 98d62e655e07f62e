"""Quickstart: fit a KAN to f(x1, x2) = exp(sin(pi*x1) + x2^2), prune it and read the formula off its edges.

The pykan workflow with kanlens's names: ``create_dataset`` -> ``KAN`` -> ``fit`` (with the sparsity penalty
``lamb``) -> ``prune`` -> ``fit`` -> ``auto_symbolic`` -> ``fit`` -> ``symbolic_formula``; finally the formula's
constants are refitted jointly and snapped to simple values (``3.14159 -> pi``). The one-call version of all this is
:func:`kanlens.symbolic_regression` (what ``kanlens fit`` and ``make demo`` run).

Saves ``01_trained.png``, ``01_pruned.png`` and ``01_symbolic.png`` (network diagrams) into ``--out``.

Run:  python examples/01_quickstart.py --out docs/images/   (about 30 s on a laptop CPU)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from kanlens import KAN, create_dataset, ex_round
from kanlens.symbolic.formula import noise_floor, snap_constants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs (default: docs/images)")
    parser.add_argument("--steps", type=int, default=50, help="LBFGS steps per training stage")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)

    dataset = create_dataset(f, n_var=2, seed=0)  # 1000 train / 1000 test points on [-1, 1]^2
    x = dataset["train_input"]
    names = ["$x_1$", "$x_2$"]

    # 1. train with a little sparsity so unneeded edges fade
    model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0)
    history = model.fit(dataset, opt="LBFGS", steps=args.steps, lamb=0.01, progress=False)
    print(f"trained [2, 5, 1]:  test RMSE {history.test_loss[-1]:.2e}")
    model.plot(x, in_vars=names, title="trained [2, 5, 1]", path=out / "01_trained.png")

    # 2. prune to a physically smaller network, then retrain it
    model = model.prune()
    history = model.fit(dataset, opt="LBFGS", steps=args.steps, progress=False)
    print(f"pruned {model.width}:   test RMSE {history.test_loss[-1]:.2e}")
    model.plot(x, in_vars=names, title=f"pruned {model.width}", path=out / "01_pruned.png")

    # 3. replace every spline by its best library function and fit the remaining constants
    table = model.auto_symbolic(lib=["x", "x^2", "exp", "sin", "tanh"])
    print(table)
    history = model.fit(dataset, opt="LBFGS", steps=args.steps, update_grid=False, progress=False)
    print(f"symbolic KAN:       test RMSE {history.test_loss[-1]:.2e}")
    model.plot(x, in_vars=names, title="after auto_symbolic", path=out / "01_symbolic.png")
    print("formula (KAN constants):", ex_round(model.symbolic_formula()[0][0], 4))

    # 4. refit all constants of the formula jointly and snap them to simple values while the fit does not get
    #    worse than float32 rounding of the labels allows
    y = dataset["train_label"]
    floor = noise_floor(y.double().numpy(), y.dtype)
    snapped = snap_constants(model.symbolic_formula()[0][0], model.symbolic_formula()[1], x, y, floor=floor)
    print("formula (snapped):      ", snapped.expr)
    print(f"done in {time.perf_counter() - t0:.1f} s; images in {out}/")


if __name__ == "__main__":
    main()
