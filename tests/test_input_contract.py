"""Every encoder declares its input contract (rate, length, leads, unit, normalisation); the data
side adapts the store's batches to it in one place, ``list`` shows it and a run records it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.data.adapt import InputContract, adapt, lead_coverage, lead_stats
from benchmark.data.base import LEADS
from benchmark.encoders import AdaptedEncoder, ResNet1d, with_contract
from benchmark.errors import UserError
from benchmark.registry import ECG_ENCODERS, METHODS, load_builtin_plugins, register_ecg_encoder

load_builtin_plugins()


class RawMicrovolt500(ResNet1d):
    """A model trained elsewhere on 500 Hz, 4 s, six limb leads, in microvolts, each input z-scored."""

    input_contract = InputContract(fs=500, samples=2000, leads=("I", "II", "III", "aVR", "aVL", "aVF"),
                                   unit="uV", normalisation="record")


@pytest.fixture(scope="module")
def limb_encoder():
    name = "test-limb-500hz"
    if name not in ECG_ENCODERS.list("*"):
        @register_ecg_encoder(name)
        def _make(*, in_leads: int = 6) -> RawMicrovolt500:
            """Test encoder: resnet1d-tiny layout on a declared 500 Hz / 4 s / limb-lead / uV / record contract."""
            return RawMicrovolt500(in_leads=6, width=16, layers=(1, 1, 1, 1))
    return name


def _stats(data):
    return lead_stats(data.mean, data.std, data.lead_idx)


def test_amplitude_conventions_on_real_records(ptbxl_set):
    """The store's z-scoring is undone exactly: raw mV (and x1000 in uV) equal the stored
    signals; record normalisation z-scores each lead of each input over the samples the model sees."""
    idx = ptbxl_set.split_indices("test")[:5]
    x = ptbxl_set.batch(idx, torch.device("cpu"))
    raw = np.zeros((len(idx), len(LEADS), ptbxl_set.n_samples), dtype=np.float32)
    raw[:, ptbxl_set.lead_idx] = ptbxl_set.raw(idx)
    mv = adapt(x, ptbxl_set.fs, InputContract(normalisation="none"), _stats(ptbxl_set)).numpy()
    np.testing.assert_allclose(mv, raw, rtol=1e-4, atol=1e-4)
    uv = adapt(x, ptbxl_set.fs, InputContract(unit="uV", normalisation="none"), _stats(ptbxl_set)).numpy()
    np.testing.assert_allclose(uv, raw * 1000, rtol=1e-4, atol=0.1)
    rec = adapt(x, ptbxl_set.fs, InputContract(fs=500, samples=2000, normalisation="record"), _stats(ptbxl_set))
    assert rec.shape == (len(idx), 12, 2000)
    np.testing.assert_allclose(rec.mean(-1).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(rec.std(-1, unbiased=False).numpy(), 1, atol=1e-3)
    assert adapt(x, ptbxl_set.fs, InputContract()) is x  # the store's own convention: untouched
    with pytest.raises(RuntimeError, match="needs the store's statistics"):
        adapt(x, ptbxl_set.fs, InputContract(normalisation="none"))


def test_a_declared_contract_is_applied_by_every_method(limb_encoder, ptbxl_set):
    """An encoder that declares another input is wrapped by the method itself: its features equal
    the bare module run on the hand-adapted batch (limb leads, 500 Hz, centre 4 s, uV, z-scored)."""
    m = METHODS.create("random-init", encoder=limb_encoder, device="cpu", seed=0)
    assert isinstance(m.encoder, AdaptedEncoder) and m.encoder.input_contract.unit == "uV"
    idx = ptbxl_set.split_indices("val")[:4]
    x = ptbxl_set.batch(idx, torch.device("cpu"))
    mean, std = _stats(ptbxl_set)
    by_hand = (x * torch.from_numpy(std)[None, :, None] + torch.from_numpy(mean)[None, :, None]) * 1000
    by_hand = by_hand[:, [LEADS.index(lead) for lead in RawMicrovolt500.input_contract.leads]]
    by_hand = torch.nn.functional.interpolate(by_hand, size=5000, mode="linear", align_corners=False)[..., 1500:3500]
    by_hand = (by_hand - by_hand.mean(-1, keepdim=True)) / by_hand.std(-1, keepdim=True, unbiased=False)
    with torch.no_grad():
        want = m.encoder.inner.eval()(by_hand).numpy()
    np.testing.assert_allclose(m.encode_ecg(ptbxl_set, idx), want, rtol=1e-4, atol=1e-4)
    rec = m.input_record(ptbxl_set)
    assert rec["reads"] == {"fs": 500.0, "samples": 2000, "leads": list(RawMicrovolt500.input_contract.leads),
                            "unit": "uV", "normalisation": "record"}
    assert rec["store"]["fs"] == ptbxl_set.fs and rec["dim"] == m.embedding_dim


def test_suite_encoders_take_the_store_as_it_is_and_bad_contracts_fail_first(tmp_path):
    m = METHODS.create("random-init", encoder="resnet1d-tiny", device="cpu", seed=0)
    assert not isinstance(m.encoder, AdaptedEncoder) and m.encoder.input_contract.is_store
    bad = ResNet1d(in_leads=12, width=8, layers=(1, 1, 1, 1))
    bad.input_contract = InputContract(unit="mmHg", normalisation="none")
    with pytest.raises(UserError, match="unknown ResNet1d: input unit 'mmHg'"):
        with_contract(bad)
    with pytest.raises(UserError, match="unknown checkpoint .*input normalisation 'minmax'"):
        METHODS.create("checkpoint", encoder="resnet1d-tiny", device="cpu", path=str(tmp_path / "never-read.pt"),
                       input_norm="minmax")
    cov = lead_coverage(InputContract(leads=("II", "V1", "V5")), ("II", "V1"))
    assert cov == {"read": ["II", "V1"], "zero": ["V5"]}


def test_list_shows_and_a_run_records_the_contract(limb_encoder, data_root, session_cache, tmp_path, capsys):
    assert main(["list", "encoders", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["encoders"]
    assert all(isinstance(v.get("features"), dict) and "input" in v["features"] for v in listed.values()), listed
    assert listed[limb_encoder]["features"]["input"]["fs"] == 500
    assert main(["list", "encoders"]) == 0
    assert "input: 500 Hz, 2000 samples, leads I|II|III|aVR|aVL|aVF" in capsys.readouterr().out
    out = tmp_path / "run"
    rc = main(["run", "--profile", "quick", "--methods", f"random-init[encoder={limb_encoder}]", "--protocols",
               "cross-dataset", "--set", "cross_datasets=mitbih", "--set", "cross_max_eval=300", "--seeds", "0",
               "--data-root", str(data_root), "--cache-dir", str(session_cache), "--out", str(out), "--no-progress"])
    assert rc == 0
    metas = [json.loads(p.read_text()) for p in (out / "meta").glob("*.json")]
    assert metas
    for meta in metas:
        enc = meta["encoder"]
        assert enc["reads"]["fs"] == 500 and enc["reads"]["samples"] == 2000
        assert set(enc["leads_zero"]) == set(RawMicrovolt500.input_contract.leads) - set(enc["store"]["leads"])


def test_the_documented_override_builds_that_contract(ptbxl_set, tmp_path):
    """docs/checkpoints.md's contract-override spec, on a file the test writes: the method reads
    exactly the declared input from the real store."""
    import re
    from pathlib import Path

    from benchmark.checkpoints import export
    from benchmark.encoders import create_encoder

    doc = (Path(__file__).resolve().parent.parent / "docs" / "checkpoints.md").read_text()
    spec = re.search(r'--methods "(checkpoint\[[^"]*input_norm=record[^"]*)"', doc).group(1)
    leads = re.search(r"input_leads=([A-Za-z0-9|]+)", spec).group(1).split("|")
    torch.manual_seed(0)
    path = export(create_encoder("resnet1d-tiny", in_leads=len(leads)), tmp_path / "w.safetensors", "safetensors")
    spec = spec.replace("w.safetensors", str(path)).replace("resnet1d-18", "resnet1d-tiny")
    m = METHODS.create(spec, device="cpu", seed=0)
    z = m.encode_ecg(ptbxl_set, ptbxl_set.split_indices("test")[:3])
    assert z.shape == (3, m.embedding_dim) and np.isfinite(z).all()
    reads = m.input_record(ptbxl_set)["reads"]
    assert reads == {"fs": 500.0, "samples": 2500, "leads": leads, "unit": "mV", "normalisation": "record"}


class OnlyAVR(ResNet1d):
    input_contract = InputContract(leads=("aVR",))


def test_a_model_whose_leads_the_dataset_lacks_is_refused_in_one_line(data_root, session_cache, tmp_path, capsys):
    name = "test-avr-only"
    if name not in ECG_ENCODERS.list("*"):
        @register_ecg_encoder(name)
        def _make(*, in_leads: int = 1) -> OnlyAVR:
            """Test encoder reading aVR alone (MIT-BIH records no aVR)."""
            return OnlyAVR(in_leads=1, width=8, layers=(1, 1, 1, 1))
    rc = main(["run", "--profile", "quick", "--methods", f"random-init[encoder={name}]", "--protocols",
               "cross-dataset", "--set", "cross_datasets=mitbih", "--seeds", "0", "--data-root", str(data_root),
               "--cache-dir", str(session_cache), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0 and "reads leads ['aVR'], none of which dataset 'mitbih' records" in err, err
    assert "Traceback" not in err
    assert not list((tmp_path / "run").glob("rows/*"))
