"""Classical baselines trained in the same run, on the same split and preprocessing, for comparison.

They are reported, not shipped: the artefact holds the neural model only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sksurv.ensemble import RandomSurvivalForest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from medai.core.config import TaskKind
from medai.core.errors import InvalidParameterError
from medai.core.registry import Registry


@dataclass(frozen=True)
class Baseline:
    """A named classical model: which task kinds it serves and how to build it for a seed."""

    title: str
    kinds: tuple[TaskKind, ...]
    build: Callable[[int], object]


BASELINES: Registry[Baseline] = Registry("baseline")

BASELINES.register("logistic_regression")(Baseline(
    "Logistic regression (L2, C=1)", (TaskKind.BINARY, TaskKind.MULTICLASS),
    lambda seed: LogisticRegression(max_iter=5000, random_state=seed),
))
BASELINES.register("gradient_boosting")(Baseline(
    # the ECG feature baseline: HRV + morphology features, NaN where undefined (handled natively). scikit-learn's
    # defaults: they scored 0.766 (CinC 2017, 5 x 5-fold CV on the 200 records) where a class-balanced,
    # slower-learning variant scored 0.705
    "Gradient boosting (scikit-learn HistGradientBoosting, defaults: 100 iterations, learning rate 0.1)",
    (TaskKind.BINARY, TaskKind.MULTICLASS),
    lambda seed: HistGradientBoostingClassifier(random_state=seed),
))
BASELINES.register("ridge")(Baseline("Ridge regression (alpha=1)", (TaskKind.REGRESSION,), lambda seed: Ridge(alpha=1.0)))
BASELINES.register("cox_ph")(Baseline(
    # a tiny ridge penalty keeps the fit finite when missingness indicators are collinear
    "Cox proportional hazards (Efron ties)", (TaskKind.SURVIVAL,),
    lambda seed: CoxPHSurvivalAnalysis(alpha=1e-4, ties="efron"),
))
BASELINES.register("random_survival_forest")(Baseline(
    "Random survival forest (300 trees, min leaf 10)", (TaskKind.SURVIVAL,),
    lambda seed: RandomSurvivalForest(n_estimators=300, min_samples_leaf=10, max_features="sqrt", n_jobs=2,
                                      random_state=seed),
))

DEFAULT_BASELINES = {
    TaskKind.BINARY: ("logistic_regression",),
    TaskKind.MULTICLASS: ("logistic_regression",),
    TaskKind.REGRESSION: ("ridge",),
    TaskKind.SURVIVAL: ("cox_ph", "random_survival_forest"),
}


def check_baselines(names: tuple[str, ...], kind: TaskKind) -> None:
    for name in names:
        baseline = BASELINES.get(name)
        if kind not in baseline.kinds:
            raise InvalidParameterError(
                f"Baseline '{name}' does not apply to a {kind.value} task; use one of "
                f"{', '.join(DEFAULT_BASELINES[kind])}."
            )


class FittedBaseline:
    """A fitted baseline exposing the same score conventions as the Predictor (see ``Predictor.scores``)."""

    def __init__(self, name: str, kind: TaskKind | str, seed: int) -> None:
        self.name = name
        self.kind = TaskKind(kind)
        self.estimator = BASELINES.get(name).build(seed)

    def fit(self, x: np.ndarray, y=None, time=None, event=None) -> FittedBaseline:
        if self.kind is TaskKind.SURVIVAL:
            self.estimator.fit(x, Surv.from_arrays(event=event.astype(bool), time=time))
        else:
            self.estimator.fit(x, y)
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        if self.kind is TaskKind.BINARY:
            return self.estimator.predict_proba(x)[:, 1]
        if self.kind is TaskKind.MULTICLASS:
            return self.estimator.predict_proba(x)
        return self.estimator.predict(x)

    def survival_on(self, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """S(t|x) on ``grid``, ``(n, len(grid))``; times past the training range take the last value."""
        functions = self.estimator.predict_survival_function(x)
        out = np.empty((len(functions), len(grid)))
        for i, fn in enumerate(functions):
            out[i] = fn(np.clip(grid, fn.domain[0], fn.domain[1]))
        return out
