"""End to end: generated phantoms → U-Net training → Dice / HD95 / EF with CIs → trust outputs (recalibration,
conformal masks and referral, subgroup audit, checked explanations) → DICOM SEG → report → artefact →
SegmentationPredictor.

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
from medai.data.phantoms import SEGMENTATION_DATASETS, load_segmentation_dataset, make_lesion_phantoms
from medai.evaluation.segmentation import compute_dice
from medai.io.dicom_seg import read_dicom_seg
from medai.pipeline import train
from medai.registry.segmentation_predictor import SegmentationPredictor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared: one thread is the fastest there
    yield
    torch.set_num_threads(threads)


def _small_cardiac(patch: pytest.MonkeyPatch) -> str:
    info = SEGMENTATION_DATASETS.get("cardiac-cine-phantom")
    patch.setitem(SEGMENTATION_DATASETS._items, info.name,
                  dataclasses.replace(info, n={"train": 6, "val": 2, "test": 6}))
    return info.name


@pytest.fixture(scope="module")
def cardiac_run(tmp_path_factory):
    from medai.cli import main

    out = tmp_path_factory.mktemp("cardiac") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        _small_cardiac(patch)
        code = main(["train", str(REPO / "recipes" / "cardiac-ef.yaml"), "--out", str(out), "--epochs", "2",
                     "--bootstrap", "100", "--quiet"])
    torch.set_num_threads(threads)
    assert code == 0
    return out


def _assert_segmentation_trust(run: Path, *, audited: tuple[str, ...] = ()) -> dict:
    """The trust outputs every run writes (tests/trust_checks.py), as a segmentation run has them.

    Not yet tests/trust_checks.assert_trust_outputs itself: the segmentation report has no trust section yet, and
    a cine run's predictions.csv ids are frames while lineage lists subjects.
    """
    files = {name: json.loads((run / f"{name}.json").read_text())
             for name in ("metrics", "fairness", "lineage", "trust", "tripod_ai", "explanations")}
    test = files["metrics"]["test"]
    for key in ("conformal_target", "conformal_coverage", "abstain_rate", "ece_before_recalibration", "ece"):
        assert key in test, key
    assert test["conformal_target"]["value"] == 0.9
    assert 0.0 <= test["conformal_coverage"]["value"] <= 1.0 and 0.0 <= test["abstain_rate"]["value"] <= 1.0
    assert 0.0 <= test["ece"]["value"] <= 1.0 and 0.0 <= test["ece_before_recalibration"]["value"] <= 1.0
    manifest = (run / "model" / "MANIFEST.sha256").read_text()
    assert "conformal.json" in manifest and "recalibration.json" in manifest
    recalibration = json.loads((run / "model" / "recalibration.json").read_text())
    assert recalibration["method"] == "temperature" and recalibration["fitted_on"] == "validation voxels"
    assert recalibration["temperature"] > 0
    conformal = json.loads((run / "model" / "conformal.json").read_text())
    assert conformal["alpha"] == 0.1 and 0.0 <= conformal["lambda"] <= 1.0
    trust = files["trust"]
    assert trust["recalibration"]["temperature"] == recalibration["temperature"]
    assert trust["recalibration"]["metrics"]["ece"] == test["ece"]
    assert trust["conformal"]["metrics"]["conformal_coverage"] == test["conformal_coverage"]
    per_case = trust["conformal"]["per_case"]
    assert np.mean(per_case["refer"]) == pytest.approx(test["abstain_rate"]["value"])
    curve = trust["selective_risk"]
    assert curve["loss"] == "1 - Dice" and curve["n"] == len(per_case["refer"])
    assert curve["full_coverage_risk"] == pytest.approx(1 - np.mean(per_case["dice"]))
    fairness = files["fairness"]
    assert fairness["kind"] == "segmentation" and fairness["metrics"] == ["dice", "hd95_mm"]
    assert fairness["overall"]["metrics"]["dice"]["value"] == pytest.approx(test["dice"]["value"])
    for attribute in audited:
        for group in fairness["attributes"][attribute]["groups"].values():
            assert group["n"] > 0 and "dice" in group["metrics"] and "gap" in group["metrics"]["dice"]
    if not audited:
        assert fairness["attributes"] == {} and "No per-case attributes" in fairness["note"]
    explanations = files["explanations"]
    assert explanations["n_explained"] == 4 and explanations["faithfulness"]["baseline"] == "blur"
    assert explanations["summary"]["faithful_better_than_random"] is explanations["faithfulness"]["better_than_random"]
    assert explanations["summary"]["randomisation_test_passed"] is explanations["randomisation"]["passed"]
    lineage = files["lineage"]
    assert set(lineage["splits"]) == {"train", "val", "test"} and lineage["code"] and lineage["environment"]
    items = files["tripod_ai"]["items"]
    assert items["12f"]["status"] == "met"  # recalibration: ECE before/after in metrics.json
    assert items["15"]["status"] == "met" and "metrics.json#test.conformal_coverage" in items["15"]["where"]
    assert items["24"]["status"] == "met" and "metrics.json#test.conformal_coverage" in items["24"]["where"]
    assert items["21"]["status"] == "met" and "fairness.json#overall" in items["21"]["where"]
    # fairness (14) and performance in key subgroups (23a) are met only when the data has attributes
    assert items["14"]["status"] == items["23a"]["status"] == ("met" if audited else "not_met")
    return files


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


@pytest.mark.slow
def test_cardiac_run_has_the_trust_outputs(cardiac_run):
    files = _assert_segmentation_trust(cardiac_run)
    trust = files["trust"]
    # 2 validation subjects are too few for the subject as the conformal unit: cine frames, with a warning
    assert trust["conformal"]["unit"] == "cine frame" and trust["conformal"]["calibration"]["n"] == 2 * 20
    assert trust["conformal"]["resampling_unit"] == "subject" and trust["conformal"]["n_test"] == 6 * 20
    run = json.loads((cardiac_run / "run.json").read_text())
    assert any("exchangeable unit" in w for w in run["warnings"])
    assert files["fairness"]["unit"] == "subject" and files["fairness"]["overall"]["n"] == 6
    assert files["explanations"]["faithfulness"]["n_elements"] == 64 * 64  # one short-axis slice


@pytest.mark.slow
def test_segmentation_predictor_reproduces_the_cardiac_test_masks(cardiac_run):
    with pytest.MonkeyPatch.context() as patch:
        test = load_segmentation_dataset(_small_cardiac(patch))["test"]
    predictor = SegmentationPredictor.load(cardiac_run)
    images = test.images.reshape(-1, 1, 64, 64)  # subjects x frames x slices, one slice per network input
    out = predictor.predict(images)
    masks = np.stack([o["mask"] for o in out]).reshape(test.masks.shape)
    cases = pd.read_csv(cardiac_run / "predictions.csv")
    cases = cases[cases["split"] == "test"]
    # the evaluated masks: their volumes and Dice per cine frame
    assert masks.reshape(len(cases), -1).sum(axis=1) * 2.0 * 2.0 * 10.0 / 1000 == pytest.approx(
        cases["volume_pred_ml"].to_numpy())
    dice = compute_dice(test.masks.reshape(len(cases), 8, 64, 64), masks.reshape(len(cases), 8, 64, 64))
    assert dice == pytest.approx(cases["dice"].to_numpy(), nan_ok=True)
    state = json.loads((cardiac_run / "model" / "conformal.json").read_text())
    assert all(np.array_equal(o["conformal_mask"], (o["probability"] >= state["lambda"]).astype(np.uint8))
               for o in out[:16])
    assert out[0]["model"]["id"] == "cardiac-ef" and out[0]["model"]["sha256"] == predictor.artifact.sha256


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
def test_the_service_segments_the_example_series_as_the_run_did(cardiac_run):
    """`medai serve`'s segmentation path (medai.serve.segment) on the run's own DICOM example series: the masks
    the run stored as DICOM SEG, each slice's area from its PixelSpacing, the LV blood-pool segment coding."""
    from medai.io.dicom import read_dicom
    from medai.serve.models import load_served_model
    from medai.serve.segment import MASK_KEY, segment_coding, segment_records

    model = load_served_model(cardiac_run / "model")
    example = json.loads((cardiac_run / "run.json").read_text())["segmentation_example"]
    files = sorted((cardiac_run / "segmentation_example" / "image").glob("*.dcm"))
    stored = read_dicom_seg(cardiac_run / example["seg"], files)
    predictions = segment_records(model, [read_dicom(f) for f in files], explain=False)
    served = np.stack([p[MASK_KEY] for p in predictions])
    assert (served != stored).mean() < 1e-3  # the DICOM's 12-bit grey values, z-scored as the run's floats were
    spacing = json.loads((cardiac_run / "model" / "task.json").read_text())["spacing_mm"]
    for p in predictions:
        assert p["spacing_source"] == "PixelSpacing" and p["spacing_mm"] == pytest.approx(spacing[1:])
        assert p["measurements"]["area_mm2"] == pytest.approx(p[MASK_KEY].sum() * spacing[1] * spacing[2])
    assert segment_coding(model).property_type.meaning == "Blood"


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
    code, out, err = run_cli("predict", cardiac_run, files[0])  # SegmentationPredictor serves it, not `predict`
    assert code == 2 and "segmentation model" in err


def _npz(path: Path, **extra: np.ndarray) -> Path:
    parts = {"train": make_lesion_phantoms(64, seed=0), "val": make_lesion_phantoms(16, seed=1),
             "test": make_lesion_phantoms(24, seed=2)}
    arrays = {f"{s}_{k}": getattr(p, k) for s, p in parts.items() for k in ("images", "masks")}
    # per-case attributes for the subgroup audit (generated labels, no patient data)
    attributes = {"test_attr_sex": np.array(["F", "M"] * 12), "test_attr_site": np.repeat(["A", "B", "C"], 8)}
    np.savez(path, **{**arrays, **attributes, **extra}, spacing_mm=np.array([0.5, 0.5]), label=np.array("nodule"))
    return path


def _config(path: Path, subgroups: tuple[str, ...] | None = ("site",), **training) -> RunConfig:
    return RunConfig(
        data=DataConfig(path=str(path)), task=TaskConfig(kind=TaskKind.SEGMENTATION), name="npz-lesions",
        model=ModelConfig(name="unet", params={"channels": [8, 16, 32], "strides": [2, 2]}),
        training=TrainingConfig(**{"max_epochs": 4, "batch_size": 8, "learning_rate": 0.005, "patience": 4,
                                   **training}),
        evaluation=EvaluationConfig(n_resamples=100, subgroups=subgroups, min_subgroup_n=10), baselines=("otsu",),
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

    # trust: sex found by name, site named in evaluation.subgroups, and their intersection
    files = _assert_segmentation_trust(tmp_path / "run", audited=("sex", "site"))
    assert set(files["fairness"]["attributes"]) == {"sex", "site", "sex × site"}
    assert files["fairness"]["attributes"]["site"]["groups"]["A"]["n"] == 8
    assert files["fairness"]["attributes"]["site"]["groups"]["A"]["reliable"] is False  # 8 < min_subgroup_n
    conformal = files["trust"]["conformal"]
    assert conformal["unit"] == "case" and conformal["calibration"]["n"] == 16 and conformal["calibration"]["feasible"]
    assert files["explanations"]["faithfulness"]["n_elements"] == 64 * 64

    # the served model reproduces the evaluated test masks, probabilities and referrals
    with np.load(tmp_path / "lesions.npz") as archive:
        images, truth = archive["test_images"], archive["test_masks"]
    out = SegmentationPredictor.load(tmp_path / "run").predict(images)
    masks = np.stack([o["mask"] for o in out])
    test = cases[cases["split"] == "test"]
    lesion = test["n_lesions"].to_numpy() > 0  # lesion-free images have no Dice in predictions.csv
    assert compute_dice(truth[lesion, 0], masks[lesion]) == pytest.approx(test["dice"].to_numpy()[lesion])
    assert [o["volume_ml"] for o in out] == pytest.approx(test["volume_pred_ml"].to_numpy())
    assert [o["refer"] for o in out] == conformal["per_case"]["refer"]
    assert [o["refer_reason"] for o in out] == conformal["per_case"]["reason"]


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
    lesions = _npz(tmp_path / "lesions.npz")
    with pytest.raises(DataValidationError, match="names 'ethnicity' but the segmentation data has no such per-case "
                                                  r"attribute \(attributes of the test split: sex, site\); add an "
                                                  "array 'test_attr_ethnicity'"):
        train(_config(lesions, subgroups=("ethnicity",)), tmp_path / "d", progress=False)
    wrong = _npz(tmp_path / "wrong.npz", val_attr_sex=np.array(["F"] * 3))
    with pytest.raises(DataValidationError, match=r"'val_attr_sex' must hold one value per val image \(16,\)"):
        train(_config(wrong), tmp_path / "e", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.npz", "lesions.npz", "typo.yaml", "wrong.npz"]
