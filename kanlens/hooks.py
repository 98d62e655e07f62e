"""Hook points and activation caches (the "lens" in kanlens).

Every observable tensor in a kanlens model passes through an identity :class:`HookPoint`. Hooks are added only
for the duration of a call (:func:`run_with_cache`), so the fast path pays nothing when nobody listens, and
layers build expensive tensors (per-edge activations) only when ``hook.has_hooks()`` is true.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

__all__ = ["ActivationCache", "HookPoint", "hooks", "run_with_cache"]


class HookPoint(nn.Module):
    """Identity module whose forward hooks observe (or edit) a named tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""

    def has_hooks(self) -> bool:
        """True when at least one forward hook listens to this point."""
        return bool(self._forward_hooks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ActivationCache(Mapping[str, torch.Tensor]):
    """Read-only mapping ``hook name -> tensor`` filled by :func:`run_with_cache`."""

    def __init__(self, data: dict[str, torch.Tensor]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> torch.Tensor:
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(f"no activation named {key!r} was cached; cached: {sorted(self._data)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self._data.items())
        return f"ActivationCache({items})"


def _name_hook_points(model: nn.Module) -> list[tuple[str, HookPoint]]:
    points = []
    for name, mod in model.named_modules():
        if isinstance(mod, HookPoint):
            mod.name = name
            points.append((name, mod))
    return points


def _matches(name: str, names_filter: str | Iterable[str] | Callable[[str], bool] | None) -> bool:
    if names_filter is None:
        return True
    if callable(names_filter):
        return bool(names_filter(name))
    if isinstance(names_filter, str):
        return name == names_filter or name.endswith(names_filter)
    return any(name == f or name.endswith(f) for f in names_filter)


@contextlib.contextmanager
def hooks(
    model: nn.Module, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], Callable]]
) -> Iterator[nn.Module]:
    """Temporarily attach ``fn(tensor, hook) -> tensor | None`` to the hook points matching each filter."""
    handles = []
    try:
        for filt, fn in fwd_hooks:
            for name, point in _name_hook_points(model):
                if _matches(name, filt):
                    handles.append(point.register_forward_hook(lambda mod, inp, out, fn=fn: fn(out, mod)))
        yield model
    finally:
        for h in handles:
            h.remove()


def run_with_cache(
    model: nn.Module,
    *args,
    names_filter: str | Iterable[str] | Callable[[str], bool] | None = None,
    detach: bool = True,
    **kwargs,
) -> tuple[torch.Tensor, ActivationCache]:
    """Run ``model(*args)`` once and return ``(output, cache)`` of the matching hook points.

    Example:
        >>> out, cache = run_with_cache(model, x, names_filter="hook_edges")
        >>> cache["layers.0.hook_edges"].shape  # (batch, out, in)
    """
    store: dict[str, torch.Tensor] = {}

    def save(t: torch.Tensor, hook: HookPoint) -> None:
        store[hook.name] = t.detach() if detach else t

    names = [n for n, _ in _name_hook_points(model) if _matches(n, names_filter)]
    with hooks(model, [(lambda n, names=names: n in names, save)]):
        out = model(*args, **kwargs)
    return out, ActivationCache(store)
