"""Image readers: single files (grey, RGB, RGBA, 16-bit), class folders, CSV manifests, HAM10000 layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

Image = pytest.importorskip("PIL.Image")

from medai.core.errors import DataValidationError, InvalidParameterError  # noqa: E402
from medai.core.records import Modality  # noqa: E402
from medai.io.images import read_ham10000, read_image, read_image_folder, read_manifest  # noqa: E402


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def grey(seed: int = 0, shape=(6, 7)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_grey_png(tmp_path):
    pixels = grey()
    record = read_image(save(tmp_path / "a.png", pixels))
    assert record.modality == Modality.IMAGE and record.id == "a"
    assert record.shape == (1, 6, 7) and record.data.dtype == np.uint8
    np.testing.assert_array_equal(record.data[0], pixels)
    assert record.meta["format"] == "PNG" and record.meta["mode"] == "L"


def test_rgb_png_channel_first(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    record = read_image(save(tmp_path / "rgb.png", pixels))
    assert record.shape == (3, 5, 4)
    np.testing.assert_array_equal(record.data.transpose(1, 2, 0), pixels)


def test_rgba_alpha_dropped_with_note(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, size=(5, 4, 4), dtype=np.uint8)
    record = read_image(save(tmp_path / "rgba.png", pixels))
    assert record.shape == (3, 5, 4)
    np.testing.assert_array_equal(record.data.transpose(1, 2, 0), pixels[..., :3])
    assert "alpha channel dropped" in record.meta["note"]


def test_16bit_png_kept(tmp_path):
    pixels = np.array([[0, 300, 4095], [65535, 1, 2]], dtype=np.uint16)
    path = tmp_path / "xray16.png"
    Image.fromarray(pixels).save(path)
    record = read_image(path)
    assert record.data.dtype == np.uint16 and record.shape == (1, 2, 3)
    np.testing.assert_array_equal(record.data[0], pixels)


def test_jpeg_reads_close_to_source(tmp_path):
    pixels = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    record = read_image(path)
    assert record.meta["format"] == "JPEG" and record.shape == (1, 16, 16)
    assert np.abs(record.data[0].astype(int) - pixels).max() <= 8


def test_bad_files(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataValidationError, match=r"notes\.png: not a readable image"):
        read_image(tmp_path / "notes.png")
    whole = save(tmp_path / "whole.png", grey(shape=(64, 64))).read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataValidationError, match=r"cut\.png: truncated or corrupt"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(InvalidParameterError, match="Image file not found"):
        read_image(tmp_path / "absent.png")


def make_class_folder(root: Path) -> Path:
    for i in range(3):
        save(root / "normal" / f"n{i}.png", grey(i))
    for i in range(2):
        save(root / "pneumonia" / f"p{i}.png", grey(10 + i))
    (root / "normal" / ".DS_Store").write_bytes(b"\0")
    return root


def test_class_folder(tmp_path):
    images = read_image_folder(make_class_folder(tmp_path / "cxr"))
    assert images.classes == ["normal", "pneumonia"]
    assert len(images) == 5 and [r.label for r in images].count("pneumonia") == 2
    np.testing.assert_array_equal(images.label_indices(), [0, 0, 0, 1, 1])
    assert images.shapes() == {(1, 6, 7): 5}
    images.require_uniform()
    assert "5 images in 2 classes (normal: 3, pneumonia: 2)" in images.describe()


def test_class_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match="no class sub-folders"):
        read_image_folder(tmp_path / "empty")
    root = make_class_folder(tmp_path / "cxr")
    (root / "covid").mkdir()
    with pytest.raises(DataValidationError, match=r"covid: class 'covid' has no readable images"):
        read_image_folder(root)
    (root / "covid").rmdir()
    (root / "pneumonia" / "labels.txt").write_text("p0 1\n")
    with pytest.raises(DataValidationError, match=r"labels\.txt: not a readable image"):
        read_image_folder(root)
    skipped = read_image_folder(root, on_invalid="skip")
    assert len(skipped) == 5 and len(skipped.skipped) == 1 and skipped.skipped[0][0].endswith("labels.txt")
    with pytest.raises(InvalidParameterError, match="'on_invalid' parameter of read_image_folder"):
        read_image_folder(root, on_invalid="drop")


def test_mixed_sizes_and_channels_reported(tmp_path):
    root = make_class_folder(tmp_path / "mixed")
    save(root / "normal" / "big.png", grey(shape=(8, 8)))
    save(root / "pneumonia" / "colour.png", np.zeros((6, 7, 3), dtype=np.uint8))
    images = read_image_folder(root)
    assert images.shapes() == {(1, 6, 7): 5, (1, 8, 8): 1, (3, 6, 7): 1}
    with pytest.raises(DataValidationError, match=r"3 different shapes: .*big\.png.*does not resize silently"):
        images.require_uniform()


def test_manifest(tmp_path):
    make_class_folder(tmp_path / "imgs")
    pd.DataFrame(
        {
            "path": ["imgs/normal/n0.png", "imgs/pneumonia/p1.png", str(tmp_path / "imgs/normal/n2.png")],
            "label": [0, 1, 0],
            "patient_id": [101, 102, 101],
        }
    ).to_csv(tmp_path / "manifest.csv", index=False)
    images = read_manifest(tmp_path / "manifest.csv")
    assert [r.label for r in images] == [0, 1, 0] and images.classes == [0, 1]
    assert [r.patient_id for r in images] == ["101", "102", "101"]
    np.testing.assert_array_equal(images[1].data[0], grey(11))


def test_manifest_errors(tmp_path):
    make_class_folder(tmp_path / "imgs")
    pd.DataFrame({"file": ["imgs/normal/n0.png"], "label": [0]}).to_csv(tmp_path / "m1.csv", index=False)
    with pytest.raises(DataValidationError, match=r"m1\.csv: missing columns \['path'\]. Found \['file', 'label'\]"):
        read_manifest(tmp_path / "m1.csv")
    rows = {"path": ["imgs/normal/n0.png", "imgs/gone.png"], "label": ["a", "b"]}
    pd.DataFrame(rows).to_csv(tmp_path / "m2.csv", index=False)
    with pytest.raises(DataValidationError, match=r"m2\.csv: row 3: .*gone\.png: listed in m2\.csv row 3 but not"):
        read_manifest(tmp_path / "m2.csv")
    assert len(read_manifest(tmp_path / "m2.csv", on_invalid="skip").skipped) == 1
    pd.DataFrame({"path": ["imgs/normal/n0.png"], "label": [None]}).to_csv(tmp_path / "m3.csv", index=False)
    with pytest.raises(DataValidationError, match="row 2 .* has an empty 'label'"):
        read_manifest(tmp_path / "m3.csv")


def test_ham10000_layout(tmp_path):
    root = tmp_path / "ham"
    rows = [("HAM_0000001", "ISIC_0000001", "mel", 1), ("HAM_0000001", "ISIC_0000002", "mel", 2),
            ("HAM_0000002", "ISIC_0000003", "nv", 1)]
    for lesion, image_id, dx, part in rows:
        save(root / f"HAM10000_images_part_{part}" / f"{image_id}.jpg", np.full((4, 6, 3), 100, dtype=np.uint8))
    pd.DataFrame(
        {"lesion_id": [r[0] for r in rows], "image_id": [r[1] for r in rows], "dx": [r[2] for r in rows],
         "dx_type": "histo", "localization": "back"}
    ).to_csv(root / "HAM10000_metadata.csv", index=False)
    images = read_ham10000(root)
    assert images.classes == ["mel", "nv"] and len(images) == 3
    assert [r.patient_id for r in images] == ["HAM_0000001", "HAM_0000001", "HAM_0000002"]
    assert images[0].meta["patient_id_source"] == "lesion_id" and images[0].meta["dx_type"] == "histo"
    assert images[2].shape == (3, 4, 6)
    (root / "HAM10000_images_part_2" / "ISIC_0000002.jpg").unlink()
    with pytest.raises(DataValidationError, match="no image file for image_id 'ISIC_0000002'"):
        read_ham10000(root)
    assert len(read_ham10000(root, on_invalid="skip")) == 2
    (root / "HAM10000_metadata.csv").unlink()
    with pytest.raises(DataValidationError, match="no HAM10000_metadata.csv"):
        read_ham10000(root)


def test_exif_orientation_applied(tmp_path):
    pixels = np.zeros((4, 10), dtype=np.uint8)
    pixels[:, :5] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", as phones write it
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=100)
    record = read_image(path)
    assert record.shape == (1, 10, 4)  # upright: the stored 4x10 image displayed as 10x4
    assert record.data[0, :5].mean() > 200 and record.data[0, 5:].mean() < 50  # white half now on top
