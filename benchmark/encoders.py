"""ECG encoders: the time-resolved encoder contract, and a 1-D ResNet family shared by every method.

Every encoder is an :class:`ECGEncoder`. Input is the data layer's [N, leads, T] tensor
(normalised, absent leads zero). ``features(x)`` returns the time-resolved features [N, D, T']
*before* any pooling; ``forward(x)`` returns their mean over time [N, D] (``forward(x,
pooled=False)`` returns the map itself, so one ``torch.compile``d module serves both). Each
encoder declares how its feature positions sit on the input:

* ``stride`` -- input samples between neighbouring feature positions;
* ``offset`` -- the input sample at the centre of position 0 (so position ``j`` is centred on
  sample ``offset + j * stride``);
* ``receptive_field`` -- how many input samples can influence one position (centred on it);
  0 for an encoder whose every position sees the whole input (attention: ``ViT1d``).

``position_of(sample, n_samples)`` maps an input sample (or a time, ``sample = t * fs``) to the
position whose centre is nearest; ``positions_within(start, stop, n_samples)`` the positions centred
in a span. A protocol that reads features at a time point (a beat's R peak, an attention pool over
time) uses these and nothing of the encoder's internals. ``tests/test_encoder_conformance.py``
checks every registered encoder, a plug-in's included: the map's mean equals ``forward``, the
number of positions is ``n_positions(T)``, and the input samples that move position ``j`` lie
in its declared receptive field centred on ``offset + j * stride``.

Because the last step is a global pool, one model accepts any length T (10 s at 100 Hz = 1000
samples, at 500 Hz = 5000, CLOCS's 5 s segments).

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

import math

import numpy as np
import torch
from torch import nn

from benchmark.data.adapt import InputContract
from benchmark.data.base import LEADS
from benchmark.errors import UserError
from benchmark.registry import ECG_ENCODERS, parse_spec, register_ecg_encoder


class ECGEncoder(nn.Module):
    """Base of every ECG encoder: ``features`` [N, leads, T] -> [N, D, T'] (implement it, set
    ``dim``, ``stride``, ``receptive_field`` and, if position 0 is not centred on sample 0,
    ``offset``); ``forward`` pools it by the mean over time."""

    dim: int
    stride: int = 1
    offset: int = 0
    receptive_field: int = 1
    # what the encoder reads (rate, length, leads, unit, normalisation): the store's batches as they
    # are unless declared otherwise; a method adapts every batch to it (AdaptedEncoder)
    input_contract: InputContract = InputContract()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement features(x) -> [N, D, T']")

    def forward(self, x: torch.Tensor, pooled: bool = True) -> torch.Tensor:
        h = self.features(x)
        return h.mean(dim=-1) if pooled else h

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.in_leads:
            raise ValueError(f"expected [N, {self.in_leads}, T] input, got {tuple(x.shape)}")

    # -- where the feature positions sit on the input ---------------------------------------
    def n_positions(self, n_samples: int) -> int:
        """T' for an input of ``n_samples`` samples (default: measured with one forward pass)."""
        p = next(iter(self.parameters()), None)
        leads = int(getattr(self, "in_leads", 12))
        with torch.no_grad():
            x = torch.zeros(1, leads, int(n_samples), device=p.device if p is not None else "cpu",
                            dtype=p.dtype if p is not None else torch.float32)
            was = self.training
            try:
                return int(self.eval().features(x).shape[-1])
            finally:
                self.train(was)

    def centre_of(self, position):
        """The input sample at the centre of feature position(s) ``position``."""
        return self.offset + np.asarray(position) * self.stride

    def position_of(self, sample, n_samples: int):
        """The feature position whose centre is nearest to input sample(s) ``sample`` (a time
        ``t`` seconds into the window is sample ``t * fs``), clipped to the positions that exist."""
        pos = np.rint((np.asarray(sample, dtype=np.float64) - self.offset) / self.stride).astype(np.int64)
        return np.clip(pos, 0, self.n_positions(n_samples) - 1)

    def positions_within(self, start: float, stop: float, n_samples: int) -> np.ndarray:
        """The positions centred in input samples [start, stop]; the nearest one if none is."""
        n = self.n_positions(n_samples)
        centres = self.centre_of(np.arange(n))
        inside = np.flatnonzero((centres >= start) & (centres <= stop))
        if len(inside):
            return inside
        return np.atleast_1d(self.position_of((start + stop) / 2, n_samples))

    def field_of(self, position: int) -> tuple[int, int]:
        """The input samples [first, last] that can influence ``position`` (may reach past the input;
        ``receptive_field`` 0, attention: everything, reported as the position's centre +- 10^9)."""
        c = int(self.centre_of(position))
        if not self.receptive_field:
            return c - 10**9, c + 10**9
        half = self.receptive_field // 2
        return c - half, c + half

    def contract(self) -> dict:
        """The declared input and feature grid, as ``list`` prints it and a run records it."""
        return {"dim": int(self.dim), "stride": int(self.stride), "offset": int(self.offset),
                "receptive_field": int(self.receptive_field), "input": self.input_contract.describe()}


class AdaptedEncoder(ECGEncoder):
    """An encoder with an input contract (``benchmark.data.adapt.InputContract``: its rate, length,
    leads), fed store batches through :func:`benchmark.data.adapt.adapt`. ``bind(fs)`` tells it the
    store's rate (``Method`` binds before encoding or fine-tuning); its grid is given in *store*
    samples, so ``position_of`` / ``encode_ecg(at=...)`` keep meaning the store's time."""

    def __init__(self, inner: ECGEncoder, contract: InputContract | None = None):
        super().__init__()
        self.inner = inner
        self.input_contract = (contract or inner.input_contract).check(type(inner).__name__)
        self.dim, self.receptive_field = inner.dim, inner.receptive_field
        self.in_leads = 12
        self.fs_in: float | None = None
        self.stats: tuple | None = None
        self.stride, self.offset = inner.stride, inner.offset

    def bind(self, fs_in: float, n_samples: int | None = None, stats: tuple | None = None) -> None:
        """The store's rate, window length and (for a raw or record-normalised contract) its
        per-lead statistics on the 12 standard leads (``benchmark.data.adapt.lead_stats``)."""
        from benchmark.data.adapt import crop_start, resampled_length

        self.fs_in = float(fs_in)
        if stats is not None:
            self.stats = stats
        scale = self.fs_in / float(self.input_contract.fs or fs_in)  # store samples per encoder sample
        self.stride = self.inner.stride * scale
        shift = crop_start(resampled_length(n_samples, fs_in, self.input_contract.fs or fs_in),
                           self.input_contract.samples) if n_samples else 0
        self.offset = (self.inner.offset + shift) * scale
        self.receptive_field = int(round(self.inner.receptive_field * scale))

    def _adapt(self, x: torch.Tensor) -> torch.Tensor:
        from benchmark.data.adapt import adapt

        if self.fs_in is None:
            raise RuntimeError("AdaptedEncoder: bind(fs) to the store's rate before encoding")
        return adapt(x, self.fs_in, self.input_contract, self.stats)

    def n_positions(self, n_samples: int) -> int:
        from benchmark.data.adapt import resampled_length

        n = resampled_length(n_samples, self.fs_in or 0, self.input_contract.fs or self.fs_in or 0)
        return self.inner.n_positions(self.input_contract.samples or n)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.features(self._adapt(x))

    def contract(self) -> dict:
        return {**self.inner.contract(), "input": self.input_contract.describe()}


def with_contract(encoder: ECGEncoder) -> ECGEncoder:
    """``encoder`` itself when it takes the store's batches as they are, else wrapped so every batch
    is adapted to its declared ``input_contract`` (checked here, before any compute)."""
    if isinstance(encoder, AdaptedEncoder):
        return encoder
    contract = getattr(encoder, "input_contract", InputContract())
    if contract.check(type(encoder).__name__).is_store:
        return encoder
    return AdaptedEncoder(encoder, contract)


def check_encoder(model, spec: str) -> None:
    """An encoder (a plug-in's too) must implement the time-resolved contract; one line if not."""
    missing = [a for a in ("features", "dim", "stride", "receptive_field", "position_of") if not hasattr(model, a)]
    if not isinstance(model, nn.Module) or missing:
        what = ", ".join(missing) or "an nn.Module"
        raise UserError(f"ECG encoder '{spec}' lacks the encoder contract ({what}): subclass "
                        "benchmark.encoders.ECGEncoder and implement features(x) -> [N, D, T']")


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


class ResNet1d(ECGEncoder):
    """1-D ResNet: features [N, in_leads, T] -> [N, dim, ceil(T / 32)], pooled by the mean over time.

    Every convolution and the stem's max-pool are "same"-padded with odd kernels, so feature
    position ``j`` is centred on input sample ``j * stride`` (offset 0) with ``stride = 4 * 2 **
    (stages - 1)`` (32 for four stages); the receptive field adds ``(k - 1) * jump`` per layer along
    the deepest path (resnet1d-18: 1291 samples, so at 100 Hz every position sees most of a 10 s window).
    """

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
        self.stride, self.receptive_field = self._grid(stem_kernel, kernel_size)
        self.offset = 0
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _grid(self, stem_kernel: int, kernel_size: int) -> tuple[int, int]:
        """(stride, receptive field) along the deepest path: stem conv, max-pool, two convs a block."""
        rf, jump = 1, 1
        for k, s in [(stem_kernel, 2), (3, 2)]:
            rf, jump = rf + (k - 1) * jump, jump * s
        for i, n_blocks in enumerate(self.layers):
            for b in range(n_blocks):
                s = 2 if (i > 0 and b == 0) else 1
                rf, jump = rf + (kernel_size - 1) * jump, jump * s  # conv1
                rf += (kernel_size - 1) * jump  # conv2
        return jump, rf

    def n_positions(self, n_samples: int) -> int:
        return max(1, math.ceil(int(n_samples) / self.stride))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.stages(self.stem(x))


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


class ViT1d(ECGEncoder):
    """A 1-D vision transformer (as MERL's ViT variant): non-overlapping patches of ``patch``
    samples embedded by one strided convolution, fixed sinusoidal positions (any input length),
    pre-norm transformer layers, a final LayerNorm. Token ``j`` covers samples ``[j * patch, (j + 1)
    * patch)``, so ``stride = patch`` and ``offset = patch // 2`` (odd patches centre exactly);
    attention makes the receptive field the whole input (``receptive_field = 0``). An input whose
    length is not a multiple of the patch is zero-padded on the right. A ``width`` not divisible by
    ``heads`` (a profile's ResNet width) uses their greatest common divisor of heads."""

    def __init__(self, *, in_leads: int = 12, width: int = 128, depth: int = 4, heads: int = 4, patch: int = 25,
                 mlp_ratio: float = 4.0):
        super().__init__()
        if patch < 1 or patch % 2 == 0:
            raise UserError(f"ViT1d patch must be an odd number of samples >= 1 (got {patch})")
        heads = math.gcd(int(width), int(heads))  # a width from a profile (32) keeps the heads that divide it
        self.in_leads, self.dim, self.patch = in_leads, int(width), int(patch)
        self.stride, self.offset, self.receptive_field = self.patch, self.patch // 2, 0
        self.embed = nn.Conv1d(in_leads, width, patch, stride=patch)
        layer = nn.TransformerEncoderLayer(width, heads, int(width * mlp_ratio), dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def _positions(self, n: int, device, dtype) -> torch.Tensor:
        pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, self.dim, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / self.dim))
        pe = torch.zeros(n, self.dim, device=device, dtype=torch.float32)
        pe[:, 0::2] = torch.sin(pos * freq)
        pe[:, 1::2] = torch.cos(pos * freq)[:, : self.dim // 2]
        return pe.to(dtype)

    def n_positions(self, n_samples: int) -> int:
        return max(1, math.ceil(int(n_samples) / self.patch))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        pad = -x.shape[-1] % self.patch
        if pad:
            x = nn.functional.pad(x, (0, pad))
        tokens = self.embed(x).transpose(1, 2)  # [N, T', D]
        tokens = tokens + self._positions(tokens.shape[1], tokens.device, tokens.dtype)[None]
        return self.norm(self.blocks(tokens)).transpose(1, 2)


@register_ecg_encoder("vit1d-small")
def vit1d_small(*, in_leads: int = 12, width: int = 192, depth: int = 6, heads: int = 6, patch: int = 25) -> ViT1d:
    """ViT1d-small: patches of 25 samples (0.25 s at 100 Hz), 6 layers, width 192, 6 heads (GPU runs)."""
    return ViT1d(in_leads=in_leads, width=width, depth=depth, heads=heads, patch=patch)


@register_ecg_encoder("vit1d-tiny")
def vit1d_tiny(*, in_leads: int = 12, width: int = 64, depth: int = 2, heads: int = 4, patch: int = 25) -> ViT1d:
    """ViT1d-tiny: patches of 25 samples, 2 layers, width 64 (tests, CPU smoke runs)."""
    return ViT1d(in_leads=in_leads, width=width, depth=depth, heads=heads, patch=patch)


def create_encoder(spec: str, *, width: int | None = None, in_leads: int = 12) -> ECGEncoder:
    """Build an ECG encoder from a spec (``resnet1d-18`` or ``resnet1d-18[width=32]``).

    ``width=None`` keeps the variant's own default width. The result is checked against the
    encoder contract (:class:`ECGEncoder`), so a plug-in encoder without it fails here, in one line.
    """
    overrides: dict = {"in_leads": in_leads}
    if width is not None:
        accepted = ECG_ENCODERS.entry(parse_spec(spec)[0]).accepted_params()
        if accepted is None or "width" in accepted:  # an architecture fixed by a paper takes none
            overrides["width"] = int(width)
    model = ECG_ENCODERS.create(spec, **overrides)
    check_encoder(model, spec)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
