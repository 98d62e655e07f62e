"""Property tests (hypothesis, bounded by the ``ci`` profile in conftest.py) over random widths, grids, orders, dtypes.

* refine onto a nested uniform grid preserves the function (exactly representable; least squares in float64);
* save/load is exact (bit-identical state and outputs), symbolic edges included;
* the per-edge path (``forward_with_edges``, ``forward_edges``) equals the fast path;
* forward is batch-size invariant (each row depends only on itself);
* pruning edges changes a one-layer model's outputs by exactly the centred variation of the removed edges, and
  pruning with zero thresholds changes nothing;
* the symbolic formula of a fully symbolic model evaluates to the model's outputs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import sympy
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from kanlens import KAN, load, save

DTYPES = st.sampled_from([torch.float32, torch.float64])
SAFE_FUNCTIONS = ["x", "x^2", "x^3", "sin", "cos", "tanh", "exp", "gaussian", "arctan", "abs"]


@st.composite
def models(draw, max_depth: int = 3, max_width: int = 4, **fixed):
    depth = fixed.pop("depth", None) or draw(st.integers(1, max_depth))
    width = [draw(st.integers(1, max_width)) for _ in range(depth + 1)]
    kwargs = {
        "grid": draw(st.integers(1, 6)),
        "k": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 2**31 - 1)),
        "dtype": draw(DTYPES),
        "noise_scale": draw(st.sampled_from([0.5, 2.0])),
    }
    kwargs.update(fixed)
    return KAN(width=width, **kwargs)


def _inputs(model: KAN, n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, model.width[0], generator=gen, dtype=model.dtype) * 2 - 1) * scale


def _fix_random_symbolic(model: KAN, data, fraction_max: int = 3) -> None:
    """Make a few random edges symbolic with random (moderate) constants."""
    for l in range(model.depth):
        n_edges = model.width[l] * model.width[l + 1]
        for flat in data.draw(st.sets(st.integers(0, n_edges - 1), max_size=min(n_edges, fraction_max))):
            j, i = divmod(flat, model.width[l])
            params = data.draw(st.tuples(*[st.floats(-1.5, 1.5, allow_nan=False)] * 4))
            model.symbolic[l].fix(i, j, data.draw(st.sampled_from(SAFE_FUNCTIONS)), params)


def _tol(dtype: torch.dtype) -> float:
    return 1e-5 if dtype == torch.float32 else 1e-10


@given(model=models(grid_range=(-3.0, 3.0), save_act=False), mult=st.integers(2, 3), seed=st.integers(0, 1000))
def test_refine_on_nested_grid_preserves_function(model, mult, seed):
    x = _inputs(model, 64, seed)
    with torch.no_grad():
        acts = model.layer_inputs(x)
        assume(all(float(a.abs().max()) < 3.0 for a in acts[:-1]))  # every layer input inside its grid range
        y = model(x)
        fine = model.refine(model.grid * mult)
        assert fine.grid == model.grid * mult
        y_fine = fine(x)
    scale = 1.0 + float(y.abs().max())
    tol = 1e-5 if model.dtype == torch.float32 else 1e-6  # the refit is float64 least squares with a tiny ridge
    torch.testing.assert_close(y_fine, y, atol=tol * scale, rtol=0)


@given(model=models(), data=st.data())
def test_save_load_is_exact(model, data):
    _fix_random_symbolic(model, data)
    with torch.no_grad():
        model.node_bias[-1].add_(0.5)
    x = _inputs(model, 16, 0)
    with tempfile.TemporaryDirectory() as tmp:
        save(model, Path(tmp) / "m")
        loaded = load(Path(tmp) / "m")
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2
        assert (torch.equal(a, b) and a.dtype == b.dtype) if isinstance(a, torch.Tensor) else a == b
    for sa, sb in zip(model.symbolic, loaded.symbolic):
        assert sa.function_names() == sb.function_names()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


@given(model=models(), data=st.data(), seed=st.integers(0, 1000))
def test_edge_path_equals_fast_path(model, data, seed):
    _fix_random_symbolic(model, data)
    x = _inputs(model, 32, seed, scale=1.3)  # partly outside the grid: splines vanish there on both paths
    with torch.no_grad():
        fast = model(x)
        slow, edges, inputs = model.forward_with_edges(x)
        acts = model.layer_inputs(x)
        for l in range(model.depth):
            layer = model.layers[l]
            torch.testing.assert_close(inputs[l], acts[l], atol=_tol(model.dtype) * (1 + float(acts[l].abs().max())),
                                       rtol=0)
            torch.testing.assert_close(edges[l], layer.forward_edges(inputs[l]), atol=0, rtol=0)
            scale = 1.0 + float(layer(acts[l]).abs().max())
            torch.testing.assert_close(layer(acts[l]), layer.forward_edges(acts[l]).sum(-1),
                                       atol=_tol(model.dtype) * scale, rtol=0)
            full = model.edge_activations_layer(l, acts[l]).sum(-1)
            expected = (acts[l + 1] - model.node_bias[l]) / model.node_scale[l]
            torch.testing.assert_close(full, expected, atol=_tol(model.dtype) * (1 + float(full.abs().max())),
                                       rtol=0)
    torch.testing.assert_close(slow, fast, atol=_tol(model.dtype) * (1.0 + float(fast.abs().max())), rtol=0)


@given(model=models(), data=st.data(), n=st.integers(2, 40), seed=st.integers(0, 1000))
def test_forward_is_batch_size_invariant(model, data, n, seed):
    _fix_random_symbolic(model, data)
    x = _inputs(model, n, seed, scale=1.2)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=3)))
    with torch.no_grad():
        whole = model(x)
        pieces = torch.cat([model(c) for c in torch.tensor_split(x, cuts)])
        single = model(x[:1])
    atol = _tol(model.dtype) * (1.0 + float(whole.abs().max()))
    torch.testing.assert_close(pieces, whole, atol=atol, rtol=0)
    torch.testing.assert_close(single, whole[:1], atol=atol, rtol=0)


@given(model=models(depth=1, max_width=4, dtype=torch.float64), threshold=st.sampled_from([0.01, 0.05, 0.2, 1.0]),
       seed=st.integers(0, 1000))
def test_prune_edge_changes_outputs_by_exactly_the_removed_variation(model, threshold, seed):
    x = _inputs(model, 64, seed)
    with torch.no_grad():
        y = model(x)
        pruned = model.copy().prune_edge(threshold, x=x)
        removed = (model.layers[0].mask != 0) & (pruned.layers[0].mask == 0)
        edges = model.edge_activations_layer(0, x)  # (batch, out, in)
        centred = ((edges - edges.mean(0)) * removed).sum(-1)
        expected = y - model.node_scale[0] * centred
        torch.testing.assert_close(pruned(x), expected, atol=1e-10, rtol=0)
        bound = (model.node_scale[0].abs() * ((edges - edges.mean(0)).abs().amax(0) * removed).sum(-1))
        assert bool(((pruned(x) - y).abs() <= bound + 1e-10).all())


@given(model=models(max_depth=3, dtype=torch.float64), seed=st.integers(0, 1000))
def test_prune_with_zero_thresholds_changes_nothing(model, seed):
    x = _inputs(model, 32, seed)
    with torch.no_grad():
        edge_std = [model.edge_activations_layer(l, a).std(0) for l, a in enumerate(model.layer_inputs(x)[:-1])]
        assume(all(bool((s > 1e-9).all()) for s in edge_std))  # no edge is exactly constant on the data
        pruned = model.prune(node_th=0.0, edge_th=0.0, x=x)
        assert pruned.width == model.width
        torch.testing.assert_close(pruned(x), model(x), atol=1e-12, rtol=0)


@given(model=models(max_depth=2, max_width=3, dtype=torch.float64), data=st.data(), seed=st.integers(0, 1000))
def test_symbolic_formula_equals_symbolic_model(model, data, seed):
    for l in range(model.depth):
        with torch.no_grad():
            model.layers[l].mask.zero_()  # every edge symbolic: no spline left
            model.node_scale[l].copy_(torch.tensor(data.draw(st.lists(
                st.floats(0.5, 1.5), min_size=model.width[l + 1], max_size=model.width[l + 1])), dtype=model.dtype))
        for j in range(model.width[l + 1]):
            for i in range(model.width[l]):
                params = data.draw(st.tuples(*[st.floats(-1.0, 1.0, allow_nan=False)] * 4))
                model.symbolic[l].fix(i, j, data.draw(st.sampled_from(SAFE_FUNCTIONS)), params)
    x = _inputs(model, 40, seed)
    with torch.no_grad():
        y = model(x).numpy()
    exprs, variables = model.symbolic_formula()
    assert [str(v) for v in variables] == [f"x_{k + 1}" for k in range(model.width[0])]  # pykan's names
    symbols = variables
    for j, expr in enumerate(exprs):
        f = sympy.lambdify(symbols, expr, modules="numpy")
        got = np.broadcast_to(np.asarray(f(*[x[:, k].numpy() for k in range(model.width[0])]), dtype=float),
                              (x.shape[0],))
        np.testing.assert_allclose(got, y[:, j], rtol=1e-9, atol=1e-9 * (1 + np.abs(y[:, j]).max()))
