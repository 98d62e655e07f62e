"""Model zoo: shapes, parameter matching, training on real digits (sklearn), grid updates, augmentation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kanlens.layers.conv import KANConv2d
from kanlens.vision import (
    CNN,
    KANConvNet,
    count_parameters,
    evaluate,
    matched_cnn,
    random_shift,
    train_classifier,
)


def test_shapes_and_parameter_counts() -> None:
    x = torch.rand(3, 1, 28, 28)
    kan = KANConvNet(channels=(4, 8), grid=5, k=3)
    cnn = CNN(channels=(8, 16))
    assert kan(x).shape == (3, 10) and cnn(x).shape == (3, 10)
    # the 5.3K-parameter anchor CNN: conv 1->8 (80) + conv 8->16 (1168) + linear 400->10 (4010)
    assert count_parameters(cnn) == 80 + 1168 + 4010
    # KAN: per (in, out) pair K^2 * (G + k + 2) + biases, linear head on 8 x 5 x 5
    assert count_parameters(kan) == (4 * 9 * 10 + 4) + (8 * 4 * 9 * 10 + 8) + (200 * 10 + 10)
    act = KANConvNet(channels=(4, 8), activation=True)
    assert count_parameters(act) == count_parameters(kan) + (4 + 8) * (10 + 1)
    assert len(act.kan_convs) == 4 and all(isinstance(m, KANConv2d) for m in act.kan_convs)
    rgb = KANConvNet(in_channels=3, num_classes=5, channels=(2, 3, 4), image_size=32, padding=1, head="kan")
    assert rgb(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    # shared shapes in stage 2: per pair 2 * K^2 + G + k (the 1x1 activations are unaffected)
    shared = KANConvNet(channels=(4, 8), grid=5, k=3, shared_shape=(False, True))
    assert count_parameters(shared) == (4 * 9 * 10 + 4) + (8 * 4 * (2 * 9 + 8) + 8) + (200 * 10 + 10)
    assert [c.shared_shape for c in shared.convs] == [False, True] and shared.config["shared_shape"] == (False, True)
    assert shared(x).shape == (3, 10)
    with pytest.raises(ValueError, match="shared_shape must be one value or one per stage"):
        KANConvNet(channels=(4, 8), shared_shape=(True, False, True))


def test_activation_grid_and_position() -> None:
    x = torch.rand(2, 1, 28, 28)
    base = KANConvNet(channels=(4, 8), grid=(1, 1), k=(1, 1), activation=(False, True))
    wide = KANConvNet(channels=(4, 8), grid=(1, 1), k=(1, 1), activation=(False, True), activation_grid=3,
                      activation_k=3)
    # the 1x1 activation: 8 channels x (G + k + 2) + 8 biases
    assert count_parameters(wide) - count_parameters(base) == 8 * ((3 + 3 + 2) - (1 + 1 + 2))
    assert wide.acts[1][1].num == 3 and wide.acts[1][1].k == 3 and wide.convs[1].num == 1
    after = KANConvNet(channels=(4, 8), activation=(False, True), activation_after_pool=True)
    before = KANConvNet(channels=(4, 8), activation=(False, True))
    before.load_state_dict(after.state_dict())
    after.eval(), before.eval()
    assert after(x).shape == (2, 10)
    # after the pooling: activation(maxpool(conv(x))) for the last stage
    pool = torch.nn.functional.max_pool2d
    with torch.no_grad():
        h = pool(before.convs[0](x), 2)
        h = after.acts[1](pool(before.convs[1](before.norms[1](h)), 2))
        torch.testing.assert_close(after(x), after.head(h.flatten(1)))
        assert not torch.allclose(after(x), before(x))
    assert after.config["activation_after_pool"] and not before.config["activation_after_pool"]
    grouped = KANConvNet(channels=(4, 8), grid=(1, 3), k=(1, 3), groups=(1, 2))
    assert grouped.convs[1].groups == 2 and grouped(x).shape == (2, 10)
    assert count_parameters(grouped) == (4 * 9 * 4 + 4) + (8 * 2 * 9 * 8 + 8) + (200 * 10 + 10)
    affine = KANConvNet(channels=(4, 8), activation=(False, True), affine_norm=True)
    assert count_parameters(affine) == count_parameters(before) + 2 * (4 + 8)


def test_matched_cnn_is_closest() -> None:
    kan = KANConvNet(channels=(4, 8))
    target = count_parameters(kan)
    cnn = matched_cnn(target)
    c1, c2 = cnn.config["channels"]
    best = abs(count_parameters(cnn) - target)
    for other in [(c1 - 1, c2), (c1 + 1, c2), (c1, c2 - 1), (c1, c2 + 1), (8, 16)]:
        assert abs(count_parameters(CNN(channels=other)) - target) >= best
    assert best / target < 0.01
    assert matched_cnn(5258).config["channels"] == (8, 16)


def test_seeded_init_and_global_rng_untouched() -> None:
    state = torch.get_rng_state()
    a, b = KANConvNet(seed=3), KANConvNet(seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(KANConvNet(seed=4).head.weight, a.head.weight)


def test_train_on_real_digits_beats_chance_by_far(digits) -> None:
    x, y = digits
    model = KANConvNet(channels=(4, 6), image_size=8, padding=1, activation=True, seed=0)
    before = evaluate(model, x[1200:], y[1200:])
    res = train_classifier(model, x[:1200], y[:1200], epochs=4, batch_size=64, lr=2e-2, x_val=x[1200:], y_val=y[1200:])
    assert len(res.losses) == 4 and res.losses[-1] < res.losses[0]
    assert res.val_accuracy[-1] > 0.85 > before
    assert res.seconds > 0 and res.cpu_seconds > 0 and res.epochs == 4


def test_training_is_reproducible(digits) -> None:
    x, y = digits
    out = []
    for _ in range(2):
        model = CNN(channels=(2, 4), image_size=8, padding=1, seed=1)
        train_classifier(model, x[:200], y[:200], epochs=1, batch_size=50, seed=5, max_shift=1)
        out.append(model.head.weight.detach().clone())
    torch.testing.assert_close(out[0], out[1], atol=0, rtol=0)


def test_update_grid_covers_stage_inputs(digits) -> None:
    x, _ = digits
    model = KANConvNet(channels=(3, 4), image_size=8, padding=1, activation=True)
    before = model.eval()(x[:64])
    model.train()
    model.update_grid(x[:256])
    first = model.convs[0]
    lo, hi = first.grid[0, first.k], first.grid[0, -first.k - 1]
    assert float(lo) == pytest.approx(0.0, abs=1e-6) and float(hi) == pytest.approx(1.0, abs=1e-6)
    assert model.training
    after = model.eval()(x[:64])
    assert float((after - before).abs().max().detach()) < 0.1 * float(before.abs().max().detach())


def test_random_shift() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(16, 2, 9, 9)
    x[:, :, 4, 4] = torch.arange(1.0, 3.0)
    out = random_shift(x, 2, gen)
    assert out.shape == x.shape
    torch.testing.assert_close(out.sum(dim=(2, 3)), x.sum(dim=(2, 3)))  # the pixel moves, nothing is lost
    pos = [divmod(int(img[0].argmax()), 9) for img in out]
    assert all(abs(r - 4) <= 2 and abs(c - 4) <= 2 for r, c in pos)
    assert len(set(pos)) > 4  # per-image offsets
    torch.testing.assert_close(out[:, 1], 2 * out[:, 0])  # channels move together
    torch.testing.assert_close(random_shift(x, 0, gen), x)


def test_evaluate_restores_mode_and_counts() -> None:
    model = CNN(channels=(2, 2), image_size=8, padding=1)
    model.train()
    x = torch.rand(10, 1, 8, 8)
    pred = model.eval()(x).argmax(1)
    model.train()
    assert evaluate(model, x, pred, batch_size=3) == 1.0
    assert model.training


def test_bad_arguments(digits) -> None:
    x, y = digits
    with pytest.raises(ValueError, match="did you mean 'kan'"):
        KANConvNet(head="kna")
    with pytest.raises(ValueError, match="too small"):
        KANConvNet(image_size=8)
    with pytest.raises(ValueError, match="at least one"):
        CNN(channels=())
    model = CNN(channels=(2, 2), image_size=8, padding=1)
    with pytest.raises(ValueError, match="int64"):
        train_classifier(model, x[:10], y[:10].float(), epochs=1)
    with pytest.raises(ValueError, match="4-D"):
        train_classifier(model, x[:10, 0], y[:10], epochs=1)
    with pytest.raises(ValueError, match="schedule"):
        train_classifier(model, x[:10], y[:10], epochs=1, schedule="linear")


def test_training_helpers_name_bad_arguments():
    x, y = torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    # one exception type per kind of mistake (kanlens._checks): ValueError out of range, TypeError not an int
    with pytest.raises(ValueError, match=r"^batch_size must be >= 1, got 0$"):
        train_classifier(CNN(), x, y, batch_size=0)
    with pytest.raises(ValueError, match=r"^epochs must be >= 0, got -1$"):
        train_classifier(CNN(), x, y, epochs=-1)
    with pytest.raises(ValueError, match=r"^max_shift must be >= 0, got -2$"):
        train_classifier(CNN(), x, y, max_shift=-2)
    with pytest.raises(TypeError, match=r"^batch_size must be an int, got float \(2\.5\)$"):
        train_classifier(CNN(), x, y, batch_size=2.5)
    with pytest.raises(TypeError, match=r"^epochs must be an int, got bool \(True\)$"):
        train_classifier(CNN(), x, y, epochs=True)
    with pytest.raises(TypeError, match=r"^max_shift must be an int, got str \('1'\)$"):
        train_classifier(CNN(), x, y, max_shift="1")
    with pytest.raises(ValueError, match=r"^batch_size must be >= 1, got 0$"):
        evaluate(CNN(), x, y, batch_size=0)
    with pytest.raises(TypeError, match=r"^batch_size must be an int, got NoneType \(None\)$"):
        evaluate(CNN(), x, y, batch_size=None)
    with pytest.raises(ValueError, match=r"class labels of shape \(4,\)"):
        evaluate(CNN(), x, y[:3])
    result = train_classifier(CNN(), x, y, epochs=np.int64(1), batch_size=np.int64(4), max_shift=np.int64(1))
    assert type(result.epochs) is int and result.epochs == 1 and len(result.losses) == 1
    with pytest.raises(ValueError, match="target_params must be a positive int"):
        matched_cnn(0)
    with pytest.raises(ValueError, match="no two-stage CNN"):
        matched_cnn(5)
