"""pykan's ``kan.hypothesis``: separability and symmetry tests of a model (or any function), and its tree.

The tests are pykan's (KAN 2.0, section 4), measured with autograd on a batch ``x``:

* additive separability of input groups: the Hessian's cross-group entries vanish (scaled by the inputs' spreads,
  median over the batch); multiplicative: the same for ``log |f + bias|``;
* general separability ``f = F(g(x_A), h(x_B))``: for every pair ``a in A``, ``b in B`` the ratio
  ``(df/dx_b) / (df/dx_a)`` is multiplicatively separable;
* symmetry of a group ``A`` (``f = F(g(x_A), x_rest)``): the direction of ``grad_A f`` does not depend on the other
  inputs.

:func:`get_molecule` groups inputs hierarchically by symmetry, :func:`get_tree_node` labels each group
(``Id``, ``Add``, ``Mul``, ``GS``), :func:`plot_tree` draws the tree (``model.tree()``). The symbolic search's own
structure tests (sample swaps, in :mod:`kanlens.symbolic.search`) answer the same questions without derivatives;
these follow pykan's derivative-based definitions and thresholds so that its tutorials give its answers.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ._checks import check_choice, check_tensor
from .pykan_utils import batch_hessian, batch_jacobian

__all__ = [
    "batch_grad_normgrad",
    "detect_separability",
    "get_dependence",
    "get_molecule",
    "get_tree_node",
    "plot_tree",
    "test_general_separability",
    "test_separability",
    "test_symmetry",
    "test_symmetry_var",
]

log = logging.getLogger(__name__)
Func = Callable[[torch.Tensor], torch.Tensor]


def _check_x(x: object) -> torch.Tensor:
    x = check_tensor("x", x, ndim=2)
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least 2 samples, got shape {tuple(x.shape)}")
    return x.detach()


def _score_matrix(model: Func, x: torch.Tensor, mode: str, bias: float) -> torch.Tensor:
    """``median_batch |H_ij| std_i std_j`` of ``f`` (``mode="add"``) or of ``log |f + bias|`` (``"mul"``)."""
    check_choice("mode", mode, ("add", "mul"))
    f = model if mode == "add" else (lambda z: torch.log(torch.abs(model(z) + bias)))
    hess = batch_hessian(f, x)
    std = x.std(0)
    return torch.median((hess * std[None, :, None] * std[None, None, :]).abs(), dim=0).values


def _clusters(dist: np.ndarray, n: int) -> np.ndarray:
    """Complete-linkage clustering of a precomputed distance matrix into (at most) ``n`` clusters."""
    if n <= 1 or dist.shape[0] == 1:
        return np.zeros(dist.shape[0], dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    d = dist.copy()
    np.fill_diagonal(d, 0.0)
    labels = fcluster(linkage(squareform(d, checks=False), method="complete"), t=n, criterion="maxclust")
    # number the clusters by their first member
    order = {lab: k for k, lab in enumerate(dict.fromkeys(labels))}
    return np.array([order[v] for v in labels])


def detect_separability(model: Func, x: torch.Tensor, mode: str = "add", score_th: float = 1e-2,
                        res_th: float = 1e-2, n_clusters: int | list[int] | None = None, bias: float = 0.0,
                        verbose: bool = False) -> dict:
    """pykan's ``detect_separability``: groups of inputs between which ``f`` is additively (``mode="add"``) or
    multiplicatively (``"mul"``) separable.

    Inputs interact when their scaled Hessian score is at least ``score_th``; they are clustered (complete
    linkage) into ``n`` groups for ``n`` in ``n_clusters`` (default ``1..n_inputs``) and the largest ``n`` whose
    cross-group share of the scores is below ``res_th`` wins.

    Returns:
        ``{"hessian": score matrix (d, d), "n_groups": int, "labels": [group of each input],
        "groups": [[inputs], ...]}``.
    """
    x = _check_x(x)
    score = _score_matrix(model, x, mode, bias)
    dist = (score < score_th).double().cpu().numpy()
    d = x.shape[1]
    if isinstance(n_clusters, int):
        tries = [n_clusters]
    elif isinstance(n_clusters, (list, tuple)):
        tries = list(range(n_clusters[0], n_clusters[1] + 1))
    else:
        tries = list(range(1, d + 1))
    total = float(score.sum())
    results: dict = {"hessian": score, "n_groups": 1, "labels": [0] * d, "groups": [list(range(d))]}
    for n in tries:
        labels = _clusters(dist, n)
        groups = [[int(i) for i in np.where(labels == g)[0]] for g in range(int(labels.max()) + 1)]
        block = sum(float(score[g][:, g].sum()) for g in groups)
        ratio = (total - block) / total if total > 0 else 0.0
        if verbose:
            log.info("n_group=%d, residual_ratio=%.3g", n, ratio)
        if ratio < res_th:
            results.update(n_groups=len(groups), labels=[int(v) for v in labels], groups=groups)
    log.info("%s separability %sdetected", mode, "" if results["n_groups"] > 1 else "not ")
    return results


def test_separability(model: Func, x: torch.Tensor, groups: Sequence[Sequence[int]], mode: str = "add",
                      threshold: float = 1e-2, bias: float = 0.0) -> bool:
    """pykan's ``test_separability``: whether ``f`` is additively / multiplicatively separable between the
    ``groups`` (and between the grouped inputs and the others)."""
    x = _check_x(x)
    score = _score_matrix(model, x, mode, bias)
    groups = [list(g) for g in groups]
    ok = True
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            ok &= bool(score[groups[a]][:, groups[b]].max() < threshold)
    inside = [i for g in groups for i in g]
    outside = [i for i in range(x.shape[1]) if i not in inside]
    if inside and outside:
        ok &= bool(score[inside][:, outside].max() < threshold)
    return ok


def test_general_separability(model: Func, x: torch.Tensor, groups: Sequence[Sequence[int]],
                              threshold: float = 1e-2) -> bool:
    """pykan's ``test_general_separability``: ``f = F(g(x_A), h(x_B))`` for the groups (every gradient ratio
    ``(df/dx_b) / (df/dx_a)`` across two groups is multiplicatively separable)."""
    x = _check_x(x)
    groups = [list(g) for g in groups]
    ok = True
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            for ia in groups[a]:
                for ib in groups[b]:
                    def ratio(z: torch.Tensor, ia: int = ia, ib: int = ib) -> torch.Tensor:
                        g = batch_jacobian(model, z, create_graph=True)
                        return g[:, [ib]] / g[:, [ia]]

                    ok &= test_separability(ratio, x, groups, mode="mul", threshold=threshold)
    return ok


def batch_grad_normgrad(model: Func, x: torch.Tensor, group: Sequence[int],
                        create_graph: bool = False) -> torch.Tensor:
    """pykan's ``batch_grad_normgrad``: the derivative of the unit direction of ``grad_A f`` (``A = group``) in the
    other inputs ``B``, per sample.

    Shapes:
        x: ``(batch, d)``; returns ``(batch, |A|, |B|)``, ``[n, a, b] = d(g_a / |g_A|) / dx_b`` at sample ``n``
        (``g = grad f``, ``|g_A| + 1e-6`` as pykan).
    """
    x = _check_x(x)
    a = [int(i) for i in group]
    if not a or any(not 0 <= i < x.shape[1] for i in a):
        raise ValueError(f"group must hold input indices in 0..{x.shape[1] - 1}, got {list(group)}")
    b = [i for i in range(x.shape[1]) if i not in a]

    def direction(z: torch.Tensor) -> torch.Tensor:
        g = batch_jacobian(model, z, create_graph=True)[:, a]
        return g / (torch.norm(g, dim=1, keepdim=True) + 1e-6)

    z = x.clone().requires_grad_(True)
    with torch.enable_grad():
        u = direction(z)
        rows = [torch.autograd.grad(u[:, k].sum(), z, retain_graph=True, allow_unused=True,
                                    create_graph=create_graph)[0] for k in range(len(a))]
    rows = [torch.zeros_like(z) if r is None else r for r in rows]
    dep = torch.stack(rows, 1)[:, :, b]
    return dep if create_graph else dep.detach()


def get_dependence(model: Func, x: torch.Tensor, group: Sequence[int]) -> torch.Tensor:
    """How much the direction of ``grad_A f`` (``A = group``) depends on each other input: ``(|A|, d - |A|)``
    (median over the batch, scaled by the inputs' spreads)."""
    x = _check_x(x)
    a = list(group)
    b = [i for i in range(x.shape[1]) if i not in a]
    dep = batch_grad_normgrad(model, x, a)  # (batch, |A|, |B|)
    std = x.std(0)
    return torch.median((dep * std[None, a, None] * std[None, None, b]).abs(), dim=0).values


def test_symmetry(model: Func, x: torch.Tensor, group: Sequence[int], dependence_th: float = 1e-3) -> bool:
    """pykan's ``test_symmetry``: whether ``f = F(g(x_group), other inputs)``."""
    x = _check_x(x)
    if len(group) == 0 or len(group) == x.shape[1]:
        return True
    return bool(get_dependence(model, x, group).max() < dependence_th)


def test_symmetry_var(model: Func, x: torch.Tensor, input_vars: Sequence, symmetry_var) -> torch.Tensor:
    """pykan's ``test_symmetry_var``: whether ``f`` depends on the variables of ``symmetry_var`` only through
    ``symmetry_var`` (e.g. ``b + c`` in ``a * (b + c)``): per sample, ``|cos|`` of the angle between ``grad f`` and
    ``grad symmetry_var`` restricted to those variables. Logs the share of samples above 0.9 (pykan prints it;
    above 90% suggests the symmetry).

    Args:
        model: a KAN, an MLP or any ``f(x) -> (batch, n_out)`` (the first output is tested).
        x: inputs.
        input_vars: sympy symbols (or names), one per column of ``x`` in order.
        symmetry_var: a sympy expression in some of ``input_vars``.

    Shapes:
        x: ``(batch, d)``; returns ``(batch,)``.
    """
    import sympy

    from .symbolic.export import lambdify

    x = _check_x(x)
    syms = [v if isinstance(v, sympy.Symbol) else sympy.Symbol(str(v)) for v in input_vars]
    if len(syms) > x.shape[1]:
        raise ValueError(f"input_vars names {len(syms)} variables but x has {x.shape[1]} columns")
    expr = sympy.sympify(symmetry_var)
    unknown = expr.free_symbols - set(syms)
    if unknown:
        raise ValueError(f"symmetry_var uses {sorted(map(str, unknown))}, not among input_vars {syms}")
    idx = [syms.index(s) for s in expr.free_symbols]
    g_fn = lambdify(expr, syms, backend="torch")
    input_grad = batch_jacobian(model, x)[:, idx]
    sym_grad = batch_jacobian(lambda z: g_fn(z[:, :len(syms)])[:, None], x)[:, idx]
    cossim = torch.abs((input_grad * sym_grad).sum(1) / (input_grad.norm(dim=1) * sym_grad.norm(dim=1)))
    ratio = float((cossim > 0.9).double().mean())
    log.info("%.1f%% of the samples have a cosine similarity above 0.9: %s symmetry", 100 * ratio,
             "suggesting" if ratio > 0.9 else "not suggesting")
    return cossim


def get_molecule(model: Func, x: torch.Tensor, sym_th: float = 1e-3, verbose: bool = False) -> list[list[list[int]]]:
    """pykan's ``get_molecule``: inputs merged level by level into symmetric groups ("molecules").

    Returns one list of groups per level, from single inputs to one group of all inputs; every level's groups are
    ordered so that each group of the next level is a run of them.
    """
    x = _check_x(x)
    n = x.shape[1]
    atoms: list[list[int]] = [[i] for i in range(n)]
    levels = [copy.deepcopy(atoms)]
    already_full, n_layer, last = False, 0, n
    while True:
        molecules: list[list[int]] = []
        current: list[int] = []
        taken: list[list[int]] = []
        n_atom, pointer = 0, 0
        while atoms:
            atom = atoms[pointer]
            full = False
            if not current:
                current = current + atom
                taken.append(atom)
                n_atom += 1
            elif len(current + atom) == n and not already_full and n_atom > 1 and n_layer > 0:
                full = already_full = True
            elif test_symmetry(model, x, current + atom, dependence_th=sym_th):
                current = current + atom
                taken.append(atom)
                n_atom += 1
            if verbose:
                log.info("molecule %s, atom %s", current, atom)
            pointer += 1
            if pointer == len(atoms) or full:
                molecules.append(current)
                if full:
                    molecules.append(atom)
                    taken.append(atom)
                for t in taken:
                    atoms.remove(t)
                current, taken, pointer = [], [], 0
        if len(molecules) == last:
            levels.append([[i for m in molecules for i in m]])
            break
        levels.append(copy.deepcopy(molecules))
        last = len(molecules)
        if len(molecules) == 1:
            break
        atoms, n_layer = molecules, n_layer + 1
    for l in range(len(levels) - 1, 0, -1):  # order each level by the runs of the level above
        ordered = []
        for mol in levels[l]:
            start = 0
            for end in range(1, len(mol) + 1):
                if mol[start:end] in levels[l - 1]:
                    ordered.append(mol[start:end])
                    start = end
        levels[l - 1] = ordered
    return levels


def get_tree_node(model: Func, x: torch.Tensor, moleculess: list, sep_th: float = 1e-2,
                  skip_test: bool = True) -> tuple[list[list[int]], list[list[str]]]:
    """pykan's ``get_tree_node``: for every group of every level above the inputs, its arity (how many groups of
    the level below it joins) and property: ``"Id"`` (one child), ``"GS"`` (generally separable), ``"Add"`` /
    ``"Mul"`` (top level, separable) or ``""`` (``skip_test`` skips the tests)."""
    x = _check_x(x)
    arities, properties = [], []
    depth = len(moleculess) - 1
    for l in range(depth):
        below = moleculess[l]
        a_l, p_l = [], []
        for mol in moleculess[l + 1]:
            groups, start = [], 0
            for end in range(1, len(mol) + 1):
                if mol[start:end] in below:
                    groups.append(mol[start:end])
                    start = end
            a_l.append(len(groups))
            if len(groups) == 1:
                p_l.append("Id")
                continue
            prop = ""
            if not skip_test and test_general_separability(model, x, groups, threshold=sep_th):
                prop = "GS"
            if l == depth - 1 and not skip_test:
                if test_separability(model, x, groups, mode="add", threshold=sep_th):
                    prop = "Add"
                if test_separability(model, x, groups, mode="mul", threshold=sep_th):
                    prop = "Mul"
            p_l.append(prop)
        arities.append(a_l)
        properties.append(p_l)
    return arities, properties


def plot_tree(model: Func, x: torch.Tensor, in_var: Sequence | None = None, style: str = "tree",
              sym_th: float = 1e-3, sep_th: float = 1e-1, skip_sep_test: bool = False, verbose: bool = False,
              *, path=None):
    """pykan's ``plot_tree``: draw the tree of :func:`get_molecule` / :func:`get_tree_node`; returns the matplotlib
    Figure (``path=`` writes it)."""
    from .plotting.tree import draw_tree

    check_choice("style", style, ("tree", "box"))
    levels = get_molecule(model, x, sym_th=sym_th, verbose=verbose)
    arities, props = get_tree_node(model, x, levels, sep_th=sep_th, skip_test=skip_sep_test)
    return draw_tree(levels, arities, props, x.shape[1], in_var=in_var, style=style, path=path)


# pykan's names start with "test_": keep pytest from collecting them when a test module imports them
for _f in (test_separability, test_general_separability, test_symmetry):
    _f.__test__ = False  # type: ignore[attr-defined]
