"""DICOM Segmentation (SEG) output with highdicom, and a DICOM series for images that have no DICOM source.

A SEG object (DICOM PS3.3 A.51) stores a segmentation *of other DICOM images*: it references their SOP instances,
shares their study and frame of reference, and repeats their geometry. An image made in memory (a phantom, a
NIfTI volume) has no such source, so :func:`write_image_series` first writes it as an MR image series with
proper UIDs and geometry; :func:`write_dicom_seg` then writes the mask as a BINARY SEG of that series (or of real
source datasets when given). Every file is written to a temporary name in its folder and renamed into place, so a
reader never sees a half-written file.

Geometry of a written series: axial slices (ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``: rows along +x,
columns along +y), slice ``k`` at ImagePositionPatient ``origin + (0, 0, k x slice spacing)``; array axes are
``(slice, row, col)`` as read by :func:`medai.io.dicom.read_dicom_series`.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import medai
from medai.core.errors import DataValidationError, InvalidParameterError, invalid_parameter

__all__ = ["LESION", "LV_BLOOD_POOL", "SegmentCoding", "read_dicom_seg", "write_dicom_seg", "write_image_series"]

_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_STORED_MAX = 4095  # 12-bit stored values


@dataclass(frozen=True)
class SegmentCoding:
    """What a segment is, in codes (DICOM CID 7150 categories, SNOMED CT types).

    Attributes:
        label: human-readable Segment Label.
        category: Segmented Property Category (e.g. ``codes.SCT.MorphologicallyAbnormalStructure``).
        property_type: Segmented Property Type (e.g. ``codes.SCT.Lesion``).
        anatomic_region: optional Anatomic Region the segment lies in (e.g. ``codes.SCT.LeftVentricle``).
    """

    label: str
    category: object
    property_type: object
    anatomic_region: object | None = None


def _codes():
    from pydicom.sr.codedict import codes

    return codes


#: A lesion: SCT 49755003 "Morphologically abnormal structure" / SCT 52988006 "Lesion".
LESION = SegmentCoding("lesion", _codes().SCT.MorphologicallyAbnormalStructure, _codes().SCT.Lesion)
#: The LV blood pool (cavity): SCT 91720002 "Body substance" / SCT 87612001 "Blood", in SCT 87878005 "Left
#: ventricle".
LV_BLOOD_POOL = SegmentCoding("LV blood pool", _codes().cid7150.BodySubstance, _codes().SCT.Blood,
                              _codes().SCT.LeftVentricle)


def _save_atomic(dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        dataset.save_as(temporary, enforce_file_format=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _as_stack(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return array
    raise DataValidationError(f"'{name}' must be 2-D (rows, cols) or 3-D (slices, rows, cols); got shape "
                              f"{array.shape}. Drop channel axes first (e.g. image[0]).")


def write_image_series(
    image: np.ndarray,
    folder: str | Path,
    *,
    spacing_mm: Sequence[float],
    patient_id: str = "PHANTOM",
    patient_name: str = "Phantom^Generated",
    study_description: str = "medai generated image",
    series_description: str = "medai generated image",
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    series_number: int = 1,
    study_instance_uid: str | None = None,
) -> list:
    """Write an image without DICOM source as an MR image series, one file per slice.

    Intensities are mapped linearly from ``[min, max]`` of the image to stored values ``0..4095`` (12 bits):
    generated and most MR images have no physical unit, so only their relative values are kept.

    Args:
        image: ``(rows, cols)`` or ``(slices, rows, cols)``, finite values.
        folder: created if absent; files are ``slice_0000.dcm``, ``slice_0001.dcm``, ...
        spacing_mm: ``(row, col)`` for a 2-D image, ``(slice, row, col)`` for 3-D.
        patient_id / patient_name: identifiers written into the files — never put real patient data into
            generated images.
        origin_mm: ImagePositionPatient of the first slice.
        study_instance_uid: join an existing study; None = a new one.

    Returns:
        The written ``pydicom.Dataset`` objects, in slice order.

    Raises:
        DataValidationError: wrong shape or non-finite values.
        InvalidParameterError: ``spacing_mm`` does not match the image dimensions.
    """
    import highdicom as hd
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    raw = np.asarray(image)
    stack = _as_stack(raw, "image").astype(np.float64)
    if not np.isfinite(stack).all():
        raise DataValidationError("write_image_series: the image holds NaN or infinite values.")
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != raw.ndim or not all(s > 0 for s in spacing):
        raise invalid_parameter("spacing_mm", "write_image_series",
                                f"{raw.ndim} positive voxel sizes in mm (one per image axis)", spacing_mm)
    slice_mm = spacing[0] if raw.ndim == 3 else 1.0
    row_mm, col_mm = spacing[-2], spacing[-1]
    low, high = float(stack.min()), float(stack.max())
    scale = _STORED_MAX / (high - low) if high > low else 0.0
    stored = np.round((stack - low) * scale).astype(np.uint16)

    folder = Path(folder)
    study_uid = study_instance_uid or hd.UID()
    series_uid, frame_of_reference = hd.UID(), hd.UID()
    now = dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    datasets = []
    for k, pixels in enumerate(stored):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = _MR_IMAGE_STORAGE
        sop_uid = hd.UID()
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = _MR_IMAGE_STORAGE, sop_uid
        # Patient and study (no real patient data: generated images carry generated identifiers).
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient_name, patient_id, "", ""
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study_uid, date, time
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.StudyDescription = study_description
        # Series, equipment, frame of reference.
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "MR", series_uid, series_number
        ds.SeriesDescription = series_description
        ds.Manufacturer, ds.ManufacturerModelName = "medai", "medai"
        ds.SoftwareVersions = medai.__version__
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_of_reference, ""
        # Image.
        ds.InstanceNumber, ds.ContentDate, ds.ContentTime = k + 1, date, time
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        position = np.asarray(origin_mm, dtype=float) + np.array([0.0, 0.0, k * slice_mm])
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.SliceLocation = float(position[2])
        ds.PixelSpacing = [row_mm, col_mm]
        ds.SliceThickness = slice_mm
        if raw.ndim == 3:
            ds.SpacingBetweenSlices = slice_mm
        # MR image module (synthetic image: research-mode sequence, unknown timing).
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = None, None, None
        # Pixels: 12-bit unsigned grey values.
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = _STORED_MAX / 2, _STORED_MAX
        ds.PixelData = np.ascontiguousarray(pixels).astype("<u2").tobytes()
        _save_atomic(ds, folder / f"slice_{k:04d}.dcm")
        datasets.append(ds)
    return datasets


def write_dicom_seg(
    mask: np.ndarray,
    path: str | Path,
    *,
    source_images: Sequence | None = None,
    image: np.ndarray | None = None,
    image_folder: str | Path | None = None,
    spacing_mm: Sequence[float] | None = None,
    segment: SegmentCoding = LESION,
    model_name: str = "unet",
    model_version: str | None = None,
    series_description: str = "medai segmentation",
    patient_id: str = "PHANTOM",
) -> Path:
    """Write a binary mask as a DICOM SEG (BINARY, one segment, algorithm type AUTOMATIC).

    Either give ``source_images`` (the DICOM images that were segmented: ``pydicom.Dataset`` objects or paths,
    one per slice in the mask's slice order), or ``image`` + ``image_folder`` + ``spacing_mm`` for an image
    without DICOM source: it is first written as a series into ``image_folder`` (see
    :func:`write_image_series`) and the SEG references that series.

    The algorithm identification names medai, the model and its version (family: artificial intelligence, DCM
    123110); the segment is described by ``segment``'s codes.

    Args:
        mask: ``(rows, cols)`` or ``(slices, rows, cols)``, values 0/1 (or bool).
        path: the SEG file to write.
        model_name / model_version: recorded in the Algorithm Identification (version defaults to medai's).

    Returns:
        ``path``.

    Raises:
        InvalidParameterError: neither or both of ``source_images`` and ``image`` given.
        DataValidationError: the mask is not binary or does not match the source images' size / count.
    """
    import highdicom as hd
    import pydicom

    if (source_images is None) == (image is None):
        raise InvalidParameterError(
            "write_dicom_seg needs exactly one of 'source_images' (the DICOM images that were segmented) or "
            "'image' (an image without DICOM source, written first as a series into 'image_folder')."
        )
    stack = _as_stack(np.asarray(mask), "mask")
    values = np.unique(stack)
    if not np.isin(values, (0, 1)).all():
        raise DataValidationError(f"write_dicom_seg: the mask must hold only 0 and 1 (a BINARY SEG); found values "
                                  f"{values[:6].tolist()}.")
    if image is not None:
        if image_folder is None or spacing_mm is None:
            raise InvalidParameterError("write_dicom_seg: 'image' needs 'image_folder' (where its DICOM series is "
                                        "written) and 'spacing_mm'.")
        if np.shape(image) != np.shape(mask):
            raise DataValidationError(f"write_dicom_seg: image shape {np.shape(image)} differs from mask shape "
                                      f"{np.shape(mask)}.")
        sources = write_image_series(image, image_folder, spacing_mm=spacing_mm, patient_id=patient_id)
    else:
        sources = [ds if isinstance(ds, pydicom.Dataset) else pydicom.dcmread(ds) for ds in source_images]
    if len(sources) != stack.shape[0]:
        raise DataValidationError(f"write_dicom_seg: the mask has {stack.shape[0]} slice(s) but {len(sources)} "
                                  "source image(s) were given; give one source image per mask slice, in order.")
    for ds in sources:
        if (int(ds.Rows), int(ds.Columns)) != stack.shape[1:]:
            raise DataValidationError(
                f"write_dicom_seg: source image {ds.SOPInstanceUID} is {ds.Rows} x {ds.Columns}, the mask slices "
                f"are {stack.shape[1]} x {stack.shape[2]}.")

    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"medai {model_name}", family=_codes().cid7162.ArtificialIntelligence,
        version=model_version or medai.__version__, source="medai")
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=segment.label, segmented_property_category=segment.category,
        segmented_property_type=segment.property_type, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[segment.anatomic_region] if segment.anatomic_region is not None else None,
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=stack.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 100,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medai",
        manufacturer_model_name=f"medai {model_name}",
        software_versions=medai.__version__,
        device_serial_number="none",
        series_description=series_description,
        omit_empty_frames=False,  # every source slice has its frame: the mask round-trips exactly
    )
    path = Path(path)
    _save_atomic(seg, path)
    return path


def read_dicom_seg(path: str | Path, source_images: Sequence) -> np.ndarray:
    """Read segment 1 of a SEG back as a ``(slices, rows, cols)`` uint8 mask in the order of ``source_images``
    (``pydicom.Dataset`` objects or paths of the segmented images)."""
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(str(path))
    uids = [(ds if isinstance(ds, pydicom.Dataset) else pydicom.dcmread(ds, stop_before_pixels=True)).SOPInstanceUID
            for ds in source_images]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1],
                                               assert_missing_frames_are_empty=True)
    return np.asarray(pixels[..., 0], dtype=np.uint8)
