"""End to end on generated images: `medai train --data FOLDER|X.npz|manifest.csv`, predict (PNG and a real DICOM
radiograph), explain, and bad input — the imaging CLI contract of issue 3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import make_lesion_images, write_image_recipe, write_lesion_folder, write_lesion_npz
from tests.trust_checks import assert_trust_outputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """One run on a class folder (PNG), shared by the read-only checks below."""
    from medai.cli import main

    root = tmp_path_factory.mktemp("folder_run")
    data = write_lesion_folder(root / "images", n=160)
    recipe = write_image_recipe(root / "recipe.yaml", data, task={"positive_class": "lesion"},
                                training={"max_epochs": 6, "patience": 6}, evaluation={"explained_images": 4})
    assert main(["train", str(recipe), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


def test_folder_run_writes_the_contract_files_and_learns(folder_run):
    for name in ("metrics.json", "predictions.csv", "run.json", "report.html", "baselines.json",
                 "operating_points.json", "model/MANIFEST.sha256", "model/weights.safetensors",
                 "model/preprocessor.json", "explanations/example_1.png"):
        assert (folder_run / name).is_file(), name
    run = json.loads((folder_run / "run.json").read_text())
    assert run["task"]["kind"] == "binary" and run["task"]["positive_class"] == "lesion"
    assert run["task"]["spatial_dims"] == 2 and run["task"]["channels"] == 1
    assert run["model"]["params"]["stem"] == "small"  # resolved from the 32 px input and saved
    assert "random, stratified by class" in run["split"]["strategy"]
    predictions = pd.read_csv(folder_run / "predictions.csv")
    test = predictions[predictions["split"] == "test"]
    auc = roc_auc_score(test["label"] == "lesion", test["score"])
    metrics = json.loads((folder_run / "metrics.json").read_text())
    assert metrics["test"]["auroc"]["value"] == pytest.approx(auc, abs=1e-9)
    assert auc > 0.85  # a bright disk is easy to find; chance is 0.5
    assert set(run["explanations"]["sanity"]) == {"grad_cam", "integrated_gradients"}
    checked = json.loads((folder_run / "explanations.json").read_text())  # the same keys as tabular and EHR runs
    assert checked["n_explained"] == 4 and checked["method"] == "integrated_gradients"
    assert checked["faithfulness"]["n_elements"] == int(np.prod(run["task"]["image_size"]))
    assert checked["faithfulness"]["baseline"] == "blur" and checked["faithfulness"]["n_inputs"] == 4
    summary = checked["summary"]
    assert summary["faithful_better_than_random"] is checked["faithfulness"]["better_than_random"]
    assert isinstance(summary["randomisation_test_passed"], bool) and summary["n_important"] is None
    html = (folder_run / "report.html").read_text()
    assert "Explanations" in html and "randomisation" in html


def test_folder_run_has_the_trust_outputs(folder_run):
    assert_trust_outputs(folder_run)


def test_predict_png_and_a_real_dicom_radiograph(folder_run, run_cli, tmp_path):
    from PIL import Image

    images, labels = make_lesion_images(n=20, seed=7)
    for i in range(4):
        Image.fromarray(images[i]).save(tmp_path / f"new{i}.png")
    code, out, err = run_cli("predict", folder_run, tmp_path, "--out", tmp_path / "p.csv")
    assert code == 0, err
    frame = pd.read_csv(tmp_path / "p.csv")
    assert list(frame["id"]) == [f"new{i}" for i in range(4)] and frame["score"].between(0, 1).all()
    assert set(frame["pred"]) <= {"lesion", "normal"}

    pydicom_data = pytest.importorskip("pydicom.data")
    dicom = Path(pydicom_data.get_testdata_file("RG1_UNCI.dcm", download=False) or "")
    if not dicom.is_file():
        pytest.skip("pydicom-data's RG1_UNCI.dcm is not installed")
    code, out, err = run_cli("predict", folder_run, dicom, "--out", tmp_path / "cxr.json")
    assert code == 0, err
    payload = json.loads((tmp_path / "cxr.json").read_text())
    assert len(payload["predictions"]) == 1 and 0 <= payload["predictions"][0]["score"] <= 1
    assert "resized from 1955x1841 to 32x32" in err and "window from the file" in err


def test_evaluate_on_external_images(folder_run, run_cli, tmp_path):
    data = write_lesion_folder(tmp_path / "external", n=40, seed=11)
    code, out, err = run_cli("evaluate", folder_run, "--data", data, "--out", tmp_path / "ext", "--bootstrap", "100")
    assert code == 0, err
    metrics = json.loads((tmp_path / "ext" / "metrics.json").read_text())
    assert list(metrics) == ["external"] and metrics["external"]["auroc"]["value"] > 0.8
    predictions = pd.read_csv(tmp_path / "ext" / "predictions.csv")
    assert len(predictions) == 40 and set(predictions["split"]) == {"external"}


def test_explain_writes_a_png_overlay(folder_run, run_cli, tmp_path):
    from PIL import Image

    images, labels = make_lesion_images(n=4, seed=3)
    Image.fromarray(images[int(np.argmax(labels))]).save(tmp_path / "case.png")
    code, out, err = run_cli("explain", folder_run, tmp_path / "case.png", "--out", tmp_path / "case-x.png")
    assert code == 0, err
    with Image.open(tmp_path / "case-x.png") as overlay:
        assert overlay.size[0] > 300  # image | Grad-CAM | IG side by side
    assert not list(tmp_path.glob("*.tmp"))
    code, out, err = run_cli("explain", folder_run, tmp_path / "case.png", "--target", "tumour")
    assert code == 2 and "not one of the model's classes" in err


def test_npz_uses_the_official_split(tmp_path, run_cli):
    data = write_lesion_npz(tmp_path / "lesions.npz", n=100)
    recipe = write_image_recipe(tmp_path / "r.yaml", data, task={"class_names": ["normal", "lesion"]},
                                training={"max_epochs": 2})
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["split"]["n"] == {"train": 60, "val": 20, "test": 20}
    assert run["split"]["strategy"].startswith("official split")
    assert run["task"]["class_names"] == ["normal", "lesion"]
    assert "2-D grey images 32x32" in err


def test_manifest_with_patient_ids_keeps_patients_in_one_split(tmp_path, run_cli):
    from PIL import Image

    images, labels = make_lesion_images(n=90, seed=2)
    rows = []
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": "lesion" if label else "normal", "patient_id": f"P{i // 3}",
                     "sex": "F" if (i // 3) % 2 else "M", "age": 30 + (i // 3) % 50, "site": f"S{i % 2}"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    recipe = write_image_recipe(tmp_path / "r.yaml", tmp_path / "manifest.csv", training={"max_epochs": 1})
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "run", "--group", "site", "--quiet")
    assert code == 0, err
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert predictions.groupby("patient_id")["split"].nunique().max() == 1
    assert "by patient" in json.loads((tmp_path / "run" / "run.json").read_text())["split"]["strategy"]
    # the manifest's other columns are audited (sex, age bands, the named site), never model inputs
    fairness = json.loads((tmp_path / "run" / "fairness.json").read_text())
    assert {"sex", "age_band", "site"} <= set(fairness["attributes"])
    test_rows = predictions[predictions["split"] == "test"]
    sex_of = pd.DataFrame(rows).drop_duplicates("patient_id").set_index("patient_id")["sex"]
    sexes = sex_of.loc[test_rows["patient_id"]]  # one per test image
    assert fairness["attributes"]["sex"]["groups"]["F"]["n"] == int((sexes == "F").sum())
    assert json.loads((tmp_path / "run" / "model" / "task.json").read_text())["in_features"] == 1  # grey image only
    # a named group the manifest lacks stops the run before training
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "run2", "--group", "scanner", "--quiet")
    assert code == 2 and "scanner" in err and not (tmp_path / "run2").exists()


def test_multilabel_npz(tmp_path, run_cli):
    images, labels = make_lesion_images(n=150, seed=4)
    second = (images[:, :16].mean(axis=(1, 2)) > images[:, 16:].mean(axis=(1, 2))).astype(np.uint8)
    y = np.stack([labels, second], axis=1).astype(np.uint8)
    parts = np.split(np.arange(150), [90, 120])
    np.savez(tmp_path / "ml.npz", **{f"{s}_{k}": (images if k == "images" else y)[i]
                                     for s, i in zip(("train", "val", "test"), parts) for k in ("images", "labels")})
    recipe = write_image_recipe(tmp_path / "r.yaml", tmp_path / "ml.npz",
                                task={"class_names": ["lesion", "upper_bright"]}, training={"max_epochs": 3})
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert {"auroc", "auroc_lesion", "auroc_upper_bright", "sensitivity_lesion"} <= set(metrics)
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert {"label_lesion", "score_lesion", "pred_lesion", "pred"} <= set(predictions.columns)
    assert "Discrimination per finding" in (tmp_path / "run" / "report.html").read_text()


def test_non_image_file_is_named_and_can_be_skipped(tmp_path, run_cli):
    data = write_lesion_folder(tmp_path / "images", n=60)
    (data / "lesion" / "notes.txt").write_text("not an image")
    recipe = write_image_recipe(tmp_path / "r.yaml", data, training={"max_epochs": 1})
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 2 and "notes.txt" in err and "not a readable image" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "run", "--quiet", "--on-invalid", "skip")
    assert code == 0, err
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["data"]["n_skipped"] == 1 and run["data"]["n_rows"] == 60
    assert "1 file(s) could not be read and were skipped" in (tmp_path / "run" / "report.html").read_text()


def test_mixed_sizes_need_an_explicit_resize(tmp_path, run_cli):
    from PIL import Image

    data = write_lesion_folder(tmp_path / "images", n=60)
    Image.fromarray(np.zeros((40, 48), dtype=np.uint8)).save(data / "normal" / "odd.png")
    recipe = write_image_recipe(tmp_path / "r.yaml", data, training={"max_epochs": 1})
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 2 and "odd.png" in err and "image_size" in err
    recipe = write_image_recipe(tmp_path / "r2.yaml", data, training={"max_epochs": 1},
                                preprocessing={"image_size": [32, 32]})
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    assert "resized" in err


def test_empty_class_folder_is_an_error(tmp_path, run_cli):
    data = write_lesion_folder(tmp_path / "images", n=40)
    (data / "unknown").mkdir()
    code, out, err = run_cli("train", "--data", data, "--quiet")
    assert code == 2 and "unknown" in err and "no readable images" in err


def test_ham10000_layout_trains_with_a_lesion_level_split(tmp_path, run_cli):
    from PIL import Image

    images, labels = make_lesion_images(n=72, seed=5, rgb=True)
    part = tmp_path / "HAM10000" / "HAM10000_images_part_1"
    part.mkdir(parents=True)
    rows = []
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(part / f"ISIC_{i:07d}.jpg", quality=95)
        rows.append({"lesion_id": f"HAM_{i // 2:07d}", "image_id": f"ISIC_{i:07d}", "dx": "mel" if label else "nv",
                     "age": 50, "sex": "female"})
    pd.DataFrame(rows).to_csv(tmp_path / "HAM10000" / "HAM10000_metadata.csv", index=False)
    recipe = write_image_recipe(tmp_path / "r.yaml", tmp_path / "HAM10000", task={"positive_class": "mel"},
                                training={"max_epochs": 1, "augmentation": "standard"})
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["task"]["channels"] == 3 and run["task"]["class_names"] == ["nv", "mel"]
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert predictions.groupby("patient_id")["split"].nunique().max() == 1  # a lesion stays in one split
