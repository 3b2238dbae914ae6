"""The trust step every training workflow runs (tabular, imaging, ECG, EHR, text): one place, so each modality
gets the same checks and writes the same files.

1. :func:`recalibrate` — right after the network is fitted and before thresholds and metrics: a recalibration map
   (temperature, Platt, isotonic or none) chosen on the validation split by cross-validated log-loss, stored in the
   artefact (``recalibration.json``) and applied by the Predictor, so the reported and the served probabilities are
   the same; thresholds are then chosen on the recalibrated validation scores. ECE before/after on test.
2. :func:`conformal` — split-conformal prediction sets (classification), intervals (regression) or risk-group sets
   (survival) calibrated on validation; the artefact keeps the conformal state (``conformal.json``) so every
   prediction carries ``abstain`` ("refer to clinician") and its prediction set.
3. :func:`write_trust_files` — ``fairness.json`` (subgroups and intersections with CIs and gaps, min-n warnings,
   ThresholdOptimizer mitigation for binary tasks), ``lineage.json`` (data hashes, split membership, code version,
   environment, seeds), ``trust.json`` (the recalibration and conformal reports, selective risk).
4. :func:`write_tripod` — ``tripod_ai.json`` from the run's files, last, before the report.

Keys added to ``metrics.json`` for the test split: ``conformal_target``, ``conformal_coverage``, ``abstain_rate``,
``ece_before_recalibration``, ``ece`` (after).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medai.core.config import EvaluationConfig, TaskKind
from medai.core.outputs import write_json
from medai.evaluation.conformal import conformal_report, selective_risk_curve
from medai.evaluation.fairness import fairness_audit, group_attributes, mitigate_thresholds
from medai.evaluation.recalibration import Recalibrator, recalibration_report
from medai.registry.lineage import build_lineage
from medai.registry.tripod import build_tripod_checklist, render_tripod_checklist

#: Miscoverage of the conformal sets: 90 % of test cases should have the truth in their set.
CONFORMAL_ALPHA = 0.1
CLASSIFICATION = (TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.MULTILABEL)


def recalibrate(predictor, kind: TaskKind, scores: dict[str, np.ndarray], y_val: np.ndarray, y_test: np.ndarray,
                evaluation: EvaluationConfig, seed: int,
                rethreshold: Callable[[np.ndarray], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Fit a recalibration map on validation, install it in ``predictor`` and transform ``scores`` in place.

    ``rethreshold(val_scores) -> thresholds`` re-chooses the operating thresholds on the recalibrated validation
    scores (None keeps them: multi-class argmax needs none). Returns the report (before/after on test); regression
    and survival get ``{"applicable": False, ...}``.
    """
    if kind not in CLASSIFICATION:
        return recalibration_report(kind.value, scores["val"], y_val, scores["test"], y_test)
    report = recalibration_report(kind.value, scores["val"], y_val, scores["test"], y_test,
                                  n_resamples=evaluation.n_resamples, confidence=evaluation.confidence, seed=seed)
    state = report["recalibrator"]
    methods = state.get("method")
    if any(m != "none" for m in (methods if isinstance(methods, list) else [methods])):
        recalibrator = Recalibrator.from_dict(state)
        for split in list(scores):
            scores[split] = recalibrator.transform(scores[split])
        predictor.install_recalibration(state)
        if rethreshold is not None:
            predictor.artifact.thresholds = rethreshold(scores["val"])
    return report


def conformal(predictor, kind: TaskKind, scores: dict[str, np.ndarray], y: dict[str, np.ndarray], *,
              class_names: list[str] | None, evaluation: EvaluationConfig, seed: int,
              survival: dict[str, Any] | None = None) -> dict[str, Any]:
    """Conformal sets calibrated on validation, coverage and abstention on test; installs the conformal state in
    ``predictor``. ``survival``: ``{"time": {split: ...}, "event": {split: ...}, "horizon", "cutoff"}``."""
    kwargs: dict[str, Any] = {}
    if kind is TaskKind.SURVIVAL:
        y = {s: np.column_stack([survival["time"][s], survival["event"][s]]) for s in ("val", "test")}
        kwargs.update(horizon=survival["horizon"], cutoff=survival["cutoff"])
    report = conformal_report(kind.value, scores["val"], y["val"], scores["test"], y["test"], CONFORMAL_ALPHA,
                              class_names=class_names if kind in (TaskKind.MULTICLASS, TaskKind.MULTILABEL) else None,
                              confidence=evaluation.confidence, n_resamples=evaluation.n_resamples, seed=seed,
                              **kwargs)
    predictor.install_conformal(report["predictor"])
    return report


def trust_metrics(recalibration: dict[str, Any], conformal_result: dict[str, Any]) -> dict[str, Any]:
    """The keys every run adds to ``metrics.json``'s test split."""
    metrics = dict(conformal_result.get("metrics") or {})
    calibration = recalibration.get("metrics") or {}
    if recalibration.get("applicable", True):  # regression and survival have no probabilities to recalibrate
        for key in ("ece_before_recalibration", "ece"):
            if key in calibration:
                metrics[key] = calibration[key]
    return metrics


def write_trust_files(work: Path, *, kind: TaskKind, scores: dict[str, np.ndarray], y: dict[str, np.ndarray] | None,
                      thresholds: dict[str, Any], class_names: list[str] | None,
                      frames: dict[str, pd.DataFrame] | None, evaluation: EvaluationConfig, seed: int,
                      recalibration: dict[str, Any], conformal_result: dict[str, Any],
                      lineage: dict[str, Any], survival: dict[str, Any] | None = None) -> dict[str, Any]:
    """``fairness.json``, ``lineage.json`` and ``trust.json`` into ``work``; returns the fairness audit.

    ``frames``: per split (``val``, ``test``) a frame of attributes (sex, age, race/ethnicity, user columns named
    by ``evaluation.subgroups``); None when the data has none (the audit then holds the overall row only).
    ``lineage``: keyword arguments of :func:`medai.registry.lineage.build_lineage`.
    """
    requested = tuple(evaluation.subgroups or ())
    groups = {s: (group_attributes(frames[s], requested) if frames is not None and s in frames else {})
              for s in ("val", "test")}
    test_y = None if kind is TaskKind.SURVIVAL else y["test"]
    audit = fairness_audit(kind.value, groups["test"], test_y, scores["test"], threshold=thresholds.get("threshold"),
                           class_names=class_names,
                           time=survival["time"]["test"] if survival else None,
                           event=survival["event"]["test"] if survival else None,
                           min_n=evaluation.min_subgroup_n, n_resamples=evaluation.n_resamples,
                           confidence=evaluation.confidence, seed=seed)
    if kind is TaskKind.BINARY and groups["test"]:
        audit["mitigation"] = {
            attribute: mitigate_thresholds(y["val"], scores["val"], groups["val"][attribute], y["test"],
                                           scores["test"], groups["test"][attribute],
                                           threshold=thresholds["threshold"], attribute=attribute,
                                           n_resamples=evaluation.n_resamples, confidence=evaluation.confidence,
                                           seed=seed)
            for attribute in groups["test"] if " × " not in attribute and attribute in groups["val"]}
    write_json(work / "fairness.json", audit)
    write_json(work / "lineage.json", build_lineage(**lineage))
    selective = None
    if kind in CLASSIFICATION:
        selective = selective_risk_curve(kind.value, y["test"], scores["test"],
                                         threshold=thresholds.get("threshold") or thresholds.get("label_thresholds"))
    write_json(work / "trust.json", {
        "recalibration": {k: v for k, v in recalibration.items() if k != "recalibrator"},
        "conformal": {k: v for k, v in conformal_result.items() if k != "predictor"},
        "selective_risk": selective,
    })
    return audit


def write_tripod(work: Path) -> dict[str, Any]:
    """``tripod_ai.json`` (and ``tripod_ai.md``) decided from the run's files; call after the model card."""
    from medai.core.outputs import write_text

    checklist = build_tripod_checklist(work)
    write_json(work / "tripod_ai.json", checklist)
    write_text(work / "tripod_ai.md", render_tripod_checklist(checklist))
    return checklist


def check_explanations(predictor, x_test: np.ndarray, kind: TaskKind, *, y=None, time=None, event=None,
                       feature_groups: dict[str, list[int]] | None = None, blur_sigma=None,
                       evaluation: EvaluationConfig, seed: int, n_explained: int = 16) -> dict[str, Any]:
    """Explanations that are checked, for feature vectors (tabular) and sequences (EHR): permutation importance
    on the test split (per input column / concept, CIs), and for a few test inputs integrated-gradients
    attributions with deletion/insertion curves against random orderings and the parameter-randomisation test
    (Adebayo et al. 2018). ``kind`` multi-class explains the predicted class; other kinds the single output."""
    from medai.explain.faithfulness import faithfulness_report, gradient_attribution, randomisation_test, \
        torch_model_fn
    from medai.explain.importance import permutation_importance

    importance = permutation_importance(
        predictor.scores, x_test, kind=kind.value, y=y, time=time, event=event, groups=feature_groups,
        n_repeats=5, n_resamples=min(evaluation.n_resamples, 200), confidence=evaluation.confidence, seed=seed)
    model = predictor.model
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x_test), size=min(n_explained, len(x_test)), replace=False))
    inputs = np.asarray(x_test[pick], dtype=np.float32)
    target = None
    if kind is TaskKind.MULTICLASS:
        target = [int(t) for t in predictor.scores(inputs).argmax(axis=1)]
    elif kind is TaskKind.MULTILABEL:
        target = [int(t) for t in predictor.scores(inputs).argmax(axis=1)]

    def attribute(m, batch, t):
        return gradient_attribution(m, batch, t, method="integrated_gradients", n_steps=16)

    with _eval_mode(model):
        attributions = attribute(model, inputs, target)
        faithfulness = faithfulness_report(torch_model_fn(model), inputs, attributions, target=target,
                                           baseline="zero" if inputs.ndim == 2 else "blur",
                                           blur_sigma=blur_sigma, seed=seed)
        randomisation = randomisation_test(model, attribute, inputs, target, seed=seed)
    return {"importance": importance, "faithfulness": faithfulness, "randomisation": randomisation,
            "n_explained": int(len(pick)),
            "summary": {"n_important": importance.get("n_important"),
                        "faithful_better_than_random": faithfulness.get("better_than_random"),
                        "randomisation_test_passed": randomisation.get("passed")}}


class _eval_mode:
    """Attributions in eval mode (dropout off); the model's mode is restored afterwards."""

    def __init__(self, model) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)
