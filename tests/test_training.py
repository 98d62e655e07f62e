"""fit(): the canonical pykan tutorial numbers, Adam, determinism, fast path with lamb == 0, validation."""

import pytest
import torch

from kanlens import KAN, create_dataset
from kanlens.layers.spline import KANLayer


def toy(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


@pytest.fixture(scope="module", params=[torch.float32, torch.float64], ids=["float32", "float64"])
def canonical(request):
    """pykan's tutorial settings: [2,5,1], grid 5, k 3, seed 0, LBFGS 50 steps, lamb=0.001; then refine(10)."""
    dtype = request.param
    ds = create_dataset(toy, n_var=2, train_num=1000, test_num=1000, seed=0, dtype=dtype)
    model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0, dtype=dtype)
    h1 = model.fit(ds, opt="LBFGS", steps=50, lamb=0.001, progress=False)
    fine = model.refine(10)
    h2 = fine.fit(ds, opt="LBFGS", steps=50, progress=False)
    return ds, model, h1, fine, h2


def test_canonical_fit_rmse(canonical):
    _, model, h1, _, _ = canonical
    assert len(h1.train_loss) == 50 and not h1.events
    assert h1.test_loss[-1] < 2e-2
    assert h1.grid_updates == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_canonical_refine_then_fit_rmse(canonical):
    _, model, _, fine, h2 = canonical
    assert fine.grid == 10 and model.grid == 5
    assert h2.test_loss[-1] < 3e-3


def test_refine_preserves_trained_function(canonical):
    ds, model, _, _, _ = canonical
    fine = model.refine(10)
    x = ds["test_input"]
    with torch.no_grad():
        y, yf = model(x), fine(x)
    assert float((y - yf).abs().max() / (y.max() - y.min())) < 1e-3


def test_same_seed_bit_identical():
    ds = create_dataset(toy, n_var=2, train_num=200, test_num=200, seed=0)
    runs = []
    for _ in range(2):
        model = KAN(width=[2, 5, 1], seed=0)
        h = model.fit(ds, steps=4, lamb=0.001, progress=False)
        runs.append((model, h))
    (m1, h1), (m2, h2) = runs
    assert h1.train_loss == h2.train_loss
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_adam_converges():
    ds = create_dataset(toy, n_var=2, train_num=1000, test_num=1000, seed=0)
    model = KAN(width=[2, 5, 1], seed=0)
    h = model.fit(ds, opt="Adam", steps=400, lr=2e-2, progress=False)
    assert h.test_loss[-1] < 5e-2


def test_minibatch_training_runs_and_improves():
    ds = create_dataset(toy, n_var=2, train_num=512, test_num=128, seed=0)
    model = KAN(width=[2, 3, 1], seed=0)
    h = model.fit(ds, opt="Adam", steps=60, batch=64, progress=False, update_grid=False)
    assert h.test_loss[-1] < h.test_loss[0]


def test_lamb_zero_never_builds_edge_tensor(monkeypatch):
    ds = create_dataset(toy, n_var=2, train_num=100, test_num=50, seed=0)
    model = KAN(width=[2, 3, 1], seed=0)

    def forbidden(*args, **kwargs):
        raise AssertionError("per-edge path used with lamb == 0")

    monkeypatch.setattr(KANLayer, "forward_edges", forbidden)
    monkeypatch.setattr(KAN, "forward_with_edges", forbidden)
    h = model.fit(ds, steps=3, lamb=0.0, progress=False, update_grid=False)
    assert len(h.train_loss) == 3


def test_lamb_positive_uses_edge_path_and_reports_reg():
    ds = create_dataset(toy, n_var=2, train_num=100, test_num=50, seed=0)
    model = KAN(width=[2, 3, 1], seed=0)
    h = model.fit(ds, steps=2, lamb=0.01, progress=False)
    assert all(r > 0 for r in h.reg)


def test_sparsity_shrinks_edges():
    ds = create_dataset(lambda x: torch.sin(torch.pi * x[:, [0]]), n_var=2, train_num=300, test_num=100, seed=0)
    dense, sparse = KAN(width=[2, 3, 1], seed=0), KAN(width=[2, 3, 1], seed=0)
    dense.fit(ds, steps=15, progress=False)
    sparse.fit(ds, steps=15, lamb=0.01, progress=False)
    x = ds["train_input"]
    mag = [m.edge_activations(x)[0].abs().mean(0).sum() for m in (dense, sparse)]
    assert mag[1] < mag[0]


def test_callback_can_stop():
    ds = create_dataset(toy, n_var=2, train_num=100, test_num=50, seed=0)
    model = KAN(width=[2, 3, 1])
    h = model.fit(ds, steps=10, progress=False, callbacks=[lambda step, m, hist: step == 2])
    assert len(h.train_loss) == 3 and h.stopped_early


def test_progress_bar_shows_loss(capsys):
    ds = create_dataset(toy, n_var=2, train_num=50, test_num=20, seed=0)
    KAN(width=[2, 2, 1]).fit(ds, steps=2, progress=True, update_grid=False)
    assert "train=" in capsys.readouterr().err


def test_history_is_dict_like():
    ds = create_dataset(toy, n_var=2, train_num=50, test_num=20, seed=0)
    h = KAN(width=[2, 2, 1]).fit(ds, steps=2, progress=False)
    assert h["train_loss"] == h.train_loss and "test_loss" in h.keys()  # noqa: SIM118 - keys() is part of the dict-like API


def _ds():
    return create_dataset(toy, n_var=2, train_num=20, test_num=20, seed=0)


@pytest.mark.parametrize(
    ("mutate", "kwargs", "exc", "match"),
    [
        (None, {"opt": "SGD"}, ValueError, "unknown opt 'SGD'"),
        (None, {"opt": "lbfgs"}, ValueError, "did you mean 'LBFGS'"),
        (None, {"steps": -1}, ValueError, "steps"),
        (None, {"lamb": -1.0}, ValueError, "lamb"),
        (None, {"lr": 0.0}, ValueError, "lr"),
        (None, {"batch": 0}, ValueError, "batch"),
        (None, {"reg_metric": "l2"}, ValueError, "reg_metric"),
        (lambda d: d.pop("test_label"), {}, ValueError, "missing keys"),
        (lambda d: d.__setitem__("train_input", d["train_input"][:, :1]), {}, ValueError, "2 features"),
        (lambda d: d["train_input"].__setitem__((0, 0), float("nan")), {}, ValueError, "NaN or Inf"),
        (lambda d: d["train_label"].__setitem__((1, 0), float("inf")), {}, ValueError, "NaN or Inf"),
        (lambda d: d.__setitem__("train_label", d["train_label"][:, 0]), {}, ValueError, "2-D"),
        (lambda d: d.__setitem__("train_label", d["train_label"][:5]), {}, ValueError, "rows"),
    ],
)
def test_bad_fit_arguments(mutate, kwargs, exc, match):
    ds = _ds()
    if mutate is not None:
        mutate(ds)
    with pytest.raises(exc, match=match):
        KAN(width=[2, 2, 1]).fit(ds, progress=False, **kwargs)


@pytest.mark.parametrize("history_size", [10, 3])
def test_flat_lbfgs_matches_torch_lbfgs_in_float64(history_size):
    """kanlens' flat L-BFGS (scalars as Python floats) takes exactly torch.optim.LBFGS's iterates and evaluations
    in float64 (the algorithm pykan uses), on Rosenbrock's function (exercises bracketing and zoom phases)."""
    from kanlens._lbfgs import FlatLBFGS

    def run(make):
        x = torch.nn.Parameter(torch.linspace(-1.5, 1.2, 12, dtype=torch.float64))
        opt, calls, path = make(x), [0], []

        def closure():
            calls[0] += 1
            x.grad = None
            loss = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
            loss.backward()
            return loss

        for _ in range(6):
            opt.step(closure)
            path.append(x.detach().clone())
        return calls[0], torch.stack(path)

    kw = dict(lr=1.0, history_size=history_size, tolerance_grad=1e-32, tolerance_change=1e-32)
    n_flat, path_flat = run(lambda x: FlatLBFGS(x, **kw))
    n_torch, path_torch = run(lambda x: torch.optim.LBFGS([x], line_search_fn="strong_wolfe", **kw))
    assert n_flat == n_torch >= 60
    assert torch.equal(path_flat, path_torch)


@pytest.mark.parametrize("width", [[2, 5, 1], [3, 4, 9, 2]])
def test_fused_objective_equals_autograd_objective(width):
    """LBFGS evaluations with the default loss and lamb > 0 skip autograd (hand-written gradient of MSE + sparsity
    penalty); value and gradient equal the autograd objective's in float64."""
    from kanlens.training import _mse, _Trainer

    torch.manual_seed(0)
    ds = create_dataset(lambda x: torch.sin(x.sum(1, keepdim=True)).repeat(1, width[-1]), n_var=width[0],
                        train_num=64, test_num=16, seed=0, dtype=torch.float64)
    model = KAN(width=width, seed=0, dtype=torch.float64)
    model.update_grid(ds["train_input"])
    lambs = dict(lamb=0.01, lamb_l1=1.0, lamb_entropy=2.0, lamb_coef=0.0, lamb_coefdiff=0.0)
    trainer = _Trainer(model, ds, opt="LBFGS", lr=None, batch=-1, lambs=lambs, reg_metric="abs", loss_fn=_mse,
                       max_nonfinite=3)
    assert trainer.fused
    results = []
    for stack in (trainer._stack(), None):
        trainer.cur.update(x=trainer.train_x, y=trainer.train_y, evals=0, bad_evals=0, start_bad=False, stack=stack)
        value = trainer.closure()
        results.append((float(value.detach()), trainer.flat.flat.grad.clone(), float(trainer.cur["reg"])))
    (v1, g1, r1), (v2, g2, r2) = results
    assert results[0][1].abs().sum() > 0
    assert v1 == pytest.approx(v2, rel=1e-12) and r1 == pytest.approx(r2, rel=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-13)
    trainer.flat.unlink()
