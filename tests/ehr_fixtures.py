"""Tiny in-memory patient timelines for EHR tests (no files): ICU stays with vitals and labs whose values carry
the outcome, so a model can learn it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medai.core.timeline import Timeline, empty_events, sort_events

T0 = pd.Timestamp("2150-01-01 08:00")


def make_events(rows: list[tuple]) -> pd.DataFrame:
    """rows: (time, concept, value[, encounter_id])."""
    frame = pd.DataFrame({
        "time": pd.to_datetime([r[0] for r in rows]).astype("datetime64[ns]"),
        "encounter_id": [r[3] if len(r) > 3 else None for r in rows],
        "system": "test", "code": [r[1] for r in rows], "concept": [r[1] for r in rows],
        "value": [float(r[2]) for r in rows], "text": None, "unit": None, "source": "fixture",
    })
    return sort_events(frame)


def make_timeline(patient_id: str, *, admissions: list[dict], events: list[tuple] = (), sex: str = "F",
                  age: float = 65.0, death_time=None, diagnoses: list[tuple] = ()) -> Timeline:
    """admissions: dicts with id, start, end, died, icu: [(stay_id, start, end), ...]."""
    encounters = []
    for adm in admissions:
        encounters.append({"encounter_id": adm["id"], "kind": "hospital", "parent_id": None,
                           "start": pd.Timestamp(adm["start"]), "end": pd.Timestamp(adm["end"]),
                           "died": bool(adm.get("died", False)), "discharge_location": None})
        for stay_id, start, end in adm.get("icu", []):
            encounters.append({"encounter_id": stay_id, "kind": "icu", "parent_id": adm["id"],
                               "start": pd.Timestamp(start), "end": pd.Timestamp(end), "died": False,
                               "discharge_location": None})
    enc = pd.DataFrame(encounters)
    enc["start"] = enc["start"].astype("datetime64[ns]")
    enc["end"] = enc["end"].astype("datetime64[ns]")
    diag = pd.DataFrame([{"encounter_id": e, "system": "icd9", "code": c, "seq": float(i)}
                         for i, (e, c) in enumerate(diagnoses)], columns=["encounter_id", "system", "code", "seq"])
    first = min(pd.Timestamp(a["start"]) for a in admissions)
    timeline = Timeline(patient_id, sex=sex, birth_time=first - pd.Timedelta(days=365.25 * age),
                        death_time=pd.Timestamp(death_time) if death_time is not None else None,
                        encounters=enc, events=make_events(list(events)) if events else empty_events(),
                        diagnoses=diag, meta={"source": "fixture"})
    return timeline.check()


def cohort(n: int = 80, *, seed: int = 0) -> list[Timeline]:
    """n patients, one admission with one ICU stay each (a third re-admitted within 30 days); those who die have
    rising heart rate and creatinine and lower blood pressure in the first 48 h. Stay lengths 1–10 days."""
    rng = np.random.default_rng(seed)
    timelines = []
    for p in range(n):
        died = bool(rng.random() < 0.35)
        start = T0 + pd.Timedelta(days=int(rng.integers(0, 300)))
        icu_start = start + pd.Timedelta(hours=int(rng.integers(1, 12)))
        icu_hours = int(rng.integers(30, 240))
        icu_end = icu_start + pd.Timedelta(hours=icu_hours)
        end = icu_end + pd.Timedelta(hours=int(rng.integers(1, 72)))
        events = []
        for h in range(0, min(icu_hours, 60)):
            t = icu_start + pd.Timedelta(hours=h, minutes=int(rng.integers(0, 59)))
            drift = (h / 48.0) * (0.5 if died else -0.1)
            if rng.random() < 0.8:
                events.append((t, "heart_rate", 85 + 12 * drift + rng.normal(0, 12)))
            if rng.random() < 0.6:
                events.append((t, "systolic_bp", 120 - 15 * drift + rng.normal(0, 10)))
            if h % 12 == 0:
                events.append((t, "creatinine", 1.0 + 0.8 * drift + abs(rng.normal(0, 0.2))))
        admissions = [{"id": f"h{p}a", "start": start, "end": end, "died": died,
                       "icu": [(f"icu-{p}a", icu_start, icu_end)]}]
        if not died and rng.random() < 0.35:
            again = end + pd.Timedelta(days=int(rng.integers(2, 60)))
            admissions.append({"id": f"h{p}b", "start": again, "end": again + pd.Timedelta(days=3), "died": False,
                               "icu": []})
        diagnoses = [(f"h{p}a", "4280" if died or rng.random() < 0.3 else "4019"), (f"h{p}a", "5849")]
        timelines.append(make_timeline(f"P{p}", admissions=admissions, events=events,
                                       sex="M" if p % 2 else "F", age=float(rng.integers(30, 90)),
                                       death_time=end if died else None, diagnoses=diagnoses))
    return timelines
