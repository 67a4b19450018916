"""ECG augmentations as batched tensor operations with an explicit, seeded generator.

Every transform acts on a whole batch ``x`` of shape [B, 12, T] at once (no per-sample Python)
and draws its randomness from a ``torch.Generator`` the caller passes, so a given
(seed, step) always produces the same views -- which is what makes a resumed SimCLR run end
with the same weights as an uninterrupted one. The generator lives on the CPU; random draws of
batch size ([B] or [B, 12]) are made there and moved, and full-size noise is drawn on the
tensor's device from a device generator seeded from it.

Transforms (strength 0 switches one off):

* ``crop``      -- random crop keeping a fraction in [crop_scale, 1] of the window, linearly
                   resampled back to T samples (length is preserved; the ECG is slightly
                   stretched in time, like a heart-rate change).
* ``noise_std`` -- additive Gaussian noise (in units of the per-lead standard deviation,
                   since batches are normalised).
* ``scale``     -- per-sample, per-lead amplitude factor drawn from U(1 - scale, 1 + scale).
* ``wander_amp``-- baseline wander: a sinusoid with random frequency in (0.05, wander_max_hz]
                   and random phase, amplitude U(0, wander_amp), per lead.
* ``mask_frac`` -- time masking: one random span of up to ``mask_frac * T`` samples set to 0.
* ``lead_drop`` -- each *present* lead is zeroed with this probability (absent leads are
                   already zero and are never counted; at least one present lead is kept).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

from benchmark.errors import UserError


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each augmentation; the SimCLR search space tunes these."""

    crop_scale: float = 0.5  # keep at least this fraction of the window (1.0 = no crop)
    noise_std: float = 0.05
    scale: float = 0.2
    wander_amp: float = 0.1
    wander_max_hz: float = 0.5
    mask_frac: float = 0.1
    lead_drop: float = 0.1

    def __post_init__(self):
        if not 0.0 < self.crop_scale <= 1.0:
            raise UserError(f"augmentation crop_scale must be in (0, 1], got {self.crop_scale}")
        if not 0.0 <= self.lead_drop < 1.0:
            raise UserError(f"augmentation lead_drop must be in [0, 1), got {self.lead_drop}")
        if not 0.0 <= self.mask_frac < 1.0:
            raise UserError(f"augmentation mask_frac must be in [0, 1), got {self.mask_frac}")
        for f in ("noise_std", "scale", "wander_amp", "wander_max_hz"):
            if getattr(self, f) < 0:
                raise UserError(f"augmentation {f} must be >= 0, got {getattr(self, f)}")

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise UserError(f"unknown augmentation setting '{bad[0]}'; known: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(gen: torch.Generator, shape, low: float, high: float, device) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) * (high - low) + low).to(device)


def random_crop_resize(x: torch.Tensor, gen: torch.Generator, min_scale: float) -> torch.Tensor:
    """Crop a random window of length U(min_scale, 1) * T per sample and resample it to T."""
    if min_scale >= 1.0:
        return x
    b, _, t = x.shape
    frac = _uniform(gen, (b, 1), min_scale, 1.0, x.device)
    start = _uniform(gen, (b, 1), 0.0, 1.0, x.device) * (1.0 - frac) * (t - 1)
    grid = torch.linspace(0.0, 1.0, t, device=x.device)[None, :]
    pos = start + grid * frac * (t - 1)  # [B, T] fractional sample positions
    lo = pos.floor().long().clamp_(0, t - 1)
    hi = (lo + 1).clamp_(max=t - 1)
    w = (pos - lo.to(pos.dtype)).unsqueeze(1).to(x.dtype)
    idx_lo = lo.unsqueeze(1).expand(-1, x.shape[1], -1)
    idx_hi = hi.unsqueeze(1).expand(-1, x.shape[1], -1)
    return torch.gather(x, 2, idx_lo) * (1 - w) + torch.gather(x, 2, idx_hi) * w


def gaussian_noise(x: torch.Tensor, gen: torch.Generator, std: float) -> torch.Tensor:
    if std <= 0:
        return x
    dev_gen = _device_generator(gen, x.device)
    return x + std * torch.randn(x.shape, generator=dev_gen, device=x.device, dtype=x.dtype)


def amplitude_scale(x: torch.Tensor, gen: torch.Generator, scale: float) -> torch.Tensor:
    if scale <= 0:
        return x
    factor = _uniform(gen, (x.shape[0], x.shape[1], 1), 1.0 - scale, 1.0 + scale, x.device)
    return x * factor.to(x.dtype)


def baseline_wander(x: torch.Tensor, gen: torch.Generator, amp: float, fs: float, max_hz: float) -> torch.Tensor:
    if amp <= 0 or max_hz <= 0:
        return x
    b, c, t = x.shape
    freq = _uniform(gen, (b, c, 1), min(0.05, max_hz), max_hz, x.device)
    phase = _uniform(gen, (b, c, 1), 0.0, 2 * math.pi, x.device)
    a = _uniform(gen, (b, c, 1), 0.0, amp, x.device)
    time = torch.arange(t, device=x.device, dtype=torch.float32)[None, None, :] / fs
    return x + (a * torch.sin(2 * math.pi * freq * time + phase)).to(x.dtype)


def time_mask(x: torch.Tensor, gen: torch.Generator, frac: float) -> torch.Tensor:
    if frac <= 0:
        return x
    b, _, t = x.shape
    length = (_uniform(gen, (b, 1), 0.0, frac, x.device) * t).long()
    start = (_uniform(gen, (b, 1), 0.0, 1.0, x.device) * (t - length)).long()
    pos = torch.arange(t, device=x.device)[None, :]
    keep = ~((pos >= start) & (pos < start + length))  # [B, T]
    return x * keep.unsqueeze(1).to(x.dtype)


def lead_dropout(x: torch.Tensor, gen: torch.Generator, p: float, lead_mask: torch.Tensor | None) -> torch.Tensor:
    """Zero each present lead with probability ``p``; never drop every present lead of a sample."""
    if p <= 0:
        return x
    b, c, _ = x.shape
    present = torch.ones(c, dtype=torch.bool) if lead_mask is None else torch.as_tensor(lead_mask, dtype=torch.bool).cpu()
    drop = (torch.rand((b, c), generator=gen) < p) & present[None, :]
    all_gone = (present[None, :] & ~drop).sum(dim=1) == 0
    if all_gone.any():  # restore one random present lead for those samples
        present_idx = torch.nonzero(present).flatten()
        pick = present_idx[torch.randint(len(present_idx), (int(all_gone.sum()),), generator=gen)]
        drop[torch.nonzero(all_gone).flatten(), pick] = False
    return x * (~drop).to(x.device, x.dtype).unsqueeze(-1)


def _device_generator(gen: torch.Generator, device) -> torch.Generator:
    """A generator on ``device`` seeded from ``gen`` (itself on the CPU)."""
    device = torch.device(device)
    if device.type == "cpu":
        return gen
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


class Augment:
    """Apply the configured augmentations, in a fixed order, to a [B, 12, T] batch.

    ``Augment(config, fs=100, lead_mask=data.lead_mask)(x, generator)``; ``generator`` is a
    CPU ``torch.Generator`` (the training loop hands one, seeded per step, to every step).
    """

    def __init__(self, config: AugmentConfig | dict | None = None, *, fs: float = 100.0, lead_mask=None):
        if config is None:
            config = AugmentConfig()
        elif isinstance(config, dict):
            config = AugmentConfig.from_dict(config)
        self.config = config
        self.fs = float(fs)
        self.lead_mask = None if lead_mask is None else torch.as_tensor(lead_mask, dtype=torch.bool)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c = self.config
        if generator.device.type != "cpu":
            raise ValueError("Augment expects a CPU torch.Generator")
        x = random_crop_resize(x, generator, c.crop_scale)
        x = amplitude_scale(x, generator, c.scale)
        x = baseline_wander(x, generator, c.wander_amp, self.fs, c.wander_max_hz)
        x = gaussian_noise(x, generator, c.noise_std)
        x = time_mask(x, generator, c.mask_frac)
        x = lead_dropout(x, generator, c.lead_drop, self.lead_mask)
        if self.lead_mask is not None:  # noise and wander must not invent absent leads
            x = x * self.lead_mask.to(x.device, x.dtype)[None, :, None]
        return x
