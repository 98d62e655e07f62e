"""pykan 0.2.8 scripts replayed on kanlens: every MultKAN method / kan.utils / kan.hypothesis name kanlens provides.

Written the way pykan's tutorials are (``model = KAN(width=[2,5,1], grid=3, k=3, seed=1)``, ``model.fit(dataset,
opt="LBFGS", steps=20)``...). Numbers marked "pykan 0.2.8" were produced by running the same computation on pykan
0.2.8 (``/work/pykanenv/bin/python`` on the script in ``benchmarks/pykan_reference.py``) with the same parameters set
by formula (:func:`_set_params`), float64. Multiplication nodes are covered by their own tests (the ``mult``
work); here every width is plain sums.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch

from kanlens import KAN, create_dataset
from kanlens.pykan_inspect import ScoreTensor

# ---------------------------------------------------------------------------------------------- pykan reference
# pykan 0.2.8, KAN(width=[2,3,1], grid=3, k=3) with _set_params, x = 2*rand(64, 2, Generator(0)) - 1, float64.
# pykan's numbers agree with kanlens's to ~5e-8 relative (pykan builds part of its grid in float32), hence RTOL.
RTOL = 1e-6
REF_OUT = [0.04097692844819584, -0.07364020221592107, -0.06666575888263687, -0.22065845808717077]
REF_REG = {"edge_forward_spline_n": 6.320441119149423, "edge_forward_sum": 6.320441119149423,
           "edge_forward_spline_u": 4.078568657505298, "edge_backward": 9.20747069213099,
           "node_backward": 9.597194888127753}
REF_REG_COEF = 9.781219336331722  # get_reg("edge_forward_spline_n", 1.0, 2.0, 0.5, 0.25): pykan's coef penalties
REF_FEATURE = [0.9539239844093113, 0.6721583163681419]
REF_EDGE0 = [[0.8295171275931517, 0.3123617340611543], [0.07247264811118909, 0.04394102206706763],
             [0.05193420870497053, 0.31585556023992006]]
REF_ATTR_1_2 = [0.05193420870497053, 0.31585556023992006]
REF_CC = 0.7162723299263585  # after model.attribute() (pykan's connection_cost reads the last attribute call)
REF_FI = {(0, 1): 3}
REF_MASK_AFTER_PRUNE_EDGE_005 = [[[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [[1.0, 1.0, 1.0]]]  # [l][out][in]


def _set_params(model: KAN) -> None:
    """The same parameters as the pykan reference (pykan stores (in, out, ...), kanlens (out, in, ...))."""
    with torch.no_grad():
        for l, layer in enumerate(model.act_fun):
            j_, i_, b_ = layer.coef.shape
            jj, ii, bb = torch.meshgrid(torch.arange(j_), torch.arange(i_), torch.arange(b_), indexing="ij")
            layer.coef.copy_(0.3 * torch.sin(1.3 * ii + 0.7 * jj + 0.5 * bb + l))
            jj, ii = torch.meshgrid(torch.arange(j_), torch.arange(i_), indexing="ij")
            layer.scale_base.copy_(0.5 + 0.2 * torch.cos(ii + 2.0 * jj + l))
            layer.scale_sp.copy_(1.0 + 0.1 * ii - 0.05 * jj)


@pytest.fixture()
def ref_model():
    model = KAN(width=[2, 3, 1], grid=3, k=3, seed=0, dtype=torch.float64)
    _set_params(model)
    x = torch.rand(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    model(x)
    return model, x


def test_same_function_as_pykan(ref_model):
    model, x = ref_model
    torch.testing.assert_close(model(x)[:4, 0], torch.tensor(REF_OUT, dtype=torch.float64), atol=1e-9, rtol=RTOL)


@pytest.mark.parametrize("metric", sorted(REF_REG))
def test_get_reg_equals_pykan(ref_model, metric):
    model, _ = ref_model
    reg = model.get_reg(metric, 1.0, 2.0, 0.0, 0.0)
    assert abs(float(reg.detach()) - REF_REG[metric]) < RTOL * REF_REG[metric]


def test_get_reg_coefficient_penalties_equal_pykan(ref_model):
    model, _ = ref_model
    reg = float(model.reg("edge_forward_spline_n", 1.0, 2.0, 0.5, 0.25).detach())
    assert abs(reg - REF_REG_COEF) < RTOL * REF_REG_COEF


def test_attribution_names_equal_pykan(ref_model):
    model, x = ref_model
    model.attribute()
    score = model.feature_score  # pykan's tensor attribute
    assert isinstance(score, torch.Tensor) and isinstance(score, ScoreTensor)
    torch.testing.assert_close(score * 1.0, torch.tensor(REF_FEATURE, dtype=torch.float64), atol=1e-9, rtol=RTOL)
    assert type(score * 1.0) is torch.Tensor  # results of operations are plain tensors
    torch.testing.assert_close(model.feature_score(x), torch.tensor(REF_FEATURE, dtype=torch.float64),
                               atol=1e-9, rtol=RTOL)  # kanlens's call form still works
    edges = model.attribute(x).edge_scores[0]
    torch.testing.assert_close(edges, torch.tensor(REF_EDGE0, dtype=torch.float64), atol=1e-9, rtol=RTOL)
    torch.testing.assert_close(model.attribute(1, 2, plot=False), torch.tensor(REF_ATTR_1_2, dtype=torch.float64),
                               atol=1e-9, rtol=RTOL)
    assert model.attribute(1).shape == (3, 2)
    assert abs(float(model.connection_cost) - REF_CC) < RTOL * REF_CC
    assert model.feature_interaction(1) == REF_FI
    scores = model.node_attribute()
    assert [s.shape for s in scores] == [(3, 2), (1, 2)] and model.node_attribute_scores is scores


def test_prune_edge_masks_in_place_like_pykan(ref_model):
    model, x = ref_model
    y = model(x)
    out = model.prune_edge(threshold=0.05)
    assert out is model
    assert [layer.mask.tolist() for layer in model.act_fun] == REF_MASK_AFTER_PRUNE_EDGE_005
    # kanlens folds the removed edge's mean into the bias: the output moves by its variation only
    assert float((model(x) - y).detach().abs().max()) < 0.05


# ---------------------------------------------------------------------------------------------- the tutorial flow
@pytest.fixture(scope="module")
def trained():
    f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)  # noqa: E731
    dataset = create_dataset(f, n_var=2, train_num=200, test_num=100, seed=0)
    model = KAN(width=[2, np.int64(5), 1], grid=np.int64(3), k=np.int64(3), seed=1)
    model.fit(dataset, opt="LBFGS", steps=np.int64(15), lamb=0.001, progress=False)
    return model, dataset


def test_numpy_integers_everywhere(trained):
    model, dataset = trained
    assert model.width == [2, 5, 1] and type(model.config.grid) is int and model.grid == 3 and model.k == 3
    m = model.copy()
    m.fix_symbolic(np.int64(0), np.int64(1), np.int64(0), "x", fit_params=False)
    assert m.symbolic_fun[0].function_name(1, 0) == "x"
    from kanlens import ex_round

    assert str(ex_round(sympy.Float(1.23456) * sympy.Symbol("x_1"), np.int64(2))) == "1.23*x_1"
    finer = model.refine(np.int64(5))
    assert finer.grid == 5
    x = dataset["test_input"]
    # 3 -> 5 intervals: the old spline space is not nested in the new one, so refine approximates (as pykan's)
    assert float((finer(x) - model(x)).detach().abs().max()) < 0.15


def test_fit_pykan_options(trained, tmp_path):
    model, dataset = trained
    model = model.copy()
    seen = []

    def train_acc():
        seen.append(1)
        return torch.mean((torch.round(model(dataset["train_input"])) == torch.round(dataset["train_label"])).float())

    results = model.fit(dataset, opt="LBFGS", steps=3, log=1, lamb=0.01, lamb_l1=1.0, lamb_entropy=2.0,
                        lamb_coef=0.1, lamb_coefdiff=0.1, update_grid=True, grid_update_num=2,
                        start_grid_update_step=1, stop_grid_update_step=3, batch=-1, loss_fn=None,
                        metrics=[train_acc], display_metrics=["train_loss", "train_acc"],
                        singularity_avoiding=True, y_th=10.0, reg_metric="edge_forward_spline_n",
                        save_fig=True, img_folder=str(tmp_path / "video"), beta=10, in_vars=["a", "b"],
                        progress=False)
    assert len(seen) == 3 and len(results["train_acc"]) == 3 and 0.0 <= results["train_acc"][-1].item() <= 1.0
    assert results["train_loss"][-1].item() == results["train_loss"][-1]  # pykan's .item()
    assert isinstance(results["reg"][-1].item(), float) and results["reg"][-1] > 0
    assert results.grid_updates == [1, 2]  # every max(1, 3 // 2) steps, from step 1 until step 3
    assert sorted(p.name for p in (tmp_path / "video").iterdir()) == ["0.png", "1.png", "2.png"]


def test_fit_start_grid_update_step(trained):
    model, dataset = trained
    h = model.copy().fit(dataset, steps=4, grid_update_num=4, stop_grid_update_step=4, start_grid_update_step=2,
                         progress=False)
    assert h.grid_updates == [2, 3]


@pytest.mark.parametrize("metric", ["edge_forward_sum", "edge_forward_spline_u", "edge_backward", "node_backward"])
def test_fit_with_every_pykan_reg_metric(trained, metric):
    model, dataset = trained
    h = model.copy().fit(dataset, opt="LBFGS", steps=2, lamb=0.01, reg_metric=metric, progress=False)
    assert len(h["reg"]) == 2 and all(np.isfinite(h["reg"])) and h["train_loss"][-1] < 0.5


def test_fit_rejects_unknown_pykan_option(trained):
    model, dataset = trained
    with pytest.raises(TypeError, match="display_metric"):
        model.copy().fit(dataset, steps=1, display_metric=["train_loss"], progress=False)
    with pytest.raises(ValueError, match="display_metrics"):
        model.copy().fit(dataset, steps=1, display_metrics=["train_acc"], progress=False)


def test_inspection_names(trained):
    model, dataset = trained
    model.get_act(dataset)
    assert model.act_fun is model.layers and model.symbolic_fun is model.symbolic
    xs, ys = model.get_fun(0, 0, 1)
    assert xs.shape == ys.shape == (200,) and np.all(np.diff(xs) >= 0)
    x_min, x_max, y_min, y_max = model.get_range(0, 0, 1, verbose=False)
    assert x_min == xs.min() and x_max == xs.max() and y_min == ys.min() and y_max == ys.max()
    ev = model.evaluate(dataset)
    assert set(ev) == {"test_loss", "n_edge", "n_grid"} and ev["n_edge"] == model.n_edge == 15
    assert ev["test_loss"] < 0.3
    import matplotlib.pyplot as plt

    plt.close("all")


def test_set_mode_remove_edge_remove_node(trained):
    model, _dataset = trained
    m = model.copy()
    m.set_mode(0, 1, 2, "s")
    assert m.act_fun[0].mask[2, 1] == 0 and m.symbolic_fun[0].mask[2, 1] == 1
    m.set_mode(0, 1, 2, "n")
    assert m.act_fun[0].mask[2, 1] == 1 and m.symbolic_fun[0].mask[2, 1] == 0
    m.remove_edge(0, 0, 3)
    assert m.act_fun[0].mask[3, 0] == 0 and m.n_edge == 14
    m.remove_node(1, 4)
    assert bool((m.act_fun[0].mask[4] == 0).all()) and bool((m.act_fun[1].mask[:, 4] == 0).all())
    assert m.n_edge == 11


def test_swap_auto_swap_expand_keep_the_function(trained):
    model, dataset = trained
    m = model.copy()
    x = dataset["test_input"]
    y = m(x).detach()
    m.swap(1, 0, 3)
    torch.testing.assert_close(m(x), y, atol=1e-6, rtol=0)
    m(dataset["train_input"])
    before = float(m.connection_cost)
    m.auto_swap()
    torch.testing.assert_close(m(x), y, atol=1e-6, rtol=0)
    assert float(m.connection_cost) <= before + 1e-6
    m.expand_width(1, 2)
    assert m.width == [2, 7, 1]
    torch.testing.assert_close(m(x), y, atol=1e-6, rtol=0)
    m.expand_depth()
    assert m.width == [2, 7, 1, 1]
    torch.testing.assert_close(m(x), y, atol=1e-6, rtol=0)
    with pytest.raises(NotImplementedError, match="multiplication"):
        m.expand_width(1, 1, sum_bool=False)


def test_perturb_and_module(trained):
    model, dataset = trained
    m = model.copy()
    m(dataset["train_input"])
    m.fix_symbolic(0, 0, 0, "sin")
    m.remove_edge(0, 1, 0)
    m.perturb(mag=0.5, mode="minimal")  # only symbolic edges whose nodes are symbolic get their spline back
    assert float(m.act_fun[0].mask[0, 0]) == 0.5 and float(m.act_fun[0].mask[0, 1]) == 0.0
    m2 = model.copy()
    m2.module(0, "[0]->[1,2]")
    mask = m2.act_fun[0].mask
    assert mask[1:3, 1].tolist() == [0.0, 0.0] and mask[0, 0] == 0 and mask[3:, 0].tolist() == [0.0, 0.0]
    assert mask[1:3, 0].tolist() == [1.0, 1.0]


def test_initialize_from_another_model(trained):
    model, dataset = trained
    x = dataset["train_input"]
    big = KAN(width=[2, 5, 1], grid=10, k=3, seed=0)
    out = big.initialize_from_another_model(model, x)
    assert out is big and big.grid == 10
    assert float((big(x) - model(x)).detach().abs().max()) < 1e-2
    torch.testing.assert_close(big(x), model.refine(10, x)(x), atol=1e-6, rtol=0)  # what refine computes


def test_checkpoints_rewind_checkout_history(trained, tmp_path):
    from kanlens.checkpoints import track

    model, dataset = trained
    m = model.copy()
    m.saveckpt(str(tmp_path / "one"))
    back = KAN.loadckpt(str(tmp_path / "one"))
    assert torch.equal(back(dataset["test_input"]), m(dataset["test_input"]))
    track(m, tmp_path / "runs")
    y0 = m(dataset["test_input"]).detach()
    m.fit(dataset, steps=2, progress=False)  # a tracked model logs its fits, as pykan's auto_save
    assert m.history() == ["0.0 => fit => 0.1"]
    old = m.rewind("0.0")
    assert (old.round, old.state_id) == (1, 0)
    torch.testing.assert_close(old(dataset["test_input"]), y0, atol=0, rtol=0)
    assert m.history() == ["0.0 => fit => 0.1", "### Round 1 ###"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["0.0", "0.1", "1.0", "history.txt"]
    assert m.checkout("0.1").width == m.width
    m.remove_edge(0, 0, 0)
    m.swap(1, 0, 1, log_history=False)
    assert m.history()[-1] == "0.1 => remove_edge => 0.2" and m.state_id == 2
    with pytest.raises(ValueError, match=r"round\.state"):
        m.checkout("latest")


def test_no_files_without_a_folder(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, _dataset = trained
    m = model.copy()
    m.log_history("fit")  # no folder named: pykan's auto_save=False behaviour
    m.plot()
    assert list(tmp_path.iterdir()) == []


def test_plot_pykan_arguments(trained, tmp_path):
    model, _dataset = trained
    for metric in ("forward_n", "forward_u", "backward"):
        fig = model.plot(metric=metric, in_vars=["a", "b"], out_vars=["y"], title="T", varscale=0.8, sample=True,
                         beta=10, scale=0.5)
        texts = [t.get_text() for t in fig.axes[0].texts]
        assert {"a", "b", "y", "T"} <= set(texts)
        assert any(c.get_gid() == "sample-0-0-0" for c in fig.axes[0].collections)
    model.plot(folder=str(tmp_path / "figures"))
    assert len(list((tmp_path / "figures").iterdir())) == model.n_edge


def test_plot_in_vars_after_prune_input():
    model = KAN(width=[3, 2, 1], seed=0)
    x = torch.rand(100, 3) * 2 - 1
    with torch.no_grad():
        model.act_fun[0].mask[:, 1] = 0
    small = model.prune_input(x=x)
    assert small.config.input_ids == [0, 2]
    fig = small.plot(x[:, [0, 2]], in_vars=["a", "b", "c"])
    assert {"a", "c"} <= {t.get_text() for t in fig.axes[0].texts}


def test_input_id_and_cache_data_like_pykan():
    model = KAN(width=[3, 2, 1], seed=0)
    assert model.input_id.tolist() == [0, 1, 2] and model.input_id.dtype == torch.long
    assert model.cache_data is None
    x = torch.rand(100, 3) * 2 - 1
    model(x)
    assert model.cache_data.shape == (100, 3) and torch.equal(model.cache_data, x)
    with torch.no_grad():
        model.act_fun[0].mask[:, 1] = 0
    small = model.prune_input(x=x)
    assert small.input_id.tolist() == [0, 2]


def test_symbolic_formula_uses_pykan_names(trained):
    model, dataset = trained
    m = model.copy()
    m.auto_symbolic(lib=["x", "x^2", "exp", "sin"])
    formula, variables = m.symbolic_formula()
    assert [str(v) for v in variables] == ["x_1", "x_2"]
    f = formula[0]
    x = dataset["test_input"][:5]
    want = m(x)[:, 0].detach().double().numpy()
    got = [float(f.subs({"x_1": float(a), "x_2": float(b)})) for a, b in x.tolist()]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_sparse_init():
    model = KAN(width=[3, 5, 1], seed=0, sparse_init=True)
    from kanlens import sparse_mask

    assert torch.equal(model.act_fun[0].mask, sparse_mask(3, 5).T)
    # pykan 0.2.8: sparse_mask(3, 5)
    assert sparse_mask(3, 5).tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0],
                                          [0.0, 0.0, 0.0, 1.0, 1.0]]


def test_tree_on_a_kan(trained):
    model, dataset = trained
    fig = model.tree(dataset["train_input"][:60], sym_th=1e-1, sep_th=1e-1)
    assert fig.axes[0].texts
    import matplotlib.pyplot as plt

    plt.close("all")


def test_formula_subs_x_1_acts():
    model = KAN(width=[2, 1], seed=0)
    model(torch.rand(50, 2))
    model.fix_symbolic(0, 0, 0, "x", fit_params=False)
    model.fix_symbolic(0, 1, 0, "x", fit_params=False)
    f = model.symbolic_formula()[0][0]
    assert f.free_symbols == {sympy.Symbol("x_1"), sympy.Symbol("x_2")}
    assert f.subs("x_1", 0.3).free_symbols == {sympy.Symbol("x_2")}


def test_model_basics_under_pykan_names(trained):
    model, dataset = trained
    x = dataset["test_input"]
    m = model.copy().to("cpu")
    assert m is not model and torch.equal(m(x), model(x))
    torch.testing.assert_close(m(x, singularity_avoiding=True, y_th=10.0), m(x), atol=0, rtol=0)
    m.update_grid_from_samples(dataset["train_input"])
    m.update_grid(dataset["train_input"])
    other = KAN(width=[2, 5, 1], grid=5, k=3, seed=0)
    old_grid = other.act_fun[0].grid.clone()
    other.initialize_grid_from_another_model(m, dataset["train_input"])
    lo, hi = dataset["train_input"].min(0).values, dataset["train_input"].max(0).values
    g = other.act_fun[0].grid[:, 3:-3]  # the knots inside (pykan's grid_eps=0.02 rule, from m's inputs)
    assert not torch.equal(other.act_fun[0].grid, old_grid)
    torch.testing.assert_close(g[:, 0], lo, atol=0.02, rtol=0)
    torch.testing.assert_close(g[:, -1], hi, atol=0.02, rtol=0)
    m(dataset["train_input"])
    m.fix_symbolic(0, 0, 0, "sin")
    m.fix_symbolic(0, 1, 0, "x^2")
    assert len(m.symbolic_fun[0].fixed_edges()) == 2
    m.unfix_symbolic(0, 1, 0)
    m.unfix_symbolic_all()
    assert not m.symbolic_fun[0].is_active() and not m.symbolic_fun[1].is_active()
    assert m.disable_symbolic_in_fit(0.0) == (m.save_act, m.config.symbolic_enabled)
    assert sum(p.numel() for p in m.get_params()) == sum(p.numel() for p in m.parameters())
    m(dataset["train_input"])
    m.auto_swap_l(1)
    fast = m.speed()
    assert fast is m and not m.save_act
