"""ECG encoders: a 1-D ResNet family shared by every method.

Input is the data layer's [N, 12, T] tensor (normalised, absent leads zero); output is the
global-average-pooled feature [N, D]. Because the last step is a global pool, one model
accepts any length T (10 s at 100 Hz = 1000 samples, at 500 Hz = 5000, CLOCS's 5 s segments).

Variants (``ECG_ENCODERS``):

================  ===============  ======  ====  ==========================================
name              blocks/stage     width   D     use
================  ===============  ======  ====  ==========================================
resnet1d-18       [2, 2, 2, 2]     64      512   METS paper's encoder; GPU runs
resnet1d-34       [3, 4, 6, 3]     64      512   larger GPU runs
resnet1d-10       [1, 1, 1, 1]     64      512   shallower, for CPU runs
resnet1d-tiny     [1, 1, 1, 1]     16      128   tests and smoke runs on a laptop CPU
================  ===============  ======  ====  ==========================================

The stem is a wide strided convolution (kernel 15, stride 2) plus max-pooling, as in the 1-D
ResNets used on PTB-XL (Strodthoff et al. 2021); residual blocks use kernel 7. Widths double
at each of the four stages, so D = 8 * width.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.data.base import LEADS
from benchmark.errors import UserError
from benchmark.registry import ECG_ENCODERS, register_ecg_encoder


class BasicBlock1d(nn.Module):
    """Two same-padded convolutions with batch norm and an identity (or 1x1 projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, kernel_size: int):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet1d(nn.Module):
    """1-D ResNet mapping [N, in_leads, T] -> [N, dim] (global average pool over time)."""

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        *,
        in_leads: int = len(LEADS),
        width: int = 64,
        kernel_size: int = 7,
        stem_kernel: int = 15,
    ):
        super().__init__()
        if width < 1 or in_leads < 1:
            raise UserError(f"ResNet1d needs width >= 1 and in_leads >= 1 (got width={width}, in_leads={in_leads})")
        if kernel_size % 2 == 0 or stem_kernel % 2 == 0:
            raise UserError(f"ResNet1d kernel sizes must be odd (got {kernel_size}, {stem_kernel})")
        self.layers = tuple(int(n) for n in layers)
        self.in_leads = in_leads
        self.width = width
        self.stem = nn.Sequential(
            nn.Conv1d(in_leads, width, stem_kernel, stride=2, padding=stem_kernel // 2, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, stride=2, padding=1),
        )
        stages = []
        c_in = width
        for i, n_blocks in enumerate(self.layers):
            c_out = width * 2**i
            blocks = [BasicBlock1d(c_in, c_out, stride=1 if i == 0 else 2, kernel_size=kernel_size)]
            blocks += [BasicBlock1d(c_out, c_out, 1, kernel_size) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.dim = c_in
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_leads:
            raise ValueError(f"expected [N, {self.in_leads}, T] input, got {tuple(x.shape)}")
        h = self.stages(self.stem(x))
        return h.mean(dim=-1)


@register_ecg_encoder("resnet1d-18")
def resnet1d_18(*, in_leads: int = 12, width: int = 64, kernel_size: int = 7) -> ResNet1d:
    """ResNet1d-18: BasicBlock [2,2,2,2], width 64, D=512 (the METS encoder)."""
    return ResNet1d((2, 2, 2, 2), in_leads=in_leads, width=width, kernel_size=kernel_size)


@register_ecg_encoder("resnet1d-34")
def resnet1d_34(*, in_leads: int = 12, width: int = 64, kernel_size: int = 7) -> ResNet1d:
    """ResNet1d-34: BasicBlock [3,4,6,3], width 64, D=512."""
    return ResNet1d((3, 4, 6, 3), in_leads=in_leads, width=width, kernel_size=kernel_size)


@register_ecg_encoder("resnet1d-10")
def resnet1d_10(*, in_leads: int = 12, width: int = 64, kernel_size: int = 7) -> ResNet1d:
    """ResNet1d-10: BasicBlock [1,1,1,1], width 64, D=512 (CPU-sized)."""
    return ResNet1d((1, 1, 1, 1), in_leads=in_leads, width=width, kernel_size=kernel_size)


@register_ecg_encoder("resnet1d-tiny")
def resnet1d_tiny(*, in_leads: int = 12, width: int = 16, kernel_size: int = 7) -> ResNet1d:
    """ResNet1d-tiny: BasicBlock [1,1,1,1], width 16, D=128 (tests, laptop smoke runs)."""
    return ResNet1d((1, 1, 1, 1), in_leads=in_leads, width=width, kernel_size=kernel_size)


def create_encoder(spec: str, *, width: int | None = None, in_leads: int = 12) -> ResNet1d:
    """Build an ECG encoder from a spec (``resnet1d-18`` or ``resnet1d-18[width=32]``).

    ``width=None`` keeps the variant's own default width.
    """
    overrides: dict = {"in_leads": in_leads}
    if width is not None:
        overrides["width"] = int(width)
    return ECG_ENCODERS.create(spec, **overrides)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
