import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medai.core.config import EvaluationConfig, TaskKind
from medai.evaluation.evaluate import (
    MetricContext, SplitOutcome, evaluate_split, evaluate_subgroups, missingness_profile, operating_points,
    subgroup_columns,
)

CONFIG = EvaluationConfig(n_resamples=200, min_subgroup_n=30)


def _binary(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    scores = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    return SplitOutcome(TaskKind.BINARY, scores, y=y)


def test_evaluate_split_matches_scikit_learn_and_has_cis():
    outcome = _binary()
    table = evaluate_split(outcome, MetricContext(class_names=["no", "yes"], threshold=0.5), CONFIG, seed=0)
    assert table["auroc"]["value"] == pytest.approx(roc_auc_score(outcome.y, outcome.scores))
    assert table["auroc"]["ci_low"] < table["auroc"]["value"] < table["auroc"]["ci_high"]
    assert {"f1_no", "f1_yes", "ppv", "npv", "calibration_slope"} <= set(table)


def test_operating_points_are_chosen_on_validation_and_reported_on_test():
    points = operating_points(_binary(seed=1), _binary(seed=2), EvaluationConfig(n_resamples=200,
                                                                                 target_sensitivity=0.9), seed=0)
    assert set(points) == {"youden", "sensitivity_0.90"}
    assert points["sensitivity_0.90"]["val"]["sensitivity"]["value"] >= 0.9
    assert set(points["youden"]["test"]) == {"sensitivity", "specificity", "ppv", "npv"}


def test_subgroup_columns_sex_and_age_bands():
    frame = pd.DataFrame({"Sex": ["F", "M", None, "F"], "age": [45, 50, 79.5, 80], "other": [1, 2, 3, 4]})
    groups = subgroup_columns(frame, None)
    assert groups["Sex"].tolist() == ["F", "M", "missing", "F"]
    assert groups["age_band"].tolist() == ["<50", "50-64", "65-79", ">=80"]
    assert set(subgroup_columns(frame, ("other",))) == {"other"}


def test_subgroups_report_gaps_and_warn_below_minimum_n():
    outcome = _binary(n=200)
    labels = pd.Series(np.where(np.arange(200) < 180, "A", "B"))
    context = MetricContext(class_names=["no", "yes"], threshold=0.5)
    overall = evaluate_split(outcome, context, CONFIG, seed=0)
    result = evaluate_subgroups({"site": labels}, outcome, context, overall, CONFIG, seed=0)
    assert result["site"]["A"]["n"] == 180 and result["site"]["A"]["warning"] is None
    assert "n = 20 < 30" in result["site"]["B"]["warning"]
    gap = result["site"]["A"]["gap"]["auroc"]
    assert gap == pytest.approx(result["site"]["A"]["metrics"]["auroc"]["value"] - overall["auroc"]["value"])


def test_missingness_profile_by_split():
    features = pd.DataFrame({"a": [1.0, np.nan, np.nan, 4.0], "b": [1, 2, 3, 4]})
    profile = missingness_profile(features, np.array(["train", "train", "test", "test"], dtype=object))
    assert profile["a"] == {"n_missing": 2, "fraction": 0.5, "by_split": {"train": 0.5, "test": 0.5}}
    assert profile["b"]["n_missing"] == 0
