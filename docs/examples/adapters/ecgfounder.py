"""ECGFounder (Li et al., NEJM AI 2025; arXiv 2410.04133) as a plug-in encoder for the ``checkpoint`` method.

Source read (not copied): github.com/PKUDigitalHealth/ECGFounder at commit
``04edac702b61c91face519774ddcc0cd712fef23`` (2026-02-05): ``net1d.py`` (the ``Net1D`` backbone),
``finetune_model.py`` (the published 12-lead and 1-lead configurations and how the checkpoint is
loaded), ``ptbxl_eval.py`` (their PTB-XL evaluation of the 150-class head), ``dataset.py`` and
``util.py`` (their fine-tuning preprocessing). This module is an independent implementation whose
module and parameter names are those of ``Net1D``, so the authors' state dict loads with
``strict=True`` once its classification head is set aside.

Architecture (``finetune_model.ft_12lead_ECGFounder``): ``Net1D(in_channels=12, base_filters=64,
ratio=1, filter_list=[64,160,160,400,400,1024,1024], m_blocks_list=[2,2,2,3,3,4,4], kernel_size=16,
stride=2, groups_width=16, use_bn=False, use_do=False)``: a "same"-padded stride-2 stem convolution
and Swish, then 7 stages of pre-activation bottleneck blocks (Swish -> 1x1 conv -> Swish -> grouped
k=16 conv, stride 2 in a stage's first block -> Swish -> 1x1 conv -> squeeze-and-excitation over the
whole time axis), with a max-pooled, zero-channel-padded identity shortcut. ``use_bn=False`` and
``use_do=False``: the BatchNorm layers exist (their weights and running statistics are in the file)
but are never applied, and there is no dropout; this module keeps the BatchNorm modules for the
names and does the same. ``features`` returns the last stage's map [N, 1024, T']; its mean over time
is the authors' ``deep_features`` (``Net1D.forward`` with ``return_features``), the input of the head.

Input contract as published (``dataset.py``, ``ptbxl_eval.PTBXL_Dataset``): 500 Hz, 10 s = 5000
samples, the 12 leads in the order I, II, III, aVR, aVL, aVF, V1-V6 (PTB-XL's file order; MIMIC-IV-ECG
files are reordered to it), the WFDB physical signal (mV). The README asks users of the weights to
follow ``dataset.py`` strictly, "including filtering, z-score normalization": per lead at 500 Hz
(``util.filter_bandpass``) a 50 Hz IIR notch (``iirnotch(50, 30)``), a 4th-order Butterworth
band-pass 0.67-40 Hz (both zero-phase, ``filtfilt`` with scipy's default odd padding), minus a
baseline that is the 0.4 s (201-sample) median filter of the result (``medfilt``, zero-padded ends);
then one z-score **over the whole 12 x 5000 array** (one mean, one standard deviation,
``(x - mean) / (std + 1e-8)``), not per lead. (Their ``ptbxl_eval.py``, the 150-label check on
PTB-XL, z-scores the same way but filters nothing.)

The suite's contract expresses the rate, length, leads, unit and raw amplitude; it cannot express
the filters nor a z-score shared by all leads (``record`` z-scores each lead alone, which would
discard the relative lead amplitudes the model saw). So, as the ST-MEM adapter does, this one
declares ``InputContract(fs=500, samples=5000, leads=<the 12 above>, unit="mV",
normalisation="none")`` and does the rest first thing in :meth:`ECGFounder.features`
(:meth:`ECGFounder.prepare`): notch and band-pass as one exact linear map per input length
(``filtfilt`` is linear in its input, so it is the matrix ``filtfilt(I)``; differentiable, on the
model's device, in float32 even under mixed precision), the median baseline (a 201-sample running
median in torch), then the joint z-score.
Remaining differences: the suite resamples linearly from the store's rate (a 100 Hz store carries
nothing above 50 Hz; a store prepared with ``--fs 500`` is the authors' input); a window shorter than
10 s (beat-level MIT-BIH) is zero-padded to 5000 samples on both sides and the padding takes part in
the filters and the z-score; a lead the dataset lacks is zeros and takes part in the z-score.

Checkpoint file (``12_lead_ECGFounder.pth`` on huggingface.co/PKUDigitalHealth/ECGFounder): a
``torch.save`` of ``{"step": ..., "val_auroc": ..., "state_dict": {...}}`` (``util.save_checkpoint``
writes those keys; ``finetune_model.py`` and ``ptbxl_eval.py`` read ``checkpoint['state_dict']``).
The state dict has the bare ``Net1D`` names, no ``module.`` prefix (the authors' loader filters
``k.startswith('dense.')`` and loads the rest into a bare ``Net1D``): ``first_conv.conv.*``,
``first_bn.*`` and ``stage_list.{0-6}.block_list.{b}.{bn1,bn2,bn3,conv1.conv,conv2.conv,conv3.conv,
se_fc1,se_fc2}.*`` -- 507 encoder keys (30.73 M numbers, BatchNorm statistics included) -- and the
head ``dense.weight`` [150, 1024], ``dense.bias`` [150] (the 150 labels of ``tasks.txt``). Two things
keep the suite from reading that file as it is: its metadata are NumPy scalars, which
``torch.load(weights_only=True)`` refuses (the suite never unpickles arbitrary objects), and the
encoder keys share no prefix that ``select=`` could keep without the head. So convert it once: the
adapter reads it with only NumPy's scalar and dtype types allowed, drops ``dense.*`` (as the
authors' fine-tuning does) and writes the 507 encoder tensors as safetensors::

    python -m docs.examples.adapters.ecgfounder convert 12_lead_ECGFounder.pth 12_lead_ECGFounder.safetensors

then evaluate, with strict loading (every encoder key present, with its shape; no select/key_map)::

    python -m benchmark run --plugin docs/examples/adapters/ecgfounder.py \\
        --methods "checkpoint[path=12_lead_ECGFounder.safetensors,encoder=ecgfounder]" \\
        --protocols few-label,cross-dataset

The 1-lead model (``1_lead_ECGFounder.pth``, lead I) loads the same way with
``encoder=ecgfounder,input_leads=I``. ``ecgfounder-tiny`` has the same module names and grid at a
fraction of the width, for tests on a CPU.

Feature grid: 8 stride-2 steps, so ``stride = 256`` input samples (0.512 s at 500 Hz; 20 positions
for 5000 samples). Every block's squeeze-and-excitation averages over the whole time axis, and the
IIR filters and the z-score read the whole input, so every input sample moves every position:
``receptive_field = 0``.
The "same" padding of the even kernels puts 7 zeros on the left and 7 or 8 on the right, so a
k=16 convolution's output ``j`` reads inputs ``[s*j - 7, s*j + 8]`` (centre ``s*j + 0.5``) and the
max-pool shortcut ``[2j, 2j + 1]``: along the identity path position ``j`` covers input samples
``256 j - 7 .. 256 j + 262``, centred on ``256 j + 127.5``; ``offset = 128`` (the conformance
suite's gradient test finds the 256 samples that move position ``j`` most centred within 4 samples
of ``256 j + 128``, tiny and full model).

Not verified here (no network): the published file itself. Its layout rests on the authors' code
(``save_checkpoint``, the loaders above) and on third-party loaders that read
``torch.load(f)["state_dict"]`` strictly into the 150-class ``Net1D`` and allow-list NumPy scalars
to read ``step`` and ``val_auroc`` with ``weights_only=True``. Should the file hold anything else,
``convert`` refuses it in one line rather than unpickle it.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.data.adapt import InputContract
from benchmark.data.base import LEADS
from benchmark.encoders import ECGEncoder
from benchmark.errors import UserError
from benchmark.registry import register_ecg_encoder

#: the published 12-lead and 1-lead configuration (finetune_model.py)
FULL = dict(base_filters=64, filters=(64, 160, 160, 400, 400, 1024, 1024), blocks=(2, 2, 2, 3, 3, 4, 4))
#: same depth, kernels and grid, narrow: for tests on a CPU
TINY = dict(base_filters=16, filters=(16, 16, 16, 32, 32, 64, 64), blocks=(2, 2, 2, 3, 3, 4, 4))
KERNEL, STRIDE, GROUP_WIDTH, RATIO = 16, 2, 16, 1.0
HEAD_PREFIX = "dense."  # the authors' classification head, not part of the encoder
PUBLISHED_LEADS = {12: tuple(LEADS), 1: ("I",)}
FS, SAMPLES = 500, 5000
NOTCH_HZ, NOTCH_Q, BAND_HZ, BAND_ORDER, BASELINE_S = 50.0, 30.0, (0.67, 40.0), 4, 0.4


# -- the authors' preprocessing the contract cannot express (util.filter_bandpass, z-score) ------
@lru_cache(maxsize=2)
def filter_matrix(n: int, fs: float = FS) -> np.ndarray:
    """[n, n] float64 ``M`` with ``x @ M`` = the 50 Hz notch then the 0.67-40 Hz band-pass, each
    ``filtfilt`` along the last axis as ``util.filter_bandpass`` runs them (linear in ``x``, so the
    filtered identity is the whole map)."""
    from scipy.signal import butter, filtfilt, iirnotch

    b_notch, a_notch = iirnotch(NOTCH_HZ, NOTCH_Q, fs)
    b_band, a_band = butter(BAND_ORDER, list(BAND_HZ), btype="bandpass", fs=fs)
    try:
        eye = filtfilt(b_notch, a_notch, np.eye(n), axis=-1)
        return np.ascontiguousarray(filtfilt(b_band, a_band, eye, axis=-1))
    except ValueError as exc:  # shorter than filtfilt's padding
        raise ValueError(f"ECGFounder's filters need a longer input than {n} samples: {exc}") from None


def baseline_kernel(fs: float = FS) -> int:
    """The median filter's width: int(0.4 fs) + 1, made odd (201 at 500 Hz)."""
    k = int(BASELINE_S * fs) + 1
    return k if k % 2 else k + 1


def running_median(x: torch.Tensor, kernel: int, budget: int = 1 << 27) -> torch.Tensor:
    """``scipy.signal.medfilt`` along the last axis (zeros beyond the ends), in chunks of rows that
    keep the [rows, T, kernel] windows under ``budget`` bytes."""
    rows = x.reshape(-1, x.shape[-1])
    step = max(1, budget // max(1, x.shape[-1] * kernel * x.element_size()))
    half = kernel // 2
    out = [F.pad(rows[i:i + step], (half, half)).unfold(-1, kernel, 1).median(dim=-1).values
           for i in range(0, rows.shape[0], step)]
    return torch.cat(out).reshape(x.shape)


def joint_zscore(x: torch.Tensor) -> torch.Tensor:
    """One z-score per input over all its leads and samples, as the authors write it:
    ``(x - mean) / (std + 1e-8)`` (population std; an all-zero input stays zero)."""
    mu = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mu) / (x.std(dim=(-2, -1), keepdim=True, correction=0) + 1e-8)


def _same_pads(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """Net1D's "same" padding: the output has ceil(n / stride) positions; the odd pad goes right."""
    out = (n + stride - 1) // stride
    total = max(0, (out - 1) * stride + kernel - n)
    return total // 2, total - total // 2


class SameConv1d(nn.Module):
    """A convolution held as ``.conv`` (their ``MyConv1dPadSame``), zero-padded to ceil(n / stride)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, _same_pads(x.shape[-1], self.kernel, self.stride)))


def _pool_same(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Their ``MyMaxPool1dPadSame``: kernel - 1 zeros (the odd one on the right), max over kernel-wide steps."""
    if kernel <= 1:
        return x
    return F.max_pool1d(F.pad(x, ((kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2)), kernel)


class Block(nn.Module):
    """Bottleneck block: [Swish] 1x1 -> Swish, grouped k conv (stride) -> Swish, 1x1 -> SE; plus the
    max-pooled identity, zero-padded on the channel axis when the width grows. BatchNorm modules are
    held (names of the published weights) but, as published (use_bn=False), not applied."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int, first: bool):
        super().__init__()
        mid = int(c_out * RATIO)
        self.c_in, self.c_out, self.stride, self.first = c_in, c_out, stride, first
        self.bn1 = nn.BatchNorm1d(c_in)
        self.conv1 = SameConv1d(c_in, mid, 1)
        self.bn2 = nn.BatchNorm1d(mid)
        self.conv2 = SameConv1d(mid, mid, kernel, stride, groups)
        self.bn3 = nn.BatchNorm1d(mid)
        self.conv3 = SameConv1d(mid, c_out, 1)
        self.se_fc1 = nn.Linear(c_out, c_out // 2)
        self.se_fc2 = nn.Linear(c_out // 2, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.silu(x)  # the network's very first block has no pre-activation
        h = self.conv1(h)
        h = self.conv2(F.silu(h))
        h = self.conv3(F.silu(h))
        gate = torch.sigmoid(self.se_fc2(F.silu(self.se_fc1(h.mean(dim=-1)))))
        h = h * gate[:, :, None]
        skip = _pool_same(x, self.stride)
        if self.c_out != self.c_in:
            grow = self.c_out - self.c_in
            skip = F.pad(skip, (0, 0, grow // 2, grow - grow // 2))
        return h + skip


class Stage(nn.Module):
    def __init__(self, c_in: int, c_out: int, n_blocks: int, index: int):
        super().__init__()
        self.block_list = nn.ModuleList(
            Block(c_in if b == 0 else c_out, c_out, KERNEL, STRIDE if b == 0 else 1, c_out // GROUP_WIDTH,
                  first=(index == 0 and b == 0))
            for b in range(n_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class ECGFounder(ECGEncoder):
    """ECGFounder's ``Net1D`` backbone without its head: [N, leads, 5000] -> [N, 1024, 20] (full size).

    ``preprocess=True`` (the registered encoders) filters and jointly z-scores every input first, as
    the authors' ``dataset.py`` does (module docstring); the input is then raw mV at 500 Hz.
    """

    input_contract = InputContract(fs=FS, samples=SAMPLES, leads=tuple(LEADS), unit="mV", normalisation="none")

    def __init__(self, *, in_leads: int = 12, base_filters: int, filters: tuple[int, ...], blocks: tuple[int, ...],
                 preprocess: bool = True):
        super().__init__()
        self.preprocess = preprocess
        self._filters: dict = {}  # (n, dtype, device) -> filter matrix; not part of the state dict
        if in_leads not in PUBLISHED_LEADS:
            raise UserError(f"ECGFounder was published for 12 leads and for lead I alone (in_leads 12 or 1), "
                            f"not {in_leads}")
        self.in_leads = in_leads
        if in_leads != 12:  # the 1-lead model reads lead I
            self.input_contract = InputContract(fs=FS, samples=SAMPLES, leads=PUBLISHED_LEADS[in_leads], unit="mV",
                                                normalisation="none")
        self.first_conv = SameConv1d(in_leads, base_filters, KERNEL, stride=2)
        self.first_bn = nn.BatchNorm1d(base_filters)  # held for the published names; not applied (use_bn=False)
        stages, c_in = [], base_filters
        for i, (c_out, n) in enumerate(zip(filters, blocks)):
            stages.append(Stage(c_in, c_out, n, i))
            c_in = c_out
        self.stage_list = nn.ModuleList(stages)
        self.dim = c_in
        self.stride = 2 * STRIDE ** len(filters)
        self.offset = self.stride // 2  # identity path of position j: samples 256 j - 7 .. 256 j + 262
        self.receptive_field = 0  # squeeze-and-excitation, the filters and the z-score see the whole input

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Raw [N, leads, T] mV at 500 Hz -> notch, band-pass, minus the median baseline, jointly
        z-scored (``util.filter_bandpass`` and ``z_score_normalization``); identity if not ``preprocess``."""
        if not self.preprocess:
            return x
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # never in half precision
        key = (int(x.shape[-1]), dtype, x.device)
        if key not in self._filters:
            self._filters[key] = torch.from_numpy(filter_matrix(key[0])).to(device=x.device, dtype=dtype)
        with torch.autocast(x.device.type, enabled=False):
            h = x.to(dtype) @ self._filters[key]
            return joint_zscore(h - running_median(h, baseline_kernel())).to(x.dtype)

    def n_positions(self, n_samples: int) -> int:
        n = math.ceil(int(n_samples) / 2)
        for _ in self.stage_list:
            n = math.ceil(n / STRIDE)
        return max(1, n)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, leads, T] raw mV at 500 Hz -> [N, D, T'] (T' = 20 for 5000 samples): the last stage's
        map, whose mean over time is the authors' ``deep_features``."""
        self._check_input(x)
        h = F.silu(self.first_conv(self.prepare(x)))
        for stage in self.stage_list:
            h = stage(h)
        return h


@register_ecg_encoder("ecgfounder")
def ecgfounder(*, in_leads: int = 12) -> ECGFounder:
    """ECGFounder (Li et al. 2025) Net1D backbone, D=1024; filters and z-scores its own input
    (docs/examples/adapters/ecgfounder.py)."""
    return ECGFounder(in_leads=in_leads, **FULL)


@register_ecg_encoder("ecgfounder-tiny")
def ecgfounder_tiny(*, in_leads: int = 12) -> ECGFounder:
    """ECGFounder's layout and grid at 1/16 of the width, D=64 (tests on a CPU)."""
    return ECGFounder(in_leads=in_leads, **TINY)


# -- the authors' file -> a file the suite reads -------------------------------------------------
def _numpy_metadata_types() -> list:
    """The NumPy types a pickled NumPy scalar needs (no callable that could run other code)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    allowed = [(core.multiarray.scalar, "numpy.core.multiarray.scalar"),
               (core.multiarray.scalar, "numpy._core.multiarray.scalar"), np.dtype]
    for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_):
        allowed.append(type(np.dtype(t)))
    return allowed


def read_authors_checkpoint(path: str | Path) -> dict:
    """The authors' ``.pth``: ``torch.load(weights_only=True)`` with only NumPy's scalar and dtype
    types allowed (their metadata); returns the whole dict (``state_dict`` and metadata)."""
    with torch.serialization.safe_globals(_numpy_metadata_types()):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"cannot read ECGFounder checkpoint '{path}': {first}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise UserError(f"'{path}' is not laid out as the authors' checkpoint (no 'state_dict' dict); "
                        f"found {sorted(obj) if isinstance(obj, dict) else type(obj).__name__}")
    return obj


def convert(src: str | Path, dst: str | Path) -> dict:
    """Write the encoder part of the authors' checkpoint ``src`` (``state_dict`` without ``dense.*``)
    to ``dst`` as safetensors; return what was done (kept/dropped keys, the file's metadata)."""
    from safetensors.torch import save_file

    obj = read_authors_checkpoint(src)
    state = obj["state_dict"]
    head = {k: tuple(v.shape) for k, v in state.items() if k.startswith(HEAD_PREFIX)}
    keep = {k: v.detach().cpu().contiguous() for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    save_file(keep, str(tmp), metadata={"source": Path(src).name, "dropped_head": ",".join(sorted(head))})
    tmp.replace(dst)
    meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in obj.items() if k != "state_dict"}
    return {"kept": len(keep), "dropped": head, "metadata": meta, "path": str(dst)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3 or argv[0] != "convert":
        print("usage: python -m docs.examples.adapters.ecgfounder convert 12_lead_ECGFounder.pth OUT.safetensors",
              file=sys.stderr)
        return 2
    try:
        done = convert(argv[1], argv[2])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {done['path']}: {done['kept']} encoder tensors; dropped the head {done['dropped']}; "
          f"file metadata {done['metadata']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
