"""Fairness audit: known group gaps are found with CIs excluding 0, min-n flags, intersections, undefined metrics
with reasons, metric values against scikit-learn / scikit-survival; ThresholdOptimizer narrows the TPR gap."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, mean_absolute_error, roc_auc_score
from sksurv.metrics import concordance_index_censored

from medai.core.errors import DataValidationError, InvalidParameterError, UnknownNameError
from medai.evaluation.fairness import (
    _harrell_c, broad_race_ethnicity, fairness_audit, group_attributes, mitigate_thresholds,
)


def _noisy_group_data(n=1200, seed=0):
    """Binary outcome; group 'B' gets much noisier scores than 'A' (a known AUROC gap)."""
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(n) < 0.5, "A", "B")
    band = rng.choice(["young", "old"], n)
    y = (rng.random(n) < 0.4).astype(int)
    noise = np.where(group == "A", 0.6, 2.5)
    scores = 1.0 / (1.0 + np.exp(-(2.0 * (y - 0.5) + rng.normal(0.0, noise))))
    return y, scores, group, band


def test_known_auroc_gap_has_a_ci_excluding_zero_and_values_match_sklearn():
    y, s, group, band = _noisy_group_data()
    out = fairness_audit("binary", {"group": pd.Series(group), "band": pd.Series(band)}, y, s, threshold=0.5,
                         n_resamples=200, seed=1)
    b = out["attributes"]["group"]["groups"]["B"]
    a = out["attributes"]["group"]["groups"]["A"]
    assert b["metrics"]["auroc"]["value"] == pytest.approx(roc_auc_score(y[group == "B"], s[group == "B"]))
    assert b["metrics"]["auroc"]["gap"] == pytest.approx(roc_auc_score(y[group == "B"], s[group == "B"])
                                                         - roc_auc_score(y, s))
    assert b["metrics"]["auroc"]["gap_ci_high"] < 0 < a["metrics"]["auroc"]["gap_ci_low"]
    assert b["n"] == int((group == "B").sum()) and b["n_positive"] == int(y[group == "B"].sum())
    assert any(row["attribute"] == "group" and row["group"] == "B" and row["metric"] == "auroc"
               for row in out["gaps_beyond_ci"])
    # the randomly assigned band has no real difference: its AUROC gap CI covers 0
    young = out["attributes"]["band"]["groups"]["young"]["metrics"]["auroc"]
    assert young["gap_ci_low"] < 0 < young["gap_ci_high"]
    # calibration in the large = observed − mean predicted
    m = b["metrics"]
    assert m["calibration_in_the_large"]["value"] == pytest.approx(y[group == "B"].mean() - s[group == "B"].mean())
    json.dumps(out)  # JSON-ready


def test_intersections_min_n_flag_and_single_class_group_reason():
    y, s, group, band = _noisy_group_data(n=400, seed=3)
    site = np.where(np.arange(400) < 12, "tiny", "big")
    y = y.copy()
    y[site == "tiny"] = 0  # one outcome class only in the tiny group
    out = fairness_audit("binary", {"group": pd.Series(group), "site": pd.Series(site)}, y, s, threshold=0.5,
                         min_n=30, n_resamples=100)
    assert "group × site" in out["attributes"]
    assert out["attributes"]["group × site"]["columns"] == ["group", "site"]
    assert "A × big" in out["attributes"]["group × site"]["groups"]
    tiny = out["attributes"]["site"]["groups"]["tiny"]
    assert tiny["n"] == 12 and tiny["reliable"] is False and "12 < 30" in tiny["warning"]
    assert tiny["metrics"]["auroc"]["value"] is None
    assert "only one outcome class" in tiny["reasons"]["auroc"]
    assert tiny["metrics"]["specificity"]["value"] is not None  # still computed when defined
    assert out["attributes"]["site"]["groups"]["big"]["reliable"] is True
    no_cross = fairness_audit("binary", {"group": pd.Series(group), "site": pd.Series(site)}, y, s, threshold=0.5,
                              intersections=False, n_resamples=100)
    assert set(no_cross["attributes"]) == {"group", "site"}
    overall_only = fairness_audit("binary", {}, y, s, threshold=0.5, n_resamples=50)
    assert overall_only["attributes"] == {} and overall_only["overall"]["n"] == 400


def test_multiclass_regression_and_survival_values_match_references():
    rng = np.random.default_rng(5)
    n = 300
    g = pd.Series(rng.choice(["x", "y"], n))
    yc = rng.integers(0, 3, n)
    p = rng.dirichlet(np.ones(3), n)
    p[np.arange(n), yc] += 0.5
    p /= p.sum(1, keepdims=True)
    out = fairness_audit("multiclass", {"g": g}, yc, p, class_names=["a", "b", "c"], n_resamples=100)
    mask = (g == "x").to_numpy()
    mx = out["attributes"]["g"]["groups"]["x"]["metrics"]
    assert mx["accuracy"]["value"] == pytest.approx((p[mask].argmax(1) == yc[mask]).mean())
    assert mx["f1_macro"]["value"] == pytest.approx(f1_score(yc[mask], p[mask].argmax(1), average="macro"))
    assert mx["auroc"]["value"] == pytest.approx(roc_auc_score(yc[mask], p[mask], multi_class="ovr"))

    target = rng.normal(50, 10, n)
    pred = target + rng.normal(0, np.where(g == "x", 1.0, 8.0))
    out = fairness_audit("regression", {"g": g}, target, pred, n_resamples=100)
    my = out["attributes"]["g"]["groups"]["y"]["metrics"]["mae"]
    assert my["value"] == pytest.approx(mean_absolute_error(target[~mask], pred[~mask]))
    assert my["gap_ci_low"] > 0  # the noisier group's error is above the overall one

    time = rng.exponential(5.0, n)
    event = (rng.random(n) < 0.6).astype(int)
    risk = -time + rng.normal(0, np.where(g == "x", 0.5, 20.0))
    out = fairness_audit("survival", {"g": g}, None, risk, time=time, event=event, n_resamples=100)
    cx = out["attributes"]["g"]["groups"]["x"]
    assert cx["n_events"] == int(event[mask].sum())
    assert cx["metrics"]["c_index"]["value"] == pytest.approx(
        concordance_index_censored(event[mask].astype(bool), time[mask], risk[mask])[0])
    assert out["overall"]["metrics"]["c_index"]["value"] == pytest.approx(
        concordance_index_censored(event.astype(bool), time, risk)[0])


def test_fast_c_index_equals_scikit_survival_with_ties():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n = int(rng.integers(3, 60))
        t = rng.integers(1, 6, n).astype(float)
        e = rng.random(n) < 0.5
        r = rng.integers(0, 4, n).astype(float)
        if not e.any():
            assert math.isnan(_harrell_c(t, e.astype(int), r))
            continue
        assert _harrell_c(t, e.astype(int), r) == pytest.approx(concordance_index_censored(e, t, r)[0])


def test_input_errors_name_the_argument():
    y, s, group, _ = _noisy_group_data(n=100)
    with pytest.raises(InvalidParameterError, match="'threshold' parameter of fairness_audit"):
        fairness_audit("binary", {"g": pd.Series(group)}, y, s)
    with pytest.raises(DataValidationError, match="group attribute 'g' must be a pandas Series with one label"):
        fairness_audit("binary", {"g": pd.Series(group[:50])}, y, s, threshold=0.5)
    with pytest.raises(DataValidationError, match="probabilities in \\[0, 1\\]"):
        fairness_audit("binary", {"g": pd.Series(group)}, y, s * 3, threshold=0.5)
    with pytest.raises(InvalidParameterError, match="'kind' parameter"):
        fairness_audit("ranking", {"g": pd.Series(group)}, y, s)


def test_group_attributes_finds_sex_age_race_and_user_columns():
    frame = pd.DataFrame({
        "Gender": ["F", "M", None, "F"],
        "age": [30, 55, 70, 90],
        "ETHNICITY": ["WHITE - RUSSIAN", "HISPANIC/LATINO - PUERTO RICAN", "UNABLE TO OBTAIN", "AMERICAN INDIAN"],
        "site": [1.0, 2.0, 1.0, 2.0],
    })
    groups = group_attributes(frame, ["SITE"])
    assert list(groups) == ["Gender", "age_band", "ETHNICITY", "site"]
    assert groups["Gender"].tolist() == ["F", "M", "missing", "F"]
    assert groups["age_band"].tolist() == ["<50", "50-64", "65-79", ">=80"]
    assert groups["ETHNICITY"].tolist() == ["White", "Hispanic/Latino", "Unknown", "AMERICAN INDIAN"]
    assert groups["site"].tolist() == ["1", "2", "1", "2"]
    assert broad_race_ethnicity(pd.Series(["BLACK/AFRICAN AMERICAN", np.nan])).tolist() == ["Black", "missing"]
    with pytest.raises(UnknownNameError, match="Unknown group column 'sitee'.*Did you mean 'site'"):
        group_attributes(frame, ["sitee"])
    wide = pd.DataFrame({"mrn": [str(i) for i in range(25)]})
    with pytest.raises(DataValidationError, match="Group column 'mrn' has 25 distinct values"):
        group_attributes(wide, ["mrn"])


def test_threshold_optimizer_narrows_the_tpr_gap_on_test():
    rng = np.random.default_rng(11)
    n = 3000
    group = np.where(rng.random(n) < 0.5, "A", "B")
    y = (rng.random(n) < 0.4).astype(int)
    # group B's scores are shifted down: at one threshold its sensitivity is far lower
    logit = 2.5 * (y - 0.5) + np.where(group == "B", -1.5, 0.0) + rng.normal(0, 1.0, n)
    s = 1.0 / (1.0 + np.exp(-logit))
    val, test = slice(0, 1500), slice(1500, n)
    out = mitigate_thresholds(y[val], s[val], pd.Series(group[val]), y[test], s[test], pd.Series(group[test]),
                              threshold=0.5, attribute="group", constraint="true_positive_rate_parity",
                              n_resamples=200, seed=0)
    assert out["status"] == "fitted" and out["fitted_on"] == "val"
    before, after = out["gaps"]["sensitivity"]["before"], out["gaps"]["sensitivity"]["after"]
    assert before["value"] > 0.3
    assert after["value"] < 0.1 and after["ci_high"] < before["ci_low"]
    gb = out["groups"]["B"]
    assert gb["after"]["sensitivity"]["value"] > gb["before"]["sensitivity"]["value"]
    change = out["overall"]["change"]["sensitivity"]
    assert change["value"] == pytest.approx(out["overall"]["after"]["sensitivity"]["value"]
                                            - out["overall"]["before"]["sensitivity"]["value"])
    assert set(out["thresholds"]) == {"A", "B"}
    json.dumps(out)


def test_threshold_optimizer_reports_why_it_cannot_fit():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = rng.random(200)
    g = np.where(np.arange(200) < 20, "C", "D")
    y_val = y.copy()
    y_val[g == "C"] = 0
    out = mitigate_thresholds(y_val, s, pd.Series(g), y, s, pd.Series(g), threshold=0.5, attribute="site",
                              n_resamples=100)
    assert out["status"] == "not_fitted"
    assert "only one class in: 'C' (n = 20, 0 positive)" in out["reason"]
    with pytest.raises(InvalidParameterError, match="'constraint' parameter of mitigate_thresholds"):
        mitigate_thresholds(y, s, pd.Series(g), y, s, pd.Series(g), threshold=0.5, attribute="site",
                            constraint="demographic_parity")
