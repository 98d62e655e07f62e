"""Data-parallel training on ``torch.distributed``: the helpers behind ``fit`` and ``train_classifier``.

Under ``torchrun --nproc-per-node N script.py`` (or any initialised process group: gloo on CPUs, NCCL on GPUs),
:func:`kanlens.fit` and :func:`kanlens.vision.train_classifier` train one model on the rows of all processes and
take exactly the steps one process would take on all of them (up to floating-point summation order):

* the processes' shards, in rank order, are the rows of one dataset; every batch is drawn from that dataset with
  the single-process generator, and each rank computes on the batch rows it holds;
* values and gradients are all-reduced weighted by row counts (shards and batch parts may be unequal);
* per-edge magnitudes ``mean |phi|`` of the sparsity penalty are all-reduced *before* the L1 + entropy term, so the
  penalty is the global one; its gradient flows back through each rank's own magnitudes;
* grid updates fit the samples gathered from all ranks (every rank computes the same update);
* every decision (LBFGS line search, non-finite safety, stopping) uses all-reduced values, so ranks never diverge;
* only rank 0 shows progress; :func:`save` writes on rank 0 only.

A program that never initialises a process group pays nothing: ``fit`` checks ``torch.distributed.is_initialized()``
once, runs its single-process code and never imports this module (nor does ``import kanlens``).

Example:
    >>> # torchrun --nproc-per-node 2 script.py
    >>> torch.distributed.init_process_group("gloo")
    >>> model.fit(dataset, steps=20, distributed=True)  # every rank holds the full dataset; fit shards it
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistributedMismatchError",
    "gather_rows",
    "is_main_process",
    "rank_and_world",
    "save",
    "shard",
    "shard_dataset",
    "use_data_parallel",
]

log = logging.getLogger(__name__)
_SIGNATURE_BYTES = 4096


class DistributedMismatchError(RuntimeError):
    """The processes of a data-parallel run disagree (model, options, data) or one of them failed its checks.

    Raised on every rank with the same message, instead of a hang at the first collective.
    """


def use_data_parallel(distributed: bool | None) -> bool:
    """Whether a call runs data-parallel: a process group with more than one process is initialised and the
    caller did not opt out (``distributed=False``). ``distributed=True`` without a group is an error."""
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(f"distributed must be None, True or False, got {type(distributed).__name__}")
    running = dist.is_available() and dist.is_initialized()
    if distributed and not running:
        raise ValueError("distributed=True needs an initialised process group: run under torchrun (or call "
                         "torch.distributed.init_process_group) first, or pass distributed=None")
    return bool(running and distributed is not False and dist.get_world_size() > 1)


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process is rank 0 (or the only one): the one that writes files and shows progress."""
    return rank_and_world()[0] == 0


def save(model: Any, path: str, **kwargs: Any) -> None:
    """``model.save(path, **kwargs)`` on rank 0 only, then a barrier (the checkpoint exists when any rank returns).

    Example:
        >>> history = model.fit(dataset, steps=20, callbacks=[lambda s, m, h: save(m, f"ckpt/{s}")])
    """
    rank, world = rank_and_world()
    error = None
    if rank == 0:
        try:
            model.save(path, **kwargs)
        except Exception as e:  # re-raised on rank 0 after the barrier; the other ranks learn of it too
            error = e
    if world > 1:
        failed = _all_sum([1.0 if error is not None else 0.0], _device_of(model))[0]
        if failed and error is None:
            raise DistributedMismatchError(f"rank 0 could not write the checkpoint {path!r}")
    if error is not None:
        raise error


def shard(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rows ``[rank * n // world, (rank + 1) * n // world)`` of ``t`` (contiguous shards, sizes differ by <= 1).

    Shapes:
        ``(n, ...) -> (n_rank, ...)``.
    """
    n = t.shape[0]
    return t[rank * n // world : (rank + 1) * n // world]


def shard_dataset(dataset: dict[str, torch.Tensor], rank: int | None = None,
                  world: int | None = None) -> dict[str, torch.Tensor]:
    """This rank's shard of every split of a pykan-style dataset (see :func:`shard`)."""
    r, w = rank_and_world()
    rank, world = (r if rank is None else rank), (w if world is None else world)
    return {k: shard(v, rank, world) if isinstance(v, torch.Tensor) else v for k, v in dataset.items()}


# ---------------------------------------------------------------------------------------------- collectives
def _comm_device(device: torch.device) -> torch.device:
    """Where collective tensors live: the data's device (NCCL needs CUDA tensors; gloo takes both)."""
    if dist.get_backend() == "nccl" and device.type != "cuda":
        raise ValueError("the NCCL backend needs the model and data on a CUDA device; use the gloo backend on CPUs")
    return device


def _device_of(obj: Any) -> torch.device:
    try:
        return next(obj.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    t = torch.tensor(list(values), dtype=torch.float64, device=_comm_device(device))
    dist.all_reduce(t)
    return t.tolist()


def gather_rows(x: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """The rows of every rank concatenated in rank order (rank ``r`` holds ``counts[r]`` rows of ``x``).

    Shapes:
        ``(counts[rank], ...) -> (sum(counts), ...)``.
    """
    most = max(counts)
    pad = x.new_zeros((most, *x.shape[1:]))
    pad[: x.shape[0]] = x
    parts = [torch.empty_like(pad) for _ in counts]
    dist.all_gather(parts, pad.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


def broadcast_module(module: torch.nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (as DDP does at the start)."""
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def all_reduce_grads(params: Sequence[torch.Tensor], extra: Sequence[torch.Tensor] = (),
                     weight: float = 1.0) -> list[torch.Tensor]:
    """Sum ``weight * grad`` over ranks into every ``p.grad`` (a missing one counts as zero) with one collective;
    ``extra`` scalars ride along (weighted too) and come back summed."""
    ref = params[0] if params else extra[0]
    chunks = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    buf = torch.cat([*chunks, *(e.reshape(1).to(ref.dtype) for e in extra)])
    if weight == 0.0:
        buf.zero_()  # a rank without rows in the batch (its stand-in row must not count, even if not finite)
    elif weight != 1.0:
        buf.mul_(weight)
    dist.all_reduce(buf)
    off = 0
    for p in params:
        n = p.numel()
        g = buf[off : off + n].view_as(p)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)
        off += n
    return list(buf[off:].unbind()) if extra else []


# ---------------------------------------------------------------------------------------------- consistency
def check_consistent(signature: dict[str, Any], error: str | None, device: torch.device,
                     same_rows: bool = False) -> list[dict[str, Any]]:
    """Exchange a small JSON signature (one all-gather) and raise :class:`DistributedMismatchError` on every rank
    when any rank failed its own checks (``error``) or the signatures differ. Returns every rank's signature.

    ``signature["rows"]`` may differ between ranks (their shards) unless ``same_rows``.
    """
    payload = json.dumps({"sig": signature, "error": error}, default=str).encode()
    if len(payload) > _SIGNATURE_BYTES:
        payload = json.dumps({"sig": {}, "error": (error or "signature too long")[:1000]}).encode()
    buf = torch.zeros(_SIGNATURE_BYTES, dtype=torch.uint8)
    buf[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    buf = buf.to(_comm_device(device))
    parts = [torch.empty_like(buf) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, buf)
    got = [json.loads(bytes(p.cpu().tolist()).rstrip(b"\0").decode()) for p in parts]
    errors = [f"rank {r}: {g['error']}" for r, g in enumerate(got) if g["error"]]
    if errors:
        raise DistributedMismatchError("data-parallel run refused; " + "; ".join(errors))
    sigs = [g["sig"] for g in got]
    for key in sigs[0]:
        if key == "rows" and not same_rows:
            continue
        values = [s.get(key) for s in sigs]
        if any(v != values[0] for v in values):
            per_rank = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            raise DistributedMismatchError(f"data-parallel run refused: the ranks disagree on {key} ({per_rank})")
    return sigs


# ---------------------------------------------------------------------------------------------- batches
class GlobalBatches:
    """The concatenation of all ranks' shards as one dataset of ``sum(counts)`` rows, batched as one process
    would: every rank draws the same global permutation and keeps the batch rows it holds.

    Args:
        counts: rows held by each rank (rank order).
        rank: this rank.
    """

    def __init__(self, counts: Sequence[int], rank: int) -> None:
        self.counts = [int(c) for c in counts]
        self.rank = rank
        self.total = sum(self.counts)
        self.offsets = [sum(self.counts[:r]) for r in range(len(self.counts))]

    def split(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Local row indices of this rank's part of the global batch ``idx`` and every rank's part size."""
        sizes, mine = [], idx[:0]
        for r, (off, c) in enumerate(zip(self.offsets, self.counts)):
            inside = (idx >= off) & (idx < off + c)
            sizes.append(int(inside.sum()))
            if r == self.rank:
                mine = idx[inside] - off
        return mine, sizes


# ---------------------------------------------------------------------------------------------- fit
class _GlobalMagnitudes(torch.autograd.Function):
    """Forward: ``sum_r w_r * m_r`` over ranks (the magnitudes over all rows). Backward: the gradient passes to
    this rank's own ``m_r`` unchanged; :class:`FitGroup` weights the whole local gradient by ``w_r`` afterwards."""

    @staticmethod
    def forward(ctx, weight: float, *mags: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        buf = torch.cat([m.reshape(-1) for m in mags])
        buf = buf.zero_() if weight == 0.0 else buf * weight
        dist.all_reduce(buf)
        out, off = [], 0
        for m in mags:
            out.append(buf[off : off + m.numel()].view_as(m))
            off += m.numel()
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):  # type: ignore[override]
        return (None, *grads)


class FitGroup:
    """Per-``fit`` data-parallel state: row counts, this rank's weight in the current batch, the reductions.

    The local objective of rank ``r`` is its loss on its batch rows plus the penalty of the *global* magnitudes;
    ``sum_r w_r * (value_r, grad_r)`` with ``w_r = rows_r / rows`` is then the value and gradient of one process.
    """

    def __init__(self, rank: int, train_counts: Sequence[int], test_counts: Sequence[int],
                 device: torch.device) -> None:
        self.rank, self.device = rank, device
        self.train = GlobalBatches(train_counts, rank)
        self.test_counts = list(test_counts)
        self.w_train = train_counts[rank] / self.train.total
        self.w_test = test_counts[rank] / sum(test_counts)
        self.weight = self.w_train  # of the current batch
        self.batch_sizes = list(train_counts)

    def batch(self, gen: torch.Generator, bs: int) -> torch.Tensor | None:
        """Local row indices of the next global batch of ``bs`` rows (``None``: all local rows); draws from ``gen``
        exactly as a single process does."""
        if bs >= self.train.total:
            self.weight, self.batch_sizes = self.w_train, list(self.train.counts)
            return None
        idx = torch.randperm(self.train.total, generator=gen)[:bs]
        mine, self.batch_sizes = self.train.split(idx)
        self.weight = mine.numel() / bs
        if mine.numel() == 0:  # no rows of this batch here: compute on one stand-in row with weight 0
            mine = idx.new_zeros(1)
        return mine

    def magnitudes(self, mags: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-edge magnitudes over the whole batch of all ranks (differentiable; see :class:`_GlobalMagnitudes`)."""
        return list(_GlobalMagnitudes.apply(self.weight, *mags))

    def value_and_grads(self, value: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
        """All-reduce ``w_r * value`` and ``w_r * grad`` (one collective); the global value, grads in place."""
        (total,) = all_reduce_grads(params, [value.detach()], self.weight)
        return total

    def errors(self, train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Train and test losses over all rows (each a mean over this rank's rows)."""
        buf = torch.stack([train * self.w_train, test.to(train.dtype) * self.w_test])
        dist.all_reduce(buf)
        return buf[0], buf[1]

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (e.g. a callback asked to stop)."""
        return _all_sum([float(bool(flag))], self.device)[0] > 0

    def grid_samples(self, x: torch.Tensor) -> torch.Tensor:
        """The current batch's rows of all ranks (what one process would fit its grids to)."""
        mine = self.batch_sizes[self.rank]
        return gather_rows(x[:mine], self.batch_sizes)


def _kan_signature(model: Any, options: dict[str, Any]) -> dict[str, Any]:
    params = model.trainable_parameters()
    return {"model": f"width={model.width} grid={model.grid} k={model.k}", "dtype": str(model.dtype),
            "device": model.device.type, "parameters": f"{len(params)} tensors, {sum(p.numel() for p in params)} "
            "numbers", "seed": model.config.seed, "options": options}


def setup_fit(model: Any, dataset: Any, options: dict[str, Any], validate: Callable[[], None],
              shard_full: bool) -> tuple[dict[str, torch.Tensor], FitGroup]:
    """Checks of a data-parallel ``fit`` on every rank at once, then this rank's shard and its :class:`FitGroup`.

    ``validate()`` runs this rank's own checks; whatever it raises (or a disagreement between ranks on the
    model, the options or, with ``shard_full``, the full dataset) becomes one :class:`DistributedMismatchError`
    on every rank. With ``shard_full`` every rank holds the full dataset and keeps its :func:`shard`.
    """
    rank, world = rank_and_world()
    device, error, sig = _device_of(model), None, {}
    try:
        validate()
        if options.get("reg_metric") != "abs" and options.get("lamb", 0) > 0:
            raise ValueError("a data-parallel fit supports reg_metric='abs' only (the std_n penalty needs "
                             "global standard deviations)")
        sig = _kan_signature(model, options)
        if shard_full:  # the same data everywhere: sizes and a checksum must agree
            sig["full data"] = [[int(dataset[k].shape[0]), float(dataset[k].double().sum())]
                                for k in ("train_input", "train_label", "test_input", "test_label")]
            dataset = shard_dataset(dataset, rank, world)
        sig["rows"] = [int(dataset["train_input"].shape[0]), int(dataset["test_input"].shape[0])]
        if min(sig["rows"]) < 1:
            raise ValueError(f"this rank holds {sig['rows'][0]} train and {sig['rows'][1]} test rows; every rank "
                             "needs at least one of each")
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        error = f"{type(e).__name__}: {e}"
    sigs = check_consistent(sig, error, device)
    broadcast_module(model)
    train, test = [s["rows"][0] for s in sigs], [s["rows"][1] for s in sigs]
    log.info("data-parallel fit on rank %d of %d: %d of %d train rows", rank, world, train[rank], sum(train))
    return dataset, FitGroup(rank, train, test, device)


# ---------------------------------------------------------------------------------------------- train_classifier
class ClassifierGroup(GlobalBatches):
    """Data-parallel state of :func:`kanlens.vision.train_classifier`: global batches and the gradient sum."""

    def gather(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The images of the global index set ``idx`` from all ranks (for grid updates)."""
        mine, sizes = self.split(idx)
        return gather_rows(x[mine.to(x.device)], sizes)

    def __init__(self, counts: Sequence[int], rank: int, device: torch.device) -> None:
        super().__init__(counts, rank)
        self.device = device

    def step(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
             shifts: torch.Tensor | None, max_shift: int) -> float:
        """Gradient of the global batch ``idx`` (mean cross-entropy over all its images) in every ``.grad``; the
        summed loss of this rank's images."""
        import torch.nn.functional as F

        from .vision_training import shift_images

        inside = (idx >= self.offsets[self.rank]) & (idx < self.offsets[self.rank] + self.counts[self.rank])
        mine = (idx[inside] - self.offsets[self.rank]).to(x.device)
        loss_sum = 0.0
        if mine.numel():
            xb = x[mine] if shifts is None else shift_images(x[mine], max_shift, shifts[:, inside])
            loss = F.cross_entropy(model(xb), y[mine], reduction="sum")
            (loss / idx.numel()).backward()
            loss_sum = float(loss.detach())
        all_reduce_grads([p for p in model.parameters() if p.requires_grad])
        return loss_sum

    def epoch_end(self, model: torch.nn.Module, loss_sum: float) -> float:
        """The epoch's summed loss over all ranks; rank 0's buffers (batch-norm statistics) for every rank."""
        for b in model.buffers():
            dist.broadcast(b.data, src=0)
        return _all_sum([loss_sum], self.device)[0]

    def mean(self, value: float, rows: int) -> float:
        """The row-weighted mean of a per-rank mean (e.g. validation accuracy)."""
        s, n = _all_sum([value * rows, rows], self.device)
        return s / max(n, 1)


def setup_classifier(model: torch.nn.Module, data: dict[str, torch.Tensor | None], options: dict[str, Any],
                     validate: Callable[[], None], shard_full: bool) -> tuple[dict[str, Any], ClassifierGroup]:
    """:func:`setup_fit` for :func:`kanlens.vision.train_classifier`: checks on every rank at once, this rank's
    shard of ``data`` (``x``, ``y``, ``x_val``, ``y_val``), rank 0's parameters everywhere."""
    rank, world = rank_and_world()
    device, error, sig = _device_of(model), None, {}
    try:
        validate()
        params = [p for p in model.parameters() if p.requires_grad]
        sig = {"model": type(model).__name__, "parameters": f"{len(params)} tensors, "
               f"{sum(p.numel() for p in params)} numbers", "dtype": str(params[0].dtype) if params else "",
               "image shape": list(data["x"].shape[1:]), "options": options}
        if shard_full:
            sig["full data"] = [int(data["x"].shape[0]), float(data["x"].double().sum()), int(data["y"].sum())]
            data = {k: v if v is None else shard(v, rank, world) for k, v in data.items()}
        sig["rows"] = int(data["x"].shape[0])
        if sig["rows"] < 1:
            raise ValueError("this rank holds no training images; every rank needs at least one")
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        error = f"{type(e).__name__}: {e}"
    sigs = check_consistent(sig, error, device)
    broadcast_module(model)
    return data, ClassifierGroup([s["rows"] for s in sigs], rank, device)
