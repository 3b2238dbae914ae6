"""Explanations written by an imaging training run: overlays for a few test images and the randomisation check.

Which images: the test images the model gets most confidently right and most confidently wrong for the positive
(or predicted) class, so a reader sees both what the model relies on and how it fails. The PNGs go to
``explanations/`` in the run folder and ``run.json["explanations"]`` lists them with the sanity-check numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medai.core.config import TaskKind
from medai.core.outputs import write_bytes, write_json
from medai.explain.overlay import max_saliency_slice, overlay_panel
from medai.explain.saliency import SaliencyMethod, displayable, explain_images, find_target_layer
from medai.explain.sanity import model_randomisation_check
from medai.core.errors import InvalidParameterError

METHOD_TITLES = {SaliencyMethod.GRAD_CAM.value: "Grad-CAM", SaliencyMethod.INTEGRATED_GRADIENTS.value:
                 "Integrated gradients"}


def available_methods(model) -> list[str]:
    """Grad-CAM needs a convolutional layer (not a ViT); integrated gradients works for every model."""
    try:
        find_target_layer(model)
    except InvalidParameterError:
        return [SaliencyMethod.INTEGRATED_GRADIENTS.value]
    return [SaliencyMethod.GRAD_CAM.value, SaliencyMethod.INTEGRATED_GRADIENTS.value]


def display_maps(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Maps in [0, 1] to draw: Grad-CAM as is, integrated gradients via :func:`displayable`."""
    return {name: (displayable(m) if name == SaliencyMethod.INTEGRATED_GRADIENTS.value else m)
            for name, m in maps.items()}


def panel(image: np.ndarray, maps: dict[str, np.ndarray], title: str) -> bytes:
    """One report/CLI figure for one image ``(C, *spatial)`` and its display maps ``{method: (*spatial)}``;
    volumes are shown at the slice with the largest saliency mass of the first map."""
    if image.ndim == 4:
        first = next(iter(maps.values()))
        image, _, index = max_saliency_slice(image, first)
        maps = {name: np.take(m, index, axis=-1) for name, m in maps.items()}
        title += f" (slice {index})"
    return overlay_panel(image, {METHOD_TITLES.get(n, n): m for n, m in maps.items()}, title=title)


def _pick(kind: TaskKind, y: np.ndarray, scores: np.ndarray, n: int) -> list[tuple[int, int, str]]:
    """(index, target class, why) for up to ``n`` test images."""
    if kind is TaskKind.BINARY:
        positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        chosen = []
        if len(positives):
            chosen.append((int(positives[np.argmax(scores[positives])]), 1, "most confident true positive"))
            chosen.append((int(positives[np.argmin(scores[positives])]), 1, "least confident positive"))
        if len(negatives):
            chosen.append((int(negatives[np.argmax(scores[negatives])]), 1, "most suspicious negative"))
            chosen.append((int(negatives[np.argmin(scores[negatives])]), 1, "most confident true negative"))
        return chosen[:n]
    if kind is TaskKind.MULTILABEL:
        finding = int(np.argmax(y.sum(axis=0)))
        order = np.argsort(-scores[:, finding])
        return [(int(i), finding, "highest probability of the most frequent finding") for i in order[:n]]
    predicted = scores.argmax(axis=1)
    right, wrong = np.flatnonzero(predicted == y), np.flatnonzero(predicted != y)
    right = right[np.argsort(-scores[right].max(axis=1))][: n // 2]
    chosen = [(int(i), int(predicted[i]), "confident correct") for i in right]
    wrong = wrong[np.argsort(-scores[wrong].max(axis=1))][: n - len(chosen)]
    chosen += [(int(i), int(predicted[i]), "confident error") for i in wrong]
    return chosen


def explain_test_images(predictor, images: np.ndarray, y: np.ndarray, scores: np.ndarray, *, ids: list[str],
                        class_names: list[str], kind: TaskKind, folder: Path, n_images: int = 4,
                        seed: int = 0) -> dict[str, Any]:
    """Overlay PNGs for up to ``n_images`` test images and the cascading randomisation check of each method.

    Args:
        predictor: the run's in-memory :class:`~medai.registry.predictor.Predictor` (fp32 model).
        images: uint8 test images ``(N, C, *spatial)``; ``y`` and ``scores`` as in the evaluation.
    """
    model = predictor.model
    folder.mkdir(parents=True, exist_ok=True)
    methods = available_methods(model)
    picks = _pick(kind, y, scores, n_images)
    if not picks:
        return {"methods": methods, "examples": [], "sanity": {}}
    index = np.array([p[0] for p in picks])
    targets = [p[1] for p in picks]
    x = predictor.model_input(images[index])
    maps = display_maps(explain_images(model, x, targets, methods=methods))
    examples = []
    for k, (i, target, why) in enumerate(picks):
        truth = _truth(kind, y[i], class_names)
        probability = float(scores[i] if kind is TaskKind.BINARY else scores[i, target])
        explained = class_names[target] if kind is not TaskKind.BINARY else class_names[1]
        title = f"{why}: truth {truth}, P({explained}) = {probability:.2f}"
        name = f"example_{k + 1}.png"
        write_bytes(folder / name, panel(images[i], {m: maps[m][k] for m in methods}, title))
        examples.append({"file": f"explanations/{name}", "id": str(ids[i]), "why": why, "truth": truth,
                         "explained_class": explained, "probability": probability})
    sanity = {m: model_randomisation_check(model, x, targets, m, seed=seed) for m in methods}
    result = {"methods": methods, "examples": examples, "sanity": sanity}
    write_json(folder / "explanations.json", result)
    return {"methods": methods, "examples": examples,
            "sanity": {m: {"final": s["final"], "reference": s["reference"], "interpretation": s["interpretation"],
                           "n_images": s["n_images"]} for m, s in sanity.items()}}


def _truth(kind: TaskKind, label: Any, class_names: list[str]) -> str:
    if kind is TaskKind.MULTILABEL:
        return ";".join(n for n, v in zip(class_names, label) if v) or "none"
    return class_names[int(label)]
