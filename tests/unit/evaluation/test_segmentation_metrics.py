"""Segmentation metrics on hand-made masks with known answers, and against an independent reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.evaluation.segmentation import (
    agreement_metrics, compute_dice, compute_hd95, compute_lesion_detection, compute_volume_ml,
    ejection_fraction_metrics, lesion_metrics, otsu_threshold,
)


def square(shape=(32, 32), top=8, left=8, side=10):
    mask = np.zeros(shape, np.uint8)
    mask[top:top + side, left:left + side] = 1
    return mask


def reference_hd95(truth: np.ndarray, pred: np.ndarray, spacing) -> float:
    """Border voxels (mask minus its erosion), Euclidean distance of each to the other mask's border, the larger
    of the two directed 95th percentiles (linear interpolation)."""
    def border(mask):
        mask = mask.astype(bool)
        return mask & ~ndimage.binary_erosion(mask)

    bt, bp = border(truth), border(pred)
    to_truth = ndimage.distance_transform_edt(~bt, sampling=spacing)[bp]
    to_pred = ndimage.distance_transform_edt(~bp, sampling=spacing)[bt]
    return float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95)))


def test_identical_masks_dice_one_hd_zero():
    mask = square()[None]
    assert compute_dice(mask, mask).tolist() == [1.0]
    assert compute_hd95(mask, mask).tolist() == [0.0]


def test_shifted_square_has_the_exact_dice():
    truth, pred = square(left=8), square(left=10)  # 10 x 10 squares overlapping on 10 x 8
    assert compute_dice(truth[None], pred[None])[0] == pytest.approx(2 * 80 / 200)


def test_single_voxels_distance_in_mm_uses_the_spacing():
    truth, pred = np.zeros((1, 20, 20), np.uint8), np.zeros((1, 20, 20), np.uint8)
    truth[0, 5, 5], pred[0, 8, 5] = 1, 1  # 3 rows apart
    assert compute_hd95(truth, pred, spacing_mm=(2.0, 1.0))[0] == pytest.approx(6.0)
    assert compute_hd95(truth, pred, spacing_mm=(1.0, 2.0))[0] == pytest.approx(3.0)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.0, 0.7)])
def test_hd95_matches_an_independent_reference(spacing):
    rng = np.random.default_rng(0)
    truth = ndimage.gaussian_filter(rng.random((48, 48)), 3) > 0.5
    pred = ndimage.gaussian_filter(rng.random((48, 48)), 3) > 0.5
    expected = reference_hd95(truth, pred, spacing)
    assert compute_hd95(truth[None], pred[None], spacing_mm=spacing)[0] == pytest.approx(expected, rel=1e-5)


def test_hd95_3d_matches_the_reference():
    truth = np.zeros((8, 20, 20), bool)
    truth[2:6, 5:15, 5:15] = True
    pred = np.roll(truth, (1, 2), axis=(0, 2))
    spacing = (10.0, 2.0, 2.0)
    expected = reference_hd95(truth, pred, spacing)
    assert expected > 0
    assert compute_hd95(truth[None], pred[None], spacing_mm=spacing)[0] == pytest.approx(expected, rel=1e-5)


def test_empty_mask_conventions():
    empty, mask = np.zeros((1, 10, 20), np.uint8), np.zeros((1, 10, 20), np.uint8)
    mask[0, 2:4, 2:4] = 1
    assert math.isnan(compute_dice(empty, empty)[0])
    assert compute_dice(empty, empty, empty_value=1.0)[0] == 1.0
    assert compute_dice(mask, empty)[0] == 0.0 and compute_dice(empty, mask)[0] == 0.0
    assert math.isnan(compute_hd95(empty, empty)[0])
    diagonal = math.hypot(10 * 2.0, 20 * 1.0)
    assert compute_hd95(mask, empty, spacing_mm=(2.0, 1.0))[0] == pytest.approx(diagonal)
    assert compute_hd95(mask, empty, missing_value_mm=99.0)[0] == 99.0


def test_metric_inputs_are_validated():
    with pytest.raises(DataValidationError, match="must hold only 0 and 1"):
        compute_dice(np.full((1, 4, 4), 2), np.ones((1, 4, 4)))
    with pytest.raises(DataValidationError, match="same shape"):
        compute_dice(np.ones((1, 4, 4)), np.ones((1, 4, 5)))
    with pytest.raises(DataValidationError, match=r"\(cases, H, W\)"):
        compute_dice(np.ones((4, 4)), np.ones((4, 4)))
    with pytest.raises(InvalidParameterError, match="'spacing_mm'"):
        compute_hd95(np.ones((1, 4, 4)), np.ones((1, 4, 4)), spacing_mm=(1.0, 1.0, 1.0))


def test_volume_in_ml():
    mask = np.zeros((1, 4, 10, 10), np.uint8)
    mask[0, :2, :5, :5] = 1  # 50 voxels of 10 x 2 x 2 mm = 2 mL
    assert compute_volume_ml(mask, (10.0, 2.0, 2.0)).tolist() == pytest.approx([2.0])


def test_lesion_detection_counts():
    truth = np.zeros((1, 30, 30), np.uint8)
    truth[0, 2:6, 2:6] = 1
    truth[0, 20:25, 20:25] = 1
    pred = np.zeros_like(truth)
    pred[0, 3:5, 3:9] = 1  # hits lesion 1
    pred[0, 12:14, 2:4] = 1  # touches nothing
    found = compute_lesion_detection(truth, pred)
    assert found["n_lesions"].tolist() == [2]
    assert found["n_detected"].tolist() == [1]
    assert found["n_false_positives"].tolist() == [1]


def test_lesion_metrics_average_lesion_cases_and_count_false_positives():
    truth = np.zeros((3, 24, 24), np.uint8)
    truth[0, 4:10, 4:10] = 1
    truth[1, 10:16, 10:16] = 1  # case 2 has no lesion
    pred = truth.copy()
    pred[1] = 0  # case 1 missed
    pred[2, 1:3, 1:3] = 1  # a false positive in the lesion-free case
    table, per_case = lesion_metrics(truth, pred, n_resamples=200, seed=0)
    assert per_case["dice"][:2].tolist() == [1.0, 0.0] and math.isnan(per_case["dice"][2])
    assert table["dice"]["value"] == pytest.approx(0.5)
    assert table["lesion_sensitivity"]["value"] == pytest.approx(0.5)
    assert table["false_positives_per_case"]["value"] == pytest.approx(1 / 3)
    assert table["case_specificity"]["value"] == 0.0
    assert table["hd95_mm"]["value"] == pytest.approx(math.hypot(24, 24) / 2)
    assert table["dice"]["ci_low"] <= table["dice"]["value"] <= table["dice"]["ci_high"]


def test_agreement_is_bland_altman():
    truth, pred = np.array([50.0, 60.0, 40.0]), np.array([52.0, 57.0, 41.0])  # differences 2, -3, 1
    result = agreement_metrics(truth, pred)
    sd = math.sqrt((4 + 9 + 1) / 2)
    assert result["bias"] == pytest.approx(0.0) and result["mae"] == pytest.approx(2.0)
    assert result["loa_low"] == pytest.approx(-1.96 * sd) and result["loa_high"] == pytest.approx(1.96 * sd)
    with pytest.raises(DataValidationError, match="finite"):
        agreement_metrics(truth, np.array([50.0, np.nan, 40.0]))


def _subjects(ef_pred):
    n = len(ef_pred)
    ef_true = np.linspace(30, 65, n)
    return {"dice": np.full(n, 0.9), "dice_ed": np.full(n, 0.95), "dice_es": np.full(n, 0.85),
            "hd95_mm": np.full(n, 3.0), "ef_true": ef_true, "ef_pred": np.asarray(ef_pred, float),
            "edv_true": np.full(n, 120.0), "edv_pred": np.full(n, 118.0), "esv_true": np.full(n, 60.0),
            "esv_pred": np.full(n, 63.0), "es_frame_error": np.zeros(n)}


def test_ejection_fraction_metrics_known_errors():
    ef_true = np.linspace(30, 65, 8)
    table = ejection_fraction_metrics(_subjects(ef_true + 4.0), n_resamples=200)
    assert table["ef_mae"]["value"] == pytest.approx(4.0) and table["ef_bias"]["value"] == pytest.approx(4.0)
    assert table["ef_loa_low"]["value"] == pytest.approx(4.0) and table["ef_pearson_r"]["value"] == pytest.approx(1)
    assert table["edv_mae_ml"]["value"] == pytest.approx(2.0) and table["esv_mae_ml"]["value"] == pytest.approx(3.0)
    assert table["dice_es"]["value"] == pytest.approx(0.85)
    noisy = ejection_fraction_metrics(_subjects(ef_true + np.array([3, -3, 5, -5, 1, -1, 2, -2])), n_resamples=300)
    assert noisy["ef_bias"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert noisy["ef_mae"]["value"] == pytest.approx(2.75)
    assert noisy["ef_mae"]["ci_low"] < 2.75 < noisy["ef_mae"]["ci_high"]
    with pytest.raises(DataValidationError, match="finite truth and predicted EF"):
        ejection_fraction_metrics(_subjects(np.r_[np.nan, ef_true[1:]]))


def test_otsu_threshold_separates_two_modes():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0.0, 0.1, 5000), rng.normal(1.0, 0.1, 1000)]
    threshold = otsu_threshold(values)
    assert 0.3 < threshold < 0.7
    assert 0 < otsu_threshold(np.r_[np.zeros(50), np.full(50, 10.0)]) < 10
    with pytest.raises(DataValidationError, match="not all equal"):
        otsu_threshold(np.ones(10))
