"""Figures of whole runs: 6 end to end (the quick profile's wall time and where it goes) and 8
workers (``run --workers 1`` vs ``--workers 2``), a mixin of :class:`benchmark.bench.runner.Bench`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from benchmark.bench.table import row
from benchmark.config import build_config
from benchmark.engine.executors import DaskExecutor
from benchmark.engine.runner import Runner

log = logging.getLogger("benchmark.bench")


@contextlib.contextmanager
def _quiet():
    """The harness logs every job at INFO; inside the bench only warnings are shown."""
    lg = logging.getLogger("benchmark.run")
    level = lg.level
    lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lg.setLevel(level)


class RunFigures:
    """Figures 6 and 8 of :class:`~benchmark.bench.runner.Bench` (whole runs in a scratch out/cache dir
    that links the real cache's prepared stores; output: ``rows``, ``raw``)."""

    # -- 6: end to end ------------------------------------------------------------------------
    def end_to_end(self) -> None:
        if self.profile_timings:
            timings = json.loads(Path(self.profile_timings).read_text())
            label, wall = f"quick profile (from {self.profile_timings})", timings["total"]
        else:
            timings, wall, label = self._run_profile()
        self.raw["profile_timings"] = timings
        target = 600.0
        full = not self.quick or self.profile_timings
        self.rows.append(row(
            "6 end to end", f"{label}: wall time", wall, "s", "10 minutes", target, wall / target,
            "<= 1" if full else "(reduced config)", (wall <= target) if full else None,
            f"{timings.get('jobs_run', '?')} jobs, {os.cpu_count()} CPU cores visible",
        ))
        total = float(timings.get("total") or wall)
        notes = {"data": "opening/preparing stores", "pretrain": "pretraining (incl. METS report embedding)",
                 "lm": "frozen LM (part of pretrain/evaluate)", "embed": "encoding ECGs for probes (part of evaluate)",
                 "evaluate": "probes, zero-shot, metrics, bootstrap", "finetune": "fine-tune protocol"}
        for stage in ("data", "pretrain", "lm", "embed", "evaluate", "finetune"):
            if stage in timings:
                self.rows.append(row("6 end to end", f"  stage: {stage}", float(timings[stage]), "s", "run total",
                                      total, float(timings[stage]) / total, "", None, notes[stage]))

    # -- 8: workers ---------------------------------------------------------------------------
    def workers(self) -> None:
        """The same profile through ``run --workers 1`` and ``--workers 2`` (Dask local cluster);
        on CPU also ``--workers 2`` with the cores split between the workers."""
        try:
            import distributed  # noqa: F401  (optional dependency: Dask, only checked for here)
        except ImportError:
            log.warning("bench figure 8 skipped: Dask is not installed (pip install -e '.[workers]')")
            return
        cores = os.cpu_count() or 1
        threads = self.raw.get("torch_threads")
        walls = {}
        for n in (1, 2):
            timings, walls[n], label = self._run_profile(parallel={"workers": n})
        split = max(1, int(threads or cores) // 2)
        if self.device.type == "cpu":  # the default keeps each worker at the submitter's threads: identical rows
            old = os.environ.get("ECGBENCH_WORKER_THREADS")
            os.environ["ECGBENCH_WORKER_THREADS"] = str(split)
            try:
                _, walls["2-split"], _ = self._run_profile(parallel={"workers": 2})
            finally:
                if old is None:
                    os.environ.pop("ECGBENCH_WORKER_THREADS", None)
                else:
                    os.environ["ECGBENCH_WORKER_THREADS"] = old
        self.raw["workers_seconds"] = walls
        speedup = walls[1] / walls[2]
        self.rows.append(row(
            "8 workers", f"{label}: --workers 2 speed-up over --workers 1", speedup, "x",
            "--workers 1 wall time (s)", walls[1], speedup, "~2 with 2 free GPUs or 2x the cores", None,
            f"--workers 1: {walls[1]:.0f} s, --workers 2: {walls[2]:.0f} s; {cores} CPU cores visible and each "
            f"worker uses {threads} torch threads (the default, so rows equal a one-process run to the last "
            "digit): the workers compete for the same cores; a method's jobs also wait for its pretraining",
        ))
        if "2-split" in walls:
            s2 = walls[1] / walls["2-split"]
            self.rows.append(row(
                "8 workers", f"{label}: --workers 2 with {split} torch thread(s) each, speed-up over --workers 1",
                s2, "x", "--workers 1 wall time (s)", walls[1], s2, "~1 (the same cores, split)", None,
                f"ECGBENCH_WORKER_THREADS={split}: {walls['2-split']:.0f} s; no oversubscription, but the same "
                f"{cores} cores do the same work, and numbers may differ from a one-process run in the last digits",
            ))

    def _run_profile(self, parallel: dict | None = None) -> tuple[dict, float, str]:
        """Run the quick profile (or, with --quick, a reduced config) in a scratch out/cache dir.

        The scratch cache links the real cache's prepared stores (so 'data' is opening them, as
        in every run after the first) but nothing else: pretraining and the LM run for real."""
        overrides = {}
        label = "quick profile, default methods"
        if self.quick:
            label = "reduced quick profile (--quick)"
            overrides = {"methods": "mets,random-init", "protocols": "zero-shot,few-label",
                         "zero_shot_tasks": "superdiagnostic", "few_label_tasks": "superdiagnostic",
                         "label_fractions": "1.0", "few_label_modes": "linear-probe", "n_boot": 20,
                         "method_settings.encoder": "resnet1d-tiny", "method_settings.epochs": 1,
                         "method_settings.width": None, "panel_examples": 0}
        overrides["device"] = str(self.device.type)
        cfg = build_config("quick", None, overrides)
        with tempfile.TemporaryDirectory(prefix="ecgbench-bench-") as tmp:
            scratch = Path(tmp) / "cache"
            scratch.mkdir()
            (self.cache_dir / "stores").mkdir(parents=True, exist_ok=True)
            os.symlink(self.cache_dir / "stores", scratch / "stores")
            out = Path(tmp) / "run"
            t0 = time.perf_counter()
            with _quiet():
                Runner(cfg, data_root=self.data_root, cache_dir=scratch, out=out, progress=False).run(
                    None if parallel is None else DaskExecutor(**parallel))
            wall = time.perf_counter() - t0
            timings = json.loads((out / "timings.json").read_text())
        return timings, wall, label
