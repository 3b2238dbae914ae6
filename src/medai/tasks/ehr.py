"""EHR tasks: labelers that turn a patient :class:`~medai.core.timeline.Timeline` into samples, each with a strict
prediction time.

A sample says *when* the prediction is made (``prediction_time``) and which slice of the timeline the features may
read (``window_start`` ≤ event time < ``prediction_time``). The label is computed from what happens at or after the
prediction time; features are built only from :meth:`Timeline.events_before` — nothing after the prediction time
reaches them (tests/unit/tasks/test_ehr_task.py shifts every future event and checks the features do not change).

Outcomes (:class:`~medai.core.config.EhrOutcome`), following the MIMIC-III benchmark definitions of Harutyunyan et
al., Sci Data 2019 (https://doi.org/10.1038/s41597-019-0103-9):

- ``mortality``: per ICU stay, predicted ``observation_hours`` (48) after ICU admission; label 1 when the patient
  dies in that hospital admission (or, with ``horizon_hours``, within that many hours of the prediction time).
  Stays that end, or patients who die, before the prediction time are excluded (there is nothing left to predict).
- ``length_of_stay``: per ICU stay still ongoing at ``observation_hours`` (24); label 1 when the ICU stay lasts
  longer than ``horizon_hours`` (72) in total.
- ``readmission``: per hospital admission the patient leaves alive, predicted at discharge from the last
  ``observation_hours`` (48) of the admission; label 1 when the patient is admitted again, or dies, within
  ``horizon_hours`` (720 = 30 days) of discharge. The data's end counts as no readmission (MIMIC has no follow-up
  beyond its admissions), which the run's warnings say.
- ``phenotype``: per ICU stay, predicted at ``observation_hours`` (24); multi-label: the ICD-9 groups coded for its
  hospital admission (:data:`PHENOTYPES`). Codes are assigned at discharge: they are outcomes, never features.

Adults only by default (age ≥ 18 at ICU admission), as in the benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medai.core.config import EhrOutcome
from medai.core.errors import DataValidationError
from medai.core.timeline import Timeline

#: (observation_hours, horizon_hours) used when the task leaves them unset.
DEFAULT_HOURS: dict[EhrOutcome, tuple[float, float | None]] = {
    EhrOutcome.MORTALITY: (48.0, None),
    EhrOutcome.LENGTH_OF_STAY: (24.0, 72.0),
    EhrOutcome.READMISSION: (48.0, 720.0),
    EhrOutcome.PHENOTYPE: (24.0, None),
}

#: ICD-9-CM groups for the phenotype task: the 25 acute and chronic conditions of Harutyunyan et al. 2019, each
#: defined here by ICD-9 code prefixes (MIMIC stores codes without the dot, e.g. 4280 = 428.0). This follows the
#: HCUP CCS single-level categories closely but is a prefix approximation of them, not the full CCS table.
PHENOTYPES: dict[str, tuple[str, ...]] = {
    "acute_renal_failure": ("584", "586"),
    "acute_cerebrovascular_disease": ("430", "431", "432", "433", "434", "436"),
    "acute_myocardial_infarction": ("410",),
    "cardiac_dysrhythmias": ("427",),
    "chronic_kidney_disease": ("585",),
    "copd_bronchiectasis": ("490", "491", "492", "494", "496"),
    "complications_of_care": ("996", "997", "998", "999"),
    "conduction_disorders": ("426",),
    "heart_failure": ("428",),
    "coronary_atherosclerosis": ("411", "413", "414"),
    "diabetes_with_complications": tuple(f"250{d}" for d in range(1, 10)),
    "diabetes_without_complication": ("2500",),
    "lipid_disorders": ("272",),
    "essential_hypertension": ("401",),
    "fluid_electrolyte_disorders": ("276",),
    "gi_haemorrhage": ("578",),
    "hypertension_with_complications": ("402", "403", "404", "405"),
    "other_liver_diseases": ("570", "572", "573"),
    "other_lower_respiratory_disease": ("514", "515", "516", "5188", "519"),
    "other_upper_respiratory_disease": ("470", "471", "472", "473", "474", "475", "476", "477", "478"),
    "pleurisy_pneumothorax_collapse": ("510", "511", "512", "5180"),
    "pneumonia": ("480", "481", "482", "483", "484", "485", "486"),
    "respiratory_failure": ("51881", "51882", "51883", "51884", "7991"),
    "septicaemia": ("038", "99591", "99592"),
    "shock": ("7855",),
}


@dataclass(frozen=True)
class EhrSample:
    """One prediction: who, when, from which slice of the timeline, and (when known) the outcome.

    Attributes:
        patient: index of the timeline in the task's list.
        sample_id: ``icu-…`` stay id (ICU tasks) or hospital admission id (readmission).
        encounter_id: the hospital admission the sample belongs to.
        window_start / prediction_time: features read events with window_start <= time < prediction_time.
        label: int 0/1 (binary) or a 0/1 vector over the task's phenotype names (multi-label); None when
            predicting without outcomes.
        static: facts known at the prediction time (``age_years``, ``sex``).
    """

    patient: int
    sample_id: str
    encounter_id: str | None
    window_start: pd.Timestamp
    prediction_time: pd.Timestamp
    label: Any = None
    static: dict[str, Any] = field(default_factory=dict)


@dataclass
class EhrLabeler:
    """Turns timelines into samples for one outcome. ``__init__`` stores parameters only.

    Args:
        outcome: what is predicted (see module docstring).
        observation_hours: how much history the features see (hours after ICU admission for ICU tasks; hours
            before discharge for readmission).
        horizon_hours: the outcome window (see module docstring); None where the outcome has no window.
        min_age_years: younger patients are excluded (18: adults, as the benchmark).
        with_labels: False builds samples for prediction only (no outcome is read).
    """

    outcome: EhrOutcome
    observation_hours: float | None = None
    horizon_hours: float | None = None
    min_age_years: float = 18.0
    with_labels: bool = True

    def __post_init__(self) -> None:
        self.outcome = EhrOutcome(self.outcome)
        default_obs, default_horizon = DEFAULT_HOURS[self.outcome]
        self.observation_hours = float(self.observation_hours or default_obs)
        if self.horizon_hours is None:
            self.horizon_hours = default_horizon

    def samples(self, timelines: Iterable[Timeline]) -> tuple[list[EhrSample], dict[str, int]]:
        """Samples of every timeline, and counts of excluded encounters by reason."""
        samples: list[EhrSample] = []
        excluded: dict[str, int] = {}
        for index, timeline in enumerate(timelines):
            for sample in self._samples(index, timeline, excluded):
                samples.append(sample)
        return samples, excluded

    # ---------------------------------------------------------------------------------------------- per outcome
    def _samples(self, index: int, timeline: Timeline, excluded: dict[str, int]) -> Iterable[EhrSample]:
        if self.outcome is EhrOutcome.READMISSION:
            yield from self._readmission(index, timeline, excluded)
            return
        encounters = timeline.encounters
        admissions = encounters[encounters["kind"] == "hospital"].set_index("encounter_id", drop=False)
        observe = pd.Timedelta(hours=self.observation_hours)
        for stay in encounters[encounters["kind"] == "icu"].itertuples(index=False):
            start = pd.Timestamp(stay.start)
            at = start + observe
            age = timeline.age_at(start)
            if age is not None and age < self.min_age_years:
                _count(excluded, f"younger than {self.min_age_years:g} years")
                continue
            if pd.notna(stay.end) and stay.end <= at:
                _count(excluded, f"ICU stay shorter than the {self.observation_hours:g} h observation window")
                continue
            death = _death_time(timeline, admissions, stay.parent_id)
            if death is not None and death <= at:
                _count(excluded, "died before the prediction time")
                continue
            label = None
            if self.with_labels:
                label = self._icu_label(timeline, stay, admissions, at, death, excluded)
                if label is _EXCLUDED:
                    continue
            elif pd.isna(stay.end) and (timeline.events.empty or timeline.events["time"].iloc[-1] < at):
                # predicting for an ongoing stay: its observation window is not complete yet
                _count(excluded, f"ongoing stay with less than {self.observation_hours:g} h of data so far")
                continue
            yield EhrSample(index, str(stay.encounter_id), _str_or_none(stay.parent_id), start, at, label,
                            _static(timeline, at))

    def _icu_label(self, timeline, stay, admissions, at, death, excluded):
        if self.outcome is EhrOutcome.MORTALITY:
            admission = stay.parent_id
            if admission is None or admission not in admissions.index:
                _count(excluded, "ICU stay without its hospital admission")
                return _EXCLUDED
            died = bool(admissions.loc[admission, "died"])
            if self.horizon_hours is not None:
                died = died and death is not None and death <= at + pd.Timedelta(hours=self.horizon_hours)
            return int(died)
        if self.outcome is EhrOutcome.LENGTH_OF_STAY:
            if pd.isna(stay.end):
                _count(excluded, "ICU stay without an end time")
                return _EXCLUDED
            return int(stay.end - stay.start > pd.Timedelta(hours=self.horizon_hours))
        # phenotype: the admission's ICD-9 groups
        codes = timeline.diagnoses.loc[timeline.diagnoses["encounter_id"] == stay.parent_id]
        codes = codes.loc[codes["system"].astype(str).str.lower().str.startswith("icd9"), "code"]
        if codes.empty:
            _count(excluded, "hospital admission without ICD-9 diagnoses")
            return _EXCLUDED
        return phenotype_vector(codes)

    def _readmission(self, index: int, timeline: Timeline, excluded: dict[str, int]) -> Iterable[EhrSample]:
        admissions = timeline.encounters[timeline.encounters["kind"] == "hospital"].sort_values("start")
        observe = pd.Timedelta(hours=self.observation_hours)
        horizon = pd.Timedelta(hours=self.horizon_hours)
        starts = admissions["start"].to_numpy()
        for admission in admissions.itertuples(index=False):
            if pd.isna(admission.end):
                _count(excluded, "admission without a discharge time")
                continue
            if bool(admission.died):
                _count(excluded, "died in hospital")
                continue
            age = timeline.age_at(admission.start)
            if age is not None and age < self.min_age_years:
                _count(excluded, f"younger than {self.min_age_years:g} years")
                continue
            at = pd.Timestamp(admission.end)
            label = None
            if self.with_labels:
                later = starts[(starts > np.datetime64(at)) & (starts <= np.datetime64(at + horizon))]
                died = timeline.death_time is not None and pd.notna(timeline.death_time) \
                    and at < pd.Timestamp(timeline.death_time) <= at + horizon
                label = int(len(later) > 0 or died)
            yield EhrSample(index, str(admission.encounter_id), str(admission.encounter_id),
                            max(pd.Timestamp(admission.start), at - observe), at, label, _static(timeline, at))


class _Excluded:  # a sentinel: the stay is left out (counted by reason)
    pass


_EXCLUDED = _Excluded()


def phenotype_vector(codes: Iterable[str]) -> np.ndarray:
    """0/1 over :data:`PHENOTYPES` (in its order) for a set of ICD-9 codes (dotted or not)."""
    clean = {str(c).replace(".", "").strip().upper() for c in codes}
    return np.array([int(any(code.startswith(prefixes) for code in clean if not code.startswith(("V", "E"))))
                     for prefixes in PHENOTYPES.values()], dtype=np.int64)


def _death_time(timeline: Timeline, admissions: pd.DataFrame, admission_id) -> pd.Timestamp | None:
    """When the patient died, as far as the prediction-time exclusion needs: the recorded death time, else the
    discharge time of an admission that ended in death."""
    if timeline.death_time is not None and pd.notna(timeline.death_time):
        return pd.Timestamp(timeline.death_time)
    if admission_id is not None and admission_id in admissions.index and bool(admissions.loc[admission_id, "died"]):
        end = admissions.loc[admission_id, "end"]
        return pd.Timestamp(end) if pd.notna(end) else None
    return None


def _static(timeline: Timeline, at: pd.Timestamp) -> dict[str, Any]:
    # ethnicity is for the subgroup audit only: the featurizer does not read it
    return {"age_years": timeline.age_at(at), "sex": timeline.sex, "ethnicity": timeline.meta.get("ethnicity")}


def _str_or_none(value) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _count(counts: dict[str, int], reason: str) -> None:
    counts[reason] = counts.get(reason, 0) + 1


def check_samples(samples: list[EhrSample], outcome: EhrOutcome, source: str) -> None:
    """Enough samples and both outcomes present, else a clear error naming the source and the fix."""
    if not samples:
        raise DataValidationError(
            f"{source}: no {outcome.value} samples: no encounter qualified (see the exclusion counts above). "
            "Check that the data has ICU stays (MIMIC ICUSTAYS, FHIR Encounter class ICU) and events.")
    if outcome is EhrOutcome.PHENOTYPE:
        return
    labels = np.array([s.label for s in samples])
    if labels.min() == labels.max():
        raise DataValidationError(
            f"{source}: all {len(samples)} {outcome.value} samples have label {labels[0]}: a model needs both "
            "outcomes. Use more data or a different horizon.")


#: A phenotype is modelled only when at least this many samples have it (and as many lack it).
MIN_PHENOTYPE_POSITIVES = 10


@dataclass
class EhrTask:
    """Samples of one outcome over a list of timelines, with labels arranged for training.

    Attributes:
        y: ``(n,)`` int 0/1 (binary) or ``(n, K)`` 0/1 over ``class_names`` (phenotypes).
        class_names: binary ``[no_<outcome>, <outcome>]``; phenotype: the groups kept.
        ids / groups: sample ids and patient ids ``(n,)`` (the split keeps a patient in one split).
        excluded: encounters left out, by reason.
    """

    outcome: EhrOutcome
    labeler: EhrLabeler
    samples: list[EhrSample]
    kind: Any
    y: np.ndarray
    class_names: list[str]
    ids: np.ndarray
    groups: np.ndarray
    excluded: dict[str, int]
    source: str
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        n = len(self.samples)
        obs = self.labeler.observation_hours
        if self.outcome is EhrOutcome.READMISSION:
            head = (f"Task: readmission or death within {self.labeler.horizon_hours:g} h of discharge, predicted at "
                    f"discharge from the last {obs:g} h")
        else:
            head = f"Task: {self.outcome.value}, predicted {obs:g} h after ICU admission"
        if self.y.ndim == 1:
            return f"{head} — {n} samples from {len(set(self.groups))} patients, {int(self.y.sum())} positive"
        return (f"{head} — {n} samples from {len(set(self.groups))} patients, {len(self.class_names)} phenotypes "
                f"(median {int(np.median(self.y.sum(axis=0)))} positives each)")


def build_ehr_task(timelines: list[Timeline], outcome: EhrOutcome | str, *, observation_hours: float | None = None,
                   horizon_hours: float | None = None, source: str = "input",
                   phenotypes: list[str] | None = None) -> EhrTask:
    """Label every timeline for ``outcome`` and arrange the labels (see :class:`EhrTask`).

    ``phenotypes``: the groups to model (an existing model's); None keeps those with at least
    :data:`MIN_PHENOTYPE_POSITIVES` positive and negative samples, the rest listed in the warnings.
    """
    from medai.core.config import TaskKind

    outcome = EhrOutcome(outcome)
    labeler = EhrLabeler(outcome, observation_hours, horizon_hours)
    samples, excluded = labeler.samples(timelines)
    check_samples(samples, outcome, source)
    ids = np.array([s.sample_id for s in samples], dtype=object)
    groups = np.array([timelines[s.patient].patient_id for s in samples], dtype=object)
    warnings: list[str] = []
    if outcome is EhrOutcome.PHENOTYPE:
        matrix = np.stack([s.label for s in samples])
        names = list(PHENOTYPES)
        if phenotypes is None:
            positives = matrix.sum(axis=0)
            keep = [j for j, p in enumerate(positives)
                    if MIN_PHENOTYPE_POSITIVES <= p <= len(samples) - MIN_PHENOTYPE_POSITIVES]
            dropped = [f"{names[j]} ({int(positives[j])} of {len(samples)})" for j in range(len(names))
                       if j not in keep and positives[j] > 0]
            absent = sum(1 for j in range(len(names)) if positives[j] == 0)
            if dropped or absent:
                warnings.append(f"Phenotypes with fewer than {MIN_PHENOTYPE_POSITIVES} positive (or negative) "
                                f"samples are not modelled: {', '.join(dropped) or 'none'}"
                                + (f"; {absent} of the {len(names)} groups never occur." if absent else "."))
        else:
            keep = [names.index(p) for p in phenotypes]
        if len(keep) < 1:
            raise DataValidationError(
                f"{source}: no phenotype has {MIN_PHENOTYPE_POSITIVES} positive samples; more data is needed.")
        return EhrTask(outcome, labeler, samples, TaskKind.MULTILABEL, matrix[:, keep].astype(np.int64),
                       [names[j] for j in keep], ids, groups, excluded, source, warnings)
    y = np.array([s.label for s in samples], dtype=np.int64)
    if outcome is EhrOutcome.READMISSION:
        warnings.append("Readmission: an admission with no later admission in the data counts as not readmitted "
                        "(the data has no follow-up beyond its own admissions).")
    return EhrTask(outcome, labeler, samples, TaskKind.BINARY, y, [f"no_{outcome.value}", outcome.value], ids,
                   groups, excluded, source, warnings)
