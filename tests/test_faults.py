"""Fault injection: corrupted / tampered checkpoints and non-finite training never lose or poison a model.

Checkpoints: every broken file raises ``ValueError`` (``CheckpointError``) naming the file and the problem, executes
nothing (pickle payloads that would create a marker file) and leaves every file byte-for-byte untouched.
Training: NaN batches, exploding losses, absurd learning rates and poisoning callbacks end with a finite model equal
to the last finite state, a ``RuntimeWarning`` when training had to stop, and a history that says what happened.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch

import kanlens.io as kio
from kanlens import KAN, load, save
from kanlens.io import CheckpointError, CheckpointNotFoundError

# ---------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture
def ckpt(tmp_path) -> Path:
    model = KAN(width=[2, 3, 1], seed=0)
    model.symbolic[0].fix(0, 1, "sin", (2.0, 0.0, 1.0, 0.0))
    return save(model, tmp_path / "ckpt")


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())} if path.is_dir() else {}


def _assert_load_fails(path: Path, bad_file: str, *patterns: str, exc: type = CheckpointError) -> CheckpointError:
    """load(path) raises ``exc`` (a ValueError) naming ``bad_file`` and ``patterns``; no file changes."""
    before = _files(path)
    listing = sorted(os.listdir(path.parent))
    with pytest.raises(exc) as info:
        load(path)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert bad_file in msg, msg
    for p in patterns:
        assert p in msg, msg
    assert _files(path) == before
    assert sorted(os.listdir(path.parent)) == listing
    return info.value


def _resign(path: Path, edit=None, tensors: bytes | None = None) -> None:
    """Tamper like an attacker who knows the format: rewrite files and make every checksum consistent again."""
    if tensors is not None:
        (path / kio.TENSORS_FILE).write_bytes(tensors)
    meta = json.loads((path / kio.CONFIG_FILE).read_text())
    data = (path / kio.TENSORS_FILE).read_bytes()
    meta["tensors"]["bytes"] = len(data)
    meta["tensors"]["sha256"] = hashlib.sha256(data).hexdigest()
    if edit is not None:
        edit(meta)
    meta["checksum"] = kio._meta_checksum(meta)
    (path / kio.CONFIG_FILE).write_text(json.dumps(meta))


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_resigned_untouched_checkpoint_still_loads(ckpt):
    _resign(ckpt)  # sanity check of the tampering helper: re-signing alone breaks nothing
    assert load(ckpt).width == [2, 3, 1]


def test_truncated_tensor_file(ckpt):
    data = (ckpt / "tensors.pt").read_bytes()
    (ckpt / "tensors.pt").write_bytes(data[: len(data) // 2])
    _assert_load_fails(ckpt, "tensors.pt", "truncated")


def test_truncated_tensor_file_with_consistent_checksums(ckpt):
    data = (ckpt / "tensors.pt").read_bytes()
    _resign(ckpt, tensors=data[: len(data) - 100])
    _assert_load_fails(ckpt, "tensors.pt", "cannot be read")


def test_truncated_config(ckpt):
    text = (ckpt / "config.json").read_bytes()
    (ckpt / "config.json").write_bytes(text[: len(text) // 2])
    _assert_load_fails(ckpt, "config.json", "not valid JSON")


@pytest.mark.parametrize("name", ["tensors.pt", "config.json"])
def test_every_sampled_bit_flip_is_detected(ckpt, name):
    target = ckpt / name
    original = target.read_bytes()
    gen = torch.Generator().manual_seed(0)
    n_bits = len(original) * 8
    bits = {0, n_bits - 1, *torch.randint(0, n_bits, (24,), generator=gen).tolist()}
    for bit in sorted(bits):
        flipped = bytearray(original)
        flipped[bit // 8] ^= 1 << (bit % 8)
        target.write_bytes(bytes(flipped))
        _assert_load_fails(ckpt, name)
    target.write_bytes(original)
    assert load(ckpt).width == [2, 3, 1]


@pytest.mark.parametrize("resign", [False, True], ids=["plain", "resigned"])
@pytest.mark.parametrize("container", ["raw_pickle", "torch_zip", "inside_state_dict"])
def test_pickle_payload_is_never_executed(ckpt, tmp_path, container, resign):
    marker = tmp_path / "pwned"
    payload = _Payload(marker)
    if container == "raw_pickle":
        data = pickle.dumps(payload)
    else:
        obj = payload if container == "torch_zip" else {**torch.load(ckpt / "tensors.pt"), "evil": payload}
        torch.save(obj, tmp_path / "evil.pt")
        data = (tmp_path / "evil.pt").read_bytes()
        (tmp_path / "evil.pt").unlink()
    if resign:
        _resign(ckpt, tensors=data)
    else:
        (ckpt / "tensors.pt").write_bytes(data)
    err = _assert_load_fails(ckpt, "tensors.pt")
    assert not marker.exists(), "the pickle payload was executed"
    if resign:
        expected = "not a torch tensor archive" if container == "raw_pickle" else "weights-only"
        assert expected in str(err)
    # the payload really would run if unpickled (so the test proves something)
    pickle.loads(pickle.dumps(payload))
    assert marker.exists()


@pytest.mark.parametrize("missing", ["tensors.pt", "config.json"])
def test_missing_file(ckpt, missing):
    (ckpt / missing).unlink()
    _assert_load_fails(ckpt, missing, "missing")


def test_missing_directory_and_file_path(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist") as info:
        load(tmp_path / "nothing")
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "nothing") in str(info.value)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        load(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize(("version", "hint"), [(0, "cannot read"), (2, "upgrade kanlens"), ("1", "cannot read"),
                                               (None, "cannot read"), (True, "cannot read")])
def test_wrong_format_version(ckpt, version, hint):
    _resign(ckpt, edit=lambda m: m.__setitem__("format_version", version))
    _assert_load_fails(ckpt, "config.json", "format_version", hint)


def test_not_a_kanlens_config(ckpt):
    (ckpt / "config.json").write_text(json.dumps({"format": "pykan", "width": [2, 1]}))
    _assert_load_fails(ckpt, "config.json", "not a kanlens checkpoint")


def test_edited_config_is_detected(ckpt):
    meta = json.loads((ckpt / "config.json").read_text())
    meta["config"]["grid_eps"] = 0.5  # a hand edit without recomputing the checksum
    (ckpt / "config.json").write_text(json.dumps(meta))
    _assert_load_fails(ckpt, "config.json", "checksum")


@pytest.mark.parametrize(
    ("edit", "bad_file", "pattern"),
    [
        (lambda m: (m["config"].__setitem__("width", [2, 4, 1]), m.__setitem__("width", [2, 4, 1])),
         "tensors.pt", "shape"),
        (lambda m: m["config"].__setitem__("grid", 6), "tensors.pt", "shape"),
        (lambda m: m["config"].__setitem__("dtype", "float64"), "tensors.pt", "dtype"),
        (lambda m: m["config"].__setitem__("dtype", "float16"), "config.json", "invalid config"),
        (lambda m: m["config"].__setitem__("colour", "red"), "config.json", "invalid config"),
        (lambda m: m["config"].__setitem__("width", [2, -3, 1]), "config.json", "invalid config"),
        (lambda m: m.__setitem__("width", [2, 9, 1]), "config.json", "disagrees"),
        (lambda m: m["symbolic"][0].__setitem__("function_names", [["sni", "0"]] * 3), "config.json",
         "'sni'"),
        (lambda m: m["extra_state"]["symbolic.0._extra_state"].__setitem__("function_names", [["0"]]),
         "tensors.pt", "cannot restore"),
        (lambda m: m["requires_grad"].clear(), "config.json", "requires_grad"),
        (lambda m: m["tensors"]["entries"]["layers.0.coef"].__setitem__("shape", [1]), "tensors.pt", "manifest"),
    ],
    ids=["width", "grid", "dtype", "bad_dtype", "unknown_field", "negative_width", "width_mismatch",
         "unknown_function", "extra_state", "requires_grad", "manifest"],
)
def test_inconsistent_config_is_rejected(ckpt, edit, bad_file, pattern):
    _resign(ckpt, edit=edit)
    _assert_load_fails(ckpt, bad_file, pattern)


def test_swapped_tensor_shape_is_rejected(ckpt, tmp_path):
    tensors = torch.load(ckpt / "tensors.pt", weights_only=True)
    tensors["layers.0.coef"] = torch.zeros(3, 2, 9)
    torch.save(tensors, tmp_path / "t.pt")

    def fix_manifest(m):
        m["tensors"]["entries"]["layers.0.coef"]["shape"] = [3, 2, 9]

    _resign(ckpt, edit=fix_manifest, tensors=(tmp_path / "t.pt").read_bytes())
    _assert_load_fails(ckpt, "tensors.pt", "mismatched shape", "layers.0.coef")


def test_huge_width_fails_before_allocating(ckpt):
    def huge(m):
        m["config"]["width"] = m["width"] = [100_000, 100_000, 1]

    _resign(ckpt, edit=huge)
    _assert_load_fails(ckpt, "config.json", "mismatched shape")


def test_bad_map_location_fails_before_reading(ckpt):
    with pytest.raises(ValueError, match="map_location"):
        load(ckpt, map_location="quantum:0")
    with pytest.raises(TypeError, match="map_location"):
        load(ckpt, map_location={"cuda:0": "cpu"})


# ---------------------------------------------------------------------------------------------- training


def _finite(model: KAN) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if isinstance(v, torch.Tensor))


def _state(model: KAN) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("opt", ["LBFGS", "Adam"])
def test_nan_injected_into_the_data_mid_training(toy_dataset, opt):
    model = KAN(width=[2, 3, 1], seed=0)
    saved = {}

    def inject(step, m, history):
        if step == 2:
            saved["state"] = _state(m)  # the last finite state fit can restore
            toy_dataset["train_input"][5, 0] = float("nan")  # fit trains on this very tensor (same dtype/device)

    with pytest.warns(RuntimeWarning, match="non-finite") as rec:
        h = model.fit(toy_dataset, opt=opt, steps=20, progress=False, callbacks=[inject], max_nonfinite=2)
    assert rec[0].filename == __file__  # the warning points at the caller, not into kanlens
    assert _finite(model) and _same_state(_state(model), saved["state"])
    assert h.stopped_early and h.stop_reason == "non-finite" and h.nonfinite_steps == [3, 4, 5]
    assert len(h.train_loss) == 3 and all(map(torch.isfinite, torch.tensor(h.train_loss)))
    assert any("grid update skipped" in e for e in h.events)  # step 5 is a grid-update step
    assert h.lr == (1.0 if opt == "LBFGS" else 1e-2) / 8
    x = toy_dataset["test_input"]
    assert bool(torch.isfinite(model(x)).all())


@pytest.mark.parametrize("opt", ["LBFGS", "Adam"])
def test_transient_nan_loss_is_recovered(toy_dataset, opt):
    calls = {"n": 0}

    def loss_fn(pred, y):
        calls["n"] += 1
        loss = torch.mean((pred - y) ** 2)
        return loss * float("nan") if calls["n"] == 1 else loss  # the very first evaluation of step 0

    model = KAN(width=[2, 3, 1], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recovered without stopping: no warning
        h = model.fit(toy_dataset, opt=opt, steps=4, progress=False, loss_fn=loss_fn, update_grid=False)
    assert h.nonfinite_steps == [0] and not h.stopped_early and h.stop_reason == ""
    assert "nonfinite_steps" in h and h["nonfinite_steps"] == [0] and h.get("no_such_field") is None
    assert len(h.train_loss) == 3 and _finite(model)
    assert "step 0" in h.events[0] and "restored the last finite state" in h.events[0]


def test_lbfgs_line_search_backs_off_from_nan_trial_points(toy_dataset):
    calls = {"n": 0}

    def loss_fn(pred, y):
        calls["n"] += 1
        loss = torch.mean((pred - y) ** 2)
        return loss + float("inf") if calls["n"] in (2, 3) else loss  # line-search trials of step 0

    model = KAN(width=[2, 3, 1], seed=0)
    h = model.fit(toy_dataset, steps=3, progress=False, loss_fn=loss_fn, update_grid=False)
    assert h.nonfinite_evals == 2 and h.nonfinite_steps == [] and len(h.train_loss) == 3
    assert h.train_loss[-1] < 0.5 and _finite(model)


@pytest.mark.parametrize("opt", ["LBFGS", "Adam"])
def test_exploding_loss_stops_with_last_finite_model(toy_dataset, opt):
    calls = {"n": 0}
    saved = {}

    def loss_fn(pred, y):
        calls["n"] += 1
        loss = torch.mean((pred - y) ** 2)
        return loss * 1e30 * 1e30 if saved else loss  # float32 overflow to inf from step 2 on

    def cb(step, m, history):
        if step == 1:
            saved["state"] = _state(m)

    model = KAN(width=[2, 3, 1], seed=0)
    with pytest.warns(RuntimeWarning, match="stopped at step 5 after 4 consecutive non-finite steps"):
        h = model.fit(toy_dataset, opt=opt, steps=10, progress=False, loss_fn=loss_fn, callbacks=[cb])
    assert _same_state(_state(model), saved["state"])
    assert h.nonfinite_steps == [2, 3, 4, 5] and len(h.train_loss) == 2
    assert "stopped after 4 consecutive" in h.events[-1]


@pytest.mark.parametrize("opt", ["LBFGS", "Adam"])
def test_absurd_learning_rate_never_gives_a_nan_model(toy_dataset, opt):
    model = KAN(width=[2, 3, 1], seed=0)
    start = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        h = model.fit(toy_dataset, opt=opt, steps=6, lr=1e30, progress=False, update_grid=False)
    assert _finite(model)
    assert all(map(torch.isfinite, torch.tensor(h.train_loss)))
    if opt == "Adam":  # every step overflows: stop, keep the initial state
        assert h.stopped_early and _same_state(_state(model), start)
    else:  # the strong-Wolfe search shrinks the step instead
        assert h.nonfinite_evals > 0


def test_callback_that_poisons_the_model_is_rolled_back(toy_dataset):
    saved = {}

    def poison(step, m, history):
        saved[step] = _state(m)
        if step in (1, 3):
            with torch.no_grad():
                m.layers[0].coef.fill_(float("nan"))

    model = KAN(width=[2, 3, 1], seed=0)
    h = model.fit(toy_dataset, steps=4, progress=False, callbacks=[poison], update_grid=False)
    assert h.nonfinite_steps == [2]  # step 2 starts from the poisoned state and is rolled back
    assert any(e.startswith("end:") for e in h.events)  # step 3's poison is undone at the end
    assert _finite(model) and _same_state(_state(model), saved[3])


def test_training_refuses_a_nan_model(toy_dataset):
    model = KAN(width=[2, 3, 1], seed=0)
    with torch.no_grad():
        model.node_bias[0][0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf parameters"):
        model.fit(toy_dataset, steps=1, progress=False)


def test_nonfinite_hidden_activations_skip_the_grid_update(toy_dataset):
    model = KAN(width=[2, 3, 1], seed=0, base_fun="identity")
    with torch.no_grad():
        model.layers[0].scale_base.fill_(3e38)  # finite weights, but the hidden activations overflow to inf
    with pytest.warns(RuntimeWarning, match="stopped at step 0"):
        h = model.fit(toy_dataset, steps=1, progress=False, max_nonfinite=0)
    assert "grid update skipped" in h.events[0] and h.grid_updates == []
    assert _finite(model)



@pytest.mark.parametrize(
    "x",
    [
        torch.zeros(50, 2),  # every sample identical: rank-deficient least squares
        torch.tensor([[0.1, 0.2], [0.3, 0.4]]),  # the minimum of 2 samples
        torch.tensor([[0.5, -0.5]] * 10),
        torch.cat([torch.zeros(49, 2), torch.full((1, 2), 1e5)]),  # one far outlier
        1e-7 * torch.rand(50, 2, generator=torch.Generator().manual_seed(0)),  # almost no spread
    ],
    ids=["constant", "two_samples", "duplicates", "outlier", "tiny_spread"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_grid_update_on_degenerate_samples_stays_finite_and_preserves_outputs(x, dtype):
    model = KAN(width=[2, 3, 1], seed=0, dtype=dtype, noise_scale=2.0)
    x = x.to(dtype)
    with torch.no_grad():
        before = model(x)
        model.update_grid(x)
        after = model(x)
    assert _finite(model)
    torch.testing.assert_close(after, before, atol=1e-3 * (1 + float(before.abs().max())), rtol=0)


@pytest.mark.parametrize("opt", ["LBFGS", "Adam"])
def test_symbolic_edges_with_domain_limits_train_finite(toy_dataset, opt):
    """log, sqrt, 1/x, arcsin, arctanh edges whose arguments leave the domain for part of the data."""
    model = KAN(width=[2, 3, 1], seed=0)
    for (i, j), name in zip([(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)], ["log", "sqrt", "1/x", "arcsin", "arctanh"]):
        model.fix_symbolic(0, i, j, name, fit_params=False, params=(2.0, 0.0, 1.0, 0.0))
    with torch.no_grad():
        assert bool(torch.isfinite(model(toy_dataset["train_input"])).all())
    h = model.fit(toy_dataset, opt=opt, steps=5, progress=False)
    assert not h.nonfinite_steps and _finite(model) and len(h.train_loss) == 5


@pytest.mark.parametrize("scale", [3.0, 1e3, 1e6])
def test_inputs_outside_the_grid_give_finite_outputs(scale):
    model = KAN(width=[2, 3, 1], seed=0)
    x = torch.linspace(-1, 1, 40).reshape(20, 2) * scale
    with torch.no_grad():
        y = model(x)
        edges = model.edge_activations(x)
    assert bool(torch.isfinite(y).all()) and all(bool(torch.isfinite(e).all()) for e in edges)
    # beyond the extended grid (|x| > 1 + k * 2/G = 2.2) the spline part vanishes: only scale_base * silu(x) remains
    base = model.layers[0].scale_base * torch.nn.functional.silu(x).unsqueeze(1)  # (batch, out, in)
    outside = (x.abs() > 2.3).unsqueeze(1).expand_as(base)
    assert bool(outside.any())
    torch.testing.assert_close(edges[0][outside], base[outside], rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------------------- acceptance

_PIPELINES = {
    # id: (formula on (batch, n) inputs, n_var, ranges, width, dtype)
    "exp_sin_sq_float32": (lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2), 2, (-1, 1),
                           [2, 5, 1], torch.float32),
    "exp_sin_sq_float64": (lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2), 2, (-1, 1),
                           [2, 5, 1], torch.float64),
    "product": (lambda x: x[:, [0]] * x[:, [1]], 2, (-1, 1), [2, 5, 1], torch.float32),
    "sqrt_sum_squares": (lambda x: torch.sqrt(x[:, [0]] ** 2 + x[:, [1]] ** 2), 2, (-1, 1), [2, 5, 1], torch.float32),
    "bessel_j0_20x": (lambda x: torch.special.bessel_j0(20 * x[:, [0]]), 1, (-1, 1), [1, 1], torch.float32),
    "feynman_I_27_6": (lambda x: 1 / (1 + x[:, [0]] * x[:, [1]]), 2, (0.5, 2.0), [2, 5, 1], torch.float64),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_PIPELINES))
def test_pykan_tutorial_pipeline_has_no_crash_or_nan(name):
    """pykan's tutorial workflow with default settings: fit (sparse) -> prune -> fit -> refine -> fit ->
    auto_symbolic -> fit -> symbolic_formula; every model, history and formula stays finite."""
    import numpy as np
    import sympy

    from kanlens import create_dataset

    f, n_var, ranges, width, dtype = _PIPELINES[name]
    ds = create_dataset(f, n_var=n_var, ranges=ranges, dtype=dtype)
    model = KAN(width=width, grid=5, k=3, seed=0, dtype=dtype)
    histories = [model.fit(ds, opt="LBFGS", steps=50, lamb=0.001, progress=False)]
    model = model.prune()
    histories.append(model.fit(ds, opt="LBFGS", steps=50, progress=False))
    model = model.refine(10)
    histories.append(model.fit(ds, opt="LBFGS", steps=50, progress=False))
    model.auto_symbolic()
    histories.append(model.fit(ds, opt="LBFGS", steps=50, progress=False))
    for h in histories:
        assert h.train_loss and all(np.isfinite(h.train_loss)) and all(np.isfinite(h.test_loss))
        assert not h.stopped_early, h.events
    assert _finite(model)
    x = ds["test_input"]
    with torch.no_grad():
        y = model(x)
    assert bool(torch.isfinite(y).all())
    expr = model.symbolic_formula()[0][0]
    symbols = [sympy.Symbol(f"x_{k + 1}") for k in range(n_var)]  # pykan's names
    fn = sympy.lambdify(symbols, expr, modules=["scipy", "numpy"])
    with np.errstate(all="ignore"):
        values = np.broadcast_to(np.asarray(fn(*[x[:, k].double().numpy() for k in range(n_var)]), dtype=float),
                                 (x.shape[0],))
    assert np.isfinite(values).all(), str(expr)


def test_interrupt_mid_line_search_restores_the_last_completed_step(toy_dataset):
    calls, saved = {"n": 0}, {}

    def loss_fn(pred, y):
        calls["n"] += 1
        if calls["n"] == saved.get("interrupt_at"):
            raise KeyboardInterrupt  # the user presses Ctrl-C while LBFGS evaluates a trial point
        return torch.mean((pred - y) ** 2)

    def cb(step, m, history):
        saved["state"] = _state(m)
        saved["interrupt_at"] = calls["n"] + 3  # the third evaluation of the next step: inside its line search

    model = KAN(width=[2, 3, 1], seed=0)
    with pytest.raises(KeyboardInterrupt):
        model.fit(toy_dataset, steps=5, progress=False, loss_fn=loss_fn, callbacks=[cb], update_grid=False)
    assert _same_state(_state(model), saved["state"])
