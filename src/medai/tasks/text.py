"""The text task: one row of a table is one report or note; one or more columns hold its text, one column the
outcome.

Label meaning:
  * binary: ``y`` is 1 for ``positive_class``. ``positive_class: "!normal"`` (a leading ``!``) means "any value
    other than ``normal``": class names are then ``["normal", "not normal"]`` and ``not normal`` is coded 1 — the
    clean way to get normal-vs-abnormal from a findings column (Indiana ``Problems``);
  * multiclass: ``y`` is the index of the class in ``class_names`` (sorted);
  * multi-label (``kind: multilabel``): the label cell holds ``;``-separated findings; ``y`` is ``(n, K)`` 0/1,
    1 = finding present. ``normal``, ``none``, ``no finding`` mean "no finding" (an all-zero row). Findings with
    fewer than :data:`MIN_POSITIVES` positive reports, or fewer than :data:`MIN_SPLIT_POSITIVES` in any split, are
    dropped and listed in the warnings.

A label cell that is empty or says ``No Indexing`` (the Open-i marker of a report nobody coded) has no known
outcome; so has a report whose text columns are all empty. With ``on_invalid='raise'`` such rows stop the run
(the message names the data rows and columns, never their text); with ``skip`` they are left out and counted.

Several text columns (``text: "findings,impression"``) are joined into one text, each under a section header
(``Findings: ...`` / ``Impression: ...``); an empty section is left out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medai.core.config import TaskConfig, TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, closest
from medai.data.split import SPLITS
from medai.tasks.tabular import POSITIVE_TOKENS

#: Label values read as "no finding" in a multi-label column (case-insensitive).
NONE_TOKENS = ("normal", "none", "no finding", "no findings")
#: Label values that mean the record was never labelled (Open-i's "No Indexing"): no known outcome.
UNKNOWN_LABEL_TOKENS = ("no indexing",)
#: Prefix of ``positive_class`` meaning "every value other than this one".
NOT_PREFIX = "!"
#: A finding needs at least this many positive reports to be kept (multi-label).
MIN_POSITIVES = 20
#: ... and at least this many positives in each of train, validation and test (thresholds, AUROC).
MIN_SPLIT_POSITIVES = 5
#: Columns that identify the Indiana University chest X-ray reports (Open-i, Demner-Fushman et al. 2016).
IU_COLUMNS = ("uid", "Problems", "findings", "impression")
#: Strata smaller than this are pooled for the multi-label split (StratifiedGroupKFold needs a few per stratum).
MIN_STRATUM = 10


def parse_text_columns(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"findings,impression"`` → ``("findings", "impression")``."""
    columns = tuple(c.strip() for c in (spec.split(",") if isinstance(spec, str) else spec) if str(c).strip())
    if not columns or len(set(columns)) != len(columns):
        raise InvalidParameterError(
            f"The 'text' parameter of TaskConfig must name one or more distinct columns, comma-separated (e.g. "
            f"'findings,impression'). Got {spec!r} instead.")
    return columns


@dataclass(frozen=True)
class TextPreprocessor:
    """How a row becomes the text the model reads: the text columns, joined under section headers when there
    are several. Stored in the artefact (``preprocessor.json``) so that prediction composes text the same way.

    ``encoder`` records the text encoder the model was trained on (package, version, weight-file sha256).
    """

    columns: tuple[str, ...]
    encoder: dict[str, Any] = field(default_factory=dict)
    max_tokens: int = 256

    def texts(self, frame: pd.DataFrame, source: str = "input") -> tuple[np.ndarray, np.ndarray]:
        """The composed text of every row ``(n,)`` (object) and a mask of rows with no text at all."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            columns = ", ".join(map(str, frame.columns[:40]))
            raise DataValidationError(
                f"{source}: text column(s) {', '.join(repr(c) for c in missing)} not found."
                f"{closest(missing[0], frame.columns)} The model reads {', '.join(self.columns)}; columns: "
                f"{columns}.")
        parts = []
        for column in self.columns:
            values = frame[column].map(lambda v: "" if pd.isna(v) else str(v).strip())
            if len(self.columns) > 1:
                header = _section_header(column)
                values = values.map(lambda v, h=header: f"{h}: {v}" if v else "")
            parts.append(values.to_numpy(dtype=object))
        texts = np.array(["\n".join(p for p in row if p) for row in zip(*parts)], dtype=object)
        return texts, np.array([not t for t in texts], dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "text", "columns": list(self.columns), "section_headers": len(self.columns) > 1,
                "max_tokens": self.max_tokens, "encoder": dict(self.encoder)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextPreprocessor:
        return cls(columns=tuple(data["columns"]), encoder=dict(data.get("encoder") or {}),
                   max_tokens=int(data.get("max_tokens", 256)))


def _section_header(column: str) -> str:
    name = str(column).replace("_", " ").strip()
    return name[:1].upper() + name[1:]


@dataclass
class TextTask:
    """Validated texts and outcome.

    Attributes:
        kind: binary, multiclass or multilabel.
        texts: ``(n,)`` composed texts (never written to outputs or logs).
        y: binary/multiclass ``(n,)`` int; multilabel ``(n, K)`` 0/1.
        class_names: class names (index = code) or the K findings.
        positive_class: binary only: the class coded 1.
        ids: record ids as strings (``--id`` column, the IU ``uid``, else the 1-based data-row number).
        groups: patient ids (``--patient-id``) or None.
        preprocessor: how texts are composed from the columns.
        warnings: notes for the report (skipped rows, dropped findings, assumptions made).
        rows: 0-based positions, in the input table, of the records kept.
        dropped_findings: multi-label findings left out, with their positive counts.
    """

    kind: TaskKind
    texts: np.ndarray
    y: np.ndarray
    class_names: list[str]
    positive_class: str | None
    ids: np.ndarray
    groups: np.ndarray | None
    preprocessor: TextPreprocessor
    label: str
    source: str
    id_column: str | None = None
    patient_id_column: str | None = None
    warnings: list[str] = field(default_factory=list)
    rows: np.ndarray | None = None
    n_skipped: int = 0
    is_iu: bool = False
    dropped_findings: dict[str, int] = field(default_factory=dict)

    @property
    def strata(self) -> np.ndarray:
        """What the split keeps balanced: the class; multi-label: the rarest finding present (0 = none), with
        strata under :data:`MIN_STRATUM` reports pooled."""
        if self.kind is not TaskKind.MULTILABEL:
            return self.y
        prevalence = self.y.sum(axis=0)
        rank = np.argsort(np.argsort(prevalence))  # 0 = rarest finding
        strata = np.zeros(len(self.y), dtype=np.int64)
        for i, row in enumerate(self.y):
            present = np.flatnonzero(row)
            if len(present):
                strata[i] = 1 + present[np.argmin(rank[present])]
        values, counts = np.unique(strata, return_counts=True)
        small = values[counts < MIN_STRATUM]
        strata[np.isin(strata, small)] = -1
        if 0 < (strata == -1).sum() < MIN_STRATUM:  # the pooled stratum itself too small: join the largest
            strata[strata == -1] = values[np.argmax(counts)]
        return strata

    def describe(self) -> str:
        columns = " + ".join(self.preprocessor.columns)
        if self.kind is TaskKind.MULTILABEL:
            counts = self.y.sum(axis=0)
            listed = ", ".join(f"{c} {int(n)}" for c, n in sorted(zip(self.class_names, counts), key=lambda t: -t[1]))
            n_none = int((self.y.sum(axis=1) == 0).sum())
            return (f"Task: multi-label classification of '{self.label}' from text {columns} — {len(self.y)} "
                    f"reports, {len(self.class_names)} findings ({listed}); {n_none} with none")
        counts = np.bincount(self.y, minlength=len(self.class_names))
        classes = ", ".join(f"{c} {n}" for c, n in zip(self.class_names, counts))
        positive = f", positive class '{self.positive_class}'" if self.positive_class else ""
        return (f"Task: {self.kind.value} classification of '{self.label}' from text {columns} ({classes}"
                f"{positive})")


def is_iu_reports(frame: pd.DataFrame) -> bool:
    """True for the Indiana University chest X-ray report table (columns uid, Problems, findings, impression)."""
    return all(c in frame.columns for c in IU_COLUMNS)


def build_text_task(frame: pd.DataFrame, config: TaskConfig, source: str,
                    class_names: list[str] | None = None) -> TextTask:
    """Validate ``frame`` against ``config`` (``config.text`` names the text column(s)) and return texts and
    outcome.

    ``class_names``: a trained model's classes or findings (external validation): the labels are coded against
    them instead of being discovered (no finding is dropped; a class the model does not know is an error).

    Raises:
        InvalidParameterError: the task kind does not apply to text, or no label column is given.
        DataValidationError: a named column is absent; rows with no text or no label (``on_invalid='raise'``);
            too few classes or records.
    """
    if config.text is None:
        raise InvalidParameterError("A text task needs the text column(s): pass --text COL (or task.text).")
    if config.kind not in (TaskKind.CLASSIFICATION, TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.MULTILABEL):
        raise InvalidParameterError(
            f"Text classification supports --task classification, binary, multiclass or multilabel; got "
            f"'{config.kind.value}'.")
    frame = frame.reset_index(drop=True)
    n_input = len(frame)
    columns = parse_text_columns(config.text)
    warnings: list[str] = []
    iu = is_iu_reports(frame)
    if iu and config.id is None and config.patient_id is None:
        # each IU report is one patient's study: uid is both the record and the patient identifier
        config = dataclasses.replace(config, id="uid")
        warnings.append("Indiana chest X-ray reports detected: 'uid' is the record id (each report is one patient).")
    if config.label is None:
        raise InvalidParameterError(
            f"{source}: a text task needs the outcome column: pass --label COL"
            + (" (Indiana reports: --label Problems, with --positive-class '!normal' for normal vs abnormal or "
               "--task multilabel for the findings)." if iu else "."))
    for role, column in (("label", config.label), ("id", config.id), ("patient id", config.patient_id)):
        if column is not None:
            _require_column(frame, column, source, role)
    preprocessor = TextPreprocessor(columns)
    texts, no_text = preprocessor.texts(frame, source)
    no_label = _unknown_label(frame[config.label])
    invalid = no_text | no_label
    if invalid.any():
        reasons = []
        if no_text.any():
            reasons.append(f"{int(no_text.sum())} with empty text in {' and '.join(repr(c) for c in columns)} "
                           f"(data rows {_rows(no_text)})")
        if no_label.any():
            reasons.append(f"{int(no_label.sum())} with no known label in '{config.label}' (empty or "
                           f"'No Indexing'; data rows {_rows(no_label)})")
        if config.on_invalid == "raise":
            raise DataValidationError(
                f"{source}: {int(invalid.sum())} row(s) cannot be used — " + "; ".join(reasons) + ". Fill or "
                "remove them, or pass --on-invalid skip to leave them out (they are counted in the report).")
        warnings.append(f"Skipped {int(invalid.sum())} row(s) (--on-invalid skip): " + "; ".join(reasons) + ".")
    keep = np.flatnonzero(~invalid)
    frame = frame.iloc[keep]
    texts = texts[keep]
    labels = frame[config.label].map(lambda v: str(v).strip())
    dropped: dict[str, int] = {}
    if config.kind is TaskKind.MULTILABEL:
        kind, y, names, positive, dropped = _multilabel_outcome(labels, config.label, source, warnings,
                                                                class_names)
    else:
        kind, y, names, positive = _single_outcome(labels, config, source, warnings)
        if class_names is not None and kind is TaskKind.MULTICLASS:
            unknown = sorted(set(names) - set(class_names))
            if unknown:
                raise DataValidationError(
                    f"{source}: label column '{config.label}' holds class(es) {', '.join(unknown[:10])} the model "
                    f"was not trained on (classes: {', '.join(class_names)}).")
            y = np.array([list(class_names).index(names[k]) for k in y], dtype=np.int64)
            names = list(class_names)
        elif class_names is not None and list(names) != list(class_names):
            raise DataValidationError(
                f"{source}: label column '{config.label}' gives classes {names}; the model predicts "
                f"{list(class_names)}.")
    ids = _ids(frame, config.id, source)
    groups = None
    if config.patient_id is not None:
        empty = frame[config.patient_id].isna().to_numpy()
        if empty.any():
            raise DataValidationError(
                f"{source}: column '{config.patient_id}' (patient id) is empty in data rows {_rows(empty, keep)}. "
                "Every record needs its patient id for a patient-level split.")
        groups = frame[config.patient_id].astype(str).to_numpy()
    if len(y) < 20:
        raise DataValidationError(f"{source}: only {len(y)} usable reports; at least 20 are needed for a "
                                  "train/validation/test split.")
    return TextTask(kind=kind, texts=texts, y=y, class_names=names, positive_class=positive, ids=ids,
                    groups=groups, preprocessor=preprocessor, label=config.label, source=source,
                    id_column=config.id, patient_id_column=config.patient_id, warnings=warnings, rows=keep,
                    n_skipped=int(n_input - len(keep)), is_iu=iu, dropped_findings=dropped)


def drop_sparse_findings(task: TextTask, split: dict[str, np.ndarray]) -> TextTask:
    """Multi-label: leave out findings with fewer than :data:`MIN_SPLIT_POSITIVES` positives in any split (no
    validation threshold or test AUROC could be estimated for them). Other kinds are returned unchanged.

    Raises:
        DataValidationError: no finding is left.
    """
    if task.kind is not TaskKind.MULTILABEL:
        return task
    counts = {s: task.y[split[s]].sum(axis=0) for s in SPLITS}
    keep = np.all([counts[s] >= MIN_SPLIT_POSITIVES for s in SPLITS], axis=0)
    if keep.all():
        return task
    if not keep.any():
        raise DataValidationError(
            f"{task.source}: no finding has {MIN_SPLIT_POSITIVES} positive reports in each of train, validation "
            "and test. Use more data.")
    gone = [n for n, k in zip(task.class_names, keep) if not k]
    dropped = dict(task.dropped_findings)
    dropped.update({n: int(task.y[:, j].sum()) for j, n in enumerate(task.class_names) if not keep[j]})
    warnings = task.warnings + [f"{len(gone)} finding(s) dropped for having fewer than {MIN_SPLIT_POSITIVES} "
                                f"positive reports in a split: {', '.join(gone)}."]
    return dataclasses.replace(task, y=task.y[:, keep], class_names=[n for n, k in zip(task.class_names, keep) if k],
                               warnings=warnings, dropped_findings=dropped)


def task_summary(task: TextTask) -> dict[str, Any]:
    """What run.json and the artefact's task.json say about the task."""
    return {"kind": task.kind.value, "label": task.label, "text_columns": list(task.preprocessor.columns),
            "class_names": list(task.class_names), "positive_class": task.positive_class,
            "id_column": task.id_column, "dropped_findings": task.dropped_findings,
            "min_positives": MIN_POSITIVES if task.kind is TaskKind.MULTILABEL else None}


# ------------------------------------------------------------------------------------------------- helpers
def _unknown_label(values: pd.Series) -> np.ndarray:
    text = values.map(lambda v: "" if pd.isna(v) else str(v).strip().lower())
    return (text.eq("") | text.isin(UNKNOWN_LABEL_TOKENS)).to_numpy()


def _single_outcome(labels: pd.Series, config: TaskConfig, source: str, warnings: list[str]):
    column = config.label
    values = labels.to_numpy(dtype=object).astype(str)
    distinct = sorted(set(values))
    positive = config.positive_class
    if positive is not None and str(positive).startswith(NOT_PREFIX):
        negative = str(positive)[len(NOT_PREFIX):].strip()
        if negative not in distinct:
            raise DataValidationError(
                f"{source}: '{positive}' asks for 'any value other than {negative}', but '{negative}' is not a value "
                f"of label column '{column}'.{closest(negative, distinct)}")
        if len(distinct) < 2:
            raise DataValidationError(f"{source}: label column '{column}' holds only '{negative}'.")
        positive_name = f"not {negative}"
        return TaskKind.BINARY, (values != negative).astype(np.int64), [negative, positive_name], positive_name
    if positive is not None:
        positive = str(positive)
        if positive not in distinct:
            raise DataValidationError(
                f"{source}: positive class '{positive}' is not a value of label column '{column}'."
                f"{closest(positive, distinct)} For 'any value other than X' write --positive-class '!X'.")
        others = [c for c in distinct if c != positive]
        if not others:
            raise DataValidationError(f"{source}: label column '{column}' holds only '{positive}'.")
        negative = others[0] if len(others) == 1 else f"not {positive}"
        if len(others) > 1:
            warnings.append(f"'{column}' has {len(distinct)} values: '{positive}' against all the others "
                            f"('{negative}').")
        return TaskKind.BINARY, (values == positive).astype(np.int64), [negative, positive], positive
    if len(distinct) < 2:
        raise DataValidationError(f"{source}: label column '{column}' has only one class; classification needs "
                                  "at least two.")
    if len(distinct) == 2 and config.kind is not TaskKind.MULTICLASS:
        chosen = next((c for c in distinct if c.lower() in POSITIVE_TOKENS), None)
        if chosen is None:
            counts = pd.Series(values).value_counts()
            chosen = str(counts.index[-1])
            warnings.append(f"Positive class of '{column}' not given: chose the less frequent class '{chosen}'. "
                            "Set --positive-class to change it.")
        negative = next(c for c in distinct if c != chosen)
        return TaskKind.BINARY, (values == chosen).astype(np.int64), [negative, chosen], chosen
    if config.kind is TaskKind.BINARY:
        raise DataValidationError(
            f"{source}: --task binary needs two classes in '{column}', found {len(distinct)}. Name the positive "
            "class (--positive-class X), or every value but one (--positive-class '!X').")
    counts = pd.Series(values).value_counts()
    rare = counts[counts < 3]
    if len(rare):
        multi = labels.str.contains(";").mean() > 0.05
        raise DataValidationError(
            f"{source}: label column '{column}' has {len(distinct)} classes, {len(rare)} of them with fewer than 3 "
            "reports (train, validation and test each need some)."
            + (" Its values are ';'-separated findings: use --task multilabel, or --positive-class '!normal' for "
               "normal against everything else." if multi else " Merge rare classes or add data."))
    index = {name: i for i, name in enumerate(distinct)}
    return TaskKind.MULTICLASS, np.array([index[v] for v in values], dtype=np.int64), distinct, None


def _multilabel_outcome(labels: pd.Series, column: str, source: str, warnings: list[str],
                        known: list[str] | None = None):
    findings = [[t.strip() for t in str(v).split(";") if t.strip() and t.strip().lower() not in NONE_TOKENS]
                for v in labels]
    counts = pd.Series([f for row in findings for f in set(row)], dtype=object).value_counts()
    if known is not None:  # a trained model's findings: code exactly these
        kept = list(known)
        dropped = {str(n): int(c) for n, c in counts.items() if n not in set(known)}
        if dropped:
            warnings.append(f"{len(dropped)} finding(s) of this data are not predicted by the model and were "
                            "ignored (run.json task.dropped_findings lists them).")
        counts = pd.Series(dtype=object)
    else:
        kept = sorted(str(n) for n, c in counts.items() if c >= MIN_POSITIVES)
        dropped = {str(n): int(c) for n, c in counts.items() if c < MIN_POSITIVES}
    if not kept:
        raise DataValidationError(
            f"{source}: no finding in '{column}' has {MIN_POSITIVES} positive reports (most frequent: "
            f"{counts.index[0] if len(counts) else 'none'}, {int(counts.iloc[0]) if len(counts) else 0}). Multi-label "
            "findings are ';'-separated; use more data or a binary task.")
    if dropped and known is None:
        listed = ", ".join(list(dropped)[:15]) + (f" and {len(dropped) - 15} more" if len(dropped) > 15 else "")
        warnings.append(f"{len(dropped)} finding(s) with fewer than {MIN_POSITIVES} positive reports were dropped "
                        f"(run.json task.dropped_findings lists them): {listed}.")
    index = {n: j for j, n in enumerate(kept)}
    y = np.zeros((len(findings), len(kept)), dtype=np.int64)
    for i, row in enumerate(findings):
        for f in row:
            if f in index:
                y[i, index[f]] = 1
    return TaskKind.MULTILABEL, y, kept, None, dropped


def _require_column(frame: pd.DataFrame, column: str, source: str, role: str) -> None:
    if column not in frame.columns:
        columns = ", ".join(map(str, frame.columns[:40])) + (" ..." if len(frame.columns) > 40 else "")
        raise DataValidationError(
            f"{source}: {role} column '{column}' not found.{closest(column, frame.columns)} Columns: {columns}.")


def _rows(mask: np.ndarray, positions: np.ndarray | None = None, limit: int = 5) -> str:
    """1-based data-row numbers of the input file where ``mask`` is true (``positions``: input row of each)."""
    rows = np.flatnonzero(mask)
    rows = (rows if positions is None else positions[rows]) + 1
    text = ", ".join(map(str, rows[:limit].tolist()))
    return text + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _ids(frame: pd.DataFrame, column: str | None, source: str) -> np.ndarray:
    positions = np.asarray(frame.index)
    if column is None:
        return np.array([str(i + 1) for i in positions], dtype=object)
    ids = frame[column]
    if ids.isna().any():
        raise DataValidationError(f"{source}: id column '{column}' is empty in data rows "
                                  f"{_rows(ids.isna().to_numpy(), positions)}.")
    ids = ids.astype(str)
    duplicated = ids.duplicated(keep=False).to_numpy()
    if duplicated.any():
        raise DataValidationError(
            f"{source}: id column '{column}' must be unique per report; data rows {_rows(duplicated, positions)} "
            "repeat an id. If several reports belong to one patient, pass that column as --patient-id.")
    return ids.to_numpy(dtype=object)
