"""The AF recipe on the real PhysioNet/CinC 2017 records in ../shared/data (skipped where absent): train, then
`medai evaluate` on another folder in the same layout (as the 100 records kept aside will be), `medai predict` on a
real record, and `medai monitor` over MIT-BIH record 100."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CINC = SHARED_DATA / "cinc2017_af"


@pytest.fixture(scope="module")
def cinc_run(tmp_path_factory):
    if not (CINC / "REFERENCE.csv").is_file():
        pytest.skip(f"{CINC} not present (see ../shared/DATA.md)")
    from medai.cli import main

    out = tmp_path_factory.mktemp("cinc") / "run"
    code = main(["train", str(REPO / "recipes" / "af-cinc2017.yaml"), "--epochs", "4", "--bootstrap", "100",
                 "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_af_recipe_trains_on_the_real_records(cinc_run):
    run = json.loads((cinc_run / "run.json").read_text())
    assert run["task"]["class_names"] == ["N", "A", "O", "~"] and run["data"]["n_recordings"] == 200
    assert run["data"]["sampling_rates_hz"] == [300.0] and 9 <= run["data"]["duration_s"]["min"]
    assert sum(run["split"]["n"].values()) + run["data"]["n_unusable"] == 200
    metrics = json.loads((cinc_run / "metrics.json").read_text())["test"]
    assert metrics["auroc_A"]["value"] > 0.8  # even 4 epochs see AF through the RR traces
    assert {"cinc2017_score", "f1_N", "f1_A", "f1_O"} <= set(metrics)


def test_evaluate_on_another_cinc_folder(cinc_run, run_cli, tmp_path):
    """A new folder in the challenge layout (REFERENCE.csv at the top, records directly beside it)."""
    reference = pd.read_csv(CINC / "REFERENCE.csv", header=None, names=["record", "label"])
    chosen = reference.groupby("label").head(6)
    folder = tmp_path / "other"
    folder.mkdir()
    for record in chosen["record"]:
        for suffix in (".mat", ".hea"):
            shutil.copy(CINC / "records" / f"{record}{suffix}", folder)
    chosen.to_csv(folder / "REFERENCE.csv", header=False, index=False, lineterminator="\r\n")
    code, stdout, stderr = run_cli("evaluate", cinc_run, "--data", folder, "--out", tmp_path / "ext",
                                   "--bootstrap", "100")
    assert code == 0, stderr
    run = json.loads((tmp_path / "ext" / "run.json").read_text())
    assert run["split"]["n"]["external"] == 24  # every record scored: unusable ones as noisy ('~')
    predictions = pd.read_csv(tmp_path / "ext" / "predictions.csv")
    assert set(predictions["id"]) == set(chosen["record"])
    assert "cinc2017_score" in stdout


def test_predict_and_monitor_real_records(cinc_run, run_cli, tmp_path):
    reference = pd.read_csv(CINC / "REFERENCE.csv", header=None, names=["record", "label"])
    af = reference[reference["label"] == "A"]["record"].iloc[0]
    code, stdout, stderr = run_cli("predict", cinc_run, CINC / "records" / f"{af}.mat")
    assert code == 0, stderr
    row = pd.read_csv(io.StringIO(stdout)).iloc[0]
    assert row["id"] == af and {"score_N", "score_A", "score_O", "score_~"} <= set(row.index)

    mitbih = SHARED_DATA / "ecg_wfdb_samples" / "100.hea"
    if not mitbih.is_file():
        pytest.skip(f"{mitbih} not present")
    code, stdout, stderr = run_cli("monitor", cinc_run, "--record", mitbih, "--out", tmp_path / "events.jsonl")
    assert code == 0, stderr
    summary = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])["summary"]
    assert summary["duration_s"] == pytest.approx(1805.56, abs=0.01) and summary["n_windows"] == 360
