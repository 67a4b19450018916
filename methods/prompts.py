"""Zero-shot class prompts, kept as data, and the open_clip-style zero-shot classifier weights.

One JSON file per (dataset, task) in ``methods/prompts/<dataset>_<task>.json``::

    {"templates": ["The ECG of {label}, a type of diagnostic.", "The report of the ECG is that {label}.", ...],
     "classes":   {"NORM": ["normal ecg", "sinus rhythm. normal ecg", ...], "MI": [...], ...}}

Descriptions are written in the language of PTB-XL's English machine reports (lower case,
British spellings as the device writes them); for PTB-XL codes they start from the descriptions
in ``scp_statements.csv``. A class's prompts are every template filled with every description.

Class order: the JSON keys are in a canonical order (PTB-XL superdiagnostic NORM, MI, STTC, CD,
HYP; MIT-BIH AAMI N, S, V, F, Q; CinC 2017 N, A, O, ~; binary tasks negative first; PTB-XL
sub-diagnostic/form/rhythm codes sorted), but callers should never rely on it: pass the data
set's own class list as ``classes=`` and the prompts come back in exactly that order (a class
without prompts is an error).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from benchmark.errors import DataError, UserError, unknown_name

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"

PAPER_TEMPLATE = "The ECG of {label}, a type of diagnostic."
REPORT_TEMPLATE = "The report of the ECG is that {label}."
TEMPLATE_SETS = ("all", "paper", "report", "catalogue")
CATALOGUE_DIR = PROMPT_DIR / "catalogue"


def available_prompt_sets() -> list[tuple[str, str]]:
    """Every (dataset, task) that has a prompt file, sorted."""
    out = []
    for path in sorted(PROMPT_DIR.glob("*.json")):
        dataset, _, task = path.stem.partition("_")
        if task:
            out.append((dataset, task))
    return out


@lru_cache(maxsize=None)
def _read(dataset: str, task: str, catalogue: bool = False) -> dict[str, Any]:
    path = (CATALOGUE_DIR if catalogue else PROMPT_DIR) / f"{dataset}_{task}.json"
    if catalogue and not path.is_file():
        raise DataError(f"no catalogue prompt file '{path}': generate it with 'python -m methods.prompt_catalogue'")
    if not path.is_file():
        known = available_prompt_sets()
        if dataset not in {d for d, _ in known}:
            raise unknown_name("dataset for zero-shot prompts", dataset, {d for d, _ in known})
        raise unknown_name(f"task with zero-shot prompts for dataset '{dataset}'", task, {t for d, t in known if d == dataset})
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        templates, classes = body["templates"], body["classes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"prompt file '{path}' is unreadable ({exc}): it needs 'templates' and 'classes'") from exc
    if not templates or not all(isinstance(t, str) and "{label}" in t for t in templates):
        raise DataError(f"prompt file '{path}': every template must be a string containing '{{label}}'")
    if not classes or not all(isinstance(v, list) and v and all(isinstance(d, str) and d for d in v) for v in classes.values()):
        raise DataError(f"prompt file '{path}': every class needs a non-empty list of descriptions")
    return {"templates": list(templates), "classes": {k: list(v) for k, v in classes.items()}}


def prompt_templates(dataset: str, task: str, template_set: str = "all") -> list[str]:
    """The templates of one prompt set: all of the file's (also for the catalogue descriptions), or
    only the paper's / the report-style one."""
    if template_set not in TEMPLATE_SETS:
        raise unknown_name("prompt template set", str(template_set), TEMPLATE_SETS)
    templates = _read(dataset, task)["templates"]
    if template_set in ("all", "catalogue"):
        return templates
    wanted = PAPER_TEMPLATE if template_set == "paper" else REPORT_TEMPLATE
    if wanted not in templates:
        raise DataError(f"prompt file for {dataset}/{task} lacks the '{template_set}' template '{wanted}'")
    return [wanted]


def load_prompts(
    dataset: str, task: str, template_set: str = "all", classes: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """``{class: [prompt, ...]}``: every template x description of each class, template-major.

    ``classes`` (e.g. ``ecgset.task(task).classes``) selects and orders the classes; a class
    without prompts raises ``UserError``. Without it, the file's canonical order is used.
    ``template_set='catalogue'``: the descriptions generated from the data sets' statement
    catalogues (``methods.prompt_catalogue``), with all the hand-written file's templates.
    """
    body = _read(dataset, task, catalogue=template_set == "catalogue")
    templates = prompt_templates(dataset, task, template_set)
    table = body["classes"]
    order = list(table) if classes is None else list(classes)
    missing = [c for c in order if c not in table]
    if missing:
        raise UserError(
            f"no zero-shot prompts for class '{missing[0]}' of {dataset}/{task}: add it to "
            f"{PROMPT_DIR / f'{dataset}_{task}.json'} (known: {', '.join(table)})"
        )
    return {c: [t.replace("{label}", d) for t in templates for d in table[c]] for c in order}


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor from a projection head
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _l2(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def class_vectors(encode: Callable[[list[str]], np.ndarray], prompts: dict[str, list[str]]) -> np.ndarray:
    """The zero-shot classifier ``[C, D]`` (rows in ``prompts`` order), as open_clip builds it: per
    class, the mean of its prompts' L2-normalised embeddings (``encode(texts) -> [n, D]``, already
    normalised), re-normalised. The score of an L2-normalised ECG embedding ``e`` for class ``c``
    is then the cosine ``e @ W[c]``. The one implementation behind :func:`zero_shot_weights` and
    METS's ``class_weights`` (``encode`` = its projected text tower)."""
    if not prompts:
        raise UserError("zero-shot needs at least one class with prompts")
    rows = []
    for cls, texts in prompts.items():
        if not texts:
            raise UserError(f"zero-shot: class '{cls}' has no prompts")
        mean = np.asarray(encode(list(texts))).mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.stack(rows).astype(np.float32)


def zero_shot_weights(
    text_encoder, prompts: dict[str, list[str]], project: Callable[[np.ndarray], Any] | None = None
) -> np.ndarray:
    """:func:`class_vectors` of a text encoder's embeddings.

    Every prompt of a class is embedded (``text_encoder.encode``; a :class:`CachedTextEncoder`
    embeds each distinct prompt once, ever), optionally mapped by ``project`` (e.g. METS's
    text projection; it gets a float32 ``[n, D_text]`` array and may return an array or a torch
    tensor) and L2-normalised.
    """

    def encode(texts: list[str]) -> np.ndarray:
        emb = _to_numpy(text_encoder.encode(texts))
        if project is not None:
            emb = _to_numpy(project(emb))
        return _l2(emb)

    return class_vectors(encode, prompts)


__all__ = [
    "PAPER_TEMPLATE",
    "REPORT_TEMPLATE",
    "TEMPLATE_SETS",
    "PROMPT_DIR",
    "available_prompt_sets",
    "class_vectors",
    "load_prompts",
    "prompt_templates",
    "zero_shot_weights",
]
