"""Multi-process training through PyTorch's own engine (``torch.distributed`` + DDP).

Launch any command with ``torchrun`` and the suite trains data-parallel::

    torchrun --nproc-per-node 4 -m benchmark run --profile paper --out results/paper
    torchrun --nnodes 2 --node-rank 0 --master-addr host0 --nproc-per-node 8 -m benchmark run ...

What happens (see docs/performance.md):

* :func:`init_from_env` reads torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and joins the
  process group: ``nccl`` when the run uses CUDA (each process on ``cuda:LOCAL_RANK``), ``gloo``
  on CPU. Without those variables (a plain ``python -m benchmark``) nothing happens and every
  helper here reports a world of one.
* :func:`benchmark.training.fit` wraps the module in ``DistributedDataParallel``; every rank
  takes a disjoint, equal shard of each global batch of the seeded epoch permutation, so the
  global batch (``batch_size``) is the one a single process would use.
* The contrastive losses gather embeddings from every rank (``benchmark.losses.gather_with_grad``)
  so negatives span the global batch.
* Only rank 0 writes files (checkpoints, saved models, results); evaluation runs on rank 0
  alone inside :func:`local_only`, where collective operations are switched off.

We use plain ``torch.distributed`` rather than Lightning Fabric or accelerate: the loop already
owns precision, checkpoints and resume, so a wrapper would replace about twenty lines
(process-group set-up and the DDP wrap) while adding a dependency and a second notion of device
placement.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from typing import Any, Iterator

_LOCAL_ONLY = 0  # depth of nested local_only() blocks
_INITIALISED_HERE = False


def launched() -> bool:
    """True when started by torchrun (or another launcher setting WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> bool:
    """Join the process group described by torchrun's environment; return True if distributed.

    ``device``: the run's device setting; 'cpu' forces gloo even on a GPU machine. The timeout
    (``ECGBENCH_DIST_TIMEOUT_MIN``, default 120 minutes) bounds how long a rank waits for another
    (rank 0 evaluates alone between pretrainings).
    """
    global _INITIALISED_HERE
    import torch
    import torch.distributed as dist

    if not launched():
        return False
    if dist.is_initialized():
        return True
    use_cuda = torch.cuda.is_available() and str(device).lower() != "cpu"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = _dt.timedelta(minutes=float(os.environ.get("ECGBENCH_DIST_TIMEOUT_MIN", "120")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timeout)
    _INITIALISED_HERE = True
    return True


def shutdown() -> None:
    """Leave the process group if :func:`init_from_env` joined it."""
    global _INITIALISED_HERE
    import torch.distributed as dist

    if _INITIALISED_HERE and dist.is_initialized():
        dist.destroy_process_group()
    _INITIALISED_HERE = False


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) without a process group or inside :func:`local_only`."""
    import torch.distributed as dist

    if _LOCAL_ONLY or not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def global_rank() -> int:
    """This process's rank in the process group, even inside :func:`local_only` (0 if none)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on the process that writes files (rank 0, or the only process)."""
    return global_rank() == 0


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Within this block every helper (and ``fit``, and the losses) acts as a single process.

    Used for work that only rank 0 does (evaluation, fine-tuning protocols) while the other ranks
    have moved on, so that nothing waits on a collective the others never join.
    """
    global _LOCAL_ONLY
    _LOCAL_ONLY += 1
    try:
        yield
    finally:
        _LOCAL_ONLY -= 1


def barrier() -> None:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (identity when not distributed)."""
    import torch.distributed as dist

    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: list[float], device) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64 on ``device``)."""
    import torch
    import torch.distributed as dist

    if world()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


@contextlib.contextmanager
def main_first(local: bool = True) -> Iterator[None]:
    """Rank 0 (of the node with ``local=True``) runs the block first; the others after a barrier.

    Used around ``prepare``: one process per node builds the store, the others then open it.
    """
    first = (int(os.environ.get("LOCAL_RANK", "0")) if local else global_rank()) == 0
    if not first:
        barrier()
    yield
    if first:
        barrier()


__all__ = [
    "launched", "init_from_env", "shutdown", "world", "global_rank", "is_main", "local_only",
    "barrier", "broadcast_object", "all_reduce_sum", "main_first",
]
