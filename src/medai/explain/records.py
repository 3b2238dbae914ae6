"""`medai explain RUN INPUT`: explain one record's prediction, for every modality a run can have.

- tabular (classification, regression, survival): integrated gradients (Sundararajan et al. 2017, zero baseline =
  the training mean of every standardised column, all categories off) on the encoded row, summed back to the
  original columns (:func:`medai.explain.importance.tabular_feature_groups`) → a signed bar chart (PNG) and the
  contributions beside it (``.json`` and ``.csv``);
- ECG: the recording's most confident window with its integrated-gradients time saliency
  (:func:`medai.explain.ecg.draw_strip`) → PNG;
- text: word occlusion (:func:`medai.explain.text.word_occlusion`) → a self-contained HTML page with the report's
  words highlighted by contribution;
- EHR: integrated gradients on the ``(bins, channels)`` sequence summed over time bins and each concept's channels
  (:func:`medai.explain.importance.ehr_channel_groups`) → a signed bar chart (PNG) and the contributions beside it;
- images: :func:`medai.explain.command.explain_image`.

Integrated gradients are complete: the contributions add up to the network's output (logit, regression output in
standard units, log-risk) at the record minus its output at the baseline; both are written out so the user can see
how much of the prediction the chart accounts for.

Privacy: the summary returned for the console names the row by its position, columns/concepts and contributions
only — never a record's values, identifier or text. The files written are the user's own record's explanation; the
HTML page of a text model contains the report, as asked for.
"""

from __future__ import annotations

import html
import io
import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, closest
from medai.core.outputs import write_bytes, write_text
from medai.registry.predictor import Predictor

__all__ = ["OUT_SUFFIX", "Modality", "explain_ecg", "explain_ehr", "explain_input", "explain_tabular",
           "explain_text", "modality_of"]

#: Bars drawn in a contribution chart (the largest |contribution| first); the JSON/CSV hold every column.
MAX_BARS = 20


class Modality(StrEnum):
    """What a model's input is (its artefact's ``preprocessor.json`` ``type``)."""

    IMAGE = "image"
    TABULAR = "tabular"
    ECG = "ecg"
    TEXT = "text"
    EHR = "ehr"


#: The suffix ``--out`` must have, per modality.
OUT_SUFFIX = {Modality.IMAGE: ".png", Modality.TABULAR: ".png", Modality.ECG: ".png", Modality.TEXT: ".html",
              Modality.EHR: ".png"}
_INPUT = {Modality.IMAGE: "an image (PNG, JPEG, DICOM, NIfTI)",
          Modality.TABULAR: "a CSV/Parquet table with the training feature columns",
          Modality.ECG: "one recording (WFDB .hea, CinC .mat, DICOM waveform, CSV with --sampling-rate)",
          Modality.TEXT: "a CSV/Parquet table with the model's text column(s)",
          Modality.EHR: "EHR data (MIMIC folder, FHIR bundle(s), event CSV)"}


def modality_of(predictor: Predictor) -> Modality:
    """The input modality of a loaded predictor."""
    if predictor.is_image:
        return Modality.IMAGE
    if predictor.is_ecg:
        return Modality.ECG
    if predictor.is_text:
        return Modality.TEXT
    if predictor.is_ehr:
        return Modality.EHR
    return Modality.TABULAR


def explain_input(run: Path, input_path: Path, out: Path, *, row: int | None = None, id: str | None = None,
                  target: str | None = None, sampling_rate_hz: float | None = None,
                  method: str = "both") -> dict[str, Any]:
    """Explain the prediction of one record of ``input_path`` with the model of ``run``; write ``out``.

    Args:
        run: a run folder (or its ``model/`` folder).
        input_path: the input, as for ``medai predict`` (see :data:`_INPUT` per modality).
        out: the output file: ``.png`` (image, tabular, ECG, EHR) or ``.html`` (text).
        row: tabular/text: the record's row number, 1 = the first data row (the default).
        id: tabular/text: the value of the model's id column picking the record; EHR: the sample id (ICU stay)
            as in ``medai predict`` output (default the first eligible one).
        target: class (or finding) to explain by name; default the predicted (binary: positive) class.
        sampling_rate_hz: ECG CSV without a time column: samples per second.
        method: image models: ``grad_cam``, ``integrated_gradients`` or ``both``.

    Returns:
        ``modality``, ``prediction`` (text), ``target``, ``record`` (a position, never an identifier),
        ``outputs`` (paths written), ``top`` (tabular/EHR: ``[(column, contribution)]`` largest first), ``notes``.

    Raises:
        InvalidParameterError: ``out`` has the wrong suffix, an option does not apply to this modality, ``row``
            is out of range, ``target`` is not a class of the model.
        DataValidationError: the input is not what the model reads, ``id`` is not found, the record is unusable.
    """
    run, input_path, out = Path(run), Path(input_path), Path(out)
    predictor = Predictor.load(run)
    modality = modality_of(predictor)
    expected = OUT_SUFFIX[modality]
    if out.suffix.lower() != expected:
        raise InvalidParameterError(f"--out must end in {expected} for a {modality} model; got '{out.name}'. "
                                    f"Pass e.g. --out {out.stem or 'explained'}{expected}.")
    if not input_path.exists():
        raise InvalidParameterError(f"Input not found: {input_path}. This {modality} model reads "
                                    f"{_INPUT[modality]}.")
    if row is not None and modality not in (Modality.TABULAR, Modality.TEXT):
        raise InvalidParameterError(f"--row picks a table row; a {modality} model reads {_INPUT[modality]}. "
                                    "Leave --row out" + (" (use --id SAMPLE_ID to pick an ICU stay)."
                                                         if modality is Modality.EHR else "."))
    if id is not None and modality in (Modality.IMAGE, Modality.ECG):
        raise InvalidParameterError(f"--id picks a record of a table or of EHR data; a {modality} model explains "
                                    f"the one file given ({input_path.name}). Leave --id out.")
    if sampling_rate_hz is not None and modality is not Modality.ECG:
        raise InvalidParameterError(f"--sampling-rate is for ECG recordings; this is a {modality} model.")
    if row is not None and id is not None:
        raise InvalidParameterError("Give --row or --id, not both.")
    if modality is not Modality.IMAGE and method != "both":
        raise InvalidParameterError(f"--method is for image models; a {modality} model is explained by "
                                    f"{'word occlusion' if modality is Modality.TEXT else 'integrated gradients'}.")
    if modality is Modality.IMAGE:
        from medai.explain.command import explain_image

        summary = explain_image(run, input_path, out, method=method, target=target)
        return {"modality": str(modality), "record": input_path.name, "outputs": [str(out)], "top": [], **summary}
    if modality is Modality.TABULAR:
        return explain_tabular(predictor, input_path, out, row=row, id=id, target=target)
    if modality is Modality.ECG:
        return explain_ecg(predictor, input_path, out, target=target, sampling_rate_hz=sampling_rate_hz)
    if modality is Modality.TEXT:
        return explain_text(predictor, input_path, out, row=row, id=id, target=target)
    return explain_ehr(predictor, input_path, out, id=id, target=target)


# ------------------------------------------------------------------------------------------------ tabular


def explain_tabular(predictor: Predictor, input_path: Path, out: Path, *, row: int | None = None,
                    id: str | None = None, target: str | None = None) -> dict[str, Any]:
    """Integrated gradients of one table row, per original column; writes ``out`` (PNG) and the contributions
    as ``out.with_suffix('.json')`` and ``.csv`` (column names and contributions only, no values)."""
    from medai.explain.faithfulness import gradient_attribution
    from medai.explain.importance import tabular_feature_groups
    from medai.io.tabular import read_table

    frame = read_table(input_path).reset_index(drop=True)
    index, record = _pick_row(predictor, frame, input_path, row, id)
    x = predictor.encode(frame.iloc[[index]], source=str(input_path))  # (1, encoded features)
    scores = predictor.scores(x)
    column, explained, prediction = _target(predictor, scores[0], target)
    attribution = gradient_attribution(predictor.model, x, column, method="integrated_gradients")[0]
    groups = tabular_feature_groups(predictor.preprocessor)
    contributions = {name: float(attribution[idx].sum()) for name, idx in groups.items()}
    notes = [f"Column '{c}': value not seen in training, encoded as all zeros."
             for c in predictor.preprocessor.unseen_categories(frame.iloc[[index]])]
    return _write_contributions(predictor, out, x, column, contributions, explained, prediction, record,
                                title=f"{input_path.name}, {record}", unit=_output_unit(predictor),
                                notes=notes, record_id=_record_id(predictor, frame, index), id_key="id")


def _pick_row(predictor: Predictor, frame: pd.DataFrame, source: Path, row: int | None,
              id: str | None) -> tuple[int, str]:
    """The 0-based index of the chosen row and how to name it without identifying it ("row N")."""
    if len(frame) == 0:
        raise DataValidationError(f"{source}: the table has no rows; give a table with the record to explain.")
    if id is not None:
        id_column = predictor.task.get("id_column")
        if not id_column:
            raise InvalidParameterError(f"--id needs the model's id column, but this model was trained without one; "
                                        f"pick the record with --row N (1 = the first of {len(frame)} rows).")
        if id_column not in frame.columns:
            raise DataValidationError(f"{source}: the id column '{id_column}' is not in the table."
                                      f"{closest(id_column, frame.columns)} Add it, or pick the record with --row N.")
        matches = np.flatnonzero(frame[id_column].astype(str).to_numpy() == str(id))
        if len(matches) == 0:  # the id itself is not repeated: it identifies a patient
            raise DataValidationError(f"{source}: no row has the given --id in column '{id_column}' "
                                      f"({len(frame)} rows). Check the value, or pick the record with --row N.")
        return int(matches[0]), f"row {int(matches[0]) + 1}"
    number = 1 if row is None else row
    if isinstance(number, bool) or not isinstance(number, int | np.integer) or not 1 <= number <= len(frame):
        raise InvalidParameterError(f"--row must be between 1 and {len(frame)} (the rows of {source}); "
                                    f"got {row!r}.")
    return int(number) - 1, f"row {int(number)}"


def _record_id(predictor: Predictor, frame: pd.DataFrame, index: int) -> str:
    id_column = predictor.task.get("id_column")
    if id_column and id_column in frame.columns:
        return str(frame[id_column].iloc[index])
    return str(index + 1)


def _output_unit(predictor: Predictor) -> str:
    kind = predictor.kind
    if kind is TaskKind.REGRESSION:
        return "regression output (standardised target units)"
    if kind is TaskKind.SURVIVAL:
        return "log relative risk"
    return "logit"


def _target(predictor: Predictor, scores: np.ndarray, target: str | None) -> tuple[int | None, str, str]:
    """(class column for :func:`gradient_attribution`, what is explained, the prediction as text) of one record's
    ``scores`` (:meth:`Predictor.scores` row)."""
    kind = predictor.kind
    names = list(predictor.task.get("class_names") or [])
    if kind in (TaskKind.REGRESSION, TaskKind.SURVIVAL):
        if target is not None:
            raise InvalidParameterError(f"--target is for classification models; this {kind} model has a single "
                                        "output. Leave --target out.")
        if kind is TaskKind.REGRESSION:
            return None, "the predicted value", f"predicted value {float(scores):.4g}"
        group = "high" if scores >= predictor.artifact.thresholds["risk_group_cutoff"] else "low"
        return None, "the risk (log relative risk)", f"log relative risk {float(scores):.3f} ({group}-risk group)"
    if target is not None and target not in names:
        raise InvalidParameterError(f"--target '{target}' is not one of the model's classes ({', '.join(names)})."
                                    f"{closest(target, names)}")
    if kind is TaskKind.BINARY:
        threshold = predictor.artifact.thresholds["threshold"]
        prediction = f"P({names[1]}) = {float(scores):.3f} (threshold {threshold:.3f})"
        column = 0 if target == names[0] else 1  # the single logit, negated to explain the negative class
        return column, names[column], prediction
    prediction = ", ".join(f"P({n}) = {float(p):.3f}" for n, p in zip(names, scores))
    column = int(np.argmax(scores)) if target is None else names.index(target)
    return column, names[column], prediction


def _write_contributions(predictor: Predictor, out: Path, x: np.ndarray, column: int | None,
                         contributions: dict[str, float], explained: str, prediction: str, record: str, *,
                         title: str, unit: str, notes: list[str], record_id: str, id_key: str) -> dict[str, Any]:
    """The bar chart (``out``), JSON and CSV of signed contributions, and the summary (no record values)."""
    import torch

    values = np.array(list(contributions.values()), dtype=float)
    if not np.all(np.isfinite(values)):
        raise DataValidationError(f"{title}: the attributions are not finite; the record's encoded values or the "
                                  "model's output overflow. Check the input's units against the training data.")
    with torch.no_grad():
        model = predictor.model.eval()
        inputs = torch.as_tensor(np.asarray(x, dtype=np.float32))
        both = model(torch.cat([inputs, torch.zeros_like(inputs)])).reshape(2, -1).double().numpy()
    if both.shape[1] == 1:  # a single output: column 0 is its negation (gradient_attribution's convention)
        sign, k = (-1.0 if column == 0 else 1.0), 0
    else:
        sign, k = 1.0, int(column)
    output, baseline = sign * both[0, k], sign * both[1, k]
    order = sorted(contributions, key=lambda c: -abs(contributions[c]))
    result = {"method": "integrated_gradients", "baseline_input": "zeros (the training mean of every standardised "
              "input; categories and missing-indicators off)", "explained": explained, "prediction": prediction,
              "record": record, id_key: record_id, "output_unit": unit, "output": float(output),
              "baseline_output": float(baseline), "sum_of_contributions": float(values.sum()),
              "contributions": [{"name": c, "contribution": contributions[c]} for c in order]}
    json_path, csv_path = out.with_suffix(".json"), out.with_suffix(".csv")
    write_bytes(out, _bar_chart(order[:MAX_BARS], [contributions[c] for c in order[:MAX_BARS]],
                                f"{title}: {prediction}\nexplaining '{explained}' ({unit})"))
    write_text(json_path, json.dumps(result, indent=2) + "\n")
    write_text(csv_path, pd.DataFrame(result["contributions"]).to_csv(index=False))
    return {"modality": str(modality_of(predictor)), "prediction": prediction, "target": explained,
            "record": record, "outputs": [str(out), str(json_path), str(csv_path)],
            "top": [(c, contributions[c]) for c in order[:5]], "notes": notes}


def _bar_chart(names: list[str], values: list[float], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.6))
    positions = np.arange(len(names))[::-1]  # largest at the top
    colours = ["tab:red" if v > 0 else "tab:blue" for v in values]
    ax.barh(positions, values, color=colours)
    ax.set_yticks(positions, names, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("contribution (red: towards the explained output, blue: against)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ ECG


def explain_ecg(predictor: Predictor, input_path: Path, out: Path, *, target: str | None = None,
                sampling_rate_hz: float | None = None) -> dict[str, Any]:
    """The strip of the recording's most confident window with its integrated-gradients saliency band (PNG)."""
    from medai.explain.ecg import draw_strip
    from medai.io.ecg import read_ecg

    if input_path.is_dir():
        raise InvalidParameterError(f"{input_path} is a folder; `medai explain` explains one recording. Pass one "
                                    "file of it (WFDB .hea, CinC .mat, DICOM, CSV).")
    if predictor.preprocessor.unit != "recording":
        raise InvalidParameterError(f"{predictor.artifact.path} is a beat model; `medai explain` draws rhythm "
                                    "strips of recording models only. Use `medai predict` for per-beat labels.")
    if target is not None:
        raise InvalidParameterError("--target is not available for ECG models: the strip explains the predicted "
                                    "class of its most confident window. Leave --target out.")
    record = read_ecg(input_path, sampling_rate_hz=sampling_rate_hz)
    signal, check, notes = predictor.preprocessor.condition(record)
    if signal is None:
        raise DataValidationError(f"{input_path}: the signal failed the quality check ({'; '.join(check.reasons)}); "
                                  "no rhythm is explained. Check the leads and the sampling rate.")
    windows, _ = predictor.preprocessor.windows(signal)
    window_scores = predictor.scores(windows, recalibrate=False)  # as predict_signals: the mean, then the map
    mean = window_scores.mean(axis=0, keepdims=window_scores.ndim == 2)
    scores = predictor.recalibrated(np.atleast_1d(mean) if window_scores.ndim == 1 else mean)[0]
    entry = draw_strip(predictor, signal, record_id=input_path.name, truth=None, scores=scores, path=out)
    _, _, prediction = _target(predictor, np.asarray(scores), None)
    return {"modality": str(Modality.ECG), "prediction": prediction, "target": entry["pred"],
            "record": input_path.name, "outputs": [str(out)], "top": [],
            "window_start_s": entry["window_start_s"], "notes": list(notes)}


# ------------------------------------------------------------------------------------------------ text


def explain_text(predictor: Predictor, input_path: Path, out: Path, *, row: int | None = None,
                 id: str | None = None, target: str | None = None) -> dict[str, Any]:
    """Word occlusion of one report → a self-contained HTML page (``out``) with each word's contribution to the
    explained class's logit as its background colour and tooltip."""
    from medai.explain.text import word_occlusion, word_spans
    from medai.io.tabular import read_table

    frame = read_table(input_path).reset_index(drop=True)
    index, record = _pick_row(predictor, frame, input_path, row, id)
    texts, empty = predictor.preprocessor.texts(frame.iloc[[index]], str(input_path))
    if empty[0]:
        raise DataValidationError(f"{input_path}: {record} has no text in {', '.join(predictor.preprocessor.columns)}"
                                  "; pick another row with --row or --id.")
    text = str(texts[0])
    scores = predictor.scores(np.array([text], dtype=object))
    column, explained, prediction = _target(predictor, scores[0], target)
    single = predictor.task["out_features"] == 1
    if single:  # the single logit, negated to explain the negative class
        sign = -1.0 if column == 0 else 1.0
        values = word_occlusion(lambda batch: sign * predictor.raw_output(batch)[:, 0], [text])[0]
    else:
        values = word_occlusion(predictor.raw_output, [text], column)[0]
    if not np.all(np.isfinite(values)):
        raise DataValidationError(f"{input_path}: the word attributions of {record} are not finite.")
    spans = word_spans(text)
    page = _text_page(text, spans, values, title=f"{input_path.name}, {record}", prediction=prediction,
                      explained=explained)
    write_text(out, page)
    return {"modality": str(Modality.TEXT), "prediction": prediction, "target": explained, "record": record,
            "outputs": [str(out)], "top": [], "n_words": len(spans),
            "attributions": [float(v) for v in values], "notes": []}


def _text_page(text: str, spans: list[tuple[int, int]], values: np.ndarray, *, title: str, prediction: str,
               explained: str) -> str:
    scale = float(np.abs(values).max()) if len(values) and np.abs(values).max() > 0 else 1.0
    parts, position = [], 0
    for (start, end), value in zip(spans, values, strict=True):
        parts.append(html.escape(text[position:start]))
        alpha = min(1.0, abs(float(value)) / scale)
        colour = f"rgba(214,39,40,{alpha:.2f})" if value > 0 else f"rgba(31,119,180,{alpha:.2f})"
        parts.append(f'<span class="w" style="background:{colour}" title="{float(value):+.4f}">'
                     f"{html.escape(text[start:end])}</span>")
        position = end
    parts.append(html.escape(text[position:]))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>medai explain — {html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;line-height:1.7}}
.report{{white-space:pre-wrap;border:1px solid #ccc;padding:1em;border-radius:4px}}
.key span{{padding:0 .4em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p><b>Prediction:</b> {html.escape(prediction)}. <b>Explained:</b> '{html.escape(explained)}'.</p>
<p class="key">Word occlusion: a word's contribution is the drop of the explained class's logit when that word alone
is removed. <span style="background:rgba(214,39,40,.6)">red: evidence for</span>
<span style="background:rgba(31,119,180,.6)">blue: against</span>; hover a word for its value.</p>
<div class="report">{''.join(parts)}</div>
<p><small>This page contains the report text: keep it with the record it came from.</small></p>
</body></html>
"""


# ------------------------------------------------------------------------------------------------ EHR


def explain_ehr(predictor: Predictor, input_path: Path, out: Path, *, id: str | None = None,
                target: str | None = None) -> dict[str, Any]:
    """Integrated gradients of one ICU stay's sequence at the model's prediction time, summed over time bins and
    each concept's channels (value, mask, time since last); writes ``out`` (PNG), ``.json`` and ``.csv``."""
    from medai.explain.faithfulness import gradient_attribution
    from medai.explain.importance import ehr_channel_groups
    from medai.tasks.ehr import EhrLabeler
    from medai.workflows.ehr import read_ehr

    timelines, _ = read_ehr(input_path, progress=False, announce=lambda s: None)
    meta = predictor.task
    # the artefact's own task definition, as predict_ehr: outcomes are not read
    labeler = EhrLabeler(meta["outcome"], meta["observation_hours"], meta["horizon_hours"], with_labels=False)
    samples, excluded = labeler.samples(timelines)
    notes = [f"{n} encounter(s) not eligible: {reason}." for reason, n in excluded.items()]
    if not samples:
        raise DataValidationError(f"{input_path}: no encounter is eligible for this model "
                                  f"({meta['observation_hours']} h of observation needed); nothing to explain.")
    if id is None:
        position = 0
    else:
        matches = [i for i, s in enumerate(samples) if str(s.sample_id) == str(id)]
        if not matches:  # the id itself is not repeated: it identifies a stay
            raise DataValidationError(f"{input_path}: no eligible encounter has the given --id ({len(samples)} "
                                      "eligible). Use a sample id from the 'id' column of `medai predict` output.")
        position = matches[0]
    sample = samples[position]
    x = predictor.preprocessor.sequences([sample], timelines)  # (1, bins, channels)
    scores = predictor.scores(x)
    column, explained, prediction = _target(predictor, scores[0], target)
    attribution = gradient_attribution(predictor.model, x, column, method="integrated_gradients")[0]
    by_channel = attribution.sum(axis=0)  # over time bins
    groups = ehr_channel_groups(predictor.preprocessor)
    contributions = {name: float(by_channel[idx].sum()) for name, idx in groups.items()}
    record = f"eligible encounter {position + 1} of {len(samples)}"
    return _write_contributions(predictor, out, x, column, contributions, explained, prediction, record,
                                title=f"{input_path.name}, {record}", unit=_output_unit(predictor), notes=notes,
                                record_id=str(sample.sample_id), id_key="sample_id")
