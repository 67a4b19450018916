"""``python -m benchmark ablate NAME``: run a named ablation grid (the grids and what they ask:
:mod:`benchmark.ablate`)."""

from __future__ import annotations

import logging

from benchmark.ablate import ABLATIONS, plan
from benchmark.cli.common import add_common_arguments, next_step_text, overrides_from_args, tracker_from_args
from benchmark.config import build_config
from benchmark.errors import UserError, unknown_name
from benchmark.engine.runner import Runner
from benchmark.registry import load_plugin

log = logging.getLogger("benchmark.ablate")


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help=f"ablation set: {', '.join(ABLATIONS)}")
    p.add_argument("--list", action="store_true", help="list the ablation sets and what they run")
    p.add_argument("--out", help="results folder (default results/ablation-NAME)")
    p.add_argument("--seeds", help="e.g. 0,1,2")
    p.add_argument("--protocols", help="override the set's protocols, e.g. zero-shot,few-label")
    p.add_argument("--tasks", help="PTB-XL tasks, e.g. superdiagnostic")
    p.add_argument("--label-fractions", help="e.g. 0.01,0.1,1.0")
    p.add_argument("--dry-run", action="store_true", help="print the plan of jobs and exit")
    add_common_arguments(p)


def main(args) -> int:
    if args.list or not args.name:
        for a in ABLATIONS.values():
            grid = ", ".join(a.methods) + "".join(f"; {k}={'|'.join(map(str, v))} (separate runs)"
                                                  for k, v in a.runs.items())
            print(f"{a.name:16s} {a.question}\n{'':16s}   {grid}")
        return 0
    for mod in args.plugin:
        load_plugin(mod)
    if args.name not in ABLATIONS:
        raise unknown_name("ablation set", args.name, ABLATIONS)
    overrides = overrides_from_args(args)
    if any(k in overrides for k in ABLATIONS[args.name].runs):
        raise UserError(f"ablation '{args.name}' varies {list(ABLATIONS[args.name].runs)} itself: do not --set them")
    parts = plan(args.name, args.out, overrides)
    for spec, reason in parts[0].skipped.items():
        print(f"note: skipping {spec}: {reason}")
    for part in parts:
        cfg = build_config(args.profile, args.config, part.overrides)
        runner = Runner(cfg, data_root=args.data_root, cache_dir=args.cache_dir, out=part.out,
                        progress=not (args.no_progress or args.dry_run),
                        tracker=None if args.dry_run else tracker_from_args(args, part.out))
        if args.dry_run:
            for job in runner.plan():
                print(f"{part.out}: {job.label}")
            continue
        log.info("ablation %s: %d variants -> %s", args.name, len(part.methods), part.out)
        rows = runner.run()
        print(runner.summary_text(rows))
    if not args.dry_run:
        print(next_step_text(*[p.out for p in parts]))
    return 0
