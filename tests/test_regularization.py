"""Sparsity penalties: the fused L1 + entropy node equals the op-by-op definition, values and gradients."""

import pytest
import torch

from kanlens.regularization import _AbsL1Entropy, coef_penalty, edge_magnitude, l1_entropy, total_reg


def test_fused_penalty_matches_reference_and_gradcheck():
    edges = torch.randn(40, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    fused = _AbsL1Entropy.apply(edges, 1.0, 2.0)
    ref = l1_entropy(edges.abs().mean(0), 1.0, 2.0)
    torch.testing.assert_close(fused, ref, atol=1e-12, rtol=0)
    g1, = torch.autograd.grad(fused, edges)
    g2, = torch.autograd.grad(ref, edges)
    torch.testing.assert_close(g1, g2, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(lambda e: _AbsL1Entropy.apply(e, 0.5, 3.0), (edges,))


def test_entropy_is_lower_for_concentrated_magnitudes():
    spread = torch.ones(3, 3)
    concentrated = torch.zeros(3, 3)
    concentrated[0, 0] = 9.0
    # Same L1 mass, lower entropy when one edge carries it.
    assert l1_entropy(concentrated, 0.0, 1.0) < l1_entropy(spread, 0.0, 1.0)


def test_std_n_metric_and_total_reg():
    edges = torch.randn(30, 2, 3, generator=torch.Generator().manual_seed(1))
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(2))
    mag = edge_magnitude(edges, x, "std_n")
    torch.testing.assert_close(mag, edges.std(0) / (x.std(0) + 0.1))
    coef = torch.randn(2, 3, 8)
    reg = total_reg([edges], [x], [coef], lamb_coef=0.5, metric="std_n")
    torch.testing.assert_close(reg, l1_entropy(mag) + coef_penalty(coef, 0.5))
    with pytest.raises(ValueError, match="reg_metric"):
        edge_magnitude(edges, x, "l2")
