"""Generated FHIR R4B Bundles of ICU patients, for tests and end-to-end runs without real records.

One Bundle (type ``collection``) per patient: a Patient, one or two hospital admissions (Encounter class ``IMP``)
each with an ICU stay (Encounter ``type`` SNOMED 309904001 "Intensive care unit", ``partOf`` the admission),
vital signs every 4 h of the first 72 h of the ICU stay and laboratory panels every 12 h as LOINC Observations,
ICD-9-CM Conditions of the admission, MedicationRequests (RxNorm) and an intubation Procedure for the sickest.

Units are mixed as in real feeds (chosen by patient index, so any 4 consecutive patients mix them): temperature
in °C or °F, weight in kg or lb, glucose in mg/dL or mmol/L, creatinine in mg/dL or µmol/L, haemoglobin in g/dL
or g/L; half the patients have their blood pressure as one panel Observation (LOINC 85354-9 with components), the
other half as separate Observations; half refer to their Patient as ``Patient/ID``, the other half by ``urn:uuid``
fullUrl.

Outcome signal: each patient has a latent severity ``s ~ N(0, 1)``; in-hospital death (during the last admission,
at least 52 h after ICU admission, so a 48 h-window mortality task has a label) has probability
``sigmoid(-1.1 + 1.6 s)`` (about 30 % of patients), and the vitals and labs shift with ``s`` (heart rate
+10/SD, systolic pressure -10/SD, respiratory rate +3/SD, SpO2 -1.5/SD, GCS -2/SD, lactate and creatinine
log-normal in ``s``) with measurement noise, so a model using the first 48 h beats chance on ~200 patients
without being trivially perfect.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from medai.core.errors import invalid_parameter
from medai.core.outputs import write_text

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD9 = "http://hl7.org/fhir/sid/icd-9-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
_EPOCH = dt.datetime(2150, 1, 1, tzinfo=dt.UTC)

# (LOINC, display, concept unit, mean at s=0, shift per SD of severity, noise SD, low, high, decimals)
_VITALS = (
    ("8867-4", "Heart rate", "/min", 82.0, 10.0, 8.0, 30, 200, 0),
    ("9279-1", "Respiratory rate", "/min", 17.0, 3.0, 3.0, 6, 50, 0),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 97.0, -1.5, 1.5, 70, 100, 0),
    ("8310-5", "Body temperature", "Cel", 37.0, 0.35, 0.4, 34, 41.5, 1),
    ("9269-2", "Glasgow coma score total", "{score}", 14.0, -2.0, 1.0, 3, 15, 0),
)
_BP = (("8480-6", "Systolic blood pressure", 120.0, -10.0, 12.0, 60, 220),
       ("8462-4", "Diastolic blood pressure", 65.0, -5.0, 8.0, 30, 120))
# (LOINC, display, canonical unit, log-normal?, mean, shift/SD, noise, low, high, decimals)
_LABS = (
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", False, 130.0, 12.0, 25.0, 40, 600, 0),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", True, 1.0, 0.3, 0.2, 0.2, 12, 2),
    ("2524-7", "Lactate [Moles/volume] in Serum or Plasma", "mmol/L", True, 1.5, 0.35, 0.2, 0.3, 20, 1),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", False, 139.0, 0.0, 3.0, 120, 160, 0),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", False, 4.1, 0.15, 0.4, 2.5, 7, 1),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", False, 9.0, 2.5, 2.5, 0.5, 60, 1),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", False, 11.5, -0.6, 1.0, 5, 18, 1),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", False, 220.0, -25.0, 40.0, 10, 700, 0),
)
_DIAGNOSES = (  # (ICD-9-CM code, display, base log-odds, log-odds per SD of severity)
    ("038.9", "Unspecified septicemia", -1.2, 0.9), ("428.0", "Congestive heart failure, unspecified", -1.0, 0.3),
    ("584.9", "Acute kidney failure, unspecified", -1.3, 0.8), ("486", "Pneumonia, organism unspecified", -1.0, 0.4),
    ("401.9", "Unspecified essential hypertension", 0.0, 0.0), ("250.00", "Diabetes mellitus type II", -0.8, 0.0),
    ("518.81", "Acute respiratory failure", -1.5, 1.0),
)
_DRUGS = (("7512", "Norepinephrine", 0.6), ("11124", "Vancomycin", 0.3), ("5224", "Heparin", -1.0))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _time(t: dt.datetime) -> str:
    return t.isoformat(timespec="seconds")


class _Builder:
    def __init__(self, rng: np.random.Generator, index: int, seed: int) -> None:
        self.rng = rng
        self.pid = f"synth{seed}-{index:05d}"
        self.entries: list[dict[str, Any]] = []
        self.counter = 0

    def uuid(self) -> str:
        bits = int(self.rng.integers(0, 2**63)) << 64 | int(self.rng.integers(0, 2**63))
        return f"urn:uuid:{uuid.UUID(int=bits, version=4)}"

    def add(self, resource: dict[str, Any]) -> str:
        self.counter += 1
        resource.setdefault("id", f"{self.pid}-{resource['resourceType'][:3].lower()}{self.counter}")
        full_url = self.uuid()
        self.entries.append({"fullUrl": full_url, "resource": resource})
        return full_url


def _quantity(value: float, unit: str, decimals: int) -> dict[str, Any]:
    value = round(float(value), decimals)
    return {"value": int(value) if decimals == 0 else value, "unit": unit, "system": UCUM, "code": unit}


def _observation(b: _Builder, subject: dict, encounter: str, when: dt.datetime, code: str, display: str,
                 category: str, **value: Any) -> None:
    b.add({"resourceType": "Observation", "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": category}]}],
           "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
           "subject": subject, "encounter": {"reference": f"Encounter/{encounter}"},
           "effectiveDateTime": _time(when), **value})


_CDC_RACE = "urn:oid:2.16.840.1.113883.6.238"
_RACES = (("2106-3", "White"), ("2054-5", "Black or African American"), ("2028-9", "Asian"), ("2106-3", "White"))


def _race_ethnicity_extensions(index: int) -> dict[str, Any]:
    """US Core race and ethnicity extensions by patient index (not drawn from the generator, so adding them changed
    no other value): a mix of OMB categories, every fifth patient Hispanic or Latino, every seventh without any."""
    if index % 7 == 6:
        return {}
    code, display = _RACES[index % len(_RACES)]
    hispanic = index % 5 == 4
    ethnicity = ("2135-2", "Hispanic or Latino") if hispanic else ("2186-5", "Not Hispanic or Latino")
    return {"extension": [
        {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
            {"url": "ombCategory", "valueCoding": {"system": _CDC_RACE, "code": code, "display": display}},
            {"url": "text", "valueString": display}]},
        {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity", "extension": [
            {"url": "ombCategory", "valueCoding": {"system": _CDC_RACE, "code": ethnicity[0],
                                                   "display": ethnicity[1]}},
            {"url": "text", "valueString": ethnicity[1]}]}]}


def _patient_bundle(rng: np.random.Generator, index: int, seed: int) -> dict[str, Any]:
    b = _Builder(rng, index, seed)
    severity = float(rng.normal())
    dies = bool(rng.random() < _sigmoid(-1.1 + 1.6 * severity))
    age_years = float(rng.uniform(25, 88))
    n_admissions = 1 if rng.random() < 0.7 else 2
    first = _EPOCH + dt.timedelta(days=float(rng.uniform(0, 3000)))
    birth = (first - dt.timedelta(days=age_years * 365.25)).date()
    patient: dict[str, Any] = {"resourceType": "Patient", "id": b.pid,
                               "gender": "female" if rng.random() < 0.45 else "male", "birthDate": birth.isoformat()}
    patient.update(_race_ethnicity_extensions(index))
    patient_url = b.add(patient)
    subject = {"reference": patient_url} if index % 2 else {"reference": f"Patient/{b.pid}"}
    # Units by patient index (not at random) so that any 4 consecutive patients already mix them.
    fahrenheit, pounds = (index // 2) % 2 == 1, index % 3 == 1
    mmol_glucose, umol_creatinine, g_per_l_hb = index % 5 in (1, 3), index % 5 in (2, 4), index % 4 == 3
    bp_panel = index % 2 == 0
    start = first
    for admission in range(n_admissions):
        last = admission == n_admissions - 1
        sick = severity + float(rng.normal(0, 0.3))
        icu_start = start + dt.timedelta(hours=float(rng.uniform(1, 12)))
        icu_hours = float(rng.uniform(30, 150)) * (1.3 if dies and last else 1.0)
        death = None
        if dies and last:
            icu_hours = max(icu_hours, 60.0)
            death = icu_start + dt.timedelta(hours=float(rng.uniform(52, icu_hours)))
        icu_end = death or icu_start + dt.timedelta(hours=icu_hours)
        hospital_end = death or icu_end + dt.timedelta(hours=float(rng.uniform(12, 200)))
        disposition = ({"coding": [{"system": DISPOSITION, "code": "exp", "display": "Expired"}]} if death else
                       {"coding": [{"system": DISPOSITION, "code": "home", "display": "Home"}]})
        hospital_id = f"{b.pid}-adm{admission}"
        b.add({"resourceType": "Encounter", "id": hospital_id, "status": "finished",
               "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
               "subject": subject, "period": {"start": _time(start), "end": _time(hospital_end)},
               "hospitalization": {"dischargeDisposition": disposition}})
        icu_id = f"{b.pid}-icu{admission}"
        b.add({"resourceType": "Encounter", "id": icu_id, "status": "finished",
               "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
               "type": [{"coding": [{"system": SNOMED, "code": "309904001", "display": "Intensive care unit"}]}],
               "subject": subject, "partOf": {"reference": f"Encounter/{hospital_id}"},
               "period": {"start": _time(icu_start), "end": _time(icu_end)}})
        # Vital signs every 4 h of the first 72 h in the ICU.
        horizon = min(icu_end, icu_start + dt.timedelta(hours=72))
        when = icu_start + dt.timedelta(minutes=float(rng.uniform(5, 60)))
        while when < horizon:
            for code, display, unit, mean, shift, noise, low, high, decimals in _VITALS:
                value = float(np.clip(mean + shift * sick + rng.normal(0, noise), low, high))
                if code == "8310-5" and fahrenheit:
                    _observation(b, subject, icu_id, when, code, display, "vital-signs",
                                 valueQuantity=_quantity(value * 9 / 5 + 32, "[degF]", 1))
                else:
                    _observation(b, subject, icu_id, when, code, display, "vital-signs",
                                 valueQuantity=_quantity(value, unit, decimals))
            pressures = [float(np.clip(m + s * sick + rng.normal(0, n), lo, hi)) for _, _, m, s, n, lo, hi in _BP]
            pressures[1] = min(pressures[1], pressures[0] - 15)
            if bp_panel:
                b.add({"resourceType": "Observation", "status": "final",
                       "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
                       "subject": subject, "encounter": {"reference": f"Encounter/{icu_id}"},
                       "effectiveDateTime": _time(when),
                       "component": [{"code": {"coding": [{"system": LOINC, "code": c, "display": d}]},
                                      "valueQuantity": _quantity(v, "mm[Hg]", 0)}
                                     for (c, d, *_), v in zip(_BP, pressures, strict=True)]})
            else:
                for (code, display, *_), value in zip(_BP, pressures, strict=True):
                    _observation(b, subject, icu_id, when, code, display, "vital-signs",
                                 valueQuantity=_quantity(value, "mm[Hg]", 0))
            when += dt.timedelta(hours=4, minutes=float(rng.uniform(-20, 20)))
        # Laboratory panels every 12 h from admission to the end of the ICU stay's first 72 h.
        when = start + dt.timedelta(minutes=float(rng.uniform(10, 90)))
        while when < horizon:
            for code, display, unit, lognormal, mean, shift, noise, low, high, decimals in _LABS:
                if lognormal:
                    value = math.exp(math.log(mean) + shift * sick + rng.normal(0, noise))
                else:
                    value = mean + shift * sick + rng.normal(0, noise)
                value = float(np.clip(value, low, high))
                quantity = _quantity(value, unit, decimals)
                if code == "2345-7" and mmol_glucose:
                    quantity = _quantity(value / 18.016, "mmol/L", 1)
                elif code == "2160-0" and umol_creatinine:
                    quantity = _quantity(value * 88.42, "umol/L", 0)
                elif code == "718-7" and g_per_l_hb:
                    quantity = _quantity(value * 10, "g/L", 0)
                _observation(b, subject, hospital_id, when, code, display, "laboratory", valueQuantity=quantity)
            when += dt.timedelta(hours=12, minutes=float(rng.uniform(-60, 60)))
        weight = float(np.clip(rng.normal(80, 15), 40, 180))
        _observation(b, subject, icu_id, icu_start + dt.timedelta(minutes=30), "29463-7", "Body weight",
                     "vital-signs", valueQuantity=(_quantity(weight / 0.45359237, "[lb_av]", 1) if pounds
                                                   else _quantity(weight, "kg", 1)))
        _observation(b, subject, icu_id, icu_start + dt.timedelta(minutes=31), "72166-2", "Tobacco smoking status",
                     "social-history", valueCodeableConcept={"coding": [
                         {"system": SNOMED, "code": "8517006", "display": "Ex-smoker"}]})
        for code, display, base, per_sd in _DIAGNOSES:
            if rng.random() < _sigmoid(base + per_sd * sick):
                b.add({"resourceType": "Condition", "subject": subject,
                       "encounter": {"reference": f"Encounter/{hospital_id}"},
                       "code": {"coding": [{"system": ICD9, "code": code, "display": display}]},
                       "recordedDate": _time(hospital_end)})
        for code, display, per_sd in _DRUGS:
            if rng.random() < _sigmoid(per_sd * sick):
                b.add({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                       "subject": subject, "encounter": {"reference": f"Encounter/{icu_id}"},
                       "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": display}]},
                       "authoredOn": _time(icu_start + dt.timedelta(hours=float(rng.uniform(0.5, 6))))})
        if sick > 0.8:
            b.add({"resourceType": "Procedure", "status": "completed", "subject": subject,
                   "encounter": {"reference": f"Encounter/{icu_id}"},
                   "code": {"coding": [{"system": SNOMED, "code": "112798008",
                                        "display": "Insertion of endotracheal tube"}]},
                   "performedDateTime": _time(icu_start + dt.timedelta(hours=float(rng.uniform(0.2, 3))))})
        if death is not None:
            patient["deceasedDateTime"] = _time(death)
        start = hospital_end + dt.timedelta(days=float(rng.uniform(5, 200)))
    return {"resourceType": "Bundle", "id": f"{b.pid}-bundle", "type": "collection", "entry": b.entries}


def synthesize_fhir_bundles(n_patients: int, *, seed: int, validate: bool = True) -> list[dict[str, Any]]:
    """``n_patients`` FHIR R4B Bundles (JSON dicts), one per patient, reproducible for a given ``seed``.

    Args:
        n_patients: number of patients (>= 1).
        seed: seed of the generator (patients differ between seeds; ids carry the seed).
        validate: validate every resource with ``fhir.resources.R4B`` (about 0.1 ms per resource).

    Raises:
        InvalidParameterError: ``n_patients`` is not a positive integer.
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, int) or n_patients < 1:
        raise invalid_parameter("n_patients", "synthesize_fhir_bundles", "a positive integer", n_patients)
    rng = np.random.default_rng(seed)
    bundles = [_patient_bundle(rng, index, seed) for index in range(n_patients)]
    if validate:
        from fhir.resources.R4B import get_fhir_model_class

        for bundle in bundles:
            get_fhir_model_class("Bundle").model_validate({k: v for k, v in bundle.items() if k != "entry"})
            for entry in bundle["entry"]:
                resource = entry["resource"]
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return bundles


def write_fhir_bundles(folder: str | Path, n_patients: int, *, seed: int) -> list[Path]:
    """Write :func:`synthesize_fhir_bundles` as ``folder/<patient id>.json`` (atomically); return the paths."""
    folder = Path(folder)
    paths = []
    for bundle in synthesize_fhir_bundles(n_patients, seed=seed):
        path = folder / f"{bundle['id'].removesuffix('-bundle')}.json"
        write_text(path, json.dumps(bundle, indent=1))
        paths.append(path)
    return paths
