"""``python -m benchmark bench``: speed and memory of this suite on this machine, as ratios.

Every figure is measured in the same run, on the current machine, against a reference measured
in that run too (a ratio is robust to a busy or slow machine, an absolute number is not):

1. data path    -- prepared-store batch loading vs wfdb one record at a time (target >= 50x);
                   loader throughput vs encoder training throughput (target >= 20x);
2. frozen LM    -- a METS training step with cached report embeddings vs the frozen LM in the
                   loop (``text_in_loop=True``), for minilm and for BERT-base-sized random-bert;
                   the cache should win by the LM's share of the step;
3. arithmetic   -- encoder training throughput and achieved GFLOP/s (FLOPs counted with
                   ``torch.utils.flop_counter``) against a large matmul's GFLOP/s, at 100/500 Hz,
                   fp32/bf16 (target >= 70 %);
4. memory       -- resident memory while reading and training over a PTB-XL-shaped 500 Hz store
                   (21,799 x 12 x 5,000 float32, 5.2 GB, synthetic, generated once into the cache;
                   ``--quick``: 1,000 records) (target: flat, < 2 GB);
5. scaling      -- epoch time at 1x, 2x, 4x data (target: linear);
7. LM training  -- a METS (MiniLM) training step with the LM frozen (cached embeddings) vs its
                   last 2 layers trained vs all of it (and all with gradient checkpointing):
                   time per step, saved activations and trainable state (parameters, gradients,
                   AdamW moments) per step, peak device memory on a GPU (no target: the price of
                   ``mets[lm_train=...]``);
6. end to end   -- the ``quick`` profile's wall time for the default methods (target <= 10 min on
                   2 CPU cores) and where it goes (the harness's timings.json);
                   ``--quick`` runs a reduced configuration instead (a smoke test);
8. workers      -- the same run through ``run --workers 1`` and ``--workers 2`` (Dask local
                   cluster): the speed-up of two workers (about 2 with two free GPUs or twice the
                   cores; little on 2 shared CPU cores, where both workers compete for them), and
                   on CPU ``--workers 2`` with the cores split between the workers.

One table is printed and written atomically as CSV (``<out>/bench.csv``) with the raw seconds
in ``<out>/bench.json``. What each figure means and this machine's table: docs/performance.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import UserError
from benchmark.paths import synthetic_dir

log = logging.getLogger("benchmark.bench")

FULL_N = 21_799  # PTB-XL records
COLUMNS = ("figure", "measure", "value", "unit", "reference", "reference_value", "ratio", "target", "met", "note")


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (about 2 minutes on 2 CPU cores)")
    p.add_argument("--out", default="results/bench", help="folder for bench.csv and bench.json (default results/bench)")
    p.add_argument("--data-root", help="folder holding ptb-xl/ (default $ECGBENCH_DATA_ROOT or ../shared/data)")
    p.add_argument("--cache-dir", help="prepared stores and the synthetic stores (default: user cache dir)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--encoder", help="encoder spec (default: the quick profile's on CPU, resnet1d-18 on GPU)")
    p.add_argument("--profile-timings", metavar="TIMINGS_JSON",
                   help="use this timings.json of a finished quick-profile run instead of running it")
    p.add_argument("--skip", default="", help="comma-separated figures to skip, e.g. 6 or 2,6")
    p.add_argument("--delete-synthetic", action="store_true",
                   help="delete the synthetic stores (5.2 GB without --quick) from the cache dir afterwards; they are "
                   "kept and reused otherwise, and the bench says where (`benchmark cache` lists them too)")


def main(args) -> int:
    from benchmark.paths import resolve_cache_dir, resolve_data_root

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


def synthetic_summary(cache_dir: Path) -> tuple[Path, str] | None:
    """(folder, total size) of the bench's synthetic stores in ``cache_dir``; None if there are none."""
    from benchmark.cache import human_size, tree_size

    d = synthetic_dir(cache_dir)
    if not d.is_dir() or not any(d.iterdir()):
        return None
    return d, human_size(tree_size(d))


# ------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def format_table(rows: list[dict]) -> str:
    cols = ("figure", "measure", "value", "unit", "reference", "reference_value", "ratio", "target", "met")
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, width))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in width]), *(line(r) for r in cells)])


def write_outputs(rows: list[dict], raw: dict, out: Path) -> Path:
    import pandas as pd

    from benchmark.io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "bench.csv"
    atomic_write_text(pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(index=False), csv_path)
    atomic_write_text(json.dumps(raw, indent=1, default=str), out / "bench.json")
    return csv_path


def _row(figure, measure, value, unit, reference, reference_value, ratio, target, met, note="") -> dict:
    return dict(figure=figure, measure=measure, value=value, unit=unit, reference=reference,
                reference_value=reference_value, ratio=ratio, target=target, met=met, note=note)


# ------------------------------------------------------------------------------------------
# measurements that other code (tests, docs) may call on their own
# ------------------------------------------------------------------------------------------
def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def matmul_peak_gflops(device, dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n x n ``torch.matmul`` (the machine's practical peak)."""
    import torch

    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def train_step_flops(encoder, x, precision: str, device) -> int:
    """FLOPs of one forward + backward of ``encoder`` on ``x`` (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark.training import autocast

    with FlopCounterMode(display=False) as fc:
        with autocast(precision, device):
            loss = encoder(x).float().square().mean()
        loss.backward()
    encoder.zero_grad(set_to_none=True)
    return int(fc.get_total_flops())


def encoder_throughput(spec: str, fs: int, precision: str, device, batch: int, steps: int) -> dict:
    """ECGs/s and GFLOP/s of encoder training steps (forward, backward, AdamW) on random input."""
    import torch

    from benchmark.encoders import create_encoder
    from benchmark.training import autocast

    torch.manual_seed(0)
    enc = create_encoder(spec).to(device).train()
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-4)
    x = torch.randn(batch, 12, int(fs * 10), device=device)
    flops = train_step_flops(enc, x, precision, device)

    def step():
        with autocast(precision, device):
            loss = enc(x).float().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, kernel choice)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    sec = (time.perf_counter() - t0) / steps
    return {"ecgs_per_s": batch / sec, "gflops": flops / sec / 1e9, "gflop_per_ecg": flops / batch / 1e9,
            "seconds_per_step": sec, "batch": batch, "fs": fs, "precision": precision}


# -- are the references references? -------------------------------------------------------------
NATIVE_MIN_FRACTION = 0.25  # a reduced-precision matmul slower than this fraction of fp32's is emulated
NOT_NATIVE = "not native here"


def reference_check(precision: str, peak: float, fp32_peak: float, achieved: float | None = None) -> tuple[bool, str]:
    """Whether a matmul "peak" can serve as the reference of a ratio target: (usable, why not).

    A reduced-precision peak far below fp32's (< ``NATIVE_MIN_FRACTION``) means the dtype is
    emulated on this machine (e.g. bf16 on an AVX2-only CPU: 0.28 vs 102 GFLOP/s): it is reported
    "not native here". A peak the measured work beats by more than 5 % is no peak either."""
    if not (peak > 0 and math.isfinite(peak)):
        return False, f"no usable {precision} matmul peak ({peak})"
    if precision != "fp32" and fp32_peak > 0 and peak < NATIVE_MIN_FRACTION * fp32_peak:
        return False, (f"{NOT_NATIVE}: {precision} matmul reaches {peak:.3g} GFLOP/s, "
                       f"{peak / fp32_peak:.1%} of fp32's {fp32_peak:.3g}, so {precision} is emulated")
    if achieved is not None and achieved > 1.05 * peak:
        return False, f"not a peak: the encoder reached {achieved / peak:.2f}x the {precision} matmul"
    return True, ""


def arithmetic_row(fs: int, prec: str, r: dict, peaks: dict, n: int) -> dict:
    """Figure 3's row for one (rate, precision) measurement ``r`` of :func:`encoder_throughput`."""
    frac = r["gflops"] / peaks[prec]
    ok, why = reference_check(prec, peaks[prec], peaks["fp32"], r["gflops"])
    note = f"{r['ecgs_per_s']:.0f} ECG/s, {r['gflop_per_ecg']:.3f} GFLOP/ECG (fwd+bwd), batch {r['batch']}"
    return _row(
        "3 arithmetic", f"encoder training {fs} Hz {prec}", r["gflops"], "GFLOP/s",
        f"matmul peak {prec} ({n}^3)", peaks[prec], frac, ">= 0.70" if ok else f"n/a: {why.split(':')[0]}",
        (frac >= 0.70) if ok else None, note if ok else f"{why}; not counted. {note}",
    )


def met_summary(rows: list[dict]) -> str:
    """'targets met: 7 of 9 (2 not counted: not native here)'."""
    counted = [r for r in rows if r.get("met") is not None]
    skipped = [r for r in rows if r.get("met") is None and str(r.get("target", "")).startswith("n/a")]
    why = sorted({str(r["target"])[5:] for r in skipped})
    return (f"targets met: {sum(bool(r['met']) for r in counted)} of {len(counted)}"
            + (f" ({len(skipped)} not counted: {', '.join(why)})" if skipped else ""))


# -- synthetic stores ---------------------------------------------------------------------------
def synthetic_store(cache_dir: Path, n: int, fs: int, window_s: float = 10.0, progress: bool = False):
    """A prepared store of ``n`` synthetic 12-lead ECG-like records (opened with ``open_store``).

    Built once (in a temp folder, renamed into place) and reused; content is sinusoids plus noise,
    varied per record, so pages are not trivially compressible or identical."""
    from numpy.lib.format import open_memmap

    import pandas as pd

    from benchmark.data.base import LEADS
    from benchmark.data.store import FORMAT_VERSION, MANIFEST, open_store

    from benchmark.cache import human_size
    from benchmark.paths import touch
    from benchmark.errors import UserError

    t = int(round(fs * window_s))
    path = synthetic_dir(cache_dir) / f"synthetic-{n}x12x{t}"
    if (path / MANIFEST).is_file():
        touch(path / MANIFEST)
        log.info("reusing synthetic store %s (%s)", path, human_size(4 * n * 12 * t))
        return open_store(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    need = 4 * n * 12 * t
    free = shutil.disk_usage(path.parent).free
    if free < need * 1.05 + 2**28:
        raise UserError(f"the synthetic store needs {human_size(need)} in {path.parent}, only {human_size(free)} "
                        "free: point --cache-dir (or ECGBENCH_CACHE_DIR) at a larger disk, or use --quick")
    log.info("building synthetic store %s (%s, reused by later benches)", path, human_size(need))
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        rng = np.random.default_rng(0)
        tt = np.arange(t, dtype=np.float32) / fs
        base = np.stack([
            np.sin(2 * np.pi * rng.uniform(0.8, 2.0) * tt[None, :] + rng.uniform(0, 6.3, (12, 1)))
            + 0.1 * rng.standard_normal((12, t)) for _ in range(64)
        ]).astype(np.float32)
        sig = open_memmap(tmp / "signals.npy", mode="w+", dtype=np.float32, shape=(n, 12, t))
        offset = sig.offset  # the .npy header; the data are written with plain file writes, since
        del sig  # writing through a map would keep every written page in this process's RSS
        chunk = 256
        with open(tmp / "signals.npy", "r+b") as fh:
            for start in range(0, n, chunk):
                k = min(chunk, n - start)
                pick = (start + np.arange(k)) % len(base)
                fh.seek(offset + start * 12 * t * 4)
                fh.write((base[pick] * np.float32(1.0 + 0.001 * (start // chunk))).tobytes())
        split = np.array(["train"] * 8 + ["val", "test"])[np.arange(n) % 10]
        ids = [f"syn{i}" for i in range(n)]
        pd.DataFrame({"id": ids, "example": ids, "patient": ids, "split": split, "source": ids}).to_parquet(
            tmp / "meta.parquet", index=False)
        np.save(tmp / "rows.npy", np.arange(n, dtype=np.int64))
        (tmp / "labels").mkdir()
        np.savez(tmp / "stats.npz", mean=np.zeros(12, np.float32), std=np.ones(12, np.float32))
        manifest = {"format": FORMAT_VERSION, "dataset": "synthetic", "key": path.name,
                    "params": {"fs": fs, "window_s": window_s, "options": {}}, "leads": list(LEADS),
                    "tasks": {}, "records_kept": n, "skipped": [], "info": {}}
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_store(path)


def delete_synthetic(cache_dir: Path) -> None:
    shutil.rmtree(synthetic_dir(cache_dir), ignore_errors=True)


# ------------------------------------------------------------------------------------------
# the bench
# ------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, *, quick: bool, data_root: Path, cache_dir: Path, device: str = "auto",
                 encoder: str | None = None, profile_timings: str | None = None, skip: set[str] = frozenset()):
        from benchmark.device import resolve_device

        self.quick = quick
        self.data_root = Path(data_root)
        self.cache_dir = Path(cache_dir)
        self.device = resolve_device(device)
        gpu = self.device.type == "cuda"
        self.encoder = encoder or ("resnet1d-18" if gpu else "resnet1d-10[width=32]")
        self.profile_timings = profile_timings
        self.skip = set(skip)
        self.raw: dict[str, Any] = {"device": str(self.device), "encoder": self.encoder, "quick": quick}
        self.rows: list[dict] = []
        # sizes: (batch at 100 Hz, batch at 500 Hz, timed steps)
        self.b100, self.b500 = (256, 64) if gpu else (64, 16)
        self.steps = 20 if gpu else (1 if quick else 4)

    def _ptbxl(self):
        if not hasattr(self, "_ptbxl_set"):
            from benchmark.data.store import prepare

            self._ptbxl_set = prepare("ptbxl", self.data_root, self.cache_dir, fs=100, progress=False)
        return self._ptbxl_set

    def run(self) -> list[dict]:
        import torch

        from benchmark.results import env_info

        self.raw["env"] = env_info(str(self.device))
        self.raw["torch_threads"] = torch.get_num_threads()
        t0 = time.perf_counter()
        for fig, fn in (("3", self.arithmetic), ("4", self.memory), ("5", self.scaling),
                        ("1", self.data_path), ("2", self.frozen_lm), ("7", self.lm_training),
                        ("6", self.end_to_end), ("8", self.workers)):
            if fig in self.skip:
                continue
            t = time.perf_counter()
            log.info("bench figure %s ...", fig)
            try:
                fn()
            except UserError as exc:  # e.g. an optional LM not installed: the other figures still count
                log.warning("bench figure %s skipped: %s", fig, exc)
                self.raw.setdefault("skipped_figures", {})[fig] = str(exc)
                continue
            self.raw.setdefault("figure_seconds", {})[fig] = round(time.perf_counter() - t, 2)
        self.raw["bench_seconds"] = round(time.perf_counter() - t0, 1)
        order = {str(i): i for i in range(1, 9)}
        return sorted(self.rows, key=lambda r: order.get(r["figure"][0], 9))

    # -- 3: arithmetic ------------------------------------------------------------------------
    def arithmetic(self) -> None:
        import torch

        from benchmark.training import resolve_precision

        peaks = {}
        n = 1024 if self.quick else (8192 if self.device.type == "cuda" else 2048)
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            peaks[prec] = matmul_peak_gflops(self.device, dtype, n=n, repeats=2 if self.quick else 5)
        self.raw["matmul_peak_gflops"] = peaks
        self.raw["encoder_throughput"] = []
        for fs, batch in ((100, self.b100), (500, self.b500)):
            for prec in ("fp32", "bf16"):
                resolve_precision(prec, self.device)
                r = encoder_throughput(self.encoder, fs, prec, self.device, batch, self.steps)
                self.raw["encoder_throughput"].append(r)
                self.rows.append(arithmetic_row(fs, prec, r, peaks, n))
        self.raw["reference_checks"] = {p: reference_check(p, peaks[p], peaks["fp32"])[1] or "ok" for p in peaks}
        self.train_ecgs_per_s_100 = next(
            r["ecgs_per_s"] for r in self.raw["encoder_throughput"] if r["fs"] == 100 and r["precision"] == "fp32")

    # -- 4: memory ----------------------------------------------------------------------------
    def memory(self) -> None:
        import torch

        from benchmark.encoders import create_encoder
        from benchmark.training import fit

        n = 1000 if self.quick else FULL_N
        t0 = time.perf_counter()
        ds = synthetic_store(self.cache_dir, n, fs=500)
        self.raw["synthetic_500hz_seconds_to_open_or_build"] = round(time.perf_counter() - t0, 1)
        size_mb = ds.signals.nbytes / 2**20
        # (a) a read pass over every record, shuffled, as an epoch's loader sees it
        order = np.random.default_rng(0).permutation(len(ds))
        rss = [rss_mb()]
        t0 = time.perf_counter()
        for start in range(0, len(order), 64):
            ds.batch(order[start : start + 64])
            rss.append(rss_mb())
        read_s = time.perf_counter() - t0
        peak, growth = max(rss), max(rss) - rss[1]
        self.raw["rss_read_pass"] = {"records": n, "seconds": read_s, "rss_mb_first": rss[1], "rss_mb_peak": peak,
                                     "rss_mb_before": rss[0]}
        self.rows.append(_row(
            "4 memory", f"RSS, read pass over all {n:,} records (500 Hz)", peak, "MB", "store size", size_mb,
            peak / size_mb, "< 2048 MB, flat", peak < 2048 and growth < 256,
            f"growth {growth:.0f} MB over the pass; {n / read_s:.0f} ECG/s",
        ))
        # (b) a training epoch (steps capped so it takes about a minute on a CPU)
        steps = 4 if self.quick else (200 if self.device.type == "cuda" else 40)
        torch.manual_seed(0)
        enc = create_encoder(self.encoder)
        samples: list[float] = []

        def step(batch):
            samples.append(rss_mb())
            return enc(batch.x).square().mean()

        t0 = time.perf_counter()
        fit(enc, step, ds, ds.split_indices("train"), None, epochs=1, batch_size=self.b500, lr=1e-4,
            device=self.device, precision="fp32", max_steps_per_epoch=steps, progress=False, desc="bench memory")
        train_s = time.perf_counter() - t0
        peak, growth = max(samples), max(samples) - samples[min(1, len(samples) - 1)]
        self.raw["rss_train_epoch"] = {"steps": steps, "batch": self.b500, "seconds": train_s, "rss_mb": samples}
        self.rows.append(_row(
            "4 memory", f"RSS, training epoch on the 500 Hz store ({steps} steps)", peak, "MB", "store size", size_mb,
            peak / size_mb, "< 2048 MB, flat", peak < 2048 and growth < 256,
            f"growth {growth:.0f} MB after the first step; {steps * self.b500 / train_s:.0f} ECG/s",
        ))

    # -- 5: scaling ---------------------------------------------------------------------------
    def scaling(self) -> None:
        import torch

        from benchmark.encoders import create_encoder
        from benchmark.training import fit

        base = 128 if self.quick else (4096 if self.device.type == "cuda" else 512)
        ds = synthetic_store(self.cache_dir, 4 * base, fs=100)
        secs = {}
        for k in (1, 2, 4):
            torch.manual_seed(0)
            enc = create_encoder(self.encoder)
            t0 = time.perf_counter()
            fit(enc, lambda b: enc(b.x).square().mean(), ds, np.arange(k * base), None, epochs=1,
                batch_size=self.b100, lr=1e-4, device=self.device, precision="fp32", progress=False,
                desc="bench scaling")
            secs[k] = time.perf_counter() - t0
        self.raw["epoch_seconds"] = {f"{k}x ({k * base} ECGs)": s for k, s in secs.items()}
        for k in (2, 4):
            ratio = secs[k] / secs[1]
            self.rows.append(_row(
                "5 scaling", f"epoch time {k}x data ({k * base} ECGs)", secs[k], "s", f"1x ({base} ECGs)",
                secs[1], ratio / k, "0.8-1.25 (linear)", 0.8 <= ratio / k <= 1.25,
                f"t({k}x)/t(1x) = {ratio:.2f}, ideal {k}",
            ))

    # -- 1: data path -------------------------------------------------------------------------
    def data_path(self) -> None:
        from benchmark.data.store import measure_read_throughput

        ds = self._ptbxl()
        r = measure_read_throughput(ds, self.data_root, n=64 if self.quick else 256, batch_size=64,
                                    repeats=1 if self.quick else 3)
        self.raw["read_throughput"] = r
        self.rows.append(_row(
            "1 data path", "prepared store, random batches of 64", r["store_ecgs_per_s"], "ECG/s",
            "wfdb.rdrecord one by one", r["wfdb_ecgs_per_s"], r["ratio"], ">= 50", r["ratio"] >= 50,
            f"{r['records']} PTB-XL records at {r['fs']} Hz; best of {r['repeats']}",
        ))
        if not hasattr(self, "train_ecgs_per_s_100"):
            self.train_ecgs_per_s_100 = encoder_throughput(self.encoder, 100, "fp32", self.device, self.b100,
                                                           self.steps)["ecgs_per_s"]
        loader = r["store_ecgs_per_s"]
        ratio = loader / self.train_ecgs_per_s_100
        self.rows.append(_row(
            "1 data path", "loader throughput (100 Hz)", loader, "ECG/s",
            f"encoder training (100 Hz fp32, {self.encoder})", self.train_ecgs_per_s_100, ratio, ">= 20",
            ratio >= 20, "the loader is never the bottleneck when >= 20",
        ))

    # -- 2: frozen LM -------------------------------------------------------------------------
    def frozen_lm(self) -> None:
        import gc

        for lm in ("minilm", "random-bert"):
            try:
                r = self._mets_steps(lm)
            except Exception as exc:  # an LM that cannot load here: say so in the table
                log.warning("bench: METS with lm=%s failed: %s", lm, exc)
                self.rows.append(_row("2 frozen LM", f"METS step, lm={lm}", float("nan"), "ms", "", float("nan"),
                                      float("nan"), "", None, f"not measured: {str(exc).splitlines()[0]}"))
                continue
            self.raw.setdefault("mets_steps", {})[lm] = r
            speedup = r["in_loop_ms"] / r["cached_ms"]
            expected = (r["cached_ms"] + r["lm_ms"]) / r["cached_ms"]
            share = r["lm_ms"] / (r["cached_ms"] + r["lm_ms"])
            self.rows.append(_row(
                "2 frozen LM", f"METS step, LM in the loop ({lm})", r["in_loop_ms"], "ms/step",
                "METS step, cached text embeddings", r["cached_ms"], speedup,
                f">= {1 + 0.8 * (expected - 1):.2f} (LM share {share:.0%})", speedup >= 1 + 0.8 * (expected - 1),
                f"LM alone {r['lm_ms']:.0f} ms per batch of {r['batch']}; expected ratio {expected:.2f}",
            ))
            gc.collect()

    def _report_slice(self):
        """(PTB-XL set, training positions with a non-empty report, batch, timed steps): the slice
        every METS step measurement trains on (one warm-up step + ``steps`` timed ones)."""
        data = self._ptbxl()
        batch = 8 if self.quick else 32
        steps = 1 if self.quick else 3
        texts = data.texts("en")
        train = data.split_indices("train")
        return data, train[[bool(texts[i].strip()) for i in train]][: (steps + 1) * batch], batch, steps

    def _timed_steps(self, m, opt, data, train, batch: int, steps: int, gen, around_step=None) -> list[float]:
        """Seconds of each of ``steps + 1`` optimiser steps of ``m`` on consecutive batches of
        ``train`` (the first warms up); ``around_step()``, if given, is a context manager entered
        around each forward pass."""
        from benchmark.training import Batch

        times = []
        for s in range(steps + 1):
            idx = train[s * batch : (s + 1) * batch]
            _sync(self.device)
            t0 = time.perf_counter()
            b = Batch(data.batch(idx, self.device), idx, 0, s, True, gen, self.device)
            with around_step() if around_step is not None else contextlib.nullcontext():
                loss = m.training_step(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync(self.device)
            times.append(time.perf_counter() - t0)
        return times

    def _mets_steps(self, lm: str) -> dict:
        import torch

        from methods.mets import METS

        data, train, batch, steps = self._report_slice()
        m = METS(encoder=self.encoder, lm=lm, device=str(self.device), cache_dir=str(self.cache_dir), seed=0)
        m.setup(data, train)  # embeds these reports once (through the on-disk cache)
        m.to(self.device).train()
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
        gen = torch.Generator().manual_seed(0)

        def timed(in_loop: bool) -> float:
            m.settings["text_in_loop"] = in_loop
            times = self._timed_steps(m, opt, data, train, batch, steps, gen)
            return float(np.median(times[1:])) * 1e3  # the first step warms up

        try:
            cached = timed(False)
            in_loop = timed(True)
            raw_texts = [m._row_text[i] for i in train[:batch]]
            m.text.encoder.encode(raw_texts)  # warm-up
            lm_times = []
            for _ in range(max(1, steps)):
                t0 = time.perf_counter()
                m.text.encoder.encode(raw_texts)
                lm_times.append(time.perf_counter() - t0)
        finally:
            m.settings["text_in_loop"] = False
        return {"cached_ms": cached, "in_loop_ms": in_loop, "lm_ms": float(np.median(lm_times)) * 1e3,
                "batch": batch, "steps": steps}

    # -- 7: LM training ---------------------------------------------------------------------
    LM_TRAIN_VARIANTS = (("frozen", False), ("last-2", False), ("all", False), ("all", True))

    def lm_training(self) -> None:
        import gc

        results = {}
        for lm_train, ckpt in self.LM_TRAIN_VARIANTS:
            name = f"lm_train={lm_train}" + (", grad_checkpointing" if ckpt else "")
            try:
                results[name] = self._lm_train_step(lm_train, ckpt)
            except Exception as exc:
                log.warning("bench: METS %s failed: %s", name, exc)
                self.rows.append(_row("7 LM training", f"METS step, {name}", float("nan"), "ms/step", "", float("nan"),
                                      float("nan"), "", None, f"not measured: {str(exc).splitlines()[0]}"))
            gc.collect()
        self.raw["lm_training"] = results
        ref = results.get("lm_train=frozen")
        for name, r in results.items():
            note = (f"saved activations {r['activations_mb']:.1f} MB, trainable state {r['trainable_state_mb']:.1f} MB "
                    f"({r['trainable_params'] / 1e6:.2f} M params x 4: weights, grads, 2 AdamW moments)")
            if r.get("peak_device_mb") is not None:
                note += f", peak device memory {r['peak_device_mb']:.0f} MB"
            self.rows.append(_row(
                "7 LM training", f"METS step (minilm), {name}", r["ms"], "ms/step",
                "METS step, lm_train=frozen", ref["ms"] if ref else float("nan"),
                r["ms"] / ref["ms"] if ref else float("nan"), "", None, note + f"; batch {r['batch']}"))

    def _lm_train_step(self, lm_train: str, checkpointing: bool) -> dict:
        import torch

        from benchmark.training import _param_groups, _make_optimizer
        from methods.mets import METS

        data, train, batch, steps = self._report_slice()
        m = METS(encoder=self.encoder, lm="minilm", lm_train=lm_train, grad_checkpointing=checkpointing,
                 device=str(self.device), cache_dir=str(self.cache_dir), seed=0)
        m.setup(data, train)
        m.to(self.device).train()
        groups = _param_groups(m.optimizer_params() or m.parameters())
        opt = _make_optimizer("adamw", groups, 1e-4, 0.0)
        gen = torch.Generator().manual_seed(0)
        saved: dict[tuple, int] = {}

        def pack(t):
            try:
                st = t.untyped_storage()
                saved[(st.data_ptr(), st.device.type)] = st.nbytes()
            except Exception:
                pass
            return t

        act: list[int] = []

        @contextlib.contextmanager
        def recording():  # the bytes autograd saves for backward in one forward pass
            saved.clear()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                yield
            act.append(sum(saved.values()))

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        times = self._timed_steps(m, opt, data, train, batch, steps, gen, around_step=recording)
        n_train = sum(p.numel() for g in groups for p in g["params"])
        return {
            "ms": float(np.median(times[1:])) * 1e3, "batch": batch, "steps": steps,
            "activations_mb": float(np.median(act[1:])) / 2**20,
            "trainable_params": int(n_train), "trainable_state_mb": 4 * 4 * n_train / 2**20,
            "peak_device_mb": torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None,
        }

    # -- 6: end to end ------------------------------------------------------------------------
    def end_to_end(self) -> None:
        if self.profile_timings:
            timings = json.loads(Path(self.profile_timings).read_text())
            label, wall = f"quick profile (from {self.profile_timings})", timings["total"]
        else:
            timings, wall, label = self._run_profile()
        self.raw["profile_timings"] = timings
        target = 600.0
        full = not self.quick or self.profile_timings
        self.rows.append(_row(
            "6 end to end", f"{label}: wall time", wall, "s", "10 minutes", target, wall / target,
            "<= 1" if full else "(reduced config)", (wall <= target) if full else None,
            f"{timings.get('jobs_run', '?')} jobs, {os.cpu_count()} CPU cores visible",
        ))
        total = float(timings.get("total") or wall)
        notes = {"data": "opening/preparing stores", "pretrain": "pretraining (incl. METS report embedding)",
                 "lm": "frozen LM (part of pretrain/evaluate)", "embed": "encoding ECGs for probes (part of evaluate)",
                 "evaluate": "probes, zero-shot, metrics, bootstrap", "finetune": "fine-tune protocol"}
        for stage in ("data", "pretrain", "lm", "embed", "evaluate", "finetune"):
            if stage in timings:
                self.rows.append(_row("6 end to end", f"  stage: {stage}", float(timings[stage]), "s", "run total",
                                      total, float(timings[stage]) / total, "", None, notes[stage]))

    # -- 8: workers ---------------------------------------------------------------------------
    def workers(self) -> None:
        """The same profile through ``run --workers 1`` and ``--workers 2`` (Dask local cluster);
        on CPU also ``--workers 2`` with the cores split between the workers."""
        try:
            import distributed  # noqa: F401
        except ImportError:
            log.warning("bench figure 8 skipped: Dask is not installed (pip install -e '.[workers]')")
            return
        cores = os.cpu_count() or 1
        threads = self.raw.get("torch_threads")
        walls = {}
        for n in (1, 2):
            timings, walls[n], label = self._run_profile(parallel={"workers": n})
        split = max(1, int(threads or cores) // 2)
        if self.device.type == "cpu":  # the default keeps each worker at the submitter's threads: identical rows
            old = os.environ.get("ECGBENCH_WORKER_THREADS")
            os.environ["ECGBENCH_WORKER_THREADS"] = str(split)
            try:
                _, walls["2-split"], _ = self._run_profile(parallel={"workers": 2})
            finally:
                if old is None:
                    os.environ.pop("ECGBENCH_WORKER_THREADS", None)
                else:
                    os.environ["ECGBENCH_WORKER_THREADS"] = old
        self.raw["workers_seconds"] = walls
        speedup = walls[1] / walls[2]
        self.rows.append(_row(
            "8 workers", f"{label}: --workers 2 speed-up over --workers 1", speedup, "x",
            "--workers 1 wall time (s)", walls[1], speedup, "~2 with 2 free GPUs or 2x the cores", None,
            f"--workers 1: {walls[1]:.0f} s, --workers 2: {walls[2]:.0f} s; {cores} CPU cores visible and each "
            f"worker uses {threads} torch threads (the default, so rows equal a one-process run to the last "
            "digit): the workers compete for the same cores; a method's jobs also wait for its pretraining",
        ))
        if "2-split" in walls:
            s2 = walls[1] / walls["2-split"]
            self.rows.append(_row(
                "8 workers", f"{label}: --workers 2 with {split} torch thread(s) each, speed-up over --workers 1",
                s2, "x", "--workers 1 wall time (s)", walls[1], s2, "~1 (the same cores, split)", None,
                f"ECGBENCH_WORKER_THREADS={split}: {walls['2-split']:.0f} s; no oversubscription, but the same "
                f"{cores} cores do the same work, and numbers may differ from a one-process run in the last digits",
            ))

    def _run_profile(self, parallel: dict | None = None) -> tuple[dict, float, str]:
        """Run the quick profile (or, with --quick, a reduced config) in a scratch out/cache dir.

        The scratch cache links the real cache's prepared stores (so 'data' is opening them, as
        in every run after the first) but nothing else: pretraining and the LM run for real."""
        from benchmark.config import build_config
        from benchmark.engine.runner import Runner

        overrides = {}
        label = "quick profile, default methods"
        if self.quick:
            label = "reduced quick profile (--quick)"
            overrides = {"methods": "mets,random-init", "protocols": "zero-shot,few-label",
                         "zero_shot_tasks": "superdiagnostic", "few_label_tasks": "superdiagnostic",
                         "label_fractions": "1.0", "few_label_modes": "linear-probe", "n_boot": 20,
                         "method_settings.encoder": "resnet1d-tiny", "method_settings.epochs": 1,
                         "method_settings.width": None, "panel_examples": 0}
        overrides["device"] = str(self.device.type)
        cfg = build_config("quick", None, overrides)
        with tempfile.TemporaryDirectory(prefix="ecgbench-bench-") as tmp:
            scratch = Path(tmp) / "cache"
            scratch.mkdir()
            (self.cache_dir / "stores").mkdir(parents=True, exist_ok=True)
            os.symlink(self.cache_dir / "stores", scratch / "stores")
            out = Path(tmp) / "run"
            t0 = time.perf_counter()
            with _quiet():
                Runner(cfg, data_root=self.data_root, cache_dir=scratch, out=out, progress=False).run(parallel=parallel)
            wall = time.perf_counter() - t0
            timings = json.loads((out / "timings.json").read_text())
        return timings, wall, label


@contextlib.contextmanager
def _quiet():
    """The harness logs every job at INFO; inside the bench only warnings are shown."""
    lg = logging.getLogger("benchmark.run")
    level = lg.level
    lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lg.setLevel(level)
