"""Flat event tables (CSV) -> one :class:`~medai.core.timeline.Timeline` per patient.

The event file has one row per measurement: ``patient_id, time, code, value, unit``, optionally ``system`` and
``encounter_id``. ``code`` maps to a concept when it is a concept name (``heart_rate``) or a LOINC code of the
catalogue (:mod:`medai.io.ehr_concepts`); mapped numeric values are converted to the concept's unit (values out
of the plausible range are dropped and counted); a non-numeric ``value`` goes to ``text``. Rows out of time order
are sorted (stable) and counted in ``meta["events_out_of_order"]``.

Encounters come from a second file ``patient_id, encounter_id, kind, start, end, died`` (optional columns
``parent_id``, ``discharge_location``), passed as ``encounters=`` or found beside the event file as
``encounters.csv``. ``kind`` is ``hospital`` or ``icu``; ``died`` is ``true/false``, ``1/0`` or ``yes/no``.

Times are ISO 8601 (``2150-01-01 10:00``, ``2150-01-01T10:00:00Z``); times with an offset are converted to UTC and
stored naive. Line numbers in messages count the header as line 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.core.timeline import DIAGNOSIS_COLUMNS, ENCOUNTER_COLUMNS, EVENT_COLUMNS, Timeline, sort_events
from medai.io.ehr_concepts import (
    CONCEPTS,
    LOINC_SYSTEM,
    LOINC_TO_CONCEPT,
    OnInvalid,
    _on_invalid,
    conversion,
    unknown_unit_error,
)

READER = "events"
EVENT_FILE_COLUMNS = ("patient_id", "time", "code", "value", "unit")
ENCOUNTER_FILE_COLUMNS = ("patient_id", "encounter_id", "kind", "start", "end", "died")
ENCOUNTERS_FILE_NAME = "encounters.csv"
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f", ""})


def _read(path: Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise InvalidParameterError(f"{what} file not found: {path}.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, OSError, UnicodeDecodeError, EOFError) as error:
        raise DataValidationError(f"{path}: cannot read the {what} file as CSV ({type(error).__name__}).") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{path}: the {what} file lacks column(s) {', '.join(missing)}. Expected columns "
            f"{', '.join(required)} (header row, any case).")
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    return frame


def _times(column: pd.Series, path: Path, name: str, *, allow_missing: bool) -> np.ndarray:
    """ISO times -> naive datetime64[ns]; a bad or (when required) missing one raises with file, line and column."""
    text = column.replace("", None)
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna() & (text.notna() if allow_missing else True)
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        what = "is empty" if text.iloc[first] is None else "cannot be parsed as an ISO 8601 date-time"
        raise DataValidationError(
            f"{path}, line {first + 2}, column '{name}': the time {what} ({int(bad.sum())} row(s) in all). Expected "
            "e.g. 2150-01-01 10:00:00 or 2150-01-01T10:00:00Z.")
    return parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")


def read_event_csv(path: str | Path, encounters: str | Path | None = None, *,
                   on_invalid: OnInvalid | str = OnInvalid.RAISE) -> list[Timeline]:
    """Read a flat event CSV (and its encounters file) into one timeline per patient.

    Args:
        path: the event CSV (columns ``patient_id, time, code, value, unit`` [, ``system``, ``encounter_id``]).
        encounters: the encounters CSV; when None, ``encounters.csv`` beside ``path`` is used if it exists.
        on_invalid: ``"raise"`` on a unit that is not known for a mapped concept; ``"skip"``: drop and count
            such rows as ``unknown_unit``.

    Returns:
        Timelines sorted by ``patient_id`` (as text), each checked. ``system`` is the file's value, else
        ``http://loinc.org`` for LOINC codes and ``csv`` for other codes. ``meta``: ``source``, ``reader``
        ("events"), ``encounters_source`` (or None), ``dropped`` (``out_of_range``, ``unknown_unit``,
        ``no_value``), ``events_out_of_order`` (rows whose time is earlier than the previous row of the same
        patient in the file).

    Raises:
        InvalidParameterError: a file does not exist.
        DataValidationError: a missing column; an unparseable or empty time (file, line and column); an
            encounter ending before it starts (file, line, column ``end``); an unknown ``kind`` or ``died``
            value (file, line, column); a unit not known for a mapped concept (with ``on_invalid="raise"``).
    """
    path = Path(path)
    mode = _on_invalid(on_invalid, "read_event_csv")
    frame = _read(path, EVENT_FILE_COLUMNS, "event")
    if encounters is None and path.name.lower() != ENCOUNTERS_FILE_NAME:
        beside = path.with_name(ENCOUNTERS_FILE_NAME)
        encounters = beside if beside.is_file() else None
    times = _times(frame["time"], path, "time", allow_missing=False)
    patient = frame["patient_id"].to_numpy(dtype=object)
    empty_patient = frame["patient_id"] == ""
    if empty_patient.any():
        line = int(np.flatnonzero(empty_patient.to_numpy())[0]) + 2
        raise DataValidationError(f"{path}, line {line}, column 'patient_id': empty. Every event needs its patient.")
    code = frame["code"].to_numpy(dtype=object)
    given_system = frame["system"].to_numpy(dtype=object) if "system" in frame else np.full(len(frame), "", object)
    # A concept name counts when no other system is named; a LOINC code when the system is empty or LOINC.
    is_name = np.isin(code, list(CONCEPTS)) & (given_system == "")
    is_loinc = np.isin(code, list(LOINC_TO_CONCEPT)) & np.isin(given_system, ["", LOINC_SYSTEM]) & ~is_name
    concept = np.full(len(frame), None, dtype=object)
    concept[is_name] = code[is_name]
    concept[is_loinc] = [LOINC_TO_CONCEPT[c] for c in code[is_loinc]]
    system = np.where(given_system != "", given_system, np.where(is_loinc, LOINC_SYSTEM, "csv")).astype(object)
    numbers = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)
    raw_value = frame["value"].to_numpy(dtype=object)
    text = np.where(np.isnan(numbers) & (raw_value != ""), raw_value, None)
    unit = frame["unit"].replace("", None).to_numpy(dtype=object)
    value = numbers.copy()
    reason = np.full(len(frame), None, dtype=object)
    reason[np.isnan(numbers) & (raw_value == "")] = "no_value"

    mapped = pd.notna(concept) & ~np.isnan(numbers)
    if mapped.any():
        pairs = pd.DataFrame({"c": concept[mapped], "u": frame["unit"].to_numpy(dtype=object)[mapped]})
        positions = np.flatnonzero(mapped)
        for (name, raw_unit), rows in pairs.groupby(["c", "u"], sort=False).indices.items():
            spec = CONCEPTS[name]
            found = conversion(spec, raw_unit or None)
            where = positions[rows]
            if found is None:
                if mode is OnInvalid.RAISE:
                    raise unknown_unit_error(spec, raw_unit, f"{path}, line {int(where[0]) + 2}, column 'unit'")
                reason[where] = "unknown_unit"
                continue
            converted = numbers[where] * found[0] + found[1]
            value[where] = converted
            unit[where] = spec.unit
            out = ~((converted >= spec.low) & (converted <= spec.high))
            reason[where[out]] = "out_of_range"
    encounter_id = (frame["encounter_id"].replace("", None).to_numpy(dtype=object) if "encounter_id" in frame
                    else np.full(len(frame), None, dtype=object))
    events = pd.DataFrame({"patient_id": patient, "time": times, "encounter_id": encounter_id, "system": system,
                           "code": code, "concept": concept, "value": value, "text": text, "unit": unit,
                           "source": path.name, "reason": reason})
    encounter_table = _read_encounters(Path(encounters)) if encounters is not None else None

    patients = sorted(set(patient) | (set(encounter_table["patient_id"]) if encounter_table is not None else set()))
    by_patient = dict(tuple(events.groupby("patient_id", sort=False)))
    by_encounter = dict(tuple(encounter_table.groupby("patient_id", sort=False))) if encounter_table is not None else {}
    timelines = []
    for pid in patients:
        rows = by_patient.get(pid)
        timeline = Timeline(patient_id=str(pid), meta={
            "source": str(path), "reader": READER,
            "encounters_source": str(encounters) if encounters is not None else None, "dropped": {},
            "events_out_of_order": 0})
        if rows is not None:
            dropped = rows["reason"].value_counts()
            timeline.meta["dropped"] = {str(k): int(v) for k, v in dropped.items()}
            kept = rows[rows["reason"].isna()]
            ordered = kept["time"].to_numpy()
            timeline.meta["events_out_of_order"] = int((ordered[1:] < ordered[:-1]).sum()) if len(ordered) else 0
            timeline.events = sort_events(kept[list(EVENT_COLUMNS)].reset_index(drop=True))
        enc = by_encounter.get(pid)
        if enc is not None:
            timeline.encounters = enc.sort_values(["start", "kind"], kind="stable")[list(ENCOUNTER_COLUMNS)] \
                .reset_index(drop=True)
        timeline.diagnoses = timeline.diagnoses[list(DIAGNOSIS_COLUMNS)]
        timelines.append(timeline.check())
    return timelines


def _read_encounters(path: Path) -> pd.DataFrame:
    frame = _read(path, ENCOUNTER_FILE_COLUMNS, "encounters")
    start = _times(frame["start"], path, "start", allow_missing=False)
    end = _times(frame["end"], path, "end", allow_missing=True)
    before = ~np.isnat(end) & (end < start)
    if before.any():
        line = int(np.flatnonzero(before)[0]) + 2
        raise DataValidationError(f"{path}, line {line}, column 'end': the encounter ends before it starts. Fix "
                                  "its start or end time.")
    kind = frame["kind"].str.lower()
    bad_kind = ~kind.isin(["hospital", "icu"])
    if bad_kind.any():
        line = int(np.flatnonzero(bad_kind.to_numpy())[0]) + 2
        raise DataValidationError(f"{path}, line {line}, column 'kind': expected 'hospital' or 'icu'.")
    died_text = frame["died"].str.lower()
    bad_died = ~died_text.isin(_TRUE | _FALSE)
    if bad_died.any():
        line = int(np.flatnonzero(bad_died.to_numpy())[0]) + 2
        raise DataValidationError(f"{path}, line {line}, column 'died': expected true/false, 1/0 or yes/no.")
    empty_id = (frame["encounter_id"] == "") | (frame["patient_id"] == "")
    if empty_id.any():
        line = int(np.flatnonzero(empty_id.to_numpy())[0]) + 2
        raise DataValidationError(f"{path}, line {line}: patient_id and encounter_id must not be empty.")
    optional = {c: (frame[c].replace("", None).to_numpy(dtype=object) if c in frame else None)
                for c in ("parent_id", "discharge_location")}
    return pd.DataFrame({"patient_id": frame["patient_id"].to_numpy(dtype=object),
                         "encounter_id": frame["encounter_id"].to_numpy(dtype=object),
                         "kind": kind.to_numpy(dtype=object), "parent_id": optional["parent_id"],
                         "start": start, "end": end, "died": died_text.isin(_TRUE).to_numpy(dtype=bool),
                         "discharge_location": optional["discharge_location"]})
