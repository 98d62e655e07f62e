"""A table of malformed calls across the public API: each raises the documented exception type with a message that
names the offending argument (and, for unknown names, suggests the closest valid one).

Cases that the owning module does not handle yet are marked ``xfail(strict=True)`` with the owner in the reason, so
the table turns green (and the marker must be removed) as soon as the fix lands.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kanlens import KAN, create_dataset, load, save
from kanlens.layers.conv import KANConv2d
from kanlens.layers.spline import KANLayer
from kanlens.layers.symbolic import SymbolicKANLayer
from kanlens.symbolic.library import default_library


def _model() -> KAN:
    model = KAN(width=[2, 3, 1], seed=0)
    with torch.no_grad():
        model(torch.linspace(-1, 1, 40).reshape(20, 2))
    return model


def _ds(**changes) -> dict[str, torch.Tensor]:
    ds = create_dataset(lambda x: x[:, [0]] * x[:, [1]], n_var=2, train_num=16, test_num=8, seed=0)
    ds.update(changes)
    return ds


def _fit(ds=None, **kwargs):
    kwargs.setdefault("steps", 1)
    return _model().fit(_ds() if ds is None else ds, progress=False, **kwargs)


def _with_nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[0, 0] = float("nan")
    return t


def _saved(tmp, **kwargs):
    return save(_model(), tmp / "ckpt", **kwargs)


def _save_twice(tmp):
    _saved(tmp)
    return _saved(tmp)


def _pending(owner: str, what: str):
    return pytest.mark.xfail(reason=f"{owner}: {what}", strict=True)


F = lambda x: x[:, [0]]  # noqa: E731  (a valid formula for create_dataset)
X2 = torch.zeros(4, 2)

# (id, call taking tmp_path, exception type, regex the message must match: names the argument)
CASES = [
    # ---- KAN constructor
    ("kan_width_int", lambda t: KAN(width=5), TypeError, r"width"),
    ("kan_width_short", lambda t: KAN(width=[2]), ValueError, r"width"),
    ("kan_width_zero", lambda t: KAN(width=[2, 0, 1]), ValueError, r"width"),
    ("kan_width_float", lambda t: KAN(width=[2, 2.5, 1]), TypeError, r"width"),
    ("kan_width_mult_nodes", lambda t: KAN(width=[[2, 1], 1]), ValueError, r"width.*multiplication"),
    ("kan_grid_zero", lambda t: KAN(width=[2, 1], grid=0), ValueError, r"grid"),
    ("kan_grid_float", lambda t: KAN(width=[2, 1], grid=2.5), TypeError, r"grid"),
    ("kan_k_zero", lambda t: KAN(width=[2, 1], k=0), ValueError, r"\bk\b"),
    ("kan_dtype", lambda t: KAN(width=[2, 1], dtype=torch.int64), TypeError, r"dtype"),
    ("kan_grid_range", lambda t: KAN(width=[2, 1], grid_range=(1.0, -1.0)), ValueError, r"grid_range"),
    ("kan_base_fun", lambda t: KAN(width=[2, 1], base_fun="slu"), ValueError, r"base_fun.*did you mean 'silu'"),
    ("kan_typo_option", lambda t: KAN(width=[2, 1], gird=5), TypeError, r"'gird'.*did you mean 'grid'"),
    pytest.param("kan_seed_str", lambda t: KAN(width=[2, 1], seed="a"), TypeError, r"seed"),
    pytest.param("kan_grid_eps", lambda t: KAN(width=[2, 1], grid_eps=2.0), ValueError, r"grid_eps"),
    pytest.param("kan_noise_scale_nan", lambda t: KAN(width=[2, 1], noise_scale=float("nan")), ValueError,
                 r"noise_scale"),
    pytest.param("kan_device", lambda t: KAN(width=[2, 1], device="gpu0"), ValueError, r"device"),
    pytest.param("kan_input_names_len", lambda t: KAN(width=[2, 1], input_names=["a"]), ValueError,
                 r"input_names"),
    # ---- forward / evaluation
    ("forward_numpy", lambda t: _model()(np.zeros((3, 2))), TypeError, r"\bx\b.*torch.Tensor"),
    ("forward_1d", lambda t: _model()(torch.zeros(3)), ValueError, r"\bx\b.*2-D"),
    ("forward_features", lambda t: _model()(torch.zeros(3, 5)), ValueError, r"\bx\b.*2 features"),
    ("forward_dtype", lambda t: _model()(torch.zeros(3, 2, dtype=torch.float64)), TypeError, r"\bx\b.*dtype"),
    ("forward_int", lambda t: _model()(torch.zeros(3, 2, dtype=torch.long)), TypeError, r"\bx\b"),
    ("edge_activations_features", lambda t: _model().edge_activations(torch.zeros(3, 3)), ValueError, r"\bx\b"),
    ("layer_inputs_unseen", lambda t: KAN(width=[2, 1]).layer_inputs(), ValueError, r"call model\(x\)"),
    # ---- fit
    ("fit_opt", lambda t: _fit(opt="SGD"), ValueError, r"opt"),
    ("fit_opt_case", lambda t: _fit(opt="adam"), ValueError, r"opt.*did you mean 'Adam'"),
    ("fit_steps", lambda t: _fit(steps=-1), ValueError, r"steps"),
    ("fit_lr", lambda t: _fit(lr=0.0), ValueError, r"\blr\b"),
    ("fit_lr_nan", lambda t: _fit(lr=float("nan")), ValueError, r"\blr\b"),
    ("fit_batch", lambda t: _fit(batch=0), ValueError, r"batch"),
    ("fit_batch_one_with_grid", lambda t: _fit(batch=1), ValueError, r"batch.*update_grid"),
    ("fit_lamb", lambda t: _fit(lamb=float("inf")), ValueError, r"lamb"),
    ("fit_lamb_entropy", lambda t: _fit(lamb_entropy=-1.0), ValueError, r"lamb_entropy"),
    ("fit_reg_metric", lambda t: _fit(reg_metric="std"), ValueError, r"reg_metric"),
    ("fit_grid_update_num", lambda t: _fit(grid_update_num=0), ValueError, r"grid_update_num"),
    ("fit_stop_grid_update_step", lambda t: _fit(stop_grid_update_step=-5), ValueError, r"stop_grid_update_step"),
    ("fit_max_nonfinite", lambda t: _fit(max_nonfinite=-1), ValueError, r"max_nonfinite"),
    ("fit_update_grid_type", lambda t: _fit(update_grid="yes"), TypeError, r"update_grid"),
    ("fit_loss_fn", lambda t: _fit(loss_fn="mse"), TypeError, r"loss_fn"),
    ("fit_loss_fn_vector", lambda t: _fit(loss_fn=lambda p, y: (p - y) ** 2), ValueError, r"loss_fn.*scalar"),
    ("fit_callbacks", lambda t: _fit(callbacks=lambda s, m, h: None), TypeError, r"callbacks"),
    ("fit_unknown_option", lambda t: _fit(lamda=0.1), TypeError, r"lamda"),
    ("fit_dataset_type", lambda t: _model().fit([X2], progress=False), TypeError, r"dataset"),
    ("fit_dataset_keys", lambda t: _fit({"train_input": X2}), ValueError, r"dataset.*missing"),
    ("fit_dataset_nan", lambda t: _fit(_ds(train_input=_with_nan(_ds()["train_input"]))), ValueError,
     r"train_input.*NaN"),
    ("fit_dataset_features", lambda t: _fit(_ds(test_input=torch.zeros(8, 3))), ValueError, r"test_input"),
    ("fit_dataset_label_1d", lambda t: _fit(_ds(train_label=torch.zeros(16))), ValueError, r"train_label.*2-D"),
    ("fit_dataset_rows", lambda t: _fit(_ds(test_label=torch.zeros(3, 1))), ValueError, r"test_label"),
    ("fit_dataset_int_labels", lambda t: _fit(_ds(train_label=torch.zeros(16, 1, dtype=torch.long))), TypeError,
     r"train_label"),
    ("fit_dataset_one_sample", lambda t: _fit(_ds(train_input=torch.zeros(1, 2), train_label=torch.zeros(1, 1))),
     ValueError, r"train_input.*1 sample.*update_grid=False"),
    ("fit_dataset_empty", lambda t: _fit(_ds(train_input=torch.zeros(0, 2), train_label=torch.zeros(0, 1))),
     ValueError, r"train_input.*empty"),
    # ---- create_dataset
    ("data_n_var", lambda t: create_dataset(F, n_var=0), ValueError, r"n_var"),
    ("data_ranges_order", lambda t: create_dataset(F, n_var=2, ranges=[1.0, -1.0]), ValueError, r"range"),
    ("data_ranges_shape", lambda t: create_dataset(F, n_var=2, ranges=[[0, 1]]), ValueError, r"ranges"),
    ("data_train_num", lambda t: create_dataset(F, n_var=2, train_num=0), ValueError, r"train_num"),
    ("data_f_mode", lambda t: create_dataset(F, n_var=2, f_mode="cols"), ValueError, r"f_mode.*did you mean"),
    ("data_f_nan", lambda t: create_dataset(lambda x: torch.log(x[:, [0]]), n_var=2), ValueError, r"\bf\b.*NaN"),
    ("data_f_shape", lambda t: create_dataset(lambda x: x[:5, 0], n_var=2), ValueError, r"\bf\b.*shape"),
    pytest.param("data_f_not_callable", lambda t: create_dataset(3, n_var=2), TypeError, r"\bf\b.*callable"),
    pytest.param("data_seed", lambda t: create_dataset(F, n_var=2, seed="a"), TypeError, r"seed"),
    pytest.param("data_dtype", lambda t: create_dataset(F, n_var=2, dtype=torch.int64), TypeError, r"dtype"),
    # ---- save / load
    ("save_path_type", lambda t: save(_model(), 123), TypeError, r"path"),
    ("save_model_type", lambda t: save("model", t / "m"), TypeError, r"model"),
    ("save_overwrite_type", lambda t: _saved(t, overwrite="yes"), TypeError, r"overwrite"),
    ("save_existing", _save_twice, FileExistsError, r"overwrite=True"),
    ("load_missing", lambda t: load(t / "nothing"), ValueError, r"nothing.*does not exist"),
    ("load_map_location", lambda t: load(_saved(t), map_location="gpu:7"), ValueError, r"map_location"),
    ("load_library_type", lambda t: load(_saved(t), library=["sin"]), TypeError, r"library"),
    ("load_path_type", lambda t: load(None), TypeError, r"path"),
    # ---- refine / update_grid
    ("refine_zero", lambda t: _model().refine(0), ValueError, r"new_grid"),
    ("refine_float", lambda t: _model().refine(7.5), TypeError, r"new_grid"),
    ("refine_x_features", lambda t: _model().refine(10, x=torch.zeros(5, 3)), ValueError, r"\bx\b"),
    pytest.param("refine_x_nan", lambda t: _model().refine(10, x=_with_nan(torch.rand(5, 2))), ValueError,
                 r"\bx\b"),
    ("update_grid_features", lambda t: _model().update_grid(torch.zeros(5, 3)), ValueError, r"\bx\b"),
    ("update_grid_nan", lambda t: _model().update_grid(_with_nan(torch.rand(5, 2))), ValueError, r"\bx\b.*NaN"),
    pytest.param("update_grid_one_sample", lambda t: _model().update_grid(torch.zeros(1, 2)), ValueError,
                 r"\bx\b"),
    # ---- layers
    ("layer_in_dim", lambda t: KANLayer(0, 2), ValueError, r"in_dim"),
    ("layer_k_type", lambda t: KANLayer(2, 2, k="3"), TypeError, r"\bk\b"),
    ("symbolic_layer_edge", lambda t: SymbolicKANLayer(2, 1).fix(5, 0, "sin"), IndexError, r"\bi\b"),
    ("symbolic_layer_params", lambda t: SymbolicKANLayer(2, 1).fix(0, 0, "sin", (1.0, 2.0)), ValueError,
     r"params"),
    # ---- symbolic
    ("fix_symbolic_unknown", lambda t: _model().fix_symbolic(0, 0, 0, "sni"), ValueError, r"'sni'.*did you mean 'sin'"),
    ("fix_symbolic_edge", lambda t: _model().fix_symbolic(0, 5, 0, "sin"), IndexError, r"\bi\b = 5"),
    ("fix_symbolic_layer", lambda t: _model().fix_symbolic(3, 0, 0, "sin"), IndexError, r"\bl\b = 3"),
    ("suggest_symbolic_lib", lambda t: _model().suggest_symbolic(0, 0, 0, lib=["x", "sni"]), ValueError,
     r"'sni'.*did you mean 'sin'"),
    ("suggest_symbolic_topk", lambda t: _model().suggest_symbolic(0, 0, 0, topk=0), ValueError, r"topk"),
    ("auto_symbolic_r2", lambda t: _model().auto_symbolic(r2_threshold=2.0), ValueError, r"r2_threshold"),
    ("library_register", lambda t: default_library().register("f", 3, lambda u: u, 1), TypeError, r"torch_fn"),
    ("library_special_hint", lambda t: default_library()["besselj0"], ValueError, r"special=True"),
    # ---- pruning
    ("prune_node_th", lambda t: _model().prune(node_th=-1.0), ValueError, r"node_th"),
    ("prune_edge_th", lambda t: _model().prune(edge_th=float("nan")), ValueError, r"edge_th"),
    ("prune_edge_threshold", lambda t: _model().prune_edge(threshold="a"), ValueError, r"threshold"),
    # ---- convolution
    ("conv_in_channels", lambda t: KANConv2d(0, 4, 3), ValueError, r"in_channels"),
    ("conv_kernel_size", lambda t: KANConv2d(1, 4, 0), ValueError, r"kernel_size"),
    ("conv_stride", lambda t: KANConv2d(1, 4, 3, stride=0), ValueError, r"stride"),
    ("conv_groups", lambda t: KANConv2d(3, 4, 3, groups=2), ValueError, r"groups"),
    ("conv_padding_mode", lambda t: KANConv2d(1, 4, 3, padding_mode="zero"), ValueError,
     r"padding_mode.*did you mean 'zeros'"),
    ("conv_input_rank", lambda t: KANConv2d(1, 4, 3)(torch.zeros(1, 8, 8)), ValueError, r"\bx\b.*4-D"),
    ("conv_input_channels", lambda t: KANConv2d(1, 4, 3)(torch.zeros(1, 2, 8, 8)), ValueError,
     r"\bx\b.*in_channels"),
    ("conv_input_dtype", lambda t: KANConv2d(1, 4, 3)(torch.zeros(1, 1, 8, 8, dtype=torch.long)), TypeError,
     r"\bx\b.*floating"),
]


def _case_id(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


def test_table_is_large_and_unique():
    ids = [_case_id(c) for c in CASES]
    assert len(ids) == len(set(ids))
    assert len([c for c in CASES if not hasattr(c, "marks")]) >= 40  # passing cases, excluding pending ones


@pytest.mark.parametrize(("name", "call", "exc", "pattern"), CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_raises_clear_error(tmp_path, name, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(tmp_path)


def test_layers_check_their_inputs_and_options():
    layer = KANLayer(3, 2)
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        layer(torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        layer(torch.rand(3))
    with pytest.raises(TypeError, match=r"float64 on cpu but the layer is torch\.float32"):
        layer(torch.rand(4, 3, dtype=torch.float64))
    sym = SymbolicKANLayer(2, 1)
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        sym(torch.rand(4, 3))
    with pytest.raises(ValueError, match="grid_eps must be a number in"):
        KANLayer(2, 2, grid_eps=2)
    with pytest.raises(ValueError, match="grid_eps must be a number in"):
        KANConv2d(1, 1, 3, grid_eps=-1)
    with pytest.raises(TypeError, match=r"dtype must be a floating torch\.dtype"):
        KANConv2d(1, 1, 3, dtype=torch.int64)
    # pykan's spellings
    assert KANLayer(2, 2, num=7, base_fun=torch.nn.SiLU()).grid.shape == (2, 7 + 2 * 3 + 1)


def test_layers_follow_the_default_dtype():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert KANLayer(2, 2).coef.dtype == torch.float64
        assert KANConv2d(1, 1, 3).coef.dtype == torch.float64
    finally:
        torch.set_default_dtype(old)


def test_conv_padding_changed_after_construction_takes_effect():
    conv = KANConv2d(1, 2, 3, padding=1)
    ref = torch.nn.Conv2d(1, 2, 3, padding=1)
    x = torch.rand(2, 1, 6, 6) * 1.8 - 0.9
    conv(x)  # fills the border memo for padding 1
    conv.padding, ref.padding = (2, 2), (2, 2)
    fresh = KANConv2d(1, 2, 3, padding=2)
    fresh.load_state_dict(conv.state_dict())
    assert conv(x).shape == ref(x).shape and torch.allclose(conv(x), fresh(x))


def test_loading_onto_a_missing_device_names_it(tmp_path):
    KAN(width=[2, 1], seed=0).save(tmp_path / "ck")
    with pytest.raises(ValueError, match="map_location 'bogus' is not a valid torch device"):
        KAN.load(tmp_path / "ck", map_location="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="map_location 'cuda' is not available on this machine"):
            KAN.load(tmp_path / "ck", map_location="cuda")


def test_dataset_splits_in_different_precisions_are_named():
    ds = create_dataset(lambda x: x[:, [0]] * x[:, [1]], n_var=2, train_num=20, test_num=20, seed=0)
    ds["train_input"], ds["train_label"] = ds["train_input"].double(), ds["train_label"].double()
    with pytest.raises(TypeError, match=r"dataset\['train_input'\] is torch\.float64 but dataset\['test_input'\]"):
        KAN(width=[2, 1], seed=0).double().fit(ds, steps=1, progress=False)
