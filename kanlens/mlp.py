"""pykan's ``kan.MLP``: a plain multilayer perceptron with pykan's calling conventions, as a baseline next to KANs.

``MLP(width=[2, 5, 1], act="silu", seed=0)``; ``fit(dataset, opt="LBFGS", steps=..., lamb=...)`` returns pykan's
results dict (``train_loss``, ``test_loss``, ``reg``); ``attribute()``, ``connection_cost``, ``swap`` /
``auto_swap``, ``tree()`` and ``plot()`` as in pykan. Initialisation uses a local generator (pykan reseeds torch's
global one).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import as_int, check_choice

__all__ = ["MLP"]

_ACTS = {"silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}


class MLP(nn.Module):
    """pykan's ``MLP``.

    Args:
        width: layer sizes, e.g. ``[2, 5, 1]``.
        act: hidden activation, ``"silu"`` (pykan's) or ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"identity"``.
        save_act: keep the last layer inputs (for :meth:`attribute` / :meth:`plot`).
        seed: seed of the local generator used for the initial weights.
        device: where parameters live.

    Shapes:
        ``forward``: ``(batch, width[0]) -> (batch, width[-1])``.
    """

    def __init__(self, width: list[int], act: str = "silu", save_act: bool = True, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.width = [as_int("width entry", w, 1) for w in width]
        if len(self.width) < 2:
            raise ValueError(f"width needs at least 2 entries, got {width!r}")
        self.depth = len(self.width) - 1
        gen = torch.Generator().manual_seed(as_int("seed", seed))
        self.linears = nn.ModuleList()
        for a, b in zip(self.width[:-1], self.width[1:]):
            lin = nn.Linear(a, b)
            bound = 1 / math.sqrt(a)  # torch's default init, from the local generator
            with torch.no_grad():
                lin.weight.copy_((torch.rand(b, a, generator=gen) * 2 - 1) * bound)
                lin.bias.copy_((torch.rand(b, generator=gen) * 2 - 1) * bound)
            self.linears.append(lin)
        self.act_fun = _ACTS[check_choice("act", act, _ACTS)]()
        self.save_act = save_act
        self.acts: list[torch.Tensor] = []
        self.to(device)

    @property
    def w(self) -> list[torch.Tensor]:
        """The weight matrices ``(out, in)`` of every layer."""
        return [lin.weight for lin in self.linears]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acts = []
        for l, lin in enumerate(self.linears):
            acts.append(x.detach())
            x = lin(x)
            if l < self.depth - 1:
                x = self.act_fun(x)
        if self.save_act:
            self.acts = [*acts, x.detach()]
        return x

    def get_act(self, x: torch.Tensor | dict) -> None:
        """Run ``x`` (or a dataset's ``train_input``) so :meth:`attribute` and :meth:`plot` use it."""
        if isinstance(x, dict):
            x = x["train_input"]
        with torch.no_grad():
            save, self.save_act = self.save_act, True
            self(x)
            self.save_act = save

    def _need_acts(self) -> list[torch.Tensor]:
        if not self.acts:
            raise ValueError("the MLP has seen no data: call model(x) or model.get_act(x) first")
        return self.acts

    @torch.no_grad()
    def attribute(self) -> None:
        """pykan's MLP attribution: ``edge_scores[l] = |w * std(input)| * node_score(out) / std(output)``, node
        scores summed over outgoing edges divided by ``sqrt(width)``; kept as ``node_scores`` / ``edge_scores``."""
        acts = self._need_acts()
        node = torch.ones(self.width[-1], dtype=acts[0].dtype)
        nodes, edges = [node], []
        for l in range(self.depth, 0, -1):
            wa = acts[l - 1].std(0)[None, :] * self.linears[l - 1].weight
            out_std = acts[l].std(0)
            e = wa.abs() * (node / (out_std + 1e-4))[:, None]
            edges.append(e)
            node = e.sum(0) / math.sqrt(self.width[l - 1])
            nodes.append(node)
        self.node_scores, self.edge_scores = nodes[::-1], edges[::-1]

    @property
    def connection_cost(self) -> torch.Tensor:
        """``sum |pos(out) - pos(in)| * |w|`` over layers (pykan's MLP connection cost)."""
        total = torch.zeros(())
        for w in (w.detach() for w in self.w):
            po = (torch.arange(w.shape[0]) + 0.5) / w.shape[0]
            pi = (torch.arange(w.shape[1]) + 0.5) / w.shape[1]
            total = total + ((po[:, None] - pi[None, :]).abs() * w.abs()).sum()
        return total

    @torch.no_grad()
    def swap(self, l: int, i1: int, i2: int) -> None:
        """Exchange hidden nodes ``i1`` and ``i2`` of layer ``l`` (the function is unchanged)."""
        l = as_int("l", l, 1)
        if l >= self.depth:
            raise IndexError(f"l must be a hidden layer (1..{self.depth - 1}), got {l}")
        for t in (self.linears[l - 1].weight, self.linears[l - 1].bias):
            t[[i1, i2]] = t[[i2, i1]]
        w = self.linears[l].weight
        w[:, [i1, i2]] = w[:, [i2, i1]]

    def auto_swap_l(self, l: int) -> None:
        """pykan's ``auto_swap_l``: for each node of hidden layer ``l`` in turn, swap it with the node whose
        position gives the lowest :attr:`connection_cost`."""
        l = as_int("l", l, 1)
        if l >= self.depth:
            raise IndexError(f"l must be a hidden layer (1..{self.depth - 1}), got {l}")
        n = self.width[l]
        for i in range(n):
            costs = []
            for j in range(n):
                self.swap(l, i, j)
                costs.append(float(self.connection_cost))
                self.swap(l, i, j)
            self.swap(l, i, int(np.argmin(costs)))

    def auto_swap(self) -> None:
        """Greedy reordering of hidden nodes to lower :attr:`connection_cost` (:meth:`auto_swap_l` on every
        hidden layer)."""
        for l in range(1, self.depth):
            self.auto_swap_l(l)

    def reg(self, reg_metric: str = "w", lamb_l1: float = 1.0, lamb_entropy: float = 2.0) -> torch.Tensor:
        """pykan's MLP regulariser: L1 + entropy of ``|w|`` (``reg_metric="w"``)."""
        from .regularization import l1_entropy

        check_choice("reg_metric", reg_metric, ("w",))
        return sum((l1_entropy(w.abs(), lamb_l1, lamb_entropy) for w in self.w), torch.zeros(()))

    get_reg = reg

    def fit(self, dataset: dict[str, torch.Tensor], opt: str = "LBFGS", steps: int = 100, log: int = 1,
            lamb: float = 0.0, lamb_l1: float = 1.0, lamb_entropy: float = 2.0, loss_fn=None, lr: float = 1.0,
            batch: int = -1, metrics=None, reg_metric: str = "w", display_metrics=None, **_: Any) -> dict:
        """pykan's ``MLP.fit``: LBFGS (pykan's settings) or Adam; returns ``{"train_loss", "test_loss", "reg",
        <metric names>}`` with ``numpy.float64`` values (RMSE)."""
        from .pykan_utils import LBFGS

        check_choice("opt", opt, ("LBFGS", "Adam"))
        steps = as_int("steps", steps, 0)
        loss_fn = loss_fn or (lambda p, y: torch.mean((p - y) ** 2))
        params = list(self.parameters())
        optimizer = LBFGS(params, lr=lr) if opt == "LBFGS" else torch.optim.Adam(params, lr=lr)
        x, y = dataset["train_input"], dataset["train_label"]
        n = x.shape[0]
        bs = n if batch == -1 or batch > n else as_int("batch", batch, 1)
        gen = torch.Generator().manual_seed(0)
        res: dict[str, list] = {"train_loss": [], "test_loss": [], "reg": []}
        for f in metrics or []:
            res[f.__name__] = []
        for _step in range(steps):
            idx = torch.randperm(n, generator=gen)[:bs]

            def closure(idx: torch.Tensor = idx):
                optimizer.zero_grad()
                total = loss_fn(self(x[idx]), y[idx]) + lamb * self.reg(reg_metric, lamb_l1, lamb_entropy)
                total.backward()
                return total

            if opt == "LBFGS":
                optimizer.step(closure)
            else:
                closure()
                optimizer.step()
            with torch.no_grad():
                res["train_loss"].append(np.float64(torch.sqrt(loss_fn(self(x), y)).item()))
                res["test_loss"].append(np.float64(torch.sqrt(loss_fn(self(dataset["test_input"]),
                                                                      dataset["test_label"])).item()))
                res["reg"].append(np.float64(self.reg(reg_metric, lamb_l1, lamb_entropy).item()))
            for f in metrics or []:
                v = f()
                res[f.__name__].append(np.float64(v.item() if hasattr(v, "item") else v))
        with torch.no_grad():
            self(x)
        return res

    def tree(self, x: torch.Tensor | None = None, in_var=None, style: str = "tree", sym_th: float = 1e-3,
             sep_th: float = 1e-1, skip_sep_test: bool = False, verbose: bool = False):
        """pykan's ``tree`` (see :func:`kanlens.hypothesis.plot_tree`)."""
        from .hypothesis import plot_tree

        x = self._need_acts()[0] if x is None else x
        return plot_tree(self, x, in_var=in_var, style=style, sym_th=sym_th, sep_th=sep_th,
                         skip_sep_test=skip_sep_test, verbose=verbose)

    def plot(self, beta: float = 3, scale: float = 1.0, metric: str = "w"):
        """Draw the network: edges' opacity from ``|w|`` (``"w"``), ``|w| * std(input)`` (``"act"``) or the
        attribution scores (``"fa"``); returns the matplotlib Figure."""
        from .plotting._common import pyplot

        check_choice("metric", metric, ("w", "act", "fa"))
        if metric == "fa":
            self.attribute()
            scores = [e.numpy() for e in self.edge_scores]
        elif metric == "act":
            acts = self._need_acts()
            scores = [(w.detach() * acts[l].std(0)[None, :]).abs().numpy() for l, w in enumerate(self.w)]
        else:
            scores = [w.detach().abs().numpy() for w in self.w]
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(4 * scale, 4 * scale))
        pos = [(np.arange(w) + 0.5) / w for w in self.width]
        for l, s in enumerate(scores):
            alpha = np.tanh(beta * s)
            for j in range(s.shape[0]):
                for i in range(s.shape[1]):
                    ax.plot([pos[l][i], pos[l + 1][j]], [l, l + 1], color="k" if self.w[l][j, i] > 0 else "r",
                            alpha=float(np.clip(alpha[j, i], 0, 1)), lw=2 * scale)
        for l, p in enumerate(pos):
            ax.scatter(p, np.full(len(p), l), s=60 * scale, color="black", zorder=3)
        ax.axis("off")
        return fig
