"""DICOM readers (pydicom): one image (single- or multi-frame) and a series of slices as a 3-D volume.

Pixel values are returned in real units: the Modality LUT (RescaleSlope/RescaleIntercept, DICOM PS3.3 C.11.1)
is applied, so CT is in Hounsfield units. MONOCHROME1 images (minimum value = white, common for CR/DX chest
films) are inverted so that, as for every other record, higher values are brighter. Compressed transfer syntaxes
(JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE) are decoded by pydicom's plugins, which need
``pylibjpeg``, ``pylibjpeg-libjpeg`` and ``pylibjpeg-openjpeg`` (RLE is decoded by pydicom itself).

Messages name files, never patient names; ``Record.patient_id`` keeps the PatientID for patient-level splits.
"""

from __future__ import annotations

from collections import defaultdict
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from medai.core.errors import (
    DataValidationError,
    InvalidParameterError,
    MissingDependencyError,
    invalid_parameter,
    unknown_name,
)
from medai.core.records import Modality, Record
from medai.io.images import OnInvalid

_INSTALL_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # SOP class of a DICOMDIR


class WindowPreset(StrEnum):
    """CT display windows (center, width) in HU, as tabulated by Radiopaedia ("Windowing (CT)")."""

    BRAIN = "brain"  # (40, 80)
    SUBDURAL = "subdural"  # (75, 215): middle of the usual L 50-100 / W 130-300
    STROKE = "stroke"  # (40, 40): narrow window for early ischaemia
    LUNG = "lung"  # (-600, 1500)
    MEDIASTINUM = "mediastinum"  # (50, 350)
    BONE = "bone"  # (400, 1800)
    ABDOMEN = "abdomen"  # (40, 400): soft tissue
    LIVER = "liver"  # (30, 150)


WINDOW_PRESETS: dict[WindowPreset, tuple[float, float]] = {
    WindowPreset.BRAIN: (40.0, 80.0),
    WindowPreset.SUBDURAL: (75.0, 215.0),
    WindowPreset.STROKE: (40.0, 40.0),
    WindowPreset.LUNG: (-600.0, 1500.0),
    WindowPreset.MEDIASTINUM: (50.0, 350.0),
    WindowPreset.BONE: (400.0, 1800.0),
    WindowPreset.ABDOMEN: (40.0, 400.0),
    WindowPreset.LIVER: (30.0, 150.0),
}


def apply_window(hu: np.ndarray, window: str | tuple[float, float]) -> np.ndarray:
    """Map Hounsfield units to display intensities in [0, 1] with a CT window.

    Values at or below ``center - width / 2`` become 0, at or above ``center + width / 2`` become 1, linear in
    between (the plain linear window; DICOM's VOI LUT function differs by half a unit at the edges).

    Args:
        hu: CT values in HU, any shape.
        window: a preset name (see :class:`WindowPreset`: brain, subdural, stroke, lung, mediastinum, bone,
            abdomen, liver) or ``(center, width)`` in HU.

    Returns:
        float32 array of the same shape, values in [0, 1].

    Raises:
        UnknownNameError: an unknown preset name (the message lists the presets).
        InvalidParameterError: a width that is not positive.
    """
    if isinstance(window, str):
        if window not in WindowPreset.__members__.values():
            raise unknown_name("CT window preset", window, [p.value for p in WindowPreset])
        center, width = WINDOW_PRESETS[WindowPreset(window)]
    else:
        try:
            center, width = (float(v) for v in window)
        except (TypeError, ValueError):
            expected = "a preset name or (center, width) in HU"
            raise invalid_parameter("window", "apply_window", expected, window) from None
    if not width > 0:
        raise invalid_parameter("window", "apply_window", "(center, width) with a positive width", window)
    low = center - width / 2.0
    return np.clip((np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(width), 0.0, 1.0)


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise MissingDependencyError("Reading DICOM needs pydicom: pip install pydicom") from None
    return pydicom


def _read_dataset(path: Path, stop_before_pixels: bool = False):
    pydicom = _pydicom()
    if not path.is_file():
        raise InvalidParameterError(f"DICOM file not found: {path}.")
    try:
        try:
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except pydicom.errors.InvalidDicomError:
            # Older writers omit the preamble and file meta; accept such a file only when it parses into
            # something with DICOM identity, because force=True reads any bytes as a dataset.
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            if "SOPClassUID" not in ds:
                raise pydicom.errors.InvalidDicomError from None
            return ds
    except pydicom.errors.InvalidDicomError:
        raise DataValidationError(
            f"{path}: not a DICOM file (no 'DICM' marker after the 128-byte preamble). Check that it is a DICOM "
            "Part 10 file."
        ) from None
    except (EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DataValidationError(
            f"{path}: corrupt or truncated DICOM file ({exc.__class__.__name__} while parsing the header)."
        ) from None


def _decode(path: Path, ds) -> np.ndarray:
    """Decoded stored values: ``(rows, cols)``, ``(frames, rows, cols)``, ``(..., 3)`` for colour (RGB)."""
    pydicom = _pydicom()
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataValidationError(
            f"{path}: has no pixel data (SOP class {getattr(ds, 'SOPClassUID', 'unknown')!s}, Modality "
            f"{ds.get('Modality', 'unknown')}). Expected an image object; structured reports, RT structures and "
            "similar objects carry no image, and a file truncated before its pixel data reads this way too."
        )
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        try:
            decoder = pydicom.pixels.get_decoder(syntax)
        except NotImplementedError:
            raise MissingDependencyError(
                f"{path}: pydicom has no decoder for the transfer syntax {syntax.name} ({syntax}). Convert the file "
                "to an uncompressed or JPEG/JPEG 2000/RLE syntax (e.g. with dcmtk's dcmdjpeg)."
            ) from None
        if not decoder.is_available:
            raise MissingDependencyError(
                f"{path}: the pixel data is compressed with {syntax.name} ({syntax}) and no decoder is installed. "
                f"Install one: {_INSTALL_HINT}."
            )
    try:
        return ds.pixel_array
    except (ValueError, EOFError, OSError, IndexError, TypeError, AttributeError, KeyError) as exc:
        raise DataValidationError(
            f"{path}: the pixel data could not be decoded ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0][:160]}). The file may be truncated or corrupt."
        ) from None
    except RuntimeError as exc:  # pydicom reports decoder failures as RuntimeError
        detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:240]
        raise DataValidationError(
            f"{path}: the {syntax.name if syntax else ''} pixel data could not be decoded ({detail}). The file may "
            "be corrupt or use a variant the installed decoders do not support."
        ) from None


def _functional_group(ds, sequence: str, frame: int | None = None):
    """The item of a functional-group macro (PS3.3 C.7.6.16) for ``frame``: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if frame is not None and per_frame is not None and frame < len(per_frame):
        item = per_frame[frame].get(sequence)
        if item:
            return item[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        item = shared[0].get(sequence)
        if item:
            return item[0]
    return None


def _functional_group_rescale(ds, frames: int) -> list[tuple[float, float]] | None:
    """Per-frame (slope, intercept) from PixelValueTransformationSequence, or None when absent."""
    pairs = []
    for frame in range(frames):
        item = _functional_group(ds, "PixelValueTransformationSequence", frame)
        if item is None or "RescaleSlope" not in item:
            return None
        pairs.append((float(item.RescaleSlope), float(item.get("RescaleIntercept", 0) or 0)))
    return pairs


def _float_tuple(value, allow_zero: bool = False) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if allow_zero:  # positions and direction cosines
        return out if out and all(np.isfinite(out)) else None
    # Some writers fill PixelSpacing with zeros; that is "unknown", not a spacing.
    return out if out and all(v > 0 for v in out) else None


def _pixels_to_channel_first(path: Path, ds, pixels: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply inversion and the Modality LUT; return ``(C, H, W)`` or ``(C, F, H, W)`` and facts for ``meta``."""
    pydicom = _pydicom()
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    facts: dict[str, Any] = {"photometric": photometric, "frames": frames, "inverted": False, "rescale": None}
    if photometric == "PALETTE COLOR":
        pixels = pydicom.pixels.apply_color_lut(pixels, ds)
        samples = 3
        facts["color"] = "palette applied (RGB, 16-bit LUT values)"
    if samples == 3:
        # pydicom converts YBR_FULL / YBR_FULL_422 to RGB while decoding; values stay as stored (uint8/uint16).
        data = np.moveaxis(pixels, -1, 0)
        facts["channels"] = "RGB"
        return np.ascontiguousarray(data), facts
    if samples != 1:
        raise DataValidationError(f"{path}: SamplesPerPixel is {samples}; expected 1 (grey) or 3 (colour).")
    stored = pixels
    if photometric == "MONOCHROME1":
        # Invert the stored values over their bit range so that higher = brighter, then apply the LUT.
        bits = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
        if int(ds.get("PixelRepresentation", 0)) == 1:
            low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        else:
            low, high = 0, 2**bits - 1
        stored = (low + high) - pixels.astype(np.int64)
        facts["inverted"] = True
        facts["inversion_constant"] = low + high
        facts["inversion"] = f"MONOCHROME1: stored value x -> {low + high} - x before the Modality LUT"
    has_rescale = "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds
    per_frame = None if has_rescale else _functional_group_rescale(ds, frames)
    if per_frame is not None:
        # Enhanced multi-frame objects (enhanced CT/MR/PET) keep the rescale in functional groups, which
        # pydicom's apply_modality_lut does not read.
        slopes, intercepts = (np.array(v, dtype=np.float64) for v in zip(*per_frame, strict=True))
        if frames > 1:  # stored is (F, H, W)
            values = stored * slopes[:, None, None] + intercepts[:, None, None]
        else:
            values = stored * slopes[0] + intercepts[0]
        has_rescale = True
        facts["rescale"] = per_frame[0] if len(set(per_frame)) == 1 else per_frame
    else:
        values = pydicom.pixels.apply_modality_lut(stored, ds) if has_rescale else stored
    if has_rescale and "ModalityLUTSequence" not in ds and per_frame is None:
        facts["rescale"] = (float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))
    if ds.get("Modality") == "CT" and has_rescale:
        facts["units"] = "HU"
    elif "RescaleType" in ds:
        facts["units"] = str(ds.RescaleType)
    data = np.asarray(values, dtype=np.float32)
    if ds.get("Modality") == "RTDOSE" and "DoseGridScaling" in ds:
        data = data * np.float32(ds.DoseGridScaling)
        facts["units"] = str(ds.get("DoseUnits", "GY"))
        facts["rescale"] = (float(ds.DoseGridScaling), 0.0)
    return data[None], facts


def read_dicom(path: str | Path) -> Record:
    """Read one DICOM image file.

    Args:
        path: a DICOM Part 10 file holding an image (single- or multi-frame).

    Returns:
        A record whose ``data`` is
        - grey single-frame: float32 ``(1, H, W)`` (``Modality.IMAGE``), Modality LUT applied (HU for CT);
        - grey multi-frame: float32 ``(1, F, H, W)`` (``Modality.VOLUME``; frames may be slices or time points,
          ``meta["frames"]`` = F);
        - colour (RGB, YBR_* converted to RGB by pydicom, PALETTE COLOR expanded): ``(3, H, W)`` or
          ``(3, F, H, W)`` in the stored dtype (uint8 for 8-bit).

        ``id`` is the SOPInstanceUID (file stem when absent); ``patient_id`` the PatientID. ``meta`` holds
        ``source``, ``photometric`` (as stored), ``inverted`` (True for MONOCHROME1), ``rescale``
        ``(slope, intercept)`` or None, ``units`` ("HU" for CT), ``spacing_mm`` ``(row, col)`` from PixelSpacing
        (ImagerPixelSpacing for projection radiographs; None when absent or zero), ``modality`` (DICOM Modality),
        ``transfer_syntax``, ``series_instance_uid``, ``position_mm`` (ImagePositionPatient) and
        ``orientation`` (ImageOrientationPatient; both None when absent).

    Raises:
        InvalidParameterError: the file does not exist.
        DataValidationError: not DICOM, corrupt or truncated, no pixel data, unsupported samples per pixel.
        MissingDependencyError: compressed pixel data and no decoder installed (names the transfer syntax).
    """
    path = Path(path)
    ds = _read_dataset(path)
    pixels = _decode(path, ds)
    data, facts = _pixels_to_channel_first(path, ds, pixels)
    measures = _functional_group(ds, "PixelMeasuresSequence", 0) or {}
    spacing = _float_tuple(ds.get("PixelSpacing"))
    spacing_source = "PixelSpacing"
    if spacing is None and measures:
        spacing, spacing_source = _float_tuple(measures.get("PixelSpacing")), "PixelMeasuresSequence"
    if spacing is None:
        spacing, spacing_source = _float_tuple(ds.get("ImagerPixelSpacing")), "ImagerPixelSpacing"
    is_volume = data.ndim == 4
    if is_volume:
        between = ds.get("SpacingBetweenSlices", measures.get("SpacingBetweenSlices") if measures else None)
        depth = _float_tuple([between]) if between is not None else None
        spacing = (depth[0] if depth else None, *spacing) if spacing else None
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    meta = {
        "source": str(path),
        **facts,
        "spacing_mm": spacing,
        "spacing_source": spacing_source if spacing else None,
        "modality": str(ds.get("Modality", "")) or None,
        "transfer_syntax": syntax.name if syntax is not None else None,
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "")) or None,
        "voi_window": _voi_window(ds, facts),
        # geometry, for stacking single-frame slices into a volume (None when absent or malformed)
        "position_mm": _float_tuple(ds.get("ImagePositionPatient"), allow_zero=True),
        "orientation": _float_tuple(ds.get("ImageOrientationPatient"), allow_zero=True),
    }
    return Record(
        id=str(ds.get("SOPInstanceUID", "")) or path.stem,
        modality=Modality.VOLUME if is_volume else Modality.IMAGE,
        data=data,
        patient_id=str(ds.get("PatientID", "")) or None,
        meta=meta,
    )


def _voi_window(ds, facts: dict[str, Any]) -> tuple[float, float] | None:
    """The first (WindowCenter, WindowWidth) of the file in the record's values (after the Modality LUT, and
    mirrored like the pixels for MONOCHROME1: v = s(K - x) + b maps a center c to sK + 2b - c); None if absent."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    first = lambda v: float(v[0]) if isinstance(v, (list, tuple)) or hasattr(v, "__len__") and not isinstance(v, str) else float(v)  # noqa: E731
    try:
        center, width = first(center), first(width)
    except (TypeError, ValueError, IndexError):
        return None
    if width <= 0:
        return None
    if facts.get("inverted"):
        slope, intercept = facts.get("rescale") or (1.0, 0.0)
        center = slope * facts["inversion_constant"] + 2 * intercept - center
    return center, width


def order_slices(positions, names: list[str], where: str) -> tuple[np.ndarray, float | None]:
    """The order of slices along the slice normal and their spacing.

    Args:
        positions: each slice's ImagePositionPatient projected on the slice normal (mm).
        names: each slice's name for messages (file name or SOPInstanceUID).
        where: the series, for messages.

    Returns:
        ``(order, spacing)``: indices sorting the slices by position, and the median gap (None for one slice).

    Raises:
        DataValidationError: two slices at the same position, or uneven gaps (missing slices).
    """
    order = np.argsort(positions, kind="stable")
    sorted_positions = np.asarray(positions, dtype=float)[order]
    gaps = np.diff(sorted_positions)
    if not len(gaps):
        return order, None
    duplicate = np.flatnonzero(gaps < 1e-3)
    if len(duplicate):
        i = int(duplicate[0])
        raise DataValidationError(
            f"{where}: {names[order[i]]} and {names[order[i + 1]]} are at the same position "
            f"({sorted_positions[i]:.3f} mm along the slice normal): duplicate slices."
        )
    spacing = float(np.median(gaps))
    if not np.allclose(gaps, spacing, rtol=0.01, atol=1e-3):
        raise DataValidationError(
            f"{where}: inconsistent slice spacing (gaps from {gaps.min():.3f} to {gaps.max():.3f} mm along the "
            "slice normal). Slices may be missing; expected evenly spaced slices."
        )
    return order, spacing


def read_dicom_series(
    folder: str | Path,
    series_instance_uid: str | None = None,
    on_invalid: str = OnInvalid.RAISE,
) -> Record:
    """Read a folder of single-frame DICOM slices as one 3-D volume.

    Slices are grouped by SeriesInstanceUID and sorted by their position along the slice normal: the
    ImagePositionPatient of each slice projected on ``row x col`` of ImageOrientationPatient (file names and
    InstanceNumber are not trusted). The Modality LUT is applied per slice (slopes may differ between slices).

    Args:
        folder: a folder with the slice files (not searched recursively).
        series_instance_uid: which series to read when the folder holds several.
        on_invalid: "raise" (default) on a file that is not DICOM, or "skip" it; skipped files are listed in
            ``meta["skipped_files"]`` (a DICOMDIR index is always skipped and listed there).

    Returns:
        ``Modality.VOLUME`` record, float32 ``(1, D, H, W)``, D along the slice normal (increasing projected
        position). ``meta["spacing_mm"]`` = ``(slice spacing from positions, PixelSpacing row, PixelSpacing
        col)``; ``meta`` also holds ``orientation`` (the six ImageOrientationPatient cosines), ``origin_mm``
        (ImagePositionPatient of the first slice), ``slice_normal``, ``source``, ``series_instance_uid``,
        ``units``.

    Raises:
        InvalidParameterError: not a folder, bad ``on_invalid``, or ``series_instance_uid`` not in the folder.
        DataValidationError: no DICOM files, several series and none chosen, missing or inconsistent
            orientation, positions, pixel spacing or slice size, duplicate positions, uneven slice spacing
            (missing slices), multi-frame files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidParameterError(f"DICOM series folder not found: {folder}. Pass a folder of slice files.")
    if on_invalid not in OnInvalid.__members__.values():
        raise invalid_parameter("on_invalid", "read_dicom_series", "one of ['raise', 'skip']", on_invalid)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    headers: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    skipped: list[str] = []
    for file in files:
        try:
            ds = _read_dataset(file, stop_before_pixels=True)
        except DataValidationError:
            if on_invalid == OnInvalid.SKIP:
                skipped.append(file.name)
                continue
            raise
        file_meta = getattr(ds, "file_meta", None) or {}
        sop_classes = (str(ds.get("SOPClassUID", "")), str(file_meta.get("MediaStorageSOPClassUID", "")))
        if _MEDIA_STORAGE_DIRECTORY in sop_classes:
            skipped.append(file.name)  # a DICOMDIR index, not a slice
            continue
        headers[str(ds.get("SeriesInstanceUID", ""))].append((file, ds))
    if not headers:
        raise DataValidationError(f"{folder}: no DICOM files found ({len(skipped)} skipped). Expected slice files.")
    if series_instance_uid is not None:
        if series_instance_uid not in headers:
            raise invalid_parameter("series_instance_uid", "read_dicom_series", f"one of {sorted(headers)}",
                                    series_instance_uid)
        uid = series_instance_uid
    elif len(headers) > 1:
        listed = ", ".join(f"{uid or '(none)'} ({len(items)} files)" for uid, items in sorted(headers.items()))
        raise DataValidationError(
            f"{folder}: holds {len(headers)} series: {listed}. Choose one with series_instance_uid=..."
        )
    else:
        uid = next(iter(headers))
    items = headers[uid]

    first_file, first = items[0]
    orientation = _geometry(first_file, first, "ImageOrientationPatient", 6)
    pixel_spacing = _float_tuple(first.get("PixelSpacing"))
    if pixel_spacing is None:
        raise DataValidationError(f"{first_file}: PixelSpacing is missing or zero; a volume needs an in-plane spacing.")
    size = (int(first.get("Rows", 0)), int(first.get("Columns", 0)))
    row_cosine, col_cosine = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row_cosine, col_cosine)
    positions = []
    for file, ds in items:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DataValidationError(f"{file}: is multi-frame; read it with read_dicom, not as part of a series.")
        if not np.allclose(_geometry(file, ds, "ImageOrientationPatient", 6), orientation, atol=1e-4):
            raise DataValidationError(
                f"{file}: ImageOrientationPatient differs from {first_file.name}'s; the slices do not form one "
                "volume (inconsistent orientation)."
            )
        spacing = _float_tuple(ds.get("PixelSpacing"))
        if spacing is None or not np.allclose(spacing, pixel_spacing, rtol=1e-4):
            raise DataValidationError(
                f"{file}: PixelSpacing {spacing} differs from {pixel_spacing} in {first_file.name} (inconsistent "
                "spacing)."
            )
        if (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) != size:
            raise DataValidationError(f"{file}: slice size differs from {size} (rows, columns) in {first_file.name}.")
        positions.append(float(np.dot(_geometry(file, ds, "ImagePositionPatient", 3), normal)))

    order, slice_spacing = order_slices(positions, [file.name for file, _ in items], str(folder))
    sorted_items = [items[i] for i in order]
    if slice_spacing is None:
        value = first.get("SpacingBetweenSlices", first.get("SliceThickness"))
        slice_spacing = float(value) if value not in (None, "") else None

    slices = []
    units = None
    for file, _ in sorted_items:
        ds = _read_dataset(file)
        data, facts = _pixels_to_channel_first(file, ds, _decode(file, ds))
        if data.shape[0] != 1:
            raise DataValidationError(f"{file}: colour slice in a series; expected grey slices.")
        units = facts.get("units", units)
        slices.append(data[0])
    volume = np.stack(slices)[None]  # (1, D, H, W)
    return Record(
        id=uid or folder.name,
        modality=Modality.VOLUME,
        data=volume,
        patient_id=str(first.get("PatientID", "")) or None,
        meta={
            "source": str(folder),
            "series_instance_uid": uid or None,
            "spacing_mm": (slice_spacing, *pixel_spacing),
            "orientation": tuple(orientation),
            "origin_mm": tuple(_geometry(sorted_items[0][0], sorted_items[0][1], "ImagePositionPatient", 3)),
            "slice_normal": tuple(float(v) for v in normal),
            "modality": str(first.get("Modality", "")) or None,
            "units": units,
            "files": [file.name for file, _ in sorted_items],
            "skipped_files": skipped,
        },
    )


def _geometry(file: Path, ds, keyword: str, length: int) -> tuple[float, ...]:
    value = ds.get(keyword)
    try:
        out = tuple(float(v) for v in value) if value is not None else ()
    except (TypeError, ValueError):
        out = ()
    if len(out) != length:
        raise DataValidationError(
            f"{file}: {keyword} is missing or malformed; sorting slices into a volume needs it on every slice."
        )
    return out
