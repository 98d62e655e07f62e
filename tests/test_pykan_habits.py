"""Habits a pykan user brings along: casting models, pickling them, speed(), classification labels, pykan-only
options, torch's default dtype. Each test is a short user script whose result is checked."""

from __future__ import annotations

import io
import os
import pickle
import warnings

import pytest
import sympy
import torch

from kanlens import KAN, KANConv2d, create_dataset, ex_round
from kanlens.symbolic.pipeline import symbolic_regression
from kanlens.vision import KANConvNet


def _data(n: int = 200, seed: int = 0) -> dict:
    return create_dataset(lambda x: torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2, n_var=2, train_num=n,
                          test_num=n, seed=seed)


def test_a_cast_model_saves_and_loads_in_its_new_dtype(tmp_path):
    model = KAN(width=[2, 3, 1], seed=0).double()
    assert model.config.dtype == "float64"
    x = torch.rand(5, 2, dtype=torch.float64)
    model.save(tmp_path / "ck")
    back = KAN.load(tmp_path / "ck")
    assert back.dtype == torch.float64 and torch.equal(back(x), model(x))
    model.float()
    assert model.config.dtype == "float32"
    with pytest.raises(TypeError, match=r"float16.*model.float"):
        KAN(width=[2, 1]).half().save(tmp_path / "half")
    assert not (tmp_path / "half").exists()


def test_models_with_symbolic_edges_pickle():
    ds = _data()
    model = KAN(width=[2, 3, 1], seed=0)
    model(ds["train_input"])
    model.fix_symbolic(0, 0, 0, "tanh")
    model.auto_symbolic(lib=["x", "x^2", "sin", "tanh"])
    x = ds["test_input"]
    for back in (pickle.loads(pickle.dumps(model)), _torch_roundtrip(model)):
        assert torch.equal(back(x), model(x))
        assert back.symbolic_formula()[0][0] == model.symbolic_formula()[0][0]


def _torch_roundtrip(model: KAN) -> KAN:
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_fix_symbolic_after_speed_uses_the_symbolic_edge():
    """speed() switches the unused symbolic branch off; fixing an edge must switch it back on (it used to leave
    the model computing a constant 0 while symbolic_formula showed the formula)."""
    model = KAN(width=[2, 1], seed=0).speed()
    assert not model.symbolic_enabled
    model.fix_symbolic(0, 0, 0, "sin", fit_params=False)
    model.fix_symbolic(0, 1, 0, "x^2", fit_params=False)
    x = torch.rand(20, 2) * 2 - 1
    expected = torch.sin(x[:, [0]]) + x[:, [1]] ** 2
    assert model.symbolic_enabled
    assert torch.allclose(model(x), expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"speed\(\).*pass x"):
        model.layer_inputs()


def test_ex_round_rounds_floats_that_merge_after_rounding():
    x2 = sympy.Symbol("x2")
    inner = sympy.Mul(sympy.Float(0.99993), x2**2, evaluate=False)
    expr = sympy.exp(sympy.Mul(sympy.Float(0.99937), inner, evaluate=False))
    out = ex_round(expr, 4)
    assert out == sympy.exp(sympy.Float(0.9993) * x2**2)
    assert all(abs(float(f) - round(float(f), 4)) < 1e-12 for f in out.atoms(sympy.Float))
    assert float(ex_round(1.23456, 2)) == 1.23


def test_classification_with_integer_labels_and_cross_entropy():
    """pykan's classification tutorial: labels (n,) int64, loss_fn=CrossEntropyLoss(); the history holds
    sqrt(cross entropy) as pykan's, and it goes down."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 2, generator=g) * 2 - 1
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    ds = {"train_input": x[:200], "train_label": y[:200], "test_input": x[200:], "test_label": y[200:]}
    model = KAN(width=[2, 2], grid=3, seed=0)
    h = model.fit(ds, opt="Adam", steps=60, lr=0.05, loss_fn=torch.nn.CrossEntropyLoss(), progress=False)
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(model(x[200:]), y[200:])
        acc = (model(x[200:]).argmax(1) == y[200:]).float().mean()
    assert h.test_loss[-1] == pytest.approx(float(ce) ** 0.5, rel=1e-5)
    assert h.train_loss[-1] < 0.6 * h.train_loss[0] and float(acc) > 0.9
    with pytest.raises(TypeError, match="CrossEntropyLoss"):
        KAN(width=[2, 2]).fit(ds, steps=1, progress=False)  # integer labels need a classification loss
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 2\)"):
        bad = dict(ds, train_label=ds["train_label"] + 1)
        KAN(width=[2, 2]).fit(bad, steps=1, loss_fn=torch.nn.CrossEntropyLoss(), progress=False)


def test_checkpoint_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        KAN(width=[2, 1]).save(tmp_path / "ck")
        assert (os.stat(tmp_path / "ck").st_mode & 0o777) == 0o755
    finally:
        os.umask(old)


def test_symbolic_helpers_reject_misspelled_options_and_accept_pykan_ones():
    ds = _data()
    model = KAN(width=[2, 1], seed=0)
    model(ds["train_input"])
    with pytest.raises(TypeError, match=r"'fit_param'.*did you mean 'fit_params'"):
        model.fix_symbolic(0, 0, 0, "sin", fit_param=False)
    with pytest.raises(TypeError, match=r"'libs'.*did you mean 'lib'"):
        model.auto_symbolic(libs=["x"])
    with pytest.raises(TypeError, match=r"'top_k'.*did you mean 'topk'"):
        model.suggest_symbolic(0, 0, 0, top_k=3)
    # pykan's grid-search options have no kanlens counterpart: accepted, no effect
    assert len(model.suggest_symbolic(0, 0, 0, a_range=(-5, 5), b_range=(-5, 5), topk=2)) == 2
    r2 = model.fix_symbolic(0, 0, 0, "tanh", a_range=(-5, 5), verbose=False, log_history=False)
    assert r2 > 0.99


def test_pykan_constructor_options():
    x = torch.rand(50, 2) * 2 - 1
    model = KAN(width=[2, 3, 1], auto_save=False, ckpt_path="./model", sp_trainable=False,
                base_fun=torch.nn.SiLU(), seed=0)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad and n.startswith("layers")}
    assert frozen == {"layers.0.scale_sp", "layers.1.scale_sp"}
    assert model.config.base_fun == "silu" and not os.path.exists("./model")
    model(x)
    assert frozen <= {n for n, p in model.prune().named_parameters() if not p.requires_grad}
    assert KAN(width=[2, 1], mult_arity=3).width == [2, 1]  # as in pykan: no product node, the arity is unused
    with pytest.raises(ValueError, match="mult_arity must be >= 2"):
        KAN(width=[2, [0, 1], 1], mult_arity=1)
    with pytest.raises(TypeError, match="did you mean 'auto_save'"):
        KAN(width=[2, 1], auto_sav=False)
    with pytest.raises(ValueError, match="base_fun=ReLU"):
        KAN(width=[2, 1], base_fun=torch.nn.ReLU())


def test_unavailable_device_is_named():
    with pytest.raises(ValueError, match="device 'cuda:99' is not available"):
        KAN(width=[2, 1], device="cuda:99")
    with pytest.raises(ValueError, match="device 'cuda:99' is not available"):
        create_dataset(lambda x: x[:, [0]], n_var=2, device="cuda:99")


def test_models_and_datasets_follow_torchs_default_dtype():
    """pykan's tutorials start with torch.set_default_dtype(torch.float64); tensors the user then builds are
    float64, and so must the model and the dataset be."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model, ds = KAN(width=[2, 2, 1], seed=0), create_dataset(lambda x: x[:, [0]], n_var=2, train_num=10)
        assert model.dtype == ds["train_input"].dtype == torch.float64
        assert model(torch.rand(3, 2)).dtype == torch.float64
    finally:
        torch.set_default_dtype(old)
    assert KAN(width=[2, 1]).dtype == torch.float32
    assert KAN(width=[2, 1], dtype=torch.float64).dtype == torch.float64


def test_symbolic_regression_rejects_steps_that_are_neither_one_count_nor_three():
    with pytest.raises(ValueError, match="one step count or three"):
        symbolic_regression(_data(50), [2, 1], steps=(5, 5))


def test_conv_layers_name_dtype_and_image_size_mismatches():
    layer = KANConv2d(1, 2, 3)
    with pytest.raises(TypeError, match=r"float64.*float32.*to\(\)"):
        layer(torch.rand(1, 1, 8, 8, dtype=torch.float64))
    net = KANConvNet(channels=(2, 3), image_size=28)
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 1, 28, 28\).*got shape \(2, 1, 8, 8\)"):
        net(torch.rand(2, 1, 8, 8))


def test_plots_written_to_a_file_do_not_pile_up_as_open_figures(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kanlens import plot_edge

    model = KAN(width=[2, 2, 1], seed=0)
    model(torch.rand(64, 2) * 2 - 1)
    before = len(plt.get_fignums())
    for k in range(3):
        fig = model.plot(path=tmp_path / f"net{k}.png")
        plot_edge(model, 0, 0, 0, path=tmp_path / f"edge{k}.png")
    assert len(plt.get_fignums()) == before
    fig.savefig(tmp_path / "again.png")  # the returned figure stays usable
    assert (tmp_path / "again.png").stat().st_size > 1000
    fig = model.plot()  # no path: an open pyplot figure, as before (notebooks display it)
    assert len(plt.get_fignums()) == before + 1
    plt.close(fig)


@pytest.mark.parametrize("edit", ["assign", "inplace", "one_knot"])
def test_grid_edits_through_data_are_seen(edit):
    """pykan code edits grids through ``.data``, which bumps no version counter: cached values must follow."""
    from kanlens.layers.spline import KANLayer

    gen = torch.Generator().manual_seed(0)
    conv = KANConv2d(1, 2, 3, padding=1, generator=gen)
    layer = KANLayer(2, 3)
    with torch.no_grad():
        conv.coef.normal_(generator=gen)
        layer.coef.normal_(generator=gen)
    x = torch.rand(2, 1, 6, 6, generator=gen) * 1.8 - 0.9
    xl = torch.rand(16, 2, generator=gen) * 1.8 - 0.9
    before = conv(x), layer(xl)  # fills the caches
    for module in (conv, layer):
        if edit == "assign":
            module.grid.data = module.grid.data * 1.5
        elif edit == "inplace":
            module.grid.data.mul_(1.5)
        else:  # non-uniform afterwards
            module.grid.data[:, 5] += 0.05
    fresh_conv, fresh_layer = pickle.loads(pickle.dumps(conv)), pickle.loads(pickle.dumps(layer))
    assert torch.allclose(conv(x), fresh_conv(x), atol=1e-6) and torch.allclose(layer(xl), fresh_layer(xl), atol=1e-6)
    assert (conv(x) - before[0]).abs().max() > 1e-3 and (layer(xl) - before[1]).abs().max() > 1e-3


def test_layers_and_models_can_be_built_and_updated_in_inference_mode():
    with torch.inference_mode():
        conv = KANConv2d(2, 3, 3)
        model = KAN(width=[2, 3, 1], seed=0)
        assert conv(torch.rand(1, 2, 5, 5)).shape == (1, 3, 3, 3)
        assert model(torch.rand(4, 2)).shape == (4, 1)
        x = torch.rand(4, 2, 6, 6) * 4 - 2
        conv.update_grid(x)
        torch.testing.assert_close(conv.grid[:, conv.k], x.amin(dim=(0, 2, 3)), atol=1e-6, rtol=0)


def test_a_batch_edited_behind_autograds_back_is_not_served_from_the_cache():
    """The bases of a data batch are cached; edits through a shared numpy buffer or ``.data`` must be seen."""
    import numpy as np

    model = KAN(width=[2, 3, 1], seed=0)
    arr = np.random.default_rng(0).random((6, 2)).astype(np.float32)
    x = torch.from_numpy(arr)
    model(x)
    arr[:] = np.random.default_rng(1).random((6, 2))
    assert torch.allclose(model(x), model(torch.from_numpy(arr.copy())))
    model(x)
    x.data.copy_(torch.rand(6, 2, generator=torch.Generator().manual_seed(2)))
    assert torch.allclose(model(x), model(x.clone()))


def test_a_small_last_batch_is_not_used_silently_for_grids_fits_and_plots():
    ds = _data()
    model = KAN(width=[2, 3, 1], seed=0)
    model(ds["test_input"][:5])  # checking a few predictions leaves them in model.acts
    with pytest.warns(UserWarning, match="only 5 samples"):
        model.refine(10)
    model(ds["test_input"][:1])
    with pytest.raises(ValueError, match="has 1 sample"):
        model.prune()
    model(ds["train_input"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.refine(12)  # a full batch: no warning


def test_pykan_01_train_call_points_to_fit():
    model = KAN(width=[2, 1], seed=0)
    with pytest.raises(TypeError, match=r"use model\.fit\(dataset"):
        model.train(_data(), steps=5)
    assert model.train(False) is model and not model.training and model.train().training
