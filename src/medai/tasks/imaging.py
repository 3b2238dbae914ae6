"""Image classification tasks: from a MedMNIST ``.npz``, a class-folder tree, a CSV manifest or a HAM10000 folder to
uint8 images with labels, ids, patient ids and (for ``.npz``) the official split.

What is detected is printed and saved: 2-D vs 3-D, grey vs RGB, binary vs multi-class vs multi-label. Labels:
binary ``y`` is 1 for the positive class (``class_names[1]``) and 0 otherwise; multi-class ``y`` holds indices into
``class_names``; multi-label ``y`` is ``(N, K)`` with 1 = finding present, 0 = absent (one column per finding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medai.core.config import PreprocessingConfig, TaskConfig, TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError
from medai.data.images import ImagePreprocessor
from medai.io.images import ImageSet, read_ham10000, read_image_folder, read_manifest
from medai.io.medmnist import SPLITS, LabelKind, read_medmnist


@dataclass
class ImageTask:
    """Images and labels ready to split and train on.

    Attributes:
        kind: binary, multiclass or multilabel.
        images: uint8 ``(N, C, *spatial)``, every image prepared to one size and channel count.
        y: binary / multiclass int64 ``(N,)``; multilabel float32 ``(N, K)``.
        class_names: class names (index order) or the K finding names.
        positive_class: the class coded 1 (binary).
        ids: record ids ``(N,)`` (file stem, SOPInstanceUID, ``<npz>/<split>/<index>``).
        groups: patient ids ``(N,)`` when the source has them (patient-level split), else None.
        predefined_split: official split indices (MedMNIST), else None.
        source: path for messages.
        skipped: ``(file, reason)`` of files skipped with ``on_invalid: skip``.
        notes: preparation notes (resizing, intensity scaling) — counts, not patient data.
        preprocessor: the (unfitted) preprocessor that prepared the images; fitted later on train.
        attributes: per image (row order of ``images``), the patient/acquisition attributes its source carries
            (manifest columns beyond path/label/patient_id, HAM10000 metadata) for the subgroup audit — never a
            model input; None when there are none.
    """

    kind: TaskKind
    images: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    class_names: list[str]
    positive_class: str | None
    ids: np.ndarray = field(repr=False)
    groups: np.ndarray | None
    predefined_split: dict[str, np.ndarray] | None
    source: str
    skipped: list[tuple[str, str]]
    notes: list[str]
    preprocessor: ImagePreprocessor
    attributes: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def spatial_dims(self) -> int:
        return self.images.ndim - 2

    @property
    def strata(self) -> np.ndarray:
        """What a random split is stratified by: the class, or for multi-label the rarest present finding."""
        if self.kind is not TaskKind.MULTILABEL:
            return self.y
        prevalence = self.y.mean(axis=0)
        rarest = np.where(self.y > 0, prevalence[None, :], np.inf).argmin(axis=1)
        return np.where(self.y.sum(axis=1) > 0, rarest + 1, 0)

    def describe(self) -> str:
        """One line: what was detected (counts only)."""
        kind = "grey" if self.images.shape[1] == 1 else "RGB"
        size = "x".join(str(s) for s in self.images.shape[2:])
        if self.kind is TaskKind.MULTILABEL:
            counts = ", ".join(f"{c} {int(n)}" for c, n in zip(self.class_names, self.y.sum(axis=0)))
            labels = f"multi-label with {len(self.class_names)} findings (positives: {counts})"
        else:
            counts = np.bincount(self.y, minlength=len(self.class_names))
            per_class = ", ".join(f"{c} {n}" for c, n in zip(self.class_names, counts))
            positive = f", positive class '{self.positive_class}'" if self.positive_class else ""
            labels = f"{self.kind.value} ({per_class}{positive})"
        patients = f"; {len(np.unique(self.groups))} patients" if self.groups is not None else ""
        return (f"Task: {self.spatial_dims}-D {kind} images {size}, {len(self.y)} images{patients}; {labels}"
                + (f"; {len(self.skipped)} file(s) skipped" if self.skipped else ""))


def is_image_source(path: str | Path) -> bool:
    """True for data the imaging workflow reads: an ``.npz``, a folder, or a CSV manifest with a ``path`` column."""
    path = Path(path)
    if path.suffix.lower() == ".npz" or path.is_dir():
        return True
    if path.suffix.lower() in (".csv", ".tsv") and path.is_file():
        with path.open(encoding="utf-8", errors="replace") as handle:
            header = handle.readline().strip().lower()
        separator = "\t" if path.suffix.lower() == ".tsv" else ","
        columns = [c.strip().strip('"') for c in header.split(separator)]
        return "path" in columns and "label" in columns
    return False


def build_image_task(path: str | Path, task: TaskConfig, preprocessing: PreprocessingConfig) -> ImageTask:
    """Read ``path`` and build the task (see module docstring).

    Raises:
        DataValidationError: unreadable files (unless ``task.on_invalid`` is ``skip``), an empty folder or class,
            images that differ in size or channels without ``preprocessing.image_size``/``channels``, fewer than
            two classes, a ``positive_class`` or ``class_names`` that do not match the data.
    """
    path = Path(path)
    preprocessor = ImagePreprocessor(preprocessing.image_size, preprocessing.channels, preprocessing.window)
    if path.suffix.lower() == ".npz":
        return _from_medmnist(path, task, preprocessor)
    if path.is_dir() and (path / "HAM10000_metadata.csv").is_file():
        image_set = read_ham10000(path, on_invalid=task.on_invalid)
    elif path.is_dir():
        image_set = read_image_folder(path, on_invalid=task.on_invalid)
    elif path.is_file():
        image_set = read_manifest(path, on_invalid=task.on_invalid)
    else:
        raise InvalidParameterError(f"Image data not found: {path}. Pass an .npz, a class folder or a CSV manifest.")
    return _from_image_set(image_set, task, preprocessor)


def _from_medmnist(path: Path, task: TaskConfig, preprocessor: ImagePreprocessor) -> ImageTask:
    data = read_medmnist(path)
    images, labels, split, ids, start = [], [], {}, [], 0
    for name in SPLITS:
        array = data.images[name]
        if preprocessor.image_size is not None or preprocessor.channels is not None:
            array = preprocessor.prepare_all(list(data.records(name)))
        images.append(array)
        labels.append(data.labels[name])
        split[name] = np.arange(start, start + len(array))
        ids.extend(f"{path.stem}/{name}/{i}" for i in range(len(array)))
        start += len(array)
    y = np.concatenate(labels)
    kind = {LabelKind.BINARY: TaskKind.BINARY, LabelKind.MULTICLASS: TaskKind.MULTICLASS,
            LabelKind.MULTILABEL: TaskKind.MULTILABEL}[data.label_kind]
    names = list(task.class_names) if task.class_names else [str(i) for i in range(data.n_classes)]
    if len(names) != data.n_classes:
        raise DataValidationError(
            f"{path}: task.class_names has {len(names)} names but the labels have {data.n_classes} "
            f"{'findings' if kind is TaskKind.MULTILABEL else 'classes'}."
        )
    result = ImageTask(kind=kind, images=np.concatenate(images), y=y, class_names=names, positive_class=None,
                       ids=np.asarray(ids, dtype=object), groups=None, predefined_split=split, source=str(path),
                       skipped=[], notes=[], preprocessor=preprocessor)
    if kind is TaskKind.MULTILABEL:
        result.y = y.astype(np.float32)
        return result
    return _resolve_classes(result, task)


def _from_image_set(image_set: ImageSet, task: TaskConfig, preprocessor: ImagePreprocessor) -> ImageTask:
    if len(image_set.classes) < 2:
        raise DataValidationError(
            f"{image_set.source}: found one class only ({image_set.classes[0]}); a classifier needs at least two."
        )
    notes: dict[str, int] = {}
    arrays = []
    for record in image_set.records:
        array, record_notes = preprocessor.prepare(record)
        arrays.append(array)
        for note in record_notes:
            key = note.split(" from ")[0] if note.startswith("resized") else note.split(" (")[0]
            notes[key] = notes.get(key, 0) + 1
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        image_set.require_uniform()  # raises, naming the shapes and an example file of each
        raise DataValidationError(
            f"{image_set.source}: images differ in shape {sorted(shapes)}; set preprocessing.image_size and "
            "preprocessing.channels."
        )
    names = [str(c) for c in image_set.classes]
    y = image_set.label_indices()
    groups = [r.patient_id for r in image_set.records]
    has_groups = any(g is not None for g in groups)
    if has_groups and any(g is None for g in groups):
        missing = sum(g is None for g in groups)
        raise DataValidationError(f"{image_set.source}: {missing} image(s) have no patient_id while others do; "
                                  "give every row a patient_id or none.")
    result = ImageTask(
        kind=TaskKind.BINARY if len(names) == 2 else TaskKind.MULTICLASS, images=np.stack(arrays), y=y,
        class_names=names, positive_class=None, ids=np.asarray([r.id for r in image_set.records], dtype=object),
        groups=np.asarray(groups, dtype=object) if has_groups else None, predefined_split=None,
        source=str(image_set.source), skipped=list(image_set.skipped),
        notes=[f"{n} image(s): {note}" for note, n in notes.items()], preprocessor=preprocessor,
        attributes=_attributes(image_set.records))
    if task.class_names is not None:
        raise InvalidParameterError(
            f"{image_set.source}: task.class_names is only for data that stores class indices (.npz); here the "
            f"classes are named by the data ({', '.join(names)})."
        )
    return _resolve_classes(result, task)


def _attributes(records) -> pd.DataFrame | None:
    rows = [r.meta.get("attributes") or {} for r in records]
    return pd.DataFrame.from_records(rows) if any(rows) else None


def _resolve_classes(result: ImageTask, task: TaskConfig) -> ImageTask:
    """Binary: put the positive class at index 1 (``task.positive_class``, default the second class)."""
    if task.kind not in (TaskKind.CLASSIFICATION, TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.MULTILABEL):
        raise InvalidParameterError(
            f"{result.source}: image data supports classification tasks (binary, multiclass, multilabel); got "
            f"task kind '{task.kind.value}'."
        )
    if task.kind is TaskKind.MULTICLASS and result.kind is TaskKind.BINARY:
        result.kind = TaskKind.MULTICLASS  # two classes as a softmax, when asked for
    if result.kind is not TaskKind.BINARY:
        if task.positive_class is not None:
            raise InvalidParameterError(f"{result.source}: positive_class applies to binary tasks only.")
        return result
    names = result.class_names
    positive = task.positive_class if task.positive_class is not None else names[1]
    if positive not in names:
        raise InvalidParameterError(
            f"{result.source}: positive class '{positive}' is not one of the classes ({', '.join(names)})."
        )
    if positive == names[0]:
        result.class_names = [names[1], names[0]]
        result.y = 1 - result.y
    result.positive_class = positive
    return result


def task_summary(task: ImageTask) -> dict[str, Any]:
    """What run.json and task.json record about the task."""
    return {"kind": task.kind.value, "class_names": task.class_names, "positive_class": task.positive_class,
            "spatial_dims": task.spatial_dims, "channels": int(task.images.shape[1]),
            "image_size": list(task.images.shape[2:]), "label": "label"}
