"""Worked adapters for published models (``docs/examples/adapters/``): each writes a file laid out
exactly as the authors' training script saves it, loads it through ``checkpoint[...]`` with
``strict=true``, and checks the features on real PTB-XL records against the adapter's module run by
hand on the hand-adapted input. No published weights are read (none are shipped)."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data.base import LEADS
from benchmark.encoders import create_encoder
from benchmark.errors import UserError
from benchmark.registry import METHODS, load_builtin_plugins, load_plugin

load_builtin_plugins()
ADAPTERS = Path(__file__).resolve().parent.parent / "docs" / "examples" / "adapters"


# -- ST-MEM (Na et al., ICLR 2024; github.com/bakqui/ST-MEM) -------------------------------------
ST_MEM = ADAPTERS / "st_mem.py"


@pytest.fixture(scope="module")
def st_mem():
    """The adapter module, loaded as `--plugin docs/examples/adapters/st_mem.py` loads it."""
    load_plugin(str(ST_MEM))
    return sys.modules[type(create_encoder("st-mem-vit-tiny")).__module__]


def st_mem_vit_keys(width=768, depth=12, heads=12, dim_head=64, mlp=3072, leads=12, patch=75, patches=30) -> dict:
    """Key -> shape of ``ST_MEM_ViT(num_classes=None).state_dict()`` as the authors' modules name
    them (models/encoder/st_mem_vit.py, models/encoder/vit.py), written out independently of the
    adapter."""
    inner = heads * dim_head
    keys = {"to_patch_embedding.1.weight": (patch,), "to_patch_embedding.1.bias": (patch,),  # LayerNorm(patch)
            "to_patch_embedding.2.weight": (width, patch), "to_patch_embedding.2.bias": (width,),  # Linear
            "to_patch_embedding.3.weight": (width,), "to_patch_embedding.3.bias": (width,),  # LayerNorm(width)
            "pos_embedding": (1, patches + 2, width), "sep_embedding": (width,),
            **{f"lead_embeddings.{i}": (width,) for i in range(leads)},
            "norm.weight": (width,), "norm.bias": (width,)}
    for i in range(depth):
        b = f"block{i}"
        keys.update({f"{b}.attn.norm.weight": (width,), f"{b}.attn.norm.bias": (width,),
                     f"{b}.attn.fn.to_qkv.weight": (3 * inner, width), f"{b}.attn.fn.to_qkv.bias": (3 * inner,),
                     f"{b}.attn.fn.to_out.0.weight": (width, inner), f"{b}.attn.fn.to_out.0.bias": (width,),
                     f"{b}.ff.norm.weight": (width,), f"{b}.ff.norm.bias": (width,),
                     f"{b}.ff.fn.net.0.weight": (mlp, width), f"{b}.ff.fn.net.0.bias": (mlp,),
                     f"{b}.ff.fn.net.3.weight": (width, mlp), f"{b}.ff.fn.net.3.bias": (width,)})
    return keys


def save_as_st_mem_pretrain(state: dict, path: Path) -> Path:
    """``util/misc.py:save_model(config, 'encoder.pth', epoch, model.encoder)`` at the end of
    ``main_pretrain.py``: the encoder's state dict, unprefixed, under ``"model"``."""
    config = {"model_name": "st_mem_vit_base_dec256d4b", "model": {"seq_len": 2250, "patch_size": 75, "num_leads": 12},
              "dataset": {"fs": 250, "lead": "12lead"}, "train": {"epochs": 800, "lr": 1.5e-4}}
    torch.save({"epoch": 799, "model": state, "optimizer": None, "scaler": None, "config": config}, path)
    return path


def st_mem_by_hand(module, raw_mv: np.ndarray, fs_in: float) -> np.ndarray:
    """The authors' pipeline on store signals, written out: linear resampling to 250 Hz and the
    centre 2250 samples (the suite's adaptation), then scipy's zero-phase Butterworth high-pass
    0.67 Hz and low-pass 40 Hz (order 5) and one z-score over all leads and samples, then the
    module without its own preprocessing: features [N, D, 30]."""
    from scipy.signal import butter, sosfiltfilt

    x = torch.from_numpy(raw_mv)
    x = torch.nn.functional.interpolate(x, size=int(round(x.shape[-1] * 250 / fs_in)), mode="linear",
                                        align_corners=False)
    start = (x.shape[-1] - 2250) // 2
    x = x[..., start:start + 2250].double().numpy()
    x = sosfiltfilt(butter(5, 0.67, btype="highpass", fs=250, output="sos"), x)
    x = sosfiltfilt(butter(5, 40.0, btype="lowpass", fs=250, output="sos"), x)
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
    plain = copy.deepcopy(module)
    plain.preprocess = False
    with torch.no_grad():
        return plain.eval().features(torch.from_numpy(x).float()).numpy()


def test_st_mem_vit_b_has_the_authors_keys_and_contract(st_mem):
    with torch.device("meta"):  # shapes only: nothing is allocated or run
        enc = create_encoder("st-mem-vit-b")
    got = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    assert got == st_mem_vit_keys()
    assert len(got) == 166 and sum(int(np.prod(s)) for s in got.values()) == 85_150_614
    assert (enc.dim, enc.stride, enc.offset, enc.receptive_field, enc.in_leads) == (768, 75, 37, 0, 12)
    c = enc.input_contract
    assert (c.fs, c.samples, c.leads, c.unit, c.normalisation) == (250, 2250, LEADS, "mV", "none")
    assert enc.pos_embedding.requires_grad  # trainable, as when the authors fine-tune
    with torch.device("meta"):
        tiny = create_encoder("st-mem-vit-tiny")
    assert {k: tuple(v.shape) for k, v in tiny.state_dict().items()} == st_mem_vit_keys(
        width=64, depth=2, heads=2, dim_head=32, mlp=128)
    with pytest.raises(TypeError):  # the architecture is the paper's: no width
        st_mem.st_mem_vit_b(width=32)


def test_st_mem_encoder_file_loads_strictly_and_matches_the_module_by_hand(st_mem, ptbxl_set, tmp_path):
    torch.manual_seed(0)
    ref = st_mem.st_mem_vit_tiny().eval()
    state = {k: v + 0.05 * torch.randn_like(v) for k, v in ref.state_dict().items()}  # not the init
    ref.load_state_dict(state, strict=True)
    path = save_as_st_mem_pretrain(state, tmp_path / "st_mem_vit_tiny_encoder.pth")

    m = METHODS.create("checkpoint", path=str(path), encoder="st-mem-vit-tiny", device="cpu", seed=0)
    assert m.stats["load"] == {"format": "state_dict", "loaded": len(state), "missing": 0, "unexpected": 0,
                               "mismatched": 0}
    inner = getattr(m.encoder, "inner", m.encoder)
    assert all(torch.equal(inner.state_dict()[k], v) for k, v in state.items())
    assert m.encoder.input_contract == ref.input_contract  # the adapter's own contract, unchanged

    ev = ptbxl_set.split_indices("test")[:4]
    assert list(ptbxl_set.leads) == list(LEADS)
    got = m.encode_ecg(ptbxl_set, ev, pooled=False)
    want = st_mem_by_hand(ref, ptbxl_set.raw(ev), ptbxl_set.fs)
    assert got.shape == want.shape == (4, 64, 30) and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(m.encode_ecg(ptbxl_set, ev), got.mean(-1), rtol=1e-5, atol=1e-6)
    grid = m.feature_grid(ptbxl_set.n_samples, ptbxl_set.fs)  # in store time: the crop starts 0.5 s in
    assert grid["positions"] == 30 and abs(grid["stride_s"] - 0.3) < 1e-9
    assert abs(grid["centres_s"][0] - (125 + 37) / 250) < 1e-9

    # the "Full (encoder + decoder)" file: the whole ST_MEM model under "model", encoder under encoder.
    full = {**{f"encoder.{k}": v for k, v in state.items()},
            **{f"to_patch_embedding.{k[len('to_patch_embedding.'):]}": v for k, v in state.items()
               if k.startswith("to_patch_embedding.")},  # the pre-training model's alias of the same module
            "to_decoder_embedding.weight": torch.zeros(32, 64), "mask_embedding": torch.zeros(1, 1, 32),
            "decoder_pos_embed": torch.zeros(1, 32, 32), "decoder_blocks.0.attn.norm.weight": torch.ones(32),
            "decoder_norm.weight": torch.ones(32), "decoder_head.weight": torch.zeros(75, 32)}
    torch.save({"epoch": 799, "model": full, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
                "scaler": {"scale": 65536.0}, "config": {}}, tmp_path / "st_mem_full.pth")
    whole = METHODS.create("checkpoint", path=str(tmp_path / "st_mem_full.pth"), encoder="st-mem-vit-tiny",
                           select="encoder.", key_map="encoder.=", device="cpu", seed=0)
    assert whole.stats["load"]["loaded"] == len(state) and whole.stats["load"]["unexpected"] == 0
    np.testing.assert_allclose(whole.encode_ecg(ptbxl_set, ev, pooled=False), got, rtol=1e-5, atol=1e-6)


def test_st_mem_a_wrong_key_is_one_line_naming_it(st_mem, tmp_path):
    torch.manual_seed(0)
    state = dict(st_mem.st_mem_vit_tiny().state_dict())
    state["block1.attn.fn.qkv.weight"] = state.pop("block1.attn.fn.to_qkv.weight")
    path = save_as_st_mem_pretrain(state, tmp_path / "renamed.pth")
    with pytest.raises(UserError) as err:
        METHODS.create("checkpoint", path=str(path), encoder="st-mem-vit-tiny", device="cpu", seed=0)
    msg = str(err.value)
    assert "\n" not in msg and re.search(r"1 missing \(block1\.attn\.fn\.to_qkv\.weight\)", msg)
    assert re.search(r"1 unexpected \(block1\.attn\.fn\.qkv\.weight\)", msg)

    # a fine-tuned file (main_downstream.py's best-<metric>.pth) adds head.*: strict=false drops it
    tuned = {**st_mem.st_mem_vit_tiny().state_dict(), "head.weight": torch.zeros(5, 64), "head.bias": torch.zeros(5)}
    path = save_as_st_mem_pretrain(tuned, tmp_path / "best-f1.pth")
    with pytest.raises(UserError, match=r"2 unexpected \(head\.bias, head\.weight\)"):
        METHODS.create("checkpoint", path=str(path), encoder="st-mem-vit-tiny", device="cpu", seed=0)
    m = METHODS.create("checkpoint", path=str(path), encoder="st-mem-vit-tiny", strict=False, device="cpu", seed=0)
    assert m.stats["load"]["unexpected"] == 2 and m.stats["load"]["missing"] == 0
