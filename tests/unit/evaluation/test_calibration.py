"""Reliability curve: same bins as scikit-learn's calibration_curve and as compute_ece."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.evaluation.calibration import reliability_curve
from medai.evaluation.metrics import compute_ece


@pytest.fixture
def data():
    rng = np.random.default_rng(4)
    p = rng.random(500)
    p[:20] = np.linspace(0.0, 1.0, 11)[rng.integers(0, 11, 20)]  # some values exactly on bin edges
    y = (rng.random(500) < p).astype(int)
    return y, p


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_reliability_curve_matches_sklearn_calibration_curve(data, n_bins):
    y, p = data
    curve = reliability_curve(y, p, n_bins=n_bins)
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    np.testing.assert_allclose(curve["bin_mean_pred"], mean_pred)
    np.testing.assert_allclose(curve["bin_frac_pos"], frac_pos)
    assert sum(curve["bin_count"]) == len(y)


def test_reliability_curve_drops_empty_bins_and_is_json_ready():
    curve = reliability_curve([0, 1, 1], [0.05, 0.92, 0.97], n_bins=10)
    assert curve == {"bin_mean_pred": [0.05, pytest.approx(0.945)], "bin_frac_pos": [0.0, 1.0], "bin_count": [1, 2]}
    assert all(type(v) is float for v in curve["bin_mean_pred"] + curve["bin_frac_pos"])
    assert all(type(v) is int for v in curve["bin_count"])


def test_reliability_curve_is_consistent_with_ece(data):
    y, p = data
    curve = reliability_curve(y, p, n_bins=10)
    weighted_gap = np.dot(curve["bin_count"], np.abs(np.subtract(curve["bin_frac_pos"], curve["bin_mean_pred"])))
    assert weighted_gap / len(y) == pytest.approx(compute_ece(y, p, n_bins=10))


def test_reliability_curve_rejects_bad_input():
    with pytest.raises(DataValidationError, match=r"reliability_curve: 'y_prob' must hold probabilities in \[0, 1\]"):
        reliability_curve([0, 1], [0.2, 1.2])
    with pytest.raises(InvalidParameterError, match="'n_bins' parameter of reliability_curve must be an int >= 1"):
        reliability_curve([0, 1], [0.2, 0.8], n_bins=0)
