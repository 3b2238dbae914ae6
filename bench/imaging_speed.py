"""Imaging speed on the CPU: medai's trainer vs a plain fp32 PyTorch loop, and inference latency at batch 1.

Training throughput (images/s, same model, same data, same batch size, same run): a plain PyTorch loop (fp32,
contiguous memory, float images prepared in advance, the way most research code trains) against
:class:`medai.training.trainer.Trainer` with what ``medai train`` resolves for the input (uint8 images normalised
per batch; bf16 autocast + channels_last where the CPU has AMX and the input is at least 64 px, fp32 otherwise;
``--force-bf16`` measures bf16 + channels_last whatever the CPU). Augmentation is off in both so that the comparison is of the training step. Two workloads: the BreastMNIST
/ PneumoniaMNIST recipe network at 28 px (ResNet-18 with the small stem, half width) and a standard ResNet-18 at
224 px (chest-radiograph size). Goal: ≥ 2× where medai switches to bf16.

Inference latency (ms per image at batch 1, p50/p95 over 200 calls after 20 warm-up calls) for the same two
models, fp32 and bf16 + channels_last, eval mode, no gradients.

bf16 vs fp32 agreement: the BreastMNIST recipe (``recipes/breast-ultrasound.yaml``, 20 epochs, seed 42) trained
once in fp32 and once in bf16 + channels_last; test AUC, ACC and the largest difference between the two models'
test probabilities.

Run: ``python bench/imaging_speed.py [--quick]`` (writes bench/results/imaging_speed.json; about 3 minutes).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch import nn

import common
from medai.core.config import TaskKind
from medai.data.images import BatchAugmentation, ImagePreprocessor
from medai.models import build_model
from medai.training.losses import make_loss
from medai.training.trainer import Trainer
from medai.workflows.imaging import amx_supported, bf16_supported, resolve_precision

NAME = "imaging_speed"
WORKLOADS = {
    "28px_resnet18_small_half": {"size": 28, "params": {"stem": "small", "widen_factor": 0.5}, "batch": 128,
                                 "n": 1024},
    "224px_resnet18_standard": {"size": 224, "params": {"stem": "standard"}, "batch": 32, "n": 192},
}
GOAL = 2.0


def _data(size: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 1, size, size), dtype=np.uint8)
    labels = rng.integers(0, 2, n).astype(np.int64)
    return images, labels


def _plain_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """images/s of a textbook fp32 loop over pre-normalised float tensors (one epoch after a warm-up batch)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()

    def step(index):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[index]).squeeze(1), y[index].float())
        loss.backward()
        optimizer.step()

    step(torch.arange(batch))  # warm-up (oneDNN primitive creation)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    for start in range(0, len(x), batch):
        step(order[start:start + batch])
    return len(x) / (time.perf_counter() - started)


def _medai_trainer(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int, precision: str) -> float:
    preprocessor = ImagePreprocessor().fit(images)
    trainer = Trainer(model, make_loss(TaskKind.BINARY, labels, 1, None), max_epochs=2, batch_size=batch,
                      patience=10, seed=0, progress=False, batch_transform=BatchAugmentation(preprocessor, "none"),
                      precision=precision, channels_last=precision == "bf16", eval_batch_size=256)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    result = trainer.fit((x, y), (x[:batch], y[:batch]))  # epoch 1 warms up; epoch 2 is measured
    return float(result.history[-1]["samples_per_s"])


def _latency(model: nn.Module, size: int, precision: str, n_calls: int) -> dict[str, float]:
    model.eval()
    x = torch.randn(1, 1, size, size)
    if precision == "bf16":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for i in range(n_calls + 20):
            started = time.perf_counter()
            model(x)
            if i >= 20:
                times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "n_calls": n_calls}


def _precision_agreement(quick: bool) -> dict:
    import dataclasses
    import tempfile
    from pathlib import Path

    import pandas as pd
    from scipy.stats import spearmanr

    from medai.core.config import load_recipe
    from medai.pipeline import train

    root = Path(__file__).resolve().parents[1]
    data = root.parent / "shared" / "data" / "breastmnist" / "breastmnist.npz"
    if not data.is_file() or not bf16_supported():
        return {"skipped": "BreastMNIST file absent or no native bf16 on this CPU"}
    base = load_recipe(root / "recipes" / "breast-ultrasound.yaml")
    out: dict = {}
    scores = {}
    for precision in ("fp32", "bf16"):
        config = base.replace(
            data=dataclasses.replace(base.data, path=str(data)),
            training=dataclasses.replace(base.training, precision=precision, max_epochs=2 if quick else 20),
            evaluation=dataclasses.replace(base.evaluation, n_resamples=200, explained_images=0))
        with tempfile.TemporaryDirectory() as tmp:
            result = train(config, Path(tmp) / "run", progress=False)
            predictions = pd.read_csv(result.out / "predictions.csv")
        scores[precision] = predictions[predictions["split"] == "test"]["score"].to_numpy()
        out[precision] = {"auroc": result.metrics["test"]["auroc"], "accuracy": result.metrics["test"]["accuracy"],
                          "train_seconds": float(sum(r["seconds"] for r in result.run["training"]["history"]))}
        print(f"  BreastMNIST {precision}: test AUC {out[precision]['auroc']['value']:.3f}, ACC "
              f"{out[precision]['accuracy']['value']:.3f}, training {out[precision]['train_seconds']:.0f} s",
              flush=True)
    out["max_abs_probability_difference"] = float(np.abs(scores["fp32"] - scores["bf16"]).max())
    out["spearman_of_test_scores"] = float(spearmanr(scores["fp32"], scores["bf16"]).statistic)
    return out


def run(quick: bool = False, force_bf16: bool = False, agreement: bool = True) -> dict:
    started = time.perf_counter()
    torch.set_num_threads(2)
    results, table = {}, []
    for name, workload in WORKLOADS.items():
        size, batch = workload["size"], workload["batch"]
        n = batch * 2 if quick else workload["n"]
        images, labels = _data(size, n)
        precision = "bf16" if force_bf16 and size >= 64 else resolve_precision("auto", torch.device("cpu"),
                                                                                  (size, size))
        torch.manual_seed(0)
        plain_model = build_model("resnet18", 1, 1, {"spatial_dims": 2, **workload["params"]})
        x = (torch.from_numpy(images).float() / 255 - 0.5) / 0.25
        plain = _plain_loop(plain_model, x, torch.from_numpy(labels), batch)
        torch.manual_seed(0)
        medai_model = build_model("resnet18", 1, 1, {"spatial_dims": 2, **workload["params"]})
        ours = _medai_trainer(medai_model, images, labels, batch, precision)
        latency = {p: _latency(build_model("resnet18", 1, 1, {"spatial_dims": 2, **workload["params"]}), size, p,
                               20 if quick else 200) for p in ("fp32", "bf16")}
        results[name] = {"image_size": size, "batch_size": batch, "n_images": n, "medai_precision": precision,
                         "plain_fp32_images_per_s": plain, "medai_images_per_s": ours, "speedup": ours / plain,
                         "latency_batch1": latency}
        print(f"  {name}: plain fp32 {plain:.0f} img/s, medai ({precision}) {ours:.0f} img/s = {ours / plain:.2f}x; "
              f"latency fp32 p50 {latency['fp32']['p50_ms']:.1f} ms p95 {latency['fp32']['p95_ms']:.1f} ms, "
              f"bf16 p50 {latency['bf16']['p50_ms']:.1f} ms p95 {latency['bf16']['p95_ms']:.1f} ms", flush=True)
        table.append({"model": f"{name}: medai trainer / plain fp32 loop", "metric": "speedup", "mean": None,
                      "sd": None, "n_seeds": None, "value": ours / plain, "ci_low": None, "ci_high": None,
                      "published": None, "note": f"medai {precision}"})
    speedup_224 = results["224px_resnet18_standard"]["speedup"]
    agreement = _precision_agreement(quick) if agreement else {"skipped": "not requested (--no-agreement)"}
    return {
        "name": NAME,
        "title": "Imaging speed on the CPU: training throughput vs a plain fp32 loop, latency at batch 1",
        "date": common.today(),
        "machine": {**common.machine(), "bf16_instructions": bf16_supported(), "amx": amx_supported()},
        "quick": quick,
        "runtime_s": time.perf_counter() - started,
        "results": results,
        "bf16_vs_fp32_breastmnist": agreement,
        "table": table,
        "goal": {"metric": "speedup at 224 px (bf16 + channels_last)", "value": GOAL, "met": speedup_224 >= GOAL},
    }


def main(argv: list[str]) -> None:
    common.run_script(NAME, lambda quick: run(quick, force_bf16="--force-bf16" in argv,
                                              agreement="--no-agreement" not in argv), argv)


if __name__ == "__main__":
    main(sys.argv[1:])
