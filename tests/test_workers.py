"""``run --workers N`` on Dask's real local cluster and ``--cluster slurm`` on a real SLURM: the
same rows as a single-process run. The SLURM test skips where there is no SLURM (start a one-node
SLURM with ``scripts/slurm-single-node.sh``); the fast tests fake ``sbatch``/``squeue``/``scancel``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.errors import UserError
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


def _same_rows(a: Path, b: Path) -> pd.DataFrame:
    one = ResultStore(a).load_rows().sort_values(KEY).reset_index(drop=True)
    two = ResultStore(b).load_rows().sort_values(KEY).reset_index(drop=True)
    assert len(one) > 0
    pd.testing.assert_frame_equal(one[KEY + NUMBERS], two[KEY + NUMBERS])  # bit for bit
    for jid in one["job_id"].unique():
        np.testing.assert_array_equal(ResultStore(a).load_scores(jid)["score"].to_numpy(),
                                      ResultStore(b).load_scores(jid)["score"].to_numpy())
    return two


def _idle_local_slurm_node() -> str | None:
    """Why the real SLURM test cannot run here (None: it can)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM here (sinfo/sbatch not on PATH; scripts/slurm-single-node.sh starts a one-node SLURM)"
    try:
        lines = subprocess.run(["sinfo", "-h", "-N", "-o", "%n %T"], capture_output=True, text=True,
                               timeout=30).stdout.splitlines()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    # exactly 'idle': not drained/draining (IDLE+DRAIN), not 'idle*' (not responding)
    out = [ln.split()[0] for ln in lines if len(ln.split()) == 2 and ln.split()[1] == "idle"]
    if not out:
        return f"no idle SLURM node (sinfo: {'; '.join(lines) or 'no nodes'})"
    if socket.gethostname().split(".")[0] not in out:
        return f"this machine is not an idle SLURM node (idle: {', '.join(out)}); the test's workers use loopback"
    return None


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_two_slurm_jobs_give_the_rows_of_one_process(tmp_path, monkeypatch):
    """The real SLURM path: dask-jobqueue submits two sbatch jobs, each a Dask worker, on this
    machine's SLURM node; the rows equal a single-process run's bit for bit."""
    pytest.importorskip("dask_jobqueue")
    why = _idle_local_slurm_node()
    if why:
        pytest.skip(why)
    import dask
    import torch

    # same torch thread count as this process, so CPU sums add up in the same order
    monkeypatch.setenv("ECGBENCH_WORKER_THREADS", str(torch.get_num_threads()))
    assert main(["run", *ARGS, "--out", str(tmp_path / "one"), "--cache-dir", str(tmp_path / "c1")]) == 0
    # the default partition, one CPU per job (two jobs fit on a 2-CPU node); whatever the user's
    # ~/.config/dask/jobqueue.yaml says about queue, account, extra directives or logs is overridden
    settings = {"cores": 1, "memory": "4GB", "processes": 1, "walltime": "01:00:00", "interface": "lo",
                "local-directory": str(tmp_path / "dask"), "log-directory": None, "queue": None, "account": None,
                "job-cpu": None, "job-mem": None, "job-extra-directives": [], "job-script-prologue": []}
    with dask.config.set({f"jobqueue.slurm.{k}": v for k, v in settings.items()}):
        assert main(["run", *ARGS, "--out", str(tmp_path / "slurm"), "--cache-dir", str(tmp_path / "c2"),
                     "--cluster", "slurm", "--workers", "2", "--set", "worker_wait_seconds=300"]) == 0
    two = _same_rows(tmp_path / "one", tmp_path / "slurm")
    assert two["run_id"].nunique() == 1
    # two SLURM jobs ran the workers; their logs default to <out>/.slurm/dask-worker-<job id>.err
    assert len(list((tmp_path / "slurm" / ".slurm").glob("dask-worker-*.err"))) == 2


# -- fast: the SLURM path's errors, with fake sbatch/squeue/scancel ----------------------------
def _fake_slurm(tmp_path, monkeypatch, sbatch: str) -> Path:
    """Fake sbatch (body ``sbatch``), squeue (job 99 pending) and scancel first on PATH."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, body in {"sbatch": sbatch, "squeue": 'echo "99 PENDING Resources"',
                       "scancel": f'echo "$@" >> {tmp_path}/scancel.log'}.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    return bin_


@pytest.fixture
def slurm_config():
    pytest.importorskip("dask_jobqueue")
    import dask

    with dask.config.set({"jobqueue.slurm.cores": 4, "jobqueue.slurm.memory": "2GB", "jobqueue.slurm.processes": 2,
                          "jobqueue.slurm.interface": "lo", "jobqueue.slurm.job-script-prologue": ["module load x"]}):
        yield


def test_slurm_without_sbatch_is_one_line_error(tmp_path, monkeypatch, slurm_config):
    from benchmark.engine.clusters import slurm_cluster

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    with pytest.raises(UserError, match="'sbatch' is not on PATH.*slurm-single-node.sh"):
        slurm_cluster(2)


def test_slurm_settings_need_cores_and_memory(monkeypatch):
    pytest.importorskip("dask_jobqueue")
    import dask

    from benchmark.engine.clusters import _slurm_settings

    with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}):
        with pytest.raises(UserError, match="set cores and memory.*jobqueue.yaml"):
            _slurm_settings()


def test_slurm_settings_one_task_per_worker_process(monkeypatch, slurm_config):
    """cores: 4, processes: 2 -> SLURM gets 4 CPUs, Dask two single-threaded workers of 2 torch threads."""
    from benchmark.engine.clusters import _slurm_settings

    monkeypatch.delenv("ECGBENCH_WORKER_THREADS", raising=False)
    kw = _slurm_settings()
    assert (kw["job_cpu"], kw["cores"], kw["processes"]) == (4, 2, 2)
    assert kw["job_script_prologue"][:2] == ["module load x", "export ECGBENCH_WORKER_THREADS=2"]
    assert "export DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE=False" in kw["job_script_prologue"]
    assert kw["scheduler_options"]["dashboard_address"] == ":0"
    monkeypatch.setenv("ECGBENCH_WORKER_THREADS", "3")
    assert "export ECGBENCH_WORKER_THREADS=3" in _slurm_settings()["job_script_prologue"]


def test_slurm_refused_job_is_one_line_error(tmp_path, monkeypatch, slurm_config):
    from benchmark.engine.clusters import slurm_cluster

    _fake_slurm(tmp_path, monkeypatch, 'echo "sbatch: error: invalid partition specified: gpu" >&2; exit 1')
    with pytest.raises(UserError, match="SLURM refuses the worker job .error: invalid partition specified: gpu.*"
                                        "jobqueue.yaml") as err:
        slurm_cluster(2)
    assert "\n" not in str(err.value)


def test_slurm_jobs_that_never_start_end_with_a_timeout_error(tmp_path, monkeypatch, slurm_config):
    """Jobs queued but never running: after worker_wait_seconds one line naming the jobs' state."""
    from distributed import Client

    from benchmark.engine.clusters import slurm_cluster, wait_for_first_worker

    _fake_slurm(tmp_path, monkeypatch, 'echo "Submitted batch job 99"')
    cluster = slurm_cluster(1)
    client = Client(cluster)
    try:
        assert "--cpus-per-task=4" in cluster.job_script() and "--nthreads 1" in cluster.job_script()
        with pytest.raises(UserError, match=r"no Dask worker joined within 1 s: SLURM job\(s\) 99 "
                                            r"\(PENDING, Resources\).*worker_wait_seconds"):
            wait_for_first_worker(client, cluster, 1.0, "slurm")
    finally:
        client.close()
        cluster.close()
    assert "99" in (tmp_path / "scancel.log").read_text()  # the queued job is cancelled
