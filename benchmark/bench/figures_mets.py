"""Figures of a METS training step: 2 frozen LM (cached report embeddings vs the LM in the loop)
and 7 LM training (frozen vs last 2 layers vs all of the LM trained), a mixin of
:class:`benchmark.bench.runner.Bench`."""

from __future__ import annotations

import contextlib
import gc
import logging
import time

import numpy as np
import torch

from benchmark.bench.table import row
from benchmark.bench.timing import sync
from benchmark.training import Batch, _make_optimizer, _param_groups
from methods.mets import METS

log = logging.getLogger("benchmark.bench")


class MetsFigures:
    """Figures 2 and 7 of :class:`~benchmark.bench.runner.Bench` (on its PTB-XL slice, device, encoder
    and cache dir; output: ``rows``, ``raw``)."""

    # -- 2: frozen LM -------------------------------------------------------------------------
    def frozen_lm(self) -> None:
        for lm in ("minilm", "random-bert"):
            try:
                r = self._mets_steps(lm)
            except Exception as exc:  # an LM that cannot load here: say so in the table
                log.warning("bench: METS with lm=%s failed: %s", lm, exc)
                self.rows.append(row("2 frozen LM", f"METS step, lm={lm}", float("nan"), "ms", "", float("nan"),
                                      float("nan"), "", None, f"not measured: {str(exc).splitlines()[0]}"))
                continue
            self.raw.setdefault("mets_steps", {})[lm] = r
            speedup = r["in_loop_ms"] / r["cached_ms"]
            expected = (r["cached_ms"] + r["lm_ms"]) / r["cached_ms"]
            share = r["lm_ms"] / (r["cached_ms"] + r["lm_ms"])
            self.rows.append(row(
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
        times = []
        for s in range(steps + 1):
            idx = train[s * batch : (s + 1) * batch]
            sync(self.device)
            t0 = time.perf_counter()
            b = Batch(data.batch(idx, self.device), idx, 0, s, True, gen, self.device)
            with around_step() if around_step is not None else contextlib.nullcontext():
                loss = m.training_step(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync(self.device)
            times.append(time.perf_counter() - t0)
        return times

    def _mets_steps(self, lm: str) -> dict:
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
        results = {}
        for lm_train, ckpt in self.LM_TRAIN_VARIANTS:
            name = f"lm_train={lm_train}" + (", grad_checkpointing" if ckpt else "")
            try:
                results[name] = self._lm_train_step(lm_train, ckpt)
            except Exception as exc:
                log.warning("bench: METS %s failed: %s", name, exc)
                self.rows.append(row("7 LM training", f"METS step, {name}", float("nan"), "ms/step", "", float("nan"),
                                      float("nan"), "", None, f"not measured: {str(exc).splitlines()[0]}"))
            gc.collect()
        self.raw["lm_training"] = results
        ref = results.get("lm_train=frozen")
        for name, r in results.items():
            note = (f"saved activations {r['activations_mb']:.1f} MB, trainable state {r['trainable_state_mb']:.1f} MB "
                    f"({r['trainable_params'] / 1e6:.2f} M params x 4: weights, grads, 2 AdamW moments)")
            if r.get("peak_device_mb") is not None:
                note += f", peak device memory {r['peak_device_mb']:.0f} MB"
            self.rows.append(row(
                "7 LM training", f"METS step (minilm), {name}", r["ms"], "ms/step",
                "METS step, lm_train=frozen", ref["ms"] if ref else float("nan"),
                r["ms"] / ref["ms"] if ref else float("nan"), "", None, note + f"; batch {r['batch']}"))

    def _lm_train_step(self, lm_train: str, checkpointing: bool) -> dict:
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
