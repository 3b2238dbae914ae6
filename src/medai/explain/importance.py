"""Permutation importance on the test split, per original input column (Breiman 2001; Fisher, Rudin & Dominici,
JMLR 2019, "model reliance"), with bootstrap confidence intervals.

The importance of an input is how much the model's test metric drops when that input's values are shuffled across
records, breaking its link with the outcome while keeping its distribution. A group of encoded columns that comes
from one original column (a numeric value and its missing-indicator, the one-hot columns of a category; the value,
mask and time-since-last channels of one EHR concept) is shuffled together, so the importance is that of the
original column. For EHR sequences ``(n, bins, channels)`` a record receives another record's whole time series of
that concept.

Why our own loop rather than :func:`sklearn.inspection.permutation_importance`: scikit-learn permutes one 2-D
column at a time, cannot shuffle a group of columns together or the channels of a 3-D sequence, and gives only the
spread over repeats (the permutation noise), not an interval over test records. Here the model is called on
batches of ``batch_size`` permuted rows (several groups / repeats packed into one call) so memory stays bounded.

The confidence interval is a percentile bootstrap over test records (stratified by class / event, as
:func:`medai.evaluation.bootstrap.bootstrap_metrics`): each resample draws records with replacement and one of
the repeats' permutations (resample ``b`` uses repeat ``b mod n_repeats``), and computes
``metric(intact) - metric(permuted)`` on the same records. The interval thus covers both the test-sample
variability and the permutation noise of a single repeat (slightly wider than that of the mean over repeats — on
the safe side). The point estimate is the mean drop over the repeats on all test records.

Caveats, carried in the ``interpretation`` text: importance is reliance of *this model* on an input on *this*
data, not a causal effect; two correlated inputs share their importance (shuffling one leaves the other), so
both can look unimportant; shuffling creates records that may not occur in reality.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, invalid_parameter

__all__ = [
    "DEFAULT_METRIC",
    "ImportanceMetric",
    "ehr_channel_groups",
    "importance_chart",
    "permutation_importance",
    "tabular_feature_groups",
]


class ImportanceMetric(StrEnum):
    """The test metric whose drop measures importance (all are "higher is better")."""

    AUROC = "auroc"  # binary; multiclass: macro one-vs-rest; multilabel: mean over labels
    AVERAGE_PRECISION = "average_precision"  # binary; multilabel: mean over labels
    R2 = "r2"  # regression
    NEG_MAE = "neg_mae"  # regression: minus the mean absolute error, in the target's unit
    C_INDEX = "c_index"  # survival: Harrell's concordance (scikit-survival)


#: The metric used when none is given.
DEFAULT_METRIC = {
    TaskKind.BINARY: ImportanceMetric.AUROC,
    TaskKind.MULTICLASS: ImportanceMetric.AUROC,
    TaskKind.MULTILABEL: ImportanceMetric.AUROC,
    TaskKind.REGRESSION: ImportanceMetric.R2,
    TaskKind.SURVIVAL: ImportanceMetric.C_INDEX,
}
_ALLOWED = {
    TaskKind.BINARY: (ImportanceMetric.AUROC, ImportanceMetric.AVERAGE_PRECISION),
    TaskKind.MULTICLASS: (ImportanceMetric.AUROC,),
    TaskKind.MULTILABEL: (ImportanceMetric.AUROC, ImportanceMetric.AVERAGE_PRECISION),
    TaskKind.REGRESSION: (ImportanceMetric.R2, ImportanceMetric.NEG_MAE),
    TaskKind.SURVIVAL: (ImportanceMetric.C_INDEX,),
}
_DISPLAY = {"auroc": "AUROC", "average_precision": "average precision", "r2": "R²", "neg_mae": "-MAE",
            "c_index": "C-index"}


# ---------------------------------------------------------------------------------------------------- groups


def tabular_feature_groups(preprocessor) -> dict[str, list[int]]:
    """Encoded-column indices of each original column of a fitted
    :class:`medai.data.preprocess.TabularPreprocessor`: the standardised value and its ``__missing`` indicator of a
    numeric column, the one-hot columns ``column=value`` of a categorical one.

    Returns:
        ``{original column: [indices into feature_names_out_]}`` in the preprocessor's column order.

    Raises:
        InvalidParameterError: ``preprocessor`` is not a fitted TabularPreprocessor.
    """
    owner = "tabular_feature_groups"
    needed = ("numeric_columns", "indicator_columns_", "categories_", "feature_names_out_")
    try:
        names = list(preprocessor.feature_names_out_)
        present = all(hasattr(preprocessor, a) for a in needed)
    except Exception:  # an unfitted preprocessor raises NotFittedError from the property
        present = False
    if not present:
        raise invalid_parameter("preprocessor", owner, "a fitted TabularPreprocessor (call fit first)",
                                type(preprocessor).__name__)
    numeric = list(preprocessor.numeric_columns)
    groups: dict[str, list[int]] = {c: [i] for i, c in enumerate(numeric)}
    position = len(numeric)
    for column in preprocessor.indicator_columns_:
        groups[column].append(position)
        position += 1
    for column, categories in preprocessor.categories_.items():
        groups[column] = list(range(position, position + len(categories)))
        position += len(categories)
    if position != len(names):  # the encoding layout changed: fail loudly rather than mislabel columns
        raise DataValidationError(
            f"{owner}: the groups cover {position} encoded columns but the preprocessor outputs {len(names)}; "
            "update tabular_feature_groups to the TabularPreprocessor's column layout."
        )
    return groups


def ehr_channel_groups(featurizer) -> dict[str, list[int]]:
    """Channel indices of each concept of a fitted :class:`medai.data.ehr_features.EhrFeaturizer`: the value,
    the observation mask and the time since the last measurement of that concept (with ``indicators``), then
    ``age`` and ``sex`` (its three one-hot channels).

    Returns:
        ``{concept: [channel indices]}`` for the last axis of the ``(n, bins, channels)`` sequences.

    Raises:
        InvalidParameterError: ``featurizer`` is not a fitted EhrFeaturizer.
    """
    concepts = getattr(featurizer, "concepts_", None)
    if concepts is None or not hasattr(featurizer, "indicators"):
        raise invalid_parameter("featurizer", "ehr_channel_groups", "a fitted EhrFeaturizer (call fit first)",
                                type(featurizer).__name__)
    c = len(concepts)
    blocks = 3 if featurizer.indicators else 1  # value | mask | time since last, each a block of c channels
    groups = {concept: [j + b * c for b in range(blocks)] for j, concept in enumerate(concepts)}
    groups["age"] = [blocks * c]
    groups["sex"] = [blocks * c + 1, blocks * c + 2, blocks * c + 3]
    if blocks * c + 4 != featurizer.n_channels:
        raise DataValidationError(
            f"ehr_channel_groups: the groups cover {blocks * c + 4} channels but the featurizer outputs "
            f"{featurizer.n_channels}; update ehr_channel_groups to the EhrFeaturizer's channel layout."
        )
    return groups


# ---------------------------------------------------------------------------------------------------- metrics


def _metric_function(kind: TaskKind, metric: ImportanceMetric, n_classes: int) -> Callable[..., float]:
    """``fn(truth..., scores) -> float`` (NaN where undefined on these records)."""
    from sklearn.metrics import average_precision_score, mean_absolute_error, r2_score, roc_auc_score

    def binary(score_fn):
        def fn(y, s):
            return float(score_fn(y, s)) if 0 < y.sum() < len(y) else math.nan
        return fn

    def per_label(score_fn):
        def fn(y, s):
            values = [score_fn(y[:, k], s[:, k]) for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
            return float(np.mean(values)) if values else math.nan
        return fn

    if metric is ImportanceMetric.C_INDEX:
        from sksurv.metrics import concordance_index_censored

        def c_index(time, event, risk):
            try:
                return float(concordance_index_censored(event, time, risk)[0])
            except ValueError:  # no comparable pair (e.g. every record censored)
                return math.nan
        return c_index
    if kind is TaskKind.MULTICLASS:
        labels = np.arange(n_classes)

        def macro_auroc(y, s):
            if len(np.unique(y)) < n_classes:
                return math.nan  # one-vs-rest AUROC of an absent class is undefined
            return float(roc_auc_score(y, s, multi_class="ovr", average="macro", labels=labels))
        return macro_auroc
    score = roc_auc_score if metric is ImportanceMetric.AUROC else average_precision_score
    if kind is TaskKind.MULTILABEL:
        return per_label(score)
    if kind is TaskKind.BINARY:
        return binary(score)
    if metric is ImportanceMetric.R2:
        return lambda y, s: float(r2_score(y, s)) if np.ptp(y) > 0 else math.nan
    return lambda y, s: -float(mean_absolute_error(y, s))


# ---------------------------------------------------------------------------------------------------- main


def permutation_importance(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    inputs: np.ndarray,
    *,
    kind: TaskKind | str,
    y: np.ndarray | None = None,
    time: np.ndarray | None = None,
    event: np.ndarray | None = None,
    groups: Mapping[str, Sequence[int]] | Sequence[str] | None = None,
    feature_axis: int = -1,
    metric: ImportanceMetric | str | None = None,
    n_repeats: int = 5,
    n_resamples: int = 200,
    confidence: float = 0.95,
    batch_size: int = 1024,
    seed: int = 0,
) -> dict[str, Any]:
    """Permutation importance of each input (group of columns / channels) on the test split, with bootstrap CIs.

    Example (tabular binary model, one importance per original column)::

        result = permutation_importance(predictor.scores, x_test, kind="binary", y=y_test,
                                        groups=tabular_feature_groups(predictor.preprocessor))
        result["features"][0]  # {"name": "age", "importance": 0.081, "ci_low": 0.05, "ci_high": 0.11, ...}

    Cost: ``n_repeats * len(groups)`` model passes over the test rows, and ``n_resamples * (1 + len(groups))``
    metric evaluations (measured on 2 shared CPU cores: AUROC ~2 ms and Harrell's C ~10 ms at n = 1000).

    Args:
        predict_fn: ``(b, *shape)`` float32 array → scores with medai's conventions: binary P(positive) ``(b,)``,
            multiclass probabilities ``(b, K)``, multilabel ``(b, K)``, regression prediction ``(b,)``, survival
            log relative risk ``(b,)`` (higher = earlier event). E.g. :meth:`Predictor.scores`.
        inputs: ``(n, *shape)`` encoded test inputs: tabular ``(n, features)``, EHR ``(n, bins, channels)``,
            ECG ``(n, leads, samples)``.
        kind: ``binary``, ``multiclass``, ``multilabel``, ``regression`` or ``survival``.
        y: ``(n,)`` labels (binary 0/1, class indices, regression targets) or ``(n, K)`` multilabel 0/1.
        time: ``(n,)`` follow-up time (survival).
        event: ``(n,)`` 1 = event observed, 0 = censored (survival).
        groups: ``{name: [indices along feature_axis]}`` permuted together (see :func:`tabular_feature_groups`,
            :func:`ehr_channel_groups`); or one name per index along ``feature_axis``; None names them
            ``feature_0``, ``feature_1``, ...
        feature_axis: axis of ``inputs`` (counting the record axis 0) that the group indices refer to: ``-1``
            for tabular columns and EHR channels, ``1`` for ECG leads.
        metric: an :class:`ImportanceMetric` allowed for ``kind``; None: AUROC (classification), R² (regression),
            Harrell's C-index (survival).
        n_repeats: permutations per group; the importance is the mean drop over them.
        n_resamples: bootstrap resamples of the CI (0: no interval).
        confidence: coverage of the interval, in (0, 1).
        batch_size: most rows per call of ``predict_fn`` (bounds memory).
        seed: seed of the permutations and of the bootstrap.

    Returns:
        A JSON-serialisable dict: ``method`` ("permutation"), ``kind``, ``metric``, ``n_samples``, ``n_repeats``,
        ``n_resamples``, ``confidence``, ``seed``, ``baseline`` (the intact model's metric ``{value, ci_low,
        ci_high}``), ``features`` (one per group, most important first: ``rank``, ``name``, ``n_columns``,
        ``importance`` (mean drop of the metric; > 0 = the model relies on it), ``ci_low``, ``ci_high``,
        ``sd_repeats``, ``repeats``), ``n_important`` (groups whose interval lies above 0) and
        ``interpretation``. Undefined values are None.

    Raises:
        InvalidParameterError: an invalid parameter (kind, metric, groups, counts, seed).
        DataValidationError: inputs, truth or model scores of the wrong shape, or non-finite.
    """
    owner = "permutation_importance"
    task = _kind(kind, owner)
    chosen = _metric(metric, task, owner)
    for name, value, low in (("n_repeats", n_repeats, 1), ("n_resamples", n_resamples, 0),
                             ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise invalid_parameter(name, owner, f"an integer >= {low}", value)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise invalid_parameter("confidence", owner, "a number in the open interval (0, 1)", confidence)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise invalid_parameter("seed", owner, "an integer", seed)
    x = np.asarray(inputs)
    if x.ndim < 2 or x.shape[0] < 2 or not np.issubdtype(x.dtype, np.number):
        raise DataValidationError(
            f"{owner}: 'inputs' must be a numeric array (n_samples >= 2, features...); got shape {x.shape} of "
            f"{x.dtype}. Pass the encoded test inputs."
        )
    if not -x.ndim < feature_axis < x.ndim or feature_axis == 0 or feature_axis == -x.ndim:
        raise invalid_parameter("feature_axis", owner, f"an axis of the inputs other than 0 (ndim {x.ndim})",
                                feature_axis)
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise DataValidationError(f"{owner}: 'inputs' holds NaN or infinite values; pass the encoded (imputed) "
                                  "inputs the model takes.")
    n = x.shape[0]
    named = _groups(groups, x.shape[feature_axis], owner)
    truth, strata = _truth(task, n, y, time, event, owner)

    base_scores = _predict(predict_fn, x, batch_size, owner)
    _check_scores(base_scores, task, truth, n, owner)
    n_classes = base_scores.shape[1] if base_scores.ndim == 2 else 2
    fn = _metric_function(task, chosen, n_classes)

    # Every group's permutations are scored before the bootstrap so that all groups share the same resampled
    # records (a paired comparison between groups): memory is n * groups * repeats * K float32 scores.
    rng = np.random.default_rng(seed)
    permutations = [[rng.permutation(n) for _ in range(n_repeats)] for _ in named]
    permuted = _score_permuted(predict_fn, x, feature_axis, list(named.values()), permutations, batch_size, owner)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined metrics on a resample are NaN by design
        base_value = fn(*truth, base_scores)
        drops = np.array([[base_value - fn(*truth, permuted[g][r]) for r in range(n_repeats)]
                          for g in range(len(named))])
        base_ci, drop_ci = _bootstrap(fn, truth, strata, base_scores, permuted, n_resamples, confidence, rng)

    features = []
    for g, name in enumerate(named):
        finite = drops[g][np.isfinite(drops[g])]
        features.append({
            "name": name,
            "n_columns": len(named[name]),
            "importance": _number(finite.mean()) if finite.size else None,
            "ci_low": drop_ci[g][0],
            "ci_high": drop_ci[g][1],
            "sd_repeats": _number(finite.std(ddof=1)) if finite.size > 1 else None,
            "repeats": [_number(v) for v in drops[g]],
        })
    features.sort(key=lambda f: -math.inf if f["importance"] is None else f["importance"], reverse=True)
    for rank, entry in enumerate(features, start=1):
        entry["rank"] = rank
    features = [{"rank": f.pop("rank"), **f} for f in features]
    n_important = sum(1 for f in features if f["ci_low"] is not None and f["ci_low"] > 0)
    result = {
        "method": "permutation",
        "kind": task.value,
        "metric": chosen.value,
        "n_samples": n,
        "n_repeats": int(n_repeats),
        "n_resamples": int(n_resamples),
        "confidence": float(confidence),
        "seed": int(seed),
        "baseline": {"value": _number(base_value), "ci_low": base_ci[0], "ci_high": base_ci[1]},
        "features": features,
        "n_important": n_important,
    }
    result["interpretation"] = _interpret(result)
    return result


# ---------------------------------------------------------------------------------------------------- helpers


def _kind(kind: TaskKind | str, owner: str) -> TaskKind:
    try:
        task = TaskKind(kind)
    except ValueError:
        task = None
    if task not in DEFAULT_METRIC:
        raise invalid_parameter("kind", owner, f"one of {[k.value for k in DEFAULT_METRIC]}", kind)
    return task


def _metric(metric: ImportanceMetric | str | None, task: TaskKind, owner: str) -> ImportanceMetric:
    if metric is None:
        return DEFAULT_METRIC[task]
    allowed = _ALLOWED[task]
    try:
        chosen = ImportanceMetric(metric)
    except ValueError:
        chosen = None
    if chosen not in allowed:
        raise invalid_parameter("metric", owner, f"one of {[m.value for m in allowed]} for a {task.value} task",
                                metric)
    return chosen


def _groups(groups, size: int, owner: str) -> dict[str, list[int]]:
    if groups is None:
        return {f"feature_{i}": [i] for i in range(size)}
    if isinstance(groups, Mapping):
        named = {}
        for name, indices in groups.items():
            index = np.asarray(indices)
            if index.ndim != 1 or index.size == 0 or not np.issubdtype(index.dtype, np.integer) \
                    or index.min() < 0 or index.max() >= size:
                raise invalid_parameter("groups", owner, f"a mapping of names to non-empty lists of indices in "
                                        f"[0, {size})", f"{name!r}: {list(np.atleast_1d(index))[:10]}")
            named[str(name)] = [int(i) for i in index]
        flat = [i for idx in named.values() for i in idx]
        if len(flat) != len(set(flat)):
            raise invalid_parameter("groups", owner, "groups that do not share indices (each column in one group)",
                                    "overlapping groups")
        if not named:
            raise invalid_parameter("groups", owner, "a non-empty mapping", "{}")
        return named
    names = [str(g) for g in groups]
    if len(names) != size or len(set(names)) != size:
        raise invalid_parameter("groups", owner, f"{size} distinct names, one per index along the feature axis",
                                f"{len(names)} names")
    return {name: [i] for i, name in enumerate(names)}


def _truth(task: TaskKind, n: int, y, time, event, owner: str) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
    if task is TaskKind.SURVIVAL:
        if time is None or event is None:
            raise InvalidParameterError(f"{owner}: a survival task needs 'time' and 'event' (one per record).")
        t = np.asarray(time, dtype=float)
        e = np.asarray(event)
        for name, arr in (("time", t), ("event", e)):
            if arr.shape != (n,):
                raise DataValidationError(f"{owner}: '{name}' must have shape ({n},), one per input; got {arr.shape}.")
        if not np.isfinite(t).all() or not np.isin(e, (0, 1)).all():
            raise DataValidationError(f"{owner}: 'time' must be finite and 'event' 0/1; check the survival columns.")
        return (t, e.astype(bool)), e.astype(int)
    if y is None:
        raise InvalidParameterError(f"{owner}: a {task.value} task needs 'y', the test labels or targets.")
    target = np.asarray(y)
    expected = (n, target.shape[1] if target.ndim == 2 else -1) if task is TaskKind.MULTILABEL else (n,)
    if target.shape[0] != n or target.ndim != len(expected):
        raise DataValidationError(f"{owner}: 'y' must have {n} rows (one per input) and {len(expected)} dimension(s); "
                                  f"got shape {target.shape}.")
    if task is TaskKind.REGRESSION:
        target = target.astype(float)
        if not np.isfinite(target).all():
            raise DataValidationError(f"{owner}: 'y' holds NaN or infinite targets; drop those records first.")
        return (target,), None
    if task is TaskKind.MULTICLASS:
        valid = np.isfinite(target.astype(float)).all() and (target == np.round(target)).all() and target.min() >= 0
    else:
        valid = np.isin(target, (0, 1)).all()
    if not valid:
        expected = "class indices 0..K-1" if task is TaskKind.MULTICLASS else "0/1 labels"
        raise DataValidationError(f"{owner}: 'y' must hold {expected} without NaN for a {task.value} task.")
    target = target.astype(int)
    return (target,), (target if task in (TaskKind.BINARY, TaskKind.MULTICLASS) else None)


def _predict(predict_fn, x: np.ndarray, batch_size: int, owner: str) -> np.ndarray:
    parts = [np.asarray(predict_fn(np.ascontiguousarray(x[i:i + batch_size])), dtype=np.float32)
             for i in range(0, x.shape[0], batch_size)]
    return np.concatenate(parts)


def _check_scores(scores: np.ndarray, task: TaskKind, truth, n: int, owner: str) -> None:
    two_d = task in (TaskKind.MULTICLASS, TaskKind.MULTILABEL)
    if scores.shape[0] != n or scores.ndim != (2 if two_d else 1):
        layout = "(n, K)" if two_d else "(n,)"
        raise DataValidationError(
            f"{owner}: predict_fn must return {layout} scores for a {task.value} task; got shape {scores.shape}. "
            "Use the Predictor.scores conventions (binary P(positive), survival log-risk)."
        )
    if task is TaskKind.MULTILABEL and scores.shape != truth[0].shape:
        raise DataValidationError(f"{owner}: predict_fn returns {scores.shape} scores but 'y' has shape "
                                  f"{truth[0].shape}; one column per label is needed.")
    if not np.isfinite(scores).all():
        raise DataValidationError(f"{owner}: predict_fn returned NaN or infinite scores on the intact inputs.")
    if task is TaskKind.MULTICLASS and truth[0].max() >= scores.shape[1]:
        raise DataValidationError(f"{owner}: 'y' holds class index {int(truth[0].max())} but predict_fn returns "
                                  f"{scores.shape[1]} class probabilities.")


def _score_permuted(predict_fn, x: np.ndarray, axis: int, groups: list[list[int]],
                    permutations: list[list[np.ndarray]], batch_size: int, owner: str) -> list[list[np.ndarray]]:
    """Scores ``[group][repeat] -> (n, ...)`` of the inputs with each group permuted across records; rows of
    several (group, repeat) pairs are packed into calls of at most ``batch_size`` rows."""
    n = x.shape[0]
    moved = np.moveaxis(x, axis, -1)  # a view: the group indices address the last axis
    pieces = [(g, r, start, min(start + batch_size, n)) for g in range(len(groups))
              for r in range(len(permutations[g])) for start in range(0, n, batch_size)]
    out: list[list[list[np.ndarray]]] = [[[] for _ in p] for p in permutations]
    pending: list[tuple[int, int, int, int]] = []
    rows = 0

    def flush() -> None:
        chunks = []
        for g, r, start, stop in pending:
            chunk = moved[start:stop].copy()
            chunk[..., groups[g]] = moved[permutations[g][r][start:stop]][..., groups[g]]
            chunks.append(chunk)
        batch = np.ascontiguousarray(np.moveaxis(np.concatenate(chunks), -1, axis))
        scores = np.asarray(predict_fn(batch), dtype=np.float32)
        if scores.shape[0] != batch.shape[0] or not np.isfinite(scores).all():
            raise DataValidationError(f"{owner}: predict_fn returned {scores.shape[0]} rows or non-finite scores "
                                      f"for {batch.shape[0]} permuted inputs.")
        offset = 0
        for g, r, start, stop in pending:
            out[g][r].append(scores[offset:offset + stop - start])
            offset += stop - start

    for piece in pieces:
        if pending and rows + piece[3] - piece[2] > batch_size:
            flush()
            pending, rows = [], 0
        pending.append(piece)
        rows += piece[3] - piece[2]
    if pending:
        flush()
    return [[np.concatenate(parts) for parts in per_group] for per_group in out]


def _bootstrap(fn, truth, strata, base_scores, permuted, n_resamples: int, confidence: float,
               rng: np.random.Generator) -> tuple[tuple, list[tuple]]:
    """Percentile intervals of the intact metric and of each group's drop (see the module docstring)."""
    n_groups = len(permuted)
    if n_resamples == 0:
        return (None, None), [(None, None)] * n_groups
    n = base_scores.shape[0]
    if strata is None:
        blocks = [np.arange(n)]
    else:
        _, inverse = np.unique(strata, return_inverse=True)
        blocks = [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)]
    import sklearn

    base = np.full(n_resamples, math.nan)
    drops = np.full((n_groups, n_resamples), math.nan)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):  # inputs validated above
        for b in range(n_resamples):
            rows = np.concatenate([k[rng.integers(0, k.size, k.size)] for k in blocks])
            picked = tuple(a[rows] for a in truth)
            base[b] = fn(*picked, base_scores[rows])
            for g in range(n_groups):
                repeats = permuted[g]
                drops[g, b] = base[b] - fn(*picked, repeats[b % len(repeats)][rows])
    return _interval(base, confidence), [_interval(d, confidence) for d in drops]


def _interval(values: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size * 2 < values.size:  # the same rule as bootstrap_metrics: mostly undefined → no interval
        return None, None
    alpha = (1 - confidence) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return _number(low), _number(high)


def _number(value: float) -> float | None:
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def _interpret(result: dict[str, Any]) -> str:
    metric = _DISPLAY[result["metric"]]
    features = result["features"]
    level = f"{round(100 * result['confidence'])}%"
    parts = []
    top = [f for f in features if f["importance"] is not None][:3]
    if top:
        described = []
        for f in top:
            ci = (f" ({level} CI {f['ci_low']:.3f} to {f['ci_high']:.3f})" if f["ci_low"] is not None
                  and f["ci_high"] is not None else "")
            described.append(f"{f['name']} {f['importance']:.3f}{ci}")
        parts.append(f"Shuffling an input across the {result['n_samples']} test records lowers the {metric} "
                     f"(intact: {result['baseline']['value']}) most for: " + "; ".join(described) + ".")
    if result["n_resamples"]:
        parts.append(f"{result['n_important']} of {len(features)} inputs have an interval above 0 (the model "
                     "relies on them).")
    parts.append("Importance is this model's reliance on an input on these data, not a causal effect; correlated "
                 "inputs share importance (shuffling one leaves the other), so both can look unimportant.")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------- chart


def importance_chart(result: Mapping[str, Any], top: int = 20, title: str = "") -> str:
    """Horizontal bar chart of a :func:`permutation_importance` result (the ``top`` most important inputs, bars =
    mean drop, whiskers = the bootstrap interval) as base64 PNG text for ``<img src="data:image/png;base64,...">``.

    Raises:
        InvalidParameterError: ``result`` is not a permutation_importance result, or ``top`` < 1.
    """
    owner = "importance_chart"
    if not isinstance(result, Mapping) or "features" not in result or "metric" not in result:
        raise invalid_parameter("result", owner, "the dict returned by permutation_importance", type(result).__name__)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise invalid_parameter("top", owner, "a positive integer", top)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [f for f in result["features"] if f["importance"] is not None][:top][::-1]  # largest at the top
    names = [f["name"] for f in shown]
    values = np.array([f["importance"] for f in shown], dtype=float)
    low = np.array([f["ci_low"] if f["ci_low"] is not None else f["importance"] for f in shown], dtype=float)
    high = np.array([f["ci_high"] if f["ci_high"] is not None else f["importance"] for f in shown], dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.28 * max(len(shown), 1)))
    colours = ["tab:blue" if f["ci_low"] is not None and f["ci_low"] > 0 else "tab:gray" for f in shown]
    ax.barh(np.arange(len(shown)), values, color=colours,
            xerr=np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)]),
            error_kw={"ecolor": "black", "capsize": 2, "linewidth": 0.8})
    ax.set_yticks(np.arange(len(shown)), names, fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel(f"drop in {_DISPLAY.get(result['metric'], result['metric'])} when shuffled")
    ax.set_title(title or "Permutation importance (test split)", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
