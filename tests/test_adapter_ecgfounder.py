"""The worked ECGFounder adapter (docs/examples/adapters/ecgfounder.py): the module has the authors'
``Net1D`` keys and shapes (written out here independently); a file laid out as the authors'
``12_lead_ECGFounder.pth`` (NumPy-scalar metadata, ``state_dict`` with the bare ``Net1D`` names and
the 150-label ``dense`` head) converts and loads strictly through ``checkpoint[...]``; a corrupted key
is one line naming it; features on real PTB-XL records equal the bare module run on the published
input made by hand with scipy (500 Hz, 5000 samples, 12 leads, mV, ``util.filter_bandpass``, one
z-score over the whole array). The published weights cannot be downloaded here: the files are built
from the module's own state dict."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.data.base import LEADS
from benchmark.errors import UserError
from benchmark.registry import ECG_ENCODERS, METHODS, load_builtin_plugins, load_plugin

load_builtin_plugins()
ADAPTER = Path(__file__).resolve().parent.parent / "docs" / "examples" / "adapters" / "ecgfounder.py"
N_CLASSES = 150  # the published head: dense.weight [150, 1024]


@pytest.fixture(scope="module")
def founder():
    """The adapter module, loaded as `--plugin docs/examples/adapters/ecgfounder.py` loads it (in a
    fixture, not at import: the conformance suites collected with this file stay on the built-ins)."""
    import sys

    load_plugin(str(ADAPTER))
    return sys.modules[type(ECG_ENCODERS.create("ecgfounder-tiny")).__module__]


def _authors_file(path: Path, encoder, n_classes: int = N_CLASSES) -> Path:
    """``torch.save`` as util.save_checkpoint does: NumPy-scalar metadata and the whole Net1D state dict."""
    state = dict(encoder.state_dict())
    gen = torch.Generator().manual_seed(1)
    state["dense.weight"] = torch.randn(n_classes, encoder.dim, generator=gen)
    state["dense.bias"] = torch.randn(n_classes, generator=gen)
    torch.save({"step": np.int64(123000), "val_auroc": np.float64(0.9512), "state_dict": state}, path)
    return path


def net1d_keys(leads=12, base=64, filters=(64, 160, 160, 400, 400, 1024, 1024), blocks=(2, 2, 2, 3, 3, 4, 4),
               kernel=16, group_width=16) -> dict:
    """Key -> shape of the authors' ``Net1D(...).state_dict()`` without ``dense.*`` (net1d.py:
    ``MyConv1dPadSame`` holds ``conv``; ``BasicBlock`` bn1/conv1 (1x1), bn2/conv2 (grouped k),
    bn3/conv3 (1x1), se_fc1/se_fc2; ``BasicStage.block_list``; ``Net1D.first_conv/first_bn/stage_list``),
    written out independently of the adapter."""
    def bn(name, c):
        return {f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
                f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()}

    keys = {"first_conv.conv.weight": (base, leads, kernel), "first_conv.conv.bias": (base,), **bn("first_bn", base)}
    c_in = base
    for i, (c_out, n) in enumerate(zip(filters, blocks)):
        for b in range(n):
            p, cin = f"stage_list.{i}.block_list.{b}", (c_in if b == 0 else c_out)
            keys.update({**bn(f"{p}.bn1", cin), **bn(f"{p}.bn2", c_out), **bn(f"{p}.bn3", c_out),
                         f"{p}.conv1.conv.weight": (c_out, cin, 1), f"{p}.conv1.conv.bias": (c_out,),
                         f"{p}.conv2.conv.weight": (c_out, group_width, kernel), f"{p}.conv2.conv.bias": (c_out,),
                         f"{p}.conv3.conv.weight": (c_out, c_out, 1), f"{p}.conv3.conv.bias": (c_out,),
                         f"{p}.se_fc1.weight": (c_out // 2, c_out), f"{p}.se_fc1.bias": (c_out // 2,),
                         f"{p}.se_fc2.weight": (c_out, c_out // 2), f"{p}.se_fc2.bias": (c_out,)})
        c_in = c_out
    return keys


def test_ecgfounder_full_model_has_the_published_layout(founder):
    """The published 12-lead Net1D (shapes only, on the meta device): its 507 encoder keys and shapes,
    30.73 M numbers, the contract and the grid; the tiny one has the same names."""
    with torch.device("meta"):
        enc = ECG_ENCODERS.create("ecgfounder")
    got = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    assert got == net1d_keys() and len(got) == 507
    assert sum(int(np.prod(s)) for k, s in got.items() if not k.endswith("num_batches_tracked")) == 30_731_632
    with torch.device("meta"):
        tiny = ECG_ENCODERS.create("ecgfounder-tiny")
        one = ECG_ENCODERS.create("ecgfounder", in_leads=1)
    assert {k: tuple(v.shape) for k, v in tiny.state_dict().items()} == net1d_keys(
        base=16, filters=(16, 16, 16, 32, 32, 64, 64))
    assert {k: tuple(v.shape) for k, v in one.state_dict().items()} == net1d_keys(leads=1)
    assert enc.dim == 1024 and (enc.stride, enc.offset, enc.receptive_field) == (256, 128, 0)
    assert enc.n_positions(5000) == 20
    c = enc.input_contract
    assert (c.fs, c.samples, c.leads, c.unit, c.normalisation) == (500, 5000, tuple(LEADS), "mV", "none")
    assert one.input_contract.leads == ("I",)
    with pytest.raises(UserError, match="12 leads and for lead I alone"):
        ECG_ENCODERS.create("ecgfounder", in_leads=8)


@pytest.fixture(scope="module")
def converted(founder, tmp_path_factory):
    """A seeded ecgfounder-tiny, written as the authors' .pth and converted by the adapter's CLI."""
    folder = tmp_path_factory.mktemp("founder")
    torch.manual_seed(0)
    enc = ECG_ENCODERS.create("ecgfounder-tiny").eval()
    pth = _authors_file(folder / "12_lead_ECGFounder.pth", enc)
    out = folder / "12_lead_ECGFounder.safetensors"
    assert founder.main(["convert", str(pth), str(out)]) == 0
    return enc, pth, out


def test_ecgfounder_authors_file_converts_and_loads_every_key(founder, converted, tmp_path, capsys):
    enc, pth, out = converted
    # as it is, the suite refuses the file: its metadata are NumPy scalars (weights_only=True)
    with pytest.raises(UserError, match="cannot read checkpoint .*12_lead_ECGFounder.pth"):
        METHODS.create("checkpoint", path=str(pth), encoder="ecgfounder-tiny", device="cpu", seed=0)
    done = founder.convert(pth, tmp_path / "again.safetensors")
    assert done["dropped"] == {"dense.weight": (N_CLASSES, enc.dim), "dense.bias": (N_CLASSES,)}
    assert done["kept"] == len(enc.state_dict()) == 507
    assert done["metadata"] == {"step": 123000, "val_auroc": pytest.approx(0.9512)}
    m = METHODS.create("checkpoint", path=str(out), encoder="ecgfounder-tiny", device="cpu", seed=0)
    assert m.stats["load"] == {"format": "safetensors", "loaded": 507, "missing": 0, "unexpected": 0, "mismatched": 0}
    inner = m.encoder.inner
    for k, v in enc.state_dict().items():
        assert torch.equal(inner.state_dict()[k], v), k
    # the 1-lead model (lead I) loads the same way
    torch.manual_seed(0)
    one = ECG_ENCODERS.create("ecgfounder-tiny", in_leads=1)
    founder.convert(_authors_file(tmp_path / "1_lead.pth", one), tmp_path / "1_lead.safetensors")
    m1 = METHODS.create("checkpoint", path=str(tmp_path / "1_lead.safetensors"), encoder="ecgfounder-tiny",
                        input_leads="I", device="cpu", seed=0)
    assert m1.stats["load"]["loaded"] == 507 and m1.encoder.input_contract.leads == ("I",)
    # not the authors' layout: one line
    torch.save({"model": {"w": torch.zeros(1)}}, tmp_path / "other.pth")
    assert founder.main(["convert", str(tmp_path / "other.pth"), str(tmp_path / "x.safetensors")]) == 1
    assert "no 'state_dict' dict" in capsys.readouterr().err


def test_ecgfounder_a_corrupted_key_is_one_line_naming_it(converted, tmp_path):
    from safetensors.torch import load_file, save_file

    _, _, out = converted
    state = load_file(str(out))
    good = "stage_list.3.block_list.1.conv2.conv.weight"
    bad = "stage_list.3.block_list.1.conv2.weight"
    state[bad] = state.pop(good)
    save_file(state, str(tmp_path / "corrupt.safetensors"))
    with pytest.raises(UserError) as err:
        METHODS.create("checkpoint", path=str(tmp_path / "corrupt.safetensors"), encoder="ecgfounder-tiny",
                       device="cpu", seed=0)
    msg = str(err.value)
    assert "\n" not in msg and "1 missing" in msg and good in msg and "1 unexpected" in msg and bad in msg
    # the head left in (not converted): strict names it; strict=false loads the encoder and reports it
    head = {**load_file(str(out)), "dense.weight": torch.zeros(N_CLASSES, 64), "dense.bias": torch.zeros(N_CLASSES)}
    save_file(head, str(tmp_path / "with_head.safetensors"))
    with pytest.raises(UserError, match=r"2 unexpected \(dense\.bias, dense\.weight\)"):
        METHODS.create("checkpoint", path=str(tmp_path / "with_head.safetensors"), encoder="ecgfounder-tiny",
                       device="cpu", seed=0)
    loose = METHODS.create("checkpoint", path=str(tmp_path / "with_head.safetensors"), encoder="ecgfounder-tiny",
                           strict=False, device="cpu", seed=0)
    assert loose.stats["load"] == {"format": "safetensors", "loaded": 507, "missing": 0, "unexpected": 2,
                                   "mismatched": 0}


@pytest.fixture(scope="module")
def few_records(data_root, tmp_path_factory):
    """A store of the first 12 real PTB-XL records (100 Hz, 10 s), built from a copy of their files."""
    import shutil

    from benchmark.data.store import prepare

    dest = tmp_path_factory.mktemp("ptbxl12")
    src, out = data_root / "ptb-xl", dest / "ptb-xl"
    out.mkdir()
    df = pd.read_csv(src / "ptbxl_database.csv").sort_values("ecg_id").iloc[:12]
    df.to_csv(out / "ptbxl_database.csv", index=False)
    shutil.copy(src / "scp_statements.csv", out / "scp_statements.csv")
    for name in df["filename_lr"]:
        for ext in (".hea", ".dat"):
            (out / f"{name}{ext}").parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / f"{name}{ext}", out / f"{name}{ext}")
    return prepare("ptbxl", dest, dest / "cache", fs=100, progress=False)


def founder_by_hand(module, raw_mv: np.ndarray, fs_in: float) -> np.ndarray:
    """The authors' pipeline on store signals, written out: linear resampling to 500 Hz, 5000 samples
    (the suite's adaptation), then ``util.filter_bandpass`` with scipy per lead (notch 50 Hz Q 30,
    Butterworth band-pass 0.67-40 Hz order 4, both ``filtfilt``; minus ``medfilt`` 201), one z-score
    over the whole array (``(x - mean) / (std + 1e-8)``), then the module without its own
    preprocessing: features [N, D, 20]."""
    from scipy.signal import butter, filtfilt, iirnotch, medfilt

    x = torch.nn.functional.interpolate(torch.from_numpy(raw_mv), size=int(round(raw_mv.shape[-1] * 500 / fs_in)),
                                        mode="linear", align_corners=False)
    start = (x.shape[-1] - 5000) // 2
    x = x[..., start:start + 5000].double().numpy()
    b, a = iirnotch(50, 30, 500)
    x = filtfilt(b, a, x, axis=-1)
    b, a = butter(N=4, Wn=[0.67, 40], btype="bandpass", fs=500)
    x = filtfilt(b, a, x, axis=-1)
    x = x - np.stack([[medfilt(lead, 201) for lead in rec] for rec in x])
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1e-8)
    plain = copy.deepcopy(module)
    plain.preprocess = False
    with torch.no_grad():
        return plain.eval().features(torch.from_numpy(x).float()).numpy()


def test_ecgfounder_features_on_real_records_equal_the_module_by_hand(converted, few_records):
    """encode_ecg on real PTB-XL records = the bare module on the published input made by hand from
    the stored millivolts: 12 leads in order, 100 -> 500 Hz (linear), 5000 samples, filtered and
    z-scored with scipy as the authors do."""
    enc, _, out = converted
    data = few_records
    m = METHODS.create("checkpoint", path=str(out), encoder="ecgfounder-tiny", device="cpu", seed=0)
    assert list(data.leads) == list(LEADS)
    idx = np.arange(4)
    got = m.encode_ecg(data, idx)
    maps = m.encode_ecg(data, idx, pooled=False)
    assert got.shape == (4, enc.dim) and maps.shape == (4, enc.dim, 20) and np.isfinite(got).all()
    want = founder_by_hand(enc, data.raw(idx).astype(np.float32), data.fs)
    np.testing.assert_allclose(maps, want, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got, want.mean(-1), rtol=1e-3, atol=1e-4)
    rec = m.input_record(data)
    assert rec["reads"] == {"fs": 500.0, "samples": 5000, "leads": list(LEADS), "unit": "mV", "normalisation": "none"}
    grid = m.feature_grid(data.n_samples, data.fs)  # in store time: 256 model samples = 0.512 s
    assert grid["positions"] == 20 and abs(grid["stride_s"] - 0.512) < 1e-9 and abs(grid["centres_s"][0] - 0.256) < 1e-9
