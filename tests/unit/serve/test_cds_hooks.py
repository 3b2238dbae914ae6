"""CDS Hooks: the discovery document, the patient-view service on prefetch built from generated FHIR R4B bundles
(medai.data.synthetic_fhir), and every promised bad-request error — naming the field, never a value."""

from __future__ import annotations

import copy
import json
import math

import pytest

pytest.importorskip("fhir.resources")

from medai.core.errors import DataValidationError, InvalidParameterError  # noqa: E402
from medai.data.synthetic_fhir import synthesize_fhir_bundles, write_fhir_bundles  # noqa: E402
from medai.serve.cds_hooks import (  # noqa: E402
    HOOK, INDICATORS, PREFETCH, SUMMARY_MAX, Card, CdsResponse, CdsService, PrefetchMissingError, discovery,
    patient_view, timelines_from_prefetch,
)
from medai.serve.fhir_out import ModelInfo  # noqa: E402
from medai.tasks.ehr import EhrLabeler  # noqa: E402

SHA = "fedcba9876543210" * 4
SECRET = "Zebulon-Quixote-4711"
MODEL = ModelInfo(id="icu-mortality", version="2026-11-26T10:00:00Z", sha256=SHA, modality="ehr",
                  card_url="https://models.example.org/icu-mortality/card",
                  concepts=("heart_rate", "lactate"),
                  task={"kind": "binary", "outcome": "mortality", "class_names": ["no_mortality", "mortality"],
                        "positive_class": "mortality", "observation_hours": 48, "horizon_hours": None})


def heart_rate_predict(timelines):
    """A real (if crude) EHR scorer: for every ICU stay eligible at 48 h, P(death) rises with the mean heart rate
    of the observation window. Uses medai's own labeler for eligibility and the timeline's events."""
    labeler = EhrLabeler("mortality", observation_hours=48, with_labels=False)
    samples, excluded = labeler.samples(timelines)
    predictions = []
    for sample in samples:
        events = timelines[sample.patient].events_before(sample.prediction_time, start=sample.window_start)
        rates = events.loc[events["concept"] == "heart_rate", "value"]
        p = 1.0 / (1.0 + math.exp(-(float(rates.mean()) - 95.0) / 8.0))
        predictions.append({"id": sample.sample_id, "encounter_id": sample.encounter_id, "probability": p,
                            "decision": "mortality" if p >= 0.5 else "no_mortality", "refer": 0.4 <= p <= 0.6,
                            "refer_reason": "probability near the threshold" if 0.4 <= p <= 0.6 else None,
                            "prediction_time": sample.prediction_time.isoformat(),
                            "model": {"id": MODEL.id, "version": MODEL.version, "sha256": SHA}})
    notes = [f"{n} encounter(s) not predicted: {reason}." for reason, n in excluded.items()]
    return predictions, notes


def _request(bundle, **changes):
    """A patient-view request whose prefetch is the bundle split the way a CDS client would send it: the Patient
    resource, and searchset Bundles of Encounters and Observations."""
    patient_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient = patient_entry["resource"]
    # a FHIR server answers searches with server references (Patient/<id>), not the urn:uuid of a transaction
    entries = json.loads(json.dumps(bundle["entry"]).replace(f'"{patient_entry["fullUrl"]}"',
                                                             f'"Patient/{patient["id"]}"'))

    def searchset(rtype):
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"fullUrl": e["fullUrl"], "resource": e["resource"], "search": {"mode": "match"}}
                          for e in entries if e["resource"]["resourceType"] == rtype]}

    request = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
               "fhirServer": "https://ehr.example.org/fhir",
               "context": {"userId": "Practitioner/example", "patientId": patient["id"]},
               "prefetch": {"patient": patient, "encounters": searchset("Encounter"),
                            "observations": searchset("Observation")}}
    request.update(changes)
    return request


@pytest.fixture(scope="module")
def bundles():
    # odd-numbered generated patients refer to their Patient by urn:uuid: both kinds are exercised
    return synthesize_fhir_bundles(4, seed=11)


def test_every_generated_patient_reads(bundles):
    for bundle in bundles:
        (timeline,) = timelines_from_prefetch(_request(bundle))
        assert not timeline.events.empty and not timeline.encounters.empty


@pytest.fixture(scope="module")
def eligible(bundles):
    """A bundle whose patient has an ICU stay eligible at 48 h (found with medai's labeler, not assumed)."""
    for bundle in bundles:
        predictions, _ = heart_rate_predict(timelines_from_prefetch(_request(bundle)))
        if predictions:
            return bundle
    pytest.fail("no generated patient has an eligible ICU stay; change the seed")


# ------------------------------------------------------------------------------------------------ discovery
def test_discovery_lists_one_patient_view_service_per_ehr_model():
    tabular = {"id": "diabetes", "version": "1", "sha256": SHA, "preprocessor": {"type": "tabular"},
               "task": {"kind": "binary"}}
    image = ModelInfo(id="pneumonia-cxr", version="1", sha256=SHA, modality="image")
    document = discovery([MODEL, tabular, image])
    assert list(document) == ["services"]
    (service,) = document["services"]
    CdsService.model_validate(service)
    assert service["hook"] == HOOK and service["id"] == "icu-mortality"
    assert service["description"] and service["title"]
    assert service["prefetch"] == PREFETCH
    assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    assert service["prefetch"]["observations"] == "Observation?patient={{context.patientId}}"
    assert "heart_rate, lactate" in service["usageRequirements"]
    assert "48 h after ICU admission" in service["description"]
    assert all(value is not None for value in service.values())
    assert discovery([]) == {"services": []}


def test_discovery_rejects_a_model_id_that_is_not_a_url_segment():
    bad = ModelInfo(id="icu mortality/v2", version="1", sha256=SHA, modality="ehr")
    with pytest.raises(InvalidParameterError, match="cannot be a CDS Hooks service id"):
        discovery([bad])


# ------------------------------------------------------------------------------------------------ patient-view
def test_patient_view_returns_well_formed_cards(eligible):
    request = _request(eligible)
    response = patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)
    CdsResponse.model_validate(response)
    (card,) = response["cards"]
    Card.model_validate(card)
    predictions, _ = heart_rate_predict(timelines_from_prefetch(request))
    expected = max(predictions, key=lambda p: p["prediction_time"])
    assert len(card["summary"]) <= SUMMARY_MAX
    assert card["summary"].startswith(f"In-hospital death risk {expected['probability']:.0%}")
    assert card["summary"].endswith("— medai icu-mortality")
    level = "refer" if expected["refer"] else ("high" if expected["decision"] == "mortality" else "low")
    assert card["indicator"] == INDICATORS[level]
    assert f"{expected['probability']:.1%}" in card["detail"]
    assert "version 2026-11-26T10:00:00Z" in card["detail"] and SHA[:12] in card["detail"]
    assert card["source"]["label"] == "medai icu-mortality (version 2026-11-26T10:00:00Z)"
    assert card["source"]["url"] == MODEL.card_url
    assert card["source"]["topic"]["code"] == "risk-prediction"
    patient_id = request["context"]["patientId"]
    assert patient_id not in card["summary"]
    assert len(card["uuid"]) == 36


def test_patient_view_filters_by_encounter_in_context(eligible):
    predictions, _ = heart_rate_predict(timelines_from_prefetch(_request(eligible)))
    admission = predictions[0]["encounter_id"]
    request = _request(eligible)
    request["context"]["encounterId"] = admission
    (card,) = patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)["cards"]
    assert f"{predictions[0]['probability']:.1%}" in card["detail"]
    request["context"]["encounterId"] = "an-encounter-that-is-not-there"
    assert patient_view("icu-mortality", request, heart_rate_predict, model=MODEL) == {"cards": []}


def test_patient_view_refer_card_is_a_warning(eligible):
    def uncertain(timelines):
        predictions, notes = heart_rate_predict(timelines)
        return [{**p, "probability": 0.5, "refer": True, "refer_reason": "conformal set holds both classes",
                 "prediction_set": ["no_mortality", "mortality"]} for p in predictions], notes

    (card,) = patient_view("icu-mortality", _request(eligible), uncertain, model=MODEL)["cards"]
    assert card["indicator"] == "warning"
    assert "uncertain: refer to a clinician" in card["summary"]
    assert "conformal set holds both classes" in card["detail"] and "{no_mortality, mortality}" in card["detail"]


def test_patient_view_phenotype_card_lists_findings(eligible):
    phenotypes = ModelInfo(id="icu-phenotype", version="1", sha256=SHA, modality="ehr",
                           task={"kind": "multilabel", "outcome": "phenotype", "class_names": ["septicaemia", "shock"],
                                 "observation_hours": 24})

    def phenotype_predict(timelines):
        predictions, notes = heart_rate_predict(timelines)
        return [{"id": p["id"], "probability": {"septicaemia": p["probability"], "shock": 0.05},
                 "decision": ["septicaemia"] if p["probability"] >= 0.5 else [], "refer": False}
                for p in predictions], notes

    (card,) = patient_view("icu-phenotype", _request(eligible), phenotype_predict, model=phenotypes)["cards"]
    expected = phenotype_predict(timelines_from_prefetch(_request(eligible)))[0][-1]
    found = bool(expected["decision"])
    assert card["summary"].startswith("1 predicted finding(s): septicaemia" if found else "No predicted finding")
    assert card["indicator"] == ("warning" if found else "info")
    assert "| shock | 5% |" in card["detail"]


def test_patient_view_not_eligible_gives_no_card_or_an_info_card(eligible):
    request = _request(eligible)
    request["prefetch"]["encounters"] = None  # the spec: the client has no data for this template
    request["prefetch"]["observations"] = None
    assert patient_view("icu-mortality", request, heart_rate_predict, model=MODEL) == {"cards": []}
    (card,) = patient_view("icu-mortality", request, heart_rate_predict, model=MODEL,
                           explain_ineligible=True)["cards"]
    assert card["indicator"] == "info" and card["summary"].startswith("No in-hospital death prediction")


def test_patient_view_from_written_bundle_files(tmp_path):
    (path,) = write_fhir_bundles(tmp_path, 1, seed=5)
    bundle = json.loads(path.read_text())
    timelines = timelines_from_prefetch(_request(bundle))
    assert len(timelines) == 1 and timelines[0].meta["source"] == "CDS Hooks prefetch"
    n_observations = sum(e["resource"]["resourceType"] == "Observation" for e in bundle["entry"])
    assert len(timelines[0].events) >= n_observations  # blood-pressure panels add one event per component
    assert set(timelines[0].encounters["kind"]) == {"hospital", "icu"}


# ------------------------------------------------------------------------------------------------ bad requests
def test_wrong_hook_and_missing_fields(bundles):
    request = _request(bundles[0], hook="order-sign")
    with pytest.raises(DataValidationError, match="Field hook must be 'patient-view'"):
        patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)
    request = _request(bundles[0])
    del request["context"]["patientId"]
    with pytest.raises(DataValidationError, match=r"context\.patientId \(missing\)"):
        patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)
    request = _request(bundles[0])
    del request["hookInstance"]
    with pytest.raises(DataValidationError, match=r"hookInstance \(missing\)"):
        patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)
    with pytest.raises(InvalidParameterError, match="CDS service 'other' is not model 'icu-mortality'"):
        patient_view("other", _request(bundles[0]), heart_rate_predict, model=MODEL)


def test_missing_prefetch_is_a_412(bundles):
    request = _request(bundles[0])
    del request["prefetch"]
    with pytest.raises(PrefetchMissingError, match="has no prefetch .field prefetch.. medai does not query") as info:
        patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)
    assert info.value.status_code == 412
    request = _request(bundles[0])
    del request["prefetch"]["observations"]
    with pytest.raises(PrefetchMissingError, match="lacks prefetch key.s. observations"):
        patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)
    request = _request(bundles[0])
    request["prefetch"]["encounters"] = {"resourceType": "OperationOutcome",
                                         "issue": [{"severity": "error", "code": "processing"}]}
    with pytest.raises(PrefetchMissingError, match="prefetch key encounters: is an OperationOutcome"):
        patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)


def test_invalid_prefetched_resource_names_key_entry_and_field_never_values(bundles):
    request = copy.deepcopy(_request(bundles[0]))
    observation = request["prefetch"]["observations"]["entry"][2]["resource"]
    observation["valueQuantity"]["value"] = SECRET
    with pytest.raises(DataValidationError, match=r"prefetch key observations, entry 2 \(Observation\): is not a "
                                                  r"valid FHIR R4B Observation; invalid field\(s\): valueQuantity"
                       ) as info:
        patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)
    message = str(info.value)
    assert SECRET not in message and request["context"]["patientId"] not in message


def test_reader_errors_are_relabelled_without_ids(bundles):
    request = copy.deepcopy(_request(bundles[0]))
    # an Observation of an encounter the client did not prefetch
    request["prefetch"]["encounters"]["entry"] = [
        e for e in request["prefetch"]["encounters"]["entry"] if "icu" not in e["resource"]["id"]]
    with pytest.raises(DataValidationError, match=r"prefetch key observations, entry \d+ \(Observation\): field "
                                                  r"encounter.reference points to no Encounter") as info:
        patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)
    message = str(info.value)
    assert request["context"]["patientId"] not in message and "medai-cds-" not in message


def test_patient_of_another_id_is_rejected(bundles):
    request = _request(bundles[0])
    request["context"]["patientId"] = SECRET
    with pytest.raises(DataValidationError, match="does not hold the Patient named by context.patientId") as info:
        patient_view("icu-mortality", request, heart_rate_predict, model=MODEL)
    assert SECRET not in str(info.value)
