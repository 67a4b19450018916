"""``python -m benchmark run``: pretrain the chosen methods once, evaluate them under every
protocol, write tidy results job by job.

Flow: config (profile <- file <- flags) -> plan of jobs (method variant x seed x protocol x
dataset x task x label fraction x mode) -> each job not yet in ``--out`` runs and writes its rows
and per-example scores atomically. Pretrained encoders are cached on disk by a hash of everything
that determines them, so protocols share one pretraining and a killed run resumes from the last
finished job and the last epoch checkpoint.

Under ``torchrun`` (``benchmark.distributed``) every rank first pretrains, data-parallel, each
model the planned jobs need (rank 0 decides which are missing from the cache and saves them);
then the other ranks leave and rank 0 evaluates alone, exactly as a single process would.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.config import PROFILES, build_config
from benchmark.paths import stable_hash
from benchmark.errors import UserError
from benchmark.protocols.base import Job, JobContext, MethodTraits, Pretraining  # noqa: F401 (Job re-exported)
from benchmark.registry import METHODS, expand_grid, format_spec, load_builtin_plugins, load_plugin, parse_spec, split_top_level

log = logging.getLogger("benchmark.run")

PRETRAIN_FORMAT = 2  # 2: safe (weights_only) files with checksums. Bump when the meaning of a cached pretrained model changes
# settings that can change a job's numbers; the lists of what to run (methods, seeds, tasks,
# protocols, fractions) are not among them, so narrowing or widening a run re-uses finished jobs.
JOB_SETTINGS = (
    "fs", "window_s", "precision", "method_settings", "n_boot", "probe_C", "probe_max_iter",
    "finetune_epochs", "finetune_lr", "finetune_patience", "finetune_batch_size", "mitbih_subdir",
    "mitbih_annotator", "cinc_crops", "cross_max_train", "cross_max_eval", "prompt_templates",
    "cross_finetune_max_train", "cross_finetune_max_val",
)
NON_SEMANTIC = ("device", "compile", "progress", "num_workers", "resident_data", "lease_seconds",
                "worker_wait_seconds")  # settings that do not change results


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("--methods", help="comma-separated method variants, grids allowed: "
                   "'mets[lm=minilm|tfidf],simclr' (default: the profile's)")
    p.add_argument("--protocols", help="zero-shot,few-label,cross-dataset (default: all)")
    p.add_argument("--tasks", help="PTB-XL tasks for zero-shot and few-label, e.g. superdiagnostic,rhythm")
    p.add_argument("--seeds", help="e.g. 0,1,2")
    p.add_argument("--label-fractions", help="e.g. 0.01,0.1,1.0")
    p.add_argument("--out", default="results/run", help="results folder (default results/run)")
    p.add_argument("--dry-run", action="store_true", help="print the plan of jobs and exit")
    p.add_argument("--workers", type=int, help="spread the jobs over N Dask worker processes (one GPU each when "
                   "there are GPUs); with --cluster slurm: N SLURM jobs (docs/workers.md)")
    p.add_argument("--cluster", choices=("local", "slurm"), help="where --workers run: local (default) or slurm "
                   "(dask-jobqueue, configured in Dask's jobqueue.yaml)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="submit the jobs to a running Dask scheduler, "
                   "e.g. tcp://node1:8786 (workers started with 'dask worker ADDRESS')")
    from benchmark.cli.common import add_common_arguments

    add_common_arguments(p)


def main(args) -> int:
    from benchmark import distributed
    from benchmark.cli.common import next_step_text, overrides_from_args, tracker_from_args

    for mod in args.plugin:
        load_plugin(mod)
    cfg = build_config(args.profile, args.config, overrides_from_args(args))
    if not args.dry_run and distributed.init_from_env(cfg["device"]):
        try:
            tracker = tracker_from_args(args, args.out) if distributed.is_main() else None
            runner = Runner(cfg, data_root=args.data_root, cache_dir=args.cache_dir, out=args.out,
                            progress=not args.no_progress and distributed.is_main(), tracker=tracker)
            rows = runner.run()
            if distributed.is_main():
                print(runner.summary_text(rows))
                print(next_step_text(args.out, tracker=tracker))
            return 0
        finally:
            distributed.shutdown()
    if args.dry_run:
        load_builtin_plugins()
        runner = Runner(cfg, data_root=args.data_root, cache_dir=args.cache_dir, out=args.out, progress=False)
        for job in runner.plan():
            print(job.label)
        return 0
    tracker = tracker_from_args(args, args.out)
    runner = Runner(cfg, data_root=args.data_root, cache_dir=args.cache_dir, out=args.out,
                    progress=not args.no_progress, tracker=tracker)
    parallel = None
    if args.workers is not None or args.scheduler or args.cluster:
        parallel = {"workers": args.workers or 1, "scheduler": args.scheduler, "cluster": args.cluster,
                    "plugins": tuple(args.plugin)}
    rows = runner.run(parallel=parallel)
    print(runner.summary_text(rows))
    print(next_step_text(args.out, tracker=tracker))
    return 0


# ------------------------------------------------------------------------------------------
# jobs
# ------------------------------------------------------------------------------------------
@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, stage: str, t0: float) -> None:
        self.seconds[stage] += time.perf_counter() - t0


from benchmark.protocols.cross_dataset import class_counts  # noqa: E402,F401 (it lives with its protocol)


def method_specs(cfg: dict) -> list[str]:
    """Expand grids and canonicalise: 'mets[lm=minilm|tfidf]' -> two specs."""
    out: list[str] = []
    for item in cfg["methods"]:
        for spec in expand_grid(str(item)):
            canon = METHODS.validate(spec)
            if canon not in out:
                out.append(canon)
    if not out:
        raise UserError("no methods selected")
    return out


class Runner:
    def __init__(self, cfg: dict, *, data_root=None, cache_dir=None, out="results/run", progress: bool = True,
                 tracker=None):
        from benchmark.paths import resolve_cache_dir, resolve_data_root

        load_builtin_plugins()
        self.cfg = cfg
        self.tracker = tracker  # benchmark.tracking: one tracked run per (variant, seed); None: off
        self._tracked: dict[tuple[str, int], Any] = {}
        self.data_root = resolve_data_root(data_root)
        self.cache_dir = resolve_cache_dir(cache_dir)
        self.out = Path(out)
        self.progress = progress
        self.specs = method_specs(cfg)
        self.timings = Timings()
        self.poll_seconds = 1.0  # how often a worker with only claimed work left looks again
        self.run_id = None
        self._told: set[str] = set()
        self._data: dict[str, Any] = {}
        self._models: dict[str, Any] = {}
        self._embeddings: dict[tuple, np.ndarray] = {}
        self._proto: dict[str, Any] = {}
        from benchmark.device import resolve_device

        self.device = resolve_device(cfg["device"])

    # -- methods -------------------------------------------------------------------------------
    def make_method(self, spec: str, seed: int, **extra):
        """Build a method: profile settings it accepts, then the variant's own, then seed/device
        and ``extra`` (e.g. the task a label-based method trains on)."""
        name, params = parse_spec(spec)
        entry = METHODS.entry(name)
        accepted = entry.accepted_params()
        settings = {k: v for k, v in self.cfg["method_settings"].items() if accepted is None or k in accepted}
        settings.update(params)
        runtime = {"seed": seed, "device": self.cfg["device"], "precision": self.cfg["precision"],
                   "cache_dir": str(self.cache_dir), **extra}
        for k, v in runtime.items():
            if accepted is None or k in accepted:
                settings[k] = v
        return entry.factory(**settings)

    def prototype(self, spec: str):
        if spec not in self._proto:
            self._proto[spec] = self.make_method(spec, 0)
        return self._proto[spec]

    # -- experiment tracker --------------------------------------------------------------------
    def tracked(self, spec: str, seed: int):
        """The tracked run of (variant, seed), opened on first use with its parameters; None when
        no tracker is configured or on ranks other than 0."""
        from benchmark import distributed

        if self.tracker is None or distributed.world()[0] != 0:
            return None
        key = (spec, int(seed))
        if key not in self._tracked:
            run = self.tracker.start_run(f"{spec} seed={seed}", tags={
                "results": str(self.out), "run_id": getattr(self, "run_id", ""), "suite": "ecg-zeroshot-bench"})
            params = {"method": spec, "method_name": spec.split("[", 1)[0], "seed": int(seed),
                      "config_hash": self.config_hash(spec), "device": str(self.device)}
            name, variant = parse_spec(spec)
            for k, v in self.cfg["method_settings"].items():
                params[f"method_settings.{k}"] = v
            for k, v in variant.items():
                params[f"method_settings.{k}"] = v
            for k in JOB_SETTINGS:
                if k != "method_settings" and k in self.cfg:
                    params[k] = self.cfg[k]
            run.log_hyperparams(params)
            self._tracked[key] = run
        return self._tracked[key]

    def finish_tracking(self, status: str = "success") -> None:
        for run in self._tracked.values():
            try:
                run.finish(status)
            except Exception as exc:  # a tracker hiccup never loses results
                log.warning("tracker: could not close a run: %s", exc)
        self._tracked.clear()

    # -- data ----------------------------------------------------------------------------------
    def dataset(self, name: str):
        if name not in self._data:
            from benchmark.data.store import prepare

            t0 = time.perf_counter()
            opts: dict[str, Any] = {}
            if name == "mitbih":
                opts = {"subdir": self.cfg["mitbih_subdir"], "annotator": self.cfg["mitbih_annotator"]}
            elif name == "cinc2017":
                opts = {"n_crops": self.cfg["cinc_crops"]}
            from benchmark import distributed

            # under torchrun one process per node builds the store, the others then open it
            with distributed.main_first(local=True) if distributed.world()[1] > 1 else contextlib.nullcontext():
                self._data[name] = prepare(
                    name, self.data_root, self.cache_dir, fs=self.cfg["fs"], window_s=self.cfg["window_s"],
                    progress=self.progress, **opts,
                )
            self._make_resident(self._data[name])
            self.timings.add("data", t0)
        return self._data[name]

    def _make_resident(self, data) -> None:
        """Hold ``data`` on the device (float32, so batches are bit-identical) when configured:
        'auto' does it on a GPU when the set takes < 30 % of the free memory (full PTB-XL at
        100 Hz: 1.0 GB), where a memory-mapped loader would feed the GPU too slowly."""
        import torch

        mode = str(self.cfg.get("resident_data", "auto")).lower()
        if mode in ("false", "0", "no"):
            return
        need = data.resident_bytes(torch.float32)
        if mode == "auto":
            if self.device.type != "cuda":
                return
            free, _ = torch.cuda.mem_get_info(self.device)
            if need > 0.3 * free:
                log.info("%s stays memory-mapped: %.1f GB > 30 %% of free GPU memory", data.name, need / 2**30)
                return
        data.to_device(self.device)
        log.info("%s resident on %s (%.2f GB)", data.name, self.device, need / 2**30)

    def dataset_tasks(self, name: str) -> list[str]:
        return {"mitbih": self.cfg["mitbih_tasks"], "cinc2017": self.cfg["cinc_tasks"]}[name]

    # -- plan ----------------------------------------------------------------------------------
    def traits(self, spec: str) -> MethodTraits:
        proto = self.prototype(spec)
        return MethodTraits(bool(getattr(proto, "has_text_tower", False)), bool(getattr(proto, "uses_labels", False)))

    def plan(self) -> list[Job]:
        """Every job of the run: method variant x seed x protocol (in the protocols' order) x
        what each protocol plans for them."""
        from benchmark.protocols import protocols_in_order

        chosen = [p for p in protocols_in_order() if p.name in self.cfg["protocols"]]
        jobs: list[Job] = []
        for spec in self.specs:
            traits = self.traits(spec)
            for seed in self.cfg["seeds"]:
                for proto in chosen:
                    jobs.extend(proto.jobs(spec, int(seed), traits, self))
        # seed-major order: an interrupted run has every method for its first seeds (it resumes anyway)
        jobs.sort(key=lambda j: j.seed)
        return jobs

    def job_id(self, job: Job) -> str:
        from benchmark.results import make_job_id

        return make_job_id({**job.key, "config": self.config_hash(job.method)})

    def row_method(self, spec: str) -> str:
        """The method as result rows name it: the spec plus ``row_label`` settings (an ablation of
        run settings: ``mets`` with ``prompt_templates=paper`` -> ``mets[prompt_templates=paper]``)."""
        label = self.cfg.get("row_label") or {}
        if not label:
            return spec
        name, params = parse_spec(spec)
        return format_spec(name, {**params, **label})

    def config_hash(self, spec: str) -> str:
        """Hash of every setting that can change a job's numbers (not device or progress)."""
        keep = {k: v for k, v in self.cfg.items() if k in JOB_SETTINGS}
        return stable_hash({"cfg": keep, "method": spec})

    # -- pretraining ---------------------------------------------------------------------------
    def pretrained(self, spec: str, seed: int, labels: tuple[str, np.ndarray] | None = None, on_epoch_end=None,
                   wait: bool = True, logger=None):
        """A pretrained method for (spec, seed[, labelled subset]), from memory, disk or training.

        ``on_epoch_end(method, epoch, row)`` (used by ``tune`` for pruning) runs after every
        pretraining epoch; it is not called when the model comes from memory or disk. Each
        epoch's losses, lr and throughput also go to ``logger`` (default: the tracked run of
        (spec, seed), if a tracker is configured).
        A pretraining is claimed (``benchmark.claims``) so that concurrent workers on the same
        cache train each model once: when another live worker holds it, ``wait=False`` raises
        ``Busy`` (the caller does other work first), ``wait=True`` polls until it is done (or
        its lease expires and this process takes it over).
        """
        from benchmark.paths import touch
        from benchmark.paths import pretrained_dir
        from benchmark.io import atomic_write_json

        data = self.dataset("ptbxl")
        method = self.make_method(spec, seed, **({"task": labels[0]} if labels is not None else {}))
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
        h = stable_hash(key, 20)
        if h in self._models:
            return self._models[h], h
        from benchmark import distributed

        rank, world = distributed.world()
        folder = pretrained_dir(self.cache_dir, h)
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
                        from benchmark.tracking import epoch_metrics

                        tracked = logger if logger is not None else self.tracked(spec, seed)
                        prefix = "pretrain" if labels is None else f"pretrain_{labels[0]}_n{len(labels[1])}"

                        def epoch_end(e, row):
                            if tracked is not None and rank == 0:
                                tracked.log_metrics(epoch_metrics(row, prefix), step=e)
                            if on_epoch_end is not None:
                                on_epoch_end(method, e, row)

                        history = method.pretrain(
                            data, train_idx, val_idx, targets=targets, checkpoint_dir=folder / "checkpoints",
                            progress=self.progress,
                            on_epoch_end=epoch_end if (on_epoch_end is not None or tracked is not None) else None,
                        )
                        if rank == 0:
                            method.save(model_file)
                            atomic_write_json(key, folder / "key.json")  # what made it, for `benchmark cache`
                            self._save_history(spec, seed, h, history)
                    finally:
                        if claim is not None:
                            claim.release()
                    distributed.barrier()
                elif claim is not None:
                    claim.release()
        self.timings.add("pretrain", t0)
        self._models[h] = method
        return method, h

    def _claim_pretraining(self, folder, spec, seed, wait, method, model_file, data, train_idx, val_idx, targets):
        """(claim, on_disk): the claim on this pretraining, or on_disk=True when another worker
        finished it meanwhile. Raises ``Busy`` when it is held and ``wait`` is False."""
        from benchmark.claims import Busy, Claims

        claims = Claims(folder, ttl=float(self.cfg.get("lease_seconds", 120)))
        what = f"pretraining {spec} seed={seed}"
        while True:
            claim = claims.try_claim("pretrain", what=what)
            if claim is not None:
                if self._load_cached(method, model_file, data, train_idx, val_idx, targets):
                    return claim, True  # finished by another worker just before we claimed it
                return claim, False
            if not wait:
                raise Busy(what)
            time.sleep(self.poll_seconds)
            if self._load_cached(method, model_file, data, train_idx, val_idx, targets):
                return None, True

    def _load_cached(self, method, model_file: Path, data, train_idx, val_idx, targets) -> bool:
        """Load a cached pretrained model into ``method``; False if there is none or it is damaged
        (a damaged one is moved aside with a warning and the model is pretrained again)."""
        from benchmark.heal import CorruptCacheEntry, quarantine

        if not model_file.is_file():
            return False
        method.setup(data, train_idx, val_idx, targets)
        try:
            method.load(model_file)
        except CorruptCacheEntry as exc:
            quarantine(model_file, exc.reason)
            return False
        return True

    def _save_history(self, spec: str, seed: int, h: str, history) -> None:
        import pandas as pd

        if not history:
            return
        df = pd.DataFrame(history)
        df.insert(0, "method", spec)
        df.insert(1, "method_name", spec.split("[", 1)[0])
        df.insert(2, "seed", seed)
        df["pretrain_hash"] = h
        self.store.write_history(h, df)

    def embed_fn(self, model, h: str):
        """``embed(data, idx)`` with per-model, per-dataset memoisation (each ECG encoded once)."""

        def embed(data, idx):
            key = (h, data.name, data.manifest.get("key"))
            if key not in self._embeddings:
                self._embeddings[key] = np.full((len(data), model.embedding_dim), np.nan, dtype=np.float32)
            cache = self._embeddings[key]
            idx = np.asarray(idx)
            todo = idx[np.isnan(cache[idx, 0])]
            if len(todo):
                t0 = time.perf_counter()
                cache[todo] = model.encode_ecg(data, todo)
                self.timings.add("embed", t0)
            return cache[idx]

        return embed

    # -- run -----------------------------------------------------------------------------------
    def run(self, parallel: dict | None = None):
        """Run every planned job not yet in ``--out``; returns all rows of the folder.

        ``parallel`` (``{"workers": N, "scheduler": ADDRESS, "cluster": "local"|"slurm"}``)
        submits them to Dask (``benchmark.workers``) instead of running them in this process."""
        from tqdm.auto import tqdm

        from benchmark.results import ResultStore

        from benchmark import distributed

        rank, world = distributed.world()
        from benchmark.results import new_run_id

        self.store = ResultStore(self.out)
        self.run_id = new_run_id()
        t_start = time.perf_counter()
        mets = sys.modules.get("methods.mets")
        self._lm_start = mets.lm_seconds() if mets is not None else 0.0
        jobs = self.plan()
        todo = None
        if rank == 0:
            done = [j for j in jobs if self.store.job_done(self.job_id(j))]
            todo = [j for j in jobs if not self.store.job_done(self.job_id(j))]
            log.info("%d jobs planned, %d already done in %s, %d to run", len(jobs), len(done), self.out, len(todo))
        if world > 1:
            # phase 1, every rank: data-parallel pretraining of every model the jobs need
            todo = distributed.broadcast_object(todo)
            requests: list[Pretraining] = list(dict.fromkeys(self.pretraining(job) for job in todo))
            log.info("rank %d/%d: %d pretrainings for %d jobs", rank, world, len(requests), len(todo))
            for req in requests:
                self.pretrained(req.spec, req.seed, labels=req.labels)
            if rank != 0:
                return None  # phase 2 is rank 0's alone
        status = "failed"
        try:
            with distributed.local_only():  # evaluation: rank 0 alone, no collectives
                if parallel is not None and world == 1:
                    from benchmark.workers import run_on_dask

                    ran = run_on_dask(self, todo, **parallel)
                else:
                    ran = self.work_through(todo)
                self._ensure_panel()
            status = "success"
        finally:
            self.finish_tracking(status)
        self.timings.seconds["total"] = time.perf_counter() - t_start
        self._write_timings(ran)
        return self.store.load_rows()

    def work_through(self, todo: list[Job]) -> int:
        """Run ``todo`` as one cooperative worker; returns how many jobs this process ran.

        Each job is claimed first (``benchmark.claims``: a lease in ``<out>/.claims`` renewed by
        a heartbeat), so any number of processes on the same folder run each job once. A job
        another live worker holds, or whose pretraining another worker is running, is skipped
        for now and tried again after the rest; a dead worker's lease expires and its job is
        taken over. Returns when every job is done (by anyone)."""
        from tqdm.auto import tqdm

        from benchmark.claims import Claims

        claims = Claims(self.out / ".claims", ttl=float(self.cfg.get("lease_seconds", 120)))
        pending = list(todo)
        ran = 0
        bar = tqdm(total=len(pending), desc="jobs", unit="job", disable=not self.progress, dynamic_ncols=True)
        try:
            while pending:
                progressed = False
                for job in list(pending):
                    status = self.run_claimed(job, claims, wait=False, number=(ran + 1, len(todo)))
                    if status in ("ran", "done"):
                        ran += status == "ran"
                        pending.remove(job)
                        bar.update(1)
                        progressed = True
                if pending and not progressed:
                    time.sleep(self.poll_seconds)
        finally:
            bar.close()
        return ran

    def run_claimed(self, job: Job, claims, wait: bool, number: tuple[int, int] | None = None) -> str:
        """Run ``job`` if it is not done and this process can claim it. Returns 'ran', 'done'
        (finished by anyone before), 'claimed' (another live worker holds it) or 'busy' (its
        pretraining is being run by another worker; only with ``wait=False``)."""
        from benchmark.claims import Busy

        jid = self.job_id(job)
        if self.store.job_done(jid):
            return "done"
        claim = claims.try_claim(jid, what=job.label)
        if claim is None:
            return "claimed"
        try:
            if self.store.job_done(jid):  # finished just before we claimed it
                return "done"
            log.info("%s%s", f"[{number[0]}/{number[1]}] " if number else "", job.label)
            try:
                self.run_job(job, wait=wait)
            except (OSError, RuntimeError) as exc:  # full disk, denied write, GPU out of memory: say which job
                from benchmark.errors import resource_error

                err = resource_error(exc, job=job.label)
                if err is None:
                    raise
                raise err from exc
            log.info("finished %s", job.label)
            return "ran"
        except Busy as busy:
            if busy.what not in self._told:
                self._told.add(busy.what)
                log.info("%s is running in another worker: other jobs first", busy.what)
            return "busy"
        finally:
            claim.release()

    def pretraining(self, job: Job) -> Pretraining:
        """The pretrained model ``job`` needs (its protocol decides)."""
        from benchmark.protocols import get_protocol

        return get_protocol(job.protocol).pretraining(job, self.traits(job.method), self)

    def _write_timings(self, n_jobs: int) -> None:
        """Where this invocation's time went (data, pretrain, embed, evaluate, finetune, total)."""
        import json

        from benchmark.io import atomic_write_text

        mets = sys.modules.get("methods.mets")
        if mets is not None:  # frozen-LM time (reports in pretrain, prompts in evaluate)
            self.timings.seconds["lm"] = mets.lm_seconds() - self._lm_start
        if n_jobs == 0:
            return  # a no-op re-run keeps the timings of the run that did the work
        rec = {"jobs_run": n_jobs, **{k: round(v, 3) for k, v in self.timings.seconds.items()}}
        atomic_write_text(json.dumps(rec, indent=2), self.out / "timings.json")

    def run_job(self, job: Job, wait: bool = True) -> None:
        """Run one job from its description and write its rows: the protocol names the pretrained
        model it needs, gets it, and evaluates; the harness times and writes."""
        from benchmark.protocols import get_protocol
        from benchmark.results import env_info

        proto = get_protocol(job.protocol)
        data = self.dataset(job.dataset)
        if job.protocol != "text-ceiling" and job.task not in data.tasks:
            log.warning("skipping %s: dataset '%s' has no task '%s' with this configuration", job.label, job.dataset, job.task)
            return
        req = proto.pretraining(job, self.traits(job.method), self)
        model, h = self.pretrained(req.spec, req.seed, labels=req.labels, wait=wait)
        t0 = time.perf_counter()
        ctx = JobContext(cfg=self.cfg, data=data, model=model, model_hash=h, embed=self.embed_fn(model, h),
                         progress=self.progress, dataset=self.dataset)
        ev = proto.run(job, ctx)
        self.timings.add(proto.stage(job), t0)
        env = env_info(str(self.device))
        jid = self.job_id(job)
        extra = {
            "run_id": self.run_id, "job_id": jid, "method": self.row_method(job.method),
            "method_name": job.method.split("[", 1)[0], "seed": job.seed,
            "protocol": job.protocol, "mode": job.mode, "dataset": job.dataset, "task": job.task,
            "label_fraction": np.nan if job.label_fraction is None else job.label_fraction,
            "config_hash": self.config_hash(job.method), **env,
        }
        rows = [{**extra, **r} for r in ev.rows]
        meta = {"job": job.key, "info": ev.info, "pretrain_hash": h, "config": self.cfg}
        self.store.write_job(jid, rows, ev.scores, meta)
        tracked = self.tracked(job.method, job.seed)
        if tracked is not None:
            from benchmark.tracking import epoch_metrics, finetune_prefix, result_metrics

            prefix = finetune_prefix(job)
            for e, row in enumerate(ev.history):  # a fine-tune's epochs, under the job's own name
                tracked.log_metrics(epoch_metrics(row, prefix), step=e)
            tracked.log_metrics(result_metrics(rows))

    def _ensure_panel(self) -> None:
        """Save the report's ECG panel once per results folder (also after a resumed run)."""
        path = self.out / "examples" / "ecg_panel.npz"
        if path.exists() or int(self.cfg["panel_examples"]) <= 0 or "zero-shot" not in self.cfg["protocols"]:
            return
        for spec in self.specs:
            if getattr(self.prototype(spec), "has_text_tower", False):
                model, _ = self.pretrained(spec, int(self.cfg["seeds"][0]))
                self._save_panel(model, spec, self.dataset("ptbxl"), "superdiagnostic")
                return

    def _save_panel(self, model, spec: str, data, task: str) -> None:
        """A few test ECGs with their report and zero-shot scores, for the report's panel figure."""
        from benchmark.io import atomic_write_bytes
        import io

        k = int(self.cfg["panel_examples"])
        path = self.out / "examples" / "ecg_panel.npz"
        if k <= 0 or path.exists():
            return
        from benchmark.protocols.zero_shot import class_prompts_for

        y, valid = data.labels(task)
        test = data.split_indices("test")
        test = test[valid[test]]
        # one example per class first (in class order), so the panel is not k normal ECGs
        picks: list[int] = []
        for j in range(y.shape[1]):
            hit = [i for i in test if y[i, j] > 0 and i not in picks]
            if hit and len(picks) < k:
                picks.append(int(hit[0]))
        picks += [int(i) for i in test if i not in picks][: k - len(picks)]
        test = np.asarray(picks, dtype=np.int64)
        prompts = class_prompts_for(data, task, self.cfg["prompt_templates"])
        scores = np.asarray(model.zero_shot_scores(data, test, prompts), dtype=np.float32)
        sig = np.zeros((len(test), 12, data.n_samples), dtype=np.float32)
        sig[:, data.lead_idx] = data.raw(test)
        buf = io.BytesIO()
        np.savez_compressed(
            buf, signals=sig, fs=data.fs, reports=np.asarray(data.texts("en"))[test].astype(str),
            ids=data.meta["id"].to_numpy()[test].astype(str), classes=np.asarray(list(prompts)),
            scores=scores, labels=y[test], method=np.asarray(spec),
        )
        atomic_write_bytes(buf.getvalue(), path)

    def summary_text(self, rows) -> str:
        if rows is None or len(rows) == 0:
            return "no results"
        r = rows[(rows["metric"] == "auroc") & (rows["class"] == "")]
        if r.empty:
            return "no AUROC rows"
        piv = r.groupby(["protocol", "mode", "dataset", "task", "label_fraction", "method"], dropna=False)["value"].mean()
        t = piv.unstack("method").round(3)
        secs = self.timings.seconds.get("total", 0.0)
        return f"macro AUROC (mean over seeds) -- results in {self.out}  [{secs:.0f} s this run]\n{t.to_string()}"
