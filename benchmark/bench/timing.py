"""Measurements that other code (tests, docs) may call on their own: resident memory, a matmul's
practical peak, the FLOPs and throughput of encoder training steps, and whether a matmul peak
can serve as a reference at all."""

from __future__ import annotations

import math
import time

import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark.encoders import create_encoder
from benchmark.training import autocast


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def matmul_peak_gflops(device, dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n x n ``torch.matmul`` (the machine's practical peak)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def sync(device) -> None:
    """Wait for the device's queued work (a no-op on CPU), so a timer measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def train_step_flops(encoder, x, precision: str, device) -> int:
    """FLOPs of one forward + backward of ``encoder`` on ``x`` (convolutions and matmuls)."""
    with FlopCounterMode(display=False) as fc:
        with autocast(precision, device):
            loss = encoder(x).float().square().mean()
        loss.backward()
    encoder.zero_grad(set_to_none=True)
    return int(fc.get_total_flops())


def encoder_throughput(spec: str, fs: int, precision: str, device, batch: int, steps: int) -> dict:
    """ECGs/s and GFLOP/s of encoder training steps (forward, backward, AdamW) on random input."""
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
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
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
