"""Training: ``fit`` with LBFGS or Adam, grid-update schedule, sparsity regularisation, callbacks, NaN safety.

Non-finite safety (tested in ``tests/test_faults.py``): the model that :func:`fit` leaves behind always has finite
parameters and gave finite train/test predictions at its last accepted step.

* A non-finite objective inside an LBFGS line search is reported to the optimizer as a worse, finite loss with zero
  gradient, so the strong-Wolfe search backs off instead of stepping into the NaN region (or crashing).
* Adam skips a step whose loss or gradients are not finite.
* After every step the parameters and the train/test predictions are checked (one device sync, together with the
  losses that are recorded anyway); on failure the last finite state is restored, the learning rate halved and
  the optimizer restarted. After ``max_nonfinite`` consecutive failures training stops with a ``RuntimeWarning``.
* A grid update that fails (NaN/Inf activations, too few samples) is skipped and the state restored.
* ``KeyboardInterrupt`` (e.g. Ctrl-C inside an LBFGS line search) restores the state of the last completed step
  before propagating.

Everything that happened is in :attr:`FitHistory.events`, :attr:`FitHistory.nonfinite_steps` and
:attr:`FitHistory.stop_reason`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .model import stack_backward, stack_forward
from .regularization import REG_METRICS, l1_entropy_with_grad, magnitude_reg, total_reg
from .utils import check_choice, check_tensor, warn_user

if TYPE_CHECKING:
    from .model import KAN

__all__ = ["FitHistory", "fit", "validate_dataset"]

log = logging.getLogger(__name__)
OPTIMIZERS = ("LBFGS", "Adam")
DATASET_KEYS = ("train_input", "train_label", "test_input", "test_label")


@dataclasses.dataclass
class FitHistory:
    """What happened during :func:`fit`; ``history["train_loss"]`` works like pykan's results dict.

    Attributes:
        train_loss, test_loss: RMSE after each successful step (pykan's convention; sqrt of ``loss_fn`` for class-index
            labels).
        reg: the regularisation term per successful step.
        grid_updates: steps at which the grids were adapted to the data.
        events: human-readable notes on anything unusual (non-finite steps recovered, skipped grid updates, stops).
        nonfinite_steps: steps whose loss, gradients, parameters or predictions were not finite (rolled back).
        nonfinite_evals: LBFGS line-search evaluations that were not finite (the search backed off from them).
        stop_reason: ``""`` when all steps ran, else why training stopped (``"callback"``, ``"non-finite"``).
        lr: the learning rate at the end (halved after every non-finite step).
        seconds: wall time.
        stopped_early: whether training stopped before ``steps``.
    """

    train_loss: list[float] = dataclasses.field(default_factory=list)
    test_loss: list[float] = dataclasses.field(default_factory=list)
    reg: list[float] = dataclasses.field(default_factory=list)
    grid_updates: list[int] = dataclasses.field(default_factory=list)
    events: list[str] = dataclasses.field(default_factory=list)
    nonfinite_steps: list[int] = dataclasses.field(default_factory=list)
    nonfinite_evals: int = 0
    stop_reason: str = ""
    lr: float = math.nan
    seconds: float = 0.0
    stopped_early: bool = False

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            from .utils import did_you_mean

            raise KeyError(f"FitHistory has no field {key!r}{did_you_mean(key, self.keys())}")
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def __len__(self) -> int:
        return len(self.train_loss)


def validate_dataset(dataset: object, n_in: int, n_out: int | None = None, *,
                     class_labels: bool = False) -> dict[str, torch.Tensor]:
    """Check a pykan-style dataset dict: keys, tensor type, shapes, matching rows, finiteness.

    ``class_labels``: also accept 1-D integer labels (class indices in ``[0, n_out)``, for a classification
    ``loss_fn`` such as ``torch.nn.CrossEntropyLoss()``).
    """
    if not isinstance(dataset, dict):
        raise TypeError(f"dataset must be a dict with keys {DATASET_KEYS}, got {type(dataset).__name__}")
    missing = [k for k in DATASET_KEYS if k not in dataset]
    if missing:
        raise ValueError(f"dataset is missing keys {missing}; expected {list(DATASET_KEYS)}")
    for split in ("train", "test"):
        x = check_tensor(f"dataset['{split}_input']", dataset[f"{split}_input"], ndim=2, last_dim=n_in)
        y = dataset[f"{split}_label"]
        name = f"dataset['{split}_label']"
        if isinstance(y, torch.Tensor) and _is_class_index(y):
            if not class_labels:
                raise TypeError(f"{name} holds integer labels ({y.dtype}); fit them as class indices with a "
                                "classification loss, e.g. loss_fn=torch.nn.CrossEntropyLoss() and labels of shape "
                                "(num,), or cast regression targets to float")
            _check_class_labels(name, y, x.shape[0], n_out)
            continue
        check_tensor(name, y)
        if y.ndim == 1:
            raise ValueError(f"{name} must be 2-D (num, n_out), got shape {tuple(y.shape)}; use y[:, None]")
        check_tensor(name, y, ndim=2, last_dim=n_out)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"dataset['{split}_input'] has {x.shape[0]} rows but dataset['{split}_label'] has "
                             f"{y.shape[0]} rows")
    for kind in ("input", "label"):  # a split in another precision would be scored in it (float32 test data)
        a, b = dataset[f"train_{kind}"], dataset[f"test_{kind}"]
        if a.is_floating_point() and b.is_floating_point() and a.dtype != b.dtype:
            raise TypeError(f"dataset['train_{kind}'] is {a.dtype} but dataset['test_{kind}'] is {b.dtype}; cast "
                            "both splits to one dtype")
    return dataset


def _is_class_index(y: torch.Tensor) -> bool:
    return not y.is_floating_point() and not y.is_complex() and y.dtype != torch.bool


def _check_class_labels(name: str, y: torch.Tensor, rows: int, n_out: int | None) -> None:
    if y.ndim != 1:
        raise ValueError(f"{name}: integer class labels must be 1-D (num,), got shape {tuple(y.shape)}")
    if y.shape[0] != rows:
        raise ValueError(f"{name} has {y.shape[0]} rows but the inputs have {rows}")
    if y.numel() == 0:
        raise ValueError(f"{name} is empty")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (n_out is not None and hi >= n_out):
        raise ValueError(f"{name}: class indices must lie in [0, {n_out}) (one output per class), got {lo}..{hi}")


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_options(opt, steps, lr, batch, lambs, reg_metric, update_grid, grid_update_num, stop_grid_update_step,
                   loss_fn, progress, callbacks, max_nonfinite) -> None:
    check_choice("opt", opt, OPTIMIZERS)
    check_choice("reg_metric", reg_metric, REG_METRICS)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    for name, val in lambs.items():
        if isinstance(val, bool) or not (isinstance(val, (int, float)) and math.isfinite(val) and val >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
    if lr is not None and (isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr)
                                                          and lr > 0)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or (batch < 1 and batch != -1):
        raise ValueError(f"batch must be -1 (full batch) or a positive int, got {batch!r}")
    for name, val in (("update_grid", update_grid), ("progress", progress)):
        if not isinstance(val, bool):
            raise TypeError(f"{name} must be a bool, got {type(val).__name__}")
    _check_int("grid_update_num", grid_update_num, 1)
    _check_int("stop_grid_update_step", stop_grid_update_step, 0)
    _check_int("max_nonfinite", max_nonfinite, 0)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (pred, label) -> scalar tensor, got {type(loss_fn).__name__}")
    if callable(callbacks) or not isinstance(callbacks, (list, tuple)) or not all(callable(c) for c in callbacks):
        raise TypeError("callbacks must be a list of callables cb(step, model, history)")


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
            ``stop_grid_update_step`` (needs at least 2 samples per batch).
        loss_fn: ``loss_fn(pred, label) -> scalar``; defaults to mean squared error. With a ``loss_fn`` the labels
            may be 1-D integer class indices (pykan's classification recipe, ``torch.nn.CrossEntropyLoss()``); the
            history then records ``sqrt(loss_fn)`` on train and test instead of the RMSE (pykan's convention).
        progress: show a tqdm bar with the losses.
        callbacks: ``cb(step, model, history)`` after each successful step; returning ``True`` stops training.
        max_nonfinite: how many consecutive non-finite steps to recover from (restore the last finite state, halve
            lr) before stopping with a ``RuntimeWarning``.

    Returns:
        :class:`FitHistory` with per-step train/test RMSE, regularisation and events.

    Shapes:
        ``dataset["train_input"]``: ``(n, width[0])``, ``dataset["train_label"]``: ``(n, width[-1])``.

    Example:
        >>> history = model.fit(dataset, opt="LBFGS", steps=50, lamb=0.001)
        >>> history["test_loss"][-1]
    """
    from .model import KAN

    if not isinstance(model, KAN):
        raise TypeError(f"model must be a kanlens KAN, got {type(model).__name__}")
    lambs = {"lamb": lamb, "lamb_l1": lamb_l1, "lamb_entropy": lamb_entropy, "lamb_coef": lamb_coef,
             "lamb_coefdiff": lamb_coefdiff}
    _check_options(opt, steps, lr, batch, lambs, reg_metric, update_grid, grid_update_num, stop_grid_update_step,
                   loss_fn, progress, callbacks, max_nonfinite)
    validate_dataset(dataset, model.width[0], model.width[-1], class_labels=loss_fn is not None)
    n = dataset["train_input"].shape[0]
    if update_grid and n < 2:
        raise ValueError(f"dataset['train_input'] has {n} sample; update_grid=True needs at least 2 (grids are fitted "
                         "to the data), pass update_grid=False")
    if update_grid and batch != -1 and batch < 2:
        raise ValueError(f"batch must be >= 2 with update_grid=True (a grid needs 2 samples), got batch={batch}; "
                         "pass update_grid=False")
    if not _all_finite(list(model.parameters()) + list(model.buffers())):
        raise ValueError("model has NaN or Inf parameters before training; load a finite checkpoint or re-create it")
    trainer = _Trainer(model, dataset, opt=opt, lr=lr, batch=batch, lambs=lambs, reg_metric=reg_metric,
                       loss_fn=loss_fn or _mse, max_nonfinite=max_nonfinite)
    schedule = max(1, stop_grid_update_step // grid_update_num) if update_grid else 0
    return trainer.run(steps, schedule, stop_grid_update_step, progress, callbacks)


class _Trainer:
    """State of one :func:`fit` call: data on the model's device, optimizer, last finite state, history."""

    def __init__(self, model: KAN, dataset: dict[str, torch.Tensor], *, opt: str, lr: float | None, batch: int,
                 lambs: dict[str, float], reg_metric: str, loss_fn: Callable, max_nonfinite: int) -> None:
        dev, dt = model.device, model.dtype
        self.model, self.opt, self.lambs, self.reg_metric, self.loss_fn = model, opt, lambs, reg_metric, loss_fn
        # integer class indices stay integers (for the loss); other labels take the model's dtype
        self.classes = _is_class_index(dataset["train_label"])
        ydt = None if self.classes else dt
        self.train_x, self.train_y = dataset["train_input"].to(dev, dt), dataset["train_label"].to(dev, ydt)
        self.test_x, self.test_y = dataset["test_input"].to(dev, dt), dataset["test_label"].to(dev, ydt)
        self.n = self.train_x.shape[0]
        self.bs = self.n if batch == -1 or batch > self.n else batch
        self.gen = torch.Generator().manual_seed(model.config.seed)
        self.params = model.trainable_parameters()
        # LBFGS sees one flat parameter whose storage the model's parameters view (see _FlatParams).
        self.flat = _FlatParams(self.params) if opt == "LBFGS" and self.params else None
        self.make_opt = _optimizer_factory(opt, self.params, self.flat)
        self.lr = float(lr) if lr is not None else (1.0 if opt == "LBFGS" else 1e-2)
        self.optimizer = self.make_opt(self.lr)
        self.max_nonfinite, self.streak = max_nonfinite, 0
        self.history = FitHistory(lr=self.lr)
        self.good_state = _snapshot(model)
        self.cur: dict[str, Any] = {}
        # LBFGS with the default loss and the paper's sparsity penalty: objective and gradient by hand (see
        # _fused_objective), no autograd graph per evaluation.
        self.fused = (opt == "LBFGS" and self.flat is not None and loss_fn is _mse and lambs["lamb"] > 0
                      and reg_metric == "abs" and not lambs["lamb_coef"] and not lambs["lamb_coefdiff"])
        # The last fused evaluations (flat parameters, objective, gradient, penalty): an LBFGS step starts by
        # evaluating the point the previous step accepted, which it evaluated already (see _remembered).
        self.memo: list[tuple[torch.Tensor, ...]] = []

    # ---------------------------------------------------------------- objective
    def objective(self) -> tuple[torch.Tensor, torch.Tensor]:
        model, lambs, xb = self.model, self.lambs, self.cur["x"]
        if lambs["lamb"] > 0 and self.reg_metric == "abs":
            pred, mags = model._forward_with_magnitudes(xb)
            reg = magnitude_reg(mags, [layer.coef for layer in model.layers], lamb_l1=lambs["lamb_l1"],
                                lamb_entropy=lambs["lamb_entropy"], lamb_coef=lambs["lamb_coef"],
                                lamb_coefdiff=lambs["lamb_coefdiff"])
        elif lambs["lamb"] > 0:
            pred, edges, inputs = model.forward_with_edges(xb)
            reg = total_reg(edges, inputs, [layer.coef for layer in model.layers], lamb_l1=lambs["lamb_l1"],
                            lamb_entropy=lambs["lamb_entropy"], lamb_coef=lambs["lamb_coef"],
                            lamb_coefdiff=lambs["lamb_coefdiff"], metric=self.reg_metric)
        else:
            pred, reg = model(xb), xb.new_zeros(())
        loss = self.loss_fn(pred, self.cur["y"])
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__} "
                             f"{tuple(getattr(loss, 'shape', ()))}")
        return loss.reshape(()), reg

    def _stack(self) -> tuple | None:
        """``(cfg, params, need)`` of the model's fused stack when :meth:`_fused_objective` applies, else ``None``."""
        if not self.fused:
            return None
        args = self.model._stack_args()
        if args is None:
            return None
        cfg, params = args
        ids = {id(p) for p in self.params}
        if not ids <= {id(p) for p in params}:
            return None
        return cfg, params, (False, *(id(p) in ids for p in params))

    @torch.no_grad()
    def _fused_objective(self, stack: tuple) -> tuple[torch.Tensor, Callable[[], None]]:
        """MSE + lamb * (L1 + entropy) and a function writing its gradient into the parameters' ``.grad``.

        The same value as :meth:`objective` with the default loss and the same gradient as its autograd backward
        (the stack's hand-written backward plus the MSE derivative ``2 (pred - y) / n``), without building an
        autograd graph: the bookkeeping of the graph was a large part of each evaluation of small KANs.
        """
        cfg, params, need = stack
        lambs, cur = self.lambs, self.cur
        pred, mags, saved = stack_forward(cur["x"], cfg, params, need)
        diff = pred - cur["y"]
        reg, g_mags = l1_entropy_with_grad(mags, lambs["lamb_l1"], lambs["lamb_entropy"])
        cur["reg"] = reg
        total = torch.add(diff.square().mean(), reg, alpha=lambs["lamb"])

        @torch.no_grad()
        def backward() -> None:
            grads = stack_backward(saved, need, diff * (2.0 / diff.numel()), [g * lambs["lamb"] for g in g_mags])
            for p, g in zip(params, grads[1:]):
                if g is not None:
                    p.grad.copy_(g)

        return total, backward

    def closure(self) -> torch.Tensor:
        cur = self.cur
        stack = cur.get("stack")
        if stack is not None:
            hit = self._remembered() if cur["evals"] == 0 else None
            if hit is not None:
                total, cur["reg"] = hit
                cur["evals"], cur["f0"] = 1, float(total)
                return total
            total, backward = self._fused_objective(stack)
            cur["evals"] += 1
            value = float(total)
            if math.isfinite(value):
                if cur["evals"] == 1:
                    cur["f0"] = value
                backward()
                self.memo = [*self.memo[-3:], (self.flat.flat.detach().clone(), total, self.flat.flat.grad.clone(),
                                               cur["reg"])]
                return total
            self.flat.zero_grad()
            return self._nonfinite(total)
        if self.flat is not None:
            self.flat.zero_grad()
        else:
            self.optimizer.zero_grad()
        loss, reg = self.objective()
        total = loss + self.lambs["lamb"] * reg
        cur["reg"] = reg.detach()
        cur["evals"] += 1
        if self.opt == "Adam":  # checked together with the gradients, in one sync, before optimizer.step()
            total.backward()
            cur["total"] = total.detach()
            return total
        value = float(total.detach())  # the one sync per evaluation that LBFGS makes anyway
        if not math.isfinite(value):
            return self._nonfinite(total)
        if cur["evals"] == 1:
            cur["f0"] = value
        total.backward()
        return total

    def _remembered(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(objective, penalty)`` of a remembered evaluation at exactly the current parameters (bit for bit; its
        gradient is written into ``.grad``), or ``None``. The memo is cleared whenever the objective may change:
        a grid update, a new batch, a restored state, a callback."""
        flat = self.flat.flat.detach()
        for point, total, grad, reg in reversed(self.memo):
            if torch.equal(point.view(_bits_dtype(point)), flat.view(_bits_dtype(flat))):
                self.flat.flat.grad.copy_(grad)
                return total, reg
        return None

    def _nonfinite(self, total: torch.Tensor) -> torch.Tensor:
        """What LBFGS sees for a non-finite objective (the gradient is already zero)."""
        cur = self.cur
        cur["bad_evals"] += 1
        if cur["evals"] == 1:  # the last good state itself: LBFGS sees a zero gradient and returns at once
            cur["start_bad"] = True
            return total.new_zeros(())
        # A trial point of the line search: report a plainly worse (but moderate, so the cubic interpolation
        # stays finite in float32) loss with zero gradient, and the strong-Wolfe search backs off.
        return total.new_tensor(cur["f0"] + max(1.0, abs(cur["f0"])))

    # ---------------------------------------------------------------- one step
    def optimizer_step(self) -> str | None:
        """One optimizer step on the current batch; a description of the problem if the objective was not finite."""
        if self.opt == "LBFGS":
            if self.flat is not None:
                self.flat.relink()  # a grid update (or a callback) may have replaced parameter tensors
            self.cur["stack"] = self._stack()
            self.optimizer.step(self.closure)
            self.history.nonfinite_evals += self.cur["bad_evals"]
            if self.cur["start_bad"]:
                return "the loss is not finite at the last good state (NaN/Inf in the batch, or from loss_fn)"
            return None
        self.closure()
        grads = [p.grad for p in self.params if p.grad is not None]
        if not _all_finite([self.cur["total"], *grads]):
            return "non-finite loss or gradients; step skipped"
        self.optimizer.step()
        return None

    @torch.no_grad()
    def measure(self) -> tuple[float, float, float, bool]:
        """Train/test MSE, regulariser and whether all parameters are finite, with one device sync."""
        model, dt = self.model, self.model.dtype
        if self.flat is not None and self.flat.linked():
            flags = torch.isfinite(self.flat.flat).all()
        elif self.params:
            flags = torch.stack([torch.isfinite(p).all() for p in self.params]).all()
        else:
            flags = self.train_x.new_ones(())
        stack = self.cur.get("stack")
        if stack is not None and not any(h.has_hooks() for h in (*model.hook_in, *model.hook_out)):
            # the fused stack's forward (cached data bases), as in the objective; equal to model(x)
            cfg, params, _ = stack
            no_grad = (False,) * (len(params) + 1)
            pred_train = stack_forward(self.train_x, cfg, params, no_grad)[0]
            pred_test = stack_forward(self.test_x, cfg, params, no_grad)[0]
        else:
            pred_train, pred_test = model(self.train_x), model(self.test_x)
        if self.classes:  # no squared error for class indices: the loss itself (its sqrt is recorded, as pykan)
            with torch.no_grad():
                errs = [self.loss_fn(pred_train, self.train_y), self.loss_fn(pred_test, self.test_y)]
        else:
            errs = [torch.mean((pred_train - self.train_y) ** 2), torch.mean((pred_test - self.test_y) ** 2)]
        vals = torch.stack([e.to(dt) for e in errs] + [self.cur["reg"].to(dt), flags.to(dt)]).tolist()
        return vals[0], vals[1], vals[2], vals[3] == 1.0

    def recover(self, step: int, problem: str) -> bool:
        """Restore the last finite state and halve lr; ``True`` when training must stop."""
        h = self.history
        self.streak += 1
        self.memo = []
        h.nonfinite_steps.append(step)
        self.model.load_state_dict(self.good_state)
        self.lr *= 0.5
        self.optimizer = self.make_opt(self.lr)
        h.lr = self.lr
        msg = f"step {step}: {problem}; restored the last finite state, lr -> {self.lr:g}"
        h.events.append(msg)
        log.warning(msg)
        if self.streak <= self.max_nonfinite:
            return False
        h.stopped_early, h.stop_reason = True, "non-finite"
        h.events.append(f"step {step}: stopped after {self.streak} consecutive non-finite steps")
        warn_user(f"fit stopped at step {step} after {self.streak} consecutive non-finite steps ({problem}); "
                  "the model keeps its last finite state (see history.events)", RuntimeWarning)
        return True

    def step(self, step: int, grid_every: int, grid_stop: int) -> tuple[float, float, float] | None:
        """Batch, grid update, optimizer step, checks. Returns (train_mse, test_mse, reg) or None if rolled back."""
        idx = torch.randperm(self.n, generator=self.gen)[: self.bs].to(self.model.device) if self.bs < self.n else None
        self.cur.update(x=self.train_x if idx is None else self.train_x[idx],
                        y=self.train_y if idx is None else self.train_y[idx], evals=0, bad_evals=0, start_bad=False)
        if idx is not None:
            self.memo = []  # a new batch: a new objective
        if grid_every and step % grid_every == 0 and step < grid_stop:
            self.memo = []  # new grids (or a state restored after a failed update)
            if _safe_grid_update(self.model, self.cur["x"], step, self.history, self.good_state):
                self.history.grid_updates.append(step)
        problem = self.optimizer_step()
        train_mse, test_mse, reg, params_ok = self.measure()
        if problem is None and not params_ok:
            problem = "non-finite parameters after the step"
        elif problem is None and not (math.isfinite(train_mse) and math.isfinite(test_mse)):
            problem = "non-finite train/test predictions after the step (overflow, or NaN/Inf in the data)"
        if problem is not None:
            self.cur["stop"] = self.recover(step, problem)
            return None
        self.streak = 0
        self.good_state = _snapshot(self.model)
        return train_mse, test_mse, reg

    # ---------------------------------------------------------------- loop
    def run(self, steps: int, grid_every: int, grid_stop: int, progress: bool,
            callbacks: Sequence[Callable[[int, KAN, FitHistory], bool | None]]) -> FitHistory:
        from tqdm.auto import tqdm

        h, t0 = self.history, time.perf_counter()
        bar = tqdm(range(steps), disable=not progress, desc="fit", dynamic_ncols=True)
        try:
            for step in bar:
                self.cur["stop"] = False
                out = self.step(step, grid_every, grid_stop)
                if out is None:
                    if self.cur["stop"]:
                        break
                    continue
                train_rmse, test_rmse, reg = math.sqrt(out[0]), math.sqrt(out[1]), out[2]
                h.train_loss.append(train_rmse)
                h.test_loss.append(test_rmse)
                h.reg.append(reg)
                if progress:
                    bar.set_postfix(train=f"{train_rmse:.2e}", test=f"{test_rmse:.2e}", reg=f"{reg:.2e}")
                if callbacks:
                    self.memo = []  # a callback may edit the model
                if any(cb(step, self.model, h) for cb in callbacks):
                    h.stopped_early, h.stop_reason = True, "callback"
                    h.events.append(f"step {step}: stopped by a callback")
                    break
        except KeyboardInterrupt:
            # Interrupted mid-step (possibly at an LBFGS trial point): hand back the last completed step's state.
            self.model.load_state_dict(self.good_state)
            h.stopped_early, h.stop_reason = True, "interrupted"
            h.events.append("interrupted; restored the state after the last completed step")
            raise
        finally:
            bar.close()
            if self.flat is not None:
                self.flat.unlink()
            h.seconds = time.perf_counter() - t0
        _finish(self.model, self.good_state, self.train_x, h)
        h.seconds = time.perf_counter() - t0
        return h


def _finish(model: KAN, good_state: dict[str, Any], train_x: torch.Tensor, history: FitHistory) -> None:
    """Never hand back a non-finite model (e.g. a callback broke it on the last step); keep acts for plots."""
    if not _all_finite(list(model.parameters()) + list(model.buffers())):
        model.load_state_dict(good_state)
        history.events.append("end: the model was not finite after the last step; restored the last finite state")
    with torch.no_grad():
        if _all_finite([train_x]):
            model(train_x)  # leave the training inputs in model.acts for plots and scores


def _safe_grid_update(model: KAN, x: torch.Tensor, step: int, history: FitHistory,
                      good_state: dict[str, Any]) -> bool:
    """Adapt the grids to ``x``; on failure (NaN/Inf samples or activations) restore the state and record why."""
    try:
        with torch.no_grad():
            model.update_grid(x)
    except (ValueError, RuntimeError) as e:  # RuntimeError covers torch.linalg failures
        model.load_state_dict(good_state)
        msg = f"step {step}: grid update skipped ({str(e).splitlines()[0][:200]})"
        history.events.append(msg)
        log.warning(msg)
        return False
    return True


def _bits_dtype(t: torch.Tensor) -> torch.dtype:
    """An integer dtype of ``t``'s element size (comparing bits: -0.0 != 0.0, NaN == NaN)."""
    return {2: torch.int16, 4: torch.int32, 8: torch.int64}.get(t.element_size(), t.dtype)


def _mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.mean((pred - y) ** 2)


def _all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether every tensor is finite, with a single device sync."""
    tensors = [t for t in tensors if t.is_floating_point()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _snapshot(model: KAN) -> dict[str, Any]:
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


class _FlatParams:
    """The trainable parameters as views into one flat tensor, which is all that LBFGS sees.

    ``torch.optim.LBFGS`` loops over its parameters several times per evaluation (gather the gradients, add the
    step, clone and restore during the line search); with one flat parameter each of those is a single op. The
    algorithm and its arithmetic are unchanged (the flat vector is the concatenation LBFGS builds anyway).
    Gradients accumulate in place into views of ``flat.grad``. Anything that replaces a parameter's tensor (grid
    updates assign ``coef.data``) is picked up by :meth:`relink`; :meth:`unlink` gives every parameter its own
    storage again when training ends.
    """

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params
        self.flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
        self.flat.grad = torch.zeros_like(self.flat)
        self._views: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._link()

    def _link(self) -> None:
        self._views, off = [], 0
        data, grad = self.flat.detach(), self.flat.grad
        for p in self.params:
            n = p.numel()
            p.data = data[off : off + n].view_as(p)
            p.grad = grad[off : off + n].view_as(p)
            self._views.append((p.data, p.grad))
            off += n

    def linked(self) -> bool:
        return all(p.data.data_ptr() == d.data_ptr() and p.grad is g for p, (d, g) in zip(self.params, self._views))

    def relink(self) -> None:
        if not self.linked():
            with torch.no_grad():
                self.flat.copy_(torch.cat([p.detach().reshape(-1) for p in self.params]))
            self._link()

    def zero_grad(self) -> None:
        self.flat.grad.zero_()

    def unlink(self) -> None:
        for p in self.params:
            p.data = p.data.clone()
            if p.grad is not None:
                p.grad = p.grad.clone()


def _optimizer_factory(opt: str, params: list[torch.nn.Parameter],
                       flat: _FlatParams | None = None) -> Callable[[float], Any]:
    """pykan's optimizer settings. LBFGS: history 10, strong Wolfe line search, max_iter 20 (max_eval 25), both
    tolerances 1e-32; on one flat parameter it is :class:`kanlens._lbfgs.FlatLBFGS` (the same algorithm)."""
    if opt == "LBFGS" and flat is not None:
        from ._lbfgs import FlatLBFGS

        return lambda lr: FlatLBFGS(flat.flat, lr=lr, history_size=10, tolerance_grad=1e-32, tolerance_change=1e-32)
    if opt == "LBFGS":
        return lambda lr: torch.optim.LBFGS(
            params, lr=lr, history_size=10, line_search_fn="strong_wolfe",
            tolerance_grad=1e-32, tolerance_change=1e-32,
        )
    return lambda lr: torch.optim.Adam(params, lr=lr)
