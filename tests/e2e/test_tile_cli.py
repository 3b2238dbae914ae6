"""`medai tile`: generated whole slides → PNG tiles + a manifest `read_manifest` reads (no real slides here)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytest.importorskip("tifffile")
pytest.importorskip("openslide")

from medai.io.images import read_manifest  # noqa: E402
from tests.unit.io.test_wsi import write_slide  # noqa: E402


@pytest.fixture
def slides_csv(tmp_path):
    write_slide(tmp_path / "slides" / "tumour-01.tif", seed=1)
    write_slide(tmp_path / "slides" / "normal-01.tif", seed=2)
    path = tmp_path / "slides.csv"
    pd.DataFrame({"slide_path": ["slides/tumour-01.tif", "slides/normal-01.tif"], "label": ["tumour", "normal"],
                  "patient_id": ["PAT-A", "PAT-B"]}).to_csv(path, index=False)
    return path


def test_tile_two_slides(run_cli, tmp_path, slides_csv):
    out = tmp_path / "tiles"
    code, stdout, stderr = run_cli("tile", slides_csv, "--out", out, "--tile-size", "64", "--level", "1",
                                   "--max-tiles", "4", "--quiet")
    assert code == 0, stderr
    assert "8 tiles from 2 slides (skipped 0)" in stdout and str(out / "manifest.csv") in stdout
    images = read_manifest(out / "manifest.csv")
    assert len(images) == 8 and images.classes == ["normal", "tumour"]
    assert {r.patient_id for r in images} == {"PAT-A", "PAT-B"} and images[0].shape == (3, 64, 64)
    assert "PAT-" not in stdout + stderr  # patient ids are never printed
    assert json.loads((out / "tiling.json").read_text())["options"]["level"] == 1
    code, _, stderr = run_cli("tile", slides_csv, "--out", out, "--quiet")
    assert code == 2 and "already exists" in stderr


def test_tile_skips_and_counts_a_corrupt_slide(run_cli, tmp_path, slides_csv):
    (tmp_path / "slides" / "broken.svs").write_bytes(bytes(range(256)) * 16)
    frame = pd.read_csv(slides_csv)
    frame.loc[len(frame)] = ["slides/broken.svs", "tumour", "PAT-C"]
    frame.to_csv(slides_csv, index=False)

    code, _, stderr = run_cli("tile", slides_csv, "--out", tmp_path / "strict", "--tile-size", "256", "--quiet")
    message = " ".join(stderr.split())
    assert code == 2 and "row 4" in message and "broken.svs: not a whole-slide image" in message
    assert not (tmp_path / "strict").exists() and not (tmp_path / "strict.partial").exists()

    out = tmp_path / "tiles"
    code, stdout, stderr = run_cli("tile", slides_csv, "--out", out, "--tile-size", "256", "--mpp", "0.5",
                                   "--on-invalid", "skip", "--quiet")
    assert code == 0, stderr
    assert "12 tiles from 2 slides (skipped 1)" in stdout
    assert "skipped: row 4" in " ".join(stderr.split()) and "PAT-C" not in stdout + stderr
    assert len(read_manifest(out / "manifest.csv")) == 12
