"""kanlens.hypothesis against pykan 0.2.8's answers on its own docstring examples (same x, float64).

Reference values: ``kan.hypothesis`` of pykan 0.2.8 run on the same functions and inputs
(``benchmarks/pykan_reference.py``).
"""

from __future__ import annotations

import pytest
import torch

from kanlens import detect_separability, get_molecule, get_tree_node, plot_tree
from kanlens import hypothesis as hyp

test_separability, test_symmetry = hyp.test_separability, hyp.test_symmetry
test_general_separability = hyp.test_general_separability

# pykan 0.2.8: detect_separability(f3, xh, mode="add")["hessian"]
REF_DET_HESSIAN = [[1.9205902027535524, 0.0, 0.0], [0.0, 0.7290659357609205, 0.654949564421145],
                   [0.0, 0.6549495644211452, 0.5883678154401036]]


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _x(d: int) -> torch.Tensor:
    return torch.normal(0, 1, size=(100, d), generator=torch.Generator().manual_seed(0))


def f1(x):
    return x[:, [0]] ** 2 * (x[:, [1]] + x[:, [2]])


def f2(x):
    return x[:, [0]] ** 2 * (x[:, [1]] ** 2 + x[:, [2]] ** 2) ** 2


def f3(x):
    return x[:, [0]] ** 2 + torch.exp(x[:, [1]] + x[:, [2]])


def f4(x):
    return ((x[:, [0]] ** 2 + x[:, [1]] ** 2) ** 2 + (x[:, [2]] ** 2 + x[:, [3]] ** 2) ** 2) ** 2


def f5(x):
    return (x[:, [0]] ** 2 + x[:, [1]] ** 2) ** 2 + (x[:, [2]] ** 2 + x[:, [3]] ** 2) ** 2


def test_separability_as_pykan():
    x = _x(3)
    assert test_separability(f1, x, [[0], [1, 2]], mode="mul") is True  # pykan: True
    assert test_separability(f1, x, [[0], [1, 2]], mode="add") is False  # pykan: False


def test_symmetry_as_pykan():
    x = _x(3)
    assert test_symmetry(f1, x, [1, 2]) is True  # pykan: True
    assert test_symmetry(f1, x, [0, 2]) is False  # pykan: False
    assert test_symmetry(f1, x, []) is True


def test_get_dependence():
    x = _x(3)
    dep = hyp.get_dependence(f1, x, [1, 2])  # grad_(1,2) f1 = x0^2 (1, 1): its direction ignores x0
    assert dep.shape == (2, 1) and float(dep.max()) < 1e-4  # (the 1e-6 guard in the norm leaves ~4e-6)
    assert float(hyp.get_dependence(f1, x, [0, 2]).max()) > 1e-2


def test_general_separability_as_pykan():
    x = _x(3)
    assert test_general_separability(f2, x, [[1], [0, 2]]) is False  # pykan: False
    assert test_general_separability(f2, x, [[0], [1, 2]]) is True  # pykan: True


def test_detect_separability_as_pykan():
    x = _x(3)
    r = detect_separability(f3, x, mode="add")
    assert r["n_groups"] == 2 and sorted(r["groups"]) == [[0], [1, 2]]  # pykan: 2, [[1, 2], [0]]
    torch.testing.assert_close(r["hessian"], torch.tensor(REF_DET_HESSIAN), atol=1e-10, rtol=1e-10)
    r = detect_separability(f1, x, mode="mul")
    assert r["n_groups"] == 2 and sorted(r["groups"]) == [[0], [1, 2]]  # pykan: 2, [[1, 2], [0]]


def test_molecule_and_tree_as_pykan():
    x = _x(4)
    levels = get_molecule(f4, x)
    assert levels == [[[0], [1], [2], [3]], [[0, 1], [2, 3]], [[0, 1, 2, 3]]]  # pykan's answer
    # pykan 0.2.8: ([[2, 2], [2]], [['GS', 'GS'], ['GS']]) for f4 and [['GS', 'GS'], ['Add']] for f5
    assert get_tree_node(f4, x, levels, sep_th=1e-1, skip_test=False) == ([[2, 2], [2]], [["GS", "GS"], ["GS"]])
    assert get_molecule(f5, x) == levels
    assert get_tree_node(f5, x, levels, sep_th=1e-1, skip_test=False) == ([[2, 2], [2]], [["GS", "GS"], ["Add"]])
    fig = plot_tree(f5, x, in_var=["a", "b", "c", "d"])
    assert {"a", "b", "c", "d", "+"} <= {t.get_text() for t in fig.axes[0].texts}
    import matplotlib.pyplot as plt

    plt.close("all")


def test_bad_input():
    with pytest.raises(ValueError, match="mode"):
        test_separability(f1, _x(3), [[0], [1, 2]], mode="sum")
    with pytest.raises(ValueError, match="at least 2 samples"):
        test_symmetry(f1, _x(3)[:1], [0, 1])
