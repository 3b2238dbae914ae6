"""The imaging recipes on the real MedMNIST files in ../shared/data (skipped where absent), and a real DICOM chest
radiograph (pydicom-data's RG1_UNCI.dcm, MONOCHROME1) through `medai predict` of the pneumonia model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} not present (see ../shared/DATA.md)")
    return path


def test_pneumonia_recipe_trains_and_predicts_a_real_dicom_radiograph(run_cli, tmp_path):
    data = _need(SHARED_DATA / "pneumoniamnist" / "pneumoniamnist.npz")
    code, out, err = run_cli("train", REPO / "recipes" / "pneumonia-cxr.yaml", "--data", data, "--epochs", "1",
                             "--bootstrap", "100", "--out", tmp_path / "cxr", "--quiet")
    assert code == 0, err
    run = json.loads((tmp_path / "cxr" / "run.json").read_text())
    assert run["split"]["n"] == {"train": 4708, "val": 524, "test": 624}  # the official split
    assert run["task"]["positive_class"] == "pneumonia" and run["training"]["precision"] == "fp32"
    metrics = json.loads((tmp_path / "cxr" / "metrics.json").read_text())
    assert metrics["test"]["auroc"]["value"] > 0.85  # one epoch already separates the classes

    pydicom_data = pytest.importorskip("pydicom.data")
    dicom = Path(pydicom_data.get_testdata_file("RG1_UNCI.dcm", download=False) or "")
    if not dicom.is_file():
        pytest.skip("pydicom-data's RG1_UNCI.dcm is not installed")
    code, out, err = run_cli("predict", tmp_path / "cxr", dicom)
    assert code == 0, err
    header, row = out.strip().splitlines()
    # the conformal set and the abstain flag ("refer to clinician") come with every prediction
    assert header == "id,score,pred,prediction_set,abstain" and row.split(",")[2] in ("normal", "pneumonia")
    assert row.split(",")[-1] in ("0", "1")
    assert "MONOCHROME1" not in err and "resized from 1955x1841 to 28x28" in err
