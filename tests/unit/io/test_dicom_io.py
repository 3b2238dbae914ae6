"""DICOM readers: pydicom's bundled files (plain, compressed, colour, multi-frame), pydicom-data's MONOCHROME1
chest CR, generated series and broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

from medai.core.errors import (  # noqa: E402
    DataValidationError,
    InvalidParameterError,
    MissingDependencyError,
    UnknownNameError,
)
from medai.core.records import Modality  # noqa: E402
from medai.io.dicom import WINDOW_PRESETS, apply_window, read_dicom, read_dicom_series  # noqa: E402


def bundled(name: str) -> str:
    # download=False: pydicom would otherwise try GitHub for files it does not ship; tests never use the network.
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom or pydicom-data test files)")
    return path


def test_ct_in_hounsfield_units():
    path = bundled("CT_small.dcm")
    raw = pydicom.dcmread(path)
    record = read_dicom(path)
    assert record.modality == Modality.IMAGE
    assert record.shape == (1, 128, 128) and record.data.dtype == np.float32
    expected = raw.pixel_array * float(raw.RescaleSlope) + float(raw.RescaleIntercept)
    np.testing.assert_array_equal(record.data[0], expected)
    assert record.meta["units"] == "HU" and record.meta["rescale"] == (1.0, -1024.0)
    assert record.meta["spacing_mm"] == pytest.approx((0.661468, 0.661468))
    assert record.id == str(raw.SOPInstanceUID) and record.patient_id == str(raw.PatientID)


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_lossless_compressed_equals_uncompressed(name):
    reference = read_dicom(bundled("MR_small.dcm"))
    record = read_dicom(bundled(name))
    assert record.meta["transfer_syntax"] != reference.meta["transfer_syntax"]
    np.testing.assert_array_equal(record.data, reference.data)


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "JPGExtended.dcm", "JPEG-LL.dcm"])
def test_other_compressed_grey(name):
    record = read_dicom(bundled(name))
    assert record.shape == (1, 1024, 256)
    assert np.isfinite(record.data).all() and record.data.max() > record.data.min()


def test_colour_ybr_jpeg_becomes_rgb_channel_first():
    record = read_dicom(bundled("SC_rgb_jpeg_dcmtk.dcm"))
    assert record.shape == (3, 100, 100) and record.data.dtype == np.uint8
    assert record.meta["photometric"] == "YBR_FULL" and record.meta["channels"] == "RGB"
    red, green, blue = record.data[:, 0, 0].astype(int)  # the top band of this test image is pure red
    assert red > 240 and green < 15 and blue < 15


def test_multiframe_rgb_rle_and_grey_dose():
    rgb = read_dicom(bundled("SC_rgb_rle_2frame.dcm"))
    assert rgb.modality == Modality.VOLUME and rgb.shape == (3, 2, 100, 100)
    assert rgb.meta["frames"] == 2
    path = bundled("rtdose.dcm")
    raw = pydicom.dcmread(path)
    dose = read_dicom(path)
    assert dose.shape == (1, 15, 10, 10)
    np.testing.assert_allclose(dose.data[0], raw.pixel_array * float(raw.DoseGridScaling), rtol=1e-6)


def test_monochrome1_chest_cr_is_inverted():
    path = bundled("RG1_UNCI.dcm")  # pydicom-data: a real MONOCHROME1 chest CR
    raw = pydicom.dcmread(path)
    record = read_dicom(path)
    assert raw.PhotometricInterpretation == "MONOCHROME1"
    assert record.meta["inverted"] is True and record.meta["photometric"] == "MONOCHROME1"
    maximum = 2 ** int(raw.BitsStored) - 1
    np.testing.assert_array_equal(record.data[0], maximum - raw.pixel_array.astype(np.float32))
    # this file's PixelSpacing is "0.000, 0.000": unknown, not invented
    assert record.meta["spacing_mm"] is None


def test_compressed_without_decoder(monkeypatch):
    path = bundled("MR_small_jp2klossless.dcm")
    decoder = pydicom.pixels.get_decoder(pydicom.dcmread(path).file_meta.TransferSyntaxUID)
    monkeypatch.setattr(decoder, "_available", {})
    expected = r"JPEG 2000 Image Compression \(Lossless Only\).*no decoder is installed.*pip install pylibjpeg"
    with pytest.raises(MissingDependencyError, match=expected):
        read_dicom(path)


def test_truncated_missing_pixels_and_not_dicom(tmp_path):
    source = Path(bundled("CT_small.dcm"))
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(source.read_bytes()[: int(source.stat().st_size * 0.7)])
    with pytest.raises(DataValidationError, match=r"truncated\.dcm: .*(truncated|corrupt)"):
        read_dicom(truncated)
    ds = pydicom.dcmread(source)
    del ds.PixelData
    no_pixels = tmp_path / "no_pixels.dcm"
    ds.save_as(no_pixels)
    with pytest.raises(DataValidationError, match=r"no_pixels\.dcm: has no pixel data"):
        read_dicom(no_pixels)
    text = tmp_path / "notes.dcm"
    text.write_text("not an image\n")
    with pytest.raises(DataValidationError, match=r"notes\.dcm: not a DICOM file"):
        read_dicom(text)


def test_messages_never_carry_patient_name(tmp_path):
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.PatientName = "Doe^Jane"
    del ds.PixelData
    path = tmp_path / "named.dcm"
    ds.save_as(path)
    with pytest.raises(DataValidationError) as info:
        read_dicom(path)
    assert "Doe" not in str(info.value) and "named.dcm" in str(info.value)


def test_apply_window_presets_and_errors():
    hu = np.array([-1350.0, -600.0, 150.0, 2000.0])
    np.testing.assert_allclose(apply_window(hu, "lung"), [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(apply_window(np.array([0.0, 40.0, 80.0]), (40, 80)), [0.0, 0.5, 1.0])
    assert WINDOW_PRESETS["brain"] == (40.0, 80.0) and WINDOW_PRESETS["bone"] == (400.0, 1800.0)
    assert apply_window(hu, "mediastinum").dtype == np.float32
    with pytest.raises(UnknownNameError, match="Did you mean 'lung'"):
        apply_window(hu, "lungs")
    with pytest.raises(InvalidParameterError, match=r"positive width. Got \(40, 0\) instead"):
        apply_window(hu, (40, 0))


# --- series ---------------------------------------------------------------------------------------------------

SERIES_SPACING = 2.5
PIXEL_SPACING = (0.7, 0.8)


def oblique_orientation(seed: int = 0) -> np.ndarray:
    """Two orthonormal direction cosines (row, column) of a random oblique plane."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return np.concatenate([q[:, 0], q[:, 1]])


def write_slice(path: Path, hu: float, position, orientation, series_uid: str, instance: int, shape=(4, 5)) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    ds.PatientID = "SYN-001"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = list(PIXEL_SPACING)
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = np.full(shape, hu + 1024, dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_series(folder: Path, n: int = 6, seed: int = 0, positions_k=None, series_uid=None, orientation=None) -> str:
    """Slice k (HU = 10 k) at origin + 2.5 k mm along the normal; files and InstanceNumbers are shuffled."""
    folder.mkdir(parents=True, exist_ok=True)
    orientation = oblique_orientation(seed) if orientation is None else orientation
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.array([-100.0, 20.0, 35.0])
    series_uid = series_uid or generate_uid()
    ks = list(range(n)) if positions_k is None else positions_k
    shuffled = np.random.default_rng(seed + 1).permutation(len(ks))
    for name_index, i in enumerate(shuffled):
        k = ks[i]
        write_slice(folder / f"{series_uid[-6:]}_{name_index:03d}.dcm", 10.0 * k, origin + SERIES_SPACING * k * normal,
                    orientation, series_uid, instance=int(len(ks) - name_index))
    return series_uid


def test_series_sorted_along_oblique_normal(tmp_path):
    uid = write_series(tmp_path / "series")
    record = read_dicom_series(tmp_path / "series")
    assert record.modality == Modality.VOLUME and record.shape == (1, 6, 4, 5)
    np.testing.assert_array_equal(record.data[0, :, 0, 0], [0, 10, 20, 30, 40, 50])
    assert record.meta["spacing_mm"] == pytest.approx((SERIES_SPACING, *PIXEL_SPACING))
    assert record.meta["series_instance_uid"] == uid and record.patient_id == "SYN-001"
    assert record.meta["units"] == "HU"


def test_series_several_series_and_choice(tmp_path):
    first = write_series(tmp_path / "mixed", n=3)
    second = write_series(tmp_path / "mixed", n=4, seed=3)
    with pytest.raises(DataValidationError, match="holds 2 series: .*Choose one with series_instance_uid"):
        read_dicom_series(tmp_path / "mixed")
    assert read_dicom_series(tmp_path / "mixed", series_instance_uid=second).shape == (1, 4, 4, 5)
    assert read_dicom_series(tmp_path / "mixed", series_instance_uid=first).shape == (1, 3, 4, 5)
    with pytest.raises(InvalidParameterError, match="'series_instance_uid' parameter"):
        read_dicom_series(tmp_path / "mixed", series_instance_uid="1.2.3")


def test_series_missing_slice_duplicate_and_orientation(tmp_path):
    write_series(tmp_path / "gap", positions_k=[0, 1, 2, 4, 5])
    with pytest.raises(DataValidationError, match="inconsistent slice spacing.*Slices may be missing"):
        read_dicom_series(tmp_path / "gap")
    write_series(tmp_path / "dup", positions_k=[0, 1, 1, 2])
    with pytest.raises(DataValidationError, match="at the same position.*duplicate slices"):
        read_dicom_series(tmp_path / "dup")
    uid = write_series(tmp_path / "tilt", n=3)
    write_slice(tmp_path / "tilt" / "other.dcm", 0.0, (0, 0, 50), oblique_orientation(7), uid, instance=9)
    with pytest.raises(DataValidationError, match="inconsistent orientation"):
        read_dicom_series(tmp_path / "tilt")


def test_series_non_dicom_file_raise_or_skip(tmp_path):
    write_series(tmp_path / "s", n=3)
    (tmp_path / "s" / "README.txt").write_text("slices of a phantom\n")
    with pytest.raises(DataValidationError, match=r"README\.txt: not a DICOM file"):
        read_dicom_series(tmp_path / "s")
    record = read_dicom_series(tmp_path / "s", on_invalid="skip")
    assert record.shape == (1, 3, 4, 5) and record.meta["skipped_files"] == ["README.txt"]
    (tmp_path / "s" / "README.txt").unlink()
    dicomdir = get_testdata_file("DICOMDIR", download=False)
    if dicomdir is not None:  # a DICOMDIR index beside the slices is not a slice and not an error
        (tmp_path / "s" / "DICOMDIR").write_bytes(Path(dicomdir).read_bytes())
        assert read_dicom_series(tmp_path / "s").meta["skipped_files"] == ["DICOMDIR"]
    with pytest.raises(InvalidParameterError, match="'on_invalid' parameter"):
        read_dicom_series(tmp_path / "s", on_invalid="ignore")


def test_enhanced_multiframe_per_frame_rescale(tmp_path):
    """Enhanced CT keeps RescaleSlope/Intercept and PixelSpacing in functional groups, not at top level."""
    from pydicom.sequence import Sequence

    stored = np.stack([np.full((3, 4), 1000 + 10 * k, dtype=np.uint16) for k in range(3)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.NumberOfFrames = 3
    ds.Rows, ds.Columns = 3, 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    measures = Dataset()
    measures.PixelSpacing = [0.6, 0.6]
    measures.SpacingBetweenSlices = 1.25
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(3):
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = 1 + k, -1024
        item = Dataset()
        item.PixelValueTransformationSequence = Sequence([transform])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = stored.tobytes()
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    record = read_dicom(path)
    assert record.modality == Modality.VOLUME and record.shape == (1, 3, 3, 4)
    np.testing.assert_allclose(record.data[0, :, 0, 0], [1000 - 1024, 2 * 1010 - 1024, 3 * 1020 - 1024])
    assert record.meta["units"] == "HU"
    assert record.meta["spacing_mm"] == pytest.approx((1.25, 0.6, 0.6))


def test_series_spacing_and_missing_position(tmp_path):
    uid = write_series(tmp_path / "px", n=3)
    orientation = np.array(pydicom.dcmread(next((tmp_path / "px").iterdir())).ImageOrientationPatient, dtype=float)
    write_slice(tmp_path / "px" / "zz.dcm", 0.0, (9, 9, 9), orientation, uid, instance=9)
    odd = pydicom.dcmread(tmp_path / "px" / "zz.dcm")
    odd.PixelSpacing = [0.9, 0.9]
    odd.save_as(tmp_path / "px" / "zz.dcm")
    with pytest.raises(DataValidationError, match=r"zz\.dcm: PixelSpacing .* differs .*inconsistent spacing"):
        read_dicom_series(tmp_path / "px")
    del odd.ImagePositionPatient
    odd.PixelSpacing = list(PIXEL_SPACING)
    odd.save_as(tmp_path / "px" / "zz.dcm")
    with pytest.raises(DataValidationError, match=r"zz\.dcm: ImagePositionPatient is missing"):
        read_dicom_series(tmp_path / "px")
