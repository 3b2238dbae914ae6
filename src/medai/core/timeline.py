"""Patient timelines: what every EHR reader (MIMIC-III tables, FHIR R4 Bundles, flat event CSVs) returns.

One :class:`Timeline` per patient. Everything time-stamped is an *event* in one long table; encounters (hospital
admissions, ICU stays) are intervals; diagnosis codes of an encounter are *not* events, because in MIMIC-style data
they are coded at discharge and carry no time — tasks may use them as outcomes (phenotypes), never as features
before discharge.

Event table (``Timeline.events``), one row per measurement/order/diagnosis with a time, sorted by ``time``:

==============  ==========================================================================================
column          meaning
==============  ==========================================================================================
time            ``datetime64[ns]``, naive, in the source's clock (MIMIC's shifted dates stay shifted)
encounter_id    the hospital admission the event belongs to (str), or None when the source does not say
system          the code system of ``code``: ``mimic-itemid``, ``mimic-labitem``, ``http://loinc.org``,
                ``icd9``, ``rxnorm``, ``csv`` (a user's own codes), ...
code            the source's code, as a string
concept         the harmonised concept (``heart_rate``, ``creatinine``, ... see
                :data:`medai.io.ehr_concepts.CONCEPTS`) or None when the code is not mapped
value           float value in ``unit`` (NaN when not numeric)
text            the non-numeric value as given (None when numeric)
unit            the unit of ``value``: the concept's canonical unit after harmonisation, else the source's
source          where the row came from (``CHARTEVENTS``, ``LABEVENTS``, ``Observation``, file name, ...)
==============  ==========================================================================================

Encounter table (``Timeline.encounters``): ``encounter_id, kind`` (``hospital`` or ``icu``), ``parent_id`` (the
hospital admission of an ICU stay, else None), ``start``, ``end`` (``datetime64[ns]``; end NaT while ongoing),
``died`` (bool: the patient died during this encounter), ``discharge_location`` (str or None).

Diagnosis table (``Timeline.diagnoses``): ``encounter_id, system, code, seq`` — codes assigned to an encounter,
known only from its end on.

ID mapping: ``patient_id`` is the source's patient identifier as a string (MIMIC ``SUBJECT_ID``, FHIR
``Patient.id``, the CSV's ``patient_id``); encounter ids are MIMIC ``HADM_ID`` / ``ICUSTAY_ID`` (ICU stays are
prefixed ``icu-``), FHIR ``Encounter.id``. See docs/ehr.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medai.core.errors import DataValidationError

EVENT_COLUMNS = ("time", "encounter_id", "system", "code", "concept", "value", "text", "unit", "source")
ENCOUNTER_COLUMNS = ("encounter_id", "kind", "parent_id", "start", "end", "died", "discharge_location")
DIAGNOSIS_COLUMNS = ("encounter_id", "system", "code", "seq")


def empty_events() -> pd.DataFrame:
    return pd.DataFrame({
        "time": pd.Series(dtype="datetime64[ns]"), "encounter_id": pd.Series(dtype=object),
        "system": pd.Series(dtype=object), "code": pd.Series(dtype=object), "concept": pd.Series(dtype=object),
        "value": pd.Series(dtype=float), "text": pd.Series(dtype=object), "unit": pd.Series(dtype=object),
        "source": pd.Series(dtype=object),
    })


def empty_encounters() -> pd.DataFrame:
    return pd.DataFrame({
        "encounter_id": pd.Series(dtype=object), "kind": pd.Series(dtype=object),
        "parent_id": pd.Series(dtype=object), "start": pd.Series(dtype="datetime64[ns]"),
        "end": pd.Series(dtype="datetime64[ns]"), "died": pd.Series(dtype=bool),
        "discharge_location": pd.Series(dtype=object),
    })


def empty_diagnoses() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c != "seq" else float) for c in DIAGNOSIS_COLUMNS})


@dataclass
class Timeline:
    """One patient's record: demographics, encounters, time-stamped events and encounter diagnoses.

    Attributes:
        patient_id: the source's patient identifier (never printed beside clinical values).
        sex: ``F``, ``M`` or None.
        birth_time: date of birth (MIMIC shifts ages over 89 to ~300 years: :meth:`age_at` caps them at 90).
        death_time: date of death when known (in or out of hospital), else None.
        encounters / events / diagnoses: the tables described in the module docstring.
        meta: provenance (``source`` path or bundle, reader name, counts of dropped rows by reason).
    """

    patient_id: str
    sex: str | None = None
    birth_time: pd.Timestamp | None = None
    death_time: pd.Timestamp | None = None
    encounters: pd.DataFrame = field(default_factory=empty_encounters)
    events: pd.DataFrame = field(default_factory=empty_events)
    diagnoses: pd.DataFrame = field(default_factory=empty_diagnoses)
    meta: dict[str, Any] = field(default_factory=dict)

    def age_at(self, time: pd.Timestamp) -> float | None:
        """Age in years at ``time``; ages over 89 are reported as 90 (HIPAA; MIMIC shifts them to ~300)."""
        if self.birth_time is None or pd.isna(self.birth_time):
            return None
        # python datetimes: MIMIC's shifted birth dates lie ~300 years back, beyond pandas' Timedelta range
        age = (pd.Timestamp(time).to_pydatetime() - pd.Timestamp(self.birth_time).to_pydatetime()).days / 365.25
        return float(min(age, 90.0))

    def events_before(self, time: pd.Timestamp, *, start: pd.Timestamp | None = None) -> pd.DataFrame:
        """Events with ``start <= event time < time`` — the only view a labeler may hand to features."""
        times = self.events["time"]
        keep = times < pd.Timestamp(time)
        if start is not None:
            keep &= times >= pd.Timestamp(start)
        return self.events.loc[keep]

    def check(self) -> Timeline:
        """Validate the tables (columns, types, time order); returns self. Raises DataValidationError naming the
        patient's source and the table, never a clinical value."""
        where = self.meta.get("source", "timeline")
        for name, columns in (("events", EVENT_COLUMNS), ("encounters", ENCOUNTER_COLUMNS),
                              ("diagnoses", DIAGNOSIS_COLUMNS)):
            missing = [c for c in columns if c not in getattr(self, name).columns]
            if missing:
                raise DataValidationError(f"{where}: the {name} table lacks column(s) {', '.join(missing)}.")
        if not pd.api.types.is_datetime64_any_dtype(self.events["time"]):
            raise DataValidationError(f"{where}: event times must be datetimes.")
        if self.events["time"].isna().any():
            raise DataValidationError(f"{where}: {int(self.events['time'].isna().sum())} event(s) have no time.")
        if not self.events["time"].is_monotonic_increasing:
            raise DataValidationError(f"{where}: events are not sorted by time (readers sort them).")
        enc = self.encounters
        bad = enc["end"].notna() & (enc["end"] < enc["start"])
        if bad.any():
            raise DataValidationError(
                f"{where}: encounter {enc.loc[bad, 'encounter_id'].iloc[0]} ends before it starts; check the "
                "admission/discharge (or ICU in/out) times.")
        return self


def sort_events(events: pd.DataFrame) -> pd.DataFrame:
    """Events in time order (stable: same-time events keep the source's order), index reset."""
    order = np.argsort(events["time"].to_numpy(), kind="stable")
    return events.iloc[order].reset_index(drop=True)
