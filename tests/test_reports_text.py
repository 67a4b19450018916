"""Report text on the real PTB-XL reports: cleaning, language detection, glossary translation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmark.data.report_coverage import glossary_coverage, in_sample, seen_ids, text_summary
from benchmark.data.reports_text import (
    GLOSSARY_PATH,
    SCP_CODES,
    _translate,
    annotation_counts,
    translate_word,
    untranslated_words,
    leaked_codes,
    strip_annotations,
    clean_report,
    detect_language,
    load_glossary,
    to_english,
)


@pytest.fixture(scope="module")
def reports(data_root) -> list[str]:
    df = pd.read_csv(data_root / "ptb-xl" / "ptbxl_database.csv")
    return df["report"].fillna("").astype(str).tolist()


def test_edit_annotations_are_removed(reports):
    edited = [r for r in reports if "Edit:" in r]
    assert edited
    for r in edited:
        c = clean_report(r)
        assert "edit" not in c and "norm 100" not in c and ", (" not in c
        assert c == clean_report(r.split("Edit:")[0]) and c
    assert clean_report("sinus rhythm. normal ecg. Edit: NORM 100, (NORM 100)") == "sinus rhythm. normal ecg."
    assert clean_report("sinus rhythm. no definite pathology. Edit: NORM 100, ") == "sinus rhythm. no definite pathology."
    assert (
        clean_report(
            "sinusrhythmus unvollstÄndiger rechtsschenkelblock t abnormal, wahrscheinlich    inferiorer "
            "myokardschaden Edit: INJIN, IRBBB, (m,19) , (IRBBB, NDT)"
        )
        == "sinusrhythmus unvollständiger rechtsschenkelblock t abnormal, wahrscheinlich inferiorer myokardschaden"
    )


def test_no_label_annotation_survives_cleaning(data_root, reports):
    """Every report of the shared data: no Edit:, no dict of SCP codes, no SCP code as a token.

    The rule for code tokens: the device writes lower case only (no report of the shared data has an
    upper-case ASCII letter outside its annotations), so after removing the annotations no upper-case
    SCP code (with or without its trailing underscore) may remain; after lower-casing, a code may only
    appear where it is an ordinary word (``DEVICE_CODE_WORDS``: "suggesting lvh", "wpw syndrom",
    "el-axel", a remark's "sr")."""
    import re

    statements = pd.read_csv(data_root / "ptb-xl" / "scp_statements.csv", index_col=0)
    assert SCP_CODES == set(statements.index)
    upper = re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(re.escape(c.rstrip("_")) for c in SCP_CODES) + r")_?(?![A-Za-z0-9_])")
    for r in reports:
        stripped, kinds = strip_annotations(r)
        assert not upper.search(stripped), (r, stripped)
        c = clean_report(r)
        assert "edit:" not in c and "{" not in c and "}" not in c and "derived from" not in c, r
        assert leaked_codes(c) == [], (r, leaked_codes(c))
        assert not re.search(r"[A-Z]", stripped), r  # the device text itself is lower case
    counts = annotation_counts(reports)
    low = [r.lower() for r in reports]
    assert counts["edit"] == sum("edit:" in r for r in low) > 0
    assert counts["consensus"] == sum("consensus label derived from" in r for r in low)
    assert counts["consensus"] > 0  # the shared slice has two (see ../shared/data/README.md)


@pytest.mark.parametrize(
    "raw,clean,kinds",
    [
        ("sinusrytm vÄnster kammarhypertroficonsensus label derived from: {'LVH': 100.0, 'SR': 0.0},{'LVH': 100.0}",
         "sinusrytm vänster kammarhypertrofi", ("consensus",)),
        ("sinus rhythm. {'NORM': 100.0, 'SR': 0.0} normal ecg.", "sinus rhythm. normal ecg.", ("code_dict",)),
        ("sinus rhythm. NORM 100, (NORM 100) normal ecg.", "sinus rhythm. normal ecg.", ("code_list",)),
        ("sinusrhythmus (IRBBB, NDT) sonst normales ekg", "sinusrhythmus sonst normales ekg", ("code_list",)),
        ("lvh, ISC, Sokolow 3 ISCAL", "lvh, sokolow 3", ("code_list",)),
        ("sinus rhythm. Edit: LVH 100, {'LVH': 100.0}", "sinus rhythm.", ("edit",)),
        # ordinary words that are also codes stay: the device wrote them
        ("sinusrytm vänster el-axel wpw syndrom, typ a", "sinusrytm vänster el-axel wpw syndrom, typ a", ()),
        ("voltages are high in chest leads suggesting lvh. this may be due to lv strain or isc",
         "voltages are high in chest leads suggesting lvh. this may be due to lv strain or isc", ()),
    ],
)
def test_annotation_kinds_on_built_inputs(raw, clean, kinds):
    stripped, got = strip_annotations(raw)
    assert got == kinds
    assert clean_report(raw) == clean
    assert leaked_codes(clean) == []


def test_leaked_codes_flags_codes_outside_device_words():
    assert leaked_codes("sinus rhythm norm 100, 1avb and lvh; el ok, wpw") == ["norm", "1avb", "el", "wpw"]


def test_odd_encodings_are_repaired(reports):
    cleaned = [clean_report(r) for r in reports]
    joined = " ".join(cleaned)
    for bad in ("Ä", "Ö", "Å", "Ü", "#", "ó"):
        assert bad not in joined
    assert "sinusrhythmus amplitudenkriterien für linkshypertrophie" in cleaned
    assert any("r-s übergang in v ableitungen" in c for c in cleaned)
    assert any("schweißausbruch" in c for c in cleaned)
    assert clean_report("sinusrytm extrem vÄnster el-axel anterior infarkt     sannolikt Äldre       !") == (
        "sinusrytm extrem vänster el-axel anterior infarkt sannolikt äldre"
    )
    assert clean_report(None) == clean_report(float("nan")) == clean_report("  ") == ""


def test_language_detection_on_real_reports(reports):
    langs = [detect_language(r) for r in reports]
    assert langs[0] == "de"  # sinusrhythmus periphere niederspannung
    by_text = dict(zip(reports, langs))
    assert by_text["sinusrytm normalt ekg"] == "sv"
    assert by_text["sinus rhythm. normal ecg. Edit: NORM 100, (NORM 100)"] == "en"
    assert by_text["trace only requested."] == "en"
    assert by_text["sinus arrhythmie sonst normales ekg"] == "de"
    assert by_text["sinus arytmi avvikande qrs(t) fÖrlopp    hÖg lateral myokardskada bÖr ÖvervÄgas"] == "sv"
    assert by_text["sinus rhythm normal ecg"] == "en"
    assert by_text[" "] == "unknown"
    counts = pd.Series(langs).value_counts().to_dict()
    assert set(counts) <= {"de", "en", "sv", "unknown"} and min(counts[k] for k in ("de", "en", "sv")) > 0
    assert counts.get("unknown", 0) < 0.02 * len(langs)
    # every report starting with a German/Swedish rhythm word gets that language
    for r, lg in zip(reports, langs):
        c = clean_report(r)
        if c.startswith("sinusrhythmus"):
            assert lg == "de", r
        if c.startswith("sinusrytm"):
            assert lg == "sv", r


@pytest.mark.parametrize(
    "raw,english",
    [
        ("sinusrhythmus normales ekg", "sinus rhythm normal ecg"),
        ("sinusrhythmus periphere niederspannung", "sinus rhythm low limb lead voltage"),
        (
            "sinusrhythmus unvollstÄndiger rechtsschenkelblock sonst normales ekg",
            "sinus rhythm incomplete right bundle branch block otherwise normal ecg",
        ),
        (
            "sinusrhythmus ueberdrehter linkstyp linksanteriorer hemiblock",
            "sinus rhythm marked left axis deviation left anterior fascicular block",
        ),
        (
            "sinusrhythmus linkstyp t abnormal, wahrscheinlich    inferiorer myokardschaden qt-verlÄngerung",
            "sinus rhythm left axis t abnormal, probably inferior myocardial damage qt prolongation",
        ),
        (
            "vorhof:hf  280 tachykardes vorhofflimmern ueberdrehter linkstyp qrs(t) abnormal    inferiorer infarkt     alter unbest.",
            "atrium:hf 280 atrial fibrillation with rapid ventricular response marked left axis deviation "
            "qrs(t) abnormal inferior infarction age undetermined",
        ),
        ("sinusrytm vÄnster kammarhypertrofi", "sinus rhythm left ventricular hypertrophy"),
        (
            "fÖrmaksflimmer med hÖg kammarfrekvens vÄnster el-axel vÄnster kammarhypertrofi",
            "atrial fibrillation with rapid ventricular response left axis deviation left ventricular hypertrophy",
        ),
        (
            "sinusrytm a-v block i st-t sÄnkning, sÅsom vid    anterolateral ischemi eller vÄnster belastning",
            "sinus rhythm first degree av block st-t depression, as in anterolateral ischaemia or left ventricular strain",
        ),
        ("sinus rhythm. normal ecg. Edit: NORM 100, (NORM 100)", "sinus rhythm. normal ecg."),
    ],
)
def test_english_translation_of_real_reports(reports, raw, english):
    assert raw in reports
    assert to_english(raw, detect_language(raw)) == english


def test_glossary_file_and_coverage(reports):
    lines = [x for x in GLOSSARY_PATH.read_text(encoding="utf-8").splitlines() if x and not x.startswith("#")]
    assert lines[0].split("\t") == ["language", "source phrase", "english", "provenance"]
    assert all(len(x.split("\t")) == 4 and x.split("\t")[0] in ("de", "sv") for x in lines[1:])
    g = load_glossary()
    assert g["de"]["linksschenkelblock"] == "left bundle branch block"
    assert g["de"]["ueberdrehter linkstyp"] == "marked left axis deviation"  # ASCII spelling variant
    cov = glossary_coverage(reports)
    assert cov["overall"]["coverage"] >= 0.95 and cov["de"]["coverage"] >= 0.95 and cov["sv"]["coverage"] >= 0.95
    assert cov["overall"]["words"] == cov["de"]["words"] + cov["sv"]["words"] + cov["unknown"]["words"]
    # words outside the glossary are not counted as translated
    none = glossary_coverage(["xqzv wpfkj zzyqx"], ["de"])
    assert none["overall"] == {"words": 3, "translated": 0, "coverage": 0.0}
    assert glossary_coverage(["sinus rhythm. normal ecg."])["overall"]["words"] == 0  # English is not counted


OLD_GLOSSARY = str(Path(__file__).parent / "data" / "glossary_before_issue11.tsv")


@pytest.fixture(scope="module")
def database(data_root) -> pd.DataFrame:
    return pd.read_csv(data_root / "ptb-xl" / "ptbxl_database.csv")


def test_seen_ids_follow_the_documented_rule(database):
    """glossary_seen.txt = ecg_id 1-500 plus, of 501-1999, strat_fold 1-8 (checked on the file)."""
    rule = [(e <= 500) or (e <= 1999 and f <= 8) for e, f in zip(database["ecg_id"], database["strat_fold"])]
    assert in_sample(database["ecg_id"]) == rule
    assert any(rule) and not all(rule)
    assert in_sample(["x", None, 10**7]) == [False, False, False]
    assert max(seen_ids()) <= 1999


def test_held_out_coverage_floor(database):
    """Out of sample (reports the glossary was not written from): >= 95 % of German and Swedish words."""
    summary, rows = text_summary(database["ecg_id"], database["report"])
    assert summary["sample"]["out_of_sample"] > 0 and summary["sample"]["in_sample"] > 0
    held = summary["coverage_detail"]["out_of_sample"]
    assert held["de"]["words"] > 100 and held["sv"]["words"] > 100  # enough words to mean something
    assert summary["coverage"]["de"] >= 0.95 and summary["coverage"]["sv"] >= 0.95
    assert summary["coverage"]["overall"] == held["overall"]["coverage"]
    assert summary["annotations_removed"] == annotation_counts(database["report"].fillna(""))
    assert sum(summary["languages"].values()) == len(database) == len(rows)
    assert [r["ecg_id"] for r in rows] == database["ecg_id"].tolist()
    # the words listed are really untranslated, and out of sample
    for u in summary["untranslated"]:
        assert translate_word(u["word"], u["language"]) is None


def test_no_regression_against_the_glossary_before(database):
    """On the seen part: every phrase of the old glossary keeps its English, no word the old glossary
    translated is lost, and every report the old glossary covered fully is translated identically."""
    old, new = load_glossary(OLD_GLOSSARY), load_glossary()
    for lang in old:
        assert {k: new[lang].get(k) for k in old[lang]} == old[lang]
    seen = database[in_sample(database["ecg_id"])]
    checked = identical = 0
    for raw in seen["report"]:
        c = clean_report(raw)
        lang = detect_language(c)
        if lang == "en" or not c:
            continue
        before = untranslated_words(c, lang, OLD_GLOSSARY, words=False)
        after = untranslated_words(c, lang)
        assert set(after) <= set(before), (c, set(after) - set(before))
        if not before:
            checked += 1
            identical += _translate(c, lang, OLD_GLOSSARY, words=False)[0] == _translate(c, lang)[0]
    assert checked > 100 and identical == checked


@pytest.mark.parametrize(
    "word,language,english",
    [
        ("linksschenkelblock", "de", "left bundle branch block"),  # a phrase of its own
        ("vorhofhypertrophie", "de", "atrial hypertrophy"),  # compound: modifier + head
        ("rechtsherzbelastung", "de", "right heart strain"),  # two modifiers, linking s
        ("linkslagetyp", "de", "left axis"),
        ("unspezifischen", "de", "non-specific"),  # inflection ending stripped
        ("vorhoftachycardie", "de", "atrial tachycardia"),  # compound + c/k variant
        ("kammerhyperthrophie", "de", "ventricular hypertrophy"),  # th/t variant
        ("veraenderungen", "de", "change"),  # transliterated umlaut + plural
        ("progrssion", "de", "progression"),  # a dropped letter
        ("vänsterkammarhypertrofi", "sv", "left ventricular hypertrophy"),
        ("hogersidigt", "sv", "right-sided"),  # Swedish without its marks, inflected
        ("förmakstakykardi", "sv", "atrial tachycardia"),
        ("xqzvwpfk", "de", None),  # unknown: kept as it is
    ],
)
def test_word_rules(word, language, english):
    assert translate_word(word, language) == english


@pytest.mark.parametrize(
    "clean,language,english",
    [
        ("sinusrhythmus mögl. vorhofhypertrophie alter unbest.", "de",
         "sinus rhythm possible atrial hypertrophy age undetermined"),
        ("sinusrhythmus v.a. rechtsherzbelastung path. ekg", "de",
         "sinus rhythm suspected right heart strain abnormal ecg"),
        ("sinusrhythmus linkstyp cordichin 3x1 xqzvwpfk", "de", "sinus rhythm left axis cordichin 3x1 xqzvwpfk"),
    ],
)
def test_sentences_with_abbreviations_and_unknown_words(clean, language, english):
    assert _translate(clean, language)[0] == english
    assert untranslated_words(clean, language) == (["xqzvwpfk"] if "xqzv" in clean else [])


# -- held-out estimates, provenance, cut-off words, unknown words (issue 21) -----------------------
from benchmark.data.report_coverage import (  # noqa: E402
    BLOCK_GAP,
    BLOCK_SHARE,
    block_held_out,
    derive_provenance,
    first_use,
    phrasing,
)
from benchmark.data.reports_text import glossary_entries, usable  # noqa: E402


@pytest.fixture(scope="module")
def prepared(database):
    clean = [clean_report(r) for r in database["report"]]
    return database["ecg_id"].tolist(), clean, [detect_language(c) for c in clean]


def test_block_held_out_coverage_floor(prepared):
    """Each language's highest-id fifth of reports, translated with only the entries it did not
    motivate (rules from ids at least BLOCK_GAP below it): >= 94 % of words, and >= 91 % on the
    block's reports whose phrasing occurs nowhere below it.

    The floors sit about two binomial standard errors below the measured values (German 95.8 % of
    865 words, SE 0.7 points; Swedish 97.5 % of 393, SE 0.8; unseen phrasings German 93.4 % of 549,
    SE 1.1; Swedish 97.1 % of 343, SE 0.9): a drop below them is a real loss of generalisation, not
    noise. Adding entries written from block reports cannot raise these numbers: their provenance
    puts them inside the block (test_provenance_is_never_earlier_than_first_use)."""
    ids, clean, langs = prepared
    est = block_held_out(ids, clean, langs)
    for lang in ("de", "sv"):
        own = sorted(e for e, lg in zip(ids, langs) if lg == lang)
        n_block = -(-len(own) * int(BLOCK_SHARE * 100) // 100)  # ceil of the share, from the file
        b = est["block"][lang]
        assert b["from_id"] == own[-n_block] and b["reports"] == n_block
        assert b["rules_below"] == b["from_id"] - BLOCK_GAP
        assert b["words"] > 300, b  # enough words to mean something
        assert b["coverage"] >= 0.94, (lang, b)
        below = {phrasing(c) for e, c in zip(ids, clean) if e < b["from_id"]}
        new = [c for e, c, lg in zip(ids, clean, langs) if lg == lang and e >= b["from_id"] and phrasing(c) not in below]
        p = est["block_new_phrasing"][lang]
        assert p["reports"] == len(new) > 0 and p["words"] > 200
        assert p["coverage"] >= 0.91, (lang, p)
        # holding entries out never helps: the full glossary covers the block at least as well
        full = glossary_coverage([c for e, c, lg in zip(ids, clean, langs) if lg == lang and e >= b["from_id"]], [lang] * n_block)
        assert full[lang]["words"] == b["words"] and full[lang]["translated"] >= b["translated"]


def test_provenance_is_never_earlier_than_first_use(prepared, database):
    """An entry written from reports names the lowest ecg_id that uses or contains it; naming an
    earlier one would let a block use an entry the block itself motivated."""
    ids, clean, langs = prepared
    uses = first_use(ids, clean, langs)
    rows = glossary_entries()
    provs = {p for *_, p in rows}
    assert provs - {"catalogue", "language"} and all(p.isdigit() or p in ("catalogue", "language") for p in provs)
    for lang, src, _, prov in rows:
        if prov.isdigit() and (lang, src) in uses:
            assert int(prov) >= uses[(lang, src)], (lang, src, prov, uses[(lang, src)])
    for key, first in uses.items():  # every entry a report uses has a provenance no earlier than that report
        provs = [p for lang, src, _, p in rows if (lang, src) == key]
        assert provs and any(p in ("catalogue", "language") or int(p) >= first for p in provs), key
    # and the file is exactly what the documented rule derives from the shared reports
    assert derive_provenance(database["ecg_id"], database["report"].fillna("")) == GLOSSARY_PATH.read_text(encoding="utf-8")
    assert usable("language", 5) and usable("catalogue", 5) and usable("4", 5) and not usable("5", 5)
    assert usable("5", None) and not usable("unknown", 10**9) and usable("unknown", None)


def test_glossary_provenance_column_errors(tmp_path):
    from benchmark.errors import DataError

    f = tmp_path / "g.tsv"
    f.write_text("language\tsource phrase\tenglish\tprovenance\nde\tlinkstyp\tleft axis\tsomewhere\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"g.tsv:2: provenance must be catalogue, language or an ecg_id, got 'somewhere'"):
        glossary_entries(str(f))
    f.write_text("de\tlinkstyp\tleft axis\t12\textra\n", encoding="utf-8")
    with pytest.raises(DataError, match="expected 3 or 4 tab-separated columns") as e:
        glossary_entries(str(f))
    assert "\n" not in str(e.value)
    f.write_text("de\tlinkstyp\tleft axis\t12\nde\tsteiltyp\tvertical axis\tlanguage\n", encoding="utf-8")
    assert load_glossary(str(f), upto=12) == {"de": {"steiltyp": "vertical axis"}, "sv": {}}
    assert set(load_glossary(str(f), upto=13)["de"]) == {"linkstyp", "steiltyp"}
    # under a cutoff, only usable entries translate (the block estimate's mechanism)
    assert untranslated_words("linkstyp steiltyp", "de", str(f), upto=12) == ["linkstyp"]
    assert untranslated_words("linkstyp steiltyp", "de", str(f)) == []


@pytest.mark.parametrize(
    "clean,english,left",
    [
        # a cut-off last word is completed: alone, or as the last part of a compound
        ("sinusrhythmus wahrschei", "sinus rhythm probably", []),
        ("sinusrhythmus linksschenkelbl", "sinus rhythm left bundle branch block", []),
        ("sinusrhythmus vorhofflimm.", "sinus rhythm atrial fibrillation.", []),  # a letter run is last
        # only the last word: the same cut-off word earlier in the report stays
        ("wahrschei sinusrhythmus wahrschei", "wahrschei sinus rhythm probably", ["wahrschei"]),
        ("linksschenkelbl sinusrhythmus", "linksschenkelbl sinus rhythm", ["linksschenkelbl"]),
        # ambiguous (verlängert / verlängerung / verlangsamt ...) or too short: kept as it is
        ("sinusrhythmus verl", "sinus rhythm verl", ["verl"]),
        ("sinusrhythmus lin", "sinus rhythm lin", ["lin"]),
        ("sinusrytm vänster kammarhypertr", "sinus rhythm left ventricular hypertrophy", []),
    ],
)
def test_cut_off_last_word(clean, english, left):
    lang = detect_language(clean)
    assert _translate(clean, lang)[0] == english
    assert untranslated_words(clean, lang) == left


def test_unknown_word_fallback():
    """Unknown words stay in the English text where they stood, verbatim, and count as untranslated;
    nothing is guessed from a part of them (a known modifier glued to an unknown rest stays whole)."""
    clean = "sinusrhythmus xqzvwpfk linksqzrt linkstyp"
    assert _translate(clean, "de")[0] == "sinus rhythm xqzvwpfk linksqzrt left axis"
    assert untranslated_words(clean, "de") == ["xqzvwpfk", "linksqzrt"]
    cov = glossary_coverage([clean], ["de"])
    assert cov["de"] == {"words": 4, "translated": 2, "coverage": 0.5}
    assert translate_word("linksqzrt", "de") is None and translate_word("linksqzrt", "de", last=True) is None
    # an unknown last word that begins no table word is not completed either
    assert untranslated_words("sinusrhythmus qzrtx", "de") == ["qzrtx"]
