"""METS: a trainable ECG encoder aligned with a frozen language model (Li et al., MIDL 2023).

ECG -> ResNet1d -> linear projection ─┐
                                       ├─ both L2-normalised -> symmetric CLIP loss (InfoNCE)
report -> frozen LM (cached) -> linear ─┘

* The language model never trains and, by default, never runs inside the training loop: in
  ``setup`` every distinct training/validation report (wrapped in ``report_prompt``) is embedded
  once through the on-disk embedding cache (``methods.embedding_cache``), and the training step
  indexes that matrix with the batch's row positions. ``text_in_loop=True`` instead runs the
  frozen LM on every batch (uncached) -- only to measure what the cache saves (issue 7).
* Rows whose report is empty are left out of training and validation (counted in ``stats``).
* Zero-shot: each class's prompts go through the same frozen LM and text projection, are
  L2-normalised, averaged and re-normalised (open_clip's ``zero_shot_classifier``); the score of
  an ECG for a class is the cosine similarity of its projected embedding with that class vector.

What comes from the paper and what is our choice is written down in docs/methods.md.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.base import TEXT_KINDS
from benchmark.errors import UserError, unknown_name
from benchmark.losses import clip_loss
from benchmark.method import Method, TextTower, register_method_class
from benchmark.training import Batch, autocast
from methods.embedding_cache import create_text_encoder
from methods.prompts import class_vectors
from methods.text_encoders import TransformerTextEncoder

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp on a learnable temperature (T >= 0.01)
_LM_SECONDS = [0.0]  # wall time spent in the frozen LM (through its cache), this process


def lm_seconds() -> float:
    """Seconds this process spent embedding text with METS's frozen LMs (reports and prompts,
    cache look-ups included): the harness reports it as the "lm" share of a run."""
    return _LM_SECONDS[0]


def _timed_encode(text_encoder, texts) -> np.ndarray:
    t0 = time.perf_counter()
    try:
        return np.asarray(text_encoder.encode(texts), dtype=np.float32)
    finally:
        _LM_SECONDS[0] += time.perf_counter() - t0


@register_method_class("mets")
class METS(Method, TextTower):
    """METS: ECG encoder + frozen language model, CLIP-style contrastive pretraining (zero-shot capable)."""

    has_text_tower = True
    defaults = {
        **Method.defaults,
        "lm": "minilm",  # text encoder spec (methods.text_encoders): minilm, mpnet, tfidf, random-bert, hf:<id>
        "proj_dim": None,  # None: the LM's dimension (projection into the LM space, as in the re-implementation)
        "temperature": 0.07,
        "learnable_temperature": False,
        "report_prompt": "The report of the ECG is that {report}",
        "report_text": "en",  # raw | clean | en | both (clean + English): English by default, the prompts' language
        "text_in_loop": False,
        # frozen (the paper) | last-N (the LM's last N transformer layers train with the CLIP loss) | all
        "lm_train": "frozen",
        "lm_lr": 1e-5,  # learning rate of the trained LM layers (the ECG side uses lr)
        "grad_checkpointing": False,  # recompute the trained LM layers' activations in backward (large LMs)
    }

    def build(self) -> None:
        s = self.settings
        if s["report_text"] not in TEXT_KINDS:
            raise unknown_name("report_text for mets", str(s["report_text"]), TEXT_KINDS)
        if "{report}" not in str(s["report_prompt"]):
            raise UserError(f"mets report_prompt must contain '{{report}}', got '{s['report_prompt']}'")
        if not float(s["temperature"]) > 0:
            raise UserError(f"mets temperature must be > 0, got {s['temperature']}")
        # The frozen LM is deliberately *not* a submodule: its weights stay out of state_dict,
        # checkpoints and the optimiser, and .to()/.train() never touch it.
        object.__setattr__(
            self, "text", create_text_encoder(str(s["lm"]), cache_dir=s["cache_dir"], device=s["device"])
        )
        self._lm_layers = parse_lm_train(s["lm_train"])
        if not float(s["lm_lr"]) > 0:
            raise UserError(f"mets lm_lr must be > 0, got {s['lm_lr']}")
        self.lm = None
        if self._lm_layers:
            self._make_trainable_lm()
        self._make_projections()
        init = torch.tensor(math.log(1.0 / float(s["temperature"])))
        if s["learnable_temperature"]:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)
        self._fit_texts: list[str] | None = None
        self._text_emb: torch.Tensor | None = None  # [len(data), lm_dim] for training/validation rows
        self._row_text: list[str] | None = None

    # -- trainable language model (lm_train=last-N|all) ----------------------------------------
    def _make_trainable_lm(self) -> None:
        """A trainable copy of the LM (a submodule: it is saved, checkpointed and optimised) whose
        last N transformer layers (or all of it) require grad. The cached frozen LM (``self.text``)
        stays untouched: it is the "bare LM" of the text-ceiling protocol."""
        base = self.text.encoder
        spec = self.settings["lm_train"]
        if not isinstance(base, TransformerTextEncoder):
            raise UserError(f"mets lm_train={spec} needs a transformer language model; lm '{self.settings['lm']}' has none to train")
        self.lm = copy.deepcopy(base.module())
        layers = transformer_layers(self.lm)
        if self._lm_layers > len(layers):
            raise UserError(f"mets lm_train={spec}: the LM has only {len(layers)} transformer layers")
        self.lm.requires_grad_(False)
        trained = self.lm if self._lm_layers < 0 else layers[len(layers) - self._lm_layers:]
        trained.requires_grad_(True)
        self._trained_lm_parts = [self.lm] if self._lm_layers < 0 else list(trained)
        if self.settings["text_in_loop"]:
            raise UserError("mets text_in_loop applies to a frozen LM only (a trained LM always runs in the loop)")
        if self.settings["grad_checkpointing"]:
            self.lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    def train(self, mode: bool = True):
        """The LM's frozen part always stays in eval mode (no dropout): it computes exactly what the
        frozen LM computes; only the trained layers switch to training mode."""
        super().train(mode)
        if getattr(self, "lm", None) is not None:
            self.lm.eval()
            for part in self._trained_lm_parts:
                part.train(mode)
        return self

    def optimizer_params(self) -> list | None:
        if self.lm is None:
            return None
        lm_ids = {id(p) for p in self.lm.parameters()}
        rest = [p for p in self.parameters() if id(p) not in lm_ids]
        return [{"params": rest}, {"params": list(self.lm.parameters()), "lr": float(self.settings["lm_lr"])}]

    def _lm_forward(self, texts: list[str], device) -> torch.Tensor:
        """Pooled embeddings [n, lm_dim] of ``texts`` through the trainable LM (gradients flow
        into its trained layers when grad is enabled)."""
        enc = self.text.encoder.tokenize(list(texts), device)
        return self.text.encoder.embed_tokens(self.lm, enc)

    def _make_projections(self) -> None:
        """ECG and text projections into a ``proj_dim`` space (default: the LM's width).

        Called again, seeded, when a fitted encoder (TF-IDF) ends up narrower than requested."""
        self.lm_dim = int(self.text.dim)
        proj_dim = int(self.settings["proj_dim"] or self.lm_dim)
        self.ecg_proj = nn.Linear(self.encoder.dim, proj_dim)
        self.text_proj = nn.Linear(self.lm_dim, proj_dim)

    # -- data ------------------------------------------------------------------------------
    def _prompted(self, data) -> list[str]:
        template = str(self.settings["report_prompt"])
        return [template.format(report=t.strip()) if t.strip() else "" for t in data.texts(self.settings["report_text"])]

    def usable_rows(self, data, idx: np.ndarray, targets=None) -> np.ndarray:
        texts = data.texts(self.settings["report_text"])
        keep = np.array([bool(texts[i].strip()) for i in idx], dtype=bool)
        self.stats["empty_reports_skipped"] = self.stats.get("empty_reports_skipped", 0) + int((~keep).sum())
        return idx[keep]

    def setup(self, data, train_idx, val_idx=None, targets=None) -> None:
        """Fit the text encoder if it needs it (TF-IDF: training reports only), then embed every
        distinct training/validation report once (through the cache)."""
        texts = self._prompted(data)
        train_idx = np.asarray(train_idx, dtype=np.int64)
        if self.text.requires_fit:
            self.fit_text_encoder(sorted({texts[i] for i in train_idx if texts[i]}))
        self._row_text = texts
        if self.lm is not None:  # the LM trains: no cached embeddings, it runs on every batch
            self._text_emb = None
            self.stats.update(unique_reports=len({texts[i] for i in train_idx if texts[i]}), embedded_rows=0)
            return
        rows = np.unique(np.concatenate([train_idx, np.asarray([] if val_idx is None else val_idx, dtype=np.int64)]))
        rows = rows[[bool(texts[i]) for i in rows]] if len(rows) else rows  # empty reports: no embedding
        unique = sorted({texts[i] for i in rows})
        if not unique:
            raise UserError("mets: no training row has a non-empty report")
        emb = _timed_encode(self.text, unique)
        if emb.shape != (len(unique), self.lm_dim):
            raise RuntimeError(f"text encoder returned {emb.shape}, expected ({len(unique)}, {self.lm_dim})")
        pos = {t: i for i, t in enumerate(unique)}
        table = np.zeros((len(data), self.lm_dim), dtype=np.float32)
        table[rows] = emb[[pos[texts[i]] for i in rows]]
        self._text_emb = torch.from_numpy(table).to(self.device)
        self._row_text = texts
        self.stats.update(unique_reports=len(unique), embedded_rows=int(len(rows)))

    def fit_text_encoder(self, texts: list[str]) -> None:
        self.text.fit(texts)
        if int(self.text.dim) != self.lm_dim:  # TF-IDF capped by the vocabulary: rebuild, seeded
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.settings["seed"]) + 1)
                self._make_projections()
            self.to(self.device)
        self._fit_texts = list(texts)

    # -- training --------------------------------------------------------------------------
    def _text_features(self, batch: Batch) -> torch.Tensor:
        if self.lm is not None:
            if self._row_text is None:
                raise RuntimeError("mets: setup() must run before training (pretrain() calls it)")
            return self._lm_forward([self._row_text[i] for i in batch.idx], batch.device)
        if self.settings["text_in_loop"]:
            texts = [self._row_text[i] for i in batch.idx]
            return torch.as_tensor(_timed_encode(self.text.encoder, texts), device=batch.device)
        if self._text_emb is None:
            raise RuntimeError("mets: setup() must run before training (pretrain() calls it)")
        return self._text_emb[torch.as_tensor(batch.idx, device=self._text_emb.device)].to(batch.device)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def training_step(self, batch: Batch) -> torch.Tensor:
        z_ecg = self.ecg_proj(self.ecg_features(batch.x))
        z_txt = self.text_proj(self._text_features(batch))
        return clip_loss(z_ecg, z_txt, self.scale())

    # -- joint space -----------------------------------------------------------------------
    def _joint_ecg(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.ecg_proj(self.ecg_features(x)).float(), dim=-1)

    def lm_embeddings(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Raw (unprojected) embeddings [n, lm_dim] of the method's text tower: the trained copy of
        the LM when lm_train is not frozen, else the frozen LM (through the cache)."""
        if self.lm is None:
            return _timed_encode(self.text, list(texts))
        was = self.training
        self.to(self.device).eval()
        out = []
        try:
            with torch.inference_mode():
                for i in range(0, len(texts), batch_size):
                    out.append(self._lm_forward(list(texts[i : i + batch_size]), self.device).float().cpu().numpy())
        finally:
            self.train(was)
        return np.concatenate(out) if out else np.zeros((0, self.lm_dim), dtype=np.float32)

    def bare_lm_embeddings(self, texts: list[str]) -> np.ndarray:
        """Raw embeddings [n, lm_dim] of the LM *before* any ECG training (the frozen, cached LM; a
        fitted TF-IDF for lm=tfidf): what the text side knows on its own."""
        return _timed_encode(self.text, list(texts))

    def report_texts(self, data, idx) -> list[str]:
        """The reports of rows ``idx`` exactly as the text tower saw them in training (report_text
        kind, wrapped in report_prompt); '' for an empty report."""
        texts = self._prompted(data)
        return [texts[i] for i in np.asarray(idx, dtype=np.int64)]

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """L2-normalised projected text embeddings [n, proj_dim] (a frozen LM goes through the cache)."""
        if not texts:
            return np.zeros((0, self.text_proj.out_features), dtype=np.float32)
        raw = torch.as_tensor(self.lm_embeddings(list(texts)), device=self.device)
        was = self.training
        self.to(self.device).eval()
        with autocast(self.precision, self.device):
            z = self.text_proj(raw)
        self.train(was)
        return F.normalize(z.float(), dim=-1).cpu().numpy()

    def class_weights(self, class_prompts: dict[str, list[str]]) -> np.ndarray:
        """[C, proj_dim]: per class, mean of its normalised prompt embeddings, re-normalised."""
        return class_vectors(self.encode_text, class_prompts)

    def encode_ecg_joint(self, data, idx, batch_size: int = 256) -> np.ndarray:
        """L2-normalised projected ECG embeddings [N, proj_dim] (the space text lives in)."""
        out = self._map_batches(self._joint_ecg, data, idx, batch_size)
        return out.reshape(len(np.asarray(idx)), self.ecg_proj.out_features)

    def zero_shot_scores(
        self, data, idx, class_prompts: dict[str, list[str]], batch_size: int = 256, features: np.ndarray | None = None
    ) -> np.ndarray:
        """Cosine similarity [N, C] of each ECG with each class (classes in the dict's order).

        ``features``: the encoder features of ``idx`` ([N, D], ``encode_ecg``) when the caller
        already has them (the harness memoises them per model and dataset); then only the
        projection runs instead of the whole encoder again."""
        if not class_prompts:
            raise UserError("zero-shot: no classes given")
        w = self.class_weights(class_prompts)
        if features is None:
            return self.encode_ecg_joint(data, idx, batch_size) @ w.T
        was = self.training
        self.to(self.device).eval()
        with torch.inference_mode(), autocast(self.precision, self.device):
            z = self.ecg_proj(torch.as_tensor(np.asarray(features, dtype=np.float32), device=self.device))
        self.train(was)
        return F.normalize(z.float(), dim=-1).cpu().numpy() @ w.T

    # -- persistence -----------------------------------------------------------------------
    def method_state(self) -> dict[str, Any]:
        return {"fit_texts": self._fit_texts, "text_identity": _identity(self.text)}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if state.get("fit_texts") is not None:
            self.fit_text_encoder(state["fit_texts"])
        saved, now = state.get("text_identity"), _identity(self.text)
        if saved is not None and saved != now:
            raise UserError(
                f"the saved METS model was trained with text encoder {saved}, but '{self.settings['lm']}' "
                f"now resolves to {now}: its weights changed; pretrain again"
            )


def parse_lm_train(value: Any) -> int:
    """'frozen' -> 0, 'all' -> -1, 'last-N' -> N (N >= 1); anything else is a one-line error."""
    text = str(value).strip().lower()
    if text == "frozen":
        return 0
    if text == "all":
        return -1
    if text.startswith("last-"):
        n = text[5:]
        if n.isdigit() and int(n) >= 1:
            return int(n)
    raise UserError(f"mets lm_train must be frozen, all or last-N (N >= 1, e.g. last-2), got '{value}'")


def transformer_layers(model) -> nn.ModuleList:
    """The stack of transformer blocks of a Hugging Face encoder (BERT/MiniLM/MPNet: encoder.layer)."""
    for path in ("encoder.layer", "encoder.layers", "layers", "transformer.layer", "h"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList) and len(obj):
            return obj
    raise UserError(f"cannot find the transformer layers of {type(model).__name__} (looked for encoder.layer, layers, h)")


def _identity(text_encoder) -> Any:
    try:
        ident = text_encoder.identity()
    except Exception:  # an unfitted TF-IDF has no identity yet
        return None
    return ident if isinstance(ident, (str, int, float, tuple, list, dict)) else str(ident)
