"""``python -m benchmark ablate NAME``: run a named ablation grid (the grids and what they ask:
:mod:`benchmark.ablate`)."""

from __future__ import annotations

import logging

from benchmark.ablate import ABLATIONS, arm_name, plan, select_arms
from benchmark.cli.common import (add_common_arguments, add_dry_run_arguments, add_plan_arguments, load_plugins,
                                  next_step_text, overrides_from_args,
                                  resolve_profile, tracker_from_args)
from benchmark.config import build_config
from benchmark.errors import UserError, unknown_name
from benchmark.engine.dryrun import plan_table
from benchmark.engine.runner import Runner
from benchmark.results import config_yaml, write_run_record

log = logging.getLogger("benchmark.ablate")


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help=f"ablation set: {', '.join(ABLATIONS)}")
    p.add_argument("--list", action="store_true", help="list the ablation sets and what they run")
    p.add_argument("--out", help="results folder (default: results/ablation-NAME, one sub-folder per run setting)")
    add_plan_arguments(p, methods=False)  # the set chooses its methods; --protocols overrides the set's
    p.add_argument("--arm", action="append", metavar="SETTINGS",
                   help="run only this arm, named as --list prints it (e.g. beat_norm=record or default); repeatable. "
                        "The report of the set still reads every arm's folder")
    add_dry_run_arguments(p, "print the plan of each folder as a table and exit")
    add_common_arguments(p)


def main(args) -> int:
    if args.list or not args.name:
        for a in ABLATIONS.values():
            grid = ", ".join(a.methods) + "".join(f"; {k}={'|'.join(map(str, v))} (separate runs)"
                                                  for k, v in a.runs.items())
            if a.combos:
                grid += "; runs: " + " | ".join(arm_name(c) for c in a.combos)
            print(f"{a.name:16s} {a.question}\n{'':16s}   {grid}")
        return 0
    load_plugins(args)
    if args.name not in ABLATIONS:
        raise unknown_name("ablation set", args.name, ABLATIONS)
    resolve_profile(args)
    overrides = overrides_from_args(args)
    if any(k in overrides for k in ABLATIONS[args.name].runs):
        raise UserError(f"ablation '{args.name}' varies {list(ABLATIONS[args.name].runs)} itself: do not --set them")
    every = plan(args.name, args.out, overrides)
    parts = select_arms(every, getattr(args, "arm", None))
    for spec, reason in parts[0].skipped.items():
        print(f"note: skipping {spec}: {reason}")
    # every folder's settings and plan are checked before the first one runs
    cfgs = [build_config(args.profile, args.config, part.overrides) for part in parts]
    if getattr(args, "print_config", False):
        for part, cfg in zip(parts, cfgs):
            print(f"# {part.out}\n{config_yaml(cfg)}", end="")
        return 0
    runners = [Runner(cfg, data_root=args.data_root, cache_dir=args.cache_dir, out=part.out,
                      progress=not (args.no_progress or args.dry_run),
                      tracker=None if args.dry_run else tracker_from_args(args, part.out))
               for part, cfg in zip(parts, cfgs)]
    jobs = [runner.plan() for runner in runners]
    for part, cfg, runner, planned in zip(parts, cfgs, runners, jobs):
        if args.dry_run:
            print(plan_table(runner, planned))
            if getattr(args, "list_jobs", False):
                for job in planned:
                    print(f"{part.out}: {job.label}")
            continue
        if getattr(args, "_argv", None) is not None:
            write_run_record(part.out, cfg, args._argv)
        log.info("ablation %s: %d variants -> %s", args.name, len(part.methods), part.out)
        rows = runner.run()
        print(runner.summary_text(rows))
    if not args.dry_run:
        # the report covers the whole set: every arm with results, not only the --arm ones just run
        from benchmark.results import holds_results

        print(next_step_text(*[p.out for p in every if p in parts or holds_results(p.out)]))
    return 0
