"""Cooperative claims: one live holder per job or pretraining, expiry after a crash, heartbeat
renewal; and the real entry point with concurrent workers on one results folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.engine import claims as claims_mod
from benchmark.engine.claims import Claims
from benchmark.results import ResultStore

REPO = Path(__file__).resolve().parent.parent


def test_a_claim_is_exclusive_until_released(tmp_path):
    c = Claims(tmp_path, ttl=30)
    first = c.try_claim("job-a")
    assert first is not None
    assert c.try_claim("job-a") is not None  # the same process may re-enter its own claim
    other_owner = claims_mod._OWNER
    try:
        claims_mod._OWNER = "elsewhere:1:deadbeef"  # another worker
        assert c.try_claim("job-a") is None
        assert c.try_claim("job-b") is not None  # other work is free
    finally:
        claims_mod._OWNER = other_owner
    first.release()
    assert not (tmp_path / "job-a.lease").exists()
    claims_mod._OWNER = "elsewhere:1:deadbeef"
    try:
        assert c.try_claim("job-a") is not None
    finally:
        claims_mod._OWNER = other_owner


def test_a_dead_workers_lease_expires_and_is_taken_over(tmp_path, caplog):
    c = Claims(tmp_path, ttl=0.5)
    lease = tmp_path / "job.lease"
    lease.write_text(json.dumps({"owner": "gone-host:4242:cafe", "expires": time.time() + 0.5}))
    assert c.try_claim("job") is None
    time.sleep(0.7)
    taken = c.try_claim("job")
    assert taken is not None and json.loads(lease.read_text())["owner"] == claims_mod.owner_id()
    assert any("expired" in r.getMessage() for r in caplog.records)
    taken.release()


def test_heartbeat_keeps_a_long_job_claimed(tmp_path):
    c = Claims(tmp_path, ttl=0.4)
    held = c.try_claim("long")
    saved = claims_mod._OWNER
    try:
        time.sleep(1.2)  # three TTLs: only the heartbeat keeps it alive
        claims_mod._OWNER = "elsewhere:1:beef"
        assert c.try_claim("long") is None
    finally:
        claims_mod._OWNER = saved
        held.release()


def test_unreadable_lease_counts_as_expired(tmp_path):
    (tmp_path / "x.lease").write_text("{not json")
    got = Claims(tmp_path, ttl=5).try_claim("x")
    assert got is not None
    got.release()


# -- the real entry point, several processes ------------------------------------------------------
TINY = [
    "--profile", "quick", "--no-progress", "--seeds", "0", "--tasks", "superdiagnostic",
    "--set", "method_settings.encoder=resnet1d-tiny", "--set", "method_settings.epochs=2",
    "--set", "n_boot=20", "--set", "finetune_epochs=1", "--set", "panel_examples=0",
    "--set", "lease_seconds=6", "--set", "method_settings.max_steps_per_epoch=3",
]


def _cmd(out, cache, methods, extra=()):
    return [sys.executable, "-m", "benchmark", "run", "--methods", methods, "--protocols", "few-label",
            "--label-fractions", "0.1,1.0", *TINY, "--out", str(out), "--cache-dir", str(cache), *extra]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _ran(log: str) -> list[str]:
    """Job labels a process ran to the end, from its log ('finished <label>'; a job started and then
    put back because its pretraining runs elsewhere logs its start twice but finishes once)."""
    return re.findall(r"INFO benchmark\.run: finished (.+)$", log, flags=re.M)


KEY = ["method", "seed", "protocol", "mode", "dataset", "task", "label_fraction", "metric", "class"]


def _rows(out):
    return ResultStore(out).load_rows().sort_values(KEY).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_two_concurrent_runs_on_one_folder_run_each_job_once(tmp_path, data_root):
    cache = tmp_path / "cache"
    # build the prepared store first, so both processes start working at once
    subprocess.run([sys.executable, "-m", "benchmark", "data", "prepare", "--data-root", str(data_root),
                    "--cache-dir", str(cache)], check=True, env=_env(), cwd=REPO, capture_output=True)
    out = tmp_path / "out"
    procs = [subprocess.Popen(_cmd(out, cache, "simclr,random-init"), env=_env(), cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    try:
        logs = [p.communicate(timeout=2400)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], logs
    ran = _ran(logs[0]) + _ran(logs[1])
    planned = subprocess.run(_cmd(out, cache, "simclr,random-init", ["--dry-run", "--list-jobs"]), env=_env(),
                             cwd=REPO, text=True, capture_output=True, check=True).stdout
    planned = [p.strip() for p in planned.split("\njobs:\n", 1)[1].split("\n") if p.strip()]  # the list after the table
    assert sorted(ran) == sorted(planned)  # every job exactly once, over both processes
    assert _ran(logs[0]) and _ran(logs[1])  # ... and really shared: each process ran some of them
    pretrainings = sum(len(re.findall(r"INFO benchmark.run: pretraining simclr seed=0 \(", log)) for log in logs)
    assert pretrainings == 1
    assert len(list((out / "meta").glob("*.json"))) == len(planned)
    assert not list((out / ".claims").glob("*.lease"))  # every claim released


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_worker_killed_mid_pretraining_is_finished_by_another_with_identical_results(tmp_path, data_root):
    cache_a, cache_b = tmp_path / "ca", tmp_path / "cb"
    methods = "simclr"
    extra = ["--set", "method_settings.epochs=6", "--set", "few_label_modes=linear-probe"]
    subprocess.run(_cmd(tmp_path / "a", cache_a, methods, extra), check=True, env=_env(), cwd=REPO, capture_output=True)
    victim = subprocess.Popen(_cmd(tmp_path / "b", cache_b, methods, extra), env=_env(), cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = cache_b / "pretrained"
    deadline = time.time() + 1200
    try:
        while time.time() < deadline and not list(ckpts.glob("*/checkpoints/last.pt")):
            time.sleep(0.1)
    finally:
        os.kill(victim.pid, signal.SIGKILL)  # mid-pretraining: its leases stay behind
        victim.wait()
    assert list(ckpts.glob("*/checkpoints/last.pt")), "the victim never wrote an epoch checkpoint"
    assert list(ckpts.glob("*/pretrain.lease")), "the killed worker held the pretraining claim"
    rescuer = subprocess.run(_cmd(tmp_path / "b", cache_b, methods, extra), env=_env(), cwd=REPO, text=True,
                             capture_output=True)
    assert rescuer.returncode == 0, rescuer.stdout + rescuer.stderr
    assert "expired" in rescuer.stderr and "resumed from" in rescuer.stderr
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a["value"].to_numpy(float), b["value"].to_numpy(float))
    np.testing.assert_array_equal(a["ci_low"].to_numpy(float), b["ci_low"].to_numpy(float))
