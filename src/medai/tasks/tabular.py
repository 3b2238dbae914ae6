"""The tabular task: one row of a table is one record; some columns are the outcome, the rest are features.

Label meaning:
  * binary: ``y`` is 1 for ``positive_class`` (the condition being detected), 0 otherwise;
  * multiclass: ``y`` is the index of the class in ``class_names`` (sorted);
  * regression: ``y`` is the numeric target;
  * survival: ``time`` (> 0, in the data's unit) and ``event`` (1 = event observed at ``time``, 0 = censored).

Errors name the column and the data-row numbers (1-based, header excluded) — never cell values, which may be
patient data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medai.core.config import TaskConfig, TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, closest

#: Column names tried, in order, when the user names no outcome.
LABEL_CANDIDATES = ("label", "target", "outcome", "y", "class", "diagnosis")
SURVIVAL_CANDIDATES = (("time", "event"), ("duration", "event"), ("time", "status"), ("duration", "status"))
#: Label values read as the positive class of a binary task when the user does not name one.
POSITIVE_TOKENS = ("1", "true", "yes", "y", "positive", "pos", "case", "disease", "abnormal", "malignant",
                   "dead", "died", "death", "event")
#: An object column with more distinct values than this is not treated as categorical.
MAX_CATEGORIES = 50
#: Fewer distinct numeric label values than this, all integers, with --task unset, means classification.
MAX_AUTO_CLASSES = 10


@dataclass
class TabularTask:
    """A validated table split into features and outcome.

    Attributes:
        kind: resolved task kind (binary, multiclass, regression or survival).
        features: the feature columns (original values; preprocessing happens later).
        numeric_columns / categorical_columns: feature columns by type.
        ids: record ids as strings (the ``--id`` column, else the 1-based data-row number).
        groups: patient ids (``--patient-id``) or None.
        y: label vector (binary/multiclass ints, regression floats); None for survival.
        time / event: survival outcome; None otherwise.
        class_names: class names (classification), index = label code.
        positive_class: binary only: the class coded 1.
        warnings: notes for the report (dropped columns, assumptions made, skipped records).
        rows: positions in the input table of the records kept (all of them unless ``on_invalid='skip'``).
        n_skipped: records dropped for an invalid outcome (``on_invalid='skip'``).
    """

    kind: TaskKind
    features: pd.DataFrame
    numeric_columns: list[str]
    categorical_columns: list[str]
    ids: np.ndarray
    groups: np.ndarray | None
    y: np.ndarray | None = None
    time: np.ndarray | None = None
    event: np.ndarray | None = None
    class_names: list[str] | None = None
    positive_class: str | None = None
    label: str | None = None
    time_column: str | None = None
    event_column: str | None = None
    id_column: str | None = None
    patient_id_column: str | None = None
    warnings: list[str] = field(default_factory=list)
    rows: np.ndarray | None = None  # 0-based positions, in the input table, of the records kept
    n_skipped: int = 0

    @property
    def strata(self) -> np.ndarray:
        """What a stratified split or bootstrap keeps balanced: the class, the event flag, or target quintile."""
        if self.kind is TaskKind.SURVIVAL:
            return self.event.astype(int)
        if self.kind is TaskKind.REGRESSION:
            edges = np.quantile(self.y, [0.2, 0.4, 0.6, 0.8])
            return np.searchsorted(edges, self.y)
        return self.y


#: Column names read as identifiers when the user names none: unique per row → record id; repeated → patient id.
ID_NAMES = ("id", "record", "record_id", "patient", "patient_id", "patientid", "subject", "subject_id", "mrn",
            "pid", "case_id", "study_id", "encounter_id", "hadm_id", "stay_id")
PATIENT_ID_NAMES = ("patient", "patient_id", "patientid", "subject", "subject_id", "mrn", "pid")


def detect_id_columns(frame: pd.DataFrame, config: TaskConfig) -> tuple[TaskConfig, list[str]]:
    """Name the record / patient id columns when the user gave neither (identifiers must never be features).

    Returns the updated config and notes saying what was chosen.
    """
    import dataclasses

    if config.id is not None or config.patient_id is not None:
        return config, []
    outcome = {config.label, config.time, config.event}
    for column in frame.columns:
        name = str(column).lower()
        if column in outcome or column in (config.features or ()) or not (name in ID_NAMES or name.endswith("_id")):
            continue
        values = frame[column]
        if values.isna().any():
            continue
        if not values.duplicated().any():
            return dataclasses.replace(config, id=column), [f"Column '{column}' read as the record id (unique per "
                                                            "row); pass --id to choose another."]
        if name in PATIENT_ID_NAMES:
            return dataclasses.replace(config, patient_id=column), [
                f"Column '{column}' read as the patient id (repeated): the split keeps each patient in one split; "
                "pass --patient-id to choose another."]
    return config, []


def build_tabular_task(frame: pd.DataFrame, config: TaskConfig, source: str, exclude: tuple[str, ...] = ()) -> TabularTask:
    """Validate ``frame`` against ``config`` and return features and outcome.

    Args:
        frame: the table, one row per record.
        config: which columns are outcome, ids and features.
        source: file path or dataset name, used in error messages.
        exclude: extra columns that are neither features nor outcome (e.g. a predefined split column).

    Raises:
        DataValidationError: a named column is absent, or the outcome or a feature has invalid values.
    """
    frame = frame.reset_index(drop=True)
    n_input = len(frame)
    config = _resolve_outcome_columns(frame, config, source)
    config, notes = detect_id_columns(frame, config)
    for role in ("label", "time", "event", "id", "patient_id"):
        column = getattr(config, role)
        if column is not None:
            _require_column(frame, column, source, role)
    for column in (*(config.features or ()), *config.exclude):
        _require_column(frame, column, source, "feature" if column in (config.features or ()) else "exclude")

    warnings: list[str] = list(notes)
    if config.on_invalid == "skip":
        invalid = _invalid_outcome(frame, config)
        if invalid.any():
            warnings.append(f"Skipped {int(invalid.sum())} record(s) with a missing or invalid outcome (data rows "
                            f"{_rows(invalid)}), as --on-invalid skip asks.")
            frame = frame[~invalid.to_numpy()]
    if config.kind is TaskKind.SURVIVAL:
        time, event = _survival_outcome(frame, config, source)
        kind, y, class_names, positive = TaskKind.SURVIVAL, None, None, None
    else:
        kind, y, class_names, positive = _label_outcome(frame, config, source, warnings)
        time = event = None

    ids = _ids(frame, config.id, source)
    groups = None
    if config.patient_id is not None:
        if frame[config.patient_id].isna().any():
            rows = _rows(frame[config.patient_id].isna())
            raise DataValidationError(
                f"{source}: column '{config.patient_id}' (patient id) is empty in data rows {rows}. "
                "Every record needs its patient id for a patient-level split."
            )
        groups = frame[config.patient_id].astype(str).to_numpy()

    reserved = {c for c in (config.label, config.time, config.event, config.id, config.patient_id) if c}
    reserved |= set(config.exclude) | set(exclude)
    columns = list(config.features) if config.features else [c for c in frame.columns if c not in reserved]
    features = frame[columns].copy()
    numeric, categorical = [], []
    for column in columns:
        kind_of = _feature_type(features[column], column, source)
        if kind_of == "empty":
            warnings.append(f"Feature column '{column}' is empty in every row and was dropped.")
            continue
        if kind_of == "numeric":
            features[column] = pd.to_numeric(features[column], errors="raise").astype(float)
            numeric.append(column)
        else:
            categorical.append(column)
    if not numeric and not categorical:
        raise DataValidationError(
            f"{source}: no feature columns are left after removing the outcome and id columns "
            f"({', '.join(sorted(reserved)) or 'none'}). The table needs at least one predictor column."
        )
    return TabularTask(
        kind=kind, features=features[numeric + categorical], numeric_columns=numeric,
        categorical_columns=categorical, ids=ids, groups=groups, y=y, time=time, event=event,
        class_names=class_names, positive_class=positive, label=config.label, time_column=config.time,
        event_column=config.event, id_column=config.id, patient_id_column=config.patient_id, warnings=warnings,
        rows=frame.index.to_numpy(), n_skipped=int(n_input - len(frame)),
    )


def _resolve_outcome_columns(frame: pd.DataFrame, config: TaskConfig, source: str) -> TaskConfig:
    """Fill in the outcome columns from conventional names when the user gave none."""
    import dataclasses

    if config.kind is TaskKind.SURVIVAL or config.label is not None:
        return config
    if config.time is not None or config.event is not None:
        return dataclasses.replace(config, kind=TaskKind.SURVIVAL)
    lowered = {c.lower(): c for c in frame.columns}
    if config.kind in (TaskKind.CLASSIFICATION, TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.REGRESSION):
        for name in LABEL_CANDIDATES:
            if name in lowered:
                return dataclasses.replace(config, label=lowered[name])
    for time_name, event_name in SURVIVAL_CANDIDATES:
        if time_name in lowered and event_name in lowered:
            return dataclasses.replace(config, kind=TaskKind.SURVIVAL, time=lowered[time_name], event=lowered[event_name])
    columns = ", ".join(map(str, frame.columns[:40])) + (" ..." if len(frame.columns) > 40 else "")
    raise DataValidationError(
        f"{source}: no outcome column given and none of the usual names ({', '.join(LABEL_CANDIDATES)}; "
        f"time+event) found. Pass --label COL (or --time COL --event COL for survival). Columns: {columns}."
    )


def _require_column(frame: pd.DataFrame, column: str, source: str, role: str) -> None:
    if column not in frame.columns:
        columns = ", ".join(map(str, frame.columns[:40])) + (" ..." if len(frame.columns) > 40 else "")
        raise DataValidationError(
            f"{source}: {role} column '{column}' not found.{closest(column, frame.columns)} Columns: {columns}."
        )


def _rows(mask: pd.Series, limit: int = 5) -> str:
    """1-based data-row numbers of the input file where ``mask`` is true (the index holds original positions)."""
    rows = (mask.index[mask.to_numpy()] + 1).tolist()
    text = ", ".join(map(str, rows[:limit]))
    return text + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _numeric_column(frame: pd.DataFrame, column: str, source: str, role: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | ~np.isfinite(values.fillna(0.0))
    if bad.any():
        junk = frame[column].notna() & values.isna()
        what = "non-numeric" if junk.any() else "missing or infinite"
        raise DataValidationError(
            f"{source}: {role} column '{column}' has {int(bad.sum())} {what} value(s) in data rows {_rows(bad)}. "
            f"Every record needs a finite numeric {role}: fix or remove those rows."
        )
    return values.to_numpy(dtype=float)


def _invalid_outcome(frame: pd.DataFrame, config: TaskConfig) -> pd.Series:
    """Rows whose outcome cannot be used: missing/non-finite label; time missing, non-numeric or <= 0; event not
    0/1. Only used with ``on_invalid='skip'``; otherwise each case raises its own error."""
    if config.kind is TaskKind.SURVIVAL:
        time = pd.to_numeric(frame[config.time], errors="coerce")
        event = frame[config.event]
        bad_event = ~pd.to_numeric(event, errors="coerce").isin([0, 1]) if event.dtype != bool else event.isna()
        return time.isna() | ~np.isfinite(time.fillna(0.0)) | (time <= 0) | bad_event
    numeric = pd.to_numeric(frame[config.label], errors="coerce")
    return frame[config.label].isna() | (numeric.notna() & ~np.isfinite(numeric.fillna(0.0)))


def _survival_outcome(frame: pd.DataFrame, config: TaskConfig, source: str) -> tuple[np.ndarray, np.ndarray]:
    time = _numeric_column(frame, config.time, source, "time")
    if (time <= 0).any():
        raise DataValidationError(
            f"{source}: time column '{config.time}' has {int((time <= 0).sum())} value(s) <= 0 in data rows "
            f"{_rows(pd.Series(time <= 0, index=frame.index))}. Survival times must be positive (time from origin to event or "
            "censoring); check the unit and origin, or remove those rows."
        )
    raw = frame[config.event]
    if raw.dtype == bool:
        event = raw.to_numpy().astype(int)
    else:
        event_values = pd.to_numeric(raw, errors="coerce")
        bad = event_values.isna() | ~event_values.isin([0, 1])
        if bad.any():
            raise DataValidationError(
                f"{source}: event column '{config.event}' must be 0 (censored) or 1 (event); data rows "
                f"{_rows(bad)} hold other values. Recode the column to 0/1."
            )
        event = event_values.to_numpy().astype(int)
    if event.sum() == 0:
        raise DataValidationError(
            f"{source}: event column '{config.event}' has no events (all 0). A survival model needs observed events."
        )
    return time, event


def _label_outcome(frame: pd.DataFrame, config: TaskConfig, source: str, warnings: list[str]):
    column = config.label
    raw = frame[column]
    numeric = pd.to_numeric(raw, errors="coerce")
    missing = raw.isna() | (numeric.notna() & ~np.isfinite(numeric.fillna(0.0)))
    if missing.any():
        raise DataValidationError(
            f"{source}: label column '{column}' has {int(missing.sum())} missing or non-finite value(s) in data "
            f"rows {_rows(missing)}. Every record needs a label: fill or remove those rows."
        )
    is_numeric = numeric.notna().all()
    if config.kind is TaskKind.REGRESSION:
        if not is_numeric:
            raise DataValidationError(
                f"{source}: label column '{column}' must be numeric for --task regression; data rows "
                f"{_rows(numeric.isna())} are not numbers. Fix them, or use --task classification."
            )
        return TaskKind.REGRESSION, numeric.to_numpy(dtype=float), None, None

    values = numeric if is_numeric else raw.astype(str).str.strip()
    if is_numeric and (numeric == numeric.round()).all():
        values = numeric.astype(np.int64)
    distinct = pd.unique(values)
    if config.kind is TaskKind.CLASSIFICATION and is_numeric and (
        len(distinct) > MAX_AUTO_CLASSES or not (numeric == numeric.round()).all()
    ):
        warnings.append(f"Label '{column}' has {len(distinct)} distinct numeric values: treated as regression.")
        return TaskKind.REGRESSION, numeric.to_numpy(dtype=float), None, None
    if len(distinct) < 2:
        raise DataValidationError(
            f"{source}: label column '{column}' has only one class. Classification needs at least two classes; "
            "check the file holds both cases and controls."
        )
    if len(distinct) > MAX_CATEGORIES:
        raise DataValidationError(
            f"{source}: label column '{column}' has {len(distinct)} distinct values, too many for classification. "
            "Use --task regression for a numeric outcome."
        )
    class_names = sorted(str(v) for v in distinct)
    as_text = values.astype(str).to_numpy()
    if len(class_names) == 2 and config.kind is not TaskKind.MULTICLASS:
        positive = config.positive_class
        if positive is not None and str(positive) not in class_names:
            raise DataValidationError(
                f"{source}: positive class '{positive}' is not a value of label column '{column}'. "
                f"Values: {', '.join(class_names)}."
            )
        if positive is None:
            positive = next((c for c in class_names if c.lower() in POSITIVE_TOKENS), None)
        if positive is None:
            counts = pd.Series(as_text).value_counts()
            positive = str(counts.index[-1])
            warnings.append(
                f"Positive class of '{column}' not given: chose the less frequent class '{positive}'. "
                "Set --positive-class to change it."
            )
        positive = str(positive)
        negative = next(c for c in class_names if c != positive)
        y = (as_text == positive).astype(np.int64)
        return TaskKind.BINARY, y, [negative, positive], positive
    if config.kind is TaskKind.BINARY:
        raise DataValidationError(
            f"{source}: --task binary needs exactly two classes in '{column}', found {len(class_names)}."
        )
    index = {name: i for i, name in enumerate(class_names)}
    y = np.array([index[v] for v in as_text], dtype=np.int64)
    return TaskKind.MULTICLASS, y, class_names, None


def _ids(frame: pd.DataFrame, column: str | None, source: str) -> np.ndarray:
    if column is None:
        return np.array([str(i + 1) for i in frame.index])
    ids = frame[column]
    if ids.isna().any():
        raise DataValidationError(f"{source}: id column '{column}' is empty in data rows {_rows(ids.isna())}.")
    ids = ids.astype(str)
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        raise DataValidationError(
            f"{source}: id column '{column}' must be unique per record; data rows {_rows(duplicated)} repeat an id. "
            "If several rows belong to one patient, pass that column as --patient-id instead."
        )
    return ids.to_numpy()


def _feature_type(series: pd.Series, column: str, source: str) -> str:
    """'numeric', 'categorical' or 'empty'; raises for junk in a numeric column or free-text columns."""
    present = series.notna()
    if not present.any():
        return "empty"
    if pd.api.types.is_bool_dtype(series):
        return "numeric"
    if pd.api.types.is_numeric_dtype(series):
        infinite = present & ~np.isfinite(series.astype(float).fillna(0.0))
        if infinite.any():
            raise DataValidationError(
                f"{source}: feature column '{column}' has infinite values in data rows {_rows(infinite)}. "
                "Replace them with a finite value or leave the cell empty (missing)."
            )
        return "numeric"
    coerced = pd.to_numeric(series, errors="coerce")
    parsed = coerced.notna() & present
    junk = present & coerced.isna()
    if parsed.sum() >= 0.8 * present.sum():
        if junk.any():
            raise DataValidationError(
                f"{source}: feature column '{column}' is numeric but data rows {_rows(junk)} hold non-numeric text. "
                "Fix those cells or leave them empty (empty = missing, which medai imputes)."
            )
        infinite = parsed & ~np.isfinite(coerced.fillna(0.0))
        if infinite.any():
            raise DataValidationError(
                f"{source}: feature column '{column}' has infinite values in data rows {_rows(infinite)}. "
                "Replace them with a finite value or leave the cell empty (missing)."
            )
        return "numeric"
    n_distinct = series[present].astype(str).nunique()
    if n_distinct > MAX_CATEGORIES:
        raise DataValidationError(
            f"{source}: feature column '{column}' holds text with {n_distinct} distinct values — free text, a date "
            "or an identifier, not a category. Pass it as --id if it identifies records, or exclude it "
            "(task.exclude in a recipe)."
        )
    return "categorical"
