"""to_networkx: node/edge counts and attributes match the active network; GraphML round trip; lazy networkx."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import networkx as nx
import pytest
import torch

from kanlens import KAN
from kanlens.graph import node_id, write_graphml


def _data(n_in: int, n: int = 50) -> torch.Tensor:
    return torch.rand(n, n_in, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _active_edge_count(model: KAN) -> int:
    total = 0
    for l in range(model.depth):
        on = model.layers[l].mask != 0
        if model.symbolic[l].is_active():
            on = on | (model.symbolic[l].mask != 0)
        total += int(on.sum())
    return total


def test_counts_and_attributes_full_network():
    model = KAN([3, 4, 2], seed=0)
    x = _data(3)
    G = model.to_networkx(x=x)
    assert isinstance(G, nx.DiGraph)
    assert G.number_of_nodes() == 9 and G.number_of_edges() == 3 * 4 + 4 * 2
    assert G.graph == {"width": "3,4,2", "depth": 2, "has_scores": True}
    a = model.attribute(x)
    mag = model.edge_scores(x)
    n = G.nodes[node_id(1, 2)]
    assert (n["layer"], n["index"], n["name"], n["kind"]) == (1, 2, "h1_2", "hidden")
    assert n["score"] == pytest.approx(float(a.node_scores[1][2]))
    assert [G.nodes[node_id(0, i)]["name"] for i in range(3)] == ["x1", "x2", "x3"]
    assert G.nodes[node_id(2, 1)]["kind"] == "output" and G.nodes[node_id(2, 1)]["name"] == "y2"
    e = G.edges[node_id(0, 1), node_id(1, 3)]
    assert (e["layer"], e["i"], e["j"], e["mode"], e["function"]) == (0, 1, 3, "spline", "")
    assert e["score"] == pytest.approx(float(a.edge_scores[0][3, 1]))
    assert e["magnitude"] == pytest.approx(float(mag[0][3, 1]))
    assert all(d["layer"] < G.nodes[v]["layer"] for _, v, d in G.edges(data=True))


def test_counts_follow_masks_pruning_and_symbolic_edges():
    model = KAN([2, 3, 1], seed=1, input_names=["p", "q"])
    with torch.no_grad():
        model.layers[0].mask[0, 1] = 0.0
        model.layers[0].mask[2, 0] = 0.0
        model.layers[1].mask[0, 0] = 0.0
    model.symbolic[0].fix(0, 2, "sin", (1.0, 0.0, 1.0, 0.0))  # pure symbolic edge (spline off)
    model.symbolic[1].fix(1, 0, "x^2", (1.0, 0.0, 0.5, 0.0))  # spline and symbolic both on
    G = model.to_networkx(x=_data(2))
    assert G.number_of_nodes() == 6 and G.number_of_edges() == _active_edge_count(model) == 7
    assert not G.has_edge(node_id(0, 1), node_id(1, 0)) and not G.has_edge(node_id(1, 0), node_id(2, 0))
    sym = G.edges[node_id(0, 0), node_id(1, 2)]
    assert (sym["mode"], sym["function"]) == ("symbolic", "sin")
    mixed = G.edges[node_id(1, 1), node_id(2, 0)]
    assert (mixed["mode"], mixed["function"]) == ("mixed", "x^2")
    assert [G.nodes[node_id(0, i)]["name"] for i in range(2)] == ["p", "q"]
    # symbolic edges are ignored while the symbolic branch is switched off
    model.symbolic_enabled = False
    assert model.to_networkx(x=_data(2)).number_of_edges() == 6


def test_pruned_model_graph_uses_original_input_ids():
    model = KAN([4, 3, 1], seed=0)
    with torch.no_grad():
        model.layers[0].scale_base[:, 1] = 0.0
        model.layers[0].scale_sp[:, 1] = 0.0
    x = _data(4)
    small = model.prune_input(threshold=0.0, x=x)
    G = small.to_networkx()  # uses the batch the pruned model was left with
    assert G.number_of_nodes() == sum(small.width) == 7
    assert G.number_of_edges() == _active_edge_count(small) == 3 * 3 + 3
    assert [G.nodes[node_id(0, i)]["name"] for i in range(3)] == ["x1", "x3", "x4"]
    total = sum(d["score"] for n, d in G.nodes(data=True) if d["layer"] == 0)
    assert total == pytest.approx(float(small.feature_score().sum()))


def test_scores_are_nan_without_data():
    model = KAN([2, 2, 1], seed=0)
    G = model.to_networkx()
    assert G.graph["has_scores"] is False
    assert all(math.isnan(d["score"]) for _, d in G.nodes(data=True))
    assert all(math.isnan(d["score"]) and math.isnan(d["magnitude"]) for *_, d in G.edges(data=True))
    with pytest.raises(ValueError, match="pass x="):
        model.to_networkx(scores=True)
    model(_data(2))
    assert model.to_networkx().graph["has_scores"] is True
    assert model.to_networkx(scores=False).graph["has_scores"] is False


def test_graphml_roundtrip(tmp_path):
    model = KAN([2, 3, 1], seed=0, input_names=["a", "b"])
    with torch.no_grad():
        model.layers[0].mask[1, 0] = 0.0
    model.symbolic[0].fix(0, 1, "exp", (1.0, 0.0, 1.0, 0.0))
    x = _data(2)
    G = model.to_networkx(x=x)
    path = write_graphml(model, tmp_path / "sub" / "kan.graphml", x=x)
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    H = nx.read_graphml(path)
    assert isinstance(H, nx.DiGraph)
    assert {k: v for k, v in H.graph.items() if k not in ("node_default", "edge_default")} == G.graph
    assert dict(H.nodes(data=True)) == dict(G.nodes(data=True))
    assert {(u, v): d for u, v, d in H.edges(data=True)} == {(u, v): d for u, v, d in G.edges(data=True)}


def _module_level_imports(module) -> set[str]:
    """Top-level modules imported at module level (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(Path(module.__file__).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_networkx_is_imported_lazily():
    import kanlens.graph
    import kanlens.pruning

    for module in (kanlens.graph, kanlens.pruning):
        assert not _module_level_imports(module) & {"networkx", "matplotlib", "sklearn"}, module.__name__
