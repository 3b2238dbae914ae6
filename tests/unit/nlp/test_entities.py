from pathlib import Path

import pandas as pd
import pytest

from medai.core.errors import InvalidParameterError
from medai.nlp.entities import Concept, Finding, extract_findings, summarise_findings
from medai.nlp.sections import Report

SENTENCES = Path(__file__).resolve().parents[2] / "data" / "negation_sentences.csv"
# Measured 2026-11 on the 164 rows: negation accuracy 0.988, uncertainty accuracy 0.994, every row's concept found.
# The floors leave a margin of a few sentences; the set is a development set for the rules (see its .md).
NEGATION_FLOOR, UNCERTAINTY_FLOOR, DETECTION_FLOOR = 0.95, 0.95, 0.97


def _status(sentence, concept):
    found = [f for f in extract_findings(sentence) if f.concept == concept]
    if not found:
        return None
    negated = any(f.negated for f in found)
    return negated, (not negated) and any(f.uncertain for f in found)


def test_issue_examples():
    (f,) = extract_findings("No pleural effusion.")
    assert (f.concept, f.negated, f.uncertain) == ("pleural_effusion", True, False)
    (f,) = extract_findings("Possible pleural effusion.")
    assert (f.negated, f.uncertain) == (False, True)
    assert _status("No XXXX pneumothorax.", "pneumothorax") == (True, False)
    assert _status("No change in the small effusion.", "pleural_effusion") == (False, False)
    assert _status("No pneumothorax, but there is a small effusion.", "pleural_effusion") == (False, False)
    assert _status("Pneumonia cannot be excluded.", "pneumonia") == (False, True)
    assert _status("The heart size is normal.", "cardiomegaly") == (True, False)
    assert extract_findings("Small pericardial effusion.") == []


def test_accuracy_on_hand_labelled_sentences():
    table = pd.read_csv(SENTENCES)
    assert len(table) >= 110
    detected = negation = uncertainty = 0
    for row in table.itertuples():
        status = _status(row.sentence, row.concept)
        if status is None:
            continue
        detected += 1
        negation += status[0] == bool(row.negated)
        uncertainty += status[1] == bool(row.uncertain)
    assert detected / len(table) >= DETECTION_FLOOR
    assert negation / len(table) >= NEGATION_FLOOR  # undetected rows count as wrong
    assert uncertainty / len(table) >= UNCERTAINTY_FLOOR


def test_finding_fields_and_sections():
    report = Report.from_text("INDICATION: history of pneumonia.\nFINDINGS: Heart is enlarged. "
                              "No effusion.\nIMPRESSION: Cardiomegaly.")
    findings = extract_findings(report)
    first = findings[0]
    assert (first.concept, first.section, first.historical) == ("pneumonia", "indication", True)
    effusion = next(f for f in findings if f.concept == "pleural_effusion")
    body = report.sections["findings"]
    assert body[effusion.start:effusion.end] == "effusion" and effusion.sentence_index == 1


def test_summary_rules():
    def f(concept, section, negated=False, uncertain=False, historical=False):
        return Finding(concept, "x", section, 0, 0, 1, negated, uncertain, historical)

    summary = summarise_findings([
        f("pleural_effusion", "findings", negated=True), f("pleural_effusion", "findings"),  # positive wins
        f("pneumonia", "findings"), f("pneumonia", "impression", uncertain=True),  # impression wins
        f("atelectasis", "indication"),  # indication ignored
        f("edema", "findings", historical=True),  # history ignored
        f("nodule", "other", negated=True),
    ])
    assert summary == {"pleural_effusion": "present", "pneumonia": "uncertain", "nodule": "absent"}
    with pytest.raises(InvalidParameterError, match="summarise_findings"):
        summarise_findings(["cardiomegaly"])


def test_every_concept_has_a_rule():
    text = ("Cardiomegaly. Effusion. Pneumothorax. Opacity. Pneumonia. Atelectasis. Edema. Nodule. Granuloma. "
            "Emphysema. Fracture. Scoliosis. Hiatal hernia.")
    assert {f.concept for f in extract_findings(text)} == {c.value for c in Concept}
