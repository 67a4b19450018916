"""SimCLR baseline (Chen et al. 2020) on ECGs: NT-Xent between two augmented views of each ECG.

Views come from :class:`benchmark.augment.Augment` (random crop + resample, amplitude scaling,
baseline wander, Gaussian noise, time masking, lead dropout), seeded per training step; every
augmentation strength is a setting, so the Optuna search space can tune them. A two-layer MLP
projector (solo-learn's design) maps encoder features to the loss space; the embeddings used for
evaluation are the encoder features before it.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.augment import Augment, AugmentConfig
from benchmark.losses import nt_xent
from benchmark.method import Method, register_method_class
from benchmark.training import Batch

AUGMENT_KEYS = tuple(AugmentConfig.__dataclass_fields__)


@register_method_class("simclr")
class SimCLR(Method):
    """SimCLR: NT-Xent over two augmented views of each ECG, MLP projector."""

    defaults = {
        **Method.defaults,
        "temperature": 0.1,
        "proj_hidden": None,  # None: the encoder's width D
        "proj_dim": 128,
        **AugmentConfig().to_dict(),
    }

    def build(self) -> None:
        d = self.encoder.dim
        hidden = int(self.settings["proj_hidden"] or d)
        self.projector = nn.Sequential(
            nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, int(self.settings["proj_dim"]))
        )
        self.augment_config = AugmentConfig.from_dict({k: float(self.settings[k]) for k in AUGMENT_KEYS})
        self.augment = Augment(self.augment_config)

    def setup(self, data, train_idx, val_idx=None, targets=None) -> None:
        self.augment = Augment(self.augment_config, fs=data.fs, lead_mask=data.lead_mask)

    def training_step(self, batch: Batch) -> torch.Tensor:
        v1 = self.augment(batch.x, batch.generator)
        v2 = self.augment(batch.x, batch.generator)
        z = self.projector(self.ecg_features(torch.cat([v1, v2])))
        z1, z2 = z.chunk(2)
        return nt_xent(z1, z2, float(self.settings["temperature"]))
