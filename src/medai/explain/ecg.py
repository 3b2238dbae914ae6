"""ECG strips for the report: a recording's most confident window with the model's prediction and a saliency
trace over time (integrated gradients, captum — see :func:`medai.explain.saliency.integrated_gradients`).

The saliency trace is the absolute attribution summed over leads and smoothed over 40 ms, scaled to [0, 1]: where
in time the evidence for the predicted class lies (an irregular RR interval, a wide QRS, a missing P wave). It is
drawn under the strip and as a shaded band behind it, in the style of an ECG printout (0.2 s / 0.5 mV grid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medai.core.config import TaskKind
from medai.core.outputs import write_bytes

#: Gauss–Legendre points of the integrated gradients of a strip.
IG_STEPS = 32


def window_saliency(predictor, window: np.ndarray, target: int) -> np.ndarray:
    """Saliency ``(samples,)`` in [0, 1] of one scaled window ``(leads, samples)`` for class index ``target``:
    |integrated gradients| (captum, zero baseline = a flat line at the training mean) summed over leads and
    smoothed over 40 ms. A binary model's single logit is explained for the positive class (target 1) or
    negated for the negative one."""
    from captum.attr import IntegratedGradients

    model = predictor.model.eval()
    single_logit = predictor.task["out_features"] == 1

    def forward(x: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        return torch.cat([-logits, logits], dim=1) if single_logit else logits

    x = torch.from_numpy(np.ascontiguousarray(window[None], dtype=np.float32))
    attribution = IntegratedGradients(forward).attribute(x, baselines=torch.zeros_like(x), target=int(target),
                                                         n_steps=IG_STEPS, internal_batch_size=IG_STEPS)
    trace = attribution.detach().abs().sum(dim=1)[0].numpy()
    width = max(1, int(0.04 * predictor.preprocessor.sampling_rate_hz))
    smooth = np.convolve(trace, np.ones(width) / width, mode="same")
    return (smooth / smooth.max()).astype(np.float32) if smooth.max() > 0 else smooth.astype(np.float32)


def draw_strip(predictor, signal: np.ndarray, *, record_id: str, truth: str | None, scores: np.ndarray,
               path: Path) -> dict[str, Any]:
    """Draw the window of ``signal`` (conditioned, ``(leads, samples)`` at the model's rate) where the predicted
    class is most probable, with its saliency; write a PNG to ``path``. Returns the report entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = predictor.kind
    names = predictor.task["class_names"]
    windows, starts = predictor.preprocessor.windows(signal)
    window_scores = predictor.scores(windows)
    if kind is TaskKind.BINARY:
        predicted = int(scores >= predictor.artifact.thresholds["threshold"])
        by_window = window_scores if predicted == 1 else 1 - window_scores
        label, probability = names[predicted], float(scores if predicted else 1 - scores)
    else:
        predicted = int(np.argmax(scores))
        by_window = window_scores[:, predicted]
        label, probability = names[predicted], float(np.asarray(scores)[predicted])
    best = int(np.argmax(by_window))
    saliency = window_saliency(predictor, windows[best], predicted)
    rate = predictor.preprocessor.sampling_rate_hz
    scale = np.asarray(predictor.preprocessor.scale_)[:, None]
    shown = windows[best] * scale  # back to mV
    t = (starts[best] + np.arange(shown.shape[1])) / rate

    n_leads = min(3, len(predictor.preprocessor.leads or []) or shown.shape[0])  # leads only, not the RR trace
    fig, axes = plt.subplots(n_leads + 1, 1, figsize=(10, 1.6 * n_leads + 1.0), sharex=True,
                             gridspec_kw={"height_ratios": [3] * n_leads + [1]})
    leads = predictor.preprocessor.leads or [f"lead {i + 1}" for i in range(shown.shape[0])]
    for j in range(n_leads):
        ax = axes[j]
        ax.imshow(saliency[None, :], aspect="auto", cmap="Oranges", alpha=0.45, vmin=0, vmax=1,
                  extent=(t[0], t[-1], shown[j].min() - 0.2, shown[j].max() + 0.2))
        ax.plot(t, shown[j], color="black", linewidth=0.7)
        ax.set_xticks(np.arange(np.ceil(t[0] / 0.2) * 0.2, t[-1], 0.2), minor=True)
        ax.grid(True, which="both", color="#f3b0b0", linewidth=0.4)
        ax.set_ylabel(f"{leads[j]} (mV)", fontsize=8)
    axes[-1].fill_between(t, saliency, color="tab:orange")
    axes[-1].set_ylim(0, 1.05)
    axes[-1].set_ylabel("saliency", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    title = f"{record_id}: predicted {label} (p = {probability:.2f})" + (f", reference {truth}" if truth else "")
    axes[0].set_title(title, fontsize=10)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(Path(path), buffer.getvalue())
    return {"id": record_id, "truth": truth, "pred": label, "probability": probability,
            "window_start_s": float(starts[best] / rate), "window_s": float(len(t) / rate),
            "image": f"{Path(path).parent.name}/{Path(path).name}", "method": "integrated gradients (captum)"}
