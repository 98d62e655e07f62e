"""Sparsity regularisation (pure functions): sample-based L1 + entropy on edge activations, coefficient penalties."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "REG_METRICS", "coef_penalty", "edge_magnitude", "l1_entropy", "l1_entropy_with_grad", "magnitude_reg", "total_reg",
]

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


def _entropy_parts(m: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    denom = m.sum(dim, keepdim=True) + 1.0
    p = m / denom
    return p, denom, torch.log2(p + _EPS)


_EPS = 1e-4


class _AbsL1Entropy(torch.autograd.Function):
    """``l1_entropy(edges.abs().mean(0))`` as one autograd node with an analytic gradient.

    The sparsity penalty is evaluated at every LBFGS trial point; as ~25 small ops per layer it dominated the
    backward pass of small KANs.
    """

    @staticmethod
    def forward(ctx, edges: torch.Tensor, lamb_l1: float, lamb_entropy: float) -> torch.Tensor:  # type: ignore[override]
        m = edges.abs().mean(0)
        p_r, _, log_r = _entropy_parts(m, 1)
        p_c, _, log_c = _entropy_parts(m, 0)
        ent = -(p_r * log_r).sum(1).mean() - (p_c * log_c).sum(0).mean()
        ctx.save_for_backward(edges, m)
        ctx.lambs = (lamb_l1, lamb_entropy)
        return lamb_l1 * m.sum() + lamb_entropy * ent

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        edges, m = ctx.saved_tensors
        lamb_l1, lamb_entropy = ctx.lambs
        dm = torch.full_like(m, lamb_l1)
        for dim, n in ((1, m.shape[0]), (0, m.shape[1])):
            p, denom, log_p = _entropy_parts(m, dim)
            g = -(log_p + p / ((p + _EPS) * math.log(2.0))) / n  # d(entropy)/dp
            dm = dm + lamb_entropy * (g / denom - (g * m).sum(dim, keepdim=True) / denom**2)
        return grad * torch.sign(edges) * (dm / edges.shape[0]), None, None


# Magnitudes with at most this many edges (on the CPU) are penalised in plain Python floats: for the small KANs of
# the tutorials a dozen torch ops on a 5x2 tensor cost far more than the arithmetic itself.
_PY_MAX_EDGES = 256


def _l1_entropy_python(rows: list[list[float]], lamb_l1: float, lamb_entropy: float):
    """Value and gradient (nested lists) of :func:`l1_entropy` for a small magnitude given as nested lists."""
    n_out, n_in = len(rows), len(rows[0])
    log2, inv_ln2, eps = math.log2, 1.0 / math.log(2.0), _EPS
    grad = [[float(lamb_l1)] * n_in for _ in range(n_out)]
    total = lamb_l1 * sum(map(sum, rows))
    # row entropies (normalised along inputs, averaged over outputs), then column entropies
    for transpose in (False, True):
        vecs = list(zip(*rows)) if transpose else rows
        w = -lamb_entropy / len(vecs)
        for a, vec in enumerate(vecs):
            denom = sum(vec) + 1.0
            gs, ent, gp = [], 0.0, 0.0
            for v in vec:
                p = v / denom
                lp = log2(p + eps)
                ent += p * lp
                g = w * (lp + p / (p + eps) * inv_ln2)  # d(w * entropy)/dp
                gs.append(g)
                gp += g * p
            total += w * ent
            for b, g in enumerate(gs):  # p = m / denom: d/dm = (g - sum(g * p)) / denom
                if transpose:
                    grad[b][a] += (g - gp) / denom
                else:
                    grad[a][b] += (g - gp) / denom
    return total, grad


def l1_entropy_with_grad(mags: Sequence[torch.Tensor], lamb_l1: float = 1.0,
                         lamb_entropy: float = 2.0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``sum(l1_entropy(m) for m in mags)`` and its gradient with respect to every ``m``, without autograd.

    Small CPU magnitudes are done in Python floats (see ``_PY_MAX_EDGES``); when all of them are, the total and
    every gradient come back from one tensor (views of it).
    """
    mags = [m.detach() for m in mags]
    if mags and all(m.device.type == "cpu" and 0 < m.numel() <= _PY_MAX_EDGES for m in mags) and len(
            {m.dtype for m in mags}) == 1:
        total, flat = 0.0, []
        for mag in mags:
            value, grad = _l1_entropy_python(mag.tolist(), lamb_l1, lamb_entropy)
            total = total + value
            for row in grad:
                flat += row
        out = torch.tensor([total, *flat], dtype=mags[0].dtype)
        grads, off = [], 1
        for mag in mags:
            grads.append(out[off : off + mag.numel()].view(mag.shape))
            off += mag.numel()
        return out[0], grads
    total, grads = 0.0, []
    for mag in mags:
        if mag.device.type == "cpu" and 0 < mag.numel() <= _PY_MAX_EDGES:
            value, grad = _l1_entropy_python(mag.tolist(), lamb_l1, lamb_entropy)
            grads.append(torch.tensor(grad, dtype=mag.dtype))
            total = total + value
            continue
        dm = mag.new_full(mag.shape, lamb_l1)
        ent = mag.new_zeros(())
        for dim, n in ((1, mag.shape[0]), (0, mag.shape[1])):
            p, denom, log_p = _entropy_parts(mag, dim)
            w = -lamb_entropy / n
            ent = torch.add(ent, (p * log_p).sum(), alpha=w)
            # g = d(w * entropy)/dp; with p = m / denom: d/dm = (g - sum(g * p)) / denom along the normalised dim
            g = torch.add(log_p, p / (p + _EPS), alpha=1.0 / math.log(2.0)).mul_(w)
            dm = dm + (g - (g * p).sum(dim, keepdim=True)) / denom
        grads.append(dm)
        total = torch.add(ent, mag.sum(), alpha=lamb_l1) + total
    if not isinstance(total, torch.Tensor):
        total = torch.tensor(total, dtype=mags[0].dtype if mags else torch.get_default_dtype())
    return total, grads


class _L1Entropy(torch.autograd.Function):
    """``sum(l1_entropy(m) for m in mags)`` of ``(out, in)`` magnitudes as one autograd node.

    The gradient is computed together with the value (:func:`l1_entropy_with_grad`; it is needed at every LBFGS
    evaluation anyway), so the backward is one multiplication per magnitude. Call as
    ``_L1Entropy.apply(lamb_l1, lamb_entropy, *mags)``.
    """

    @staticmethod
    def forward(ctx, lamb_l1: float, lamb_entropy: float, *mags: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total, ctx.grads = l1_entropy_with_grad(mags, lamb_l1, lamb_entropy)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return (None, None, *(dm * grad for dm in ctx.grads))


def magnitude_reg(
    mags: Sequence[torch.Tensor],
    coefs: Sequence[torch.Tensor],
    *,
    lamb_l1: float = 1.0,
    lamb_entropy: float = 2.0,
    lamb_coef: float = 0.0,
    lamb_coefdiff: float = 0.0,
) -> torch.Tensor:
    """:func:`total_reg` with the ``"abs"`` metric, from per-edge magnitudes ``mags[l]`` ``(out, in)`` (e.g. from
    :meth:`kanlens.layers.spline.KANLayer.forward_with_magnitude`) instead of ``(batch, out, in)`` activations."""
    if len(mags) != len(coefs):
        raise ValueError(f"got {len(mags)} magnitudes but {len(coefs)} coefficient tensors")
    if not mags:
        return torch.zeros(())
    reg = _L1Entropy.apply(lamb_l1, lamb_entropy, *mags)
    if lamb_coef or lamb_coefdiff:
        for c in coefs:
            reg = reg + coef_penalty(c, lamb_coef, lamb_coefdiff)
    return reg


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
        if metric == "abs":
            reg = reg + _AbsL1Entropy.apply(e, lamb_l1, lamb_entropy)
        else:
            reg = reg + l1_entropy(edge_magnitude(e, x, metric), lamb_l1, lamb_entropy)
        reg = reg + coef_penalty(c, lamb_coef, lamb_coefdiff)
    return reg
