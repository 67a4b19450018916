"""Figures of the machine and the data path: 1 data path, 3 arithmetic, 4 memory, 5 scaling
(a mixin of :class:`benchmark.bench.runner.Bench`: each figure appends rows to ``self.rows`` and
its raw numbers to ``self.raw``)."""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmark.bench.synthetic import synthetic_store
from benchmark.bench.table import row
from benchmark.bench.timing import encoder_throughput, matmul_peak_gflops, reference_check, rss_mb
from benchmark.data.store import measure_read_throughput
from benchmark.encoders import create_encoder
from benchmark.training import fit, resolve_precision

FULL_N = 21_799  # PTB-XL records


def arithmetic_row(fs: int, prec: str, r: dict, peaks: dict, n: int) -> dict:
    """Figure 3's row for one (rate, precision) measurement ``r`` of :func:`encoder_throughput`."""
    frac = r["gflops"] / peaks[prec]
    ok, why = reference_check(prec, peaks[prec], peaks["fp32"], r["gflops"])
    note = f"{r['ecgs_per_s']:.0f} ECG/s, {r['gflop_per_ecg']:.3f} GFLOP/ECG (fwd+bwd), batch {r['batch']}"
    return row(
        "3 arithmetic", f"encoder training {fs} Hz {prec}", r["gflops"], "GFLOP/s",
        f"matmul peak {prec} ({n}^3)", peaks[prec], frac, ">= 0.70" if ok else f"n/a: {why.split(':')[0]}",
        (frac >= 0.70) if ok else None, note if ok else f"{why}; not counted. {note}",
    )


class MachineFigures:
    """Figures 1, 3, 4, 5 of :class:`~benchmark.bench.runner.Bench` (its settings: ``quick``, ``device``,
    ``encoder``, ``b100``/``b500``/``steps``, ``cache_dir``, ``data_root``; output: ``rows``, ``raw``)."""

    # -- 3: arithmetic ------------------------------------------------------------------------
    def arithmetic(self) -> None:
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
        self.rows.append(row(
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
        self.rows.append(row(
            "4 memory", f"RSS, training epoch on the 500 Hz store ({steps} steps)", peak, "MB", "store size", size_mb,
            peak / size_mb, "< 2048 MB, flat", peak < 2048 and growth < 256,
            f"growth {growth:.0f} MB after the first step; {steps * self.b500 / train_s:.0f} ECG/s",
        ))

    # -- 5: scaling ---------------------------------------------------------------------------
    def scaling(self) -> None:
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
            self.rows.append(row(
                "5 scaling", f"epoch time {k}x data ({k * base} ECGs)", secs[k], "s", f"1x ({base} ECGs)",
                secs[1], ratio / k, "0.8-1.25 (linear)", 0.8 <= ratio / k <= 1.25,
                f"t({k}x)/t(1x) = {ratio:.2f}, ideal {k}",
            ))

    # -- 1: data path -------------------------------------------------------------------------
    def data_path(self) -> None:
        ds = self._ptbxl()
        r = measure_read_throughput(ds, self.data_root, n=64 if self.quick else 256, batch_size=64,
                                    repeats=1 if self.quick else 3)
        self.raw["read_throughput"] = r
        self.rows.append(row(
            "1 data path", "prepared store, random batches of 64", r["store_ecgs_per_s"], "ECG/s",
            "wfdb.rdrecord one by one", r["wfdb_ecgs_per_s"], r["ratio"], ">= 50", r["ratio"] >= 50,
            f"{r['records']} PTB-XL records at {r['fs']} Hz; best of {r['repeats']}",
        ))
        if not hasattr(self, "train_ecgs_per_s_100"):
            self.train_ecgs_per_s_100 = encoder_throughput(self.encoder, 100, "fp32", self.device, self.b100,
                                                           self.steps)["ecgs_per_s"]
        loader = r["store_ecgs_per_s"]
        ratio = loader / self.train_ecgs_per_s_100
        self.rows.append(row(
            "1 data path", "loader throughput (100 Hz)", loader, "ECG/s",
            f"encoder training (100 Hz fp32, {self.encoder})", self.train_ecgs_per_s_100, ratio, ">= 20",
            ratio >= 20, "the loader is never the bottleneck when >= 20",
        ))
