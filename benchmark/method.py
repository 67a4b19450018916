"""The base class every method derives from, and the fine-tune head the protocols use.

A method is a ``torch.nn.Module`` that owns an ECG encoder (``self.encoder``, a ResNet1d from
``benchmark.encoders``) plus its own heads, and implements one function: ``training_step``.
The base class owns the rest -- settings, seeding, device, the training loop
(``benchmark.training.fit``: optimiser, schedule, progress bar, mixed precision, checkpoints,
resume, early stopping on validation loss), feature extraction, fine-tuning, save/load.
This is solo-learn's ``BaseMethod`` idea (solo/methods/base.py) without Lightning.

Writing a method::

    @register_method_class("my-method")
    class MyMethod(Method):
        defaults = {**Method.defaults, "temperature": 0.1}   # every setting, with its default
        def build(self):                                     # heads; runs seeded
            self.head = nn.Linear(self.encoder.dim, 64)
        def training_step(self, batch):                      # -> scalar loss (or None: skip)
            return some_loss(self.head(self.ecg_features(batch.x)))

Settings are keyword arguments; unknown names are an error (the registry checks the factory's
signature, which ``register_method_class`` builds from ``defaults``). ``config()`` returns all
of them canonically (used to hash a pretraining configuration); the runtime-only ones
(``RUNTIME_SETTINGS``: device, compile, cache dir) do not change what is learnt and are left out
of ``config_hash()``.

Embeddings: ``encode_ecg`` returns the encoder's pooled features [N, D] (D = ``embedding_dim``),
i.e. the representation *before* any projection head, for every method alike -- SimCLR's and
CLOCS's projectors and METS's projection into the text space are training devices, and the
linear probe compares backbones. METS's joint-space ECG embedding is used by its zero-shot scores.
``encode_ecg(..., pooled=False)`` returns the time-resolved features [N, D, T'] instead, and
``encode_ecg(..., at=t, span=s)`` the mean of the positions centred within ``s`` seconds around
``t`` seconds into the window ([N, D]; the nearest position when ``s`` is 0): one batching, device,
precision and compile path for all three (``feature_grid`` says where the positions sit).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from benchmark.encoders import create_encoder, with_contract
from benchmark.errors import UserError, unknown_name
from benchmark.losses import supervised_loss
from benchmark.registry import METHODS, load_builtin_plugins, register_method
from benchmark.heal import CorruptCacheEntry, atomic_torch_save, safe_torch_load
from benchmark.device import resolve_device
from benchmark.training import Batch, autocast, fit, resolve_precision

SAVE_FORMAT = 2  # 2: plain data only (loads with weights_only=True), SHA-256 sidecar


class TextTower:
    """The text-tower interface, declared by methods with a text side trained beside the ECG encoder
    (METS, MERL): what zero-shot and the text-ceiling protocol use besides ``Method``. A method
    declares it by deriving from it (``class METS(Method, TextTower)``)."""

    has_text_tower: ClassVar[bool] = True

    def report_texts(self, data, idx) -> list[str]:
        """The reports of rows ``idx`` as the text tower saw them in training ('' for none)."""
        raise NotImplementedError

    def bare_lm_embeddings(self, texts: list[str]) -> np.ndarray:
        """Raw embeddings [n, D] of the language model before any ECG training."""
        raise NotImplementedError

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """L2-normalised embeddings [n, proj_dim] in the joint ECG-text space."""
        raise NotImplementedError

    def class_weights(self, class_prompts: dict[str, list[str]]) -> np.ndarray:
        """Zero-shot classifier [C, proj_dim] of the classes' prompts, in the joint space."""
        raise NotImplementedError


class Method(nn.Module):
    """Base of all methods: see the module docstring."""

    name: ClassVar[str] = "method"
    has_text_tower: ClassVar[bool] = False
    uses_labels: ClassVar[bool] = False
    needs_pretraining: ClassVar[bool] = True

    defaults: ClassVar[dict[str, Any]] = {
        "encoder": "resnet1d-18",
        "width": None,  # None: the encoder variant's own width
        "epochs": 10,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "optimizer": "adamw",
        "schedule": "cosine",
        "warmup": 0.0,  # epochs of linear warm-up
        "early_stopping_patience": None,
        "max_steps_per_epoch": None,
        "grad_clip": None,
        "seed": 0,
        "device": "auto",
        "precision": "auto",
        "compile": False,
        "cache_dir": None,
    }
    RUNTIME_SETTINGS: ClassVar[frozenset[str]] = frozenset({"device", "compile", "cache_dir"})

    def __init__(self, **settings):
        super().__init__()
        self.settings: dict[str, Any] = self.canonical_settings(settings)
        self.device = resolve_device(self.settings["device"])
        self.precision = resolve_precision(self.settings["precision"], self.device)
        self.stats: dict[str, Any] = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.settings["seed"]))
            self.encoder = create_encoder(self.settings["encoder"], width=self.settings["width"])
            self.build()
        self.encoder = with_contract(self.encoder)  # adapts every batch to a declared input contract
        self._compiled = None
        if self.settings["compile"]:
            object.__setattr__(self, "_compiled", torch.compile(self.encoder))

    # -- settings --------------------------------------------------------------------------
    @classmethod
    def canonical_settings(cls, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``; unknown names rejected; ints given for float
        settings become floats (so ``lr=1`` and ``lr=1.0`` hash alike)."""
        out = dict(cls.defaults)
        for key, value in given.items():
            if key not in cls.defaults:
                raise unknown_name(f"setting for method '{cls.name}'", key, cls.defaults)
            default = cls.defaults[key]
            if isinstance(default, bool) and not isinstance(value, bool):
                raise UserError(f"setting '{key}' of method '{cls.name}' must be true or false, got {value!r}")
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            elif isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
                raise UserError(f"setting '{key}' of method '{cls.name}' must be a number, got '{value}'")
            out[key] = value
        return out

    @classmethod
    def signature(cls) -> inspect.Signature:
        """Keyword-only signature built from ``defaults`` (what the registry checks)."""
        return inspect.Signature(
            [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in cls.defaults.items()]
        )

    def config(self) -> dict[str, Any]:
        """Every setting (canonical); ``method`` names the registered method."""
        return {"method": self.name, **self.settings}

    def config_hash(self) -> str:
        """Hash of the settings that change what is learnt (runtime-only settings excluded)."""
        cfg = {k: v for k, v in self.config().items() if k not in self.RUNTIME_SETTINGS}
        return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]

    # -- hooks a method implements ------------------------------------------------------------
    def build(self) -> None:
        """Create the method's heads (runs with torch seeded from ``seed``)."""

    def setup(self, data, train_idx, val_idx=None, targets=None) -> None:
        """Prepare per-dataset state before training (e.g. METS embeds the reports once)."""

    def usable_rows(self, data, idx: np.ndarray, targets=None) -> np.ndarray:
        """Rows of ``idx`` this method can train on (default: all)."""
        return idx

    def optimizer_params(self) -> list | None:
        """What the pretraining optimiser updates: ``None`` (default) for every parameter that
        requires grad, or a list of torch parameter groups (e.g. METS's trainable language model
        at its own ``lm_lr``)."""
        return None

    def training_step(self, batch: Batch) -> torch.Tensor | None:
        raise NotImplementedError(f"method '{self.name}' does not implement training_step")

    # -- training ------------------------------------------------------------------------------
    def fit_settings(self) -> dict[str, Any]:
        s = self.settings
        return dict(
            epochs=int(s["epochs"]), batch_size=int(s["batch_size"]), lr=float(s["lr"]),
            weight_decay=float(s["weight_decay"]), optimizer=s["optimizer"], schedule=s["schedule"],
            warmup=float(s["warmup"]), seed=int(s["seed"]), device=self.device, precision=self.precision,
            early_stopping_patience=s["early_stopping_patience"], max_steps_per_epoch=s["max_steps_per_epoch"],
            grad_clip=s["grad_clip"],
        )

    def pretrain(
        self,
        data,
        train_idx,
        val_idx=None,
        *,
        targets: np.ndarray | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        progress: bool = True,
        on_epoch_end=None,
    ) -> list[dict]:
        """Train on ``train_idx`` (early stopping / best state on ``val_idx``); return the history.

        ``targets`` ([len(data), C], used by label-based methods only) defaults to the labels of
        the method's task. Methods with ``needs_pretraining=False`` return ``[]`` untouched.
        """
        if not self.needs_pretraining:
            return []
        self.stats = {}
        train_idx = self.usable_rows(data, np.asarray(train_idx, dtype=np.int64), targets)
        val_idx = self.usable_rows(data, np.asarray([] if val_idx is None else val_idx, dtype=np.int64), targets)
        self._bind(data)  # an encoder with an input contract reads this store's rate and statistics
        self.setup(data, train_idx, val_idx, targets)
        history = fit(
            self, self.training_step, data, train_idx, val_idx,
            checkpoint_dir=checkpoint_dir, progress=progress, on_epoch_end=on_epoch_end,
            params=self.optimizer_params(), desc=f"pretrain {self.name}", **self.fit_settings(),
        )
        return history

    # -- features ------------------------------------------------------------------------------
    def ecg_features(self, x: torch.Tensor, pooled: bool = True) -> torch.Tensor:
        """Encoder features [B, D], or with ``pooled=False`` the time-resolved map [B, D, T']
        (through ``torch.compile`` when the ``compile`` setting is on)."""
        enc = self._compiled if self._compiled is not None else self.encoder  # no bool(): it calls len()
        return enc(x) if pooled else enc(x, pooled=False)

    def feature_grid(self, n_samples: int, fs: float | None = None) -> dict:
        """Where the encoder's feature positions sit on an input of ``n_samples`` samples: its
        ``stride``, ``offset`` and ``receptive_field`` in samples, ``positions`` (T'), and with
        ``fs`` the same in seconds (``centres_s``: the time each position is centred on)."""
        enc = self.encoder
        n = int(enc.n_positions(int(n_samples)))
        out = {**enc.contract(), "positions": n}
        if fs:
            out.update(stride_s=enc.stride / fs, receptive_field_s=enc.receptive_field / fs,
                       centres_s=(enc.centre_of(np.arange(n)) / fs).tolist())
        return out

    def input_record(self, data) -> dict:
        """What the encoder reads from ``data``, as a run records it with the results: its declared
        input contract, what that resolves to on this store (rate, samples, leads, unit,
        normalisation) and which of its leads the dataset does not record (fed as zeros)."""
        from benchmark.data.adapt import lead_coverage

        contract = self.encoder.input_contract
        return {"contract": contract.describe(), "reads": contract.resolved(float(data.fs), int(data.n_samples)),
                "store": {"fs": float(data.fs), "samples": int(data.n_samples), "leads": list(data.leads)},
                "leads_zero": lead_coverage(contract, data.leads)["zero"], "dim": int(self.encoder.dim)}

    @property
    def embedding_dim(self) -> int:
        return int(self.encoder.dim)

    def _bind(self, data, n_samples: int | None = None) -> None:
        """Tell an encoder with an input contract (``AdaptedEncoder``) the store's rate and length."""
        if hasattr(self.encoder, "bind"):
            from benchmark.data.adapt import lead_stats

            self.encoder.bind(float(data.fs), int(n_samples or data.n_samples),
                              stats=lead_stats(data.mean, data.std, data.lead_idx))
            self.encoder.bound_to = id(data)

    @torch.inference_mode()
    def _map_batches(self, fn, data, idx, batch_size: int) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if hasattr(self.encoder, "bind") and getattr(self.encoder, "bound_to", None) != id(data):
            self._bind(data)
        was_training = self.training
        self.to(self.device).eval()
        out = []
        try:
            for start in range(0, len(idx), batch_size):
                x = data.batch(idx[start : start + batch_size], self.device)
                with autocast(self.precision, self.device):
                    out.append(fn(x).float().cpu().numpy())
        finally:
            self.train(was_training)
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def encode_ecg(self, data, idx, batch_size: int = 256, *, pooled: bool = True, at: float | None = None,
                   span: float = 0.0, window: tuple[float, float] | None = None) -> np.ndarray:
        """Encoder features float32 for rows ``idx`` of ``data`` (eval mode, no grad):

        * default: the pooled features [N, D];
        * ``pooled=False``: the time-resolved features [N, D, T'] (T' = ``feature_grid(...)["positions"]``);
        * ``at=t`` (seconds from the window's start, e.g. the beat of a beat-centred window) and
          ``span=s``: the mean of the positions centred in [t - s/2, t + s/2], the nearest one when
          none is (or ``s`` is 0) -> [N, D]. Only those positions leave the device.
        * ``window=(a, b)``: the encoder reads only seconds [a, b) of each example's window (a
          short beat-centred input); ``at`` still counts from the full window's start.
        """
        n = len(np.asarray(idx))
        crop, _, n_in = self._crop(data, window)
        self._bind(data, n_in)
        if at is None:
            if span:
                raise UserError("encode_ecg: span= needs at= (the time the span is centred on)")
            if pooled:
                out = self._map_batches(lambda x: self.ecg_features(crop(x)), data, idx, batch_size)
                return out.reshape(n, self.embedding_dim)
            out = self._map_batches(lambda x: self.ecg_features(crop(x), pooled=False), data, idx, batch_size)
            return out.reshape(n, self.embedding_dim, -1) if n else out.reshape(0, self.embedding_dim, 0)
        if not pooled:
            raise UserError("encode_ecg: at= reads pooled local features; pass pooled=True (or drop at= for the map)")
        pos = self.readout_positions(data, at, span, window)
        sel = torch.as_tensor(pos, dtype=torch.long, device=self.device)
        out = self._map_batches(lambda x: self.ecg_features(crop(x), pooled=False).index_select(-1, sel).mean(-1),
                                data, idx, batch_size)
        return out.reshape(n, self.embedding_dim)

    @staticmethod
    def _crop(data, window):
        """(crop function on [B, L, T] batches, the crop's start in seconds, its length in samples)."""
        fs, n_samples = float(data.fs), int(data.n_samples)
        if window is None:
            return (lambda x: x), 0.0, n_samples
        a, b = (float(v) for v in window)
        i, j = int(round(a * fs)), int(round(b * fs))
        if not (0 <= i < j <= n_samples):
            raise UserError(f"encode_ecg: window=({a:g}, {b:g}) s must lie in the {n_samples / fs:g} s window "
                            "with start < stop")
        return (lambda x: x[..., i:j]), i / fs, j - i

    def readout_positions(self, data, at: float, span: float = 0.0, window=None) -> np.ndarray:
        """The feature positions ``encode_ecg(at=, span=, window=)`` averages for windows of ``data``."""
        _, start, n_in = self._crop(data, window)
        fs = float(data.fs)
        at, span = float(at), float(span)
        if not (start <= at <= start + n_in / fs) or span < 0:
            raise UserError(f"encode_ecg: at={at:g} s must lie in the {n_in / fs:g} s window read from {start:g} s "
                            f"and span={span:g} s must be >= 0")
        rel = at - start
        self._bind(data, n_in)
        return self.encoder.positions_within((rel - span / 2) * fs, (rel + span / 2) * fs, n_in)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError(
            f"method '{self.name}' has no text tower: encode_text/zero-shot need a method with "
            "has_text_tower=True (e.g. mets)"
        )

    def zero_shot_scores(self, data, idx, class_prompts: dict[str, list[str]]) -> np.ndarray:
        raise NotImplementedError(
            f"method '{self.name}' has no text tower: zero-shot scores need a method with "
            "has_text_tower=True (e.g. mets)"
        )

    def ecg_backbone(self) -> nn.Module:
        """A deep copy of the ECG encoder ([B, 12, T] -> [B, D]) for fine-tuning."""
        return copy.deepcopy(self.encoder)

    def fine_tune(
        self, data, train_idx, val_idx, targets: np.ndarray, *, multilabel: bool, checkpoint_dir=None,
        progress: bool = True, readout: dict | None = None, extra: np.ndarray | None = None,
        class_weight: np.ndarray | None = None, **overrides,
    ) -> "Classifier":
        """Train a copy of the encoder plus a linear head end to end on ``targets`` ([len(data), C]).

        Uses this method's training settings unless overridden (``epochs``, ``lr``, ...); early
        stopping and the kept state use the validation loss only. ``readout`` (the ``window``,
        ``at``, ``span`` keywords of :meth:`encode_ecg`) makes the head read part of the window
        instead of the global pool; ``extra`` ([len(data), F], e.g. a beat's RR features) is
        concatenated to the features before the head; ``class_weight`` ([C]) weighs a single-label
        task's classes in the loss.
        """
        crop = positions = None
        readout = dict(readout or {})
        self._bind(data)
        if readout.get("window") is not None:
            _, start, n_in = self._crop(data, readout["window"])
            i = int(round(start * float(data.fs)))
            crop = (i, i + n_in)
        if readout.get("at") is not None:
            positions = self.readout_positions(data, readout["at"], float(readout.get("span", 0.0)), readout.get("window"))
        model = Classifier(self.ecg_backbone(), targets.shape[1], multilabel, seed=int(self.settings["seed"]),
                           crop=crop, positions=positions, extra=extra)
        settings = {**self.fit_settings(), **overrides}
        y = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        model.history = fit(
            model, model.step_for(y, class_weight), data, train_idx, val_idx, checkpoint_dir=checkpoint_dir,
            progress=progress, desc=f"fine-tune {self.name}", **settings,
        )
        return model

    # -- persistence ---------------------------------------------------------------------------
    def method_state(self) -> dict[str, Any]:
        """Non-tensor state to save alongside the weights (e.g. a fitted TF-IDF's texts)."""
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        """Restore what ``method_state`` returned."""

    def save(self, path: str | os.PathLike) -> Path:
        """Write weights + settings + method state atomically to ``path``."""
        path = Path(path)
        atomic_torch_save(
            {
                "format": SAVE_FORMAT,
                "method": self.name,
                "config": self.config(),
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                "method_state": self.method_state(),
                "stats": self.stats,
                "torch": str(torch.__version__),
            },
            path,
        )
        return path

    def load(self, path: str | os.PathLike) -> "Method":
        """Load weights saved by ``save`` into this (identically configured) method."""
        ck = _read_saved(path)
        if ck["method"] != self.name:
            raise UserError(f"'{path}' holds method '{ck['method']}', not '{self.name}'")
        mine = {k: v for k, v in self.config().items() if k not in self.RUNTIME_SETTINGS}
        theirs = {k: v for k, v in ck["config"].items() if k not in self.RUNTIME_SETTINGS}
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise UserError(f"'{path}' was saved with different settings ({', '.join(diff)}); build the method with them or use load_method()")
        self.load_method_state(ck.get("method_state", {}))
        self.load_state_dict(ck["state_dict"])
        self.stats = dict(ck.get("stats", {}))
        self.to(self.device)
        return self


def _read_saved(path) -> dict:
    """A file written by ``Method.save``, loaded safely (``weights_only=True``) and verified against
    its SHA-256 sidecar. ``CorruptCacheEntry`` (a ``UserError``) if it is damaged or not plain data:
    the harness treats that as a cache miss, a user-named file as an error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"saved method '{path}' does not exist")
    ck = safe_torch_load(path)
    if not isinstance(ck, dict) or ck.get("format") != SAVE_FORMAT or "state_dict" not in ck:
        found = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
        raise CorruptCacheEntry(path, f"not a saved method of this suite (format {found}, expected {SAVE_FORMAT})")
    return ck


def load_method(path: str | os.PathLike, **runtime) -> Method:
    """Rebuild a saved method from its stored settings (``runtime``: device=..., cache_dir=...)."""
    load_builtin_plugins()
    ck = _read_saved(path)
    cfg = {k: v for k, v in ck["config"].items() if k != "method"}
    cfg.update(runtime)
    return METHODS.create(ck["method"], **cfg).load(path)


def register_method_class(name: str, *, description: str = ""):
    """Class decorator: register a ``Method`` subclass under ``name`` in ``METHODS``.

    The registered factory's signature lists every setting in ``cls.defaults``, so
    ``METHODS.create("name[typo=1]")`` fails with a suggestion instead of silently ignoring it.
    """

    def deco(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError("register_method_class decorates Method subclasses")
        cls.name = name

        def factory(**settings):
            return cls(**settings)

        factory.__signature__ = cls.signature()
        factory.__name__ = cls.__name__
        factory.__doc__ = cls.__doc__
        factory.method_class = cls
        register_method(name, description=description or (inspect.getdoc(cls) or "").split("\n")[0], cls=cls)(factory)
        return cls

    return deco


class Classifier(nn.Module):
    """Backbone + linear head; ``predict`` gives probabilities (sigmoid or softmax).

    ``crop`` ((first, stop) samples) feeds the backbone part of each window, ``positions`` makes
    the head read the mean of those feature positions instead of the global pool, and ``extra``
    ([len(data), F], row-indexed like the data) is concatenated to the features before the head."""

    def __init__(self, backbone: nn.Module, n_classes: int, multilabel: bool, seed: int = 0, *,
                 crop: tuple[int, int] | None = None, positions=None, extra: np.ndarray | None = None):
        super().__init__()
        self.backbone = backbone
        self.multilabel = bool(multilabel)
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        self.register_buffer("positions", None if positions is None else torch.as_tensor(np.asarray(positions),
                                                                                            dtype=torch.long),
                             persistent=False)
        self.extra = None if extra is None else torch.as_tensor(np.asarray(extra, dtype=np.float32))
        n_extra = 0 if extra is None else int(self.extra.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = nn.Linear(int(backbone.dim) + n_extra, int(n_classes))
        self.history: list[dict] = []

    def forward(self, x: torch.Tensor, idx=None) -> torch.Tensor:
        if self.crop is not None:
            x = x[..., self.crop[0]:self.crop[1]]
        if self.positions is None:
            h = self.backbone(x)
        else:
            h = self.backbone(x, pooled=False).index_select(-1, self.positions).mean(-1)
        if self.extra is not None:
            if idx is None:
                raise ValueError("this classifier reads extra per-row features: pass the rows' idx")
            h = torch.cat([h, self.extra[torch.as_tensor(np.asarray(idx))].to(h.device, h.dtype)], dim=1)
        return self.head(h)

    def step_for(self, y: torch.Tensor, class_weight=None):
        """Loss function over batches for targets ``y`` [len(data), C] (indexed by batch.idx)."""
        w = None if class_weight is None else torch.as_tensor(np.asarray(class_weight, dtype=np.float32))

        def step(batch: Batch) -> torch.Tensor:
            target = y[torch.as_tensor(batch.idx)].to(batch.device)
            return supervised_loss(self(batch.x, batch.idx), target, self.multilabel, w)

        return step

    @torch.inference_mode()
    def predict(self, data, idx, batch_size: int = 256, device="auto") -> np.ndarray:
        dev = resolve_device(device) if not isinstance(device, torch.device) else device
        self.to(dev).eval()
        idx = np.asarray(idx, dtype=np.int64)
        out = []
        for start in range(0, len(idx), batch_size):
            rows = idx[start : start + batch_size]
            logits = self(data.batch(rows, dev), rows).float()
            out.append((torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, 1)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.head.out_features), np.float32)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


__all__ = [
    "Method", "Classifier", "register_method_class", "load_method", "l2_normalise",
]
