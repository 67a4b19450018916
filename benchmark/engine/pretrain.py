"""The pretrained-model cache of a run: each model once, in memory, on disk, or trained.

A pretrained model is keyed by a hash of everything that determines it (the variant, its
settings without the runtime ones, the seed, the prepared data, the labelled subset of a
label-based method) and kept in ``<cache>/pretrained/<hash>/model.pt`` with the ``key.json`` that
made it. Concurrent workers on one cache claim a pretraining (``benchmark.engine.claims``) so that
each model is trained once; a crashed worker's claim expires and the next one resumes from its
last epoch checkpoint. Under ``torchrun`` every rank trains, rank 0 decides and saves.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from benchmark import distributed
from benchmark.engine.claims import Busy, Claims
from benchmark.engine.tracking import epoch_metrics
from benchmark.heal import CorruptCacheEntry, quarantine
from benchmark.io import atomic_write_json
from benchmark.paths import pretrained_dir, stable_hash, touch

log = logging.getLogger("benchmark.run")

PRETRAIN_FORMAT = 2  # 2: safe (weights_only) files with checksums. Bump when the meaning of a cached pretrained model changes
NON_SEMANTIC = ("device", "compile", "progress", "num_workers", "resident_data", "lease_seconds",
                "worker_wait_seconds")  # settings that do not change results


class PretrainCache:
    """Pretrained models of one runner (``runner.pretrained`` asks it): the runner gives the
    data, builds the methods, tracks the epochs and writes the histories."""

    def __init__(self, runner):
        self.runner = runner
        self._models: dict[str, object] = {}

    def clear(self) -> None:
        """Forget the models held in memory (the disk cache keeps them)."""
        self._models.clear()

    def get(self, spec: str, seed: int, labels: tuple[str, np.ndarray] | None = None, on_epoch_end=None,
            wait: bool = True, logger=None):
        """``(model, hash)``: a pretrained method for (spec, seed[, labelled subset]), from memory,
        disk or training.

        ``on_epoch_end(method, epoch, row)`` (used by ``tune`` for pruning) runs after every
        pretraining epoch; it is not called when the model comes from memory or disk. Each
        epoch's losses, lr and throughput also go to ``logger`` (default: the tracked run of
        (spec, seed), if a tracker is configured).
        A pretraining is claimed (``benchmark.engine.claims``) so that concurrent workers on the same
        cache train each model once: when another live worker holds it, ``wait=False`` raises
        ``Busy`` (the caller does other work first), ``wait=True`` polls until it is done (or
        its lease expires and this process takes it over).
        """
        r = self.runner
        data = r.dataset("ptbxl")
        method, key, labels = self.key_for(spec, seed, labels)
        h = stable_hash(key, 20)
        if h in self._models:
            return self._models[h], h
        rank, world = distributed.world()
        folder = pretrained_dir(r.cache_dir, h)
        model_file = folder / "model.pt"
        t0 = time.perf_counter()
        train_idx = data.split_indices("train") if labels is None else labels[1]
        val_idx = data.split_indices("val")
        targets = None
        if labels is not None:
            y, valid = data.labels(labels[0])
            targets = y
            val_idx = val_idx[valid[val_idx]]
        with data.forbid("test"):
            # rank 0 decides (its filesystem holds the cache); the other ranks follow its decision
            on_disk = distributed.broadcast_object(self._load_cached(method, model_file, data, train_idx, val_idx, targets)
                                                   if rank == 0 else None)
            if on_disk:
                if rank == 0:
                    touch(model_file)  # `cache` ages entries by last use
                    r._recall_history(h, folder)
            elif not getattr(method, "needs_pretraining", True):
                if rank == 0:
                    method.save(model_file)
                    atomic_write_json(key, folder / "key.json")
            else:
                claim = None
                if world == 1:  # cooperative workers: one pretraining per model, whoever claims it
                    claim, on_disk = self._claim_pretraining(folder, spec, seed, wait, method, model_file, data,
                                                             train_idx, val_idx, targets)
                if not on_disk:
                    try:
                        log.info("pretraining %s seed=%d (%d train / %d val ECGs)", spec, seed, len(train_idx), len(val_idx))
                        tracked = logger if logger is not None else r.tracked(spec, seed)
                        prefix = "pretrain" if labels is None else f"pretrain_{labels[0]}_n{len(labels[1])}"

                        def epoch_end(e, row):
                            if tracked is not None and rank == 0:
                                tracked.log_metrics(epoch_metrics(row, prefix), step=e)
                            if on_epoch_end is not None:
                                on_epoch_end(method, e, row)

                        r.timings.count("pretrainings")
                        history = method.pretrain(
                            data, train_idx, val_idx, targets=targets, checkpoint_dir=folder / "checkpoints",
                            progress=r.progress,
                            on_epoch_end=epoch_end if (on_epoch_end is not None or tracked is not None) else None,
                        )
                        if rank == 0:
                            method.save(model_file)
                            atomic_write_json(key, folder / "key.json")  # what made it, for `benchmark cache`
                            r._save_history(spec, seed, h, history, folder)
                    finally:
                        if claim is not None:
                            claim.release()
                    distributed.barrier()
                elif claim is not None:
                    claim.release()
        r.timings.add("pretrain", t0)
        self._models[h] = method
        return method, h

    def key_for(self, spec: str, seed: int, labels: tuple[str, np.ndarray] | None = None):
        """``(method, key, labels)``: the (untrained) method, the dict whose hash names its
        pretrained model in the cache, and the labelled subset it trains on (None: unlabelled)."""
        data = self.runner.dataset("ptbxl")
        method = self.runner.make_method(spec, seed, **({"task": labels[0]} if labels is not None else {}))
        if labels is None and getattr(method, "uses_labels", False):
            task = getattr(method, "task", "superdiagnostic")
            y, valid = data.labels(task)
            tr = data.split_indices("train")
            labels = (task, tr[valid[tr]])
        runtime = set(NON_SEMANTIC) | set(getattr(method, "RUNTIME_SETTINGS", ()))
        cfg = {k: v for k, v in method.config().items() if k not in runtime}
        key = {
            "format": PRETRAIN_FORMAT, "method": spec, "config": cfg, "seed": seed,
            "data": data.manifest.get("key"),
            "labels": None if labels is None else [labels[0], stable_hash(labels[1].tolist())],
        }
        return method, key, labels

    def cached(self, spec: str, seed: int, labels: tuple[str, np.ndarray] | None = None) -> bool:
        """Whether the pretrained model of (spec, seed[, labels]) is already in the disk cache."""
        _, key, _ = self.key_for(spec, seed, labels)
        return (pretrained_dir(self.runner.cache_dir, stable_hash(key, 20)) / "model.pt").is_file()

    def _claim_pretraining(self, folder, spec, seed, wait, method, model_file, data, train_idx, val_idx, targets):
        """(claim, on_disk): the claim on this pretraining, or on_disk=True when another worker
        finished it meanwhile. Raises ``Busy`` when it is held and ``wait`` is False."""
        claims = Claims(folder, ttl=float(self.runner.cfg.get("lease_seconds", 120)))
        what = f"pretraining {spec} seed={seed}"
        while True:
            claim = claims.try_claim("pretrain", what=what)
            if claim is not None:
                if self._load_cached(method, model_file, data, train_idx, val_idx, targets):
                    return claim, True  # finished by another worker just before we claimed it
                return claim, False
            if not wait:
                raise Busy(what)
            time.sleep(self.runner.poll_seconds)
            if self._load_cached(method, model_file, data, train_idx, val_idx, targets):
                return None, True

    def _load_cached(self, method, model_file: Path, data, train_idx, val_idx, targets) -> bool:
        """Load a cached pretrained model into ``method``; False if there is none or it is damaged
        (a damaged one is moved aside with a warning and the model is pretrained again)."""
        if not model_file.is_file():
            return False
        method.setup(data, train_idx, val_idx, targets)
        try:
            method.load(model_file)
        except CorruptCacheEntry as exc:
            quarantine(model_file, exc.reason)
            return False
        return True

