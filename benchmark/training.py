"""The one training loop of the suite (pretraining and fine-tuning alike).

:func:`fit` takes a module that owns every trainable tensor and a ``step(batch) -> loss``
function, and handles the rest: device and precision, seeded shuffling, whole-batch loading
from an :class:`~benchmark.data.base.ECGSet` (``data.batch(idx, device)``; no per-sample Python),
optimiser and learning-rate schedule, a progress bar, per-epoch atomic checkpoints and resume,
and early stopping on the *validation* loss (never the test split; the best state is kept).

Determinism and resume. All randomness is derived from ``(seed, epoch, step)`` rather than
carried as state: the epoch's permutation comes from ``numpy.random.default_rng([seed, epoch])``,
the torch global RNG (dropout, initialisation inside a step) is re-seeded at every epoch start,
and each step gets its own CPU ``torch.Generator`` (``Batch.generator``) for augmentations. A
run killed after epoch k and resumed from its checkpoint therefore replays epochs k+1.. exactly
and ends with the same weights as an uninterrupted run (tested in tests/test_training.py).

Distributed data parallel. Under ``torchrun`` (``benchmark.distributed``) the module is wrapped
in ``DistributedDataParallel``; each global batch of the epoch's permutation is cut into
``world_size`` equal, disjoint shards (rank r takes the r-th), so ``batch_size`` stays the global
batch of a single-process run. Gradients are averaged by DDP; the contrastive losses gather
embeddings across ranks. Training losses are summed over ranks before they enter the history,
batch-norm buffers are broadcast from rank 0 after each epoch, and validation runs on every rank
over the whole validation split without collectives -- so every rank takes the same early-stopping
decision. Only rank 0 writes the checkpoint; on resume rank 0 reads it and broadcasts it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from benchmark import distributed as dist_
from benchmark.device import resolve_device
from benchmark.errors import UserError
from benchmark.heal import CorruptCacheEntry, atomic_torch_save, safe_torch_load
from benchmark.io import quarantine

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")
CHECKPOINT_NAME = "last.pt"


# -- device and precision ------------------------------------------------------------------
def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU.

    On CPU bf16 is available on request (``precision='bf16'``) but not the default: on CPUs
    without AMX/AVX512-BF16 it is slower than fp32 and it changes the numerics.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UserError("precision 'fp16' needs a CUDA device (use bf16 or fp32 on CPU)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("this GPU does not support bf16: use precision fp16 or fp32")
    return precision


def autocast(precision: str, device: torch.device):
    """Autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def step_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed derived from ``seed`` and integers (epoch, step, ...), stable across runs."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(p) & 0xFFFFFFFF for p in parts]])
    return int(ss.generate_state(2, dtype=np.uint32).astype(np.uint64).dot([1 << 31, 1])) & ((1 << 63) - 1)


# -- batches --------------------------------------------------------------------------------
@dataclass
class Batch:
    """What a step function receives: the signals plus where they came from."""

    x: torch.Tensor  # [B, 12, T] float32 on the training device
    idx: np.ndarray  # positions in the ECGSet (index auxiliary arrays with it: labels, texts)
    epoch: int
    step: int  # global optimisation step when training; batch number when validating
    train: bool
    generator: torch.Generator  # CPU generator seeded from (seed, epoch, step, train)
    device: torch.device


def batch_plan(n: int, batch_size: int, drop_last: bool | str = "auto") -> list[slice]:
    """Slices of one epoch. 'auto' drops an incomplete last batch when a full one exists
    (contrastive losses need comparable batch sizes; a 1-ECG batch breaks batch norm)."""
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    full, rest = divmod(n, batch_size)
    slices = [slice(i * batch_size, (i + 1) * batch_size) for i in range(full)]
    drop = (full > 0) if drop_last == "auto" else bool(drop_last)
    if rest and not drop:
        slices.append(slice(full * batch_size, n))
    return slices


# -- the loop -------------------------------------------------------------------------------
def _make_optimizer(name: str, params: list[nn.Parameter], lr: float, weight_decay: float):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=0.9, nesterov=True)
    raise UserError(f"unknown optimizer '{name}'; use one of {', '.join(OPTIMIZERS)}")


def _param_groups(params) -> list[dict]:
    """Parameters -> optimiser groups of those that require grad. ``params`` is an iterable of
    parameters (one group at the loop's learning rate) or of dicts ``{"params": [...], "lr": ...}``
    (torch's parameter groups: e.g. METS's language model at its own, lower ``lm_lr``)."""
    items = list(params)
    if items and all(isinstance(g, dict) for g in items):
        out = []
        for g in items:
            kept = [p for p in g["params"] if p.requires_grad]
            if kept:
                out.append({**g, "params": kept})
        return out or [{"params": []}]
    return [{"params": [p for p in items if p.requires_grad]}]


def _lr_lambda(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    if schedule not in SCHEDULES:
        raise UserError(f"unknown schedule '{schedule}'; use one of {', '.join(SCHEDULES)}")

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))

    return f


def _fingerprint(settings: dict, train_idx: np.ndarray, val_idx: np.ndarray, module: nn.Module) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(train_idx, dtype=np.int64).tobytes())
    h.update(b"|")
    h.update(np.ascontiguousarray(val_idx, dtype=np.int64).tobytes())
    h.update(json.dumps(sorted((k, tuple(v.shape)) for k, v in module.state_dict().items())).encode())
    return h.hexdigest()[:16]


class _StepModule(nn.Module):
    """``forward(batch) = step(batch)``: lets DDP wrap a module whose loss is a free function."""

    def __init__(self, module: nn.Module, step: Callable):
        super().__init__()
        self.module = module
        self._step = step

    def forward(self, batch):
        return self._step(batch)


def _broadcast_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank."""
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)


def _read_checkpoint(ckpt_path: Path | None, fingerprint: str):
    """The checkpoint dict, None if there is none, or the UserError to raise (broadcastable).

    A checkpoint that fails to load or verify (damaged, truncated, not plain data) is a cache
    miss: it is moved aside with a warning and training starts over from epoch 0."""
    if ckpt_path is None or not ckpt_path.is_file():
        return None
    try:
        ck = safe_torch_load(ckpt_path)
        if not isinstance(ck, dict) or "fingerprint" not in ck:
            raise CorruptCacheEntry(ckpt_path, "not a checkpoint of this suite")
    except CorruptCacheEntry as exc:
        quarantine(ckpt_path, exc.reason)
        return None
    if ck.get("fingerprint") != fingerprint:
        return UserError(
            f"checkpoint '{ckpt_path}' was written by a run with different settings or data; "
            "delete it (or use another checkpoint dir) to start over"
        )
    return ck


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def fit(
    module: nn.Module,
    step: Callable[[Batch], torch.Tensor | None],
    data,
    train_idx: Iterable[int],
    val_idx: Iterable[int] | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    optimizer: str = "adamw",
    schedule: str = "cosine",
    warmup: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    precision: str = "auto",
    early_stopping_patience: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    max_steps_per_epoch: int | None = None,
    grad_clip: float | None = None,
    params: Iterable[nn.Parameter] | None = None,
    drop_last: bool | str = "auto",
    desc: str = "train",
) -> list[dict]:
    """Train ``module`` by minimising ``step(batch)``; return the history (one row per epoch).

    ``module`` owns all trainable state (it is moved to the device, checkpointed and restored);
    ``params`` defaults to its parameters with ``requires_grad``; it may also be a list of torch
    parameter groups (dicts with ``params`` and e.g. their own ``lr``; the schedule scales every group). ``step`` returns a scalar loss,
    or ``None`` to skip a batch (e.g. every report in it is empty). ``warmup`` is in epochs
    (fractions allowed). With ``val_idx`` the module ends in its best-validation-loss state and
    ``early_stopping_patience`` epochs without improvement stop training; without it the last
    state is kept. ``checkpoint_dir``: ``last.pt`` is written atomically after every epoch and a
    later call with the same settings resumes from it (a finished run returns at once).
    ``on_epoch_end(epoch, row)`` runs after the checkpoint is written; an exception it raises
    (e.g. ``optuna.TrialPruned``) propagates with the checkpoint intact.
    History rows: ``{epoch, train_loss, val_loss, seconds, lr, ecgs_per_s}`` (``ecgs_per_s``: training
    examples per second of the epoch's training phase, over all ranks).
    """
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    train_idx = np.asarray(list(train_idx) if not isinstance(train_idx, np.ndarray) else train_idx, dtype=np.int64)
    val_idx = np.asarray([] if val_idx is None else val_idx, dtype=np.int64)
    if len(train_idx) == 0:
        raise UserError(f"{desc}: the training set is empty")
    if epochs < 0:
        raise UserError(f"epochs must be >= 0, got {epochs}")
    if early_stopping_patience is not None and len(val_idx) == 0:
        raise UserError(f"{desc}: early stopping needs a validation split, but val_idx is empty")

    rank, world = dist_.world()
    if world > 1 and batch_size % world:
        raise UserError(f"{desc}: batch_size {batch_size} must be divisible by the {world} processes (global batch)")

    module.to(dev)
    explicit_params = params is not None
    groups = _param_groups(module.parameters() if params is None else params)
    params = [p for g in groups for p in g["params"]]
    if not params:
        raise UserError(f"{desc}: nothing to train (no parameter requires grad)")
    opt = _make_optimizer(optimizer, groups if len(groups) > 1 or len(groups[0]) > 1 else params, lr, weight_decay)
    plan = batch_plan(len(train_idx), batch_size, drop_last)
    if world > 1:  # every rank needs an equal shard: trim a short batch to a multiple of world
        plan = [slice(sl.start, sl.start + (sl.stop - sl.start) // world * world) for sl in plan]
        plan = [sl for sl in plan if sl.stop > sl.start]
        if not plan:
            raise UserError(f"{desc}: {len(train_idx)} training rows cannot feed {world} processes")
    steps_per_epoch = len(plan) if max_steps_per_epoch is None else min(len(plan), int(max_steps_per_epoch))
    total_steps = max(1, epochs * steps_per_epoch)
    warmup_steps = int(round(warmup * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(schedule, warmup_steps, total_steps))
    scaler = torch.amp.GradScaler(dev.type) if prec == "fp16" else None  # fp16 overflows without it

    settings = dict(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
        schedule=schedule, warmup=warmup, seed=seed, precision=prec, patience=early_stopping_patience,
        max_steps_per_epoch=max_steps_per_epoch, grad_clip=grad_clip, drop_last=drop_last,
    )
    fingerprint = _fingerprint(settings, train_idx, val_idx, module)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None

    history: list[dict] = []
    best_val, best_state, bad_epochs, start_epoch, finished = math.inf, None, 0, 0, False
    ck = _read_checkpoint(ckpt_path, fingerprint) if rank == 0 else None
    if world > 1:  # rank 0 reads, everyone gets it (no shared filesystem needed)
        ck = dist_.broadcast_object(ck)
    if isinstance(ck, UserError):
        raise UserError(str(ck))
    if ck is not None:
        module.load_state_dict(ck["module"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"]["torch"])
        history, best_val, best_state = ck["history"], ck["best_val"], ck["best_state"]
        bad_epochs, start_epoch, finished = ck["bad_epochs"], ck["epoch"] + 1, ck["finished"]
        log.info("%s: resumed from %s after epoch %d", desc, ckpt_path, ck["epoch"])

    # DDP: the step runs inside the wrapper's forward so DDP sees it (gradient sync, buffers)
    ddp = None
    if world > 1:
        ddp = DistributedDataParallel(
            _StepModule(module, step), device_ids=[dev.index if dev.index is not None else torch.cuda.current_device()]
            if dev.type == "cuda" else None, find_unused_parameters=explicit_params,
        )
    train_step = ddp if ddp is not None else step

    def run_batches(epoch: int, train: bool) -> tuple[float | None, int]:
        if train:
            order = train_idx[np.random.default_rng([seed, epoch]).permutation(len(train_idx))]
            slices = plan[:steps_per_epoch]
        else:
            order = val_idx
            slices = batch_plan(len(val_idx), batch_size, drop_last=False)
            if max_steps_per_epoch is not None:
                slices = slices[: int(max_steps_per_epoch)]
        module.train(train)
        total, count = 0.0, 0
        for b, sl in enumerate(slices):
            idx = order[sl]
            if train and world > 1:  # this rank's disjoint shard of the global batch
                share = len(idx) // world
                idx = idx[rank * share : (rank + 1) * share]
            gstep = epoch * steps_per_epoch + b if train else b
            parts = (epoch if train else -1, gstep, int(train)) + ((rank,) if train and world > 1 else ())
            gen = torch.Generator().manual_seed(step_seed(seed, *parts))
            batch = Batch(data.batch(idx, dev), idx, epoch, gstep, train, gen, dev)
            if train:
                with autocast(prec, dev):
                    loss = train_step(batch)
                if loss is None and ddp is not None:  # keep the ranks in lock-step: a zero-gradient step
                    raise UserError(f"{desc}: a training step returned no loss, which distributed training cannot skip")
                if loss is not None:
                    if not torch.isfinite(loss.detach()):
                        raise UserError(
                            f"{desc}: loss became {loss.item()} at epoch {epoch} step {gstep}; "
                            "lower the learning rate or use precision fp32"
                        )
                    opt.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(opt)
                    else:
                        loss.backward()
                    if grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, grad_clip)
                    if scaler is not None:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                sched.step()
                bar.update(1)
            else:
                with torch.no_grad(), autocast(prec, dev):
                    loss = step(batch)
            if loss is not None:
                total += float(loss.detach()) * len(idx)
                count += len(idx)
        if train and world > 1:
            total, count = dist_.all_reduce_sum([total, count], dev if dev.type == "cuda" else "cpu")
            count = int(count)
        return (total / count if count else None), count

    bar = tqdm(
        total=epochs * steps_per_epoch, initial=min(start_epoch, epochs) * steps_per_epoch,
        desc=desc, unit="step", disable=True if not progress else None, leave=False, dynamic_ncols=True,
    )
    try:
        for epoch in range(start_epoch, epochs):
            if finished:
                break
            t0 = time.perf_counter()
            torch.manual_seed(step_seed(seed, epoch, 7919))
            lr_now = opt.param_groups[0]["lr"]
            train_loss, n_used = run_batches(epoch, train=True)
            train_s = time.perf_counter() - t0
            if world > 1:
                _broadcast_buffers(module)
            val_loss = None
            if len(val_idx):
                with dist_.local_only():  # every rank: the whole validation split, no collectives
                    val_loss, _ = run_batches(epoch, train=False)
            if train_loss is None:
                raise UserError(f"{desc}: every training batch was skipped in epoch {epoch} (no usable rows)")
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "seconds": time.perf_counter() - t0,
                "lr": lr_now,
                "ecgs_per_s": n_used / train_s if train_s > 0 else None,  # training throughput, all ranks
            }
            history.append(row)
            if val_loss is not None:
                if val_loss < best_val:
                    best_val, best_state, bad_epochs = val_loss, _cpu_state(module), 0
                else:
                    bad_epochs += 1
                if early_stopping_patience is not None and bad_epochs >= early_stopping_patience:
                    finished = True
            if epoch == epochs - 1:
                finished = True
            bar.set_postfix(epoch=epoch, train=f"{train_loss:.4f}", val="-" if val_loss is None else f"{val_loss:.4f}")
            if ckpt_path is not None and rank == 0:
                atomic_torch_save(
                    {
                        "fingerprint": fingerprint,
                        "epoch": epoch,
                        "module": module.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "rng": {"torch": torch.get_rng_state()},
                        "history": history,
                        "best_val": best_val,
                        "best_state": best_state,
                        "bad_epochs": bad_epochs,
                        "finished": finished,
                    },
                    ckpt_path,
                )
            if ckpt_path is not None and world > 1:
                dist_.barrier()  # the checkpoint exists before any rank moves on
            if on_epoch_end is not None:
                on_epoch_end(epoch, dict(row))
    finally:
        bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    return copy.deepcopy(history)
