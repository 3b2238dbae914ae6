"""The harmonised concept catalogue: unit conversions against known values, ranges, errors, and the MIMIC-III
ITEMIDs against the real dictionaries of the demo (when present)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError, UnknownNameError
from medai.io.ehr_concepts import (
    CHART_ITEM_TO_CONCEPT,
    CONCEPTS,
    LAB_ITEM_TO_CONCEPT,
    LOINC_TO_CONCEPT,
    harmonise,
    harmonise_array,
    normalise_unit,
)
from tests.conftest import SHARED_DATA

DEMO = SHARED_DATA / "mimic3_demo"
REQUIRED = ("heart_rate", "systolic_bp", "diastolic_bp", "mean_bp", "respiratory_rate", "spo2", "temperature",
            "gcs_total", "glucose", "fio2", "weight", "height", "ph", "creatinine", "sodium", "potassium",
            "chloride", "bicarbonate", "bun", "wbc", "hemoglobin", "hematocrit", "platelets", "lactate", "bilirubin")


@pytest.mark.parametrize(("concept", "value", "unit", "expected"), [
    ("temperature", 98.6, "Deg. F", 37.0),
    ("temperature", 212.0, "°F", None),  # boiling water (100 °C): out of the plausible range
    ("temperature", 104.0, "[degF]", 40.0),
    ("temperature", 310.15, "K", 37.0),
    ("temperature", 36.6, "?C", 36.6),
    ("weight", 154.0, "lbs", 69.85322498),
    ("weight", 16.0, "oz", 0.45359237),
    ("height", 70.0, "inches", 177.8),
    ("height", 1.8, "m", 180.0),
    ("glucose", 5.5, "mmol/L", 99.088),
    ("creatinine", 88.42, "µmol/L", 1.0),
    ("creatinine", 176.84, "umol/L", 2.0),
    ("fio2", 40.0, "%", 0.40),
    ("fio2", 0.5, "1", 0.5),
    ("hemoglobin", 120.0, "g/L", 12.0),
    ("hemoglobin", 10.0, "gm/dl", 10.0),
    ("hematocrit", 0.35, "L/L", 35.0),
    ("spo2", 0.97, "1", 97.0),
    ("bun", 10.0, "mmol/L", 28.014),
    ("lactate", 18.016, "mg/dL", 2.0),
    ("bilirubin", 17.104, "umol/L", 1.0),
    ("sodium", 140.0, "mEq/L", 140.0),
    ("wbc", 9.5, "K/uL", 9.5),
    ("platelets", 250.0, "10^9/L", 250.0),
    ("ph", 7.4, "units", 7.4),
    ("heart_rate", 80.0, "BPM", 80.0),
    ("respiratory_rate", 18.0, "insp/min", 18.0),
    ("systolic_bp", 120.0, "mmHg", 120.0),
    ("gcs_total", 15.0, "points", 15.0),
])
def test_conversions_match_known_values(concept, value, unit, expected):
    counts: dict[str, int] = {}
    result = harmonise(concept, value, unit, counts=counts)
    if expected is None:
        assert result is None and counts == {"out_of_range": 1}
    else:
        assert result is not None
        assert result[0] == pytest.approx(expected, rel=1e-6)
        assert result[1] == CONCEPTS[concept].unit


def test_out_of_range_is_dropped_and_counted_never_clipped():
    counts: dict[str, int] = {}
    assert harmonise("systolic_bp", 11647, "mmHg", counts=counts) is None
    assert harmonise("fio2", 0.5, "%", counts=counts) is None  # 0.005: a fraction charted as percent
    assert harmonise("heart_rate", float("nan"), "bpm", counts=counts) is None
    assert counts == {"out_of_range": 3}
    assert harmonise("heart_rate", 350, "/min") == (350.0, "/min")  # bounds are inclusive


def test_unknown_unit_raises_naming_concept_unit_and_known_units():
    with pytest.raises(DataValidationError, match=r"unknown unit 'torr' for concept 'fio2'.*Known units: 1, %"):
        harmonise("fio2", 50, "torr")
    counts: dict[str, int] = {}
    assert harmonise("fio2", 50, "torr", on_invalid="skip", counts=counts) is None
    assert counts == {"unknown_unit": 1}
    with pytest.raises(DataValidationError, match="unknown unit 'kg' for concept 'glucose'"):
        harmonise("glucose", 1.0, "kg")  # a known unit, but not of this concept


def test_bad_arguments():
    with pytest.raises(UnknownNameError, match="Unknown EHR concept 'heartrate'. Did you mean 'heart_rate'"):
        harmonise("heartrate", 80, "bpm")
    with pytest.raises(InvalidParameterError, match="The 'on_invalid' parameter of harmonise must be"):
        harmonise("heart_rate", 80, "bpm", on_invalid="ignore")


def test_harmonise_array_matches_scalar():
    values = np.array([95.0, 98.6, 120.0, np.nan])
    converted, ok = harmonise_array("temperature", values, "[degF]")
    assert converted[:3] == pytest.approx([35.0, 37.0, 48.888888], rel=1e-6)
    assert ok.tolist() == [True, True, False, False]


def test_unit_spellings():
    assert normalise_unit("Deg. F") == "[degF]"
    assert normalise_unit(" mEq / L ") == "mmol/L"
    assert normalise_unit("torr") is None and normalise_unit("") is None and normalise_unit(None) is None


def test_catalogue_is_complete_and_consistent():
    assert set(REQUIRED) <= set(CONCEPTS)
    for concept in CONCEPTS.values():
        assert concept.low < concept.high
        assert concept.conversions[concept.unit] == (1.0, 0.0)
        for unit in (*concept.chart_items.values(), *concept.lab_items.values()):
            assert unit in concept.conversions, (concept.name, unit)
    # Every ITEMID and LOINC code belongs to exactly one concept.
    items = [i for c in CONCEPTS.values() for i in c.chart_items]
    assert len(items) == len(set(items)) == len(CHART_ITEM_TO_CONCEPT)
    codes = [code for c in CONCEPTS.values() for code in c.loinc]
    assert len(codes) == len(set(codes)) == len(LOINC_TO_CONCEPT)


@pytest.mark.skipif(not (DEMO / "D_ITEMS.csv").is_file(), reason="MIMIC-III demo not in ../shared/data")
def test_itemids_exist_in_the_mimic_dictionaries():
    items = pd.read_csv(DEMO / "D_ITEMS.csv", usecols=["itemid", "linksto"])
    chart_items = set(items.loc[items["linksto"] == "chartevents", "itemid"])
    assert set(CHART_ITEM_TO_CONCEPT) <= chart_items, set(CHART_ITEM_TO_CONCEPT) - chart_items
    labs = pd.read_csv(DEMO / "D_LABITEMS.csv", usecols=["itemid", "loinc_code"])
    assert set(LAB_ITEM_TO_CONCEPT) <= set(labs["itemid"])
    # D_LABITEMS' own LOINC codes agree with the catalogue's for the lab items that carry one.
    with_loinc = labs[labs["itemid"].isin(list(LAB_ITEM_TO_CONCEPT)) & labs["loinc_code"].notna()]
    for item, loinc in zip(with_loinc["itemid"], with_loinc["loinc_code"], strict=True):
        assert loinc in CONCEPTS[LAB_ITEM_TO_CONCEPT[item]].loinc, (item, loinc)
