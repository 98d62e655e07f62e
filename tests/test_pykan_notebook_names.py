"""pykan 0.2.8 names that its tutorial notebooks call, replayed on kanlens in pykan's calling style.

Reference numbers marked "pykan 0.2.8" come from running the same lines on pykan 0.2.8 (``/work/pykanenv``), float64.
"""

from __future__ import annotations

import pytest
import sympy
import torch

from kanlens import KAN, MLP
from kanlens import hypothesis as hyp


def _f2(x):
    return torch.sin(x[:, [0]] * x[:, [1]]) + x[:, [2]] ** 2 * x[:, [0]]


def test_symbolic_formula_normalizer_as_pykan():
    model = KAN(width=[2, 1], grid=3, k=3, seed=0, dtype=torch.float64)
    model(torch.rand(20, 2, dtype=torch.float64) * 2 - 1)
    model.fix_symbolic(0, 0, 0, "sin", fit_params=False)
    model.fix_symbolic(0, 1, 0, "x^2", fit_params=False)
    f, v = model.symbolic_formula(normalizer=[[0.5, -1.0], [2.0, 4.0]], output_normalizer=[[3.0], [0.5]])
    assert [str(s) for s in v] == ["x_1", "x_2"]
    # pykan 0.2.8: 0.5*(0.25*x_2 + 0.25)**2 + 0.5*sin(0.5*x_1 - 0.25) + 3.0, 3.0699167083234142 at (0.7, -0.2)
    x_1, x_2 = sympy.symbols("x_1 x_2")
    q = sympy.Rational(1, 4)
    want = (x_2 / 4 + q) ** 2 / 2 + sympy.sin(x_1 / 2 - q) / 2 + 3
    assert abs(float(f[0].subs({x_1: 0.7, x_2: -0.2})) - 3.0699167083234142) < 1e-12
    assert abs(float((f[0] - want).subs({x_1: -1.3, x_2: 2.1}))) < 1e-12


def test_symbolic_formula_normalizer_equals_the_model_on_raw_inputs():
    model = KAN(width=[3, 2, 2], grid=3, k=3, seed=1, dtype=torch.float64)
    x = torch.rand(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    model(x)
    model.auto_symbolic(lib=["x", "x^2", "sin", "exp"])
    mean, std = torch.tensor([0.1, -0.2, 0.3]), torch.tensor([1.5, 0.5, 2.0])
    out_mean, out_std = [1.0, -2.0], [0.5, 3.0]
    f, v = model.symbolic_formula(normalizer=[mean, std], output_normalizer=[out_mean, out_std])
    raw = x * std.double() + mean.double()  # the model saw (raw - mean) / std == x
    want = model(x).detach() * torch.tensor(out_std, dtype=torch.float64) + torch.tensor(out_mean, dtype=torch.float64)
    for j in range(2):
        fn = sympy.lambdify(v, f[j], "numpy")
        got = torch.as_tensor(fn(*raw.T.numpy()))
        torch.testing.assert_close(got, want[:, j], atol=1e-8, rtol=1e-8)


def test_symbolic_formula_accepts_expressions_as_var():
    model = KAN(width=[2, 1], seed=0, dtype=torch.float64)
    model(torch.rand(10, 2, dtype=torch.float64))
    model.fix_symbolic(0, 0, 0, "x", fit_params=False)
    model.fix_symbolic(0, 1, 0, "x", fit_params=False)
    a, b = sympy.symbols("a b")
    f, v = model.symbolic_formula(var=[a ** 2, b])
    assert sympy.simplify(f[0] - (a ** 2 + b)) == 0 and v == [a ** 2, b]


def test_symbolic_formula_normalizer_bad_shape():
    model = KAN(width=[2, 1], seed=0)
    model(torch.rand(10, 2))
    model.fix_symbolic(0, 0, 0, "x", fit_params=False)
    model.fix_symbolic(0, 1, 0, "x", fit_params=False)
    with pytest.raises(ValueError, match="normalizer must give 2 means"):
        model.symbolic_formula(normalizer=[[0.0], [1.0]])
    with pytest.raises(ValueError, match="output_normalizer"):
        model.symbolic_formula(output_normalizer=[[0.0, 1.0]])


def test_batch_grad_normgrad_as_pykan():
    x = torch.normal(0, 1, size=(6, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = hyp.batch_grad_normgrad(_f2, x[:3], [0, 1])
    # pykan 0.2.8: batch_grad_normgrad(f2, x[:3], [0, 1])
    want = [[[-0.9051845456300314, 0.0], [-0.5313828566765058, 0.0]],
            [[-2.58168183035252, 0.0], [1.0798771736029196, 0.0]],
            [[-0.009568162915280926, 0.0], [0.10052116340848564, 0.0]]]
    assert got.shape == (3, 2, 2)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), atol=1e-12, rtol=1e-10)
    with pytest.raises(ValueError, match="group must hold input indices"):
        hyp.batch_grad_normgrad(_f2, x, [5])


def test_symmetry_var_as_pykan():
    def model(x):
        return x[:, [0]] * (x[:, [1]] + x[:, [2]])

    x = torch.normal(0, 1, size=(6, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, b, c = sympy.symbols("a b c")
    torch.testing.assert_close(hyp.test_symmetry_var(model, x, [a, b, c], b + c),
                               torch.ones(6, dtype=torch.float64), atol=1e-12, rtol=0)
    got = hyp.test_symmetry_var(model, x, [a, b, c], b * c)
    # pykan 0.2.8: test_symmetry_var(model, x, [a, b, c], b * c)
    want = [0.9017159201614905, 0.9457448251500397, 0.27519392078756577, 0.1550262900796177, 0.8026544325689252,
            0.671315756156359]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), atol=1e-12, rtol=1e-10)
    with pytest.raises(ValueError, match="not among input_vars"):
        hyp.test_symmetry_var(model, x, [a, b], b * c)


def test_mlp_auto_swap_l():
    model = MLP(width=[2, 6, 5, 1], seed=0)
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = model(x).detach()
    before = float(model.connection_cost)
    model.auto_swap_l(2)
    torch.testing.assert_close(model(x), y, atol=1e-6, rtol=0)
    after_l2 = float(model.connection_cost)
    assert after_l2 <= before + 1e-9
    model.auto_swap_l(1)
    assert float(model.connection_cost) <= after_l2 + 1e-9
    with pytest.raises(IndexError, match="hidden layer"):
        model.auto_swap_l(3)


def test_multkan_is_kan_with_mult_nodes():
    from kanlens import MultKAN

    assert MultKAN is KAN
    model = MultKAN(width=[5, [0, 1]], mult_arity=2, grid=3, k=3, seed=1)
    assert model.width_in == [5, 1] and model.width_out == [5, 2]  # pykan 0.2.8: [5, 1] and [5, 2]


def test_notebook_import_rewrite():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pykan_notebooks.py"
    spec = importlib.util.spec_from_file_location("pykan_notebooks", path)
    nb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nb)
    src = ("from kan import *\nfrom kan.utils import create_dataset, ex_round\nimport kan\nimport kan.utils as ku\n"
           "    from kan.MultKAN import MultKAN\n%matplotlib inline\nfrom kanlens import KAN\nx = 'from kan import *'")
    assert nb.rewrite(src).splitlines() == [
        "from _nb_kan import *", "from _nb_kan.utils import create_dataset, ex_round", "import _nb_kan as kan",
        "import _nb_kan.utils as ku", "    from _nb_kan.MultKAN import MultKAN", "pass  # %matplotlib inline",
        "from kanlens import KAN", "x = 'from kan import *'"]


def test_prune_node_mode_and_log_history_as_pykan():
    model = KAN(width=[2, 5, 1], grid=3, k=3, seed=0)
    x = torch.rand(200, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model(x)
    small = model.prune_node(mode="manual", active_neurons_id=[[0, 2]], log_history=False)
    assert small.width == [2, 2, 1]  # pykan 0.2.8: prune_node(mode='manual', active_neurons_id=[[0, 2]]).width_in
    torch.testing.assert_close(small.prune_node(1e-9, "auto")(x), small(x))
    with pytest.raises(ValueError, match="mode='manual' needs active_neurons_id"):
        model.prune_node(mode="manual")
    with pytest.raises(ValueError, match="mode"):
        model.prune_node(mode="manuel", active_neurons_id=[[0]])
    assert model.prune_input(0.0, [1], log_history=False).config.input_ids == [1]


def test_unfix_symbolic_log_history(tmp_path):
    from kanlens import checkpoints

    model = KAN(width=[2, 1], grid=3, k=3, seed=0)
    model(torch.rand(20, 2))
    model.fix_symbolic(0, 0, 0, "x", fit_params=False)
    checkpoints.track(model, tmp_path / "ckpt")
    model.unfix_symbolic(0, 0, 0, log_history=False)
    assert model.history() == []
    model.fix_symbolic(0, 1, 0, "x", fit_params=False)
    model.unfix_symbolic(0, 1, 0)
    model.fix_symbolic(0, 0, 0, "x", fit_params=False)
    model.unfix_symbolic_all()
    assert model.history() == ["0.0 => unfix_symbolic => 0.1", "0.1 => unfix_symbolic_all => 0.2"]
    assert bool((model.act_fun[0].mask == 1).all()) and model.symbolic[0].fixed_edges() == []


def test_kanlayer_swap_as_pykan():
    from kanlens import KANLayer, Symbolic_KANLayer

    layer = KANLayer(in_dim=3, out_dim=2, num=5, k=3, generator=torch.Generator().manual_seed(0))
    x = torch.rand(40, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        layer.mask[1, 2] = 0.0
        layer.grid[0] *= 1.5  # inputs with different grids: swapping inputs must carry the grids along
    y = layer(x).detach()
    layer.swap(0, 2, mode="in")
    torch.testing.assert_close(layer(x[:, [2, 1, 0]]), y, atol=1e-6, rtol=1e-6)
    assert float(layer.mask[1, 0]) == 0.0
    layer.swap(0, 1, mode="out")
    torch.testing.assert_close(layer(x[:, [2, 1, 0]]), y[:, [1, 0]], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        layer.swap(0, 1, mode="up")
    with pytest.raises(IndexError, match="2 outputs"):
        layer.swap(0, 2, mode="out")

    sym = Symbolic_KANLayer(in_dim=2, out_dim=2)
    sym.fix(0, 1, "sin", (2.0, 0.5, 1.5, -1.0))
    sym.fix(1, 0, "x^2")
    z = torch.rand(30, 2, generator=torch.Generator().manual_seed(2))
    out = sym(z).detach()
    sym.swap(0, 1, mode="in")
    assert sym.function_name(1, 1) == "sin" and sym.function_name(0, 0) == "x^2"
    torch.testing.assert_close(sym(z[:, [1, 0]]), out)
    sym.swap(0, 1, mode="out")
    torch.testing.assert_close(sym(z[:, [1, 0]]), out[:, [1, 0]])
