"""Permutation importance: informative inputs ranked first with intervals above 0, noise near 0; grouping of encoded
columns (tabular one-hot / indicators, EHR concept channels); survival C-index; batching; errors; chart."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.data.ehr_features import EhrFeaturizer
from medai.data.preprocess import TabularPreprocessor
from medai.explain.importance import (
    ehr_channel_groups,
    importance_chart,
    permutation_importance,
    tabular_feature_groups,
)
from medai.tasks.ehr import EhrSample
from tests.ehr_fixtures import T0, make_timeline

INFORMATIVE = (0, 1, 2)


def _linear_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """10 standard-normal features; the log-odds use features 0-2 only."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype(np.float32)
    logit = 2.0 * x[:, 0] - 1.5 * x[:, 1] + 1.0 * x[:, 2]
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


@pytest.fixture(scope="module")
def fitted_logistic():
    x_train, y_train = _linear_task(1000, seed=1)
    x_test, y_test = _linear_task(400, seed=2)
    return LogisticRegression().fit(x_train, y_train), x_test, y_test


def test_informative_features_first_with_intervals_above_zero(fitted_logistic):
    model, x, y = fitted_logistic
    result = permutation_importance(lambda a: model.predict_proba(a)[:, 1], x, kind="binary", y=y,
                                    n_repeats=5, n_resamples=100, seed=0)
    ranked = [f["name"] for f in result["features"]]
    assert set(ranked[:3]) == {f"feature_{i}" for i in INFORMATIVE}
    assert ranked[0] == "feature_0"  # the largest coefficient
    top, noise = result["features"][:3], result["features"][3:]
    assert all(f["ci_low"] > 0 for f in top)  # the interval excludes 0
    assert all(abs(f["importance"]) < 0.01 for f in noise)
    assert all(f["ci_low"] <= 0 <= f["ci_high"] for f in noise)
    assert result["n_important"] == 3
    assert result["metric"] == "auroc" and 0.8 < result["baseline"]["value"] < 0.95
    assert result["baseline"]["ci_low"] < result["baseline"]["value"] < result["baseline"]["ci_high"]
    assert [f["rank"] for f in result["features"]] == list(range(1, 11))
    assert len(result["features"][0]["repeats"]) == 5
    assert "feature_0" in result["interpretation"] and "not a causal effect" in result["interpretation"]
    assert json.loads(json.dumps(result, allow_nan=False)) == result  # JSON-ready: plain types, no NaN


def test_agrees_with_scikit_learn_permutation_importance(fitted_logistic):
    """Ungrouped 2-D input: our loop and sklearn's estimate the same mean drop (different permutations)."""
    from sklearn.inspection import permutation_importance as sklearn_importance

    model, x, y = fitted_logistic
    ours = permutation_importance(lambda a: model.predict_proba(a)[:, 1], x, kind="binary", y=y, n_repeats=20,
                                  n_resamples=0)
    reference = sklearn_importance(model, x, y, scoring="roc_auc", n_repeats=20, random_state=0)
    by_name = {f["name"]: f["importance"] for f in ours["features"]}
    mine = np.array([by_name[f"feature_{i}"] for i in range(10)])
    np.testing.assert_allclose(mine, reference.importances_mean, atol=0.01)
    assert ours["features"][0]["ci_low"] is None  # n_resamples=0: no interval


def test_batching_does_not_change_the_result(fitted_logistic):
    model, x, y = fitted_logistic
    calls = []

    def predict(a):
        calls.append(len(a))
        return model.predict_proba(a)[:, 1]

    small = permutation_importance(predict, x[:90], kind="binary", y=y[:90], n_repeats=2, n_resamples=20,
                                   batch_size=7)
    assert max(calls) <= 7
    calls.clear()
    large = permutation_importance(predict, x[:90], kind="binary", y=y[:90], n_repeats=2, n_resamples=20)
    # the intact pass, then the 10 groups x 2 repeats x 90 rows packed into calls of at most 1024 rows
    assert calls == [90, 990, 810]
    assert small["features"] == large["features"]


def test_one_hot_and_indicator_columns_are_permuted_as_one_column():
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame({
        "age": rng.normal(60, 10, n),
        "creatinine": np.where(rng.random(n) < 0.3, np.nan, rng.normal(1.0, 0.3, n)),
        "ward": rng.choice(["A", "B", "C"], n),
    })
    y = ((frame["ward"] == "C") ^ (rng.random(n) < 0.1)).astype(int).to_numpy()  # only the ward matters
    pre = TabularPreprocessor(["age", "creatinine"], ["ward"]).fit(frame)
    groups = tabular_feature_groups(pre)
    names = pre.feature_names_out_
    assert {k: [names[i] for i in v] for k, v in groups.items()} == {
        "age": ["age"], "creatinine": ["creatinine", "creatinine__missing"], "ward": ["ward=A", "ward=B", "ward=C"]}
    x = pre.transform(frame)
    model = LogisticRegression().fit(x, y)
    result = permutation_importance(lambda a: model.predict_proba(a)[:, 1], x, kind="binary", y=y, groups=groups,
                                    n_repeats=3, n_resamples=50)
    first, *rest = result["features"]
    assert first["name"] == "ward" and first["n_columns"] == 3 and first["ci_low"] > 0.2
    assert all(f["ci_low"] <= 0 <= f["ci_high"] and f["importance"] < 0.05 for f in rest)


def test_unfitted_preprocessor_is_refused():
    with pytest.raises(InvalidParameterError, match="fitted TabularPreprocessor"):
        tabular_feature_groups(TabularPreprocessor(["age"], []))


def _fitted_featurizer() -> EhrFeaturizer:
    h = pd.Timedelta(hours=1)
    events = [(T0 + 0.5 * h, "heart_rate", 80), (T0 + 4.5 * h, "heart_rate", 100), (T0 + 2 * h, "creatinine", 2.0)]
    timeline = make_timeline("P1", admissions=[{"id": "h", "start": T0, "end": T0 + pd.Timedelta(days=5),
                                                "icu": [("icu-1", T0, T0 + pd.Timedelta(days=4))]}],
                             events=events, sex="M", age=70)
    sample = EhrSample(0, "icu-1", "h", T0, T0 + pd.Timedelta(hours=6), 1, {"age_years": 70.0, "sex": "M"})
    return EhrFeaturizer(6, impute="median").fit([sample], [timeline]), sample, timeline


def test_ehr_channel_groups_match_the_featurizer_layout():
    featurizer, sample, timeline = _fitted_featurizer()
    groups = ehr_channel_groups(featurizer)
    assert list(groups) == ["creatinine", "heart_rate", "age", "sex"]
    sequence = featurizer.sequences([sample], [timeline])[0]  # (bins, channels)
    assert sorted(i for g in groups.values() for i in g) == list(range(sequence.shape[1]))
    value, mask, since = groups["heart_rate"]
    np.testing.assert_array_equal(sequence[:, mask], [1, 0, 0, 0, 1, 0])  # measured in bins 0 and 4
    assert sequence[0, value] < sequence[4, value]  # 80 then 100 beats/min, standardised
    np.testing.assert_array_equal(sequence[:, groups["sex"]], [[0, 1, 0]] * 6)  # M
    with pytest.raises(InvalidParameterError, match="fitted EhrFeaturizer"):
        ehr_channel_groups(EhrFeaturizer(6))


def test_ehr_sequences_importance_per_concept():
    """(n, bins, channels): a concept's whole time series (value, mask, time since) moves to another record."""
    featurizer, _, _ = _fitted_featurizer()
    groups = ehr_channel_groups(featurizer)
    rng = np.random.default_rng(0)
    n, bins, channels = 400, featurizer.n_bins, featurizer.n_channels
    x = rng.normal(size=(n, bins, channels)).astype(np.float32)
    value, mask, _ = groups["heart_rate"]
    # The outcome depends on the mean heart rate over the last 3 bins, measured ones only.
    signal = (x[:, -3:, value] * (x[:, -3:, mask] > 0)).mean(axis=1)
    y = (signal + 0.2 * rng.normal(size=n) > 0).astype(int)

    def predict(a):
        return 1 / (1 + np.exp(-4 * (a[:, -3:, value] * (a[:, -3:, mask] > 0)).mean(axis=1)))

    result = permutation_importance(predict, x, kind="binary", y=y, groups=groups, n_repeats=3, n_resamples=50)
    first, *rest = result["features"]
    assert first["name"] == "heart_rate" and first["n_columns"] == 3 and first["ci_low"] > 0.2
    assert all(f["importance"] == 0.0 for f in rest)  # the model never reads them


def test_ecg_leads_on_axis_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3, 50)).astype(np.float32)
    y = (x[:, 2, 10:20].mean(axis=1) > 0).astype(int)
    result = permutation_importance(lambda a: 1 / (1 + np.exp(-10 * a[:, 2, 10:20].mean(axis=1))), x,
                                    kind="binary", y=y, groups=["I", "II", "V1"], feature_axis=1, n_repeats=2,
                                    n_resamples=30)
    assert [f["name"] for f in result["features"]][0] == "V1"
    assert result["features"][0]["importance"] > 0.3


def test_survival_c_index_drop():
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 4)).astype(np.float32)
    log_risk = 1.5 * x[:, 0]
    event_time = rng.exponential(1 / np.exp(log_risk))
    censor_time = rng.exponential(2.0, n)
    time, event = np.minimum(event_time, censor_time), (event_time <= censor_time).astype(int)
    result = permutation_importance(lambda a: 1.5 * a[:, 0], x, kind="survival", time=time, event=event,
                                    n_repeats=3, n_resamples=50)
    assert result["metric"] == "c_index" and result["baseline"]["value"] > 0.7
    first, *rest = result["features"]
    assert first["name"] == "feature_0" and first["ci_low"] > 0.15
    assert all(f["importance"] == 0.0 for f in rest)


def test_regression_r2_and_multiclass_auroc():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    target = 3 * x[:, 1] + 0.5 * rng.normal(size=300)
    model = LinearRegression().fit(x, target)
    reg = permutation_importance(model.predict, x, kind="regression", y=target, n_repeats=3, n_resamples=30)
    assert reg["metric"] == "r2" and reg["features"][0]["name"] == "feature_1"
    assert reg["features"][0]["importance"] > 1.0  # R² falls from ~0.97 to ~-1 when the only signal is shuffled
    mae = permutation_importance(model.predict, x, kind="regression", y=target, metric="neg_mae", n_resamples=0)
    assert mae["metric"] == "neg_mae" and mae["features"][0]["importance"] > 1.0

    labels = np.digitize(x[:, 2], [-0.5, 0.5])  # 3 classes from feature 2
    clf = LogisticRegression().fit(x, labels)
    multi = permutation_importance(clf.predict_proba, x, kind="multiclass", y=labels, n_repeats=2, n_resamples=30)
    assert multi["features"][0]["name"] == "feature_2" and multi["features"][0]["ci_low"] > 0.2

    findings = np.stack([x[:, 0] > 0, x[:, 1] > 0.5], axis=1).astype(int)  # label k from feature k
    scores = lambda a: 1 / (1 + np.exp(-5 * (a[:, :2] - [0.0, 0.5])))  # noqa: E731
    multilabel = permutation_importance(scores, x, kind="multilabel", y=findings, metric="average_precision",
                                        n_repeats=2, n_resamples=30)
    ranked = {f["name"]: f for f in multilabel["features"]}
    assert ranked["feature_0"]["ci_low"] > 0.1 and ranked["feature_1"]["ci_low"] > 0.1
    assert ranked["feature_2"]["importance"] == 0.0


def test_invalid_parameters_and_data(fitted_logistic):
    model, x, y = fitted_logistic
    predict = lambda a: model.predict_proba(a)[:, 1]  # noqa: E731
    with pytest.raises(InvalidParameterError, match=r"'metric' parameter .* one of \['auroc', 'average_precision'\]"):
        permutation_importance(predict, x, kind="binary", y=y, metric="r2")
    with pytest.raises(InvalidParameterError, match="'kind' parameter"):
        permutation_importance(predict, x, kind="segmentation", y=y)
    with pytest.raises(InvalidParameterError, match="needs 'y'"):
        permutation_importance(predict, x, kind="binary")
    with pytest.raises(InvalidParameterError, match="needs 'time' and 'event'"):
        permutation_importance(predict, x, kind="survival", y=y)
    with pytest.raises(InvalidParameterError, match="do not share indices"):
        permutation_importance(predict, x, kind="binary", y=y, groups={"a": [0, 1], "b": [1, 2]})
    with pytest.raises(InvalidParameterError, match=r"indices in \[0, 10\)"):
        permutation_importance(predict, x, kind="binary", y=y, groups={"a": [10]})
    with pytest.raises(InvalidParameterError, match="'feature_axis' parameter"):
        permutation_importance(predict, x, kind="binary", y=y, feature_axis=0)
    with pytest.raises(InvalidParameterError, match="'n_repeats' parameter"):
        permutation_importance(predict, x, kind="binary", y=y, n_repeats=0)
    with pytest.raises(DataValidationError, match=r"'y' must have 400 rows"):
        permutation_importance(predict, x, kind="binary", y=y[:10])
    with pytest.raises(DataValidationError, match="0/1 labels"):
        permutation_importance(predict, x, kind="binary", y=y * 2)
    with pytest.raises(DataValidationError, match=r"must return \(n,\) scores for a binary task"):
        permutation_importance(model.predict_proba, x, kind="binary", y=y)
    bad = x.copy()
    bad[3, 4] = np.nan
    with pytest.raises(DataValidationError, match="NaN or infinite"):
        permutation_importance(predict, bad, kind="binary", y=y)


def test_chart_is_a_png(fitted_logistic):
    model, x, y = fitted_logistic
    result = permutation_importance(lambda a: model.predict_proba(a)[:, 1], x[:100], kind="binary", y=y[:100],
                                    n_repeats=2, n_resamples=10)
    png = base64.b64decode(importance_chart(result, top=5))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidParameterError, match="permutation_importance"):
        importance_chart({"features": []})
