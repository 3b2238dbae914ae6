"""The same recipe under `torchrun` (2 processes, gloo on the CPU) gives the single-process result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from tests.conftest import write_image_recipe, write_lesion_npz

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_match_single_process_training(tmp_path, run_cli):
    data = write_lesion_npz(tmp_path / "lesions.npz", n=80)  # 48 train images: an even share per rank
    # GroupNorm: batch norm statistics would be per rank on CPUs (SyncBatchNorm needs CUDA); fp32: no bf16 noise
    recipe = write_image_recipe(tmp_path / "r.yaml", data, model={"norm": "group"},
                                training={"max_epochs": 2, "patience": 2, "batch_size": 16, "precision": "fp32"})
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "single", "--quiet")
    assert code == 0, err

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: torchrun starts its own rendezvous on a free local port (binds 127.0.0.1 only)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "medai.cli", "train", str(recipe), "--out", str(tmp_path / "ddp"), "--quiet"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and the workers still in its process group
        try:  # a worker outside the group would hold the pipe open: never wait on it forever
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            output = "(no output: a worker kept the pipe open after torchrun was killed)"
        pytest.fail(f"torchrun did not finish in 300 s; its output:\n{output[-4000:]}")
    assert process.returncode == 0, output[-4000:]

    runs = {name: json.loads((tmp_path / name / "run.json").read_text()) for name in ("single", "ddp")}
    assert runs["ddp"]["training"]["world_size"] == 2 and runs["single"]["training"]["world_size"] == 1
    losses = {name: [row["val_loss"] for row in run["training"]["history"]] for name, run in runs.items()}
    assert losses["ddp"] == pytest.approx(losses["single"], rel=1e-3)
    weights = {name: load_file(str(tmp_path / name / "model" / "weights.safetensors")) for name in runs}
    for key, value in weights["single"].items():
        # float reductions differ in order (gloo all-reduce); Adam turns that into ~1e-5 weight differences
        np.testing.assert_allclose(weights["ddp"][key], value, rtol=1e-2, atol=1e-3, err_msg=key)
    scores = {name: pd.read_csv(tmp_path / name / "predictions.csv")["score"] for name in runs}
    np.testing.assert_allclose(scores["ddp"], scores["single"], atol=1e-3)
    assert not (tmp_path / "ddp.partial").exists()
