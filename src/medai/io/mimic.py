"""MIMIC-III tables -> one :class:`~medai.core.timeline.Timeline` per patient.

Tables read (``.csv`` or ``.csv.gz``, upper- or lower-case file and column names, as PhysioNet ships the full
database and the demo):

==============  =========================================================================================
PATIENTS        sex (``GENDER``), ``DOB``, ``DOD`` (date of death, in or out of hospital)
ADMISSIONS      hospital encounters ``HADM_ID``: ``ADMITTIME``-``DISCHTIME``, died = ``HOSPITAL_EXPIRE_FLAG``,
                ``DISCHARGE_LOCATION``
ICUSTAYS        ICU encounters ``icu-<ICUSTAY_ID>`` (parent = ``HADM_ID``): ``INTIME``-``OUTTIME``; died when the
                admission's ``DEATHTIME`` falls within the stay
DIAGNOSES_ICD   the diagnoses table (system ``icd9``, ``SEQ_NUM`` as seq)
CHARTEVENTS     events (system ``mimic-itemid``), streamed; rows with ``ERROR = 1`` dropped and counted
LABEVENTS       events (system ``mimic-labitem``), streamed; outpatient labs (no ``HADM_ID``) keep encounter None
==============  =========================================================================================

CHARTEVENTS of the full database is 330 million rows (33 GB), so both event tables are read with
``pd.read_csv(chunksize=..., usecols=..., dtype=...)`` and every chunk is reduced to the wanted ITEMIDs (and
patients) before it is kept: memory is one chunk plus the rows kept. Event times are ``CHARTTIME`` (when the
value was measured, not when it was stored).

Values: ``VALUENUM`` with ``VALUEUOM`` (or, where CareVue left it empty, the unit the ITEMID is recorded in) is
harmonised to the concept's unit (:mod:`medai.io.ehr_concepts`); values outside the plausible range are dropped
and counted; a non-numeric ``VALUE`` goes to ``text``. Dates stay MIMIC's shifted dates.
"""

from __future__ import annotations

import time as _time
from collections.abc import Iterable
from contextlib import nullcontext
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medai.core.errors import DataValidationError, InvalidParameterError, invalid_parameter
from medai.core.timeline import (
    DIAGNOSIS_COLUMNS,
    ENCOUNTER_COLUMNS,
    EVENT_COLUMNS,
    Timeline,
)
from medai.io.ehr_concepts import (
    CHART_ITEM_TO_CONCEPT,
    CONCEPTS,
    ITEM_UNIT_OVERRIDES,
    LAB_ITEM_TO_CONCEPT,
    OnInvalid,
    _on_invalid,
    conversion,
    unknown_unit_error,
)

READER = "mimic3"
REQUIRED_TABLES = ("PATIENTS", "ADMISSIONS", "ICUSTAYS", "DIAGNOSES_ICD", "CHARTEVENTS", "LABEVENTS")
#: MetaVision GCS components (eye, verbal, motor) summed into a derived ``gcs_total`` (CareVue charts the total).
METAVISION_GCS_ITEMS = (220739, 223900, 223901)

_COLUMNS = {
    "PATIENTS": (("SUBJECT_ID", "GENDER", "DOB"), ("DOD",)),
    "ADMISSIONS": (("SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "HOSPITAL_EXPIRE_FLAG"),
                   ("DEATHTIME", "DISCHARGE_LOCATION", "ETHNICITY")),
    "ICUSTAYS": (("SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "INTIME", "OUTTIME"), ()),
    "DIAGNOSES_ICD": (("SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"), ()),
    "CHARTEVENTS": (("SUBJECT_ID", "HADM_ID", "ITEMID", "CHARTTIME", "VALUE", "VALUENUM", "VALUEUOM"), ("ERROR",)),
    "LABEVENTS": (("SUBJECT_ID", "HADM_ID", "ITEMID", "CHARTTIME", "VALUE", "VALUENUM", "VALUEUOM"), ()),
}
_EVENT_DTYPES = {"SUBJECT_ID": "int64", "HADM_ID": "float64", "ITEMID": "int64", "CHARTTIME": str, "VALUE": str,
                 "VALUENUM": "float64", "VALUEUOM": str, "ERROR": "float64"}


class MimicItems(StrEnum):
    """Which event rows :func:`read_mimic3` keeps: the mapped concepts only, or every ITEMID."""

    CONCEPTS = "concepts"
    ALL = "all"


# ------------------------------------------------------------------------------------------------ file helpers
def find_table(folder: Path, table: str) -> Path | None:
    """``TABLE.csv``, ``TABLE.csv.gz``, ``table.csv`` or ``table.csv.gz`` in ``folder`` (any case), or None."""
    wanted = {f"{table}.csv".lower(), f"{table}.csv.gz".lower()}
    try:
        matches = sorted(p for p in Path(folder).iterdir() if p.name.lower() in wanted and p.is_file())
    except OSError:
        return None
    # Prefer the uncompressed file when both exist: it reads faster.
    return min(matches, key=lambda p: p.suffix == ".gz") if matches else None


def _require_table(folder: Path, table: str) -> Path:
    path = find_table(folder, table)
    if path is None:
        raise DataValidationError(
            f"MIMIC-III folder {folder}: table {table} not found. Expected {table}.csv or {table}.csv.gz (upper or "
            f"lower case) in that folder; the reader needs {', '.join(REQUIRED_TABLES)}.")
    return path


def _column_map(path: Path, table: str) -> dict[str, str]:
    """Upper-case name -> the name in the file, for the columns this reader uses; checks the required ones."""
    try:
        header = pd.read_csv(path, nrows=0)
    except (ValueError, OSError, EOFError) as error:
        raise DataValidationError(
            f"{path}: cannot read the {table} table as CSV ({type(error).__name__}). Check that the file is a "
            "complete (gzip) CSV.") from None
    by_upper = {str(c).upper(): str(c) for c in header.columns}
    required, optional = _COLUMNS[table]
    missing = [c for c in required if c not in by_upper]
    if missing:
        raise DataValidationError(
            f"{path}: the {table} table lacks column(s) {', '.join(missing)}. Expected at least "
            f"{', '.join(required)} (MIMIC-III v1.4 names, any case).")
    return {c: by_upper[c] for c in (*required, *optional) if c in by_upper}


def _read_small(path: Path, table: str, patients: np.ndarray | None) -> pd.DataFrame:
    columns = _column_map(path, table)
    try:
        frame = pd.read_csv(path, usecols=list(columns.values()), dtype=str, keep_default_na=True)
    except (ValueError, OSError, EOFError) as error:
        raise DataValidationError(f"{path}: cannot read the {table} table ({type(error).__name__}).") from None
    frame = frame.rename(columns={v: k for k, v in columns.items()})
    frame["SUBJECT_ID"] = _integers(frame["SUBJECT_ID"], path, table, "SUBJECT_ID")
    if patients is not None:
        frame = frame[frame["SUBJECT_ID"].isin(patients)]
    return frame


def _integers(column: pd.Series, path: Path, table: str, name: str, *, allow_missing: bool = False) -> pd.Series:
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & (column.notna() if allow_missing else True) | (numbers.notna() & (numbers % 1 != 0))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(
            f"{path}: the {table} column {name} must hold integer ids; data row {column.index[row] + 1} does not. "
            "Fix or remove that row.")
    return numbers if allow_missing else numbers.astype("int64")


def _times(column: pd.Series, path: Path, table: str, name: str, *, allow_missing: bool) -> pd.Series:
    """Parse ISO times; an unparseable one raises naming table, column and data row (never the value)."""
    parsed = pd.to_datetime(column, errors="coerce", format="ISO8601")
    bad = parsed.isna() & (column.notna() if allow_missing else True)
    if bad.any():
        row = int(column.index[np.flatnonzero(bad.to_numpy())[0]]) + 1
        what = "is missing" if pd.isna(column[bad].iloc[0]) else "cannot be parsed as a date-time"
        raise DataValidationError(
            f"{path}: the {table} column {name} {what} in data row {row} ({int(bad.sum())} row(s) in all). Expected "
            "'YYYY-MM-DD HH:MM:SS'; fix or remove those rows.")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)
    return parsed.astype("datetime64[ns]")


def _id_strings(values: np.ndarray) -> np.ndarray:
    """Float ids (NaN = none) -> object array of ``'123'`` / None, converting each distinct id once."""
    values = np.asarray(values, dtype=float)
    out = np.full(len(values), None, dtype=object)
    present = ~np.isnan(values)
    if present.any():
        unique, inverse = np.unique(values[present], return_inverse=True)
        out[present] = np.array([str(int(v)) for v in unique], dtype=object)[inverse]
    return out


# ------------------------------------------------------------------------------------------------ streaming
class _Rate:
    """rows/s text for the progress bar."""

    def __init__(self) -> None:
        self.started = _time.perf_counter()

    def text(self, rows: int) -> str:
        elapsed = max(_time.perf_counter() - self.started, 1e-9)
        return f"{rows / elapsed:,.0f} rows/s"


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,.0f} rows"),
                    TextColumn("{task.fields[rate]}"), TextColumn("kept {task.fields[kept]:,}"), TimeElapsedColumn())


def _unit_factors(frame: pd.DataFrame, concepts: np.ndarray, item_units: dict[int, str], path: Path, table: str,
                  mode: OnInvalid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row ``(factor, offset, known)`` from each distinct (ITEMID, VALUEUOM) pair of the mapped rows."""
    n = len(frame)
    factor, offset, known = np.ones(n), np.zeros(n), np.ones(n, dtype=bool)
    items = frame["ITEMID"].to_numpy()
    uoms = frame["VALUEUOM"].fillna("").to_numpy(dtype=object)
    groups = pd.DataFrame({"i": items, "u": uoms}).groupby(["i", "u"], sort=False).indices
    for (item, uom), rows in groups.items():
        concept = CONCEPTS[concepts[rows[0]]]
        declared = item_units[int(item)]
        # The ITEMID fixes the measurement; VALUEUOM (free text in CareVue) is used when it names a unit of the
        # concept, so that a lab reported in another unit is still converted correctly.
        unit = declared if (not uom or int(item) in ITEM_UNIT_OVERRIDES) else uom
        found = conversion(concept, unit)
        if found is None:
            if mode is OnInvalid.RAISE:
                raise unknown_unit_error(concept, unit, f"{path} ({table}, ITEMID {int(item)})")
            known[rows] = False
            continue
        factor[rows], offset[rows] = found
    return factor, offset, known


def _stream_events(path: Path, table: str, *, keep_all: bool, chunksize: int, patients: np.ndarray | None,
                   mode: OnInvalid, progress: Any, stats: dict[str, int]) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Read one event table chunk by chunk; return the kept rows and per-patient drop counts."""
    columns = _column_map(path, table)
    item_map = CHART_ITEM_TO_CONCEPT if table == "CHARTEVENTS" else LAB_ITEM_TO_CONCEPT
    item_units = {item: (CONCEPTS[c].chart_items if table == "CHARTEVENTS" else CONCEPTS[c].lab_items)[item]
                  for item, c in item_map.items()}
    wanted = np.fromiter(item_map, dtype="int64")
    dtypes = {columns[c]: _EVENT_DTYPES[c] for c in columns}
    kept: list[pd.DataFrame] = []
    drops: list[pd.DataFrame] = []
    task = progress.add_task(table, total=None, rate="", kept=0) if progress is not None else None
    rate, rows_read, rows_kept = _Rate(), 0, 0
    try:
        reader = pd.read_csv(path, usecols=list(columns.values()), dtype=dtypes, chunksize=chunksize)
        for chunk in reader:
            chunk = chunk.rename(columns={v: k for k, v in columns.items()})
            rows_read += len(chunk)
            if patients is not None:
                chunk = chunk[chunk["SUBJECT_ID"].isin(patients)]
            if "ERROR" in chunk:
                error = (chunk["ERROR"] == 1).to_numpy()
                if error.any():
                    drops.append(_drop_counts(chunk.loc[error, "SUBJECT_ID"], "error_flag"))
                    chunk = chunk.loc[~error]
            if not keep_all:
                chunk = chunk[chunk["ITEMID"].isin(wanted)]
            if len(chunk):
                piece = _events_from_chunk(chunk, table, path, item_map, item_units, mode, drops)
                rows_kept += len(piece)
                kept.append(piece)
            if task is not None:
                progress.update(task, completed=rows_read, rate=rate.text(rows_read), kept=rows_kept)
    except DataValidationError:
        raise
    except ValueError as error:  # a dtype conversion failed: a non-numeric id or VALUENUM
        raise DataValidationError(
            f"{path}: the {table} table has a value that does not fit its column type ({error.__class__.__name__}: "
            "a non-integer SUBJECT_ID/HADM_ID/ITEMID or a non-numeric VALUENUM). Check the file is MIMIC-III's "
            "table, complete and unmodified.") from None
    except (OSError, EOFError) as error:
        raise DataValidationError(
            f"{path}: cannot read the {table} table ({type(error).__name__}); the file may be truncated.") from None
    stats[f"{table}_rows_read"] = rows_read
    stats[f"{table}_rows_kept"] = rows_kept
    frame = pd.concat(kept, ignore_index=True) if kept else _empty_kept()
    return frame, drops


def _empty_kept() -> pd.DataFrame:
    return pd.DataFrame({"subject_id": pd.Series(dtype="int64"), "hadm_id": pd.Series(dtype=float),
                         "time": pd.Series(dtype="datetime64[ns]"), "itemid": pd.Series(dtype="int64"),
                         "concept": pd.Series(dtype=object), "value": pd.Series(dtype=float),
                         "text": pd.Series(dtype=object), "unit": pd.Series(dtype=object),
                         "source": pd.Series(dtype=object)})


def _drop_counts(subjects: pd.Series, reason: str) -> pd.DataFrame:
    counts = subjects.value_counts()
    return pd.DataFrame({"subject_id": counts.index.to_numpy(dtype="int64"), "reason": reason,
                         "n": counts.to_numpy(dtype="int64")})


def _events_from_chunk(chunk: pd.DataFrame, table: str, path: Path, item_map, item_units, mode: OnInvalid,
                       drops: list[pd.DataFrame]) -> pd.DataFrame:
    times = _times(chunk["CHARTTIME"], path, table, "CHARTTIME", allow_missing=False)
    concepts = chunk["ITEMID"].map(item_map).to_numpy(dtype=object)
    mapped = pd.notna(concepts)
    numbers = chunk["VALUENUM"].to_numpy(dtype=float)
    has_number = ~np.isnan(numbers)
    raw_text = chunk["VALUE"].to_numpy(dtype=object)
    has_text = pd.notna(raw_text)
    value = numbers.copy()
    unit = chunk["VALUEUOM"].to_numpy(dtype=object).copy()
    keep = has_number | has_text
    if (~keep).any():
        drops.append(_drop_counts(chunk.loc[~keep, "SUBJECT_ID"], "no_value"))

    harmonise_rows = mapped & has_number
    if harmonise_rows.any():
        sub = chunk.loc[harmonise_rows]
        factor, offset, known = _unit_factors(sub, concepts[harmonise_rows], item_units, path, table, mode)
        converted = numbers[harmonise_rows] * factor + offset
        names = concepts[harmonise_rows]
        low = np.array([CONCEPTS[c].low for c in names]) if len(names) else np.array([])
        high = np.array([CONCEPTS[c].high for c in names]) if len(names) else np.array([])
        in_range = (converted >= low) & (converted <= high)
        positions = np.flatnonzero(harmonise_rows)
        value[positions] = converted
        unit[positions] = np.array([CONCEPTS[c].unit for c in names], dtype=object)
        unknown = ~known
        out = known & ~in_range
        if unknown.any():
            drops.append(_drop_counts(sub.loc[unknown, "SUBJECT_ID"], "unknown_unit"))
        if out.any():
            drops.append(_drop_counts(sub.loc[out, "SUBJECT_ID"], "out_of_range"))
        keep[positions[unknown | out]] = False
    # Mapped rows without a number keep their text (e.g. "Other/Remarks") and lose the source unit.
    unit[mapped & ~has_number] = None
    text = np.where(has_number, None, raw_text)
    return pd.DataFrame({
        "subject_id": chunk["SUBJECT_ID"].to_numpy()[keep], "hadm_id": chunk["HADM_ID"].to_numpy()[keep],
        "time": times.to_numpy()[keep], "itemid": chunk["ITEMID"].to_numpy()[keep],
        "concept": concepts[keep], "value": value[keep], "text": text[keep], "unit": unit[keep],
        "source": table,
    })


def _derive_gcs_total(events: pd.DataFrame) -> pd.DataFrame:
    """``gcs_total`` = eye + verbal + motor wherever MetaVision charted all three at the same time."""
    parts = events[events["itemid"].isin(METAVISION_GCS_ITEMS) & events["value"].notna()]
    if parts.empty:
        return events.iloc[:0]
    grouped = parts.groupby(["subject_id", "time"], sort=False).agg(
        value=("value", "sum"), n=("itemid", "nunique"), rows=("itemid", "size"), hadm_id=("hadm_id", "first"))
    complete = grouped[(grouped["n"] == 3) & (grouped["rows"] == 3)].reset_index()
    return pd.DataFrame({"subject_id": complete["subject_id"].to_numpy(dtype="int64"),
                         "hadm_id": complete["hadm_id"].to_numpy(dtype=float),
                         "time": complete["time"].to_numpy(), "itemid": -1, "concept": "gcs_total",
                         "value": complete["value"].to_numpy(dtype=float), "text": None,
                         "unit": CONCEPTS["gcs_total"].unit, "source": "derived"})


# ------------------------------------------------------------------------------------------------ main reader
def _patient_filter(patients: Iterable[int | str] | None) -> np.ndarray | None:
    if patients is None:
        return None
    if isinstance(patients, str | int):
        patients = [patients]
    try:
        return np.array(sorted({int(p) for p in patients}), dtype="int64")
    except (TypeError, ValueError):
        raise invalid_parameter("patients", "read_mimic3", "None or an iterable of integer SUBJECT_IDs",
                                type(patients).__name__) from None


def read_mimic3(folder: str | Path, *, items: MimicItems | str = MimicItems.CONCEPTS, chunksize: int = 1_000_000,
                progress: bool = False, patients: Iterable[int | str] | None = None,
                on_invalid: OnInvalid | str = OnInvalid.RAISE) -> list[Timeline]:
    """Read a MIMIC-III folder (the full database or the demo) into one timeline per patient.

    Args:
        folder: the folder holding the tables (see the module docstring).
        items: ``"concepts"`` keeps the events of mapped ITEMIDs (:mod:`medai.io.ehr_concepts`), harmonised;
            ``"all"`` also keeps every other ITEMID with its raw value and ``VALUEUOM`` (concept None).
        chunksize: rows per chunk when streaming CHARTEVENTS / LABEVENTS (bounds the memory of reading).
        progress: show a rich progress bar (rows read, rows/s, rows kept) per event table.
        patients: only these ``SUBJECT_ID``s (all when None).
        on_invalid: ``"raise"`` on a unit that is not known for a mapped concept, or ``"skip"``: drop such values
            and count them as ``unknown_unit``.

    Returns:
        Timelines sorted by ``SUBJECT_ID`` (patients of PATIENTS, also those without admissions), each checked.
        ``meta``: ``source`` (the folder), ``reader`` ("mimic3"), ``dropped`` (reason -> count for the patient:
        ``out_of_range``, ``error_flag``, ``no_value``, ``unknown_unit``), ``ingest`` (rows read and kept per
        event table, the same in every timeline).

    Raises:
        InvalidParameterError: a bad ``items``, ``chunksize``, ``patients`` or ``on_invalid``; a missing folder.
        DataValidationError: a missing table (names the file expected and where), a missing column (table and
            column), an unparseable time (table, column and data row, never the value), a non-integer id, a unit
            not known for a mapped concept (with ``on_invalid="raise"``).
    """
    folder = Path(folder)
    try:
        keep_all = MimicItems(items) is MimicItems.ALL
    except ValueError:
        raise invalid_parameter("items", "read_mimic3", "'concepts' or 'all'", items) from None
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise invalid_parameter("chunksize", "read_mimic3", "a positive integer number of rows", chunksize)
    mode = _on_invalid(on_invalid, "read_mimic3")
    if not folder.is_dir():
        raise InvalidParameterError(f"MIMIC-III folder not found: {folder}. Pass the folder holding ADMISSIONS.csv "
                                    "(.gz), ICUSTAYS, PATIENTS, DIAGNOSES_ICD, CHARTEVENTS and LABEVENTS.")
    wanted = _patient_filter(patients)
    paths = {table: _require_table(folder, table) for table in REQUIRED_TABLES}
    for table in ("CHARTEVENTS", "LABEVENTS"):
        _column_map(paths[table], table)  # fail on a missing column before the long read

    patients_frame = _read_small(paths["PATIENTS"], "PATIENTS", wanted)
    admissions = _read_small(paths["ADMISSIONS"], "ADMISSIONS", wanted)
    icustays = _read_small(paths["ICUSTAYS"], "ICUSTAYS", wanted)
    diagnoses = _read_small(paths["DIAGNOSES_ICD"], "DIAGNOSES_ICD", wanted)
    encounters = _encounters(admissions, icustays, paths)
    diagnosis_table = _diagnoses(diagnoses, paths["DIAGNOSES_ICD"])

    stats: dict[str, int] = {}
    with _progress(progress) as bar:
        chart, chart_drops = _stream_events(paths["CHARTEVENTS"], "CHARTEVENTS", keep_all=keep_all,
                                            chunksize=chunksize, patients=wanted, mode=mode, progress=bar,
                                            stats=stats)
        labs, lab_drops = _stream_events(paths["LABEVENTS"], "LABEVENTS", keep_all=keep_all, chunksize=chunksize,
                                         patients=wanted, mode=mode, progress=bar, stats=stats)
    events = pd.concat([chart, labs, _derive_gcs_total(chart)], ignore_index=True)
    dropped = _dropped_by_patient(chart_drops + lab_drops)
    return _assemble(folder, patients_frame, encounters, diagnosis_table, events, dropped, stats, paths,
                     _first_ethnicity(admissions))


def _first_ethnicity(admissions: pd.DataFrame) -> dict[int, str]:
    """ADMISSIONS.ETHNICITY of each patient's first admission (MIMIC records it per admission)."""
    ethnicity: dict[int, str] = {}
    if "ETHNICITY" not in admissions:
        return ethnicity
    first = admissions.assign(_t=pd.to_datetime(admissions["ADMITTIME"], errors="coerce")).sort_values("_t")
    for subject, value in zip(first["SUBJECT_ID"], first["ETHNICITY"]):
        if pd.notna(value) and pd.notna(subject):
            ethnicity.setdefault(int(subject), str(value))
    return ethnicity


def _encounters(admissions: pd.DataFrame, icustays: pd.DataFrame, paths: dict[str, Path]) -> pd.DataFrame:
    a_path, i_path = paths["ADMISSIONS"], paths["ICUSTAYS"]
    hadm = _integers(admissions["HADM_ID"], a_path, "ADMISSIONS", "HADM_ID")
    start = _times(admissions["ADMITTIME"], a_path, "ADMISSIONS", "ADMITTIME", allow_missing=False)
    end = _times(admissions["DISCHTIME"], a_path, "ADMISSIONS", "DISCHTIME", allow_missing=True)
    death = (_times(admissions["DEATHTIME"], a_path, "ADMISSIONS", "DEATHTIME", allow_missing=True)
             if "DEATHTIME" in admissions else pd.Series(pd.NaT, index=admissions.index, dtype="datetime64[ns]"))
    flag = pd.to_numeric(admissions["HOSPITAL_EXPIRE_FLAG"], errors="coerce")
    if flag.isna().any() or not flag.isin([0, 1]).all():
        row = int(admissions.index[np.flatnonzero((flag.isna() | ~flag.isin([0, 1])).to_numpy())[0]]) + 1
        raise DataValidationError(f"{a_path}: the ADMISSIONS column HOSPITAL_EXPIRE_FLAG must be 0 or 1; data row "
                                  f"{row} is not. Fix or remove that row.")
    location = (admissions["DISCHARGE_LOCATION"].astype(object).where(admissions["DISCHARGE_LOCATION"].notna(), None)
                if "DISCHARGE_LOCATION" in admissions else None)
    hospital = pd.DataFrame({
        "subject_id": admissions["SUBJECT_ID"].to_numpy(), "encounter_id": hadm.astype(str).to_numpy(dtype=object),
        "kind": "hospital", "parent_id": None, "start": start.to_numpy(), "end": end.to_numpy(),
        "died": flag.to_numpy() == 1, "discharge_location": location.to_numpy() if location is not None else None,
        "_death": death.to_numpy()})
    stay = _integers(icustays["ICUSTAY_ID"], i_path, "ICUSTAYS", "ICUSTAY_ID")
    parent = _integers(icustays["HADM_ID"], i_path, "ICUSTAYS", "HADM_ID")
    intime = _times(icustays["INTIME"], i_path, "ICUSTAYS", "INTIME", allow_missing=False)
    outtime = _times(icustays["OUTTIME"], i_path, "ICUSTAYS", "OUTTIME", allow_missing=True)
    icu = pd.DataFrame({
        "subject_id": icustays["SUBJECT_ID"].to_numpy(), "encounter_id": ("icu-" + stay.astype(str)).to_numpy(),
        "kind": "icu", "parent_id": parent.astype(str).to_numpy(dtype=object), "start": intime.to_numpy(),
        "end": outtime.to_numpy(), "discharge_location": None})
    deaths = hospital.set_index("encounter_id")["_death"]
    icu_death = icu["parent_id"].map(deaths)
    # Died in the ICU: the admission's DEATHTIME within [INTIME, OUTTIME] (OUTTIME missing = still there).
    icu["died"] = (icu_death.notna() & (icu_death >= icu["start"])
                   & (icu["end"].isna() | (icu_death <= icu["end"]))).to_numpy(dtype=bool)
    table = pd.concat([hospital.drop(columns="_death"), icu], ignore_index=True)
    table["start"] = table["start"].astype("datetime64[ns]")
    table["end"] = table["end"].astype("datetime64[ns]")
    return table


def _diagnoses(diagnoses: pd.DataFrame, path: Path) -> pd.DataFrame:
    hadm = _integers(diagnoses["HADM_ID"], path, "DIAGNOSES_ICD", "HADM_ID")
    seq = pd.to_numeric(diagnoses["SEQ_NUM"], errors="coerce")
    keep = diagnoses["ICD9_CODE"].notna().to_numpy()
    return pd.DataFrame({"subject_id": diagnoses["SUBJECT_ID"].to_numpy()[keep],
                         "encounter_id": hadm.astype(str).to_numpy(dtype=object)[keep], "system": "icd9",
                         "code": diagnoses["ICD9_CODE"].astype(str).str.strip().to_numpy(dtype=object)[keep],
                         "seq": seq.to_numpy(dtype=float)[keep]})


def _dropped_by_patient(drops: list[pd.DataFrame]) -> dict[int, dict[str, int]]:
    if not drops:
        return {}
    totals = pd.concat(drops, ignore_index=True).groupby(["subject_id", "reason"])["n"].sum()
    out: dict[int, dict[str, int]] = {}
    for (subject, reason), n in totals.items():
        out.setdefault(int(subject), {})[str(reason)] = int(n)
    return out


def _groups(frame: pd.DataFrame) -> dict[int, pd.DataFrame]:
    return {int(k): g for k, g in frame.groupby("subject_id", sort=False)} if len(frame) else {}


def _assemble(folder: Path, patients: pd.DataFrame, encounters: pd.DataFrame, diagnoses: pd.DataFrame,
              events: pd.DataFrame, dropped: dict[int, dict[str, int]], stats: dict[str, int],
              paths: dict[str, Path], ethnicity: dict[int, str] | None = None) -> list[Timeline]:
    p_path = paths["PATIENTS"]
    dob = _times(patients["DOB"], p_path, "PATIENTS", "DOB", allow_missing=True)
    dod = (_times(patients["DOD"], p_path, "PATIENTS", "DOD", allow_missing=True) if "DOD" in patients
           else pd.Series(pd.NaT, index=patients.index))
    sex = patients["GENDER"].astype(object).str.strip().str.upper()

    # One long event frame in (patient, time, source order); each patient's events are then a contiguous slice.
    subject = events["subject_id"].to_numpy(dtype="int64")
    order = np.lexsort((events["time"].to_numpy(), subject))
    events = events.iloc[order].reset_index(drop=True)
    subject = subject[order]
    itemid = events["itemid"].to_numpy()
    code = _id_strings(itemid.astype(float))
    code[itemid < 0] = None  # derived rows have no source code
    system = np.where(events["source"].to_numpy() == "LABEVENTS", "mimic-labitem",
                      np.where(itemid < 0, "derived", "mimic-itemid")).astype(object)
    table = pd.DataFrame({
        "time": events["time"].to_numpy(dtype="datetime64[ns]"),
        "encounter_id": _id_strings(events["hadm_id"].to_numpy(dtype=float)), "system": system, "code": code,
        "concept": events["concept"].to_numpy(dtype=object), "value": events["value"].to_numpy(dtype=float),
        "text": events["text"].to_numpy(dtype=object), "unit": events["unit"].to_numpy(dtype=object),
        "source": events["source"].to_numpy(dtype=object)})
    table["concept"] = table["concept"].where(table["concept"].notna(), None)
    table["unit"] = table["unit"].where(table["unit"].notna(), None)
    table["text"] = table["text"].where(table["text"].notna(), None)
    starts = np.searchsorted(subject, patients["SUBJECT_ID"].to_numpy(dtype="int64"), side="left")
    stops = np.searchsorted(subject, patients["SUBJECT_ID"].to_numpy(dtype="int64"), side="right")

    by_encounter = _groups(encounters)
    by_diagnosis = _groups(diagnoses)
    ingest = {k: int(v) for k, v in stats.items()}
    timelines = []
    order_patients = np.argsort(patients["SUBJECT_ID"].to_numpy(), kind="stable")
    for row in order_patients:
        sid = int(patients["SUBJECT_ID"].iloc[row])
        enc = by_encounter.get(sid)
        enc = (enc.sort_values(["start", "kind"], kind="stable")[list(ENCOUNTER_COLUMNS)].reset_index(drop=True)
               if enc is not None else None)
        diag = by_diagnosis.get(sid)
        diag = (diag.sort_values(["encounter_id", "seq"], kind="stable")[list(DIAGNOSIS_COLUMNS)]
                .reset_index(drop=True) if diag is not None else None)
        ev = table.iloc[starts[row]:stops[row]].reset_index(drop=True)
        meta = {"source": str(folder), "reader": READER, "dropped": dropped.get(sid, {}), "ingest": ingest}
        if ethnicity and sid in ethnicity:  # recorded per admission in MIMIC-III; the first admission's (for the fairness audit)
            meta["ethnicity"] = ethnicity[sid]
        timeline = Timeline(
            patient_id=str(sid), sex=sex.iloc[row] if pd.notna(sex.iloc[row]) else None,
            birth_time=dob.iloc[row] if pd.notna(dob.iloc[row]) else None,
            death_time=dod.iloc[row] if pd.notna(dod.iloc[row]) else None,
            events=ev[list(EVENT_COLUMNS)], meta=meta)
        if enc is not None:
            timeline.encounters = enc
        if diag is not None:
            timeline.diagnoses = diag
        timelines.append(timeline.check())
    return timelines
