"""``python -m benchmark bench``: speed and memory ratios on this machine (what each figure
measures: :mod:`benchmark.bench`)."""

from __future__ import annotations

from pathlib import Path

from benchmark.cli.common import add_cache_dir, add_data_root, add_device
from benchmark.paths import resolve_cache_dir, resolve_data_root


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (about 2 minutes on 2 CPU cores)")
    p.add_argument("--out", default="results/bench", help="folder for bench.csv and bench.json (default results/bench)")
    add_data_root(p, help="folder holding ptb-xl/ (default $ECGBENCH_DATA_ROOT or ../shared/data)")
    add_cache_dir(p, help="prepared stores and the synthetic stores (default: user cache dir)")
    add_device(p, default="auto")
    p.add_argument("--encoder", help="encoder spec (default: the quick profile's on CPU, resnet1d-18 on GPU)")
    p.add_argument("--profile-timings", metavar="TIMINGS_JSON",
                   help="use this timings.json of a finished quick-profile run instead of running it")
    p.add_argument("--skip", default="", help="comma-separated figures to skip, e.g. 6 or 2,6")
    p.add_argument("--delete-synthetic", action="store_true",
                   help="delete the synthetic stores (5.2 GB without --quick) from the cache dir afterwards; they are "
                   "kept and reused otherwise, and the bench says where (`benchmark cache` lists them too)")


def main(args) -> int:
    # imported here, not at module level: the bench imports torch, and `--help` must stay light
    from benchmark.bench.runner import Bench
    from benchmark.bench.synthetic import delete_synthetic, synthetic_summary
    from benchmark.bench.table import format_table, met_summary, write_outputs

    bench = Bench(
        quick=args.quick, data_root=resolve_data_root(args.data_root), cache_dir=resolve_cache_dir(args.cache_dir),
        device=args.device, encoder=args.encoder, profile_timings=args.profile_timings,
        skip={s.strip() for s in args.skip.split(",") if s.strip()},
    )
    try:
        rows = bench.run()
    finally:
        left = synthetic_summary(bench.cache_dir)
        if args.delete_synthetic:
            delete_synthetic(bench.cache_dir)
    print(format_table(rows))
    print(met_summary(rows))
    csv_path = write_outputs(rows, bench.raw, Path(args.out))
    print(f"\nwritten: {csv_path}")
    if left:
        where, size = left
        if args.delete_synthetic:
            print(f"synthetic data deleted: {where} ({size})")
        else:
            print(f"synthetic data kept for the next bench: {where} ({size}); remove it with "
                  "`python -m benchmark cache clean --kind bench` (or run bench with --delete-synthetic)")
    return 0
