"""Sparsity regularisation (pure functions): sample-based L1 + entropy on edge activations, coefficient penalties."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["REG_METRICS", "coef_penalty", "edge_magnitude", "l1_entropy", "total_reg"]

REG_METRICS = ("abs", "std_n")


def edge_magnitude(edges: torch.Tensor, x: torch.Tensor | None = None, metric: str = "abs") -> torch.Tensor:
    """Per-edge magnitude ``(out, in)`` from activations ``(batch, out, in)``.

    ``"abs"`` is the KAN paper's ``mean_x |phi(x)|``; ``"std_n"`` is pykan 0.2's ``std(phi) / (std(x) + 0.1)``
    (needs the layer input ``x`` ``(batch, in)``).
    """
    if metric == "abs":
        return edges.abs().mean(0)
    if metric == "std_n":
        if x is None:
            raise ValueError("metric 'std_n' needs the layer inputs x")
        return edges.std(0) / (x.std(0) + 0.1)
    raise ValueError(f"unknown reg_metric {metric!r}; choose one of {REG_METRICS}")


def l1_entropy(mag: torch.Tensor, lamb_l1: float = 1.0, lamb_entropy: float = 2.0) -> torch.Tensor:
    """``lamb_l1 * sum(mag) + lamb_entropy * (row entropy + column entropy)`` of an ``(out, in)`` magnitude."""
    l1 = mag.sum()
    p_row = mag / (mag.sum(1, keepdim=True) + 1.0)
    p_col = mag / (mag.sum(0, keepdim=True) + 1.0)
    ent_row = -(p_row * torch.log2(p_row + 1e-4)).sum(1).mean()
    ent_col = -(p_col * torch.log2(p_col + 1e-4)).sum(0).mean()
    return lamb_l1 * l1 + lamb_entropy * (ent_row + ent_col)


def coef_penalty(coef: torch.Tensor, lamb_coef: float = 0.0, lamb_coefdiff: float = 0.0) -> torch.Tensor:
    """``lamb_coef * mean|c| + lamb_coefdiff * mean|diff(c)|`` summed over edges of coefficients ``(out, in, nb)``."""
    total = coef.new_zeros(())
    if lamb_coef:
        total = total + lamb_coef * coef.abs().mean(-1).sum()
    if lamb_coefdiff:
        total = total + lamb_coefdiff * coef.diff(dim=-1).abs().mean(-1).sum()
    return total


def total_reg(
    edges: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    coefs: Sequence[torch.Tensor],
    *,
    lamb_l1: float = 1.0,
    lamb_entropy: float = 2.0,
    lamb_coef: float = 0.0,
    lamb_coefdiff: float = 0.0,
    metric: str = "abs",
) -> torch.Tensor:
    """Sum of the penalties over layers (``edges[l]``: ``(batch, out, in)``, ``inputs[l]``: ``(batch, in)``)."""
    reg = edges[0].new_zeros(())
    for e, x, c in zip(edges, inputs, coefs, strict=True):
        reg = reg + l1_entropy(edge_magnitude(e, x, metric), lamb_l1, lamb_entropy)
        reg = reg + coef_penalty(c, lamb_coef, lamb_coefdiff)
    return reg
