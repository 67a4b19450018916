"""MERL (Liu et al., ICML 2024, "Zero-Shot ECG Classification with Multimodal Learning and
Test-time Clinical Knowledge Enhancement"), as a method of this suite.

ECG -> ResNet1d -> linear projection -> z ──┬── cross-modal alignment (CMA): CLIP loss with the text
                                            │
                                            └── two heads, each linear + dropout -> v1, v2
                                                uni-modal alignment (UMA): CLIP loss between v1 and v2
report -> LM (frozen by default, cached) -> linear projection -> t

Loss = CMA + uma_weight * UMA. The two dropout views are the paper's "latent augmentation": the
ECG is not augmented in signal space (which can change its diagnosis); its embedding is
perturbed twice and the two versions of one ECG must still find each other among the batch.

Everything else -- data, cached or trainable LM (``lm_train``), zero-shot (the projected ECG
embedding ``z`` against the prompts' projected text embeddings), persistence -- is METS's, so
``merl`` vs ``mets`` isolates the uni-modal alignment loss (and the joint space's width).
What comes from the paper, what is our choice and what differs is in docs/methods.md.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.losses import clip_loss
from benchmark.method import register_method_class
from benchmark.training import Batch
from methods.mets import METS


@register_method_class("merl")
class MERL(METS):
    """MERL: METS's CLIP alignment plus uni-modal alignment of two dropout views of the ECG embedding."""

    defaults = {
        **METS.defaults,
        "proj_dim": 256,  # the paper's joint space
        "uma_dropout": 0.1,  # dropout of each latent view (the paper's rate)
        "uma_weight": 1.0,  # L = CMA + uma_weight * UMA (the paper: plain sum)
    }

    def build(self) -> None:
        s = self.settings
        if not 0.0 <= float(s["uma_dropout"]) < 1.0:
            raise UserError(f"merl uma_dropout must be in [0, 1), got {s['uma_dropout']}")
        if not float(s["uma_weight"]) >= 0.0:
            raise UserError(f"merl uma_weight must be >= 0, got {s['uma_weight']}")
        super().build()

    def _make_projections(self) -> None:
        super()._make_projections()
        d = self.ecg_proj.out_features
        self.uma_heads = nn.ModuleList([nn.Linear(d, d) for _ in range(2)])
        self.uma_drop = nn.Dropout(float(self.settings["uma_dropout"]))

    def training_step(self, batch: Batch) -> torch.Tensor:
        z_ecg = self.ecg_proj(self.ecg_features(batch.x))
        z_txt = self.text_proj(self._text_features(batch))
        scale = self.scale()
        cma = clip_loss(z_ecg, z_txt, scale)
        v1, v2 = (self.uma_drop(head(z_ecg)) for head in self.uma_heads)
        uma = clip_loss(v1, v2, scale)
        return cma + float(self.settings["uma_weight"]) * uma
