"""NIfTI reader: RAS+ canonicalisation, spacing, 4-D channels, scaling, broken files, nibabel's test data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from medai.core.errors import DataValidationError, InvalidParameterError  # noqa: E402
from medai.core.records import Modality  # noqa: E402
from medai.io.nifti import read_nifti  # noqa: E402


def write(path: Path, array: np.ndarray, affine: np.ndarray, **header) -> Path:
    image = nib.Nifti1Image(array, affine)
    if "slope" in header:
        image.header.set_slope_inter(header["slope"], header["inter"])
    nib.save(image, path)
    return path


def test_ras_volume_unchanged(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    record = read_nifti(write(tmp_path / "ct.nii.gz", array, np.diag([0.5, 0.75, 2.0, 1.0])))
    assert record.modality == Modality.VOLUME and record.id == "ct"
    assert record.shape == (1, 2, 3, 4) and record.data.dtype == np.float32
    np.testing.assert_array_equal(record.data[0], array)
    assert record.meta["spacing_mm"] == pytest.approx((0.5, 0.75, 2.0))
    assert record.meta["original_orientation"] == ("R", "A", "S")


def test_las_and_permuted_axes_become_ras(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    # axis 0 runs to the patient's left (L), as radiological-convention files do
    las = np.diag([-0.5, 0.75, 2.0, 1.0])
    record = read_nifti(write(tmp_path / "las.nii", array, las))
    assert record.meta["original_orientation"] == ("L", "A", "S")
    np.testing.assert_array_equal(record.data[0], array[::-1])
    np.testing.assert_allclose(record.meta["original_affine"], las)
    assert nib.aff2axcodes(record.meta["affine"]) == ("R", "A", "S")
    # voxel axes stored as (S, R, A): the reader permutes them and their zooms to (R, A, S)
    sra = np.array([[0, 0.75, 0, 0], [0, 0, 0.5, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    record = read_nifti(write(tmp_path / "sra.nii", array, sra))
    assert record.meta["original_orientation"] == ("S", "R", "A")
    assert record.shape == (1, 3, 4, 2)
    np.testing.assert_array_equal(record.data[0], array.transpose(1, 2, 0))
    assert record.meta["spacing_mm"] == pytest.approx((0.75, 0.5, 3.0))


def test_4d_becomes_channels_and_scaling_applied(tmp_path):
    array = np.arange(2 * 2 * 2 * 3, dtype=np.int16).reshape(2, 2, 2, 3)
    path = write(tmp_path / "cine.nii.gz", array, np.eye(4), slope=2.0, inter=-10.0)
    record = read_nifti(path)
    assert record.shape == (3, 2, 2, 2)
    np.testing.assert_allclose(record.data[1], array[..., 1] * 2.0 - 10.0)
    assert "4th NIfTI dimension" in record.meta["channel_axis"]


def test_bad_files(tmp_path):
    (tmp_path / "notes.nii").write_text("not a volume")
    with pytest.raises(DataValidationError, match=r"notes\.nii: (not a NIfTI|corrupt or truncated)"):
        read_nifti(tmp_path / "notes.nii")
    volume = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    path = write(tmp_path / "big.nii.gz", volume, np.eye(4))
    raw = gzip.decompress(path.read_bytes())
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataValidationError, match=r"cut\.nii: .*truncated or corrupt"):
        read_nifti(tmp_path / "cut.nii")
    with pytest.raises(InvalidParameterError, match="NIfTI file not found"):
        read_nifti(tmp_path / "absent.nii.gz")


def test_nibabel_bundled_example4d():
    from nibabel.testing import data_path

    path = Path(data_path) / "example4d.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} is not installed with this nibabel")
    record = read_nifti(path)
    assert record.shape == (2, 128, 96, 24)
    assert record.meta["original_orientation"] == ("L", "A", "S")
    assert record.meta["spacing_mm"] == pytest.approx((2.0, 2.0, 2.2), abs=1e-5)
    assert record.meta["channel_step"] == pytest.approx(2000.0)
    original = np.asanyarray(nib.load(path).dataobj)
    np.testing.assert_allclose(record.data[1], original[::-1, :, :, 1])
