"""Overlays: shape, dtype, upscaling, colour blending, slice choice, atomic PNG writing, report panel."""

from __future__ import annotations

import base64
import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.explain import max_saliency_slice, overlay, overlay_panel, png_base64, save_png


def test_small_grey_float_image_is_upscaled_by_an_integer_factor():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 28, 28)).astype(np.float32)
    heat = rng.random((28, 28))
    rgb = overlay(image, heat)
    assert rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8
    # alpha 0 shows the image alone: min/max rescaled to 0..255, each pixel an 8×8 block (nearest neighbour)
    plain = overlay(image, heat, alpha=0.0)
    expected = np.round((image[0] - image.min()) / (image.max() - image.min()) * 255).astype(np.uint8)
    np.testing.assert_array_equal(plain[::8, ::8, 0], expected)
    np.testing.assert_array_equal(plain[3::8, 5::8, 1], expected)
    # the map is interpolated bilinearly: a step from 0 to 1 passes through intermediate colours
    step = np.zeros((28, 28))
    step[:, 14:] = 1.0
    row = overlay(image, step, alpha=1.0)[100]
    assert len(np.unique(row, axis=0)) > 4  # nearest-neighbour would give exactly 2
    np.testing.assert_array_equal(row[0], overlay(image, np.zeros((28, 28)), alpha=1.0)[0, 0])


def test_large_rgb_uint8_image_keeps_its_size_and_alpha_one_is_the_colour_map():
    image = np.full((3, 240, 300), 100, dtype=np.uint8)
    heat = np.tile(np.linspace(0, 1, 300), (240, 1))
    rgb = overlay(image, heat, alpha=1.0, cmap="inferno")
    assert rgb.shape == (240, 300, 3)
    expected = np.round(matplotlib.colormaps["inferno"](heat)[..., :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(rgb, expected)
    half = overlay(image, heat, alpha=0.5, cmap="inferno")
    np.testing.assert_allclose(half.astype(float), 0.5 * 100 + 0.5 * expected, atol=1.0)


def test_overlay_refuses_bad_inputs():
    image = np.zeros((1, 8, 8), dtype=np.uint8)
    with pytest.raises(DataValidationError, match="displayable"):
        overlay(image, np.full((8, 8), 1.5))
    with pytest.raises(DataValidationError, match=r"spatial shape \(8, 8\)"):
        overlay(image, np.zeros((4, 4)))
    with pytest.raises(DataValidationError, match="max_saliency_slice"):
        overlay(np.zeros((1, 4, 8, 8)), np.zeros((8, 8)))
    with pytest.raises(InvalidParameterError, match="'cmap' parameter of overlay"):
        overlay(image, np.zeros((8, 8)), cmap="viridis")
    with pytest.raises(InvalidParameterError, match="'alpha' parameter"):
        overlay(image, np.zeros((8, 8)), alpha=2)


def test_max_saliency_slice_picks_the_heaviest_slice():
    volume = np.random.default_rng(0).random((1, 5, 6, 7)).astype(np.float32)
    heat = np.zeros((5, 6, 7))
    heat[3, 2:4, 2:4] = 1.0
    heat[1, 0, 0] = 1.0  # a single hot voxel weighs less than the blob
    image, saliency, index = max_saliency_slice(volume, heat, axis=0)
    assert index == 3 and image.shape == (1, 6, 7) and saliency.shape == (6, 7)
    np.testing.assert_array_equal(image, volume[:, 3])
    _, saliency_last, index_last = max_saliency_slice(volume, heat)  # default: last axis
    assert index_last in (2, 3) and saliency_last.shape == (5, 6)
    assert overlay(image, saliency).shape == (6 * 38, 7 * 38, 3)  # smallest factor reaching 224 px: 38
    with pytest.raises(InvalidParameterError, match="axis"):
        max_saliency_slice(volume, heat, axis=3)


def test_save_png_is_atomic_and_reads_back(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    path = save_png(tmp_path / "overlay.png", rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.png"]  # no temporary file left
    np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb)
    save_png(path, rgb[::-1].copy())  # replaces an existing file
    np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb[::-1])
    with pytest.raises(DataValidationError, match="uint8"):
        save_png(tmp_path / "bad.png", rgb.astype(np.float32))
    with pytest.raises(DataValidationError, match="does not exist"):
        save_png(tmp_path / "missing" / "x.png", rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.png"]


def test_png_base64_round_trip():
    rgb = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    text = png_base64(rgb)
    data = base64.b64decode(text)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), rgb)


def test_overlay_panel_draws_image_and_each_map():
    image = np.random.default_rng(0).random((1, 28, 28))
    heat = np.zeros((28, 28))
    heat[10:14, 10:14] = 1.0
    one = Image.open(io.BytesIO(overlay_panel(image, {"Grad-CAM": heat}, title="example 3")))
    two = Image.open(io.BytesIO(overlay_panel(image, {"Grad-CAM": heat, "Integrated gradients": heat / 2})))
    assert one.format == "PNG" and two.width > one.width
    with pytest.raises(DataValidationError, match=r"\[0, 1\]"):
        overlay_panel(image, {"IG": heat - 0.5})
