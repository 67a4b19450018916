"""The shared profile's plan and the MIT-BIH evaluation splits it uses, on the real database."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.config import build_config
from benchmark.engine.runner import Runner
from benchmark.protocols.common import capped_indices


def test_shared_plan_is_seed_major_with_fine_tune_only_where_configured(tmp_path):
    cfg = build_config("shared")
    jobs = Runner(cfg, out=tmp_path / "r", progress=False).plan()
    seeds = [j.seed for j in jobs]
    assert seeds == sorted(seeds) and set(seeds) == {0, 1, 2, 3, 4}
    ft = [j for j in jobs if j.mode == "fine-tune"]
    assert {j.task for j in ft if j.protocol == "few-label"} == set(cfg["finetune_tasks"] or cfg["few_label_tasks"])
    assert {j.dataset for j in ft if j.protocol == "cross-dataset"} == set(cfg["cross_finetune_datasets"])
    probes = [j for j in jobs if j.mode == "linear-probe" and j.protocol == "few-label"]
    assert {j.task for j in probes} == set(cfg["few_label_tasks"])
    zs = [j for j in jobs if j.mode == "zero-shot" and j.dataset == "ptbxl"]
    assert {j.task for j in zs} == {"superdiagnostic", "subdiagnostic", "form", "rhythm"}
    methods = {j.method for j in jobs}
    assert methods == {"mets", "simclr", "clocs", "supervised", "random-init"}
    # every method is evaluated on MIT-BIH AAMI in every mode the profile names
    for m in methods:
        modes = {j.mode for j in jobs if j.method == m and j.dataset == "mitbih"}
        assert {"linear-probe", "fine-tune"} <= modes


@pytest.fixture(scope="module")
def mitbih(data_root, tmp_path_factory):
    from benchmark.data.store import prepare

    return prepare("mitbih", data_root, tmp_path_factory.mktemp("mitbih-cache"), progress=False)


def test_capped_test_split_keeps_every_minority_beat_and_weights_restore_counts(mitbih):
    cap = build_config("shared")["cross_max_eval"]
    y, valid = mitbih.labels("aami")
    full = mitbih.split_indices("test")
    full = full[valid[full]]
    idx, w = capped_indices(mitbih, "aami", "test", cap, seed=12345)
    counts = y[full].sum(axis=0)
    if len(full) <= cap:
        assert w is None and np.array_equal(idx, full)
        return
    assert len(idx) <= cap and set(idx) <= set(full)
    kept = y[idx].sum(axis=0)
    largest = int(np.argmax(counts))
    for c in range(y.shape[1]):
        if c != largest and counts[c] <= cap // y.shape[1]:
            assert kept[c] == counts[c]  # minority classes whole
        assert (w * y[idx, c]).sum() == pytest.approx(counts[c])  # weighted counts = the whole split
    again, _ = capped_indices(mitbih, "aami", "test", cap, seed=12345)
    assert np.array_equal(idx, again)  # fixed seed: every method sees the same test beats
