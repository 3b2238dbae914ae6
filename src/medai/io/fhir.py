"""FHIR R4 Bundles / NDJSON -> one :class:`~medai.core.timeline.Timeline` per Patient.

Every resource is validated with ``fhir.resources.R4B`` (FHIR R4 and R4B define the resources read here the same
way) before it is used. Read:

==================  =======================================================================================
Patient             ``gender`` (``male``/``female`` -> ``M``/``F``), ``birthDate``, ``deceasedDateTime``; the US Core
                    race/ethnicity extensions -> ``meta["ethnicity"]`` (subgroup audit only)
Encounter           inpatient classes (``IMP``, ``ACUTE``, ``NONAC``) -> ``hospital``; an ICU stay (class code
                    ``ICU``, or a ``type`` coded SNOMED 309904001 / ``ICU`` / "intensive care") -> ``icu``;
                    ``partOf`` -> ``parent_id``; ``period``; ``hospitalization.dischargeDisposition`` ->
                    ``discharge_location``; died when the disposition says expired (code ``exp``, or "expired",
                    "died", "dead", "death" in its text) or the patient's ``deceasedDateTime`` is in the period.
                    Other classes (ambulatory, emergency, virtual, home) are not admissions: skipped, counted
                    (``encounter_not_inpatient``), and their events keep encounter None.
Observation         time = ``effectiveDateTime`` / ``effectiveInstant`` / ``effectivePeriod.start``;
                    ``valueQuantity`` -> ``value`` (harmonised when the LOINC code maps to a concept; the unit
                    is the UCUM ``code``, else ``unit``); ``valueCodeableConcept`` / ``valueString`` -> ``text``;
                    each ``component`` (blood-pressure panels) is an event of its own. ``entered-in-error`` /
                    ``cancelled`` observations are dropped and counted.
Condition           with an ``encounter``: a row of the diagnoses table (coded at discharge, no time); without:
                    an event at ``onsetDateTime`` / ``onsetPeriod.start`` / ``recordedDate``
MedicationRequest   event at ``authoredOn`` (code of ``medicationCodeableConcept``)
Procedure           event at ``performedDateTime`` / ``performedPeriod.start``
==================  =======================================================================================

Other resource types are validated and counted in ``meta["skipped_resources"]``. ``subject`` references may be
``Patient/ID``, an absolute URL ending in ``Patient/ID``, or the ``fullUrl`` of a Patient entry
(``urn:uuid:...``), also across files of a folder. Times with a UTC offset are converted to UTC and stored
naive; date-only values are taken as midnight.

Errors name the file, the resource (``resourceType`` and ``id``, or its index in the bundle / line of the NDJSON
file) and the field — never a value, name or identifier from the record.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.core.timeline import (
    DIAGNOSIS_COLUMNS,
    ENCOUNTER_COLUMNS,
    EVENT_COLUMNS,
    Timeline,
    empty_diagnoses,
    empty_encounters,
    sort_events,
)
from medai.io.ehr_concepts import (
    CONCEPTS,
    LOINC_SYSTEM,
    LOINC_TO_CONCEPT,
    OnInvalid,
    _on_invalid,
    conversion,
    unknown_unit_error,
)

READER = "fhir"
FHIR_SUFFIXES = (".json", ".ndjson")
INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC", "INPATIENT"})
ICU_CODES = frozenset({"ICU", "309904001"})
ICU_TEXT = ("intensive care", "icu")
EXPIRED_TEXT = ("expired", "died", "dead", "death", "deceased")
#: FHIR code system URL -> the short name used in the event and diagnosis tables (others keep their URL).
SYSTEM_NAMES = {
    "http://hl7.org/fhir/sid/icd-9-cm": "icd9", "http://hl7.org/fhir/sid/icd-9": "icd9",
    "http://hl7.org/fhir/sid/icd-10": "icd10", "http://hl7.org/fhir/sid/icd-10-cm": "icd10",
    "http://snomed.info/sct": "snomed", "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
}
_DROPPED_STATUS = frozenset({"entered-in-error", "cancelled"})


def _fhir_models():
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError:
        from medai.core.errors import MissingDependencyError

        raise MissingDependencyError("Reading FHIR needs fhir.resources: pip install 'fhir.resources>=8'") from None
    return get_fhir_model_class


@dataclass
class _Resource:
    data: dict[str, Any]
    where: str  # "file: Observation 'id' (entry 3)" — never a value of the record
    full_url: str | None = None


@dataclass
class _Patient:
    sex: str | None
    birth: str | None
    death: str | None
    where: str
    race_ethnicity: str | None = None
    encounters: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)  # (time str, field, where, encounter, system, code, ...)
    diagnoses: list[tuple] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)


# ------------------------------------------------------------------------------------------------ input files
def fhir_files(path: Path) -> list[Path]:
    """The ``.json`` / ``.ndjson`` files of ``path`` (a file, or a folder searched recursively, sorted)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FHIR_SUFFIXES)
    return [path]


def _label(resource: Any, position: str) -> str:
    if not isinstance(resource, dict):
        return f"{position} (not a JSON object)"
    rtype = resource.get("resourceType", "resource without resourceType")
    rid = resource.get("id")
    return f"{rtype} '{rid}' ({position})" if isinstance(rid, str) else f"{rtype} ({position})"


def _iter_resources(path: Path) -> Iterator[_Resource]:
    if path.suffix.lower() == ".ndjson":
        with path.open(encoding="utf-8") as stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                item = _loads(line, path, f"line {number}")
                if isinstance(item, dict) and item.get("resourceType") == "Bundle":
                    yield from _bundle_entries(item, path, f"line {number}, ")
                else:
                    yield _Resource(item, f"{path}: {_label(item, f'line {number}')}")
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataValidationError(f"{path}: cannot read the file as UTF-8 text ({type(error).__name__}).") from None
    item = _loads(text, path, "the file")
    if not isinstance(item, dict) or item.get("resourceType") != "Bundle":
        got = item.get("resourceType") if isinstance(item, dict) else type(item).__name__
        raise DataValidationError(
            f"{path}: expected a FHIR Bundle (resourceType 'Bundle'), got {got!r}. Wrap the resources in a Bundle "
            "(type 'collection' or 'transaction'), or write one resource per line as .ndjson.")
    yield from _bundle_entries(item, path, "")


def _loads(text: str, path: Path, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataValidationError(
            f"{path}: {where} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}).") from None


def _bundle_entries(bundle: dict[str, Any], path: Path, prefix: str) -> Iterator[_Resource]:
    models = _fhir_models()
    shell = {k: v for k, v in bundle.items() if k != "entry"}
    _validate(models, shell, f"{path}: {prefix}Bundle")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise DataValidationError(f"{path}: {prefix}Bundle.entry must be a list of entries.")
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise DataValidationError(f"{path}: {prefix}Bundle entry {index} has no resource object (field "
                                      f"entry[{index}].resource).")
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        yield _Resource(resource, f"{path}: {_label(resource, f'{prefix}entry {index}')}", full_url)


def _validate(models, data: dict[str, Any], where: str) -> None:
    """Validate with fhir.resources R4B; summarise pydantic's error by field path and error type only."""
    rtype = data.get("resourceType")
    if not isinstance(rtype, str):
        raise DataValidationError(f"{where}: has no resourceType (field resourceType). Every FHIR resource names its "
                                  "type.")
    try:
        model = models(rtype)
    except (KeyError, ValueError, AttributeError):
        raise DataValidationError(f"{where}: {rtype!r} is not a FHIR R4B resource type (field resourceType).") from None
    try:
        model.model_validate(data)
    except Exception as error:  # pydantic.ValidationError; its str() quotes input values, so never show it
        errors = getattr(error, "errors", None)
        if not callable(errors):
            raise DataValidationError(f"{where}: is not a valid FHIR R4B {rtype} ({type(error).__name__}).") from None
        paths = []
        for item in errors(include_input=False, include_url=False):
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "__root__") or "(resource)"
            paths.append(f"{loc} [{item.get('type', 'invalid')}]")
        shown = ", ".join(paths[:8]) + (f", ... ({len(paths)} in all)" if len(paths) > 8 else "")
        raise DataValidationError(
            f"{where}: is not a valid FHIR R4B {rtype}; invalid field(s): {shown}. Fix those fields.") from None


# ------------------------------------------------------------------------------------------------ helpers
def _codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding", []) or [] if isinstance(c, dict)]


def _first_code(concept: Any, prefer: str | None = None) -> tuple[str | None, str | None]:
    """(system short name, code) of the preferred system's coding, else of the first coding."""
    codings = [c for c in _codings(concept) if c.get("code") is not None]
    if not codings:
        return None, None
    chosen = next((c for c in codings if c.get("system") == prefer), codings[0])
    system = chosen.get("system")
    return SYSTEM_NAMES.get(system, system), str(chosen["code"])


def _reference(value: Any) -> str | None:
    return value.get("reference") if isinstance(value, dict) and isinstance(value.get("reference"), str) else None


def _text_of(concept: Any) -> str | None:
    for coding in _codings(concept):
        if coding.get("display"):
            return str(coding["display"])
    if isinstance(concept, dict) and concept.get("text"):
        return str(concept["text"])
    codings = _codings(concept)
    return str(codings[0].get("code")) if codings and codings[0].get("code") is not None else None


class _References:
    """Resolve ``Patient/ID``, ``.../Patient/ID`` and ``urn:uuid`` fullUrls to resource ids."""

    def __init__(self) -> None:
        self.ids: dict[str, set[str]] = {"Patient": set(), "Encounter": set()}
        self.full_urls: dict[str, tuple[str, str]] = {}

    def add(self, rtype: str, rid: str, full_url: str | None) -> None:
        self.ids[rtype].add(rid)
        if full_url:
            self.full_urls[full_url] = (rtype, rid)

    def resolve(self, reference: str, rtype: str) -> str | None:
        if reference in self.full_urls:
            kind, rid = self.full_urls[reference]
            return rid if kind == rtype else None
        parts = reference.rstrip("/").split("/")
        if "_history" in parts:  # Patient/ID/_history/2
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2 and parts[-2] == rtype and parts[-1] in self.ids[rtype]:
            return parts[-1]
        return None


def _resource_id(resource: _Resource) -> str | None:
    rid = resource.data.get("id")
    if isinstance(rid, str) and rid:
        return rid
    if resource.full_url:
        return resource.full_url.rstrip("/").split("/")[-1].split(":")[-1]
    return None


# ------------------------------------------------------------------------------------------------ main reader
def read_fhir(path: str | Path, *, on_invalid: OnInvalid | str = OnInvalid.RAISE) -> list[Timeline]:
    """Read FHIR R4 (R4B) resources into one timeline per Patient.

    Args:
        path: a Bundle ``.json`` file, an ``.ndjson`` file (one resource or Bundle per line), or a folder of them
            (searched recursively; references may cross files).
        on_invalid: ``"raise"`` on a unit that is not known for the concept of a mapped LOINC code; ``"skip"``:
            drop such values and count them as ``unknown_unit``.

    Returns:
        Timelines in the order the Patients were first met, each checked. ``meta``: ``source`` (the path),
        ``reader`` ("fhir"), ``fhir_version`` ("R4B"), ``dropped`` (reason -> count: ``out_of_range``,
        ``unknown_unit``, ``no_time``, ``entered_in_error``, ``no_value``, ``encounter_not_inpatient``),
        ``skipped_resources`` (resource type -> count, for types not read).

    Raises:
        InvalidParameterError: ``path`` does not exist, or a folder holds no .json / .ndjson file.
        DataValidationError: naming file, resource and field: invalid JSON, a .json file that is not a Bundle, a
            resource that fails R4B validation (field paths only), a resource without ``subject`` or whose
            subject is not a Patient of the input, an Encounter without ``period.start`` or ending before it
            starts, an unparseable date, a reference to an unknown Encounter, a unit not known for a mapped LOINC
            code (with ``on_invalid="raise"``).
    """
    path = Path(path)
    mode = _on_invalid(on_invalid, "read_fhir")
    if not path.exists():
        raise InvalidParameterError(f"FHIR input not found: {path}. Pass a Bundle .json file, an .ndjson file or a "
                                    "folder of them.")
    files = fhir_files(path)
    if not files:
        raise InvalidParameterError(f"{path}: holds no .json or .ndjson file. Pass FHIR Bundles (.json) or NDJSON.")
    models = _fhir_models()
    resources: list[_Resource] = []
    for file in files:
        for resource in _iter_resources(file):
            _validate(models, resource.data, resource.where)
            resources.append(resource)
    return _build(path, resources, mode)


def _build(path: Path, resources: list[_Resource], mode: OnInvalid) -> list[Timeline]:
    refs = _References()
    patients: dict[str, _Patient] = {}
    for resource in resources:
        rtype = resource.data["resourceType"]
        if rtype in ("Patient", "Encounter"):
            rid = _resource_id(resource)
            if rid is None:
                raise DataValidationError(f"{resource.where}: has neither id nor fullUrl (field id); other resources "
                                          "cannot refer to it.")
            refs.add(rtype, rid, resource.full_url)
            if rtype == "Patient":
                data = resource.data
                gender = data.get("gender")
                patients.setdefault(rid, _Patient(
                    sex={"male": "M", "female": "F"}.get(gender), birth=data.get("birthDate"),
                    death=data.get("deceasedDateTime"), where=resource.where,
                    race_ethnicity=race_ethnicity(data)))

    encounter_kind: dict[str, str] = {}
    skipped: Counter = Counter()
    pending_encounters = []
    for resource in resources:
        rtype = resource.data["resourceType"]
        if rtype == "Patient":
            continue
        if rtype not in ("Encounter", "Observation", "Condition", "MedicationRequest", "Procedure"):
            skipped[rtype] += 1
            continue
        patient_id = _subject(resource, refs)
        patient = patients[patient_id]
        if rtype == "Encounter":
            kind = _encounter_kind(resource.data)
            rid = _resource_id(resource)
            if kind is None:
                patient.dropped["encounter_not_inpatient"] += 1
                continue
            encounter_kind[rid] = kind
            pending_encounters.append((resource, patient_id, kind, rid))
    for resource, patient_id, kind, rid in pending_encounters:
        _add_encounter(resource, patients[patient_id], kind, rid, refs, encounter_kind)
    for resource in resources:
        rtype = resource.data["resourceType"]
        if rtype in ("Observation", "Condition", "MedicationRequest", "Procedure"):
            patient = patients[_subject(resource, refs)]
            encounter = _encounter_ref(resource, refs, encounter_kind)
            if rtype == "Observation":
                _add_observation(resource, patient, encounter, mode)
            elif rtype == "Condition":
                _add_condition(resource, patient, encounter)
            elif rtype == "MedicationRequest":
                _add_simple(resource, patient, encounter, resource.data.get("medicationCodeableConcept"),
                            ("authoredOn",), "authoredOn")
            else:
                _add_simple(resource, patient, encounter, resource.data.get("code"),
                            ("performedDateTime", ("performedPeriod", "start")), "performedDateTime")
    return [_timeline(path, pid, patient, dict(skipped)) for pid, patient in patients.items()]


def _subject(resource: _Resource, refs: _References) -> str:
    reference = _reference(resource.data.get("subject"))
    if reference is None:
        raise DataValidationError(f"{resource.where}: has no subject (field subject.reference). Every "
                                  f"{resource.data['resourceType']} must refer to its Patient.")
    patient = refs.resolve(reference, "Patient")
    if patient is None:
        raise DataValidationError(
            f"{resource.where}: field subject.reference points to no Patient of the input. Include that Patient "
            "resource (in the same Bundle or another file of the folder) or fix the reference.")
    return patient


def _encounter_ref(resource: _Resource, refs: _References, kinds: dict[str, str]) -> str | None:
    reference = _reference(resource.data.get("encounter"))
    if reference is None:
        return None
    encounter = refs.resolve(reference, "Encounter")
    if encounter is None:
        raise DataValidationError(
            f"{resource.where}: field encounter.reference points to no Encounter of the input. Include that "
            "Encounter or remove the reference.")
    return encounter if encounter in kinds else None  # a non-inpatient encounter: not in the encounter table


def _encounter_kind(data: dict[str, Any]) -> str | None:
    klass = data.get("class") if isinstance(data.get("class"), dict) else {}
    code = str(klass.get("code", "")).upper()
    display = str(klass.get("display", "")).lower()
    types = [c for t in data.get("type", []) or [] for c in _codings(t)]
    type_text = " ".join(str(t.get("text", "")).lower() for t in data.get("type", []) or [] if isinstance(t, dict))
    is_icu = (code in ICU_CODES or any(t in display for t in ICU_TEXT)
              or any(str(c.get("code", "")).upper() in ICU_CODES
                     or any(t in str(c.get("display", "")).lower() for t in ICU_TEXT) for c in types)
              or any(t in type_text for t in ICU_TEXT))
    if is_icu:
        return "icu"
    return "hospital" if code in INPATIENT_CLASSES or "inpatient" in display else None


def _add_encounter(resource: _Resource, patient: _Patient, kind: str, rid: str, refs: _References,
                   kinds: dict[str, str]) -> None:
    data = resource.data
    period = data.get("period") if isinstance(data.get("period"), dict) else {}
    if not period.get("start"):
        raise DataValidationError(f"{resource.where}: has no period.start. An admission or ICU stay needs its start "
                                  "time.")
    parent = None
    part_of = _reference(data.get("partOf"))
    if part_of is not None:
        parent = refs.resolve(part_of, "Encounter")
        if parent is None:
            raise DataValidationError(f"{resource.where}: field partOf.reference points to no Encounter of the "
                                      "input. Include the hospital Encounter or remove partOf.")
        if parent not in kinds:
            parent = None
    hospitalization = data.get("hospitalization") if isinstance(data.get("hospitalization"), dict) else {}
    disposition = hospitalization.get("dischargeDisposition")
    codes = {str(c.get("code", "")).lower() for c in _codings(disposition)}
    words = " ".join([str(c.get("display", "")) for c in _codings(disposition)]
                     + [str(disposition.get("text", "")) if isinstance(disposition, dict) else ""]).lower()
    expired = "exp" in codes or any(w in words for w in EXPIRED_TEXT)
    patient.encounters.append({"encounter_id": rid, "kind": kind, "parent_id": parent, "start": period.get("start"),
                               "end": period.get("end"), "expired": expired,
                               "discharge_location": _text_of(disposition) if disposition else None,
                               "where": resource.where})


def _effective(data: dict[str, Any], fields: tuple) -> tuple[str | None, str]:
    for name in fields:
        if isinstance(name, tuple):
            holder = data.get(name[0])
            if isinstance(holder, dict) and holder.get(name[1]):
                return holder[name[1]], ".".join(name)
        elif data.get(name):
            return data[name], name
    first = fields[0] if isinstance(fields[0], str) else ".".join(fields[0])
    return None, first


def _add_observation(resource: _Resource, patient: _Patient, encounter: str | None, mode: OnInvalid) -> None:
    data = resource.data
    if data.get("status") in _DROPPED_STATUS:
        patient.dropped["entered_in_error"] += 1
        return
    when, field_name = _effective(data, ("effectiveDateTime", "effectiveInstant", ("effectivePeriod", "start")))
    if when is None:
        patient.dropped["no_time"] += 1
        return
    parts = [(data, "")]
    for index, component in enumerate(data.get("component", []) or []):
        if isinstance(component, dict):
            parts.append((component, f"component[{index}]."))
    for part, prefix in parts:
        system, code = _first_code(part.get("code"), prefer=LOINC_SYSTEM)
        if code is None:
            continue
        has_value = any(k.startswith("value") for k in part)
        if not has_value and prefix == "" and len(parts) > 1:
            continue  # a panel (blood pressure) whose values are in its components
        concept = LOINC_TO_CONCEPT.get(code) if system == LOINC_SYSTEM else None
        value, text, unit = math.nan, None, None
        quantity = part.get("valueQuantity")
        if isinstance(quantity, dict) and quantity.get("value") is not None:
            value = float(quantity["value"])
            unit = quantity.get("code") or quantity.get("unit")
            if concept is not None:
                spec = CONCEPTS[concept]
                found = conversion(spec, unit)
                if found is None:
                    if mode is OnInvalid.RAISE:
                        raise unknown_unit_error(spec, unit, f"{resource.where}, field {prefix}valueQuantity.code")
                    patient.dropped["unknown_unit"] += 1
                    continue
                value = value * found[0] + found[1]
                if not (math.isfinite(value) and spec.low <= value <= spec.high):
                    patient.dropped["out_of_range"] += 1
                    continue
                unit = spec.unit
        elif "valueCodeableConcept" in part:
            text = _text_of(part["valueCodeableConcept"])
        elif "valueString" in part:
            text = str(part["valueString"])
        elif "valueInteger" in part:
            value = float(part["valueInteger"])
        elif "valueBoolean" in part:
            text = "true" if part["valueBoolean"] else "false"
        if math.isnan(value) and text is None:
            patient.dropped["no_value"] += 1
            continue
        patient.events.append((when, field_name, resource.where, encounter, system, code, concept, value, text, unit,
                               "Observation"))


def _add_condition(resource: _Resource, patient: _Patient, encounter: str | None) -> None:
    data = resource.data
    status = _first_code(data.get("verificationStatus"))[1]
    if status in ("entered-in-error", "refuted"):
        patient.dropped["entered_in_error"] += 1
        return
    system, code = _first_code(data.get("code"))
    if code is None:
        patient.dropped["no_value"] += 1
        return
    if encounter is not None:
        patient.diagnoses.append((encounter, system, code, math.nan))
        return
    when, field_name = _effective(data, ("onsetDateTime", ("onsetPeriod", "start"), "recordedDate"))
    if when is None:
        patient.dropped["no_time"] += 1
        return
    patient.events.append((when, field_name, resource.where, None, system, code, None, math.nan, None, None,
                           "Condition"))


def _add_simple(resource: _Resource, patient: _Patient, encounter: str | None, code_concept: Any, fields: tuple,
                first_field: str) -> None:
    data = resource.data
    if data.get("status") in _DROPPED_STATUS:
        patient.dropped["entered_in_error"] += 1
        return
    system, code = _first_code(code_concept)
    if code is None:
        patient.dropped["no_value"] += 1
        return
    when, field_name = _effective(data, fields)
    if when is None:
        patient.dropped["no_time"] += 1
        return
    patient.events.append((when, field_name, resource.where, encounter, system, code, None, math.nan, None, None,
                           data["resourceType"]))


def _parse_times(values: list[Any], fields: list[str], wheres: list[str]) -> np.ndarray:
    """ISO dates / date-times -> naive UTC datetime64[ns]; a bad one raises naming resource and field."""
    if not values:
        return np.array([], dtype="datetime64[ns]")
    series = pd.Series(values, dtype=object)
    parsed = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna() & series.notna()
    if bad.any():
        index = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(f"{wheres[index]}: field {fields[index]} is not a valid FHIR date or dateTime "
                                  "(expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz).")
    return parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")


def _one_time(value: str | None, field_name: str, where: str) -> pd.Timestamp | None:
    if value is None:
        return None
    return pd.Timestamp(_parse_times([value], [field_name], [where])[0])


US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
#: CDC Race & Ethnicity code of "Hispanic or Latino" (urn:oid:2.16.840.1.113883.6.238).
HISPANIC_OR_LATINO = "2135-2"


def race_ethnicity(patient: dict[str, Any]) -> str | None:
    """One race/ethnicity label of a Patient from the US Core race and ethnicity extensions, for the subgroup audit
    (as MIMIC-III's single ETHNICITY field): ``Hispanic or Latino`` when the ethnicity's OMB category says so, else
    the OMB race category's display (``Multiple`` for several), else the extensions' ``text``; None without them."""
    extensions = {e.get("url"): e for e in patient.get("extension") or [] if isinstance(e, dict)}

    def parts(url: str) -> tuple[list[dict[str, Any]], str | None]:
        inner = (extensions.get(url) or {}).get("extension") or []
        codings = [e.get("valueCoding") or {} for e in inner if e.get("url") == "ombCategory"]
        text = next((e.get("valueString") for e in inner if e.get("url") == "text"), None)
        return codings, text

    ethnic, ethnic_text = parts(US_CORE_ETHNICITY)
    if any(c.get("code") == HISPANIC_OR_LATINO for c in ethnic):
        return "Hispanic or Latino"
    races, race_text = parts(US_CORE_RACE)
    if len(races) > 1:
        return "Multiple"
    if races:
        return races[0].get("display") or races[0].get("code")
    return race_text or (ethnic_text if ethnic else None)


def _timeline(path: Path, patient_id: str, patient: _Patient, skipped: dict[str, int]) -> Timeline:
    birth = _one_time(patient.birth, "birthDate", patient.where)
    death = _one_time(patient.death, "deceasedDateTime", patient.where)
    if patient.events:
        columns = list(zip(*patient.events, strict=True))
        times = _parse_times(list(columns[0]), list(columns[1]), list(columns[2]))
        events = pd.DataFrame({
            "time": times, "encounter_id": np.array(columns[3], dtype=object),
            "system": np.array(columns[4], dtype=object), "code": np.array(columns[5], dtype=object),
            "concept": np.array(columns[6], dtype=object), "value": np.array(columns[7], dtype=float),
            "text": np.array(columns[8], dtype=object), "unit": np.array(columns[9], dtype=object),
            "source": np.array(columns[10], dtype=object)})
        events = sort_events(events[list(EVENT_COLUMNS)])
    else:
        events = None
    meta = {"source": str(path), "reader": READER, "fhir_version": "R4B", "dropped": dict(patient.dropped),
            "skipped_resources": skipped}
    if patient.race_ethnicity is not None:  # for the fairness audit only, never a model input
        meta["ethnicity"] = patient.race_ethnicity
    timeline = Timeline(patient_id=patient_id, sex=patient.sex, birth_time=birth, death_time=death, meta=meta)
    if events is not None:
        timeline.events = events
    if patient.encounters:
        rows = patient.encounters
        starts = _parse_times([r["start"] for r in rows], ["period.start"] * len(rows), [r["where"] for r in rows])
        ends = _parse_times([r["end"] for r in rows], ["period.end"] * len(rows), [r["where"] for r in rows])
        table = pd.DataFrame({"encounter_id": [r["encounter_id"] for r in rows], "kind": [r["kind"] for r in rows],
                              "parent_id": [r["parent_id"] for r in rows], "start": starts, "end": ends,
                              "died": False, "discharge_location": [r["discharge_location"] for r in rows]})
        bad = table["end"].notna() & (table["end"] < table["start"])
        if bad.any():
            raise DataValidationError(f"{rows[int(np.flatnonzero(bad.to_numpy())[0])]['where']}: period.end is before "
                                      "period.start. Fix the encounter's period.")
        expired = np.array([r["expired"] for r in rows], dtype=bool)
        in_period = np.zeros(len(rows), dtype=bool)
        if death is not None:
            in_period = ((table["start"] <= death) & (table["end"].isna() | (death <= table["end"]))).to_numpy()
        table["died"] = expired | in_period
        table = table.sort_values(["start", "kind"], kind="stable").reset_index(drop=True)
        timeline.encounters = table[list(ENCOUNTER_COLUMNS)]
    else:
        timeline.encounters = empty_encounters()
    if patient.diagnoses:
        diagnoses = pd.DataFrame(patient.diagnoses, columns=list(DIAGNOSIS_COLUMNS))
        diagnoses["seq"] = diagnoses["seq"].astype(float)
        timeline.diagnoses = diagnoses
    else:
        timeline.diagnoses = empty_diagnoses()
    return timeline.check()
