"""Drift reference: PSI against hand-computed values, bins, the features per input kind, the artefact file."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from medai.core.config import config_from_dict
from medai.core.errors import ArtifactIntegrityError, DataValidationError, InvalidParameterError
from medai.data.ecg_preprocessor import EcgPreprocessor
from medai.data.ehr_features import EhrFeaturizer
from medai.data.images import ImagePreprocessor
from medai.data.preprocess import TabularPreprocessor
from medai.registry.artifact import MANIFEST, load_artifact, save_artifact
from medai.registry.drift_reference import (
    PSI_EPSILON, DriftLevel, InputKind, bin_counts, bin_spec, build_drift_reference, drift_level,
    expected_psi_no_shift, features_for, input_kind_of, population_stability_index, proportions, score_features,
)
from medai.tasks.text import TextPreprocessor


# ------------------------------------------------------------------------------------------------------------ PSI
def test_psi_matches_hand_computed_values():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5 = 0.25 ln 3
    assert population_stability_index([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(3), abs=1e-12)
    # symmetric in its two arguments
    assert population_stability_index([0.25, 0.75], [0.5, 0.5]) == pytest.approx(0.25 * math.log(3), abs=1e-12)
    assert population_stability_index([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty live bin is floored at epsilon: 5 bins doubled, 5 bins emptied
    expected = 5 * 0.1 * math.log(2) + 5 * (PSI_EPSILON - 0.1) * math.log(PSI_EPSILON / 0.1)
    assert population_stability_index([0.1] * 10, [0.2] * 5 + [0.0] * 5) == pytest.approx(expected, rel=1e-12)


def test_psi_refuses_mismatched_or_negative_shares():
    with pytest.raises(InvalidParameterError, match="same length"):
        population_stability_index([0.5, 0.5], [1.0])
    with pytest.raises(InvalidParameterError, match="finite and >= 0"):
        population_stability_index([0.5, 0.5], [1.5, -0.5])


def test_drift_levels_follow_the_conventional_reading():
    assert drift_level(0.05) is DriftLevel.STABLE
    assert drift_level(0.1) is DriftLevel.MODERATE and drift_level(0.25) is DriftLevel.MODERATE
    assert drift_level(0.26) is DriftLevel.MAJOR


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    spec = bin_spec(rng.normal(size=5000))
    same = population_stability_index(spec["proportions"], proportions(spec, rng.normal(size=5000)))
    shifted = population_stability_index(spec["proportions"], proportions(spec, rng.normal(1.0, 1.0, size=5000)))
    assert same < 0.01
    assert shifted > 0.5  # one SD of shift: a "major" shift by any reading
    assert drift_level(shifted) is DriftLevel.MAJOR


def test_expected_psi_without_shift_matches_simulation():
    rng = np.random.default_rng(1)
    values = []
    for _ in range(300):
        spec = bin_spec(rng.normal(size=200))
        values.append(population_stability_index(spec["proportions"], proportions(spec, rng.normal(size=200))))
    # 10 bins (+ an empty missing bin), 200 and 200 samples: 9 * (1/200 + 1/200) = 0.09
    assert expected_psi_no_shift(10, 200, 200) == pytest.approx(0.09)
    assert np.mean(values) == pytest.approx(0.09, rel=0.2)


# ----------------------------------------------------------------------------------------------------------- bins
def test_numeric_bins_are_deciles_with_open_outer_bins_and_a_missing_bin():
    spec = bin_spec(np.arange(1.0, 101.0))
    assert spec["type"] == "numeric"
    assert spec["edges"] == pytest.approx([1 + 0.1 * k * 99 for k in range(1, 10)])  # numpy's linear quantiles
    assert spec["proportions"] == pytest.approx([0.1] * 10 + [0.0])
    counts = bin_counts(spec, np.array([-1e9, 5.0, 10.9, 11.0, 1e9, np.nan, np.inf]))
    assert counts.tolist() == [3, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2]  # right-closed bins; inf counts as missing


def test_tied_edges_are_merged_and_categories_get_an_other_bin():
    spec = bin_spec(np.array([5.0] * 50 + [7.0] * 50))
    assert spec["edges"] == [5.0, 6.0, 7.0]  # nine deciles, three distinct (the median interpolates to 6)
    assert spec["proportions"] == pytest.approx([0.5, 0.0, 0.5, 0.0, 0.0])
    categorical = bin_spec(np.array(["a", "b", "a"], dtype=object))
    assert categorical == {"type": "categorical", "categories": ["a", "b"],
                           "proportions": pytest.approx([2 / 3, 1 / 3, 0.0])}
    assert bin_counts(categorical, np.array(["b", "c", "a", "zzz"], dtype=object)).tolist() == [1, 1, 2]


def test_bin_spec_refuses_empty_input():
    with pytest.raises(DataValidationError, match="non-empty"):
        bin_spec(np.zeros(0))


# ------------------------------------------------------------------------------------------------------- features
def _tabular():
    train = pd.DataFrame({"age": [50.0, 60.0, 70.0, np.nan], "smoker": ["never", "current", "never", "former"]})
    return TabularPreprocessor(["age"], ["smoker"]).fit(train), train


def test_tabular_features_are_per_raw_column():
    pre, train = _tabular()
    live = pd.DataFrame({"age": [60.0, np.nan, 80.0], "smoker": ["current", "never", "vaper"]})
    features = features_for(pre, pre.transform(live))
    assert list(features) == ["age", "age (missing)", "smoker"]
    z = (np.array([60.0, 60.0, 80.0]) - pre.means_["age"]) / pre.stds_["age"]  # missing → training median 60
    np.testing.assert_allclose(features["age"], z, rtol=1e-6)
    assert features["age (missing)"].tolist() == ["present", "missing", "present"]
    assert features["smoker"].tolist() == ["current", "never", "unseen"]
    # the preprocessor.json dict gives the same features
    from_dict = features_for(pre.to_dict(), pre.transform(live))
    np.testing.assert_array_equal(from_dict["smoker"], features["smoker"])
    with pytest.raises(DataValidationError, match="has 2 columns; the model's preprocessor produces 5"):
        features_for(pre, np.zeros((1, 2), np.float32))


def test_image_features_are_intensity_statistics_of_the_model_input():
    images = np.stack([np.full((1, 8, 8), 100, np.uint8), np.arange(64, dtype=np.uint8).reshape(1, 8, 8)])
    pre = ImagePreprocessor((8, 8), 1).fit(images)
    features = features_for(pre, images)
    assert features["intensity_mean"].tolist() == pytest.approx([100.0, 31.5])
    assert features["intensity_sd"].tolist() == pytest.approx([0.0, np.arange(64).std()], rel=1e-5)
    assert features["intensity_p05"][1] == pytest.approx(np.percentile(np.arange(64), 5))
    assert features["intensity_p95"][1] == pytest.approx(np.percentile(np.arange(64), 95))
    with pytest.raises(DataValidationError, match="uint8"):
        features_for(pre, images.astype(np.float32))


def test_ecg_features_read_amplitude_and_rr_channels_and_average_windows_per_recording():
    pre = EcgPreprocessor(leads=["I", "II"], rr_channel=True, window_s=2.0, stride_s=1.0)
    pre.scale_ = [1.0, 1.0]
    t = np.arange(300)
    windows = np.zeros((3, 4, 300), np.float32)
    windows[:, 0] = np.sin(t / 5.0)
    windows[:, 1] = 2 * np.sin(t / 5.0)
    windows[:, 2] = [[0.8], [0.6], [0.0]]  # RR 0.8 s = 75 bpm, 0.6 s = 100 bpm, no beats
    windows[:, 3] = 0.05
    features = features_for(pre, windows)
    assert features["amplitude_sd:II"] == pytest.approx(2 * features["amplitude_sd:I"], rel=1e-5)
    assert features["heart_rate_bpm"][:2] == pytest.approx([75.0, 100.0]) and np.isnan(features["heart_rate_bpm"][2])
    per_recording = features_for(pre, windows, groups=np.array([0, 0, 1]))
    assert per_recording["heart_rate_bpm"][0] == pytest.approx(87.5) and np.isnan(per_recording["heart_rate_bpm"][1])
    with pytest.raises(InvalidParameterError, match="groups"):
        features_for(pre, windows, groups=np.array([0, 1]))


def test_ehr_features_are_concept_means_over_measured_bins_and_static_facts():
    featurizer = EhrFeaturizer.from_dict({
        "observation_hours": 4, "bin_hours": 1, "impute": "ffill", "ffill_limit_hours": None, "indicators": True,
        "min_coverage": 0.0, "concepts": ["heart_rate", "lactate"], "coverage": {}, "median": {}, "mean": {},
        "std": {}, "age_mean": 60.0, "age_std": 10.0})
    x = np.zeros((2, 4, 10), np.float32)  # values (2), masks (2), time since last (2), age, F, M, unknown
    x[0, :, 0] = [1.0, 3.0, 9.0, 9.0]
    x[0, :, 2] = [1, 1, 0, 0]  # heart rate measured in the first two bins only: the imputed 9s do not count
    x[:, :, 6] = [[0.5], [-1.0]]
    x[0, :, 7], x[1, :, 9] = 1, 1  # F, unknown
    features = features_for(featurizer, x)
    assert features["heart_rate"][0] == pytest.approx(2.0)
    assert features["heart_rate (fraction of bins measured)"].tolist() == [0.5, 0.0]
    assert np.isnan(features["heart_rate"][1]) and np.isnan(features["lactate"]).all()
    assert features["age"].tolist() == [0.5, -1.0] and features["sex"].tolist() == ["F", "unknown"]


def test_text_features_and_input_kinds():
    pre = TextPreprocessor(columns=("report",))
    assert features_for(pre, np.array(["no acute findings", ""], dtype=object))["length_words"].tolist() == [3, 0]
    assert input_kind_of(pre) is InputKind.TEXT and input_kind_of({"type": "ecg"}) is InputKind.ECG
    with pytest.raises(InvalidParameterError, match="must be a Predictor or a tabular"):
        input_kind_of(object())


# ------------------------------------------------------------------------------------------------------ reference
def test_score_summaries_per_task_kind():
    assert list(score_features("binary", [0.2, 0.9])) == ["probability"]
    assert list(score_features("survival", [0.1])) == ["log_relative_risk"]
    multi = score_features("multiclass", np.array([[0.7, 0.3], [0.1, 0.9]]), ["A", "N"])
    assert multi["max_probability"].tolist() == [0.7, 0.9] and multi["predicted_class"].tolist() == ["A", "N"]
    assert list(score_features("multilabel", np.array([[0.7, 0.3]]), ["edema", "effusion"])) == [
        "probability:edema", "probability:effusion"]
    with pytest.raises(DataValidationError, match="2 score columns but 3 class names"):
        score_features("multiclass", np.zeros((1, 2)), ["a", "b", "c"])


def test_reference_is_small_json_and_uses_fewer_bins_for_a_small_validation_split():
    rng = np.random.default_rng(2)
    inputs = {f"x{i}": rng.normal(size=1000) for i in range(20)} | {"sex": rng.choice(["F", "M"], 1000)}
    reference = build_drift_reference("binary", inputs=inputs, scores=rng.random(1000), input_kind="tabular",
                                      class_names=["no", "yes"])
    text = json.dumps(reference)
    assert len(text) < 20_000 and reference["n"] == 1000 and reference["n_bins"] == 10
    assert len(reference["features"]["x0"]["edges"]) == 9
    small = build_drift_reference("regression", inputs={"x": rng.normal(size=45)}, scores=rng.normal(size=45),
                                  input_kind="tabular")
    assert small["n_bins"] == 4 and len(small["features"]["x"]["edges"]) == 3
    assert list(small["scores"]) == ["value"]
    with pytest.raises(DataValidationError, match="feature 'x' has 3 values for 45 scores"):
        build_drift_reference("regression", inputs={"x": np.zeros(3)}, scores=np.zeros(45), input_kind="tabular")
    with pytest.raises(InvalidParameterError, match="'input_kind' parameter"):
        build_drift_reference("binary", inputs=None, scores=np.zeros(3), input_kind="audio")


# ------------------------------------------------------------------------------------------------------- artefact
def _save(model_dir, **extra):
    save_artifact(model_dir, state_dict={"w": torch.zeros(2)}, config=config_from_dict({"data": {"builtin": "wdbc"}}),
                  task={"kind": "binary"}, preprocessor={"type": "tabular"}, thresholds={"threshold": 0.5},
                  model_card_md="# card\n", model_card={"schema": "x"}, **extra)


def test_artifact_stores_the_reference_under_its_manifest(tmp_path):
    reference = build_drift_reference("binary", inputs={"x": np.arange(50.0)}, scores=np.linspace(0, 1, 50),
                                      input_kind="tabular", class_names=["no", "yes"])
    _save(tmp_path / "model", drift_reference=reference)
    assert "drift_reference.json" in (tmp_path / "model" / MANIFEST).read_text()
    assert load_artifact(tmp_path / "model").drift_reference == json.loads(json.dumps(reference))
    tampered = dict(reference, n=1)
    (tmp_path / "model" / "drift_reference.json").write_text(json.dumps(tampered))
    with pytest.raises(ArtifactIntegrityError, match="'drift_reference.json' does not match its sha256"):
        load_artifact(tmp_path / "model")


def test_artifact_without_a_reference_still_loads(tmp_path):
    _save(tmp_path / "old")
    assert load_artifact(tmp_path / "old").drift_reference is None
