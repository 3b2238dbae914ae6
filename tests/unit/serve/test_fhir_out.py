"""FHIR R4 output of predictions: every resource validates with fhir.resources.R4B, values are the prediction's,
references resolve inside the Bundle, and bad predictions fail with messages that name the field, never a value."""

from __future__ import annotations

import base64
import math

import pytest

pytest.importorskip("fhir.resources")

from fhir.resources.R4B import get_fhir_model_class  # noqa: E402

from medai.core.errors import DataValidationError, InvalidParameterError  # noqa: E402
from medai.serve.fhir_out import (  # noqa: E402
    CLASS_PROBABILITY_SYSTEM, MODEL_SHA256_SYSTEM, MODEL_SYSTEM, OUTPUT_SYSTEM, RISK_PROBABILITY, UCUM, V2_0074,
    FhirOutputError, ModelInfo, diagnostic_report, model_device, prediction_bundle, risk_assessment,
    validate_resource,
)

SHA = "0123456789abcdef" * 4
SECRET = "Zebulon-Quixote-4711"  # a patient value that must never reach a message
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()


def _ehr_model(**task):
    return ModelInfo(id="icu-mortality", version="2026-11-26T10:00:00Z", sha256=SHA, modality="ehr",
                     task={"kind": "binary", "outcome": "mortality", "class_names": ["no_mortality", "mortality"],
                           "positive_class": "mortality", "observation_hours": 48, "horizon_hours": None, **task})


def _image_model(kind="binary", names=("normal", "pneumonia")):
    return ModelInfo(id="pneumonia-cxr", version="v3", sha256=SHA, modality="image", title="Pneumonia on CXR",
                     task={"kind": kind, "class_names": list(names),
                           "positive_class": names[1] if kind == "binary" else None})


def _parsed(resource):
    """Round trip through fhir.resources.R4B: the typed object, and its JSON back as a dict."""
    obj = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return obj


# ------------------------------------------------------------------------------------------------ RiskAssessment
@pytest.mark.parametrize("decision, level", [("mortality", "high"), ("no_mortality", "low")])
def test_risk_assessment_binary_carries_the_prediction(decision, level):
    prediction = {"id": "icu-7", "probability": 0.2345, "decision": decision, "refer": False,
                  "model": {"id": "icu-mortality", "version": "v", "sha256": SHA}}
    resource = risk_assessment(prediction, _ehr_model(), subject="p1", occurrence=None, encounter="icu-7")
    obj = _parsed(resource)
    assert obj.__resource_type__ == "RiskAssessment"
    assert obj.status == "final"
    assert obj.subject.reference == "Patient/p1" and obj.encounter.reference == "Encounter/icu-7"
    (entry,) = obj.prediction
    assert float(entry.probabilityDecimal) == prediction["probability"]
    assert entry.outcome.text == "In-hospital death"
    assert entry.qualitativeRisk.coding[0].system == RISK_PROBABILITY
    assert entry.qualitativeRisk.coding[0].code == level
    assert "not referred" in entry.rationale
    assert obj.method.coding[0].system == MODEL_SYSTEM and obj.method.coding[0].code == "icu-mortality"
    assert SHA in obj.method.text and "2026-11-26T10:00:00Z" in obj.method.text
    # the model is a contained Device, referenced as performer (R4 allows Device there)
    assert obj.performer.reference == "#model"
    device = obj.contained[0]
    assert device.__resource_type__ == "Device"
    assert {(i.system, i.value) for i in device.identifier} >= {(MODEL_SHA256_SYSTEM, SHA)}
    assert device.deviceName[0].name == "icu-mortality" and device.version[0].value == "2026-11-26T10:00:00Z"
    assert obj.basis[0].identifier.value == "icu-7"
    assert obj.note is None


def test_risk_assessment_refer_adds_a_note_and_rationale():
    prediction = {"id": "r1", "probability": 0.5, "decision": "mortality", "refer": True,
                  "refer_reason": "conformal set holds both classes", "prediction_set": ["no_mortality", "mortality"],
                  "warnings": ["3 values dropped: unknown unit"]}
    obj = _parsed(risk_assessment(prediction, _ehr_model(), subject=None))
    assert "refer to a clinician" in obj.prediction[0].rationale
    assert "{no_mortality, mortality}" in obj.prediction[0].rationale
    notes = [n.text for n in obj.note]
    assert any("Refer to a clinician" in n and "conformal set holds both classes" in n for n in notes)
    assert any("unknown unit" in n for n in notes)
    # R4 requires a subject: without a Patient, the client's record id is a logical reference
    assert obj.subject.identifier.value == "r1"


def test_risk_assessment_occurrence_naive_is_utc():
    import datetime as dt

    resource = risk_assessment({"id": "1", "probability": 0.1, "decision": "no_mortality"}, _ehr_model(),
                               subject="p", occurrence=dt.datetime(2150, 1, 2, 3, 4, 5))
    assert resource["occurrenceDateTime"] == "2150-01-02T03:04:05+00:00"


def test_risk_assessment_tabular_outcome_name_from_label_column():
    model = ModelInfo(id="diabetes", version="1", sha256=SHA, modality="tabular",
                      task={"kind": "binary", "label": "readmitted_30d", "class_names": ["0", "1"],
                            "positive_class": "1"})
    obj = _parsed(risk_assessment({"id": "row-1", "probability": 0.7, "decision": "1"}, model, subject=None))
    assert obj.prediction[0].outcome.text == "readmitted 30d"
    assert obj.prediction[0].qualitativeRisk.coding[0].code == "high"


def test_risk_assessment_survival_horizons():
    model = ModelInfo(id="metabric", version="1", sha256=SHA, modality="tabular",
                      task={"kind": "survival", "event": "death", "time_unit": "months"})
    prediction = {"id": "1", "risk": {"log_relative_risk": 0.4, "survival": {"365 days": 0.81, "24": 0.6}},
                  "decision": "high", "refer": False}
    obj = _parsed(risk_assessment(prediction, model, subject="p9"))
    assert len(obj.prediction) == 2
    first, second = obj.prediction
    assert math.isclose(float(first.probabilityDecimal), 1 - 0.81)
    assert float(first.whenRange.high.value) == 365 and first.whenRange.high.code == "d"
    assert first.whenRange.high.system == UCUM
    # a bare horizon takes the task's time unit
    assert float(second.whenRange.high.value) == 24 and second.whenRange.high.code == "mo"
    assert math.isclose(float(first.relativeRisk), math.exp(0.4))
    assert first.qualitativeRisk.coding[0].code == "high"
    assert first.outcome.text == "death"


def test_risk_assessment_multilabel_one_prediction_per_class():
    model = _ehr_model(kind="multilabel", outcome="phenotype", class_names=["sepsis", "shock"], positive_class=None)
    prediction = {"id": "1", "probability": {"sepsis": 0.7, "shock": 0.1}, "decision": ["sepsis"]}
    obj = _parsed(risk_assessment(prediction, model, subject="p"))
    got = {p.outcome.text: (float(p.probabilityDecimal), p.qualitativeRisk.coding[0].code) for p in obj.prediction}
    assert got == {"sepsis": (0.7, "high"), "shock": (0.1, "low")}


def test_risk_assessment_rejects_regression_and_bad_probability():
    regression = ModelInfo(id="los", version="1", sha256=SHA, task={"kind": "regression"})
    with pytest.raises(InvalidParameterError, match="regression model: medai has no FHIR RiskAssessment"):
        risk_assessment({"id": "1", "value": 4.2}, regression, subject=None)
    with pytest.raises(DataValidationError, match=r"field probability must be a probability in \[0, 1\]") as info:
        risk_assessment({"id": SECRET, "probability": 1.7, "decision": "mortality"}, _ehr_model(), subject="p")
    assert SECRET not in str(info.value) and "1.7" not in str(info.value)
    with pytest.raises(DataValidationError, match="field risk.survival must map each horizon"):
        risk_assessment({"id": "1", "risk": {"log_relative_risk": 0.1}}, ModelInfo(
            id="s", version="1", sha256=SHA, task={"kind": "survival"}), subject=None)


# ------------------------------------------------------------------------------------------------ DiagnosticReport
def test_diagnostic_report_binary_image_with_explanation():
    prediction = {"id": "img-1", "probability": 0.83, "decision": "pneumonia", "refer": False,
                  "explanation": {"type": "heatmap", "png_base64": PNG}}
    report, observations = diagnostic_report(prediction, _image_model(), subject="p2", category="imaging",
                                             imaging_study="study-1")
    obj = _parsed(report)
    assert obj.status == "preliminary"
    assert (obj.category[0].coding[0].system, obj.category[0].coding[0].code) == (V2_0074, "RAD")
    assert obj.subject.reference == "Patient/p2" and obj.imagingStudy[0].reference == "ImagingStudy/study-1"
    assert obj.presentedForm[0].contentType == "image/png"
    assert "pneumonia (probability 83%)" in obj.conclusion and "p2" not in obj.conclusion
    assert [r.reference for r in obj.result] == [f"urn:uuid:{o['id']}" for o in observations]
    parsed = [_parsed(o) for o in observations]
    assert len(parsed) == 3  # one probability, the decision, refer
    probability, decision, refer = parsed
    assert probability.code.coding[0].system == CLASS_PROBABILITY_SYSTEM
    assert probability.code.coding[0].code == "pneumonia"
    assert float(probability.valueQuantity.value) == 0.83
    assert (probability.valueQuantity.system, probability.valueQuantity.code) == (UCUM, "1")
    assert decision.code.coding[0].code == "decision" and decision.valueCodeableConcept.text == "pneumonia"
    assert decision.interpretation is None
    assert refer.code.coding[0].code == "refer" and refer.valueBoolean is False
    assert all(o.device.reference.startswith("urn:uuid:") for o in parsed)


def test_diagnostic_report_multiclass_ecg_refer_and_conformal_set():
    model = ModelInfo(id="af-ecg", version="1", sha256=SHA, modality="ecg",
                      task={"kind": "multiclass", "class_names": ["A", "N", "O"]})
    prediction = {"id": "A0001", "probability": {"A": 0.45, "N": 0.40, "O": 0.15}, "decision": "A",
                  "prediction_set": ["A", "N"], "refer": True, "refer_reason": "conformal set is not a single class"}
    report, observations = diagnostic_report(prediction, model, subject=None, category="ecg")
    obj = _parsed(report)
    assert obj.category[0].coding[0].code == "EC"
    assert obj.subject is None and obj.presentedForm is None
    parsed = [_parsed(o) for o in observations]
    assert [float(o.valueQuantity.value) for o in parsed[:3]] == [0.45, 0.40, 0.15]
    decision = parsed[3]
    assert decision.component[0].valueString == "{A, N}"
    assert decision.interpretation[0].coding[0].code == "IND"
    assert parsed[4].valueBoolean is True and "conformal set is not a single class" in parsed[4].note[0].text
    assert "Refer to a clinician" in obj.conclusion


def test_diagnostic_report_unusable_ecg_has_no_probability():
    model = ModelInfo(id="af-ecg", version="1", sha256=SHA, modality="ecg", task={"kind": "multiclass"})
    prediction = {"id": "A2", "decision": "unusable", "refer": True, "refer_reason": "signal unusable: flat line"}
    report, observations = diagnostic_report(prediction, model, subject="p", category="ecg")
    assert [o["code"]["coding"][0]["code"] for o in observations] == ["decision", "refer"]
    assert _parsed(report).conclusion.count("unusable") >= 1


def test_diagnostic_report_text_category_and_bad_category():
    model = ModelInfo(id="notes", version="1", sha256=SHA, modality="text",
                      task={"kind": "binary", "class_names": ["no", "yes"], "positive_class": "yes"})
    report, _ = diagnostic_report({"id": "n1", "probability": 0.1, "decision": "no"}, model, subject=None,
                                  category="text")
    assert report["category"][0]["coding"][0]["code"] == "OTH"
    with pytest.raises(InvalidParameterError, match="'category' parameter of diagnostic_report must be one of"):
        diagnostic_report({"id": "n1", "probability": 0.1}, model, subject=None, category="pathology")


# ------------------------------------------------------------------------------------------------ Bundle
def _resolve(bundle):
    return {entry["fullUrl"]: entry["resource"] for entry in bundle["entry"]}


def test_prediction_bundle_image_references_resolve():
    predictions = [{"id": "a", "probability": 0.9, "decision": "pneumonia"},
                   {"id": "b", "probability": 0.2, "decision": "normal", "refer": True}]
    bundle = prediction_bundle(predictions, _image_model(), subject_ids=["p1", None])
    whole = get_fhir_model_class("Bundle").model_validate(bundle)
    assert whole.type == "collection"
    by_url = _resolve(bundle)
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types == ["Device"] + ["DiagnosticReport", "Observation", "Observation", "Observation"] * 2
    device_url = bundle["entry"][0]["fullUrl"]
    reports = [r for r in by_url.values() if r["resourceType"] == "DiagnosticReport"]
    for report in reports:
        for result in report["result"]:
            target = by_url[result["reference"]]  # KeyError = a dangling reference
            assert target["resourceType"] == "Observation"
            assert target["device"]["reference"] == device_url
    assert reports[0]["subject"]["reference"] == "Patient/p1" and "subject" not in reports[1]
    assert [float(o["valueQuantity"]["value"]) for o in by_url.values()
            if o["resourceType"] == "Observation" and "valueQuantity" in o] == [0.9, 0.2]


def test_prediction_bundle_risk_models_and_ehr_times():
    predictions = [{"id": "icu-1", "probability": 0.3, "decision": "mortality",
                    "prediction_time": "2150-03-01T10:00:00", "encounter_id": "icu-1"},
                   {"id": "icu-2", "probability": 0.05, "decision": "no_mortality"}]
    bundle = prediction_bundle(predictions, _ehr_model(), subject_ids=["p1", "p2"])
    get_fhir_model_class("Bundle").model_validate(bundle)
    device_url = bundle["entry"][0]["fullUrl"]
    assessments = [e["resource"] for e in bundle["entry"][1:]]
    assert [a["resourceType"] for a in assessments] == ["RiskAssessment"] * 2
    assert all(a["performer"]["reference"] == device_url and "contained" not in a for a in assessments)
    assert assessments[0]["occurrenceDateTime"] == "2150-03-01T10:00:00+00:00"
    assert assessments[0]["encounter"]["reference"] == "Encounter/icu-1"
    assert [a["prediction"][0]["probabilityDecimal"] for a in assessments] == [0.3, 0.05]


def test_prediction_bundle_errors_name_the_position_and_parameter():
    with pytest.raises(DataValidationError, match=r"^prediction 2: .*field probability") as info:
        prediction_bundle([{"id": "a", "probability": 0.1}, {"id": SECRET, "probability": -0.5}], _ehr_model())
    assert SECRET not in str(info.value)
    with pytest.raises(InvalidParameterError, match="'subject_ids' parameter of prediction_bundle must have one"):
        prediction_bundle([{"id": "a", "probability": 0.1}], _ehr_model(), subject_ids=["p", "q"])
    with pytest.raises(InvalidParameterError, match="'modality' parameter of prediction_bundle must be one of"):
        prediction_bundle([], _ehr_model(), modality="genome")


# ------------------------------------------------------------------------------------------------ Device, validation
def test_model_device_from_mapping_and_validation_errors():
    device = model_device({"id": "m", "version": "7", "sha256": SHA, "preprocessor": {"type": "ecg"}})
    obj = _parsed(device)
    assert obj.deviceName[0].name == "m" and obj.version[0].value == "7"
    assert ModelInfo.coerce({"id": "m", "version": "7", "sha256": SHA, "preprocessor": {"type": "ecg"}}).modality \
        == "ecg"
    with pytest.raises(InvalidParameterError, match="'sha256' parameter of ModelInfo must be a non-empty string"):
        ModelInfo(id="m", version="1", sha256="")
    # fhir.resources checks structure, types and cardinality (not value-set bindings)
    bad = {"resourceType": "RiskAssessment", "subject": {"reference": "Patient/x"},
           "prediction": [{"probabilityDecimal": SECRET}]}
    with pytest.raises(FhirOutputError, match=r"invalid FHIR R4B RiskAssessment \(field\(s\): "
                                              r"prediction.0.probabilityDecimal \[") as info:
        validate_resource(bad)
    assert SECRET not in str(info.value)
    with pytest.raises(FhirOutputError,
                       match=r"RiskAssessment \(field\(s\): status \[[a-z_.]*missing\]\); this is a bug"):
        validate_resource({"resourceType": "RiskAssessment", "subject": {"reference": "Patient/x"}})
    assert OUTPUT_SYSTEM.startswith("urn:medai")
