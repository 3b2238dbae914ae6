"""ECG tasks: from a folder of recordings to network inputs with labels.

Three tasks, chosen by the folder's layout (:func:`medai.io.ecg.find_ecg_dataset`):

- **rhythm** (``REFERENCE.csv`` with ``record,label``, the PhysioNet/CinC 2017 layout): one label per recording
  (CinC 2017: ``N`` normal sinus rhythm, ``A`` atrial fibrillation, ``O`` other rhythm, ``~`` too noisy to
  classify). Multi-class; the network sees windows and a recording's score is the mean over its windows.
- **beats** (WFDB records with beat annotations, e.g. MIT-BIH ``.atr``): one sample per annotated heartbeat,
  labelled with its ANSI/AAMI EC57 class (N, S, V, F, Q). The split is *inter-patient*: a record's beats all
  fall in one split (de Chazal et al. 2004's DS1/DS2 when the folder holds MIT-BIH records); intra-patient
  splits inflate accuracy because a patient's beats look alike.
- **12-lead multi-label** (``ptbxl_database.csv``, the PTB-XL layout): one or more diagnostic statements per
  recording (the five superclasses NORM, MI, STTC, CD, HYP when ``scp_statements.csv`` is present); PTB-XL's
  recommended split (``strat_fold`` 1–8 train, 9 validation, 10 test) when the column exists.

Recordings that fail the signal check (flat line, NaN run, clipping, …) are never turned into samples: they are
listed with their reasons (``unusable``) and counted in the run's warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medai.core.config import PreprocessingConfig, TaskConfig, TaskKind
from medai.core.errors import DataValidationError, MedaiError
from medai.core.hashing import sha256_files
from medai.core.records import Record
from medai.data.ecg_preprocessor import EcgPreprocessor
from medai.io.ecg import (
    AAMI_CLASSES, EcgDataset, aami_class, find_ecg_dataset, is_ecg_folder, normalise_lead_name, read_beat_annotations,
    read_ecg,
)

#: Defaults per task: network rate (Hz), window (s), stride (s).
DEFAULTS = {"rhythm": (150.0, 10.0, 5.0), "beats": (250.0, 2.0, 2.0), "multilabel": (100.0, 10.0, 5.0)}
#: de Chazal et al. (IEEE TBME 2004) inter-patient split of the MIT-BIH Arrhythmia Database (paced records excluded).
MITBIH_DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203",
              "205", "207", "208", "209", "215", "220", "223", "230")
MITBIH_DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212", "213", "214",
              "219", "221", "222", "228", "231", "232", "233", "234")
#: CinC 2017 class order (the report and the challenge score use these names).
CINC_CLASSES = ("N", "A", "O", "~")


@dataclass
class EcgTask:
    """Samples ready to split and train on.

    Attributes:
        name: ``rhythm``, ``beats`` or ``multilabel``.
        kind: multiclass, binary or multilabel.
        class_names: class (finding) names in index order.
        ids: sample ids ``(N,)``: the record id, or ``<record>:<R-peak sample>`` for beats.
        records: the record of each sample ``(N,)``.
        y: class indices ``(N,)`` (int64) or multi-hot ``(N, K)`` (float32).
        groups: patient ids (or record ids for beats) ``(N,)`` for the split; None when every record is its own
            patient.
        signals: conditioned signal per usable record id ``(leads, samples)`` at the preprocessor's rate.
        beat_peaks: per beat sample, its R peak (samples at the preprocessor's rate); None for other tasks.
        raw: the records as read (for the feature baseline and the report's ECG strips).
        unusable: ``(record id, reasons)`` of recordings that failed the signal check.
        skipped: ``(file, reason)`` of files that could not be read (``on_invalid: skip``).
        predefined_split: sample indices per split when the dataset defines one.
        preprocessor: fitted on the training split by the workflow.
        sha256: fingerprint of the label file and every recording file (:func:`medai.core.hashing.sha256_files`).
    """

    name: str
    kind: TaskKind
    class_names: list[str]
    ids: np.ndarray = field(repr=False)
    records: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    groups: np.ndarray | None
    signals: dict[str, np.ndarray] = field(repr=False)
    beat_peaks: np.ndarray | None = field(repr=False)
    raw: dict[str, Record] = field(repr=False)
    unusable: list[tuple[str, list[str]]]
    skipped: list[tuple[str, str]]
    predefined_split: dict[str, np.ndarray] | None
    source: str
    layout: str
    preprocessor: EcgPreprocessor
    notes: list[str] = field(default_factory=list)
    sha256: str | None = None
    unusable_labels: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def strata(self) -> np.ndarray:
        if self.kind is TaskKind.MULTILABEL:  # the rarest finding present in each record
            frequency = self.y.sum(axis=0)
            order = np.where(self.y > 0, frequency[None, :], np.inf)
            return np.where(self.y.any(axis=1), order.argmin(axis=1), -1)
        return self.y

    def describe(self) -> str:
        what = {"rhythm": "rhythm classification per recording", "beats": "heartbeat classification (AAMI)",
                "multilabel": "multi-label diagnostic statements per recording"}[self.name]
        if self.kind is TaskKind.MULTILABEL:
            counts = ", ".join(f"{n} {int(c)}" for n, c in zip(self.class_names, self.y.sum(axis=0)))
        else:
            counts = ", ".join(f"{n} {int(c)}" for n, c in
                               zip(self.class_names, np.bincount(self.y, minlength=len(self.class_names))))
        p = self.preprocessor
        leads = ", ".join(p.leads or [])
        unit = (f"{p.window_s:g} s windows every {p.stride_s:g} s" if p.unit == "recording"
                else f"beats {p.before_s:g} s before to {p.after_s:g} s after the R peak")
        return (f"Task: {what} — {len(set(self.records))} recordings, {len(self.y)} samples ({counts}); "
                f"lead(s) {leads}; {p.sampling_rate_hz:g} Hz, {unit}"
                + (f"; {len(self.unusable)} recording(s) unusable" if self.unusable else ""))


def is_ecg_source(path: str | Path) -> bool:
    """A folder of recordings (``REFERENCE.csv``, ``ptbxl_database.csv`` or WFDB headers)."""
    return Path(path).is_dir() and is_ecg_folder(path)


def build_ecg_task(path: str | Path, task: TaskConfig, preprocessing: PreprocessingConfig, *,
                   progress: bool = False, min_recordings: int = 20,
                   preprocessor: EcgPreprocessor | None = None) -> EcgTask:
    """Read a labelled ECG folder into an :class:`EcgTask` (unfitted preprocessor, or a model's own
    ``preprocessor`` for external validation). Training needs at least ``min_recordings`` usable recordings (20:
    enough for a train/validation/test split); external validation 1. ``labels`` of unusable recordings are kept
    in ``unusable_labels`` (external validation scores them)."""
    dataset = find_ecg_dataset(path, require_labels=True)
    name = {"cinc": "rhythm", "ptbxl": "multilabel", "wfdb-beats": "beats"}.get(dataset.layout)
    if name is None:
        raise DataValidationError(
            f"{path}: the folder holds ECG recordings but no labels. For training, add REFERENCE.csv "
            "(record,label per line), beat annotation files (.atr) beside WFDB records, or a PTB-XL "
            "ptbxl_database.csv. `medai predict RUN FOLDER` scores unlabelled recordings."
        )
    preprocessor = preprocessor if preprocessor is not None else make_preprocessor(name, preprocessing)
    records, skipped = _read_records(dataset, task.on_invalid, progress)
    if name == "beats":
        result = _beat_task(dataset, records, skipped, preprocessor, task)
    else:
        result = _recording_task(name, dataset, records, skipped, preprocessor, task, min_recordings)
    result.sha256 = _fingerprint(dataset)
    if dataset.labels is not None and name != "beats":
        result.unusable_labels = {i: dataset.labels[i] for i, _ in result.unusable if i in dataset.labels}
    return result


def _fingerprint(dataset: EcgDataset) -> str:
    """sha256 over the label file and every file of every recording (header, signal, annotations)."""
    files = [p for name in ("REFERENCE.csv", "ptbxl_database.csv", "scp_statements.csv")
             if (p := dataset.root / name).is_file()]
    for record in dataset.records:
        files += [p for p in record.parent.glob(record.stem + ".*") if p.is_file()]
    return sha256_files(dataset.root, sorted(set(files)))


def make_preprocessor(name: str, preprocessing: PreprocessingConfig) -> EcgPreprocessor:
    rate, window, stride = DEFAULTS[name]
    rate = preprocessing.sampling_rate_hz or rate
    if name == "beats":
        window = preprocessing.window_s or window
        return EcgPreprocessor(sampling_rate_hz=rate, window_s=window, stride_s=window,
                               powerline_hz=preprocessing.powerline_hz,
                               leads=list(preprocessing.leads) if preprocessing.leads else None,
                               unit="beat", before_s=window / 2, after_s=window / 2)
    window = preprocessing.window_s or window
    stride = preprocessing.stride_s or min(stride, window)
    rr_channel = preprocessing.rr_channel if preprocessing.rr_channel is not None else name == "rhythm"
    return EcgPreprocessor(sampling_rate_hz=rate, window_s=window, stride_s=stride,
                           powerline_hz=preprocessing.powerline_hz,
                           leads=list(preprocessing.leads) if preprocessing.leads else None, rr_channel=rr_channel)


# ------------------------------------------------------------------------------------------------ reading
def _read_records(dataset: EcgDataset, on_invalid: str, progress: bool) -> tuple[list[Record], list[tuple[str, str]]]:
    from tqdm import tqdm

    records, skipped = [], []
    for path in tqdm(dataset.records, desc="Reading recordings", unit="rec", disable=not progress, leave=False):
        try:
            records.append(read_ecg(path))
        except MedaiError as exc:
            if on_invalid == "raise":
                raise
            skipped.append((str(path), str(exc)))
    if not records:
        raise DataValidationError(f"{dataset.root}: none of the {len(dataset.records)} recordings could be read.")
    return records, skipped


def _condition(records: list[Record], preprocessor: EcgPreprocessor):
    """Conditioned signals of usable records, the unusable ones with reasons, and lead-choice notes."""
    signals, unusable, notes = {}, [], set()
    for record in records:
        signal, check, record_notes = preprocessor.condition(record)
        notes.update(record_notes)
        if signal is None:
            unusable.append((record.id, list(check.reasons)))
        else:
            signals[record.id] = signal
    return signals, unusable, sorted(notes)


def _lead_names(records: list[Record], preprocessor: EcgPreprocessor) -> list[str]:
    """Leads every training record has, in the first record's order; one lead when the records disagree."""
    if preprocessor.leads is not None:
        return preprocessor.leads
    first = [normalise_lead_name(n) for n in records[0].meta.get("lead_names") or ["lead1"]]
    common = [n for n in first if all(n in [normalise_lead_name(m) for m in r.meta.get("lead_names") or []]
                                      for r in records)]
    if len(first) == 1 or not common:
        return first[:1]
    return common


# -------------------------------------------------------------------------------------- recording tasks
def _recording_task(name, dataset, records, skipped, preprocessor, task_config, min_recordings) -> EcgTask:
    preprocessor.leads = _lead_names(records, preprocessor)
    signals, unusable, notes = _condition(records, preprocessor)
    usable = [r for r in records if r.id in signals]
    if len(usable) < min_recordings:
        raise DataValidationError(f"{dataset.root}: only {len(usable)} usable recording(s) of {len(records)}; at "
                                  f"least {min_recordings} are needed" + (" to train (train/validation/test split)."
                                                                          if min_recordings > 1 else "."))
    ids = np.array([r.id for r in usable], dtype=object)
    patient = dataset.patient_ids or {}
    groups = np.array([patient.get(i, i) for i in ids], dtype=object) if patient else None
    if name == "rhythm":
        labels = [str(dataset.labels[i]).strip() for i in ids]
        present = set(labels)
        order = [c for c in CINC_CLASSES if c in present] if present <= set(CINC_CLASSES) else sorted(present)
        class_names = list(task_config.class_names) if task_config.class_names else order
        unknown = present - set(class_names)
        if unknown:
            raise DataValidationError(f"{dataset.root}: labels {sorted(unknown)} are not among the configured "
                                      f"classes {class_names}.")
        index = {c: k for k, c in enumerate(class_names)}
        y = np.array([index[label] for label in labels], dtype=np.int64)
        kind = TaskKind.BINARY if len(class_names) == 2 else TaskKind.MULTICLASS
        split = None
    else:
        codes = [list(dataset.labels[i]) for i in ids]
        class_names = list(task_config.class_names) if task_config.class_names else sorted({c for cs in codes
                                                                                            for c in cs})
        y = np.array([[c in cs for c in class_names] for cs in codes], dtype=np.float32)
        kind = TaskKind.MULTILABEL
        split = _strat_fold_split(dataset, ids)
    result = EcgTask(name=name, kind=kind, class_names=class_names, ids=ids, records=ids.copy(), y=y,
                     groups=groups, signals=signals, beat_peaks=None, raw={r.id: r for r in usable},
                     unusable=unusable, skipped=skipped, predefined_split=split, source=str(dataset.root),
                     layout=dataset.layout, preprocessor=preprocessor, notes=notes)
    if min_recordings > 1:
        _check_label_counts(result)
    return result


def _strat_fold_split(dataset: EcgDataset, ids: np.ndarray) -> dict[str, np.ndarray] | None:
    folds = dataset.meta.get("strat_fold")
    if not folds:
        return None
    fold = np.array([int(folds[i]) for i in ids])
    split = {"train": np.flatnonzero(fold <= 8), "val": np.flatnonzero(fold == 9), "test": np.flatnonzero(fold == 10)}
    return split if all(len(v) for v in split.values()) else None


# ------------------------------------------------------------------------------------------------ beats
def _beat_task(dataset, records, skipped, preprocessor, task_config) -> EcgTask:
    preprocessor.leads = _lead_names(records, preprocessor)
    signals, unusable, notes = _condition(records, preprocessor)
    extension = dataset.meta.get("annotation_extension", "atr")
    ids, owners, labels, peaks = [], [], [], []
    edge_beats = 0
    for record in records:
        if record.id not in signals:
            continue
        annotations = read_beat_annotations(record.meta["source"], extension)
        ratio = preprocessor.sampling_rate_hz / annotations.sampling_rate_hz
        length = signals[record.id].shape[1]
        before = int(round(preprocessor.before_s * preprocessor.sampling_rate_hz))
        after = int(round(preprocessor.after_s * preprocessor.sampling_rate_hz))
        for sample, symbol in zip(annotations.sample, annotations.symbol):
            label = aami_class(symbol)
            if label is None:
                continue
            if not before <= round(sample * ratio) <= length - after:
                edge_beats += 1
                continue
            ids.append(f"{record.id}:{int(sample)}")
            owners.append(record.id)
            labels.append(label)
            peaks.append(int(round(sample * ratio)))
    if not labels:
        raise DataValidationError(f"{dataset.root}: the annotation files hold no heartbeat annotations.")
    present = [c for c in AAMI_CLASSES if c in set(labels)]
    class_names = list(task_config.class_names) if task_config.class_names else present
    index = {c: k for k, c in enumerate(class_names)}
    keep = np.array([label in index for label in labels])
    owners_array = np.array(owners, dtype=object)[keep]
    y = np.array([index[label] for label, k in zip(labels, keep) if k], dtype=np.int64)
    result = EcgTask(name="beats", kind=TaskKind.BINARY if len(class_names) == 2 else TaskKind.MULTICLASS,
                     class_names=class_names, ids=np.array(ids, dtype=object)[keep], records=owners_array, y=y,
                     groups=owners_array.copy(), signals=signals, beat_peaks=np.array(peaks)[keep],
                     raw={r.id: r for r in records if r.id in signals}, unusable=unusable, skipped=skipped,
                     predefined_split=_mitbih_split(owners_array), source=str(dataset.root),
                     layout=dataset.layout, preprocessor=preprocessor, notes=notes)
    if edge_beats:
        result.notes.append(f"{edge_beats} beat(s) within {preprocessor.before_s:g} s of a recording's start or end "
                            "left out (no full beat window)")
    dropped = sorted(set(labels) - set(class_names))
    if dropped:
        result.notes.append(f"beats of class(es) {', '.join(dropped)} left out (not in task.class_names)")
    return result


def _mitbih_split(records: np.ndarray) -> dict[str, np.ndarray] | None:
    """de Chazal's DS1 (train; its last quarter of records validates) / DS2 (test) when the records are MIT-BIH."""
    names = set(records)
    if not names <= set(MITBIH_DS1) | set(MITBIH_DS2) or not names & set(MITBIH_DS1) or not names & set(MITBIH_DS2):
        return None
    ds1 = [r for r in MITBIH_DS1 if r in names]
    if len(ds1) < 2:
        return None
    val_records = set(ds1[-max(1, len(ds1) // 4):])
    index = np.arange(len(records))
    in_val = np.isin(records, list(val_records))
    in_ds2 = np.isin(records, list(MITBIH_DS2))
    return {"train": index[~in_val & ~in_ds2], "val": index[in_val], "test": index[in_ds2]}


def _check_label_counts(task: EcgTask) -> None:
    if task.kind is TaskKind.MULTILABEL:
        return
    counts = np.bincount(task.y, minlength=len(task.class_names))
    empty = [c for c, n in zip(task.class_names, counts) if n == 0]
    if empty:
        raise DataValidationError(f"{task.source}: no usable recording has class(es) {', '.join(empty)}.")


def task_summary(task: EcgTask) -> dict[str, Any]:
    p = task.preprocessor
    return {"kind": task.kind.value, "ecg_task": task.name, "class_names": task.class_names,
            "positive_class": task.class_names[1] if task.kind is TaskKind.BINARY else None,
            "label": "rhythm" if task.name == "rhythm" else ("beat class" if task.name == "beats" else "findings"),
            "layout": task.layout, "leads": p.leads, "sampling_rate_hz": p.sampling_rate_hz,
            "window_s": p.window_s, "stride_s": p.stride_s, "unit": p.unit,
            "n_recordings": int(len(set(task.records))), "n_samples": int(len(task.y)),
            "n_unusable": len(task.unusable)}

