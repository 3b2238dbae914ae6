"""ECG end to end through the CLI: a CinC-layout folder of synthetic recordings (neurokit2-based generator) →
`medai train` → `medai evaluate` on another folder → `medai predict` (incl. unusable signals) → `medai monitor`;
beats (AAMI, inter-patient); 12-lead multi-label in the PTB-XL layout; a real DICOM 12-lead ECG."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from medai.data.synthetic_ecg import synthesize_ecg, write_wfdb
from tests.ecg_fixtures import write_cinc_mat_record, write_ptbxl_folder
from tests.trust_checks import assert_trust_outputs

pytestmark = pytest.mark.slow
RATE = 300.0
#: class → (generator rhythm, heart rate) of the synthetic CinC-like folders: O is "other rhythm" (PVCs).
RHYTHM_OF = {"N": ("sinus", None), "A": ("af", None), "O": ("pvc", None)}


def write_rhythm_folder(root: Path, per_class: int, seed: int, extra: dict[str, np.ndarray] | None = None) -> Path:
    """REFERENCE.csv + records/*.mat/.hea (CinC 2017 layout) of synthetic N/A/O recordings of 12–30 s."""
    rng = np.random.default_rng(seed)
    lines = []
    for label, (rhythm, rate) in RHYTHM_OF.items():
        for i in range(per_class):
            name = f"{label if label != '~' else 'X'}{seed:02d}{i:03d}"
            ecg = synthesize_ecg(rhythm, duration_s=float(rng.uniform(12, 30)), sampling_rate_hz=RATE,
                                 heart_rate_bpm=rate if rate is None else rate, noise_mv=0.02,
                                 baseline_wander_mv=0.1, pvc_fraction=0.3, seed=seed * 1000 + len(lines))
            write_cinc_mat_record(root / "records", name, ecg.signal, RATE)
            lines.append(f"{name},{label}")
    for name, signal in (extra or {}).items():
        write_cinc_mat_record(root / "records", name, signal, RATE)
        lines.append(f"{name},N")
    (root / "REFERENCE.csv").write_text("\n".join(lines) + "\n")
    return root


def write_ecg_recipe(path: Path, data: Path, **sections) -> Path:
    recipe = {"name": "test-ecg", "data": {"path": str(data)},
              "model": {"name": "resnet1d", "width": 8, "stages": 3},
              "training": {"max_epochs": 12, "patience": 12, "batch_size": 32, "learning_rate": 0.003},
              "evaluation": {"n_resamples": 100}}
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def rhythm_run(tmp_path_factory):
    """One trained rhythm model shared by the tests below (train once: it is the slow part)."""
    from medai.cli import main

    root = tmp_path_factory.mktemp("ecg")
    data = write_rhythm_folder(root / "train", per_class=14, seed=1)
    recipe = write_ecg_recipe(root / "recipe.yaml", data)
    out = root / "run"
    code = main(["train", str(recipe), "--out", str(out), "--quiet"])
    assert code == 0
    return root, out


def test_train_rhythm_folder_writes_cinc_metrics_baseline_and_strips(rhythm_run):
    _, out = rhythm_run
    run = json.loads((out / "run.json").read_text())
    assert run["task"]["ecg_task"] == "rhythm" and run["task"]["class_names"] == ["N", "A", "O"]
    assert run["data"]["layout"] == "cinc" and run["data"]["sampling_rates_hz"] == [RATE]
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    for key in ("cinc2017_score", "f1_N", "f1_A", "f1_O", "auroc_A", "accuracy"):
        assert key in metrics
    assert metrics["auroc_A"]["value"] > 0.9  # synthetic AF (irregular RR, no P wave) is easy
    baselines = json.loads((out / "baselines.json").read_text())
    assert "cinc2017_score" in baselines["gradient_boosting"]["test"]
    assert run["ecg_examples"] and all((out / e["image"]).is_file() for e in run["ecg_examples"])
    checked = json.loads((out / "explanations.json").read_text())  # the same keys as tabular and EHR runs
    assert checked["n_explained"] == 8 and checked["faithfulness"]["baseline"] == "blur"
    window = round(run["task"]["window_s"] * run["task"]["sampling_rate_hz"])
    assert checked["faithfulness"]["n_elements"] == window  # one element per time sample, all leads together
    assert checked["summary"]["faithful_better_than_random"] is checked["faithfulness"]["better_than_random"]
    assert checked["summary"]["randomisation_test_passed"] is checked["randomisation"]["passed"]
    report = (out / "report.html").read_text()
    assert "ECG strips" in report and "Confusion matrix" in report and "CinC 2017 score (mean F1 of N, A, O)" in report


def test_rhythm_run_has_the_trust_outputs(rhythm_run):
    assert_trust_outputs(rhythm_run[1])


def test_evaluate_on_another_folder_scores_unusable_recordings_honestly(rhythm_run, run_cli):
    root, out = rhythm_run
    flat = np.zeros((1, int(20 * RATE)), dtype=np.float32)
    other = write_rhythm_folder(root / "other", per_class=6, seed=2, extra={"FLAT0001": flat})
    code, stdout, stderr = run_cli("evaluate", out, "--data", other, "--out", root / "external", "--bootstrap", "100")
    assert code == 0, stderr
    metrics = json.loads((root / "external" / "metrics.json").read_text())["external"]
    assert metrics["cinc2017_score"]["value"] > 0.8, metrics["cinc2017_score"]
    run = json.loads((root / "external" / "run.json").read_text())
    assert [u["id"] for u in run["data"]["unusable"]] == ["FLAT0001"]
    assert any("flat" in r for r in run["data"]["unusable"][0]["reasons"])
    assert any("failed the signal check" in w and "left out" in w for w in run["warnings"])  # no '~' class
    assert run["split"]["n"]["external"] == 18


def test_predict_gives_a_rhythm_or_says_why_the_signal_is_unusable(rhythm_run, run_cli, tmp_path):
    _, out = rhythm_run
    af = synthesize_ecg("af", duration_s=25, sampling_rate_hz=RATE, seed=77, noise_mv=0.02)
    write_cinc_mat_record(tmp_path, "AF1", af.signal, RATE)
    clipped = np.clip(synthesize_ecg("sinus", duration_s=20, sampling_rate_hz=RATE, seed=3).signal * 8, -1, 1)
    write_cinc_mat_record(tmp_path, "CLIP1", clipped, RATE)
    nan_run = synthesize_ecg("sinus", duration_s=20, sampling_rate_hz=RATE, seed=4)
    csv = tmp_path / "nan.csv"
    signal = nan_run.signal[0].astype(float)
    signal[1000:2500] = np.nan  # a 5 s gap
    pd.DataFrame({"time": np.arange(signal.size) / RATE, "ecg_mv": signal}).to_csv(csv, index=False)
    rows = {}
    for path in (tmp_path / "AF1.hea", tmp_path / "CLIP1.hea", csv):
        code, stdout, stderr = run_cli("predict", out, path)
        assert code == 0, stderr
        rows[path.stem] = pd.read_csv(io.StringIO(stdout)).iloc[0]
    assert rows["AF1"]["pred"] == "A" and rows["AF1"]["score_A"] > 0.5
    assert rows["CLIP1"]["pred"] == "unusable" and "clip" in rows["CLIP1"]["note"]
    assert rows["nan"]["pred"] == "unusable" and "NaN" in rows["nan"]["note"]
    assert np.isnan(rows["CLIP1"].get("score_A", np.nan))  # no rhythm score for garbage


def test_predict_without_a_sampling_rate_is_a_clear_error(rhythm_run, run_cli, tmp_path):
    _, out = rhythm_run
    csv = tmp_path / "headerless.csv"
    np.savetxt(csv, synthesize_ecg("sinus", duration_s=12, sampling_rate_hz=RATE, seed=5).signal[0])
    code, _, stderr = run_cli("predict", out, csv)
    assert code == 2 and "--sampling-rate" in stderr
    code, stdout, stderr = run_cli("predict", out, csv, "--sampling-rate", str(RATE))
    assert code == 0, stderr
    assert pd.read_csv(io.StringIO(stdout)).iloc[0]["pred"] in ("N", "A", "O")


def _episode_record(tmp_path: Path) -> Path:
    """60 s sinus → 60 s AF → 20 s flat line (lead off) → 40 s sinus, as one WFDB record."""
    parts = [synthesize_ecg("sinus", duration_s=60, sampling_rate_hz=RATE, seed=10, noise_mv=0.02).signal,
             synthesize_ecg("af", duration_s=60, sampling_rate_hz=RATE, seed=11, noise_mv=0.02).signal,
             np.zeros((1, int(20 * RATE)), np.float32),
             synthesize_ecg("sinus", duration_s=40, sampling_rate_hz=RATE, seed=12, noise_mv=0.02).signal]
    ecg = synthesize_ecg("sinus", duration_s=1, sampling_rate_hz=RATE, seed=0)
    from dataclasses import replace

    whole = replace(ecg, signal=np.concatenate(parts, axis=1), r_peaks=np.array([], dtype=np.int64), beat_symbols=[])
    return write_wfdb(whole, tmp_path, "episode", with_annotations=False)


def test_monitor_replays_a_record_with_timed_alerts(rhythm_run, run_cli, tmp_path):
    _, out = rhythm_run
    record = _episode_record(tmp_path)
    events_file = tmp_path / "events.jsonl"
    code, stdout, stderr = run_cli("monitor", out, "--record", record, "--alerts-only", "--out", events_file)
    assert code == 0, stderr
    alerts = [json.loads(line) for line in stdout.splitlines()]
    kinds = [a["alert"] for a in alerts]
    onset = next(a for a in alerts if a["alert"] == "af_onset")
    assert 60 < onset["t_s"] <= 85  # AF starts at 60 s; two confirming 10 s windows, 5 s apart
    flat = next(a for a in alerts if a["alert"] == "flat_line")
    assert 120 < flat["t_s"] <= 135
    assert kinds.index("af_onset") < kinds.index("flat_line") < kinds.index("signal_restored")
    lines = [json.loads(line) for line in events_file.read_text().splitlines()]
    windows = [e for e in lines if "rhythm" in e]
    assert all(e["rhythm"] is None for e in windows if e["signal"] == "unusable")  # never a rhythm on garbage
    summary = lines[-1]["summary"]
    assert summary["duration_s"] == pytest.approx(180.0) and summary["latency_ms"]["median"] > 0
    assert "x real time" in stderr


def test_monitor_reads_samples_from_standard_input(rhythm_run, run_cli, monkeypatch):
    _, out = rhythm_run
    signal = synthesize_ecg("af", duration_s=40, sampling_rate_hz=RATE, seed=21, noise_mv=0.02).signal[0]
    monkeypatch.setattr(sys, "stdin", io.StringIO("ecg\n" + "\n".join(f"{v:.4f}" for v in signal) + "\n"))
    code, stdout, stderr = run_cli("monitor", out, "--sampling-rate", str(RATE))
    assert code == 0, stderr
    events = [json.loads(line) for line in stdout.splitlines()]
    windows = [e for e in events if "rhythm" in e]
    assert len(windows) == 7  # 40 s, 10 s windows every 5 s
    assert any(e.get("alert") == "af_onset" for e in events)
    code, _, stderr = run_cli("monitor", out)
    assert code == 2 and "--sampling-rate" in stderr


def test_beat_classification_splits_by_record(tmp_path, run_cli):
    data = tmp_path / "beats"
    for i in range(9):
        ecg = synthesize_ecg("pvc", duration_s=40, sampling_rate_hz=360.0, seed=100 + i, pvc_fraction=0.25,
                             noise_mv=0.02)
        write_wfdb(ecg, data, f"rec{i}")
    recipe = write_ecg_recipe(tmp_path / "recipe.yaml", data, training={"max_epochs": 6})
    code, _, stderr = run_cli("train", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["task"]["ecg_task"] == "beats" and run["task"]["class_names"] == ["N", "V"]
    assert "inter-patient" in run["split"]["strategy"]
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert predictions.groupby("record")["split"].nunique().max() == 1  # no record in two splits
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert metrics["auroc"]["value"] > 0.9  # a PVC is wide, early and has no P wave

    # a new recording: R peaks detected, one prediction per beat with its time
    new = synthesize_ecg("pvc", duration_s=30, sampling_rate_hz=360.0, seed=500, pvc_fraction=0.25, noise_mv=0.02)
    header = write_wfdb(new, tmp_path / "new", "fresh", with_annotations=False)
    code, stdout, stderr = run_cli("predict", tmp_path / "run", header)
    assert code == 0, stderr
    beats = pd.read_csv(io.StringIO(stdout))
    assert set(beats["record"]) == {"fresh"} and beats["time_s"].is_monotonic_increasing
    truth_v = new.r_peaks[np.array(new.beat_symbols) == "V"] / 360.0
    called_v = beats.loc[beats["pred"] == "V", "time_s"].to_numpy()
    hits = sum(np.min(np.abs(called_v - t)) < 0.15 for t in truth_v if len(called_v))
    assert hits >= 0.8 * len(truth_v)  # PVCs found at their times
    code, _, stderr = run_cli("monitor", tmp_path / "run", "--record", header)
    assert code == 2 and "rhythm model" in stderr


def test_twelve_lead_ptbxl_layout_trains_multilabel_and_reads_a_real_dicom_ecg(tmp_path, run_cli):
    data = write_ptbxl_folder(tmp_path / "ptbxl", n_records=80)
    database = pd.read_csv(data / "ptbxl_database.csv")
    database["strat_fold"] = np.arange(len(database)) // 5 % 10 + 1  # every fold holds all five superclasses
    database.to_csv(data / "ptbxl_database.csv", index=False)
    recipe = write_ecg_recipe(tmp_path / "recipe.yaml", data, training={"max_epochs": 6})
    code, _, stderr = run_cli("train", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["task"]["kind"] == "multilabel" and run["task"]["class_names"] == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert run["task"]["leads"] == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert "strat_fold" in run["split"]["strategy"] and run["split"]["n"] == {"train": 70, "val": 5, "test": 5}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert "auroc" in metrics

    pydicom_data = pytest.importorskip("pydicom.data")
    dicom = pydicom_data.get_testdata_file("waveform_ecg.dcm", download=False)
    code, stdout, stderr = run_cli("predict", tmp_path / "run", dicom)
    assert code == 0, stderr
    row = pd.read_csv(io.StringIO(stdout)).iloc[0]
    assert row["id"] == "waveform_ecg" and {f"score_{c}" for c in ("CD", "MI", "NORM")} <= set(row.index)


def test_short_truncated_and_mismatched_recordings_are_refused_by_name(rhythm_run, run_cli, tmp_path):
    _, out = rhythm_run
    short = synthesize_ecg("sinus", duration_s=3, sampling_rate_hz=RATE, seed=6)
    write_cinc_mat_record(tmp_path, "SHORT1", short.signal, RATE)
    code, stdout, stderr = run_cli("predict", out, tmp_path / "SHORT1.mat")
    assert code == 0, stderr
    row = pd.read_csv(io.StringIO(stdout)).iloc[0]
    assert row["pred"] == "unusable" and "too short" in row["note"]

    header = write_wfdb(synthesize_ecg("sinus", duration_s=20, sampling_rate_hz=RATE, seed=7), tmp_path, "cut",
                        with_annotations=False)
    dat = tmp_path / "cut.dat"
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2])
    code, _, stderr = run_cli("predict", out, header)
    assert code == 2 and "cut.dat" in stderr and "truncated" in stderr

    lines = header.read_text().splitlines()
    fields = lines[0].split()
    fields[3] = str(int(fields[3]) // 4)  # the header now claims fewer samples than the file holds
    (tmp_path / "cut.dat").write_bytes(b"\x00\x00" * int(20 * RATE))
    header.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")
    code, _, stderr = run_cli("predict", out, header)
    assert code == 2 and "mismatch" in stderr


def test_the_service_path_takes_ecg_json_samples_and_wfdb_uploads(rhythm_run, tmp_path):
    """What `POST /models/{id}/predict` runs for an ECG model: JSON samples and uploaded record files give the
    same rhythm as `medai predict`, with a saliency strip; a flat line is referred, never given a rhythm."""
    import base64

    from medai.serve.models import load_served_model
    from medai.serve.predict import predict_files, predict_json

    _, out = rhythm_run
    model = load_served_model(out / "model")
    assert model.modality == "ecg"
    af = synthesize_ecg("af", duration_s=25, sampling_rate_hz=RATE, seed=77, noise_mv=0.02)
    body = {"sampling_rate_hz": RATE, "leads": ["I"], "signal": af.signal.tolist(), "id": "AF1"}
    (prediction,), _ = predict_json(model, body)
    assert prediction["decision"] == "A" and prediction["probability"]["A"] > 0.5
    assert prediction["explanation"]["type"] == "saliency_strip"
    assert base64.b64decode(prediction["explanation"]["png_base64"])[:4] == b"\x89PNG"
    write_cinc_mat_record(tmp_path, "AF1", af.signal, RATE)
    files = [(p.name, p.read_bytes()) for p in sorted(tmp_path.iterdir())]
    (uploaded,), _ = predict_files(model, files, explain=False)
    assert uploaded["id"] == "AF1" and uploaded["probability"] == pytest.approx(prediction["probability"], abs=1e-5)
    flat = {"sampling_rate_hz": RATE, "signal": [[0.0] * int(RATE * 20)]}
    (referred,), _ = predict_json(model, flat)
    assert referred["refer"] is True and referred["decision"] is None and "flat" in referred["refer_reason"]
    with pytest.raises(Exception, match="sampling_rate_hz"):
        predict_json(model, {"signal": [[0.1, 0.2]]})
