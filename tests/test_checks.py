"""Argument checks (kanlens._checks): one exception type per kind of mistake, messages that name the argument."""

import numpy as np
import pytest
import torch

from kanlens import KAN, utils
from kanlens._checks import (
    as_int,
    check_choice,
    check_edge,
    check_kwargs,
    check_positive,
    check_tensor,
    did_you_mean,
    is_int,
)


def test_as_int_types_and_values():
    assert as_int("grid", np.int64(5), 1) == 5 and type(as_int("grid", np.int64(5))) is int
    with pytest.raises(TypeError, match=r"grid must be an int, got float \(2\.5\)"):
        as_int("grid", 2.5)
    with pytest.raises(TypeError, match="got bool"):
        as_int("grid", True)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        as_int("k", 0, 1)
    assert not is_int(np.bool_(True)) and is_int(np.int32(3))


def test_choice_and_kwargs_hints():
    assert check_choice("opt", "LBFGS", ["LBFGS", "Adam"]) == "LBFGS"
    with pytest.raises(ValueError, match=r"unknown opt 'adam'; did you mean 'Adam'\?"):
        check_choice("opt", "adam", ["LBFGS", "Adam"])
    assert did_you_mean("zzz", ["sin", "cos"]) == " (choices: sin, cos)"

    def f(a, *, steps=1, **kwargs):
        check_kwargs(f, kwargs, ignored=("a_range",))

    f(1, a_range=(0, 1))
    with pytest.raises(TypeError, match=r"f\(\) got an unexpected keyword argument 'step'; did you mean 'steps'\?"):
        f(1, step=3)


def test_check_tensor_errors():
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor, got list"):
        check_tensor("x", [1.0])
    with pytest.raises(TypeError, match="floating dtype"):
        check_tensor("x", torch.ones(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x must be 2-D, got shape \(3,\)"):
        check_tensor("x", torch.ones(3), ndim=2)
    with pytest.raises(ValueError, match="x must have 2 features"):
        check_tensor("x", torch.ones(4, 3), last_dim=2)
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_tensor("x", torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="empty"):
        check_tensor("x", torch.ones(0, 2))


def test_check_edge_kinds_of_mistake():
    model = KAN(width=[2, 3, 1], seed=0)
    check_edge(model, 1, 2, 0)
    check_edge(model, np.int64(0), 1, 2)
    with pytest.raises(TypeError, match=r"i must be an int, got float"):
        check_edge(model, 0, 1.0, 0)
    with pytest.raises(IndexError, match="l = 2 is out of range: the model has 2 layers"):
        check_edge(model, 2, 0, 0)
    with pytest.raises(IndexError, match="j = 3 is out of range: layer 0 has 3 outputs"):
        check_edge(model, 0, 0, 3)


def test_check_positive():
    assert check_positive("scale", np.float32(0.5)) == 0.5
    assert check_positive("beta", 0, allow_zero=True) == 0.0
    with pytest.raises(TypeError, match="scale must be a number, got str"):
        check_positive("scale", "1")
    with pytest.raises(ValueError, match=r"scale must be > 0 and finite, got 0\.0"):
        check_positive("scale", 0.0)
    with pytest.raises(ValueError, match="finite"):
        check_positive("scale", float("inf"))


def test_utils_reexports_the_same_functions():
    for name in ("as_int", "check_choice", "check_device", "check_kwargs", "check_tensor", "did_you_mean", "is_int"):
        assert getattr(utils, name) is getattr(__import__("kanlens._checks", fromlist=[name]), name)
