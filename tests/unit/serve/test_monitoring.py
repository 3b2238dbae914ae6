"""Prometheus metrics and drift monitoring: a real tiny tabular training run gives the reference, live predictions
from shifted data are recorded in SQLite, and the report flags what was shifted."""

from __future__ import annotations

import argparse
import json
import sqlite3

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from medai.cli import main
from medai.core.errors import InvalidParameterError
from medai.registry.artifact import load_artifact, verify_manifest
from medai.registry.drift_reference import features_for
from medai.registry.predictor import Predictor
from medai.serve import store
from medai.serve.monitoring import (
    FEATURES_KEY, DriftMonitor, MetricsMiddleware, ServiceMetrics, add_monitor_report_parser, artifact_ref,
    attach_monitor_features, write_monitor_report,
)
from tests.conftest import make_binary_table

FEATURES = ["age", "sbp", "noise", "sbp (missing)", "sex", "smoker"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring")
    data = root / "cohort.csv"
    make_binary_table(n=600, seed=1).to_csv(data, index=False)
    out = root / "run"
    code = main(["train", "--data", str(data), "--label", "outcome", "--id", "patient", "--out", str(out),
                 "--epochs", "15", "--bootstrap", "100", "--quiet"])
    assert code == 0
    return out


def _record(monitor, predictor, frame, model):
    x = predictor.encode(frame)
    features = features_for(predictor, x)
    rows = [{name: values[i] for name, values in features.items()} for i in range(len(frame))]
    return monitor.record_many(model, rows, predictor.scores(x).tolist())


def _by_name(report, section="features"):
    return {entry["name"]: entry for entry in report[section]}


# ------------------------------------------------------------------------------------------------------- drift
def test_training_stores_a_validation_reference_under_the_manifest(run):
    artifact = load_artifact(run)
    verify_manifest(run / "model")
    reference = artifact.drift_reference
    assert reference is not None and reference["computed_on"] == "validation split"
    assert reference["n"] == json.loads((run / "run.json").read_text())["split"]["n"]["val"]
    assert list(reference["features"]) == FEATURES and list(reference["scores"]) == ["probability"]
    assert (run / "model" / "drift_reference.json").stat().st_size < 10_000
    age = reference["features"]["age"]  # binned on the z value, labelled in years
    pre = artifact.preprocessor
    expected = np.asarray(age["edges"]) * pre["stds"]["age"] + pre["means"]["age"]
    np.testing.assert_allclose(age["display_edges"], expected)
    assert 30 < min(age["display_edges"]) < max(age["display_edges"]) < 95


def test_shifted_feature_is_flagged_and_the_others_are_not(run, tmp_path):
    predictor = Predictor.load(run)
    monitor = DriftMonitor(tmp_path / "state")
    model = artifact_ref(predictor.artifact)
    shifted = make_binary_table(n=600, seed=7)
    shifted["age"] += 20  # twenty years older than the training population
    _record(monitor, predictor, shifted, model)
    control = {"id": "control", "version": "v", "sha256": "b" * 64}
    _record(monitor, predictor, make_binary_table(n=600, seed=8), control)

    report = monitor.report(model, predictor.artifact.drift_reference)
    features = _by_name(report)
    assert report["n_live"] == 600 and report["features"][0]["name"] == "age"
    assert features["age"]["level"] == "major" and features["age"]["psi"] > 1.0
    assert all(features[name]["level"] != "major" for name in FEATURES if name != "age")
    assert report["summary"]["major"] == 1
    assert report["scores"][0]["name"] == "probability" and report["score_psi"] > 0.25  # older → higher risk
    # the same model on data like its training data: nothing major (PSI within sampling noise)
    calm = monitor.report(control, predictor.artifact.drift_reference)
    assert calm["n_live"] == 600 and calm["summary"]["major"] == 0
    assert max(e["psi"] for e in calm["features"]) < 0.25 and calm["score_psi"] < 0.25
    json.dumps(report, allow_nan=False)  # strict JSON


def test_labels_give_the_live_calibration(run, tmp_path):
    predictor = Predictor.load(run)
    monitor = DriftMonitor(store.engine(store.database_url(tmp_path / "state")))
    model = artifact_ref(predictor.artifact)
    frame = make_binary_table(n=300, seed=9)
    ids = _record(monitor, predictor, frame, model)
    labelled = 150
    for pid, outcome in zip(ids[:labelled], frame["outcome"][:labelled]):
        assert monitor.add_label(pid, outcome)  # the class name, as a clinician's system would send it
    assert not monitor.add_label("no-such-prediction", 1)
    calibration = monitor.report(model, predictor.artifact.drift_reference)["calibration"]
    y = (frame["outcome"][:labelled] == "yes").to_numpy().astype(int)
    p = predictor.scores(predictor.encode(frame))[:labelled]
    bins = np.clip(np.ceil(p * 10).astype(int) - 1, 0, 9)  # ten equal-width bins, an inner edge in the lower bin
    ece = sum(abs(y[bins == b].mean() - p[bins == b].mean()) * (bins == b).sum() for b in np.unique(bins)) / labelled
    assert calibration["n_labelled"] == calibration["n_used"] == labelled
    assert calibration["n_positive"] == int(y.sum())
    assert calibration["ece"] == pytest.approx(ece, abs=1e-9)
    assert np.isfinite(calibration["calibration_slope"])
    assert "fewer than 100" not in calibration.get("warning", "")


def test_a_model_without_reference_reports_that_drift_is_not_available(tmp_path):
    monitor = DriftMonitor(tmp_path / "state")
    model = {"id": "old", "version": "2024-01-01T00:00:00Z", "sha256": "c" * 64}
    pid = monitor.record(model, None, 0.4)
    monitor.add_label(pid, 1)
    report = monitor.report(model, None, kind="binary", class_names=["no", "yes"])
    assert not report["drift_available"] and "retrain it with medai >=" in report["drift_note"]
    assert report["n_live"] == 1 and report["calibration"]["n_used"] == 1
    assert "fewer than 100" in report["calibration"]["warning"]
    html = write_monitor_report(report, tmp_path / "report").read_text()
    assert "not available" in html


def test_prediction_dicts_are_recorded_without_identifiers(tmp_path):
    monitor = DriftMonitor(tmp_path / "state")
    model = {"id": "rhythm", "version": "v1", "sha256": "d" * 64}
    predictions = [{"id": "MRN-0042", "probability": {"A": 0.7, "N": 0.3}, "decision": "A", "model": model},
                   {"id": "MRN-0043", "probability": {"A": 0.2, "N": 0.8}, "decision": "N", "model": model}]
    attach_monitor_features(predictions, {"amplitude_sd:I": np.array([1.0, 2.0])})
    ids = monitor.record_predictions(model, predictions)
    assert len(set(ids)) == 2 and all(FEATURES_KEY not in p for p in predictions)
    dump = "\n".join(sqlite3.connect(tmp_path / "state" / store.DATABASE_FILE).iterdump())
    assert "MRN-0042" not in dump and "amplitude_sd:I" in dump
    records = monitor.records(model)
    assert [r["score"] for r in records] == [{"A": 0.7, "N": 0.3}, {"A": 0.2, "N": 0.8}]


def test_monitor_report_command_writes_json_and_self_contained_html(run, tmp_path, capsys):
    predictor = Predictor.load(run)
    monitor = DriftMonitor(tmp_path / "state")
    shifted = make_binary_table(n=200, seed=3)
    shifted["smoker"] = "current"
    _record(monitor, predictor, shifted, artifact_ref(predictor.artifact))
    parser = argparse.ArgumentParser(prog="medai")
    add_monitor_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["monitor-report", str(run), "--state", str(tmp_path / "state"),
                              "--out", str(tmp_path / "report")])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "200 live prediction(s)" in printed and "smoker" in printed
    report = json.loads((tmp_path / "report" / "monitor_report.json").read_text())
    assert _by_name(report)["smoker"]["level"] == "major"
    html = (tmp_path / "report" / "monitor_report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "smoker" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    missing = parser.parse_args(["monitor-report", str(run), "--state", str(tmp_path / "nowhere")])
    with pytest.raises(InvalidParameterError, match="No medai database"):
        missing.handler(missing)


# ----------------------------------------------------------------------------------------------------- metrics
def _samples(metrics: ServiceMetrics) -> dict[tuple, float]:
    body, content_type = metrics.response()
    assert content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def test_metrics_text_counts_what_was_recorded():
    metrics = ServiceMetrics()
    for seconds in (0.002, 0.03, 0.7):
        metrics.observe_request("/models/{model_id}/predict", "post", 200, seconds)
    metrics.observe_request("/models/{model_id}/predict", "POST", 422, 0.001)
    metrics.predictions("cxr", "v1", {"pneumonia": 3, "normal": 2}, referred=1)
    metrics.predictions("chexpert", "v2", {"edema;effusion": 2, "": 1})
    metrics.model_loaded("cxr", "v1", "a" * 64)
    samples = _samples(metrics)
    endpoint = ("endpoint", "/models/{model_id}/predict")
    assert samples[("medai_http_requests_total", (endpoint, ("method", "POST"), ("status", "200")))] == 3
    assert samples[("medai_http_requests_total", (endpoint, ("method", "POST"), ("status", "422")))] == 1
    assert samples[("medai_http_request_duration_seconds_count", (endpoint,))] == 4
    assert samples[("medai_http_request_duration_seconds_bucket", (endpoint, ("le", "0.005")))] == 2
    assert samples[("medai_http_request_duration_seconds_bucket", (endpoint, ("le", "5.0")))] == 4
    key = (("decision", "pneumonia"), ("model_id", "cxr"), ("model_version", "v1"))
    assert samples[("medai_predictions_total", key)] == 3
    for finding, count in (("edema", 2), ("effusion", 2), ("none", 1)):  # multi-label: per finding
        assert samples[("medai_predictions_total",
                        (("decision", finding), ("model_id", "chexpert"), ("model_version", "v2")))] == count
    assert samples[("medai_referrals_total", (("model_id", "cxr"), ("model_version", "v1")))] == 1
    assert samples[("medai_model_info", (("model_id", "cxr"), ("model_version", "v1"), ("sha256", "a" * 64)))] == 1
    assert _samples(ServiceMetrics()).get(("medai_referrals_total", (("model_id", "cxr"), ("model_version", "v1")))) \
        is None  # each service has its own registry


def test_middleware_labels_requests_by_route_template():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    metrics = ServiceMetrics()
    app = FastAPI()

    @app.get("/models/{model_id}")
    def model(model_id: str) -> dict:
        return {"id": model_id}

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    with TestClient(app) as client:
        assert client.get("/models/a").status_code == 200
        assert client.get("/models/b").status_code == 200
        assert client.get("/patients/MRN-1").status_code == 404
    samples = _samples(metrics)
    assert samples[("medai_http_requests_total",
                    (("endpoint", "/models/{model_id}"), ("method", "GET"), ("status", "200")))] == 2
    assert samples[("medai_http_requests_total",
                    (("endpoint", "unmatched"), ("method", "GET"), ("status", "404")))] == 1
    assert "MRN-1" not in metrics.response()[0].decode()
