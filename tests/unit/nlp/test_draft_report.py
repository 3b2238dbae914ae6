import datetime as dt
import json

import pytest

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.nlp.draft_report import DRAFT_HEADER, ImagingPrediction, draft_report, read_imaging_predictions, \
    validate_bundle

ISSUED = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
SUMMARY = {"cardiomegaly": "present", "pleural_effusion": "absent", "pneumonia": "uncertain"}


def _resources(bundle, kind):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_draft_without_predictions():
    draft = draft_report(SUMMARY, patient_ref="Patient/p1", report_id="r1", issued=ISSUED)
    assert draft.text.startswith(DRAFT_HEADER)
    assert "Cardiomegaly:" in draft.text and "uncertain" in draft.text and "IMAGING MODEL" not in draft.text
    (report,) = _resources(draft.fhir, "DiagnosticReport")
    assert report["status"] == "preliminary" and report["code"]["coding"][0]["code"] == "18748-4"
    assert report["category"][0]["coding"][0]["code"] == "RAD" and report["conclusion"].startswith("DRAFT")
    observations = _resources(draft.fhir, "Observation")
    assert len(observations) == 3 == len(report["result"])
    values = {o["code"]["coding"][-1]["code"]: o["valueCodeableConcept"]["text"] for o in observations}
    assert values == SUMMARY
    assert {o["interpretation"][0]["coding"][0]["code"] for o in observations} == {"POS", "NEG", "IND"}
    assert draft.fhir["type"] == "collection"
    validate_bundle(draft.fhir)
    assert draft_report(SUMMARY, report_id="r1", issued=ISSUED).fhir["id"] == draft.fhir["id"]  # reproducible


def test_draft_with_imaging_predictions():
    draft = draft_report(SUMMARY, imaging_predictions=[ImagingPrediction("pneumonia", 0.83, "cxr-resnet@1",
                                                                          "positive")], issued=ISSUED)
    assert "probability 0.830" in draft.text and "cxr-resnet@1" in draft.text
    model = [o for o in _resources(draft.fhir, "Observation") if "valueQuantity" in o]
    assert model[0]["valueQuantity"]["value"] == 0.83 and "cxr-resnet@1" in model[0]["method"]["text"]
    assert "subject" not in _resources(draft.fhir, "DiagnosticReport")[0]


def test_invalid_fhir_is_reported():
    bundle = draft_report(SUMMARY, issued=ISSUED).fhir
    del bundle["entry"][1]["resource"]["code"]  # Observation.code is required (1..1)
    with pytest.raises(DataValidationError, match=r"draft FHIR Bundle is not valid R4B \(entry.1.resource.code: Field required"):
        validate_bundle(bundle)


def test_bad_inputs():
    with pytest.raises(InvalidParameterError, match="cardiomegaly.*must be one of present, absent, uncertain"):
        draft_report({"cardiomegaly": "yes"})
    with pytest.raises(DataValidationError, match="probability 1.5; expected a number in"):
        draft_report({}, imaging_predictions=[ImagingPrediction("x", 1.5, "m")])
    with pytest.raises(InvalidParameterError, match="patient_ref"):
        draft_report({}, patient_ref="p1")


def test_read_predictions_csv_and_json(tmp_path):
    csv = tmp_path / "pred.csv"
    csv.write_text("id,score_pneumonia,pred_pneumonia,score_effusion,pred_effusion,pred\n"
                   "a,0.9,1,0.1,0,pneumonia\nb,0.2,0,0.7,1,effusion\n")
    with pytest.raises(DataValidationError, match="2 prediction rows; pass the record id"):
        read_imaging_predictions(csv)
    predictions = read_imaging_predictions(csv, record_id="b")
    assert [(p.finding, p.probability, p.decision, p.model_id) for p in predictions] == [
        ("pneumonia", 0.2, "negative", "unrecorded"), ("effusion", 0.7, "positive", "unrecorded")]
    payload = {"model": "m@2", "task": "binary", "predictions": [{"id": "a", "score": 0.4, "pred": "no"}]}
    js = tmp_path / "pred.json"
    js.write_text(json.dumps(payload))
    (p,) = read_imaging_predictions(js)
    assert (p.finding, p.probability, p.model_id) == ("positive_class", 0.4, "m@2")
