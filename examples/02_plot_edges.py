"""Look inside a KAN: the canonical tutorial f(x1, x2) = exp(sin(pi*x1) + x2^2), plotted at every stage.

Trains ``KAN([2, 5, 1])`` with a little sparsity, then saves PNGs of

* ``02_kan_trained.png``  the network with every learned edge function (faded by importance),
* ``02_layer0.png``       all 10 edge functions of the first layer, with values,
* ``02_edge_sin.png``     the x1 edge in detail: spline, knots, data histogram, best symbolic candidates,
* ``02_history.png``      training curves,
* ``02_kan_pruned.png``   the network after ``prune()`` and a short retraining (needs :mod:`kanlens.pruning`),
* ``02_kan_symbolic.png`` after ``auto_symbolic`` (red edges, with names; needs :mod:`kanlens.symbolic`).

Run:  python examples/02_plot_edges.py --out docs/images/   (about a minute on a laptop CPU)
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch

from kanlens import KAN, create_dataset
from kanlens.plotting import plot_edge, plot_history, plot_kan, plot_layer


def timed(label: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label:<28s} {time.perf_counter() - t0:6.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs (default: docs/images)")
    parser.add_argument("--steps", type=int, default=50, help="LBFGS steps per training stage")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)

    dataset = create_dataset(f, n_var=2, seed=0)
    x = dataset["train_input"]
    model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0)
    history = timed("fit (LBFGS, lamb=0.001)", model.fit, dataset, opt="LBFGS", steps=args.steps, lamb=0.001,
                    progress=False)
    print(f"test RMSE after training:    {history.test_loss[-1]:.2e}")

    names = ["$x_1$", "$x_2$"]
    timed("plot_kan (trained)", plot_kan, model, x, in_vars=names, title="trained [2, 5, 1]",
          path=out / "02_kan_trained.png")
    timed("plot_layer 0", plot_layer, model, 0, x, in_vars=names, path=out / "02_layer0.png")
    # the x1 edge that matters most: largest spread over the data
    j = int(model.edge_activations(x)[0][:, :, 0].std(0).argmax())
    timed("plot_edge (x1 edge)", plot_edge, model, 0, 0, j, x, in_vars=names, path=out / "02_edge_sin.png")
    stages = [history]

    if importlib.util.find_spec("kanlens.pruning") is not None:
        model = timed("prune", model.prune, x=x)
        print(f"pruned width:                {model.width}")
        stages.append(timed("fit pruned (LBFGS)", model.fit, dataset, opt="LBFGS", steps=args.steps, progress=False))
        print(f"test RMSE after pruning:     {stages[-1].test_loss[-1]:.2e}")
        timed("plot_kan (pruned)", plot_kan, model, x, in_vars=names, title="pruned and retrained",
              path=out / "02_kan_pruned.png")
    timed("plot_history", plot_history, stages, title="train / prune + retrain", path=out / "02_history.png")

    if importlib.util.find_spec("kanlens.symbolic.fit") is not None:
        table = timed("auto_symbolic", model.auto_symbolic, lib=["x", "x^2", "exp", "sin"], x=x)
        print(table)
        timed("plot_kan (symbolic)", plot_kan, model, x, in_vars=names, title="after auto_symbolic",
              path=out / "02_kan_symbolic.png")
        if importlib.util.find_spec("kanlens.symbolic.formula") is not None:
            try:
                print("formula:", model.symbolic_formula(round=3)[0][0])
            except ValueError as e:  # some edges stayed splines
                print("no closed formula:", e)
    print(f"images written to {out}/")


if __name__ == "__main__":
    main()
