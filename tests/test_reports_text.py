"""Report text on the real PTB-XL reports: cleaning, language detection, glossary translation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmark.data.reports_text import (
    GLOSSARY_PATH,
    SCP_CODES,
    _translate,
    annotation_counts,
    in_sample,
    seen_ids,
    text_summary,
    translate_word,
    untranslated_words,
    leaked_codes,
    strip_annotations,
    clean_report,
    detect_language,
    glossary_coverage,
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
