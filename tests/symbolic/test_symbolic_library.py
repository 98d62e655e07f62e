"""The symbolic library: torch and sympy versions agree, safe versions are finite, names resolve with hints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
import torch

from kanlens.symbolic.library import SPECIAL_NAMES, SymbolicLibrary, default_library, resolve_library

REQUIRED = ["x", "x^2", "x^3", "x^4", "x^5", "1/x", "1/x^2", "1/x^3", "sqrt", "x^1.5", "1/sqrt(x)", "exp", "log",
            "abs", "sin", "cos", "tan", "tanh", "sgn", "arcsin", "arccos", "arctan", "arctanh", "gaussian", "0"]


def _points(name: str) -> np.ndarray:
    fn = default_library(special=True)[name]
    lo, hi = max(fn.domain[0], -2.5), min(fn.domain[1], 2.5)
    if fn.domain == (-1.0, 1.0):
        lo, hi = -0.95, 0.95
    if name == "tan":
        lo, hi = -1.4, 1.4
    pts = np.linspace(lo, hi, 41)
    return pts[np.abs(pts) > 0.05] if fn.poles or name == "sgn" else pts


def test_default_library_has_required_names():
    lib = default_library()
    assert all(n in lib for n in REQUIRED)
    assert not any(n in lib for n in SPECIAL_NAMES)
    assert all(n in default_library(special=True) for n in SPECIAL_NAMES)
    assert all(n in lib.with_special() for n in SPECIAL_NAMES)


@pytest.mark.parametrize("name", REQUIRED + list(SPECIAL_NAMES))
def test_torch_sympy_numpy_agree(name):
    fn = default_library(special=True)[name]
    u = sympy.Symbol("u")
    expr = fn.sympy_fn(u)
    f_sym = sympy.lambdify(u, expr, modules=["scipy", "numpy"])
    pts = _points(name)
    ref = np.array([float(sympy.N(expr.subs(u, sympy.Float(p, 30)), 20)) for p in pts[::8]])
    got_sym = np.broadcast_to(np.asarray(f_sym(pts), dtype=np.float64), pts.shape)
    got_torch = fn.torch_fn(torch.tensor(pts, dtype=torch.float64)).numpy()
    got_safe = fn.safe_fn(torch.tensor(pts, dtype=torch.float64)).numpy()
    got_np = fn.numpy(pts)
    np.testing.assert_allclose(got_torch[::8], ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got_sym, got_torch, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got_safe, got_torch, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got_np, got_torch, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", REQUIRED + list(SPECIAL_NAMES))
def test_safe_versions_are_finite_with_finite_gradients(name):
    fn = default_library(special=True)[name]
    x = torch.tensor([-1e6, -3.0, -1.0, -1e-9, 0.0, 1e-9, 1.0, math.pi / 2, 3.0, 1e6], dtype=torch.float64)
    x.requires_grad_(True)
    y = fn.safe_fn(x)
    assert torch.isfinite(y).all()
    if not y.requires_grad:  # "0" is a constant
        return
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(g).all()


def test_unknown_name_did_you_mean():
    lib = default_library()
    with pytest.raises(ValueError, match="did you mean 'sin'"):
        lib["sinn"]
    with pytest.raises(ValueError, match="opt-in"):
        lib["erf"]
    with pytest.raises(ValueError, match="did you mean 'x\\^2'"):
        resolve_library(["x", "x^22"])


def test_subset_aliases_and_specials_by_name():
    lib = resolve_library(["x", "x^2", "sin", "x^0.5", "sign", "erf"])
    assert lib.names == ["x", "x^2", "sin", "sqrt", "sgn", "erf"]
    assert lib["J0".replace("J0", "x^0.5")].name == "sqrt"


def test_register_is_local_to_the_instance():
    lib = default_library()
    out = lib.register("sinh", torch.sinh, sympy.sinh, 3, parity="odd", numpy_fn=np.sinh)
    assert out is lib and "sinh" in lib
    assert "sinh" not in default_library()
    with pytest.raises(TypeError, match="unknown property"):
        lib.register("bad", torch.sinh, sympy.sinh, 3, parityy="odd")
    with pytest.raises(TypeError, match="callable"):
        lib.register("bad", 3, sympy.sinh, 3)


def test_library_is_a_mapping():
    lib = SymbolicLibrary()
    assert len(lib) == 0
    lib = default_library().subset(["sin", "x"])
    assert list(lib) == ["sin", "x"] and len(lib.without(["x"])) == 1
    assert lib.replace("sin", complexity=5)["sin"].complexity == 5 and lib["sin"].complexity == 2
