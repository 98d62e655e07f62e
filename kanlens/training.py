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

Layout: this module holds :func:`fit` and the trainer (objective, step, recovery, loop); the argument and data
checks are in :mod:`kanlens.fit_checks`, the history record in :mod:`kanlens.fit_history`, the optimizers and the
flat LBFGS parameter in :mod:`kanlens.fit_optim`. The progress bar is drawn only on a terminal: when stderr is not
one (a log file, a pipe) ``progress=True`` writes one line when the fit ends instead of carriage-return redraws.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._checks import as_int
from .fit_checks import all_finite, is_class_index, validate_dataset, validate_fit
from .fit_history import FitHistory
from .fit_optim import FlatParams, optimizer_factory, snapshot
from .layers.stack import stack_backward, stack_forward
from .progress import live_progress, print_progress_line
from .pykan_fit import PYKAN_REG_METRICS, pykan_objective, pykan_options
from .regularization import l1_entropy_with_grad, magnitude_reg, total_reg
from .utils import warn_user

if TYPE_CHECKING:
    from .model import KAN

__all__ = ["FitHistory", "fit", "validate_dataset"]

log = logging.getLogger(__name__)


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
    distributed: bool | None = None,
    start_grid_update_step: int = -1,
    **pykan: Any,
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
        reg_metric: ``"abs"`` (paper: mean |phi|) or ``"std_n"`` (pykan 0.2: std(phi) / (std(x) + 0.1)); pykan's
            names work too, with pykan's coefficient penalties: ``"edge_forward_spline_n"`` (pykan's default, the
            magnitudes of ``"std_n"``), ``"edge_forward_sum"``
            (symbolic edges included), ``"edge_forward_spline_u"`` (std(phi), not normalised), ``"edge_backward"``
            (attribution edge scores) and ``"node_backward"`` (node attribution), see :mod:`kanlens.pykan_fit`.
        update_grid: adapt grids to the data every ``stop_grid_update_step // grid_update_num`` steps from
            ``start_grid_update_step`` until ``stop_grid_update_step`` (needs at least 2 samples per batch).
        loss_fn: ``loss_fn(pred, label) -> scalar``; defaults to mean squared error. With a ``loss_fn`` the labels
            may be 1-D integer class indices (pykan's classification recipe, ``torch.nn.CrossEntropyLoss()``); the
            history then records ``sqrt(loss_fn)`` on train and test instead of the RMSE (pykan's convention).
        progress: show a tqdm bar with the losses (on a terminal or in a notebook; elsewhere one line on stderr at
            the end, see :mod:`kanlens.progress`).
        callbacks: ``cb(step, model, history)`` after each successful step; returning ``True`` stops training.
        max_nonfinite: how many consecutive non-finite steps to recover from (restore the last finite state, halve
            lr) before stopping with a ``RuntimeWarning``.
        distributed: data-parallel training on an initialised ``torch.distributed`` process group (e.g. under
            ``torchrun``), the same steps as one process on the rows of all ranks (see
            :mod:`kanlens.distributed`). ``None`` (default): data-parallel when a group of several processes is
            initialised, each rank passing its own shard of the rows; ``True``: every rank passes the full dataset
            and keeps its shard; ``False``: train this process's model alone. ``loss_fn`` must be a mean over rows.
        start_grid_update_step: no grid update before this step (pykan's option).
        **pykan: pykan's other ``fit`` options: ``metrics`` (functions without arguments, recorded per step under
            their ``__name__``), ``display_metrics`` (names shown in the progress bar), ``log`` (progress bar
            refresh every ``log`` steps), ``save_fig`` / ``save_fig_freq`` / ``img_folder`` / ``in_vars`` /
            ``out_vars`` / ``beta`` (a PNG of ``model.plot`` every ``save_fig_freq`` steps into ``img_folder``,
            written only with ``save_fig=True``), ``singularity_avoiding`` / ``y_th`` (accepted: kanlens's symbolic
            functions are always evaluated in their singularity-safe form, see
            :class:`kanlens.symbolic.library.SymbolicFunction`). See :func:`kanlens.pykan_fit.pykan_options`.

    Returns:
        :class:`FitHistory` with per-step train/test RMSE, regularisation and events.

    Shapes:
        ``dataset["train_input"]``: ``(n, width[0])``, ``dataset["train_label"]``: ``(n, width[-1])``.

    Example:
        >>> history = model.fit(dataset, opt="LBFGS", steps=50, lamb=0.001)
        >>> history["test_loss"][-1]
    """
    lambs = {"lamb": lamb, "lamb_l1": lamb_l1, "lamb_entropy": lamb_entropy, "lamb_coef": lamb_coef,
             "lamb_coefdiff": lamb_coefdiff}
    extra = pykan_options(pykan, progress)
    callbacks = [*extra.callbacks, *callbacks] if isinstance(callbacks, (list, tuple)) else callbacks
    start_grid_update_step = as_int("start_grid_update_step", start_grid_update_step, -1)

    def validate() -> None:
        validate_fit(model, dataset, opt, steps, lr, batch, lambs, reg_metric, update_grid, grid_update_num,
                      stop_grid_update_step, loss_fn, progress, callbacks, max_nonfinite)

    options = dict(lambs, opt=opt, steps=steps, lr=lr, batch=batch, reg_metric=reg_metric, update_grid=update_grid,
                   grid_update_num=grid_update_num, stop_grid_update_step=stop_grid_update_step,
                   max_nonfinite=max_nonfinite, start_grid_update_step=start_grid_update_step,
                   loss_fn=None if loss_fn is None else type(loss_fn).__name__)
    dataset, group, progress = _data_parallel(model, dataset, distributed, options, validate, progress)
    trainer = _Trainer(model, dataset, opt=opt, lr=lr, batch=batch, lambs=lambs, reg_metric=reg_metric,
                       loss_fn=loss_fn or _mse, max_nonfinite=max_nonfinite, group=group)
    trainer.grid_start, trainer.display, trainer.log_every = start_grid_update_step, extra.display, extra.log
    schedule = max(1, stop_grid_update_step // grid_update_num) if update_grid else 0
    history = trainer.run(steps, schedule, stop_grid_update_step, progress, callbacks)
    # a model tracked with kanlens.checkpoints.track logs a version; in a data-parallel fit only rank 0 writes
    if getattr(model, "ckpt_path", None) is not None and (group is None or group.rank == 0):
        model.log_history("fit")
    return history


def _data_parallel(model: KAN, dataset: dict[str, torch.Tensor], distributed: bool | None, options: dict[str, Any],
                   validate: Callable[[], None], progress: bool) -> tuple[dict[str, torch.Tensor], Any, bool]:
    """``(this rank's dataset, FitGroup or None, progress)``; validates the arguments (on every rank together in a
    data-parallel fit, see :func:`kanlens.distributed.setup_fit`)."""
    if distributed is not None or _torch_distributed_running():  # one cheap check for users who never use it
        from . import distributed as dp

        if dp.use_data_parallel(distributed):
            dataset, group = dp.setup_fit(model, dataset, options, validate, shard_full=distributed is True)
            return dataset, group, progress and dp.is_main_process()
    validate()
    return dataset, None, progress


def _torch_distributed_running() -> bool:
    dist = getattr(torch, "distributed", None)
    return dist is not None and dist.is_available() and dist.is_initialized()




class _Trainer:
    """State of one :func:`fit` call: data on the model's device, optimizer, last finite state, history."""

    def __init__(self, model: KAN, dataset: dict[str, torch.Tensor], *, opt: str, lr: float | None, batch: int,
                 lambs: dict[str, float], reg_metric: str, loss_fn: Callable, max_nonfinite: int,
                 group: Any = None) -> None:
        dev, dt = model.device, model.dtype
        self.model, self.opt, self.lambs, self.reg_metric, self.loss_fn = model, opt, lambs, reg_metric, loss_fn
        # integer class indices stay integers (for the loss); other labels take the model's dtype
        self.classes = is_class_index(dataset["train_label"])
        ydt = None if self.classes else dt
        self.train_x, self.train_y = dataset["train_input"].to(dev, dt), dataset["train_label"].to(dev, ydt)
        self.test_x, self.test_y = dataset["test_input"].to(dev, dt), dataset["test_label"].to(dev, ydt)
        self.group = group  # a kanlens.distributed.FitGroup in a data-parallel fit
        self.n = self.train_x.shape[0] if group is None else group.train.total
        self.bs = self.n if batch == -1 or batch > self.n else batch
        self.gen = torch.Generator().manual_seed(model.config.seed)
        self.params = model.trainable_parameters()
        # LBFGS sees one flat parameter whose storage the model's parameters view (see FlatParams).
        self.flat = FlatParams(self.params) if opt == "LBFGS" and self.params else None
        self.make_opt = optimizer_factory(opt, self.params, self.flat)
        self.lr = float(lr) if lr is not None else (1.0 if opt == "LBFGS" else 1e-2)
        self.optimizer = self.make_opt(self.lr)
        self.max_nonfinite, self.streak = max_nonfinite, 0
        self.history = FitHistory(lr=self.lr)
        self.grid_start, self.display, self.log_every = -1, None, 1
        self.good_state = snapshot(model)
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
            pred, mags = model.forward_with_magnitudes(xb)
            if self.group is not None:
                mags = self.group.magnitudes(mags)
            reg = magnitude_reg(mags, [layer.coef for layer in model.layers], lamb_l1=lambs["lamb_l1"],
                                lamb_entropy=lambs["lamb_entropy"], lamb_coef=lambs["lamb_coef"],
                                lamb_coefdiff=lambs["lamb_coefdiff"])
        elif lambs["lamb"] > 0 and self.reg_metric in PYKAN_REG_METRICS:
            pred, reg = pykan_objective(model, xb, self.reg_metric, lambs)
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
        args = self.model.stack_args()
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
        if self.group is not None:
            mags = self.group.magnitudes(mags)
        diff = pred - cur["y"]
        reg, g_mags = l1_entropy_with_grad(mags, lambs["lamb_l1"], lambs["lamb_entropy"])
        cur["reg"], cur["mse"] = reg, diff.square().mean()
        total = torch.add(cur["mse"], reg, alpha=lambs["lamb"])

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
                total, cur["reg"], cur["mse"] = hit
                cur["evals"], cur["f0"] = 1, float(total)
                return total
            total, backward = self._fused_objective(stack)
        else:
            self._zero_grad()
            loss, reg = self.objective()
            total = loss + self.lambs["lamb"] * reg
            cur["reg"] = reg.detach()
            backward = total.backward
        cur["evals"] += 1
        if self.group is not None:  # every decision below is made on the all-reduced value and gradient
            backward()
            total, backward = self.group.value_and_grads(total, [self.flat.flat] if self.flat else self.params), None
        if self.opt == "Adam":  # checked together with the gradients, in one sync, before optimizer.step()
            if backward is not None:
                backward()
            cur["total"] = total.detach()
            return total
        value = float(total.detach())  # the one sync per evaluation that LBFGS makes anyway
        if not math.isfinite(value):
            self._zero_grad()
            return self._nonfinite(total)
        if cur["evals"] == 1:
            cur["f0"] = value
        if backward is not None:
            backward()
        if stack is not None:  # remembered for the next LBFGS step, which starts at the point accepted last
            self.memo = [*self.memo[-3:], (self.flat.flat.detach().clone(), total, self.flat.flat.grad.clone(),
                                           cur["reg"], cur["mse"])]
        return total

    def _zero_grad(self) -> None:
        if self.flat is not None:
            self.flat.zero_grad()
        else:
            self.optimizer.zero_grad()

    def _remembered(self, with_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(objective, penalty, mse)`` of a remembered evaluation at exactly the current parameters (bit for bit;
        its gradient is written into ``.grad`` if ``with_grad``), or ``None``. The memo is cleared whenever the
        objective may change: a grid update, a new batch, a restored state, a callback."""
        flat = self.flat.flat.detach()
        for point, total, grad, reg, mse in reversed(self.memo):
            if torch.equal(point.view(_bits_dtype(point)), flat.view(_bits_dtype(flat))):
                if with_grad:
                    self.flat.flat.grad.copy_(grad)
                return total, reg, mse
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
        if not all_finite([self.cur["total"], *grads]):
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
            # the train MSE of the full-batch objective at exactly these parameters is remembered (the same ops on
            # the same values as below, bit for bit)
            full = self.cur.get("x") is self.train_x and self.group is None and not self.classes
            hit = self._remembered(with_grad=False) if full else None
            pred_train = None if hit is not None else stack_forward(self.train_x, cfg, params, no_grad)[0]
            pred_test = stack_forward(self.test_x, cfg, params, no_grad)[0]
        else:
            hit, (pred_train, pred_test) = None, (model(self.train_x), model(self.test_x))
        if self.classes:  # no squared error for class indices: the loss itself (its sqrt is recorded, as pykan)
            with torch.no_grad():
                errs = [self.loss_fn(pred_train, self.train_y), self.loss_fn(pred_test, self.test_y)]
        else:
            train_err = hit[2] if hit is not None else torch.mean((pred_train - self.train_y) ** 2)
            errs = [train_err, torch.mean((pred_test - self.test_y) ** 2)]
        if self.group is not None:
            errs = self.group.errors(*errs)
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
        if self.group is not None:  # the single-process batch of all ranks' rows; this rank's part of it
            idx = self.group.batch(self.gen, self.bs)
        else:
            idx = torch.randperm(self.n, generator=self.gen)[: self.bs] if self.bs < self.n else None
        idx = None if idx is None else idx.to(self.model.device)
        self.cur.update(x=self.train_x if idx is None else self.train_x[idx],
                        y=self.train_y if idx is None else self.train_y[idx], evals=0, bad_evals=0, start_bad=False)
        if idx is not None:
            self.memo = []  # a new batch: a new objective
        if grid_every and step % grid_every == 0 and self.grid_start <= step < grid_stop:
            self.memo = []  # new grids (or a state restored after a failed update)
            samples = self.cur["x"] if self.group is None else self.group.grid_samples(self.cur["x"])
            if _safe_grid_update(self.model, samples, step, self.history, self.good_state):
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
        self.good_state = snapshot(self.model)
        return train_mse, test_mse, reg

    # ---------------------------------------------------------------- loop
    def run(self, steps: int, grid_every: int, grid_stop: int, progress: bool,
            callbacks: Sequence[Callable[[int, KAN, FitHistory], bool | None]]) -> FitHistory:
        from tqdm.auto import tqdm

        h, t0 = self.history, time.perf_counter()
        live = progress and live_progress()  # no carriage-return redraws into a log file or pipe
        bar = tqdm(range(steps), disable=not live, desc="fit", dynamic_ncols=True)
        try:
            for step in bar:
                self.cur["stop"] = False
                out = self.step(step, grid_every, grid_stop)
                if out is None:
                    if self.cur["stop"]:
                        break
                    continue
                # numpy.float64: a float with pykan's .item()
                train_rmse, test_rmse, reg = (np.float64(v) for v in (math.sqrt(out[0]), math.sqrt(out[1]), out[2]))
                h.train_loss.append(train_rmse)
                h.test_loss.append(test_rmse)
                h.reg.append(reg)
                if progress and self.display is None and step % self.log_every == 0:
                    bar.set_postfix(train=f"{train_rmse:.2e}", test=f"{test_rmse:.2e}", reg=f"{reg:.2e}")
                if callbacks:
                    self.memo = []  # a callback may edit the model
                stop = any(cb(step, self.model, h) for cb in callbacks)  # pykan's metrics and figures come first
                if self.group is not None:
                    stop = self.group.any(stop)  # a callback that stops one rank stops all
                if stop:
                    h.stopped_early, h.stop_reason = True, "callback"
                    h.events.append(f"step {step}: stopped by a callback")
                    break
                if progress and self.display is not None and step % self.log_every == 0:
                    bar.set_postfix({name: f"{h[name][-1]:.2e}" for name in self.display})
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
        if progress and not live:  # where a bar cannot be redrawn (a log, a pipe): one line per fit, at its end
            print_progress_line(f"fit: {len(h)}/{steps} steps in {h.seconds:.1f} s"
                                + (f", train={h.train_loss[-1]:.2e} test={h.test_loss[-1]:.2e} reg={h.reg[-1]:.2e}"
                                   if h.train_loss else ""))
        return h


def _finish(model: KAN, good_state: dict[str, Any], train_x: torch.Tensor, history: FitHistory) -> None:
    """Never hand back a non-finite model (e.g. a callback broke it on the last step); keep acts for plots."""
    if not all_finite(list(model.parameters()) + list(model.buffers())):
        model.load_state_dict(good_state)
        history.events.append("end: the model was not finite after the last step; restored the last finite state")
    with torch.no_grad():
        if all_finite([train_x]):
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


