"""Sparsify, prune, retrain: pykan's tutorial f(x1, x2) = exp(sin(pi*x1) + x2^2) and an irrelevant-input example.

1. Fit ``KAN([2, 5, 1])`` with the sparsity penalty (``lamb``), ``prune()`` it to a physically smaller network,
   and retrain it. Removed edges and nodes have their mean folded into biases, so the test RMSE right after pruning
   stays where it was (pykan 0.2.8 drops that constant and its RMSE jumps from ~0.01 to ~1.3).
2. Fit ``KAN([3, 3, 1])`` on ``x1 * x2`` with an irrelevant ``x3``, read ``feature_score`` and ``prune_input``.

Prints widths, RMSEs and scores; saves ``03_before_prune.png``, ``03_pruned.png``, ``03_retrained.png`` when
:func:`kanlens.plotting.plot_kan` is available, and ``03_pruned.graphml`` (networkx).

Run:  python examples/03_prune_retrain.py --out docs/images/   (about a minute on a laptop CPU)
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

import torch

from kanlens import KAN, create_dataset
from kanlens.graph import write_graphml


def rmse(model: KAN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.sqrt(torch.mean((model(x) - y) ** 2)))


def plotter():
    """``kanlens.plotting.plot_kan`` if it exists (and matplotlib imports), else ``None``."""
    try:
        return importlib.import_module("kanlens.plotting").plot_kan
    except (ImportError, AttributeError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for PNG / GraphML files")
    parser.add_argument("--steps", type=int, default=50, help="LBFGS steps per training stage")
    parser.add_argument("--lamb", type=float, default=0.01, help="sparsity weight of the first fit")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_kan = plotter()

    # ---------------------------------------------------------------- 1. sparsify -> prune -> retrain
    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)

    ds = create_dataset(f, n_var=2, seed=0)
    xt, yt = ds["test_input"], ds["test_label"]
    model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0)
    t0 = time.perf_counter()
    model.fit(ds, opt="LBFGS", steps=args.steps, lamb=args.lamb, progress=False)
    print(f"fit with lamb={args.lamb:g}: {time.perf_counter() - t0:.1f} s, widths {model.width}, "
          f"test RMSE {rmse(model, xt, yt):.3e}")
    scores = model.node_scores()
    print("node scores:", [[round(v, 4) for v in s.tolist()] for s in scores])
    if plot_kan is not None:
        plot_kan(model, title="after sparse training", path=out / "03_before_prune.png")

    pruned = model.prune()
    print(f"prune():  widths {pruned.width}, test RMSE right after prune {rmse(pruned, xt, yt):.3e}")
    G = pruned.to_networkx()
    name = {n: d["name"] for n, d in G.nodes(data=True)}
    edges = ", ".join(f"{name[u]}->{name[v]} ({d['score']:.3f})" for u, v, d in G.edges(data=True))
    print(f"graph: {G.number_of_nodes()} nodes, {G.number_of_edges()} edges: {edges}")
    write_graphml(pruned, out / "03_pruned.graphml")
    if plot_kan is not None:
        plot_kan(pruned, title="pruned", path=out / "03_pruned.png")

    t0 = time.perf_counter()
    pruned.fit(ds, opt="LBFGS", steps=args.steps, progress=False)
    print(f"retrain:  {time.perf_counter() - t0:.1f} s, widths {pruned.width}, test RMSE {rmse(pruned, xt, yt):.3e}")
    if plot_kan is not None:
        plot_kan(pruned, title="pruned and retrained", path=out / "03_retrained.png")

    # ---------------------------------------------------------------- 2. an irrelevant input
    def g(x: torch.Tensor) -> torch.Tensor:
        return x[:, [0]] * x[:, [1]]

    ds3 = create_dataset(g, n_var=3, train_num=200, test_num=200, seed=0)
    m3 = KAN(width=[3, 3, 1], seed=0, input_names=["x1", "x2", "x3"])
    m3.fit(ds3, opt="LBFGS", steps=20, lamb=0.01, reg_metric="std_n", progress=False)
    print("x1*x2 with irrelevant x3: feature_score", [round(v, 4) for v in m3.feature_score().tolist()])
    small = m3.prune_input()
    keep = small.config.input_ids
    print(f"prune_input keeps {small.config.input_names} (ids {keep}); test RMSE "
          f"{rmse(m3, ds3['test_input'], ds3['test_label']):.3e} -> "
          f"{rmse(small, ds3['test_input'][:, keep], ds3['test_label']):.3e}")
    print(f"files in {out}/")


if __name__ == "__main__":
    main()
