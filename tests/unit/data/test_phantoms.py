"""Generated phantoms: deterministic, truth consistent with the images, EF computed as documented."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from medai.core.errors import InvalidParameterError, UnknownNameError
from medai.data.phantoms import (
    SEGMENTATION_DATASETS, cine_volumes_ml, ejection_fraction, load_segmentation_dataset, make_cardiac_cine_phantoms,
    make_lesion_phantoms,
)


@pytest.fixture(scope="module")
def cine():
    return make_cardiac_cine_phantoms(6, n_frames=12, n_slices=5, seed=3)


def test_lesion_phantoms_shapes_types_and_determinism():
    a = make_lesion_phantoms(12, seed=7)
    b = make_lesion_phantoms(12, seed=7)
    c = make_lesion_phantoms(12, seed=8)
    assert a.images.shape == (12, 1, 64, 64) and a.images.dtype == np.float32
    assert a.masks.shape == (12, 1, 64, 64) and a.masks.dtype == np.uint8
    assert set(np.unique(a.masks)) <= {0, 1}
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, c.images)
    assert a.ids[0] == "lesion-0000" and len(set(a.ids)) == 12
    assert a.spacing_mm == (1.0, 1.0)


def test_lesion_count_matches_connected_components_and_lesions_are_brighter():
    phantoms = make_lesion_phantoms(40, seed=1)
    components = [ndimage.label(m[0])[1] for m in phantoms.masks]
    assert components == phantoms.n_lesions.tolist()  # lesions never touch: one component each
    assert set(phantoms.n_lesions.tolist()) >= {0, 1, 2, 3}
    inside = phantoms.images[phantoms.masks == 1].mean()
    outside = phantoms.images[phantoms.masks == 0].mean()
    assert inside > outside + 0.15


def test_lesion_phantoms_3d():
    phantoms = make_lesion_phantoms(4, spatial_dims=3, size=32, spacing_mm=1.5, seed=2)
    assert phantoms.images.shape == (4, 1, 32, 32, 32) and phantoms.spacing_mm == (1.5, 1.5, 1.5)
    assert [ndimage.label(m[0])[1] for m in phantoms.masks] == phantoms.n_lesions.tolist()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0}, "'n' parameter of make_lesion_phantoms"),
    ({"n": 2, "spatial_dims": 4}, "'spatial_dims'"),
    ({"n": 2, "size": 8}, "'size'"),
])
def test_lesion_phantoms_reject_bad_parameters(kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        make_lesion_phantoms(**kwargs)


def test_ejection_fraction_from_hand_made_volumes():
    result = ejection_fraction(np.array([[100.0, 80.0, 40.0, 60.0], [50.0, 50.0, 20.0, 45.0]]))
    assert result["edv_ml"].tolist() == [100.0, 50.0] and result["esv_ml"].tolist() == [40.0, 20.0]
    assert result["ef_percent"].tolist() == pytest.approx([60.0, 60.0])
    assert result["ed_frame"].tolist() == [0, 0] and result["es_frame"].tolist() == [2, 2]
    assert np.isnan(ejection_fraction(np.zeros(5))["ef_percent"])


def test_cine_volumes_are_voxel_counts_times_voxel_volume():
    masks = np.zeros((2, 3, 4, 4), np.uint8)  # frames, slices, rows, cols
    masks[0, :, :2, :2] = 1  # 12 voxels
    masks[1, 0, 0, 0] = 1  # 1 voxel
    assert cine_volumes_ml(masks, (10.0, 2.0, 1.5)).tolist() == pytest.approx([12 * 0.03, 0.03])


def test_cine_phantom_truth_is_consistent(cine):
    assert cine.images.shape == (6, 12, 5, 64, 64) and cine.masks.shape == cine.images.shape
    voxel_ml = 10.0 * 2.0 * 2.0 / 1000
    volumes = cine.masks.reshape(6, 12, -1).sum(-1) * voxel_ml  # computed here without medai's helpers
    assert np.allclose(cine.volumes_ml, volumes)
    assert np.array_equal(cine.ed_frame, volumes.argmax(1)) and np.array_equal(cine.es_frame, volumes.argmin(1))
    ef = (volumes.max(1) - volumes.min(1)) / volumes.max(1) * 100
    assert np.allclose(cine.ef_percent, ef)
    # The drawn contraction sets the EF to within discretisation; ES lies at 30-45 % of the cycle.
    assert np.abs(cine.ef_percent - cine.drawn_ef_percent).max() < 4.0
    assert ((cine.es_frame >= 3) & (cine.es_frame <= 6)).all()
    # bSSFP contrast: the blood pool is brighter than the rest of the image.
    assert cine.images[cine.masks == 1].mean() > cine.images[cine.masks == 0].mean() + 0.3


def test_cine_phantoms_cover_the_ef_range():
    phantoms = make_cardiac_cine_phantoms(12, n_frames=8, n_slices=4, size=32, pixel_mm=4.0, seed=5)
    assert phantoms.ef_percent.min() < 40 and phantoms.ef_percent.max() > 55
    assert (phantoms.edv_ml > phantoms.esv_ml).all()


def test_cine_phantom_rejects_bad_ef_range():
    with pytest.raises(InvalidParameterError, match="'ef_range'"):
        make_cardiac_cine_phantoms(2, ef_range=(60, 20))


def test_named_datasets_are_registered_and_split_by_subject(monkeypatch):
    assert {"lesion-phantoms-2d", "lesion-phantoms-3d", "cardiac-cine-phantom"} <= set(SEGMENTATION_DATASETS)
    info = SEGMENTATION_DATASETS.get("cardiac-cine-phantom")
    small = dataclasses.replace(info, n={"train": 2, "val": 1, "test": 2}, params={**info.params, "n_frames": 8})
    monkeypatch.setitem(SEGMENTATION_DATASETS._items, info.name, small)
    splits = load_segmentation_dataset(info.name)
    ids = [set(splits[s].ids) for s in ("train", "val", "test")]
    assert [len(i) for i in ids] == [2, 1, 2]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert not np.array_equal(splits["train"].images[0], splits["test"].images[0])
    again = load_segmentation_dataset(info.name)
    assert np.array_equal(again["test"].masks, splits["test"].masks)


def test_unknown_dataset_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'cardiac-cine-phantom'"):
        load_segmentation_dataset("cardiac-cine-phantoms")
