"""The optimizers of :func:`kanlens.fit` (pykan's settings) and the flat parameter vector LBFGS works on."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .model import KAN

__all__ = ["FlatParams", "optimizer_factory", "snapshot"]


def snapshot(model: KAN) -> dict[str, Any]:
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}



class FlatParams:
    """The trainable parameters as views into one flat tensor, which is all that LBFGS sees.

    ``torch.optim.LBFGS`` loops over its parameters several times per evaluation (gather the gradients, add the
    step, clone and restore during the line search); with one flat parameter each of those is a single op. The
    algorithm and its arithmetic are unchanged (the flat vector is the concatenation LBFGS builds anyway).
    Gradients accumulate in place into views of ``flat.grad``. Anything that replaces a parameter's tensor (grid
    updates assign ``coef.data``) is picked up by :meth:`relink`; :meth:`unlink` gives every parameter its own
    storage again when training ends.
    """

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params
        self.flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
        self.flat.grad = torch.zeros_like(self.flat)
        self._views: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._link()

    def _link(self) -> None:
        self._views, off = [], 0
        data, grad = self.flat.detach(), self.flat.grad
        for p in self.params:
            n = p.numel()
            p.data = data[off : off + n].view_as(p)
            p.grad = grad[off : off + n].view_as(p)
            self._views.append((p.data, p.grad))
            off += n

    def linked(self) -> bool:
        return all(p.data.data_ptr() == d.data_ptr() and p.grad is g for p, (d, g) in zip(self.params, self._views))

    def relink(self) -> None:
        if not self.linked():
            with torch.no_grad():
                self.flat.copy_(torch.cat([p.detach().reshape(-1) for p in self.params]))
            self._link()

    def zero_grad(self) -> None:
        self.flat.grad.zero_()

    def unlink(self) -> None:
        for p in self.params:
            p.data = p.data.clone()
            if p.grad is not None:
                p.grad = p.grad.clone()


def optimizer_factory(opt: str, params: list[torch.nn.Parameter],
                       flat: FlatParams | None = None) -> Callable[[float], Any]:
    """pykan's optimizer settings. LBFGS: history 10, strong Wolfe line search, max_iter 20 (max_eval 25), both
    tolerances 1e-32; on one flat parameter it is :class:`kanlens._lbfgs.FlatLBFGS` (the same algorithm)."""
    if opt == "LBFGS" and flat is not None:
        from ._lbfgs import FlatLBFGS

        return lambda lr: FlatLBFGS(flat.flat, lr=lr, history_size=10, tolerance_grad=1e-32, tolerance_change=1e-32)
    if opt == "LBFGS":
        return lambda lr: torch.optim.LBFGS(
            params, lr=lr, history_size=10, line_search_fn="strong_wolfe",
            tolerance_grad=1e-32, tolerance_change=1e-32,
        )
    return lambda lr: torch.optim.Adam(params, lr=lr)
