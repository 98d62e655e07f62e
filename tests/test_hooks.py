"""Hook points and activation caches (kanlens.hooks): names, filters, editing hooks, cleanup, cache errors."""

import pytest
import torch

from kanlens import KAN
from kanlens.hooks import ActivationCache, HookPoint, hooks, run_with_cache


def _model() -> KAN:
    return KAN(width=[2, 3, 1], seed=0, dtype=torch.float64)


def _x() -> torch.Tensor:
    return torch.rand(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1


def test_hook_point_is_the_identity_and_reports_listeners():
    point = HookPoint()
    x = torch.randn(3, 4)
    assert point(x) is x
    assert not point.has_hooks()
    handle = point.register_forward_hook(lambda mod, inp, out: None)
    assert point.has_hooks()
    handle.remove()
    assert not point.has_hooks()


def test_run_with_cache_names_and_values():
    model, x = _model(), _x()
    out, cache = run_with_cache(model, x)
    torch.testing.assert_close(out, model(x))
    assert {"hook_in.0", "hook_in.1", "hook_out.0", "hook_out.1"} <= set(cache)
    torch.testing.assert_close(cache["hook_in.0"], x)  # the model's input passes through the first hook
    torch.testing.assert_close(cache["hook_in.1"], model.layer_inputs(x)[1])
    assert not any(t.requires_grad for t in cache.values())


@pytest.mark.parametrize("names_filter", ["hook_in.1", ["hook_in.1"], lambda n: n == "hook_in.1"])
def test_names_filter_forms(names_filter):
    _, cache = run_with_cache(_model(), _x(), names_filter=names_filter)
    assert list(cache) == ["hook_in.1"]


def test_editing_hook_changes_the_output_only_inside_the_context():
    model, x = _model(), _x()
    ref = model(x)
    with hooks(model, [("hook_out.1", lambda t, hook: t + 1.0)]):
        edited = model(x)
    # the last layer's subnode sum shifted by 1, times node_scale (1) plus node_bias: the output shifts by 1
    torch.testing.assert_close(edited, ref + 1.0)
    torch.testing.assert_close(model(x), ref)  # removed on exit
    assert not any(p.has_hooks() for p in model.modules() if isinstance(p, HookPoint))


def test_hooks_are_removed_when_the_body_raises():
    model = _model()
    with pytest.raises(RuntimeError, match="boom"), hooks(model, [("hook_in.0", lambda t, hook: None)]):
        raise RuntimeError("boom")
    assert not any(p.has_hooks() for p in model.modules() if isinstance(p, HookPoint))


def test_cache_is_read_only_and_names_missing_keys():
    cache = ActivationCache({"a": torch.zeros(2, 3)})
    assert len(cache) == 1 and repr(cache) == "ActivationCache(a: (2, 3))"
    with pytest.raises(KeyError, match=r"no activation named 'b'.*cached: \['a'\]"):
        cache["b"]
    with pytest.raises(TypeError):
        cache["a"] = torch.ones(1)  # type: ignore[index]


def test_detach_false_keeps_the_graph():
    model, x = _model(), _x().requires_grad_()
    _, cache = run_with_cache(model, x, names_filter="hook_in.1", detach=False)
    (g,) = torch.autograd.grad(cache["hook_in.1"].sum(), x)
    assert g.shape == x.shape and float(g.abs().sum()) > 0
