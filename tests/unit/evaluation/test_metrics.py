"""Classification / regression metrics, checked against scikit-learn and hand computations."""

import math

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    mean_absolute_error,
    precision_score,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.preprocessing import label_binarize

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.evaluation.metrics import (
    binary_metrics,
    compute_cinc2017_score,
    compute_calibration_slope_intercept,
    compute_confusion_rates,
    compute_ece,
    compute_ece_multiclass,
    multiclass_metrics,
    regression_metrics,
)


@pytest.fixture
def binary_data():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.35 * y + 0.65 * rng.random(300), 0.0, 1.0)
    return y, p


@pytest.fixture
def multiclass_data():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 240)
    logits = rng.normal(size=(240, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p


# ---------------------------------------------------------------- ECE


def test_ece_hand_computed():
    y = [0, 0, 1, 1, 1]
    p = [0.1, 0.2, 0.6, 0.7, 0.95]
    # bin [0, .5]: mean .15, frac 0 -> .15 (weight 2/5); bin (.5, 1]: mean .75, frac 1 -> .25 (weight 3/5)
    assert compute_ece(y, p, n_bins=2) == pytest.approx(0.4 * 0.15 + 0.6 * 0.25)


def test_ece_zero_when_frequencies_match_predictions():
    assert compute_ece([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    assert compute_ece([0, 1, 0, 1], [0.9, 0.9, 0.9, 0.9]) == pytest.approx(0.4)


def test_ece_probability_on_inner_edge_goes_to_lower_bin():
    # 0.5 lies on the edge of 2 bins: in the lower bin it pairs with 0.1 (mean .3, frac .5 -> .2);
    # in the upper bin the ECE would be .5 * .1 + .5 * .5 = .3.
    assert compute_ece([1, 0], [0.5, 0.1], n_bins=2) == pytest.approx(0.2)


def test_ece_multiclass_top_label_hand_computed():
    p = np.array([[0.85, 0.10, 0.05], [0.10, 0.85, 0.05], [0.65, 0.25, 0.10], [0.15, 0.75, 0.10]])
    y = np.array([0, 0, 0, 1])
    # bins: conf .85 (2 samples, acc .5) -> .35 * 2/4; conf .65 (acc 1) -> .35 / 4; conf .75 (acc 1) -> .25 / 4
    assert compute_ece_multiclass(y, p) == pytest.approx(0.35 / 2 + 0.35 / 4 + 0.25 / 4)
    correct = (p.argmax(axis=1) == y).astype(int)
    assert compute_ece_multiclass(y, p) == pytest.approx(compute_ece(correct, p.max(axis=1)))


@pytest.mark.parametrize("n_bins", [0, -1, 2.5, True])
def test_ece_rejects_bad_n_bins(n_bins):
    with pytest.raises(InvalidParameterError, match="The 'n_bins' parameter of compute_ece must be an int >= 1"):
        compute_ece([0, 1], [0.2, 0.8], n_bins=n_bins)


# ---------------------------------------------------------------- calibration slope / intercept


def _simulate(n, seed=0):
    rng = np.random.default_rng(seed)
    p = expit(-0.5 + 1.2 * rng.normal(size=n))
    y = (rng.random(n) < p).astype(int)
    return y, p


def test_calibration_perfect_model_has_slope_one_intercept_zero():
    y, p = _simulate(20_000)
    slope, intercept = compute_calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1.0, abs=0.05)
    assert intercept == pytest.approx(0.0, abs=0.05)


def test_calibration_overconfident_model_has_slope_below_one():
    y, p = _simulate(20_000)
    too_extreme = expit(2.0 * logit(p))
    slope, _ = compute_calibration_slope_intercept(y, too_extreme)
    assert slope == pytest.approx(0.5, abs=0.05)
    under_confident = expit(0.5 * logit(p))
    assert compute_calibration_slope_intercept(y, under_confident)[0] == pytest.approx(2.0, abs=0.1)


def test_calibration_intercept_positive_when_risk_underestimated():
    y, p = _simulate(20_000)
    _, intercept = compute_calibration_slope_intercept(y, expit(logit(p) - 0.7))
    assert intercept == pytest.approx(0.7, abs=0.05)


def test_calibration_slope_matches_unpenalised_sklearn_logistic_regression(binary_data):
    y, p = binary_data
    slope, _ = compute_calibration_slope_intercept(y, p)
    lp = logit(np.clip(p, 1e-6, 1 - 1e-6))[:, None]
    reference = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(lp, y)
    assert slope == pytest.approx(reference.coef_[0, 0], rel=1e-5)


def test_calibration_in_the_large_solves_its_score_equation(binary_data):
    # With logit(p) as offset, the MLE of the intercept makes the mean recalibrated risk equal the prevalence.
    y, p = binary_data
    _, intercept = compute_calibration_slope_intercept(y, p)
    lp = logit(np.clip(p, 1e-6, 1 - 1e-6))
    assert np.mean(expit(intercept + lp)) == pytest.approx(np.mean(y), abs=1e-9)


def test_calibration_fit_converges_from_far_off_predictions():
    # Predictions ~12 logits too high: a plain Newton step from 0 overshoots; step halving keeps the ascent.
    rng = np.random.default_rng(11)
    x = rng.normal(size=500)
    y = (rng.random(500) < expit(x)).astype(int)
    p = expit(12.0 + 0.5 * x)
    slope, intercept = compute_calibration_slope_intercept(y, p)
    lp = logit(np.clip(p, 1e-6, 1 - 1e-6))
    reference = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(lp[:, None], y)
    assert slope == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    assert np.mean(expit(intercept + lp)) == pytest.approx(np.mean(y), abs=1e-9)


def test_calibration_constant_prediction_has_no_slope():
    slope, intercept = compute_calibration_slope_intercept([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3])
    assert math.isnan(slope)
    assert intercept == pytest.approx(logit(0.5) - logit(0.3))


def test_calibration_undefined_cases_are_nan():
    # one class only
    assert all(math.isnan(v) for v in compute_calibration_slope_intercept([1, 1, 1], [0.2, 0.5, 0.9]))
    # perfect separation: the slope's MLE is infinite
    slope, intercept = compute_calibration_slope_intercept([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.8])
    assert math.isnan(slope)
    assert math.isfinite(intercept)


# ---------------------------------------------------------------- confusion rates


def test_confusion_rates_hand_computed():
    y = [1, 1, 1, 1, 0, 0, 0]
    pred = [1, 1, 1, 0, 1, 1, 0]  # TP 3, FN 1, FP 2, TN 1
    rates = compute_confusion_rates(y, pred)
    assert rates == pytest.approx({"sensitivity": 3 / 4, "specificity": 1 / 3, "ppv": 3 / 5, "npv": 1 / 2})


def test_confusion_rates_zero_denominator_is_nan():
    rates = compute_confusion_rates([0, 0, 0], [0, 0, 0])
    assert math.isnan(rates["sensitivity"]) and math.isnan(rates["ppv"])
    assert rates["specificity"] == 1.0 and rates["npv"] == 1.0


def test_confusion_rates_rejects_non_binary_prediction():
    with pytest.raises(DataValidationError, match="'y_pred' must contain only 0 and 1"):
        compute_confusion_rates([0, 1], [0, 2])


# ---------------------------------------------------------------- binary_metrics


def test_binary_metrics_match_sklearn(binary_data):
    y, p = binary_data
    out = binary_metrics(y, p, threshold=0.6, class_names=["healthy", "disease"])
    pred = (p >= 0.6).astype(int)
    assert list(out) == [
        "auroc", "auprc", "accuracy", "f1_macro", "f1_healthy", "f1_disease", "sensitivity", "specificity",
        "ppv", "npv", "brier", "ece", "calibration_slope", "calibration_intercept",
    ]  # fmt: skip
    assert out["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert out["auprc"] == pytest.approx(average_precision_score(y, p))
    assert out["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert out["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert out["f1_healthy"] == pytest.approx(f1_score(y, pred, pos_label=0))
    assert out["f1_disease"] == pytest.approx(f1_score(y, pred, pos_label=1))
    assert out["brier"] == pytest.approx(brier_score_loss(y, p))
    assert out["ece"] == pytest.approx(compute_ece(y, p))
    assert out["sensitivity"] == pytest.approx(np.mean(pred[y == 1]))
    assert out["specificity"] == pytest.approx(np.mean(1 - pred[y == 0]))
    assert out["ppv"] == pytest.approx(precision_score(y, pred))
    assert out["npv"] == pytest.approx(precision_score(y, pred, pos_label=0))
    assert (out["calibration_slope"], out["calibration_intercept"]) == pytest.approx(
        compute_calibration_slope_intercept(y, p)
    )


def test_binary_metrics_threshold_is_inclusive():
    out = binary_metrics([1, 0], [0.5, 0.2], threshold=0.5, class_names=["neg", "pos"])
    assert out["sensitivity"] == 1.0


def test_binary_metrics_one_class_gives_nan_not_invented_values():
    out = binary_metrics([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], threshold=0.5, class_names=["neg", "pos"])
    for name in ("auroc", "auprc", "sensitivity", "ppv", "f1_pos", "f1_macro", "calibration_slope"):
        assert math.isnan(out[name]), name
    assert out["f1_neg"] == 1.0
    assert out["accuracy"] == 1.0


def test_binary_metrics_rejects_mismatched_lengths():
    with pytest.raises(DataValidationError, match="same number of samples; 'y_true' has 3, 'y_prob' has 2"):
        binary_metrics([0, 1, 1], [0.2, 0.8], threshold=0.5, class_names=["neg", "pos"])


def test_binary_metrics_rejects_non_binary_labels():
    with pytest.raises(DataValidationError, match=r"'y_true' must contain only 0 and 1.*\[2\.0\]"):
        binary_metrics([0, 1, 2], [0.2, 0.8, 0.5], threshold=0.5, class_names=["neg", "pos"])


def test_binary_metrics_rejects_logits():
    with pytest.raises(DataValidationError, match=r"'y_prob' must hold probabilities in \[0, 1\]; 1 value"):
        binary_metrics([0, 1], [-2.0, 0.8], threshold=0.5, class_names=["neg", "pos"])


def test_binary_metrics_rejects_non_finite_scores():
    with pytest.raises(DataValidationError, match="'y_prob' contains 1 non-finite value"):
        binary_metrics([0, 1], [np.nan, 0.8], threshold=0.5, class_names=["neg", "pos"])


def test_binary_metrics_rejects_2d_scores():
    with pytest.raises(DataValidationError, match=r"'y_prob' must be a 1-D array of shape \(n_samples,\)"):
        binary_metrics([0, 1], [[0.2, 0.8], [0.5, 0.5]], threshold=0.5, class_names=["neg", "pos"])


@pytest.mark.parametrize("threshold", [1.5, -0.1, float("nan"), "0.5"])
def test_binary_metrics_rejects_bad_threshold(threshold):
    with pytest.raises(InvalidParameterError, match=r"'threshold' parameter of binary_metrics must be a number in"):
        binary_metrics([0, 1], [0.2, 0.8], threshold=threshold, class_names=["neg", "pos"])


@pytest.mark.parametrize("names", [["only"], ["a", "a"], "ab", ["macro", "b"]])
def test_binary_metrics_rejects_bad_class_names(names):
    with pytest.raises(InvalidParameterError, match="'class_names' parameter of binary_metrics"):
        binary_metrics([0, 1], [0.2, 0.8], threshold=0.5, class_names=names)


# ---------------------------------------------------------------- multiclass_metrics


def test_multiclass_metrics_match_sklearn(multiclass_data):
    y, p = multiclass_data
    out = multiclass_metrics(y, p, class_names=["a", "b", "c"])
    pred = p.argmax(axis=1)
    assert set(out) == {"auroc", "auprc", "accuracy", "f1_macro", "f1_a", "f1_b", "f1_c", "brier", "ece",
                        "auroc_a", "auroc_b", "auroc_c"}
    assert out["auroc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert [out["auroc_a"], out["auroc_b"], out["auroc_c"]] == pytest.approx(
        [roc_auc_score(y == k, p[:, k]) for k in range(3)])
    assert out["auprc"] == pytest.approx(average_precision_score(label_binarize(y, classes=[0, 1, 2]), p))
    assert out["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert out["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert [out["f1_a"], out["f1_b"], out["f1_c"]] == pytest.approx(f1_score(y, pred, average=None))
    assert out["brier"] == pytest.approx(np.mean(np.sum((p - np.eye(3)[y]) ** 2, axis=1)))
    assert out["ece"] == pytest.approx(compute_ece_multiclass(y, p))


def test_cinc2017_score_is_the_mean_f1_over_normal_af_and_other():
    names = ["N", "A", "O", "~"]
    y = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    pred = np.array([0, 0, 3, 1, 0, 2, 1, 3])  # a normal called noisy costs N its recall
    # N: TP 2, FP 1, FN 1 -> 4/6; A: TP 1, FP 1, FN 1 -> 2/4; O: TP 1, FP 0, FN 1 -> 2/3
    assert compute_cinc2017_score(y, pred, names) == pytest.approx((4 / 6 + 2 / 4 + 2 / 3) / 3)
    p = np.eye(4)[pred] * 0.7 + 0.075
    out = multiclass_metrics(y, p, class_names=names)
    assert out["cinc2017_score"] == pytest.approx((4 / 6 + 2 / 4 + 2 / 3) / 3)
    assert "cinc2017_score" not in multiclass_metrics(y, p, class_names=["a", "b", "c", "d"])
    with pytest.raises(InvalidParameterError, match="needs classes N, A and O"):
        compute_cinc2017_score(y, pred, ["N", "A", "X", "~"])


def test_multiclass_metrics_absent_class_gives_nan_auroc(multiclass_data):
    y, p = multiclass_data
    keep = y != 2
    out = multiclass_metrics(y[keep], p[keep], class_names=["a", "b", "c"])
    assert math.isnan(out["auroc"]) and math.isnan(out["auprc"])
    assert math.isfinite(out["accuracy"]) and math.isfinite(out["brier"])


def test_multiclass_metrics_rejects_rows_not_summing_to_one():
    with pytest.raises(DataValidationError, match="each row of 'y_prob' must sum to 1; 1 row"):
        multiclass_metrics([0, 1], [[0.5, 0.5], [0.7, 0.7]], class_names=["a", "b"])


def test_multiclass_metrics_rejects_out_of_range_labels():
    with pytest.raises(DataValidationError, match=r"'y_true' must hold class indices 0\.\.1.*\[3\.0\]"):
        multiclass_metrics([0, 3], [[0.5, 0.5], [0.3, 0.7]], class_names=["a", "b"])


def test_multiclass_metrics_rejects_wrong_number_of_class_names():
    with pytest.raises(InvalidParameterError, match="must be a sequence of 2 class names"):
        multiclass_metrics([0, 1], [[0.5, 0.5], [0.3, 0.7]], class_names=["a", "b", "c"])


# ---------------------------------------------------------------- regression_metrics


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.normal(size=100)
    pred = y + rng.normal(scale=0.5, size=100)
    out = regression_metrics(y, pred)
    assert out == pytest.approx(
        {"rmse": root_mean_squared_error(y, pred), "mae": mean_absolute_error(y, pred), "r2": r2_score(y, pred)}
    )


def test_regression_r2_undefined_for_constant_target():
    out = regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert math.isnan(out["r2"])
    assert out["mae"] == pytest.approx(2 / 3)


def test_regression_metrics_rejects_non_finite_prediction():
    with pytest.raises(DataValidationError, match="regression_metrics: 'y_pred' contains 1 non-finite value"):
        regression_metrics([1.0, 2.0], [1.0, np.inf])


def test_regression_metrics_rejects_empty_input():
    with pytest.raises(DataValidationError, match="'y_true' is empty"):
        regression_metrics([], [])
