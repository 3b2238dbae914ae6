"""Faster inference engines for served models: ONNX Runtime, or ``torch.compile`` with freezing (+ bf16 where the
CPU supports it). Chosen with `medai serve --runtime onnx|compiled` (default ``torch``: the network as trained).

Only the forward pass of predictions changes: preprocessing, recalibration, thresholds and conformal sets are the
Predictor's own, and explanations (which need gradients) keep using the PyTorch network. Before a model is served
with an engine, the engine's outputs on a batch of inputs are compared with PyTorch's; a model whose outputs differ
by more than the tolerance is refused (the service does not start) rather than served with different numbers.
"""

from __future__ import annotations

import io
import logging
import warnings
from enum import StrEnum
from typing import Any

import numpy as np
import torch

from medai.core.errors import InvalidParameterError, closest

log = logging.getLogger("medai.serve")

#: Largest |difference| of a probability / logit between an engine and PyTorch accepted at start-up.
FP32_TOLERANCE = 1e-4
#: bf16 keeps 8 bits of mantissa: logits differ by up to ~1e-2; probabilities compared after the sigmoid/softmax.
BF16_TOLERANCE = 3e-2


class Runtime(StrEnum):
    TORCH = "torch"
    ONNX = "onnx"
    COMPILED = "compiled"


def example_input(predictor, batch: int = 8, seed: int = 0) -> np.ndarray:
    """A float32 batch shaped like the network's input, for export and the start-up comparison."""
    rng = np.random.default_rng(seed)
    pre = predictor.preprocessor
    if predictor.is_image:
        shape = (pre.channels, *pre.image_size)
    elif predictor.is_ecg:
        shape = (pre.n_channels, pre.window_samples)
    elif predictor.is_ehr:
        shape = (pre.n_bins, pre.n_channels)
    elif predictor.is_text:
        raise InvalidParameterError("Text models run in PyTorch only (their tokenizer is part of the model); serve "
                                    "them with --runtime torch.")
    else:
        shape = (int(predictor.task["in_features"]),)
    return rng.normal(size=(batch, *shape)).astype(np.float32)


def use_runtime(predictor, runtime: Runtime | str) -> dict[str, Any]:
    """Switch ``predictor``'s forward pass to ``runtime`` after checking it against PyTorch; returns what was set
    up (engine, export/compile seconds, max difference)."""
    try:
        runtime = Runtime(runtime)
    except ValueError:
        raise InvalidParameterError(f"Unknown runtime '{runtime}'.{closest(str(runtime), list(Runtime))} Choose "
                                    f"one of {', '.join(Runtime)}.") from None
    if runtime is Runtime.TORCH:
        return {"runtime": "torch"}
    import time

    x = example_input(predictor)
    model = predictor.model.eval()
    with torch.no_grad():
        reference = model(predictor.model_input(x)).float().numpy()
    began = time.perf_counter()
    if runtime is Runtime.ONNX:
        forward, detail = _onnx(model, predictor.model_input(x))
        tolerance = FP32_TOLERANCE
    else:
        forward, detail = _compiled(model, predictor.model_input(x))
        tolerance = BF16_TOLERANCE if detail["bf16"] else FP32_TOLERANCE
    seconds = time.perf_counter() - began
    got = forward(predictor.model_input(x)).float().numpy()
    difference = float(np.abs(_probabilities(got) - _probabilities(reference)).max())
    if not np.isfinite(difference) or difference > tolerance:
        raise InvalidParameterError(
            f"{predictor.artifact.path}: the {runtime} engine's outputs differ from PyTorch's by {difference:.2g} "
            f"(tolerance {tolerance:g}); serve this model with --runtime torch.")
    predictor.forward = forward
    info = {"runtime": runtime.value, "setup_s": round(seconds, 2), "max_probability_difference": difference,
            **detail}
    log.info("runtime %s ready: %s", runtime.value, info)
    return info


def _probabilities(logits: np.ndarray) -> np.ndarray:
    from scipy.special import expit, softmax

    return expit(logits) if logits.shape[1] == 1 else softmax(logits, axis=1)


def _onnx(model: torch.nn.Module, x: torch.Tensor):
    import onnxruntime as ort

    buffer = io.BytesIO()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(model, (x,), buffer, input_names=["x"], output_names=["y"],
                          dynamic_shapes=({0: batch},), dynamo=True, verbose=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"x": inputs.detach().float().numpy()})[0])

    return forward, {"engine": f"ONNX Runtime {ort.__version__}", "bf16": False}


def _compiled(model: torch.nn.Module, x: torch.Tensor):
    import torch._inductor.config as inductor

    inductor.freezing = True  # weights become constants: folded into the compiled graph (inference only)
    from medai.workflows.imaging import amx_supported

    # bf16 only where it is fast (AMX tiles) and for convolutional inputs: with AVX512-BF16 alone it was slower
    # than fp32 here (docs/benchmarks.md), as for training
    bf16 = amx_supported() and x.ndim >= 3
    compiled = torch.compile(model, dynamic=True)

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return compiled(inputs.float()).float()

    # compile now, not on a request: the full batch, and batch 1 (dynamo specialises sizes 0 and 1, so a first
    # single-record request would recompile — from several server threads at once, which deadlocked)
    forward(x)
    forward(x[:1])
    return forward, {"engine": f"torch.compile (inductor, freezing{', bf16' if bf16 else ''})", "bf16": bf16}
