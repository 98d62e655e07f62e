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


@pytest.mark.parametrize("shape", [(5, 3), (1, 5), (3, 1), (20, 30)])
@pytest.mark.parametrize("python_path", [True, False])
def test_magnitude_penalty_matches_reference_and_gradcheck(shape, python_path, monkeypatch):
    """The fused L1 + entropy node on (out, in) magnitudes, in both its plain-Python (small CPU magnitudes)
    and its torch implementation: same value and gradient as l1_entropy, exact gradient (float64 gradcheck)."""
    from kanlens import regularization

    monkeypatch.setattr(regularization, "_PY_MAX_EDGES", 10_000 if python_path else 0)
    mag = torch.rand(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    fused = regularization._L1Entropy.apply(0.7, 2.0, mag)
    ref = l1_entropy(mag, 0.7, 2.0)
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(torch.autograd.grad(fused, mag)[0], torch.autograd.grad(ref, mag)[0])
    assert torch.autograd.gradcheck(lambda m: regularization._L1Entropy.apply(0.5, 3.0, m), (mag,))
    # several magnitudes in one node: the sum of the single ones
    other = torch.rand(2, 3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: regularization._L1Entropy.apply(0.5, 3.0, a, b), (mag, other))


def test_magnitude_reg_equals_total_reg():
    from kanlens import KAN
    from kanlens.regularization import magnitude_reg

    model = KAN(width=[2, 5, 1], seed=0, dtype=torch.float64)
    x = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    pred, edges, inputs = model.forward_with_edges(x)
    coefs = [layer.coef for layer in model.layers]
    kw = dict(lamb_l1=1.0, lamb_entropy=2.0, lamb_coef=0.3, lamb_coefdiff=0.2)
    ref = total_reg(edges, inputs, coefs, **kw)
    pred2, mags = model.forward_with_magnitudes(x)
    torch.testing.assert_close(pred2, pred)
    torch.testing.assert_close(magnitude_reg(mags, coefs, **kw), ref)
    params = [p for p in model.parameters() if p.requires_grad]
    g_ref = torch.autograd.grad(ref + pred.square().mean(), params, allow_unused=True)
    g = torch.autograd.grad(magnitude_reg(mags, coefs, **kw) + pred2.square().mean(), params, allow_unused=True)
    for a, b in zip(g, g_ref):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("width", [[2, 5, 1], [3, 2, 9, 2]])
def test_fused_stack_gradcheck_with_trainable_affine(width):
    """The one-node sparsity forward of a whole KAN (layers, node affine maps, magnitudes): exact gradients for
    inputs, spline parameters and trainable node scales / biases (float64 gradcheck), through the penalty too."""
    from kanlens import KAN
    from kanlens.layers.stack import stack_apply
    from kanlens.regularization import _L1Entropy

    model = KAN(width=width, seed=1, dtype=torch.float64, affine_trainable=True)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for l in range(model.depth):
            model.node_scale[l].add_(torch.rand(model.node_scale[l].shape, generator=gen, dtype=torch.float64))
            model.node_bias[l].add_(torch.rand(model.node_bias[l].shape, generator=gen, dtype=torch.float64) - 0.5)
    cfg = tuple((layer.mask, layer.grid, layer.k, layer.base_fun_name) for layer in model.layers)
    params = []
    for l, layer in enumerate(model.layers):
        params += [layer.coef, layer.scale_base, layer.scale_sp, model.node_scale[l], model.node_bias[l]]
    leaves = [p.detach().clone().requires_grad_() for p in params]
    x = (torch.rand(30, width[0], generator=gen, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()

    def objective(x, *ps):
        out, mags = stack_apply(x, cfg, ps)
        return out.square().mean() + 0.1 * _L1Entropy.apply(1.0, 2.0, *mags)

    assert torch.autograd.gradcheck(objective, (x, *leaves))
    assert torch.autograd.gradcheck(lambda *ps: objective(x.detach(), *ps), tuple(leaves))
