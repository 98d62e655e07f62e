"""Multiplication nodes (pykan's MultKAN): layout and errors, fast path vs per-edge path vs fused stack, gradients,
training with sparsity and grid updates, formulas for any arity, attribution and pruning, save/load, graph, plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from kanlens import KAN, create_dataset, ex_round, load
from kanlens.layers.stack import stack_apply
from kanlens.scores import layer_stats

WIDTHS = [
    ([2, [0, 1], 1], 2),  # pykan's hello-MultKAN shape
    ([3, [2, 2], 1], 3),  # sum and product nodes in one layer, arity 3
    ([3, [1, 2], [1, 1], 2], [[], [2, 3], [2], []]),  # per-node arities, products in two layers
    ([2, [1, 1], [0, 2]], 2),  # products in the output layer
]


def _x(n: int, d: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=gen, dtype=dtype) * 1.8 - 0.9


def _perturb_affine(model: KAN, seed: int = 0) -> None:
    """Non-trivial node and subnode affine maps, so every parameter takes part."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        subnode = [*model.subnode_scale, *model.subnode_bias] if model.node_layout.has_mult else []
        for p in [*model.node_scale, *model.node_bias, *subnode]:
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _model(width, arity, seed=0, **kw) -> KAN:
    model = KAN(width=width, mult_arity=arity, seed=seed, dtype=torch.float64, **kw)
    _perturb_affine(model, seed)
    return model


def _naive(model: KAN, x: torch.Tensor) -> torch.Tensor:
    """Oracle: per-edge activations summed into subnodes, then every product written out node by node."""
    lay = model.node_layout
    for l in range(model.depth):
        sub = model.edge_activations_layer(l, x).sum(-1)
        sub = model.subnode_scale[l] * sub + model.subnode_bias[l]
        cols = []
        for group in lay.groups(l + 1):
            v = sub[:, group[0]]
            for s in group[1:]:
                v = v * sub[:, s]
            cols.append(v)
        x = model.node_scale[l] * torch.stack(cols, 1) + model.node_bias[l]
    return x


# ---------------------------------------------------------------------------------------------------- layout
def test_width_and_subnodes_follow_pykan():
    model = KAN(width=[2, [5, 2], 1], mult_arity=2)
    assert model.width == [[2, 0], [5, 2], [1, 0]]
    assert model.width_in == [2, 7, 1] and model.width_out == [2, 9, 1]
    assert model.n_sum == [5] and model.n_mult == [2]
    assert model.layers[0].coef.shape[:2] == (9, 2) and model.layers[1].coef.shape[:2] == (1, 7)
    assert model(torch.rand(4, 2)).shape == (4, 1)
    per_node = KAN(width=[2, [0, 2], 1], mult_arity=[[], [2, 3], []])
    assert per_node.width_out == [2, 5, 1] and per_node.mult_arity == [[], [2, 3], []]
    plain = KAN(width=[2, 5, 1])
    assert plain.width == [2, 5, 1] and not hasattr(plain, "subnode_scale")
    assert KAN(width=[[2, 0], [3, 0], [1, 0]]).width == [2, 3, 1]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"width": [[2, 1], 1]}, ValueError, r"width\[0\].*multiplication"),
        ({"width": [2, [1, 2, 3], 1]}, ValueError, r"\[n_sum, n_mult\]"),
        ({"width": [2, [0, 0], 1]}, ValueError, "at least one node"),
        ({"width": [2, [1, -1], 1]}, ValueError, ">= 0"),
        ({"width": [2, [1.5, 1], 1]}, TypeError, "must be an int"),
        ({"width": [2, [1, 1], 1], "mult_arity": 1}, ValueError, "mult_arity must be >= 2"),
        ({"width": [2, [1, 1], 1], "mult_arity": 2.0}, TypeError, "mult_arity must be an int"),
        ({"width": [2, [1, 1], 1], "mult_arity": [[2]]}, ValueError, "one list per width entry"),
        ({"width": [2, [1, 2], 1], "mult_arity": [[], [2], []]}, ValueError, r"mult_arity\[1\]"),
        ({"width": [2, [1, 1], 1], "mult_arity": [[], [2], [3]]}, ValueError, r"mult_arity\[2\]"),
    ],
)
def test_bad_layouts_are_refused_clearly(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        KAN(**kwargs)


# ---------------------------------------------------------------------------------------------------- paths agree
@pytest.mark.parametrize(("width", "arity"), WIDTHS)
def test_fast_path_per_edge_path_and_fused_stack_agree(width, arity):
    model = _model(width, arity)
    x = _x(64, model.width_in[0])
    out = model(x)
    torch.testing.assert_close(out, _naive(model, x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.forward_with_edges(x)[0], out, rtol=1e-12, atol=1e-12)
    assert model.stack_args() is not None
    fused, mags = model.forward_with_magnitudes(x)
    torch.testing.assert_close(fused, out, rtol=1e-12, atol=1e-12)
    for l, mag in enumerate(mags):
        torch.testing.assert_close(mag, model.layers[l].forward_edges(model.acts[l]).abs().mean(0))


@pytest.mark.parametrize(("width", "arity"), WIDTHS[1:3])
def test_fused_stack_gradients_match_autograd(width, arity):
    model = _model(width, arity, affine_trainable=True)
    cfg, params = model.stack_args()
    x = _x(9, model.width_in[0], seed=2).requires_grad_()
    leaves = [p.detach().clone().requires_grad_() for p in params]

    def f(x, *p):
        out, mags = stack_apply(x, cfg, p)
        return out.sum(1) + sum(m.sum() for m in mags)

    assert torch.autograd.gradcheck(f, (x, *leaves))
    assert torch.autograd.gradgradcheck(lambda a: f(a, *leaves), (x,))


def test_product_gradient_with_a_zero_factor():
    """The backward multiplies the other factors (no division), so a factor that is exactly 0 is fine."""
    model = _model([2, [0, 1], 1], 3, affine_trainable=True)
    with torch.no_grad():
        model.subnode_scale[0][1] = 0.0
        model.subnode_bias[0][1] = 0.0  # the second factor is exactly 0 on every input
    x = _x(8, 2)
    cfg, params = model.stack_args()
    out = stack_apply(x, cfg, params)[0]
    grads = torch.autograd.grad(out.sum(), [model.subnode_bias[0]])
    ref = torch.autograd.grad(_naive(model, x).sum(), [model.subnode_bias[0]])
    torch.testing.assert_close(grads[0], ref[0])
    assert bool(torch.isfinite(grads[0]).all()) and float(grads[0][1].abs()) > 1e-6


class _Shapes(TorchDispatchMode):
    """Records the shape of every tensor an op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def _has_dims(shape: tuple[int, ...], dims: tuple[int, ...]) -> bool:
    rest = list(shape)
    for d in dims:
        if d not in rest:
            return False
        rest.remove(d)
    return True


def test_fast_path_builds_no_batch_out_in_tensor():
    """Forward, backward and a training step without sparsity never form a ``(batch, out, in)`` tensor (in any
    axis order) for any layer; the per-edge path does (so the check can fail)."""
    model = KAN(width=[3, [6, 2], 2], mult_arity=4, grid=3, k=3, seed=0)  # sizes unlike any basis tensor
    batch = 64
    x = torch.rand(batch, 3) * 2 - 1
    edge_dims = [(batch, model.width_out[l + 1], model.width_in[l]) for l in range(model.depth)]
    f = lambda t: torch.cat([t[:, [0]] * t[:, [1]] * t[:, [2]], t[:, [0]]], 1)  # noqa: E731
    data = create_dataset(f, n_var=3, train_num=batch, test_num=batch)
    with _Shapes() as rec:
        model(x).sum().backward()
        model.fit(data, steps=1, update_grid=False, progress=False)
    assert len(rec.shapes) > 50
    assert not [s for s in rec.shapes for dims in edge_dims if _has_dims(s, dims)]
    with _Shapes() as per_edge:
        model.forward_with_edges(x)
    assert all(any(_has_dims(s, dims) for s in per_edge.shapes) for dims in edge_dims)


# ---------------------------------------------------------------------------------------------------- training
def test_fit_with_sparsity_and_grid_updates():
    data = create_dataset(lambda t: t[:, [0]] * t[:, [1]] + t[:, [2]], n_var=3, train_num=200, seed=0)
    model = KAN(width=[3, [2, 1], 1], seed=0)
    before = torch.sqrt(torch.mean((model(data["test_input"]) - data["test_label"]) ** 2)).item()
    h = model.fit(data, steps=12, lamb=0.002, grid_update_num=4, stop_grid_update_step=10, progress=False)
    assert h.grid_updates == [0, 2, 4, 6, 8] and not h.events
    assert h["test_loss"][-1] < 0.05 < before
    assert all(r > 0 for r in h["reg"])
    h = model.fit(data, steps=2, lamb=0.002, reg_metric="std_n", update_grid=False, progress=False)  # per-edge path
    assert h["test_loss"][-1] < 0.05 and all(r > 0 for r in h["reg"])


def test_fused_sparsity_objective_equals_autograd_objective():
    """Training with the hand-written stack (default MSE) and with an equal custom loss (autograd path) agree."""
    data = create_dataset(lambda t: t[:, [0]] * t[:, [1]], n_var=2, train_num=100, seed=1, dtype=torch.float64)
    runs = []
    for loss_fn in (None, lambda p, y: torch.mean((p - y) ** 2)):
        model = _model([2, [1, 1], 1], 2, seed=3)
        model.fit(data, steps=2, lamb=0.01, update_grid=False, loss_fn=loss_fn, progress=False)
        runs.append(model(data["test_input"]))
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-7, atol=1e-9)


def _formula_close(expr, variables, target) -> bool:
    """``expr`` equals ``target(x1, x2, ...)`` after rounding, with its symbols replaced by position."""
    plain = sympy.symbols(f"v1:{len(variables) + 1}")
    got = ex_round(sympy.expand(expr.xreplace(dict(zip(variables, plain)))), 3)
    return sympy.simplify(got - target(*plain)) == 0


def test_hello_multkan_flow():
    """pykan's tutorial: x1*x2 with one multiplication node, fit, auto_symbolic, refit, formula."""
    f = lambda x: x[:, [0]] * x[:, [1]]  # noqa: E731 (pykan's style)
    dataset = create_dataset(f, n_var=2, seed=0)
    model = KAN(width=[2, [0, 1], 1], grid=5, k=3, seed=0)
    model.fit(dataset, opt="LBFGS", steps=20, progress=False)
    model.auto_symbolic()
    model.fit(dataset, opt="LBFGS", steps=20, progress=False)
    formulas, variables = model.symbolic_formula()
    assert _formula_close(formulas[0], variables, lambda a, b: a * b)


# ---------------------------------------------------------------------------------------------------- formulas
_FUNCS = ["x", "x^2", "sin", "tanh", "exp", "cos", "x^3"]


def _all_symbolic(model: KAN, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for l in range(model.depth):
        for j in range(model.width_out[l + 1]):
            for i in range(model.width_in[l]):
                name = _FUNCS[int(torch.randint(len(_FUNCS), (1,), generator=gen))]
                a, b, c, d = (torch.rand(4, generator=gen, dtype=torch.float64) * 1.4 - 0.7).tolist()
                model.fix_symbolic(l, i, j, name, params=(a, b, c, d))


@pytest.mark.parametrize(("width", "arity"), [([3, [1, 2], 1], 2), ([3, [1, 2], 1], 3), *WIDTHS[2:]])
def test_symbolic_formula_equals_model_for_any_arity(width, arity):
    """pykan's #404: its formula multiplies the wrong subnodes for arity > 2; ours must equal model(x)."""
    model = _model(width, arity, seed=5)
    _all_symbolic(model, seed=6)
    x = _x(1000, model.width_in[0], seed=7)
    formulas, variables = model.symbolic_formula()
    for k, expr in enumerate(formulas):
        fn = sympy.lambdify(variables, expr, "numpy")
        got = torch.as_tensor(fn(*x.T.numpy())) * torch.ones(1000, dtype=torch.float64)
        torch.testing.assert_close(got, model(x)[:, k].detach(), rtol=0, atol=1e-5)


def test_auto_symbolic_fixes_every_subnode_edge():
    model = KAN(width=[2, [1, 1], 1], seed=0, dtype=torch.float64)
    x = _x(200, 2)
    model(x)
    table = model.auto_symbolic(lib=["x", "x^2", "sin"])
    assert len(table) == 3 * 2 + 2  # 3 subnodes x 2 inputs, then 2 nodes -> 1 output
    assert all(bool((layer.mask == 0).all()) for layer in model.layers)
    expr, variables = model.symbolic_formula()
    fn = sympy.lambdify(variables, expr[0], "numpy")
    torch.testing.assert_close(torch.as_tensor(fn(*x.T.numpy())), model(x)[:, 0].detach(), rtol=0, atol=1e-9)


def test_symbolic_regression_refuses_multiplication_nodes_clearly():
    from kanlens import symbolic_regression

    data = create_dataset(lambda t: t[:, [0]] * t[:, [1]], n_var=2, train_num=20, test_num=20)
    with pytest.raises(ValueError, match=r"sum nodes only.*auto_symbolic"):
        symbolic_regression(data, [2, [0, 1], 1])


# ---------------------------------------------------------------------------------------------------- attribution
def test_attribution_gives_each_factor_the_product_score():
    model = _model([2, [1, 1], 1], 2, seed=1)
    x = _x(300, 2)
    attr = model.attribute(x)
    assert [s.shape for s in attr.node_scores] == [(2,), (2,), (1,)]
    assert [s.shape for s in attr.edge_scores] == [(3, 2), (1, 2)]
    # the two factors (subnodes 1, 2) of the product node share its score, each split over its edges
    prod_score = attr.node_scores[1][1]
    _, edge_std, sub_std = layer_stats(model, x)
    expected = prod_score * edge_std[0][1:] / (sub_std[0][1:, None] + 1e-4)
    torch.testing.assert_close(attr.edge_scores[0][1:], expected)


@torch.no_grad()
def _dead_parts(model: KAN) -> None:
    """Sum node 3: no incoming edge (constant); product node 5: no outgoing edge (unused); one factor edge 0."""
    sub_of = model.node_layout.groups(1)
    for s in sub_of[3]:
        model.layers[0].scale_base[s] = 0.0
        model.layers[0].scale_sp[s] = 0.0
    model.layers[1].scale_base[:, 5] = 0.0
    model.layers[1].scale_sp[:, 5] = 0.0
    model.layers[0].scale_base[sub_of[4][1], 2] = 0.0
    model.layers[0].scale_sp[sub_of[4][1], 2] = 0.0


def test_prune_keeps_output_and_removes_products_as_units():
    """A [3, [4, 2], 1] model after training: dead parts go, the output stays within 1e-4."""
    data = create_dataset(lambda t: t[:, [0]] * t[:, [1]] + torch.sin(t[:, [2]]), n_var=3, train_num=300, seed=0)
    model = KAN(width=[3, [4, 2], 1], mult_arity=2, seed=0)
    model.fit(data, steps=5, update_grid=False, progress=False)
    _dead_parts(model)
    x = data["train_input"]
    y = model(x)
    small = model.prune(node_th=1e-6, edge_th=1e-6, x=x)
    assert small.width == [[3, 0], [3, 1], [1, 0]]
    assert small.layers[0].coef.shape[:2] == (5, 3)  # 3 sum subnodes + the 2 factors of the kept product
    assert float((small(x) - y).abs().max().detach()) < 1e-4
    assert float(small.layers[0].mask[3 + 1, 2]) == 0.0  # the zero factor edge is gone too


@given(
    hidden=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)).filter(lambda t: sum(t) > 0), min_size=1,
                    max_size=2),
    arity=st.integers(2, 3),
    seed=st.integers(0, 100),
    zero_frac=st.floats(0.0, 0.8),
)
def test_prune_with_zero_thresholds_preserves_outputs(hidden, arity, seed, zero_frac):
    """Property: zero out random edges, prune everything with score 0 -> same outputs; product nodes stay whole."""
    width = [2, *[list(h) for h in hidden], 1]
    model = _model(width, arity, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            zero = torch.rand(layer.mask.shape, generator=gen) < zero_frac
            layer.scale_base[zero] = 0.0
            layer.scale_sp[zero] = 0.0
    x = _x(50, 2, seed=seed)
    new = model.prune(node_th=0.0, edge_th=0.0, x=x)
    torch.testing.assert_close(new(x), model(x), atol=1e-9, rtol=0)
    assert all(1 <= w <= w0 for w, w0 in zip(new.width_in, model.width_in))
    assert all(a == arity for layer in new.node_layout.arity for a in layer)
    assert [layer.coef.shape[0] for layer in new.layers] == new.width_out[1:]


def test_prune_node_to_a_plain_kan_merges_the_affine_maps():
    model = _model([3, [2, 1], 1], 2, seed=2)
    with torch.no_grad():
        model.layers[1].scale_base[:, 2] = 0.0
        model.layers[1].scale_sp[:, 2] = 0.0  # the product node feeds nothing
    x = _x(200, 3)
    small = model.prune_node(1e-6, x=x)
    assert small.width == [3, 2, 1] and not hasattr(small, "subnode_scale")
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-12)
    assert model.prune_node(active_neurons_id=[[0, 2]], x=x).width == [[3, 0], [1, 1], [1, 0]]


# ---------------------------------------------------------------------------------------------------- io, refine, graph
@pytest.mark.parametrize(("width", "arity"), WIDTHS[2:4])
def test_save_load_round_trip_is_exact(tmp_path, width, arity):
    model = _model(width, arity, seed=4)
    model.fix_symbolic(0, 0, 1, "sin", params=(1.0, 0.2, 0.5, 0.0))
    x = _x(50, model.width_in[0])
    path = model.save(tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())["config"]
    assert config["width"] == model.width and config["mult_arity"] == arity
    back = load(path)
    assert back.width == model.width and back.mult_arity == arity
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


def test_plain_checkpoint_config_has_no_mult_arity():
    assert "mult_arity" not in KAN(width=[2, 3, 1]).config.to_dict()


def test_refine_keeps_the_function():
    model = _model([2, [1, 2], 1], 2, seed=0, noise_scale=0.2)
    x = _x(200, 2)
    y = model(x)
    fine = model.refine(12)
    assert fine.width == model.width and fine.layers[0].coef.shape == (5, 2, 15)
    assert float(((fine(x) - y).abs().max() / (y.max() - y.min())).detach()) < 1e-3


def test_to_networkx_has_subnodes_and_operations():
    model = KAN(width=[2, [1, 1], 1], mult_arity=3, seed=0)
    graph = model.to_networkx(x=_x(100, 2, dtype=torch.float32))
    assert graph.number_of_nodes() == sum(model.width_in) + sum(model.width_out[1:])
    assert graph.nodes["1_1"]["op"] == "mult" and graph.nodes["1_0"]["op"] == "sum"
    into_product = [u for u, v, d in graph.in_edges("1_1", data=True) if d["mode"] == "mult"]
    assert sorted(into_product) == ["1_s1", "1_s2", "1_s3"]
    assert graph.in_degree("1_s2") == 2 and graph.graph["width"] == "[2,0],[1,1],[1,0]"


def test_plot_draws_a_product_symbol(tmp_path):
    pytest.importorskip("matplotlib")
    model = KAN(width=[2, [1, 2], 1], seed=0)
    fig = model.plot(_x(100, 2, dtype=torch.float32), path=tmp_path / "mult.png")
    gids = {a.get_gid() for ax in fig.axes for a in ax.get_children()}
    assert {"mult-1-1", "mult-1-2"} <= gids and "mult-1-0" not in gids
    assert {"edge-0-0-4", "edge-1-2-0"} <= {ln.get_gid() for ln in fig.axes[0].lines}
    assert (tmp_path / "mult.png").stat().st_size > 1000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_fused_stack_and_fit_match_cpu():
    model = _model([3, [1, 2], [1, 1], 2], [[], [2, 3], [2], []], seed=8)
    x = _x(64, 3)
    gpu = model.copy().to("cuda")
    torch.testing.assert_close(gpu(x.cuda()).cpu(), model(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gpu.forward_with_magnitudes(x.cuda())[0].cpu(), model(x), rtol=1e-10, atol=1e-10)
    data = create_dataset(lambda t: t[:, :2] * t[:, [2]], n_var=3, train_num=100, seed=0, dtype=torch.float64)
    history = gpu.fit(data, steps=3, lamb=0.01, progress=False)
    assert len(history["train_loss"]) == 3 and history["train_loss"][-1] < history["train_loss"][0]


def test_pykan_node_surgery_refuses_product_nodes_and_edge_tools_index_subnodes() -> None:
    model = KAN(width=[2, [1, 1], 1], mult_arity=2, grid=3, k=3, seed=0)
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model(x)
    for call in (lambda: model.remove_node(1, 0), lambda: model.swap(1, 0, 1), lambda: model.expand_depth()):
        with pytest.raises(NotImplementedError, match="multiplication nodes"):
            call()
    xs, ys = model.get_fun(0, 1, 2, plot=False)  # subnode 2: the product node's second factor
    assert xs.shape == ys.shape == (50,) and np.all(np.diff(xs) >= 0)
    with pytest.raises(IndexError, match="j = 3 is out of range: layer 0 has 3 outputs"):
        model.get_fun(0, 0, 3, plot=False)
    model.remove_edge(0, 1, 2)  # edge-level tools work on subnodes
    assert float(model.layers[0].mask[2, 1]) == 0.0
