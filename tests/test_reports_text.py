"""Report text on the real PTB-XL reports: cleaning, language detection, glossary translation."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark.data.reports_text import (
    GLOSSARY_PATH,
    SCP_CODES,
    annotation_counts,
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
    assert lines[0].split("\t") == ["language", "source phrase", "english"]
    assert all(len(x.split("\t")) == 3 and x.split("\t")[0] in ("de", "sv") for x in lines[1:])
    g = load_glossary()
    assert g["de"]["linksschenkelblock"] == "left bundle branch block"
    assert g["de"]["ueberdrehter linkstyp"] == "marked left axis deviation"  # ASCII spelling variant
    cov = glossary_coverage(reports)
    assert cov["overall"]["coverage"] >= 0.95 and cov["de"]["coverage"] >= 0.95 and cov["sv"]["coverage"] >= 0.95
    assert cov["overall"]["words"] == cov["de"]["words"] + cov["sv"]["words"] + cov["unknown"]["words"]
    # words outside the glossary are not counted as translated
    none = glossary_coverage(["cordichin novodigal tensobon"], ["de"])
    assert none["overall"] == {"words": 3, "translated": 0, "coverage": 0.0}
    assert glossary_coverage(["sinus rhythm. normal ecg."])["overall"]["words"] == 0  # English is not counted
