"""Scores, attribution and pruning: oracles on tiny models, exact folding, and the fit -> prune -> retrain loop."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kanlens import KAN, create_dataset, pruning


def toy_formula(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def _rmse(model: KAN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.sqrt(torch.mean((model(x) - y) ** 2)))


@torch.no_grad()
def _zero_edge(model: KAN, l: int, j: int, i: int) -> None:
    """Make edge (l, j <- i) exactly zero on every input, keeping its mask on."""
    model.layers[l].scale_base[j, i] = 0.0
    model.layers[l].scale_sp[j, i] = 0.0


def _data(n_in: int, n: int = 64, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, n_in, generator=g, dtype=dtype) * 2 - 1


# ---------------------------------------------------------------------------------------------------- scores
def test_edge_scores_match_definition():
    model = KAN([3, 4, 2], seed=1)
    x = _data(3)
    scores = model.edge_scores(x)
    acts = model.layer_inputs(x)
    assert [tuple(s.shape) for s in scores] == [(4, 3), (2, 4)]
    for l in range(model.depth):
        edges = model.layers[l].forward_edges(acts[l]).detach()
        for j in range(model.width[l + 1]):
            for i in range(model.width[l]):
                want = edges[:, j, i].std() / (acts[l][:, i].std() + 0.1)
                torch.testing.assert_close(scores[l][j, i], want, atol=1e-6, rtol=1e-5)


@torch.no_grad()
def _naive_attribution(model: KAN, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Loop-by-loop oracle of pykan's attribute: scores flow from the outputs back through edge spread shares."""
    acts = model.layer_inputs(x)
    width = model.width
    node = [None] * (model.depth + 1)
    edge = [None] * model.depth
    node[-1] = torch.ones(width[-1], dtype=x.dtype)
    for l in range(model.depth - 1, -1, -1):
        e = model.edge_activations_layer(l, acts[l])
        es = torch.zeros(width[l + 1], width[l], dtype=x.dtype)
        for j in range(width[l + 1]):
            total = float(e[:, j, :].sum(-1).std())
            for i in range(width[l]):
                es[j, i] = node[l + 1][j] * float(e[:, j, i].std()) / (total + 1e-4)
        edge[l] = es
        node[l] = es.sum(0)
    return node, edge


def test_attribution_matches_naive_oracle():
    model = KAN([3, 4, 3, 2], seed=2)
    x = _data(3)
    a = model.attribute(x)
    node, edge = _naive_attribution(model, x)
    for got, want in zip(a.node_scores, node):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    for got, want in zip(a.edge_scores, edge):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert [s.shape for s in model.node_scores(x)] == [(3,), (4,), (3,), (2,)]
    torch.testing.assert_close(model.feature_score(x), node[0])
    torch.testing.assert_close(a.node_scores[-1], torch.ones(2))


def test_attribution_invariant_to_node_scale():
    model = KAN([2, 3, 1], seed=0)
    x = _data(2)
    before = model.attribute(x).node_scores
    with torch.no_grad():
        model.node_scale[1].mul_(7.0)
        model.node_bias[1].add_(3.0)
    after = model.attribute(x).node_scores
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b)


def test_input_feeding_only_unimportant_edges_scores_low():
    """x3 feeds a big edge into a hidden node that the output ignores: magnitude high, attribution zero."""
    model = KAN([3, 2, 1], seed=0)
    with torch.no_grad():
        model.layers[0].mask[0, 2] = 0.0  # node 0 does not see x3
        model.layers[0].mask[1, :2] = 0.0  # node 1 sees only x3 ...
        model.layers[0].scale_base[1, 2] = 5.0
    _zero_edge(model, 1, 0, 1)  # ... and node 1 is ignored by the output
    x = _data(3)
    assert float(model.edge_scores(x)[0][1, 2]) > 0.5
    fs = model.feature_score(x)
    assert float(fs[2]) == 0.0
    assert float(fs[:2].min()) > 0.05


def test_attribute_from_a_hidden_node():
    model = KAN([3, 4, 2], seed=3)
    x = _data(3)
    full = model.attribute(x)
    q = model.attribute(x, l=1, i=2)
    assert len(q.node_scores) == 2 and q.node_scores_all[0].shape == (1, 3)
    # pykan: the start node is weighted by its own overall score
    assert float(q.node_scores[1].sum()) == pytest.approx(float(full.node_scores[1][2]), rel=1e-6)
    qa = model.attribute(x, l=1)
    torch.testing.assert_close(qa.node_scores_all[0][2], q.node_scores[0])
    torch.testing.assert_close(model.attribute(x, l=2).node_scores[0], full.node_scores[0])
    one = model.attribute(x, l=1, i=2, out_score=torch.ones(4))
    torch.testing.assert_close(one.node_scores[0] * full.node_scores[1][2], q.node_scores[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"l": 0}, "l must be"), ({"l": 3}, "l must be"), ({"i": 0}, "pass l"), ({"l": 1, "i": 4}, "i must be"),
     ({"out_score": torch.ones(3)}, "out_score must have 2")],
)
def test_attribute_bad_arguments(kwargs, match):
    model = KAN([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match=match):
        model.attribute(_data(3), **kwargs)


def test_scores_need_data():
    model = KAN([2, 3, 1], seed=0)
    for fn in (model.edge_scores, model.node_scores, model.feature_score, model.attribute, model.prune):
        with pytest.raises(ValueError, match="pass x="):
            fn()
    with pytest.raises(ValueError, match="at least 2 samples"):
        model.edge_scores(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="3 features"):
        KAN([3, 2, 1]).attribute(torch.zeros(4, 2))
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
        model.attribute([[0.0, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        model.attribute(torch.full((4, 2), float("nan")))


def test_scores_default_to_last_batch(small_model):
    x = small_model.acts[0]
    for got, want in zip(small_model.node_scores(), small_model.node_scores(x)):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_scores_identical_on_copy_fast_model_and_rng_state():
    model = KAN([3, 5, 2], seed=4)
    x = _data(3)
    ref_a, ref_e = model.attribute(x), model.edge_scores(x)
    fast = model.copy().speed()
    rng = torch.get_rng_state()
    torch.manual_seed(12345)
    torch.rand(10)
    a, e = fast.attribute(x), fast.edge_scores(x)
    for got, want in zip(a.node_scores + a.edge_scores + e, ref_a.node_scores + ref_a.edge_scores + ref_e):
        assert torch.equal(got, want)
    torch.set_rng_state(rng)
    state = torch.get_rng_state()
    model.attribute(x)
    model.prune(x=x)
    assert torch.equal(torch.get_rng_state(), state), "scores/pruning must not consume the global RNG"


# ---------------------------------------------------------------------------------------------------- exact folding
def test_prune_zero_edge_changes_outputs_below_1e6():
    model = KAN([2, 5, 1], seed=0)
    x = _data(2, 200)
    _zero_edge(model, 0, 3, 1)
    before = model(x).detach()
    kept = model.copy()
    new = model.prune_edge(threshold=0.0, x=x)
    assert new is model, "prune_edge masks in place, as pykan's"
    assert float(new.layers[0].mask[3, 1]) == 0.0
    assert int(sum(int((layer.mask == 0).sum()) for layer in new.layers)) == 1
    assert float((new(x).detach() - before).abs().max()) < 1e-6
    assert float(kept.layers[0].mask[3, 1]) == 1.0, "a copy taken before must not change"


def test_removed_edge_mean_is_folded_into_bias():
    """Removing an edge changes its output by exactly minus its variation (its mean stays in the bias)."""
    model = KAN([3, 2], seed=5)  # one layer: out_j = node_scale_j * sum_i phi_ji + node_bias_j
    with torch.no_grad():
        model.node_scale[0].copy_(torch.tensor([1.7, -0.6]))
    x = _data(3, 128)
    scores = model.attribute(x).edge_scores[0]
    j, i = divmod(int(torch.argmin(scores)), 3)
    phi = model.edge_activations(x)[0][:, j, i].detach()
    assert float(phi.mean().abs()) > 1e-3  # a real constant is at stake
    new = model.copy().prune_edge(threshold=float(scores[j, i]) + 1e-9, x=x)
    assert int((new.layers[0].mask == 0).sum()) == 1 and float(new.layers[0].mask[j, i]) == 0.0
    want = model(x).detach()
    want[:, j] -= float(model.node_scale[0][j]) * (phi - phi.mean())
    torch.testing.assert_close(new(x), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(new.node_bias[0][j], model.node_scale[0][j] * phi.mean())


def test_prune_node_folds_dropped_node_mean():
    model = KAN([2, 3, 1], seed=0)
    x = _data(2, 128)
    out_edges = model.edge_activations(x)[1][:, 0, 1]  # node 1 -> output
    new = model.prune_node(x=x, active_neurons_id=[[0, 2]])
    assert new.width == [2, 2, 1]
    want = model(x).detach() - (out_edges - out_edges.mean())[:, None]
    torch.testing.assert_close(new(x), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(new.layers[0].coef, model.layers[0].coef[[0, 2]])
    torch.testing.assert_close(new.layers[1].coef, model.layers[1].coef[:, [0, 2]])


@given(
    width=st.lists(st.integers(1, 4), min_size=3, max_size=4),
    seed=st.integers(0, 100),
    zero_frac=st.floats(0.0, 0.8),
)
def test_prune_with_zero_thresholds_preserves_outputs(width, seed, zero_frac):
    """Property: zero out random edges, prune everything with score 0 -> same outputs, no zero edge left."""
    model = KAN(width, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    for l in range(model.depth):
        for j in range(width[l + 1]):
            for i in range(width[l]):
                if float(torch.rand((), generator=g)) < zero_frac:
                    _zero_edge(model, l, j, i)
    x = _data(width[0], 50, seed, torch.float64)
    new = model.prune(node_th=0.0, edge_th=0.0, x=x)
    torch.testing.assert_close(new(x), model(x), atol=1e-9, rtol=0)
    assert new.width[0] == width[0] and new.width[-1] == width[-1]
    assert all(1 <= w <= w0 for w, w0 in zip(new.width, width))
    if min(new.width[1:-1], default=2) > 1:  # no hidden layer was forced to keep a dead node
        for l, s in enumerate(new.attribute(x).edge_scores):
            active = new.layers[l].mask != 0
            assert bool((s[active] > 0).all()), "every remaining edge matters on the data"


def test_prune_drops_constant_hidden_node_exactly():
    model = KAN([2, 3, 1], seed=1)
    for i in range(2):
        _zero_edge(model, 0, 1, i)  # hidden node 1 is a constant ...
    with torch.no_grad():
        model.node_bias[0][1] = 0.4  # ... that feeds a non-zero constant downstream
    x = _data(2, 100)
    new = model.prune(node_th=0.0, edge_th=0.0, x=x)
    assert new.width == [2, 2, 1]
    torch.testing.assert_close(new(x), model(x), atol=1e-6, rtol=0)


def test_prune_single_layer_model_float64():
    model = KAN([3, 2], seed=0, dtype=torch.float64)
    _zero_edge(model, 0, 1, 2)
    x = _data(3, 40, dtype=torch.float64)
    new = model.prune(node_th=0.0, edge_th=0.0, x=x)
    assert new.width == [3, 2] and new.dtype == torch.float64
    assert float(new.layers[0].mask[1, 2]) == 0.0 and int(new.layers[0].mask.sum()) == 5
    torch.testing.assert_close(new(x), model(x), atol=1e-12, rtol=0)
    assert new.prune_input(threshold=0.0, x=x).width == [3, 2]  # x3 still feeds output 1


def test_prune_keeps_one_node_per_hidden_layer():
    model = KAN([2, 3, 1], seed=0)
    x = _data(2)
    new = model.prune(node_th=1e9, edge_th=0.0, x=x)
    assert new.width == [2, 1, 1]
    assert new(x).shape == (64, 1)


def test_prune_node_bad_arguments():
    model = KAN([2, 3, 2, 1], seed=0)
    x = _data(2)
    with pytest.raises(ValueError, match="one list per hidden layer"):
        model.prune_node(x=x, active_neurons_id=[[0]])
    with pytest.raises(ValueError, match=r"active_neurons_id\[1\]"):
        model.prune_node(x=x, active_neurons_id=[[0], [5]])
    for bad in (-1.0, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="threshold"):
            model.prune_node(bad, x=x)
    with pytest.raises(ValueError, match="edge_th"):
        model.prune(edge_th=-1, x=x)
    with pytest.raises(ValueError, match="node_th"):
        model.prune(node_th=float("inf"), x=x)


def test_pruned_model_keeps_symbolic_edges():
    model = KAN([2, 3, 1], seed=0)
    with torch.no_grad():
        model.layers[0].mask[2, 0] = 0.0
    model.symbolic[0].fix(0, 2, "sin", (2.0, 0.1, 0.5, 0.3))
    _zero_edge(model, 0, 1, 0)
    _zero_edge(model, 0, 1, 1)  # hidden node 1 is constant -> dropped; node 2 (symbolic edge) moves to index 1
    x = _data(2, 100)
    new = model.prune(node_th=0.0, edge_th=0.0, x=x)
    assert new.width == [2, 2, 1]
    assert new.symbolic[0].function_name(0, 1) == "sin"
    torch.testing.assert_close(new(x), model(x), atol=1e-6, rtol=0)
    # removing the symbolic edge unfixes it and folds its mean
    cut = pruning.prune_edge(new, threshold=float(new.attribute(x).edge_scores[0][1, 0]) + 1e-9, x=x)
    assert not cut.symbolic[0].is_active() or (0, 1) not in cut.symbolic[0].fixed_edges()


# ---------------------------------------------------------------------------------------------------- prune_input
def test_prune_input_remembers_ids_and_names():
    model = KAN([4, 3, 1], seed=0, input_names=["a", "b", "c", "d"])
    for j in range(3):
        _zero_edge(model, 0, j, 1)
        _zero_edge(model, 0, j, 3)
    x = _data(4, 80)
    new = model.prune_input(threshold=0.0, x=x)
    assert new.width == [2, 3, 1]
    assert new.config.input_ids == [0, 2] and new.config.input_names == ["a", "c"]
    torch.testing.assert_close(new(x[:, new.config.input_ids]), model(x), atol=1e-6, rtol=0)
    again = new.prune_input(x=x[:, [0, 2]], active_inputs=[1])
    assert again.config.input_ids == [2] and again.config.input_names == ["c"]
    assert model.config.input_ids is None, "the original config must not change"
    with pytest.raises(ValueError, match="active_inputs"):
        model.prune_input(x=x, active_inputs=[4])


def _sparse_fit(f, n_var: int, hidden: int, steps: int, num: int) -> KAN:
    ds = create_dataset(f, n_var=n_var, train_num=num, test_num=num, seed=0)
    model = KAN([n_var, hidden, 1], seed=0)
    model.fit(ds, opt="LBFGS", steps=steps, lamb=0.01, reg_metric="std_n", progress=False)
    return model


def test_prune_input_keeps_the_relevant_inputs_3():
    """x1 * x2 with x3 irrelevant: after sparsity training prune_input keeps exactly x1, x2."""
    model = _sparse_fit(lambda x: x[:, [0]] * x[:, [1]], 3, 3, steps=20, num=200)
    fs = model.feature_score()
    assert float(fs[2]) < 1e-2 < float(fs[:2].min())
    assert model.prune_input().config.input_ids == [0, 1]


@pytest.mark.slow
def test_prune_input_keeps_the_relevant_inputs_5():
    """x2 * x4 among 5 inputs: prune_input keeps exactly inputs 1 and 3."""
    model = _sparse_fit(lambda x: x[:, [1]] * x[:, [3]], 5, 5, steps=30, num=300)
    small = model.prune_input()
    assert small.config.input_ids == [1, 3]
    assert small.width == [2, 5, 1]


# ---------------------------------------------------------------------------------------------------- tutorial loop
@pytest.fixture(scope="module")
def tutorial():
    """pykan's tutorial: KAN([2,5,1]) on exp(sin(pi x1) + x2^2), 50 LBFGS steps with lamb=0.001, then prune()."""
    ds = create_dataset(toy_formula, n_var=2, seed=0)
    model = KAN([2, 5, 1], grid=5, k=3, seed=0)
    model.fit(ds, opt="LBFGS", steps=50, lamb=0.001, progress=False)
    pruned = model.prune()
    return ds, model, pruned


def test_tutorial_prune_shrinks_and_keeps_rmse(tutorial):
    ds, model, pruned = tutorial
    before = _rmse(model, ds["test_input"], ds["test_label"])
    after = _rmse(pruned, ds["test_input"], ds["test_label"])
    assert before < 2e-2
    assert pruned.width[0] == 2 and pruned.width[1] <= 2 and pruned.width[2] == 1
    assert pruned.config.width == pruned.width == [layer.in_dim for layer in pruned.layers] + [1]
    assert after < 2 * before, f"RMSE before prune {before:.4g}, right after {after:.4g}"
    assert pruned.acts and pruned.acts[0].shape == ds["train_input"].shape  # ready for plot()/scores


def test_tutorial_retrain_after_prune(tutorial):
    ds, _, pruned = tutorial
    small = pruned.copy()
    small.fit(ds, opt="LBFGS", steps=50, progress=False)
    assert _rmse(small, ds["test_input"], ds["test_label"]) < 1e-2


def test_pruned_model_save_load_roundtrip(tutorial, tmp_path):
    ds, _, pruned = tutorial
    pruned.save(tmp_path / "small")
    loaded = KAN.load(tmp_path / "small")
    assert loaded.width == pruned.width and loaded.config == pruned.config
    x = ds["test_input"]
    assert torch.equal(loaded(x), pruned(x))
    for a, b in zip(loaded.layers, pruned.layers):
        assert torch.equal(a.mask, b.mask) and torch.equal(a.grid, b.grid)


def test_prune_leaves_original_untouched(tutorial):
    ds, model, _ = tutorial
    state = copy.deepcopy(model.state_dict())
    model.prune(x=ds["train_input"])
    model.prune_input(x=ds["train_input"])
    for k, v in model.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, state[k]), k


@pytest.mark.slow
def test_folding_fixes_pykan_constant_shift_with_std_n_metric():
    """With pykan's normalised sparsity metric, pruned edges keep large constants: dropping them (pykan 0.2.8)
    shifts the output (RMSE ~0.5 here); folding them into biases keeps the RMSE within 2x."""
    ds = create_dataset(toy_formula, n_var=2, seed=0)
    model = KAN([2, 5, 1], seed=0)
    model.fit(ds, opt="LBFGS", steps=50, lamb=0.001, reg_metric="std_n", progress=False)
    pruned = model.prune()
    no_fold = pruned.copy()
    with torch.no_grad():
        for b in no_fold.node_bias:
            b.zero_()
    x, y = ds["test_input"], ds["test_label"]
    before, after, dropped = _rmse(model, x, y), _rmse(pruned, x, y), _rmse(no_fold, x, y)
    assert pruned.width[1] <= 2
    assert after < 2 * before
    assert dropped > 10 * after, f"before {before:.3g}, folded {after:.3g}, dropped {dropped:.3g}"
