"""EHR featurizer: binning, imputation choices, missingness channels, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medai.core.errors import InvalidParameterError, NotFittedError
from medai.data.ehr_features import EhrFeaturizer
from medai.tasks.ehr import EhrSample
from tests.ehr_fixtures import T0, make_timeline


def _one(events):
    timeline = make_timeline("P1", admissions=[{"id": "h", "start": T0, "end": T0 + pd.Timedelta(days=5),
                                                "icu": [("icu-1", T0, T0 + pd.Timedelta(days=4))]}],
                             events=events, sex="M", age=70)
    sample = EhrSample(0, "icu-1", "h", T0, T0 + pd.Timedelta(hours=6), 1, {"age_years": 70.0, "sex": "M"})
    return [timeline], [sample]


def test_bins_end_at_the_prediction_time_and_average_within_a_bin():
    h = pd.Timedelta(hours=1)
    timelines, samples = _one([(T0 + 0.5 * h, "heart_rate", 80), (T0 + 0.7 * h, "heart_rate", 100),
                               (T0 + 5.9 * h, "heart_rate", 60), (T0 + 6 * h, "heart_rate", 200),
                               (T0 + 2 * h, "creatinine", 2.0)])
    f = EhrFeaturizer(6, impute="median", ffill_limit_hours=None).fit(samples, timelines)
    raw = f._binned(samples[0], timelines)
    assert f.concepts_ == ["creatinine", "heart_rate"] and raw.shape == (6, 2)
    np.testing.assert_allclose(raw[:, 1], [90, np.nan, np.nan, np.nan, np.nan, 60])  # 200 at t=6 h is excluded
    np.testing.assert_allclose(raw[:, 0], [np.nan, np.nan, 2.0, np.nan, np.nan, np.nan])


def test_imputation_choices_and_indicator_channels():
    h = pd.Timedelta(hours=1)
    timelines, samples = _one([(T0 + 0.5 * h, "heart_rate", 80), (T0 + 3.5 * h, "heart_rate", 100)])
    ffill = EhrFeaturizer(6, impute="ffill", ffill_limit_hours=1).fit(samples, timelines)
    x = ffill.sequences(samples, timelines)[0]
    mean, std = ffill.mean_["heart_rate"], ffill.std_["heart_rate"]
    values = x[:, 0] * std + mean
    # bin 0: 80, bin 1: carried 80 (limit 1 h), bins 2: median 90, bin 3: 100, bin 4: carried, bin 5: median
    np.testing.assert_allclose(values, [80, 80, 90, 100, 100, 90], atol=1e-4)
    np.testing.assert_array_equal(x[:, 1], [1, 0, 0, 1, 0, 0])  # mask
    np.testing.assert_allclose(x[:, 2] * 6, [0, 1, 2, 0, 1, 2], atol=1e-5)  # hours since last / window
    assert x.shape[1] == ffill.n_channels == 3 + 1 + 3  # value, mask, delta + age + sex F/M/unknown
    np.testing.assert_array_equal(x[0, 3:], [0.0, 0.0, 1.0, 0.0])  # age z = 0 (one sample), sex M

    median = EhrFeaturizer(6, impute="median", indicators=False).fit(samples, timelines)
    values = median.sequences(samples, timelines)[0][:, 0] * std + mean
    np.testing.assert_allclose(values, [80, 90, 90, 100, 90, 90], atol=1e-4)
    assert median.n_channels == 1 + 4
    mean_fill = EhrFeaturizer(6, impute="mean").fit(samples, timelines)
    assert mean_fill.sequences(samples, timelines)[0][1, 0] == pytest.approx(0.0)


def test_never_measured_concept_and_aggregates():
    timelines, samples = _one([(T0 + pd.Timedelta(hours=1), "heart_rate", 80)])
    f = EhrFeaturizer(6, concepts=["heart_rate", "lactate"], min_coverage=0.0).fit(samples, timelines)
    assert f.concepts_ == ["heart_rate"]  # lactate never seen in training: no channel
    agg = f.aggregates(samples, timelines)
    assert agg.loc[0, "heart_rate_last"] == 80 and agg.loc[0, "heart_rate_count"] == 1
    assert agg.loc[0, "sex"] == "M" and agg.loc[0, "age_years"] == 70
    fraction = f.observed_fraction(samples, timelines)
    assert fraction.loc[0, "heart_rate"] == pytest.approx(1 / 6)


def test_round_trip_and_errors():
    timelines, samples = _one([(T0 + pd.Timedelta(hours=1), "heart_rate", 80)])
    with pytest.raises(NotFittedError, match="not fitted"):
        EhrFeaturizer(6).sequences(samples, timelines)
    with pytest.raises(InvalidParameterError, match="'impute' parameter"):
        EhrFeaturizer(6, impute="knn")
    f = EhrFeaturizer(6).fit(samples, timelines)
    again = EhrFeaturizer.from_dict(f.to_dict())
    np.testing.assert_array_equal(again.sequences(samples, timelines), f.sequences(samples, timelines))
    assert "forward fill" in f.strategy()
