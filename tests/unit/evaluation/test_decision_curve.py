"""Net benefit against a hand computation."""

import numpy as np
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.evaluation.decision_curve import compute_net_benefit, net_benefit_treat_all

Y = [1, 1, 0, 0, 1]
P = [0.9, 0.4, 0.3, 0.6, 0.2]


def test_net_benefit_hand_computed():
    nb = compute_net_benefit(Y, P, [0.25, 0.5])
    # pt .25: treated .9(1) .4(1) .3(0) .6(0): TP 2, FP 2 -> 2/5 - 2/5 * 1/3
    # pt .5:  treated .9(1) .6(0):           TP 1, FP 1 -> 1/5 - 1/5 * 1
    np.testing.assert_allclose(nb, [0.4 - 0.4 / 3, 0.0])
    assert isinstance(nb, np.ndarray) and nb.shape == (2,)


def test_net_benefit_treats_at_the_threshold():
    # 0.4 == pt is treated: TP 2 (0.9, 0.4), FP 1 (0.6) -> 2/5 - 1/5 * 0.4/0.6
    assert compute_net_benefit(Y, P, [0.4])[0] == pytest.approx(0.4 - 0.2 * 0.4 / 0.6)


def test_treat_all_hand_computed_and_equal_to_model_treating_everyone():
    pt = np.array([0.0, 0.25, 0.5])
    np.testing.assert_allclose(net_benefit_treat_all(Y, pt), [0.6, 0.6 - 0.4 / 3, 0.2])
    np.testing.assert_allclose(net_benefit_treat_all(Y, pt), compute_net_benefit(Y, np.ones(5), pt))


def test_net_benefit_at_zero_threshold_equals_prevalence():
    assert compute_net_benefit(Y, P, [0.0])[0] == pytest.approx(0.6)


@pytest.mark.parametrize("thresholds", [[0.2, 1.0], [-0.1], [[0.1, 0.2]], [np.nan]])
def test_net_benefit_rejects_thresholds_outside_unit_interval(thresholds):
    with pytest.raises(
        InvalidParameterError,
        match=r"'thresholds' parameter of "
        r"compute_net_benefit must be .* \[0, 1\)",
    ):
        compute_net_benefit(Y, P, thresholds)


def test_net_benefit_rejects_bad_labels():
    with pytest.raises(DataValidationError, match="net_benefit_treat_all: 'y_true' must contain only 0 and 1"):
        net_benefit_treat_all([0, 1, 2], [0.1])
