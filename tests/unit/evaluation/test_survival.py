"""Survival metrics against scikit-survival; horizons; calibration at a horizon on simulated data."""

import math

import numpy as np
import pytest
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.util import Surv

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.evaluation.survival import calibration_at_horizon, choose_horizons, format_horizon, survival_metrics


def _exponential_cohort(n, seed, censor_max=30.0):
    """Exponential event times with rate exp(x) / 10; uniform censoring. Returns time, event, rate."""
    rng = np.random.default_rng(seed)
    rate = np.exp(rng.normal(0.0, 0.7, n)) / 10.0
    event_time = rng.exponential(1.0 / rate)
    censor_time = rng.uniform(0.0, censor_max, n)
    return np.minimum(event_time, censor_time), event_time <= censor_time, rate


@pytest.fixture(scope="module")
def cohorts():
    train = _exponential_cohort(400, seed=8)
    test = _exponential_cohort(250, seed=9)
    return train, test


def test_survival_metrics_match_sksurv(cohorts):
    (t_tr, e_tr, _), (t, e, rate) = cohorts
    horizons = [2.5, 5.0, 10.0]
    grid = np.linspace(1.0, 15.0, 12)
    surv = np.exp(-rate[:, None] * grid[None, :])
    out = survival_metrics(
        t, e, rate, train_time=t_tr, train_event=e_tr, horizons=horizons, surv_probs=surv, grid=grid
    )
    train, test = Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t)
    assert list(out) == ["c_index", "c_index_uno", "td_auc_2.5", "td_auc_5", "td_auc_10", "ibs"]
    assert out["c_index"] == pytest.approx(concordance_index_censored(e, t, rate)[0])
    assert out["c_index_uno"] == pytest.approx(concordance_index_ipcw(train, test, rate, tau=10.0)[0])
    auc = cumulative_dynamic_auc(train, test, rate, horizons)[0]
    assert [out["td_auc_2.5"], out["td_auc_5"], out["td_auc_10"]] == pytest.approx(list(auc))
    assert out["ibs"] == pytest.approx(integrated_brier_score(train, test, surv, grid))
    assert 0.6 < out["c_index"] < 0.8  # the rate is informative


def test_censoring_weights_come_from_the_training_data(cohorts):
    (t_tr, e_tr, _), (t, e, rate) = cohorts
    kwargs = {"horizons": [5.0, 10.0]}
    from_train = survival_metrics(t, e, rate, train_time=t_tr, train_event=e_tr, **kwargs)
    from_test = survival_metrics(t, e, rate, train_time=t, train_event=e, **kwargs)
    assert from_train["c_index"] == from_test["c_index"]  # Harrell's C has no weights
    assert from_train["c_index_uno"] != pytest.approx(from_test["c_index_uno"], abs=1e-9)


def test_horizon_outside_follow_up_is_nan_and_keeps_the_others(cohorts):
    (t_tr, e_tr, _), (t, e, rate) = cohorts
    out = survival_metrics(t, e, rate, train_time=t_tr, train_event=e_tr, horizons=[5.0, 1000.0])
    assert math.isnan(out["td_auc_1000"])
    assert out["td_auc_5"] == pytest.approx(
        cumulative_dynamic_auc(Surv.from_arrays(e_tr, t_tr), Surv.from_arrays(e, t), rate, [5.0])[0][0]
    )


def test_what_sksurv_refuses_becomes_nan_not_an_exception(cohorts):
    (t_tr, e_tr, _), (t, e, rate) = cohorts
    # all test samples censored: no comparable pair
    out = survival_metrics(t, np.zeros_like(e), rate, train_time=t_tr, train_event=e_tr, horizons=[5.0])
    assert math.isnan(out["c_index"])
    # test follow-up beyond the training follow-up: censoring weights undefined up to tau
    short = t_tr < 8.0
    out = survival_metrics(t, e, rate, train_time=t_tr[short], train_event=e_tr[short], horizons=[5.0, 20.0])
    assert math.isnan(out["c_index_uno"])
    assert math.isfinite(out["c_index"])
    # IBS grid beyond the test follow-up
    grid = np.array([1.0, 500.0])
    surv = np.ones((len(t), 2))
    out = survival_metrics(t, e, rate, train_time=t_tr, train_event=e_tr, horizons=[5.0], surv_probs=surv, grid=grid)
    assert math.isnan(out["ibs"])


def test_survival_metrics_validation(cohorts):
    (t_tr, e_tr, _), (t, e, rate) = cohorts
    kw = {"train_time": t_tr, "train_event": e_tr}
    with pytest.raises(DataValidationError, match="survival_metrics: 'time' must be non-negative follow-up times"):
        survival_metrics(-t, e, rate, horizons=[5.0], **kw)
    with pytest.raises(DataValidationError, match="'time' has 250, 'risk' has 249"):
        survival_metrics(t, e, rate[1:], horizons=[5.0], **kw)
    with pytest.raises(DataValidationError, match="'train_event' must contain only 0 and 1"):
        survival_metrics(t, e, rate, horizons=[5.0], train_time=t_tr, train_event=e_tr * 2)
    with pytest.raises(
        InvalidParameterError,
        match="'horizons' parameter of survival_metrics must be "
        "a non-empty, strictly increasing",
    ):
        survival_metrics(t, e, rate, horizons=[5.0, 2.0], **kw)
    with pytest.raises(
        InvalidParameterError,
        match="'grid' parameter of survival_metrics must "
        "be the times of the columns",
    ):
        survival_metrics(t, e, rate, horizons=[5.0], surv_probs=np.ones((250, 3)), **kw)
    with pytest.raises(
        DataValidationError,
        match=r"'surv_probs' must have shape \(n_samples, "
        r"len\(grid\)\) = \(250, 2\)",
    ):
        survival_metrics(t, e, rate, horizons=[5.0], surv_probs=np.ones((250, 3)), grid=[1.0, 2.0], **kw)


@pytest.mark.parametrize(("t", "name"), [(365.0, "365"), (2.5, "2.5"), (30, "30"), (0.1, "0.1"), (1e6, "1000000")])
def test_format_horizon(t, name):
    assert format_horizon(t) == name


def test_format_horizon_rejects_non_finite():
    with pytest.raises(InvalidParameterError, match="'t' parameter of format_horizon must be a finite number"):
        format_horizon(float("inf"))


def test_choose_horizons_rounds_event_time_quantiles():
    time = np.arange(1.0, 101.0)
    event = np.ones(100, dtype=bool)
    # quantiles 25.75, 50.5, 75.25 -> 2 significant digits (Python rounds halves to even)
    assert choose_horizons(time, event) == [26.0, 50.0, 75.0]


def test_choose_horizons_uses_event_times_only():
    time = np.arange(1.0, 101.0)
    event = time > 60  # events only late: the median of 61..100 is 80.5 (50.5 if censored times counted)
    assert choose_horizons(time, event, quantiles=(0.5,)) == [80.0]


def test_choose_horizons_stays_inside_follow_up():
    time = np.array([1.0, 1.95, 1.96, 1.97])
    # the 0.75 quantile 1.9625 rounds to 2.0, past the last follow-up 1.97: one more digit keeps it inside
    assert choose_horizons(time, np.ones(4, dtype=bool), quantiles=(0.75,)) == [1.96]


def test_choose_horizons_merges_values_equal_after_rounding():
    time = np.arange(1.0, 101.0)
    assert choose_horizons(time, np.ones(100, dtype=bool), quantiles=(0.41, 0.412)) == [42.0]


def test_choose_horizons_on_simulated_cohort(cohorts):
    (t, e, _), _ = cohorts
    horizons = choose_horizons(t, e)
    raw = np.quantile(t[e], [0.25, 0.5, 0.75])
    assert len(horizons) == 3 and np.all(np.diff(horizons) > 0)
    assert all(t.min() < h < t.max() for h in horizons)
    np.testing.assert_allclose(horizons, raw, rtol=0.05)
    assert all(float(f"{h:.2g}") == h for h in horizons)


def test_choose_horizons_validation():
    with pytest.raises(DataValidationError, match="choose_horizons: no event observed among 3 samples"):
        choose_horizons([1.0, 2.0, 3.0], [0, 0, 0])
    with pytest.raises(
        InvalidParameterError,
        match=r"'quantiles' parameter of choose_horizons must be strictly "
        r"increasing levels in the open interval \(0, 1\)",
    ):
        choose_horizons([1.0, 2.0, 3.0], [1, 1, 1], quantiles=(0.5, 1.0))


def test_calibration_at_horizon_true_survival_matches_kaplan_meier():
    time, event, rate = _exponential_cohort(6000, seed=10)
    horizon = 5.0
    out = calibration_at_horizon(time, event, np.exp(-rate * horizon), horizon, n_groups=5)
    assert out["horizon"] == 5.0
    groups = out["groups"]
    assert [g["n"] for g in groups] == [1200] * 5
    predicted = [g["predicted"] for g in groups]
    assert np.all(np.diff(predicted) > 0)  # lowest to highest risk
    for g in groups:
        assert g["observed"] == pytest.approx(g["predicted"], abs=0.03)
        assert g["observed_ci_low"] < g["observed"] < g["observed_ci_high"]
        assert g["observed_ci_high"] - g["observed_ci_low"] < 0.1


def test_calibration_at_horizon_detects_overestimated_risk():
    time, event, rate = _exponential_cohort(6000, seed=10)
    horizon = 5.0
    out = calibration_at_horizon(time, event, np.exp(-2.0 * rate * horizon), horizon)  # hazard doubled
    assert all(g["predicted"] > g["observed_ci_high"] for g in out["groups"])


def test_calibration_at_horizon_undefined_and_trivial_observed():
    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.array([1, 0, 0, 1])
    before = calibration_at_horizon(time, event, [0.9, 0.8, 0.7, 0.6], 0.5, n_groups=1)["groups"][0]
    assert (before["observed"], before["n_events"]) == (0.0, 0)
    # low-risk group (times 1 event, 2 censored): past its censored last follow-up Kaplan-Meier says nothing;
    # high-risk group (3 censored, 4 event): everyone still at risk had the event, KM stays 0 afterwards
    after = calibration_at_horizon(time, event, [0.9, 0.8, 0.7, 0.6], 10.0, n_groups=2)["groups"]
    assert [g["observed"] for g in after] == [None, 1.0]
    assert [(g["observed_ci_low"], g["observed_ci_high"]) for g in after] == [(None, None), (1.0, 1.0)]


def test_calibration_at_horizon_validation():
    with pytest.raises(DataValidationError, match="3 samples cannot form 5 risk groups"):
        calibration_at_horizon([1.0, 2.0, 3.0], [1, 0, 1], [0.5, 0.5, 0.5], 2.0)
    with pytest.raises(
        InvalidParameterError,
        match="'t' parameter of calibration_at_horizon must "
        "be a finite positive time",
    ):
        calibration_at_horizon([1.0, 2.0, 3.0], [1, 0, 1], [0.5, 0.5, 0.5], 0.0, n_groups=1)
    with pytest.raises(DataValidationError, match=r"'surv_prob_at_t' must hold probabilities in \[0, 1\]"):
        calibration_at_horizon([1.0, 2.0, 3.0], [1, 0, 1], [0.5, 1.5, 0.5], 2.0, n_groups=1)
