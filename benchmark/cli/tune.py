"""``python -m benchmark tune``: an Optuna study of one method's settings, on validation data only
(``benchmark.tune``: storage, objective, tuner, search spaces). This module parses the flags."""

from __future__ import annotations

import re

from benchmark.cli.common import add_common_arguments, load_plugins, overrides_from_args, resolve_profile, tracker_from_args
from benchmark.config import declared_tasks, parse_seeds
from benchmark.errors import UserError, unknown_name
from benchmark.protocols import objectives
from benchmark.registry import expand_grid, load_builtin_plugins, split_top_level
from benchmark.results import config_yaml
from benchmark.tune.tuner import Tuner


def add_arguments(p) -> None:
    p.add_argument("--methods", "--method", dest="method", help="the one method or variant to tune, e.g. mets or "
                   "'mets[lm=tfidf]' (settings in brackets are fixed, not searched; required, no default)")
    p.add_argument("--trials", type=int, default=20, help="COMPLETE+PRUNED trials the study should hold in "
                   "total, over all workers (default 20)")
    p.add_argument("--timeout", help="stop starting new trials after this long, e.g. 90m, 2h, 3600 (seconds) (default: no limit)")
    p.add_argument("--study", help="study name (default: <method>-<objective>-<task>)")
    p.add_argument("--storage", help="Optuna storage: an RDB URL (sqlite:///f.db, postgresql://...) or a "
                   "journal file path (*.log); default: <out>/journal.log")
    p.add_argument("--objective", default="auto", choices=("auto", *objectives()),
                   help="validation macro AUROC of zero-shot or of a linear probe (auto: zero-shot for "
                   "methods with a text tower; default: auto)")
    p.add_argument("--tasks", "--task", dest="task", default="superdiagnostic",
                   help="the one PTB-XL task of the objective (default: superdiagnostic)")
    p.add_argument("--seeds", "--seed", dest="seed", help="the one pretraining seed of every trial (default: the "
                   "profile's first seed)")
    p.add_argument("--space", action="append", default=[], metavar="NAME=SPEC",
                   help="change the search space: lr=1e-5..1e-2:log, proj_dim=64|128, width=32 (fixed) (default: the method's search space, `--list-space` shows it)")
    p.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"),
                   help="stop unpromising trials early, judged on their per-epoch validation score: median (below "
                   "the median of earlier trials at the same epoch), hyperband, or none (default: median)")
    p.add_argument("--sampler-seed", type=int, help="seed of the TPE sampler (default: random per worker)")
    p.add_argument("--heartbeat", type=int, default=60, help="seconds between a worker's heartbeats (default 60)")
    p.add_argument("--grace", type=int, help="seconds without heartbeat before a RUNNING trial counts as dead "
                   "and is retried (default 3 x heartbeat)")
    p.add_argument("--max-retry", type=int, default=3, help="retries of a trial whose worker died (default 3)")
    p.add_argument("--out", help="study folder (default: results/tune/<study>)")
    p.add_argument("--summary-only", action="store_true", help="write best.yaml, tables and figures; run no trial")
    p.add_argument("--list-space", action="store_true", help="print the method's search space and exit")
    add_common_arguments(p)


def parse_duration(text: str | None) -> float | None:
    """'2h' -> 7200, '90m' -> 5400, '45s' / '45' -> 45, '1h30m' -> 5400."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", t)
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", t):
        raise UserError(f"--timeout '{text}': expected a duration like 2h, 90m, 1h30m or seconds")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def check_single(args) -> None:
    """``tune`` studies one method, one task, one seed: the plural flags (shared with ``run``)
    take exactly one value here. Turns ``args.seed`` into an int and checks the task's name."""
    methods = split_top_level(str(args.method))
    variants = [v for m in methods for v in expand_grid(m)]
    if len(methods) != 1 or len(variants) != 1:
        raise UserError(f"tune studies one method at a time: --methods '{args.method}' names {len(variants)} "
                        "variants; run one study per method")
    tasks = [t.strip() for t in str(args.task).split(",") if t.strip()]
    if len(tasks) != 1:
        raise UserError(f"tune's objective is one task: --tasks '{args.task}' names {len(tasks)}; "
                        "run one study per task")
    known = declared_tasks("ptbxl")
    if tasks[0] not in known:
        raise unknown_name("ptbxl task", tasks[0], known)
    args.task = tasks[0]
    if args.seed is not None:
        seeds = parse_seeds(args.seed)
        if len(seeds) != 1:
            raise UserError(f"tune pretrains every trial with one seed: --seeds '{args.seed}' names {len(seeds)}")
        args.seed = seeds[0]


def main(args) -> int:
    load_plugins(args)
    load_builtin_plugins()
    if not args.method:
        raise UserError("tune needs --methods (one method), e.g. --methods mets")
    check_single(args)
    resolve_profile(args)
    tuner = Tuner.from_args(args, overrides_from_args(args))
    if getattr(args, "print_config", False):
        print(config_yaml(tuner.cfg), end="")
        return 0
    if args.list_space:
        for p in tuner.params:
            print(p.describe())
        for k, v in {**tuner.fixed_method, **tuner.fixed_run}.items():
            print(f"{k}={v} (fixed)")
        return 0
    if not args.summary_only:
        # --log: one tracked run per trial, in an experiment named after the study
        tuner.tracker = tracker_from_args(args, tuner.out, experiment=tuner.study_name)
        tuner.optimize(args.trials, timeout=parse_duration(args.timeout))
        if tuner.tracker is not None:
            print(tuner.tracker.hint())
    paths = tuner.write_outputs()
    print(tuner.summary_text())
    for what, path in paths.items():
        print(f"{what}: {path}")
    return 0


