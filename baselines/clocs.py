"""CLOCS baseline (Kiyasseh, Zhu & Clifton, ICML 2021), contrastive multi-segment coding (CMSC).

Each ECG window is cut into two temporally adjacent, non-overlapping segments of ``segment_s``
seconds; the two segments of the same record are a positive pair and segments of other records in
the batch are negatives (symmetric InfoNCE, temperature 0.1 as in the paper). With
``positives="patient"`` all segments of the same patient are positives (the paper's
patient-specific variant). Our choice: ``segment_s=5.0`` -- the two halves of the 10 s window
(1000 samples at 100 Hz, 2 x 500). The paper used 2,500-sample segments of 500 Hz PhysioNet 2020
recordings; shorter windows leave too little rhythm context at 100 Hz. When the window holds more
than two segments, the pair's offset is drawn per ECG and per step (seeded). The encoder is
length-agnostic (global pooling), so evaluation embeds the full window.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmark.errors import UserError, unknown_name
from benchmark.losses import clocs_loss
from benchmark.method import Method, register_method_class
from benchmark.training import Batch

POSITIVES = ("record", "patient")


@register_method_class("clocs")
class CLOCS(Method):
    """CLOCS (CMSC): adjacent non-overlapping segments of the same record are positives."""

    defaults = {**Method.defaults, "temperature": 0.1, "segment_s": 5.0, "positives": "record", "proj_dim": 128}

    def build(self) -> None:
        if self.settings["positives"] not in POSITIVES:
            raise unknown_name("clocs positives", str(self.settings["positives"]), POSITIVES)
        self.head = nn.Linear(self.encoder.dim, int(self.settings["proj_dim"]))
        self._groups: torch.Tensor | None = None
        self._seg: int | None = None

    def setup(self, data, train_idx, val_idx=None, targets=None) -> None:
        seg = int(round(float(self.settings["segment_s"]) * data.fs))
        if seg < 16 or 2 * seg > data.n_samples:
            raise UserError(
                f"clocs segment_s={self.settings['segment_s']} gives {seg} samples; two segments must fit in "
                f"the {data.n_samples}-sample window (segment_s <= {data.n_samples / data.fs / 2:g})"
            )
        self._seg = seg
        if self.settings["positives"] == "patient":
            codes = np.unique(data.meta["patient"].astype(str).to_numpy(), return_inverse=True)[1]
            self._groups = torch.as_tensor(codes, dtype=torch.long)
        else:
            self._groups = None

    def segments(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Two adjacent [B, 12, seg] segments per ECG (random offset when the window is longer)."""
        b, _, t = x.shape
        seg = self._seg
        slack = t - 2 * seg
        start = torch.randint(0, slack + 1, (b,), generator=generator).to(x.device) if slack else torch.zeros(b, dtype=torch.long, device=x.device)
        pos = start[:, None] + torch.arange(2 * seg, device=x.device)[None, :]
        pair = torch.gather(x, 2, pos[:, None, :].expand(-1, x.shape[1], -1))
        return pair[..., :seg], pair[..., seg:]

    def training_step(self, batch: Batch) -> torch.Tensor:
        s1, s2 = self.segments(batch.x, batch.generator)
        z = self.head(self.ecg_features(torch.cat([s1, s2])))
        z1, z2 = z.chunk(2)
        groups = None if self._groups is None else self._groups[torch.as_tensor(batch.idx)].to(batch.device)
        return clocs_loss(z1, z2, float(self.settings["temperature"]), groups)
