"""Readers for ordinary image files (Pillow): one PNG/JPEG, a folder with one sub-folder per class, a CSV
manifest, and the ISIC 2018 / HAM10000 dermatology layout.

Images are kept in the bit depth they were stored in (uint8, or uint16 for 16-bit PNG), channel first
``(C, H, W)`` with C = 1 (grey) or 3 (RGB). Nothing is resized: folders of mixed sizes or channels are reported
(:meth:`ImageSet.shapes`, :meth:`ImageSet.require_uniform`) so the user chooses a transform explicitly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from medai.core.errors import DataValidationError, InvalidParameterError, MissingDependencyError, invalid_parameter
from medai.core.records import Modality, Record


class OnInvalid(StrEnum):
    """What a folder, manifest or series reader does with a file it cannot read (shared by the io readers)."""

    RAISE = "raise"
    SKIP = "skip"


@dataclass
class ImageSet:
    """Records read from a folder or manifest, with what was skipped and the shapes found.

    Behaves as a sequence of :class:`Record` (``len``, iteration, indexing).

    Attributes:
        records: one record per readable image, ``label`` as given by the source (class folder name, manifest
            value, HAM10000 ``dx``).
        classes: the sorted distinct labels.
        skipped: ``(file, reason)`` for every file skipped with ``on_invalid="skip"``.
        source: the folder or CSV read.
    """

    records: list[Record]
    classes: list[Any]
    source: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    def shapes(self) -> Counter:
        """How many images have each shape ``(C, H, W)``."""
        return Counter(record.shape for record in self.records)

    def label_indices(self) -> np.ndarray:
        """int64 ``(N,)``: the position of each record's label in :attr:`classes`."""
        index = {label: i for i, label in enumerate(self.classes)}
        return np.array([index[record.label] for record in self.records], dtype=np.int64)

    def describe(self) -> str:
        """One line for the CLI: counts per class, shapes, skipped files."""
        counts = Counter(record.label for record in self.records)
        per_class = ", ".join(f"{label}: {counts[label]}" for label in self.classes)
        shapes = ", ".join(f"{'x'.join(map(str, s))} ({n})" for s, n in self.shapes().most_common())
        return (
            f"{self.source}: {len(self)} images in {len(self.classes)} classes ({per_class}); shapes {shapes}; "
            f"skipped {len(self.skipped)}"
        )

    def require_uniform(self) -> None:
        """Raise unless all images share one shape ``(C, H, W)`` (needed to stack them without a resize).

        Raises:
            DataValidationError: lists each shape with its count and one example file.
        """
        shapes = self.shapes()
        if len(shapes) <= 1:
            return
        example = {}
        for record in self.records:
            example.setdefault(record.shape, record.meta.get("source"))
        listed = "; ".join(f"{shape} (C, H, W): {n} images, e.g. {example[shape]}" for shape, n in shapes.most_common())
        raise DataValidationError(
            f"{self.source}: images have {len(shapes)} different shapes: {listed}. medai does not resize silently; "
            "set preprocessing.image_size: [H, W] (and preprocessing.channels: 1 or 3) in the recipe to resize and "
            "convert them, or fix the files."
        )


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise MissingDependencyError("Reading PNG/JPEG needs Pillow: pip install pillow") from None
    return Image, ImageOps


def read_image(path: str | Path, label: Any = None, patient_id: str | None = None) -> Record:
    """Read one PNG, JPEG (or other Pillow-readable) image; DICOM (``.dcm`` or the DICM preamble) and NIfTI
    (``.nii``, ``.nii.gz``) files go to :func:`medai.io.dicom.read_dicom` / :func:`medai.io.nifti.read_nifti`.

    EXIF orientation (phone and dermatoscope photos) is applied so that the pixels are upright.

    Args:
        path: the image file.
        label: label to attach (from a class folder or a manifest).
        patient_id: patient to attach.

    Returns:
        ``Modality.IMAGE`` record with ``data`` ``(C, H, W)``: grey (L, 1-bit) -> C = 1 uint8; 16-bit grey
        -> C = 1 uint16; 32-bit integer or float grey -> C = 1 float32; RGB, palette, CMYK, YCbCr -> C = 3
        uint8; RGBA / LA -> alpha dropped (``meta["note"]`` says so). ``meta`` holds ``source``, ``format``,
        ``mode`` (Pillow's, as stored).

    Raises:
        InvalidParameterError: the file does not exist.
        DataValidationError: not an image Pillow can read, or truncated/corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"Image file not found: {path}.")
    if _is_dicom(path) or path.name.lower().endswith((".nii", ".nii.gz")):
        return _read_medical(path, label, patient_id)
    Image, ImageOps = _pil()
    try:
        with Image.open(path) as image:
            image_format, mode = image.format, image.mode
            image = ImageOps.exif_transpose(image)
            image.load()
            data, note = _to_array(image)
    except (Image.UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataValidationError(
            f"{path}: not a readable image ({exc.__class__.__name__}). Expected PNG or JPEG (any format Pillow reads)."
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataValidationError(
            f"{path}: truncated or corrupt image ({exc.__class__.__name__}: {str(exc)[:120]})."
        ) from None
    meta: dict[str, Any] = {"source": str(path), "format": image_format, "mode": mode}
    if note:
        meta["note"] = note
    return Record(id=path.stem, modality=Modality.IMAGE, data=data, patient_id=patient_id, label=label, meta=meta)


def _is_dicom(path: Path) -> bool:
    """A ``.dcm``/``.dicom`` file, or any file with the DICOM Part 10 preamble ("DICM" at byte 128)."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _read_medical(path: Path, label: Any, patient_id: str | None) -> Record:
    """DICOM and NIfTI files in folders and manifests: the dedicated readers, with the label attached."""
    import dataclasses

    if _is_dicom(path):
        from medai.io.dicom import read_dicom

        record = read_dicom(path)
    else:
        from medai.io.nifti import read_nifti

        record = read_nifti(path)
    return dataclasses.replace(record, label=label, patient_id=patient_id or record.patient_id)


def _to_array(image) -> tuple[np.ndarray, str | None]:
    mode = image.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        note = f"alpha channel dropped (stored as {mode})"
        image = image.convert("L" if mode == "LA" else "RGB")
    else:
        note = None
    if image.mode == "1":
        return np.asarray(image.convert("L"), dtype=np.uint8)[None], "1-bit image stored as 0/255"
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8)[None], note
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)[None], note
    if image.mode == "I":
        array = np.asarray(image)
        if array.size and array.min() >= 0 and array.max() <= np.iinfo(np.uint16).max:
            return array.astype(np.uint16)[None], note  # 16-bit PNGs open as mode "I" in some Pillow versions
        return array.astype(np.float32)[None], note
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)[None], note
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)), note


def _check_on_invalid(value: str, owner: str) -> OnInvalid:
    if value not in OnInvalid.__members__.values():
        raise invalid_parameter("on_invalid", owner, "one of ['raise', 'skip']", value)
    return OnInvalid(value)


def _visible_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_image_folder(folder: str | Path, on_invalid: str = OnInvalid.RAISE) -> ImageSet:
    """Read a folder with one sub-folder per class (``folder/<class>/**/<image>``).

    Labels are the class folder names; :attr:`ImageSet.classes` is their sorted list (the class index order).
    Hidden files (``.DS_Store``) are ignored.

    Args:
        folder: the root folder.
        on_invalid: "raise" (default) on a file that is not a readable image or lies outside a class folder;
            "skip" skips it and counts it in :attr:`ImageSet.skipped`.

    Raises:
        InvalidParameterError: the folder does not exist, or bad ``on_invalid``.
        DataValidationError: no class sub-folders; a class with no images (names it); a non-image file (names it,
            unless skipped).
    """
    folder = Path(folder)
    policy = _check_on_invalid(on_invalid, "read_image_folder")
    if not folder.is_dir():
        raise InvalidParameterError(f"Image folder not found: {folder}. Pass a folder with one sub-folder per class.")
    skipped: list[tuple[str, str]] = []
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for stray in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        reason = "file outside a class sub-folder"
        if policy == OnInvalid.RAISE:
            raise DataValidationError(
                f"{stray}: {reason}. Expected folder/<class>/<image>; move it into its class folder or remove it."
            )
        skipped.append((str(stray), reason))
    if not class_dirs:
        raise DataValidationError(
            f"{folder}: no class sub-folders. Expected one sub-folder per class (e.g. {folder}/normal, "
            f"{folder}/pneumonia) holding the images."
        )
    records = []
    for class_dir in class_dirs:
        count = 0
        for file in _visible_files(class_dir):
            try:
                records.append(read_image(file, label=class_dir.name))
                count += 1
            except DataValidationError as exc:
                if policy == OnInvalid.RAISE:
                    raise
                skipped.append((str(file), str(exc)))
        if count == 0:
            raise DataValidationError(
                f"{class_dir}: class '{class_dir.name}' has no readable images. Add images or remove the folder."
            )
    return ImageSet(records=records, classes=[d.name for d in class_dirs], source=folder, skipped=skipped)


def _as_python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _id_string(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # pandas reads an integer column with gaps as float
    return str(value).strip() or None


def read_manifest(csv_path: str | Path, on_invalid: str = OnInvalid.RAISE) -> ImageSet:
    """Read images listed in a CSV manifest with columns ``path,label[,patient_id]``; any other column (sex, age,
    race/ethnicity, site, ...) is kept in ``meta["attributes"]`` for the subgroup audit and never used as input.

    Relative paths are resolved from the CSV's folder. Labels are kept as read (strings or integers);
    ``patient_id``, when present, is attached to each record for patient-level splits.

    Args:
        csv_path: the manifest.
        on_invalid: "raise" (default) or "skip" a row whose image is missing or unreadable (counted in
            :attr:`ImageSet.skipped`).

    Raises:
        InvalidParameterError: the CSV does not exist, or bad ``on_invalid``.
        DataValidationError: missing ``path``/``label`` columns (names those present), an empty label or path
            (names the row), a missing or unreadable image (names row and file, unless skipped).
    """
    from medai.io.tabular import read_table

    csv_path = Path(csv_path)
    policy = _check_on_invalid(on_invalid, "read_manifest")
    frame = read_table(csv_path)
    missing = [column for column in ("path", "label") if column not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{csv_path}: missing columns {missing}. Found {list(frame.columns)}; expected path,label[,patient_id]."
        )
    has_patient = "patient_id" in frame.columns
    # other columns (sex, age, site, ...) describe the patient or the acquisition: kept as the record's
    # ``meta["attributes"]`` for the subgroup audit, never given to the model
    attribute_columns = [c for c in frame.columns if c not in ("path", "label", "patient_id")]
    records, skipped = [], []
    for row_number, row in enumerate(frame.itertuples(index=False), start=2):  # row 1 is the header
        raw_path, label = row.path, _as_python(row.label)
        if not isinstance(raw_path, str) or not raw_path.strip():
            raise DataValidationError(f"{csv_path}: row {row_number} has an empty 'path'.")
        if label is None or (isinstance(label, float) and np.isnan(label)):
            raise DataValidationError(f"{csv_path}: row {row_number} ({raw_path}) has an empty 'label'.")
        path = Path(raw_path.strip())
        path = path if path.is_absolute() else csv_path.parent / path
        patient = _id_string(row.patient_id) if has_patient else None
        try:
            if not path.is_file():
                raise DataValidationError(f"{path}: listed in {csv_path.name} row {row_number} but not found.")
            record = read_image(path, label=label, patient_id=patient)
            if attribute_columns:
                values = frame.iloc[row_number - 2]
                record.meta["attributes"] = {str(c): _as_python(values[c]) for c in attribute_columns}
            records.append(record)
        except DataValidationError as exc:
            if policy == OnInvalid.RAISE:
                raise DataValidationError(f"{csv_path}: row {row_number}: {exc}") from None
            skipped.append((str(path), str(exc)))
    if not records:
        raise DataValidationError(f"{csv_path}: no readable images ({len(skipped)} rows skipped).")
    classes = sorted({r.label for r in records}, key=str)
    return ImageSet(records=records, classes=classes, source=csv_path, skipped=skipped)


HAM10000_DIAGNOSES = {
    "akiec": "actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis-like lesion",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic naevus",
    "vasc": "vascular lesion",
}


def read_ham10000(folder: str | Path, on_invalid: str = OnInvalid.RAISE) -> ImageSet:
    """Read the ISIC 2018 Task 3 / HAM10000 layout (Tschandl et al., Scientific Data 2018).

    Layout: ``folder/HAM10000_metadata.csv`` with columns ``lesion_id, image_id, dx`` (others kept in ``meta``)
    and the images ``<image_id>.jpg`` anywhere below ``folder`` (the release splits them into
    ``HAM10000_images_part_1`` and ``_part_2``).

    Labels are the ``dx`` codes (see :data:`HAM10000_DIAGNOSES`). HAM10000 has no patient identifier; several
    images show the same lesion, so ``Record.patient_id`` is the ``lesion_id`` (``meta["patient_id_source"]``)
    and patient-level splits keep all images of a lesion together, as the dataset's authors advise.

    Raises:
        InvalidParameterError: the folder does not exist, or bad ``on_invalid``.
        DataValidationError: the metadata CSV is missing, lacks columns, or an image_id has no image file
            (unless skipped).
    """
    from medai.io.tabular import read_table

    folder = Path(folder)
    policy = _check_on_invalid(on_invalid, "read_ham10000")
    if not folder.is_dir():
        raise InvalidParameterError(f"HAM10000 folder not found: {folder}.")
    metadata = folder / "HAM10000_metadata.csv"
    if not metadata.is_file():
        raise DataValidationError(
            f"{folder}: no HAM10000_metadata.csv. Expected the ISIC 2018 / HAM10000 layout: the metadata CSV and "
            "the image folders side by side."
        )
    frame = read_table(metadata)
    missing = [c for c in ("lesion_id", "image_id", "dx") if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{metadata}: missing columns {missing}. Found {list(frame.columns)}.")
    images = {p.stem: p for p in _visible_files(folder) if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    extra_columns = [c for c in frame.columns if c not in ("lesion_id", "image_id", "dx")]
    records, skipped = [], []
    for row_number, row in enumerate(frame.to_dict("records"), start=2):
        image_id = str(row["image_id"]).strip()
        try:
            if image_id not in images:
                raise DataValidationError(
                    f"{metadata}: row {row_number}: no image file for image_id '{image_id}' below {folder}."
                )
            record = read_image(images[image_id], label=str(row["dx"]).strip(), patient_id=_id_string(row["lesion_id"]))
        except DataValidationError as exc:
            if policy == OnInvalid.RAISE:
                raise
            skipped.append((image_id, str(exc)))
            continue
        extra = {c: _as_python(row[c]) for c in extra_columns}  # age, sex, localization, dx_type: audit only
        record.meta.update({"patient_id_source": "lesion_id", **extra, "attributes": extra})
        records.append(record)
    if not records:
        raise DataValidationError(f"{folder}: no readable images ({len(skipped)} rows skipped).")
    return ImageSet(records=records, classes=sorted({r.label for r in records}), source=folder, skipped=skipped)


def read_images_for_prediction(path: str | Path) -> list[Record]:
    """The image records to predict for: one image file (PNG/JPEG/DICOM/NIfTI), every image below a folder (in
    sorted order; a file that is not an image is an error naming it), or the images of a manifest
    (``path,label[,patient_id]``; the labels are not used for prediction).

    Raises:
        InvalidParameterError: the path does not exist.
        DataValidationError: an unreadable file (named), or a folder without images.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidParameterError(f"Input not found: {path}. Pass an image file, a folder of images or a manifest.")
    if path.is_dir():
        files = _visible_files(path)
        if not files:
            raise DataValidationError(f"{path}: the folder holds no files to predict for.")
        return [read_image(file) for file in files]
    if path.suffix.lower() in (".csv", ".tsv"):
        return list(read_manifest(path).records)
    return [read_image(path)]
