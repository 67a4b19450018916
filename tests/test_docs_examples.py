"""The code skeletons of docs/adding.md are real: the dataset skeleton registers, shows in
``list`` and ``data info``, and builds a store from WFDB records written here; the protocol
skeleton registers, shows in ``list``, plans jobs and scores one job on that store."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.protocols import JobContext, MethodTraits
from benchmark.registry import DATASETS, PROTOCOLS

DOC = Path(__file__).resolve().parent.parent / "docs" / "adding.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The doc's python blocks as a plug-in module ``adding_doc_example`` (unregistered after)."""
    blocks = _blocks()
    assert len(blocks) == 3, "docs/adding.md should hold a protocol, a time-point readout and a dataset skeleton"
    mod = tmp_path / "mods" / "adding_doc_example.py"
    mod.parent.mkdir()
    mod.write_text("\n\n".join(blocks))
    monkeypatch.syspath_prepend(str(mod.parent))
    sys.modules.pop("adding_doc_example", None)
    try:
        yield "adding_doc_example"
    finally:
        sys.modules.pop("adding_doc_example", None)
        PROTOCOLS.unregister("nearest-centroid")
        PROTOCOLS.unregister("centre-readout")
        DATASETS.unregister("mydb")


def _write_mydb(root: Path, n: int = 24) -> pd.DataFrame:
    """Single-lead WFDB records at 250 Hz: 'abnormal' ones beat twice as fast (separable)."""
    wfdb = pytest.importorskip("wfdb")
    folder = root / "mydb"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    t = np.arange(0, 12, 1 / 250)
    for i in range(n):
        label = "abnormal" if i % 2 else "normal"
        rate = 2.4 if label == "abnormal" else 1.1
        x = np.sin(2 * np.pi * rate * t) ** 15 + 0.02 * rng.standard_normal(len(t))
        rec = f"r{i:03d}"
        wfdb.wrsamp(rec, fs=250, units=["mV"], sig_name=["MLII"], p_signal=x[:, None], fmt=["16"],
                    write_dir=str(folder))
        split = ["train", "train", "train", "train", "val", "test"][(i // 2) % 6]
        rows.append({"record": rec, "label": label, "patient": f"p{i}", "split": split})
    table = pd.DataFrame(rows)
    table.to_csv(folder / "labels.csv", index=False)
    return table


def test_dataset_skeleton_registers_lists_and_builds(plugin, tmp_path, capsys):
    root = tmp_path / "data"
    table = _write_mydb(root)
    assert main(["list", "datasets", "--json", "--plugin", plugin]) == 0
    listed = json.loads(capsys.readouterr().out)["datasets"]
    assert listed["mydb"]["tasks"] == ["abnormal"] and listed["mydb"]["options"]["subdir"] == "mydb"
    cache = tmp_path / "cache"
    args = ["data", "info", "--datasets", "mydb", "--data-root", str(root), "--cache-dir", str(cache), "--json"]
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out)["mydb"]["_summary"]
    assert s["status"] == "not prepared" and s["records"] == len(table) and s["missing"] == 0
    from benchmark.data.store import prepare

    ds = prepare("mydb", root, cache, progress=False)
    assert len(ds) == len(table) and ds.leads == ("II",)
    assert {k: len(ds.split_indices(k)) for k in ("train", "val", "test")} == table["split"].value_counts().to_dict()
    y, _ = ds.labels("abnormal")
    assert (y.argmax(1) == (table["label"] == "abnormal").to_numpy()).all()
    assert ds.raw(np.arange(2)).shape == (2, 1, 1000)


def test_protocol_skeleton_registers_plans_and_runs(plugin, tmp_path, capsys):
    assert main(["list", "protocols", "--json", "--plugin", plugin]) == 0
    protos = json.loads(capsys.readouterr().out)["protocols"]
    assert list(protos)[-2:] == ["nearest-centroid", "centre-readout"]  # orders 50, 51: last
    from benchmark.data.store import prepare
    from benchmark.protocols import get_protocol

    root = tmp_path / "data"
    _write_mydb(root, n=36)
    ds = prepare("mydb", root, tmp_path / "cache", progress=False)
    proto = get_protocol("nearest-centroid")

    class Ctx:
        cfg = {"few_label_tasks": ["abnormal"], "n_boot": 50}

    jobs = proto.jobs("simclr", 0, MethodTraits(has_text_tower=False, uses_labels=False), Ctx)
    assert [(j.protocol, j.task) for j in jobs] == [("nearest-centroid", "abnormal")]
    job = jobs[0]
    assert proto.applies(job, ds)

    def embed(data, idx):  # spectrum magnitude: a stand-in for a frozen encoder's features
        return np.abs(np.fft.rfft(data.raw(np.asarray(idx))[:, 0, :], axis=1))[:, :60]

    ev = proto.run(job, JobContext(cfg=Ctx.cfg, data=ds, model=None, model_hash="x", embed=embed, progress=False))
    rows = pd.DataFrame(ev.rows)
    auroc = rows[(rows["metric"] == "auroc") & (rows["class"].isin(["", "macro"]) | rows["class"].isna())]
    assert len(auroc) >= 1 and float(auroc["value"].iloc[0]) > 0.9, rows[["metric", "class", "value"]]
    assert set(ev.scores["class"]) == {"normal", "abnormal"}


def test_readout_skeleton_reads_the_features_at_the_centre(plugin, tmp_path, capsys):
    """The time-point protocol asks ``embed`` for the window's centre: a stand-in encoder whose local
    readout sees the beat rate and whose global pool is blind separates the classes only that way."""
    assert main(["list", "protocols", "--json", "--plugin", plugin]) == 0
    from benchmark.data.store import prepare
    from benchmark.protocols import get_protocol

    root = tmp_path / "data"
    _write_mydb(root, n=36)
    ds = prepare("mydb", root, tmp_path / "cache", progress=False)
    proto = get_protocol("centre-readout")
    cfg = {"few_label_tasks": ["abnormal"], "n_boot": 50}
    job = proto.jobs("simclr", 0, MethodTraits(has_text_tower=False, uses_labels=False), type("C", (), {"cfg": cfg}))[0]
    asked = []

    def embed(data, idx, at=None, span=0.0):
        asked.append((at, span))
        x = data.raw(np.asarray(idx))[:, 0, :]
        if at is None:  # the "global pool": blind to the class
            return np.ones((len(x), 8))
        c, h = int(at * data.fs), int(span * data.fs / 2) + 50
        return np.abs(np.fft.rfft(x[:, c - h:c + h], axis=1))[:, :20]

    ev = proto.run(job, JobContext(cfg=cfg, data=ds, model=None, model_hash="x", embed=embed, progress=False))
    assert set(asked) == {(ds.n_samples / ds.fs / 2, 0.5)}
    rows = pd.DataFrame(ev.rows)
    auroc = rows[(rows["metric"] == "auroc") & (rows["class"].isin(["", "macro"]) | rows["class"].isna())]
    assert float(auroc["value"].iloc[0]) > 0.9, rows[["metric", "class", "value"]]
