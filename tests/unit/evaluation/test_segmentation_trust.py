"""Segmentation trust maths: conformal risk control of the FNR on generated probability maps with a known FNR,
temperature scaling on generated logits with a known temperature, voxel ECE, referral and the subgroup audit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.evaluation.metrics import compute_ece
from medai.evaluation.segmentation_trust import (
    ReferReason, calibration_histogram, crc_threshold, fit_temperature, foreground_probability, refer_cases,
    referral_report, segmentation_fairness_audit, voxel_ece_report, voxel_sampling_rates,
)

ALPHA = 0.1
P_FOREGROUND = 0.8  # share of generated cases with a structure in the truth
A_LOW, A_HIGH = 0.5, 3.0


def _cases(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Truth-voxel probabilities of ``n`` generated cases: 80 % hold 5-60 foreground voxels with p ~ Beta(a, 1),
    a ~ U(0.5, 3) per case (P(p < λ) = λ^a); the others have an empty truth (loss 0)."""
    out = []
    for _ in range(n):
        if rng.random() >= P_FOREGROUND:
            out.append(np.zeros(0))
            continue
        a = rng.uniform(A_LOW, A_HIGH)
        out.append(rng.random(int(rng.integers(5, 61))) ** (1.0 / a))
    return out


def _true_risk(lam: float) -> float:
    """Expected per-case FNR of the mask {p ≥ λ}: 0.8 · E_a[λ^a] with a ~ U(0.5, 3)."""
    if lam <= 0:
        return 0.0
    if lam >= 1:
        return P_FOREGROUND
    return P_FOREGROUND * (lam ** A_HIGH - lam ** A_LOW) / ((A_HIGH - A_LOW) * math.log(lam))


def _fnr(cases: list[np.ndarray], lam: float) -> np.ndarray:
    return np.array([(c < lam).mean() if len(c) else 0.0 for c in cases])


# ------------------------------------------------------------------------------------------------ conformal
def test_crc_controls_the_fnr_on_a_large_independent_test_set():
    rng = np.random.default_rng(0)
    result = crc_threshold(_cases(500, rng), ALPHA)
    test = _fnr(_cases(20_000, rng), result["lambda"])
    se = test.std(ddof=1) / math.sqrt(len(test))
    assert result["feasible"] and result["n"] == 500 and 0 < result["lambda"] < 1
    assert test.mean() <= ALPHA + 3 * se + 0.01  # ≤ α up to the sampling error of one calibration draw
    assert test.mean() >= ALPHA - 0.03  # and close to it: not a trivially conservative (e.g. whole-image) mask
    assert test.mean() == pytest.approx(_true_risk(result["lambda"]), abs=4 * se)


@pytest.mark.parametrize(("n", "repeats"), [(19, 1000), (99, 200)])
def test_crc_expected_risk_is_within_its_finite_sample_bounds(n, repeats):
    # E[R(λ̂)] ≤ α (Angelopoulos et al., Theorem 1) and ≥ α − 2B/(n+1) (Theorem 2), over repeated calibrations.
    # Measured: the plug-in rule without the B/(n+1) correction gives 0.1045 ± 0.001 at n = 19 (fails the first);
    # CRC gives 0.057 (n = 19) and 0.092 (n = 99).
    rng = np.random.default_rng(1)
    risks = np.array([_true_risk(crc_threshold(_cases(n, rng), ALPHA)["lambda"]) for _ in range(repeats)])
    se = risks.std(ddof=1) / math.sqrt(len(risks))
    assert risks.mean() <= ALPHA + 3 * se
    assert risks.mean() >= ALPHA - 2 / (n + 1)


def test_crc_threshold_by_hand_and_with_groups():
    cases = [np.array([0.2, 0.6]), np.array([0.4]), np.zeros(0)]
    # n = 3: 3/4 R̂ + 1/4 ≤ 0.5 ⇔ R̂ ≤ 1/3; R̂(0.4) = (1/2 + 0 + 0)/3, R̂(0.6) = (1/2 + 1 + 0)/3 = 1/2
    result = crc_threshold(cases, 0.5)
    assert result["lambda"] == 0.4 and result["empirical_risk"] == pytest.approx(1 / 6)
    assert result["corrected_risk"] == pytest.approx(0.75 / 6 + 0.25)
    # the empirical risk of the returned threshold is the mean per-case FNR of {p ≥ λ̂}
    assert _fnr(cases, result["lambda"]).mean() == pytest.approx(result["empirical_risk"])
    # groups: 4 cases in 3 units, a unit's loss is the mean of its cases' (unit 0: cases 0 and 1)
    grouped = crc_threshold(cases + [np.array([0.9])], 0.45, groups=[0, 0, 1, 2])
    assert grouped["n"] == 3 and grouped["unit"] == "group" and grouped["n_cases"] == 4
    # 3/4 R̂ + 1/4 ≤ 0.45 ⇔ R̂ ≤ 0.267: R̂(0.6) = ((1/2 + 1)/2 + 0 + 0)/3 = 1/4, R̂(0.9) = ((1 + 1)/2)/3 = 1/3
    assert grouped["lambda"] == 0.6 and grouped["empirical_risk"] == pytest.approx(0.25)


def test_crc_with_too_few_cases_takes_the_whole_image():
    result = crc_threshold(_cases(5, np.random.default_rng(2)), ALPHA)  # B/(n+1) = 1/6 > 0.1
    assert not result["feasible"] and result["lambda"] == 0.0 and "too few" in result["reason"]
    no_foreground = crc_threshold([np.zeros(0)] * 30, ALPHA)
    assert no_foreground["feasible"] and no_foreground["lambda"] == 1.0


def test_crc_rejects_bad_input():
    with pytest.raises(InvalidParameterError, match="'alpha' parameter of crc_threshold"):
        crc_threshold([np.array([0.5])], 1.5)
    with pytest.raises(DataValidationError, match="no calibration case"):
        crc_threshold([], ALPHA)
    with pytest.raises(DataValidationError, match="'groups' must have one label per case"):
        crc_threshold([np.array([0.5])] * 3, ALPHA, groups=[0, 1])
    with pytest.raises(DataValidationError, match="NaN or infinite"):
        crc_threshold([np.array([np.nan])], ALPHA)


# ------------------------------------------------------------------------------------------------ recalibration
def _logits(n: int, temperature: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Voxels whose calibrated logit is η (mostly background, as in an image); the network outputs T·η."""
    eta = rng.normal(-4.0, 3.0, n)
    y = (rng.random(n) < expit(eta)).astype(np.int64)
    return temperature * eta, y


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(3)
    margins, y = _logits(200_000, 2.5, rng)
    fit = fit_temperature(margins, y)
    assert fit["temperature"] == pytest.approx(2.5, rel=0.03)
    assert fit["nll_after"] < fit["nll_before"]
    over = fit_temperature(margins / 2.5 * 0.5, y)  # under-confident network: T < 1 sharpens it
    assert over["temperature"] == pytest.approx(0.5, rel=0.03)


def test_weighted_stratified_sample_recovers_the_temperature():
    rng = np.random.default_rng(4)
    margins, y = _logits(400_000, 2.0, rng)
    rate_fg, rate_bg = voxel_sampling_rates(int(y.sum()), int((1 - y).sum()), max_voxels=20_000)
    assert rate_fg > 5 * rate_bg  # foreground is over-represented in the sample
    drawn = rng.random(len(y)) < np.where(y == 1, rate_fg, rate_bg)
    weights = np.where(y[drawn] == 1, 1 / rate_fg, 1 / rate_bg)
    weighted = fit_temperature(margins[drawn], y[drawn], weights)["temperature"]
    unweighted = fit_temperature(margins[drawn], y[drawn])["temperature"]
    assert weighted == pytest.approx(2.0, rel=0.08)
    assert abs(unweighted - 2.0) > 0.5  # unweighted, the over-sampled foreground biases T (to about 3.8)


def test_fit_temperature_needs_both_classes():
    with pytest.raises(DataValidationError, match="all background"):
        fit_temperature(np.array([-1.0, -2.0]), np.array([0, 0]))
    with pytest.raises(DataValidationError, match="same length"):
        fit_temperature(np.array([1.0]), np.array([0, 1]))


def test_sampling_rates_keep_the_budget():
    assert voxel_sampling_rates(1_000, 1_000_000, max_voxels=10_000) == (1.0, 9_000 / 1_000_000)
    assert voxel_sampling_rates(100_000, 100_000, max_voxels=10_000) == (0.05, 0.05)
    assert voxel_sampling_rates(0, 50, max_voxels=100) == (0.0, 1.0)


def test_foreground_probability_is_a_tempered_sigmoid():
    z = np.array([-3.0, 0.0, 2.0], dtype=np.float32)
    p = foreground_probability(z, 2.0)
    assert p.dtype == np.float32 and p == pytest.approx(expit(z / 2.0), abs=1e-7)
    with pytest.raises(InvalidParameterError, match="'temperature'"):
        foreground_probability(z, 0.0)


# ------------------------------------------------------------------------------------------------ ECE
def test_voxel_ece_of_summed_case_histograms_equals_pooled_ece():
    rng = np.random.default_rng(5)
    margins, y = _logits(30 * 400, 3.0, rng)
    before = expit(margins).reshape(30, 400)
    after = expit(margins / 3.0).reshape(30, 400)
    truth = y.reshape(30, 400)
    hist_b = np.stack([calibration_histogram(p, t) for p, t in zip(before, truth)])
    hist_a = np.stack([calibration_histogram(p, t) for p, t in zip(after, truth)])
    report = voxel_ece_report(hist_b, hist_a, n_resamples=200, seed=0)
    assert report["ece_before_recalibration"]["value"] == pytest.approx(compute_ece(y, before.ravel()))
    assert report["ece"]["value"] == pytest.approx(compute_ece(y, after.ravel()))
    assert report["ece"]["value"] < report["ece_before_recalibration"]["value"]  # over-confident by T = 3
    assert report["ece_change"]["ci_high"] < 0
    # clustered: 10 subjects of 3 cases give the same point estimates, other intervals
    grouped = voxel_ece_report(hist_b, hist_a, groups=np.repeat(np.arange(10), 3), n_resamples=200, seed=0)
    assert grouped["ece"]["value"] == pytest.approx(report["ece"]["value"])


# ------------------------------------------------------------------------------------------------ referral
def test_referral_rule():
    result = refer_cases([100, 100, 0, 0, 50], [20, 150, 30, 0, 50])
    assert result["refer"].tolist() == [False, True, True, False, False]
    assert result["reason"] == [None, ReferReason.UNCERTAIN_BAND.value, ReferReason.POSSIBLE_MISSED_STRUCTURE.value,
                                None, None]
    assert result["band_ratio"][:2].tolist() == [0.2, 1.5] and math.isinf(result["band_ratio"][2])
    assert result["band_ratio"][3] == 0.0 and result["band_ratio"][4] == 1.0  # a ratio of exactly 1 is kept
    with pytest.raises(DataValidationError, match="non-negative counts"):
        refer_cases([1, 2], [1])


def test_referral_report_values():
    truth = np.array([100, 100, 50, 0, 80, 0])
    predicted = np.array([90, 40, 0, 0, 80, 10])
    intersection = np.array([90, 40, 0, 0, 70, 0])
    band = np.array([10, 60, 20, 0, 10, 5])
    conformal = predicted + band
    fnr_argmax = np.where(truth > 0, (truth - intersection) / np.maximum(truth, 1), 0.0)
    fnr_conformal = np.array([0.0, 0.1, 0.6, 0.0, 0.05, 0.0])
    report = referral_report(fnr_conformal=fnr_conformal, fnr_argmax=fnr_argmax, truth_voxels=truth,
                             predicted_voxels=predicted, conformal_voxels=conformal, band_voxels=band,
                             intersection_voxels=intersection, voxel_volume_ml=0.001, n_resamples=200, seed=0)
    m = report["metrics"]
    assert report["per_case"]["refer"] == [False, True, True, False, False, False]
    assert m["abstain_rate"]["value"] == pytest.approx(2 / 6)
    assert m["conformal_target"]["value"] == pytest.approx(0.9)
    assert m["conformal_coverage"]["value"] == pytest.approx(1 - fnr_conformal.mean())
    assert m["conformal_coverage"]["ci_low"] <= m["conformal_coverage"]["value"] <= m["conformal_coverage"]["ci_high"]
    assert m["coverage_argmax"]["value"] == pytest.approx(1 - fnr_argmax.mean())
    assert m["mean_extra_volume_ml"]["value"] == pytest.approx(band.mean() * 0.001)
    dice = 2 * intersection / np.maximum(truth + predicted, 1)
    assert m["dice_kept"]["value"] == pytest.approx(dice[[0, 4]].mean())  # kept cases with a structure in truth
    assert m["dice_referred"]["value"] == pytest.approx(dice[[1, 2]].mean())
    curve = report["selective_risk"]
    dice_all = np.where(truth + predicted > 0, dice, 1.0)  # empty truth and prediction: Dice 1
    assert curve["full_coverage_risk"] == pytest.approx(1 - dice_all.mean())
    assert curve["risk"][0] == pytest.approx(0.0)  # the smallest band ratio first: the empty, correct case
    assert curve["aurc"] >= curve["aurc_optimal"]


# ------------------------------------------------------------------------------------------------ fairness
def test_segmentation_fairness_audit_schema_and_values():
    rng = np.random.default_rng(6)
    n = 80
    sex = pd.Series(np.where(np.arange(n) % 2 == 0, "F", "M"))
    site = pd.Series(np.where(np.arange(n) < 70, "A", "B"))
    dice = np.where(sex == "F", 0.9, 0.6) + rng.normal(0, 0.02, n)
    dice[::10] = np.nan  # cases without a structure have no Dice
    hd95 = rng.uniform(1, 5, n)
    audit = segmentation_fairness_audit({"sex": sex, "site": site}, dice, hd95, min_n=20, n_resamples=200)
    assert audit["kind"] == "segmentation" and audit["metrics"] == ["dice", "hd95_mm"]
    assert audit["overall"]["n"] == n
    assert audit["overall"]["metrics"]["dice"]["value"] == pytest.approx(np.nanmean(dice))
    female = audit["attributes"]["sex"]["groups"]["F"]
    assert female["n"] == 40 and female["reliable"]
    assert female["metrics"]["dice"]["value"] == pytest.approx(np.nanmean(dice[sex == "F"]))
    assert female["metrics"]["dice"]["gap_ci_low"] > 0  # F is better than overall, clearly
    small = audit["attributes"]["site"]["groups"]["B"]
    assert small["n"] == 10 and not small["reliable"] and "n = 10 < 20" in small["warning"]
    assert "sex × site" in audit["attributes"]
    assert any(g["attribute"] == "sex" and g["metric"] == "dice" for g in audit["gaps_beyond_ci"])


def test_segmentation_fairness_audit_without_attributes():
    audit = segmentation_fairness_audit({}, np.array([0.5, 0.7, np.nan]), np.array([2.0, 3.0, np.nan]),
                                        n_resamples=100, note="no attributes")
    assert audit["attributes"] == {} and audit["note"] == "no attributes"
    assert audit["overall"]["metrics"]["dice"]["value"] == pytest.approx(0.6)
    with pytest.raises(DataValidationError, match="one label per evaluated case"):
        segmentation_fairness_audit({"sex": pd.Series(["F"])}, np.array([0.5, 0.7]), np.array([1.0, 2.0]))
