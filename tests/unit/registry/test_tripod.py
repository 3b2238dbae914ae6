"""TRIPOD+AI checklist: items are decided from the run folder's files — not met when a file is missing, met when
it is present — and every item of the 11 January 2024 checklist is there."""

import json

import pytest

from medai.core.errors import DataValidationError
from medai.registry.tripod import ITEMS, build_tripod_checklist, render_tripod_checklist


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    _write(run / "run.json", {
        "name": "demo", "task": {"kind": "binary", "label": "death", "positive_class": "1"},
        "data": {"source": "demo.csv", "sha256": "ab", "n_rows": 100, "n_skipped": 0, "feature_columns": ["age"]},
        "split": {"strategy": "random", "n": {"train": 60, "val": 20, "test": 20}},
        "model": {"name": "mlp", "params": {}}, "training": {"epochs_run": 3},
        "operating_point": {"method": "youden", "threshold": 0.4}, "artifact_sha256": "cd",
    })
    ci = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}
    _write(run / "metrics.json", {"val": {"auroc": ci}, "test": {
        "auroc": ci, "ece": ci, "ece_before_recalibration": ci, "conformal_target": 0.9, "conformal_coverage": ci,
        "abstain_rate": ci}})
    _write(run / "fairness.json", {"overall": {"n": 20}, "attributes": {"sex": {"groups": {}}}, "mitigation": None})
    _write(run / "lineage.json", {"code": {"git_commit": "abc", "medai_version": "0.1.0"}, "data": {}})
    _write(run / "missingness.json", {"age": {"n_missing": 0}})
    _write(run / "model" / "model_card.json", {"intended_use": {"primary_use": "research"},
                                               "caveats_and_recommendations": ["small"]})
    _write(run / "model" / "preprocessor.json", {"type": "tabular"})
    _write(run / "model" / "thresholds.json", {"threshold": 0.4})
    _write(run / "model" / "config.json", {})
    (run / "model" / "MANIFEST.sha256").write_text("x  config.json\n")
    (run / "report.html").write_text("<html></html>")
    return run


def test_all_27_items_with_their_sub_items_are_encoded():
    numbers = [item.number for item in ITEMS]
    assert len(numbers) == len(set(numbers)) == 52
    assert {n.rstrip("abcdefg") for n in numbers} == {str(i) for i in range(1, 28)}
    assert {"12e", "13", "14", "15", "23a", "27c"} <= set(numbers)


def test_items_met_with_where_when_the_files_are_present(run_dir):
    out = build_tripod_checklist(run_dir)
    items = out["items"]
    assert out["study_type"] == "development with internal validation"
    assert items["14"]["status"] == "met" and items["14"]["where"] == ["fairness.json#attributes"]
    assert items["11"]["status"] == "met" and "missingness.json" in items["11"]["where"]
    assert items["12f"]["status"] == "met" and "metrics.json#test.ece_before_recalibration" in items["12f"]["where"]
    assert items["23a"]["status"] == "met"
    assert items["15"]["status"] == "met" and "metrics.json#test.conformal_coverage" in items["15"]["where"]
    assert items["18f"]["where"] == ["lineage.json#code"]
    assert items["2"]["status"] == "not_applicable" and "manuscript item" in items["2"]["why"]
    assert items["20c"]["status"] == "not_applicable" and "medai evaluate" in items["20c"]["why"]
    assert items["10"]["status"] == "not_met"  # no sample-size calculation: never claimed
    assert sum(out["summary"].values()) == len(ITEMS)
    assert "| 14 | Fairness" in render_tripod_checklist(out)
    json.dumps(out)


def test_items_not_met_with_why_when_a_file_is_missing(run_dir):
    (run_dir / "fairness.json").unlink()
    (run_dir / "missingness.json").unlink()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["test"]["ece_before_recalibration"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    items = build_tripod_checklist(run_dir)["items"]
    assert items["14"]["status"] == "not_met" and "fairness.json is missing" in items["14"]["why"]
    assert items["11"]["status"] == "not_met" and "missingness.json is missing" in items["11"]["why"]
    assert items["12f"]["status"] == "not_met" and "ece_before_recalibration" in items["12f"]["why"]
    assert items["23a"]["status"] == "not_met" and "subgroup results are missing" in items["23a"]["why"]


def test_uncalibrated_metrics_and_empty_audit_are_not_met(run_dir):
    _write(run_dir / "metrics.json", {"test": {"auroc": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}}})
    _write(run_dir / "fairness.json", {"overall": {"n": 20}, "attributes": {}})
    items = build_tripod_checklist(run_dir)["items"]
    assert items["12e"]["status"] == "not_met" and "no calibration measure" in items["12e"]["why"]
    assert items["14"]["status"] == "not_met" and "--group COL" in items["14"]["why"]


def test_external_evaluation_folder_and_bad_path(run_dir, tmp_path):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    _write(run_dir / "metrics.json", {"external": metrics["test"]})
    out = build_tripod_checklist(run_dir)
    assert out["study_type"] == "external evaluation"
    assert out["items"]["12c"]["status"] == "not_applicable"  # development item
    assert out["items"]["20c"]["status"] == "met"
    with pytest.raises(DataValidationError, match="is not a run folder"):
        build_tripod_checklist(tmp_path / "absent")
