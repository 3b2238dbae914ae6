"""`medai explain RUN IMAGE`: a PNG with the image and its saliency overlay(s) for a trained image model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medai.core.config import TaskKind
from medai.core.errors import InvalidParameterError
from medai.core.outputs import write_bytes
from medai.explain.run import available_methods, display_maps, panel
from medai.explain.saliency import explain_images
from medai.io.images import read_image
from medai.registry.predictor import Predictor


def explain_image(run: Path, image_path: Path, out: Path, *, method: str = "both",
                  target: str | None = None) -> dict[str, Any]:
    """Write the overlay PNG of ``image_path`` to ``out`` (atomically); return what was predicted and explained.

    ``target``: the class (or finding) to explain, by name; default the predicted class (binary: the positive
    class, whose probability the model outputs).
    """
    predictor = Predictor.load(run)
    if not predictor.is_image:
        raise InvalidParameterError(f"{run}: `medai explain` needs an image model; this model takes table rows.")
    if out.suffix.lower() != ".png":
        raise InvalidParameterError(f"--out must end in .png; got '{out.name}'.")
    record = read_image(image_path)
    images, notes = predictor.prepare_images([record])
    scores = predictor.scores(images)
    names = predictor.task["class_names"]
    kind = predictor.kind
    if kind is TaskKind.BINARY:
        prediction = f"P({names[1]}) = {scores[0]:.3f} (threshold {predictor.artifact.thresholds['threshold']:.3f})"
        default = 1
    else:
        row = scores[0]
        default = int(np.argmax(row))
        prediction = ", ".join(f"P({n}) = {p:.3f}" for n, p in zip(names, row))
    if target is None:
        index = default
    elif target in names:
        index = names.index(target) if kind is not TaskKind.BINARY else (1 if target == names[1] else 0)
    else:
        raise InvalidParameterError(f"--target '{target}' is not one of the model's classes ({', '.join(names)}).")
    methods = available_methods(predictor.model)
    if method != "both":
        if method not in methods:
            raise InvalidParameterError(f"--method {method} is not available for this model (available: "
                                        f"{', '.join(methods)}).")
        methods = [method]
    x = predictor.model_input(images)
    maps = display_maps(explain_images(predictor.model, x, index, methods=methods))
    explained = names[index] if kind is not TaskKind.BINARY else names[index]
    png = panel(images[0], {m: maps[m][0] for m in methods}, title=f"{image_path.name}: explaining '{explained}'")
    write_bytes(out, png)
    return {"prediction": prediction, "target": explained, "methods": methods, "notes": notes[0]}
