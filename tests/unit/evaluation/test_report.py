"""The clinical evaluation report, built from tiny run directories written by hand (docs/run-directory.md)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn.metrics import precision_recall_fscore_support

from medai.core.errors import DataValidationError
from medai.evaluation.report import write_report

IMAGE = "data:image/png;base64,"
EVIL = "<script>alert(1)</script>"


def m(value, low, high):
    return {"value": value, "ci_low": low, "ci_high": high}


def write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")


def run_json(kind: str, n_val: int = 40, n_test: int = 60, **task) -> dict:
    return {
        "name": "ed-triage",
        "task": {"kind": kind, "label": None, "time": None, "event": None, "class_names": None,
                 "positive_class": None, **task},
        "data": {"source": "cohort.csv", "sha256": "ab" * 32, "n_rows": 200,
                 "feature_columns": ["age", "sex", "bmi"]},
        "split": {"strategy": "stratified", "seed": 7, "n": {"train": 100, "val": n_val, "test": n_test}},
        "model": {"name": "mlp", "description": "MLP [16] classifier", "params": {"hidden_sizes": [16]},
                  "n_weights": 1234},
        "training": {"epochs_run": 3, "best_epoch": 2, "history": [
            {"epoch": 1, "train_loss": 0.7, "val_loss": 0.69},
            {"epoch": 2, "train_loss": 0.6, "val_loss": 0.62},
            {"epoch": 3, "train_loss": 0.5, "val_loss": 0.64},
        ]},
        "seed": 7,
        "medai_version": "0.1.0",
        "created": "2025-11-26T01:00:00+00:00",
        "warnings": ["calibration_slope is not computable on val: one class only"],
    }


def frame(rng: np.random.Generator, n_val: int = 40, n_test: int = 60) -> pd.DataFrame:
    n = n_val + n_test
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "split": ["val"] * n_val + ["test"] * n_test})


def binary_run(run_dir: Path, *, optional: bool = True) -> Path:
    rng = np.random.default_rng(0)
    pred = frame(rng)
    y = np.tile([0, 1], len(pred) // 2)
    pred["label"] = np.array(["healthy", "diseased"])[y]
    pred["score"] = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, len(pred)), 0.01, 0.99)
    pred["pred"] = np.where(pred["score"] >= 0.5, "diseased", "healthy")
    run_dir.mkdir(parents=True)
    pred.to_csv(run_dir / "predictions.csv", index=False)
    run = run_json("binary", label="disease", positive_class="diseased", class_names=["healthy", "diseased"])
    run["operating_point"] = {"method": "youden", "threshold": 0.5}
    run["baselines"] = {"logistic_regression": "Logistic regression (L2)"}
    write_json(run_dir / "run.json", run)
    write_json(run_dir / "metrics.json", {
        "val": {"auroc": m(0.881, 0.802, 0.944), "calibration_slope": None, "ece": m(0.05, 0.03, 0.08)},
        "test": {"auroc": m(0.912, 0.871, 0.948), "auprc": m(0.901, 0.85, 0.95), "ece": m(0.041, 0.02, 0.07),
                 "calibration_slope": m(0.95, 0.7, 1.2), "calibration_intercept": m(-0.02, -0.3, 0.25),
                 "brier": m(0.12, 0.09, 0.15), "sensitivity": m(0.8, 0.7, 0.9)},
    })
    if optional:
        write_json(run_dir / "baselines.json", {"logistic_regression": {
            "val": {"auroc": m(0.85, 0.8, 0.9)}, "test": {"auroc": m(0.877, 0.822, 0.921)}}})
        write_json(run_dir / "operating_points.json", {
            name: {"threshold": t, "chosen_on": "val",
                   "val": {k: m(0.8, 0.7, 0.9) for k in ("sensitivity", "specificity", "ppv", "npv")},
                   "test": {"sensitivity": m(0.833, 0.7, 0.93), "specificity": m(0.766, 0.6, 0.9),
                            "ppv": m(0.781, 0.65, 0.9), "npv": m(0.821, 0.7, 0.95)}}
            for name, t in (("youden", 0.5), ("sensitivity_0.90", 0.35))})
        write_json(run_dir / "missingness.json", {
            "age": {"n_missing": 0, "fraction": 0.0, "by_split": {"train": 0.0, "val": 0.0, "test": 0.0}},
            "bmi_zz": {"n_missing": 50, "fraction": 0.25, "by_split": {"train": 0.2, "val": 0.3, "test": 0.35}},
            "lactate": {"n_missing": 20, "fraction": 0.1, "by_split": {"train": 0.1, "val": 0.1, "test": 0.1}},
        })
        write_json(run_dir / "subgroups.json", {"sex": {
            "F": {"n": 48, "n_positive": 24, "metrics": {"auroc": m(0.9, 0.82, 0.96)}, "gap": {"auroc": -0.012},
                  "warning": None},
            "M": {"n": 12, "n_positive": 6, "metrics": {"auroc": m(0.95, 0.8, 1.0)}, "gap": {"auroc": 0.038},
                  "warning": "n = 12 < 30: estimates unreliable"},
        }})
        write_json(run_dir / "model" / "model_card.json", {
            "schema": "medai-model-card/1",
            "intended_use": {"primary_use": "Triage support for adult emergency patients.",
                             "out_of_scope_and_contraindications": "Children.", "task": run["task"]},
            "caveats_and_recommendations": ["Single-centre data.", "Not validated in children."],
            "preprocessing_and_missing_data": "Numeric: median imputation fitted on the training split.",
        })
    return run_dir


def multiclass_run(run_dir: Path) -> Path:
    rng = np.random.default_rng(1)
    names = ["normal", EVIL, "other"]
    pred = frame(rng)
    y = np.arange(len(pred)) % 3
    logits = rng.normal(0, 1, (len(pred), 3)) + 2.0 * np.eye(3)[y]
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred["label"] = [names[k] for k in y]
    for k, name in enumerate(names):
        pred[f"score_{name}"] = prob[:, k]
    decided = prob.argmax(axis=1)
    decided[-3:] = 2  # the class at the operating point need not be the arg-max: the report uses `pred`
    pred["pred"] = [names[k] for k in decided]
    run_dir.mkdir(parents=True)
    pred.to_csv(run_dir / "predictions.csv", index=False)
    write_json(run_dir / "run.json", run_json("multiclass", label="rhythm", class_names=names))
    write_json(run_dir / "metrics.json", {split: {"accuracy": m(0.733, 0.62, 0.83), "f1_macro": m(0.7, 0.6, 0.8),
                                                  f"f1_{EVIL}": m(0.654, 0.5, 0.78)} for split in ("val", "test")})
    return run_dir


def regression_run(run_dir: Path) -> Path:
    rng = np.random.default_rng(2)
    pred = frame(rng)
    pred["target"] = rng.normal(50, 10, len(pred))
    pred["score"] = pred["target"] + rng.normal(0, 3, len(pred))
    pred["pred"] = pred["score"]
    run_dir.mkdir(parents=True)
    pred.to_csv(run_dir / "predictions.csv", index=False)
    write_json(run_dir / "run.json", run_json("regression", label="length_of_stay_h"))
    write_json(run_dir / "metrics.json", {"val": {"mae": m(2.5, 2.0, 3.1)},
                                          "test": {"mae": m(2.41, 1.98, 2.87), "rmse": m(3.02, 2.5, 3.6)}})
    return run_dir


def survival_run(run_dir: Path, n_test: int = 150) -> Path:
    rng = np.random.default_rng(3)
    pred = frame(rng, n_val=60, n_test=n_test)
    risk = rng.normal(0, 1, len(pred))
    event_time = rng.exponential(800 * np.exp(-0.8 * risk))
    censor_time = rng.uniform(200, 1500, len(pred))
    pred["time"] = np.round(np.minimum(event_time, censor_time), 1)
    pred["event"] = (event_time <= censor_time).astype(int)
    pred["score"] = risk
    pred["pred"] = np.where(risk >= np.median(risk[:60]), "high", "low")
    for t in (365, 730):
        pred[f"surv_{t}"] = np.exp(-(t / 800) * np.exp(0.8 * risk))
    run_dir.mkdir(parents=True)
    pred.to_csv(run_dir / "predictions.csv", index=False)
    run = run_json("survival", n_val=60, n_test=n_test, time="days", event="death")
    run["horizons"] = [365.0, 730.0]
    write_json(run_dir / "run.json", run)
    write_json(run_dir / "metrics.json", {
        split: {"c_index": m(0.721, 0.672, 0.768), "c_index_uno": m(0.709, 0.65, 0.76),
                "ibs": m(0.162, 0.14, 0.185), "td_auc_365": m(0.75, 0.68, 0.82), "td_auc_730": m(0.74, 0.66, 0.8)}
        for split in ("val", "test")})
    return run_dir


BUILDERS = {"binary": binary_run, "multiclass": multiclass_run, "regression": regression_run,
            "survival": survival_run}


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """One run directory and its rendered report per task kind (rendering is the slow part: do it once)."""
    out = {}
    for kind, build in BUILDERS.items():
        run_dir = build(tmp_path_factory.mktemp(kind) / "run")
        path = write_report(run_dir)
        out[kind] = (run_dir, path.read_text(encoding="utf-8"))
    return out


def images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def row(html: str, header: str) -> str:
    """The text of the table row whose row header starts with ``header``."""
    match = re.search(rf"<tr[^>]*>\s*<th scope=\"row\">{re.escape(header)}.*?</tr>", html, flags=re.S)
    assert match, f"no row {header!r}"
    return match.group(0)


@pytest.mark.parametrize("kind, n_images", [("binary", 6), ("multiclass", 3), ("regression", 3), ("survival", 4)])
def test_report_is_written_with_embedded_png_figures(reports, kind, n_images):
    run_dir, html = reports[kind]
    assert (run_dir / "report.html").is_file()
    pngs = images(html)
    assert len(pngs) == n_images == html.count(IMAGE)
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 2000 for p in pngs)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_report_has_no_external_resources_nor_scripts(reports, kind):
    html = reports[kind][1].lower()
    assert "http://" not in html and "https://" not in html
    for pattern in ('src="http', "src='http", 'href="http', "url(", "@import", "<script", "<link", "<iframe"):
        assert pattern not in html
    # Every image is inline and every link stays inside the page.
    assert all(s.startswith(IMAGE) for s in re.findall(r'src="([^"]*)"', html))
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_nothing_but_the_report_is_added_to_the_run_directory(tmp_path, kind):
    run_dir = BUILDERS[kind](tmp_path / "run")
    before = {p.relative_to(run_dir) for p in run_dir.rglob("*")}
    assert write_report(run_dir) == run_dir / "report.html"
    assert {p.relative_to(run_dir) for p in run_dir.rglob("*")} == before | {Path("report.html")}


def test_header_and_warnings(reports):
    html = reports["binary"][1]
    for text in ("ed-triage", "mlp — MLP [16] classifier", "binary — disease", "cohort.csv",
                 "training 100, validation 40, test 60",
                 "2025-11-26T01:00:00+00:00", "0.1.0", "1,234", "How to read this report"):
        assert text in html
    warnings = re.search(r'<section class="warnings".*?</section>', html, flags=re.S).group(0)
    assert 'role="alert"' in warnings
    assert "calibration_slope is not computable on val: one class only" in warnings


def test_binary_headline_baselines_and_null_metric(reports):
    html = reports["binary"][1]
    headline = re.search(r'<section id="headline">.*?</section>', html, flags=re.S).group(0)
    auroc = row(headline, "AUROC")
    assert "<td>0.881 (0.802–0.944)</td>" in auroc and "<td>0.912 (0.871–0.948)</td>" in auroc
    assert "<th scope=\"col\">validation</th>" in headline and "<th scope=\"col\">test</th>" in headline
    # null on val: n/a with the reason; absent from val: not reported.
    slope = row(headline, "Calibration slope")
    assert re.search(r'<td title="not computable on this split[^"]*" class="na">n/a</td>', slope)
    assert "0.950 (0.700–1.200)" in slope
    assert re.search(r'<td title="not reported for this split" class="na">', row(headline, "Brier score"))
    # Known metrics in a fixed reading order (discrimination, decision, calibration), not file order.
    main = headline.split("Comparison with in-run baselines")[0]
    assert re.findall(r'<th scope="row">([^<]+)</th>', main) == [
        "AUROC", "AUPRC", "Sensitivity", "Brier score", "Expected calibration error (ECE)", "Calibration slope",
        "Calibration intercept"]
    # Baselines beside ours, test split, on the metrics the baselines report.
    assert '<th scope="col">Logistic regression (L2)</th>' in headline
    assert re.findall(r'<th scope="row">([^<]+)</th>', headline.split("Comparison with in-run baselines")[1]) == [
        "AUROC"]
    baseline_rows = headline.split("Comparison with in-run baselines")[1]
    assert re.search(r"0\.912 \(0\.871–0\.948\)</td>\s*<td>0\.877 \(0\.822–0\.921\)</td>", baseline_rows)


def test_binary_classification_section(reports):
    html = reports["binary"][1]
    section = re.search(r'<section id="classification">.*?</section>', html, flags=re.S).group(0)
    for text in ("ROC curve", "Precision-recall curve", "Reliability diagram", "Decision curve",
                 "Score distributions by class"):
        assert f'alt="{text}"' in section
    assert "single class" not in section
    assert "0.041 (0.020–0.070)" in row(section, "Expected calibration error")
    # A negative bound: typographic minus, and "to" rather than a dash that would read as another minus.
    assert "−0.020 (−0.300 to 0.250)" in row(section, "Calibration intercept")
    youden = row(section, "Youden index")
    assert "0.500" in youden and "validation" in youden
    assert "0.833 (0.700–0.930)" in youden and "0.821 (0.700–0.950)" in youden
    assert "0.350" in row(section, "Sensitivity ≥ 90%")


def test_missing_data_sorted_with_imputation(reports):
    html = reports["binary"][1]
    section = re.search(r'<section id="missing">.*?</section>', html, flags=re.S).group(0)
    assert section.index(">bmi_zz<") < section.index(">lactate<") < section.index(">age<")
    assert "35.0%" in row(section, "bmi_zz") and '<th scope="col">Fraction (training)</th>' in section
    assert "Numeric: median imputation fitted on the training split." in section


def test_subgroup_warning_is_flagged(reports):
    html = reports["binary"][1]
    section = re.search(r'<section id="subgroups">.*?</section>', html, flags=re.S).group(0)
    flagged = row(section, "M")
    assert 'class="flagged"' in flagged and "⚠ n = 12 &lt; 30: estimates unreliable" in flagged
    assert "0.950 (0.800–1.000)" in flagged and "+0.038" in flagged
    assert 'class="flagged"' not in row(section, "F") and "−0.012" in row(section, "F")


def test_model_card_and_training_curve(reports):
    run_dir, html = reports["binary"]
    section = re.search(r'<section id="model-card">.*?</section>', html, flags=re.S).group(0)
    assert "Triage support for adult emergency patients." in section and "Children." in section
    assert "Single-centre data.<br>Not validated in children." in section
    assert str((run_dir / "model").resolve()) in section


def test_artefact_location_is_the_final_run_directory(tmp_path):
    # The pipeline writes the report inside OUT.partial, renamed to OUT when the run is complete.
    run_dir = binary_run(tmp_path / "run.partial")
    html = write_report(run_dir).read_text(encoding="utf-8")
    assert str(tmp_path.resolve() / "run" / "model") in html and "run.partial" not in html
    assert 'id="training"' in html and 'alt="Training curve"' in html


def test_multiclass_report_escapes_class_names(reports):
    html = reports["multiclass"][1]
    assert EVIL not in html and "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "F1 (&lt;script&gt;alert(1)&lt;/script&gt;)" in html
    section = re.search(r'<section id="classification">.*?</section>', html, flags=re.S).group(0)
    assert 'alt="One-vs-rest ROC curves"' in section and 'alt="Confusion matrix"' in section
    evil_row = row(section, "&lt;script&gt;alert(1)&lt;/script&gt;")
    assert "0.654 (0.500–0.780)" in evil_row and "<td>20</td>" in evil_row  # 60 test records, 3 classes
    # Precision and recall of the decided class (`pred`), as scikit-learn computes them.
    test = pd.read_csv(reports["multiclass"][0] / "predictions.csv").query("split == 'test'")
    precision, recall, _, _ = precision_recall_fscore_support(test["label"], test["pred"], labels=["other"])
    assert f"<td>{precision[0]:.3f}</td><td>{recall[0]:.3f}</td>" in row(section, "other")


def test_regression_report(reports):
    html = reports["regression"][1]
    assert 'alt="Predicted against observed"' in html and 'alt="Residual histogram"' in html
    assert "2.410 (1.980–2.870)" in row(html, "Mean absolute error")
    assert 'id="classification"' not in html and 'id="survival"' not in html


def test_survival_report(reports):
    html = reports["survival"][1]
    section = re.search(r'<section id="survival">.*?</section>', html, flags=re.S).group(0)
    for text in ("Kaplan-Meier curves by predicted risk group", "Time-dependent AUC by horizon",
                 "Calibration at each horizon"):
        assert f'alt="{text}"' in section
    assert "0.721 (0.672–0.768)" in row(section, "C-index (Harrell)")
    assert "0.709 (0.650–0.760)" in row(section, "C-index (Uno)")
    assert "0.162 (0.140–0.185)" in row(section, "Integrated Brier score")
    assert "0.750 (0.680–0.820)" in row(html, "Time-dependent AUC at t = 365")
    # Numbers at risk start with every test record of the group at t = 0.
    low, high = row(section, "low"), row(section, "high")
    counts = [int(re.findall(r"<td>([\d,]+)</td>", r)[0].replace(",", "")) for r in (low, high)]
    assert sum(counts) == 150 and section.index(">low<") < section.index(">high<")
    # Calibration: five risk quintiles per horizon, 30 records each.
    assert len(re.findall(r'<th scope="row">t = 365</th>', section)) == 5
    assert len(re.findall(r'<th scope="row">t = 730</th>\s*<td>Q\d</td>\s*<td>30</td>', section)) == 5


def test_survival_calibration_on_a_split_smaller_than_five_records(tmp_path):
    html = write_report(survival_run(tmp_path / "run", n_test=3)).read_text(encoding="utf-8")
    assert re.findall(r'<th scope="row">t = 365</th>\s*<td>(Q\d)</td>\s*<td>1</td>', html) == ["Q1", "Q2", "Q3"]


def test_absent_optional_files_are_skipped(tmp_path):
    run_dir = binary_run(tmp_path / "run", optional=False)
    run = json.loads((run_dir / "run.json").read_text())
    del run["training"]["history"], run["warnings"]
    write_json(run_dir / "run.json", run)
    html = write_report(run_dir).read_text(encoding="utf-8")
    for absent in ('id="missing"', 'id="subgroups"', 'id="model-card"', 'id="training"', 'class="warnings"',
                   "Comparison with in-run baselines", "Operating point"):
        assert absent not in html
    assert 'id="classification"' in html and len(images(html)) == 5


def test_single_class_split_is_noted_not_fatal(tmp_path):
    run_dir = binary_run(tmp_path / "run", optional=False)
    pred = pd.read_csv(run_dir / "predictions.csv")
    pred.loc[pred["split"] == "val", "label"] = "healthy"
    pred.to_csv(run_dir / "predictions.csv", index=False)
    html = write_report(run_dir).read_text(encoding="utf-8")
    assert "The validation split has a single class: no ROC or precision-recall curve." in html
    assert 'alt="ROC curve"' in html and len(images(html)) == 6


@pytest.mark.parametrize("name, producer", [("predictions.csv", "one row per evaluated record"),
                                            ("metrics.json", "95 % CIs"), ("run.json", "what was run")])
def test_missing_required_file_raises(tmp_path, name, producer):
    run_dir = binary_run(tmp_path / "run", optional=False)
    (run_dir / name).unlink()
    with pytest.raises(DataValidationError, match=rf"no {re.escape(name)} \(.*{producer}.*`medai train`"):
        write_report(run_dir)
    assert not (run_dir / "report.html").exists()


@pytest.mark.parametrize("change, message", [
    (lambda p: p.drop(columns="score"), r"binary run lacks the column\(s\) \['score'\]"),
    (lambda p: p.assign(score=p["score"].where(p.index != 3)), r"1 empty value\(s\) in column 'score'"),
    (lambda p: p.assign(label=p["label"].replace("diseased", "sick")),
     r"labels \['healthy', 'sick'\] that are not the class names of run.json"),
])
def test_malformed_predictions_raise(tmp_path, change, message):
    run_dir = binary_run(tmp_path / "run", optional=False)
    change(pd.read_csv(run_dir / "predictions.csv")).to_csv(run_dir / "predictions.csv", index=False)
    with pytest.raises(DataValidationError, match=message):
        write_report(run_dir)


def test_custom_out_path_and_failed_write_leave_no_temp_file(tmp_path):
    run_dir = binary_run(tmp_path / "run", optional=False)
    out = tmp_path / "reports" / "binary.html"
    assert write_report(run_dir, out) == out and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not (run_dir / "report.html").exists()
    blocked = tmp_path / "blocked"
    (blocked / "report.html").mkdir(parents=True)  # a directory where the file should go: the rename fails
    with pytest.raises(OSError):
        write_report(run_dir, blocked / "report.html")
    assert [p.name for p in blocked.iterdir()] == ["report.html"]
