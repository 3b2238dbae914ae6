"""The harmonised concept catalogue of the EHR readers: vital signs and laboratory values under one name, one unit.

Every EHR reader (:mod:`medai.io.mimic`, :mod:`medai.io.fhir`, :mod:`medai.io.events_csv`) maps a source code to a
:class:`Concept` — a MIMIC-III ``ITEMID`` of CHARTEVENTS (CareVue ``< 220000``, MetaVision ``>= 220000``) or
LABEVENTS, a LOINC code, or the concept's own name — and converts the value to the concept's canonical unit with
:func:`harmonise`. Units are written as UCUM codes (``Cel``, ``mm[Hg]``, ``mg/dL``, ``10*3/uL``) because FHIR
``Quantity.code`` uses them; the spellings sources actually use (``Deg. F``, ``?F``, ``mEq/L``, ``K/uL``,
``gm/dl``, ``BPM``, ``inches``, ``lbs``) are aliases (:data:`UNIT_ALIASES`).

Values outside a concept's plausible physiological range (:attr:`Concept.low`, :attr:`Concept.high`, inclusive,
in the canonical unit) are *dropped and counted* by the readers, never clipped: a heart rate of 11647 is a typing
error, not a very fast heart.

Glasgow coma scale: CareVue charts the total (ITEMID 198) and the three components; MetaVision charts only the
components (220739 eye, 223900 verbal, 223901 motor). Both are kept as ``gcs_eye``, ``gcs_verbal``, ``gcs_motor``,
and :mod:`medai.io.mimic` adds a ``gcs_total`` event (source ``derived``) wherever MetaVision charted all three
components at the same time, so that ``gcs_total`` means the same in both systems. An intubated patient's verbal
score is kept as charted (MetaVision stores "No Response-ETT" as 1).

The ITEMIDs were checked against ``D_ITEMS`` / ``D_LABITEMS`` of MIMIC-III v1.4 and every concept has rows in the
100-patient demo; docs/ehr.md lists the mapping with labels and the unit table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

import numpy as np

from medai.core.errors import DataValidationError, invalid_parameter, unknown_name

LOINC_SYSTEM = "http://loinc.org"


class OnInvalid(StrEnum):
    """What a reader does with a value it cannot use (an unknown unit): stop, or skip it and count it."""

    RAISE = "raise"
    SKIP = "skip"


@dataclass(frozen=True)
class Concept:
    """One harmonised measurement.

    Attributes:
        name: the concept name used in ``Timeline.events["concept"]``.
        unit: canonical UCUM unit of ``value`` after :func:`harmonise`.
        low / high: plausible physiological range in ``unit`` (inclusive); values outside are dropped.
        conversions: UCUM unit -> ``(factor, offset)`` with ``canonical = value * factor + offset``; the canonical
            unit itself maps to ``(1, 0)``.
        chart_items: MIMIC-III CHARTEVENTS ITEMID -> the unit the item is recorded in (used when ``VALUEUOM`` is
            empty, which CareVue often leaves it).
        lab_items: MIMIC-III LABEVENTS ITEMID -> unit, as ``chart_items``.
        loinc: LOINC codes of the concept.
        description: what is measured, in words.
    """

    name: str
    unit: str
    low: float
    high: float
    conversions: Mapping[str, tuple[float, float]]
    chart_items: Mapping[int, str] = field(default_factory=dict)
    lab_items: Mapping[int, str] = field(default_factory=dict)
    loinc: tuple[str, ...] = ()
    description: str = ""

    def units(self) -> tuple[str, ...]:
        """The units :func:`harmonise` accepts for this concept (UCUM codes)."""
        return tuple(self.conversions)


def _same(unit: str) -> dict[str, tuple[float, float]]:
    return {unit: (1.0, 0.0)}


# Molar masses behind the mass <-> substance conversions (g/mol): glucose 180.16, creatinine 113.12,
# urea nitrogen 28.014 (2 N atoms of urea), lactate 90.08, bilirubin 584.66, haemoglobin monomer 16,114.
_GLUCOSE_MG_DL_PER_MMOL_L = 18.016
_CREATININE_UMOL_L_PER_MG_DL = 88.42
_BUN_MG_DL_PER_MMOL_L = 2.8014
_LACTATE_MMOL_L_PER_MG_DL = 1 / 9.008
_BILIRUBIN_UMOL_L_PER_MG_DL = 17.104
_HB_G_DL_PER_MMOL_L = 1.6114

_CONCEPT_LIST: tuple[Concept, ...] = (
    Concept("heart_rate", "/min", 0, 350, _same("/min"),
            chart_items={211: "/min", 220045: "/min"}, loinc=("8867-4",), description="heart rate"),
    Concept("systolic_bp", "mm[Hg]", 0, 375, _same("mm[Hg]"),
            chart_items={51: "mm[Hg]", 442: "mm[Hg]", 455: "mm[Hg]", 6701: "mm[Hg]", 220050: "mm[Hg]",
                         220179: "mm[Hg]", 225309: "mm[Hg]"},
            loinc=("8480-6", "8459-0", "76215-3"), description="systolic blood pressure (arterial line or cuff)"),
    Concept("diastolic_bp", "mm[Hg]", 0, 375, _same("mm[Hg]"),
            chart_items={8368: "mm[Hg]", 8440: "mm[Hg]", 8441: "mm[Hg]", 8555: "mm[Hg]", 220051: "mm[Hg]",
                         220180: "mm[Hg]", 225310: "mm[Hg]"},
            loinc=("8462-4", "8453-3", "76213-8"), description="diastolic blood pressure (arterial line or cuff)"),
    Concept("mean_bp", "mm[Hg]", 0, 375, _same("mm[Hg]"),
            chart_items={52: "mm[Hg]", 443: "mm[Hg]", 456: "mm[Hg]", 6702: "mm[Hg]", 220052: "mm[Hg]",
                         220181: "mm[Hg]", 225312: "mm[Hg]"},
            loinc=("8478-0", "76214-6"), description="mean arterial pressure (arterial line or cuff)"),
    Concept("respiratory_rate", "/min", 0, 150, _same("/min"),
            chart_items={615: "/min", 618: "/min", 220210: "/min", 224690: "/min"},
            loinc=("9279-1",), description="respiratory rate (total)"),
    Concept("spo2", "%", 0, 100, {"%": (1.0, 0.0), "1": (100.0, 0.0)},
            chart_items={646: "%", 220277: "%"}, loinc=("59408-5", "2708-6"),
            description="peripheral oxygen saturation (pulse oximetry)"),
    Concept("temperature", "Cel", 15, 47, {"Cel": (1.0, 0.0), "[degF]": (5 / 9, -32 * 5 / 9), "K": (1.0, -273.15)},
            chart_items={676: "Cel", 678: "[degF]", 223761: "[degF]", 223762: "Cel"},
            loinc=("8310-5", "8331-1", "8332-9"), description="body temperature"),
    Concept("gcs_total", "{score}", 3, 15, _same("{score}"),
            chart_items={198: "{score}"}, loinc=("9269-2",), description="Glasgow coma scale total (3-15)"),
    Concept("gcs_eye", "{score}", 1, 4, _same("{score}"),
            chart_items={184: "{score}", 220739: "{score}"}, loinc=("9267-6",),
            description="Glasgow coma scale eye opening (1-4)"),
    Concept("gcs_verbal", "{score}", 1, 5, _same("{score}"),
            chart_items={723: "{score}", 223900: "{score}"}, loinc=("9270-0",),
            description="Glasgow coma scale verbal response (1-5)"),
    Concept("gcs_motor", "{score}", 1, 6, _same("{score}"),
            chart_items={454: "{score}", 223901: "{score}"}, loinc=("9268-4",),
            description="Glasgow coma scale motor response (1-6)"),
    Concept("glucose", "mg/dL", 5, 2500, {"mg/dL": (1.0, 0.0), "mmol/L": (_GLUCOSE_MG_DL_PER_MMOL_L, 0.0)},
            chart_items={807: "mg/dL", 811: "mg/dL", 1529: "mg/dL", 3744: "mg/dL", 3745: "mg/dL",
                         220621: "mg/dL", 225664: "mg/dL", 226537: "mg/dL"},
            lab_items={50809: "mg/dL", 50931: "mg/dL"}, loinc=("2345-7", "2339-0", "41653-7", "15074-8"),
            description="blood glucose (serum, whole blood or fingerstick)"),
    Concept("fio2", "1", 0.21, 1.0, {"1": (1.0, 0.0), "%": (0.01, 0.0)},
            chart_items={189: "1", 190: "1", 3420: "%", 3422: "%", 223835: "%"},
            lab_items={50816: "%"}, loinc=("3150-0", "19994-3"), description="fraction of inspired oxygen"),
    Concept("weight", "kg", 0.2, 500,
            {"kg": (1.0, 0.0), "[lb_av]": (0.45359237, 0.0), "[oz_av]": (0.028349523125, 0.0), "g": (0.001, 0.0)},
            chart_items={580: "kg", 581: "kg", 762: "kg", 763: "kg", 3580: "kg", 3581: "[lb_av]",
                         3582: "[oz_av]", 224639: "kg", 226512: "kg", 226531: "[lb_av]"},
            loinc=("29463-7", "3141-9"), description="body weight"),
    Concept("height", "cm", 20, 275, {"cm": (1.0, 0.0), "[in_i]": (2.54, 0.0), "m": (100.0, 0.0)},
            chart_items={920: "[in_i]", 1394: "[in_i]", 3485: "cm", 3486: "[in_i]", 4187: "[in_i]", 4188: "cm",
                         226707: "[in_i]", 226730: "cm"},
            loinc=("8302-2",), description="body height"),
    Concept("ph", "[pH]", 6.3, 8.4, _same("[pH]"),
            chart_items={780: "[pH]", 860: "[pH]", 1126: "[pH]", 220274: "[pH]", 223830: "[pH]"},
            lab_items={50820: "[pH]"}, loinc=("11558-4", "2744-1", "2746-6"),
            description="blood pH (arterial or venous; urine and gastric pH are not mapped)"),
    Concept("creatinine", "mg/dL", 0.1, 40,
            {"mg/dL": (1.0, 0.0), "umol/L": (1 / _CREATININE_UMOL_L_PER_MG_DL, 0.0)},
            chart_items={791: "mg/dL", 1525: "mg/dL", 220615: "mg/dL"}, lab_items={50912: "mg/dL"},
            loinc=("2160-0", "38483-4"), description="serum creatinine"),
    Concept("sodium", "mmol/L", 50, 225, _same("mmol/L"),
            chart_items={837: "mmol/L", 1536: "mmol/L", 220645: "mmol/L", 226534: "mmol/L"},
            lab_items={50824: "mmol/L", 50983: "mmol/L"}, loinc=("2951-2", "2947-0"),
            description="sodium (serum or whole blood)"),
    Concept("potassium", "mmol/L", 0.5, 15, _same("mmol/L"),
            chart_items={829: "mmol/L", 1535: "mmol/L", 227442: "mmol/L", 227464: "mmol/L"},
            lab_items={50822: "mmol/L", 50971: "mmol/L"}, loinc=("2823-3", "6298-4"),
            description="potassium (serum or whole blood)"),
    Concept("chloride", "mmol/L", 40, 200, _same("mmol/L"),
            chart_items={788: "mmol/L", 1523: "mmol/L", 220602: "mmol/L", 226536: "mmol/L"},
            lab_items={50806: "mmol/L", 50902: "mmol/L"}, loinc=("2075-0", "2069-3"),
            description="chloride (serum or whole blood)"),
    Concept("bicarbonate", "mmol/L", 2, 70, _same("mmol/L"),
            chart_items={787: "mmol/L", 227443: "mmol/L"}, lab_items={50803: "mmol/L", 50882: "mmol/L"},
            loinc=("1963-8", "2028-9", "1959-6"),
            description="bicarbonate / total CO2 of the chemistry panel (not the blood-gas pCO2)"),
    Concept("bun", "mg/dL", 1, 300, {"mg/dL": (1.0, 0.0), "mmol/L": (_BUN_MG_DL_PER_MMOL_L, 0.0)},
            chart_items={781: "mg/dL", 1162: "mg/dL", 225624: "mg/dL"}, lab_items={51006: "mg/dL"},
            loinc=("3094-0", "6299-2"), description="blood urea nitrogen (urea in mmol/L is converted)"),
    Concept("wbc", "10*3/uL", 0, 1000, {"10*3/uL": (1.0, 0.0), "10*9/L": (1.0, 0.0)},
            chart_items={861: "10*3/uL", 1127: "10*3/uL", 1542: "10*3/uL", 220546: "10*3/uL"},
            lab_items={51300: "10*3/uL", 51301: "10*3/uL"}, loinc=("6690-2", "26464-8", "804-5"),
            description="white blood cell count"),
    Concept("hemoglobin", "g/dL", 1, 25,
            {"g/dL": (1.0, 0.0), "g/L": (0.1, 0.0), "mmol/L": (_HB_G_DL_PER_MMOL_L, 0.0)},
            chart_items={814: "g/dL", 220228: "g/dL"}, lab_items={50811: "g/dL", 51222: "g/dL"},
            loinc=("718-7", "30313-1"), description="haemoglobin"),
    Concept("hematocrit", "%", 5, 75, {"%": (1.0, 0.0), "1": (100.0, 0.0)},
            chart_items={813: "%", 220545: "%", 226540: "%"}, lab_items={50810: "%", 51221: "%"},
            loinc=("4544-3", "20570-8"), description="haematocrit"),
    Concept("platelets", "10*3/uL", 1, 2000, {"10*3/uL": (1.0, 0.0), "10*9/L": (1.0, 0.0)},
            chart_items={828: "10*3/uL", 227457: "10*3/uL"}, lab_items={51265: "10*3/uL"},
            loinc=("777-3", "26515-7"), description="platelet count"),
    Concept("lactate", "mmol/L", 0.1, 40, {"mmol/L": (1.0, 0.0), "mg/dL": (_LACTATE_MMOL_L_PER_MG_DL, 0.0)},
            chart_items={818: "mmol/L", 1531: "mmol/L", 225668: "mmol/L"}, lab_items={50813: "mmol/L"},
            loinc=("32693-4", "2524-7"), description="blood lactate"),
    Concept("bilirubin", "mg/dL", 0.05, 80,
            {"mg/dL": (1.0, 0.0), "umol/L": (1 / _BILIRUBIN_UMOL_L_PER_MG_DL, 0.0)},
            chart_items={848: "mg/dL", 1538: "mg/dL", 225690: "mg/dL"}, lab_items={50885: "mg/dL"},
            loinc=("1975-2", "42719-5"), description="total bilirubin"),
)

#: name -> :class:`Concept` (read-only).
CONCEPTS: Mapping[str, Concept] = MappingProxyType({c.name: c for c in _CONCEPT_LIST})

#: LOINC code -> concept name.
LOINC_TO_CONCEPT: Mapping[str, str] = MappingProxyType({code: c.name for c in _CONCEPT_LIST for code in c.loinc})
#: MIMIC-III CHARTEVENTS ITEMID -> concept name.
CHART_ITEM_TO_CONCEPT: Mapping[int, str] = MappingProxyType(
    {item: c.name for c in _CONCEPT_LIST for item in c.chart_items})
#: MIMIC-III LABEVENTS ITEMID -> concept name.
LAB_ITEM_TO_CONCEPT: Mapping[int, str] = MappingProxyType({item: c.name for c in _CONCEPT_LIST for item in c.lab_items})
#: CareVue items whose ``VALUEUOM`` is known to be wrong: "FiO2 Set" and "FiO2 (Analyzed)" say ``torr`` but hold
#: fractions (0.21-1). For these the item's declared unit is used whatever ``VALUEUOM`` says.
ITEM_UNIT_OVERRIDES: frozenset[int] = frozenset({189, 190})

# Spellings seen in MIMIC-III VALUEUOM, FHIR Quantity.unit and hand-made CSVs, after _unit_key (lower case, no
# spaces, µ/μ -> u, ° dropped) -> UCUM code.
UNIT_ALIASES: Mapping[str, str] = MappingProxyType({
    "/min": "/min", "bpm": "/min", "beats/min": "/min", "{beats}/min": "/min", "breaths/min": "/min",
    "{breaths}/min": "/min", "insp/min": "/min", "min-1": "/min", "1/min": "/min", "perminute": "/min",
    "mm[hg]": "mm[Hg]", "mmhg": "mm[Hg]",
    "%": "%", "percent": "%", "1": "1", "fraction": "1", "ratio": "1", "decfrc": "1", "l/l": "1",
    "cel": "Cel", "c": "Cel", "degc": "Cel", "deg.c": "Cel", "?c": "Cel", "celsius": "Cel",
    "[degf]": "[degF]", "f": "[degF]", "degf": "[degF]", "deg.f": "[degF]", "?f": "[degF]", "fahrenheit": "[degF]",
    "k": "K", "kelvin": "K",
    "{score}": "{score}", "score": "{score}", "points": "{score}", "{points}": "{score}",
    "mg/dl": "mg/dL", "mmol/l": "mmol/L", "meq/l": "mmol/L", "umol/l": "umol/L", "micromol/l": "umol/L",
    "kg": "kg", "kilograms": "kg", "[lb_av]": "[lb_av]", "lb": "[lb_av]", "lbs": "[lb_av]", "lbs.": "[lb_av]",
    "pounds": "[lb_av]", "[oz_av]": "[oz_av]", "oz": "[oz_av]", "g": "g",
    "cm": "cm", "[in_i]": "[in_i]", "in": "[in_i]", "inch": "[in_i]", "inches": "[in_i]", "m": "m",
    "[ph]": "[pH]", "ph": "[pH]", "units": "[pH]",
    "10*3/ul": "10*3/uL", "k/ul": "10*3/uL", "x10e3/ul": "10*3/uL", "10^3/ul": "10*3/uL", "thou/ul": "10*3/uL",
    "10*9/l": "10*9/L", "10^9/l": "10*9/L", "x10e9/l": "10*9/L",
    "g/dl": "g/dL", "gm/dl": "g/dL", "g/l": "g/L",
})

_UNIT_SPACES = re.compile(r"\s+")


def _unit_key(unit: str) -> str:
    return _UNIT_SPACES.sub("", str(unit)).lower().replace("µ", "u").replace("μ", "u").replace("°", "deg")


def normalise_unit(unit: str | None) -> str | None:
    """A unit spelling -> its UCUM code (``"Deg. F"`` -> ``"[degF]"``, ``"mEq/L"`` -> ``"mmol/L"``), None when the
    spelling is not known or empty. ``units`` (MIMIC's pH unit) maps to ``[pH]``."""
    if unit is None or (isinstance(unit, float) and math.isnan(unit)):
        return None
    key = _unit_key(unit)
    if not key:
        return None
    return UNIT_ALIASES.get(key)  # "°F" became "degf" in _unit_key, an alias


def get_concept(name: str) -> Concept:
    """The concept called ``name``; UnknownNameError (with the closest name) otherwise."""
    try:
        return CONCEPTS[name]
    except KeyError:
        raise unknown_name("EHR concept", name, CONCEPTS) from None


def conversion(concept: str | Concept, unit: str | None) -> tuple[float, float] | None:
    """``(factor, offset)`` taking ``unit`` to the concept's canonical unit, or None when the unit is not known
    for that concept (an empty unit is taken as the canonical unit only for dimensionless scores)."""
    concept = concept if isinstance(concept, Concept) else get_concept(concept)
    code = normalise_unit(unit)
    if code is None and concept.unit == "{score}" and (unit is None or not _unit_key(unit)):
        return 1.0, 0.0
    if code is None:
        return None
    return concept.conversions.get(code)


def unknown_unit_error(concept: Concept, unit: object, where: str) -> DataValidationError:
    """The message for a unit not known for ``concept``: names where, the concept, the unit and the known units
    (units are not patient data)."""
    return DataValidationError(
        f"{where}: unknown unit {str(unit)!r} for concept '{concept.name}'. Known units: "
        f"{', '.join(concept.units())} (and their usual spellings, see medai.io.ehr_concepts.UNIT_ALIASES). "
        "Convert the value to one of them, or read with on_invalid='skip' to drop such values and count them.")


def harmonise(concept: str, value: float, unit: str | None, *, on_invalid: OnInvalid | str = OnInvalid.RAISE,
              counts: dict[str, int] | None = None) -> tuple[float, str] | None:
    """Convert one value of ``concept`` to its canonical unit and check its plausible range.

    Args:
        concept: a name of :data:`CONCEPTS`.
        value: the value in ``unit``.
        unit: the unit as written by the source (UCUM code or a usual spelling, see :data:`UNIT_ALIASES`).
        on_invalid: ``"raise"`` — an unknown unit raises; ``"skip"`` — it returns None and counts
            ``unknown_unit`` in ``counts``.
        counts: reason -> count, updated in place with ``out_of_range`` and ``unknown_unit``.

    Returns:
        ``(value, canonical unit)``, or None when the value is out of the plausible range (counted as
        ``out_of_range``; never clipped), not a finite number, or (with ``on_invalid="skip"``) in an unknown unit.

    Raises:
        UnknownNameError: ``concept`` is not in the catalogue.
        DataValidationError: the unit is not known for the concept (with ``on_invalid="raise"``); the message
            names the concept and the unit and lists the known units.
    """
    mode = _on_invalid(on_invalid, "harmonise")
    spec = get_concept(concept)
    counts = {} if counts is None else counts
    factor_offset = conversion(spec, unit)
    if factor_offset is None:
        if mode is OnInvalid.RAISE:
            raise unknown_unit_error(spec, unit, "harmonise")
        counts["unknown_unit"] = counts.get("unknown_unit", 0) + 1
        return None
    converted = float(value) * factor_offset[0] + factor_offset[1]
    if not math.isfinite(converted) or not spec.low <= converted <= spec.high:
        counts["out_of_range"] = counts.get("out_of_range", 0) + 1
        return None
    return converted, spec.unit


def harmonise_array(concept: str | Concept, values: np.ndarray, unit: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`harmonise` for many values of one concept in one (known) unit.

    Returns:
        ``(converted, in_range)``: float64 arrays of the input's shape; ``in_range`` is False where the converted
        value is outside the plausible range or not finite.

    Raises:
        DataValidationError: the unit is not known for the concept.
    """
    spec = concept if isinstance(concept, Concept) else get_concept(concept)
    factor_offset = conversion(spec, unit)
    if factor_offset is None:
        raise unknown_unit_error(spec, unit, "harmonise_array")
    converted = np.asarray(values, dtype=float) * factor_offset[0] + factor_offset[1]
    with np.errstate(invalid="ignore"):
        in_range = np.isfinite(converted) & (converted >= spec.low) & (converted <= spec.high)
    return converted, in_range


def _on_invalid(value: OnInvalid | str, owner: str) -> OnInvalid:
    try:
        return OnInvalid(value)
    except ValueError:
        raise invalid_parameter("on_invalid", owner, "'raise' or 'skip'", value) from None
