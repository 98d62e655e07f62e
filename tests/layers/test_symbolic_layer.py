"""SymbolicKANLayer: forward equals the sympy formula, state round-trips by name, subset/fix/unfix."""

from __future__ import annotations

import io

import numpy as np
import pytest
import sympy
import torch

from kanlens.layers.symbolic import Symbolic_KANLayer, SymbolicKANLayer
from kanlens.symbolic.library import default_library

EDGES = [  # (i, j, name, (a, b, c, d))
    (0, 0, "sin", (2.0, 0.1, 1.5, 0.2)),
    (1, 0, "x^2", (1.0, 0.3, 0.5, -0.1)),
    (2, 0, "exp", (0.7, 0.0, 0.3, 0.0)),
    (0, 1, "sin", (1.0, -0.4, 1.0, 0.0)),
    (2, 1, "1/x", (1.0, 2.5, 0.8, 0.1)),
    (1, 1, "sqrt", (1.0, 1.5, 1.1, 0.0)),
    (1, 2, "0", (1.0, 0.0, 1.0, 0.25)),
    (2, 2, "besselj0", (3.0, 0.2, 1.0, 0.0)),
]


def _layer(dtype=torch.float64) -> SymbolicKANLayer:
    layer = SymbolicKANLayer(3, 3, dtype=dtype)
    for i, j, name, p in EDGES:
        layer.fix(i, j, name, p)
    return layer


def _sympy_outputs() -> list[sympy.Expr]:
    lib = default_library(special=True)
    xs = sympy.symbols("x1:4")
    outs = [sympy.Integer(0)] * 3
    for i, j, name, (a, b, c, d) in EDGES:
        outs[j] = outs[j] + c * lib[name].sympy_fn(a * xs[i] + b) + d
    return outs


def test_forward_matches_lambdified_sympy():
    layer = _layer()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, generator=gen, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        got = layer(x)
    xs = sympy.symbols("x1:4")
    for j, expr in enumerate(_sympy_outputs()):
        f = sympy.lambdify(xs, expr, modules=["scipy", "numpy"])
        ref = np.broadcast_to(f(*x.T.numpy()), (64,))
        np.testing.assert_allclose(got[:, j].numpy(), ref, rtol=1e-10, atol=1e-10)  # torch j0: ~1e-11
    with torch.no_grad():
        torch.testing.assert_close(layer.forward_edges(x).sum(-1), got)
    assert layer.forward_edges(x)[:, 0, 1].abs().min() > 0  # edge (i=1, j=0) is x^2, stored at [out=0, in=1]
    assert layer.forward_edges(x)[:, 2, 0].abs().max() == 0  # edge (i=0, j=2) is not symbolic


def test_float32_and_gradients():
    layer = _layer(torch.float32)
    x = torch.rand(16, 3) * 2 - 1
    y = layer(x)
    assert y.dtype == torch.float32
    y.sum().backward()
    assert layer.affine.grad is not None and torch.isfinite(layer.affine.grad).all()
    assert layer.affine.grad[0, 1].abs().sum() > 0  # edge (i=1, j=0)
    # non-symbolic edge (i=0, j=2) gets no gradient
    assert layer.affine.grad[2, 0].abs().sum() == 0


def test_state_dict_round_trip_by_name():
    layer = _layer()
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    new = SymbolicKANLayer(3, 3, dtype=torch.float64)
    new._index_of("tanh")  # a different internal function order must not matter
    new.load_state_dict(state)
    x = torch.rand(8, 3, dtype=torch.float64)
    torch.testing.assert_close(new(x), layer(x))
    assert new.function_names() == layer.function_names()
    assert new.is_active() and new.fixed_edges() == layer.fixed_edges()


def test_fix_unfix_is_active_and_subset():
    layer = SymbolicKANLayer(2, 2, dtype=torch.float64)
    assert not layer.is_active()
    x = torch.rand(5, 2, dtype=torch.float64)
    assert layer(x).abs().max() == 0
    layer.fix(1, 0, "tanh", (2.0, 0.0, 1.0, 0.0))
    assert layer.is_active() and layer.fixed_edges() == [(1, 0)] and layer.function_name(1, 0) == "tanh"
    torch.testing.assert_close(layer(x)[:, 0], torch.tanh(2 * x[:, 1]))
    sub = layer.subset([1], [0, 1])
    assert sub.in_dim == 1 and sub.out_dim == 2 and sub.fixed_edges() == [(0, 0)]
    torch.testing.assert_close(sub(x[:, [1]]), layer(x))
    layer.unfix(1, 0)
    assert not layer.is_active() and layer.function_name(1, 0) == "0"


def test_mask_edits_are_respected_after_sync():
    layer = _layer()
    x = torch.rand(4, 3, dtype=torch.float64)
    with torch.no_grad():
        layer.mask.zero_()
    assert layer(x).abs().max() == 0  # masked edges contribute nothing even before syncing
    layer.sync_mask()
    assert not layer.is_active()


def test_bad_input():
    layer = SymbolicKANLayer(2, 3)
    with pytest.raises(ValueError, match="did you mean 'sin'"):
        layer.fix(0, 0, "sinn")
    with pytest.raises(IndexError, match="i = 2 is out of range"):
        layer.fix(2, 0, "sin")
    with pytest.raises(IndexError, match="j = 3 is out of range"):
        layer.fix(0, 3, "sin")
    with pytest.raises(ValueError, match="finite"):
        layer.fix(0, 0, "sin", (float("nan"), 0, 1, 0))
    with pytest.raises(ValueError, match="\\(a, b, c, d\\)"):
        layer.fix(0, 0, "sin", (1.0, 0.0))
    with pytest.raises(TypeError):
        SymbolicKANLayer(2.0, 3)
    assert Symbolic_KANLayer is SymbolicKANLayer


def test_device_and_dtype_moves():
    layer = _layer(torch.float32).double()
    x = torch.rand(4, 3, dtype=torch.float64)
    assert layer(x).dtype == torch.float64


def test_fn_index_round_trips_exactly():
    layer = SymbolicKANLayer(2, 1)
    layer.fix(1, 0, "x^2")
    layer.fix(0, 0, "sin")
    new = SymbolicKANLayer(2, 1)
    new.load_state_dict(layer.state_dict())
    assert torch.equal(new.fn_index, layer.fn_index) and new.function_list == layer.function_list
