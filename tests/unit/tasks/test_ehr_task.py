"""EHR labelers: prediction times, labels, exclusions — and the time-leak test: nothing at or after a sample's
prediction time reaches its features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from medai.core.config import EhrOutcome, TaskKind
from medai.core.errors import DataValidationError
from medai.core.timeline import sort_events
from medai.data.ehr_features import EhrFeaturizer
from medai.tasks.ehr import PHENOTYPES, EhrLabeler, build_ehr_task, phenotype_vector
from tests.ehr_fixtures import T0, cohort, make_timeline


def _stay(hours: float, *, died=False, death_after_hours=None, age=60.0, events=()):
    start = T0
    icu_start = T0 + pd.Timedelta(hours=2)
    icu_end = icu_start + pd.Timedelta(hours=hours)
    end = icu_end + pd.Timedelta(hours=10)
    death = icu_start + pd.Timedelta(hours=death_after_hours) if death_after_hours is not None else (
        end if died else None)
    return make_timeline("P1", admissions=[{"id": "h1", "start": start, "end": end, "died": died,
                                            "icu": [("icu-1", icu_start, icu_end)]}],
                         events=list(events), age=age, death_time=death)


def test_mortality_predicts_48h_after_icu_admission_and_reads_the_hospital_outcome():
    samples, excluded = EhrLabeler(EhrOutcome.MORTALITY).samples([_stay(100, died=True)])
    assert len(samples) == 1 and not excluded
    sample = samples[0]
    assert sample.prediction_time == T0 + pd.Timedelta(hours=2 + 48)
    assert sample.window_start == T0 + pd.Timedelta(hours=2)
    assert sample.label == 1 and sample.encounter_id == "h1" and sample.sample_id == "icu-1"
    assert EhrLabeler(EhrOutcome.MORTALITY).samples([_stay(100, died=False)])[0][0].label == 0


def test_mortality_excludes_short_stays_early_deaths_and_children():
    _, excluded = EhrLabeler(EhrOutcome.MORTALITY).samples([_stay(40)])
    assert excluded == {"ICU stay shorter than the 48 h observation window": 1}
    _, excluded = EhrLabeler(EhrOutcome.MORTALITY).samples([_stay(100, died=True, death_after_hours=30)])
    assert excluded == {"died before the prediction time": 1}
    _, excluded = EhrLabeler(EhrOutcome.MORTALITY).samples([_stay(100, age=12)])
    assert excluded == {"younger than 18 years": 1}


def test_mortality_horizon_counts_only_deaths_inside_it():
    late = _stay(300, died=True, death_after_hours=200)
    assert EhrLabeler(EhrOutcome.MORTALITY).samples([late])[0][0].label == 1
    assert EhrLabeler(EhrOutcome.MORTALITY, horizon_hours=24).samples([late])[0][0].label == 0
    assert EhrLabeler(EhrOutcome.MORTALITY, horizon_hours=200).samples([late])[0][0].label == 1


def test_length_of_stay_and_observation_parameters():
    labeler = EhrLabeler(EhrOutcome.LENGTH_OF_STAY)
    assert (labeler.observation_hours, labeler.horizon_hours) == (24.0, 72.0)
    assert labeler.samples([_stay(80)])[0][0].label == 1
    assert labeler.samples([_stay(60)])[0][0].label == 0
    short = EhrLabeler(EhrOutcome.LENGTH_OF_STAY, observation_hours=6, horizon_hours=48)
    sample = short.samples([_stay(60)])[0][0]
    assert sample.prediction_time == T0 + pd.Timedelta(hours=8) and sample.label == 1


def test_readmission_within_30_days_at_discharge():
    first = {"id": "a", "start": T0, "end": T0 + pd.Timedelta(days=5), "died": False}
    soon = {"id": "b", "start": T0 + pd.Timedelta(days=20), "end": T0 + pd.Timedelta(days=22), "died": False}
    later = {"id": "c", "start": T0 + pd.Timedelta(days=80), "end": T0 + pd.Timedelta(days=81), "died": True}
    timeline = make_timeline("P1", admissions=[first, soon, later])
    samples, excluded = EhrLabeler(EhrOutcome.READMISSION).samples([timeline])
    assert [s.sample_id for s in samples] == ["a", "b"]
    assert [s.label for s in samples] == [1, 0]
    assert samples[0].prediction_time == T0 + pd.Timedelta(days=5)
    assert samples[0].window_start == samples[0].prediction_time - pd.Timedelta(hours=48)
    assert excluded == {"died in hospital": 1}


def test_phenotypes_from_icd9_prefixes():
    vector = phenotype_vector(["4280", "584.9", "V4581", "99592"])
    names = list(PHENOTYPES)
    assert {names[j] for j in np.flatnonzero(vector)} == {"heart_failure", "acute_renal_failure", "septicaemia"}
    assert phenotype_vector(["2500"])[names.index("diabetes_without_complication")] == 1
    assert phenotype_vector(["25002"])[names.index("diabetes_without_complication")] == 1
    assert phenotype_vector(["25040"])[names.index("diabetes_with_complications")] == 1


def test_build_task_binary_and_multilabel():
    timelines = cohort(60, seed=1)
    task = build_ehr_task(timelines, "mortality")
    assert task.kind is TaskKind.BINARY and task.class_names == ["no_mortality", "mortality"]
    assert len(task.y) == len(task.samples) and 0 < task.y.sum() < len(task.y)
    assert set(task.groups) <= {t.patient_id for t in timelines}
    pheno = build_ehr_task(timelines, "phenotype")
    assert pheno.kind is TaskKind.MULTILABEL and pheno.y.shape == (len(pheno.samples), len(pheno.class_names))
    assert "heart_failure" in pheno.class_names and "acute_renal_failure" not in pheno.class_names  # in everyone
    assert any("acute_renal_failure" in w for w in pheno.warnings)


def test_a_task_without_both_outcomes_is_refused():
    with pytest.raises(DataValidationError, match="all 1 mortality samples have label 0"):
        build_ehr_task([_stay(100)], "mortality", source="stays.csv")
    with pytest.raises(DataValidationError, match="no mortality samples"):
        build_ehr_task([_stay(10)], "mortality", source="stays.csv")


# ---------------------------------------------------------------------------------------------- time leak
def _shift_future(timeline, at: pd.Timestamp, rng: np.random.Generator):
    """The same timeline with every event at or after ``at`` changed: values scrambled, times moved, and new
    events added — everything a leak could carry."""
    events = timeline.events
    future = events["time"] >= at
    changed = events.copy()
    changed.loc[future, "value"] = rng.normal(500, 100, int(future.sum()))
    changed.loc[future, "time"] = changed.loc[future, "time"] - pd.Timedelta(minutes=1) + \
        pd.to_timedelta(rng.integers(0, 600, int(future.sum())), unit="m")
    changed.loc[future, "time"] = changed.loc[future, "time"].where(changed.loc[future, "time"] >= at, at)
    extra = events.iloc[:3].copy()
    extra["time"] = at  # an event exactly at the prediction time is "after" (time < prediction_time only)
    extra["value"] = 999.0
    return dataclasses.replace(timeline, events=sort_events(pd.concat([changed, extra], ignore_index=True)))


@pytest.mark.parametrize("outcome", ["mortality", "length_of_stay", "phenotype"])
def test_no_information_after_the_prediction_time_reaches_the_features(outcome):
    timelines = cohort(40, seed=3)
    task = build_ehr_task(timelines, outcome)
    featurizer = EhrFeaturizer(task.labeler.observation_hours, impute="ffill").fit(task.samples, timelines)
    before = featurizer.sequences(task.samples, timelines)
    aggregates = featurizer.aggregates(task.samples, timelines)
    rng = np.random.default_rng(0)
    for k, sample in enumerate(task.samples):
        shifted = list(timelines)
        shifted[sample.patient] = _shift_future(timelines[sample.patient], sample.prediction_time, rng)
        assert not shifted[sample.patient].events.equals(timelines[sample.patient].events)
        np.testing.assert_array_equal(featurizer.sequences([sample], shifted)[0], before[k])
        pd.testing.assert_frame_equal(featurizer.aggregates([sample], shifted),
                                      aggregates.iloc[[k]].reset_index(drop=True))


def test_the_leak_test_would_catch_a_leak():
    """Control: a window reaching past the prediction time does change the features under the same shift."""
    timelines = cohort(20, seed=4)
    task = build_ehr_task(timelines, "mortality")
    featurizer = EhrFeaturizer(48).fit(task.samples, timelines)
    sample = task.samples[0]
    leaky = dataclasses.replace(sample, prediction_time=sample.prediction_time + pd.Timedelta(hours=12))
    shifted = list(timelines)
    shifted[sample.patient] = _shift_future(timelines[sample.patient], sample.prediction_time,
                                            np.random.default_rng(0))
    assert not np.array_equal(featurizer.sequences([leaky], timelines), featurizer.sequences([leaky], shifted))
