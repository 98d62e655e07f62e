"""KAN model: shapes, device/dtype handling, caches, refine, state_dict, validation."""

import pytest
import torch

from kanlens import KAN, KANConfig, run_with_cache


def test_forward_shapes_and_acts():
    model = KAN(width=[3, 4, 2], grid=5, k=3, seed=0)
    x = torch.rand(7, 3)
    y = model(x)
    assert y.shape == (7, 2)
    assert [tuple(a.shape) for a in model.acts] == [(7, 3), (7, 4), (7, 2)]
    assert not any(a.requires_grad for a in model.acts)


def test_save_act_false_keeps_nothing():
    model = KAN(width=[2, 3, 1], save_act=False)
    model(torch.rand(5, 2))
    assert model.acts == []
    with pytest.raises(ValueError, match="has not seen any data"):
        model.edge_activations()


def test_edge_activations_sum_to_layer_outputs():
    model = KAN(width=[2, 3, 2], seed=1)
    x = torch.rand(11, 2) * 2 - 1
    acts = model.layer_inputs(x)
    edges = model.edge_activations(x)
    for l, e in enumerate(edges):
        assert e.shape == (11, model.width[l + 1], model.width[l])
        torch.testing.assert_close(model.node_scale[l] * e.sum(-1) + model.node_bias[l], acts[l + 1], atol=1e-5,
                                   rtol=0)


def test_forward_with_edges_equals_forward():
    model = KAN(width=[2, 5, 1], seed=0)
    x = torch.rand(20, 2)
    out, edges, _ = model.forward_with_edges(x)
    torch.testing.assert_close(out, model(x), atol=1e-5, rtol=0)
    assert [tuple(e.shape) for e in edges] == [(20, 5, 2), (20, 1, 5)]


def test_run_with_cache_names():
    model = KAN(width=[2, 3, 1])
    _, cache = run_with_cache(model, torch.rand(4, 2), names_filter=lambda n: n.endswith("hook_edges"))
    assert set(cache) == {"layers.0.hook_edges", "layers.1.hook_edges"}
    assert cache["layers.0.hook_edges"].shape == (4, 3, 2)
    # Hooks are gone after the call: the fast path is used again.
    assert not model.layers[0].hook_edges.has_hooks()


def test_same_seed_same_model_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, b = KAN(width=[2, 5, 1], seed=3), KAN(width=[2, 5, 1], seed=3)
    c = KAN(width=[2, 5, 1], seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (n, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        if isinstance(pa, torch.Tensor):
            assert torch.equal(pa, pb), n
    assert not torch.equal(a.layers[0].coef, c.layers[0].coef)


def test_refine_returns_new_model_with_same_function():
    model = KAN(width=[2, 3, 1], seed=0, dtype=torch.float64, noise_scale=0.2)
    x = torch.rand(200, 2, dtype=torch.float64) * 2 - 1
    y = model(x)
    fine = model.refine(12)
    assert fine.grid == 12 and model.grid == 5
    assert fine.layers[0].coef.shape[-1] == 15
    err = (fine(x) - y).abs().max() / (y.max() - y.min())
    assert err < 1e-3


def test_state_dict_round_trip_and_config():
    model = KAN(width=[2, 4, 1], seed=0)
    other = KAN(config=KANConfig.from_dict(model.config.to_dict()))
    other.load_state_dict(model.state_dict())
    x = torch.rand(9, 2)
    torch.testing.assert_close(other(x), model(x), atol=0, rtol=0)


def test_float64_model():
    model = KAN(width=[2, 3, 1], dtype=torch.float64)
    assert model(torch.rand(3, 2, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(TypeError, match="dtype"):
        model(torch.rand(3, 2))


def test_to_device_moves_buffers():
    model = KAN(width=[2, 3, 1]).to("cpu")
    assert model.layers[0].grid.device.type == "cpu" and model.device.type == "cpu"


def test_pykan_width_pairs_accepted():
    assert KAN(width=[[2, 0], [3, 0], [1, 0]]).width == [2, 3, 1]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"width": [3]}, ValueError, "at least 2"),
        ({"width": [2, 0, 1]}, ValueError, "positive"),
        ({"width": [2, 1.5, 1]}, TypeError, "ints"),
        ({"width": "2,5,1"}, TypeError, "width must be a list"),
        ({"width": [2, 5, 1], "grid": 0}, ValueError, "grid"),
        ({"width": [2, 5, 1], "k": 0}, ValueError, "k must"),
        ({"width": [2, 5, 1], "dtype": torch.int32}, TypeError, "dtype"),
        ({"width": [2, 5, 1], "nosie_scale": 0.1}, TypeError, "did you mean 'noise_scale'"),
        ({"width": [[2, 2], [1, 0]]}, ValueError, "multiplication"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        KAN(**kwargs)


@pytest.mark.parametrize(
    ("x", "exc", "match"),
    [
        (torch.rand(4, 3), ValueError, "2 features"),
        (torch.rand(4), ValueError, "2-D"),
        (torch.zeros(4, 2, dtype=torch.long), TypeError, "floating"),
        ([[0.0, 1.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_forward_input(x, exc, match):
    with pytest.raises(exc, match=match):
        KAN(width=[2, 3, 1])(x)


def test_nan_input_gives_nan_output_not_crash():
    # forward itself does not scan for NaN (that would cost a sync per call); fit() and update_grid() reject it.
    model = KAN(width=[2, 3, 1])
    x = torch.tensor([[float("nan"), 0.0]])
    assert torch.isnan(model(x)).all()
    with pytest.raises(ValueError, match="NaN"):
        model.update_grid(x.expand(10, 2))


def test_every_public_kan_method_has_a_docstring():
    """help(model.prune) shows pruning.prune's documentation: delegations are the bound target functions."""
    import inspect

    from kanlens import pruning
    from kanlens.symbolic import fit as sfit

    model = KAN(width=[2, 3, 1], seed=0)
    missing = []
    for name in dir(KAN):
        if name.startswith("_"):
            continue
        static = inspect.getattr_static(KAN, name)
        target = static if isinstance(static, property) else getattr(KAN, name)
        if (isinstance(static, property) or callable(target)) and not inspect.getdoc(target):
            missing.append(name)
    assert not missing, f"public KAN methods and properties without a docstring: {missing}"
    assert inspect.getdoc(model.prune) == inspect.getdoc(pruning.prune)
    assert inspect.getdoc(model.auto_symbolic) == inspect.getdoc(sfit.auto_symbolic)
    assert "node_th" in inspect.signature(model.prune).parameters
    assert "model" not in inspect.signature(model.prune).parameters  # bound to the model
    assert KAN.prune is pruning.prune  # class access: the function itself


def test_delegations_call_their_targets():
    model = KAN(width=[2, 3, 1], seed=0)
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    from kanlens import pruning

    for a, b in zip(model.edge_scores(x), pruning.edge_scores(model, x)):
        torch.testing.assert_close(a, b)
    assert model.prune(x=x, node_th=0.0, edge_th=0.0).width == [2, 3, 1]
