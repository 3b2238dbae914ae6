"""Records: what a reader returns — one unit of input (an image, a volume, an ECG, a table row) with its
identity and provenance, before any task turns it into samples.

Data flow: ``Reader.read(path) -> Record`` → task → samples. A record never holds more than the reader saw:
labels are attached by the task (or by a reader whose format carries them, e.g. a MedMNIST npz or a class
folder), and ``meta`` says where every value came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class Modality(StrEnum):
    """What kind of data a record holds, which fixes the layout of ``Record.data``."""

    IMAGE = "image"  # (C, H, W): 2-D image, C = 1 (grey) or 3 (RGB)
    # (C, *3 spatial axes) with meta["spacing_mm"] per axis. Axis order is the reader's and is stated in meta:
    # DICOM series (C, slice, row, col) along the slice normal; NIfTI (C, X, Y, Z) in RAS+ (as MONAI).
    VOLUME = "volume"
    ECG = "ecg"  # (leads, samples); meta["sampling_rate_hz"]
    TABULAR = "tabular"  # one table row as a mapping column -> value
    TEXT = "text"  # a str


@dataclass(frozen=True)
class Record:
    """One input unit.

    Attributes:
        id: record identifier, unique within a dataset (file name stem, SOPInstanceUID, index in an npz, ...).
            Never printed together with patient data.
        modality: the layout of ``data`` (see :class:`Modality`).
        data: the values; images as numpy arrays ``(C, *spatial)`` (uint8 or float32, intensity meaning in
            ``meta``).
        patient_id: the patient the record belongs to, when known (patient-level splits use it).
        label: the label when the source format carries one (class folder, npz labels), else None.
        meta: provenance and acquisition facts: ``source`` (path), ``spacing_mm``, ``photometric``,
            ``rescale``, ``window``, ``split`` (an official split), ...
    """

    id: str
    modality: Modality
    data: Any
    patient_id: str | None = None
    label: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.data))
