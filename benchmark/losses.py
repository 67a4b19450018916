"""Contrastive losses as pure functions (tested on hand-computed examples in tests/test_losses.py).

All three losses are InfoNCE over cosine similarities of L2-normalised embeddings:

* :func:`clip_loss`  -- METS/CLIP: symmetric cross-entropy between ECG and text embeddings of
  the same batch; pair i is the positive, every other pair a negative.
* :func:`nt_xent`    -- SimCLR: 2N views, each view's positive is the other view of the same
  ECG, the other 2N-2 views are negatives (self-similarity excluded).
* :func:`clocs_loss` -- CLOCS CMSC (Kiyasseh et al., ICML 2021): embeddings of two temporally
  adjacent, non-overlapping segments; positives are segment pairs sharing a group (the same
  record by default, the same patient in the paper's patient-specific variant). With one
  positive per row it equals ``clip_loss`` with ``logit_scale = 1 / temperature``.

Distributed training: each loss gathers the *other* side's embeddings from every rank with
:func:`gather_with_grad` so negatives span the global batch, as open_clip's
``ClipLoss(local_loss=True, gather_with_grad=True)`` does: each rank's loss covers its own rows
against every column, gradients flow back to the rank that owns each embedding, and DDP's
gradient average then equals the single-process gradient of the global batch exactly (tested in
tests/test_distributed.py). Without an initialised process group (or inside
``benchmark.distributed.local_only()``) the gather is the identity and the losses are the
single-process ones.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from benchmark.distributed import world


# -- distributed helpers -------------------------------------------------------------------
def _dist_world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) when torch.distributed is not in use (or in ``local_only``)."""
    return world()


def gather_with_grad(x: torch.Tensor, *, full_grad: bool = False) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 (rank order).

    The local shard is the original tensor, so gradients flow into it; other ranks' shards are
    constants (``full_grad=False``, open_clip's default) or differentiable too
    (``full_grad=True``: the gradient of every rank's loss reaches the shard's owner). Identity when not
    distributed.
    """
    rank, world = _dist_world()
    if world == 1:
        return x
    if full_grad:
        return _AllGatherGrad.apply(x)
    parts = [torch.zeros_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)


class _AllGatherGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient for this rank's shard
    (an all-reduce of the gathered gradient, then this rank's slice): works on gloo and nccl."""

    @staticmethod
    def forward(ctx, x):
        rank, world = _dist_world()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = rank, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def _local_offset(n_local: int) -> int:
    rank, _ = _dist_world()
    return rank * n_local  # every rank holds the same local batch size (drop_last)


def _pair(name: str, a: torch.Tensor, b: torch.Tensor):
    """The prologue every contrastive loss shares: equal shapes, unit-norm float32 rows, and the
    whole (multi-process) batch of each side gathered with its gradient. Returns
    ``(a, b, all_a, all_b)``."""
    if a.shape != b.shape:
        raise ValueError(f"{name} needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    return a, b, gather_with_grad(a, full_grad=True), gather_with_grad(b, full_grad=True)


# -- losses --------------------------------------------------------------------------------
def clip_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE: mean of CE(a -> b) and CE(b -> a), pair i <-> i positive.

    ``a``, ``b``: [N, D] embeddings (normalised here, so raw projections are fine);
    ``logit_scale``: multiplier of the cosine similarities (1 / temperature, CLIP-style).
    """
    a, b, all_a, all_b = _pair("clip_loss", a, b)
    target = torch.arange(a.shape[0], device=a.device) + _local_offset(a.shape[0])
    logits_ab = logit_scale * a @ all_b.T
    logits_ba = logit_scale * b @ all_a.T
    return 0.5 * (F.cross_entropy(logits_ab, target) + F.cross_entropy(logits_ba, target))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over two views ``z1``, ``z2`` [N, D] of the same N examples."""
    z1, z2, all1, all2 = _pair("nt_xent", z1, z2)
    n = z1.shape[0]
    n_all = all1.shape[0]
    off = _local_offset(n)
    local = torch.cat([z1, z2], dim=0)  # [2N, D] rows
    cols = torch.cat([all1, all2], dim=0)  # [2N_all, D] columns
    logits = local @ cols.T / temperature
    rows = torch.arange(n, device=z1.device) + off
    self_col = torch.cat([rows, rows + n_all])
    pos_col = torch.cat([rows + n_all, rows])
    logits = logits.clone()
    logits[torch.arange(2 * n, device=z1.device), self_col] = float("-inf")
    return F.cross_entropy(logits, pos_col)


def clocs_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """CLOCS CMSC loss between segment-1 and segment-2 embeddings [N, D].

    Row i's positives are the columns j with ``groups[j] == groups[i]`` (default: j == i, the
    adjacent segment of the same record). Each row's loss is the mean over its positives of
    ``-log softmax``; the loss is symmetric (segment 1 -> 2 and 2 -> 1 averaged).
    """
    z1, z2, all1, all2 = _pair("clocs_loss", z1, z2)
    n = z1.shape[0]
    if groups is None:
        groups = torch.arange(n, device=z1.device) + _local_offset(n)
    groups = groups.to(z1.device)
    all_groups = _gather_plain(groups)
    pos = (groups[:, None] == all_groups[None, :]).float()  # [N, N_all]
    loss = 0.0
    for q, keys in ((z1, all2), (z2, all1)):
        logp = F.log_softmax(q @ keys.T / temperature, dim=1)
        loss = loss + (-(logp * pos).sum(1) / pos.sum(1)).mean()
    return loss / 2


def _gather_plain(x: torch.Tensor) -> torch.Tensor:
    rank, world = _dist_world()
    if world == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def supervised_loss(logits: torch.Tensor, y: torch.Tensor, multilabel: bool,
                    class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE-with-logits for multi-label targets, cross-entropy (on argmax of one-hot) otherwise;
    ``class_weight`` [C] weighs the single-label classes (e.g. inversely to their counts)."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits.float(), y.float())
    w = None if class_weight is None else class_weight.to(logits.device, torch.float32)
    return F.cross_entropy(logits.float(), y.argmax(dim=1), weight=w)
