"""Peak memory (RSS) of 3-D training at 64³ on a CPU, against the goal "3-D training at 64³ under 4 GB RSS".

Each case runs in a fresh Python process (so that one case's allocator caches never count for another) that
imports torch and MONAI, builds the network, and trains it for a few iterations on random 64³ volumes with AdamW:

* ``unet3d``: medai's registered ``unet`` (MONAI U-Net) in 3-D with the segmentation recipes' layout (channels
  16-32-64-128, strides 2-2-2, one residual unit per block), 2 output classes, Dice + cross-entropy loss
  (MONAI ``DiceCELoss``), as the segmentation workflow trains it.
* ``resnet18_3d``: MONAI ``ResNet`` in the ResNet-18 layout (basic blocks 2-2-2-2, 64-128-256-512 channels) in 3-D
  with the stride-2 stem (``conv1_t_stride=2``; MONAI's default stride 1 costs about 4x), 2 classes,
  cross-entropy — a 3-D classification CNN.

The peak RSS is the process's ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after training (Linux: KiB), i.e.
everything the process ever held at once: interpreter, libraries, data, weights, optimizer state, activations and
gradients. Also recorded: the RSS after the imports (before any tensor is made) and the seconds per iteration.

Run: ``python bench/memory_3d.py`` (writes bench/results/memory_3d.json); ``--quick`` for a smoke test with one
iteration and batch 1, which writes nothing.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import common

NAME = "memory_3d"
GOAL_MB = 4096.0
SIZE = 64
ITERATIONS = 4  # after one warm-up iteration
#: (case, model, batch size).
CASES = (("unet3d", "unet3d", 2), ("unet3d", "unet3d", 4), ("unet3d", "unet3d", 8),
         ("resnet18_3d", "resnet18_3d", 4), ("resnet18_3d", "resnet18_3d", 8), ("resnet18_3d", "resnet18_3d", 16))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def child(model_name: str, batch: int, iterations: int) -> dict:
    """Train one case in this (fresh) process and return its measurements."""
    import torch
    from monai.losses import DiceCELoss
    from monai.networks.nets import ResNet

    from medai.models import build_model

    after_imports = _peak_mb()
    torch.manual_seed(0)
    if model_name == "unet3d":
        model = build_model("unet", 1, 2, {"spatial_dims": 3, "channels": [16, 32, 64, 128], "strides": [2, 2, 2],
                                           "num_res_units": 1})
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
        target = (torch.rand(batch, 1, SIZE, SIZE, SIZE) > 0.9).float()
    else:
        model = ResNet(block="basic", layers=[2, 2, 2, 2], block_inplanes=[64, 128, 256, 512], spatial_dims=3,
                       n_input_channels=1, num_classes=2, conv1_t_stride=2)
        loss_fn = torch.nn.CrossEntropyLoss()
        target = torch.randint(0, 2, (batch,))
    x = torch.randn(batch, 1, SIZE, SIZE, SIZE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    seconds = []
    for i in range(iterations + 1):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()
        if i:  # the first iteration allocates and warms up kernels
            seconds.append(time.perf_counter() - started)
    return {"model": model_name, "batch_size": batch, "input": [batch, 1, SIZE, SIZE, SIZE],
            "n_weights": sum(p.numel() for p in model.parameters()), "iterations": iterations,
            "rss_after_imports_mb": round(after_imports, 1), "peak_rss_mb": round(_peak_mb(), 1),
            "seconds_per_iteration": round(sum(seconds) / len(seconds), 3) if seconds else None,
            "torch_threads": torch.get_num_threads(), "final_loss": float(loss.detach())}


def run(quick: bool = False) -> dict:
    started = time.perf_counter()
    cases = (("unet3d", "unet3d", 1), ("resnet18_3d", "resnet18_3d", 1)) if quick else CASES
    iterations = 1 if quick else ITERATIONS
    results = []
    for case, model_name, batch in cases:
        completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", model_name,
                                    str(batch), str(iterations)], capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"case {case} (batch {batch}) failed:\n{completed.stderr[-2000:]}")
        entry = json.loads(completed.stdout.strip().splitlines()[-1])
        entry["case"] = case
        entry["under_goal"] = entry["peak_rss_mb"] < GOAL_MB
        results.append(entry)
    return {"name": NAME, "title": f"3-D training at {SIZE}³: peak RSS vs the {GOAL_MB:.0f} MB goal",
            "date": common.today(), "machine": common.machine(), "quick": quick,
            "runtime_s": time.perf_counter() - started,
            "protocol": __doc__.split("Run:")[0].strip(),
            "goal": {"metric": "peak_rss_mb", "max": GOAL_MB, "met": all(r["under_goal"] for r in results)},
            "cases": results}


def main(argv: list[str]) -> int:
    if "--child" in argv:
        i = argv.index("--child")
        print(json.dumps(child(argv[i + 1], int(argv[i + 2]), int(argv[i + 3]))))
        return 0
    payload = run(quick="--quick" in argv)
    print(f"{payload['title']} — {payload['runtime_s']:.0f} s")
    for r in payload["cases"]:
        print(f"  {r['case']:<12} batch {r['batch_size']}: peak RSS {r['peak_rss_mb']:7.0f} MB (after imports "
              f"{r['rss_after_imports_mb']:.0f} MB), {r['seconds_per_iteration']} s/iteration, "
              f"{'under' if r['under_goal'] else 'OVER'} {GOAL_MB:.0f} MB")
    print(f"  goal (all cases under {GOAL_MB:.0f} MB): {'met' if payload['goal']['met'] else 'NOT met'}")
    if not payload["quick"]:
        print(f"  -> {common.write_result(NAME, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
