"""``python -m benchmark run``: pretrain the chosen methods once, evaluate them under every
protocol, write tidy results job by job (``benchmark.engine``). This module parses the flags,
builds the config and the runner, and picks the executor: this process's cooperative loop, or a
Dask graph with ``--workers``/``--scheduler``/``--cluster``."""

from __future__ import annotations

from benchmark import distributed
from benchmark.cli.common import add_common_arguments, next_step_text, overrides_from_args, tracker_from_args
from benchmark.config import build_config
from benchmark.engine.executors import DaskExecutor
from benchmark.engine.runner import Runner
from benchmark.registry import load_builtin_plugins, load_plugin


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
    add_common_arguments(p)


def main(args) -> int:
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
    executor = None  # this process's cooperative loop (benchmark.engine.executors.LocalExecutor)
    if args.workers is not None or args.scheduler or args.cluster:
        executor = DaskExecutor(workers=args.workers or 1, scheduler=args.scheduler, cluster=args.cluster,
                                plugins=tuple(args.plugin))
    rows = runner.run(executor)
    print(runner.summary_text(rows))
    print(next_step_text(args.out, tracker=tracker))
    return 0
