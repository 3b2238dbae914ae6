import datetime as dt
import re
from pathlib import Path

import pytest

from medai.core.errors import InvalidParameterError
from medai.nlp import deid as deid_module
from medai.nlp import phi_corpus
from medai.nlp.deid import PhiType, deidentify, detect_phi, patient_date_shift
from medai.nlp.phi_corpus import generate_phi_corpus, score_deid


def _types(text):
    return {(text[s.start:s.end], s.type) for s in detect_phi(text)}


@pytest.mark.parametrize(("text", "value", "phi_type"), [
    ("Seen by Dr. Halloran today.", "Halloran", PhiType.NAME),
    ("Patient: Mbatha, Zanele  MRN: 00123456", "Mbatha, Zanele", PhiType.NAME),
    ("Signed: Corvin Aldous, MD", "Corvin Aldous", PhiType.NAME),
    ("Exam on 04/17/2019 was normal.", "04/17/2019", PhiType.DATE),
    ("Compared with 2018-11-02.", "2018-11-02", PhiType.DATE),
    ("Seen on March 3, 2021.", "March 3, 2021", PhiType.DATE),
    ("She is a 93-year-old woman.", "93", PhiType.AGE),
    ("MRN: 00123456", "00123456", PhiType.ID),
    ("SSN 123-45-6789", "123-45-6789", PhiType.ID),
    ("Accession #: RA20190041", "RA20190041", PhiType.ID),
    ("Call (317) 555-0199.", "(317) 555-0199", PhiType.PHONE),
    ("Fax 317.555.0142", "317.555.0142", PhiType.PHONE),
    ("Write to q.someone@mailhost.org today", "q.someone@mailhost.org", PhiType.EMAIL),
    ("See https://pacs.example.net/study/99 now", "https://pacs.example.net/study/99", PhiType.URL),
    ("Lives at 42 Orchard Lane, Apt 3 with her son.", "42 Orchard Lane, Apt 3", PhiType.ADDRESS),
    ("Zionsville, IN 46077", "Zionsville, IN 46077", PhiType.ADDRESS),
    ("Transferred from Greyfield Memorial Hospital.", "Greyfield Memorial Hospital", PhiType.INSTITUTION),
])
def test_each_phi_type(text, value, phi_type):
    assert (value, str(phi_type)) in _types(text)


def test_clinical_text_is_left_alone():
    text = ("FINDINGS: Heart size normal. No pleural effusion. 3 mm nodule in the right upper lobe, 1/2 the "
            "size of prior. Age 45. Follow-up CT in 6 months. May consider biopsy.")
    assert detect_phi(text) == []


def test_age_89_or_less_is_not_phi():
    assert detect_phi("An 89-year-old man.") == []


def test_recall_on_generated_notes():
    score = score_deid(generate_phi_corpus(120, seed=7), detect_phi)
    assert score.token_recall["ALL"] >= 0.95
    for phi_type in PhiType:
        assert score.token_recall[str(phi_type)] >= 0.9, phi_type
    assert score.token_precision["ALL"] >= 0.95


def test_generator_vocabulary_is_unknown_to_the_deidentifier():
    source = Path(deid_module.__file__).read_text()
    for word in phi_corpus._FIRST + phi_corpus._LAST + phi_corpus._STREET_NAMES + phi_corpus._HOSPITALS:
        for part in re.findall(r"[A-Z][a-z']{3,}", word):
            if part in ("Hospital", "Memorial", "Center", "Clinic", "Health", "System", "Children", "Infirmary",
                        "Rehabilitation", "Imaging", "Community", "Regional", "Medical", "County", "General",
                        "Sacred", "Heart", "Harbor", "Children's"):  # "Harbor" only in "HIPAA Safe Harbor"
                continue  # institution words and capitalised non-names the rules legitimately know
            assert not re.search(rf"\b{part}\b", source), part


def test_redact_and_gold_spans_line_up():
    note = generate_phi_corpus(1, seed=3)[0]
    result = deidentify(note.text)
    assert "[NAME]" in result.text and "[DATE]" in result.text
    for gold in note.spans:
        assert note.text[gold.start:gold.end] not in result.text or len(note.text[gold.start:gold.end]) < 3


def test_surrogates_are_consistent_and_seeded():
    text = "Dr. Halloran saw Mr. Quibell. Quibell agreed. Dr. Halloran called 317-555-0100 and 317-555-0100."
    result = deidentify(text, mode="surrogate", seed=5)
    assert "Halloran" not in result.text and "Quibell" not in result.text
    words = result.text.split()
    assert words[1] == words[8].rstrip(".")  # the same clinician twice → the same surrogate
    assert result.text.count(result.text.split("called ")[1].split(" and")[0]) == 2
    assert deidentify(text, mode="surrogate", seed=5).text == result.text
    assert deidentify(text, mode="surrogate", seed=6).text != result.text


def test_date_shift_keeps_intervals_and_format():
    text = "Admitted 01/30/2020, discharged 2020-02-03, follow-up March 1, 2020."
    shifted = deidentify(text, date_shift_days=40).text
    assert shifted == "Admitted 03/10/2020, discharged 2020-03-14, follow-up April 10, 2020."
    dates = [dt.date(2020, 3, 10), dt.date(2020, 3, 14), dt.date(2020, 4, 10)]
    assert (dates[1] - dates[0]).days == 4 and (dates[2] - dates[0]).days == 31  # as in the original


def test_patient_date_shift_is_keyed_and_bounded():
    a = patient_date_shift("p1", "secret")
    assert a == patient_date_shift("p1", "secret") and a != 0 and -365 <= a <= 365
    assert len({patient_date_shift(f"p{i}", "secret") for i in range(50)}) > 30


def test_bad_parameters():
    with pytest.raises(InvalidParameterError, match="The 'mode' parameter of deidentify must be"):
        deidentify("x", mode="mask")
    with pytest.raises(InvalidParameterError, match="date_shift_days"):
        deidentify("x", date_shift_days=1.5)
