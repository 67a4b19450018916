"""``run --workers N`` on Dask's real local cluster: the same rows as a single-process run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.results import ResultStore

pytest.importorskip("distributed")

ARGS = [
    "--methods", "mets[lm=tfidf],simclr", "--protocols", "zero-shot,few-label", "--tasks", "superdiagnostic",
    "--label-fractions", "0.1", "--profile", "quick", "--no-progress", "--seeds", "0",
    "--set", "method_settings.encoder=resnet1d-tiny", "--set", "method_settings.epochs=1",
    "--set", "n_boot=30", "--set", "finetune_epochs=1", "--set", "panel_examples=0",
    "--set", "method_settings.max_steps_per_epoch=3",
]
KEY = ["method", "seed", "protocol", "mode", "dataset", "task", "label_fraction", "metric", "class"]
NUMBERS = ["value", "ci_low", "ci_high", "n", "n_pos", "n_classes", "note"]


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_two_dask_workers_give_the_rows_of_one_process(tmp_path):
    assert main(["run", *ARGS, "--out", str(tmp_path / "one"), "--cache-dir", str(tmp_path / "c1")]) == 0
    assert main(["run", *ARGS, "--out", str(tmp_path / "two"), "--cache-dir", str(tmp_path / "c2"),
                 "--workers", "2"]) == 0
    one = ResultStore(tmp_path / "one").load_rows().sort_values(KEY).reset_index(drop=True)
    two = ResultStore(tmp_path / "two").load_rows().sort_values(KEY).reset_index(drop=True)
    assert len(one) > 0 and set(one["mode"]) == {"zero-shot", "linear-probe", "fine-tune"}
    pd.testing.assert_frame_equal(one[KEY + NUMBERS], two[KEY + NUMBERS])  # bit for bit
    assert two["run_id"].nunique() == 1  # one invocation, however many workers
    # per-example scores too
    for jid in one["job_id"].unique():
        a = ResultStore(tmp_path / "one").load_scores(jid)
        b = ResultStore(tmp_path / "two").load_scores(jid)
        np.testing.assert_array_equal(a["score"].to_numpy(), b["score"].to_numpy())
    # a re-run with workers finds everything done
    assert main(["run", *ARGS, "--out", str(tmp_path / "two"), "--cache-dir", str(tmp_path / "c2"),
                 "--workers", "2"]) == 0
    assert len(ResultStore(tmp_path / "two").load_rows()) == len(two)
