"""Supervised baseline: the same ResNet1d trained on task labels (the few-label protocol's
reference at 1/10/100 % labels).

Multi-label tasks (PTB-XL diagnostic statements) use binary cross-entropy, single-label tasks
(CinC 2017 rhythm, MIT-BIH beat classes) cross-entropy. Labels are those of the ``task`` setting
unless ``pretrain`` is given ``targets`` ([len(data), C]); rows without any label are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.losses import supervised_loss
from benchmark.method import Method, register_method_class
from benchmark.training import Batch


@register_method_class("supervised")
class Supervised(Method):
    """Supervised ResNet1d: BCE (multi-label) or CE (single-label) on the task's labels."""

    uses_labels = True
    defaults = {**Method.defaults, "task": "superdiagnostic"}

    def build(self) -> None:
        self.head: nn.Linear | None = None
        self.multilabel: bool | None = None
        self._targets: torch.Tensor | None = None

    @property
    def task(self) -> str:
        """The task whose labels pretraining uses (the ``task`` setting)."""
        return str(self.settings["task"])

    def _resolve_targets(self, data, targets) -> tuple[np.ndarray, bool]:
        task = str(self.settings["task"])
        if targets is None:
            y, _ = data.labels(task)
            return y, data.task(task).multilabel
        y = np.asarray(targets, dtype=np.float32)
        if y.ndim != 2 or y.shape[0] != len(data):
            raise UserError(f"supervised: targets must be [len(data)={len(data)}, C], got {y.shape}")
        multilabel = data.task(task).multilabel if task in data.tasks else bool((y.sum(1) > 1).any())
        return y, multilabel

    def usable_rows(self, data, idx: np.ndarray, targets=None) -> np.ndarray:
        y, _ = self._resolve_targets(data, targets)
        return idx[y[idx].sum(axis=1) > 0]

    def _make_head(self, n_classes: int, multilabel: bool) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.settings["seed"]) + 1)
            self.head = nn.Linear(self.encoder.dim, n_classes)
        self.multilabel = bool(multilabel)
        self.to(self.device)

    def setup(self, data, train_idx, val_idx=None, targets=None) -> None:
        y, multilabel = self._resolve_targets(data, targets)
        if len(train_idx) == 0:
            raise UserError(f"supervised: no labelled training rows for task '{self.settings['task']}'")
        if self.head is None or self.head.out_features != y.shape[1] or self.multilabel != multilabel:
            self._make_head(y.shape[1], multilabel)
        self._targets = torch.from_numpy(y)

    def training_step(self, batch: Batch) -> torch.Tensor:
        y = self._targets[torch.as_tensor(batch.idx)].to(batch.device)
        return supervised_loss(self.head(self.ecg_features(batch.x)), y, self.multilabel)

    @torch.no_grad()
    def predict(self, data, idx, batch_size: int = 256) -> np.ndarray:
        """Class probabilities [N, C] of the trained head (sigmoid or softmax)."""
        if self.head is None:
            raise UserError("supervised: predict() needs a pretrained model")
        act = torch.sigmoid if self.multilabel else (lambda z: torch.softmax(z, 1))
        return self._map_batches(lambda x: act(self.head(self.ecg_features(x)).float()), data, idx, batch_size)

    def method_state(self) -> dict[str, Any]:
        if self.head is None:
            return {}
        return {"n_classes": self.head.out_features, "multilabel": self.multilabel}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if state.get("n_classes"):
            self._make_head(int(state["n_classes"]), bool(state["multilabel"]))
