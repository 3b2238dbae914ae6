from pathlib import Path

import pytest

from medai.core.errors import DataValidationError, InvalidParameterError, UnknownNameError
from medai.nlp.sections import Report, Section, read_report, read_reports, split_sections, split_sentences

IU = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "iu_xray_reports" / "indiana_reports.csv"


def test_split_sections_at_headers_and_caps_inline():
    text = ("Clinical history: cough.\nCOMPARISON: none\nFindings: Heart normal. IMPRESSION: No acute disease. "
            "Note: ratio: 1.")
    sections = split_sections(text)
    assert list(sections) == [Section.INDICATION, Section.COMPARISON, Section.FINDINGS, Section.IMPRESSION]
    assert sections[Section.FINDINGS] == "Heart normal."
    assert sections[Section.IMPRESSION] == "No acute disease. Note: ratio: 1."  # "Note:" is not a header


def test_lower_case_header_mid_line_is_prose_and_text_without_headers_is_other():
    assert split_sections("The history: unclear.") == {Section.OTHER: "The history: unclear."}
    assert split_sections("  ") == {}


def test_report_text_round_trip_and_sentences():
    report = Report.from_text("FINDINGS: No effusion. Heart is enlarged.\nIMPRESSION: Cardiomegaly.", id="r1")
    assert Report.from_text(report.text).sections == report.sections
    body = report.sections[Section.FINDINGS]
    assert [body[s:e] for s, e in split_sentences(body)] == ["No effusion.", "Heart is enlarged."]


def _csv(tmp_path, text, name="reports.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_reports_section_columns_and_skip_empty(tmp_path):
    path = _csv(tmp_path, "uid,findings,impression\n1,No effusion.,Normal.\n2,,\n3,Small effusion.,\n")
    with pytest.raises(DataValidationError, match=r"1 of 3 reports .* no text .*data rows 2\)"):
        read_reports(path)
    reports = read_reports(path, on_invalid="skip")
    assert [r.id for r in reports] == ["1", "3"] and reports.skipped_rows == [2]
    assert reports.by_id("3").sections == {Section.FINDINGS: "Small effusion."}


def test_read_reports_text_column_and_errors(tmp_path):
    path = _csv(tmp_path, 'note_id,body\na,"FINDINGS: secret words here. IMPRESSION: fine."\n')
    reports = read_reports(path, text="body")
    assert reports[0].sections[Section.IMPRESSION] == "fine."
    with pytest.raises(UnknownNameError, match="Unknown column in reports.csv 'bdy'. Did you mean 'body'"):
        read_reports(path, text="bdy")
    with pytest.raises(InvalidParameterError, match="on_invalid"):
        read_reports(path, text="body", on_invalid="ignore")
    with pytest.raises(DataValidationError, match="no report column"):
        read_reports(path)


def test_empty_note_error_never_contains_text(tmp_path):
    path = _csv(tmp_path, "id,findings\nx,Patient Jane Roe has effusion\ny, \n")
    with pytest.raises(DataValidationError) as error:
        read_reports(path)
    assert "Jane" not in str(error.value) and "effusion" not in str(error.value)


def test_non_utf8_file_names_offset_and_fix(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("id,findings\n1,caf\xe9 opacity\n".encode("latin-1"))
    with pytest.raises(DataValidationError, match=r"latin.csv is not valid utf-8: byte 0xe9 at byte offset 17.*iconv"):
        read_reports(path)
    assert read_reports(path, encoding="latin-1")[0].sections[Section.FINDINGS] == "café opacity"


def test_read_report_text_file(tmp_path):
    path = tmp_path / "study.txt"
    path.write_text("FINDINGS: Small left effusion.\n", encoding="utf-8")
    assert read_report(path).id == "study"
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataValidationError, match="empty.txt has no text"):
        read_report(tmp_path / "empty.txt")


@pytest.mark.skipif(not IU.exists(), reason="IU chest X-ray reports not available (../shared/data)")
def test_read_iu_reports():
    reports = read_reports(IU, section_columns={"findings": "findings", "impression": "impression"}, id="uid",
                           on_invalid="skip")
    assert len(reports) == 3826 and len(reports.skipped_rows) == 25
