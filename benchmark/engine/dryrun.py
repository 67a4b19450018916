"""What ``run --dry-run`` shows: the plan as a table (jobs per protocol and method, already done
in ``--out`` and to do), the pretrainings the jobs need and which are cached, and an estimate of
the time from the timings an earlier run of the same folder recorded (``timings.json``).

Nothing here prepares data or trains a model: the pretrainings are named exactly (and looked up
in the cache) only when the PTB-XL store of these settings is already prepared; otherwise they
are counted per (method, seed[, labelled subset]) and none can be cached yet.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from benchmark.data.datasets import prepare_options, run_tasks
from benchmark.paths import resolve_data_root, store_dir
from benchmark.protocols import Pretraining, get_protocol
from benchmark.results import ResultStore


def existing_store(runner, name: str):
    """The prepared store of dataset ``name`` for the runner's settings if it is already in the
    cache (opened, not built), else None."""
    from benchmark.data import store as st  # local: the store module imports torch

    cls = st.dataset_class(name)
    params = st.make_params(cls, runner.cfg["fs"], runner.cfg["window_s"], prepare_options(name, runner.cfg))
    try:
        root = Path(cls.root(resolve_data_root(runner.data_root), params))
    except Exception:  # a dataset missing under the data root: nothing prepared either
        return None
    key = st.cache_key(name, cls, params, st.fingerprint(cls.source_files(root, params), root))
    path = store_dir(runner.cache_dir, name, key)
    if not (path / st.MANIFEST).is_file():
        return None
    try:
        return st.open_store(path)
    except Exception:  # a damaged store is rebuilt by the run; the dry run just says "not prepared"
        return None


class _NeedsData(Exception):
    pass


class _NoData:
    """The context a protocol gets to name a job's pretraining in a dry run: the datasets already
    prepared (``available``), never one built."""

    def __init__(self, cfg, available=None):
        self.cfg = cfg
        self.available = available or {}

    def dataset(self, name):
        if name in self.available:
            return self.available[name]
        raise _NeedsData(name)

    def dataset_tasks(self, name):
        return run_tasks(name, self.cfg)


def _pretrainings(runner, jobs) -> tuple[list, str | None]:
    """``([(Pretraining-or-tuple, cached: bool | None)], note)`` for the jobs."""
    data = existing_store(runner, "ptbxl")
    if data is None:
        keys: dict = OrderedDict()
        for job in jobs:
            try:  # the protocol names the pretraining; one that needs the data trains on a labelled subset
                req = get_protocol(job.protocol).pretraining(job, runner.traits(job.method), _NoData(runner.cfg))
                keys[(req.spec, req.seed, req.label_task, None)] = None
            except _NeedsData:
                keys[(job.method, job.seed, job.task, job.label_fraction)] = None
        return [(k, False) for k in keys], "PTB-XL not prepared in this cache yet: nothing cached"
    runner._data.setdefault("ptbxl", data)  # the pretrain cache's key names the PTB-XL store
    ctx = _NoData(runner.cfg, {"ptbxl": data})
    reqs: dict = OrderedDict()
    for job in jobs:
        try:
            reqs[get_protocol(job.protocol).pretraining(job, runner.traits(job.method), ctx)] = None
        except _NeedsData as need:  # a pretraining on another, unprepared dataset: counted, not cached
            reqs[(job.method, job.seed, f"{job.task} ({need.args[0]} not prepared)", job.label_fraction)] = None
    return [(r, runner.pretrain_cache.cached(r.spec, r.seed, r.labels) if isinstance(r, Pretraining) else False)
            for r in reqs], None


def earlier_timings(out: Path) -> dict | None:
    """The ``timings.json`` an earlier invocation wrote in ``out`` (None: none, or unreadable)."""
    try:
        rec = json.loads((Path(out) / "timings.json").read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("jobs_run") else None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_table(runner, jobs=None) -> str:
    """The dry run's text: the table, the pretrainings and the estimate."""
    jobs = runner.plan() if jobs is None else jobs
    store = ResultStore(runner.out)
    done = {id(j): store.job_done(runner.job_id(j)) for j in jobs}
    counts: dict = OrderedDict()
    for job in jobs:
        c = counts.setdefault((job.protocol, runner.row_method(job.method)), [0, 0])
        c[0] += 1
        c[1] += done[id(job)]
    head = ("protocol", "method", "planned", "done", "to do")
    rows = [(p, m, str(n), str(d), str(n - d)) for (p, m), (n, d) in counts.items()]
    n_done = sum(done.values())
    rows.append(("all", "", str(len(jobs)), str(n_done), str(len(jobs) - n_done)))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    lines = [f"plan for {runner.out} (seeds {', '.join(str(s) for s in runner.cfg['seeds'])}; profile "
             f"{runner.cfg.get('profile', '?')}):",
             line(head), line(tuple("-" * w for w in widths)), *map(line, rows[:-1]),
             line(tuple("-" * w for w in widths)), line(rows[-1])]
    todo = [j for j in jobs if not done[id(j)]]
    pre, note = _pretrainings(runner, todo)
    cached = sum(1 for _, c in pre if c)
    lines.append(f"pretrainings the jobs to do need: {len(pre)} ({cached} cached, {len(pre) - cached} to train)"
                 + (f"; {note}" if note else ""))
    for req, c in pre:
        spec, seed = (req.spec, req.seed) if isinstance(req, Pretraining) else req[:2]
        task = req.label_task if isinstance(req, Pretraining) else req[2]
        frac = None if isinstance(req, Pretraining) else req[3]
        subset = f"{task}, {frac:.0%} of the labels" if frac is not None else task
        if isinstance(req, Pretraining) and task:
            subset = f"{len(req.label_rows)} {task} labels"
        what = f"  {spec} seed={seed}" + (f" (labelled: {subset})" if task else "")
        lines.append(f"{what}: {'cached' if c else 'to train'}")
    t = earlier_timings(runner.out)
    if t is None:
        lines.append(f"estimate: no earlier timings in {runner.out}/timings.json")
    else:
        n_pre = int(t.get("pretrainings_run") or 0)
        pre_s = float(t.get("pretrain") or 0.0)
        per_job = max(float(t.get("total") or 0.0) - pre_s - float(t.get("data") or 0.0), 0.0) / int(t["jobs_run"])
        per_pre = pre_s / n_pre if n_pre else 0.0
        est = per_job * len(todo) + per_pre * (len(pre) - cached)
        basis = f"{per_job:.1f} s per job" + (f", {per_pre:.0f} s per pretraining" if n_pre else
                                               " (time per pretraining not in that file)")
        lines.append(f"estimate: about {_duration(est)} ({basis}, from {runner.out}/timings.json; "
                     "data preparation not included)")
    return "\n".join(lines)
