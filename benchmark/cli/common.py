"""Arguments and helpers shared by the commands (one declaration each): ``--data-root``,
``--cache-dir`` and ``--device`` (every command that takes them declares them through
:func:`add_data_root`, :func:`add_cache_dir`, :func:`add_device`, with its own help text where
the command uses them differently), the settings flags of ``run``/``tune``/``ablate``, how flags
become config overrides, the ``--log`` tracker, and the closing hint that names the report
command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmark.config import DEFAULTS, PROFILES
from benchmark.errors import UserError
from benchmark.registry import load_plugin
from benchmark.report.index import report_command
from benchmark.engine.tracking import add_arguments as add_tracking_arguments
from benchmark.engine.tracking import make_tracker


DATA_ROOT_HELP = "folder holding ptb-xl/, mitdb/, cinc2017/ (default $ECGBENCH_DATA_ROOT or ../shared/data)"
CACHE_DIR_HELP = ("prepared stores, text embeddings, pretrained encoders (default: $ECGBENCH_CACHE_DIR, "
                  "else the user cache dir)")
DEVICE_HELP = "auto | cpu | cuda"


def add_data_root(p, help: str = DATA_ROOT_HELP, metavar: str | None = None) -> None:
    """``--data-root`` (resolved by ``paths.resolve_data_root``: None means the default root)."""
    p.add_argument("--data-root", metavar=metavar, help=help)


def add_cache_dir(p, help: str = CACHE_DIR_HELP, metavar: str | None = None) -> None:
    """``--cache-dir`` (resolved by ``paths.resolve_cache_dir``: None means the default cache dir)."""
    p.add_argument("--cache-dir", metavar=metavar, help=help)


def add_device(p, default: str | None = None, help: str = DEVICE_HELP) -> None:
    """``--device`` (resolved by ``device.resolve_device``; None leaves it to the settings)."""
    p.add_argument("--device", default=default, help=help)


PLUGIN_HELP = ("a plug-in that registers methods, encoders, protocols or datasets: a .py file (path/to/file.py) "
               "or a module name on the Python path (repeatable; default: none)")


def add_plugin(p) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE", help=PLUGIN_HELP)


def load_plugins(args) -> None:
    """Import every ``--plugin`` and keep their canonical forms in ``args.plugin`` (a file's
    absolute path), which is what worker processes import again."""
    args.plugin = [load_plugin(spec) for spec in getattr(args, "plugin", None) or []]


def profile_default(key: str) -> str:
    """What each profile sets ``key`` to, for ``--help``: 'quick: 0; shared: 0,1,2; ...'."""
    def show(v):
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)

    vals = {name: show(prof.get(key, DEFAULTS[key][0])) for name, prof in PROFILES.items()}
    if len(set(vals.values())) == 1:
        return next(iter(vals.values()))
    return "; ".join(f"{n}: {v}" for n, v in vals.items())


def add_plan_arguments(p, methods: bool = True) -> None:
    """The flags that choose what a run plans (``run``, ``ablate``): plural names, the singular
    accepted as an alias, every default shown."""
    if methods:
        p.add_argument("--methods", "--method", dest="methods",
                       help="comma-separated method variants, grids allowed: 'mets[lm=minilm|tfidf],simclr' "
                       f"(default: the profile's: {profile_default('methods')})")
    p.add_argument("--protocols", "--protocol", dest="protocols",
                   help=f"comma-separated protocols (default: the profile's: {profile_default('protocols')})")
    p.add_argument("--tasks", "--task", dest="tasks",
                   help="PTB-XL tasks for zero-shot and few-label, e.g. superdiagnostic,rhythm (default: the "
                   f"profile's: zero-shot {profile_default('zero_shot_tasks')}; few-label "
                   f"{profile_default('few_label_tasks')})")
    p.add_argument("--seeds", "--seed", dest="seeds",
                   help=f"pretraining seeds: 0,1,2 or a range 0-2, or both: 0-2,5 (default: the profile's: "
                   f"{profile_default('seeds')})")
    p.add_argument("--label-fractions", "--label-fraction", dest="label_fractions",
                   help="few-label fractions of the training labels: 0.01,0.1 or percentages 1%%,10%% "
                   f"(default: the profile's: {profile_default('label_fractions')})")


def resolve_profile(args) -> str:
    """``--profile`` if given, else the profile a ``--config`` file names (a recorded
    ``config.yaml``), else quick; stored back in ``args.profile``."""
    profile = getattr(args, "profile", None)
    if profile is None and getattr(args, "config", None):
        from benchmark.config import load_config_file

        profile = load_config_file(args.config).get("profile")
    args.profile = str(profile) if profile is not None else "quick"
    return args.profile


class _ListJobs(argparse.Action):
    """``--list-jobs``: sets ``list_jobs`` and ``dry_run`` alike, so a listing never starts the jobs it lists."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.list_jobs = namespace.dry_run = True


def add_dry_run_arguments(p, help: str) -> None:
    """``--dry-run`` (``help`` says what the command prints) and ``--list-jobs``, which implies it."""
    p.add_argument("--dry-run", action="store_true", help=help)
    p.add_argument("--list-jobs", action=_ListJobs, nargs=0, default=False,
                   help="print the plan and every planned job, then exit (implies --dry-run: nothing runs)")


def add_common_arguments(p) -> None:
    p.add_argument("--profile", default=None, help=f"named settings: {', '.join(PROFILES)} (default: the "
                   "--config file's profile, else quick)")
    p.add_argument("--config", help="YAML file of settings (e.g. best.yaml from `tune`, or the config.yaml a run "
                   "records in its folder); flags override it (default: none)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set finetune_epochs=5 --set method_settings.width=64 "
                   "(default: none)")
    add_device(p, help=f"{DEVICE_HELP} (default: the profile's: {profile_default('device')})")
    p.add_argument("--precision", help=f"auto | fp32 | bf16 | fp16 (default: the profile's: "
                   f"{profile_default('precision')})")
    add_data_root(p)
    add_cache_dir(p)
    add_plugin(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: bars on)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit "
                   "(nothing is run; the output works as --config)")
    add_tracking_arguments(p)


def overrides_from_args(args) -> dict:
    ov: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise UserError(f"--set '{item}': expected KEY=VALUE")
        k, v = item.split("=", 1)
        ov[k.strip()] = v
    mapping = {
        "methods": "methods", "protocols": "protocols", "seeds": "seeds",
        "label_fractions": "label_fractions", "device": "device", "precision": "precision",
    }
    for attr, key in mapping.items():
        val = getattr(args, attr, None)
        if val is not None:
            ov[key] = val
    tasks = getattr(args, "tasks", None)
    if tasks:
        ov["zero_shot_tasks"] = tasks
        ov["few_label_tasks"] = tasks
    return ov


def tracker_from_args(args, out, experiment: str | None = None):
    """The ``--log`` tracker of a command (None without ``--log``)."""
    return make_tracker(getattr(args, "log", None), out, uri=getattr(args, "log_uri", None), experiment=experiment)


def next_step_text(*outs, tracker=None) -> str:
    """The exact command that makes the report of what a run just wrote (and where the tracker is)."""
    import os

    paths = [Path(o) for o in outs]
    # an ablation writes one folder per setting under one parent (nested for arms that set two
    # things): one report named after the folder they all sit in
    common = Path(os.path.commonpath([str(p) for p in paths])) if len(paths) > 1 else paths[0]
    name = common.name if len(paths) > 1 and common.name else paths[0].name
    report = Path("reports") / name
    text = (f"make the report (tables, figures, index.md, index.html in {report}/):\n"
            f"  {report_command(outs, report)}")
    if tracker is not None:
        text = f"{tracker.hint()}\n" + text
    return text
