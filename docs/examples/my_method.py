"""A minimal third-party method: NT-Xent between two Gaussian-noise views of each ECG.

It shows the whole plug-in contract in ~30 lines: subclass ``Method``, list every setting with
its default in ``defaults``, create heads in ``build``, return a loss from ``training_step``.
Everything else (optimiser, schedule, mixed precision, checkpoints/resume, early stopping on
validation loss, embeddings, save/load, the conformance tests) comes from the suite.

Use it without installing anything::

    python -m benchmark run --plugin docs.examples.my_method --methods noisy-views,simclr ...

or ship it in a package and declare the entry point (pyproject.toml)::

    [project.entry-points."ecgbench.methods"]
    noisy-views = "my_package.my_method"
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.augment import gaussian_noise
from benchmark.losses import nt_xent
from benchmark.method import Method, register_method_class
from benchmark.training import Batch


@register_method_class("noisy-views")
class NoisyViews(Method):
    """Toy: NT-Xent between two Gaussian-noise views of each ECG (plug-in example)."""

    defaults = {**Method.defaults, "noise_std": 0.1, "temperature": 0.2, "proj_dim": 64}

    def build(self) -> None:
        self.projector = nn.Linear(self.encoder.dim, int(self.settings["proj_dim"]))

    def training_step(self, batch: Batch) -> torch.Tensor:
        std = float(self.settings["noise_std"])
        v1 = gaussian_noise(batch.x, batch.generator, std)
        v2 = gaussian_noise(batch.x, batch.generator, std)
        z1, z2 = self.projector(self.ecg_features(torch.cat([v1, v2]))).chunk(2)
        return nt_xent(z1, z2, float(self.settings["temperature"]))
