"""The frozen-evaluation heads: attention pooling finds the one time step that carries the class
(where the mean over time cannot), the MLP fits a non-linear boundary, and both run as few-label
modes on real PTB-XL through the memoised feature API."""

from __future__ import annotations

import json

import numpy as np

from benchmark.cli import main
from benchmark.protocols.heads import fit_head
from benchmark.results import ResultStore
from benchmark.stats.metrics import macro_auroc


def _onehot(labels, n=2):
    y = np.zeros((len(labels), n), np.float32)
    y[np.arange(len(labels)), labels] = 1
    return y


def test_attention_pooling_reads_the_informative_time_step():
    """Class = sign of channel 0 at one random time step per example, the other steps noise with a
    mean that cancels it: the time mean says nothing, attention to the flagged step says all."""
    rng = np.random.default_rng(0)
    n, d, t = 1200, 8, 12
    labels = rng.integers(0, 2, n)
    z = rng.normal(size=(n, d, t)).astype(np.float32)
    where = rng.integers(0, t, n)
    z[np.arange(n), 1, where] = 6.0  # channel 1 flags the step that carries the label
    z[np.arange(n), 0, where] = np.where(labels == 1, 3.0, -3.0)
    z[:, 0, :] -= z[:, 0, :].mean(axis=1, keepdims=True)  # the mean over time is 0 for every example
    y = _onehot(labels)
    tr, va, te = slice(0, 800), slice(800, 1000), slice(1000, None)
    att, info = fit_head("attention-probe", z[tr], y[tr], z[va], y[va], multilabel=False, seed=0, epochs=60)
    assert macro_auroc(y[te], att(z[te])) > 0.95, info
    mean = z.mean(axis=2)
    mlp, _ = fit_head("mlp-probe", mean[tr], y[tr], mean[va], y[va], multilabel=False, seed=0, epochs=60)
    assert macro_auroc(y[te], mlp(mean[te])) < 0.65  # the pooled features cannot carry it


def test_mlp_fits_a_boundary_a_linear_head_cannot():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(1500, 2)).astype(np.float32)
    labels = (z[:, 0] * z[:, 1] > 0).astype(int)  # XOR of the signs
    y = _onehot(labels)
    mlp, _ = fit_head("mlp-probe", z[:1000], y[:1000], z[1000:1250], y[1000:1250], multilabel=False, seed=0, epochs=200,
                      hidden=32, lr=1e-2)
    assert macro_auroc(y[1250:], mlp(z[1250:])) > 0.9


def test_heads_run_as_few_label_modes_on_real_ptbxl(tmp_path, data_root, session_cache):
    out = tmp_path / "out"
    rc = main(["run", "--methods", "random-init", "--protocols", "few-label", "--tasks", "superdiagnostic",
               "--label-fractions", "1.0", "--profile", "quick", "--seeds", "0", "--no-progress",
               "--data-root", str(data_root), "--cache-dir", str(session_cache), "--out", str(out),
               "--set", "method_settings.encoder=resnet1d-tiny", "--set", "n_boot=20", "--set", "probe_epochs=5",
               "--set", "few_label_modes=linear-probe,mlp-probe,attention-probe"])
    assert rc == 0
    rows = ResultStore(out).load_rows()
    macro = rows[(rows.metric == "auroc") & (rows["class"] == "")].set_index("mode")["value"]
    assert set(macro.index) == {"linear-probe", "mlp-probe", "attention-probe"}
    assert (macro > 0.55).all(), macro  # every head learns something from the frozen random features


def test_class_weight_moves_the_head_towards_the_rare_class():
    """Overlapping classes, 95:5: unweighted, the head rarely calls the rare class; weighted
    inversely to the counts (the beat-level protocol's loss), it finds most of them."""
    rng = np.random.default_rng(2)
    labels = (rng.random(4000) < 0.05).astype(int)
    z = (rng.normal(size=(4000, 4)) + labels[:, None] * 1.2).astype(np.float32)
    y = _onehot(labels)
    recall = {}
    for name, cw in (("plain", None), ("weighted", np.array([4000 / (2 * (labels == 0).sum()),
                                                            4000 / (2 * (labels == 1).sum())]))):
        head, _ = fit_head("mlp-probe", z[:3000], y[:3000], z[3000:3500], y[3000:3500], multilabel=False, seed=0,
                           epochs=30, hidden=16, class_weight=cw)
        pred = head(z[3500:]).argmax(axis=1)
        recall[name] = float((pred[labels[3500:] == 1] == 1).mean())
    assert recall["weighted"] > recall["plain"] + 0.3, recall


def test_heads_run_in_the_cross_dataset_protocol(tmp_path, data_root, session_cache):
    """MIT-BIH (beat-level: readout + RR for the MLP, the beat-centred map for attention, fixed
    rule) and CinC 2017 (capped training set), for a learnt encoder and the de Chazal features;
    an attention head over per-beat hand features is not planned."""
    out = tmp_path / "cross"
    rc = main(["run", "--methods", "random-init,dechazal", "--protocols", "cross-dataset", "--profile", "quick",
               "--seeds", "0", "--no-progress", "--data-root", str(data_root), "--cache-dir", str(session_cache),
               "--out", str(out), "--set", "method_settings.encoder=resnet1d-tiny", "--set", "n_boot=20",
               "--set", "probe_epochs=5", "--set", "cross_max_train=300", "--set", "cross_max_eval=300",
               "--set", "cross_datasets=mitbih,cinc2017",
               "--set", "cross_modes=linear-probe,mlp-probe,attention-probe"])
    assert rc == 0
    rows = ResultStore(out).load_rows()
    macro = rows[(rows.metric == "auroc") & (rows["class"] == "")]
    got = set(zip(macro.method, macro.dataset, macro["mode"]))
    for ds in ("mitbih", "cinc2017"):
        assert {("random-init", ds, m) for m in ("linear-probe", "mlp-probe", "attention-probe")} <= got
    assert ("dechazal", "mitbih", "mlp-probe") in got and ("dechazal", "mitbih", "attention-probe") not in got
    metas = [json.loads(p.read_text()) for p in (out / "meta").glob("*.json")]
    beat_heads = [m for m in metas if m["job"]["dataset"] == "mitbih" and m["job"]["mode"].endswith("-probe")
                  and m["job"]["mode"] != "linear-probe"]
    assert len(beat_heads) == 3 and all("beat_level" in m["info"] and "input" in m["info"] for m in beat_heads)
