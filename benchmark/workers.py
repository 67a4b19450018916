"""``run --workers N`` / ``--scheduler ADDRESS`` / ``--cluster slurm``: the job grid on Dask.

Why Dask distributed (see ``docs/workers.md``): the same scheduler runs a ``LocalCluster`` of
worker processes on one machine and, through ``dask-jobqueue``'s ``SLURMCluster`` (or any
``dask scheduler`` / ``dask worker`` started by hand), workers on a cluster; tasks take other
tasks' futures as arguments, so "pretraining before the evaluations that need it" is a
dependency graph, not a barrier; a worker that dies has its tasks rescheduled. It is pure Python
and pip-installable (``pip install -e '.[workers]'``).

The graph: one task per distinct pretraining the jobs need (``Protocol.pretraining``), one task
per job depending on its pretraining's task. Every task runs in a worker process through that
process's own :class:`~benchmark.harness.Runner` (built once per worker from the run's settings,
keeping its datasets, models and embeddings in memory between tasks) and takes the same claims
as a single-process run (``benchmark.claims``), so several ``run`` commands -- with or without
workers -- can share one results folder and cache. Rows go to the same tidy folder; every row of
one invocation carries its ``run_id``.

GPUs: each local worker sees one GPU (``CUDA_VISIBLE_DEVICES`` set per worker; with more
workers than GPUs they share them round-robin). CPU threads: each worker uses as many torch threads as the
submitting process (so CPU results match a single-process run to the last digit: the thread
count changes the order of floating-point sums); ``ECGBENCH_WORKER_THREADS=N`` sets N per worker.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from benchmark.errors import UserError

log = logging.getLogger("benchmark.workers")


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

    @property
    def key(self) -> tuple:
        from benchmark.config import stable_hash

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
        from benchmark.harness import Runner
        from benchmark.registry import load_plugin
        from benchmark.results import ResultStore

        for mod in spec.plugins:
            load_plugin(mod)
        threads = os.environ.get("ECGBENCH_WORKER_THREADS")
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        r = Runner(spec.cfg, data_root=spec.data_root, cache_dir=spec.cache_dir, out=spec.out, progress=False,
                   tracker=Recorder() if spec.track else None)
        r.store = ResultStore(spec.out)
        r.run_id = spec.run_id
        r._lm_start = 0.0
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
    from benchmark.claims import Claims

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


def local_cluster(n_workers: int, device: str):
    """A Dask ``SpecCluster`` of ``n_workers`` single-threaded worker processes on this machine,
    each with its own ``CUDA_VISIBLE_DEVICES`` when there are GPUs (and the device allows them)."""
    from distributed import Nanny, Scheduler, SpecCluster

    n_gpu = 0
    if str(device).lower() != "cpu":
        try:
            import torch

            n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception:
            n_gpu = 0
    import torch

    # Dask starts workers with OMP_NUM_THREADS=1; torch's thread count changes the order of CPU
    # floating-point sums (fine-tuned AUROCs moved in the 5th digit), so workers use this
    # process's count unless ECGBENCH_WORKER_THREADS says otherwise.
    threads = os.environ.get("ECGBENCH_WORKER_THREADS") or str(torch.get_num_threads())
    workers = {}
    for i in range(n_workers):
        # the worker processes' own Dask INFO lines ("Registered to: ...") would bury the run's log
        env = {"ECGBENCH_WORKER_THREADS": threads, "DASK_LOGGING__DISTRIBUTED": "warning"}
        if n_gpu:
            env["CUDA_VISIBLE_DEVICES"] = str(i % n_gpu)
        workers[f"worker-{i}"] = {"cls": Nanny, "options": {"nthreads": 1, "env": env, "memory_limit": 0}}
    log.info("Dask local cluster: %d worker processes%s", n_workers, f" (one GPU each of {n_gpu})" if n_gpu else "")
    cores = os.cpu_count() or 1
    if not n_gpu and n_workers > 1 and n_workers * int(threads) > cores:
        log.warning("%d CPU workers x %s torch threads on %d cores: they compete for the cores, so --workers "
                    "makes a CPU run slower, not faster (bench figure 8; docs/workers.md); use --workers with "
                    "GPUs or more cores, or ECGBENCH_WORKER_THREADS=%d (numbers may then differ from a "
                    "one-process run in the last digits)", n_workers, threads, cores, max(1, cores // n_workers))
    return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
                       silence_logs=logging.WARNING)


def slurm_cluster(n_workers: int):
    """``dask_jobqueue.SLURMCluster`` with ``n_workers`` jobs; its queue, GPUs (``job_extra_directives:
    ['--gres=gpu:1']``), cores, memory and walltime come from Dask's config (``~/.config/dask/
    jobqueue.yaml`` or ``DASK_JOBQUEUE__SLURM__*``; docs/workers.md)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise UserError("--cluster slurm needs dask-jobqueue: pip install -e '.[workers]' dask-jobqueue") from exc
    cluster = SLURMCluster()
    cluster.scale(jobs=n_workers)
    return cluster


def client_for(workers: int, scheduler: str | None, cluster: str | None, device: str):
    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.core"):
        logging.getLogger(name).setLevel(logging.ERROR)  # their INFO chatter would bury the run's log
    try:
        from distributed import Client
    except ImportError as exc:
        raise UserError("--workers/--scheduler/--cluster need Dask: pip install -e '.[workers]'") from exc
    if scheduler:
        return Client(scheduler), None
    if cluster == "slurm":
        c = slurm_cluster(workers)
    elif cluster in (None, "local"):
        c = local_cluster(workers, device)
    else:
        raise UserError(f"unknown --cluster '{cluster}': use local or slurm (or --scheduler ADDRESS)")
    return Client(c), c


def run_on_dask(runner, todo: list, *, workers: int, scheduler: str | None = None, cluster: str | None = None,
                plugins: tuple[str, ...] = ()) -> int:
    """Submit ``todo`` (the jobs not yet done) as a dependency graph; wait; return jobs finished.

    Errors of single jobs are collected and raised at the end as one ``UserError`` (the other
    jobs still run and are written)."""
    from tqdm.auto import tqdm

    if not todo:
        return 0
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    for name in dict.fromkeys(j.dataset for j in todo):  # build the prepared stores once, here
        runner.dataset(name)
    reqs = {job: runner.pretraining(job) for job in todo}
    spec = RunSpec(cfg=runner.cfg, data_root=str(runner.data_root), cache_dir=str(runner.cache_dir),
                   out=str(runner.out), run_id=runner.run_id, plugins=tuple(plugins),
                   track=runner.tracker is not None)
    client, cl = client_for(workers, scheduler, cluster, runner.cfg["device"])
    errors: list[str] = []
    try:
        from distributed import as_completed

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


__all__ = ["run_on_dask", "local_cluster", "slurm_cluster", "RunSpec", "Recorder"]
