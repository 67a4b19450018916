"""Frozen-evaluation heads beyond the linear probe: a small MLP on the pooled features, and
attention pooling over the encoder's time steps (its time-resolved features, ``embed(...,
pooled=False)``), each trained on a frozen encoder's features with early stopping on the
validation loss; the decision rule is chosen on validation and the test split is scored once.

``mlp-probe``: pooled features [N, D] -> Linear(D, h) -> GELU -> Linear(h, C), ``h = probe_hidden``.
``attention-probe``: feature maps [N, D, T'] -> a learnt query scores each time step, softmax over
time, the weighted mean [N, D] -> Linear(D, C) (attention pooling as in MIL/ViT read-outs).
Features are standardised with the training rows' statistics; AdamW, ``probe_epochs`` at most,
patience 5 on the validation loss, the best state kept. Seeded: one seed, one head.
"""

from __future__ import annotations

import copy

import numpy as np

from benchmark.protocols.common import Evaluation, capped_indices, score_rows

KINDS = ("mlp-probe", "attention-probe")


def make_head(kind: str, dim: int, n_classes: int, hidden: int):
    """The head module (torch is imported here: the protocols package loads with `--help`)."""
    import torch
    from torch import nn

    class AttentionPool(nn.Module):
        def __init__(self):
            super().__init__()
            self.score = nn.Linear(dim, 1)
            self.head = nn.Linear(dim, n_classes)

        def forward(self, h):  # h: [B, D, T']
            h = h.transpose(1, 2)  # [B, T', D]
            a = torch.softmax(self.score(h).squeeze(-1), dim=1)  # [B, T']
            return self.head((a.unsqueeze(-1) * h).sum(dim=1))

    if kind == "mlp-probe":
        return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, n_classes))
    return AttentionPool()


def fit_head(kind: str, z_train, y_train, z_val, y_val, *, multilabel: bool, seed: int, epochs: int = 100,
             hidden: int = 256, lr: float = 1e-3, batch_size: int = 256, patience: int = 5,
             class_weight: np.ndarray | None = None):
    """Train the head on standardised features; return ``predict(z) -> probabilities`` and info.
    ``class_weight`` ([C], single-label) weighs the classes in the training and validation loss."""
    import torch

    from benchmark.losses import supervised_loss as _loss  # torch: imported here, not with the package
    axes = (0, 2) if z_train.ndim == 3 else (0,)
    mu = z_train.mean(axis=axes, keepdims=True)
    sd = z_train.std(axis=axes, keepdims=True) + 1e-6

    def prep(z):
        return torch.as_tensor(((z - mu) / sd).astype(np.float32))

    xt, xv = prep(z_train), prep(z_val)
    yt, yv = torch.as_tensor(y_train, dtype=torch.float32), torch.as_tensor(y_val, dtype=torch.float32)
    cw = None if class_weight is None else torch.as_tensor(np.asarray(class_weight), dtype=torch.float32)

    def loss(logits, y):
        return _loss(logits, y, multilabel) if cw is None else _loss(logits, y, multilabel, class_weight=cw)

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = make_head(kind, xt.shape[1], yt.shape[1], hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
    best, best_loss, bad, ran = copy.deepcopy(head.state_dict()), float("inf"), 0, 0
    for _ in range(int(epochs)):
        ran += 1
        head.train()
        for b in torch.randperm(len(xt), generator=gen).split(batch_size):
            opt.zero_grad()
            loss(head(xt[b]), yt[b]).backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            val = float(loss(head(xv), yv)) if len(xv) else 0.0
        if val < best_loss - 1e-6:
            best, best_loss, bad = copy.deepcopy(head.state_dict()), val, 0
        else:
            bad += 1
            if bad >= patience:
                break
    head.load_state_dict(best)
    head.eval()

    def predict(z):
        with torch.no_grad():
            logits = head(prep(z))
            return (torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)).numpy()

    return predict, {"epochs_run": ran, "best_val_loss": best_loss, "hidden": hidden if kind == "mlp-probe" else None}


def run_head_probe(kind: str, embed, data, task: str, train_idx: np.ndarray, *, cfg: dict, seed: int,
                   max_eval: int = 0, read: dict | None = None, class_weight: np.ndarray | None = None,
                   offsets: np.ndarray | None = None) -> Evaluation:
    """A frozen-feature head of ``kind`` trained on ``train_idx``, stopped on validation.

    ``embed(data, idx, **read)`` gives its input (``read`` defaults to the pooled features, or the
    feature map for ``attention-probe``); ``class_weight`` weighs the loss; ``offsets`` fixes the
    decision rule in advance (otherwise it is fitted on validation, ``common.score_rows``)."""
    spec = data.task(task)
    y, _ = data.labels(task)
    if read is None:
        read = {"pooled": False} if kind == "attention-probe" else {}
    val_idx, w_val = capped_indices(data, task, "val", max_eval, seed=12345)
    test_idx, w_test = capped_indices(data, task, "test", max_eval, seed=12345)
    with data.forbid("test"):
        z_train, z_val = embed(data, train_idx, **read), embed(data, val_idx, **read)
        predict, info = fit_head(kind, z_train, y[train_idx], z_val, y[val_idx], multilabel=spec.multilabel, seed=seed,
                                 epochs=int(cfg["probe_epochs"]), hidden=int(cfg["probe_hidden"]),
                                 class_weight=class_weight)
        s_val = predict(z_val)
    s_test = predict(embed(data, test_idx, **read))
    ev = score_rows(data, task, val_idx, s_val.astype(np.float32), test_idx, s_test.astype(np.float32),
                    n_boot=cfg["n_boot"], seed=seed, w_val=w_val, w_test=w_test, offsets=offsets)
    ev.info.update(info)
    ev.info["n_train"] = int(len(train_idx))
    return ev
