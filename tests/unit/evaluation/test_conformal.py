"""Split-conformal sets and intervals, abstention and selective risk, on data from known generating models."""

from __future__ import annotations

import base64
import itertools
import json
import math

import numpy as np
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError, NotFittedError
from medai.evaluation.conformal import (
    ConformalClassifier,
    ConformalMultilabel,
    ConformalRegressor,
    ConformalRiskGroup,
    clopper_pearson,
    conformal_from_dict,
    conformal_quantile,
    conformal_report,
    plot_selective_risk,
    selective_risk_curve,
)

N = 3000  # records per split: the coverage tolerance below is about ±0.024 at alpha = 0.1


def _tolerance(alpha: float, n_cal: int, n_test: int) -> float:
    """3 SE of the empirical test coverage: calibration (Beta) and test (binomial) variability added."""
    return 3.0 * math.sqrt(alpha * (1 - alpha) * (1.0 / n_cal + 1.0 / n_test))


def _binary(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A known logistic model: P(y=1 | x) = sigmoid(2x), the scores are the true probabilities."""
    x = rng.normal(size=n)
    p = 1.0 / (1.0 + np.exp(-2.0 * x))
    return p, (rng.random(n) < p).astype(int)


def _multiclass(rng: np.random.Generator, n: int, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    logits = 1.5 * rng.normal(size=(n, k))
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)  # inverse-CDF draw from each row
    return p, np.minimum(y, k - 1)


def _survival(rng: np.random.Generator, n: int):
    """Exponential event times with hazard exp(r) and independent exponential censoring (mean 2)."""
    r = rng.normal(size=n)
    event_time = rng.exponential(1.0 / np.exp(r))
    censor_time = rng.exponential(2.0, size=n)
    return r, event_time, np.minimum(event_time, censor_time), (event_time <= censor_time).astype(int)


# ---------------------------------------------------------------------------------------------------------------
# Quantile


def test_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 11.0)[::-1]  # 10 scores, given unsorted
    assert conformal_quantile(scores, 0.1) == 10.0  # ceil(11 * 0.9) = 10
    assert conformal_quantile(scores, 0.2) == 9.0  # ceil(11 * 0.8) = 9
    assert conformal_quantile(scores, 0.5) == 6.0  # ceil(11 * 0.5) = 6
    assert conformal_quantile(scores, 0.05) == math.inf  # ceil(11 * 0.95) = 11 > 10


@pytest.mark.parametrize(("n", "alpha"), [(10, 0.1), (37, 0.05), (200, 0.1), (999, 0.3)])
def test_equal_weights_give_the_unweighted_quantile(n, alpha):
    scores = np.random.default_rng(n).normal(size=n)
    assert conformal_quantile(scores, alpha, weights=np.full(n, 2.5)) == conformal_quantile(scores, alpha)


def test_clopper_pearson_matches_known_values():
    low, high = clopper_pearson(5, 10)
    assert low == pytest.approx(0.187086, abs=1e-5) and high == pytest.approx(0.812914, abs=1e-5)
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Coverage on generated data


def test_binary_coverage_within_sampling_error():
    rng = np.random.default_rng(0)
    (pv, yv), (pt, yt) = _binary(rng, N), _binary(rng, N)
    report = conformal_report("binary", pv, yv, pt, yt, alpha=0.1, class_names=["neg", "pos"])
    coverage = report["metrics"]["conformal_coverage"]
    assert report["metrics"]["conformal_target"]["value"] == 0.9
    assert abs(coverage["value"] - 0.9) < _tolerance(0.1, N, N)
    assert coverage["ci_low"] < coverage["value"] < coverage["ci_high"]
    assert set(report["coverage_by_class"]) == {"neg", "pos"}
    assert sum(c["n"] for c in report["coverage_by_class"].values()) == N
    # Non-randomised APS always keeps the most likely class: with a top-class error rate above alpha (about 0.25
    # here) the sets fill up. Valid, but conservative: the documented reason LAC is the default.
    aps = conformal_report("binary", pv, yv, pt, yt, alpha=0.1, score="aps")
    assert aps["metrics"]["conformal_coverage"]["value"] >= 0.9
    assert aps["metrics"]["mean_set_size"]["value"] > report["metrics"]["mean_set_size"]["value"]


@pytest.mark.parametrize("score", ["lac", "aps"])
def test_multiclass_coverage_within_sampling_error(score):
    rng = np.random.default_rng(1)
    (pv, yv), (pt, yt) = _multiclass(rng, N), _multiclass(rng, N)
    report = conformal_report("multiclass", pv, yv, pt, yt, alpha=0.1, score=score)
    assert abs(report["metrics"]["conformal_coverage"]["value"] - 0.9) < _tolerance(0.1, N, N)
    sizes = report["set_size_counts"]
    assert sum(sizes.values()) == N
    assert report["metrics"]["mean_set_size"]["value"] == pytest.approx(
        sum(int(k) * v for k, v in sizes.items()) / N)
    assert report["metrics"]["abstain_rate"]["value"] == pytest.approx(1 - sizes["1"] / N)


def test_regression_coverage_absolute_and_normalized():
    rng = np.random.default_rng(2)
    x = rng.uniform(0.2, 3.0, size=2 * N)
    y = 2.0 * x + rng.normal(size=2 * N) * x  # noise grows with x: a normalised score adapts, an absolute does not
    pred, val, test = 2.0 * x, slice(0, N), slice(N, 2 * N)
    absolute = conformal_report("regression", pred[val], y[val], pred[test], y[test], alpha=0.1)
    normalized = conformal_report("regression", pred[val], y[val], pred[test], y[test], alpha=0.1,
                                  score="normalized", val_scale=x[val], test_scale=x[test])
    for report in (absolute, normalized):
        assert abs(report["metrics"]["conformal_coverage"]["value"] - 0.9) < _tolerance(0.1, N, N)
    assert normalized["metrics"]["mean_interval_width"]["value"] < absolute["metrics"]["mean_interval_width"]["value"]
    assert absolute["metrics"]["abstain_rate"]["value"] is None  # no maximum width: no abstention defined
    capped = conformal_report("regression", pred[val], y[val], pred[test], y[test], alpha=0.1,
                              score="normalized", val_scale=x[val], test_scale=x[test], max_interval_width=6.0)
    half_width = capped["quantile"] * x[test]
    assert capped["metrics"]["abstain_rate"]["value"] == pytest.approx(np.mean(2 * half_width > 6.0))


def test_multilabel_coverage_per_finding():
    rng = np.random.default_rng(3)
    p = rng.random((2 * N, 3))
    y = (rng.random((2 * N, 3)) < p).astype(int)
    report = conformal_report("multilabel", p[:N], y[:N], p[N:], y[N:], alpha=0.1, class_names=["a", "b", "c"],
                              n_resamples=200)
    for finding in ("a", "b", "c"):
        assert abs(report["coverage_by_class"][finding]["value"] - 0.9) < _tolerance(0.1, N, N)
    assert len(report["quantile"]) == 3
    metrics = report["metrics"]
    assert metrics["abstain_rate"]["value"] <= metrics["abstain_rate_records"]["value"]


def test_survival_risk_group_coverage_of_the_uncensored_truth():
    rng = np.random.default_rng(4)
    r, event_time, time, event = _survival(rng, 2 * N)
    horizon = 0.7
    y = np.column_stack([time, event])
    report = conformal_report("survival", r[:N], y[:N], r[N:], y[N:], alpha=0.1, horizon=horizon,
                              n_resamples=200)
    assert report["n_censored_before_horizon"] > 100  # the weighting is exercised
    assert abs(report["metrics"]["conformal_coverage"]["value"] - 0.9) < _tolerance(0.1, N, N)
    # The generated event times are known: check the coverage of the true event-by-horizon status, which no
    # censoring hides, against the target.
    sets = conformal_from_dict(report["predictor"]).predict_sets(r[N:])
    truth = (event_time[N:] <= horizon).astype(int)
    assert abs(sets[np.arange(N), truth].mean() - 0.9) < _tolerance(0.1, N, N)
    predictor = report["predictor"]
    assert predictor["cutoff"] == pytest.approx(np.median(r[:N]))
    both = sets.all(axis=1)
    # Abstentions are exactly the calibrated band around the cut-off.
    band = np.abs(r[N:] - predictor["cutoff"]) <= predictor["quantile"]
    np.testing.assert_array_equal(both, band)


def test_survival_weights_are_the_kaplan_meier_censoring_weights():
    pytest.importorskip("sksurv", reason="scikit-survival gives the reference censoring distribution")
    from sksurv.nonparametric import CensoringDistributionEstimator
    from sksurv.util import Surv

    rng = np.random.default_rng(11)
    r, _, time, event = _survival(rng, 800)
    extra_censoring = rng.exponential(0.5, size=800)  # heavy censoring: the weights matter
    event = event.astype(bool) & (time <= extra_censoring)
    time = np.minimum(time, extra_censoring)
    horizon, cutoff = 0.7, 1.0
    predictor = ConformalRiskGroup(0.1, horizon=horizon, cutoff=cutoff).fit(r, time, event)
    by_horizon = event & (time <= horizon)
    known = by_horizon | (time > horizon)
    censoring = CensoringDistributionEstimator().fit(Surv.from_arrays(event, time))
    weight = 1.0 / censoring.predict_proba(np.where(by_horizon, time, horizon)[known])
    scores = np.where(by_horizon[known], cutoff - r[known], r[known] - cutoff)
    assert predictor.n_calibration_ == int(known.sum())
    assert predictor.quantile_ == conformal_quantile(scores, 0.1, weights=weight)
    assert predictor.quantile_ != conformal_quantile(scores, 0.1)  # the weighting changes the threshold


def test_smaller_alpha_gives_more_abstentions_and_coverage():
    rng = np.random.default_rng(5)
    (pv, yv), (pt, yt) = _multiclass(rng, N), _multiclass(rng, N)
    reports = [conformal_report("multiclass", pv, yv, pt, yt, alpha=a) for a in (0.3, 0.1, 0.02)]
    abstain = [r["metrics"]["abstain_rate"]["value"] for r in reports]
    coverage = [r["metrics"]["conformal_coverage"]["value"] for r in reports]
    size = [r["metrics"]["mean_set_size"]["value"] for r in reports]
    assert abstain[0] < abstain[1] < abstain[2]
    assert coverage[0] < coverage[1] < coverage[2]
    assert size[0] < size[1] < size[2]


# ---------------------------------------------------------------------------------------------------------------
# Set semantics


def test_lac_sets_hold_the_classes_above_one_minus_q():
    rng = np.random.default_rng(6)
    pv, yv = _multiclass(rng, 500)
    cp = ConformalClassifier(alpha=0.2).fit(pv, yv)
    expected_q = np.sort(1.0 - pv[np.arange(500), yv])[math.ceil(501 * 0.8) - 1]
    assert cp.quantile_ == expected_q
    pt, _ = _multiclass(rng, 200)
    np.testing.assert_array_equal(cp.predict_sets(pt), 1.0 - pt <= expected_q)


def test_aps_score_is_the_mass_of_the_classes_at_least_as_likely():
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.4, 0.4, 0.2]])
    cp = ConformalClassifier(alpha=0.5, score="aps").fit(p, np.array([0, 1, 2]))
    # Calibration scores: 0.5, 0.6, 1.0 -> rank ceil(4 * 0.5) = 2 -> q = 0.6.
    assert cp.quantile_ == pytest.approx(0.6)
    sets = cp.predict_sets(p)
    # Row 3: the two tied classes have score 0.8 > 0.6, so neither is in the set (ties share a score).
    np.testing.assert_array_equal(sets, [[True, False, False], [False, True, False], [False, False, False]])


def test_binary_scores_are_sets_over_negative_and_positive():
    rng = np.random.default_rng(7)
    pv, yv = _binary(rng, 400)
    cp = ConformalClassifier(alpha=0.1).fit(pv, yv)
    sets = cp.predict_sets(np.array([0.001, 0.5, 0.999]))
    assert sets.shape == (3, 2)
    np.testing.assert_array_equal(sets[0], [True, False])  # confident negative
    np.testing.assert_array_equal(sets[2], [False, True])  # confident positive


def test_too_small_calibration_set_gives_full_sets_and_a_note():
    rng = np.random.default_rng(8)
    pv, yv = _binary(rng, 8)
    pt, yt = _binary(rng, 50)
    report = conformal_report("binary", pv, yv, pt, yt, alpha=0.05)
    assert report["quantile"] is None  # infinite: JSON null
    assert report["metrics"]["conformal_coverage"]["value"] == 1.0
    assert report["metrics"]["abstain_rate"]["value"] == 1.0
    assert any("too small for alpha" in note for note in report["notes"])
    json.dumps(report, allow_nan=False)  # strictly JSON-ready


# ---------------------------------------------------------------------------------------------------------------
# Round trips


def test_to_dict_round_trips_through_json():
    rng = np.random.default_rng(9)
    pm, ym = _multiclass(rng, 300)
    pb, yb = _binary(rng, 300)
    x = rng.normal(size=300)
    r, _, time, event = _survival(rng, 300)
    fitted = [
        (ConformalClassifier(0.1, "aps").fit(pm, ym), lambda c: c.predict_sets(pm)),
        (ConformalClassifier(0.1).fit(pb, yb), lambda c: c.predict_sets(pb)),
        (ConformalMultilabel(0.2).fit(pm, (pm > 0.3).astype(int)), lambda c: c.predict_sets(pm)),
        (ConformalRegressor(0.1).fit(x, x + rng.normal(size=300)), lambda c: c.predict_intervals(x)),
        (ConformalRiskGroup(0.1, horizon=0.5).fit(r, time, event), lambda c: c.predict_sets(r)),
    ]
    for predictor, use in fitted:
        state = json.loads(json.dumps(predictor.to_dict(), allow_nan=False))
        rebuilt = conformal_from_dict(state)
        assert type(rebuilt) is type(predictor)
        np.testing.assert_array_equal(use(rebuilt), use(predictor))


def test_infinite_quantile_round_trips():
    cp = ConformalClassifier(alpha=0.01).fit([0.2, 0.9, 0.7], [0, 1, 1])
    state = cp.to_dict()
    assert state["quantile"] is None
    assert ConformalClassifier.from_dict(state).quantile_ == math.inf


# ---------------------------------------------------------------------------------------------------------------
# Errors


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(InvalidParameterError, match=r"'alpha' parameter of ConformalClassifier must be a number in "
                                                    r"the open interval \(0, 1\)"):
        ConformalClassifier(alpha=1.5).fit([0.2, 0.8], [0, 1])
    with pytest.raises(InvalidParameterError, match=r"'score' parameter .* Did you mean 'aps'\?"):
        ConformalClassifier(score="apss").fit([0.2, 0.8], [0, 1])
    with pytest.raises(InvalidParameterError, match=r"'kind' parameter .* Did you mean 'binary'\?"):
        conformal_report("binnary", [0.2], [0], [0.2], [0])
    with pytest.raises(InvalidParameterError, match="'horizon' parameter of ConformalRiskGroup"):
        ConformalRiskGroup(0.1).fit([0.1, 0.2], [1.0, 2.0], [1, 0])
    with pytest.raises(InvalidParameterError, match="score='normalized' needs 'scale'"):
        ConformalRegressor(0.1, "normalized").fit([1.0, 2.0], [1.5, 2.5])


def test_bad_data_raise_clear_errors():
    with pytest.raises(DataValidationError, match=r"'y' must hold class indices 0\.\.1"):
        ConformalClassifier().fit([0.2, 0.8], [0, 2])
    with pytest.raises(DataValidationError, match="each row of 'scores' must sum to 1"):
        ConformalClassifier().fit([[0.2, 0.5], [0.5, 0.5]], [0, 1])
    with pytest.raises(DataValidationError, match=r"must hold probabilities in \[0, 1\].*not logits"):
        ConformalClassifier().fit([-2.0, 3.0], [0, 1])
    with pytest.raises(DataValidationError, match="same number of samples"):
        ConformalClassifier().fit([0.2, 0.8, 0.5], [0, 1])
    with pytest.raises(DataValidationError, match=r"survival 'y_val' must be an \(n_samples, 2\) array of \(time, "
                                                  r"event\)"):
        conformal_report("survival", [0.1, 0.2], [1.0, 2.0], [0.1], [[1.0, 1]], horizon=1.0)
    with pytest.raises(DataValidationError, match="'scale' must be > 0"):
        ConformalRegressor(0.1, "normalized").fit([1.0, 2.0], [1.5, 2.5], scale=[1.0, 0.0])
    cp = ConformalClassifier().fit(np.full((20, 3), 1 / 3), np.arange(20) % 3)
    with pytest.raises(DataValidationError, match="the scores have 2 classes; the predictor was calibrated with 3"):
        cp.predict_sets([[0.5, 0.5]])


def test_unfitted_and_bad_stored_state_raise():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        ConformalClassifier().predict_sets([0.5])
    with pytest.raises(DataValidationError, match="model.json: unknown conformal predictor type 'thresholds'"):
        conformal_from_dict({"type": "thresholds"}, source="model.json")
    with pytest.raises(DataValidationError, match=r"lacks \['quantile'\]"):
        ConformalRegressor.from_dict({"type": "conformal_regressor", "alpha": 0.1, "score": "absolute",
                                      "n_calibration": 5})


# ---------------------------------------------------------------------------------------------------------------
# Selective risk


def test_aurc_matches_brute_force_with_ties_averaged():
    loss = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    confidence = np.array([0.9, 0.9, 0.8, 0.7, 0.7, 0.7])  # two tie blocks
    # Two-class probabilities whose largest value is the confidence; the arg-max (class 0) is wrong where loss is 1.
    p = np.column_stack([confidence, 1.0 - confidence])
    curve = selective_risk_curve("multiclass", loss.astype(int), p)
    # Brute force: the mean over every order consistent with the confidence ranking.
    order_risks = []
    blocks = [[0, 1], [2], [3, 4, 5]]
    for perms in itertools.product(*(itertools.permutations(b) for b in blocks)):
        order = [i for block in perms for i in block]
        order_risks.append(np.cumsum(loss[order]) / np.arange(1, 7))
    expected = np.mean(order_risks, axis=0)
    assert curve["aurc"] == pytest.approx(expected.mean())
    np.testing.assert_allclose(curve["risk"], expected)
    assert curve["full_coverage_risk"] == pytest.approx(0.5)
    assert curve["aurc_optimal"] == pytest.approx(np.mean(np.cumsum(np.sort(loss)) / np.arange(1, 7)))


def test_informative_confidence_has_lower_aurc_than_random():
    rng = np.random.default_rng(10)
    p, y = _multiclass(rng, N)
    informative = selective_risk_curve("multiclass", y, p)
    shuffled = selective_risk_curve("multiclass", y, p[rng.permutation(N)])
    assert informative["aurc"] < informative["full_coverage_risk"]
    assert informative["aurc"] < shuffled["aurc"]
    assert informative["e_aurc"] >= 0
    assert informative["coverage"][-1] == 1.0 and len(informative["coverage"]) == 101
    regression = selective_risk_curve("regression", y.astype(float), np.zeros(N), uncertainty=np.abs(y))
    assert regression["e_aurc"] == pytest.approx(0.0)  # uncertainty ranks the errors exactly
    png = base64.b64decode(plot_selective_risk({"model": informative, "random": shuffled}))
    assert png.startswith(b"\x89PNG")


def test_selective_risk_rejects_survival_and_regression_without_uncertainty():
    with pytest.raises(InvalidParameterError, match="survival log-risks have no per-record loss"):
        selective_risk_curve("survival", [1.0], [0.3])
    with pytest.raises(InvalidParameterError, match="regression needs 'uncertainty'"):
        selective_risk_curve("regression", [1.0, 2.0], [1.1, 2.1])
