"""End to end through the CLI: generated data → training → report → artefact → predict / evaluate."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sksurv.metrics import concordance_index_censored

from medai.cli import main
from tests.conftest import make_binary_table, make_survival_table
from tests.trust_checks import assert_trust_outputs

FAST = ("--epochs", "60", "--bootstrap", "200", "--quiet")


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("binary")
    data = root / "cohort.csv"
    make_binary_table(n=400, seed=1).to_csv(data, index=False)
    out = root / "run"
    code = main(["train", "--data", str(data), "--label", "outcome", "--id", "patient", "--out", str(out), *FAST])
    assert code == 0
    return out, data


@pytest.fixture(scope="module")
def survival_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("survival")
    data = root / "followup.csv"
    make_survival_table(n=400, seed=2).to_csv(data, index=False)
    out = root / "run"
    code = main(["train", "--data", str(data), "--time", "time", "--event", "event", "--out", str(out), *FAST])
    assert code == 0
    return out, data


def _metrics(path):
    return json.loads((path / "metrics.json").read_text())


def test_binary_run_writes_the_contract_files(binary_run):
    out, _ = binary_run
    for name in ("metrics.json", "predictions.csv", "report.html", "run.json", "baselines.json", "missingness.json",
                 "subgroups.json", "operating_points.json", "model/weights.safetensors", "model/config.json",
                 "model/preprocessor.json", "model/thresholds.json", "model/model_card.md", "model/model_card.json",
                 "model/MANIFEST.sha256"):
        assert (out / name).is_file(), name
    assert not out.with_name("run.partial").exists()
    metrics = _metrics(out)
    assert set(metrics) == {"val", "test"}
    for name in ("auroc", "auprc", "accuracy", "f1_macro", "f1_yes", "f1_no", "sensitivity", "specificity", "ppv",
                 "npv", "brier", "ece", "calibration_slope", "calibration_intercept"):
        entry = metrics["test"][name]
        assert set(entry) == {"value", "ci_low", "ci_high"}
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], name
    assert not list(out.glob("model/*.pkl")) and not list(out.glob("model/*.pt"))


def test_binary_metrics_match_scikit_learn_on_the_written_predictions(binary_run):
    out, _ = binary_run
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns[:3]) == ["id", "split", "label"]
    test = predictions[predictions.split == "test"]
    expected = roc_auc_score(test.label == "yes", test.score)
    assert _metrics(out)["test"]["auroc"]["value"] == pytest.approx(expected, abs=1e-12)
    threshold = json.loads((out / "model/thresholds.json").read_text())["threshold"]
    assert ((test.score >= threshold) == (test.pred == "yes")).all()
    # ids come from --id and never leak into the features
    assert test.id.str.startswith("P").all()
    assert "patient" not in json.loads((out / "model/preprocessor.json").read_text())["numeric_columns"]


def test_binary_model_learns_the_signal_and_beats_chance(binary_run):
    out, _ = binary_run
    auroc = _metrics(out)["test"]["auroc"]
    assert auroc["ci_low"] > 0.6  # the generated outcome depends strongly on age, bp and smoking


def test_missing_data_and_subgroups_are_profiled(binary_run):
    out, _ = binary_run
    missing = json.loads((out / "missingness.json").read_text())
    assert 0.05 < missing["sbp"]["fraction"] < 0.15
    assert missing["age"]["n_missing"] == 0
    subgroups = json.loads((out / "subgroups.json").read_text())
    assert set(subgroups) == {"sex", "age_band"}
    assert set(subgroups["sex"]) == {"F", "M"}
    n_test = json.loads((out / "run.json").read_text())["split"]["n"]["test"]
    assert sum(g["n"] for g in subgroups["sex"].values()) == n_test
    card = json.loads((out / "model/model_card.json").read_text())
    assert "median imputation" in card["preprocessing_and_missing_data"]
    preprocessor = json.loads((out / "model/preprocessor.json").read_text())
    assert preprocessor["indicator_columns"] == ["sbp"]


def test_binary_run_has_the_trust_outputs(binary_run):
    """Issue 6: conformal coverage, recalibration, fairness audit by sex and age band (and their intersection)
    with ThresholdOptimizer mitigation, checked explanations, lineage and TRIPOD+AI."""
    out, _ = binary_run
    files = assert_trust_outputs(out, audited=("sex", "age_band", "sex × age_band"))
    assert set(files["fairness"]["mitigation"]) == {"sex", "age_band"}
    explanations = json.loads((out / "explanations.json").read_text())
    top = explanations["importance"]["features"][0]["name"]
    assert top in ("age", "sbp", "smoker")  # the outcome is driven by age, blood pressure and smoking
    assert explanations["faithfulness"]["deletion"]["random_auc_mean"] is not None


def test_survival_run_has_the_trust_outputs(survival_run):
    out, _ = survival_run
    files = assert_trust_outputs(out, classification=False)
    assert files["trust"]["recalibration"]["applicable"] is False


def test_predict_writes_csv_and_json_matching_the_run(binary_run, run_cli, tmp_path):
    out, data = binary_run
    records = pd.read_csv(data).drop(columns=["outcome"]).head(25)
    source = tmp_path / "new.csv"
    records.to_csv(source, index=False)
    code, stdout, _ = run_cli("predict", out, source, "--out", tmp_path / "p.json")
    assert code == 0
    payload = json.loads((tmp_path / "p.json").read_text())
    assert len(payload["predictions"]) == 25
    assert payload["model"]["sha256"]
    code, stdout, _ = run_cli("predict", out, source)
    assert code == 0
    lines = stdout.strip().splitlines()
    assert lines[0].split(",")[:2] == ["id", "score"] and len(lines) == 26
    # the same records scored in training carry the same scores
    run_predictions = pd.read_csv(out / "predictions.csv").set_index("id")
    new = pd.DataFrame(payload["predictions"]).set_index("id")
    common = new.index.intersection(run_predictions.index)
    assert len(common) > 0
    np.testing.assert_allclose(new.loc[common, "score"], run_predictions.loc[common, "score"], rtol=1e-6)


def test_evaluate_external_writes_external_split(binary_run, run_cli, tmp_path):
    out, _ = binary_run
    external = tmp_path / "external.csv"
    make_binary_table(n=200, seed=7).to_csv(external, index=False)
    code, _, err = run_cli("evaluate", out, "--data", external, "--out", tmp_path / "ext", "--bootstrap", "100")
    assert code == 0, err
    metrics = _metrics(tmp_path / "ext")
    assert set(metrics) == {"external"}
    predictions = pd.read_csv(tmp_path / "ext" / "predictions.csv")
    assert (predictions.split == "external").all() and len(predictions) == 200
    assert metrics["external"]["auroc"]["value"] == pytest.approx(
        roc_auc_score(predictions.label == "yes", predictions.score), abs=1e-12)
    assert (tmp_path / "ext" / "report.html").is_file()


def test_tampered_artefact_is_refused(binary_run, run_cli, tmp_path):
    out, data = binary_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    thresholds = copy / "model" / "thresholds.json"
    thresholds.write_text(thresholds.read_text().replace('"threshold": 0', '"threshold": 1', 1) + " ")
    code, _, err = run_cli("predict", copy, data)
    assert code == 2
    assert "thresholds.json" in err and "modified" in err
    code, _, err = run_cli("evaluate", copy, "--data", data, "--out", tmp_path / "e")
    assert code == 2 and "modified" in err
    assert not (tmp_path / "e").exists()
    code, _, err = run_cli("verify", copy)
    assert code == 2
    code, stdout, _ = run_cli("verify", out)
    assert code == 0 and "OK" in stdout


def test_survival_run_metrics_match_scikit_survival(survival_run):
    out, _ = survival_run
    metrics = _metrics(out)
    for name in ("c_index", "c_index_uno", "ibs"):
        assert name in metrics["test"], name
    assert any(name.startswith("td_auc_") for name in metrics["test"])
    predictions = pd.read_csv(out / "predictions.csv")
    test = predictions[predictions.split == "test"]
    expected = concordance_index_censored(test.event.astype(bool), test.time, test.score)[0]
    assert metrics["test"]["c_index"]["value"] == pytest.approx(expected, abs=1e-12)
    assert metrics["test"]["c_index"]["value"] > 0.6  # true hazard ratio is strong
    surv_columns = [c for c in predictions.columns if c.startswith("surv_")]
    assert surv_columns
    values = predictions[surv_columns].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    assert (np.diff(values, axis=1) <= 1e-12).all()  # survival falls with the horizon
    baselines = json.loads((out / "baselines.json").read_text())
    assert set(baselines) == {"cox_ph", "random_survival_forest"}


def test_survival_artefact_predicts(survival_run, run_cli, tmp_path):
    out, data = survival_run
    code, stdout, _ = run_cli("predict", out, data, "--out", tmp_path / "s.csv")
    frame = pd.read_csv(tmp_path / "s.csv")
    assert code == 0 and len(frame) == 400
    assert set(frame.pred) <= {"high", "low"}


def test_same_seed_gives_identical_runs(tmp_path, binary_csv, run_cli):
    for name in ("a", "b"):
        code, _, _ = run_cli("train", "--data", binary_csv, "--label", "outcome", "--out", tmp_path / name,
                             "--epochs", "15", "--bootstrap", "100", "--quiet")
        assert code == 0
    a = pd.read_csv(tmp_path / "a" / "predictions.csv")
    b = pd.read_csv(tmp_path / "b" / "predictions.csv")
    pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "a/model/weights.safetensors").read_bytes() == (tmp_path / "b/model/weights.safetensors").read_bytes()


def test_multiclass_and_regression_from_csv(tmp_path, run_cli):
    rng = np.random.default_rng(3)
    n = 240
    x = rng.normal(size=(n, 3))
    grade = np.array(["low", "mid", "high"])[np.digitize(x[:, 0] + 0.3 * rng.normal(size=n), [-0.5, 0.5])]
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "grade": grade,
                          "los_days": 3 + 2 * x[:, 1] + rng.normal(size=n) * 0.5})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    code, _, err = run_cli("train", "--data", path, "--label", "grade", "--out", tmp_path / "mc", "--epochs", "40",
                           "--bootstrap", "100", "--quiet")
    assert code == 0, err
    metrics = _metrics(tmp_path / "mc")["test"]
    assert {"auroc", "f1_macro", "f1_low", "f1_mid", "f1_high", "accuracy"} <= set(metrics)
    predictions = pd.read_csv(tmp_path / "mc" / "predictions.csv")
    assert {"score_high", "score_low", "score_mid"} <= set(predictions.columns)
    np.testing.assert_allclose(predictions[["score_high", "score_low", "score_mid"]].sum(axis=1), 1.0, atol=1e-6)
    code, _, err = run_cli("train", "--data", path, "--label", "los_days", "--task", "regression", "--out",
                           tmp_path / "rg", "--epochs", "60", "--bootstrap", "100", "--quiet")
    assert code == 0, err
    metrics = _metrics(tmp_path / "rg")["test"]
    assert metrics["r2"]["value"] > 0.5 and {"rmse", "mae"} <= set(metrics)


def test_patient_ids_are_detected_and_never_cross_splits(tmp_path, run_cli):
    frame = make_binary_table(n=300, seed=4).drop(columns=["patient"])
    frame["patient_id"] = [f"P{i // 3}" for i in range(300)]  # three records per patient
    path = tmp_path / "visits.csv"
    frame.to_csv(path, index=False)
    code, _, stderr = run_cli("train", "--data", path, "--out", tmp_path / "run", "--epochs", "10", "--bootstrap",
                              "100", "--quiet")
    assert code == 0, stderr
    assert "read as the patient id" in " ".join(stderr.split())
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    by_patient = predictions.groupby("patient_id")["split"].nunique()
    assert (by_patient == 1).all()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["split"]["strategy"].startswith("by patient ('patient_id')")
    assert "patient_id" not in run["data"]["feature_columns"]
