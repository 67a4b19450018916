"""Input contracts: what an encoder takes, and the one place the data side adapts to it.

Every prepared store keeps raw millivolts and hands out [N, 12, T] batches: the 12 standard leads
in order (absent ones zero), ``fs`` Hz, ``window_s`` seconds, each lead z-scored with the mean and
standard deviation of the dataset's *training split* (``normalisation="dataset"``). Every encoder
declares an :class:`InputContract` (``ECGEncoder.input_contract``; the suite's own encoders take the
store's batches as they are). One trained elsewhere (a published checkpoint) may take another rate,
length, lead set, unit or normalisation; :func:`adapt` turns a store batch into it, in this order:

1. **amplitude** -- for ``normalisation`` ``none`` or ``record`` the store's z-scoring is undone
   (back to millivolts, with the store's own statistics) and scaled to ``unit`` (``uV``: x 1000);
2. **leads** -- the named leads are selected, in the contract's order (a contract may not name a
   lead outside the 12 standard ones: that is refused before any compute; a lead the dataset does
   not record reaches the model as zeros, as it does for the suite's own encoders, and a run
   records which: :func:`lead_coverage`);
3. **rate** -- resampled from the store's rate to ``fs``: an integer factor up by linear
   interpolation, an integer factor down by averaging blocks of that many samples (a box
   anti-alias filter), any other ratio by linear interpolation;
4. **length** -- centre-cropped or zero-padded (equally on both sides) to ``samples``;
5. **record normalisation** -- with ``normalisation="record"``, each lead of each input is
   z-scored over the samples the model sees (a flat lead stays zero).

A contract field left at 0/empty takes what the store gives. :func:`crop_start` says where the
crop starts, so a feature grid declared in the encoder's own samples maps back to the store's.
Filtering (band-pass, notch) is not part of a contract: the stores hold the signals as the
databases give them, and a model trained on filtered input is evaluated on unfiltered input
unless its adapter filters (say so in its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.data.base import LEADS
from benchmark.errors import UserError


UNITS = {"mV": 1.0, "uV": 1000.0}
NORMALISATIONS = ("dataset", "none", "record")
RECORD_STD_FLOOR = 1e-6  # a flat lead (in the contract's unit) stays zero under record normalisation


@dataclass(frozen=True)
class InputContract:
    fs: float = 0.0  # Hz; 0: the store's rate
    samples: int = 0  # input length; 0: any
    leads: tuple[str, ...] = ()  # lead names in the encoder's order; (): the 12 standard leads
    unit: str = "mV"  # amplitude unit of the raw signal the model saw (with normalisation none/record)
    normalisation: str = "dataset"  # dataset | none | record (module docstring)

    @property
    def is_store(self) -> bool:
        """Whether the store's batches are already this input (nothing to adapt)."""
        return not (self.fs or self.samples or self.leads) and self.normalisation == "dataset"

    def check(self, where: str = "encoder") -> "InputContract":
        if self.unit not in UNITS:
            from benchmark.errors import unknown_name

            raise unknown_name(f"{where}: input unit", str(self.unit), UNITS)
        if self.normalisation not in NORMALISATIONS:
            from benchmark.errors import unknown_name

            raise unknown_name(f"{where}: input normalisation", str(self.normalisation), NORMALISATIONS)
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
        """The contract as ``list`` prints it and a run records it (``store``/``any``: taken as given)."""
        norm = {"dataset": "z-score per lead (dataset training-split statistics)",
                "none": f"none (raw {self.unit})", "record": f"z-score per lead over each input ({self.unit})"}
        return {"fs": self.fs or "store", "samples": self.samples or "any",
                "leads": list(self.leads) or "12 standard", "unit": self.unit,
                "normalisation": self.normalisation, "normalisation_text": norm[self.normalisation]}

    def resolved(self, fs_in: float, n_samples: int) -> dict:
        """What the encoder reads from a store of ``fs_in`` Hz and ``n_samples``-sample windows."""
        fs = float(self.fs or fs_in)
        n = resampled_length(int(n_samples), float(fs_in), fs)
        return {"fs": fs, "samples": int(self.samples or n), "leads": list(self.leads or LEADS),
                "unit": self.unit, "normalisation": self.normalisation}


def lead_coverage(contract: InputContract, stored_leads) -> dict:
    """Which of the contract's leads the dataset records, and which reach the model as zeros."""
    want = list(contract.leads or LEADS)
    have = set(stored_leads)
    return {"read": [x for x in want if x in have], "zero": [x for x in want if x not in have]}


def lead_stats(mean, std, lead_idx) -> tuple:
    """The store's per-stored-lead statistics laid out on the 12 standard leads (absent: 0 and 1)."""
    import numpy as np

    m, s = np.zeros(len(LEADS), dtype=np.float32), np.ones(len(LEADS), dtype=np.float32)
    m[np.asarray(lead_idx)] = np.asarray(mean, dtype=np.float32).reshape(-1)
    s[np.asarray(lead_idx)] = np.asarray(std, dtype=np.float32).reshape(-1)
    return m, s


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


def adapt(x, fs_in: float, contract: InputContract, stats: tuple | None = None):
    """A store batch [B, 12, T] at ``fs_in`` Hz -> the contract's [B, leads, samples] (torch).

    ``stats`` = (mean, std) of the store on the 12 standard leads (:func:`lead_stats`), needed to
    undo its normalisation for a contract that takes raw or record-normalised amplitudes."""
    import torch
    from torch.nn import functional as F

    if contract.normalisation != "dataset":
        if stats is None:
            raise RuntimeError(f"adapting to normalisation '{contract.normalisation}' needs the store's "
                               "statistics (bind the encoder to the dataset first)")
        mean, std = (torch.as_tensor(v, dtype=x.dtype, device=x.device)[None, :, None] for v in stats)
        x = (x * std + mean) * UNITS[contract.unit]  # an absent lead (0, with mean 0 and std 1) stays 0
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
    if contract.normalisation == "record":
        mu = x.mean(dim=-1, keepdim=True)
        sd = x.std(dim=-1, keepdim=True, unbiased=False)
        x = (x - mu) / sd.clamp_min(RECORD_STD_FLOOR)
    return x
