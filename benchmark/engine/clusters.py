"""Dask clusters for ``run --workers N`` / ``--scheduler ADDRESS`` / ``--cluster slurm``: local
worker processes (one GPU each when there are GPUs) or SLURM jobs through ``dask-jobqueue``, and
the client that talks to them (``docs/workers.md``). Dask and dask-jobqueue are optional extras
(``pip install -e '.[workers]'``): they are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import tempfile

from benchmark.errors import UserError

log = logging.getLogger("benchmark.workers")


def set_worker_threads(threads: str | int | None) -> None:
    """Give this worker process ``threads`` CPU threads for torch *and* for numpy's BLAS/OpenMP
    pools: Dask starts workers with ``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1``, which
    left the probes' and metrics' numpy work on one core (a linear-probe job ran 2x slower in a
    worker than in one process). Nothing happens without a number (a ``dask worker`` started by hand)."""
    if not threads:
        return
    import torch  # local: start-up time (this module is imported by the CLI)

    n = int(threads)
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits  # local: comes with scikit-learn (start-up time)
    except ImportError:
        return
    threadpool_limits(limits=n)  # persists for the process (not used as a context manager)


def local_cluster(n_workers: int, device: str):
    """A Dask ``SpecCluster`` of ``n_workers`` single-threaded worker processes on this machine,
    each with its own ``CUDA_VISIBLE_DEVICES`` when there are GPUs (and the device allows them)."""
    import torch  # local: start-up time of the CLI
    from distributed import Nanny, Scheduler, SpecCluster  # local: Dask is an optional extra

    n_gpu = 0
    if str(device).lower() != "cpu":
        try:
            n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception:
            n_gpu = 0
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
    import dask  # local: optional extra

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


def check_slurm() -> None:
    """What --cluster slurm needs before anything is built: dask-jobqueue, sbatch, cores and memory."""
    try:
        import dask_jobqueue  # noqa: F401  (local: optional extra)
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
    check_slurm()
    from dask_jobqueue import SLURMCluster  # local: optional extra

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
        from distributed import Client  # local: optional extra
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


__all__ = ["local_cluster", "slurm_cluster", "check_slurm", "client_for", "wait_for_first_worker", "set_worker_threads"]
