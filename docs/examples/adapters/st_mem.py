"""ST-MEM (Na et al., ICLR 2024) as a plug-in encoder, so the authors' encoder checkpoint loads as
``checkpoint[...]`` with ``strict=true``.

Paper: "Guiding Masked Representation Learning to Capture Spatio-Temporal Relationship of
Electrocardiogram", Na, Park, Tae, Joo, ICLR 2024 (https://openreview.net/forum?id=WcOohbsF4H).

Source read (github.com/bakqui/ST-MEM, commit 69ec70246c01fe32b14dea810af812556c06eab0, May 2025;
the code has not changed since the first commit a73d1ef, Jul 2024):

* ``models/encoder/st_mem_vit.py`` -- ``ST_MEM_ViT`` and ``st_mem_vit_base`` (ViT-B/75);
* ``models/encoder/vit.py`` -- ``TransformerBlock``, ``PreNorm``, ``Attention``, ``FeedForward``;
* ``models/st_mem.py`` -- the pre-training model (encoder under ``encoder.``, its initialisation);
* ``main_pretrain.py`` and ``util/misc.py`` (``save_model``) -- how ``encoder.pth`` is written;
* ``configs/pretrain/st_mem.yaml``, ``configs/downstream/st_mem.yaml``, ``util/dataset.py``,
  ``util/transforms.py``, ``data/process_ecg.py`` -- the input pipeline.

This module is written for the suite (no code is copied); its module and parameter names are the
authors', so their state dict loads key for key.

Architecture (ViT-B/75, ``st-mem-vit-b``)
-----------------------------------------
Each lead is cut into 30 patches of 75 samples; a patch goes through LayerNorm(75) -> Linear(75,
768) -> LayerNorm(768) (``to_patch_embedding.1/.2/.3``), gets a positional embedding
(``pos_embedding[:, 1:31]``, shared by the leads), and each lead's row of patches is framed by a
SEP token on either side (``sep_embedding`` plus ``pos_embedding[:, 0]`` / ``pos_embedding[:, 31]``);
a learned lead embedding (``lead_embeddings.i``) is added to all 32 tokens of lead ``i``. The
12 x 32 = 384 tokens pass 12 pre-norm transformer blocks (``block0`` .. ``block11``: 12 heads of 64,
MLP 3072, GELU, qkv bias) and a final LayerNorm (``norm``). ``head`` is ``nn.Identity`` in the
encoder file (no keys). 166 tensors, 85.15 M parameters; ``pos_embedding`` is the fixed sin-cos
table of pre-training (frozen there, trainable when the authors fine-tune; so here too).

Features: the 12 x 30 patch tokens (SEP tokens dropped), each through ``norm`` (the per-token
LayerNorm that pre-training applies before the decoder, ``ST_MEM.forward_encoder``), averaged over
the leads: [N, 768, 30], one position per 75-sample patch (``stride`` 75, ``offset`` 37, the patch
centre; ``receptive_field`` 0: attention, every position sees the whole input). ``forward`` (the
suite's pooled vector) is their mean over time, i.e. the mean of the normalised tokens. The authors'
own fine-tuning and linear-probe head read ``norm(mean of the tokens)`` instead
(``ST_MEM_ViT.forward_encoding``); :meth:`STMEMViT.forward_encoding` computes that for comparison,
and the two differ (LayerNorm does not commute with the mean).

Input contract (as published)
-----------------------------
* 250 Hz (``dataset.fs: 250``; ``ECGDataset`` resamples every record with ``scipy.signal.resample``);
* 2250 samples = 9 s (``model.seq_len: 2250``, ``patch_size: 75``); at evaluation the authors take
  three 2250-sample crops evenly spaced over the 10 s record (``n_crop``, starts 0, 125, 250 at
  250 Hz) and average the logits; the suite takes the centre one (start 125);
* 12 leads in the order I, II, III, aVR, aVL, aVF, V1-V6 (``data/process_ecg.py``);
* physical units as WFDB gives them (mV), but see normalisation: the unit cancels;
* filtering: zero-phase 5th-order Butterworth high-pass 0.67 Hz, then low-pass 40 Hz
  (``scipy.signal.sosfiltfilt``), applied to each 2250-sample crop;
* normalisation: each crop z-scored *jointly over all leads and samples* (``standardize`` with
  ``axis: [-1, -2]``: one mean and one standard deviation per input; zeros where the std is 0).

The contract (``benchmark.data.adapt.InputContract``) expresses the rate, length, leads, unit and
"raw amplitude" (``normalisation="none"``); it cannot express the band-pass filter nor a z-score
shared by all leads (its ``record`` normalisation z-scores each lead on its own, which would
discard the relative lead amplitudes ST-MEM saw). So this adapter declares
``InputContract(fs=250, samples=2250, leads=<their 12>, unit="mV", normalisation="none")`` and
does the rest itself, first thing in :meth:`STMEMViT.features`: the two filters (as one exact
linear map per input length: ``sosfiltfilt`` is linear, so it is the matrix ``sosfiltfilt(I)``,
differentiable and on the model's device), then the joint z-score. Remaining differences from the
authors' pipeline: the suite resamples linearly (100 -> 250 Hz) or by block averaging
(500 -> 250 Hz) instead of by FFT (a store prepared at 500 Hz, ``--fs 500``, is the closer
input: 100 Hz records carry nothing above 50 Hz and are up-sampled by 2.5), and reads one centred
crop instead of averaging three. A lead the
dataset does not record reaches the model as zeros and takes part in the joint z-score (the
authors' single-lead models instead slice the lead and use ``num_leads=1``; ``in_leads=1`` here
does the same for lead I, loaded with ``strict=false``: 11 lead embeddings unused).

Checkpoint layout
-----------------
``main_pretrain.py`` ends with ``save_model(..., 'encoder.pth', epoch, model.encoder)``, which
writes ``{"epoch": int, "model": encoder.state_dict(), "optimizer": None, "scaler": None,
"config": dict}``. The keys under ``"model"`` carry **no prefix** (``to_patch_embedding.1.weight``,
``pos_embedding``, ``sep_embedding``, ``lead_embeddings.0`` .. ``.11``, ``block0.attn.norm.weight``,
``block0.attn.fn.to_qkv.weight``, ``block0.attn.fn.to_out.0.weight``, ``block0.ff.norm.weight``,
``block0.ff.fn.net.0.weight``, ``block0.ff.fn.net.3.weight``, ..., ``norm.weight``) and no
``head.*``. The suite's reader takes the dict under ``"model"`` by itself, so the published
"Encoder" file (the README's Google Drive link; saved here as ``st_mem_vit_base_encoder.pth``)
needs no ``select`` nor ``key_map``::

    python -m benchmark run --plugin docs/examples/adapters/st_mem.py \\
        --methods "checkpoint[path=st_mem_vit_base_encoder.pth,encoder=st-mem-vit-b]" \\
        --protocols few-label,cross-dataset

The "Full (encoder + decoder)" file and the periodic ``checkpoint-<epoch>.pth`` hold the whole
``ST_MEM`` model under ``"model"``: the encoder under ``encoder.``, a second copy of its patch
embedding under ``to_patch_embedding.`` and the decoder (``to_decoder_embedding``,
``mask_embedding``, ``decoder_pos_embed``, ``decoder_blocks``, ``decoder_norm``, ``decoder_head``);
read it with ``select=encoder.,key_map=encoder.=``. A fine-tuned file
(``best-<metric>.pth`` of ``main_downstream.py``) has the same unprefixed keys plus ``head.weight``
and ``head.bias``: drop them with ``strict=false`` (the report counts 2 unexpected keys).

Not verified here (no network): the published file itself. That it is ``main_pretrain.py``'s
``encoder.pth`` rests on the README ("Encoder" vs "Full (encoder + decoder)") and on third-party
loaders that read ``torch.load(f)["model"]`` strictly into ``st_mem_vit_base(num_leads=12)``. Its
other entries (epoch, ``None``, a config of plain values) are what ``torch.load(weights_only=True)``
accepts; should a file hold anything else, the suite refuses it in one line rather than unpickle it.

Registered: ``st-mem-vit-b`` (the published ViT-B/75) and ``st-mem-vit-tiny`` (same module names,
width 64, 2 blocks: for tests and smoke runs; no published weights).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.data.adapt import InputContract
from benchmark.encoders import ECGEncoder
from benchmark.errors import UserError
from benchmark.registry import register_ecg_encoder

ST_MEM_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FS, SEQ_LEN, PATCH = 250, 2250, 75
HIGHPASS_HZ, LOWPASS_HZ, FILTER_ORDER = 0.67, 40.0, 5


# -- preprocessing the contract cannot express ---------------------------------------------------
@lru_cache(maxsize=8)
def bandpass_matrix(n: int, fs: float = FS) -> np.ndarray:
    """[n, n] float64 ``R`` with ``x @ R`` = the authors' high-pass 0.67 Hz then low-pass 40 Hz
    (order-5 Butterworth, ``sosfiltfilt`` with scipy's default odd padding) along the last axis.
    ``sosfiltfilt`` is linear in its input, so its rows on the identity are the whole map."""
    from scipy.signal import butter, sosfiltfilt

    high = butter(FILTER_ORDER, HIGHPASS_HZ, btype="highpass", fs=fs, output="sos")
    low = butter(FILTER_ORDER, LOWPASS_HZ, btype="lowpass", fs=fs, output="sos")
    try:
        return np.ascontiguousarray(sosfiltfilt(low, sosfiltfilt(high, np.eye(n), axis=-1), axis=-1))
    except ValueError as exc:  # shorter than the filters' padding
        raise ValueError(f"ST-MEM's band-pass filter needs a longer input than {n} samples: {exc}") from None


def joint_standardize(x: torch.Tensor) -> torch.Tensor:
    """One z-score per input over all its leads and samples (``Standardize(axis=(-1, -2))``);
    an input with standard deviation 0 becomes zeros."""
    loc = x.mean(dim=(-2, -1), keepdim=True)
    scale = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
    ok = scale > 0
    return torch.where(ok, (x - loc) / torch.where(ok, scale, torch.ones_like(scale)), torch.zeros_like(x))


def sincos_table(width: int, n_patches: int) -> torch.Tensor:
    """[1, n_patches + 2, width]: 1-D sin-cos positions for the patches, zeros for the two SEP slots
    (the fixed table ST-MEM pre-training writes into ``pos_embedding``)."""
    freq = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float64) / (width / 2))
    angle = torch.arange(n_patches, dtype=torch.float64)[:, None] * freq[None, :]
    table = torch.cat([angle.sin(), angle.cos()], dim=1)
    zero = torch.zeros(1, width, dtype=torch.float64)
    return torch.cat([zero, table, zero]).float()[None]


# -- the authors' module layout ------------------------------------------------------------------
class Patches(nn.Module):
    """[B, C, n * p] -> [B, C, n, p] (no parameters: slot 0 of ``to_patch_embedding``)."""

    def __init__(self, patch: int):
        super().__init__()
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-1], x.shape[-1] // self.patch, self.patch)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, qkv_bias: bool = True):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        # the authors skip the output projection only for one head as wide as the model
        self.to_out = nn.Sequential(nn.Linear(inner, dim)) if not (heads == 1 and dim_head == dim) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(dim_head)) v
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        # slots 2 and 4 are the authors' (parameter-free) dropouts, kept so the indices match
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Identity(), nn.Linear(hidden, dim),
                                 nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, heads: int, dim_head: int, qkv_bias: bool = True):
        super().__init__()
        self.attn = PreNorm(dim, Attention(dim, heads, dim_head, qkv_bias))
        self.ff = PreNorm(dim, FeedForward(dim, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ff(x)


class STMEMViT(ECGEncoder):
    """ST-MEM's ViT encoder with the authors' parameter names; features [N, width, patches].

    ``preprocess=True`` (the registered encoders) band-passes and jointly z-scores every input first,
    as the authors' data pipeline does (module docstring); the input is then raw amplitude at 250 Hz.
    """

    input_contract = InputContract(fs=FS, samples=SEQ_LEN, leads=ST_MEM_LEADS, unit="mV", normalisation="none")

    def __init__(self, *, in_leads: int = 12, width: int = 768, depth: int = 12, heads: int = 12,
                 dim_head: int = 64, mlp_dim: int = 3072, seq_len: int = SEQ_LEN, patch_size: int = PATCH,
                 qkv_bias: bool = True, preprocess: bool = True):
        super().__init__()
        if not 1 <= in_leads <= len(ST_MEM_LEADS):
            raise UserError(f"ST-MEM takes 1 to 12 leads (got in_leads={in_leads})")
        if seq_len % patch_size:
            raise UserError(f"ST-MEM's seq_len ({seq_len}) must be a multiple of its patch size ({patch_size})")
        self.in_leads, self.width, self.depth = in_leads, width, depth
        self.patch_size, self.num_patches, self.preprocess = patch_size, seq_len // patch_size, preprocess
        # the leads the authors' loader keeps for 12 / 6 (limb) / 1 (lead I): the first in_leads
        self.input_contract = InputContract(fs=FS, samples=seq_len, leads=ST_MEM_LEADS[:in_leads], unit="mV",
                                            normalisation="none")
        self.dim, self.stride, self.offset, self.receptive_field = width, patch_size, patch_size // 2, 0

        self.to_patch_embedding = nn.Sequential(Patches(patch_size), nn.LayerNorm(patch_size),
                                                nn.Linear(patch_size, width), nn.LayerNorm(width))
        self.pos_embedding = nn.Parameter(sincos_table(width, self.num_patches))
        self.sep_embedding = nn.Parameter(torch.empty(width))
        self.lead_embeddings = nn.ParameterList(nn.Parameter(torch.empty(width)) for _ in range(in_leads))
        for i in range(depth):
            self.add_module(f"block{i}", TransformerBlock(width, mlp_dim, heads, dim_head, qkv_bias))
        self.norm = nn.LayerNorm(width)
        self._init_weights()
        self._filters: dict = {}  # (n, dtype, device) -> band-pass matrix; not part of the state dict

    def _init_weights(self) -> None:
        """ST-MEM pre-training's initialisation (a checkpoint overwrites it): SEP and lead embeddings
        N(0, 0.02), Linear layers Xavier-uniform with zero bias, LayerNorms 1 and 0."""
        nn.init.normal_(self.sep_embedding, std=0.02)
        for p in self.lead_embeddings:
            nn.init.normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- the authors' input pipeline after crop/resample --------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Raw [N, leads, T] at 250 Hz -> band-passed, jointly z-scored (identity if not ``preprocess``)."""
        if not self.preprocess:
            return x
        key = (x.shape[-1], x.dtype, x.device)
        if key not in self._filters:
            self._filters[key] = torch.from_numpy(bandpass_matrix(int(x.shape[-1]))).to(device=x.device, dtype=x.dtype)
        return joint_standardize(x @ self._filters[key])

    # -- the transformer ------------------------------------------------------------------------
    def tokens(self, series: torch.Tensor) -> torch.Tensor:
        """Prepared [N, leads, n * patch] -> patch tokens after the last block, before ``norm``:
        [N, leads, n, width] (SEP tokens dropped), computed as ``ST_MEM_ViT.forward_encoding``."""
        b, c, _ = series.shape
        x = self.to_patch_embedding(series)  # [B, C, n, W]
        n = x.shape[2]
        pos = self.pos_embedding
        x = x + pos[:, 1:n + 1].unsqueeze(1)
        left = (self.sep_embedding + pos[:, 0])[:, None, None, :].expand(b, c, 1, -1)
        right = (self.sep_embedding + pos[:, -1])[:, None, None, :].expand(b, c, 1, -1)
        x = torch.cat([left, x, right], dim=2)
        x = x + torch.stack(list(self.lead_embeddings))[None, :, None, :]
        x = x.reshape(b, c * (n + 2), self.width)
        for i in range(self.depth):
            x = getattr(self, f"block{i}")(x)
        return x.reshape(b, c, n + 2, self.width)[:, :, 1:-1]

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        """The raw encoder takes any length up to ``seq_len``: zero-padded on the right to whole
        patches after :meth:`prepare` (the suite always feeds it ``seq_len`` samples, through its
        input contract)."""
        n = x.shape[-1]
        if n > self.num_patches * self.patch_size:
            raise ValueError(f"ST-MEM has positions for {self.num_patches * self.patch_size} samples, got {n}")
        pad = -n % self.patch_size
        return F.pad(x, (0, pad)) if pad else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, leads, T] raw amplitude at 250 Hz -> [N, width, ceil(T / 75)]: per time patch, the
        ``norm``-ed tokens averaged over the leads."""
        self._check_input(x)
        h = self.norm(self.tokens(self._fit(self.prepare(x))))  # [B, C, n, W]
        return h.mean(dim=1).transpose(1, 2)

    def forward_encoding(self, x: torch.Tensor) -> torch.Tensor:
        """The authors' pooled representation, ``norm(mean over leads and patches)`` [N, width]
        (what their linear probe reads); the suite's ``forward`` is the mean of ``features``."""
        self._check_input(x)
        return self.norm(self.tokens(self._fit(self.prepare(x))).mean(dim=(1, 2)))


@register_ecg_encoder("st-mem-vit-b")
def st_mem_vit_b(*, in_leads: int = 12) -> STMEMViT:
    """ST-MEM ViT-B/75 (Na et al. 2024); band-passes and z-scores its input itself (docs/examples/adapters/st_mem.py)."""
    return STMEMViT(in_leads=in_leads, width=768, depth=12, heads=12, dim_head=64, mlp_dim=3072)


@register_ecg_encoder("st-mem-vit-tiny")
def st_mem_vit_tiny(*, in_leads: int = 12) -> STMEMViT:
    """ST-MEM layout at width 64, 2 blocks (tests and smoke runs; no published weights)."""
    return STMEMViT(in_leads=in_leads, width=64, depth=2, heads=2, dim_head=32, mlp_dim=128)

