"""Flat event CSV reader: concept names and LOINC codes mapped and harmonised, text values, sorting with the
out-of-order count, the companion encounters file, and every promised error with file, line and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.core.timeline import ENCOUNTER_COLUMNS, EVENT_COLUMNS
from medai.io.ehr import find_ehr_source, is_ehr_source, read_timelines
from medai.io.events_csv import read_event_csv

EVENTS = """patient_id,time,code,value,unit,encounter_id
A,2150-01-01 12:00,heart_rate,80,bpm,h1
A,2150-01-01 10:00,8310-5,100.4,[degF],h1
A,2150-01-01 11:00,note,improving,,h1
B,2150-02-01T08:00:00Z,2345-7,5.5,mmol/L,
B,2150-02-01T09:00:00+01:00,systolic_bp,999,mmHg,
B,2150-02-01T09:30:00Z,my-code,3.5,widgets,
A,2150-01-01 12:00,spo2,0.97,1,h1
"""
ENCOUNTERS = """patient_id,encounter_id,kind,start,end,died,parent_id
A,h1,hospital,2150-01-01 09:00,2150-01-04 09:00,yes,
A,i1,icu,2150-01-01 09:30,2150-01-02 09:00,no,h1
"""


def _write(folder: Path, events: str = EVENTS, encounters: str | None = ENCOUNTERS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "events.csv").write_text(events)
    if encounters is not None:
        (folder / "encounters.csv").write_text(encounters)
    return folder / "events.csv"


def test_reads_events_and_companion_encounters(tmp_path):
    path = _write(tmp_path)
    a, b = read_event_csv(path)
    assert (a.patient_id, b.patient_id) == ("A", "B")
    assert tuple(a.events.columns) == EVENT_COLUMNS
    assert a.events["time"].is_monotonic_increasing
    assert a.events["concept"].tolist() == ["temperature", None, "heart_rate", "spo2"]
    assert a.events["value"].iloc[0] == pytest.approx(38.0) and a.events["unit"].iloc[0] == "Cel"
    assert a.events["system"].tolist() == ["http://loinc.org", "csv", "csv", "csv"]
    assert a.events["text"].iloc[1] == "improving" and np.isnan(a.events["value"].iloc[1])
    assert a.events["value"].iloc[3] == pytest.approx(97.0)  # a fraction -> %
    assert a.events.loc[a.events["concept"] == "heart_rate", "time"].iloc[0] == pd.Timestamp("2150-01-01 12:00")
    # File order 12:00, 10:00, 11:00, 12:00: one row (10:00) is earlier than its predecessor
    assert a.meta["events_out_of_order"] == 1
    assert a.events["encounter_id"].eq("h1").all()

    assert b.events["concept"].tolist() == ["glucose", None]
    assert b.events["value"].iloc[0] == pytest.approx(99.088)
    assert b.events["unit"].tolist() == ["mg/dL", "widgets"]  # an unmapped code keeps its own unit
    assert b.meta["dropped"] == {"out_of_range": 1}  # systolic 999
    assert b.events["time"].iloc[0] == pd.Timestamp("2150-02-01 08:00")  # 09:00+01:00 was dropped
    assert b.events["encounter_id"].isna().all()

    assert tuple(a.encounters.columns) == ENCOUNTER_COLUMNS
    assert a.encounters["kind"].tolist() == ["hospital", "icu"]
    assert a.encounters["died"].tolist() == [True, False]
    assert a.encounters["parent_id"].tolist() == [None, "h1"]
    assert b.encounters.empty
    assert a.meta["encounters_source"].endswith("encounters.csv")


def test_out_of_order_count(tmp_path):
    events = "patient_id,time,code,value,unit\nA,2150-01-01 03:00,x,1,\nA,2150-01-01 01:00,x,2,\nA,2150-01-01 " \
             "02:00,x,3,\nA,2150-01-01 01:00,x,4,\n"
    [a] = read_event_csv(_write(tmp_path, events, None))
    assert a.meta["events_out_of_order"] == 2
    assert a.events["value"].tolist() == [2.0, 4.0, 3.0, 1.0]  # stable: the two 01:00 rows keep file order
    assert a.meta["encounters_source"] is None


def test_explicit_encounters_file(tmp_path):
    path = _write(tmp_path / "e", encounters=None)
    other = tmp_path / "stays.csv"
    other.write_text(ENCOUNTERS)
    a, _ = read_event_csv(path, encounters=other)
    assert len(a.encounters) == 2


def test_unparseable_time_names_file_line_and_column(tmp_path):
    bad = EVENTS.replace("2150-01-01 11:00", "MRN-99-secret")
    with pytest.raises(DataValidationError, match=r"events.csv, line 4, column 'time': the time cannot be parsed") \
            as error:
        read_event_csv(_write(tmp_path, bad))
    assert "MRN-99" not in str(error.value)
    empty = EVENTS.replace("A,2150-01-01 11:00,", "A,,")
    with pytest.raises(DataValidationError, match=r"line 4, column 'time': the time is empty"):
        read_event_csv(_write(tmp_path / "x", empty))


def test_encounter_ending_before_it_starts(tmp_path):
    bad = ENCOUNTERS.replace("2150-01-02 09:00", "2150-01-01 08:00")
    with pytest.raises(DataValidationError, match=r"encounters.csv, line 3, column 'end': the encounter ends before "
                                                  r"it starts"):
        read_event_csv(_write(tmp_path, encounters=bad))


def test_encounter_file_values(tmp_path):
    with pytest.raises(DataValidationError, match=r"encounters.csv, line 2, column 'kind': expected 'hospital' or"):
        read_event_csv(_write(tmp_path, encounters=ENCOUNTERS.replace(",hospital,", ",ward,")))
    with pytest.raises(DataValidationError, match=r"encounters.csv, line 3, column 'died': expected true/false"):
        read_event_csv(_write(tmp_path / "d", encounters=ENCOUNTERS.replace(",no,", ",maybe,")))


def test_missing_column_and_unknown_unit(tmp_path):
    with pytest.raises(DataValidationError, match=r"the event file lacks column\(s\) unit"):
        read_event_csv(_write(tmp_path, "patient_id,time,code,value\nA,2150-01-01,x,1\n", None))
    bad = EVENTS.replace("80,bpm", "80,furlongs")
    with pytest.raises(DataValidationError, match=r"events.csv, line 2, column 'unit': unknown unit 'furlongs' for "
                                                  r"concept 'heart_rate'"):
        read_event_csv(_write(tmp_path / "u", bad))
    a, _ = read_event_csv(tmp_path / "u" / "events.csv", on_invalid="skip")
    assert a.meta["dropped"] == {"unknown_unit": 1}
    with pytest.raises(InvalidParameterError, match="event file not found"):
        read_event_csv(tmp_path / "none.csv")


def test_front_door(tmp_path):
    path = _write(tmp_path)
    assert find_ehr_source(path) == "events" and is_ehr_source(path)
    assert find_ehr_source(tmp_path / "encounters.csv") is None  # not an event table
    assert len(read_timelines(path)) == 2
    with pytest.raises(DataValidationError, match="not a recognised EHR input"):
        read_timelines(tmp_path / "encounters.csv")
    with pytest.raises(InvalidParameterError, match="does not take that option"):
        read_timelines(path, chunksize=10)
