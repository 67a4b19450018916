"""How much of the German and Swedish report text the translation covers, and how well that holds
on reports nobody read while writing the glossary (``docs/report_text.md``).

``glossary_coverage``
    the share of the words of non-English reports that were translated, overall and per language.
    A *word* is a run of letters; language-neutral tokens (single letters, roman numerals, lead
    names, ECG abbreviations such as ``qrs``/``st``/``qt``, see ``reports_text._NEUTRAL``) are not
    counted; a word counts as translated when a matched phrase covers it or the word rules
    translated it. Unknown words stay in the English text as they are and count as untranslated.

``in_sample``
    whether a report's ecg_id is in ``glossary_seen.txt`` (the ids read while writing the glossary
    for issue 11): the fold split of ecg_id 501-1999 (folds 1-8 seen, 9-10 held out).

``block_held_out``
    the held-out estimate that does not lean on neighbouring ids. Per language, the *block* is the
    highest-id fifth of that language's reports in the input; coverage on the block is measured
    with only the glossary entries the block did not motivate (``reports_text.usable``: provenance
    ``catalogue``/``language``, or a first report at least ``BLOCK_GAP`` ids below the block, so
    that the sessions straddling the boundary do not lend the block their phrasing). Also given for the block's
    reports whose phrasing (cleaned text, numbers blanked) never occurs below the block: the
    unseen-phrase estimate.

``first_use`` / ``provenance_of`` / ``derive_provenance``
    the lowest ecg_id whose report uses (or contains) each glossary entry: how the provenance
    column of ``glossary.tsv`` is derived for entries written from reports.

``text_summary``
    what ``python -m benchmark data text`` reports.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from pathlib import Path

from benchmark.data.reports_text import (
    _LETTERS,
    _NEUTRAL,
    _translate,
    annotation_counts,
    clean_report,
    detect_language,
    fold,
    GENERAL_PROVENANCE,
    glossary_entries,
    untranslated_words,
    usable,
)

SEEN_PATH = Path(__file__).with_name("glossary_seen.txt")
SEEN_RULE = "ecg_id 1-500 (any fold) and ecg_id 501-1999 of strat_fold 1-8 (glossary_seen.txt)"
BLOCK_SHARE = 0.2  # the highest-id fifth of each language's reports is the held-out block
# ids between the rules and the block: neighbouring ids are the same sessions and phrasing runs (runs
# of one language in the shared slice are 100-200 ids long), so entries first used up to this many
# ids below the block are held out too
BLOCK_GAP = 200
BLOCK_RULE = (f"per language, the highest-id fifth of its reports, translated with only the glossary entries of "
              f"provenance catalogue/language or a first report at least {BLOCK_GAP} ids below the block")


def glossary_coverage(texts, languages=None, path: str | None = None, words: bool = True, upto: int | None = None) -> dict:
    """Share of non-English report words the translation covered, overall and per language.

    ``texts``: raw or cleaned reports; ``languages``: their languages (detected when omitted);
    ``words=False`` measures the phrase table alone (the method before issue 11); ``upto``: only
    the glossary entries usable when the ids below it were read (``reports_text.usable``).
    Returns ``{"overall": {"words", "translated", "coverage"}, "de": {...}, "sv": {...}, ...}``.
    """
    texts = list(texts)
    if languages is None:
        languages = [detect_language(t) for t in texts]
    n_words: Counter = Counter()
    done: Counter = Counter()
    for text, lang in zip(texts, languages):
        if lang == "en":
            continue
        clean = clean_report(text)
        if not clean:
            continue
        total = sum(1 for m in _LETTERS.finditer(clean) if m.group(0) not in _NEUTRAL)
        n_words[lang] += total
        done[lang] += total - len(untranslated_words(clean, lang, path, words, upto))
    out = {}
    for lang in sorted(n_words):
        out[lang] = {"words": n_words[lang], "translated": done[lang], "coverage": round(done[lang] / n_words[lang], 4)}
    tw, td = sum(n_words.values()), sum(done.values())
    out["overall"] = {"words": tw, "translated": td, "coverage": round(td / tw, 4) if tw else 1.0}
    return out


# -- the fold split (issue 11) ------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def seen_ids(path: str | None = None) -> frozenset[int]:
    """ecg_ids of the reports read while writing the glossary (``glossary_seen.txt``)."""
    from benchmark.errors import DataError

    p = Path(path) if path else SEEN_PATH
    if not p.is_file():
        raise DataError(f"'{p}' is missing: reinstall the package")
    out: set[int] = set()
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            a, _, b = line.partition("-")
            out.update(range(int(a), int(b or a) + 1))
        except ValueError:
            raise DataError(f"{p}:{lineno}: expected an ecg_id or a range a-b, got '{line}'") from None
    return frozenset(out)


def _int_id(e) -> int | None:
    try:
        return int(e)
    except (TypeError, ValueError):
        return None


def in_sample(ecg_ids) -> list[bool]:
    """Whether each report (by PTB-XL ecg_id) was read while writing the glossary."""
    seen = seen_ids()
    return [_int_id(e) in seen for e in ecg_ids]


# -- the block and unseen-phrase estimates --------------------------------------------------------
_DIGITS = re.compile(r"\d+(?:[.,]\d+)?")


def phrasing(clean: str) -> str:
    """A report's phrasing: its cleaned text with numbers blanked (``hf 280`` ~ ``hf 120``)."""
    return _DIGITS.sub("#", clean)


def block_start(ids, languages, language: str, share: float = BLOCK_SHARE) -> int | None:
    """The lowest ecg_id of the block: the highest-id ``share`` of ``language``'s reports (None if none)."""
    own = sorted(e for e, lg in zip(ids, languages) if lg == language and e is not None)
    if not own:
        return None
    return own[-max(1, math.ceil(share * len(own)))]


def block_held_out(ids, clean, languages, path: str | None = None, share: float = BLOCK_SHARE, gap: int = BLOCK_GAP) -> dict:
    """Coverage on each language's highest-id block with only the entries it did not motivate.

    ``ids``: ecg_ids (reports whose id is not an integer are left out); ``clean``: cleaned reports.
    The block starts at ``block_start``; the glossary is cut at ``from_id - gap`` (``rules_below``).
    Returns ``{"block": {lang: {from_id, rules_below, reports, words, translated, coverage}},
    "block_new_phrasing": {...}}``; ``block_new_phrasing`` keeps the block's reports whose
    ``phrasing`` occurs in no report below the block (any language)."""
    ids = [_int_id(e) for e in ids]
    out: dict[str, dict] = {"block": {}, "block_new_phrasing": {}}
    for lang in ("de", "sv"):
        start = block_start(ids, languages, lang, share)
        if start is None:
            continue
        below = {phrasing(c) for e, c in zip(ids, clean) if e is not None and e < start}
        block = [i for i, (e, lg) in enumerate(zip(ids, languages)) if lg == lang and e is not None and e >= start]
        new = [i for i in block if phrasing(clean[i]) not in below]
        for part, idx in (("block", block), ("block_new_phrasing", new)):
            cov = glossary_coverage([clean[i] for i in idx], [lang] * len(idx), path, upto=start - gap)
            out[part][lang] = {"from_id": start, "rules_below": start - gap, "reports": len(idx),
                               **cov.get(lang, {"words": 0, "translated": 0, "coverage": 1.0})}
    return out


# -- provenance -------------------------------------------------------------------------------------
def first_use(ids, clean, languages, path: str | None = None) -> dict[tuple[str, str], int]:
    """(language, source phrase) -> the lowest ecg_id whose report the translation used it for, or
    whose folded text contains the folded phrase (a modifier without its ``-``): a longer phrase
    may hide a shorter one, which would be used had the longer not been written."""
    out: dict[tuple[str, str], int] = {}

    def note(key, e):
        if key not in out or e < out[key]:
            out[key] = e

    folded: dict[str, list[tuple[int, str]]] = {"de": [], "sv": []}
    for e, c, lg in sorted(((_int_id(e), c, lg) for e, c, lg in zip(ids, clean, languages)), key=lambda x: x[0] or 0):
        if e is None or lg == "en" or not c:
            continue
        for key in _translate(c, lg, path)[2]:
            note(key, e)
        for lang in (lg,) if lg in folded else tuple(folded):
            folded[lang].append((e, fold(c, lang)))
    for lang, src, _, _ in glossary_entries(path):
        needle = fold(src.rstrip("-"), lang)
        for e, text in folded[lang]:
            if needle in text:
                note((lang, src), e)
                break
    return out


def provenance_of(key: tuple[str, str], uses: dict[tuple[str, str], int]) -> str:
    """The provenance to write for an entry written from reports: its first use, or ``language``
    (general vocabulary) for an entry no report of the data uses or contains."""
    return str(uses[key]) if key in uses else "language"


def derive_provenance(ids, reports, path: str | None = None) -> str:
    """The glossary file's text with the provenance column filled in from ``reports``: rows marked
    ``catalogue``/``language`` keep it; every other row (none yet, ``unknown``, or an ecg_id) gets
    ``provenance_of`` its first use. Run it after adding rows written from reports::

        text = derive_provenance(db["ecg_id"], db["report"]); GLOSSARY_PATH.write_text(text)
    """
    from benchmark.data.reports_text import GLOSSARY_PATH, normalise_chars

    ids = list(ids)
    clean = [clean_report(r) for r in reports]
    uses = first_use(ids, clean, [detect_language(c) for c in clean], path)
    out = []
    for line in (Path(path) if path else GLOSSARY_PATH).read_text(encoding="utf-8").splitlines():
        parts = [x.strip() for x in line.split("\t")]
        if line.startswith("#") or len(parts) < 3:
            out.append(line)
        elif parts[0] == "language":
            out.append("\t".join(parts[:3] + ["provenance"]))
        elif len(parts) == 4 and parts[3] in GENERAL_PROVENANCE:
            out.append(line)
        else:
            out.append("\t".join(parts[:3] + [provenance_of((parts[0], normalise_chars(parts[1])), uses)]))
    return "\n".join(out) + "\n"


# -- data text ------------------------------------------------------------------------------------
def text_summary(ecg_ids, reports, top: int = 15) -> tuple[dict, list[dict]]:
    """What ``data text`` prints: language mix, annotations removed by kind, translation coverage
    (``coverage``: out of sample, language -> fraction; ``coverage_detail``: words and counts for
    the out-of-sample, in-sample and all reports, and for the out-of-sample reports whose cleaned
    text does not occur among the in-sample ones of the same input), the block and unseen-phrase
    held-out estimates (``held_out``, see ``block_held_out``), the most frequent untranslated words
    out of sample. Also returns one row per report (``ecg_id``, ``language``, ``clean``, ``english``)."""
    ids = list(ecg_ids)
    raw = ["" if (r is None or (isinstance(r, float) and r != r)) else str(r) for r in reports]
    clean = [clean_report(t) for t in raw]
    lang = [detect_language(t) for t in clean]
    seen = in_sample(ids)
    parts = {
        "out_of_sample": [i for i, s in enumerate(seen) if not s],
        "in_sample": [i for i, s in enumerate(seen) if s],
        "all": list(range(len(ids))),
    }
    # stricter: out-of-sample reports whose cleaned text never occurs among the in-sample ones here
    seen_texts = {clean[i] for i in parts["in_sample"]}
    parts["out_of_sample_new_text"] = [i for i in parts["out_of_sample"] if clean[i] not in seen_texts]
    detail = {k: glossary_coverage([clean[i] for i in v], [lang[i] for i in v]) for k, v in parts.items()}
    missing: Counter = Counter()
    for i in parts["out_of_sample"]:
        for w in untranslated_words(clean[i], lang[i]):
            missing[(lang[i], w)] += 1
    summary = {
        "reports": len(ids),
        "languages": dict(sorted(Counter(lang).items())),
        "annotations_removed": annotation_counts(raw),
        "coverage": {k: v["coverage"] for k, v in detail["out_of_sample"].items()},
        "coverage_detail": detail,
        "held_out": {**block_held_out(ids, clean, lang), "rule": BLOCK_RULE},
        "sample": {**{k: len(v) for k, v in parts.items() if k != "all"}, "seen_rule": SEEN_RULE},
        "untranslated": [{"language": lg, "word": w, "count": n} for (lg, w), n in missing.most_common(top)],
    }
    rows = [
        {"ecg_id": e, "language": lg, "clean": c, "english": _translate(c, lg)[0]}
        for e, lg, c in zip(ids, lang, clean)
    ]
    return summary, rows


__all__ = [
    "SEEN_PATH", "SEEN_RULE", "BLOCK_SHARE", "BLOCK_GAP", "BLOCK_RULE", "glossary_coverage", "seen_ids", "in_sample",
    "phrasing", "block_start", "block_held_out", "first_use", "provenance_of", "derive_provenance", "text_summary", "usable",
]
