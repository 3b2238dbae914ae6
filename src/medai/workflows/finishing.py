"""Steps every labelled-sample workflow (images, ECG, EHR, text) runs the same way after its network is fitted.

The first piece of the shared run-finisher: recalibration and conformal calibration on validation
(:mod:`medai.evaluation.trust`), with operating thresholds re-chosen on the recalibrated validation scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medai.core.config import RunConfig
from medai.evaluation.trust import conformal, recalibrate


def calibrate_and_conform(predictor, task, split: dict[str, Any], scores: dict[str, np.ndarray],
                          config: RunConfig) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Fit recalibration and the conformal sets on validation, install both in ``predictor`` and transform
    ``scores`` in place. ``task`` has ``kind``, ``y`` (indexed by ``split``) and ``class_names``.

    Returns ``y`` per split (val, test), the recalibration report and the conformal report.
    """
    from medai.workflows.imaging import _thresholds

    seed = config.training.seed
    y = {s: task.y[split[s]] for s in ("val", "test")}
    recalibration = recalibrate(predictor, task.kind, scores, y["val"], y["test"], config.evaluation, seed,
                                rethreshold=lambda val: _thresholds(task, split, val, config))
    conformal_result = conformal(predictor, task.kind, scores, y, class_names=task.class_names,
                                 evaluation=config.evaluation, seed=seed)
    return y, recalibration, conformal_result
