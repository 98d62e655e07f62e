"""Multiplication nodes (pykan's MultKAN): the ``width`` / ``mult_arity`` layout and the subnode -> node map.

A layer of nodes holds ``n_sum`` sum nodes followed by ``n_mult`` product nodes (``width=[2, [5, 2], 1]``: 5 sum
and 2 product nodes in the hidden layer). The KAN layer before it outputs one *subnode* per sum node, then
``mult_arity[j]`` consecutive subnodes per product node ``j``; a sum node passes its subnode on, a product node
multiplies its subnodes. ``mult_arity`` is one int for every product node, or pykan's per-layer list of per-node
lists (``[[], [2, 3], []]``: one entry per width entry).

:class:`NodeMap` is that map for one layer as three batched ops (gather, product, nothing per node in Python), with
a hand-written backward for the fused training stack and an autograd version for everything else.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence

import torch

__all__ = ["NodeLayout", "NodeMap", "node_layout", "parse_width"]


def _int(value: object, what: str) -> int:
    """``value`` as an int (Python or numpy integer), or a clear error."""
    if isinstance(value, (bool, float)):
        raise TypeError(f"{what} must be an int, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__} ({value!r})") from None


def parse_width(width: object) -> list[tuple[int, int]]:
    """``[(n_sum, n_mult), ...]`` from a width such as ``[2, 5, 1]`` or ``[2, [5, 2], 1]``, with clear errors."""
    if not isinstance(width, (list, tuple)):
        raise TypeError(f"width must be a list such as [2, 5, 1] or [2, [5, 2], 1], got {type(width).__name__}")
    out = []
    for w in width:
        if isinstance(w, (list, tuple)):
            if len(w) != 2:
                raise ValueError(f"width entry {list(w)!r} must be [n_sum, n_mult] (two ints) in {list(width)!r}")
            n_sum, n_mult = (_int(v, f"width entry {list(w)!r}") for v in w)
            if n_sum < 0 or n_mult < 0 or n_sum + n_mult < 1:
                raise ValueError(f"width entry {list(w)!r} needs n_sum, n_mult >= 0 and at least one node, in "
                                 f"{list(width)!r}")
        else:
            if isinstance(w, (bool, float)) or not hasattr(w, "__index__"):
                raise TypeError(f"width entries must be ints or [n_sum, n_mult] pairs, got {w!r} in {list(width)!r}")
            n_sum, n_mult = operator.index(w), 0
            if n_sum < 1:
                raise ValueError(f"width entries must be positive, got {n_sum} in {list(width)!r}")
        out.append((n_sum, n_mult))
    if len(out) < 2:
        raise ValueError(f"width needs at least 2 entries (inputs and outputs), got {list(width)!r}")
    if out[0][1]:
        raise ValueError(f"width[0] (the inputs) cannot have multiplication nodes, got {width[0]!r}; use n_in or "
                         "[n_in, 0]")
    return out


def _parse_arity(mult_arity: object, n_mult: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    def check(a: object, where: str) -> int:
        a = _int(a, f"mult_arity{where}")
        if a < 2:
            raise ValueError(f"mult_arity{where} must be >= 2 (a product of {a} factor(s)), got {a}")
        return a

    if not isinstance(mult_arity, (list, tuple)):
        a = check(mult_arity, "")
        return tuple((a,) * m for m in n_mult)
    if len(mult_arity) != len(n_mult):
        raise ValueError(f"mult_arity as a list needs one list per width entry ({len(n_mult)}), e.g. "
                         f"{[[2] * m for m in n_mult]}, got {list(mult_arity)!r}")
    out = []
    for l, (entry, m) in enumerate(zip(mult_arity, n_mult)):
        entry = list(entry) if isinstance(entry, (list, tuple)) else [entry] * m if m else None
        if entry is None or len(entry) != m:
            raise ValueError(f"mult_arity[{l}] must list one arity per multiplication node of width entry {l} "
                             f"({m}), got {mult_arity[l]!r}")
        out.append(tuple(check(a, f"[{l}][{j}]") for j, a in enumerate(entry)))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class NodeLayout:
    """Sum and product nodes of every layer of nodes (``0`` = inputs) and the arity of every product node."""

    n_sum: tuple[int, ...]
    arity: tuple[tuple[int, ...], ...]

    @property
    def n_mult(self) -> list[int]:
        return [len(a) for a in self.arity]

    @property
    def has_mult(self) -> bool:
        return any(self.arity)

    @property
    def width_in(self) -> list[int]:
        """Nodes per layer (the inputs of the next KAN layer)."""
        return [s + len(a) for s, a in zip(self.n_sum, self.arity)]

    @property
    def width_out(self) -> list[int]:
        """Subnodes per layer (the outputs of the KAN layer before it)."""
        return [s + sum(a) for s, a in zip(self.n_sum, self.arity)]

    def width(self) -> list:
        """The config form: plain ints without product nodes, else pykan's ``[[n_sum, n_mult], ...]``."""
        if not self.has_mult:
            return list(self.n_sum)
        return [[s, len(a)] for s, a in zip(self.n_sum, self.arity)]

    def groups(self, l: int) -> list[list[int]]:
        """Subnode indices of every node of layer ``l`` (one for a sum node, ``arity`` for a product node)."""
        ns = self.n_sum[l]
        out = [[j] for j in range(ns)]
        start = ns
        for a in self.arity[l]:
            out.append(list(range(start, start + a)))
            start += a
        return out

    def node_of_subnode(self, l: int) -> list[int]:
        """The node each subnode of layer ``l`` feeds."""
        return [node for node, subs in enumerate(self.groups(l)) for _ in subs]

    def subset(self, keep: Sequence[Sequence[int]], homogeneous: int | None) -> tuple[list, object]:
        """``(width, mult_arity)`` config entries of the layout restricted to nodes ``keep[l]`` of every layer
        (``homogeneous``: the int ``mult_arity`` of the original config, kept as an int)."""
        n_sum = [sum(1 for i in k if i < s) for k, s in zip(keep, self.n_sum)]
        arity = [tuple(a[i - s] for i in k if i >= s) for k, s, a in zip(keep, self.n_sum, self.arity)]
        new = NodeLayout(tuple(n_sum), tuple(arity))
        return new.width(), (homogeneous if homogeneous is not None else [list(a) for a in arity])


def node_layout(width: object, mult_arity: object = 2) -> NodeLayout:
    """The :class:`NodeLayout` of a ``width`` (``[2, 5, 1]`` or ``[2, [5, 2], 1]``) and ``mult_arity``."""
    pairs = parse_width(width)
    return NodeLayout(tuple(s for s, _ in pairs), _parse_arity(mult_arity, [m for _, m in pairs]))


class NodeMap:
    """Subnodes ``(batch, n_sub)`` -> nodes ``(batch, n_nodes)`` of one layer: sums pass, products multiply.

    The subnodes are gathered into ``(batch, n_nodes, A)`` (``A`` the largest arity; missing factors are ones)
    and multiplied along the last axis. ``identity`` when the layer has no product node.
    """

    def __init__(self, groups: list[list[int]], device: torch.device) -> None:
        self.identity = all(len(g) == 1 for g in groups)
        n_sub = sum(len(g) for g in groups)
        self.a = max(len(g) for g in groups)
        idx = torch.full((len(groups), self.a), n_sub, dtype=torch.long)  # n_sub: the padding column of ones
        pos = torch.empty(n_sub, dtype=torch.long)
        for node, g in enumerate(groups):
            for slot, s in enumerate(g):
                idx[node, slot] = s
                pos[s] = node * self.a + slot
        self.idx, self.pos = idx.flatten().to(device), pos.to(device)
        self.n_nodes = len(groups)

    def _gather(self, u: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([u, u.new_ones(u.shape[0], 1)], 1)
        return padded.index_select(1, self.idx).view(u.shape[0], self.n_nodes, self.a)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Nodes and the gathered factors (for :meth:`backward`); no autograd."""
        if self.identity:
            return u, None
        factors = self._gather(u)
        return factors.prod(-1), factors

    def backward(self, g: torch.Tensor, factors: torch.Tensor | None) -> torch.Tensor:
        """Gradient wrt the subnodes given the nodes' gradient ``g`` (product of the *other* factors, no division)."""
        if factors is None:
            return g
        if self.a == 2:
            others = factors.flip(-1)
        else:
            ones = factors.new_ones(*factors.shape[:-1], 1)
            before = torch.cat([ones, factors[..., :-1].cumprod(-1)], -1)
            after = torch.cat([factors[..., 1:].flip(-1).cumprod(-1).flip(-1), ones], -1)
            others = before * after
        return (g.unsqueeze(-1) * others).reshape(g.shape[0], -1).index_select(1, self.pos)

    def reference(self, u: torch.Tensor) -> torch.Tensor:
        """The same map as ordinary autograd ops (differentiable to any order)."""
        return u if self.identity else self._gather(u).prod(-1)
