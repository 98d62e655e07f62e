"""A formula no single KAN edge tree writes: f(x1, x2) = x1*sin(x2) + x2*cos(x1), recovered by the low-rank test.

The sum of two cross products is neither a sum nor a product of one-input parts, and no pair of inputs moves
together, so the separability and symmetry tests pass it by. But sampled on a grid the trained network is a
matrix of rank 2: ``symbolic_regression`` matches library functions to its singular subspaces (``x1``, ``cos(x1)``;
``sin(x2)``, ``x2``) and fits the coefficients of their products on the data (see ``kanlens.symbolic.lowrank``).

Saves ``07_spectrum.png`` (relative singular values on the grid: of ``f``, two and then rounding; of the returned
network after ``auto_symbolic``, two and then a 10x drop) and ``07_network.png`` (that network) into ``--out``.

Run:  python examples/07_sum_of_products.py --out docs/images/   (about 40 s on a laptop CPU)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import sympy
import torch

from kanlens import create_dataset, symbolic_regression
from kanlens.symbolic.lowrank import grid_spectrum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs (default: docs/images)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    t0 = time.process_time()

    def f(x: torch.Tensor) -> torch.Tensor:
        return x[:, [0]] * torch.sin(x[:, [1]]) + x[:, [1]] * torch.cos(x[:, [0]])

    dataset = create_dataset(f, n_var=2, ranges=[-2, 2], train_num=1000, test_num=1000, seed=0)
    result = symbolic_regression(dataset, [2, 5, 1], time_budget=40)
    chosen = result.table[result.table.chosen]
    x1, x2 = sympy.symbols("x1 x2")
    truth = x1 * sympy.sin(x2) + x2 * sympy.cos(x1)
    print(result.table)
    print(f"formula: {result.formula}   (from the stage: {chosen.source})")
    print(f"exact: {result.exact}; sympy-equal to the truth: {sympy.simplify(result.formula - truth) == 0}")

    # what the low-rank test saw: the network (trained on y) on a 48 x 48 grid of the inputs' quantiles
    model = result.model
    x = dataset["train_input"].numpy().astype(np.float64)
    if result.target_transform == "identity":
        def predict(v: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.as_tensor(v, dtype=model.dtype))[:, 0].double().numpy()

        _, _, _, s_model, _ = grid_spectrum(predict, x)
    else:
        s_model = None
    _, _, _, s_true, _ = grid_spectrum(lambda v: f(torch.as_tensor(v))[:, 0].numpy(), x)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(np.arange(1, 13), s_true[:12] / s_true[0], "o-", label="f itself")
    if s_model is not None:
        ax.semilogy(np.arange(1, 13), s_model[:12] / s_model[0], "s--", label="the network, after auto_symbolic")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("relative singular value")
    ax.set_title("x1*sin(x2) + x2*cos(x1) on a grid: rank 2")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "07_spectrum.png", dpi=100)
    plt.close(fig)
    model.plot(dataset["train_input"], in_vars=["$x_1$", "$x_2$"], title=f"network {model.width}",
               path=out / "07_network.png")
    print(f"wrote {out / '07_spectrum.png'} and {out / '07_network.png'}; {time.process_time() - t0:.0f} CPU s")


if __name__ == "__main__":
    main()
