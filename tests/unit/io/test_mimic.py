"""MIMIC-III reader: tiny generated tables (upper/lower case, .csv and .csv.gz), every promised error, streaming
with small chunks, and the real 100-patient demo when ../shared/data has it."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.core.timeline import DIAGNOSIS_COLUMNS, ENCOUNTER_COLUMNS, EVENT_COLUMNS
from medai.io.ehr import find_ehr_source, read_timelines
from medai.io.mimic import read_mimic3
from tests.conftest import SHARED_DATA

DEMO = SHARED_DATA / "mimic3_demo"

PATIENTS = """ROW_ID,SUBJECT_ID,GENDER,DOB,DOD,EXPIRE_FLAG
1,7,F,2100-01-01 00:00:00,2150-03-03 00:00:00,1
2,3,M,2090-05-05 00:00:00,,0
3,9,M,2080-05-05 00:00:00,,0
"""
ADMISSIONS = """ROW_ID,SUBJECT_ID,HADM_ID,ADMITTIME,DISCHTIME,DEATHTIME,DISCHARGE_LOCATION,HOSPITAL_EXPIRE_FLAG
1,7,100,2150-03-01 10:00:00,2150-03-03 12:00:00,2150-03-03 12:00:00,DEAD/EXPIRED,1
2,3,200,2140-01-01 08:00:00,2140-01-05 08:00:00,,HOME,0
3,3,201,2140-06-01 08:00:00,2140-06-03 08:00:00,,SNF,0
"""
ICUSTAYS = """ROW_ID,SUBJECT_ID,HADM_ID,ICUSTAY_ID,DBSOURCE,INTIME,OUTTIME
1,7,100,1000,metavision,2150-03-01 11:00:00,2150-03-03 12:00:00
2,3,200,2000,carevue,2140-01-01 09:00:00,2140-01-02 09:00:00
"""
DIAGNOSES = """ROW_ID,SUBJECT_ID,HADM_ID,SEQ_NUM,ICD9_CODE
1,7,100,2,5849
2,7,100,1,0389
3,3,200,1,4019
"""
# Out of time order on purpose; one ERROR=1 row; one implausible pressure; °F; lb with VALUEUOM empty;
# a text value; MetaVision GCS components (summed into gcs_total); an unmapped ITEMID (5); a chunk boundary
# falls between rows whenever chunksize is small.
CHARTEVENTS = ("ROW_ID,SUBJECT_ID,HADM_ID,ICUSTAY_ID,ITEMID,CHARTTIME,STORETIME,CGID,VALUE,VALUENUM,VALUEUOM,WARNING,"
               "ERROR,RESULTSTATUS,STOPPED\n") + """1,7,100,1000,220045,2150-03-01 13:00:00,,,90,90,bpm,0,0,,
2,7,100,1000,220045,2150-03-01 12:00:00,,,85,85,bpm,0,0,,
3,7,100,1000,220045,2150-03-01 12:30:00,,,300,300,bpm,0,1,,
4,7,100,1000,220179,2150-03-01 12:00:00,,,11647,11647,mmHg,0,0,,
5,7,100,1000,223761,2150-03-01 12:00:00,,,98.6,98.6,?F,0,0,,
6,7,100,1000,226531,2150-03-01 11:30:00,,,154,154,,0,0,,
7,7,100,1000,220739,2150-03-01 12:00:00,,,To Speech,3,,0,0,,
8,7,100,1000,223900,2150-03-01 12:00:00,,,Confused,4,,0,0,,
9,7,100,1000,223901,2150-03-01 12:00:00,,,Obeys Commands,6,,0,0,,
10,7,100,1000,5,2150-03-01 12:00:00,,,Sinus Rhythm,,,,,,
11,3,200,2000,678,2140-01-01 10:00:00,,,100.4,100.4,Deg. F,,,,
12,3,200,2000,190,2140-01-01 10:00:00,,,0.5,0.5,torr,,,,
13,3,200,2000,211,2140-01-01 10:00:00,,,Other/Remarks,,,,,,
14,3,200,2000,198,2140-01-01 10:05:00,,,15,15,points,,,,
"""
LABEVENTS = """ROW_ID,SUBJECT_ID,HADM_ID,ITEMID,CHARTTIME,VALUE,VALUENUM,VALUEUOM,FLAG
1,7,100,50912,2150-03-01 12:00:00,1.4,1.4,mg/dL,abnormal
2,7,,50931,2150-02-01 09:00:00,99,99,mg/dL,
3,3,200,50813,2140-01-01 10:00:00,2.1,2.1,mmol/L,
4,3,200,50820,2140-01-01 10:00:00,7.31,7.31,units,
"""


def write_mimic(folder: Path, *, gz: bool = False, lower: bool = False, tables: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    contents = {"PATIENTS": PATIENTS, "ADMISSIONS": ADMISSIONS, "ICUSTAYS": ICUSTAYS, "DIAGNOSES_ICD": DIAGNOSES,
                "CHARTEVENTS": CHARTEVENTS, "LABEVENTS": LABEVENTS, **(tables or {})}
    for name, text in contents.items():
        if lower:
            header, rest = text.split("\n", 1)
            text = header.lower() + "\n" + rest
            name = name.lower()
        if gz and name.upper() in ("CHARTEVENTS", "LABEVENTS"):
            with gzip.open(folder / f"{name}.csv.gz", "wt") as stream:
                stream.write(text)
        else:
            (folder / f"{name}.csv").write_text(text)
    return folder


def _by_id(timelines):
    return {t.patient_id: t for t in timelines}


def test_reads_patients_encounters_diagnoses_and_events(tmp_path):
    timelines = read_mimic3(write_mimic(tmp_path / "m"))
    assert [t.patient_id for t in timelines] == ["3", "7", "9"]
    p7 = _by_id(timelines)["7"]
    assert p7.sex == "F" and p7.birth_time == pd.Timestamp("2100-01-01")
    assert p7.death_time == pd.Timestamp("2150-03-03")
    assert tuple(p7.encounters.columns) == ENCOUNTER_COLUMNS
    enc = p7.encounters.set_index("encounter_id")
    assert enc.loc["100", "kind"] == "hospital" and bool(enc.loc["100", "died"])
    assert enc.loc["100", "discharge_location"] == "DEAD/EXPIRED"
    assert enc.loc["icu-1000", "parent_id"] == "100" and bool(enc.loc["icu-1000", "died"])
    assert tuple(p7.diagnoses.columns) == DIAGNOSIS_COLUMNS
    assert p7.diagnoses["code"].tolist() == ["0389", "5849"]  # ordered by SEQ_NUM
    assert p7.diagnoses["system"].eq("icd9").all()

    events = p7.events
    assert tuple(events.columns) == EVENT_COLUMNS
    assert events["time"].is_monotonic_increasing
    hr = events[events["concept"] == "heart_rate"]
    assert hr["value"].tolist() == [85.0, 90.0]  # sorted; the ERROR=1 row (300) is gone
    assert hr["code"].eq("220045").all() and hr["system"].eq("mimic-itemid").all()
    assert events.loc[events["concept"] == "temperature", "value"].iloc[0] == pytest.approx(37.0)
    weight = events[events["concept"] == "weight"]
    assert weight["value"].iloc[0] == pytest.approx(154 * 0.45359237) and weight["unit"].iloc[0] == "kg"
    assert "systolic_bp" not in set(events["concept"])  # 11647 mmHg dropped
    assert p7.meta["dropped"] == {"error_flag": 1, "out_of_range": 1}
    gcs = events[events["concept"] == "gcs_total"]
    assert gcs["value"].tolist() == [13.0] and gcs["source"].tolist() == ["derived"]
    assert 5 not in set(events["code"])  # unmapped ITEMID: only with items="all"
    outpatient = events[events["concept"] == "glucose"]
    assert outpatient["encounter_id"].tolist() == [None] and outpatient["system"].tolist() == ["mimic-labitem"]
    assert events.loc[events["concept"] == "creatinine", "encounter_id"].tolist() == ["100"]

    p3 = _by_id(timelines)["3"]
    e3 = p3.events.set_index("concept")
    assert e3.loc["temperature", "value"] == pytest.approx(38.0)
    assert e3.loc["fio2", "value"] == pytest.approx(0.5)  # CareVue's "torr" label ignored for ITEMID 190
    assert np.isnan(e3.loc["heart_rate", "value"]) and e3.loc["heart_rate", "text"] == "Other/Remarks"
    assert e3.loc["ph", "value"] == pytest.approx(7.31) and e3.loc["ph", "unit"] == "[pH]"
    assert e3.loc["gcs_total", "source"] == "CHARTEVENTS"
    assert p3.encounters["kind"].tolist() == ["hospital", "icu", "hospital"]  # by start time
    assert not p3.encounters["died"].any()
    p9 = _by_id(timelines)["9"]
    assert p9.events.empty and p9.encounters.empty  # a patient without admissions still has a timeline
    assert p7.meta["ingest"]["CHARTEVENTS_rows_read"] == 14


def test_items_all_keeps_unmapped_items_with_raw_values(tmp_path):
    events = _by_id(read_mimic3(write_mimic(tmp_path / "m"), items="all"))["7"].events
    rhythm = events[events["code"] == "5"]
    assert rhythm["concept"].tolist() == [None] and rhythm["text"].tolist() == ["Sinus Rhythm"]


@pytest.mark.parametrize(("gz", "lower"), [(True, False), (False, True), (True, True)])
def test_gzip_and_lower_case_give_the_same_timelines(tmp_path, gz, lower):
    reference = read_mimic3(write_mimic(tmp_path / "ref"))
    other = read_mimic3(write_mimic(tmp_path / "other", gz=gz, lower=lower))
    for a, b in zip(reference, other, strict=True):
        pd.testing.assert_frame_equal(a.events, b.events)
        pd.testing.assert_frame_equal(a.encounters, b.encounters)


def test_small_chunks_give_identical_timelines(tmp_path):
    folder = write_mimic(tmp_path / "m")
    whole = read_mimic3(folder)
    chunked = read_mimic3(folder, chunksize=3)
    for a, b in zip(whole, chunked, strict=True):
        pd.testing.assert_frame_equal(a.events, b.events)
        assert a.meta["dropped"] == b.meta["dropped"]


def test_patient_filter(tmp_path):
    timelines = read_mimic3(write_mimic(tmp_path / "m"), patients=["3"])
    assert [t.patient_id for t in timelines] == ["3"]
    assert timelines[0].meta["ingest"]["CHARTEVENTS_rows_kept"] == 4


def test_progress_bar_runs(tmp_path, capsys):
    assert len(read_mimic3(write_mimic(tmp_path / "m"), progress=True)) == 3


def test_missing_table_names_the_file_and_folder(tmp_path):
    folder = write_mimic(tmp_path / "m")
    (folder / "ICUSTAYS.csv").unlink()
    with pytest.raises(DataValidationError, match=r"m: table ICUSTAYS not found. Expected ICUSTAYS.csv or "
                                                  r"ICUSTAYS.csv.gz"):
        read_mimic3(folder)


def test_missing_column_names_table_and_column(tmp_path):
    folder = write_mimic(tmp_path / "m", tables={"LABEVENTS": LABEVENTS.replace("CHARTTIME", "WHEN")})
    with pytest.raises(DataValidationError, match="the LABEVENTS table lacks column.s. CHARTTIME"):
        read_mimic3(folder)


def test_unparseable_time_names_table_column_and_row_not_the_value(tmp_path):
    # Row 14 is in the third chunk of 5: the row number counts from the top of the file, not of the chunk.
    bad = CHARTEVENTS.replace("2140-01-01 10:05:00", "03/31/MRN12345")
    folder = write_mimic(tmp_path / "m", tables={"CHARTEVENTS": bad})
    with pytest.raises(DataValidationError,
                       match="CHARTEVENTS column CHARTTIME cannot be parsed .* data row 14") as err:
        read_mimic3(folder, chunksize=5)
    assert "MRN12345" not in str(err.value)
    bad_admission = ADMISSIONS.replace("2140-06-01 08:00:00", "yesterday")
    with pytest.raises(DataValidationError, match="ADMISSIONS column ADMITTIME cannot be parsed .* data row 3"):
        read_mimic3(write_mimic(tmp_path / "a", tables={"ADMISSIONS": bad_admission}))


def test_non_numeric_valuenum_is_a_clear_error(tmp_path):
    bad = CHARTEVENTS.replace(",85,85,bpm,", ",85,eighty-five,bpm,")
    with pytest.raises(DataValidationError, match="CHARTEVENTS table has a value that does not fit") as err:
        read_mimic3(write_mimic(tmp_path / "m", tables={"CHARTEVENTS": bad}))
    assert "eighty" not in str(err.value)


def test_unknown_unit_raises_or_is_counted(tmp_path):
    bad = LABEVENTS.replace("1.4,1.4,mg/dL", "1.4,1.4,furlongs")
    folder = write_mimic(tmp_path / "m", tables={"LABEVENTS": bad})
    with pytest.raises(DataValidationError, match=r"LABEVENTS, ITEMID 50912\): unknown unit 'furlongs' for concept "
                                                  r"'creatinine'"):
        read_mimic3(folder)
    p7 = _by_id(read_mimic3(folder, on_invalid="skip"))["7"]
    assert p7.meta["dropped"]["unknown_unit"] == 1


def test_bad_parameters(tmp_path):
    folder = write_mimic(tmp_path / "m")
    with pytest.raises(InvalidParameterError, match="The 'items' parameter of read_mimic3"):
        read_mimic3(folder, items="some")
    with pytest.raises(InvalidParameterError, match="The 'chunksize' parameter of read_mimic3"):
        read_mimic3(folder, chunksize=0)
    with pytest.raises(InvalidParameterError, match="MIMIC-III folder not found"):
        read_mimic3(tmp_path / "nowhere")


def test_front_door_recognises_the_folder(tmp_path):
    folder = write_mimic(tmp_path / "m", gz=True, lower=True)
    assert find_ehr_source(folder) == "mimic3"
    assert len(read_timelines(folder)) == 3


@pytest.mark.skipif(not (DEMO / "CHARTEVENTS.csv.gz").is_file(), reason="MIMIC-III demo not in ../shared/data")
def test_real_demo():
    timelines = read_mimic3(DEMO)
    assert len(timelines) == 100
    encounters = pd.concat([t.encounters for t in timelines])
    hospital = encounters[encounters["kind"] == "hospital"]
    assert len(hospital) == 129 and (encounters["kind"] == "icu").sum() == 136
    assert int(hospital["died"].sum()) == 40
    assert encounters.loc[encounters["kind"] == "icu", "parent_id"].isin(set(hospital["encounter_id"])).all()
    events = pd.concat([t.events for t in timelines])
    present = set(events["concept"].dropna())
    from medai.io.ehr_concepts import CONCEPTS

    assert present == set(CONCEPTS)  # every concept has rows in the demo
    assert events.groupby("concept")["value"].median()["heart_rate"] == pytest.approx(87, abs=3)
    assert events.groupby("concept")["value"].median()["temperature"] == pytest.approx(36.9, abs=0.3)
    dropped = {}
    for t in timelines:
        for k, v in t.meta["dropped"].items():
            dropped[k] = dropped.get(k, 0) + v
    assert dropped["error_flag"] == 648
    assert timelines[0].meta["ingest"]["CHARTEVENTS_rows_read"] == 758_355
    assert sum(len(t.diagnoses) for t in timelines) == 1761


@pytest.mark.skipif(not (DEMO / "CHARTEVENTS.csv.gz").is_file(), reason="MIMIC-III demo not in ../shared/data")
def test_real_demo_streaming_in_small_chunks_is_identical(tmp_path):
    patients = [10006, 10011, 40124]
    whole = read_mimic3(DEMO, patients=patients)
    chunked = read_mimic3(DEMO, patients=patients, chunksize=50_000)
    assert [t.patient_id for t in whole] == ["10006", "10011", "40124"]
    for a, b in zip(whole, chunked, strict=True):
        assert len(a.events) > 100
        pd.testing.assert_frame_equal(a.events, b.events)
        assert a.meta["dropped"] == b.meta["dropped"]
