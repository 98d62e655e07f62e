"""Training: ``fit`` with LBFGS or Adam, grid-update schedule, sparsity regularisation, callbacks, NaN safety."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .regularization import REG_METRICS, total_reg
from .utils import check_choice, check_tensor

if TYPE_CHECKING:
    from .model import KAN

__all__ = ["FitHistory", "fit", "validate_dataset"]

log = logging.getLogger(__name__)
OPTIMIZERS = ("LBFGS", "Adam")
DATASET_KEYS = ("train_input", "train_label", "test_input", "test_label")


@dataclasses.dataclass
class FitHistory:
    """What happened during :func:`fit`; ``history["train_loss"]`` works like pykan's results dict.

    ``train_loss`` / ``test_loss`` are RMSEs (pykan's convention), ``reg`` the regularisation term per step,
    ``events`` human-readable notes (non-finite steps recovered, early stops).
    """

    train_loss: list[float] = dataclasses.field(default_factory=list)
    test_loss: list[float] = dataclasses.field(default_factory=list)
    reg: list[float] = dataclasses.field(default_factory=list)
    grid_updates: list[int] = dataclasses.field(default_factory=list)
    events: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def __len__(self) -> int:
        return len(self.train_loss)


def validate_dataset(dataset: object, n_in: int, n_out: int | None = None) -> dict[str, torch.Tensor]:
    """Check a pykan-style dataset dict: keys, tensor type, shapes, matching rows, finiteness."""
    if not isinstance(dataset, dict):
        raise TypeError(f"dataset must be a dict with keys {DATASET_KEYS}, got {type(dataset).__name__}")
    missing = [k for k in DATASET_KEYS if k not in dataset]
    if missing:
        raise ValueError(f"dataset is missing keys {missing}; expected {list(DATASET_KEYS)}")
    for split in ("train", "test"):
        x = check_tensor(f"dataset['{split}_input']", dataset[f"{split}_input"], ndim=2, last_dim=n_in)
        y = dataset[f"{split}_label"]
        name = f"dataset['{split}_label']"
        check_tensor(name, y)
        if y.ndim == 1:
            raise ValueError(f"{name} must be 2-D (num, n_out), got shape {tuple(y.shape)}; use y[:, None]")
        check_tensor(name, y, ndim=2, last_dim=n_out)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{split}_input has {x.shape[0]} rows but {split}_label has {y.shape[0]}")
    return dataset


def _rmse(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean((pred - y) ** 2)))


def fit(
    model: KAN,
    dataset: dict[str, torch.Tensor],
    *,
    opt: str = "LBFGS",
    steps: int = 100,
    lr: float | None = None,
    batch: int = -1,
    lamb: float = 0.0,
    lamb_l1: float = 1.0,
    lamb_entropy: float = 2.0,
    lamb_coef: float = 0.0,
    lamb_coefdiff: float = 0.0,
    reg_metric: str = "abs",
    update_grid: bool = True,
    grid_update_num: int = 10,
    stop_grid_update_step: int = 50,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[int, KAN, FitHistory], bool | None]] = (),
    max_nonfinite: int = 3,
) -> FitHistory:
    """Train ``model`` in place on a pykan-style dataset.

    Args:
        model: the KAN to train.
        dataset: ``{"train_input", "train_label", "test_input", "test_label"}``; moved to the model's device/dtype.
        opt: ``"LBFGS"`` (pykan's default, full-batch, strong Wolfe line search) or ``"Adam"``.
        steps: optimisation steps (one LBFGS step runs up to 20 inner iterations, as in pykan).
        lr: learning rate (default 1.0 for LBFGS, 1e-2 for Adam).
        batch: samples per step (-1 = all).
        lamb: overall sparsity weight; with ``lamb == 0`` the fast path runs and no per-edge tensor is built.
        lamb_l1, lamb_entropy: weights of the L1 and entropy terms on per-edge magnitudes.
        lamb_coef, lamb_coefdiff: penalties on spline coefficients and their differences.
        reg_metric: ``"abs"`` (paper: mean |phi|) or ``"std_n"`` (pykan 0.2: std(phi) / (std(x) + 0.1)).
        update_grid: adapt grids to the data every ``stop_grid_update_step // grid_update_num`` steps before
            ``stop_grid_update_step``.
        loss_fn: ``loss_fn(pred, label)``; defaults to mean squared error.
        progress: show a tqdm bar with the losses.
        callbacks: ``cb(step, model, history)``; returning ``True`` stops training.
        max_nonfinite: how many non-finite steps to recover from (restore last good state, halve lr) before stopping.

    Returns:
        :class:`FitHistory` with per-step train/test RMSE and regularisation.

    Example:
        >>> history = model.fit(dataset, opt="LBFGS", steps=50, lamb=0.001)
        >>> history["test_loss"][-1]
    """
    from tqdm.auto import tqdm

    check_choice("opt", opt, OPTIMIZERS)
    check_choice("reg_metric", reg_metric, REG_METRICS)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    for name, val in (("lamb", lamb), ("lamb_l1", lamb_l1), ("lamb_entropy", lamb_entropy),
                      ("lamb_coef", lamb_coef), ("lamb_coefdiff", lamb_coefdiff)):
        if not (isinstance(val, (int, float)) and math.isfinite(val) and val >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or (batch < 1 and batch != -1):
        raise ValueError(f"batch must be -1 (full batch) or a positive int, got {batch!r}")
    if grid_update_num < 1:
        raise ValueError(f"grid_update_num must be >= 1, got {grid_update_num!r}")
    validate_dataset(dataset, model.width[0], model.width[-1])
    dev, dt = model.device, model.dtype
    train_x, train_y = dataset["train_input"].to(dev, dt), dataset["train_label"].to(dev, dt)
    test_x, test_y = dataset["test_input"].to(dev, dt), dataset["test_label"].to(dev, dt)
    loss_fn = loss_fn or (lambda p, y: torch.mean((p - y) ** 2))
    lr = lr if lr is not None else (1.0 if opt == "LBFGS" else 1e-2)
    n = train_x.shape[0]
    bs = n if batch == -1 or batch > n else batch
    gen = torch.Generator().manual_seed(model.config.seed)
    grid_update_freq = max(1, stop_grid_update_step // grid_update_num)
    history = FitHistory()
    params = [p for p in model.parameters() if p.requires_grad]
    make_opt = _optimizer_factory(opt, params)
    optimizer = make_opt(lr)
    good_state = _snapshot(model)
    nonfinite = 0
    t0 = time.perf_counter()

    def objective(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if lamb > 0:
            pred, edges, inputs = model.forward_with_edges(xb)
            reg = total_reg(edges, inputs, [layer.coef for layer in model.layers], lamb_l1=lamb_l1,
                            lamb_entropy=lamb_entropy, lamb_coef=lamb_coef, lamb_coefdiff=lamb_coefdiff,
                            metric=reg_metric)
        else:
            pred, reg = model(xb), xb.new_zeros(())
        return loss_fn(pred, yb), reg

    cur: dict[str, torch.Tensor] = {}

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss, reg = objective(cur["x"], cur["y"])
        total = loss + lamb * reg
        if torch.isfinite(total):
            total.backward()
        cur["loss"], cur["reg"] = loss.detach(), reg.detach()
        return total

    bar = tqdm(range(steps), disable=not progress, desc="fit", dynamic_ncols=True)
    for step in bar:
        idx = torch.randperm(n, generator=gen)[:bs].to(dev) if bs < n else None
        cur["x"] = train_x if idx is None else train_x[idx]
        cur["y"] = train_y if idx is None else train_y[idx]
        if update_grid and step % grid_update_freq == 0 and step < stop_grid_update_step:
            with torch.no_grad():
                model.update_grid(cur["x"])
            history.grid_updates.append(step)
        if opt == "LBFGS":
            optimizer.step(closure)
        else:
            closure()
            if torch.isfinite(cur["loss"]) and all(
                p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params
            ):
                optimizer.step()
            else:
                cur["loss"] = cur["loss"].new_tensor(float("nan"))
        finite = bool(torch.isfinite(cur["loss"])) and all(bool(torch.isfinite(p).all()) for p in params)
        if not finite:
            nonfinite += 1
            model.load_state_dict(good_state)
            lr *= 0.5
            optimizer = make_opt(lr)
            msg = f"step {step}: non-finite loss or parameters; restored last finite state, lr -> {lr:g}"
            history.events.append(msg)
            if nonfinite > max_nonfinite:
                history.events.append(f"step {step}: stopped after {nonfinite} non-finite steps")
                history.stopped_early = True
                warnings.warn(msg + "; stopping (the model keeps its last finite state)", RuntimeWarning,
                              stacklevel=2)
                break
            log.warning(msg)
            continue
        good_state = _snapshot(model)
        with torch.no_grad():
            train_rmse = _rmse(model(train_x), train_y)
            test_rmse = _rmse(model(test_x), test_y)
        history.train_loss.append(train_rmse)
        history.test_loss.append(test_rmse)
        history.reg.append(float(cur["reg"]))
        if progress:
            bar.set_postfix(train=f"{train_rmse:.2e}", test=f"{test_rmse:.2e}", reg=f"{float(cur['reg']):.2e}")
        if any(cb(step, model, history) for cb in callbacks):
            history.stopped_early = True
            history.events.append(f"step {step}: stopped by a callback")
            break
    bar.close()
    with torch.no_grad():
        model(train_x)  # leave the training inputs in model.acts for plots and scores
    history.seconds = time.perf_counter() - t0
    return history


def _snapshot(model: KAN) -> dict[str, Any]:
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


def _optimizer_factory(opt: str, params: list[torch.nn.Parameter]) -> Callable[[float], torch.optim.Optimizer]:
    if opt == "LBFGS":
        return lambda lr: torch.optim.LBFGS(
            params, lr=lr, history_size=10, line_search_fn="strong_wolfe",
            tolerance_grad=1e-32, tolerance_change=1e-32,
        )
    return lambda lr: torch.optim.Adam(params, lr=lr)
