"""Whole-slide tiles: generated pyramidal tiled TIFFs (OpenSlide's generic-tiff format), never real slides.

No labelled histopathology data is obtainable on this project's machines; these fixtures reproduce the layout
(tiled pyramid, resolution tags, tissue on a white background) so every code path runs against OpenSlide itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("openslide")
Image = pytest.importorskip("PIL.Image")

from medai.core.errors import DataValidationError, InvalidParameterError, RunStateError  # noqa: E402
from medai.core.records import Modality  # noqa: E402
from medai.io.images import read_manifest  # noqa: E402
from medai.io.wsi import otsu_threshold, read_slide_tiles, tile_slides  # noqa: E402

TISSUE = (slice(256, 768), slice(512, 1280))  # level-0 rows, columns of the "tissue" block


def write_slide(path: Path, *, mpp: float | None = 0.5, tissue=TISSUE, size=(1536, 2048), seed: int = 0) -> list:
    """Write a 3-level pyramidal tiled TIFF (downsample 1, 4, 16; 256-px tiles, lossless) and return its levels.

    Background is near-white grey (saturation ~0); tissue is noisy pink (H&E-like, saturation ~0.5). With
    ``mpp`` the XResolution/YResolution tags are written in pixels per centimetre, from which OpenSlide's
    generic-tiff driver reports ``openslide.mpp-x``.
    """
    rng = np.random.default_rng(seed)
    level0 = np.repeat(rng.integers(232, 248, size=(*size, 1), dtype=np.uint8), 3, axis=2)
    if tissue is not None:
        block = level0[tissue]
        noise = rng.integers(-15, 16, size=block.shape)
        level0[tissue] = np.clip(np.array([215, 110, 170]) + noise, 0, 255).astype(np.uint8)
    levels = [level0]
    for _ in range(2):
        levels.append(np.ascontiguousarray(levels[-1][::4, ::4]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path) as writer:
        for index, level in enumerate(levels):
            tile = (256, 256) if min(level.shape[:2]) >= 256 else (16, 16)
            options = {}
            if mpp is not None:
                per_cm = 1e4 / (mpp * 4**index)
                options = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
            writer.write(level, photometric="rgb", tile=tile, compression="zlib", compressionargs={"level": 1},
                         subfiletype=1 if index else 0, metadata=None, **options)
    return levels


def _block_fraction(start: int, extent: int, block: slice) -> float:
    return max(0, min(start + extent, block.stop) - max(start, block.start)) / extent


@pytest.fixture
def slide(tmp_path):
    path = tmp_path / "case01.tif"
    return path, write_slide(path)


def test_keeps_only_tissue_tiles_at_level_0(slide):
    path, levels = slide
    tiles = read_slide_tiles(path, tile_size=256)
    expected = [(x, y) for y in (256, 512) for x in (512, 768, 1024)]  # reading order: row by row
    assert [(t.meta["x"], t.meta["y"]) for t in tiles] == expected
    assert [t.id for t in tiles] == [f"case01:x{x}_y{y}" for x, y in expected]
    for tile in tiles:
        assert tile.modality == Modality.IMAGE and tile.data.dtype == np.uint8 and tile.shape == (3, 256, 256)
        x, y = tile.meta["x"], tile.meta["y"]
        np.testing.assert_array_equal(tile.data, levels[0][y : y + 256, x : x + 256].transpose(2, 0, 1))
        assert tile.meta["level"] == 0 and tile.meta["mpp"] == pytest.approx(0.5)
        assert tile.meta["tissue_fraction"] == 1.0 and tile.meta["source"] == str(path)
        assert tile.patient_id is None and tile.label is None


def test_tissue_fraction_per_tile_matches_the_tissue_area(slide):
    path, _ = slide
    every = read_slide_tiles(path, tile_size=224, tissue_fraction=0.0)
    assert len(every) == (2048 // 224) * (1536 // 224)  # whole tiles only
    for tile in every:
        x, y = tile.meta["x"], tile.meta["y"]
        truth = _block_fraction(x, 224, TISSUE[1]) * _block_fraction(y, 224, TISSUE[0])
        assert tile.meta["tissue_fraction"] == pytest.approx(truth, abs=0.04), tile.id
    kept = read_slide_tiles(path, tile_size=224, tissue_fraction=0.5)
    assert {t.id for t in kept} == {t.id for t in every if t.meta["tissue_fraction"] >= 0.5}
    assert len(kept) == 8 and all(t.meta["tissue_fraction"] >= 0.5 for t in kept)


def test_level_and_target_mpp_choose_the_pyramid_level(slide):
    path, levels = slide
    tiles = read_slide_tiles(path, tile_size=64, level=1)
    assert [(t.meta["x"], t.meta["y"]) for t in tiles] == [(x, y) for y in (256, 512) for x in (512, 768, 1024)]
    assert all(t.meta["level"] == 1 and t.meta["downsample"] == 4 and t.meta["mpp"] == pytest.approx(2.0)
               for t in tiles)
    x, y = tiles[4].meta["x"] // 4, tiles[4].meta["y"] // 4
    np.testing.assert_array_equal(tiles[4].data, levels[1][y : y + 64, x : x + 64].transpose(2, 0, 1))
    assert read_slide_tiles(path, tile_size=64, target_mpp=1.6)[0].meta["level"] == 1  # 2.0 closer than 0.5
    assert read_slide_tiles(path, tile_size=64, target_mpp=0.9)[0].meta["level"] == 0  # log scale: 0.5 closer
    assert read_slide_tiles(path, tile_size=32, target_mpp=20)[0].meta["mpp"] == pytest.approx(8.0)


def test_max_tiles_is_a_seeded_reproducible_subset(slide):
    path, _ = slide
    every = [t.id for t in read_slide_tiles(path, tile_size=64)]
    assert len(every) == 8 * 12
    first = [t.id for t in read_slide_tiles(path, tile_size=64, max_tiles=10, seed=3)]
    again = [t.id for t in read_slide_tiles(path, tile_size=64, max_tiles=10, seed=3)]
    other = [t.id for t in read_slide_tiles(path, tile_size=64, max_tiles=10, seed=4)]
    assert first == again and first != other and len(first) == 10
    assert set(first) <= set(every) and first == [i for i in every if i in set(first)]  # reading order kept


def test_no_tissue_gives_no_tiles(tmp_path):
    path = tmp_path / "blank.tif"
    write_slide(path, tissue=None)
    assert read_slide_tiles(path, tile_size=256) == []


def test_slide_without_resolution(tmp_path):
    path = tmp_path / "nores.tif"
    write_slide(path, mpp=None)
    assert read_slide_tiles(path, tile_size=256)[0].meta["mpp"] is None
    with pytest.raises(DataValidationError, match=r"nores\.tif: .*no 'openslide\.mpp-x'.*--level"):
        read_slide_tiles(path, target_mpp=0.5)


def test_corrupt_and_unsupported_files_name_the_file(tmp_path, slide):
    path, _ = slide
    noise = tmp_path / "random.svs"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(path.read_bytes()[:5000])
    for bad in (noise, truncated):
        with pytest.raises(DataValidationError, match=rf"{bad.name}: not a whole-slide image OpenSlide can read"):
            read_slide_tiles(bad)
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(path.read_bytes())
    with tifffile.TiffFile(damaged) as tif:  # overwrite the compressed tile at level-0 (x=512, y=256)
        page = tif.pages[0]
        index = 1 * (2048 // 256) + 2
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    with open(damaged, "r+b") as stream:
        stream.seek(offset)
        stream.write(os.urandom(count))
    with pytest.raises(DataValidationError, match=r"damaged\.tif: corrupt tile data at level 0, x=512, y=256"):
        read_slide_tiles(damaged, tile_size=256)
    with pytest.raises(InvalidParameterError, match="Slide file not found"):
        read_slide_tiles(tmp_path / "absent.svs")


def test_bad_options(slide):
    path, _ = slide
    with pytest.raises(InvalidParameterError, match="either 'level' or 'target_mpp', not both"):
        read_slide_tiles(path, level=0, target_mpp=0.5)
    with pytest.raises(InvalidParameterError, match="'tile_size' parameter of read_slide_tiles must be an int >= 16"):
        read_slide_tiles(path, tile_size=8)
    with pytest.raises(InvalidParameterError, match="'tissue_fraction' parameter .* must be a number in"):
        read_slide_tiles(path, tissue_fraction=1.5)
    with pytest.raises(InvalidParameterError, match="'max_tiles' parameter"):
        read_slide_tiles(path, max_tiles=0)
    with pytest.raises(DataValidationError, match=r"level 3 does not exist; this slide has levels 0\.\.2"):
        read_slide_tiles(path, level=3)
    with pytest.raises(DataValidationError, match=r"level 2 is 128x96 px, smaller than one 224-px tile"):
        read_slide_tiles(path, level=2)


def test_otsu_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(40, 10, 3000), rng.normal(170, 25, 1000)]).clip(0, 255).astype(np.uint8)

    def within_variance(t):  # Otsu's criterion, written the other way: minimise the within-class variance
        low, high = values[values <= t].astype(float), values[values > t].astype(float)
        return sum(part.size * part.var() for part in (low, high) if part.size)

    reference = min(range(255), key=within_variance)
    assert otsu_threshold(values) == reference and 60 < reference < 140
    assert otsu_threshold(np.full(10, 7, dtype=np.uint8)) == 7


def _slides_csv(tmp_path, rows: dict, name="slides.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_tile_slides_writes_a_manifest_read_manifest_reads(tmp_path):
    write_slide(tmp_path / "slides" / "s1.tif", seed=1)
    write_slide(tmp_path / "slides" / "s2.tif", seed=2, tissue=(slice(0, 512), slice(0, 512)))
    write_slide(tmp_path / "slides" / "s3.tif", seed=3)
    csv = _slides_csv(tmp_path, {"slide_path": ["slides/s1.tif", "slides/s2.tif", "slides/s3.tif"],
                                 "label": ["tumour", "normal", "tumour"], "patient_id": ["P1", "P1", "P2"]})
    out = tile_slides(csv, tmp_path / "tiles", tile_size=256, progress=False)
    assert out == tmp_path / "tiles" and not (tmp_path / "tiles.partial").exists()
    frame = pd.read_csv(out / "manifest.csv")
    assert list(frame.columns) == ["path", "label", "patient_id", "slide"]
    assert frame.groupby("slide").size().to_dict() == {"s1": 6, "s2": 4, "s3": 6}
    images = read_manifest(out / "manifest.csv")
    assert len(images) == 16 and images.classes == ["normal", "tumour"]
    assert {r.patient_id for r in images if "s1_" in r.id or "s2_" in r.id} == {"P1"}  # one patient, two slides
    first = images[0]
    assert first.id == "s1_x512_y256" and first.shape == (3, 256, 256) and first.label == "tumour"
    expected = read_slide_tiles(tmp_path / "slides" / "s1.tif", tile_size=256)[0].data
    np.testing.assert_array_equal(first.data, expected)  # PNG round trip is lossless
    summary = json.loads((out / "tiling.json").read_text())
    assert summary["n_tiles"] == 16 and summary["tiles_per_slide"] == {"s1": 6, "s2": 4, "s3": 6}
    assert summary["skipped"] == [] and summary["options"]["tile_size"] == 256
    with pytest.raises(RunStateError, match="already exists"):
        tile_slides(csv, out, progress=False)


def test_tile_slides_patient_defaults_to_the_slide_and_skip_counts(tmp_path):
    write_slide(tmp_path / "a.tif", seed=1)
    (tmp_path / "broken.svs").write_bytes(b"not a slide" * 100)
    csv = _slides_csv(tmp_path, {"slide_path": ["a.tif", "broken.svs", "gone.tif"], "label": [1, 0, 0]})
    with pytest.raises(DataValidationError, match=r"slides\.csv: row 3: .*broken\.svs: not a whole-slide image"):
        tile_slides(csv, tmp_path / "out", tile_size=256, progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    out = tile_slides(csv, tmp_path / "out", tile_size=256, on_invalid="skip", progress=False)
    summary = json.loads((out / "tiling.json").read_text())
    assert [(s["row"], Path(s["slide"]).name) for s in summary["skipped"]] == [(3, "broken.svs"), (4, "gone.tif")]
    assert "slide file not found" in summary["skipped"][1]["reason"]
    images = read_manifest(out / "manifest.csv")
    assert len(images) == 6 and {r.patient_id for r in images} == {"a"} and images.classes == [1]
    assert not (out / "broken").exists()


def test_tile_slides_validates_the_csv_before_writing(tmp_path):
    write_slide(tmp_path / "a.tif")
    cases = [
        ({"path": ["a.tif"], "label": [1]}, r"missing columns \['slide_path'\]"),
        ({"slide_path": ["a.tif"], "label": [None]}, r"row 2 \(a\.tif\) has an empty 'label'"),
        ({"slide_path": ["a.tif", "a.tif"], "label": [1, 0]}, r"rows 2 and 3 are both slide 'a'"),
        ({"slide_path": ["a.tif"], "label": [1], "patient_id": [None]}, r"row 2 \(a\.tif\) has an empty 'patient_id'"),
    ]
    for index, (rows, message) in enumerate(cases):
        csv = _slides_csv(tmp_path, rows, name=f"bad{index}.csv")
        with pytest.raises(DataValidationError, match=message):
            tile_slides(csv, tmp_path / "out", progress=False)
        assert not (tmp_path / "out.partial").exists()
    csv = _slides_csv(tmp_path, {"slide_path": ["a.tif"], "label": [1]})
    with pytest.raises(InvalidParameterError, match="'on_invalid' parameter of tile_slides"):
        tile_slides(csv, tmp_path / "out", on_invalid="ignore")
    with pytest.raises(DataValidationError, match=r"no tiles written \(1 of 1 slides skipped"):
        tile_slides(csv, tmp_path / "out", tile_size=256, tissue_fraction=1.0, level=1, on_invalid="skip",
                    progress=False)
