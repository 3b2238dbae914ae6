"""Reader for MedMNIST-format ``.npz`` files (MedMNIST v2, Yang et al., Scientific Data 2023).

A MedMNIST file holds the official split as six arrays: ``train_images, train_labels, val_images, val_labels,
test_images, test_labels``. Images are ``(N, H, W)`` grey, ``(N, H, W, 3)`` RGB or ``(N, D, H, W)`` 3-D (grey);
labels are ``(N,)`` or ``(N, 1)`` class indices, or ``(N, K)`` multi-label 0/1 indicators (ChestMNIST).

medai keeps the images as uint8 in its own layout ``(N, C, H, W)`` / ``(N, C, D, H, W)``: a 28 px dataset of
100k images is 80 MB as uint8 and 300 MB as float32, so conversion to float happens per batch, not here.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from medai.core.errors import DataValidationError, InvalidParameterError, invalid_parameter
from medai.core.records import Modality, Record

SPLITS = ("train", "val", "test")
EXPECTED_KEYS = tuple(f"{split}_{part}" for split in SPLITS for part in ("images", "labels"))


class LabelKind(StrEnum):
    """What the labels of a dataset mean."""

    BINARY = "binary"  # one class index per image, 0 or 1
    MULTICLASS = "multiclass"  # one class index per image, 0 .. n_classes - 1
    MULTILABEL = "multilabel"  # K independent 0/1 findings per image


@dataclass(frozen=True)
class MedMNISTData:
    """The official splits of one MedMNIST file, with the facts detected from it.

    Attributes:
        source: the ``.npz`` path.
        images: split name -> uint8 array ``(N, C, H, W)`` (2-D) or ``(N, C, D, H, W)`` (3-D); C = 1 or 3.
        labels: split name -> int64 class indices ``(N,)`` (binary, multiclass) or uint8 indicators ``(N, K)``
            (multilabel; 1 = finding present, 0 = absent).
        dimensions: 2 or 3 spatial dimensions.
        channels: 1 (grey) or 3 (RGB).
        label_kind: binary, multiclass or multilabel.
        n_classes: number of classes (largest index + 1 over all splits), or K for multilabel.
        image_size: spatial shape, ``(H, W)`` or ``(D, H, W)``.
    """

    source: Path
    images: dict[str, np.ndarray] = field(repr=False)
    labels: dict[str, np.ndarray] = field(repr=False)
    dimensions: int
    channels: int
    label_kind: LabelKind
    n_classes: int
    image_size: tuple[int, ...]

    def __len__(self) -> int:
        return sum(len(labels) for labels in self.labels.values())

    def split_sizes(self) -> dict[str, int]:
        """Number of images per official split, e.g. ``{"train": 546, "val": 78, "test": 156}``."""
        return {split: int(len(self.labels[split])) for split in SPLITS}

    def describe(self) -> str:
        """One line for the CLI: what was detected (no patient data is involved)."""
        kind = "grey" if self.channels == 1 else "RGB"
        size = "x".join(str(s) for s in self.image_size)
        sizes = "/".join(str(n) for n in self.split_sizes().values())
        return (
            f"{self.source.name}: {self.dimensions}-D {kind} {size}, {self.label_kind} with {self.n_classes} "
            f"{'labels' if self.label_kind == LabelKind.MULTILABEL else 'classes'}, train/val/test {sizes}"
        )

    def records(self, split: str) -> Iterator[Record]:
        """Yield one :class:`Record` per image of ``split``; ``data`` is a uint8 view ``(C, *spatial)``.

        ``meta`` holds ``split``, ``index`` (position in the split) and ``source``. 3-D MedMNIST carries no
        physical voxel size, so no ``spacing_mm`` is set (medai does not invent one).
        """
        if split not in SPLITS:
            raise invalid_parameter("split", "MedMNISTData.records", f"one of {list(SPLITS)}", split)
        modality = Modality.IMAGE if self.dimensions == 2 else Modality.VOLUME
        images, labels = self.images[split], self.labels[split]
        for index in range(len(labels)):
            label = labels[index]
            yield Record(
                id=f"{self.source.stem}/{split}/{index}",
                modality=modality,
                data=images[index],
                label=int(label) if label.ndim == 0 else label,
                meta={"split": split, "index": index, "source": str(self.source)},
            )


def read_medmnist(path: str | Path) -> MedMNISTData:
    """Read a MedMNIST-format ``.npz`` with its official train/val/test split.

    Layout detection: images of ndim 3 are ``(N, H, W)`` grey; ndim 4 with a last axis of 3 are ``(N, H, W, 3)``
    RGB; other ndim 4 are ``(N, D, H, W)`` 3-D grey volumes. Labels of shape ``(N,)`` or ``(N, 1)`` are class
    indices (binary when at most 2 classes); ``(N, K)`` with K > 1 are multi-label 0/1 indicators.

    Args:
        path: the ``.npz`` file.

    Returns:
        The splits as uint8 arrays in medai layout ``(N, C, *spatial)`` with labels and detected facts.

    Raises:
        InvalidParameterError: the file does not exist.
        DataValidationError: not a readable npz, expected keys missing, wrong dtype or ndim, image and label
            counts differ, splits disagree in image shape or label width, labels NaN, negative, non-integer or
            (multi-label) not 0/1. The message names the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"MedMNIST file not found: {path}. Pass the path of the .npz file.")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataValidationError(
            f"{path}: not a readable .npz file ({exc.__class__.__name__}). Expected a MedMNIST-format numpy archive "
            f"with keys {', '.join(EXPECTED_KEYS)}."
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataValidationError(
            f"{path}: holds a single array, not an .npz archive with keys {', '.join(EXPECTED_KEYS)}."
        )
    with archive:
        missing = [key for key in EXPECTED_KEYS if key not in archive.files]
        if missing:
            raise DataValidationError(
                f"{path}: missing keys {missing}. Found {sorted(archive.files)}; expected {list(EXPECTED_KEYS)} "
                "(the MedMNIST official split)."
            )
        try:
            raw = {key: archive[key] for key in EXPECTED_KEYS}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DataValidationError(
                f"{path}: an array could not be read ({exc.__class__.__name__}); the file is damaged."
            ) from None

    images = {split: _to_medai_layout(path, f"{split}_images", raw[f"{split}_images"]) for split in SPLITS}
    labels = {split: _check_labels(path, f"{split}_labels", raw[f"{split}_labels"]) for split in SPLITS}

    for split in SPLITS:
        if len(images[split]) != len(labels[split]):
            raise DataValidationError(
                f"{path}: '{split}_images' has {len(images[split])} images but '{split}_labels' has "
                f"{len(labels[split])} labels. Each image needs exactly one label row."
            )
    shapes = {split: images[split].shape[1:] for split in SPLITS}
    if len(set(shapes.values())) != 1:
        listed = ", ".join(f"{split}_images {shape} (C, *spatial)" for split, shape in shapes.items())
        raise DataValidationError(f"{path}: the splits have different image shapes: {listed}. Expected one shape.")
    widths = {split: (1 if labels[split].ndim == 1 else labels[split].shape[1]) for split in SPLITS}
    if len(set(widths.values())) != 1:
        raise DataValidationError(f"{path}: the splits have different label widths {widths}. Expected one width.")

    shape = shapes["train"]
    if widths["train"] == 1:
        labels = {split: labels[split].reshape(-1).astype(np.int64) for split in SPLITS}
        n_classes = int(max(int(labels[split].max(initial=0)) for split in SPLITS)) + 1
        label_kind = LabelKind.BINARY if n_classes <= 2 else LabelKind.MULTICLASS
        n_classes = max(n_classes, 2)
    else:
        for split in SPLITS:
            if not np.isin(labels[split], (0, 1)).all():
                raise DataValidationError(
                    f"{path}: '{split}_labels' has shape {labels[split].shape} (multi-label) but values other than "
                    "0 and 1. Multi-label indicators must be 0 (absent) or 1 (present)."
                )
        labels = {split: labels[split].astype(np.uint8) for split in SPLITS}
        label_kind, n_classes = LabelKind.MULTILABEL, widths["train"]
    return MedMNISTData(
        source=path,
        images=images,
        labels=labels,
        dimensions=len(shape) - 1,
        channels=int(shape[0]),
        label_kind=label_kind,
        n_classes=n_classes,
        image_size=tuple(int(s) for s in shape[1:]),
    )


def _to_medai_layout(path: Path, key: str, array: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` -> ``(N, 1, H, W)``; ``(N, H, W, 3)`` -> ``(N, 3, H, W)``;
    ``(N, D, H, W)`` -> ``(N, 1, D, H, W)``."""
    if array.dtype != np.uint8:
        raise DataValidationError(
            f"{path}: '{key}' has dtype {array.dtype}; MedMNIST images are uint8 (0-255). Convert the images to "
            "uint8 before saving."
        )
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4 and array.shape[-1] == 3:
        # One contiguous uint8 copy: channel-first batches are then cheap to slice.
        return np.ascontiguousarray(np.moveaxis(array, -1, 1))
    if array.ndim == 4:
        return array[:, None]
    raise DataValidationError(
        f"{path}: '{key}' has shape {array.shape}; expected (N, H, W) grey, (N, H, W, 3) RGB or (N, D, H, W) 3-D."
    )


def _check_labels(path: Path, key: str, array: np.ndarray) -> np.ndarray:
    if array.ndim not in (1, 2):
        raise DataValidationError(f"{path}: '{key}' has shape {array.shape}; expected (N,), (N, 1) or (N, K).")
    if array.dtype.kind == "f":
        if np.isnan(array).any():
            raise DataValidationError(
                f"{path}: '{key}' contains NaN labels ({int(np.isnan(array).sum())} values). Remove those images "
                "or give them a label."
            )
        if not np.equal(np.mod(array, 1), 0).all():
            raise DataValidationError(f"{path}: '{key}' contains non-integer labels; expected class indices or 0/1.")
    elif array.dtype.kind not in "iub":
        raise DataValidationError(f"{path}: '{key}' has dtype {array.dtype}; expected integer labels.")
    if (array < 0).any():
        raise DataValidationError(f"{path}: '{key}' contains negative labels; expected class indices from 0.")
    return array
