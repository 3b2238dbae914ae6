"""MedMNIST .npz reader: layouts, label kinds, bad files, and the real BreastMNIST / PneumoniaMNIST files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.core.records import Modality
from medai.io.medmnist import LabelKind, read_medmnist

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SIZES = {"train": 6, "val": 3, "test": 4}


def write_npz(path: Path, image_shape: tuple[int, ...], labels, seed: int = 0, **override) -> Path:
    """A tiny MedMNIST file; ``labels(n, rng)`` makes the labels of one split."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in SIZES.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, *image_shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = labels(n, rng)
    arrays.update(override)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    np.savez(path, **arrays)
    return path


def binary(n, rng):
    return np.arange(n) % 2


def test_grey_2d_binary(tmp_path):
    path = write_npz(tmp_path / "grey.npz", (28, 28), binary)
    raw = np.load(path)
    data = read_medmnist(path)
    assert (data.dimensions, data.channels, data.label_kind, data.n_classes) == (2, 1, LabelKind.BINARY, 2)
    assert data.image_size == (28, 28)
    assert data.images["train"].shape == (6, 1, 28, 28)
    assert data.images["train"].dtype == np.uint8
    np.testing.assert_array_equal(data.images["val"][:, 0], raw["val_images"])
    assert data.split_sizes() == SIZES
    assert "2-D grey 28x28, binary" in data.describe()


def test_rgb_is_channel_first_and_pixels_kept(tmp_path):
    path = write_npz(tmp_path / "rgb.npz", (8, 10, 3), lambda n, rng: rng.integers(0, 5, size=(n, 1)))
    raw = np.load(path)
    data = read_medmnist(path)
    assert data.channels == 3 and data.image_size == (8, 10)
    assert data.images["test"].shape == (4, 3, 8, 10)
    # pixel (row 2, col 7) of image 1, green channel
    assert data.images["test"][1, 1, 2, 7] == raw["test_images"][1, 2, 7, 1]
    # (N, 1) labels become class indices
    assert data.labels["train"].shape == (6,)
    np.testing.assert_array_equal(data.labels["train"], raw["train_labels"][:, 0])
    assert data.label_kind == LabelKind.MULTICLASS
    assert data.n_classes == max(int(raw[f"{s}_labels"].max()) for s in SIZES) + 1


def test_3d_volumes_and_records(tmp_path):
    path = write_npz(tmp_path / "organ3d.npz", (5, 6, 7), lambda n, rng: (np.arange(n) % 3).reshape(-1, 1))
    data = read_medmnist(path)
    assert data.dimensions == 3 and data.channels == 1 and data.image_size == (5, 6, 7)
    assert data.images["train"].shape == (6, 1, 5, 6, 7)
    records = list(data.records("val"))
    assert len(records) == 3
    assert records[2].modality == Modality.VOLUME
    assert records[2].shape == (1, 5, 6, 7)
    assert records[2].label == 2
    assert records[2].meta["split"] == "val" and records[2].id == "organ3d/val/2"
    with pytest.raises(InvalidParameterError, match="'split' parameter.*Got 'valid'"):
        next(data.records("valid"))


def test_multilabel(tmp_path):
    path = write_npz(tmp_path / "chest.npz", (4, 4), lambda n, rng: rng.integers(0, 2, size=(n, 14)))
    data = read_medmnist(path)
    assert data.label_kind == LabelKind.MULTILABEL and data.n_classes == 14
    assert data.labels["test"].shape == (4, 14)
    record = next(data.records("test"))
    assert record.label.shape == (14,) and record.modality == Modality.IMAGE


def test_missing_keys_named(tmp_path):
    path = write_npz(tmp_path / "nokeys.npz", (4, 4), binary, val_images=None, val_labels=None)
    with pytest.raises(DataValidationError, match=r"nokeys\.npz: missing keys \['val_images', 'val_labels'\]. Found"):
        read_medmnist(path)


def test_mismatched_counts(tmp_path):
    path = write_npz(tmp_path / "n.npz", (4, 4), binary, test_labels=np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataValidationError, match="'test_images' has 4 images but 'test_labels' has 3 labels"):
        read_medmnist(path)


def test_wrong_dtype_and_ndim(tmp_path):
    path = write_npz(tmp_path / "f.npz", (4, 4), binary, train_images=np.zeros((6, 4, 4), dtype=np.float32))
    with pytest.raises(DataValidationError, match=r"f\.npz: 'train_images' has dtype float32"):
        read_medmnist(path)
    path = write_npz(tmp_path / "d.npz", (4, 4), binary, val_images=np.zeros((3, 4), dtype=np.uint8))
    with pytest.raises(DataValidationError, match=r"'val_images' has shape \(3, 4\)"):
        read_medmnist(path)


def test_nan_and_bad_labels(tmp_path):
    labels = np.array([0.0, 1.0, np.nan])
    path = write_npz(tmp_path / "nan.npz", (4, 4), binary, val_labels=labels)
    with pytest.raises(DataValidationError, match=r"nan\.npz: 'val_labels' contains NaN labels \(1 values\)"):
        read_medmnist(path)
    path = write_npz(tmp_path / "ml.npz", (4, 4), lambda n, rng: np.full((n, 3), 2))
    with pytest.raises(DataValidationError, match="values other than 0 and 1"):
        read_medmnist(path)


def test_split_shapes_must_agree(tmp_path):
    path = write_npz(tmp_path / "s.npz", (4, 4), binary, test_images=np.zeros((4, 5, 5), dtype=np.uint8))
    with pytest.raises(DataValidationError, match="different image shapes"):
        read_medmnist(path)


def test_not_an_npz_and_missing_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataValidationError, match=r"bad\.npz: not a readable \.npz"):
        read_medmnist(bad)
    with pytest.raises(InvalidParameterError, match="MedMNIST file not found"):
        read_medmnist(tmp_path / "absent.npz")


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("breastmnist", {"train": 546, "val": 78, "test": 156}),
        ("pneumoniamnist", {"train": 4708, "val": 524, "test": 624}),
    ],
)
def test_real_medmnist_files(name, sizes):
    path = SHARED_DATA / name / f"{name}.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent (real MedMNIST data lives in ../shared/data beside the repository)")
    data = read_medmnist(path)
    assert data.split_sizes() == sizes
    assert (data.dimensions, data.channels, data.image_size) == (2, 1, (28, 28))
    assert data.label_kind == LabelKind.BINARY and data.n_classes == 2
    assert data.images["train"].dtype == np.uint8
    assert set(np.unique(data.labels["test"])) == {0, 1}
