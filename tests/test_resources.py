"""Resource errors users can act on: a full disk (a real small tmpfs, or writes that fail with
ENOSPC), a denied write, CUDA out of memory -> one line naming the path or job and what to do;
what was written stays valid and the same command resumes after the fix."""

from __future__ import annotations

import errno
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.errors import ResourceError, resource_error
from benchmark.results import ResultStore

BASE = [
    "--methods", "random-init", "--protocols", "few-label", "--tasks", "superdiagnostic",
    "--profile", "quick", "--no-progress", "--seeds", "0", "--set", "few_label_modes=linear-probe",
    "--set", "method_settings.encoder=resnet1d-tiny", "--set", "n_boot=20", "--set", "panel_examples=0",
]
KEY = ["method", "seed", "protocol", "mode", "dataset", "task", "label_fraction", "metric", "class"]


def _run(out, cache, fractions):
    return main(["run", *BASE, "--label-fractions", fractions, "--out", str(out), "--cache-dir", str(cache)])


def _rows(out):
    return ResultStore(out).load_rows().sort_values(KEY).reset_index(drop=True)


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", f"tmpfs-{uuid.uuid4().hex[:6]}", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Write a ballast file until the filesystem is full."""
    ballast = folder / "ballast"
    with open(ballast, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return ballast


@pytest.mark.slow
def test_full_disk_is_one_line_and_the_run_resumes(small_tmpfs, tmp_path, session_cache, capsys):
    cache = session_cache
    out = small_tmpfs / "results"
    assert _run(out, cache, "0.1") == 0
    before = _rows(out)
    files_before = {p.name: p.read_bytes() for p in (out / "rows").glob("*.parquet")}
    ballast = _fill(small_tmpfs)
    capsys.readouterr()
    assert _run(out, cache, "0.1,1.0") == 2  # one more job: its write hits the full disk
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: disk full writing '") and str(out) in err and "re-run" in err and "\n" not in err
    pd.testing.assert_frame_equal(_rows(out), before)  # nothing lost
    assert {p.name: p.read_bytes() for p in (out / "rows").glob("*.parquet")} == files_before
    assert not [p for p in out.rglob(".*.tmp")]  # no half-written temp files left behind
    ballast.unlink()
    assert _run(out, cache, "0.1,1.0") == 0
    after = _rows(out)
    assert set(after["label_fraction"]) == {0.1, 1.0}
    pd.testing.assert_frame_equal(after[after["label_fraction"] == 0.1].reset_index(drop=True), before)
    clean = tmp_path / "clean"
    assert _run(clean, cache, "0.1,1.0") == 0
    cols = KEY + ["value", "ci_low", "ci_high", "n"]
    pd.testing.assert_frame_equal(_rows(clean)[cols], after[cols])


def test_enospc_from_any_writer_names_the_file(tmp_path, session_cache, monkeypatch, capsys):
    """Without mount rights: parquet writes fail as a full disk would (pyarrow's message form)."""
    cache = session_cache
    out = tmp_path / "out"
    real = pd.DataFrame.to_parquet

    def full(self, path, *a, **k):
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    assert _run(out, cache, "0.1") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: disk full writing '") and any(f"/{d}/" in err for d in ("rows", "scores", "meta"))
    assert "\n" not in err
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    assert _run(out, cache, "0.1") == 0
    assert len(_rows(out)) > 0


def test_resource_error_messages():
    oom = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2.00 GiB")
    e = resource_error(oom, job="mets seed=0 few-label/fine-tune ptbxl/superdiagnostic 0.1")
    assert isinstance(e, ResourceError) and "out of GPU memory in job 'mets seed=0" in str(e) and "batch" in str(e)
    denied = resource_error(PermissionError(errno.EACCES, "Permission denied", "/x/rows/a.parquet"))
    assert "permission denied writing '/x/rows/a.parquet'" in str(denied)
    assert resource_error(ValueError("x")) is None and resource_error(OSError(errno.ENOENT, "gone")) is None
