"""``python -m benchmark cache``: list (default) or clean the cache dir (what it holds, and the
rules of ``clean``: :mod:`benchmark.cachectl`)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.cachectl import KINDS, clean, format_entries, known_top, parse_age, scan, select
from benchmark.cli.common import add_cache_dir
from benchmark.errors import UserError
from benchmark.paths import default_cache_dir, human_size


def add_arguments(p) -> None:
    p.add_argument("action", nargs="?", default="list", choices=("list", "clean"),
                   help="list (default) or clean")
    add_cache_dir(p, help="the cache dir (default $ECGBENCH_CACHE_DIR or the user cache dir)")
    p.add_argument("--kind", action="append", metavar="KIND",
                   help=f"only these kinds (repeat or comma-separate): {', '.join(KINDS)}")
    p.add_argument("--older-than", metavar="AGE", help="only entries not used for AGE: 7d, 12h, 30min, 2w")
    p.add_argument("--all", action="store_true", help="clean: everything in the cache")
    p.add_argument("--dry-run", action="store_true", help="clean: only say what would be removed")
    p.add_argument("--json", action="store_true", help="list: one JSON object per entry")


def main(args) -> int:
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    if args.action == "list":
        if args.all or args.dry_run:
            raise UserError("--all and --dry-run belong to `cache clean`")
        entries = select(scan(cache, args.kind) if cache.is_dir() else [],
                         older_than=parse_age(args.older_than) if args.older_than else None)
        if args.json:
            for e in entries:
                print(json.dumps(e.as_dict()))
            return 0
        print(f"cache dir: {cache}" + ("" if cache.is_dir() else " (does not exist yet)"))
        if not entries:
            print("(empty)" if not (args.kind or args.older_than) else "(nothing matches)")
            return 0
        print(format_entries(entries))
        total = sum(e.bytes for e in entries)
        by_kind = {}
        for e in entries:
            by_kind[e.kind] = by_kind.get(e.kind, 0) + e.bytes
        print(f"total {human_size(total)} (" + ", ".join(f"{k} {human_size(v)}" for k, v in by_kind.items()) + ")")
        others = sorted(p.name for p in cache.iterdir() if p.name not in known_top(cache)) if cache.is_dir() else []
        if others:
            print(f"also in the cache dir, not the suite's: {', '.join(others)}")
        print("remove with: python -m benchmark cache clean [--kind KIND] [--older-than 7d] [--all] [--dry-run]")
        return 0
    if args.json:
        raise UserError("--json belongs to `cache list`")
    if not cache.is_dir():
        print(f"cache dir {cache} does not exist: nothing to clean")
        return 0
    chosen = clean(cache, kinds=args.kind, older_than=args.older_than, everything=args.all, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for e in chosen:
        print(f"{verb} {e.kind} {e.key} ({human_size(e.bytes)}): {e.path}")
    print(f"{verb} {len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'}, {human_size(sum(e.bytes for e in chosen))}"
          f" from {cache}")
    return 0
