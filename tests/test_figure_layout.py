"""Layout of the loss-curve and ECG-panel figures: one line per pretraining, every seed, legends
off the data, no clipped lead, lead names off the traces (checked on the drawn artists)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from benchmark.report import figures as F
from benchmark.results import ResultStore


def _history(key, method, seed, n=5, start=3.0, val=True):
    ep = np.arange(n)
    df = pd.DataFrame({"method": method, "method_name": method, "seed": seed, "epoch": ep,
                       "train_loss": start * np.exp(-ep / 3), "pretrain_hash": key, "key": key})
    if val:
        df["val_loss"] = df["train_loss"] + 0.2
    return df


def _train_lines(ax):
    return [ln for ln in ax.get_lines() if str(ln.get_gid() or "").startswith("train:")]


def test_loss_curves_one_line_per_pretraining_every_seed_legend_outside():
    hist = pd.concat([
        _history("aaa", "mets", 0, start=4.0),      # METS seed 0 pretrained for zero-shot ...
        _history("bbb", "mets", 0, start=2.0),      # ... and again for few-label: two pretrainings
        _history("ccc", "mets", 1),
        _history("ddd", "supervised", 0, val=False),
        _history("eee", "supervised", 2, val=False),
    ], ignore_index=True)
    purposes = {"aaa": "zero-shot", "bbb": "few-label 1 %", "ccc": "zero-shot"}
    fig = F.loss_figure(hist, F.MethodStyles(["mets", "supervised"]), purposes)
    try:
        axes = [ax for ax in fig.axes if ax.get_title(loc="left")]
        assert [ax.get_title(loc="left") for ax in axes] == ["mets", "supervised"]
        mets, sup = axes
        assert len(_train_lines(mets)) == 3 and len(_train_lines(sup)) == 2
        for ax in axes:
            for ln in ax.get_lines():
                x = np.asarray(ln.get_xdata(), dtype=float)
                assert (np.diff(x) > 0).all(), f"{ln.get_gid()} jumps back in epochs: {x}"
        labels = {t.get_text() for ax in axes for t in ax.get_legend().get_texts()}
        assert {"zero-shot, seed 0", "few-label 1 %, seed 0", "zero-shot, seed 1"} <= labels
        # every (method, seed) of the history is drawn
        drawn = {(ax.get_title(loc="left"), t.split("seed ")[-1]) for ax in axes
                 for t in (x.get_text() for x in ax.get_legend().get_texts())}
        assert drawn == {("mets", "0"), ("mets", "1"), ("supervised", "0"), ("supervised", "2")}
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        for ax in axes:
            leg, box = ax.get_legend().get_window_extent(r), ax.get_window_extent(r)
            assert leg.x0 >= box.x1 or leg.y1 <= box.y0, "legend overlaps the data area"
            assert leg.x1 <= fig.bbox.x1 + 1, "legend runs off the figure"
    finally:
        F.plt.close(fig)


def test_loss_curves_without_key_split_restarts():
    """Old histories without a key column: a restart at epoch 0 starts a new line."""
    h = pd.concat([_history("x", "simclr", 0), _history("y", "simclr", 0)], ignore_index=True)
    h = h.drop(columns=["pretrain_hash", "key"])
    fig = F.loss_figure(h, F.MethodStyles(["simclr"]))
    try:
        (ax,) = [a for a in fig.axes if a.get_title(loc="left")]
        assert len(_train_lines(ax)) == 2
        for ln in _train_lines(ax):
            assert (np.diff(np.asarray(ln.get_xdata(), float)) > 0).all()
    finally:
        F.plt.close(fig)


def test_pretrain_purposes_from_job_records(tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    jobs = [("h1", "zero-shot", None), ("h1", "few-label", 0.01), ("h1", "few-label", 0.1), ("h2", "few-label", 0.01)]
    for i, (h, proto, fr) in enumerate(jobs):
        (meta / f"j{i}.json").write_text(json.dumps({"pretrain_hash": h, "job": {"protocol": proto,
                                                                               "label_fraction": fr}}))
    (meta / "broken.json").write_text("{")
    assert F.pretrain_purposes([tmp_path]) == {"h1": "few-label 1 %, 10 %; zero-shot", "h2": "few-label 1 %"}


def test_model_loaded_from_cache_brings_its_loss_curve(tmp_path):
    """Why METS seed 0 was missing from results/shared: its model came from the cache, and only
    a pretraining done in this run wrote a history. Now the curve is kept beside the model."""
    from benchmark.engine.runner import Runner

    folder = tmp_path / "cache" / "mets-h0"
    folder.mkdir(parents=True)
    first = SimpleNamespace(store=ResultStore(tmp_path / "run1"))
    Runner._save_history(first, "mets", 0, "h0", [{"epoch": 0, "train_loss": 1.0}, {"epoch": 1, "train_loss": 0.5}],
                         folder)
    later = SimpleNamespace(store=ResultStore(tmp_path / "run2"))
    Runner._recall_history(later, "h0", folder)
    got = later.store.load_history()
    assert list(got["epoch"]) == [0, 1] and set(got["seed"]) == {0} and set(got["pretrain_hash"]) == {"h0"}


def _panel_from_real(data_root, n=2):
    wfdb = pytest.importorskip("wfdb")
    db = pd.read_csv(data_root / "ptb-xl" / "ptbxl_database.csv").head(n)
    sig = np.stack([np.nan_to_num(wfdb.rdrecord(str(data_root / "ptb-xl" / f)).p_signal.T[:, :1000])
                    for f in db["filename_lr"]]).astype(np.float32)
    return sig


@pytest.mark.parametrize("boost", [1.0, 6.0])
def test_ecg_panel_no_lead_clipped_and_labels_off_traces(data_root, boost):
    sig = _panel_from_real(data_root)
    sig[:, F.LEADS.index("V4")] *= boost  # a tall V4 (6x: several mV) must still fit its row
    sig[1, F.LEADS.index("aVR")] = 0.0  # a flat lead still gets its row
    panel = {"signals": sig, "fs": 100, "reports": ["a report", ""], "ids": ["1", "2"],
             "classes": np.asarray(["NORM", "MI"]), "scores": np.array([[0.2, 0.1], [0.0, 0.3]]),
             "labels": np.array([[1, 0], [0, 1]]), "method": np.asarray("mets")}
    fig = F.ecg_figure(panel)
    try:
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        ecg_axes = [ax for ax in fig.axes if any(str(ln.get_gid()).startswith("lead:") for ln in ax.get_lines())]
        assert len(ecg_axes) == 2
        for ax in ecg_axes:
            lo, hi = ax.get_ylim()
            x0, x1 = ax.get_xlim()
            traces = [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("lead:")]
            assert len(traces) == 13  # 12 leads + the rhythm strip
            rows: dict[str, tuple[float, float]] = {}
            for ln in traces:
                y = np.asarray(ln.get_ydata(), float)
                x = np.asarray(ln.get_xdata(), float)
                assert y.min() >= lo and y.max() <= hi, f"{ln.get_gid()} clipped"
                assert x.min() >= x0 and x.max() <= x1 + 1e-9
                row = ln.get_gid().split(":")[1]
                a, b = rows.get(row, (np.inf, -np.inf))
                rows[row] = (min(a, y.min()), max(b, y.max()))
            spans = sorted(rows.values())
            for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
                assert a1 < b0, "two rows of leads overlap"
            pts = np.vstack([ax.transData.transform(np.c_[ln.get_xdata(), ln.get_ydata()]) for ln in traces])
            labels = [t for t in ax.texts if str(t.get_gid()).startswith("label:")]
            assert len(labels) == 13
            for t in labels:
                bb = t.get_window_extent(r)
                inside = ((pts[:, 0] >= bb.x0) & (pts[:, 0] <= bb.x1) & (pts[:, 1] >= bb.y0) & (pts[:, 1] <= bb.y1))
                assert not inside.any(), f"lead label {t.get_text()} crosses a trace"
                assert ax.get_window_extent(r).contains(bb.x0, bb.y0) and ax.get_window_extent(r).contains(bb.x1, bb.y1)
    finally:
        F.plt.close(fig)


def test_loss_curves_name_pretrainings_without_history():
    """A pretraining the job records name but whose history is absent is said in the panel."""
    hist = pd.concat([_history("aaa", "mets", 1), _history("bbb", "simclr", 0)], ignore_index=True)
    purposes = F.Purposes({"aaa": "zero-shot", "zzz": "zero-shot; few-label 1 %"},
                          owners={"aaa": ("mets", "1"), "zzz": ("mets", "0"), "rrr": ("random-init", "0")})
    fig = F.loss_figure(hist, F.MethodStyles(["mets", "simclr"]), purposes)
    try:
        axes = {ax.get_title(loc="left"): ax for ax in fig.axes if ax.get_title(loc="left")}
        assert set(axes) == {"mets", "simclr"}  # random-init never pretrains: no panel
        notes = [t.get_text() for t in axes["mets"].texts]
        assert any("no loss history" in n and "zero-shot; few-label 1 %, seed 0" in n for n in notes)
        assert not axes["simclr"].texts
    finally:
        F.plt.close(fig)


def test_second_results_folder_gets_the_cached_pretraining_loss_curve(tmp_path):
    """End to end: a run into a new results folder that loads METS from the cache still has its
    history (before, results/shared lacked METS seed 0 for exactly this reason)."""
    from benchmark.cli import main
    from tests.test_harness import TINY

    cache = tmp_path / "cache"
    args = ["run", "--methods", "mets[lm=tfidf]", "--protocols", "zero-shot", "--tasks", "superdiagnostic",
            "--cache-dir", str(cache), *TINY]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    first = ResultStore(tmp_path / "a").load_history()
    assert len(first) and first["pretrain_hash"].nunique() == 1
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    second = ResultStore(tmp_path / "b").load_history()
    pd.testing.assert_frame_equal(first.reset_index(drop=True), second.reset_index(drop=True))
