"""The runner of ``python -m benchmark run``: plan the jobs, dispatch them, run each one, write
its rows.

Flow: config (profile <- file <- flags) -> plan of jobs (method variant x seed x protocol x
dataset x task x label fraction x mode) -> each job not yet in ``--out`` runs and writes its rows
and per-example scores atomically. Pretrained encoders are cached on disk by a hash of everything
that determines them (``benchmark.engine.pretrain``), so protocols share one pretraining and a
killed run resumes from the last finished job and the last epoch checkpoint. How the jobs run --
one cooperative loop in this process, or a Dask graph -- is the executor's business
(``benchmark.engine.executors``); the caller hands one to :meth:`Runner.run`.

Under ``torchrun`` (``benchmark.distributed``) every rank first pretrains, data-parallel, each
model the planned jobs need (rank 0 decides which are missing from the cache and saves them);
then the other ranks leave and rank 0 evaluates alone, exactly as a single process would.

Public API besides ``run``: ``plan``, ``pretrained`` (a pretrained model from memory, disk or
training), ``dataset``, ``validation_score`` (a protocol's validation objective, what ``tune``
optimises), ``release_models`` and ``summary_text``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark import distributed
from benchmark.data.datasets import prepare_options, run_tasks
from benchmark.device import resolve_device
from benchmark.engine import panel
from benchmark.engine.claims import Busy
from benchmark.engine.executors import LocalExecutor
from benchmark.engine.pretrain import PretrainCache
from benchmark.engine.summary import headline_table
from benchmark.engine.tracking import epoch_metrics, finetune_prefix, result_metrics
from benchmark.errors import UserError, resource_error
from benchmark.io import atomic_write_parquet, atomic_write_text
from benchmark.paths import resolve_cache_dir, resolve_data_root, stable_hash
from benchmark.protocols import Job, JobContext, MethodTraits, Pretraining, get_protocol, protocol_for_objective
from benchmark.protocols import protocols_in_order
from benchmark.protocols.base import method_class
from benchmark.registry import METHODS, expand_grid, format_spec, load_builtin_plugins, parse_spec
from benchmark.results import ResultStore, code_version, env_info, make_job_id, new_run_id, safe_name

log = logging.getLogger("benchmark.run")

# settings that can change a job's numbers; the lists of what to run (methods, seeds, tasks,
# protocols, fractions) are not among them, so narrowing or widening a run re-uses finished jobs.
JOB_SETTINGS = (
    "fs", "window_s", "precision", "method_settings", "n_boot", "probe_C", "probe_max_iter",
    "finetune_epochs", "finetune_lr", "finetune_patience", "finetune_batch_size", "mitbih_subdir",
    "mitbih_annotator", "cinc_crops", "cross_max_train", "cross_max_eval", "prompt_templates",
    "cross_finetune_max_train", "cross_finetune_max_val",
)

# settings that entered the job hash after results were computed under the values below: one
# enters the hash only when it differs from that value, so rows computed before it was hashed
# (under exactly that value) keep their ids and resume, while any other value -- a --set, or a
# later change of its default -- gets new jobs. (Before, these settings changed numbers without
# changing the job id: a resumed folder served rows of the old setting.)
LATER_JOB_SETTINGS: dict = {
    "beat_readout": "pool", "beat_window_s": 2.0, "beat_span_s": 0.6, "beat_rr": True, "beat_cv_folds": 5, "beat_C_extend": 0,
    "beat_rule": "auto", "beat_min_class_beats": 50, "beat_norm": "none", "probe_hidden": 256, "probe_epochs": 100,
    "mitbih_baseline": "none", "mitbih_scale": "none", "beat_sn_stage": "none",
}


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, stage: str, t0: float) -> None:
        self.seconds[stage] += time.perf_counter() - t0

    def count(self, what: str) -> None:
        self.counts[what] += 1


def _same_value(a, b) -> bool:
    """Setting values equal as the config would read them (2 == 2.0; True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    return a == b


def config_hash(cfg: dict, spec: str, job: Job | None = None) -> str:
    """Hash of every setting that can change a job's numbers (not device or progress). The later
    settings (``LATER_JOB_SETTINGS``) count only for the jobs they can change (:func:`_changes`),
    so a new default for the MIT-BIH beat head re-runs MIT-BIH jobs, not PTB-XL ones; without a
    ``job``, all of them count."""
    keep = {k: v for k, v in cfg.items() if k in JOB_SETTINGS}
    keep.update({k: cfg[k] for k, legacy in LATER_JOB_SETTINGS.items()
                 if k in cfg and not _same_value(_effective(k, cfg), legacy) and (job is None or _changes(k, job))})
    return stable_hash({"cfg": keep, "method": spec})


def _effective(key: str, cfg: dict):
    """The value later setting ``key`` acts with under ``cfg``: the S-vs-N stage is off while beat_rr
    is off (:func:`benchmark.protocols.beat_level.sn_stage`), so it then stays out of the hash."""
    if key == "beat_sn_stage" and "beat_rr" in cfg:
        from benchmark.protocols.beat_level import sn_stage

        return sn_stage(cfg)
    return cfg[key]


def _changes(key: str, job: Job) -> bool:
    """Whether later setting ``key`` can change ``job``'s numbers: a dataset option only that
    dataset's jobs; a ``beat_*`` setting only the beat-level heads (not zero-shot) of a beat-centred
    dataset; the head sizes only the mlp/attention heads."""
    from benchmark.data.datasets import RUN_SETTINGS
    from benchmark.protocols.heads import KINDS
    from benchmark.registry import DATASETS

    if key in ("probe_hidden", "probe_epochs"):
        return job.mode in KINDS
    for name, rs in RUN_SETTINGS.items():
        if key in rs.options.values():
            return job.dataset == name
    if key.startswith("beat_"):
        try:
            centred = bool(getattr(DATASETS.entry(job.dataset).factory, "beat_centred", False))
        except Exception:  # a dataset this registry does not know cannot be beat-centred
            centred = False
        return centred and job.mode in BEAT_SETTING_MODES.get(key, ("linear-probe", "fine-tune", *KINDS))
    return True


# the beat-level modes a beat_* setting reaches (others: every mode but zero-shot): the probe's
# record-wise CV, C grid and decision rule are the linear probe's; the feature normalisation is
# read by the probe and the MLP head, not by the attention head or the fine-tune (beat_level.py)
BEAT_SETTING_MODES: dict = {
    "beat_cv_folds": ("linear-probe",), "beat_rule": ("linear-probe",), "beat_C_extend": ("linear-probe",),
    "beat_sn_stage": ("linear-probe",),
    "beat_norm": ("linear-probe", "mlp-probe"),
}


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
        load_builtin_plugins()
        self.cfg = cfg
        self.tracker = tracker  # benchmark.engine.tracking: one tracked run per (variant, seed); None: off
        self._tracked: dict[tuple[str, int], Any] = {}
        self.data_root = resolve_data_root(data_root)
        self.cache_dir = resolve_cache_dir(cache_dir)
        self.out = Path(out)
        self.progress = progress
        self.specs = method_specs(cfg)
        self.timings = Timings()
        self.poll_seconds = 1.0  # how often a worker with only claimed work left looks again
        self.run_id = None
        self.store: ResultStore | None = None
        self._lm_start = 0.0
        self._told: set[str] = set()
        self._data: dict[str, Any] = {}
        self._embeddings: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # key -> (features, done)
        self._proto: dict[str, Any] = {}
        self._warned_leads: set = set()
        self.device = resolve_device(cfg["device"])
        self.pretrain_cache = PretrainCache(self)

    def begin(self, run_id: str | None = None) -> None:
        """Open the results folder for writing, as invocation ``run_id`` (new if None): what
        :meth:`run` does first, and what a Dask worker's runner does with the submitter's id."""
        self.store = ResultStore(self.out)
        self.run_id = run_id or new_run_id()
        code_version(str(Path(__file__).resolve().parents[2]))  # pinned now: the code this process runs
        mets = sys.modules.get("methods.mets")
        self._lm_start = mets.lm_seconds() if mets is not None else 0.0  # frozen-LM time so far

    # -- methods -------------------------------------------------------------------------------
    def make_method(self, spec: str, seed: int, **extra):
        """Build a method: profile settings it accepts, then the variant's own, then seed/device
        and ``extra`` (e.g. the task a label-based method trains on)."""
        name, params = parse_spec(spec)
        entry = METHODS.entry(name)
        accepted = entry.accepted_params()
        settings = {k: v for k, v in self.cfg["method_settings"].items() if accepted is None or k in accepted}
        if getattr(method_class(spec), "architecture_from_file", False):  # checkpoint: the file fixes it
            settings = {k: v for k, v in settings.items() if k not in ("encoder", "width")}
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
            for k in (*JOB_SETTINGS, *LATER_JOB_SETTINGS):
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
            from benchmark.data.store import prepare  # local: benchmark.data.store imports torch

            t0 = time.perf_counter()
            # under torchrun one process per node builds the store, the others then open it
            with distributed.main_first(local=True) if distributed.world()[1] > 1 else contextlib.nullcontext():
                self._data[name] = prepare(
                    name, self.data_root, self.cache_dir, fs=self.cfg["fs"], window_s=self.cfg["window_s"],
                    progress=self.progress, **prepare_options(name, self.cfg),
                )
            self._make_resident(self._data[name])
            self.timings.add("data", t0)
        return self._data[name]

    def share_data(self, other: "Runner") -> None:
        """Use ``other``'s prepared datasets (runs whose data settings agree: ``tune``'s trials)."""
        self._data = other._data

    def _make_resident(self, data) -> None:
        """Hold ``data`` on the device (float32, so batches are bit-identical) when configured:
        'auto' does it on a GPU when the set takes < 30 % of the free memory (full PTB-XL at
        100 Hz: 1.0 GB), where a memory-mapped loader would feed the GPU too slowly."""
        import torch  # local: start-up time of the CLI (dry runs never build a dataset)

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
        return run_tasks(name, self.cfg)

    def embed_fn(self, model, h: str):
        """``embed(data, idx, **readout)`` with per-model, per-dataset, per-readout memoisation
        (each ECG encoded once per readout). ``readout`` is passed to ``Method.encode_ecg``
        (``pooled=False``; ``at=``, ``span=``) and is part of the key, so pooled features, feature
        maps and local readouts never mix."""

        def embed(data, idx, **readout):
            key = (h, data.name, data.manifest.get("key"), tuple(sorted(readout.items())))
            idx = np.asarray(idx, dtype=np.int64)
            store = self._embeddings.get(key)
            todo = idx if store is None else idx[~store[1][idx]]
            if len(todo):
                todo = np.unique(todo)
                t0 = time.perf_counter()
                z = model.encode_ecg(data, todo, **readout)
                self.timings.add("embed", t0)
                if store is None:  # sized by the first answer: [len(data), D] or [len(data), D, T']
                    store = (np.zeros((len(data),) + z.shape[1:], dtype=np.float32), np.zeros(len(data), dtype=bool))
                    self._embeddings[key] = store
                store[0][todo] = z
                store[1][todo] = True
            if store is None:  # no rows asked for
                return model.encode_ecg(data, idx, **readout)
            return store[0][idx]

        return embed

    # -- plan ----------------------------------------------------------------------------------
    def traits(self, spec: str) -> MethodTraits:
        proto = self.prototype(spec)
        return MethodTraits(bool(getattr(proto, "has_text_tower", False)), bool(getattr(proto, "uses_labels", False)))

    def plan(self) -> list[Job]:
        """Every job of the run: method variant x seed x protocol (in the protocols' order) x
        what each protocol plans for them."""
        chosen = [p for p in protocols_in_order() if p.name in self.cfg["protocols"]]
        jobs: list[Job] = []
        for spec in self.specs:
            traits = self.traits(spec)
            for seed in self.cfg["seeds"]:
                for proto in chosen:
                    jobs.extend(proto.jobs(spec, int(seed), traits, self))
        # seed-major order: an interrupted run has every method for its first seeds (it resumes anyway)
        jobs.sort(key=lambda j: j.seed)
        if not jobs:
            raise self._empty_plan(chosen)
        return jobs

    def _empty_plan(self, chosen) -> UserError:
        """Why nothing is planned: no protocol chosen, or none applies to the chosen methods."""
        if not chosen:
            return UserError("nothing to run: no protocol selected (--protocols)")
        texts = [s for s in self.specs if self.traits(s).has_text_tower]
        why = ""
        if not texts and all(p.name in ("zero-shot", "text-ceiling") for p in chosen):
            why = (" (zero-shot and text-ceiling need a method with a text tower, e.g. mets; "
                   f"{', '.join(self.specs)} have none)")
        return UserError(f"nothing to run: protocols {', '.join(p.name for p in chosen)} plan no job for "
                         f"methods {', '.join(self.specs)}{why}; choose other --methods or --protocols")

    def job_id(self, job: Job) -> str:
        return make_job_id({**job.key, "config": config_hash(self.cfg, job.method, job)})

    def row_method(self, spec: str) -> str:
        """The method as result rows name it: the spec plus ``row_label`` settings (an ablation of
        run settings: ``mets`` with ``prompt_templates=paper`` -> ``mets[prompt_templates=paper]``)."""
        label = self.cfg.get("row_label") or {}
        if not label:
            return spec
        name, params = parse_spec(spec)
        return format_spec(name, {**params, **label})

    def config_hash(self, spec: str) -> str:
        return config_hash(self.cfg, spec)

    def pretraining(self, job: Job) -> Pretraining:
        """The pretrained model ``job`` needs (its protocol decides)."""
        return get_protocol(job.protocol).pretraining(job, self.traits(job.method), self)

    # -- pretrained models -----------------------------------------------------------------------
    def pretrained(self, spec: str, seed: int, labels: tuple[str, np.ndarray] | None = None, on_epoch_end=None,
                   wait: bool = True, logger=None):
        """``(model, hash)``: the pretrained method for (spec, seed[, labelled subset]), from memory,
        disk or training (:meth:`benchmark.engine.pretrain.PretrainCache.get` says how)."""
        return self.pretrain_cache.get(spec, seed, labels=labels, on_epoch_end=on_epoch_end, wait=wait,
                                       logger=logger)

    def release_models(self) -> None:
        """Drop the pretrained models and memoised features held in memory (``tune``: one model
        at a time); the disk cache keeps them."""
        self.pretrain_cache.clear()
        self._embeddings.clear()

    def _save_history(self, spec: str, seed: int, h: str, history, folder: Path | None = None) -> None:
        """Write a pretraining's per-epoch history to the results folder's ``history/`` (and beside
        the cached model, so a later run that loads the model still has its loss curve)."""
        if not history:
            return
        df = pd.DataFrame(history)
        df.insert(0, "method", spec)
        df.insert(1, "method_name", spec.split("[", 1)[0])
        df.insert(2, "seed", seed)
        df["pretrain_hash"] = h
        self.store.write_history(h, df)
        if folder is not None:
            atomic_write_parquet(df, folder / "history.parquet")

    def _recall_history(self, h: str, folder: Path) -> None:
        """A model loaded from the cache brings its loss curve (if kept) into this results folder."""
        src = folder / "history.parquet"
        if src.is_file() and not (self.store.history_dir / f"{safe_name(h)}.parquet").is_file():
            try:
                self.store.write_history(h, pd.read_parquet(src))
            except Exception as exc:  # a damaged copy costs the curve, never the run
                log.warning("cannot read the kept loss curve %s: %s", src, exc)

    def validation_score(self, model, objective: str, task: str, seed: int) -> float:
        """The validation macro AUROC of ``model`` on PTB-XL ``task`` for ``objective``
        (``zero-shot`` | ``linear-probe``), scored by the protocol that owns the objective with
        this run's prompt templates and probe settings; reads train and validation data only."""
        proto = protocol_for_objective(objective)
        return proto.validation_score(
            objective, model, self.dataset("ptbxl"), task, template_set=self.cfg["prompt_templates"],
            probe_Cs=self.cfg["probe_C"], probe_max_iter=self.cfg["probe_max_iter"], seed=seed,
        )

    # -- run -----------------------------------------------------------------------------------
    def run(self, executor=None):
        """Run every planned job not yet in ``--out``; returns all rows of the folder.

        ``executor(runner, todo) -> jobs run`` runs the jobs (``benchmark.engine.executors``;
        default: :class:`LocalExecutor`, this process's cooperative loop), injected by the caller
        (``cli/run.py`` builds a ``DaskExecutor`` for ``--workers``)."""
        rank, world = distributed.world()
        self.begin()
        t_start = time.perf_counter()
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
            executor = None  # evaluation: rank 0 alone, in this process
        status = "failed"
        try:
            with distributed.local_only():  # evaluation: rank 0 alone, no collectives
                ran = (executor or LocalExecutor())(self, todo)
                panel.ensure_panel(self)
            status = "success"
        finally:
            self.finish_tracking(status)
        self.timings.seconds["total"] = time.perf_counter() - t_start
        self._write_timings(ran)
        return self.store.load_rows()

    def run_claimed(self, job: Job, claims, wait: bool, number: tuple[int, int] | None = None) -> str:
        """Run ``job`` if it is not done and this process can claim it. Returns 'ran', 'done'
        (finished by anyone before), 'claimed' (another live worker holds it) or 'busy' (its
        pretraining is being run by another worker; only with ``wait=False``)."""
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

    def _write_timings(self, n_jobs: int) -> None:
        """Where this invocation's time went (data, pretrain, embed, evaluate, finetune, total)."""
        mets = sys.modules.get("methods.mets")
        if mets is not None:  # frozen-LM time (reports in pretrain, prompts in evaluate)
            self.timings.seconds["lm"] = mets.lm_seconds() - self._lm_start
        if n_jobs == 0:
            return  # a no-op re-run keeps the timings of the run that did the work
        rec = {"jobs_run": n_jobs, "pretrainings_run": int(self.timings.counts.get("pretrainings", 0)),
               **{k: round(v, 3) for k, v in self.timings.seconds.items()}}
        atomic_write_text(json.dumps(rec, indent=2), self.out / "timings.json")

    def run_job(self, job: Job, wait: bool = True) -> None:
        """Run one job from its description and write its rows: the protocol names the pretrained
        model it needs, gets it, and evaluates; the runner times and writes."""
        proto = get_protocol(job.protocol)
        data = self.dataset(job.dataset)
        if not proto.applies(job, data):
            log.warning("skipping %s: dataset '%s' has no task '%s' with this configuration", job.label, job.dataset, job.task)
            return
        req = proto.pretraining(job, self.traits(job.method), self)
        model, h = self.pretrained(req.spec, req.seed, labels=req.labels, wait=wait)
        encoder = self._input_record(job, model, data)
        t0 = time.perf_counter()
        ctx = JobContext(cfg=self.cfg, data=data, model=model, model_hash=h, embed=self.embed_fn(model, h),
                         progress=self.progress, dataset=self.dataset)
        ev = proto.run(job, ctx)
        self.timings.add(proto.stage(job), t0)
        self._write(job, ev, h, encoder=encoder)

    def _input_record(self, job: Job, model, data) -> dict | None:
        """What the encoder reads from this dataset (recorded with the rows); leads it takes that the
        dataset does not record are fed as zeros (a warning, once), and none at all is an error."""
        if not hasattr(model, "input_record"):
            return None
        rec = model.input_record(data)
        zero = rec["leads_zero"]
        if zero and len(zero) == len(rec["reads"]["leads"]):
            raise UserError(f"{job.method}: its encoder reads leads {rec['reads']['leads']}, none of which "
                            f"dataset '{job.dataset}' records ({rec['store']['leads']})")
        key = (job.method, job.dataset)
        declared = bool(rec["contract"]["leads"] != "12 standard")  # the suite's own layout: absent leads are zero
        if zero and declared and key not in self._warned_leads:
            self._warned_leads.add(key)
            log.warning("%s: its encoder reads leads %s that dataset '%s' does not record; they are fed as zeros",
                        job.method, zero, job.dataset)
        return rec

    def _write(self, job: Job, ev, h: str, encoder: dict | None = None) -> None:
        """Write a job's rows, scores and meta; log its metrics to the tracked run."""
        env = env_info(str(self.device))
        jid = self.job_id(job)
        extra = {
            "run_id": self.run_id, "job_id": jid, "method": self.row_method(job.method),
            "method_name": job.method.split("[", 1)[0], "seed": job.seed,
            "protocol": job.protocol, "mode": job.mode, "dataset": job.dataset, "task": job.task,
            "label_fraction": np.nan if job.label_fraction is None else job.label_fraction,
            "config_hash": config_hash(self.cfg, job.method, job), **env,
        }
        rows = [{**extra, **r} for r in ev.rows]
        meta = {"job": job.key, "info": ev.info, "pretrain_hash": h, "config": self.cfg, "encoder": encoder}
        self.store.write_job(jid, rows, ev.scores, meta)
        tracked = self.tracked(job.method, job.seed)
        if tracked is not None:
            prefix = finetune_prefix(job)
            for e, row in enumerate(ev.history):  # a fine-tune's epochs, under the job's own name
                tracked.log_metrics(epoch_metrics(row, prefix), step=e)
            tracked.log_metrics(result_metrics(rows))

    def summary_text(self, rows) -> str:
        """The headline table of the folder (``benchmark.engine.summary``): macro AUROC per method,
        zero-shot first, '-' where a method has no such number."""
        tasks = [*self.cfg["zero_shot_tasks"], *self.cfg["few_label_tasks"]]
        table = headline_table(rows, [self.row_method(s) for s in self.specs], tasks)
        if table is None:
            return f"no macro AUROC rows in {self.out}"
        secs = self.timings.seconds.get("total", 0.0)
        return (f"macro AUROC, mean over seeds {', '.join(map(str, self.cfg['seeds']))} -- results in {self.out} "
                f"[{secs:.0f} s this run]\n{table}")
