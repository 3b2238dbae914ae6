"""Prometheus metrics of the service and drift monitoring per model version.

**Metrics** (:class:`ServiceMetrics`, one ``CollectorRegistry`` per service, never the process-global one, so two
apps in one process — tests — do not share counts), exposed at ``GET /metrics`` in the Prometheus text format:

  medai_http_requests_total{endpoint, method, status}          requests answered (endpoint = the route template)
  medai_http_request_duration_seconds{endpoint}                latency histogram, buckets 1 ms … 5 s
  medai_predictions_total{model_id, model_version, decision}    predictions per decision (multi-label: per finding)
  medai_referrals_total{model_id, model_version}                predictions flagged "refer to a clinician"
  medai_model_info{model_id, model_version, sha256}             1 per loaded model

**Drift** (:class:`DriftMonitor`): every served prediction is recorded under a random prediction id with its model
(id, version, sha256), its score (what the prediction dict gives: probability, log relative risk or value) and
the monitored features that :func:`medai.registry.drift_reference.features_for` derives from the model input
(standardised column values, image intensity statistics, ECG amplitude, text length, ...). Outcomes that become
known later are attached with :meth:`DriftMonitor.add_label`. What is *not* stored: the request, record ids,
names, dates of birth, note text, images or signals — nothing that identifies a patient; only derived numbers and
category labels keyed by an id that means nothing outside this database.

:meth:`DriftMonitor.report` compares the live records of one model version with the model's drift reference
(``drift_reference.json``, computed on its validation split): the population stability index (PSI) of each
feature and of the score distribution, and — once labels exist — the calibration of the labelled live predictions
(ECE, calibration slope and intercept). ``medai monitor-report`` writes it as JSON and a self-contained HTML page.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy import Column, Engine, Index, MetaData, String, Table, Text, insert, select, update

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, invalid_parameter
from medai.core.outputs import write_json, write_text
from medai.registry.drift_reference import (
    OTHER, PSI_MAJOR, PSI_MODERATE, DriftLevel, bin_counts, drift_level, expected_psi_no_shift,
    population_stability_index, score_features,
)
from medai.serve import store

#: Latency buckets (seconds): 1 ms to 5 s, roughly ×2.5 apart — a table model answers in ms, a 224 px CNN with a
#: saliency map in about a second.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Below this many live predictions a PSI is unreliable (a 10-bin histogram of a few dozen values is mostly noise).
MIN_N = 100
#: Features (besides the scores) drawn in the HTML report, most drifted first.
N_CHARTS = 6
#: Private key a prediction dict may carry its monitored features in; :meth:`DriftMonitor.record_predictions`
#: removes it before the prediction leaves the service.
FEATURES_KEY = "_monitor_features"
TABLE = "drift_predictions"
NOT_AVAILABLE = ("not available: this model has no drift reference (drift_reference.json) — it was trained with "
                 "a medai version before drift monitoring; retrain it with medai >= {version} to monitor drift")


# ===================================================================================================== metrics
class ServiceMetrics:
    """The service's Prometheus metrics in their own registry (see the module docstring for the names)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("medai_http_requests", "HTTP requests answered, by route template, method and "
                                "status code.", ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("medai_http_request_duration_seconds", "Time to answer a request (s), by route "
                                 "template.", ["endpoint"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.predictions_total = Counter("medai_predictions", "Predictions served, by model version and decision "
                                         "(multi-label: one count per finding present).",
                                         ["model_id", "model_version", "decision"], registry=self.registry)
        self.referrals = Counter("medai_referrals", "Predictions flagged 'refer to a clinician' (conformal abstain, "
                                 "unusable input).", ["model_id", "model_version"], registry=self.registry)
        self.model_info = Gauge("medai_model_info", "A loaded, integrity-checked model (value 1).",
                                ["model_id", "model_version", "sha256"], registry=self.registry)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency.

        Args:
            endpoint: the route template (``/models/{model_id}/predict``), never the raw URL — a label per URL
                would grow without bound and could carry identifiers; ``unmatched`` for paths no route serves.
            method: HTTP method.
            status: HTTP status code.
            seconds: wall time to answer.
        """
        self.requests.labels(endpoint, method.upper(), str(int(status))).inc()
        self.latency.labels(endpoint).observe(max(0.0, float(seconds)))

    def predictions(self, model_id: str, model_version: str, decisions: Mapping[str, int], referred: int = 0
                    ) -> None:
        """Count served predictions.

        Args:
            model_id, model_version: the model.
            decisions: decision → number of predictions. A multi-label decision joined with ``;`` (``"a;b"``)
                counts once per finding (the label set stays the findings, not their 2^K combinations); an empty
                one or ``None`` counts as ``none``.
            referred: how many of them were flagged "refer".
        """
        for decision, count in decisions.items():
            findings = [d for d in str(decision).split(";") if d] if decision not in (None, "None") else []
            for finding in findings or ["none"]:
                self.predictions_total.labels(model_id, model_version, finding).inc(int(count))
        if referred:
            self.referrals.labels(model_id, model_version).inc(int(referred))
        else:  # the series exists (at 0) from the first prediction, so rates and ratios are defined
            self.referrals.labels(model_id, model_version)

    def model_loaded(self, model_id: str, model_version: str, sha256: str) -> None:
        """Mark a model as loaded (``medai_model_info`` = 1)."""
        self.model_info.labels(model_id, model_version, sha256).set(1)

    def model_unloaded(self, model_id: str, model_version: str, sha256: str) -> None:
        """Remove a model's ``medai_model_info`` series (retired or unloaded)."""
        try:
            self.model_info.remove(model_id, model_version, sha256)
        except KeyError:
            pass

    def response(self) -> tuple[bytes, str]:
        """The metrics in the Prometheus text exposition format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


_DEFAULT_METRICS: ServiceMetrics | None = None


def default_metrics() -> ServiceMetrics:
    """The process's default :class:`ServiceMetrics` (created on first use)."""
    global _DEFAULT_METRICS
    if _DEFAULT_METRICS is None:
        _DEFAULT_METRICS = ServiceMetrics()
    return _DEFAULT_METRICS


def metrics_response(metrics: ServiceMetrics | None = None) -> tuple[bytes, str]:
    """``(body, content_type)`` of ``GET /metrics`` (``metrics`` defaults to :func:`default_metrics`)."""
    return (metrics or default_metrics()).response()


class MetricsMiddleware:
    """Pure ASGI middleware that feeds :meth:`ServiceMetrics.observe_request` (route template, method, status,
    latency) — an alternative to an ``@app.middleware("http")`` function."""

    def __init__(self, app, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = [500]  # an exception before the response started is answered 500 by the server

        async def send_and_note(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(endpoint, scope.get("method", "GET"), status[0],
                                         time.perf_counter() - began)


# ======================================================================================================= drift
metadata = MetaData()
drift_table = Table(
    TABLE, metadata,
    Column("prediction_id", String(64), primary_key=True),
    Column("model_id", String(200), nullable=False),
    Column("model_version", String(200), nullable=False),
    Column("model_sha256", String(64), nullable=True),
    Column("recorded_at", String(40), nullable=False),   # ISO 8601 UTC
    Column("score", Text, nullable=True),                # JSON: number, or {class: probability}
    Column("features", Text, nullable=True),             # JSON: {feature: number | category | null}
    Column("label", Text, nullable=True),                # JSON: the outcome, once known
    Column("labelled_at", String(40), nullable=True),
    Index("ix_drift_predictions_model", "model_id", "model_version"),
    Index("ix_drift_predictions_sha256", "model_sha256"),
)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def model_ref(model: Any) -> dict[str, str | None]:
    """``{"id", "version", "sha256"}`` of a ServedModel-like object (attributes) or a prediction's ``model`` dict."""
    get = (lambda k: model.get(k)) if isinstance(model, Mapping) else (lambda k: getattr(model, k, None))
    model_id, version = get("id"), get("version")
    if not model_id or not version:
        raise invalid_parameter("model", "DriftMonitor", "a model with an 'id' and a 'version' (a ServedModel or a "
                                "prediction's 'model' dict)", type(model).__name__)
    sha = get("sha256")
    return {"id": str(model_id), "version": str(version), "sha256": str(sha) if sha else None}


def artifact_ref(artifact) -> dict[str, str | None]:
    """``{"id", "version", "sha256"}`` of a loaded artefact, as the service names it (model card name and
    version — the run's creation time — and the manifest's sha256)."""
    details = (artifact.model_card or {}).get("model_details") or {}
    return {"id": str(details.get("name") or artifact.config.name), "version": str(details.get("version") or "?"),
            "sha256": artifact.sha256}


def attach_monitor_features(predictions: Sequence[dict], features: Mapping[str, np.ndarray]) -> None:
    """Put each prediction's monitored features (from :func:`~medai.registry.drift_reference.features_for`, one
    value per prediction) under :data:`FEATURES_KEY`; :meth:`DriftMonitor.record_predictions` takes them off."""
    for name, values in features.items():
        if len(values) != len(predictions):
            raise DataValidationError(f"attach_monitor_features: feature '{name}' has {len(values)} values for "
                                      f"{len(predictions)} predictions.")
    for i, prediction in enumerate(predictions):
        prediction[FEATURES_KEY] = {name: _json_value(values[i]) for name, values in features.items()}


def _json_value(value: Any) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, (str, np.str_)):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def _score_of(prediction: Mapping[str, Any]) -> Any:
    """The monitored score of a prediction dict (see :mod:`medai.serve`): probability (number or per class),
    log relative risk, value, or a segmentation's area / volume; None when the prediction has none (unusable
    input)."""
    if prediction.get("probability") is not None:
        p = prediction["probability"]
        return {str(k): _json_value(v) for k, v in p.items()} if isinstance(p, Mapping) else _json_value(p)
    risk = prediction.get("risk")
    if isinstance(risk, Mapping) and risk.get("log_relative_risk") is not None:
        return _json_value(risk["log_relative_risk"])
    measurements = prediction.get("measurements")
    if isinstance(measurements, Mapping):
        return _json_value(measurements.get("area_mm2", measurements.get("volume_ml")))
    return _json_value(prediction.get("value"))


def _clean_label(label: Any) -> Any:
    if isinstance(label, (bool, np.bool_)):
        return int(label)
    if isinstance(label, (str, int, float, np.integer, np.floating)):
        value = _json_value(label)
        if value is None:
            raise DataValidationError("A label must be a finite number, a class name or a list of findings; got a "
                                      "missing or non-finite number.")
        return value
    if isinstance(label, Mapping):
        return {str(k): _clean_label(v) for k, v in label.items()}
    if isinstance(label, (list, tuple)):
        return [_clean_label(v) for v in label]
    raise DataValidationError(f"A label must be a number, a class name, a list of findings or a mapping of "
                              f"finding to 0/1; got {type(label).__name__}.")


class DriftMonitor:
    """Records served predictions (derived features and scores only) and reports drift per model version.

    Args:
        db: a SQLAlchemy engine (from :func:`medai.serve.store.engine`, shared with the audit log and tokens), or
            a database URL, or a state directory (its ``medai.db``).
    """

    def __init__(self, db: Engine | str | Path) -> None:
        if isinstance(db, Engine):
            self.engine = db
        elif isinstance(db, Path) or (isinstance(db, str) and "://" not in db):
            self.engine = store.engine(store.database_url(state=db))
        else:
            self.engine = store.engine(str(db))
        metadata.create_all(self.engine, checkfirst=True)

    # ------------------------------------------------------------------------------------------- recording
    def record(self, model: Any, features: Mapping[str, Any] | None, score: Any,
               prediction_id: str | None = None) -> str:
        """Record one prediction; returns its prediction id (random, 32 hex characters, when not given).

        Args:
            model: a ServedModel or a prediction's ``model`` dict (``id``, ``version``, ``sha256``).
            features: feature name → value (number, category label, or None = missing) from ``features_for``.
            score: binary P(positive), survival log relative risk or regression value (a number); multi-class /
                multi-label probabilities (``{class: p}`` or a list in class order); None when there is none.
            prediction_id: the id to store under (must be new).
        """
        return self.record_many(model, [features], [score], None if prediction_id is None else [prediction_id])[0]

    def record_many(self, model: Any, features: Sequence[Mapping[str, Any] | None], scores: Sequence[Any],
                    prediction_ids: Sequence[str] | None = None, *, connection: Any = None) -> list[str]:
        """Record several predictions in one transaction (see :meth:`record`); returns their ids. ``connection``:
        write within that open transaction instead (the service's audit transaction)."""
        ref = model_ref(model)
        if len(features) != len(scores):
            raise DataValidationError(f"record_many: {len(features)} feature rows for {len(scores)} scores.")
        ids = [secrets.token_hex(16) for _ in scores] if prediction_ids is None else [str(i) for i in prediction_ids]
        if len(ids) != len(scores) or any(not 0 < len(i) <= 64 for i in ids):
            raise DataValidationError("record_many: give one prediction id (1 to 64 characters) per score.")
        now = _now()
        rows = []
        for pid, row, score in zip(ids, features, scores):
            if isinstance(score, np.ndarray):
                score = score.tolist()
            clean_score = (None if score is None else {str(k): _json_value(v) for k, v in score.items()}
                           if isinstance(score, Mapping) else [_json_value(v) for v in score]
                           if isinstance(score, (list, tuple)) else _json_value(score))
            rows.append({"prediction_id": pid, "model_id": ref["id"], "model_version": ref["version"],
                         "model_sha256": ref["sha256"], "recorded_at": now,
                         "score": None if clean_score is None else json.dumps(clean_score),
                         "features": None if row is None else json.dumps(
                             {str(k): _json_value(v) for k, v in row.items()}, sort_keys=True)})
        if rows and connection is not None:
            connection.execute(insert(drift_table), rows)
        elif rows:
            with store.write_transaction(self.engine) as connection:
                connection.execute(insert(drift_table), rows)
        return ids

    def record_predictions(self, model: Any, predictions: Sequence[dict], *, connection: Any = None) -> list[str]:
        """Record the service's prediction dicts (their score; their features when a :data:`FEATURES_KEY` entry is
        present, which is removed from the dict); returns one prediction id per prediction."""
        features = [p.pop(FEATURES_KEY, None) for p in predictions]
        return self.record_many(model, features, [_score_of(p) for p in predictions], connection=connection)

    def add_label(self, prediction_id: str, label: Any) -> bool:
        """Attach the outcome that became known for a recorded prediction.

        Args:
            prediction_id: the id the prediction was returned with.
            label: binary: 0/1 or the class name; multi-class: the class name (or index); multi-label: the list of
                findings present (or ``{finding: 0/1}``); regression: the observed value.

        Returns:
            True when the prediction was found and labelled, False for an unknown id.
        """
        value = json.dumps(_clean_label(label))
        with store.write_transaction(self.engine) as connection:
            result = connection.execute(update(drift_table).where(drift_table.c.prediction_id == str(prediction_id))
                                        .values(label=value, labelled_at=_now()))
        return result.rowcount > 0

    def delete_before(self, before: dt.datetime) -> int:
        """Delete the records made before ``before`` (UTC; a retention limit); returns how many."""
        cutoff = _as_utc(before).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with store.write_transaction(self.engine) as connection:
            result = connection.execute(drift_table.delete().where(drift_table.c.recorded_at < cutoff))
        return int(result.rowcount)

    def records(self, model: Any, *, since: dt.datetime | None = None) -> list[dict[str, Any]]:
        """The records of one model version (by sha256 when the model has one, else by id and version)."""
        ref = model_ref(model)
        query = select(drift_table)
        if ref["sha256"]:
            query = query.where(drift_table.c.model_sha256 == ref["sha256"])
        else:
            query = query.where(drift_table.c.model_id == ref["id"], drift_table.c.model_version == ref["version"])
        if since is not None:
            query = query.where(drift_table.c.recorded_at >= _as_utc(since).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(drift_table.c.recorded_at)).mappings().all()
        return [{"prediction_id": r["prediction_id"], "recorded_at": r["recorded_at"],
                 "score": None if r["score"] is None else json.loads(r["score"]),
                 "features": json.loads(r["features"]) if r["features"] else {},
                 "label": None if r["label"] is None else json.loads(r["label"])} for r in rows]

    # --------------------------------------------------------------------------------------------- report
    def report(self, model: Any, reference: Mapping[str, Any] | None, *, kind: TaskKind | str | None = None,
               class_names: Sequence[str] | None = None, since: dt.datetime | None = None,
               min_n: int = MIN_N) -> dict[str, Any]:
        """Drift and calibration of one model version's live predictions against its reference.

        Args:
            model: a ServedModel or ``{"id", "version", "sha256"}``.
            reference: the artefact's drift reference (None: an artefact without one — only counts and calibration
                are reported).
            kind, class_names: the task (taken from the reference when it has them).
            since: only predictions recorded at or after this time (UTC).
            min_n: below this many live values a PSI is flagged unreliable.

        Returns:
            A JSON-ready dict: ``model``, ``generated``, ``drift_available`` (and ``drift_note`` when not),
            ``n_live``, ``n_without_score``, ``warnings``, ``features`` and ``scores`` (each a list, most drifted
            first, of ``{"name", "type", "psi", "level", "n_live", "bins", "reference", "live"}``), ``score_psi``,
            ``summary`` (features per level) and ``calibration``.
        """
        import medai

        if not isinstance(min_n, int) or min_n < 1:
            raise invalid_parameter("min_n", "DriftMonitor.report", "an integer >= 1", min_n)
        ref = model_ref(model)
        kind_value = (reference or {}).get("kind") or (TaskKind(kind).value if kind is not None else None)
        names = (reference or {}).get("class_names") or (list(class_names) if class_names is not None else None)
        records = self.records(model, since=since)
        scored = [r for r in records if r["score"] is not None]
        out: dict[str, Any] = {
            "model": ref, "generated": _now(), "kind": kind_value, "class_names": names,
            "since": None if since is None else _as_utc(since).isoformat(),
            "n_live": len(records), "n_without_score": len(records) - len(scored), "min_n": min_n,
            "psi_thresholds": {"moderate": PSI_MODERATE, "major": PSI_MAJOR}, "warnings": [],
            "drift_available": reference is not None, "features": [], "scores": [], "score_psi": None,
            "summary": {level.value: 0 for level in DriftLevel},
        }
        if reference is None:
            out["drift_note"] = NOT_AVAILABLE.format(version=medai.__version__)
        else:
            out["reference"] = {k: reference.get(k) for k in ("computed_on", "n", "medai_version", "input_kind")}
            live_scores = _score_matrix(kind_value, scored, names)
            summaries = score_features(kind_value, live_scores, names) if len(scored) else {}
            n_ref = int(reference.get("n") or 0)
            for name, spec in reference.get("scores", {}).items():
                out["scores"].append(_compare(name, spec, summaries.get(name, np.zeros(0)), min_n, n_ref))
            for name, spec in reference.get("features", {}).items():
                values = [r["features"][name] for r in records if name in r["features"]]
                out["features"].append(_compare(name, spec, _as_values(spec, values), min_n, n_ref))
            for entries in (out["scores"], out["features"]):
                entries.sort(key=lambda e: -1.0 if e["psi"] is None else -e["psi"])
            primary = next(iter(reference.get("scores", {})), None)
            out["score_psi"] = next((e["psi"] for e in out["scores"] if e["name"] == primary), None)
            for entry in out["features"]:
                if entry["level"] is not None:
                    out["summary"][entry["level"]] += 1
            if len(records) < min_n:
                out["warnings"].append(f"Only {len(records)} live prediction(s) (fewer than {min_n}): PSI values "
                                       "are unreliable; read them as provisional.")
            if n_ref < min_n:
                out["warnings"].append(f"The reference holds only {n_ref} validation sample(s): even without any "
                                       "shift PSI values scatter around each feature's noise floor (shown beside "
                                       "it); retrain on more data for a sharper reference.")
            missing = [e["name"] for e in out["features"] if e["n_live"] == 0]
            if records and missing:
                out["warnings"].append(f"No live values recorded for {len(missing)} monitored feature(s) (the "
                                       "service recorded scores only): their PSI is not available.")
        out["calibration"] = _calibration(kind_value, [r for r in scored if r["label"] is not None], names, min_n)
        if out["calibration"].get("warning"):
            out["warnings"].append(out["calibration"]["warning"])
        return _finite(out)


def _as_utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)


def _as_values(spec: Mapping[str, Any], values: list[Any]) -> np.ndarray:
    if spec["type"] == "categorical":
        return np.asarray([OTHER if v is None else str(v) for v in values], dtype=object)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[i] = float(v)
    return out


def _score_matrix(kind: str | None, records: list[dict[str, Any]], names: Sequence[str] | None) -> np.ndarray:
    """Live scores as :func:`score_features` takes them: ``(n,)`` or ``(n, K)`` in class order."""
    if kind in (TaskKind.MULTICLASS.value, TaskKind.MULTILABEL.value):
        rows = []
        for r in records:
            s = r["score"]
            if isinstance(s, Mapping):
                rows.append([np.nan if s.get(n) is None else float(s[n]) for n in names or sorted(s)])
            elif isinstance(s, list):
                rows.append([np.nan if v is None else float(v) for v in s])
            else:
                rows.append([np.nan] * len(names or [0]))
        width = len(names) if names else (len(rows[0]) if rows else 0)
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), width)
    return np.asarray([np.nan if not isinstance(r["score"], (int, float)) else float(r["score"]) for r in records],
                      dtype=np.float64)


def _compare(name: str, spec: Mapping[str, Any], live: np.ndarray, min_n: int, n_reference: int
             ) -> dict[str, Any]:
    reference = np.asarray(spec["proportions"], dtype=np.float64)
    counts = bin_counts(spec, live) if len(live) else np.zeros(len(reference), np.int64)
    n = int(counts.sum())
    entry: dict[str, Any] = {"name": name, "type": spec["type"], "n_live": n, "bins": bin_labels(spec),
                             "reference": reference.tolist(), "live": (counts / n).tolist() if n else None,
                             "psi": None, "level": None, "noise_floor": None, "reliable": n >= min_n}
    if n:
        psi = population_stability_index(reference, counts / n)
        occupied = int(np.count_nonzero((reference > 0) | (counts > 0)))
        entry.update(psi=psi, level=drift_level(psi).value,
                     noise_floor=expected_psi_no_shift(occupied, n_reference, n) if n_reference else None)
    return entry


def bin_labels(spec: Mapping[str, Any]) -> list[str]:
    """Human-readable bin names of a reference spec (``≤ 1.2``, ``(1.2, 3.4]``, ``> 3.4``, ``missing``)."""
    if spec["type"] == "categorical":
        return [str(c) for c in spec["categories"]] + [OTHER]
    edges = [f"{e:.3g}" for e in spec.get("display_edges", spec["edges"])]  # tabular: in the column's unit
    if not edges:
        return ["all values", "missing"]
    labels = [f"≤ {edges[0]}"] + [f"({a}, {b}]" for a, b in zip(edges, edges[1:])] + [f"> {edges[-1]}"]
    return labels + ["missing"]


def _calibration(kind: str | None, labelled: list[dict[str, Any]], names: Sequence[str] | None,
                 min_n: int) -> dict[str, Any]:
    """Calibration of the labelled live predictions (the scores as served, i.e. after recalibration)."""
    from medai.evaluation.calibration import reliability_curve
    from medai.evaluation.metrics import (
        compute_calibration_slope_intercept, compute_ece, compute_ece_multiclass,
    )

    out: dict[str, Any] = {"n_labelled": len(labelled)}
    if not labelled:
        out["note"] = "no labels yet: send outcomes to POST /labels to monitor calibration"
        return out
    if kind is None or kind == TaskKind.SURVIVAL.value:
        out["note"] = ("calibration of survival predictions needs follow-up times and censoring; not computed from "
                       "live labels" if kind else "unknown task kind: calibration not computed")
        return out
    names = list(names or [])
    if kind == TaskKind.REGRESSION.value:
        pairs = np.asarray([(float(r["score"]), float(r["label"])) for r in labelled
                            if isinstance(r["label"], (int, float)) and isinstance(r["score"], (int, float))])
        out["n_used"] = len(pairs)
        if len(pairs) >= 2 and np.ptp(pairs[:, 0]) > 0:
            predicted, observed = pairs[:, 0], pairs[:, 1]
            out.update(mean_error=float(np.mean(observed - predicted)),
                       mae=float(np.mean(np.abs(observed - predicted))),
                       calibration_slope=float(np.polyfit(predicted, observed, 1)[0]))
        return _small(out, min_n)
    if kind == TaskKind.BINARY.value:
        y, p = [], []
        for r in labelled:
            label = _class_index(r["label"], names)
            if label in (0, 1) and isinstance(r["score"], (int, float)):
                y.append(label)
                p.append(float(r["score"]))
        out["n_used"] = len(y)
        if y:
            y_arr, p_arr = np.asarray(y), np.clip(np.asarray(p), 0.0, 1.0)
            slope, intercept = compute_calibration_slope_intercept(y_arr, p_arr)
            out.update(n_positive=int(y_arr.sum()), ece=compute_ece(y_arr, p_arr), calibration_slope=slope,
                       calibration_intercept=intercept, observed_rate=float(y_arr.mean()),
                       mean_predicted=float(p_arr.mean()), reliability=reliability_curve(y_arr, p_arr))
        return _small(out, min_n)
    probabilities = _score_matrix(kind, labelled, names)
    if kind == TaskKind.MULTICLASS.value:
        y = np.asarray([_class_index(r["label"], names) for r in labelled], dtype=object)
        keep = np.array([i is not None and 0 <= i < len(names) for i in y]) & np.isfinite(probabilities).all(axis=1)
        out["n_used"] = int(keep.sum())
        if keep.any():
            rows = probabilities[keep] / probabilities[keep].sum(axis=1, keepdims=True)
            out["ece_top_label"] = compute_ece_multiclass(y[keep].astype(np.int64), rows)
            out["accuracy"] = float(np.mean(rows.argmax(axis=1) == y[keep].astype(np.int64)))
        return _small(out, min_n)
    # multi-label: per finding
    truth = np.asarray([_present(r["label"], names) for r in labelled], dtype=np.float64).reshape(len(labelled), -1)
    keep = np.isfinite(truth).all(axis=1) & np.isfinite(probabilities).all(axis=1)
    out["n_used"] = int(keep.sum())
    if keep.any():
        per = {n: compute_ece(truth[keep, k], np.clip(probabilities[keep, k], 0, 1)) for k, n in enumerate(names)}
        out.update(ece_per_finding=per, ece_mean=float(np.mean(list(per.values()))))
    return _small(out, min_n)


def _small(out: dict[str, Any], min_n: int) -> dict[str, Any]:
    if out.get("n_used", 0) < min_n:
        out["warning"] = (f"Calibration from {out.get('n_used', 0)} labelled prediction(s) (fewer than {min_n}): "
                          "wide uncertainty.")
    return out


def _class_index(label: Any, names: Sequence[str]) -> int | None:
    if isinstance(label, str):
        return list(names).index(label) if label in names else None
    if isinstance(label, (int, float)) and float(label).is_integer():
        return int(label)
    return None


def _present(label: Any, names: Sequence[str]) -> list[float]:
    if isinstance(label, Mapping):
        return [float(label[n]) if isinstance(label.get(n), (int, float)) else np.nan for n in names]
    if isinstance(label, list) and all(isinstance(v, str) for v in label):
        unknown = [v for v in label if v not in names]
        return [np.nan] * len(names) if unknown else [float(n in label) for n in names]
    if isinstance(label, list) and len(label) == len(names):
        return [float(v) if isinstance(v, (int, float)) else np.nan for v in label]
    return [np.nan] * len(names)


def _finite(value: Any) -> Any:
    """NaN and infinities → None, so the report is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# ===================================================================================================== report
def write_monitor_report(report: Mapping[str, Any], out: Path) -> Path:
    """Write ``monitor_report.json`` and ``monitor_report.html`` (self-contained: inline PNG charts) into ``out``;
    returns the HTML path. Both files are written atomically."""
    out = Path(out)
    write_json(out / "monitor_report.json", report)
    path = out / "monitor_report.html"
    write_text(path, render_monitor_report(report))
    return path


def render_monitor_report(report: Mapping[str, Any]) -> str:
    """The monitoring report as one HTML page with no external resources."""
    esc = html.escape
    model = report["model"]
    parts = [f"<h1>Drift monitoring — {esc(model['id'])}</h1>",
             f"<p>Version {esc(str(model['version']))} · artefact sha256 <code>{esc(str(model['sha256']))}</code> · "
             f"report generated {esc(report['generated'])}"
             + (f" · predictions since {esc(report['since'])}" if report.get("since") else "") + "</p>",
             f"<p><b>{report['n_live']}</b> live prediction(s) recorded"
             + (f" ({report['n_without_score']} without a score: unusable input)" if report["n_without_score"]
                else "") + ".</p>"]
    for warning in report.get("warnings", []):
        parts.append(f'<p class="warn">⚠ {esc(warning)}</p>')
    if not report["drift_available"]:
        parts.append(f'<p class="warn">Drift {esc(report["drift_note"])}.</p>')
    else:
        ref = report.get("reference") or {}
        parts.append(f"<p>Reference: the model's {esc(str(ref.get('computed_on')))} ({ref.get('n')} samples). "
                     f"PSI reading: &lt; {PSI_MODERATE} stable, {PSI_MODERATE}–{PSI_MAJOR} moderate shift, "
                     f"&gt; {PSI_MAJOR} major shift (values from fewer than {report['min_n']} live predictions are "
                     "marked unreliable).</p>")
        summary = report["summary"]
        parts.append(f"<p>Features: {summary['major']} major, {summary['moderate']} moderate, {summary['stable']} "
                     "stable.</p>")
        parts.append("<h2>Scores</h2>" + _table(report["scores"]))
        parts.append("<h2>Input features (most drifted first)</h2>" + _table(report["features"]))
        charts = [e for e in report["scores"] if e["live"] is not None]
        charts += [e for e in report["features"] if e["live"] is not None][:N_CHARTS]
        if charts:
            parts.append("<h2>Reference vs live distributions</h2>")
            for entry in charts:
                parts.append(f'<figure><img alt="Reference and live shares per bin of {esc(entry["name"])}" '
                             f'src="data:image/png;base64,{_plot_bins(entry)}"><figcaption>{esc(entry["name"])}: '
                             f"PSI {_fmt(entry['psi'])} ({esc(str(entry['level']))}), n live {entry['n_live']}"
                             "</figcaption></figure>")
    parts.append("<h2>Calibration of labelled live predictions</h2>" + _calibration_html(report["calibration"]))
    parts.append("<p class=\"note\">Stored per prediction: derived numeric features and category labels, the score "
                 "and the label, under a random prediction id — no record ids, names, dates, text, images or "
                 "signals. PSI compares one feature at a time: a shift in how features combine can go unseen.</p>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}"
             ".major{background:#f8d0d0}.moderate{background:#fbe7c0}.stable{background:#dff0d8}"
             ".warn{color:#8a4b00}.note{color:#555;font-size:.9em}img{max-width:100%}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>medai drift monitoring — "
            f"{esc(model['id'])}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def _table(entries: Iterable[Mapping[str, Any]]) -> str:
    rows = "".join(
        f"<tr class=\"{html.escape(str(e['level'] or ''))}\"><td>{html.escape(e['name'])}</td><td>{e['type']}</td>"
        f"<td>{_fmt(e['psi'])}</td><td>{_fmt(e['level'])}</td><td>{_fmt(e['noise_floor'])}</td><td>{e['n_live']}</td>"
        f"<td>{'yes' if e['reliable'] else 'no (small n)'}</td></tr>" for e in entries)
    return ("<table><tr><th>name</th><th>type</th><th>PSI</th><th>reading</th><th>PSI expected without shift</th>"
            "<th>n live</th><th>reliable</th>"
            f"</tr>{rows}</table>")


def _calibration_html(calibration: Mapping[str, Any]) -> str:
    if "note" in calibration:
        return f"<p>{html.escape(calibration['note'])} ({calibration['n_labelled']} labelled).</p>"
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in calibration.items()
                   if k not in ("reliability", "ece_per_finding", "warning"))
    extra = ""
    if calibration.get("ece_per_finding"):
        extra = "<p>ECE per finding: " + ", ".join(f"{html.escape(k)} {_fmt(v)}" for k, v in
                                                  calibration["ece_per_finding"].items()) + "</p>"
    if calibration.get("reliability"):
        extra += (f'<figure><img alt="Reliability diagram of the labelled live predictions" '
                  f'src="data:image/png;base64,{_plot_reliability(calibration["reliability"])}">'
                  "<figcaption>Observed frequency vs mean predicted probability per bin (labelled live "
                  "predictions).</figcaption></figure>")
    return f"<table>{rows}</table>{extra}"


def _figure(width: float, height: float):
    # Object-oriented matplotlib (no pyplot): no global figure registry, the caller's backend untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _png(fig) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot_bins(entry: Mapping[str, Any]) -> str:
    fig, ax = _figure(7.0, 2.8)
    positions = np.arange(len(entry["bins"]))
    ax.bar(positions - 0.2, entry["reference"], width=0.4, label="reference (validation)", color="#7a9cc6")
    ax.bar(positions + 0.2, entry["live"], width=0.4, label=f"live (n = {entry['n_live']})", color="#d9822b")
    ax.set_xticks(positions, entry["bins"], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("share")
    ax.set_title(f"{entry['name']} — PSI {_fmt(entry['psi'])}", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def _plot_reliability(curve: Mapping[str, Any]) -> str:
    fig, ax = _figure(3.6, 3.4)
    ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1)
    ax.plot(curve["bin_mean_pred"], curve["bin_frac_pos"], marker="o", color="#d9822b")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    return _png(fig)


# ========================================================================================================= CLI
def monitor_report(model: str | Path, *, state: str | Path | None = None, db: str | None = None,
                   out: str | Path | None = None, since: dt.datetime | None = None,
                   min_n: int = MIN_N) -> tuple[dict[str, Any], Path]:
    """Load a model artefact, report the drift of its live predictions from the service database, write the report.

    Args:
        model: a run folder or its ``model/`` folder (integrity-checked).
        state, db: where the service database is (:func:`medai.serve.store.database_url`).
        out: the report folder (default ``./monitor_report``).
        since: only predictions recorded since then.
        min_n: live predictions below which PSI values are flagged unreliable.

    Returns:
        The report and the HTML path.
    """
    from medai.registry.artifact import load_artifact

    artifact = load_artifact(model)
    url = store.database_url(state, db)
    monitor = DriftMonitor(store.engine(url, create=False))
    report = monitor.report(artifact_ref(artifact), artifact.drift_reference, kind=artifact.task.get("kind"),
                            class_names=artifact.task.get("class_names"), since=since, min_n=min_n)
    path = write_monitor_report(report, Path(out) if out is not None else Path("monitor_report"))
    return report, path


def add_monitor_report_parser(subparsers):
    """Add ``monitor-report`` (``medai monitor-report MODEL_DIR_OR_RUN [--state DIR | --db URL] [--out DIR]``)."""
    parser = subparsers.add_parser("monitor-report", help="drift (PSI) and live calibration of a served model "
                                   "version, as JSON and HTML")
    parser.add_argument("model", metavar="MODEL_DIR_OR_RUN", help="the run folder, or its model/ folder")
    store.add_database_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("monitor_report"),
                        help="folder for monitor_report.json and .html (default ./monitor_report)")
    parser.add_argument("--since", metavar="TIME", help="only predictions recorded since this UTC time "
                        "(ISO 8601, e.g. 2026-01-31 or 2026-01-31T08:00)")
    parser.add_argument("--min-n", type=int, default=MIN_N, help=f"live predictions below which PSI values are "
                        f"flagged unreliable (default {MIN_N})")
    parser.set_defaults(handler=monitor_report_command)
    return parser


def monitor_report_command(args) -> int:
    since = None
    if args.since:
        try:
            since = dt.datetime.fromisoformat(args.since)
        except ValueError:
            raise InvalidParameterError(f"--since '{args.since}' is not an ISO 8601 time; use e.g. 2026-01-31 or "
                                        "2026-01-31T08:00.") from None
    report, path = monitor_report(args.model, state=args.state, db=args.db, out=args.out, since=since,
                                  min_n=args.min_n)
    print(f"{report['n_live']} live prediction(s) of {report['model']['id']} {report['model']['version']}.")
    if not report["drift_available"]:
        print(f"Drift {report['drift_note']}.")
    else:
        worst = [e for e in report["features"] if e["level"] in ("major", "moderate")]
        print(f"Score PSI {_fmt(report['score_psi'])}; features: {report['summary']['major']} major, "
              f"{report['summary']['moderate']} moderate, {report['summary']['stable']} stable shift"
              + (" — " + ", ".join(f"{e['name']} {e['psi']:.2f}" for e in worst[:5]) if worst else "") + ".")
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    print(f"Report: {path}")
    return 0


__all__ = ["DriftMonitor", "FEATURES_KEY", "LATENCY_BUCKETS_S", "MIN_N", "MetricsMiddleware", "ServiceMetrics",
           "add_monitor_report_parser", "artifact_ref", "attach_monitor_features", "bin_labels", "default_metrics",
           "metrics_response", "model_ref", "monitor_report", "monitor_report_command", "render_monitor_report",
           "write_monitor_report"]
