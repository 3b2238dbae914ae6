"""FHIR reader on generated R4B Bundles (round trip, NDJSON, folder, urn:uuid references, mixed units) and every
promised bad-input error — each message names file, resource and field, and never a value of the record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fhir.resources")

from medai.core.errors import DataValidationError, InvalidParameterError  # noqa: E402
from medai.core.timeline import EVENT_COLUMNS  # noqa: E402
from medai.data.synthetic_fhir import synthesize_fhir_bundles, write_fhir_bundles  # noqa: E402
from medai.io.ehr import find_ehr_source, read_timelines  # noqa: E402
from medai.io.fhir import read_fhir  # noqa: E402

SECRET = "Zebulon-Quixote-4711"  # a name / value that must never reach a message


def _patient(pid="p1", **extra):
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "2080-02-03",
            "name": [{"family": SECRET}], **extra}


def _encounter(eid="e1", **extra):
    data = {"resourceType": "Encounter", "id": eid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2150-01-01T10:00:00+00:00", "end": "2150-01-05T10:00:00+00:00"}}
    data.update(extra)
    return data


def _observation(oid="o1", code="8867-4", value=88, unit="/min", **extra):
    data = {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
            "effectiveDateTime": "2150-01-01T12:00:00+02:00",
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}
    data.update(extra)
    return data


def _bundle(*resources):
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}", "resource": r}
                      for i, r in enumerate(resources)]}


def _write(tmp_path: Path, bundle, name="b.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(bundle))
    return path


def test_small_bundle_fields(tmp_path):
    icu = _encounter("e2", type=[{"coding": [{"system": "http://snomed.info/sct", "code": "309904001"}]}],
                     partOf={"reference": "Encounter/e1"},
                     period={"start": "2150-01-01T11:00:00Z", "end": "2150-01-03T10:00:00Z"})
    hospital = _encounter(hospitalization={"dischargeDisposition": {"coding": [{"code": "exp", "display": "Expired"}]}})
    bundle = _bundle(
        _patient(deceasedDateTime="2150-01-05T09:00:00Z"), hospital, icu,
        _observation(),
        _observation("o2", code="8310-5", value=101.3, unit="[degF]"),
        _observation("o3", code="8480-6", value=900, unit="mm[Hg]"),  # implausible: dropped and counted
        _observation("o4", code="72166-2", value=None, valueQuantity=None,
                     valueCodeableConcept={"coding": [{"code": "8517006", "display": "Ex-smoker"}]}),
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
         "encounter": {"reference": "Encounter/e1"},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-9-cm", "code": "038.9"}]}},
        {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
         "onsetDateTime": "2149-06-01"},
        {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/p1"}, "authoredOn": "2150-01-01T13:00:00Z",
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "7512"}]}},
        {"resourceType": "Procedure", "id": "x1", "status": "completed", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "112798008"}]},
         "performedPeriod": {"start": "2150-01-01T11:30:00Z"}},
        {"resourceType": "Organization", "id": "org1", "name": "General"},
    )
    for entry in bundle["entry"]:  # drop the None placeholders of o4
        entry["resource"] = {k: v for k, v in entry["resource"].items() if v is not None}
    [timeline] = read_fhir(_write(tmp_path, bundle))
    assert timeline.patient_id == "p1" and timeline.sex == "F"
    assert timeline.birth_time == pd.Timestamp("2080-02-03")
    enc = timeline.encounters.set_index("encounter_id")
    assert enc.loc["e1", "kind"] == "hospital" and enc.loc["e2", "kind"] == "icu"
    assert enc.loc["e2", "parent_id"] == "e1" and enc.loc["e1", "discharge_location"] == "Expired"
    assert bool(enc.loc["e1", "died"]) and not bool(enc.loc["e2", "died"])  # death after the ICU stay ended
    events = timeline.events
    assert tuple(events.columns) == EVENT_COLUMNS and events["time"].is_monotonic_increasing
    hr = events[events["concept"] == "heart_rate"].iloc[0]
    assert hr["time"] == pd.Timestamp("2150-01-01 10:00:00")  # +02:00 -> UTC
    assert hr["value"] == 88 and hr["unit"] == "/min" and hr["encounter_id"] == "e1"
    assert events.loc[events["concept"] == "temperature", "value"].iloc[0] == pytest.approx(38.5)
    assert timeline.meta["dropped"] == {"out_of_range": 1}
    assert timeline.meta["skipped_resources"] == {"Organization": 1}
    smoking = events[events["code"] == "72166-2"].iloc[0]
    assert smoking["text"] == "Ex-smoker" and np.isnan(smoking["value"]) and smoking["concept"] is None
    assert timeline.diagnoses[["encounter_id", "system", "code"]].values.tolist() == [["e1", "icd9", "038.9"]]
    problem = events[events["source"] == "Condition"].iloc[0]  # no encounter: an event at its onset
    assert problem["system"] == "snomed" and problem["time"] == pd.Timestamp("2149-06-01")
    assert events.loc[events["source"] == "MedicationRequest", "system"].tolist() == ["rxnorm"]
    assert events.loc[events["source"] == "Procedure", "time"].tolist() == [pd.Timestamp("2150-01-01 11:30")]


def test_generated_bundles_round_trip(tmp_path):
    bundles = synthesize_fhir_bundles(6, seed=3)
    assert bundles == synthesize_fhir_bundles(6, seed=3)  # reproducible
    paths = write_fhir_bundles(tmp_path / "fhir", 6, seed=3)
    timelines = read_fhir(tmp_path / "fhir")
    assert len(paths) == 6 and len(timelines) == 6
    observations = sum(1 for b in bundles for e in b["entry"] if e["resource"]["resourceType"] == "Observation")
    panels = sum(1 for b in bundles for e in b["entry"] if e["resource"].get("component"))
    assert sum(len(t.events[t.events["source"] == "Observation"]) for t in timelines) == observations + panels
    for bundle, timeline in zip(bundles, timelines, strict=True):
        patient = bundle["entry"][0]["resource"]
        assert timeline.patient_id == patient["id"]
        assert timeline.meta["dropped"] == {}
        hospital = timeline.encounters[timeline.encounters["kind"] == "hospital"]
        icu = timeline.encounters[timeline.encounters["kind"] == "icu"]
        assert len(hospital) == len(icu) >= 1 and set(icu["parent_id"]) == set(hospital["encounter_id"])
        assert bool(hospital["died"].any()) == ("deceasedDateTime" in patient)
        temperature = timeline.events.loc[timeline.events["concept"] == "temperature", "value"]
        assert temperature.between(33, 42).all() and timeline.events["unit"][temperature.index].eq("Cel").all()
    units = {e["resource"]["valueQuantity"]["code"] for b in bundles for e in b["entry"]
             if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "8310-5"}
    assert units == {"Cel", "[degF]"}  # the mixture the reader must harmonise


def test_ndjson_and_front_door(tmp_path):
    bundle = synthesize_fhir_bundles(2, seed=1)
    lines = [json.dumps(e["resource"]) for b in bundle for e in b["entry"]]
    # NDJSON has no fullUrls: the odd patient's urn:uuid references cannot resolve, so use the even one only.
    even = [json.dumps(e["resource"]) for e in bundle[0]["entry"]]
    path = tmp_path / "export.ndjson"
    path.write_text("\n".join(even) + "\n")
    assert find_ehr_source(path) == "fhir" and find_ehr_source(tmp_path) == "fhir"
    [timeline] = read_timelines(path)
    assert timeline.patient_id == bundle[0]["entry"][0]["resource"]["id"]
    assert len(lines) > len(even)


def _assert_error(tmp_path, bundle, pattern, name="b.json"):
    with pytest.raises(DataValidationError, match=pattern) as error:
        read_fhir(_write(tmp_path, bundle, name))
    assert SECRET not in str(error.value) and "Zebulon" not in str(error.value)
    return str(error.value)


def test_invalid_resource_names_field_paths_only(tmp_path):
    message = _assert_error(tmp_path, _bundle(_patient(birthDate=SECRET)),
                            r"b.json: Patient 'p1' \(entry 0\): is not a valid FHIR R4B Patient; invalid field\(s\): "
                            r"birthDate")
    assert "value_error" in message


def test_not_a_bundle(tmp_path):
    _assert_error(tmp_path, _patient(), r"expected a FHIR Bundle \(resourceType 'Bundle'\), got 'Patient'")


def test_missing_subject(tmp_path):
    obs = _observation()
    del obs["subject"]
    _assert_error(tmp_path, _bundle(_patient(), _encounter(), obs),
                  r"Observation 'o1' \(entry 2\): has no subject \(field subject.reference\)")


def test_subject_pointing_to_unknown_patient(tmp_path):
    obs = _observation(subject={"reference": f"Patient/{SECRET}"})
    _assert_error(tmp_path, _bundle(_patient(), _encounter(), obs),
                  r"Observation 'o1' \(entry 2\): field subject.reference points to no Patient")


def test_bad_date(tmp_path):
    # 2150-02-30 passes the R4B regex but is no calendar date.
    _assert_error(tmp_path, _bundle(_patient(), _encounter(), _observation(effectiveDateTime="2150-02-30")),
                  r"Observation 'o1' \(entry 2\): is not a valid FHIR R4B Observation; invalid field\(s\): "
                  r"effectiveDateTime")


def test_unknown_unit_for_a_mapped_loinc_code(tmp_path):
    bundle = _bundle(_patient(), _encounter(), _observation(code="2345-7", value=42, unit="furlong"))
    _assert_error(tmp_path, bundle, r"Observation 'o1' \(entry 2\), field valueQuantity.code: unknown unit "
                                    r"'furlong' for concept 'glucose'")
    [timeline] = read_fhir(tmp_path / "b.json", on_invalid="skip")
    assert timeline.meta["dropped"] == {"unknown_unit": 1}


def test_encounter_errors(tmp_path):
    no_start = _encounter(period={"end": "2150-01-02T00:00:00Z"})
    _assert_error(tmp_path, _bundle(_patient(), no_start), r"Encounter 'e1' \(entry 1\): has no period.start")
    backwards = _encounter(period={"start": "2150-01-05T00:00:00Z", "end": "2150-01-02T00:00:00Z"})
    _assert_error(tmp_path, _bundle(_patient(), backwards), r"Encounter 'e1' \(entry 1\): period.end is before")
    orphan = _observation(encounter={"reference": "Encounter/nope"})
    _assert_error(tmp_path, _bundle(_patient(), _encounter(), orphan),
                  r"Observation 'o1' \(entry 2\): field encounter.reference points to no Encounter")


def test_invalid_json_and_unknown_type(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"resourceType": "Bundle", "entry": [')
    with pytest.raises(DataValidationError, match="broken.json: the file is not valid JSON"):
        read_fhir(path)
    _assert_error(tmp_path, _bundle({"resourceType": "Patiently", "id": "x"}),
                  r"'Patiently' is not a FHIR R4B resource type \(field resourceType\)")
    with pytest.raises(InvalidParameterError, match="FHIR input not found"):
        read_fhir(tmp_path / "missing.json")


def test_us_core_race_and_ethnicity_become_the_audit_label(tmp_path):
    from medai.data.synthetic_fhir import write_fhir_bundles
    from medai.io.fhir import race_ethnicity, read_fhir

    write_fhir_bundles(tmp_path, 10, seed=3)
    labels = {t.patient_id: t.meta.get("ethnicity") for t in read_fhir(tmp_path)}
    assert sorted(labels.values(), key=str) == sorted(
        ["White", "Black or African American", "Asian", "White", "Hispanic or Latino", "Black or African American",
         None, "White", "White", "Hispanic or Latino"], key=str)
    race = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
    two = {"extension": [{"url": race, "extension": [
        {"url": "ombCategory", "valueCoding": {"code": "2106-3", "display": "White"}},
        {"url": "ombCategory", "valueCoding": {"code": "2028-9", "display": "Asian"}}]}]}
    assert race_ethnicity(two) == "Multiple"
    assert race_ethnicity({"extension": [{"url": race, "extension": [{"url": "text", "valueString": "Maori"}]}]}) \
        == "Maori"
    assert race_ethnicity({}) is None
