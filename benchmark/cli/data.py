"""``python -m benchmark data {info,prepare,download}``.

``info``     builds nothing. For each dataset found under the data root it prints what can be read
             without reading signals: the folder, records listed, files present/missing and their
             size, and whether the prepared store of these settings is in the cache (path, size).
             Where that store exists it opens it (memory-mapped, no rebuild) and also prints
             records per split, class counts per task and split, report languages, skipped
             records, labelling annotations removed by kind and glossary coverage (out of sample:
             on the reports the glossary was not written from, and on all reports; ``data text``
             lists the untranslated words). ``--prepare`` builds the missing stores first (that
             reads every signal: minutes for PTB-XL), as ``data prepare`` does. ``--json`` prints
             one object::

                 {"ptbxl": {"superdiagnostic": {"train": {"NORM": n, ...}, "val": {...},
                                                "test": {...}, "unlabelled": n},
                            "<other task>": {...},
                            "_summary": {"status": "ok", "store": path, "records": n,
                                         "splits": {...}, "skipped": n, "skipped_examples": [...],
                                         "languages": {...}, "info": {...}}},
                  "mitbih": {"_summary": {"status": "not found", "path": "..."}}}

             i.e. every task at the top level of its dataset, plus a ``_summary`` key (task names
             never start with ``_``). A dataset present but not prepared has only a ``_summary``:
             ``{"status": "not prepared", "path": ..., "records": n, "files": n, "missing": n,
             "bytes": n, "store": path it would have, "prepared": false, ...}``; a prepared one's
             ``_summary`` also carries ``source`` (that listing) and ``store_bytes``. A dataset whose folder is missing is reported as "not found"
             unless it was named explicitly with ``--datasets`` (then it is an error).
``text``     the PTB-XL report text (the database under the data root, or ``--reports FILE.csv``
             with columns ``ecg_id`` and ``report``): language mix, labelling annotations removed
             by kind, translation coverage per language OUT OF SAMPLE (reports whose ecg_id is not
             among those the glossary was written from, ``glossary_seen.txt``) next to in-sample
             coverage, the block and unseen-phrase held-out estimates (each language's highest-id
             fifth of reports, translated with only the glossary entries it did not motivate), and
             the most frequent untranslated words out of sample. ``--json`` prints
             ``benchmark.data.report_coverage.text_summary`` (keys ``coverage`` -> language ->
             fraction, out of sample; ``coverage_detail``; ``held_out`` -> ``block`` /
             ``block_new_phrasing`` -> language -> ``{from_id, reports, words, translated,
             coverage}``; ``languages``; ``annotations_removed``; ``untranslated``);
             ``--write FILE`` writes a CSV ``ecg_id, language, clean, english``.
             Reads no signals: it takes seconds.
``prepare``  builds the stores with progress bars and prints where they are.
``download`` fetches a database from PhysioNet (``benchmark.data.download``).

Datasets have one name (``ptbxl``, ``mitbih``, ``cinc2017``); the PhysioNet names (``mitdb``,
``ptb-xl``, ``challenge-2017``) are accepted as aliases by ``--datasets`` and ``download``. The
MIT-BIH folder on disk keeps its PhysioNet name ``mitdb/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from benchmark.cli.common import add_cache_dir, add_data_root
from benchmark.data.datasets import canonical_dataset
from benchmark.data.download import ALIASES, SOURCES, download
from benchmark.data.ptbxl import DATABASE_CSV, read_database
from benchmark.data.report_coverage import text_summary
from benchmark.data.store import dataset_class, locate, open_store, prepare
from benchmark.errors import DataError, UserError, unknown_name
from benchmark.io import atomic_write_csv, read_csv_checked
from benchmark.paths import DATASET_DIRS, human_size, resolve_data_root

DEFAULT_DATASETS = ("ptbxl", "mitbih", "cinc2017")
DOWNLOADABLE = tuple(SOURCES)  # the dataset names; download.ALIASES adds the PhysioNet spellings


def _common(p: argparse.ArgumentParser) -> None:
    add_data_root(p, metavar="DIR",
                  help="folder holding ptb-xl/, mitdb/, cinc2017/ (default: $ECGBENCH_DATA_ROOT or ../shared/data)")
    add_cache_dir(p, metavar="DIR", help="where prepared stores live (default: $ECGBENCH_CACHE_DIR or the user cache dir)")
    p.add_argument("--datasets", help=f"comma-separated datasets (default: all of {','.join(DEFAULT_DATASETS)} that are present)")
    p.add_argument("--fs", type=int, default=100, help="target sampling rate in Hz (default: %(default)s; 500 supported)")
    p.add_argument("--window-s", type=float, default=10.0, help="window length in seconds (default: %(default)s)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad record instead of skipping and counting it")
    g = p.add_argument_group("dataset options")
    g.add_argument("--mitbih-dir", metavar="SUBDIR", help="MIT-BIH folder under the data root: mitdb (default) or mitdb-pvc")
    g.add_argument("--annotator", metavar="EXT", help="MIT-BIH annotation extension: atr (default); the mitdb-pvc set uses pvc")
    g.add_argument("--cinc-crops", type=int, metavar="N", help="CinC 2017: windows cropped per record")
    g.add_argument("--split-seed", type=int, metavar="N", help="CinC 2017: seed of the stratified record split")
    g.add_argument("--ptbxl-limit", type=int, metavar="N", help="PTB-XL: only the first N records by ecg_id (smoke runs)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    p = sub.add_parser("info", help="what was found: records per split, class counts, languages, skips")
    _common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output (see module doc for the shape)")
    p.add_argument("--prepare", action="store_true",
                   help="build the prepared stores that are missing first (reads every signal: minutes for "
                        "PTB-XL), so class counts per split can be shown; without it info builds nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p = sub.add_parser("text", help="report text: languages, annotations removed, out-of-sample translation coverage")
    add_data_root(p, metavar="DIR", help="folder holding ptb-xl/ (default: $ECGBENCH_DATA_ROOT or ../shared/data)")
    p.add_argument("--reports", metavar="FILE.csv", help="measure this CSV instead (columns ecg_id, report; others ignored)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--write", metavar="FILE.csv", help="also write ecg_id, language, clean, english per report")
    p.add_argument("--top", type=int, default=15, metavar="N", help="untranslated words listed (default: %(default)s)")
    p = sub.add_parser("prepare", help="build the prepared stores (memory-mapped signals + metadata)")
    _common(p)
    p.add_argument("--rebuild", action="store_true", help="delete and rebuild existing stores of these settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p = sub.add_parser("download", help="download a database from PhysioNet (resumable, verified)")
    p.add_argument("name", help=f"one of {', '.join(DOWNLOADABLE)} (also accepted: "
                   + ", ".join(f"{a} for {n}" for a, n in ALIASES.items()) + "; mitbih lands in mitdb/)")
    p.add_argument("--to", required=True, metavar="DIR", help="data root to download into")
    p.add_argument("--base-url", metavar="URL", help="PhysioNet mirror (default: https://physionet.org/files)")
    p.add_argument("--no-verify", action="store_true", help="skip the SHA256SUMS.txt check")
    parser.set_defaults(_data_parser=parser)


def dataset_options(args, dataset: str) -> dict:
    """Dataset-specific options from the command line (only those given)."""
    table = {
        "mitbih": {"subdir": getattr(args, "mitbih_dir", None), "annotator": getattr(args, "annotator", None)},
        "cinc2017": {"n_crops": getattr(args, "cinc_crops", None), "split_seed": getattr(args, "split_seed", None)},
        "ptbxl": {"limit": getattr(args, "ptbxl_limit", None)},
    }
    return {k: v for k, v in table.get(dataset, {}).items() if v is not None}


def _datasets(args) -> tuple[list[str], bool]:
    explicit = args.datasets is not None
    names = [n.strip() for n in str(args.datasets).split(",") if n.strip()] if explicit else list(DEFAULT_DATASETS)
    names = list(dict.fromkeys(canonical_dataset(n) for n in names))  # mitdb -> mitbih
    if explicit and not names:
        raise UserError("--datasets is empty: name at least one of " + ", ".join(DEFAULT_DATASETS))
    for n in names:
        dataset_class(n)  # unknown name -> UserError with suggestions
    return names, explicit


def _folder(args, name: str, options: dict) -> Path:
    return resolve_data_root(args.data_root) / str(options.get("subdir") or DATASET_DIRS.get(name, name))


def _each_dataset(args):
    """(name, options, folder, explicit) of every dataset the command names; the data root is
    checked first (a missing root is a one-line error before anything else)."""
    resolve_data_root(args.data_root)
    names, explicit = _datasets(args)
    for name in names:
        opts = dataset_options(args, name)
        yield name, opts, _folder(args, name, opts), explicit


def _not_found(folder: Path) -> dict:
    return {"status": "not found", "path": str(folder)}


def _prepare_all(args, rebuild: bool, progress: bool) -> dict:
    """dataset -> ECGSet, or a {'status': 'not found', 'path': ...} dict for absent folders."""
    out: dict = {}
    for name, opts, folder, explicit in _each_dataset(args):
        if not folder.is_dir() and not explicit:
            out[name] = _not_found(folder)
            continue
        try:
            out[name] = prepare(
                name, args.data_root, args.cache_dir, fs=args.fs, window_s=args.window_s,
                strict=args.strict, progress=progress, rebuild=rebuild, **opts,
            )
        except DataError:
            if not folder.is_dir() and not explicit:
                out[name] = _not_found(folder)
            else:
                raise
    return out


def _locate_all(args) -> dict:
    """dataset -> ``store.locate`` listing (``status`` "ok" when its store exists, else "not
    prepared"), or a "not found" dict for absent folders; builds nothing, reads no signal."""
    out: dict = {}
    for name, opts, folder, explicit in _each_dataset(args):
        if not folder.is_dir() and not explicit:
            out[name] = _not_found(folder)
            continue
        found = locate(name, args.data_root, args.cache_dir, fs=args.fs, window_s=args.window_s, **opts)
        found["status"] = "ok" if found["prepared"] else "not prepared"
        out[name] = found
    return out


def _open_prepared(found: dict, strict: bool):
    """The ECGSet of a located, prepared store (no rebuild); None when it cannot be opened."""
    try:
        ds = open_store(found["store"])
    except DataError:
        return None  # damaged: `data prepare` moves it aside and builds it again
    if strict and ds.manifest.get("skipped"):
        first = ds.manifest["skipped"][0]
        raise DataError(f"{found['dataset']}: {len(ds.manifest['skipped'])} record(s) were skipped when this store "
                        f"was built, e.g. {first.get('source') or first.get('id')}: {first['reason']} "
                        "(re-run 'data prepare --rebuild' to retry)")
    return ds


def _source_line(name: str, f: dict) -> str:
    missing = f", {f['missing']} missing" if f["missing"] else ""
    return (f"{name}: {f['records']} records in {f['path']} ({f['files']} files, {human_size(f['bytes'])}"
            f"{missing})")


def _info(args) -> int:
    if args.prepare:  # asked for: build what is missing, then describe (as `data prepare` would)
        found = {n: ({"status": "ok", "ds": d} if not isinstance(d, dict) else d)
                 for n, d in _prepare_all(args, rebuild=False, progress=not args.no_progress and not args.json).items()}
    else:
        found = _locate_all(args)
    out: dict = {}
    for name, f in found.items():
        ds = f.get("ds")
        if ds is None and f.get("status") == "ok":
            ds = _open_prepared(f, args.strict)
            if ds is None:
                f["status"] = "damaged"
        if ds is not None:
            out[name] = info_dict(ds)
            if "records" in f:
                out[name]["_summary"]["source"] = {k: f[k] for k in ("path", "records", "files", "missing", "bytes")}
                out[name]["_summary"]["store_bytes"] = f["store_bytes"]
        else:
            out[name] = {"_summary": f}
        if args.json:
            continue
        if f["status"] == "not found":
            print(f"{name}: not found ({f['path']})")
            continue
        if ds is not None:
            _print_info(name, ds)
            if "records" in f:
                print(f"  source: {_source_line(name, f).split(': ', 1)[1]}; store {human_size(f['store_bytes'])}")
            continue
        print(_source_line(name, f))
        why = "is damaged" if f["status"] == "damaged" else "is not in the cache"
        print(f"  prepared store ({f['fs']} Hz, {f['window_s']:g} s windows) {why}: {f['store']}")
        print(f"  class counts per split need it: 'data prepare --datasets {name}' (or 'data info --prepare') "
              "builds it, reading every signal once")
    if args.json:
        print(json.dumps(out, indent=1, sort_keys=False, default=str))
    return 0


def info_dict(ds) -> dict:
    """The JSON of one prepared dataset (shape in the module doc)."""
    s = ds.summary()
    d: dict = {name: per for name, per in s["tasks"].items()}
    skipped = ds.manifest.get("skipped", [])
    d["_summary"] = {
        "status": "ok",
        "store": str(ds.path),
        "records": s["records"],
        "fs": s["fs"],
        "samples": s["samples"],
        "leads": s["leads"],
        "splits": s["splits"],
        "skipped": len(skipped),
        "skipped_examples": skipped[:5],
        "languages": s.get("languages", {}),
        "info": ds.manifest.get("info", {}),
    }
    return d


def _print_info(name: str, ds) -> None:
    if isinstance(ds, dict):
        print(f"{name}: not found ({ds['path']})")
        return
    d = info_dict(ds)
    s = d["_summary"]
    splits = ", ".join(f"{k} {v}" for k, v in s["splits"].items())
    print(f"{name}: {s['records']} examples at {s['fs']} Hz x {s['samples']} samples, leads {'/'.join(s['leads'])}")
    print(f"  splits: {splits}")
    print(f"  store: {s['store']}")
    if s["skipped"]:
        print(f"  skipped: {s['skipped']}")
        for e in s["skipped_examples"][:3]:
            print(f"    {e.get('source') or e.get('id')}: {e['reason']}")
    else:
        print("  skipped: 0")
    if s["languages"]:
        print("  report languages: " + ", ".join(f"{k} {v}" for k, v in sorted(s["languages"].items())))
    for key, label in (("glossary_coverage_out_of_sample", "out of sample"), ("glossary_coverage", "all reports")):
        cov = s["info"].get(key)
        if cov:
            parts = [f"{k} {v['coverage']:.1%} of {v['words']} words" for k, v in cov.items()]
            print(f"  glossary coverage, {label}: " + "; ".join(parts))
    missing = s["info"].get("untranslated_out_of_sample")
    if missing:
        print("  most frequent untranslated words out of sample: "
              + ", ".join(f"{u['word']} ({u['language']}, {u['count']})" for u in missing))
    if "empty_reports" in s["info"]:
        print(f"  empty reports: {s['info']['empty_reports']}")
    removed = s["info"].get("annotations_removed")
    if removed:
        print("  labelling annotations removed (reports): " + ", ".join(f"{k} {v}" for k, v in removed.items()))
    elif "edit_annotations_removed" in s["info"]:
        print(f"  edit annotations removed: {s['info']['edit_annotations_removed']}")
    for task, per in d.items():
        if task.startswith("_"):
            continue
        print(f"  task {task} ({len(per['train'])} classes; unlabelled {per.get('unlabelled', 0)})")
        classes = list(per["train"])
        width = max(len(c) for c in classes) if classes else 5
        if len(classes) > 25:
            tops = sorted(classes, key=lambda c: -(per["train"][c] + per["val"][c] + per["test"][c]))[:10]
            print(f"    (showing the 10 most frequent of {len(classes)})")
            classes = tops
        print(f"    {'class':<{width}} {'train':>6} {'val':>6} {'test':>6}")
        for c in classes:
            print(f"    {c:<{width}} {per['train'][c]:>6} {per['val'][c]:>6} {per['test'][c]:>6}")


def _read_reports(args) -> tuple[list, list, str]:
    if args.reports:
        path = Path(args.reports).expanduser()
        if not path.is_file():
            raise UserError(f"--reports '{path}' does not exist")
        df = read_csv_checked(path, ("ecg_id", "report"), "needs ecg_id and report")
        return df["ecg_id"].tolist(), df["report"].tolist(), str(path)
    root = resolve_data_root(args.data_root) / DATASET_DIRS.get("ptbxl", "ptb-xl")
    df = read_database(root)
    return df["ecg_id"].tolist(), df["report"].tolist(), str(root / DATABASE_CSV)


def _text(args) -> int:
    if args.top < 0:
        raise UserError(f"--top must be >= 0, got {args.top}")
    ids, reports, source = _read_reports(args)
    summary, rows = text_summary(ids, reports, top=args.top)
    summary = {"source": source, **summary}
    if args.write:
        atomic_write_csv(pd.DataFrame(rows, columns=["ecg_id", "language", "clean", "english"]), Path(args.write))
    if args.json:
        print(json.dumps(summary, indent=1, ensure_ascii=False))
        return 0
    s = summary
    print(f"{s['source']}: {s['reports']} reports")
    print("  languages: " + ", ".join(f"{k} {v}" for k, v in s["languages"].items()))
    print("  labelling annotations removed (reports): " + ", ".join(f"{k} {v}" for k, v in s["annotations_removed"].items()))
    print(f"  seen while writing the glossary: {s['sample']['seen_rule']}")
    for part in ("out_of_sample", "out_of_sample_new_text", "in_sample"):
        cov = s["coverage_detail"][part]
        label = part.replace("_", " ").replace("new text", "(texts not in sample)")
        n = s["sample"][part]
        if not n:
            print(f"  translation coverage {label}: no reports")
            continue
        print(f"  translation coverage {label} ({n} reports): "
              + "; ".join(f"{k} {v['coverage']:.1%} of {v['words']} words" for k, v in cov.items()))
    for part, label in (("block", "held out by ecg_id block"), ("block_new_phrasing", "held out by block, unseen phrasings")):
        est = s["held_out"][part]
        if est:
            print(f"  translation coverage {label}: " + "; ".join(
                f"{k} {v['coverage']:.1%} of {v['words']} words ({v['reports']} reports, "
                f"ecg_id >= {v['from_id']}, rules from ids < {v['rules_below']})" if v["words"] else f"{k} no words"
                for k, v in est.items()))
    if s["untranslated"]:
        print("  most frequent untranslated words out of sample: "
              + ", ".join(f"{u['word']} ({u['language']}, {u['count']})" for u in s["untranslated"]))
    if args.write:
        print(f"  wrote {len(rows)} rows to {args.write}")
    return 0


def main(args) -> int:
    cmd = getattr(args, "data_command", None)
    if cmd is None:
        args._data_parser.print_help()
        return 0
    if cmd == "download":
        if args.name not in DOWNLOADABLE and args.name not in ALIASES:
            raise unknown_name("database to download", args.name, [*DOWNLOADABLE, *ALIASES])
        result = download(args.name, args.to, base_url=args.base_url, verify=not args.no_verify, progress=True)
        print(f"{ALIASES.get(args.name, args.name)}: downloaded to {result if result is not None else args.to}")
        return 0
    if cmd == "text":
        return _text(args)
    if cmd == "info":
        return _info(args)
    sets = _prepare_all(args, rebuild=(cmd == "prepare" and args.rebuild), progress=not args.no_progress)
    if cmd == "prepare":
        for name, ds in sets.items():
            if isinstance(ds, dict):
                print(f"{name}: not found ({ds['path']}), skipped")
            else:
                n_skip = len(ds.manifest.get("skipped", []))
                print(f"{name}: {len(ds)} examples ({n_skip} skipped) -> {ds.path}")
        return 0
    raise UserError(f"unknown data action '{cmd}'")
