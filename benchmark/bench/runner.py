"""The bench: runs the figures in order on this machine (see :mod:`benchmark.bench`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from benchmark.bench.figures_machine import MachineFigures
from benchmark.bench.figures_mets import MetsFigures
from benchmark.bench.figures_run import RunFigures
from benchmark.data.store import prepare
from benchmark.device import resolve_device
from benchmark.errors import UserError
from benchmark.results import env_info

log = logging.getLogger("benchmark.bench")


class Bench(MachineFigures, MetsFigures, RunFigures):
    """One bench run: ``run()`` measures the figures not in ``skip`` (a figure that raises a
    ``UserError`` is skipped with its reason in ``raw``) and returns the rows in figure order."""

    def __init__(self, *, quick: bool, data_root: Path, cache_dir: Path, device: str = "auto",
                 encoder: str | None = None, profile_timings: str | None = None, skip: set[str] = frozenset()):
        self.quick = quick
        self.data_root = Path(data_root)
        self.cache_dir = Path(cache_dir)
        self.device = resolve_device(device)
        gpu = self.device.type == "cuda"
        self.encoder = encoder or ("resnet1d-18" if gpu else "resnet1d-10[width=32]")
        self.profile_timings = profile_timings
        self.skip = set(skip)
        self.raw: dict[str, Any] = {"device": str(self.device), "encoder": self.encoder, "quick": quick}
        self.rows: list[dict] = []
        # sizes: (batch at 100 Hz, batch at 500 Hz, timed steps)
        self.b100, self.b500 = (256, 64) if gpu else (64, 16)
        self.steps = 20 if gpu else (1 if quick else 4)

    def _ptbxl(self):
        if not hasattr(self, "_ptbxl_set"):
            self._ptbxl_set = prepare("ptbxl", self.data_root, self.cache_dir, fs=100, progress=False)
        return self._ptbxl_set

    def run(self) -> list[dict]:
        self.raw["env"] = env_info(str(self.device))
        self.raw["torch_threads"] = torch.get_num_threads()
        t0 = time.perf_counter()
        for fig, fn in (("3", self.arithmetic), ("4", self.memory), ("5", self.scaling),
                        ("1", self.data_path), ("2", self.frozen_lm), ("7", self.lm_training),
                        ("6", self.end_to_end), ("8", self.workers)):
            if fig in self.skip:
                continue
            t = time.perf_counter()
            log.info("bench figure %s ...", fig)
            try:
                fn()
            except UserError as exc:  # e.g. an optional LM not installed: the other figures still count
                log.warning("bench figure %s skipped: %s", fig, exc)
                self.raw.setdefault("skipped_figures", {})[fig] = str(exc)
                continue
            self.raw.setdefault("figure_seconds", {})[fig] = round(time.perf_counter() - t, 2)
        self.raw["bench_seconds"] = round(time.perf_counter() - t0, 1)
        order = {str(i): i for i in range(1, 9)}
        return sorted(self.rows, key=lambda r: order.get(r["figure"][0], 9))
