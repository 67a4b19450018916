"""``python -m benchmark run``: pretrain the chosen methods once, evaluate them under every
protocol, write tidy results job by job (``benchmark.engine``). This module parses the flags,
builds the config and the runner, and picks the executor: this process's cooperative loop, or a
Dask graph with ``--workers``/``--scheduler``/``--cluster``."""

from __future__ import annotations

from benchmark import distributed
from benchmark.cli.common import (add_common_arguments, add_dry_run_arguments, add_plan_arguments, load_plugins,
                                  next_step_text, overrides_from_args,
                                  resolve_profile, tracker_from_args)
from benchmark.config import build_config
from benchmark.engine.dryrun import plan_table
from benchmark.engine.executors import DaskExecutor
from benchmark.engine.runner import Runner
from benchmark.registry import load_builtin_plugins
from benchmark.results import config_yaml, write_run_record


def add_arguments(p) -> None:
    add_plan_arguments(p)
    p.add_argument("--out", default="results/run", help="results folder; it records each invocation's config.yaml "
                   "and command.txt (default: results/run)")
    add_dry_run_arguments(p, "print the plan as a table (jobs per protocol and method, done / to do, "
                          "pretrainings, time estimate) and exit")
    p.add_argument("--workers", type=int, help="spread the jobs over N Dask worker processes (one GPU each when "
                   "there are GPUs); with --cluster slurm: N SLURM jobs (docs/workers.md) (default: none, this "
                   "process runs the jobs)")
    p.add_argument("--cluster", choices=("local", "slurm"), help="where --workers run: local (default) or slurm "
                   "(dask-jobqueue, configured in Dask's jobqueue.yaml)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="submit the jobs to a running Dask scheduler, "
                   "e.g. tcp://node1:8786 (workers started with 'dask worker ADDRESS') (default: none)")
    add_common_arguments(p)


def dry_run(runner, list_jobs: bool = False) -> None:
    """Print the plan table (and with ``list_jobs`` every job's label after it)."""
    jobs = runner.plan()
    print(plan_table(runner, jobs))
    if list_jobs:
        print("jobs:")
        for job in jobs:
            print(f"  {job.label}")


def main(args) -> int:
    load_plugins(args)
    resolve_profile(args)
    cfg = build_config(args.profile, args.config, overrides_from_args(args))
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    argv = getattr(args, "_argv", None)
    if not args.dry_run and distributed.init_from_env(cfg["device"]):
        try:
            tracker = tracker_from_args(args, args.out) if distributed.is_main() else None
            runner = Runner(cfg, data_root=args.data_root, cache_dir=args.cache_dir, out=args.out,
                            progress=not args.no_progress and distributed.is_main(), tracker=tracker)
            runner.plan()  # an empty plan is an error before any rank pretrains
            if distributed.is_main() and argv is not None:
                write_run_record(args.out, cfg, argv)
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
        dry_run(runner, list_jobs=args.list_jobs)
        return 0
    tracker = tracker_from_args(args, args.out)
    runner = Runner(cfg, data_root=args.data_root, cache_dir=args.cache_dir, out=args.out,
                    progress=not args.no_progress, tracker=tracker)
    runner.plan()  # every name checked and the plan not empty before anything is written or trained
    if argv is not None:
        write_run_record(args.out, cfg, argv)
    executor = None  # this process's cooperative loop (benchmark.engine.executors.LocalExecutor)
    if args.workers is not None or args.scheduler or args.cluster:
        executor = DaskExecutor(workers=args.workers or 1, scheduler=args.scheduler, cluster=args.cluster,
                                plugins=tuple(args.plugin))
    rows = runner.run(executor)
    print(runner.summary_text(rows))
    print(next_step_text(args.out, tracker=tracker))
    return 0
