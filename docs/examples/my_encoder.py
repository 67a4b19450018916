"""A minimal third-party ECG encoder: four strided convolutions, time-resolved features.

An encoder subclasses ``ECGEncoder``, sets ``dim`` and declares where its feature positions sit
on the input (``stride``, ``offset``, ``receptive_field``, in input samples), and implements
``features(x) -> [N, D, T']``; the base class pools (``forward``) and maps times to positions.
Registered under a name, every method can train it (``simclr[encoder=convnet-small]``), and
``tests/test_encoder_conformance.py`` checks the declared grid against the real gradients::

    python -m pytest tests/test_methods_conformance.py tests/test_encoder_conformance.py \\
        --ecgbench-plugin docs/examples/my_encoder.py --plugin-only
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.encoders import ECGEncoder
from benchmark.registry import register_ecg_encoder

KERNELS = (9, 7, 5, 5)  # odd kernels, "same" padding, stride 2 each: position j centred on 16 j


class ConvNet1d(ECGEncoder):
    def __init__(self, in_leads: int = 12, width: int = 32):
        super().__init__()
        self.in_leads, c_in, layers = in_leads, in_leads, []
        for i, k in enumerate(KERNELS):
            c_out = width * 2 ** min(i, 2)
            layers += [nn.Conv1d(c_in, c_out, k, stride=2, padding=k // 2), nn.BatchNorm1d(c_out), nn.GELU()]
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.dim, self.stride, self.offset = c_in, 2 ** len(KERNELS), 0
        self.receptive_field = 1 + sum((k - 1) * 2**i for i, k in enumerate(KERNELS))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_ecg_encoder("convnet-small")
def convnet_small(*, in_leads: int = 12, width: int = 32) -> ConvNet1d:
    """Plug-in example: four strided convolutions, D = 4 * width, stride 16 (docs/examples/my_encoder.py)."""
    return ConvNet1d(in_leads=in_leads, width=width)
