"""How a run's jobs are executed: an executor is a callable ``executor(runner, todo) -> jobs run``
that the caller (the CLI) hands to ``Runner.run``; the runner imports none.

:class:`LocalExecutor` works through the jobs in this process, claiming each one, so any number of
processes on one results folder cooperate. :class:`DaskExecutor` is ``run --workers N`` /
``--scheduler ADDRESS`` / ``--cluster slurm``: the job grid on Dask (clusters in
``benchmark.engine.clusters``).

Why Dask distributed (see ``docs/workers.md``): the same scheduler runs a ``LocalCluster`` of
worker processes on one machine and, through ``dask-jobqueue``'s ``SLURMCluster`` (or any
``dask scheduler`` / ``dask worker`` started by hand), workers on a cluster; tasks take other
tasks' futures as arguments, so "pretraining before the evaluations that need it" is a
dependency graph, not a barrier; a worker that dies has its tasks rescheduled. It is pure Python
and pip-installable (``pip install -e '.[workers]'``).

The graph: one task per distinct pretraining the jobs need (``Protocol.pretraining``), one task
per job depending on its pretraining's task. Every task runs in a worker process through that
process's own runner (the submitting runner's class, built once per worker from the run's settings,
keeping its datasets, models and embeddings in memory between tasks) and takes the same claims
as a single-process run (``benchmark.engine.claims``), so several ``run`` commands -- with or without
workers -- can share one results folder and cache. Rows go to the same tidy folder; every row of
one invocation carries its ``run_id``.

GPUs: each local worker sees one GPU (``CUDA_VISIBLE_DEVICES`` set per worker; with more
workers than GPUs they share them round-robin). CPU threads: each worker uses as many torch threads as the
submitting process (so CPU results match a single-process run to the last digit: the thread
count changes the order of floating-point sums); ``ECGBENCH_WORKER_THREADS=N`` sets N per worker.
SLURM workers (``--cluster slurm``) use their job's ``cores / processes`` threads unless that
variable is set; tested on a real one-node SLURM (``scripts/slurm-single-node.sh``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from benchmark.engine.claims import Claims
from benchmark.engine.clusters import check_slurm, client_for, set_worker_threads, wait_for_first_worker
from benchmark.errors import UserError
from benchmark.paths import stable_hash
from benchmark.registry import load_plugin

log = logging.getLogger("benchmark.workers")


class LocalExecutor:
    """The jobs in this process, one after another, each under its claim."""

    def __call__(self, runner, todo: list) -> int:
        """Run ``todo`` as one cooperative worker; returns how many jobs this process ran.

        Each job is claimed first (``benchmark.engine.claims``: a lease in ``<out>/.claims`` renewed by
        a heartbeat), so any number of processes on the same folder run each job once. A job
        another live worker holds, or whose pretraining another worker is running, is skipped
        for now and tried again after the rest; a dead worker's lease expires and its job is
        taken over. Returns when every job is done (by anyone)."""
        claims = Claims(runner.out / ".claims", ttl=float(runner.cfg.get("lease_seconds", 120)))
        pending = list(todo)
        ran = 0
        bar = tqdm(total=len(pending), desc="jobs", unit="job", disable=not runner.progress, dynamic_ncols=True)
        try:
            while pending:
                progressed = False
                for job in list(pending):
                    status = runner.run_claimed(job, claims, wait=False, number=(ran + 1, len(todo)))
                    if status in ("ran", "done"):
                        ran += status == "ran"
                        pending.remove(job)
                        bar.update(1)
                        progressed = True
                if pending and not progressed:
                    time.sleep(runner.poll_seconds)
        finally:
            bar.close()
        return ran


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to rebuild the run's Runner (picklable, small)."""

    cfg: dict
    data_root: str
    cache_dir: str
    out: str
    run_id: str
    plugins: tuple[str, ...] = ()
    track: bool = False  # the submitting process has a --log tracker: record metrics for it
    runner_cls: type | None = None  # the submitting runner's class (pickled by name), built in each worker

    @property
    def key(self) -> tuple:
        return (stable_hash(self.cfg), self.data_root, self.cache_dir, self.out, self.run_id, self.plugins, self.track)


class _RecordedRun:
    def __init__(self, recorder: "Recorder") -> None:
        self.recorder = recorder

    def log_hyperparams(self, params) -> None:  # the submitting process logs its own parameters
        pass

    def log_metrics(self, metrics, step: int | None = None) -> None:
        self.recorder.calls.append((dict(metrics), step))

    def finish(self, status: str = "success") -> None:
        pass


class Recorder:
    """The tracker inside a worker: it records ``log_metrics`` calls (per-epoch pretraining losses,
    a job's result metrics), which travel back with the task's result and are replayed into the
    real tracker by the submitting process -- so one process talks to TensorBoard or MLflow, and
    a ``--workers`` run logs the same metrics as a one-process run."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict, int | None]] = []

    def start_run(self, name: str, tags=None) -> _RecordedRun:
        return _RecordedRun(self)

    def drain(self) -> list[tuple[dict, int | None]]:
        calls, self.calls = self.calls, []
        return calls


_RUNNERS: dict[tuple, Any] = {}


def _worker_runner(spec: RunSpec):
    """This worker process's Runner for ``spec`` (built on first use, then reused)."""
    if spec.key not in _RUNNERS:
        root = logging.getLogger()
        logging.getLogger("distributed").setLevel(logging.WARNING)  # not its per-task INFO chatter
        if not root.handlers:
            logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s [worker {os.getpid()}] %(name)s: %(message)s",
                                datefmt="%H:%M:%S")
        for mod in spec.plugins:
            load_plugin(mod)
        set_worker_threads(os.environ.get("ECGBENCH_WORKER_THREADS"))
        r = spec.runner_cls(spec.cfg, data_root=spec.data_root, cache_dir=spec.cache_dir, out=spec.out,
                            progress=False, tracker=Recorder() if spec.track else None)
        r.begin(spec.run_id)
        _RUNNERS[spec.key] = r
    return _RUNNERS[spec.key]


def _drain(r) -> list:
    return r.tracker.drain() if isinstance(r.tracker, Recorder) else []


def pretrain_task(spec: RunSpec, req) -> tuple[str, list]:
    """Dask task: make sure the pretrained model ``req`` is in the cache (train it, or wait for
    the worker that holds its claim). Returns its label and the tracker calls it recorded."""
    r = _worker_runner(spec)
    _drain(r)
    r.pretrained(req.spec, req.seed, labels=req.labels, wait=True)
    return req.label, _drain(r)


def job_task(spec: RunSpec, job, _pretrained=None) -> tuple[str, list]:
    """Dask task: run one job under its claim (waiting while another live worker holds it).
    Returns 'ran' or 'done' (finished by someone else) and the tracker calls it recorded."""
    r = _worker_runner(spec)
    _drain(r)
    claims = Claims(r.out / ".claims", ttl=float(r.cfg.get("lease_seconds", 120)))
    while True:
        status = r.run_claimed(job, claims, wait=True)
        if status in ("ran", "done"):
            return status, _drain(r)
        time.sleep(r.poll_seconds)


def _replay(runner, spec: str, seed: int, calls: list) -> None:
    """Log a worker's recorded tracker calls to the submitting process's tracked run of (spec, seed)."""
    if not calls or runner.tracker is None:
        return
    run = runner.tracked(spec, seed)
    if run is None:
        return
    for metrics, step in calls:
        try:
            run.log_metrics(metrics, step=step)
        except Exception as exc:  # a tracker hiccup never loses results
            log.warning("tracker: could not log metrics of %s seed=%d: %s", spec, seed, exc)


@dataclass(frozen=True)
class DaskExecutor:
    """Run the jobs as a Dask graph on ``workers`` processes (``cluster``: local | slurm) or on a
    running ``scheduler``; ``plugins``: modules every worker imports first (``--plugin``)."""

    workers: int = 1
    scheduler: str | None = None
    cluster: str | None = None
    plugins: tuple[str, ...] = ()

    def __call__(self, runner, todo: list) -> int:
        return run_on_dask(runner, todo, workers=self.workers, scheduler=self.scheduler, cluster=self.cluster,
                           plugins=self.plugins)


def run_on_dask(runner, todo: list, *, workers: int, scheduler: str | None = None, cluster: str | None = None,
                plugins: tuple[str, ...] = ()) -> int:
    """Submit ``todo`` (the jobs not yet done) as a dependency graph; wait; return jobs finished.

    Errors of single jobs are collected and raised at the end as one ``UserError`` (the other
    jobs still run and are written)."""
    if not todo:
        return 0
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if cluster == "slurm" and not scheduler:
        check_slurm()  # before minutes of preparing datasets
    for name in dict.fromkeys(j.dataset for j in todo):  # build the prepared stores once, here
        runner.dataset(name)
    reqs = {job: runner.pretraining(job) for job in todo}
    # absolute paths: a worker may start in another folder (a SLURM job's --chdir, `dask worker` by hand)
    spec = RunSpec(cfg=runner.cfg, data_root=os.path.abspath(runner.data_root),
                   cache_dir=os.path.abspath(runner.cache_dir), out=os.path.abspath(runner.out),
                   run_id=runner.run_id, plugins=tuple(plugins), track=runner.tracker is not None,
                   runner_cls=type(runner))
    client, cl = client_for(workers, scheduler, cluster, runner.cfg["device"],
                            log_directory=os.path.join(spec.out, ".slurm"))
    errors: list[str] = []
    try:
        wait_for_first_worker(client, cl, float(runner.cfg.get("worker_wait_seconds", 600)),
                              "scheduler" if scheduler else (cluster or "local"))
        from distributed import as_completed  # local: Dask is an optional extra

        pre = {}
        for i, req in enumerate(dict.fromkeys(reqs.values())):
            pre[req] = client.submit(pretrain_task, spec, req, key=f"pretrain-{i}-{runner.run_id}", pure=False,
                                     priority=10)
        futs = {}
        for i, job in enumerate(todo):
            f = client.submit(job_task, spec, job, pre[reqs[job]], key=f"job-{i}-{runner.run_id}", pure=False)
            futs[f] = job
        log.info("submitted %d pretrainings and %d jobs to %d Dask workers", len(pre), len(futs),
                 len(client.scheduler_info().get("workers", {})) or workers)
        bar = tqdm(total=len(futs), desc="jobs", unit="job", disable=not runner.progress, dynamic_ncols=True)
        pre_of = {f: req for req, f in pre.items()}
        for f in as_completed([*pre.values(), *futs]):
            if f in pre_of:  # a pretraining: replay its epochs into the tracker (its errors show in its jobs)
                req = pre_of[f]
                if f.status == "finished":
                    _replay(runner, req.spec, req.seed, f.result()[1])
                continue
            job = futs[f]
            try:
                _status, calls = f.result()
                _replay(runner, job.method, job.seed, calls)
            except Exception as exc:  # one job's error must not lose the others
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                errors.append(f"{job.label}: {msg}")
                log.error("job failed: %s: %s", job.label, msg)
            bar.update(1)
        bar.close()
    finally:
        client.close()
        if cl is not None:
            cl.close()
    if errors:
        raise UserError(f"{len(errors)} job(s) failed (the others are saved; re-run to retry): {errors[0]}")
    return len(todo)


__all__ = ["LocalExecutor", "DaskExecutor", "run_on_dask", "RunSpec", "Recorder"]
