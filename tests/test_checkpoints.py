"""Checkpoints as methods, round-tripped through real files: a suite encoder trained on real PTB-XL,
written in every supported format, loads back as ``checkpoint[...]`` and gives the same features
and the same probe rows; renamed, partial and unsafe files get one line each."""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.checkpoints import export, load_into, read_checkpoint
from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.protocols.few_label import run_linear_probe
from benchmark.registry import METHODS, load_builtin_plugins

load_builtin_plugins()
DOC = Path(__file__).resolve().parent.parent / "docs" / "checkpoints.md"
TINY = dict(encoder="resnet1d-tiny", device="cpu")


@pytest.fixture(scope="module")
def trained(ptbxl_set, tmp_path_factory):
    """A SimCLR resnet1d-tiny trained for a few steps, and its encoder in every format."""
    folder = tmp_path_factory.mktemp("ckpt")
    m = METHODS.create("simclr", **TINY, epochs=1, batch_size=16, max_steps_per_epoch=3, seed=0)
    m.pretrain(ptbxl_set, ptbxl_set.split_indices("train")[:64], ptbxl_set.split_indices("val")[:16], progress=False)
    files = {fmt: export(m.encoder, folder / f"enc.{ext}", fmt)
             for fmt, ext in (("state_dict", "pt"), ("safetensors", "safetensors"), ("torchscript", "ts"))}
    hf = folder / "hf-folder"
    hf.mkdir()
    shutil.copy(files["safetensors"], hf / "model.safetensors")
    files["hf"] = hf
    files["suite-save"] = m.save(folder / "method.pt")  # a suite Method.save file: the encoder under 'encoder.'
    return m, files


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors", "torchscript", "hf", "suite-save"])
def test_every_format_gives_the_same_features_and_rows(fmt, trained, ptbxl_set):
    m, files = trained
    key = {"select": "encoder.", "key_map": "encoder.="} if fmt == "suite-save" else {}  # a whole method's file
    loaded = METHODS.create("checkpoint", **TINY, path=str(files[fmt]), **key)
    ev = ptbxl_set.split_indices("test")[:24]
    np.testing.assert_allclose(loaded.encode_ecg(ptbxl_set, ev), m.encode_ecg(ptbxl_set, ev), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loaded.encode_ecg(ptbxl_set, ev, pooled=False), m.encode_ecg(ptbxl_set, ev, pooled=False),
                               rtol=1e-4, atol=1e-5)
    train = ptbxl_set.split_indices("train")[:200]

    def rows(method):
        r = run_linear_probe(lambda d, i: method.encode_ecg(d, i), ptbxl_set, "superdiagnostic", train, Cs=[0.1],
                             max_iter=200, n_boot=20, seed=0, max_eval=120)
        return pd.DataFrame(r.rows).sort_values(["metric", "class"]).reset_index(drop=True)

    a, b = rows(loaded), rows(m)
    assert list(a["metric"]) == list(b["metric"])
    np.testing.assert_allclose(a["value"].to_numpy(float), b["value"].to_numpy(float), atol=1e-3)
    if fmt != "torchscript":
        assert loaded.stats["load"]["missing"] == loaded.stats["load"]["unexpected"] == 0


def test_renamed_partial_and_unsafe_files(trained, tmp_path):
    m, files = trained
    state = {f"backbone.{k}": v for k, v in m.encoder.state_dict().items()}
    torch.save(state, tmp_path / "prefixed.pth")
    with pytest.raises(UserError, match=r"does not fit the encoder: \d+ missing .*\d+ unexpected \(backbone\..*key_map"):
        METHODS.create("checkpoint", **TINY, path=str(tmp_path / "prefixed.pth"))
    ok = METHODS.create("checkpoint", **TINY, path=str(tmp_path / "prefixed.pth"), key_map="backbone.=")
    assert ok.stats["load"]["loaded"] == len(state)

    partial = dict(m.encoder.state_dict())
    dropped = sorted(partial)[0]
    del partial[dropped]
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(UserError, match=rf"1 missing \({re.escape(dropped)}\)"):
        METHODS.create("checkpoint", **TINY, path=str(tmp_path / "partial.pt"))
    loose = METHODS.create("checkpoint", **TINY, path=str(tmp_path / "partial.pt"), strict=False)
    assert loose.stats["load"]["missing"] == 1

    class Evil:  # a pickle that would run code on load
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(UserError, match="cannot read checkpoint .*evil.pt"):
        METHODS.create("checkpoint", **TINY, path=str(tmp_path / "evil.pt"))
    with pytest.raises(UserError, match="does not exist"):
        METHODS.create("checkpoint", **TINY, path=str(tmp_path / "nope.safetensors"))
    with pytest.raises(UserError, match="shape-mismatched"):
        METHODS.create("checkpoint", encoder="resnet1d-10", device="cpu", path=str(files["safetensors"]))


def test_two_files_never_share_a_configuration_hash(trained, tmp_path):
    m, files = trained
    a = METHODS.create("checkpoint", **TINY, path=str(files["safetensors"]))
    other = dict(m.encoder.state_dict())
    k = next(k for k, v in other.items() if v.dtype.is_floating_point)
    other[k] = other[k] + 1
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in other.items()}, str(tmp_path / "other.safetensors"))
    b = METHODS.create("checkpoint", **TINY, path=str(tmp_path / "other.safetensors"))
    assert a.config_hash() != b.config_hash()


def test_the_documented_command_runs(trained, tmp_path, data_root, session_cache):
    """docs/checkpoints.md's `run` command, on the file the test wrote."""
    _, files = trained
    cmd = re.search(r"```bash\n(python -m benchmark run --methods \"checkpoint\[.*?)\n```", DOC.read_text(), re.S).group(1)
    args = cmd.replace("\\\n", " ").split()[3:]  # drop `python -m benchmark`
    args = [a.replace("my_encoder.safetensors", str(files["safetensors"])).replace("resnet1d-18", "resnet1d-tiny")
            .strip('"') for a in args]
    out = tmp_path / "out"
    rc = main([*args, "--out", str(out), "--data-root", str(data_root), "--cache-dir", str(session_cache),
               "--no-progress", "--set", "n_boot=20", "--set", "few_label_modes=linear-probe",
               "--label-fractions", "1.0", "--tasks", "superdiagnostic"])
    assert rc == 0
    from benchmark.results import ResultStore

    rows = ResultStore(out).load_rows()
    assert rows["method"].str.startswith("checkpoint[").all() and (rows["protocol"] == "few-label").all()


def test_a_checkpoint_with_another_contract_is_adapted(ptbxl_set, tmp_path):
    """A model that takes 8 leads at 500 Hz for 5 s, fed the 100 Hz, 10 s, 12-lead store: the
    features equal the inner model run on the hand-adapted batch; a foreign lead is refused first."""
    from benchmark.data.base import LEADS
    from benchmark.encoders import create_encoder

    leads = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    torch.manual_seed(0)
    inner = create_encoder("resnet1d-tiny", in_leads=len(leads)).eval()
    path = export(inner, tmp_path / "eight_leads.safetensors", "safetensors")
    m = METHODS.create("checkpoint", **TINY, path=str(path), input_fs=500, input_samples=2500,
                       input_leads="|".join(leads))
    ev = ptbxl_set.split_indices("test")[:6]
    x = ptbxl_set.batch(ev, torch.device("cpu"))[:, [LEADS.index(lead) for lead in leads], :]
    x = torch.nn.functional.interpolate(x, size=5000, mode="linear", align_corners=False)[..., 1250:3750]
    with torch.no_grad():
        want = inner(x).numpy()
    np.testing.assert_allclose(m.encode_ecg(ptbxl_set, ev), want, rtol=1e-4, atol=1e-5)
    grid = m.feature_grid(ptbxl_set.n_samples, ptbxl_set.fs)  # in store time: 32 model samples = 6.4 store samples
    assert grid["positions"] == inner.n_positions(2500) and abs(grid["stride_s"] - 32 / 500) < 1e-9
    assert abs(grid["centres_s"][0] - 2.5) < 1e-9  # the crop starts 2.5 s into the 10 s window
    with pytest.raises(UserError, match=r"input lead\(s\) \['X1'\] are not among the 12 standard leads"):
        METHODS.create("checkpoint", **TINY, path=str(tmp_path / "not-read.pt"), input_leads="I|X1")
