"""NIfTI reader (nibabel): a 3-D volume, or a 4-D series as channels, reoriented to RAS+.

Orientation: the voxel array is reoriented to the closest canonical RAS+ orientation
(``nibabel.as_closest_canonical``: axis 0 runs from the patient's left to right, axis 1 from posterior to
anterior, axis 2 from inferior to superior). Only axis flips and permutations are applied, never
resampling, so voxel values are unchanged. The array keeps nibabel's axis order (as MONAI's ``LoadImage`` does):
``data`` is ``(C, X, Y, Z)`` and ``meta["spacing_mm"]`` is ``(x, y, z)``.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from medai.core.errors import DataValidationError, InvalidParameterError, MissingDependencyError
from medai.core.records import Modality, Record

_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001}


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise MissingDependencyError("Reading NIfTI needs nibabel: pip install nibabel") from None
    return nibabel


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".img", ".hdr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_nifti(path: str | Path) -> Record:
    """Read a NIfTI-1/NIfTI-2 file (``.nii`` or ``.nii.gz``) as a volume in RAS+ orientation.

    The header's scaling (``scl_slope``/``scl_inter``) is applied; values are float32 in the file's units
    (HU for CT converted with standard tools).

    Args:
        path: the NIfTI file.

    Returns:
        ``Modality.VOLUME`` record, float32 ``data`` ``(C, X, Y, Z)`` in RAS+ axis order:
        - 3-D ``(X, Y, Z)``: C = 1;
        - 4-D ``(X, Y, Z, T)``: C = T, the 4th NIfTI dimension (time points of fMRI/cine, or stacked modalities
          such as the BraTS channels); ``meta["channel_axis"]`` says so and ``meta["channel_step"]`` holds the
          4th zoom (seconds for time series, per the header's units);
        - 5-D ``(X, Y, Z, 1, V)`` (NIfTI vector/tensor intent): C = V.
        ``meta`` holds ``source``, ``spacing_mm`` ``(x, y, z)`` from the header zooms after reorientation,
        ``affine`` (4x4, RAS+ array), ``original_affine`` and ``original_orientation`` (e.g. ``("L", "A", "S")``),
        ``spatial_units_declared`` (header's unit; "unknown" is read as mm, as most tools do).

    Raises:
        InvalidParameterError: the file does not exist.
        DataValidationError: not a NIfTI file, truncated or corrupt, or an unsupported number of dimensions.
    """
    nib = _nibabel()
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"NIfTI file not found: {path}.")
    try:
        image = nib.load(path)
    except nib.filebasedimages.ImageFileError:
        raise DataValidationError(
            f"{path}: not a NIfTI file nibabel recognises. Expected .nii or .nii.gz (NIfTI-1 or NIfTI-2)."
        ) from None
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise DataValidationError(f"{path}: corrupt or truncated NIfTI header ({exc.__class__.__name__}).") from None
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise DataValidationError(f"{path}: is a {type(image).__name__}, not NIfTI. Convert it to .nii.gz first.")
    original_affine = np.asarray(image.affine, dtype=np.float64)
    shape = image.shape
    if len(shape) not in (2, 3, 4, 5) or (len(shape) == 5 and shape[3] != 1):
        raise DataValidationError(
            f"{path}: has shape {shape}; expected 3-D (X, Y, Z), 4-D (X, Y, Z, T) or 5-D (X, Y, Z, 1, V)."
        )
    try:
        canonical = nib.as_closest_canonical(image) if len(shape) >= 3 else image
        values = canonical.get_fdata(dtype=np.float32)  # applies scl_slope / scl_inter
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise DataValidationError(
            f"{path}: the voxel data could not be read ({exc.__class__.__name__}); the file is truncated or corrupt."
        ) from None
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim == 3:
        data = values[None]
        channel_axis = None
    elif values.ndim == 4:
        data = np.moveaxis(values, 3, 0)
        channel_axis = "4th NIfTI dimension (time points or stacked modalities)"
    else:  # (X, Y, Z, 1, V)
        data = np.moveaxis(values[:, :, :, 0, :], 3, 0)
        channel_axis = "5th NIfTI dimension (vector components)"
    header = canonical.header
    spatial_unit, _ = header.get_xyzt_units()
    zooms = [float(z) for z in header.get_zooms()]
    to_mm = _TO_MM.get(spatial_unit, 1.0)
    spacing = tuple(z * to_mm for z in (zooms + [1.0, 1.0])[:3])
    meta: dict[str, Any] = {
        "source": str(path),
        "spacing_mm": spacing,
        "axes": "RAS",
        "affine": np.asarray(canonical.affine, dtype=np.float64),
        "original_affine": original_affine,
        "original_orientation": tuple(nib.aff2axcodes(original_affine)),
        "spatial_units_declared": spatial_unit,
    }
    if channel_axis:
        meta["channel_axis"] = channel_axis
        if len(zooms) > 3:
            meta["channel_step"] = zooms[3]
    return Record(id=_stem(path), modality=Modality.VOLUME, data=np.ascontiguousarray(data), meta=meta)
