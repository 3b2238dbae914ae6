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


# ------------------------------------------------------------------------------------------- text baselines
#: Inverse regularisation strengths tried for the TF-IDF baseline; the one with the best validation AUROC wins.
TFIDF_C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


class TfidfLogistic:
    """TF-IDF of word 1-2-grams (sublinear tf, terms in at least 2 training texts) + L2 logistic regression;
    one-vs-rest for multi-label findings. ``C`` is chosen on the validation texts (best AUROC, macro over
    findings) when they are given to :meth:`fit`, then the model is refitted on the training texts only.

    Inputs are texts ``(n,)``; scores follow the Predictor's conventions (binary ``(n,)``, else ``(n, K)``).
    """

    def __init__(self, kind: TaskKind, seed: int = 0, c_grid: tuple[float, ...] = TFIDF_C_GRID) -> None:
        self.kind = TaskKind(kind)
        self.seed = seed
        self.c_grid = tuple(c_grid)

    def _estimator(self, c: float):
        from sklearn.multiclass import OneVsRestClassifier

        logistic = LogisticRegression(C=c, max_iter=5000, random_state=self.seed)
        return OneVsRestClassifier(logistic) if self.kind is TaskKind.MULTILABEL else logistic

    def fit(self, texts, y, val_texts=None, val_y=None) -> TfidfLogistic:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.metrics import roc_auc_score

        texts = _as_texts(texts)
        self.vectorizer_ = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        x = self.vectorizer_.fit_transform(texts)
        self.document_frequency_ = np.asarray((x > 0).sum(axis=0)).ravel()  # training texts holding each term
        self.val_auroc_ = {}
        candidates = self.c_grid if val_texts is not None else (10.0,)
        best = None
        for c in candidates:
            estimator = self._estimator(c).fit(x, y)
            if val_texts is not None:
                scores = self._scores(estimator, self.vectorizer_.transform(_as_texts(val_texts)))
                auroc = float(roc_auc_score(val_y, scores, average="macro", multi_class="ovr"))
                self.val_auroc_[c] = auroc
                if best is None or auroc > best[0]:
                    best = (auroc, c, estimator)
            else:
                best = (None, c, estimator)
        _, self.C_, self.estimator_ = best
        return self

    def _scores(self, estimator, x) -> np.ndarray:
        p = estimator.predict_proba(x)
        return p[:, 1] if self.kind is TaskKind.BINARY else p

    def scores(self, texts) -> np.ndarray:
        return self._scores(self.estimator_, self.vectorizer_.transform(_as_texts(texts)))

    def top_terms(self, n: int = 10, mask: np.ndarray | None = None) -> dict[int, list[tuple[str, float]]]:
        """The ``n`` terms with the largest positive coefficient per class or finding (key: class index; binary:
        one entry, the positive class); ``mask`` limits the candidates (e.g. to frequent terms)."""
        terms = self.vectorizer_.get_feature_names_out()
        if self.kind is TaskKind.MULTILABEL:
            rows = [e.coef_[0] for e in self.estimator_.estimators_]
        elif self.kind is TaskKind.BINARY:
            rows = [self.estimator_.coef_[0]]
        else:
            rows = list(self.estimator_.coef_)
        allowed = np.ones(len(terms), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        result = {}
        for k, row in enumerate(rows):
            order = [i for i in np.argsort(row)[::-1] if allowed[i]][:n]
            result[k] = [(str(terms[i]), float(row[i])) for i in order]
        return result


def _as_texts(texts) -> list[str]:
    texts = list(texts)
    if texts and not isinstance(texts[0], str):
        raise InvalidParameterError("The TF-IDF baseline takes texts (one string per record), not feature rows.")
    return texts


BASELINES.register("tfidf_logistic")(Baseline(
    "TF-IDF word 1-2-grams + logistic regression (C chosen on validation; one-vs-rest for findings)",
    (TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.MULTILABEL),
    lambda seed: TfidfLogistic(TaskKind.BINARY, seed),  # the text workflow builds it for its own kind
))
#: Baselines that read the raw text (the others read a feature matrix).
TEXT_BASELINES = ("tfidf_logistic",)
