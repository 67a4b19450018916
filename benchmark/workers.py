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
SLURM workers (``--cluster slurm``) use their job's ``cores / processes`` threads unless that
variable is set; tested on a real one-node SLURM (``scripts/slurm-single-node.sh``).
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
        from benchmark.paths import stable_hash

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


def set_worker_threads(threads: str | int | None) -> None:
    """Give this worker process ``threads`` CPU threads for torch *and* for numpy's BLAS/OpenMP
    pools: Dask starts workers with ``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1``, which
    left the probes' and metrics' numpy work on one core (a linear-probe job ran 2x slower in a
    worker than in one process). Nothing happens without a number (a ``dask worker`` started by hand)."""
    if not threads:
        return
    import torch

    n = int(threads)
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn
    except ImportError:
        return
    threadpool_limits(limits=n)  # persists for the process (not used as a context manager)


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
        set_worker_threads(os.environ.get("ECGBENCH_WORKER_THREADS"))
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


def _slurm_settings(log_directory: str | None = None) -> dict:
    """``SLURMCluster`` keyword arguments from Dask's ``jobqueue.slurm`` config, adjusted so that
    every Dask worker process runs one task at a time (its Runner is not shared between threads):
    a job asks SLURM for ``cores`` CPUs (``--cpus-per-task``) and runs ``processes`` (default 1)
    single-threaded worker processes, each with ``cores / processes`` torch threads
    (``ECGBENCH_WORKER_THREADS`` from the submitting environment wins). The jobs' output goes to
    ``jobqueue.slurm.log-directory``, else to ``log_directory`` (not SLURM's ``slurm-<id>.out`` in
    the current folder)."""
    import shlex

    import dask

    def get(key):
        return dask.config.get(f"jobqueue.slurm.{key}", None)

    missing = [k for k in ("cores", "memory") if get(k) is None]
    if missing:
        raise UserError(f"--cluster slurm: set {' and '.join(missing)} of one SLURM job in Dask's config, e.g. "
                        "~/.config/dask/jobqueue.yaml: 'jobqueue: {slurm: {cores: 8, memory: 64GB}}' or "
                        "DASK_JOBQUEUE__SLURM__CORES=8 DASK_JOBQUEUE__SLURM__MEMORY=64GB (docs/workers.md)")
    try:
        cores = int(get("cores"))
        processes = int(get("processes") or 1)
        job_cpu = int(get("job-cpu") or cores)
    except (TypeError, ValueError) as exc:
        raise UserError(f"--cluster slurm: jobqueue.slurm cores/processes/job-cpu must be whole numbers ({exc})") from exc
    if processes < 1 or job_cpu < processes:
        raise UserError(f"--cluster slurm: jobqueue.slurm processes ({processes}) must be between 1 and the job's "
                        f"cores ({job_cpu})")
    threads = os.environ.get("ECGBENCH_WORKER_THREADS") or str(max(1, job_cpu // processes))
    prologue = list(get("job-script-prologue") or get("env-extra") or [])
    # sbatch passes the submitting environment on by default, but sites may turn that off
    prologue.append(f"export ECGBENCH_WORKER_THREADS={shlex.quote(threads)}")
    # a task's memory is its Runner's (datasets, models), not Dask data: Dask pausing the worker at
    # 80 % of the job's memory would leave the grid waiting forever; SLURM's --mem is the limit
    prologue += ["export DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE=False",
                 "export DASK_DISTRIBUTED__WORKER__MEMORY__TERMINATE=False"]
    scheduler_options = dict(get("scheduler-options") or {})
    scheduler_options.setdefault("dashboard_address", ":0")  # no clash with another run's :8787
    return {"cores": processes, "processes": processes, "job_cpu": job_cpu, "job_script_prologue": prologue,
            "scheduler_options": scheduler_options, "log_directory": get("log-directory") or log_directory}


def _sbatch_test_only(script: str) -> None:
    """Let SLURM check one job script without queueing it (``sbatch --test-only``): a wrong
    partition, account, memory or time limit becomes one clear error here instead of a traceback
    in Dask's event loop and workers that never come."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="ecgbench-slurm-", delete=False) as f:
        f.write(script)
    try:
        proc = subprocess.run(["sbatch", "--test-only", f.name], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"--cluster slurm: could not run 'sbatch --test-only': {exc}") from exc
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        lines = [ln.strip().removeprefix("sbatch: ") for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise UserError(f"--cluster slurm: SLURM refuses the worker job ({'; '.join(lines) or f'exit code {proc.returncode}'}): "
                        "check 'sinfo' (nodes up?) and queue/account/cores/memory/walltime in Dask's jobqueue.yaml "
                        "(docs/workers.md)")


def _check_slurm() -> None:
    """What --cluster slurm needs before anything is built: dask-jobqueue, sbatch, cores and memory."""
    import shutil

    try:
        import dask_jobqueue  # noqa: F401
    except ImportError as exc:
        raise UserError("--cluster slurm needs dask-jobqueue: pip install -e '.[workers]'") from exc
    if shutil.which("sbatch") is None:
        raise UserError("--cluster slurm: 'sbatch' is not on PATH: run on a SLURM login node (a one-node SLURM for "
                        "trying it: scripts/slurm-single-node.sh), or drop --cluster to run local workers")
    _slurm_settings()


def slurm_cluster(n_workers: int, log_directory: str | None = None):
    """``dask_jobqueue.SLURMCluster`` with ``n_workers`` jobs; its queue, GPUs (``job_extra_directives:
    ['--gres=gpu:1']``), cores, memory and walltime come from Dask's config (``~/.config/dask/
    jobqueue.yaml`` or ``DASK_JOBQUEUE__SLURM__*``; docs/workers.md)."""
    _check_slurm()
    from dask_jobqueue import SLURMCluster

    kwargs = _slurm_settings(log_directory)
    try:
        cluster = SLURMCluster(**kwargs)
    except (ValueError, TypeError, OSError) as exc:
        raise UserError(f"--cluster slurm: dask-jobqueue cannot start: {str(exc).splitlines()[0]}") from exc
    try:
        _sbatch_test_only(cluster.job_script())
    except BaseException:
        cluster.close()
        raise
    log.info("SLURM: submitting %d job(s) of %d CPU(s), %d Dask worker process(es) each; their logs: %s",
             n_workers, kwargs["job_cpu"], kwargs["processes"], kwargs["log_directory"] or "slurm-<job id>.out here")
    log.debug("SLURM job script:\n%s", cluster.job_script())
    cluster.scale(jobs=n_workers)
    return cluster


def _slurm_jobs_text(cluster) -> str:
    """'SLURM jobs 12 (PENDING, Resources), 13 (...)' for the jobs of ``cluster`` (squeue)."""
    import subprocess

    ids = [str(j.job_id) for j in getattr(cluster, "workers", {}).values() if getattr(j, "job_id", None)]
    if not ids:
        return "no SLURM job was submitted (sbatch failed; its error is in the log above)"
    try:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T %r"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    states = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    parts = [f"{i} ({', '.join(states[i])})" if i in states else f"{i} (ended)" for i in ids]
    return "SLURM job(s) " + ", ".join(parts)


def wait_for_first_worker(client, cluster, timeout: float, what: str) -> None:
    """Block until one Dask worker has joined; after ``timeout`` seconds raise a one-line
    ``UserError`` saying why none came and what to do (not a run that hangs forever)."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError as exc:  # distributed's WorkerStartTimeoutError is one
        if what == "slurm":
            logs = (getattr(cluster, "_job_kwargs", None) or {}).get("log_directory") or "slurm-<job id>.out"
            why = (f"{_slurm_jobs_text(cluster)}; check 'squeue', the workers' logs ({logs}) and that the nodes "
                   "can reach this machine (jobqueue.slurm.interface)")
        elif what == "scheduler":
            why = "start workers with 'dask worker ADDRESS' pointing at it"
        else:
            why = "the local worker processes did not start (see the log above)"
        raise UserError(f"no Dask worker joined within {timeout:g} s: {why}; wait longer with "
                        f"--set worker_wait_seconds=N") from exc


def client_for(workers: int, scheduler: str | None, cluster: str | None, device: str,
               log_directory: str | None = None):
    try:
        from distributed import Client
    except ImportError as exc:
        raise UserError("--workers/--scheduler/--cluster need Dask: pip install -e '.[workers]'") from exc
    # after the import, which sets up distributed's logging (its "distributed" logger at INFO)
    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.core",
                 "distributed.http.proxy", "dask_jobqueue"):
        logging.getLogger(name).setLevel(logging.ERROR)  # their INFO chatter would bury the run's log
    if scheduler:
        return Client(scheduler), None
    if cluster == "slurm":
        c = slurm_cluster(workers, log_directory)
    elif cluster in (None, "local"):
        c = local_cluster(workers, device)
    else:
        raise UserError(f"unknown --cluster '{cluster}': use local or slurm (or --scheduler ADDRESS)")
    try:
        return Client(c), c
    except BaseException:
        c.close()
        raise


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
    if cluster == "slurm" and not scheduler:
        _check_slurm()  # before minutes of preparing datasets
    for name in dict.fromkeys(j.dataset for j in todo):  # build the prepared stores once, here
        runner.dataset(name)
    reqs = {job: runner.pretraining(job) for job in todo}
    # absolute paths: a worker may start in another folder (a SLURM job's --chdir, `dask worker` by hand)
    spec = RunSpec(cfg=runner.cfg, data_root=os.path.abspath(runner.data_root),
                   cache_dir=os.path.abspath(runner.cache_dir), out=os.path.abspath(runner.out),
                   run_id=runner.run_id, plugins=tuple(plugins), track=runner.tracker is not None)
    client, cl = client_for(workers, scheduler, cluster, runner.cfg["device"],
                            log_directory=os.path.join(spec.out, ".slurm"))
    errors: list[str] = []
    try:
        wait_for_first_worker(client, cl, float(runner.cfg.get("worker_wait_seconds", 600)),
                              "scheduler" if scheduler else (cluster or "local"))
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


__all__ = ["run_on_dask", "local_cluster", "slurm_cluster", "wait_for_first_worker", "set_worker_threads", "RunSpec",
           "Recorder"]
