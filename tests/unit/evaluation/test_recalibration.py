"""Recalibration fitted on validation, on data from a known logistic model miscalibrated by a known map."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from medai.core.errors import DataValidationError, InvalidParameterError, NotFittedError
from medai.evaluation.metrics import compute_calibration_slope_intercept, compute_ece, compute_ece_multiclass
from medai.evaluation.recalibration import RecalibrationMethod, Recalibrator, recalibration_report

N = 3000


def _logit_truth(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """True logits z ~ N(0, 1.5²) and outcomes y ~ Bernoulli(sigmoid(z))."""
    z = 1.5 * rng.normal(size=n)
    return z, (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(int)


def _binary(rng: np.random.Generator, n: int, temperature: float = 1.0, shift: float = 0.0):
    """Scores sigmoid(z / temperature + shift): temperature < 1 = over-confident, 1 and 0 = calibrated."""
    z, y = _logit_truth(rng, n)
    return 1.0 / (1.0 + np.exp(-(z / temperature + shift))), y


def _multiclass(rng: np.random.Generator, n: int, temperature: float, k: int = 4):
    logits = 1.5 * rng.normal(size=(n, k))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.minimum((rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1), k - 1)
    scores = np.exp(logits / temperature)
    return scores / scores.sum(axis=1, keepdims=True), y


def test_temperature_fit_recovers_the_known_temperature():
    rng = np.random.default_rng(0)
    p, y = _binary(rng, 2 * N, temperature=0.4)
    recal = Recalibrator(method="temperature").fit(p, y)
    assert recal.params_["temperature"] == pytest.approx(1 / 0.4, rel=0.08)
    # Temperature scaling keeps the ranking (non-decreasing: scores beyond the 1e-6 logit clip become ties).
    assert np.all(np.diff(recal.transform(p)[np.argsort(p)]) >= 0)


def test_platt_fit_recovers_the_known_map():
    rng = np.random.default_rng(1)
    p, y = _binary(rng, 2 * N, temperature=0.5, shift=1.0)  # logit(p) = 2 z + 1  ->  z = 0.5 logit(p) - 0.5
    recal = Recalibrator(method="platt").fit(p, y)
    assert recal.params_["slope"] == pytest.approx(0.5, abs=0.05)
    assert recal.params_["intercept"] == pytest.approx(-0.5, abs=0.1)


def test_isotonic_matches_scikit_learn():
    rng = np.random.default_rng(2)
    p, y = _binary(rng, 1000, temperature=0.5)
    recal = Recalibrator(method="isotonic").fit(p, y)
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p, y)
    new = np.linspace(0, 1, 201)
    np.testing.assert_allclose(recal.transform(new), np.clip(reference.predict(new), 1e-6, 1 - 1e-6))


@pytest.mark.parametrize(("temperature", "shift"), [(0.4, 0.0), (2.0, 0.0), (1.0, -1.0)])
def test_auto_lowers_the_ece_of_a_miscalibrated_model(temperature, shift):
    rng = np.random.default_rng(3)
    (pv, yv), (pt, yt) = _binary(rng, N, temperature, shift), _binary(rng, N, temperature, shift)
    report = recalibration_report("binary", pv, yv, pt, yt, n_resamples=200)
    metrics = report["metrics"]
    assert report["applicable"] and report["method"] != "none"
    assert metrics["ece"]["value"] < 0.5 * metrics["ece_before_recalibration"]["value"]
    assert metrics["ece_change"]["ci_high"] < 0  # the paired CI excludes no improvement
    assert abs(metrics["calibration_slope"]["value"] - 1.0) < abs(
        metrics["calibration_slope_before_recalibration"]["value"] - 1.0) or temperature == 1.0
    assert abs(metrics["calibration_intercept"]["value"]) < 0.15
    losses = report["candidates_val_log_loss"]
    assert losses[report["method"]] == min(v for v in losses.values() if v is not None)


def test_auto_leaves_a_calibrated_model_about_unchanged():
    rng = np.random.default_rng(4)
    (pv, yv), (pt, yt) = _binary(rng, N), _binary(rng, N)
    report = recalibration_report("binary", pv, yv, pt, yt, n_resamples=200)
    metrics = report["metrics"]
    assert abs(metrics["ece"]["value"] - metrics["ece_before_recalibration"]["value"]) < 0.01
    assert metrics["calibration_slope"]["value"] == pytest.approx(1.0, abs=0.1)
    if report["method"] == "temperature":
        assert report["recalibrator"]["params"]["temperature"] == pytest.approx(1.0, abs=0.1)


def test_report_ece_is_the_evaluation_ece_of_the_recalibrated_scores():
    rng = np.random.default_rng(5)
    (pv, yv), (pt, yt) = _binary(rng, 1000, 0.5), _binary(rng, 1000, 0.5)
    report = recalibration_report("binary", pv, yv, pt, yt, n_resamples=100)
    after = Recalibrator.from_dict(report["recalibrator"]).transform(pt)
    assert report["metrics"]["ece"]["value"] == pytest.approx(compute_ece(yt, after))
    assert report["metrics"]["ece_before_recalibration"]["value"] == pytest.approx(compute_ece(yt, pt))
    slope, intercept = compute_calibration_slope_intercept(yt, after)
    assert report["metrics"]["calibration_slope"]["value"] == pytest.approx(slope)
    assert report["metrics"]["calibration_intercept"]["value"] == pytest.approx(intercept)
    # Fitted on validation only: the same validation data give the same map whatever the test split.
    assert report["recalibrator"] == Recalibrator().fit(pv, yv).to_dict()


def test_multiclass_temperature_lowers_top_label_ece():
    rng = np.random.default_rng(6)
    (pv, yv), (pt, yt) = _multiclass(rng, N, 0.5), _multiclass(rng, N, 0.5)
    report = recalibration_report("multiclass", pv, yv, pt, yt, n_resamples=100)
    assert report["method"] in ("temperature", "isotonic")
    assert report["metrics"]["ece"]["value"] < 0.5 * report["metrics"]["ece_before_recalibration"]["value"]
    recal = Recalibrator.from_dict(report["recalibrator"])
    after = recal.transform(pt)
    np.testing.assert_allclose(after.sum(axis=1), 1.0)
    assert report["metrics"]["ece"]["value"] == pytest.approx(compute_ece_multiclass(yt, after))
    if report["method"] == "temperature":
        np.testing.assert_array_equal(after.argmax(axis=1), pt.argmax(axis=1))
        assert recal.params_["temperature"] == pytest.approx(2.0, rel=0.1)


def test_multilabel_is_recalibrated_per_finding():
    rng = np.random.default_rng(7)
    p = rng.random((2 * N, 2))
    y = (rng.random((2 * N, 2)) < p).astype(int)
    scores = np.column_stack([p[:, 0], p[:, 1] ** 3])  # finding 0 calibrated, finding 1 badly
    report = recalibration_report("multilabel", scores[:N], y[:N], scores[N:], y[N:], n_resamples=100)
    assert isinstance(report["method"], list) and len(report["method"]) == 2
    assert report["method"][1] != "none"
    assert report["metrics"]["ece"]["value"] < report["metrics"]["ece_before_recalibration"]["value"]


def test_regression_and_survival_are_reported_as_not_applicable():
    for kind in ("regression", "survival"):
        report = recalibration_report(kind, [1.0, 2.0], [1.0, 2.0], [1.0], [1.0])
        assert report["applicable"] is False and report["method"] == "none" and report["reason"]
        assert report["metrics"]["ece"]["value"] is None
        json.dumps(report, allow_nan=False)


@pytest.mark.parametrize("method", ["none", "temperature", "platt", "isotonic", "auto"])
def test_to_dict_round_trips_through_json(method):
    rng = np.random.default_rng(8)
    p, y = _binary(rng, 600, 0.5)
    recal = Recalibrator(method=method).fit(p, y)
    state = json.loads(json.dumps(recal.to_dict(), allow_nan=False))
    rebuilt = Recalibrator.from_dict(state)
    assert rebuilt.method_ is recal.method_
    np.testing.assert_allclose(rebuilt.transform(p), recal.transform(p))


def test_too_few_records_per_class_keeps_none():
    recal = Recalibrator().fit([0.2, 0.7, 0.9], [0, 1, 1])
    assert recal.method_ is RecalibrationMethod.NONE and "fewer than 2" in recal.reason_


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InvalidParameterError, match=r"'method' parameter of Recalibrator .* Did you mean "
                                                    r"'isotonic'\?"):
        Recalibrator(method="isotonik").fit([0.2, 0.8], [0, 1])
    with pytest.raises(InvalidParameterError, match="method 'platt' does not apply to multiclass scores"):
        Recalibrator(method="platt").fit([[0.2, 0.8], [0.6, 0.4]], [1, 0])
    with pytest.raises(DataValidationError, match=r"'y' must hold 0/1 \(1 = positive\); 1 value\(s\) do not"):
        Recalibrator().fit([0.2, 0.8], [0, 3])
    with pytest.raises(DataValidationError, match="multi-class 'scores' must sum to 1.*kind='multilabel'"):
        Recalibrator().fit([[0.2, 0.9], [0.6, 0.4]], [1, 0])
    with pytest.raises(DataValidationError, match="a class with no validation record"):
        Recalibrator(method="temperature").fit([0.2, 0.3], [0, 0])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        Recalibrator().transform([0.5])
    recal = Recalibrator(method="temperature").fit(np.full((6, 3), 1 / 3), [0, 1, 2, 0, 1, 2])
    with pytest.raises(DataValidationError, match=r"the scores have 2 column\(s\); the recalibrator was fitted on 3"):
        recal.transform([[0.5, 0.5]])
    with pytest.raises(DataValidationError, match="card.json: not a stored recalibrator"):
        Recalibrator.from_dict({"type": "conformal_classifier"}, source="card.json")
