"""Reference numbers from pykan 0.2.8 for tests/test_pykan_api.py, test_pykan_utils.py and test_hypothesis.py.

Run with a Python that has pykan 0.2.8 installed (kanlens never imports pykan), from an empty folder (pykan writes
./model): ``python benchmarks/pykan_reference.py``. The printed numbers are pasted into the tests as constants.
"""
# ruff: noqa: E731, E402, E501
import numpy as np
import torch

torch.set_default_dtype(torch.float64)
from kan import KAN
from kan.hypothesis import (
    detect_separability,
    get_molecule,
    get_tree_node,
    test_general_separability,
    test_separability,
    test_symmetry,
)
from kan.spline import B_batch, extend_grid
from kan.utils import sparse_mask

np.set_printoptions(precision=10)

def setp(m):
    with torch.no_grad():
        for l, layer in enumerate(m.act_fun):
            i_, j_, b_ = layer.coef.shape  # (in, out, nb)
            I, J, B = torch.meshgrid(torch.arange(i_), torch.arange(j_), torch.arange(b_), indexing="ij")
            layer.coef.copy_(0.3 * torch.sin(1.3 * I + 0.7 * J + 0.5 * B + l))
            I, J = torch.meshgrid(torch.arange(i_), torch.arange(j_), indexing="ij")
            layer.scale_base.copy_(0.5 + 0.2 * torch.cos(I + 2.0 * J + l))
            layer.scale_sp.copy_(1.0 + 0.1 * I - 0.05 * J)
m = KAN(width=[2, 3, 1], grid=3, k=3, seed=0, auto_save=False)
setp(m)
g = torch.Generator().manual_seed(0)
x = torch.rand(64, 2, generator=g) * 2 - 1
y = m(x)
print("OUT", y[:4, 0].tolist())
for metric in ["edge_forward_spline_n", "edge_forward_sum", "edge_forward_spline_u"]:
    print("REG", metric, m.get_reg(metric, 1.0, 2.0, 0.0, 0.0).item())
print("REGCOEF", m.get_reg("edge_forward_spline_n", 1.0, 2.0, 0.5, 0.25).item())
m.attribute(plot=False)
print("REG edge_backward", m.get_reg("edge_backward", 1.0, 2.0, 0.0, 0.0).item())
m.node_attribute()
print("REG node_backward", m.get_reg("node_backward", 1.0, 2.0, 0.0, 0.0).item())
m.attribute(plot=False)
print("FEATURE", m.feature_score.tolist())
print("EDGE0", m.edge_scores[0].tolist())
print("ATTR_1_2", m.attribute(1, 2, plot=False).tolist())
m.attribute(plot=False)
print("CC", m.connection_cost.item())
print("FI", m.feature_interaction(1))
m.attribute(plot=False)
m.prune_edge(threshold=0.05, log_history=False)
print("MASK", m.act_fun[0].mask.T.tolist(), m.act_fun[1].mask.T.tolist())
# splines
grid = torch.linspace(-1, 1, 5)[None].repeat(2, 1)
ge = extend_grid(grid, k_extend=3)
print("EXT", ge[0].tolist())
xs = torch.tensor([[-0.9, 0.3], [0.1, 0.77], [0.55, -0.2]])
print("BB3", B_batch(xs, ge, k=3)[:, 0].tolist())
print("BB0", B_batch(xs, ge, k=0)[:, 1].tolist())
print("SPARSE", sparse_mask(3, 5).tolist())
# hypothesis on pykan's docstring functions
xh = torch.normal(0, 1, size=(100, 3), generator=torch.Generator().manual_seed(0))
f1 = lambda x: x[:, [0]] ** 2 * (x[:, [1]] + x[:, [2]])
print("SEP", bool(test_separability(f1, xh, [[0], [1, 2]], mode="mul")), bool(test_separability(f1, xh, [[0], [1, 2]], mode="add")))
print("SYM", bool(test_symmetry(f1, xh, [1, 2])), bool(test_symmetry(f1, xh, [0, 2])))
f2 = lambda x: x[:, [0]] ** 2 * (x[:, [1]] ** 2 + x[:, [2]] ** 2) ** 2
print("GSEP", bool(test_general_separability(f2, xh, [[1], [0, 2]])), bool(test_general_separability(f2, xh, [[0], [1, 2]])))
f3 = lambda x: x[:, [0]] ** 2 + torch.exp(x[:, [1]] + x[:, [2]])
r = detect_separability(f3, xh, mode="add")
print("DET", r["n_groups"], r["groups"], r["hessian"].tolist())
r = detect_separability(f1, xh, mode="mul")
print("DETMUL", r["n_groups"], r["groups"])
f4 = lambda x: ((x[:, [0]] ** 2 + x[:, [1]] ** 2) ** 2 + (x[:, [2]] ** 2 + x[:, [3]] ** 2) ** 2) ** 2
x4 = torch.normal(0, 1, size=(100, 4), generator=torch.Generator().manual_seed(0))
print("MOL", get_molecule(f4, x4, verbose=False))
print("TREE4", get_tree_node(f4, x4, get_molecule(f4, x4, verbose=False), sep_th=1e-1, skip_test=False))
f5 = lambda x: (x[:, [0]] ** 2 + x[:, [1]] ** 2) ** 2 + (x[:, [2]] ** 2 + x[:, [3]] ** 2) ** 2
print("TREE5", get_tree_node(f5, x4, get_molecule(f5, x4, verbose=False), sep_th=1e-1, skip_test=False))
