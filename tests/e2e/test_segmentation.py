"""End to end: generated phantoms → U-Net training → Dice / HD95 / EF with CIs → DICOM SEG → report → artefact.

The named phantom datasets are shrunk here (fewer subjects, same generator) so that a run takes seconds.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medai.core.config import DataConfig, EvaluationConfig, ModelConfig, RunConfig, TaskConfig, TaskKind, \
    TrainingConfig
from medai.core.errors import DataValidationError
from medai.data.phantoms import SEGMENTATION_DATASETS, make_lesion_phantoms
from medai.io.dicom_seg import read_dicom_seg
from medai.pipeline import train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared: one thread is the fastest there
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cardiac_run(tmp_path_factory):
    from medai.cli import main

    info = SEGMENTATION_DATASETS.get("cardiac-cine-phantom")
    out = tmp_path_factory.mktemp("cardiac") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SEGMENTATION_DATASETS._items, info.name,
                      dataclasses.replace(info, n={"train": 6, "val": 2, "test": 6}))
        code = main(["train", str(REPO / "recipes" / "cardiac-ef.yaml"), "--out", str(out), "--epochs", "2",
                     "--bootstrap", "100", "--quiet"])
    torch.set_num_threads(threads)
    assert code == 0
    return out


@pytest.mark.slow
def test_cardiac_recipe_writes_a_complete_run(cardiac_run):
    for name in ("run.json", "metrics.json", "baselines.json", "predictions.csv", "ejection_fraction.csv",
                 "report.html", "model/MANIFEST.sha256", "model/weights.safetensors", "segmentation_example/seg.dcm",
                 "segmentation_example/examples.npz"):
        assert (cardiac_run / name).is_file(), name
    run = json.loads((cardiac_run / "run.json").read_text())
    assert run["task"]["kind"] == "segmentation" and run["split"]["n"] == {"train": 6, "val": 2, "test": 6}
    assert set(run["baselines"]) == {"otsu", "tuned_threshold"}
    baselines = json.loads((cardiac_run / "baselines.json").read_text())
    assert baselines["otsu"]["test"]["dice"]["value"] is not None
    lineage = json.loads((cardiac_run / "lineage.json").read_text())
    assert lineage["splits"]["test"]["n"] == 6 and lineage["code"]
    tripod = json.loads((cardiac_run / "tripod_ai.json").read_text())
    assert tripod["summary"]["met"] > 5
    assert "not implemented" in json.loads((cardiac_run / "trust.json").read_text())["not_applicable"]


@pytest.mark.slow
def test_cardiac_metrics_and_ejection_fraction(cardiac_run):
    metrics = json.loads((cardiac_run / "metrics.json").read_text())
    test = metrics["test"]
    # The LV cavity covers about 5 % of an image: a chance-level segmentation has a Dice near 0.05.
    assert test["dice"]["value"] > 0.6
    assert test["dice"]["ci_low"] <= test["dice"]["value"] <= test["dice"]["ci_high"]
    assert 0 < test["hd95_mm"]["value"] < 40
    subjects = pd.read_csv(cardiac_run / "ejection_fraction.csv")
    rows = subjects[subjects["split"] == "test"]
    assert len(rows) == 6 and rows["ef_true"].between(15, 80).all()
    assert math.isfinite(test["ef_mae"]["value"]) and test["ef_mae"]["value"] < 20
    assert test["ef_mae"]["value"] == pytest.approx((rows["ef_pred"] - rows["ef_true"]).abs().mean())
    assert test["ef_bias"]["value"] == pytest.approx((rows["ef_pred"] - rows["ef_true"]).mean())
    cases = pd.read_csv(cardiac_run / "predictions.csv")
    assert len(cases) == (2 + 6) * 20  # one row per cine frame of each val / test subject
    assert cases.groupby("patient_id")["split"].nunique().max() == 1
    test_cases = cases[cases["split"] == "test"]
    edv = test_cases.groupby("patient_id")["volume_pred_ml"].max()
    assert edv.to_numpy() == pytest.approx(rows.set_index("id").loc[edv.index, "edv_pred_ml"].to_numpy())


@pytest.mark.slow
def test_cardiac_dicom_seg_and_report(cardiac_run, run_cli):
    example = json.loads((cardiac_run / "run.json").read_text())["segmentation_example"]
    files = sorted((cardiac_run / "segmentation_example" / "image").glob("*.dcm"))
    mask = read_dicom_seg(cardiac_run / example["seg"], files)
    assert mask.shape == (8, 64, 64) and int(mask.sum()) == example["predicted_voxels"] > 0
    html = (cardiac_run / "report.html").read_text()
    assert "Ejection fraction" in html and "Bland–Altman" in html and "Dice at end-systole" in html
    code, out, _ = run_cli("verify", cardiac_run)
    assert code == 0 and "OK" in out
    code, out, err = run_cli("predict", cardiac_run, files[0])  # not supported yet: a clear error, not a crash
    assert code == 2 and "segmentation model" in err


def _npz(path: Path) -> Path:
    parts = {"train": make_lesion_phantoms(64, seed=0), "val": make_lesion_phantoms(16, seed=1),
             "test": make_lesion_phantoms(24, seed=2)}
    arrays = {f"{s}_{k}": getattr(p, k) for s, p in parts.items() for k in ("images", "masks")}
    np.savez(path, **arrays, spacing_mm=np.array([0.5, 0.5]), label=np.array("nodule"))
    return path


def _config(path: Path, **training) -> RunConfig:
    return RunConfig(
        data=DataConfig(path=str(path)), task=TaskConfig(kind=TaskKind.SEGMENTATION), name="npz-lesions",
        model=ModelConfig(name="unet", params={"channels": [8, 16, 32], "strides": [2, 2]}),
        training=TrainingConfig(**{"max_epochs": 4, "batch_size": 8, "learning_rate": 0.005, "patience": 4,
                                   **training}),
        evaluation=EvaluationConfig(n_resamples=100), baselines=("otsu",),
    )


@pytest.mark.slow
def test_npz_lesion_data_through_pipeline_train(tmp_path):
    result = train(_config(_npz(tmp_path / "lesions.npz")), tmp_path / "run", progress=False)
    assert result.kind is TaskKind.SEGMENTATION and result.out == tmp_path / "run"
    test = result.metrics["test"]
    # Lesions cover about 2 % of an image (chance Dice about 0.02).
    assert test["dice"]["value"] > 0.3 and test["lesion_sensitivity"]["value"] > 0.5
    assert set(result.baselines) == {"otsu"}
    cases = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert len(cases) == 16 + 24 and cases["id"].is_unique
    assert cases.loc[cases["n_lesions"] == 0, "dice"].isna().all()  # lesion-free images: no Dice, only FPs
    assert result.run["task"]["label"] == "nodule" and result.run["task"]["spacing_mm"] == [0.5, 0.5]
    assert not (tmp_path / "run.partial").exists()


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_result(tmp_path):
    config = _config(_npz(tmp_path / "lesions.npz"), max_epochs=3)
    full = train(config, tmp_path / "full", progress=False)

    def interrupt(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "part", progress=False, on_epoch_end=interrupt)
    assert (tmp_path / "part.partial" / "checkpoints" / "last.pt").is_file()
    resumed = train(config, tmp_path / "part", progress=False, resume=True)
    assert resumed.run["training"]["resumed_from_epoch"] == 2
    assert resumed.metrics == full.metrics


def test_bad_inputs_leave_nothing_behind(tmp_path, run_cli):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("data: {builtin: cardiac-cine-phantoms}\ntask: {kind: segmentation}\nmodel: {name: unet}\n")
    code, _, err = run_cli("train", recipe, "--out", tmp_path / "a")
    assert code == 2 and "Did you mean 'cardiac-cine-phantom'" in err
    recipe.write_text("data: {builtin: lesion-phantoms-2d}\ntask: {kind: segmentation}\nmodel: {name: mlp}\n")
    code, _, err = run_cli("train", recipe, "--out", tmp_path / "b")
    assert code == 2 and "does not output a segmentation" in err
    path = tmp_path / "broken.npz"
    np.savez(path, train_images=np.zeros((2, 1, 16, 16)), train_masks=np.zeros((2, 1, 16, 16)))
    with pytest.raises(DataValidationError, match="'val_images' is missing"):
        train(_config(path), tmp_path / "c", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.npz", "typo.yaml"]
