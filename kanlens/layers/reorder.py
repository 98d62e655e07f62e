"""Index lists for pykan's in-place ``swap`` of a layer's inputs or outputs (``KANLayer`` / ``Symbolic_KANLayer``)."""

from __future__ import annotations

from .._checks import as_int, check_choice


def swap_ids(layer, i1: int, i2: int, mode: str) -> tuple[list[int], list[int]]:
    """``(in_ids, out_ids)`` for ``layer.subset`` that exchange inputs (``mode="in"``) or outputs (``"out"``)
    ``i1`` and ``i2``; a clear error for an unknown mode or an index out of range."""
    check_choice("mode", mode, ("in", "out"))
    n = layer.in_dim if mode == "in" else layer.out_dim
    i1, i2 = as_int("i1", i1, 0), as_int("i2", i2, 0)
    if i1 >= n or i2 >= n:
        raise IndexError(f"the layer has {n} {'inputs' if mode == 'in' else 'outputs'}, got i1={i1}, i2={i2}")
    order = list(range(n))
    order[i1], order[i2] = i2, i1
    keep = list(range(layer.out_dim if mode == "in" else layer.in_dim))
    return (order, keep) if mode == "in" else (keep, order)
