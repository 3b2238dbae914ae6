"""EHR end to end through the CLI: generated FHIR R4B bundles → `medai train --task mortality` → `medai predict`
and `medai evaluate` on other bundles; a flat event CSV; the MIMIC-III demo (skipped when absent); bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tests.trust_checks import assert_trust_outputs
import yaml

from medai.data.synthetic_fhir import write_fhir_bundles

pytestmark = pytest.mark.slow
MIMIC_DEMO = Path(__file__).resolve().parents[3] / "shared" / "data" / "mimic3_demo"
FAST = ["--epochs", "4", "--bootstrap", "100", "--quiet"]


@pytest.fixture(scope="module")
def fhir_run(tmp_path_factory):
    """A mortality model trained once on 90 generated patients (the slow part, shared by the tests below)."""
    from medai.cli import main

    root = tmp_path_factory.mktemp("ehr")
    bundles = root / "bundles"
    write_fhir_bundles(bundles, 90, seed=11)
    out = root / "run"
    assert main(["train", "--data", str(bundles), "--task", "mortality", "--out", str(out), *FAST]) == 0
    return root, out


def test_train_on_fhir_bundles_writes_a_complete_run(fhir_run):
    root, out = fhir_run
    assert not (root / "run.partial").exists()
    for name in ("report.html", "predictions.csv", "metrics.json", "baselines.json", "missingness.json",
                 "subgroups.json", "run.json", "model/weights.safetensors", "model/preprocessor.json"):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert run["task"]["outcome"] == "mortality" and run["task"]["observation_hours"] == 48
    assert run["data"]["layout"] == "fhir" and run["data"]["n_patients"] == 90
    assert set(run["baselines"]) == {"logistic_regression", "gradient_boosting"}
    variants = run["imputation_sensitivity"]["variants"]
    assert len(variants) == 4 and variants[0]["variant"].endswith("(this model)")
    assert all(v["val_auroc"]["value"] is not None for v in variants)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["auroc"]["value"] <= 1.0
    missingness = json.loads((out / "missingness.json").read_text())
    heart = missingness["heart_rate"]
    assert set(heart["by_subgroup"]) == {"sex", "age_band"} and 0 <= heart["bins_measured"] <= 1
    predictions = pd.read_csv(out / "predictions.csv")
    assert set(predictions["split"]) == {"val", "test"}
    # no patient in two splits
    assert predictions.groupby("patient_id")["split"].nunique().max() == 1
    card = (out / "model" / "model_card.md").read_text()
    assert "forward fill" in card and "Imputation sensitivity" in card
    html = (out / "report.html").read_text()
    assert "Imputation sensitivity analysis" in html and "Bins measured" in html


def test_fhir_run_has_the_trust_outputs(fhir_run):
    _, out = fhir_run
    assert_trust_outputs(out, audited=("sex", "age_band"))
    explanations = json.loads((out / "explanations.json").read_text())
    assert {f["name"] for f in explanations["importance"]["features"]} >= {"heart_rate", "age", "sex"}


def test_predict_and_evaluate_on_new_bundles(fhir_run, tmp_path):
    from medai.cli import main

    root, out = fhir_run
    other = tmp_path / "other"
    write_fhir_bundles(other, 40, seed=12)
    assert main(["predict", str(out), str(other), "--out", str(tmp_path / "p.csv")]) == 0
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert {"id", "patient_id", "prediction_time", "score", "pred"} <= set(predictions.columns)
    assert predictions["score"].between(0, 1).all() and len(predictions) > 10
    assert main(["evaluate", str(out), "--data", str(other), "--out", str(tmp_path / "ext"),
                 "--bootstrap", "100"]) == 0
    metrics = json.loads((tmp_path / "ext" / "metrics.json").read_text())
    assert "auroc" in metrics["external"]


def test_event_csv_with_encounters_trains(tmp_path):
    """The flat CSV layout (patient_id, time, code, value, unit + encounters.csv) through the same workflow."""
    from medai.cli import main
    from tests.ehr_fixtures import cohort

    rows, encounters = [], []
    for t in cohort(70, seed=5):
        for e in t.events.itertuples():
            rows.append({"patient_id": t.patient_id, "time": e.time, "code": e.concept, "value": e.value,
                         "unit": {"heart_rate": "/min", "systolic_bp": "mm[Hg]", "creatinine": "mg/dL"}[e.concept],
                         "encounter_id": e.encounter_id})
        for enc in t.encounters.itertuples():
            encounters.append({"patient_id": t.patient_id, "encounter_id": enc.encounter_id, "kind": enc.kind,
                               "parent_id": enc.parent_id, "start": enc.start, "end": enc.end, "died": enc.died})
    pd.DataFrame(rows).sample(frac=1.0, random_state=0).to_csv(tmp_path / "events.csv", index=False)  # unsorted
    pd.DataFrame(encounters).to_csv(tmp_path / "encounters.csv", index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "events.csv"), "--task", "length_of_stay",
                 "--observation-hours", "12", "--out", str(out), *FAST]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["layout"] == "events" and run["task"]["observation_hours"] == 12
    assert run["task"]["horizon_hours"] == 72


@pytest.mark.skipif(not MIMIC_DEMO.is_dir(), reason=f"MIMIC-III demo not found at {MIMIC_DEMO} (../shared/DATA.md)")
def test_mimic_demo_mortality_recipe(tmp_path):
    from medai.cli import main

    recipe = yaml.safe_load((Path(__file__).resolve().parents[2] / "recipes" / "icu-mortality-mimic3.yaml").read_text())
    recipe["data"]["path"] = str(MIMIC_DEMO)
    recipe["training"].update(max_epochs=4)
    recipe["evaluation"].update(n_resamples=100, imputation_sensitivity=False)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    # the demo's cohort: 71 ICU stays of >= 48 h (adults alive at 48 h) from 55 patients, 26 in-hospital deaths
    assert run["task"]["n_samples"] == 71 and round(run["task"]["prevalence"] * 71) == 26
    assert run["task"]["excluded"]["ICU stay shorter than the 48 h observation window"] == 63
    assert any("Only 71 samples" in w for w in run["warnings"])
    # race/ethnicity (MIMIC ADMISSIONS.ETHNICITY, collapsed to broad groups) is audited beside sex and age band
    fairness = json.loads((out / "fairness.json").read_text())
    assert {"sex", "age_band"} <= set(fairness["attributes"])
    assert any("ethnicity" in attribute for attribute in fairness["attributes"]), list(fairness["attributes"])


def test_bad_ehr_input_is_named_and_exits_2(tmp_path, capsys):
    from medai.cli import main

    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    assert main(["train", "--data", str(tmp_path / "notes.csv"), "--task", "mortality", "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "notes.csv" in err and "not EHR data" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()
    bundles = tmp_path / "b"
    write_fhir_bundles(bundles, 30, seed=1)
    assert main(["train", "--data", str(bundles), "--task", "mortality", "--model", "resnet18", "--out",
                 str(tmp_path / "r2")]) == 2
    assert "does not take EHR time series" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resourceType": "Patient", "id": "p1"}))
    assert main(["train", "--data", str(bad), "--task", "mortality", "--out", str(tmp_path / "r3")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "Bundle" in err
