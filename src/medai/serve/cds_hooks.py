"""CDS Hooks 2.0: the discovery document and a ``patient-view`` service that turns prefetched FHIR R4 data into
cards.

Discovery (``GET {base}/cds-services``): one ``patient-view`` service per EHR model (artefact preprocessor type
``ehr``), ``id`` = the model id, with prefetch templates for the Patient, its Encounters and Observations — what
:func:`medai.io.fhir.read_fhir` turns into a :class:`~medai.core.timeline.Timeline` and what the EHR featurizer
reads (LOINC-coded Observations, age and sex). Tabular models are left out: their feature columns are arbitrary
table columns with no general mapping from FHIR resources. Image, ECG and text models are left out too: their
input (a study, a recording, a note) is not patient-view context.

Service call (``POST {base}/cds-services/{id}``): :func:`patient_view` checks the request (``hook`` is
``patient-view``, ``hookInstance``, ``context.patientId``, the prefetch keys), validates every prefetched resource
with ``fhir.resources.R4B``, reads them with medai's FHIR reader, asks the caller's ``predict_fn`` for predictions
and returns cards. medai never queries the client's FHIR server (offline by design): a request without the
prefetch it needs raises :class:`PrefetchMissingError` (``status_code`` 412, Precondition Failed, as the spec
asks).

Cards: ``summary`` (< 140 characters, no patient data: "In-hospital death risk 23% (high) — medai
icu-mortality"), ``indicator`` (:data:`INDICATORS`: low risk → ``info``; high risk or refer → ``warning``;
``critical`` is never used, because a statistical risk is not an emergency), ``detail`` (markdown: probability,
decision at the operating point, conformal set and refer reason, calibration note, prediction time, model version
and sha256), ``source`` (label, model card URL, topic). A patient with no eligible encounter gets no card (the spec's
"no decision support" answer), unless ``explain_ineligible=True`` asks for an ``info`` card saying why.

Errors name the request field, prefetch key, entry position and resource type — never a value, identifier or
name from the request.
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.core.timeline import Timeline
from medai.serve.fhir_out import Modality, ModelInfo, outcome_text

HOOK = "patient-view"
#: Prefetch key → template. ``patient``, ``encounters`` and ``observations`` are required by the service.
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "encounters": "Encounter?patient={{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}",
}
REQUIRED_PREFETCH = ("patient", "encounters", "observations")
#: Card indicator by outcome: ``low`` / ``high`` risk, ``refer`` (model not confident), ``none`` (no prediction).
INDICATORS = {"low": "info", "high": "warning", "refer": "warning", "none": "info"}
TOPIC_SYSTEM = "urn:medai:cds-topic"
SUMMARY_MAX = 139  # the spec: "<140-character summary"
_SERVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

PredictFn = Callable[[list[Timeline]], "list[dict[str, Any]] | tuple[list[dict[str, Any]], list[str]]"]


class PrefetchMissingError(DataValidationError):
    """The request lacks prefetched data the service needs; medai does not fetch it (HTTP 412)."""

    status_code = 412


# ------------------------------------------------------------------------------------------------ schemas
class _Spec(BaseModel):
    # CDS Hooks allows extensions (``extension`` objects) on every structure: keep unknown fields
    model_config = ConfigDict(extra="allow")


class Coding(_Spec):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CdsService(_Spec):
    """One service of the discovery response (CDS Hooks 2.0 §Discovery)."""

    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class DiscoveryResponse(_Spec):
    services: list[CdsService]


class PatientViewContext(_Spec):
    """``patient-view`` context. The spec requires ``userId``; medai does not use it, so it is optional here."""

    userId: str | None = None
    patientId: str = Field(min_length=1)
    encounterId: str | None = None


class FhirAuthorization(_Spec):
    access_token: str
    token_type: str
    expires_in: int
    scope: str
    subject: str


class CdsRequest(_Spec):
    """The body of a ``POST {base}/cds-services/{id}`` (CDS Hooks 2.0 §Calling a CDS Service)."""

    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: PatientViewContext
    prefetch: dict[str, Any] | None = None


class Source(_Spec):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Link(_Spec):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Card(_Spec):
    uuid: str | None = None
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    links: list[Link] | None = None


class CdsResponse(_Spec):
    cards: list[Card]


def _dump(model: BaseModel) -> dict[str, Any]:
    # the spec forbids null and empty values for optional fields: omit them
    return model.model_dump(exclude_none=True)


# ------------------------------------------------------------------------------------------------ discovery
def is_cds_model(model: Any) -> bool:
    """True when ``model`` can be computed from patient-view prefetch data (an EHR model)."""
    return ModelInfo.coerce(model).modality is Modality.EHR


def service_for(model: Any) -> CdsService:
    """The ``patient-view`` service of an EHR model.

    Raises:
        InvalidParameterError: not an EHR model, or its id is not URL-safe (``[A-Za-z0-9][A-Za-z0-9._-]*``).
    """
    info = ModelInfo.coerce(model)
    if info.modality is not Modality.EHR:
        raise InvalidParameterError(
            f"Model '{info.id}' reads {info.modality.value} input: only EHR models (preprocessor type 'ehr') are "
            "offered as CDS Hooks patient-view services, because only they are computed from FHIR data alone.")
    if not _SERVICE_ID.fullmatch(info.id):
        raise InvalidParameterError(f"Model id '{info.id}' cannot be a CDS Hooks service id: use letters, digits, "
                                    "'.', '_' and '-' only (it is a URL path segment).")
    outcome = outcome_text(info)
    task = info.task
    when = (f"{task['observation_hours']:g} h after ICU admission" if task.get("observation_hours")
            and task.get("outcome") != "readmission" else "at hospital discharge"
            if task.get("outcome") == "readmission" else "at the model's prediction time")
    description = (f"Predicts {outcome.lower() if task.get('outcome') else outcome} with medai model {info.display} "
                   f"(version {info.version}) from the patient's FHIR Patient, Encounter and Observation resources, "
                   f"{when}. Decision support only.")
    concepts = ", ".join(info.concepts) if info.concepts else "the harmonised vital signs and laboratory values"
    usage = (f"Send every prefetch key ({', '.join(REQUIRED_PREFETCH)}); the service does not query the FHIR server "
             "and answers 412 without them. Encounters must include the inpatient admission and its ICU stay (class "
             "or type ICU, partOf the admission); Observations are read by LOINC code with UCUM units. The model "
             f"reads: {concepts}; age and sex from Patient.")
    return CdsService(hook=HOOK, title=f"medai: {outcome} ({info.display})"[:200], description=description,
                      id=info.id, prefetch=dict(PREFETCH), usageRequirements=usage)


def discovery(models: Iterable[Any]) -> dict[str, Any]:
    """The discovery document: ``{"services": [...]}``, one ``patient-view`` service per EHR model of ``models``
    (others are skipped — see the module docstring). Models whose id is not URL-safe raise
    InvalidParameterError."""
    services = [service_for(m) for m in models if is_cds_model(m)]
    return _dump(DiscoveryResponse(services=services))


# ------------------------------------------------------------------------------------------------ the request
def parse_request(request: CdsRequest | Mapping[str, Any]) -> CdsRequest:
    """Validate a request body (dict or :class:`CdsRequest`) for the ``patient-view`` hook.

    Raises:
        DataValidationError: naming the invalid field(s) and what was expected — never a value.
    """
    if isinstance(request, CdsRequest):
        parsed = request
    else:
        if not isinstance(request, Mapping):
            raise DataValidationError(f"The CDS Hooks request must be a JSON object; got {type(request).__name__}.")
        try:
            parsed = CdsRequest.model_validate(dict(request))
        except ValidationError as error:
            fields = []
            for item in error.errors(include_input=False, include_url=False):
                loc = ".".join(str(p) for p in item.get("loc", ()))
                fields.append(f"{loc or '(body)'} ({'missing' if item.get('type') == 'missing' else item.get('msg')})")
            raise DataValidationError(
                "Invalid CDS Hooks request: field(s) " + "; ".join(fields[:8]) + ". A patient-view request needs "
                "hook, hookInstance, context.patientId and the prefetch listed by the discovery endpoint.") from None
    if parsed.hook != HOOK:
        raise DataValidationError(f"Field hook must be '{HOOK}' for this service (got another hook). Call the "
                                  "service on the hook the discovery endpoint lists.")
    return parsed


def _prefetch_resources(request: CdsRequest) -> list[tuple[dict[str, Any], str | None, str]]:
    """(resource, fullUrl, where) for every prefetched resource, validated with fhir.resources.R4B."""
    from medai.io.fhir import _fhir_models, _validate  # one validator for every FHIR input of medai

    prefetch = request.prefetch
    if prefetch is None:
        raise PrefetchMissingError(
            "The CDS Hooks request has no prefetch (field prefetch). medai does not query the FHIR server: send the "
            f"prefetch keys {', '.join(REQUIRED_PREFETCH)} as the discovery endpoint lists them.")
    missing = [key for key in REQUIRED_PREFETCH if key not in prefetch]
    if missing:
        raise PrefetchMissingError(
            f"The CDS Hooks request lacks prefetch key(s) {', '.join(missing)} (field prefetch). medai does not "
            "query the FHIR server: send every prefetch key the discovery endpoint lists.")
    if prefetch.get("patient") is None:
        raise PrefetchMissingError("Prefetch key patient is null: the client found no Patient for "
                                   "context.patientId. Send the Patient resource.")
    models = _fhir_models()
    out: list[tuple[dict[str, Any], str | None, str]] = []
    for key, value in prefetch.items():
        if value is None:  # the spec: null = the client has no data for this template
            continue
        where = f"prefetch key {key}"
        if not isinstance(value, dict):
            raise DataValidationError(f"{where}: expected a FHIR resource or Bundle (a JSON object), got "
                                      f"{type(value).__name__}.")
        rtype = value.get("resourceType")
        if rtype == "OperationOutcome":  # CDS Hooks 2.0: the client could not fetch this template
            if key in REQUIRED_PREFETCH:
                raise PrefetchMissingError(f"{where}: is an OperationOutcome (the client could not fetch it). medai "
                                           "does not query the FHIR server itself; send the data.")
            continue
        if rtype != "Bundle":
            _validate(models, value, f"{where} ({rtype or 'resource without resourceType'})")
            out.append((value, None, f"{where} ({rtype})"))
            continue
        _validate(models, {k: v for k, v in value.items() if k != "entry"}, f"{where} (Bundle)")
        entries = value.get("entry") or []
        if not isinstance(entries, list):
            raise DataValidationError(f"{where}: Bundle.entry must be a list of entries.")
        for index, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                raise DataValidationError(f"{where}: Bundle entry {index} has no resource object (field "
                                          f"entry[{index}].resource).")
            search = entry.get("search") if isinstance(entry.get("search"), dict) else {}
            if search.get("mode") == "outcome" or resource.get("resourceType") == "OperationOutcome":
                continue  # search warnings, not data
            label = f"{where}, entry {index} ({resource.get('resourceType') or 'resource without resourceType'})"
            _validate(models, resource, label)
            full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
            out.append((resource, full_url, label))
    return out


def timelines_from_prefetch(request: CdsRequest | Mapping[str, Any]) -> list[Timeline]:
    """The patient's :class:`Timeline` (a list of one) from a ``patient-view`` request's prefetch.

    The prefetched resources (searchset Bundles are unpacked; duplicates across keys are kept once) become one
    collection Bundle read by :func:`medai.io.fhir.read_fhir` (written to a private temporary folder, since the
    reader takes paths; nothing stays on disk).

    Raises:
        PrefetchMissingError: no prefetch, a required key missing, null patient, an OperationOutcome in place of
            required data.
        DataValidationError: a resource fails FHIR R4B validation or medai's FHIR reader (the field and the
            prefetch key / entry position are named, never a value or id), or the prefetched Patient is not
            ``context.patientId``.
    """
    from medai.io.fhir import read_fhir

    parsed = parse_request(request)
    resources = _prefetch_resources(parsed)
    patients = [r for r, _, _ in resources if r.get("resourceType") == "Patient"]
    if not any(p.get("id") == parsed.context.patientId for p in patients):
        raise DataValidationError("Prefetch key patient does not hold the Patient named by context.patientId. "
                                  "Send Patient/{{context.patientId}} as the discovery endpoint lists it.")
    entries, labels, seen = [], [], set()
    for resource, full_url, label in resources:
        key = (resource.get("resourceType"), resource.get("id"))
        if key[1] is not None and key in seen:
            continue
        seen.add(key)
        entry: dict[str, Any] = {"resource": resource}
        if full_url:
            entry["fullUrl"] = full_url
        entries.append(entry)
        labels.append(label)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    ids = {str(r.get("id")) for r, _, _ in resources if r.get("id") is not None}
    with tempfile.TemporaryDirectory(prefix="medai-cds-") as folder:
        path = Path(folder) / "prefetch.json"
        path.write_text(json.dumps(bundle), encoding="utf-8")
        try:
            timelines = read_fhir(path, on_invalid="skip")
        except DataValidationError as error:
            raise DataValidationError(_relabel(str(error), str(path), labels, ids)) from None
    timelines = [t for t in timelines if t.patient_id == parsed.context.patientId]
    for timeline in timelines:
        timeline.meta["source"] = "CDS Hooks prefetch"
    return timelines


def _relabel(message: str, path: str, labels: list[str], ids: set[str]) -> str:
    """The reader's message with the temporary path replaced by the prefetch key and entry, and resource ids
    removed (they may be record numbers)."""
    def entry(match: re.Match) -> str:
        index = int(match.group(1))
        return labels[index] if index < len(labels) else match.group(0)

    message = message.replace(f"{path}: ", "")
    message = re.sub(r"\b[A-Za-z]+ '[^']*' \(entry (\d+)\)", entry, message)
    message = re.sub(r"\b[A-Za-z]+ \(entry (\d+)\)", entry, message)
    for rid in sorted(ids, key=len, reverse=True):
        message = message.replace(f"'{rid}'", "<id>")
        if len(rid) >= 3:
            message = re.sub(rf"(?<![\w-]){re.escape(rid)}(?![\w-])", "<id>", message)
    return message.replace(path, "CDS Hooks prefetch")


# ------------------------------------------------------------------------------------------------ the service
def patient_view(service_id: str, request: CdsRequest | Mapping[str, Any], predict_fn: PredictFn, *,
                 model: Any = None, card_url: str | None = None,
                 explain_ineligible: bool = False) -> dict[str, Any]:
    """Answer a ``patient-view`` call: ``{"cards": [...]}``.

    Args:
        service_id: the ``{id}`` of the called URL (the model id).
        request: the request body.
        predict_fn: ``predict_fn(timelines)`` → the prediction dicts (see :mod:`medai.serve`) for every eligible
            encounter of the timelines, or ``(predictions, notes)`` where ``notes`` say, without patient data, why
            encounters were not predicted. Predictions may carry ``prediction_time`` (ISO) and ``encounter_id``.
        model: the served model (:class:`~medai.serve.fhir_out.ModelInfo` or mapping); names the outcome. Default:
            the predictions' own ``model`` dict.
        card_url: absolute URL of the model card (``source.url``; default: the model's ``card_url``).
        explain_ineligible: with no eligible encounter, return an ``info`` card with the notes instead of no card.

    Returns:
        ``{"cards": [...]}``: one card for the encounter in ``context.encounterId`` when the request names one (an
        ICU stay or its hospital admission), else for the most recent prediction.

    Raises:
        InvalidParameterError: ``service_id`` is not ``model``'s id.
        PrefetchMissingError / DataValidationError: see :func:`timelines_from_prefetch`.
    """
    info = ModelInfo.coerce(model) if model is not None else None
    if info is not None and service_id != info.id:
        raise InvalidParameterError(f"CDS service '{service_id}' is not model '{info.id}'. Route each service id to "
                                    "its own model.")
    parsed = parse_request(request)
    timelines = timelines_from_prefetch(parsed)
    result = predict_fn(timelines)
    predictions, notes = (result if isinstance(result, tuple) else (result, []))
    predictions = [p for p in predictions if isinstance(p, Mapping)]
    encounter = parsed.context.encounterId
    if encounter:
        predictions = [p for p in predictions if encounter in (str(p.get("id")), str(p.get("encounter_id")))]
    elif len(predictions) > 1:
        predictions = [max(enumerate(predictions), key=lambda ip: (str(ip[1].get("prediction_time") or ""),
                                                                   ip[0]))[1]]
    source_url = card_url or (info.card_url if info else None)
    dropped: dict[str, int] = {}
    for timeline in timelines:
        for reason, n in (timeline.meta.get("dropped") or {}).items():
            dropped[reason] = dropped.get(reason, 0) + int(n)
    data_notes = [f"{n} value(s) left out by the FHIR reader: {reason.replace('_', ' ')}."
                  for reason, n in sorted(dropped.items()) if n]
    cards = [_card(p, info, service_id, source_url, data_notes) for p in predictions]
    if not cards and explain_ineligible:
        cards = [_ineligible_card(info, service_id, notes, source_url, encounter is not None)]
    return _dump(CdsResponse(cards=cards))


def _model_of(prediction: Mapping[str, Any], info: ModelInfo | None, service_id: str) -> tuple[str, str, str]:
    meta = prediction.get("model") if isinstance(prediction.get("model"), Mapping) else {}
    model_id = (info.id if info else None) or str(meta.get("id") or service_id)
    version = (info.version if info else None) or str(meta.get("version") or "unknown")
    sha = (info.sha256 if info else None) or str(meta.get("sha256") or "unknown")
    return model_id, version, sha


def _source(model_id: str, version: str, outcome: str, url: str | None) -> Source:
    return Source(label=f"medai {model_id} (version {version})"[:200], url=url,
                  topic=Coding(system=TOPIC_SYSTEM, code="risk-prediction", display=f"AI risk prediction: {outcome}"))


def _fit(summary: str) -> str:
    return summary if len(summary) <= SUMMARY_MAX else summary[:SUMMARY_MAX - 1].rstrip() + "…"


def _card(prediction: Mapping[str, Any], info: ModelInfo | None, service_id: str, url: str | None,
          data_notes: Sequence[str] = ()) -> Card:
    model_id, version, sha = _model_of(prediction, info, service_id)
    outcome = outcome_text(info) if info else "Outcome"
    probability = prediction.get("probability")
    refer = bool(prediction.get("refer"))
    decision = prediction.get("decision")
    positive = info.task.get("positive_class") if info else None
    if isinstance(probability, Mapping):  # multi-label phenotypes: the findings above their thresholds
        found = decision if isinstance(decision, list) else []
        level = "high" if found else "low"
        head = (f"{len(found)} predicted finding(s): " + ", ".join(str(f).replace('_', ' ') for f in found)
                if found else "No predicted finding")
        summary = f"{head} — medai {model_id}"
        shown = "\n".join(f"| {str(k).replace('_', ' ')} | {float(v):.0%} |" for k, v in
                          sorted(probability.items(), key=lambda kv: -float(kv[1])))
        lines = ["| Finding | Probability |", "|---|---|", shown]
    else:
        level = ("high" if (positive is not None and str(decision) == str(positive)) or decision == "high"
                 else "low")
        risk = f" {float(probability):.0%}" if isinstance(probability, int | float) else ""
        summary = (f"{outcome} risk{risk} uncertain: refer to a clinician — medai {model_id}" if refer
                   else f"{outcome} risk{risk} ({level}) — medai {model_id}")
        lines = [f"**Predicted probability of {outcome.lower()}: {float(probability):.1%}** (calibrated)."
                 if isinstance(probability, int | float) else f"**{outcome}**: no probability."]
        if decision is not None:
            lines.append(f"- At the model's operating point: **{level} risk** (decision: {decision}).")
    if prediction.get("prediction_set") is not None:
        conformal = prediction["prediction_set"]
        conformal = conformal if isinstance(conformal, str) else "{" + ", ".join(map(str, conformal)) + "}"
        lines.append(f"- Conformal prediction set: {conformal}.")
    if refer:
        reason = prediction.get("refer_reason")
        lines.append("- **Refer to a clinician**: the model is not confident" + (f" ({reason})." if reason else "."))
    if prediction.get("prediction_time"):
        lines.append(f"- Prediction time: {prediction['prediction_time']} (data after it is not used).")
    for warning in prediction.get("warnings") or []:
        lines.append(f"- Warning: {warning}")
    lines.extend(f"- Data: {note}" for note in data_notes)
    lines.append("- Calibration: see the model card for how closely these probabilities matched observed rates, "
                 "overall and by subgroup, and whether its population resembles this one.")
    lines.append(f"- Model: medai `{model_id}` version {version}, sha256 `{sha[:12]}…`.")
    lines.append("\n_Decision support only: not a diagnosis; review the patient before acting._")
    indicator = INDICATORS["refer" if refer else level]
    return Card(uuid=str(uuid.uuid4()), summary=_fit(summary), detail="\n".join(lines), indicator=indicator,
                source=_source(model_id, version, outcome, url))


def _ineligible_card(info: ModelInfo | None, service_id: str, notes: Sequence[str], url: str | None,
                     encounter: bool) -> Card:
    model_id, version, _ = _model_of({}, info, service_id)
    outcome = outcome_text(info) if info else "Outcome"
    why = ("the encounter in context is not one the model predicts for" if encounter
           else "no encounter of this patient is eligible")
    detail = "\n".join([f"medai `{model_id}` made no prediction: {why}.", *(f"- {n}" for n in notes)])
    return Card(uuid=str(uuid.uuid4()), summary=_fit(f"No {outcome.lower()} prediction: not eligible — medai "
                                                      f"{model_id}"),
                detail=detail, indicator=INDICATORS["none"], source=_source(model_id, version, outcome, url))
