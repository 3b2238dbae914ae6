"""Features from patient timelines: time-binned sequences with masks for the sequence networks, and aggregates for
the classical baselines — both read only the events a sample's window allows (``window_start <= time <
prediction_time``, via :meth:`Timeline.events_before`).

Sequence layout ``(n_samples, n_bins, n_channels)``: bins of ``bin_hours`` ending at the prediction time (the last
bin is the hour just before it). Channels, per harmonised concept (heart_rate, creatinine, ...):

- value: the bin's mean, standardised with the training mean and SD; where the bin has no value it is imputed
  (see :class:`Imputation`);
- mask (with ``indicators``): 1 where the bin holds a real measurement, 0 where the value was imputed;
- time since the last measurement (with ``indicators``), in units of the observation window (1 = never seen),
  as in GRU-D (Che et al., Sci Rep 2018) — lets a network learn that *not measuring* carries information;

then the static facts broadcast along time: age (standardised), sex (F, M, unknown one-hot).

Every statistic (which concepts are kept, medians, means, SDs) is fitted on the training split only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from medai.core.errors import DataValidationError, NotFittedError, invalid_parameter
from medai.core.timeline import Timeline
from medai.tasks.ehr import EhrSample

#: Aggregates per concept for the baselines (NaN where the window holds no value).
AGGREGATES = ("last", "min", "max", "mean", "count")
SEXES = ("F", "M")


class Imputation(StrEnum):
    """How a bin without a measurement gets its value.

    ``ffill``: the last earlier value of the same sample, for at most ``ffill_limit_hours``; what remains takes the
    training median. ``median``: the training median. ``mean``: the training mean (0 after standardisation).
    """

    FFILL = "ffill"
    MEDIAN = "median"
    MEAN = "mean"


class EhrFeaturizer:
    """Binned sequences and aggregates for EHR samples. ``__init__`` stores parameters; :meth:`fit` learns.

    Args:
        observation_hours: length of the window before the prediction time that is binned.
        bin_hours: width of a bin.
        impute: an :class:`Imputation`.
        ffill_limit_hours: forward fill carries a value at most this long (None: to the end of the window).
        indicators: add the mask and time-since-last channels (missingness-aware models).
        min_coverage: a concept is kept when at least this fraction of training samples has a value of it.
        concepts: the concepts to use (None: every concept meeting ``min_coverage``).
    """

    def __init__(self, observation_hours: float, *, bin_hours: float = 1.0, impute: Imputation | str = "ffill",
                 ffill_limit_hours: float | None = 24.0, indicators: bool = True, min_coverage: float = 0.05,
                 concepts: Sequence[str] | None = None) -> None:
        if not observation_hours > 0:
            raise invalid_parameter("observation_hours", "EhrFeaturizer", "> 0", observation_hours)
        if not 0 < bin_hours <= observation_hours:
            raise invalid_parameter("bin_hours", "EhrFeaturizer", "in (0, observation_hours]", bin_hours)
        try:
            impute = Imputation(impute)
        except ValueError:
            raise invalid_parameter("impute", "EhrFeaturizer", "one of " + ", ".join(i.value for i in Imputation),
                                    impute) from None
        self.observation_hours = float(observation_hours)
        self.bin_hours = float(bin_hours)
        self.impute = impute
        self.ffill_limit_hours = ffill_limit_hours
        self.indicators = bool(indicators)
        self.min_coverage = float(min_coverage)
        self.concepts = tuple(concepts) if concepts is not None else None

    @property
    def n_bins(self) -> int:
        return int(math.ceil(self.observation_hours / self.bin_hours - 1e-9))

    @property
    def n_channels(self) -> int:
        self._check_fitted()
        per_concept = 3 if self.indicators else 1
        return per_concept * len(self.concepts_) + 1 + len(SEXES) + 1

    # ------------------------------------------------------------------------------------------------ fitting
    def fit(self, samples: Sequence[EhrSample], timelines: Sequence[Timeline]) -> EhrFeaturizer:
        """Learn the concepts kept and their training statistics (training samples only)."""
        if not samples:
            raise DataValidationError("No training samples to fit the EHR features on.")
        windows = [self.window_events(s, timelines) for s in samples]
        seen: dict[str, int] = {}
        for events in windows:
            for concept in events["concept"].dropna().unique():
                seen[concept] = seen.get(concept, 0) + 1
        wanted = self.concepts if self.concepts is not None else sorted(seen)
        self.coverage_ = {c: seen.get(c, 0) / len(samples) for c in wanted}
        self.concepts_ = [c for c in wanted if self.coverage_[c] >= self.min_coverage and seen.get(c, 0) > 0]
        if not self.concepts_:
            raise DataValidationError(
                "No harmonised concept (heart rate, creatinine, ...) has values in the training windows: check that "
                "the events map to concepts (see docs/ehr.md) and that the observation window holds data.")
        values = pd.concat([w.loc[w["concept"].isin(self.concepts_), ["concept", "value"]] for w in windows])
        values = values.dropna(subset=["value"])
        stats = values.groupby("concept")["value"].agg(["median", "mean", "std"])
        self.median_ = {c: float(stats.loc[c, "median"]) for c in self.concepts_}
        self.mean_ = {c: float(stats.loc[c, "mean"]) for c in self.concepts_}
        self.std_ = {c: float(stats.loc[c, "std"]) if np.isfinite(stats.loc[c, "std"]) and stats.loc[c, "std"] > 0
                     else 1.0 for c in self.concepts_}
        ages = np.array([s.static.get("age_years") for s in samples], dtype=float)
        self.age_mean_ = float(np.nanmean(ages)) if np.isfinite(ages).any() else 60.0
        self.age_std_ = float(np.nanstd(ages)) if np.isfinite(ages).sum() > 1 and np.nanstd(ages) > 0 else 15.0
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "concepts_"):
            raise NotFittedError("This EhrFeaturizer is not fitted yet: call fit(train_samples, timelines) first.")

    # -------------------------------------------------------------------------------------------- transforms
    def window_events(self, sample: EhrSample, timelines: Sequence[Timeline]) -> pd.DataFrame:
        """The events a sample may see: ``prediction_time - observation_hours`` (not before ``window_start``)
        ≤ time < ``prediction_time``. The only place features read a timeline."""
        start = max(pd.Timestamp(sample.window_start),
                    pd.Timestamp(sample.prediction_time) - pd.Timedelta(hours=self.observation_hours))
        return timelines[sample.patient].events_before(sample.prediction_time, start=start)

    def sequences(self, samples: Sequence[EhrSample], timelines: Sequence[Timeline]) -> np.ndarray:
        """float32 ``(n_samples, n_bins, n_channels)`` (see the module docstring for the channels)."""
        self._check_fitted()
        out = np.zeros((len(samples), self.n_bins, self.n_channels), dtype=np.float32)
        for i, sample in enumerate(samples):
            out[i] = self._sequence(sample, timelines)
        return out

    def _binned(self, sample: EhrSample, timelines: Sequence[Timeline]) -> np.ndarray:
        """Raw bin means ``(n_bins, n_concepts)``, NaN where a bin has no value."""
        events = self.window_events(sample, timelines)
        events = events.loc[events["concept"].isin(self.concepts_) & events["value"].notna()]
        grid = np.full((self.n_bins, len(self.concepts_)), np.nan)
        if events.empty:
            return grid
        hours_before = (pd.Timestamp(sample.prediction_time) - events["time"]).dt.total_seconds().to_numpy() / 3600
        # bin k covers [start + k·bin, start + (k+1)·bin) with start = prediction time - n_bins·bin
        bins = np.floor(self.n_bins - hours_before / self.bin_hours).astype(int)
        column = pd.Categorical(events["concept"], categories=self.concepts_).codes
        keep = (bins >= 0) & (bins < self.n_bins)
        table = pd.DataFrame({"bin": bins[keep], "col": column[keep], "value": events["value"].to_numpy()[keep]})
        means = table.groupby(["bin", "col"])["value"].mean()
        grid[means.index.get_level_values(0), means.index.get_level_values(1)] = means.to_numpy()
        return grid

    def _sequence(self, sample: EhrSample, timelines: Sequence[Timeline]) -> np.ndarray:
        raw = self._binned(sample, timelines)
        observed = ~np.isnan(raw)
        mean = np.array([self.mean_[c] for c in self.concepts_])
        std = np.array([self.std_[c] for c in self.concepts_])
        median = np.array([self.median_[c] for c in self.concepts_])
        filled = raw.copy()
        if self.impute is Imputation.FFILL:
            limit = None if self.ffill_limit_hours is None else int(math.floor(self.ffill_limit_hours / self.bin_hours))
            filled = pd.DataFrame(raw).ffill(limit=limit).to_numpy()
            filled = np.where(np.isnan(filled), median, filled)
        elif self.impute is Imputation.MEDIAN:
            filled = np.where(observed, raw, median)
        else:
            filled = np.where(observed, raw, mean)
        channels = [(filled - mean) / std]
        if self.indicators:
            channels.append(observed.astype(float))
            channels.append(_time_since_last(observed, self.bin_hours) / self.observation_hours)
        age = sample.static.get("age_years")
        age_z = 0.0 if age is None or not np.isfinite(age) else (age - self.age_mean_) / self.age_std_
        sex = sample.static.get("sex")
        static = [age_z] + [float(sex == s) for s in SEXES] + [float(sex not in SEXES)]
        channels.append(np.tile(static, (self.n_bins, 1)))
        return np.concatenate(channels, axis=1).astype(np.float32)

    def aggregates(self, samples: Sequence[EhrSample], timelines: Sequence[Timeline]) -> pd.DataFrame:
        """One row per sample: per concept ``last, min, max, mean, count`` over the window (NaN where none),
        ``age_years`` and ``sex`` — the baselines' input (they impute with training medians + indicators)."""
        self._check_fitted()
        rows = []
        for sample in samples:
            events = self.window_events(sample, timelines)
            events = events.loc[events["concept"].isin(self.concepts_) & events["value"].notna()]
            grouped = events.groupby("concept")["value"]
            stats = grouped.agg(["last", "min", "max", "mean", "count"]) if not events.empty else None
            row: dict[str, Any] = {}
            for concept in self.concepts_:
                have = stats is not None and concept in stats.index
                for agg in AGGREGATES:
                    row[f"{concept}_{agg}"] = float(stats.loc[concept, agg]) if have else (
                        0.0 if agg == "count" else np.nan)
            row["age_years"] = sample.static.get("age_years")
            row["sex"] = sample.static.get("sex") or "unknown"
            rows.append(row)
        return pd.DataFrame(rows)

    def observed_fraction(self, samples: Sequence[EhrSample], timelines: Sequence[Timeline]) -> pd.DataFrame:
        """Per sample and concept: the fraction of bins with a measurement ``(n_samples, n_concepts)`` — the
        missingness profile's input."""
        self._check_fitted()
        fractions = np.stack([(~np.isnan(self._binned(s, timelines))).mean(axis=0) for s in samples]) \
            if samples else np.zeros((0, len(self.concepts_)))
        return pd.DataFrame(fractions, columns=self.concepts_)

    # ------------------------------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "type": "ehr", "observation_hours": self.observation_hours, "bin_hours": self.bin_hours,
            "impute": self.impute.value, "ffill_limit_hours": self.ffill_limit_hours, "indicators": self.indicators,
            "min_coverage": self.min_coverage, "concepts": self.concepts_, "coverage": self.coverage_,
            "median": self.median_, "mean": self.mean_, "std": self.std_, "age_mean": self.age_mean_,
            "age_std": self.age_std_, "strategy": self.strategy(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> EhrFeaturizer:
        featurizer = cls(state["observation_hours"], bin_hours=state["bin_hours"], impute=state["impute"],
                         ffill_limit_hours=state["ffill_limit_hours"], indicators=state["indicators"],
                         min_coverage=state["min_coverage"])
        featurizer.concepts_ = list(state["concepts"])
        featurizer.coverage_ = dict(state["coverage"])
        featurizer.median_, featurizer.mean_, featurizer.std_ = state["median"], state["mean"], state["std"]
        featurizer.age_mean_, featurizer.age_std_ = state["age_mean"], state["age_std"]
        return featurizer

    def strategy(self) -> str:
        """The preprocessing in words, for the model card."""
        fill = {Imputation.FFILL: "forward fill of the last value"
                + (f" for at most {self.ffill_limit_hours:g} h" if self.ffill_limit_hours is not None else "")
                + ", then the training median",
                Imputation.MEDIAN: "the training median", Imputation.MEAN: "the training mean"}[self.impute]
        text = (f"Events of the {self.observation_hours:g} h before the prediction time in {self.bin_hours:g} h bins "
                f"(bin mean) for concepts seen in at least {self.min_coverage:.0%} of training samples; empty bins "
                f"take {fill}; values standardised with training mean/SD")
        if self.indicators:
            text += "; a mask channel (1 = measured) and the time since the last measurement per concept"
        return text + "; age and sex broadcast along time."


def _time_since_last(observed: np.ndarray, bin_hours: float) -> np.ndarray:
    """Hours since the last measurement per bin and concept; the whole window length + 1 bin when never seen."""
    n_bins = observed.shape[0]
    index = np.where(observed, np.arange(n_bins)[:, None], -1)
    last = np.maximum.accumulate(index, axis=0)
    since = (np.arange(n_bins)[:, None] - last) * bin_hours
    return np.where(last < 0, (n_bins + 1) * bin_hours, since).astype(float)
