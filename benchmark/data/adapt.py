"""Input contracts: what an encoder takes, and the one place the data side adapts to it.

Every prepared store hands out [N, 12, T] batches: the 12 standard leads in order (absent ones
zero), ``fs`` Hz, ``window_s`` seconds, per-lead normalised. An encoder trained elsewhere (a
checkpoint) may take another rate, length or lead set; :class:`InputContract` declares it and
:func:`adapt` turns a store batch into it, in this order:

1. **leads** -- the named leads are selected, in the contract's order (a contract may not name a
   lead outside the 12 standard ones: that is refused before any compute);
2. **rate** -- resampled from the store's rate to ``fs``: an integer factor up by linear
   interpolation, an integer factor down by averaging blocks of that many samples (a box
   anti-alias filter), any other ratio by linear interpolation;
3. **length** -- centre-cropped or zero-padded (equally on both sides) to ``samples``.

A contract field left at 0/empty takes what the store gives. :func:`crop_start` says where the
crop starts, so a feature grid declared in the encoder's own samples maps back to the store's.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.data.base import LEADS
from benchmark.errors import UserError


@dataclass(frozen=True)
class InputContract:
    fs: float = 0.0  # Hz; 0: the store's rate
    samples: int = 0  # input length; 0: any
    leads: tuple[str, ...] = ()  # lead names in the encoder's order; (): the 12 standard leads

    def check(self, where: str = "encoder") -> "InputContract":
        bad = [lead for lead in self.leads if lead not in LEADS]
        if bad:
            raise UserError(f"{where}: input lead(s) {bad} are not among the 12 standard leads {list(LEADS)}; "
                            "the suite cannot feed them")
        if len(set(self.leads)) != len(self.leads):
            raise UserError(f"{where}: input leads {list(self.leads)} name a lead twice")
        if self.fs < 0 or self.samples < 0:
            raise UserError(f"{where}: input fs ({self.fs:g}) and samples ({self.samples}) must be >= 0")
        return self

    @property
    def n_leads(self) -> int:
        return len(self.leads) or len(LEADS)

    def describe(self) -> dict:
        return {"fs": self.fs or "store", "samples": self.samples or "any", "leads": list(self.leads) or "12 standard"}


def resampled_length(n: int, fs_in: float, fs_out: float) -> int:
    if not fs_out or fs_out == fs_in:
        return int(n)
    ratio = fs_out / fs_in
    if ratio > 1 and abs(ratio - round(ratio)) < 1e-9:
        return int(n * round(ratio))
    if ratio < 1 and abs(1 / ratio - round(1 / ratio)) < 1e-9:
        return int(n // round(1 / ratio))
    return max(1, int(round(n * ratio)))


def crop_start(n_resampled: int, samples: int) -> int:
    """Where the centre crop starts (negative: that much zero padding on the left)."""
    if not samples:
        return 0
    return (n_resampled - samples) // 2


def adapt(x, fs_in: float, contract: InputContract):
    """A store batch [B, 12, T] at ``fs_in`` Hz -> the contract's [B, leads, samples] (torch)."""
    import torch
    from torch.nn import functional as F

    if contract.leads:
        x = x[:, [LEADS.index(lead) for lead in contract.leads], :]
    fs = float(contract.fs or fs_in)
    if fs != fs_in:
        n_out = resampled_length(x.shape[-1], fs_in, fs)
        ratio = fs / fs_in
        if ratio < 1 and abs(1 / ratio - round(1 / ratio)) < 1e-9:
            x = F.avg_pool1d(x, kernel_size=round(1 / ratio))
        else:
            x = F.interpolate(x, size=n_out, mode="linear", align_corners=False)
    if contract.samples and x.shape[-1] != contract.samples:
        start = crop_start(x.shape[-1], contract.samples)
        if start >= 0:
            x = x[..., start:start + contract.samples]
        else:
            pad = contract.samples - x.shape[-1]
            x = torch.nn.functional.pad(x, (-start, pad + start))
    return x
