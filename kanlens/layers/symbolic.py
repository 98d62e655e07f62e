"""The symbolic KAN layer: edge ``(j, i)`` computes ``c * f(a * x_i + b) + d`` for a named library function ``f``.

Edges are evaluated grouped by function (one gather, one call of ``f``, one scatter-add per distinct function), so
the cost does not grow with a Python loop over edges. Function names are part of the module state
(:meth:`SymbolicKANLayer.get_extra_state`), so ``state_dict`` round-trips by *name*, not by library position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._checks import as_int, is_int
from ..symbolic.library import SymbolicLibrary, default_library
from .reorder import swap_ids
from .spline import check_layer_input

__all__ = ["SymbolicKANLayer", "Symbolic_KANLayer"]


def _check_dim(name: str, value: object) -> int:
    return as_int(name, value, 1)


class SymbolicKANLayer(nn.Module):
    """A layer of ``out_dim x in_dim`` symbolic edges ``c * f(a * x + b) + d``.

    Indices follow pykan: ``i`` is the input index, ``j`` the output index; tensors are stored ``(out, in)``.

    Args:
        in_dim: number of inputs.
        out_dim: number of outputs.
        library: the :class:`~kanlens.symbolic.library.SymbolicLibrary` edges may use (default library with the
            special functions available).

    Attributes:
        affine: parameter ``(out_dim, in_dim, 4)`` holding ``(a, b, c, d)`` per edge.
        mask: buffer ``(out_dim, in_dim)``; 1 where the edge is symbolic.
        fn_index: buffer ``(out_dim, in_dim)``; index of each edge's function in :attr:`function_list`.

    Shapes:
        ``forward``: ``(batch, in_dim) -> (batch, out_dim)``; ``forward_edges``: ``-> (batch, out_dim, in_dim)``.

    Example:
        >>> layer = SymbolicKANLayer(2, 1)
        >>> layer.fix(0, 0, "sin", (3.0, 0.0, 2.0, 0.0))
        >>> layer(torch.tensor([[0.5, 1.0]])).shape
        torch.Size([1, 1])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        library: SymbolicLibrary | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_dim = _check_dim("in_dim", in_dim)
        self.out_dim = _check_dim("out_dim", out_dim)
        if library is not None and not isinstance(library, SymbolicLibrary):
            raise TypeError(f"library must be a SymbolicLibrary or None, got {type(library).__name__}")
        self.library = library if library is not None else default_library(special=True)
        self.function_list: list[str] = ["0"]
        init = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=dtype).expand(out_dim, in_dim, 4).clone()
        self.affine = nn.Parameter(init)
        self.register_buffer("mask", torch.zeros(out_dim, in_dim, dtype=dtype))
        self.register_buffer("fn_index", torch.zeros(out_dim, in_dim, dtype=torch.long))
        # Python mirror of which edges are fixed and with what, so is_active()/grouping never sync the device.
        self._names: list[list[str]] = [["0"] * in_dim for _ in range(out_dim)]
        self._fixed: set[tuple[int, int]] = set()  # (j, i)
        self._groups: dict[tuple[str, str], list[tuple[str, torch.Tensor]]] = {}
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------ bookkeeping
    def _check_edge(self, i: int, j: int) -> None:
        for name, v, n, what in (("i", i, self.in_dim, "inputs"), ("j", j, self.out_dim, "outputs")):
            if not is_int(v):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
            if not 0 <= v < n:
                raise IndexError(f"{name} = {v} is out of range: the layer has {n} {what}")

    def _index_of(self, name: str) -> int:
        if name not in self.function_list:
            self.function_list.append(name)
        return self.function_list.index(name)

    def _invalidate(self) -> None:
        self._groups = {}

    def is_active(self) -> bool:
        """Whether any edge is symbolic (a Python bool from host-side bookkeeping; no device sync)."""
        return bool(self._fixed)

    def fixed_edges(self) -> list[tuple[int, int]]:
        """Symbolic edges as ``(i, j)`` pairs (pykan order: input, output)."""
        return sorted((i, j) for (j, i) in self._fixed)

    def function_name(self, i: int, j: int) -> str:
        """Name of the function on edge ``(i, j)`` (``"0"`` when not symbolic)."""
        self._check_edge(i, j)
        return self._names[j][i]

    def function_names(self) -> list[list[str]]:
        """Function names ``[out][in]`` (``"0"`` for non-symbolic edges); JSON-friendly."""
        return [row[:] for row in self._names]

    def set_function_names(self, names: Sequence[Sequence[str]]) -> None:
        """Set every edge's function by name (e.g. from a checkpoint's config); the mask is left unchanged."""
        if len(names) != self.out_dim or any(len(r) != self.in_dim for r in names):
            raise ValueError(f"names must be a nested list of shape [{self.out_dim}][{self.in_dim}]")
        canon = [[self.library.canonical_name(n) for n in row] for row in names]
        idx = [[self._index_of(n) for n in row] for row in canon]
        self._names = canon
        self.fn_index.copy_(torch.tensor(idx, dtype=torch.long))
        self.sync_mask()

    def sync_mask(self) -> None:
        """Refresh the host-side list of symbolic edges from the ``mask`` buffer (after editing it directly)."""
        nz = torch.nonzero(self.mask.detach().cpu() != 0).tolist()
        self._fixed = {(int(j), int(i)) for j, i in nz}
        self._invalidate()

    # ------------------------------------------------------------------ editing edges
    @torch.no_grad()
    def fix(self, i: int, j: int, name: str, params: Sequence[float] | torch.Tensor | None = None) -> None:
        """Make edge ``(i, j)`` symbolic: ``c * f(a * x + b) + d`` with ``params = (a, b, c, d)``."""
        self._check_edge(i, j)
        name = self.library.canonical_name(name)
        p = torch.as_tensor((1.0, 0.0, 1.0, 0.0) if params is None else params, dtype=torch.float64).flatten()
        if p.numel() != 4:
            raise ValueError(f"params must be (a, b, c, d), got {p.numel()} values")
        if not bool(torch.isfinite(p).all()):
            raise ValueError(f"params must be finite, got {p.tolist()}")
        self.affine[j, i] = p.to(self.affine)
        self.fn_index[j, i] = self._index_of(name)
        self.mask[j, i] = 1.0
        self._names[j][i] = name
        self._fixed.add((j, i))
        self._invalidate()

    @torch.no_grad()
    def unfix(self, i: int, j: int) -> None:
        """Make edge ``(i, j)`` non-symbolic again (function ``"0"``, mask 0, default constants)."""
        self._check_edge(i, j)
        self.mask[j, i] = 0.0
        self.fn_index[j, i] = self._index_of("0")
        self.affine[j, i] = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=self.affine.dtype, device=self.affine.device)
        self._names[j][i] = "0"
        self._fixed.discard((j, i))
        self._invalidate()

    # ------------------------------------------------------------------ evaluation
    def _edge_groups(self, device: torch.device) -> list[tuple[str, torch.Tensor]]:
        key = (str(device), "groups")
        groups = self._groups.get(key)
        if groups is None:
            by_fn: dict[str, list[int]] = {}
            for j, i in sorted(self._fixed):
                name = self._names[j][i]
                if name != "0":
                    by_fn.setdefault(name, []).append(j * self.in_dim + i)
            groups = [(n, torch.tensor(ix, dtype=torch.long, device=device)) for n, ix in by_fn.items()]
            self._groups[key] = groups
        return groups

    def _edge_values(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Values ``(batch, k)`` of each function group and their flat edge indices; plus the masked constants."""
        aff = self.affine.reshape(-1, 4)
        m = self.mask.reshape(-1)
        values, indices = [], []
        for name, flat in self._edge_groups(x.device):
            p = aff[flat]  # (k, 4)
            xi = x[:, flat % self.in_dim]  # (batch, k)
            fx = self.library[name].safe_fn(p[:, 0] * xi + p[:, 1])
            values.append((p[:, 2] * fx) * m[flat])
            indices.append(flat)
        # the additive constant d acts on every fixed edge, including "0" edges
        const = aff[:, 3] * m
        return values, indices, const

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of symbolic edges per output (non-symbolic edges contribute 0)."""
        check_layer_input(x, self.in_dim, self.mask)
        batch = x.shape[0]
        out = x.new_zeros(batch, self.out_dim)
        if not self._fixed:
            return out
        values, indices, const = self._edge_values(x)
        for v, flat in zip(values, indices):
            out = out.index_add(1, flat // self.in_dim, v)
        return out + const.reshape(self.out_dim, self.in_dim).sum(-1)

    def forward_edges(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge values ``mask * (c * f(a * x + b) + d)``, shape ``(batch, out_dim, in_dim)``."""
        check_layer_input(x, self.in_dim, self.mask)
        batch = x.shape[0]
        out = x.new_zeros(batch, self.out_dim * self.in_dim)
        if not self._fixed:
            return out.reshape(batch, self.out_dim, self.in_dim)
        values, indices, const = self._edge_values(x)
        for v, flat in zip(values, indices):
            out = out.index_add(1, flat, v)
        return (out + const).reshape(batch, self.out_dim, self.in_dim)

    # ------------------------------------------------------------------ state / structure
    def get_extra_state(self) -> dict:
        return {"function_names": self.function_names(), "function_list": list(self.function_list)}

    def set_extra_state(self, state: dict) -> None:
        names = state.get("function_names") if isinstance(state, dict) else None
        if names is None:
            raise ValueError("SymbolicKANLayer state has no 'function_names'")
        order = state.get("function_list")
        if order:  # restore the index order too, so fn_index round-trips exactly
            self.function_list = [self.library.canonical_name(n) for n in order]
        self.set_function_names(names)

    def _apply(self, fn, recurse: bool = True):  # .to()/.cuda()/.double(): cached index tensors follow the device
        self._invalidate()
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def swap(self, i1: int, i2: int, mode: str = "in") -> None:
        """pykan's ``swap``: exchange inputs (``mode="in"``) or outputs (``"out"``) ``i1`` and ``i2`` in place."""
        new = self.subset(*swap_ids(self, i1, i2, mode))
        self.affine.copy_(new.affine)
        self.mask.copy_(new.mask)
        self.set_function_names(new.function_names())

    def subset(self, in_ids: Sequence[int], out_ids: Sequence[int]) -> SymbolicKANLayer:
        """A smaller layer keeping only inputs ``in_ids`` and outputs ``out_ids`` (edges unchanged)."""
        in_ids, out_ids = [int(v) for v in in_ids], [int(v) for v in out_ids]
        for name, ids, n in (("in_ids", in_ids, self.in_dim), ("out_ids", out_ids, self.out_dim)):
            if not ids or any(not 0 <= v < n for v in ids):
                raise ValueError(f"{name} must be a non-empty list of indices in [0, {n}), got {ids}")
        new = SymbolicKANLayer(len(in_ids), len(out_ids), library=self.library, dtype=self.affine.dtype,
                               device=self.affine.device)
        ii = torch.as_tensor(in_ids, device=self.mask.device)
        oo = torch.as_tensor(out_ids, device=self.mask.device)
        with torch.no_grad():
            new.affine.copy_(self.affine[oo][:, ii])
            new.mask.copy_(self.mask[oo][:, ii])
        new.set_function_names([[self._names[j][i] for i in in_ids] for j in out_ids])
        new.affine.requires_grad_(self.affine.requires_grad)
        return new

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, symbolic_edges={len(self._fixed)}"


Symbolic_KANLayer = SymbolicKANLayer
