"""``python -m benchmark {data,list,run,report,tune,ablate,bench,cache}``.

Each sub-command lives in its own module, which offers ``add_arguments(parser)`` and
``main(args) -> int``; this file only wires them together and turns ``UserError`` into a
one-line message with exit status 2 (no traceback for mistakes the user can fix).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from benchmark import __version__
from benchmark.errors import UserError, resource_error

# sub-command -> (module, one-line help)
COMMANDS = {
    "data": ("benchmark.cli.data", "inspect, prepare or download the ECG databases"),
    "list": ("benchmark.cli.list", "list methods, variants, text encoders, datasets, tasks, protocols, profiles"),
    "run": ("benchmark.cli.run", "pretrain methods and evaluate them under the protocols"),
    "report": ("benchmark.cli.report", "tables and figures from result folders"),
    "tune": ("benchmark.cli.tune", "Optuna hyper-parameter study on validation data"),
    "ablate": ("benchmark.cli.ablate", "run a named ablation grid through the harness"),
    "bench": ("benchmark.cli.bench", "measure speed and memory ratios on this machine"),
    "cache": ("benchmark.cli.cache", "list or clean the cache (prepared stores, pretrained encoders, embeddings, ...)"),
}


class TqdmLoggingHandler(logging.Handler):
    """Log records written through ``tqdm.write``: a progress bar on the terminal is cleared,
    the line printed, the bar drawn again below it (no log line glued onto a bar)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm  # local: --help stays light

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def setup_logging(verbose: bool = False) -> None:
    """INFO (DEBUG with ``--verbose``) to stderr, through :class:`TqdmLoggingHandler`."""
    handler = TqdmLoggingHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="ECG representation-learning benchmark: METS and baselines under zero-shot, "
        "few-label and cross-dataset protocols.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = [*(sys.argv[1:] if argv is None else argv)]  # recorded in the results folder (command.txt)
    setup_logging(args.verbose)
    if not args.command:
        parser.print_help()
        return 0
    try:
        mod = importlib.import_module(args._module)
        return int(mod.main(args) or 0)
    except UserError as exc:
        if args.verbose or os.environ.get("ECGBENCH_TRACEBACK"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:  # disk full, permission denied, CUDA out of memory
        err = resource_error(exc)
        if err is None or args.verbose or os.environ.get("ECGBENCH_TRACEBACK"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished jobs are saved; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
