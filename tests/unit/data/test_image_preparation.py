import numpy as np
import pytest
import torch

from medai.core.errors import DataValidationError, NotFittedError
from medai.core.records import Modality, Record
from medai.data.images import BatchAugmentation, ImagePreprocessor


def _record(data, **meta):
    return Record(id="r", modality=Modality.IMAGE, data=data, meta={"source": "r.png", **meta})


def test_prepare_scales_resizes_and_converts_channels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4096, (1, 100, 80)).astype(np.uint16)
    prepared, notes = ImagePreprocessor((32, 32), channels=3).prepare(_record(image))
    assert prepared.shape == (3, 32, 32) and prepared.dtype == np.uint8
    assert np.array_equal(prepared[0], prepared[2])  # grey repeated to RGB
    assert any("percentiles" in n for n in notes) and any("resized from 100x80 to 32x32" in n for n in notes)
    rgb = np.stack([np.full((4, 4), 200), np.full((4, 4), 100), np.zeros((4, 4))]).astype(np.uint8)
    grey, _ = ImagePreprocessor(channels=1).prepare(_record(rgb))
    assert grey.shape == (1, 4, 4) and grey[0, 0, 0] == round(0.299 * 200 + 0.587 * 100)


def test_dicom_voi_window_is_used_and_uint8_is_kept():
    values = np.array([[[0.0, 500.0, 1000.0, 2000.0]]], dtype=np.float32)
    prepared, notes = ImagePreprocessor().prepare(_record(values, voi_window=(1000.0, 1000.0)))
    assert prepared[0, 0].tolist() == [0, 0, 128, 255] and "window from the file" in notes[0]
    image = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    assert np.array_equal(ImagePreprocessor().prepare(_record(image))[0], image)


def test_ct_window_preset_maps_hounsfield_units():
    hu = np.array([[[-1000.0, 40.0, 80.0, 400.0]]], dtype=np.float32)
    prepared, _ = ImagePreprocessor(window="brain").prepare(_record(hu))  # brain: center 40, width 80
    assert prepared[0, 0].tolist() == [0, 128, 255, 255]


def test_mixed_shapes_are_refused_with_the_fix():
    records = [_record(np.zeros((1, 8, 8), np.uint8)), _record(np.zeros((1, 9, 8), np.uint8))]
    with pytest.raises(DataValidationError, match="image_size"):
        ImagePreprocessor().prepare_all(records)


def test_fit_normalise_and_round_trip():
    images = np.random.default_rng(1).integers(0, 256, (50, 1, 8, 8), dtype=np.uint8)
    with pytest.raises(NotFittedError):
        ImagePreprocessor().normalise(torch.from_numpy(images))
    preprocessor = ImagePreprocessor().fit(images)
    x = preprocessor.normalise(torch.from_numpy(images))
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2
    again = ImagePreprocessor.from_dict(preprocessor.to_dict())
    assert torch.equal(again.normalise(torch.from_numpy(images[0])), x[0])
    assert again.image_size == (8, 8) and again.channels == 1


def test_augmentation_is_seeded_per_image_and_off_at_evaluation():
    images = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (8, 1, 16, 16), dtype=np.uint8))
    augment = BatchAugmentation(ImagePreprocessor().fit(images.numpy()), "standard", seed=3)
    index = torch.arange(8)
    a, b = augment(images, index, 0, True), augment(images, index, 0, True)
    assert torch.equal(a, b)  # same (seed, epoch, image) → same transform
    assert not torch.equal(a, augment(images, index, 1, True))  # a new epoch draws new transforms
    halves = torch.cat([augment(images[:4], index[:4], 0, True), augment(images[4:], index[4:], 0, True)])
    assert torch.allclose(a, halves)  # independent of how images are batched (DDP ranks)
    plain = augment(images, index, 0, False)
    assert torch.equal(plain, augment.preprocessor.normalise(images))
