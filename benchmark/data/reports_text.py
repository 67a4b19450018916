"""PTB-XL report text: cleaning, language detection and a glossary-based English version.

PTB-XL reports are the ECG device's machine statements, mostly German, some Swedish and some
English, occasionally followed by free-text remarks of a cardiologist. METS trains on them, so
three versions are kept per record (``report_raw``, ``report_clean``, ``report_en``):

``clean_report``
    lower-case; the file's odd encodings repaired (upper-case umlauts such as ``vÄnster`` become
    lower-case by ``str.lower``; ``#`` standing for ``ü`` as in ``f#r``/``#bergang``; ``á`` for
    ``ß`` as in ``schweiáausbruch``, a code-page 437 mix-up; stray ``ó`` + box-drawing pairs such as
    ``ó¬`` are dropped); every labelling annotation removed (``strip_annotations``), because they
    name the very labels a zero-shot protocol must predict; whitespace collapsed; trailing
    punctuation noise (``,;:!-/``) stripped.

``strip_annotations``
    removes, by kind: ``edit`` (``Edit: NORM 100, (NORM 100)`` to the end of the report),
    ``consensus`` (``consensus label derived from: {'LVH': 100.0, ...}`` to the end), ``code_dict``
    (any other dict of SCP codes) and ``code_list`` (bare SCP codes in upper case, optionally with a
    likelihood and in parentheses: ``NORM 100, (IRBBB, NDT)``). The rule behind ``code_list``: the
    device writes lower case only, so an upper-case SCP code is never device text. After
    lower-casing, a code may stay only where it is an ordinary word the device (or a
    cardiologist's lower-case remark) writes: ``DEVICE_CODE_WORDS`` (``suggesting lvh``,
    ``wpw syndrom``, ``el-axel``, ``sr``); ``leaked_codes`` lists any other.

``detect_language``
    counts marker words (see ``_MARKERS``) of German, Swedish and English in the cleaned text;
    letters that exist in only one of the languages (``å`` Swedish, ``ü``/``ß`` German) count as
    markers too. The language with most hits wins; a tie goes to the language of the first marker
    word (a tie of letters alone, or no hit, gives ``'unknown'``); an empty text is ``'unknown'``.

``to_english``
    first replaces glossary phrases (``glossary.tsv`` next to this file, columns ``language``,
    ``source phrase``, ``english``), longest phrase first, at word boundaries; German phrases also
    match their ASCII transliterations (``ueberdrehter linkstyp``). Every word left over goes
    through ``translate_word``: the word table, inflection endings, compound splitting with
    modifier entries (``links-``), spelling variants and one-letter typos. Words nothing matches
    stay as they are (the documented fallback: free text, drug names), counted as untranslated;
    a report's cut-off last word is completed when it begins table words of one English
    meaning. English text is returned unchanged. Method and measurements: ``docs/report_text.md``.

``glossary.tsv``
    columns ``language``, ``source phrase``, ``english``, ``provenance`` (``catalogue``, ``language``
    or the lowest ecg_id whose report the entry was written from; see ``usable``). Every function
    of the translation takes ``upto``: translate with only the entries usable when the ids below it
    were read, which is how ``report_coverage`` measures coverage on a block no entry came from.

Coverage, the fold split of ``glossary_seen.txt`` and the block and unseen-phrase held-out
estimates are in :mod:`benchmark.data.report_coverage`, which builds on this module (never the
other way round).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import Counter
from pathlib import Path

GLOSSARY_PATH = Path(__file__).with_name("glossary.tsv")
LANGUAGES = ("de", "sv", "en", "unknown")

# -- cleaning ---------------------------------------------------------------------------------
# The 71 SCP-ECG statement codes of PTB-XL (the index of scp_statements.csv; a test keeps them equal).
SCP_CODES = frozenset(
    """NDT NST_ DIG LNGQT NORM IMI ASMI LVH LAFB ISC_ IRBBB 1AVB IVCD ISCAL CRBBB CLBBB ILMI LAO/LAE AMI
    ALMI ISCIN INJAS LMI ISCIL LPFB ISCAS INJAL ISCLA RVH ANEUR RAO/RAE EL WPW ILBBB IPLMI ISCAN IPMI SEHYP
    INJIN INJLA PMI 3AVB INJIL 2AVB ABQRS PVC STD_ VCLVH QWAVE LOWT NT_ PAC LPR INVT LVOLT HVOLT TAB_
    STE_ PRC(S) SR AFIB STACH SARRH SBRAD PACE SVARR BIGU AFLT SVTAC PSVT TRIGU""".split()
)
# Code tokens the device (or the cardiologist's lower-case remark) writes as ordinary words, with the
# context in which they are ordinary: after cleaning, a code token anywhere else is a label leak.
DEVICE_CODE_WORDS: dict[str, str] = {
    "lvh": r"lvh",  # English statement "voltages ... suggesting lvh", German "kammerhypertrophie lvh"
    "wpw": r"wpw(?= syndrom)",  # Swedish "wpw syndrom typ b"
    "el": r"el(?=-axel)",  # Swedish "vänster el-axel" (electrical axis)
    "sr": r"sr(?= )",  # lower-case free-text remarks: "llt sr flaches t", "sr unter 3x1 cordichin" (retard)
}
ANNOTATION_KINDS = ("edit", "consensus", "code_dict", "code_list")


def _code_alternation() -> str:
    forms = set()
    for c in SCP_CODES:
        forms.add(re.escape(c))
        if c.endswith("_"):
            forms.add(re.escape(c[:-1]))  # written without its underscore: "ISC" for ISC_
    return "|".join(sorted(forms, key=lambda x: (-len(x), x)))


_CODE = _code_alternation()
_NUM = r"\d+(?:[.,]\d+)?"
_TAILS = (
    ("edit", re.compile(r"\bedit\s*:", re.IGNORECASE)),
    # no word boundary before it: the file glues it to the last word ("kammerhypertroficonsensus")
    ("consensus", re.compile(r"consensus\s+labels?\s+derived\s+from\b|\blabels?\s+derived\s+from\s*:", re.IGNORECASE)),
)
# a dict of SCP codes: {'LVH': 100.0, 'SR': 0.0}, several in a row joined by commas
_CODE_DICT = re.compile(r"(?:\s*,?\s*\{\s*['\"]?[A-Z0-9_/()]+['\"]?\s*:[^{}]*\})+")
# a bare list of upper-case SCP codes, each optionally with a likelihood and in parentheses:
# "NORM 100, (NORM 100)", "(IRBBB, NDT)". Device text is lower case, so an upper-case code is never
# device text (checked on every report of the shared data).
_CODE_ITEM = rf"\(?\s*(?<![A-Za-z0-9_])(?:{_CODE})(?![A-Za-z0-9_])(?:\s+{_NUM})?\s*\)?"
_CODE_LIST = re.compile(rf"{_CODE_ITEM}(?:\s*,\s*{_CODE_ITEM})*(?:\s*,)?")


def strip_annotations(text) -> tuple[str, tuple[str, ...]]:
    """The report without labelling annotations (case kept) and the kinds that were removed.

    Kinds, in the order they are applied: ``edit`` (``Edit: ...`` to the end), ``consensus``
    (``consensus label derived from: ...`` to the end), ``code_dict`` (a dict of SCP codes anywhere
    else), ``code_list`` (bare upper-case SCP codes, e.g. ``NORM 100, (NORM 100)``, anywhere else).
    """
    if text is None or (isinstance(text, float) and text != text):  # None or NaN
        return "", ()
    t = str(text)
    kinds = []
    for kind, pattern in _TAILS:
        m = pattern.search(t)
        if m:
            t = t[: m.start()]
            kinds.append(kind)
    t, n = _CODE_DICT.subn(" ", t)
    if n:
        kinds.append("code_dict")
    t, n = _CODE_LIST.subn(" ", t)
    if n:
        kinds.append("code_list")
    return t, tuple(kinds)


def annotation_counts(texts) -> dict[str, int]:
    """kind -> number of reports that had that kind of labelling annotation removed."""
    out = dict.fromkeys(ANNOTATION_KINDS, 0)
    for t in texts:
        for k in strip_annotations(t)[1]:
            out[k] += 1
    return out


# exact codes only: "isc" (a report cut off inside "isc[haemia]") is not the code ISC_
_LOWER_CODE = re.compile(
    r"(?<![a-z0-9_])(?:" + "|".join(re.escape(c.lower()) for c in sorted(SCP_CODES, key=lambda x: (-len(x), x))) + r")(?![a-z0-9_])"
)


def leaked_codes(clean: str) -> list[str]:
    """SCP code tokens left in a cleaned report outside the contexts of ``DEVICE_CODE_WORDS``."""
    out = []
    for m in _LOWER_CODE.finditer(clean):
        tok = m.group(0)
        ok = DEVICE_CODE_WORDS.get(tok)
        if ok is None or not re.compile(ok).match(clean, m.start()):
            out.append(tok)
    return out


_GARBAGE = re.compile(r"ó[^\sa-zäöüåß]?")  # 'ó' + a box-drawing char mis-decoded from the device
_HASH_UE = re.compile(r"(?<=[a-zäöüß])#|#(?=[a-zäöüß])")
_WS = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s,;:!\-/]+$")


def clean_report(text) -> str:
    """Lower-cased, encoding-repaired report without labelling annotations (see module doc)."""
    t, _ = strip_annotations(text)
    return _TRAILING.sub("", normalise_chars(t.lower()))


def normalise_chars(text: str) -> str:
    """Lower case, repaired encodings, single spaces (used for reports and glossary phrases)."""
    t = _GARBAGE.sub(" ", str(text).lower())
    t = _HASH_UE.sub("ü", t)
    t = t.replace("á", "ß")
    return _WS.sub(" ", t).strip()


# -- language ---------------------------------------------------------------------------------
_MARKERS: dict[str, frozenset[str]] = {
    "de": frozenset(
        """sinusrhythmus sinusbradykardie sinustachykardie arrhythmie normales sonst lagetyp linkstyp
        rechtstyp steiltyp steillage überdrehter ueberdrehter indiff abnormales unspezifisches
        unspezifische unspezifischer rechtsschenkelblock linksschenkelblock unvollständiger
        vorhofflimmern vorhofflattern verdacht auf nicht wahrscheinlich möglich moeglich infarkt
        inferiorer anteriorer anterolateraler anteroseptaler septaler myokardschaden niederspannung
        periphere linkshypertrophie extrasystole ersatzsystole leitungsstörung oder und mit bei
        unter jetzt ekg ableitungen verschoben übergang überleitung hemiblock linksanteriorer
        linksposteriorer vorhofsueberlastung regelmässiger rhythmus keine erkannt""".split()
    ),
    "sv": frozenset(
        """sinusrytm sinusbradykardi sinustachykardi sinustakykardi arytmi normalt eljest vänster
        höger el-axel förmaksflimmer förmaksfladder kammarfrekvens med hög låg avvikande förlopp
        skänkelblock högersidigt vänstersidigt kammarhypertrofi amplituder extremitetsavledningarna
        myokardskada bör övervägas övervägas ej uteslutas sannolikt äldre möjligen färsk sänkning
        såsom vid eller belastning ischemi förändring t-förändring ospecifik ospecifikt inkomplett
        extrasystoli extraslag slag avvikande impulsutbredning rytm inga funna och inget säkert
        patologiskt myokardaffektion flacka förlängd ålder bestämmbar bestämbar ekg""".split()
    ),
    "en": frozenset(
        """sinus rhythm ecg the is are with of and this may be due to waves wave deviation
        axis left right bundle branch block atrial fibrillation flutter ventricular premature
        contraction contractions pathology definite otherwise possible probably segments depressed
        inverted elevated leads voltage voltages suggesting consistent myocardial infarction
        ischaemia ischaemic changes non-specific flattening rapid response trace only requested
        arrhythmia bradycardia tachycardia enlargement hypertrophy prolonged interval""".split()
    ),
}
_WORD = re.compile(r"[a-zäöüåß][a-zäöüåß\-]*")


def detect_language(text: str) -> str:
    """'de', 'sv', 'en' or 'unknown' for a (cleaned) report, by marker-word counts (module doc)."""
    t = clean_report(text)
    if not t:
        return "unknown"
    words = _WORD.findall(t)
    score = Counter()
    for w in words:
        for lang, markers in _MARKERS.items():
            if w in markers or w.strip("-") in markers:
                score[lang] += 1
    score["sv"] += 2 * t.count("å")
    score["de"] += 2 * (t.count("ü") + t.count("ß"))
    if not score:
        return "unknown"
    best = score.most_common()
    if len(best) > 1 and best[0][1] == best[1][1]:
        tied = {lang for lang, n in best if n == best[0][1]}
        for w in words:  # a tie goes to the language of the first marker word ("sinusrytm a-v block i")
            hits = [lang for lang in sorted(tied) if w in _MARKERS[lang] or w.strip("-") in _MARKERS[lang]]
            if len(hits) == 1:  # a marker of several languages ("ekg") decides nothing
                return hits[0]
        return "unknown"
    return best[0][0]


# -- glossary -----------------------------------------------------------------------------------
# Provenance of a glossary entry (4th column): where it came from, so that coverage can be measured
# with only the entries a held-out block of reports did not motivate (``report_coverage``).
#   catalogue  a German/Swedish rendering of an SCP statement of scp_statements.csv or of the
#              device's standard statement vocabulary, written from the catalogue, not from a report
#   language   general German/Swedish vocabulary (function words, negations, hedges, units,
#              measurement words), written from knowledge of the language
#   an ecg_id  the lowest PTB-XL ecg_id whose report uses the entry (the report that motivated it)
GENERAL_PROVENANCE = ("catalogue", "language")


def _transliterations(phrase: str) -> set[str]:
    """German spelling variants the device used: ü->ue, ö->oe, ä->ae, ß->ss (and ß->s)."""
    out = {phrase}
    ascii_ = phrase.replace("ü", "ue").replace("ö", "oe").replace("ä", "ae").replace("ß", "ss")
    out.add(ascii_)
    out.add(phrase.replace("ß", "ss"))
    return out


def fold(word: str, language: str) -> str:
    """The key a word is looked up by: German umlauts transliterated (ü->ue, ö->oe, ä->ae, ß->ss),
    Swedish letters stripped of their marks (å/ä->a, ö->o), so every spelling of a word meets."""
    if language == "sv":
        return word.replace("å", "a").replace("ä", "a").replace("ö", "o").replace("ü", "u")
    return word.replace("ü", "ue").replace("ö", "oe").replace("ä", "ae").replace("ß", "ss")


def usable(provenance: str, upto: int | None) -> bool:
    """Whether an entry of this provenance may be used when only ids below ``upto`` were read
    (``upto=None``: every entry). A file without a provenance column gives 'unknown': never usable
    under a cutoff."""
    if upto is None or provenance in GENERAL_PROVENANCE:
        return True
    return provenance.isdigit() and int(provenance) < upto


@functools.lru_cache(maxsize=None)
def glossary_entries(path: str | None = None) -> tuple[tuple[str, str, str, str], ...]:
    """The rows of the glossary file: (language, source phrase as normalised, english, provenance).

    Columns: language, source phrase, english, and optionally provenance (``GENERAL_PROVENANCE`` or
    an ecg_id; a file with three columns gives 'unknown'). Lines starting with '#' are comments."""
    from benchmark.errors import DataError

    p = Path(path) if path else GLOSSARY_PATH
    if not p.is_file():
        raise DataError(f"report glossary '{p}' is missing: reinstall the package")
    rows = []
    header_seen = False
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [x.strip() for x in line.split("\t")]
        if len(parts) not in (3, 4):
            raise DataError(f"{p}:{lineno}: expected 3 or 4 tab-separated columns (language, source phrase, english, provenance)")
        lang, src, en = parts[:3]
        prov = parts[3] if len(parts) == 4 else "unknown"
        if not header_seen and lang == "language":
            header_seen = True
            continue
        if lang not in ("de", "sv"):
            raise DataError(f"{p}:{lineno}: unknown language '{lang}' (use de or sv)")
        if len(parts) == 4 and not (prov in GENERAL_PROVENANCE or prov.isdigit()):
            raise DataError(f"{p}:{lineno}: provenance must be catalogue, language or an ecg_id, got '{prov}'")
        rows.append((lang, normalise_chars(src), en, prov))
    return tuple(rows)


@functools.lru_cache(maxsize=None)
def _table(path: str | None = None, upto: int | None = None) -> dict[str, dict[str, tuple[str, tuple[str, str]]]]:
    """language -> {phrase or spelling variant -> (english, (language, source phrase))}."""
    table: dict[str, dict[str, tuple[str, tuple[str, str]]]] = {"de": {}, "sv": {}}
    for lang, src, en, prov in glossary_entries(path):
        if usable(prov, upto):
            for v in _transliterations(src) if lang == "de" else {src}:
                table[lang].setdefault(v, (en, (lang, src)))
    return table


def load_glossary(path: str | None = None, upto: int | None = None) -> dict[str, dict[str, str]]:
    """language -> {source phrase -> english} (German phrases also under their ASCII spellings);
    ``upto``: only entries usable when the ids below it were read (``usable``).

    Source phrases ending in ``-`` (``links-``) are compound modifiers, used only inside words
    (``linksschenkelblock``); see ``translate_word``."""
    return {lang: {k: v[0] for k, v in t.items()} for lang, t in _table(path, upto).items()}


def _orders(language: str) -> tuple[str, ...]:
    return (language,) if language in ("de", "sv") else ("de", "sv")  # unknown: German first


@functools.lru_cache(maxsize=None)
def _pattern(language: str, path: str | None = None, upto: int | None = None) -> tuple[re.Pattern, dict]:
    table = _table(path, upto)
    mapping: dict[str, tuple[str, tuple[str, str]]] = {}
    for lang in _orders(language):
        for k, v in table[lang].items():
            if not k.endswith("-"):
                mapping.setdefault(k, v)
    phrases = sorted(mapping, key=lambda s: (-len(s), s))
    alt = "|".join(re.escape(p) for p in phrases) or r"(?!x)x"
    return re.compile(rf"(?<![\wäöüåß])(?:{alt})(?![\wäöüåß])"), mapping


# inflection endings tried when a word is not found as it is (adjectives, plurals)
_ENDINGS = {
    "de": ("es", "en", "em", "er", "e", "s", "n"),
    "sv": ("arna", "erna", "orna", "na", "en", "et", "ar", "er", "or", "a", "t", "e", "n"),
}
# spelling variants (applied to the folded word when it is still unknown): c/k, th/t, ph/f, y/i
_VARIANTS = (("c", "k"), ("k", "c"), ("th", "t"), ("ph", "f"), ("y", "i"), ("i", "y"), ("kk", "k"))
MIN_PREFIX = 4  # a cut-off last word must keep at least this many letters to be completed


@functools.lru_cache(maxsize=None)
def _lexicon(language: str, path: str | None = None, upto: int | None = None) -> tuple[dict, dict, tuple[str, ...]]:
    """(folded single word -> (english, key), folded compound modifier -> (english, key), the
    folded words sorted, for prefix look-up) for one language."""
    table = _table(path, upto)
    words: dict[str, tuple[str, tuple[str, str]]] = {}
    mods: dict[str, tuple[str, tuple[str, str]]] = {}
    for lang in _orders(language):
        for k, v in table[lang].items():
            if k.endswith("-") and " " not in k:
                mods.setdefault(fold(k[:-1], lang), v)
            elif re.fullmatch(r"[a-zäöüåß]+", k):
                words.setdefault(fold(k, lang), v)
    return words, mods, tuple(sorted(words))


def _lookup(w: str, words: dict, endings: tuple[str, ...]):
    if w in words:
        return words[w]
    for e in endings:
        if w.endswith(e) and len(w) - len(e) >= 3 and w[: -len(e)] in words:
            return words[w[: -len(e)]]
    return None


def _prefix(w: str, words: dict, ordered: tuple[str, ...]):
    """The entry a cut-off word is the beginning of: every word of the table starting with ``w``
    (at least ``MIN_PREFIX`` letters) must have the same English, else None (ambiguous)."""
    if len(w) < MIN_PREFIX:
        return None
    i = bisect.bisect_left(ordered, w)
    found = None
    while i < len(ordered) and ordered[i].startswith(w):
        v = words[ordered[i]]
        if found is not None and v[0] != found[0]:
            return None
        found = found or v
        i += 1
    return found


def _split(w: str, words: dict, mods: dict, endings: tuple[str, ...], last_piece=None) -> list | None:
    """Fewest-part split of a compound into glossary parts: modifiers/words, then a final word
    (which may carry an inflection ending, or, with ``last_piece``, be cut off); a linking ``s``
    between parts is allowed. Among splits of equal length, the one using modifier entries before
    the last part wins (``förmaks-`` + ``takykardi`` over ``förmak`` + s + ``takykardi``)."""
    n = len(w)
    best: dict[int, tuple[tuple[int, int], list]] = {0: ((0, 0), [])}
    for i in range(n):
        if i not in best:
            continue
        (n_parts, n_words), parts = best[i]
        for j in range(i + 3, n + 1):
            piece = w[i:j]
            en, from_words = None, 0
            if j == n:
                en = _lookup(piece, words, endings)
                if en is None and last_piece is not None:
                    en = last_piece(piece)
            if en is None:
                en = mods.get(piece)
                if en is None and piece in words:
                    en, from_words = words[piece], 1
            if en is None:
                continue
            for k in (j, j + 1) if j < n and w[j] == "s" else (j,):
                cost = (n_parts + 1, n_words + (from_words if k < n else 0))
                if k not in best or cost < best[k][0]:
                    best[k] = (cost, parts + [en])
    found = best.get(n)
    return found[1] if found and found[1] else None  # one part: a modifier alone ("vorderwand")


@functools.lru_cache(maxsize=200_000)
def _word_parts(word: str, language: str, path: str | None = None, upto: int | None = None, last: bool = False):
    """The glossary entries (english, key) one word translates to, or None (see ``translate_word``)."""
    for lang in _orders(language):
        words, mods, ordered = _lexicon(lang, path, upto)
        endings = _ENDINGS[lang]
        base = fold(word, lang)
        forms = [base] + [base.replace(a, b) for a, b in _VARIANTS if a in base]
        for f in forms:
            en = _lookup(f, words, endings)
            parts = [en] if en is not None else _split(f, words, mods, endings)
            if parts:
                return tuple(parts)
        if len(base) >= 7:  # one letter dropped, added, or two swapped ("progrssion", "hgersidigt")
            for f in _edits1(base):
                en = _lookup(f, words, endings)
                if en is not None:
                    return (en,)
        if last:  # the report was cut off inside its last word: "rechtsschenkelbl", "wahrschei"
            cut = functools.partial(_prefix, words=words, ordered=ordered)
            en = cut(base)
            parts = [en] if en is not None else _split(base, words, mods, endings, last_piece=cut)
            if parts:
                return tuple(parts)
    return None


def translate_word(word: str, language: str, path: str | None = None, upto: int | None = None, last: bool = False) -> str | None:
    """English for one word the phrase table did not match, or None (kept as it is).

    In order, on the folded word (``fold``): the word table (single-word glossary entries), the
    same after stripping an inflection ending (``unspezifischer`` -> ``unspezifisch``), a split
    into compound parts (``linksschenkelblock`` -> ``links-`` + ``schenkelblock``, English parts in
    the same order: modifier first), and the same three again for spelling variants (c/k, th/t,
    ph/f, y/i: ``tachycardie``, ``hyperthrophie``); for words of 7 letters or more, the word
    table for every spelling one letter away (a dropped, added or swapped letter: ``progrssion``,
    ``hgersidigt``). Last, only for the last word of a report (``last=True``, a report cut off at
    a length limit): the word as the beginning of a table word, alone or as the final part of a
    compound (``wahrschei``, ``rechtsschenkelbl``), when every table word it begins has the same
    English. Unknown words give None. ``upto``: see ``usable``."""
    parts = _word_parts(word, language, path, upto, last)
    return " ".join(p[0] for p in parts) if parts else None


_ALPHABET = "abcdefghijklmnopqrstuvwxyzß"


def _edits1(w: str) -> list[str]:
    out = [w[:i] + c + w[i:] for i in range(len(w) + 1) for c in _ALPHABET]
    out += [w[:i] + w[i + 1 :] for i in range(len(w))]
    out += [w[:i] + w[i + 1] + w[i] + w[i + 2 :] for i in range(len(w) - 1)]
    return out


_TOKEN = re.compile(r"[a-zäöüåß]+")


def _translate(text: str, language: str, path: str | None = None, words: bool = True, upto: int | None = None):
    """(English text, the spans of the input that were translated (phrases, then single words),
    the glossary keys ``(language, source phrase)`` used).

    ``words=False`` gives the phrase table alone (the method before issue 11, kept for comparison)."""
    if language == "en" or not text:
        return text, [], []
    pattern, mapping = _pattern(language, path, upto)
    ends = [m.end() for m in _TOKEN.finditer(text)]
    state = {"spans": [], "used": [], "last_end": ends[-1] if ends else -1}
    pieces: list[str] = []
    last = 0
    for m in pattern.finditer(text):
        state["spans"].append(m.span())
        gap = text[last : m.start()]
        pieces.append(_translate_gap(gap, last, language, path, upto, state) if words else gap)
        en, key = mapping[m.group(0)]
        pieces.append(en)
        state["used"].append(key)
        last = m.end()
    gap = text[last:]
    pieces.append(_translate_gap(gap, last, language, path, upto, state) if words else gap)
    return _WS.sub(" ", "".join(pieces)).strip(), sorted(state["spans"]), state["used"]


def _translate_gap(gap: str, offset: int, language: str, path, upto, state: dict) -> str:
    out = []
    last = 0
    for m in _TOKEN.finditer(gap):
        w = m.group(0)
        if w in _NEUTRAL:
            continue
        parts = _word_parts(w, language, path, upto, offset + m.end() == state["last_end"])
        if parts is None:
            continue  # the fallback: the word stays as it is, and counts as untranslated
        out.append(gap[last : m.start()])
        out.append(" ".join(p[0] for p in parts))
        last = m.end()
        state["spans"].append((offset + m.start(), offset + m.end()))
        state["used"].extend(p[1] for p in parts)
    out.append(gap[last:])
    return "".join(out)


def to_english(text: str, language: str) -> str:
    """English version of a cleaned report (unchanged if already English); see ``translate_word``
    for what happens to words outside the phrase table."""
    return _translate(clean_report(text), language)[0]


def untranslated_words(
    text: str, language: str, path: str | None = None, words: bool = True, upto: int | None = None
) -> list[str]:
    """The counted words of a (cleaned) report that the translation left as they are."""
    if language == "en" or not text:
        return []
    _, spans, _ = _translate(text, language, path, words, upto)
    return [
        m.group(0)
        for m in _LETTERS.finditer(text)
        if m.group(0) not in _NEUTRAL and not any(a <= m.start() and m.end() <= b for a, b in spans)
    ]


def used_entries(text: str, language: str, path: str | None = None) -> set[tuple[str, str]]:
    """The glossary keys ``(language, source phrase)`` the translation of a cleaned report used."""
    return set(_translate(text, language, path)[2])


_NEUTRAL = frozenset(
    """a b c d e f g h i j k l m n o p q r s t u v w x y z ii iii iv avr avl avf qrs qt qtc pq pr st
    av rr wpw lvh rvh lahb lphb rsr mm mv ms hf""".split()
)
_LETTERS = re.compile(r"[a-zäöüåß]+")
