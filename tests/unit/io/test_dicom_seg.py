"""DICOM SEG output: an image without DICOM source becomes an MR series, the mask a BINARY SEG that highdicom
reads back exactly; real source datasets work too; files are written atomically."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.data.phantoms import make_cardiac_cine_phantoms, make_lesion_phantoms
from medai.io.dicom import read_dicom_series
from medai.io.dicom_seg import LV_BLOOD_POOL, read_dicom_seg, write_dicom_seg, write_image_series


@pytest.fixture(scope="module")
def cine_stack():
    phantom = make_cardiac_cine_phantoms(1, n_frames=8, n_slices=4, size=32, pixel_mm=4.0, seed=0)
    return phantom.images[0, 0], phantom.masks[0, 0], phantom.spacing_mm  # (slices, rows, cols)


def _masks_by_source(seg: hd.seg.Segmentation, files) -> np.ndarray:
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    return seg.get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0]


def test_3d_image_series_and_seg_round_trip(tmp_path, cine_stack):
    image, mask, spacing = cine_stack
    path = write_dicom_seg(mask, tmp_path / "seg.dcm", image=image, image_folder=tmp_path / "image",
                           spacing_mm=spacing, segment=LV_BLOOD_POOL, model_name="unet", model_version="9.9")
    files = sorted((tmp_path / "image").glob("*.dcm"))
    assert len(files) == mask.shape[0]
    seg = hd.seg.segread(str(path))
    assert np.array_equal(_masks_by_source(seg, files), mask)
    assert np.array_equal(read_dicom_seg(path, files), mask)
    assert seg.SegmentationType == "BINARY"
    segment = seg.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC" and segment.SegmentLabel == "LV blood pool"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91720002"  # SCT body substance
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "87612001"  # SCT blood
    assert segment.AnatomicRegionSequence[0].CodeValue == "87878005"  # SCT left ventricle
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "medai unet" and algorithm.AlgorithmVersion == "9.9"
    source = pydicom.dcmread(files[0])
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert len({pydicom.dcmread(f).SOPInstanceUID for f in files}) == len(files)


def test_written_series_has_the_geometry_medai_reads(tmp_path, cine_stack):
    image, _, spacing = cine_stack
    write_image_series(image, tmp_path / "series", spacing_mm=spacing, origin_mm=(-10.0, 5.0, 30.0))
    record = read_dicom_series(tmp_path / "series")
    assert record.data.shape == (1, *image.shape)
    assert record.meta["spacing_mm"] == pytest.approx(spacing)
    assert record.meta["origin_mm"] == pytest.approx((-10.0, 5.0, 30.0))
    # Intensities are rescaled linearly to 12 bits: the order of values is kept.
    stored = record.data[0].astype(float)
    assert stored.min() == 0 and stored.max() == 4095
    assert np.corrcoef(stored.ravel(), image.ravel())[0, 1] > 0.9999


def test_2d_lesion_image_and_empty_mask(tmp_path):
    phantom = make_lesion_phantoms(1, seed=4)
    image, mask = phantom.images[0, 0], phantom.masks[0, 0]
    path = write_dicom_seg(mask, tmp_path / "lesion.dcm", image=image, image_folder=tmp_path / "img",
                           spacing_mm=(0.8, 0.8))
    files = sorted((tmp_path / "img").glob("*.dcm"))
    seg = hd.seg.segread(str(path))
    assert len(files) == 1 and np.array_equal(_masks_by_source(seg, files)[0], mask)
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"  # SCT lesion
    assert pydicom.dcmread(files[0]).PixelSpacing == [0.8, 0.8]
    empty = np.zeros_like(mask)
    path = write_dicom_seg(empty, tmp_path / "empty.dcm", source_images=files)
    assert np.array_equal(read_dicom_seg(path, files), empty[None])


def test_real_source_dataset(tmp_path):
    path = get_testdata_file("CT_small.dcm", download=False)
    if path is None:
        pytest.skip("pydicom's CT_small.dcm is not installed")
    source = pydicom.dcmread(path)
    mask = np.zeros((source.Rows, source.Columns), np.uint8)
    mask[40:70, 30:90] = 1
    out = write_dicom_seg(mask, tmp_path / "ct_seg.dcm", source_images=[source])
    seg = hd.seg.segread(str(out))
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert np.array_equal(read_dicom_seg(out, [source])[0], mask)


def test_input_errors(tmp_path, cine_stack):
    image, mask, spacing = cine_stack
    with pytest.raises(InvalidParameterError, match="exactly one of 'source_images'"):
        write_dicom_seg(mask, tmp_path / "x.dcm")
    with pytest.raises(DataValidationError, match="only 0 and 1"):
        write_dicom_seg(mask * 2, tmp_path / "x.dcm", image=image, image_folder=tmp_path / "i", spacing_mm=spacing)
    with pytest.raises(InvalidParameterError, match="'spacing_mm'"):
        write_image_series(image, tmp_path / "j", spacing_mm=(1.0, 1.0))
    write_image_series(image, tmp_path / "k", spacing_mm=spacing)
    files = sorted((tmp_path / "k").glob("*.dcm"))
    with pytest.raises(DataValidationError, match="one source image per mask slice"):
        write_dicom_seg(mask, tmp_path / "x.dcm", source_images=files[:-1])
    assert not (tmp_path / "x.dcm").exists()


def test_a_failed_write_leaves_no_file(tmp_path, cine_stack, monkeypatch):
    image, mask, spacing = cine_stack

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    write_image_series(image, tmp_path / "series", spacing_mm=spacing)
    files = sorted((tmp_path / "series").glob("*.dcm"))
    monkeypatch.setattr(pydicom.Dataset, "save_as", broken)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_seg(mask, tmp_path / "seg.dcm", source_images=files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]
