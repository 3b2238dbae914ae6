"""Request payloads → prediction dicts (the contract in :mod:`medai.serve`), through the same Predictor and readers
as `medai predict`.

What each model takes:

- tabular: JSON ``{"records": [{column: value, …}, …]}``;
- text: JSON ``{"texts": ["…", …]}`` or ``{"records": [{text column: "…"}]}``;
- image: uploaded files (PNG, JPEG, DICOM, NIfTI), one prediction per file;
- ECG: uploaded files forming recordings (WFDB ``.hea`` + ``.dat``, CinC ``.mat`` + ``.hea``, DICOM waveform, CSV)
  or JSON ``{"sampling_rate_hz": 300, "leads": ["I"], "signal": [[…]]}`` (leads × samples, millivolts);
- EHR: a FHIR R4 Bundle (or a list of them) as JSON, or uploaded ``.json``/``.ndjson`` Bundles.

Uploads are written into a private temporary folder under medai's own file names (the client's names are used
only for their suffix and as the record id), read with medai's readers, and deleted when the request ends:
nothing a request sends is kept.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError
from medai.serve.models import ServedModel

#: Records explained per request (explanations cost one or more backward passes each).
MAX_EXPLAINED = 8
#: Features / tokens listed in a ``top_features`` / ``token_attributions`` explanation.
TOP_N = 10
#: Suffixes an upload may have, per modality (the suffix decides the reader, as for `medai predict`).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".nii", ".nii.gz", ".tif", ".tiff", ".bmp")
ECG_SUFFIXES = (".hea", ".dat", ".mat", ".dcm", ".csv", ".atr")
EHR_SUFFIXES = (".json", ".ndjson")


class UnsupportedInputError(InvalidParameterError):
    """The request's content does not fit the model (HTTP 415)."""


# ----------------------------------------------------------------------------------------------- dispatch
def predict_json(model: ServedModel, body: Any, *, explain: bool = True) -> tuple[list[dict], list[str]]:
    """Predictions for a JSON body (see the module docstring for what each modality takes)."""
    if model.modality == "ehr":
        return predict_fhir(model, body, explain=explain)
    if not isinstance(body, dict):
        raise DataValidationError(f"The request body must be a JSON object; {input_hint(model)}.")
    if isinstance(body.get("resourceType"), str):
        raise UnsupportedInputError(f"Model '{model.id}' is a {model.modality} model; FHIR input is for EHR models. "
                                    f"It takes {input_hint(model)}.")
    if model.modality == "tabular":
        return predict_table(model, _records(body, model), explain=explain)
    if model.modality == "text":
        return predict_texts(model, body, explain=explain)
    if model.modality == "ecg":
        return predict_ecg_json(model, body, explain=explain)
    raise UnsupportedInputError(f"Model '{model.id}' is a {model.modality} model: upload a file (multipart field "
                                f"'file'); it takes {input_hint(model)}.")


def predict_files(model: ServedModel, files: list[tuple[str, bytes]], *, explain: bool = True,
                  sampling_rate_hz: float | None = None) -> tuple[list[dict], list[str]]:
    """Predictions for uploaded files ``[(client file name, content)]``."""
    if not files:
        raise DataValidationError("No file was uploaded: send the file(s) in the multipart field 'file'.")
    if model.modality == "tabular":
        from medai.io.tabular import read_table

        with _uploads(files, (".csv", ".tsv", ".parquet")) as paths:
            frame = pd.concat([read_table(p) for p in paths], ignore_index=True)
        return predict_table(model, frame, explain=explain)
    if model.modality == "image":
        return predict_images(model, files, explain=explain)
    if model.modality == "segmentation":
        return predict_segmentation(model, files, explain=explain)
    if model.modality == "ecg":
        return predict_ecg_files(model, files, explain=explain, sampling_rate_hz=sampling_rate_hz)
    if model.modality == "ehr":
        with _uploads(files, EHR_SUFFIXES) as paths:
            return _predict_ehr_path(model, paths[0].parent, explain=explain)
    if model.modality == "text":
        from medai.io.tabular import read_table

        with _uploads(files, (".csv", ".tsv", ".parquet")) as paths:
            frame = pd.concat([read_table(p) for p in paths], ignore_index=True)
        return predict_texts(model, {"records": frame.to_dict(orient="records")}, explain=explain)
    raise UnsupportedInputError(f"Model '{model.id}' ({model.modality}) does not take uploads here.")


def input_hint(model: ServedModel) -> str:
    from medai.serve.models import input_description

    return input_description(model)


# ----------------------------------------------------------------------------------------------- tabular
def _records(body: dict, model: ServedModel) -> pd.DataFrame:
    records = body.get("records")
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise DataValidationError(f"'records' must be a non-empty list of objects (one per patient record); "
                                  f"model '{model.id}' takes {input_hint(model)}.")
    return pd.DataFrame.from_records(records)


def predict_table(model: ServedModel, frame: pd.DataFrame, *, explain: bool) -> tuple[list[dict], list[str]]:
    predictor = model.predictor
    pre = predictor.preprocessor
    missing = [c for c in list(pre.numeric_columns) + list(pre.categorical_columns) if c not in frame.columns]
    if missing:
        raise DataValidationError(f"Record field(s) {', '.join(repr(c) for c in missing[:10])} missing: model "
                                  f"'{model.id}' needs every training column (a value may be null when unknown).")
    frame = frame.reset_index(drop=True)
    x = predictor.encode(frame, source="request")  # once: scores and explanations share it
    id_column = predictor.task.get("id_column")
    ids = (frame[id_column].astype(str).to_numpy() if id_column and id_column in frame.columns
           else np.array([str(i + 1) for i in range(len(frame))], dtype=object))
    rows = predictor.format_scores(predictor.scores(x)).to_dict(orient="records")
    warnings = [f"Field '{c}': {n} value(s) not seen in training, encoded as all zeros."
                for c, n in pre.unseen_categories(frame).items()]
    predictions = [to_prediction(model, {**row, "id": record_id}) for record_id, row in zip(ids, rows)]
    _monitor(model, predictions, x)
    if explain:
        from medai.explain.importance import tabular_feature_groups

        groups = tabular_feature_groups(pre)
        for i, prediction in enumerate(predictions[:MAX_EXPLAINED]):
            prediction["explanation"] = _top_features(model, x[i:i + 1], prediction, groups,
                                                      "integrated gradients on the encoded record, summed per field")
    return predictions, warnings


def _top_features(model: ServedModel, x: np.ndarray, prediction: dict, groups: dict[str, list[int]],
                  method: str) -> dict[str, Any]:
    from medai.explain.faithfulness import gradient_attribution

    column = _explained_column(model, prediction)
    with model.lock:  # attributions switch the network's mode and hooks: one at a time per model
        attribution = gradient_attribution(model.predictor.model, np.asarray(x, dtype=np.float32), column,
                                           method="integrated_gradients")[0]
    contributions = {name: float(np.asarray(attribution)[..., idx].sum()) for name, idx in groups.items()}
    order = sorted(contributions, key=lambda c: -abs(contributions[c]))[:TOP_N]
    return {"type": "top_features", "method": method, "explained": _explained_name(model, column),
            "features": [{"name": c, "attribution": contributions[c]} for c in order]}


def _explained_column(model: ServedModel, prediction: dict) -> int | None:
    """Output column explained: binary → the positive class (1); multi-class → the decision; else the output."""
    kind = model.kind
    if kind is TaskKind.BINARY:
        return 1
    if kind in (TaskKind.MULTICLASS, TaskKind.MULTILABEL):
        probabilities = prediction.get("probability") or {}
        names = list(model.predictor.task["class_names"])
        best = max(probabilities, key=probabilities.get) if probabilities else names[0]
        return names.index(best)
    return None


def _explained_name(model: ServedModel, column: int | None) -> str:
    if column is None:
        return "log relative risk" if model.kind is TaskKind.SURVIVAL else "predicted value"
    return str(model.predictor.task["class_names"][column])


# ----------------------------------------------------------------------------------------------- text
def predict_texts(model: ServedModel, body: dict, *, explain: bool) -> tuple[list[dict], list[str]]:
    from medai.workflows.text import predict_table as predict_text_table

    predictor = model.predictor
    if "texts" in body:
        texts = body["texts"]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise DataValidationError("'texts' must be a non-empty list of strings (one report each).")
        columns = predictor.preprocessor.columns
        if len(columns) != 1:
            raise DataValidationError(f"Model '{model.id}' reads several text columns ({', '.join(columns)}): send "
                                      '{"records": [{column: text, …}]} instead of "texts".')
        frame = pd.DataFrame({columns[0]: texts})
    else:
        frame = _records(body, model)
    out, warnings = predict_text_table(predictor, frame, "request")
    predictions = [to_prediction(model, row) for row in out.to_dict(orient="records")]
    composed, empty = predictor.preprocessor.texts(frame.reset_index(drop=True), "request")
    if not empty.any():  # rows without text have no prediction to monitor
        _monitor(model, predictions, np.asarray(composed, dtype=object))
    if explain:
        from medai.explain.text import word_occlusion, word_spans

        for i, prediction in enumerate(predictions[:MAX_EXPLAINED]):
            if empty[i]:
                continue
            text = str(composed[i])
            column = _explained_column(model, prediction)
            with model.lock:
                if predictor.task["out_features"] == 1:
                    values = word_occlusion(lambda b: predictor.raw_output(b)[:, 0], [text])[0]
                else:
                    values = word_occlusion(predictor.raw_output, [text], column)[0]
            spans = word_spans(text)
            order = np.argsort(-np.abs(values))[:TOP_N]
            # the words are the client's own report, returned to the client: never logged
            prediction["explanation"] = {
                "type": "token_attributions", "method": "word occlusion (drop of the explained logit)",
                "explained": _explained_name(model, column),
                "tokens": [{"token": text[spans[j][0]:spans[j][1]], "position": int(j),
                            "attribution": float(values[j])} for j in order]}
    return predictions, warnings


# ----------------------------------------------------------------------------------------------- images
def predict_images(model: ServedModel, files: list[tuple[str, bytes]], *,
                   explain: bool) -> tuple[list[dict], list[str]]:
    predictor = model.predictor
    records = _read_uploaded_images(files)
    images, notes = predictor.prepare_images(records)
    out = pd.concat([pd.DataFrame({"id": [r.id for r in records]}), predictor.format_scores(predictor.scores(images))],
                    axis=1)
    predictions = [to_prediction(model, row) for row in out.to_dict(orient="records")]
    for prediction, record_notes in zip(predictions, notes):
        prediction["warnings"] = list(record_notes)
    _monitor(model, predictions, images)
    if explain:
        for i, prediction in enumerate(predictions[:MAX_EXPLAINED]):
            prediction["explanation"] = _heatmap(model, images[i:i + 1], prediction)
    return predictions, []


def _read_uploaded_images(files: list[tuple[str, bytes]]) -> list:
    from medai.io.images import read_image

    with _uploads(files, IMAGE_SUFFIXES) as paths:
        return [_renamed(read_image(path), _record_name(name)) for (name, _), path in zip(files, paths)]


def predict_segmentation(model: ServedModel, files: list[tuple[str, bytes]], *,
                         explain: bool) -> tuple[list[dict], list[str]]:
    """Segment uploaded images or volumes (:mod:`medai.serve.segment`): mask overlay, area or volume, referral."""
    from medai.serve.segment import public, segment_records

    return [public(p) for p in segment_records(model, _read_uploaded_images(files), explain=explain)], []


def _heatmap(model: ServedModel, image: np.ndarray, prediction: dict) -> dict[str, Any]:
    from medai.explain.run import available_methods, display_maps, panel
    from medai.explain.saliency import explain_images

    predictor = model.predictor
    column = _explained_column(model, prediction)
    method = available_methods(predictor.model)[0]  # Grad-CAM for CNNs, integrated gradients otherwise
    with model.lock:
        maps = display_maps(explain_images(predictor.model, predictor.model_input(image), column, methods=[method]))
    explained = _explained_name(model, column)
    png = panel(image[0], {method: maps[method][0]}, title=f"explaining '{explained}'")
    return {"type": "heatmap", "method": method.replace("_", " "), "explained": explained,
            "png_base64": base64.b64encode(png).decode("ascii")}


# ----------------------------------------------------------------------------------------------- ECG
def predict_ecg_json(model: ServedModel, body: dict, *, explain: bool) -> tuple[list[dict], list[str]]:
    from medai.core.records import Modality, Record
    from medai.io.ecg import normalise_lead_name

    rate, signal, leads = body.get("sampling_rate_hz"), body.get("signal"), body.get("leads")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 1 <= rate <= 100_000:
        raise DataValidationError("'sampling_rate_hz' must be a number of samples per second (e.g. 300).")
    try:
        data = np.asarray(signal, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataValidationError("'signal' must be a list of leads, each a list of numbers (millivolts).") from None
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2 or data.shape[1] < 2:
        raise DataValidationError(f"'signal' must be leads × samples; got shape {list(data.shape)}.")
    if not np.isfinite(data).all():
        raise DataValidationError("'signal' holds non-finite values (NaN or infinity); send numbers only.")
    if leads is None:
        leads = [f"lead{i + 1}" for i in range(data.shape[0])]
    if not isinstance(leads, list) or len(leads) != data.shape[0] or not all(isinstance(x, str) for x in leads):
        raise DataValidationError(f"'leads' must name the {data.shape[0]} lead(s) of 'signal' in order.")
    record_id = str(body.get("id") or "1")
    meta = {"source": "request", "format": "json", "sampling_rate_hz": float(rate),
            "sampling_rate_source": "request", "lead_names": [normalise_lead_name(n) for n in leads],
            "source_lead_names": list(leads), "units": ["mV"] * len(leads), "n_samples": int(data.shape[1]),
            "duration_s": float(data.shape[1] / rate)}
    record = Record(id=record_id, modality=Modality.ECG, data=data, meta=meta)
    return _predict_ecg_records(model, [record], explain=explain)


def predict_ecg_files(model: ServedModel, files: list[tuple[str, bytes]], *, explain: bool,
                      sampling_rate_hz: float | None) -> tuple[list[dict], list[str]]:
    from medai.io.ecg import read_ecg

    with _uploads(files, ECG_SUFFIXES, keep_stems=True) as paths:
        heads = [p for p in paths if p.suffix.lower() in (".hea", ".dcm", ".csv")]
        heads += [p for p in paths if p.suffix.lower() == ".mat" and p.with_suffix(".hea") not in heads]
        if not heads:
            raise DataValidationError("No ECG record among the uploaded files: send a WFDB header (.hea) with its "
                                      "signal file, a CinC .mat (+ .hea), a DICOM waveform or a CSV.")
        records = [read_ecg(p, sampling_rate_hz=sampling_rate_hz) for p in heads]
    return _predict_ecg_records(model, records, explain=explain)


def _predict_ecg_records(model: ServedModel, records, *, explain: bool) -> tuple[list[dict], list[str]]:
    predictor = model.predictor
    out = predictor.predict_signals(records)
    predictions = [to_prediction(model, row) for row in out.to_dict(orient="records")]
    if explain and predictor.preprocessor.unit == "recording":
        by_id = {r.id: r for r in records}
        for prediction in predictions[:MAX_EXPLAINED]:
            record = by_id.get(prediction["id"])
            if record is not None and not prediction.get("unusable"):
                prediction["explanation"] = _strip(model, record, prediction)
    return predictions, []


def _strip(model: ServedModel, record, prediction: dict) -> dict[str, Any]:
    from medai.explain.ecg import draw_strip

    predictor = model.predictor
    signal, _, _ = predictor.preprocessor.condition(record)
    if signal is None:
        return {"type": "none", "reason": "the signal failed the quality check"}
    names = list(predictor.task["class_names"])
    probabilities = prediction["probability"]
    scores = (np.array([probabilities[n] for n in names]) if isinstance(probabilities, dict)
              else np.array(probabilities))
    with tempfile.TemporaryDirectory(prefix="medai-ecg-") as folder, model.lock:
        path = Path(folder) / "strip.png"
        entry = draw_strip(predictor, signal, record_id="ECG", truth=None, scores=scores, path=path)
        png = path.read_bytes()
    return {"type": "saliency_strip", "method": "integrated gradients over time", "explained": entry["pred"],
            "window_start_s": entry["window_start_s"], "png_base64": base64.b64encode(png).decode("ascii")}


# ----------------------------------------------------------------------------------------------- EHR (FHIR)
def predict_fhir(model: ServedModel, body: Any, *, explain: bool) -> tuple[list[dict], list[str]]:
    """A FHIR R4 Bundle (or a JSON list of Bundles / resources) → predictions at the model's prediction time."""
    if model.modality != "ehr":
        raise UnsupportedInputError(f"FHIR input is for EHR models; model '{model.id}' takes {input_hint(model)}.")
    bundles = body if isinstance(body, list) else [body]
    if not bundles or not all(isinstance(b, dict) and isinstance(b.get("resourceType"), str) for b in bundles):
        raise DataValidationError("The body must be a FHIR R4 Bundle (an object with resourceType 'Bundle') or a "
                                  "list of them.")
    with tempfile.TemporaryDirectory(prefix="medai-fhir-") as folder:
        for i, bundle in enumerate(bundles):
            (Path(folder) / f"bundle-{i + 1:04d}.json").write_text(json.dumps(bundle))
        return _predict_ehr_path(model, Path(folder), explain=explain)


def _predict_ehr_path(model: ServedModel, path: Path, *, explain: bool) -> tuple[list[dict], list[str]]:
    from medai.workflows.ehr import read_ehr

    timelines, _ = read_ehr(path, progress=False, announce=lambda s: None)
    return predict_timelines(model, timelines, explain=explain, monitor=True)


def predict_timelines(model: ServedModel, timelines, *, explain: bool = False,
                      monitor: bool = False) -> tuple[list[dict], list[str]]:
    """Predictions for every eligible encounter of patient timelines at the model's prediction time (outcomes are
    not read), and notes on the encounters left out (counts and reasons only). Each prediction also has
    ``prediction_time``, ``encounter_id`` and ``patient`` (the client's own Patient id, for FHIR subjects)."""
    from medai.workflows.ehr import _task_for

    predictor = model.predictor
    task = _task_for(predictor, timelines, "request", with_labels=False)
    notes = [f"{n} encounter(s) not predicted: {reason}." for reason, n in task.excluded.items()]
    if not task.samples:
        return [], notes
    x = predictor.preprocessor.sequences(task.samples, timelines)
    out = pd.concat([pd.DataFrame({"id": task.ids}), predictor.format_scores(predictor.scores(x))], axis=1)
    predictions = []
    for sample, patient, row in zip(task.samples, task.groups, out.to_dict(orient="records")):
        prediction = to_prediction(model, row)
        prediction["prediction_time"] = sample.prediction_time.isoformat()
        prediction["encounter_id"] = str(row["id"])
        prediction["patient"] = str(patient)
        predictions.append(prediction)
    if monitor:
        _monitor(model, predictions, x)
    if explain:
        from medai.explain.importance import ehr_channel_groups

        groups = ehr_channel_groups(predictor.preprocessor)
        for i, prediction in enumerate(predictions[:MAX_EXPLAINED]):
            prediction["explanation"] = _top_features(model, x[i:i + 1], prediction, groups,
                                                      "integrated gradients on the event sequence, summed per "
                                                      "concept")
    return predictions, notes


# ----------------------------------------------------------------------------------------------- monitoring
def _monitor(model: ServedModel, predictions: list[dict], model_input) -> None:
    """Attach the drift-monitored input features (numbers derived from the model input, never the input) to each
    prediction; the service's DriftMonitor records them and takes them off before the response."""
    if getattr(model.predictor.artifact, "drift_reference", None) is None or not predictions:
        return
    from medai.registry.drift_reference import features_for
    from medai.serve.monitoring import attach_monitor_features

    attach_monitor_features(predictions, features_for(model.predictor, model_input))


# ----------------------------------------------------------------------------------------------- rows → dicts
def to_prediction(model: ServedModel, row: dict[str, Any]) -> dict[str, Any]:
    """One Predictor output row → the prediction dict of :mod:`medai.serve`."""
    names = list(model.predictor.task.get("class_names") or [])
    kind = model.kind
    out: dict[str, Any] = {"id": str(row.get("id"))}
    pred = row.get("pred")
    if isinstance(pred, str) and pred in ("unusable", "no beats", "no text"):
        out.update(decision=None, refer=True, refer_reason=str(row.get("note") or pred),
                   explanation={"type": "none", "reason": pred}, warnings=[], model=model.ref, unusable=True)
        return out
    if kind is TaskKind.BINARY:
        out["probability"] = _number(row["score"])
    elif kind in (TaskKind.MULTICLASS, TaskKind.MULTILABEL):
        out["probability"] = {n: _number(row[f"score_{n}"]) for n in names}
    elif kind is TaskKind.SURVIVAL:
        out["risk"] = {"log_relative_risk": _number(row["score"]),
                       "survival": {k[len("surv_"):]: _number(v) for k, v in row.items() if k.startswith("surv_")}}
    elif kind is TaskKind.REGRESSION:
        out["value"] = _number(row["score"])
        if "lower" in row:
            out["interval"] = [_number(row["lower"]), _number(row["upper"])]
    if kind is TaskKind.MULTILABEL:
        out["decision"] = [n for n in names if int(row.get(f"pred_{n}", 0)) == 1]
    else:
        out["decision"] = pred if kind is not TaskKind.REGRESSION else None
    if "prediction_set" in row:
        out["prediction_set"] = _set_members(str(row["prediction_set"]))
    abstain = bool(int(row.get("abstain", 0) or 0))
    out["refer"] = abstain
    out["refer_reason"] = ("the conformal prediction set is not a single answer: uncertain, refer to a clinician"
                           if abstain else None)
    out["explanation"] = {"type": "none"}
    note = row.get("note")
    out["warnings"] = [str(note)] if isinstance(note, str) and note else []
    out["model"] = model.ref
    return out


def _set_members(text: str) -> list[str]:
    """``{a, b}`` (single-label sets) or ``a;no b;c?`` (multi-label) → list of members."""
    text = text.strip()
    if text.startswith("{"):
        inner = text[1:-1].strip()
        return [m.strip() for m in inner.split(",")] if inner else []
    return [m for m in text.split(";") if m]


def _number(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


# ----------------------------------------------------------------------------------------------- uploads
def _record_name(name: str) -> str:
    """The client's file name without folders or suffix (the record id the client sees again)."""
    base = re.split(r"[\\/]", name or "upload")[-1]
    for suffix in (".nii.gz",):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)] or "upload"
    return Path(base).stem or "upload"


def _renamed(record, name: str):
    import dataclasses

    return dataclasses.replace(record, id=name, meta={**record.meta, "source": name})


class _uploads:
    """Context manager: uploads written into a private temporary folder, paths in upload order; deleted after.

    ``keep_stems``: keep the client's file stems (a WFDB header names its signal file), sanitised to
    ``[A-Za-z0-9_-]``; otherwise files are ``upload-N<suffix>``.
    """

    def __init__(self, files: list[tuple[str, bytes]], suffixes: tuple[str, ...], keep_stems: bool = False) -> None:
        self.files, self.suffixes, self.keep_stems = files, suffixes, keep_stems

    def __enter__(self) -> list[Path]:
        self._folder = tempfile.TemporaryDirectory(prefix="medai-upload-")
        folder = Path(self._folder.name)
        paths = []
        for i, (name, content) in enumerate(self.files):
            base = re.split(r"[\\/]", name or "")[-1]
            suffix = next((s for s in sorted(self.suffixes, key=len, reverse=True) if base.lower().endswith(s)), None)
            if suffix is None:
                self._folder.cleanup()
                raise UnsupportedInputError(f"Upload {i + 1} has a file type this model does not read; expected "
                                            f"one of {', '.join(self.suffixes)}.")
            stem = re.sub(r"[^A-Za-z0-9_-]", "_", base[: -len(suffix)])[:64] if self.keep_stems else f"upload-{i + 1}"
            path = folder / f"{stem or f'upload-{i + 1}'}{suffix}"
            path.write_bytes(content)
            paths.append(path)
        return paths

    def __exit__(self, *exc) -> None:
        self._folder.cleanup()
