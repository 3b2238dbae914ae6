"""Real-time monitoring speed: MIT-BIH record 100 (30 min, 360 Hz, lead MLII) replayed through `medai monitor`'s
:class:`medai.workflows.monitor.RhythmMonitor` with the rhythm model `medai train --data cinc2017_af` produces.

Goal (issue 4): at least 100× real time on 2 CPU cores, with the latency per window measured. Latency = wall time
from a window being complete to its event: signal check, band-pass + notch, resampling, R peaks for the RR traces
and the network's forward pass for one 10 s window. The replay feeds 1 s chunks as fast as the monitor takes them,
single process. Reported: × real time over the whole record (wall clock, including reading nothing: the record
is read first), and per-window latency median / p95 / max. The same replay with 2 torch threads and with 1.

Run: ``python bench/monitor_speed.py [--quick] [--run RUN_FOLDER]`` (writes bench/results/monitor_speed.json). Without
``--run`` it first trains the default model on ``../shared/data/cinc2017_af`` (a few minutes).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import common
from medai.core.config import DataConfig, RunConfig, TaskConfig, TrainingConfig
from medai.io.ecg import read_ecg
from medai.pipeline import train
from medai.registry.predictor import Predictor
from medai.workflows.monitor import RhythmMonitor, replay

NAME = "monitor_speed"
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RECORD = SHARED / "ecg_wfdb_samples" / "100.hea"
CINC = SHARED / "cinc2017_af"
GOAL_X_REAL_TIME = 100.0


def _replay(predictor: Predictor, record, threads: int, seconds: float | None) -> dict:
    torch.set_num_threads(threads)
    data = record.data if seconds is None else record.data[:, :int(seconds * record.meta["sampling_rate_hz"])]
    monitor = RhythmMonitor(predictor, record.meta["sampling_rate_hz"], record.meta["lead_names"])
    started = time.perf_counter()
    events = list(replay(monitor, data))
    wall = time.perf_counter() - started
    summary = monitor.summary(data.shape[1], wall)
    rhythms = [e["rhythm"] for e in events if "rhythm" in e]
    summary["threads"] = threads
    summary["rhythm_counts"] = {str(r): rhythms.count(r) for r in sorted(set(rhythms), key=str)}
    summary["alerts"] = [e for e in events if "alert" in e][:20]
    return summary


def run(quick: bool = False, run_dir: str | None = None) -> dict:
    if not RECORD.is_file():
        raise SystemExit(f"{RECORD} not found (see ../shared/DATA.md).")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if run_dir is None:
            config = RunConfig(data=DataConfig(path=str(CINC)), task=TaskConfig(),
                               training=TrainingConfig(max_epochs=3 if quick else None))
            run_dir = str(train(config, Path(tmp) / "run", progress=False).out)
            trained_here = True
        else:
            trained_here = False
        predictor = Predictor.load(run_dir)
        record = read_ecg(RECORD)
        seconds = 300.0 if quick else None
        by_threads = {threads: _replay(predictor, record, threads, seconds) for threads in (2, 1)}
    best = max(by_threads.values(), key=lambda s: s["x_real_time"])
    table = [common.row(f"monitor, MIT-BIH 100, {t} torch thread(s)", "x_real_time",
                        None, {"value": s["x_real_time"], "ci_low": None, "ci_high": None},
                        note=f"latency median {s['latency_ms']['median']} ms, p95 {s['latency_ms']['p95']} ms")
             for t, s in by_threads.items()]
    return {
        "name": NAME,
        "title": "medai monitor: MIT-BIH record 100 (30 min, 360 Hz) replayed through the CinC rhythm model",
        "date": common.today(), "machine": common.machine(), "quick": quick,
        "runtime_s": time.perf_counter() - started,
        "protocol": __doc__.split("Goal (issue 4): ")[1].split("Run:")[0].strip(),
        "model": {"trained_here": trained_here, "window_s": predictor.preprocessor.window_s,
                  "stride_s": predictor.preprocessor.stride_s,
                  "sampling_rate_hz": predictor.preprocessor.sampling_rate_hz,
                  "network": predictor.artifact.config.model.name},
        "replays": {str(t): s for t, s in by_threads.items()},
        "table": table,
        "goal": {"metric": "x real time (best thread count)", "value": GOAL_X_REAL_TIME,
                 "met": bool(best["x_real_time"] >= GOAL_X_REAL_TIME)},
    }


def main(argv: list[str]) -> None:
    run_dir = argv[argv.index("--run") + 1] if "--run" in argv else None
    common.run_script(NAME, lambda quick: run(quick, run_dir), argv)


if __name__ == "__main__":
    main(sys.argv[1:])
