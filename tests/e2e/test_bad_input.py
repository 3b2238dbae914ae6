"""Bad input: one clear line naming the file/column and the fix, a non-zero exit, and no run folder left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_binary_table, make_survival_table

FAST = ("--epochs", "5", "--bootstrap", "100", "--quiet")


def _train(run_cli, tmp_path, data, *flags):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("train", "--data", data, *flags, "--out", out, *FAST)
    assert code == 2, stderr
    assert not out.exists() and not out.with_name("run.partial").exists(), "bad input left a run folder behind"
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr
    return " ".join(stderr.split())  # rich may wrap the line on narrow terminals


def _csv(tmp_path, frame, name="data.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_missing_file(run_cli, tmp_path):
    message = _train(run_cli, tmp_path, tmp_path / "nope.csv", "--label", "y")
    assert "Data file not found" in message and "nope.csv" in message


def test_unknown_format(run_cli, tmp_path):
    path = tmp_path / "scan.xyz"
    path.write_text("not a table")
    message = _train(run_cli, tmp_path, path, "--label", "y")
    assert "Unknown data format" in message and ".xyz" in message and ".csv" in message


def test_unknown_builtin_suggests_closest(run_cli, tmp_path):
    message = _train(run_cli, tmp_path, "wdcb")
    assert "Did you mean 'wdbc'" in message


def test_label_column_absent_lists_columns_and_suggests(run_cli, tmp_path):
    path = _csv(tmp_path, make_binary_table(60))
    message = _train(run_cli, tmp_path, path, "--label", "outcom")
    assert "label column 'outcom' not found" in message
    assert "Did you mean 'outcome'" in message and "Columns: patient, age" in message


@pytest.mark.parametrize("flag", ["--time", "--event"])
def test_time_or_event_column_absent(run_cli, tmp_path, flag):
    path = _csv(tmp_path, make_survival_table(60))
    flags = {"--time": ("--time", "tmie", "--event", "event"), "--event": ("--time", "time", "--event", "evnt")}[flag]
    message = _train(run_cli, tmp_path, path, *flags)
    wrong = flags[1] if flag == "--time" else flags[3]
    assert f"column '{wrong}' not found" in message and "Did you mean" in message


def test_one_class_only(run_cli, tmp_path):
    frame = make_binary_table(60).assign(outcome="no")
    message = _train(run_cli, tmp_path, _csv(tmp_path, frame), "--label", "outcome")
    assert "only one class" in message and "'outcome'" in message


def test_non_numeric_junk_in_a_numeric_column(run_cli, tmp_path):
    frame = make_binary_table(60)
    frame["age"] = frame["age"].astype(object)
    frame.loc[[3, 7], "age"] = "unknown"
    message = _train(run_cli, tmp_path, _csv(tmp_path, frame), "--label", "outcome")
    assert "feature column 'age'" in message and "rows 4, 8" in message and "non-numeric" in message
    assert "unknown" not in message.replace("unknown=", "")  # cell values (possible patient data) are not echoed


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_labels(run_cli, tmp_path, bad):
    frame = make_binary_table(60)
    frame["outcome"] = (frame["outcome"] == "yes").astype(float)
    frame.loc[5, "outcome"] = bad
    message = _train(run_cli, tmp_path, _csv(tmp_path, frame), "--label", "outcome")
    assert "label column 'outcome'" in message and "row" in message and "6" in message


def test_non_positive_times(run_cli, tmp_path):
    frame = make_survival_table(60)
    frame.loc[[0, 9], "time"] = [0.0, -2.0]
    message = _train(run_cli, tmp_path, _csv(tmp_path, frame), "--time", "time", "--event", "event")
    assert "time column 'time'" in message and "<= 0" in message and "rows 1, 10" in message


def test_events_not_zero_one(run_cli, tmp_path):
    frame = make_survival_table(60)
    frame.loc[4, "event"] = 2
    message = _train(run_cli, tmp_path, _csv(tmp_path, frame), "--time", "time", "--event", "event")
    assert "event column 'event' must be 0 (censored) or 1 (event)" in message and "rows 5" in message


def test_existing_output_is_never_overwritten(run_cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, _, stderr = run_cli("train", "--data", _csv(tmp_path, make_binary_table(60)), "--out", out, *FAST)
    assert code == 2 and "already exists" in stderr
    assert (out / "keep.txt").read_text() == "x"


def test_debug_shows_the_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "medai.cli", "--debug", "train", "--data", tmp_path / "no.csv"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_interrupted_run_is_resumable_and_never_looks_complete(tmp_path):
    """SIGINT mid-training keeps OUT.partial (with a checkpoint), never OUT; --resume finishes the same run."""
    data = _csv(tmp_path, make_binary_table(1200))
    recipe = tmp_path / "slow.yaml"
    # many small batches and no early stopping: training lasts several seconds, long enough to interrupt.
    # (Run the suite from a shell that does not ignore SIGINT: `cmd &` in a non-interactive shell does, and then
    # Python never raises KeyboardInterrupt.)
    recipe.write_text(
        f"name: slow\ndata: {{path: {data}}}\ntask: {{label: outcome}}\n"
        "training: {max_epochs: 10, batch_size: 8, patience: 1000}\nevaluation: {n_resamples: 100}\n"
    )
    out = tmp_path / "run"
    command = [sys.executable, "-m", "medai.cli", "train", str(recipe), "--out", str(out), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = out.with_name("run.partial") / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert checkpoint.exists(), "no checkpoint appeared"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr
    assert not out.exists() and out.with_name("run.partial").exists()

    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2 and "interrupted run" in again.stderr.lower()

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed from epoch" in resumed.stderr
    assert (out / "metrics.json").is_file() and not out.with_name("run.partial").exists()


def test_on_invalid_skip_drops_and_counts_records_with_invalid_outcomes(run_cli, tmp_path):
    frame = make_survival_table(120)
    frame.loc[[2, 30], "time"] = [-1.0, np.nan]
    frame.loc[7, "event"] = 3
    path = _csv(tmp_path, frame)
    out = tmp_path / "run"
    code, _, stderr = run_cli("train", "--data", path, "--time", "time", "--event", "event", "--on-invalid", "skip",
                              "--out", out, *FAST)
    assert code == 0, stderr
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["n_skipped"] == 3 and run["data"]["n_rows"] == 117
    assert any("Skipped 3 record(s)" in w and "rows 3, 8, 31" in w for w in run["warnings"])
    ids = set(pd.read_csv(out / "predictions.csv")["id"].astype(str))
    assert not ids & {"3", "8", "31"}  # ids keep the input's row numbers
