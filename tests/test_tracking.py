"""``--log tensorboard|mlflow``: the real ``run`` and ``tune`` entry points at toy scale on the shared
data, read back from the local stores with the trackers' own readers (TensorBoard's
EventAccumulator, MLflow's client on the default SQLite store): per-epoch losses, lr and
throughput; every result row as a metric with the value in rows/*.parquet; the variant, seed and
config hash as parameters; one tracked run per trial in ``tune``."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.results import ResultStore

EPOCHS = 2
TINY = ["--profile", "quick", "--no-progress", "--seeds", "0", "--device", "cpu",
        "--methods", "mets[lm=tfidf]", "--protocols", "zero-shot", "--tasks", "superdiagnostic",
        "--set", "method_settings.encoder=resnet1d-tiny", "--set", f"method_settings.epochs={EPOCHS}",
        "--set", "method_settings.max_steps_per_epoch=2", "--set", "method_settings.batch_size=32",
        "--set", "n_boot=20", "--set", "panel_examples=0"]


def _cache(tmp_path, session_cache) -> Path:
    """A fresh cache (so the encoder really pretrains) sharing the session's prepared stores."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (session_cache / "stores").mkdir(exist_ok=True)
    os.symlink(session_cache / "stores", cache / "stores")
    return cache


def _expected_rows(out):
    from benchmark.engine.tracking import result_metrics

    rows = ResultStore(out).load_rows()
    assert len(rows) > 10
    return rows, result_metrics(rows.to_dict("records"))


def _run_hash(out) -> str:
    """The tracked run's config hash, recomputed from the run's recorded config.yaml: it covers
    every setting of the variant (later settings included), while a row's hash leaves out the
    later settings that cannot change its job (a zero-shot row ignores ``beat_sn_stage``)."""
    import yaml

    from benchmark.engine.runner import config_hash

    h = config_hash(yaml.safe_load((out / "config.yaml").read_text()), "mets[lm=tfidf]")
    assert len(h) >= 8
    return h


def _check_tensorboard(out):
    """One tracked run with every pretraining epoch and every result row of ``out`` as scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted((out / "tensorboard").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("mets_lm=tfidf_seed=0")
    acc = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for k in ("train_loss", "val_loss", "lr", "seconds", "ecgs_per_s"):
        ev = acc.Scalars(f"pretrain/{k}")
        assert [e.step for e in ev] == list(range(EPOCHS)) and all(math.isfinite(e.value) for e in ev), k
    assert all(e.value > 0 for e in acc.Scalars("pretrain/ecgs_per_s"))
    rows, expected = _expected_rows(out)
    assert set(expected) <= tags
    for name, value in expected.items():
        assert acc.Scalars(name)[-1].value == pytest.approx(value, rel=1e-6, abs=1e-7), name
    params = acc.Tensors("params/text_summary")[0].tensor_proto.string_val[0].decode()
    assert f"| config_hash | {_run_hash(out)} |" in params
    assert "| seed | 0 |" in params and "| method | mets[lm=tfidf] |" in params


def test_run_logs_to_tensorboard(tmp_path, data_root, session_cache, capsys):
    pytest.importorskip("tensorboard", reason="--log tensorboard needs the tracking extra")
    out = tmp_path / "res"
    assert main(["run", *TINY, "--out", str(out), "--data-root", str(data_root),
                 "--cache-dir", str(_cache(tmp_path, session_cache)), "--log", "tensorboard"]) == 0
    assert f"tensorboard --logdir {out / 'tensorboard'}" in capsys.readouterr().out
    _check_tensorboard(out)


def test_dask_workers_log_the_same_metrics_through_the_submitting_process(tmp_path, data_root, session_cache):
    """--workers: the workers record their epochs and result metrics; the submitting process
    replays them into its one tracker (workers never open TensorBoard/MLflow themselves). With a
    few-label fine-tune in the grid, its epochs are logged too, one step per epoch it ran."""
    pytest.importorskip("tensorboard", reason="--log tensorboard needs the tracking extra")
    pytest.importorskip("distributed", reason="--workers needs the workers extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "res"
    args = [a if a != "zero-shot" else "zero-shot,few-label" for a in TINY]
    assert main(["run", *args, "--out", str(out), "--data-root", str(data_root), "--workers", "2",
                 "--label-fractions", "0.1", "--set", "few_label_modes=fine-tune", "--set", "finetune_epochs=2",
                 "--cache-dir", str(_cache(tmp_path, session_cache)), "--log", "tensorboard"]) == 0
    _check_tensorboard(out)
    store = ResultStore(out)
    (jid,) = [j for j in store.done_jobs() if store.load_meta(j)["job"]["mode"] == "fine-tune"]
    epochs = store.load_meta(jid)["info"]["epochs_run"]
    acc = EventAccumulator(str(next((out / "tensorboard").iterdir())), size_guidance={"scalars": 0})
    acc.Reload()
    for k in ("train_loss", "val_loss", "lr"):
        ev = acc.Scalars(f"finetune/few-label/ptbxl/superdiagnostic/0.1/{k}")
        assert [e.step for e in ev] == list(range(epochs)) and all(math.isfinite(e.value) for e in ev), k


def test_run_logs_to_mlflow(tmp_path, data_root, session_cache, capsys):
    pytest.importorskip("mlflow", reason="--log mlflow needs the tracking extra")
    from mlflow.tracking import MlflowClient

    out = tmp_path / "res"
    cache = _cache(tmp_path, session_cache)
    assert main(["run", *TINY, "--out", str(out), "--data-root", str(data_root), "--cache-dir", str(cache),
                 "--log", "mlflow"]) == 0
    uri = f"sqlite:///{out.resolve() / 'mlflow.db'}"
    assert f"mlflow ui --backend-store-uri {uri}" in capsys.readouterr().out
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(out.name)
    (run,) = client.search_runs([exp.experiment_id])
    rows, expected = _expected_rows(out)
    assert run.info.status == "FINISHED" and run.info.run_name == "mets[lm=tfidf] seed=0"
    p = run.data.params
    assert p["method"] == "mets[lm=tfidf]" and p["seed"] == "0" and p["config_hash"] == _run_hash(out)
    assert p["method_settings.lm"] == "tfidf" and p["method_settings.epochs"] == str(EPOCHS)
    for k in ("train_loss", "val_loss", "lr", "ecgs_per_s"):
        hist = client.get_metric_history(run.info.run_id, f"pretrain/{k}")
        assert sorted(m.step for m in hist) == list(range(EPOCHS)), k
    assert {k: v for k, v in run.data.metrics.items() if not k.startswith("pretrain/")} == pytest.approx(expected)


@pytest.mark.slow
def test_tune_logs_one_mlflow_run_per_trial(tmp_path, data_root, session_cache):
    """tune: one tracked run per trial, in an experiment named after the study (about a minute)."""
    pytest.importorskip("mlflow", reason="--log mlflow needs the tracking extra")
    from mlflow.tracking import MlflowClient

    cache = _cache(tmp_path, session_cache)
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    (tmp_path / "elsewhere").mkdir()
    client = MlflowClient(tracking_uri=uri)
    study_out = tmp_path / "study"
    argv = ["tune", "--method", "mets[lm=tfidf]", "--trials", "2", "--out", str(study_out), "--data-root",
            str(data_root), "--cache-dir", str(cache), "--no-progress", "--pruner", "none", "--sampler-seed", "0",
            "--study", "tiny-study", "--log", "mlflow", "--log-uri", uri, "--device", "cpu",
            "--set", "method_settings.encoder=resnet1d-tiny", "--set", f"method_settings.epochs={EPOCHS}",
            "--set", "method_settings.max_steps_per_epoch=2", "--set", "method_settings.batch_size=32",
            "--space", "lr=1e-4..1e-2:log", "--space", "width=8|16"]
    for fixed in ("temperature=0.1", "proj_dim=32", "weight_decay=1e-4", "report_text=clean",
                  "learnable_temperature=false"):
        argv += ["--space", fixed]
    assert main(argv) == 0
    exp = client.get_experiment_by_name("tiny-study")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.params["trial"] for r in runs) == ["0", "1"]
    import optuna

    study = optuna.load_study(study_name="tiny-study", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study_out / "journal.log"))))
    by_trial = {t.number: t for t in study.trials}
    for r in runs:
        t = by_trial[int(r.data.params["trial"])]
        assert r.info.status == "FINISHED"
        assert float(r.data.params["space.lr"]) == pytest.approx(t.params["lr"], rel=1e-2)
        assert r.data.metrics["objective/val_zero-shot_macro_auroc"] == pytest.approx(t.value)
        val = client.get_metric_history(r.info.run_id, "val/zero-shot_macro_auroc")
        assert sorted(m.step for m in val) == list(range(EPOCHS))
        assert len(client.get_metric_history(r.info.run_id, "pretrain/train_loss")) == EPOCHS


def test_tracker_choices_are_one_line_errors(tmp_path, capsys):
    from benchmark.errors import UserError
    from benchmark.engine.tracking import make_tracker

    assert make_tracker(None, tmp_path) is None
    with pytest.raises(UserError, match="--log-uri needs --log mlflow"):
        make_tracker(None, tmp_path, uri="http://x")
    with pytest.raises(UserError, match="unknown tracker"):
        make_tracker("wandb", tmp_path)
    with pytest.raises(UserError, match="MLflow's"):
        make_tracker("tensorboard", tmp_path, uri="file:./x")
    pytest.importorskip("mlflow")
    with pytest.raises(UserError, match="MLflow tracking URI 'nosuchscheme://x' does not work"):
        make_tracker("mlflow", tmp_path, uri="nosuchscheme://x")


def test_metric_names_are_valid_for_every_tracker():
    from benchmark.engine.tracking import metric_name, result_metrics

    rows = [{"protocol": "zero-shot", "mode": "zero-shot", "dataset": "ptbxl", "task": "form", "label_fraction": float("nan"),
             "metric": "auroc", "class": "PRC(S)", "value": 0.5},
            {"protocol": "few-label", "mode": "linear-probe", "dataset": "ptbxl", "task": "superdiagnostic",
             "label_fraction": 0.1, "metric": "f1", "class": "", "value": 0.25},
            {"protocol": "few-label", "mode": "linear-probe", "dataset": "ptbxl", "task": "superdiagnostic",
             "label_fraction": 0.1, "metric": "auroc", "class": "STTC", "value": float("nan")},
            {"protocol": "cross-dataset", "mode": "linear-probe", "dataset": "mitbih", "task": "aami",
             "label_fraction": 1.0, "metric": "confusion", "class": "N|S", "value": 7}]
    assert result_metrics(rows) == {"zero-shot/zero-shot/ptbxl/form/auroc/PRC_S_": 0.5,
                                    "few-label/linear-probe/ptbxl/superdiagnostic/0.1/f1": 0.25}
    assert metric_name("a b:c/d-e.f_g") == "a b:c/d-e.f_g" and metric_name("x|y(z)") == "x_y_z_"
