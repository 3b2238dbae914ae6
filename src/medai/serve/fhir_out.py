"""Prediction dicts (see :mod:`medai.serve`) → FHIR R4 resources: what ``Accept: application/fhir+json`` returns.

FHIR version: R4 (4.0.1). Every resource is validated with ``fhir.resources.R4B`` before it leaves this module
(R4B defines RiskAssessment, DiagnosticReport, Observation, Device and Bundle with the same elements as R4, and it
is the FHIR package medai already reads with, :mod:`medai.io.fhir`). An invalid resource is a bug of medai, never of
the caller: :class:`FhirOutputError`.

==================  =========================================================================================
model kind          resources
==================  =========================================================================================
tabular, EHR        one ``RiskAssessment`` per prediction (binary: one ``prediction``; multi-class / multi-label:
(risk models)       one per class; survival: one per horizon with ``probabilityDecimal`` = 1 − S(t) and
                    ``whenRange.high`` = the horizon)
image, ECG, text    one ``DiagnosticReport`` per prediction (record/study) whose ``result`` lists one
                    ``Observation`` per class probability, one for the decision and one for ``refer``
segmentation        the same report, with the mask's area (SNOMED CT 42798000, UCUM ``mm2``) or volume
                    (118565006, ``mL``) as an ``Observation`` (the conformal mask's as its ``component``), the
                    decision (the segment's label or ``none``) and ``refer``
every kind          one ``Device`` for the model (name = model id, version, sha256 identifier), referenced by
                    ``RiskAssessment.performer`` and ``Observation.device`` (R4 allows Device there; it does not
                    allow it in ``DiagnosticReport.performer``, so the report reaches the model through its results)
==================  =========================================================================================

Codes and systems: :data:`UCUM` (probabilities are ``valueQuantity`` with unit ``1``), HL7 v2-0074 for the
report category (``RAD`` imaging, ``EC`` electrocardiac, ``OTH`` for text models), HL7 ``risk-probability`` for
``qualitativeRisk`` (``high`` / ``low``), v3 ObservationInterpretation ``IND`` (indeterminate) on a referred
decision. medai's own outputs use the private URNs below (replace them with your organisation's URLs if you publish
these resources). No LOINC code is claimed for a model output: a site maps ``urn:medai:*`` codes locally.

No patient data is written beyond what the caller passes: the subject reference, and the client's own record id
as a logical reference in ``basis`` / ``subject.identifier``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from medai.core.errors import DataValidationError, InvalidParameterError, MedaiError, invalid_parameter

FHIR_VERSION = "4.0.1"
#: The FHIR package resources are validated with.
FHIR_PACKAGE = "fhir.resources.R4B"

UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
#: code = model id (``RiskAssessment.method``, ``Device.identifier``).
MODEL_SYSTEM = "urn:medai:model"
#: value = the sha256 of the model artefact's manifest (``Device.identifier``).
MODEL_SHA256_SYSTEM = "urn:medai:model-sha256"
#: codes ``decision``, ``refer``, ``prediction-set``, ``ai-analysis``.
OUTPUT_SYSTEM = "urn:medai:output"
#: code = class name: "the probability the model gives to this class" (``Observation.code``).
CLASS_PROBABILITY_SYSTEM = "urn:medai:class-probability"
#: value = the client's own record id (the prediction's ``id``).
RECORD_SYSTEM = "urn:medai:record-id"


class FhirOutputError(MedaiError, RuntimeError):
    """medai built a FHIR resource that ``fhir.resources`` rejects: a bug in medai, reported as a server error."""


class Modality(StrEnum):
    """What a model reads: its artefact's ``preprocessor.json`` ``type``."""

    TABULAR = "tabular"
    EHR = "ehr"
    IMAGE = "image"
    ECG = "ecg"
    TEXT = "text"
    SEGMENTATION = "segmentation"


class ReportCategory(StrEnum):
    """``DiagnosticReport.category`` of image, ECG and text models."""

    IMAGING = "imaging"
    ECG = "ecg"
    TEXT = "text"


#: Report category → (HL7 v2-0074 code, display, observation-category code or None).
_CATEGORY_CODES = {
    ReportCategory.IMAGING: ("RAD", "Radiology", "imaging"),
    ReportCategory.ECG: ("EC", "Electrocardiac (e.g. EKG, EEC, Holter)", "procedure"),
    ReportCategory.TEXT: ("OTH", "Other", None),
}
_RISK_MODALITIES = (Modality.TABULAR, Modality.EHR)
#: Time units of survival horizons ("365 days") → UCUM code.
_UCUM_TIME = {"s": "s", "second": "s", "seconds": "s", "min": "min", "minute": "min", "minutes": "min",
              "h": "h", "hour": "h", "hours": "h", "d": "d", "day": "d", "days": "d", "wk": "wk", "week": "wk",
              "weeks": "wk", "mo": "mo", "month": "mo", "months": "mo", "a": "a", "y": "a", "year": "a",
              "years": "a"}
_POSITIVE_TOKENS = {"1", "1.0", "true", "yes", "y", "positive", "pos"}


# ------------------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class ModelInfo:
    """What the FHIR and CDS Hooks adapters need to know about a served model.

    Attributes:
        id: the model's id in the service (URL-safe; CDS Hooks service id).
        version: the served version (e.g. the artefact's creation time).
        sha256: the artefact manifest's sha256.
        task: the artefact's ``task`` dict (``kind``, ``class_names``, ``positive_class``, ``label``, ``outcome``,
            ``observation_hours``, ``horizon_hours``, ``event``, ``time_unit``); outcome names come from it.
        modality: the artefact's preprocessor type (a :class:`Modality`).
        title: a human title (default: the id).
        card_url: absolute URL of the model card (CDS card ``source.url``).
        concepts: EHR models: the harmonised concepts the featurizer reads (listed in the CDS service's usage
            requirements).
    """

    id: str
    version: str
    sha256: str
    task: Mapping[str, Any] = field(default_factory=dict)
    modality: Modality | str = Modality.TABULAR
    title: str | None = None
    card_url: str | None = None
    concepts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("id", "version", "sha256"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise invalid_parameter(name, "ModelInfo", "a non-empty string", type(value).__name__)
        try:
            object.__setattr__(self, "modality", Modality(self.modality))
        except ValueError:
            raise invalid_parameter("modality", "ModelInfo", f"one of {', '.join(Modality)}",
                                    self.modality) from None

    @property
    def kind(self) -> str | None:
        return self.task.get("kind")

    @property
    def display(self) -> str:
        return self.title or self.id

    @classmethod
    def coerce(cls, model: Any) -> ModelInfo:
        """A :class:`ModelInfo` from itself, a mapping or an object with the same attribute names (``modality`` may
        also come as ``preprocessor`` dict with a ``type``)."""
        if isinstance(model, ModelInfo):
            return model

        def get(name: str, default: Any = None) -> Any:
            if isinstance(model, Mapping):
                return model.get(name, default)
            return getattr(model, name, default)

        if get("id") is None:
            raise invalid_parameter("model", "the FHIR / CDS Hooks adapters",
                                    "a ModelInfo, or a mapping/object with id, version and sha256",
                                    type(model).__name__)
        preprocessor = get("preprocessor") or {}
        modality = get("modality") or (preprocessor.get("type") if isinstance(preprocessor, Mapping) else None)
        concepts = get("concepts") or (preprocessor.get("concepts") if isinstance(preprocessor, Mapping) else None)
        return cls(id=get("id"), version=get("version"), sha256=get("sha256"), task=get("task") or {},
                   modality=modality or Modality.TABULAR, title=get("title"), card_url=get("card_url"),
                   concepts=tuple(concepts or ()))

    @classmethod
    def from_predictor(cls, predictor: Any, *, model_id: str | None = None, version: str | None = None,
                       card_url: str | None = None) -> ModelInfo:
        """From a :class:`medai.registry.predictor.Predictor` (id: the run's name; version: the model card's
        ``created`` time, else the first 12 characters of the sha256)."""
        artifact = predictor.artifact
        card = artifact.model_card or {}
        created = card.get("created") or (card.get("run") or {}).get("created") if isinstance(card, dict) else None
        modality = Modality.SEGMENTATION if artifact.task.get("kind") == "segmentation" else None
        return cls.coerce({"id": model_id or artifact.config.name, "version": version or created or
                           artifact.sha256[:12], "sha256": artifact.sha256, "task": artifact.task,
                           "preprocessor": artifact.preprocessor, "card_url": card_url, "modality": modality})


# ------------------------------------------------------------------------------------------------ validation
def validate_resource(resource: Mapping[str, Any]) -> None:
    """Validate one resource (a dict with ``resourceType``) with ``fhir.resources.R4B``.

    Raises:
        FhirOutputError: naming the resource type and the invalid field paths (never their values).
        MissingDependencyError: fhir.resources is not installed.
    """
    models = _fhir_models()
    rtype = resource.get("resourceType")
    try:
        model = models(rtype)
    except (KeyError, ValueError, AttributeError, TypeError):
        raise FhirOutputError(f"medai built a resource of unknown FHIR type {rtype!r}; this is a bug in medai.") \
            from None
    try:
        model.model_validate(dict(resource))
    except Exception as error:  # pydantic.ValidationError; its str() would quote values
        errors = getattr(error, "errors", None)
        paths = []
        if callable(errors):
            for item in errors(include_input=False, include_url=False):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "__root__") or "(resource)"
                paths.append(f"{loc} [{item.get('type', 'invalid')}]")
        raise FhirOutputError(
            f"medai built an invalid FHIR R4B {rtype} (field(s): {', '.join(paths[:8]) or type(error).__name__}); "
            "this is a bug in medai, please report it.") from None


def _fhir_models():
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError:
        from medai.core.errors import MissingDependencyError

        raise MissingDependencyError("FHIR output needs fhir.resources: pip install 'fhir.resources>=8'") from None
    return get_fhir_model_class


# ------------------------------------------------------------------------------------------------ helpers
def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _instant(value: dt.datetime | None) -> str:
    """FHIR dateTime/instant with a UTC offset. Naive datetimes are taken as UTC (medai's readers store UTC
    naive)."""
    value = value or _now()
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


def _new_id() -> str:
    return str(uuid.uuid4())


def _code(value: Any, what: str) -> str:
    """A FHIR ``code``: no leading/trailing whitespace, single inner spaces."""
    text = " ".join(str(value).split())
    if not text:
        raise DataValidationError(f"The prediction's {what} is empty; a class or decision needs a name.")
    return text


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)) \
            or not 0.0 <= float(value) <= 1.0:
        raise DataValidationError(f"{where} must be a probability in [0, 1] (a finite number).")
    return float(value)


def _where(prediction: Mapping[str, Any]) -> str:
    # errors name the field, never the record id (prediction_bundle prefixes the prediction's position)
    return "the prediction"


def _record_reference(prediction: Mapping[str, Any]) -> dict[str, Any] | None:
    rid = prediction.get("id")
    if rid is None or not str(rid).strip():
        return None
    return {"identifier": {"system": RECORD_SYSTEM, "value": str(rid)}, "display": "input record"}


def _subject_reference(subject: str | None) -> dict[str, Any] | None:
    if subject is None:
        return None
    subject = str(subject).strip()
    if not subject:
        raise invalid_parameter("subject", "the FHIR output", "a Patient id or 'Patient/<id>'", "")
    return {"reference": subject if "/" in subject or subject.startswith("urn:") else f"Patient/{subject}"}


def _positive_class(task: Mapping[str, Any]) -> str | None:
    if task.get("positive_class") is not None:
        return str(task["positive_class"])
    names = task.get("class_names") or []
    return str(names[1]) if len(names) == 2 else None


def outcome_text(model: ModelInfo, class_name: str | None = None) -> str:
    """The human name of what a risk model predicts (``RiskAssessment.prediction.outcome.text``, card summaries).

    EHR tasks: mortality → "In-hospital death" (within the horizon when the task has one), length_of_stay →
    "ICU stay longer than H h", readmission → "Readmission or death within D days of discharge", phenotype → the
    phenotype. Tabular binary: the positive class, or the label column when the class is a bare 1/True/yes.
    Multi-class / multi-label: the class. Survival: the event column.
    """
    task = model.task
    outcome = task.get("outcome")
    horizon = task.get("horizon_hours")
    if outcome == "mortality" and class_name is None:
        return "In-hospital death" + (f" within {horizon:g} h" if horizon else "")
    if outcome == "length_of_stay" and class_name is None:
        return f"ICU stay longer than {horizon:g} h" if horizon else "Long ICU stay"
    if outcome == "readmission" and class_name is None:
        return (f"Readmission or death within {horizon / 24:g} days of discharge" if horizon
                else "Readmission after discharge")
    if class_name is not None:
        return str(class_name).replace("_", " ")
    if model.kind == "survival":
        return str(task.get("event") or task.get("label") or "event")
    positive = _positive_class(task)
    if positive is None or positive.strip().lower() in _POSITIVE_TOKENS:
        return str(task.get("label") or positive or "positive class").replace("_", " ")
    return positive


def _horizon_quantity(name: str, default_unit: str | None) -> dict[str, Any] | None:
    """``"365 days"`` → a UCUM Quantity; a bare number takes the task's ``time_unit``."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(name))
    if match is None:
        return None
    value = float(match.group(1))
    unit = match.group(2) or (default_unit or "")
    quantity: dict[str, Any] = {"value": int(value) if value.is_integer() else value}
    if unit:
        quantity["unit"] = unit
        code = _UCUM_TIME.get(unit.lower())
        if code:
            quantity.update(system=UCUM, code=code)
    return quantity


def _device(model: ModelInfo, resource_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Device", "id": resource_id, "status": "active",
        "identifier": [{"system": MODEL_SYSTEM, "value": model.id},
                       {"system": MODEL_SHA256_SYSTEM, "value": model.sha256}],
        "deviceName": [{"name": model.id, "type": "model-name"}]
        + ([{"name": model.title, "type": "user-friendly-name"}] if model.title else []),
        "type": {"text": "Machine-learning model (medai)"},
        "version": [{"value": model.version}],
    }


def model_device(model: Any) -> dict[str, Any]:
    """The ``Device`` that stands for ``model`` (validated): ``deviceName`` = model id (type ``model-name``),
    ``version`` = model version, ``identifier`` = model id (:data:`MODEL_SYSTEM`) and sha256
    (:data:`MODEL_SHA256_SYSTEM`)."""
    device = _device(ModelInfo.coerce(model), _new_id())
    validate_resource(device)
    return device


def _method(model: ModelInfo) -> dict[str, Any]:
    return {"coding": [{"system": MODEL_SYSTEM, "code": _code(model.id, "model id"), "display": model.display}],
            "text": f"medai model {model.id} version {model.version} (sha256 {model.sha256})"}


def _refer_text(prediction: Mapping[str, Any]) -> str:
    reason = prediction.get("refer_reason")
    return "Refer to a clinician: the model is not confident" + (f" ({reason})." if reason else ".")


def _prediction_set_text(prediction: Mapping[str, Any]) -> str | None:
    value = prediction.get("prediction_set")
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return "{" + ", ".join(str(v) for v in value) + "}"


def _decision_text(decision: Any) -> str | None:
    if decision is None:
        return None
    if isinstance(decision, list | tuple):
        return "; ".join(str(d) for d in decision) if decision else "none"
    return str(decision)


# ------------------------------------------------------------------------------------------------ RiskAssessment
def risk_assessment(prediction: Mapping[str, Any], model: Any, *, subject: str | None = None,
                    occurrence: dt.datetime | None = None, encounter: str | None = None,
                    device_reference: str | None = None) -> dict[str, Any]:
    """A FHIR R4 ``RiskAssessment`` for one prediction of a risk model (tabular or EHR; binary, multi-class,
    multi-label or survival), validated with ``fhir.resources.R4B``.

    Fields: ``status`` final; ``subject`` ``Patient/<id>`` (without ``subject``: a logical reference to the
    client's record id, since R4 requires a subject); ``encounter``; ``occurrenceDateTime`` (naive = UTC; default
    now); ``method`` (model id in :data:`MODEL_SYSTEM`, text with version and sha256); ``performer`` = the model's
    Device (``device_reference``, e.g. a bundle's ``urn:uuid``; default: the Device is ``contained``); ``basis`` =
    the input record (logical reference); ``prediction[]``: binary — outcome, ``probabilityDecimal`` (the
    prediction's probability, unchanged), ``qualitativeRisk`` high/low from the decision; multi-class /
    multi-label — one entry per class; survival — one entry per horizon with ``probabilityDecimal`` = 1 − S(t),
    ``whenRange.high`` = the horizon, ``relativeRisk`` = exp(log relative risk) (hazard ratio to the model's
    baseline); ``rationale`` says how the number was made, and the refer/abstain status; ``note`` when ``refer``
    is true and for the prediction's warnings.

    Raises:
        InvalidParameterError: the model is a regression model (no FHIR mapping).
        DataValidationError: a probability outside [0, 1], a survival prediction without ``risk.survival``.
        FhirOutputError: the built resource is invalid (a bug).
    """
    info = ModelInfo.coerce(model)
    where = _where(prediction)
    kind = info.kind or ("survival" if prediction.get("risk") else
                         "multiclass" if isinstance(prediction.get("probability"), Mapping) else "binary")
    if kind == "regression":
        raise InvalidParameterError(f"Model '{info.id}' is a regression model: medai has no FHIR RiskAssessment "
                                    "for a predicted value. Ask for application/json instead.")
    resource: dict[str, Any] = {"resourceType": "RiskAssessment", "id": _new_id(), "status": "final"}
    resource["subject"] = _subject_reference(subject) or _record_reference(prediction) or {"display": "input record"}
    if encounter:
        resource["encounter"] = {"reference": encounter if "/" in encounter else f"Encounter/{encounter}"}
    resource["occurrenceDateTime"] = _instant(occurrence)
    resource["method"] = _method(info)
    if device_reference is None:
        resource["contained"] = [_device(info, "model")]
        resource["performer"] = {"reference": "#model", "display": f"medai model {info.id}"}
    else:
        resource["performer"] = {"reference": device_reference, "display": f"medai model {info.id}"}
    record = _record_reference(prediction)
    if record is not None:
        resource["basis"] = [record]
    refer = bool(prediction.get("refer"))
    rationale = _rationale(info, prediction, kind, refer)
    if kind == "survival":
        resource["prediction"] = _survival_predictions(prediction, info, rationale, where)
    elif kind in ("multiclass", "multilabel"):
        resource["prediction"] = _class_predictions(prediction, info, kind, rationale, where)
    else:
        resource["prediction"] = [_binary_prediction(prediction, info, rationale, where)]
    notes = ([_refer_text(prediction)] if refer else []) + [f"Warning: {w}" for w in prediction.get("warnings") or []]
    if notes:
        resource["note"] = [{"text": text} for text in notes]
    validate_resource(resource)
    return resource


def _rationale(model: ModelInfo, prediction: Mapping[str, Any], kind: str, refer: bool) -> str:
    parts = ["Survival probabilities from a Cox-type model (1 − S(t) shown)" if kind == "survival"
             else "Calibrated probability from a machine-learning model",
             f"medai {model.id} version {model.version}"]
    decision = _decision_text(prediction.get("decision"))
    if decision is not None:
        parts.append(f"decision at the model's operating point: {decision}")
    conformal = _prediction_set_text(prediction)
    if conformal is not None:
        parts.append(f"conformal prediction set {conformal}")
    parts.append("abstains: refer to a clinician" if refer else "not referred")
    return "; ".join(parts) + "."


def _risk_coding(code: str) -> dict[str, Any]:
    return {"coding": [{"system": RISK_PROBABILITY, "code": code, "display": code.capitalize() + " likelihood"}]}


def _binary_prediction(prediction, model: ModelInfo, rationale: str, where: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"outcome": {"text": outcome_text(model)}}
    probability = prediction.get("probability")
    if probability is not None:
        entry["probabilityDecimal"] = _probability(probability, f"{where}: field probability")
    decision = prediction.get("decision")
    positive = _positive_class(model.task)
    if decision is not None and positive is not None:
        entry["qualitativeRisk"] = _risk_coding("high" if str(decision) == positive else "low")
    elif decision in ("high", "low"):
        entry["qualitativeRisk"] = _risk_coding(decision)
    entry["rationale"] = rationale
    return entry


def _class_predictions(prediction, model: ModelInfo, kind: str, rationale: str, where: str) -> list[dict]:
    probabilities = prediction.get("probability")
    if not isinstance(probabilities, Mapping) or not probabilities:
        raise DataValidationError(f"{where}: field probability must map each class to its probability for a "
                                  f"{kind} model.")
    decision = prediction.get("decision")
    decided = set(decision) if isinstance(decision, list | tuple) else {decision}
    entries = []
    for name, value in probabilities.items():
        entry: dict[str, Any] = {"outcome": {"text": outcome_text(model, str(name))},
                                 "probabilityDecimal": _probability(value, f"{where}: field probability.{name}")}
        if kind == "multilabel":  # each finding has its own threshold: present = high
            entry["qualitativeRisk"] = _risk_coding("high" if name in decided else "low")
        elif name in decided:
            entry["rationale"] = rationale
        entries.append(entry)
    if kind == "multilabel":
        entries[0]["rationale"] = rationale
    return entries


def _survival_predictions(prediction, model: ModelInfo, rationale: str, where: str) -> list[dict]:
    risk = prediction.get("risk")
    survival = risk.get("survival") if isinstance(risk, Mapping) else None
    if not isinstance(survival, Mapping) or not survival:
        raise DataValidationError(f"{where}: field risk.survival must map each horizon (e.g. '365 days') to the "
                                  "survival probability for a survival model.")
    relative = risk.get("log_relative_risk")
    decision = prediction.get("decision")
    entries = []
    for horizon, value in survival.items():
        s = _probability(value, f"{where}: field risk.survival.{horizon}")
        entry: dict[str, Any] = {"outcome": {"text": outcome_text(model)}, "probabilityDecimal": 1.0 - s}
        quantity = _horizon_quantity(horizon, model.task.get("time_unit"))
        if quantity is not None:
            entry["whenRange"] = {"high": quantity}
        if isinstance(relative, int | float) and math.isfinite(float(relative)):
            entry["relativeRisk"] = math.exp(float(relative))
        if decision in ("high", "low"):
            entry["qualitativeRisk"] = _risk_coding(decision)
        entry["rationale"] = rationale
        entries.append(entry)
    return entries


# ------------------------------------------------------------------------------------------------ DiagnosticReport
def diagnostic_report(prediction: Mapping[str, Any], model: Any, *, subject: str | None = None,
                      category: ReportCategory | str, imaging_study: str | None = None,
                      device_reference: str | None = None, status: str = "preliminary",
                      include_explanation: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A FHIR R4 ``DiagnosticReport`` and its ``Observation`` s for one prediction of an image, ECG or text model.

    Observations (each ``status`` = ``status``, ``device`` = the model's Device, ``method`` = the model):

    - one per class probability: ``code`` = the class in :data:`CLASS_PROBABILITY_SYSTEM`, ``valueQuantity`` =
      the probability with UCUM unit ``1``;
    - the decision: ``code`` ``decision`` (:data:`OUTPUT_SYSTEM`), ``valueCodeableConcept.text`` = the decided class
      (multi-label: the findings, ``;``-separated, or ``none``), the conformal set as a ``component``, and
      interpretation ``IND`` (indeterminate) when the model refers;
    - refer: ``code`` ``refer``, ``valueBoolean``, ``note`` with the reason.

    The report: ``category`` from HL7 v2-0074 (RAD / EC / OTH), ``code`` ``ai-analysis``, ``subject``,
    ``imagingStudy``, ``issued`` (now), ``result`` = ``urn:uuid:<observation id>`` references (put each
    Observation in a Bundle with ``fullUrl`` ``urn:uuid:<its id>``, as :func:`prediction_bundle` does),
    ``conclusion`` (decision, probability, refer — no patient data) and, when the prediction has an explanation
    PNG, ``presentedForm`` (``image/png``, base64). ``status`` defaults to ``preliminary``: an AI output is not
    verified by an authorised person until a clinician reviews it.

    Raises:
        InvalidParameterError: unknown ``category``; a regression or survival prediction.
        DataValidationError: a probability outside [0, 1].
        FhirOutputError: a built resource is invalid (a bug).
    """
    info = ModelInfo.coerce(model)
    try:
        category = ReportCategory(category)
    except ValueError:
        raise invalid_parameter("category", "diagnostic_report", f"one of {', '.join(ReportCategory)}",
                                category) from None
    if info.kind in ("regression", "survival"):
        raise InvalidParameterError(f"Model '{info.id}' is a {info.kind} model: a DiagnosticReport holds class "
                                    "probabilities. Use risk_assessment for survival models.")
    where = _where(prediction)
    device_ref = device_reference or f"urn:uuid:{_new_id()}"
    v2_code, v2_display, obs_category = _CATEGORY_CODES[category]
    common: dict[str, Any] = {"status": status}
    if obs_category:
        common["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": obs_category}]}]
    subject_ref = _subject_reference(subject)
    if subject_ref:
        common["subject"] = subject_ref
    issued = _instant(None)
    common.update(issued=issued, method=_method(info),
                  device={"reference": device_ref, "display": f"medai model {info.id}"})
    observations: list[dict[str, Any]] = []
    probability = prediction.get("probability")
    probabilities: dict[str, Any]
    if isinstance(probability, Mapping):
        probabilities = dict(probability)
    elif probability is not None:
        positive = _positive_class(info.task) or "positive"
        probabilities = {positive: probability}
    else:
        probabilities = {}
    for name, value in probabilities.items():
        code = _code(name, "class name")
        p = _probability(value, f"{where}: field probability" + (f".{name}" if isinstance(probability, Mapping)
                                                                 else ""))
        observations.append({"resourceType": "Observation", "id": _new_id(), **common,
                             "code": {"coding": [{"system": CLASS_PROBABILITY_SYSTEM, "code": code,
                                                  "display": f"Probability of {code}"}],
                                      "text": f"Probability of {code}"},
                             "valueQuantity": {"value": p, "unit": "1", "system": UCUM, "code": "1"}})
    observations.extend({"resourceType": "Observation", "id": _new_id(), **common, **measurement}
                        for measurement in _measurements(prediction, where))
    refer = bool(prediction.get("refer"))
    decision = _decision_text(prediction.get("decision"))
    if decision is not None:
        decision_obs: dict[str, Any] = {
            "resourceType": "Observation", "id": _new_id(), **common,
            "code": {"coding": [{"system": OUTPUT_SYSTEM, "code": "decision", "display": "Model decision"}],
                     "text": "Model decision at its operating point"},
            "valueCodeableConcept": {"text": decision}}
        conformal = _prediction_set_text(prediction)
        if conformal is not None:
            decision_obs["component"] = [{
                "code": {"coding": [{"system": OUTPUT_SYSTEM, "code": "prediction-set",
                                     "display": "Conformal prediction set"}]},
                "valueString": conformal}]
        if refer:
            decision_obs["interpretation"] = [{"coding": [{"system": V3_INTERPRETATION, "code": "IND",
                                                           "display": "Indeterminate"}]}]
        observations.append(decision_obs)
    refer_obs: dict[str, Any] = {
        "resourceType": "Observation", "id": _new_id(), **common,
        "code": {"coding": [{"system": OUTPUT_SYSTEM, "code": "refer", "display": "Refer to a clinician"}],
                 "text": "Refer to a clinician (model not confident or input unusable)"},
        "valueBoolean": refer}
    if refer:
        refer_obs["note"] = [{"text": _refer_text(prediction)}]
    observations.append(refer_obs)

    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": _new_id(), "status": status,
        "category": [{"coding": [{"system": V2_0074, "code": v2_code, "display": v2_display}]}],
        "code": {"coding": [{"system": OUTPUT_SYSTEM, "code": "ai-analysis", "display": "AI analysis"}],
                 "text": f"AI analysis by medai model {info.display}"},
        "issued": issued,
        "result": [{"reference": f"urn:uuid:{o['id']}"} for o in observations],
        "conclusion": _conclusion(info, prediction, probabilities, decision, refer),
    }
    if subject_ref:
        report["subject"] = subject_ref
    if imaging_study:
        report["imagingStudy"] = [{"reference": imaging_study if "/" in imaging_study or
                                   imaging_study.startswith("urn:") else f"ImagingStudy/{imaging_study}"}]
    explanation = prediction.get("explanation") or {}
    if include_explanation and isinstance(explanation, Mapping) and explanation.get("png_base64"):
        report["presentedForm"] = [{"contentType": "image/png", "data": explanation["png_base64"],
                                    "title": f"Explanation ({explanation.get('type', 'heatmap')}) of the model's "
                                             "output; not a diagnosis"}]
    for resource in (*observations, report):
        validate_resource(resource)
    return report, observations


#: Segmentation measurements → (SNOMED CT code, display, UCUM unit).
_MEASUREMENTS = {"area_mm2": ("42798000", "Area", "mm2"), "volume_ml": ("118565006", "Volume", "mL")}


def _measurements(prediction: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """``code`` + ``valueQuantity`` of a segmentation's area / volume (the model's mask; the conformal mask's as a
    component)."""
    values = prediction.get("measurements") or {}
    out = []
    for key, (code, display, unit) in _MEASUREMENTS.items():
        if key not in values:
            continue
        value = float(values[key])
        if not math.isfinite(value) or value < 0:
            raise DataValidationError(f"{where}: measurement {key} must be a non-negative number.")
        segment = str(prediction.get("segment") or "segmented structure")
        item: dict[str, Any] = {
            "code": {"coding": [{"system": SNOMED, "code": code, "display": display}],
                     "text": f"{display} of the {segment} (model mask)"},
            "valueQuantity": {"value": round(value, 4), "unit": unit, "system": UCUM, "code": unit}}
        if f"conformal_{key}" in values:
            item["component"] = [{
                "code": {"coding": [{"system": OUTPUT_SYSTEM, "code": f"conformal-{key.split('_')[0]}",
                                     "display": f"{display} of the conformal mask"}]},
                "valueQuantity": {"value": round(float(values[f"conformal_{key}"]), 4), "unit": unit,
                                  "system": UCUM, "code": unit}}]
        out.append(item)
    return out


def _conclusion(model: ModelInfo, prediction, probabilities: dict, decision: str | None, refer: bool) -> str:
    sentences = [f"AI analysis by medai model {model.id} (version {model.version})."]
    for key, (_, display, unit) in _MEASUREMENTS.items():
        value = (prediction.get("measurements") or {}).get(key)
        if value is not None:
            sentences.append(f"{display} of the segmented {prediction.get('segment') or 'structure'}: "
                             f"{float(value):.4g} {unit}.")
    if decision is not None:
        text = f"Decision at the model's operating point: {decision}"
        if decision in probabilities:
            text += f" (probability {float(probabilities[decision]):.0%})"
        elif len(probabilities) == 1:
            name, value = next(iter(probabilities.items()))
            text += f" (probability of {name}: {float(value):.0%})"
        sentences.append(text + ".")
    if refer:
        sentences.append(_refer_text(prediction))
    sentences.append("Decision support only: review before acting.")
    return " ".join(sentences)


# ------------------------------------------------------------------------------------------------ Bundle
def prediction_bundle(predictions: Sequence[Mapping[str, Any]], model: Any, *, kind: str | None = None,
                      modality: Modality | str | None = None, subject_ids: Sequence[str | None] | None = None,
                      occurrence: dt.datetime | None = None) -> dict[str, Any]:
    """A FHIR R4 ``Bundle`` (type ``collection``) of the resources for a batch of predictions of one model.

    Entries: the model's ``Device`` first, then per prediction a ``RiskAssessment`` (tabular and EHR models) or a
    ``DiagnosticReport`` followed by its ``Observation`` s (image, ECG, text models). Every entry has a
    ``fullUrl`` ``urn:uuid:<id>`` and references between entries use those. Each resource is validated with
    ``fhir.resources.R4B``.

    Args:
        predictions: prediction dicts (see :mod:`medai.serve`). EHR predictions may carry ``prediction_time``
            (ISO; becomes ``occurrenceDateTime``) and ``encounter_id``.
        model: a :class:`ModelInfo` (or a mapping/object with its fields).
        kind: the task kind (default: the model's ``task.kind``).
        modality: the model's input (default: the model's ``modality``).
        subject_ids: the Patient id of each prediction (None where unknown), aligned with ``predictions``.
        occurrence: when the assessment was made (default: now).

    Raises:
        InvalidParameterError: ``subject_ids`` of another length; an unknown modality; a regression model.
        DataValidationError / FhirOutputError: see :func:`risk_assessment` and :func:`diagnostic_report`.
    """
    info = ModelInfo.coerce(model)
    if kind is not None and kind != info.kind:
        info = ModelInfo(**{**info.__dict__, "task": {**info.task, "kind": str(kind)}})
    try:
        modality = Modality(modality or info.modality)
    except ValueError:
        raise invalid_parameter("modality", "prediction_bundle", f"one of {', '.join(Modality)}", modality) \
            from None
    if subject_ids is not None and len(subject_ids) != len(predictions):
        raise InvalidParameterError(f"The 'subject_ids' parameter of prediction_bundle must have one entry per "
                                    f"prediction ({len(predictions)}). Got {len(subject_ids)} instead.")
    device = _device(info, _new_id())
    validate_resource(device)
    device_ref = f"urn:uuid:{device['id']}"
    entries = [{"fullUrl": device_ref, "resource": device}]
    category = {Modality.IMAGE: ReportCategory.IMAGING, Modality.SEGMENTATION: ReportCategory.IMAGING,
                Modality.ECG: ReportCategory.ECG, Modality.TEXT: ReportCategory.TEXT}.get(modality)
    for index, prediction in enumerate(predictions):
        subject = subject_ids[index] if subject_ids is not None else None
        try:
            if modality in _RISK_MODALITIES:
                when = _parse_time(prediction.get("prediction_time")) or occurrence
                resource = risk_assessment(prediction, info, subject=subject, occurrence=when,
                                           encounter=prediction.get("encounter_id"), device_reference=device_ref)
                entries.append({"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource})
            else:
                report, observations = diagnostic_report(prediction, info, subject=subject, category=category,
                                                         imaging_study=prediction.get("imaging_study"),
                                                         device_reference=device_ref)
                entries.append({"fullUrl": f"urn:uuid:{report['id']}", "resource": report})
                entries.extend({"fullUrl": f"urn:uuid:{o['id']}", "resource": o} for o in observations)
        except DataValidationError as error:
            raise DataValidationError(f"prediction {index + 1}: {error}") from None
    bundle = {"resourceType": "Bundle", "id": _new_id(), "type": "collection",
              "timestamp": _instant(None), "entry": entries}
    validate_resource({k: v for k, v in bundle.items() if k != "entry"})
    return bundle


def _parse_time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise DataValidationError("Field prediction_time must be an ISO 8601 date-time.") from None
