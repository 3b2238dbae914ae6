"""Threshold choice: Youden against brute force, sensitivity target really reached."""

import numpy as np
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.evaluation.operating_point import OperatingPointMethod, choose_threshold


@pytest.fixture
def data():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 301)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random(301), 0, 1), 2)  # rounded: many tied scores
    return y, p


def _sens_spec(y, p, t):
    pred = p >= t
    return pred[y == 1].mean(), (~pred[y == 0]).mean()


def test_youden_matches_brute_force(data):
    y, p = data
    candidates = np.unique(p)[::-1]  # decreasing
    j = np.array([sum(_sens_spec(y, p, t)) - 1 for t in candidates])
    threshold = choose_threshold(y, p, method="youden")
    assert sum(_sens_spec(y, p, threshold)) - 1 == pytest.approx(j.max())
    assert threshold not in p  # the middle of an interval between observed scores, not an edge


def test_youden_takes_the_middle_of_the_gap_on_separated_data():
    """Perfect validation separation: any cut in (0.2, 0.8] is optimal; the edge 0.8 would misclassify the next
    positive scoring 0.79, the middle does not."""
    y = np.array([0, 0, 1, 1])
    assert choose_threshold(y, [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.5)


def test_youden_ties_equal_up_to_rounding_take_the_higher_cut():
    # J = 2/3 at cuts 0.7 and 0.3 (equal up to rounding: 2/3 - 0 vs 1 - 1/3); the higher one wins, and the
    # threshold is the middle of (0.5, 0.7], where the validation results are the same
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.2])
    threshold = choose_threshold(y, p)
    assert sum(_sens_spec(y, p, threshold)) - 1 == pytest.approx(2 / 3)
    assert threshold == pytest.approx(0.6)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95])
def test_sensitivity_method_reaches_target_with_best_specificity(data, target):
    y, p = data
    threshold = choose_threshold(y, p, method=OperatingPointMethod.SENSITIVITY, target_sensitivity=target)
    sensitivity, specificity = _sens_spec(y, p, threshold)
    assert sensitivity >= target
    feasible = [_sens_spec(y, p, t)[1] for t in np.unique(p) if _sens_spec(y, p, t)[0] >= target]
    assert specificity == pytest.approx(max(feasible))
    below = p[p < threshold].max()
    above = p[p >= threshold].min()
    assert threshold == pytest.approx((below + above) / 2)


def test_sensitivity_target_met_exactly_is_accepted():
    y = np.array([1] * 10 + [0] * 10)
    p = np.linspace(0.99, 0.01, 20)  # positives ranked first
    # 9 of 10 positives = 0.9 exactly: the cut lies between the 9th and the 10th positive's scores
    assert choose_threshold(y, p, method="sensitivity", target_sensitivity=0.9) == pytest.approx((p[8] + p[9]) / 2)


def test_youden_returns_finite_threshold_when_no_cut_beats_chance():
    assert choose_threshold([1, 0], [0.2, 0.8]) == 0.8


def test_choose_threshold_rejects_unknown_method():
    with pytest.raises(
        InvalidParameterError,
        match=r"'method' parameter of choose_threshold must be "
        r"one of \['youden', 'sensitivity'\]",
    ):
        choose_threshold([0, 1], [0.2, 0.8], method="f1")


@pytest.mark.parametrize("target", [0.0, 1.0, 1.2, None])
def test_choose_threshold_rejects_target_outside_open_interval(target):
    with pytest.raises(
        InvalidParameterError,
        match=r"'target_sensitivity' parameter of choose_threshold must "
        r"be a number in the open interval \(0, 1\)",
    ):
        choose_threshold([0, 1], [0.2, 0.8], method="sensitivity", target_sensitivity=target)


def test_choose_threshold_needs_both_classes():
    with pytest.raises(
        DataValidationError,
        match=r"'y_true' has no positive \(1\) sample; a "
        r"threshold needs both classes",
    ):
        choose_threshold([0, 0, 0], [0.2, 0.8, 0.5])
    with pytest.raises(DataValidationError, match=r"has no negative \(0\) sample"):
        choose_threshold([1, 1], [0.2, 0.8])
