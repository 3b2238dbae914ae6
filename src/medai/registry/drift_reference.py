"""The drift reference stored with a model (``drift_reference.json``): what the model's inputs and outputs looked
like on the validation split, in a form a service can compare live traffic against with the population stability
index (PSI).

Per monitored feature the reference holds only aggregates — quantile bin edges and the share of validation samples
in each bin (numeric features), or category shares (categorical features) — never a sample's values. It is computed
at training time on the **validation** split (never test, which stays untouched for evaluation) by
:func:`build_drift_reference`, from the features :func:`features_for` derives from the *model input*. The service
calls the same :func:`features_for` on each request's model input, so the reference and live values are computed by
the same code from the same representation.

Which features, per input kind (all derived from what the network receives):

- ``tabular``: one feature per raw column of the table — numeric columns as their standardised (z) value after
  imputation (PSI on quantile bins does not change under the z transform, so this is the raw column's
  distribution with missing cells at the training median; ``display_edges`` holds the bin edges in the column's
  own unit, for reports), ``<column> (missing)`` for each column that has a
  missingness indicator, and each categorical column as its category (``unseen`` for a category not seen in
  training). Per raw column rather than per one-hot column: a clinician reads "smoker shifted", not
  "smoker=current shifted", and a category missing from training shows up as its own bin.
- ``image``: intensity mean, s.d., 5th and 95th percentile per image, on the model's uint8 input scale (0–255),
  i.e. after resizing and intensity windowing — exposure, scanner and protocol changes show up here.
- ``ecg``: the amplitude s.d. of each lead (in units of the training amplitude scale); with RR channels, the heart
  rate (bpm) and mean absolute successive RR change (s). A recording's values are the mean over its windows.
- ``ehr``: per concept its mean standardised value over the bins where it was measured and (with indicators) the
  fraction of bins measured; age (standardised) and sex.
- ``text``: length in words.

Scores (what the model outputs, after recalibration): binary ``probability`` (P(positive)); multi-class
``max_probability`` and ``predicted_class``; multi-label ``probability:<finding>``; regression ``value``; survival
``log_relative_risk``.

Numeric bins: the deciles of the reference (``n_bins`` - 1 inner edges, ties merged; fewer bins when the reference
has under ``MIN_PER_BIN`` samples per bin), open-ended outer bins
``(-inf, e_1]`` and ``(e_k, inf)``, and a last bin for missing or non-finite values. Categorical bins: the reference
categories and a last ``other`` bin for any category the reference did not hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, invalid_parameter

#: drift_reference.json format version.
FORMAT_VERSION = 1
#: Quantile bins per numeric feature (fewer when the reference is small: see MIN_PER_BIN).
N_BINS = 10
#: Reference samples per numeric bin at least: with fewer, the reference shares themselves are so noisy that two
#: samples of one distribution give PSI values near the 0.1 threshold (see :func:`expected_psi_no_shift`).
MIN_PER_BIN = 10
#: Proportions are floored at this value in the PSI, so that an empty bin gives a large but finite term
#: (the usual convention; Yurdakul 2018, "Statistical properties of population stability index").
PSI_EPSILON = 1e-4
#: The conventional reading of the PSI: below 0.1 stable, 0.1 to 0.25 moderate shift, above 0.25 major shift.
PSI_MODERATE, PSI_MAJOR = 0.1, 0.25
#: Label of the categorical bin for categories absent from the reference, and of unseen tabular categories.
OTHER = "other"
UNSEEN = "unseen"


class InputKind(StrEnum):
    """What a model takes (the artefact's ``preprocessor.json`` ``type``)."""

    TABULAR = "tabular"
    IMAGE = "image"
    ECG = "ecg"
    EHR = "ehr"
    TEXT = "text"


class DriftLevel(StrEnum):
    """The conventional reading of a PSI value."""

    STABLE = "stable"      # PSI < 0.1
    MODERATE = "moderate"  # 0.1 <= PSI <= 0.25
    MAJOR = "major"        # PSI > 0.25


# ------------------------------------------------------------------------------------------------------ features
def input_kind_of(source: Any) -> InputKind:
    """The :class:`InputKind` of a Predictor, a fitted preprocessor, or a ``preprocessor.json`` dict."""
    preprocessor = _preprocessor(source)
    if isinstance(preprocessor, Mapping):
        kind = preprocessor.get("type")
    else:
        from medai.data.ecg_preprocessor import EcgPreprocessor
        from medai.data.ehr_features import EhrFeaturizer
        from medai.data.images import ImagePreprocessor
        from medai.data.preprocess import TabularPreprocessor
        from medai.tasks.text import TextPreprocessor

        classes = {TabularPreprocessor: "tabular", ImagePreprocessor: "image", EcgPreprocessor: "ecg",
                   EhrFeaturizer: "ehr", TextPreprocessor: "text"}
        kind = next((name for cls, name in classes.items() if isinstance(preprocessor, cls)), None)
    try:
        return InputKind(kind)
    except ValueError:
        raise invalid_parameter("source", "input_kind_of", "a Predictor or a tabular, image, ECG, EHR or text "
                                "preprocessor", type(preprocessor).__name__) from None


def features_for(source: Any, model_input: Any, *, groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The monitored features of a batch of model input — the one function used at training and at serving time.

    Args:
        source: a :class:`medai.registry.predictor.Predictor`, or its fitted preprocessor (TabularPreprocessor,
            ImagePreprocessor, EcgPreprocessor, EhrFeaturizer, TextPreprocessor), or a ``preprocessor.json`` dict.
        model_input: what the network takes — tabular: the encoded matrix ``(n, n_features_out)`` from
            ``Predictor.encode``; image: uint8 ``(n, C, *spatial)``; ECG: scaled windows or beats
            ``(n_windows, leads, samples)``; EHR: sequences ``(n, bins, channels)``; text: ``(n,)`` strings.
        groups: ``(n,)`` the prediction each input row belongs to (``0 .. m-1``) when several rows make one
            prediction (an ECG recording's windows); the features are then averaged per prediction (categorical
            features: the first row's value).

    Returns:
        Feature name → ``(m,)`` array: float64 for numeric features (NaN = missing), object (strings) for
        categorical ones. ``m`` = ``n``, or the number of groups.
    """
    kind = input_kind_of(source)
    preprocessor = _preprocessor(source)
    if isinstance(preprocessor, Mapping):
        preprocessor = _from_dict(kind, preprocessor)
    features = {InputKind.TABULAR: _tabular, InputKind.IMAGE: _image, InputKind.ECG: _ecg, InputKind.EHR: _ehr,
                InputKind.TEXT: _text}[kind](preprocessor, model_input)
    if groups is None:
        return features
    return _by_group(features, np.asarray(groups))


def _preprocessor(source: Any) -> Any:
    # A Predictor carries its fitted preprocessor and artefact; anything else is taken to be the preprocessor.
    return source.preprocessor if hasattr(source, "artifact") and hasattr(source, "preprocessor") else source


def _from_dict(kind: InputKind, state: Mapping[str, Any]) -> Any:
    if kind is InputKind.TABULAR:
        from medai.data.preprocess import TabularPreprocessor

        return TabularPreprocessor.from_dict(dict(state))
    if kind is InputKind.IMAGE:
        from medai.data.images import ImagePreprocessor

        return ImagePreprocessor.from_dict(dict(state))
    if kind is InputKind.ECG:
        from medai.data.ecg_preprocessor import EcgPreprocessor

        return EcgPreprocessor.from_dict(dict(state))
    if kind is InputKind.EHR:
        from medai.data.ehr_features import EhrFeaturizer

        return EhrFeaturizer.from_dict(dict(state))
    return state  # text: no fitted state is needed


def _matrix(model_input: Any, ndim: int, what: str) -> np.ndarray:
    x = np.asarray(model_input.detach().cpu().numpy() if hasattr(model_input, "detach") else model_input)
    if x.ndim != ndim:
        raise DataValidationError(f"features_for: {what} model input must have {ndim} dimensions; got shape "
                                  f"{x.shape}.")
    return x


def _tabular(preprocessor, model_input: Any) -> dict[str, np.ndarray]:
    x = _matrix(model_input, 2, "tabular")
    expected = len(preprocessor.feature_names_out_)
    if x.shape[1] != expected:
        raise DataValidationError(f"features_for: the tabular model input has {x.shape[1]} columns; the model's "
                                  f"preprocessor produces {expected}. Pass Predictor.encode(frame).")
    features: dict[str, np.ndarray] = {}
    position = 0
    for column in preprocessor.numeric_columns:  # z-scored after imputation
        features[column] = x[:, position].astype(np.float64)
        position += 1
    for column in preprocessor.indicator_columns_:
        features[f"{column} (missing)"] = np.where(x[:, position] > 0.5, "missing", "present").astype(object)
        position += 1
    for column, categories in preprocessor.categories_.items():
        block = x[:, position:position + len(categories)]
        labels = np.asarray(list(categories) + [UNSEEN], dtype=object)
        # one-hot: the category of the 1; all zeros = a category not seen in training
        index = np.where(block.max(axis=1, initial=0.0) > 0.5, block.argmax(axis=1) if block.size else 0,
                         len(categories))
        features[column] = labels[index]
        position += len(categories)
    return features


def _image(preprocessor, model_input: Any) -> dict[str, np.ndarray]:
    x = np.asarray(model_input)
    if x.ndim < 3:
        raise DataValidationError(f"features_for: image model input must be uint8 (n, C, *spatial); got shape "
                                  f"{x.shape}.")
    if x.dtype != np.uint8:
        raise DataValidationError(f"features_for: image model input must be the uint8 images the Predictor scores "
                                  f"(Predictor.prepare_images); got {x.dtype}.")
    out = {name: np.empty(len(x)) for name in ("intensity_mean", "intensity_sd", "intensity_p05", "intensity_p95")}
    for start in range(0, len(x), 256):  # float copies of a chunk only
        chunk = x[start:start + 256].reshape(min(256, len(x) - start), -1).astype(np.float32)
        stop = start + len(chunk)
        out["intensity_mean"][start:stop] = chunk.mean(axis=1)
        out["intensity_sd"][start:stop] = chunk.std(axis=1)
        low, high = np.percentile(chunk, [5, 95], axis=1)
        out["intensity_p05"][start:stop], out["intensity_p95"][start:stop] = low, high
    return out


def _ecg(preprocessor, model_input: Any) -> dict[str, np.ndarray]:
    x = _matrix(model_input, 3, "ECG").astype(np.float64)
    leads = list(preprocessor.leads or [])
    n_leads = len(leads) if leads else x.shape[1] - 2 * int(preprocessor.rr_channel)
    names = leads or [f"lead{i + 1}" for i in range(n_leads)]
    features = {f"amplitude_sd:{name}": x[:, i].std(axis=1) for i, name in enumerate(names[:n_leads])}
    if preprocessor.rr_channel and x.shape[1] >= n_leads + 2:
        # the RR traces (seconds) are already part of the input: read the rhythm from them
        # (zeros when fewer than two beats were found: no rhythm to read, so missing)
        rr = x[:, n_leads].mean(axis=1)
        beats = rr > 0
        features["heart_rate_bpm"] = np.where(beats, 60.0 / np.where(beats, rr, 1.0), np.nan)
        features["rr_change_s"] = np.where(beats, x[:, n_leads + 1].mean(axis=1), np.nan)
    return features


def _ehr(featurizer, model_input: Any) -> dict[str, np.ndarray]:
    x = _matrix(model_input, 3, "EHR").astype(np.float64)
    concepts = list(featurizer.concepts_)
    k = len(concepts)
    per_concept = 3 if featurizer.indicators else 1
    if x.shape[2] != per_concept * k + 4:
        raise DataValidationError(f"features_for: the EHR model input has {x.shape[2]} channels; the model's "
                                  f"featurizer produces {per_concept * k + 4}.")
    features: dict[str, np.ndarray] = {}
    for j, concept in enumerate(concepts):
        values = x[:, :, j]
        if featurizer.indicators:
            measured = x[:, :, k + j] > 0.5
            count = measured.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                features[concept] = np.where(count > 0, (values * measured).sum(axis=1) / np.maximum(count, 1),
                                             np.nan)
            features[f"{concept} (fraction of bins measured)"] = measured.mean(axis=1)
        else:
            features[concept] = values.mean(axis=1)
    static = x[:, 0, per_concept * k:]  # age z, F, M, unknown — constant along time
    features["age"] = static[:, 0]
    features["sex"] = np.asarray(["F", "M", "unknown"], dtype=object)[static[:, 1:4].argmax(axis=1)]
    return features


def _text(_preprocessor, model_input: Any) -> dict[str, np.ndarray]:
    texts = np.asarray(model_input, dtype=object)
    if texts.ndim != 1:
        raise DataValidationError(f"features_for: text model input must be (n,) strings; got shape {texts.shape}.")
    return {"length_words": np.array([len(str(t).split()) for t in texts], dtype=np.float64)}


def _by_group(features: dict[str, np.ndarray], groups: np.ndarray) -> dict[str, np.ndarray]:
    if groups.ndim != 1 or (len(groups) and (groups.min() < 0 or not np.issubdtype(groups.dtype, np.integer))):
        raise invalid_parameter("groups", "features_for", "a (n,) array of prediction indices 0 .. m-1",
                                f"shape {groups.shape}, dtype {groups.dtype}")
    m = int(groups.max()) + 1 if len(groups) else 0
    out: dict[str, np.ndarray] = {}
    for name, values in features.items():
        if len(values) != len(groups):
            raise invalid_parameter("groups", "features_for", f"one entry per model input row ({len(values)})",
                                    f"{len(groups)} entries")
        if values.dtype == object:
            first = np.full(m, OTHER, dtype=object)
            present, index = np.unique(groups, return_index=True)
            first[present] = values[index]
            out[name] = first
            continue
        finite = np.isfinite(values)
        total = np.bincount(groups[finite], weights=values[finite], minlength=m)
        count = np.bincount(groups[finite], minlength=m)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


# -------------------------------------------------------------------------------------------------------- scores
def score_features(kind: TaskKind | str, scores: Any, class_names: Sequence[str] | None = None
                   ) -> dict[str, np.ndarray]:
    """The monitored summaries of a batch of ``Predictor.scores`` output (see the module docstring).

    Args:
        kind: the task kind.
        scores: binary/regression/survival ``(n,)``; multi-class/multi-label ``(n, K)``.
        class_names: the K class or finding names (multi-class, multi-label).
    """
    kind = TaskKind(kind)
    s = np.asarray(scores, dtype=np.float64)
    if kind in (TaskKind.MULTICLASS, TaskKind.MULTILABEL):
        if s.ndim != 2:
            raise DataValidationError(f"score_features: {kind.value} scores must be (n, K); got shape {s.shape}.")
        names = list(class_names) if class_names is not None else [str(k) for k in range(s.shape[1])]
        if len(names) != s.shape[1]:
            raise DataValidationError(f"score_features: {s.shape[1]} score columns but {len(names)} class names.")
        if kind is TaskKind.MULTICLASS:
            return {"max_probability": s.max(axis=1),
                    "predicted_class": np.asarray(names, dtype=object)[s.argmax(axis=1)]}
        return {f"probability:{name}": s[:, k] for k, name in enumerate(names)}
    s = s.reshape(-1) if s.ndim == 2 and s.shape[1] == 1 else s
    if s.ndim != 1:
        raise DataValidationError(f"score_features: {kind.value} scores must be (n,); got shape {s.shape}.")
    name = {TaskKind.BINARY: "probability", TaskKind.REGRESSION: "value",
            TaskKind.SURVIVAL: "log_relative_risk"}.get(kind)
    if name is None:
        raise invalid_parameter("kind", "score_features", "binary, multiclass, multilabel, regression or survival",
                                kind.value)
    return {name: s}


# ------------------------------------------------------------------------------------------------------- binning
def bin_spec(values: Any, n_bins: int = N_BINS) -> dict[str, Any]:
    """The reference bins of one feature and the share of ``values`` in each.

    Numeric values (float): ``{"type": "numeric", "edges": [...], "proportions": [...]}`` with the inner
    quantile edges (``n_bins`` - 1 at most; repeated edges merged) and ``len(edges) + 2`` proportions: the
    ``len(edges) + 1`` right-closed bins ``(-inf, e_1], ..., (e_k, inf)``, then missing/non-finite. Strings:
    ``{"type": "categorical", "categories": [...], "proportions": [...]}``, the last proportion for ``other``.
    """
    if not isinstance(n_bins, int) or n_bins < 2:
        raise invalid_parameter("n_bins", "bin_spec", "an integer >= 2", n_bins)
    values = np.asarray(values)
    if values.ndim != 1 or len(values) == 0:
        raise DataValidationError(f"bin_spec: needs a non-empty (n,) array of reference values; got shape "
                                  f"{values.shape}.")
    if values.dtype == object or values.dtype.kind in "US":
        labels = values.astype(str)
        spec: dict[str, Any] = {"type": "categorical", "categories": sorted(set(labels.tolist()))}
    else:
        numeric = values.astype(np.float64)
        finite = numeric[np.isfinite(numeric)]
        edges = (np.unique(np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
                 if len(finite) else np.zeros(0))
        spec = {"type": "numeric", "edges": [float(e) for e in edges]}
    spec["proportions"] = [float(p) for p in proportions(spec, values)]
    return spec


def bin_counts(spec: Mapping[str, Any], values: Any) -> np.ndarray:
    """Counts of ``values`` in the bins of ``spec`` (see :func:`bin_spec`); int64 ``(n_bins,)``."""
    values = np.asarray(values)
    if spec["type"] == "categorical":
        categories = list(spec["categories"])
        lookup = {c: i for i, c in enumerate(categories)}
        index = np.array([lookup.get(str(v), len(categories)) for v in values], dtype=np.int64)
        return np.bincount(index, minlength=len(categories) + 1)
    edges = np.asarray(spec["edges"], dtype=np.float64)
    try:
        numeric = values.astype(np.float64)
    except (TypeError, ValueError):
        raise DataValidationError("bin_counts: a numeric feature received non-numeric values; record the values "
                                  "features_for returns.") from None
    finite = np.isfinite(numeric)
    index = np.where(finite, np.searchsorted(edges, np.where(finite, numeric, 0.0), side="left"), len(edges) + 1)
    return np.bincount(index, minlength=len(edges) + 2)


def proportions(spec: Mapping[str, Any], values: Any) -> np.ndarray:
    """Shares of ``values`` in the bins of ``spec`` (zeros when ``values`` is empty)."""
    counts = bin_counts(spec, values)
    return counts / counts.sum() if counts.sum() else counts.astype(np.float64)


def population_stability_index(expected: Any, actual: Any, epsilon: float = PSI_EPSILON) -> float:
    """PSI = sum_b (a_b - e_b) * ln(a_b / e_b) over bins of reference shares ``e`` and live shares ``a``.

    Both are floored at ``epsilon`` first, so an empty bin gives a large finite term. 0 means identical
    distributions; < 0.1 is read as stable, 0.1–0.25 as a moderate shift, > 0.25 as a major shift.

    Args:
        expected: ``(n_bins,)`` reference proportions (summing to 1).
        actual: ``(n_bins,)`` live proportions (summing to 1).
        epsilon: floor of a proportion.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise InvalidParameterError(f"population_stability_index needs two proportion vectors of the same length; "
                                    f"got shapes {e.shape} and {a.shape}.")
    if not (np.isfinite(e).all() and np.isfinite(a).all()) or (e < 0).any() or (a < 0).any():
        raise InvalidParameterError("population_stability_index: proportions must be finite and >= 0.")
    e, a = np.maximum(e, epsilon), np.maximum(a, epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def expected_psi_no_shift(n_bins: int, n_reference: int, n_live: int) -> float:
    """The PSI expected from sampling noise alone: ``(n_bins - 1) * (1/n_reference + 1/n_live)``.

    Two samples of the *same* distribution do not give PSI 0: for small shares the PSI is close to the symmetric
    chi-square distance, whose expectation under no shift is this value (B - 1 degrees of freedom). A PSI near it
    says nothing; with 10 bins, 100 reference and 100 live values it is already 0.18, above the 0.1 threshold.
    """
    if n_reference < 1 or n_live < 1:
        return math.inf
    return float(max(n_bins - 1, 0) * (1.0 / n_reference + 1.0 / n_live))


def drift_level(psi: float) -> DriftLevel:
    """The conventional reading of a PSI value (see :class:`DriftLevel`)."""
    return DriftLevel.STABLE if psi < PSI_MODERATE else DriftLevel.MODERATE if psi <= PSI_MAJOR else DriftLevel.MAJOR


# ----------------------------------------------------------------------------------------------------- reference
def build_drift_reference(kind: TaskKind | str, *, inputs: Mapping[str, np.ndarray] | None, scores: Any,
                          input_kind: InputKind | str, class_names: Sequence[str] | None = None,
                          n_bins: int = N_BINS, computed_on: str = "validation split") -> dict[str, Any]:
    """The JSON-ready drift reference of a model, from its validation split.

    Args:
        kind: the task kind.
        inputs: feature name → ``(n,)`` values from :func:`features_for` (None: scores only).
        scores: the validation scores, as the served model gives them (after recalibration).
        input_kind: an :class:`InputKind`.
        class_names: class or finding names (multi-class, multi-label).
        n_bins: quantile bins per numeric feature at most (fewer when the reference has under
            ``n_bins * MIN_PER_BIN`` samples).
        computed_on: which data, in words (always the validation split in medai's workflows).

    Returns:
        ``{"format_version", "medai_version", "kind", "input_kind", "computed_on", "n", "n_bins", "class_names",
        "psi_thresholds", "features": {name: spec}, "scores": {name: spec}}`` with specs from :func:`bin_spec`.
    """
    import medai

    kind = TaskKind(kind)
    try:
        input_kind = InputKind(input_kind)
    except ValueError:
        raise invalid_parameter("input_kind", "build_drift_reference",
                                "one of " + ", ".join(k.value for k in InputKind), input_kind) from None
    summaries = score_features(kind, scores, class_names)
    n = len(next(iter(summaries.values())))
    if n == 0:
        raise DataValidationError("build_drift_reference: the validation split has no scored sample; a drift "
                                  "reference needs at least one.")
    # a small validation split gets fewer, wider bins (MIN_PER_BIN samples each at least)
    n_bins = int(max(2, min(n_bins, n // MIN_PER_BIN)))
    features = {}
    for name, values in (inputs or {}).items():
        if len(values) != n:
            raise DataValidationError(f"build_drift_reference: feature '{name}' has {len(values)} values for "
                                      f"{n} scores; compute features and scores on the same samples.")
        features[name] = bin_spec(values, n_bins)
    return {
        "format_version": FORMAT_VERSION,
        "medai_version": medai.__version__,
        "kind": kind.value,
        "input_kind": input_kind.value,
        "computed_on": computed_on,
        "n": int(n),
        "n_bins": int(n_bins),
        "class_names": list(class_names) if class_names is not None else None,
        "psi_thresholds": {"moderate": PSI_MODERATE, "major": PSI_MAJOR},
        "features": features,
        "scores": {name: bin_spec(values, n_bins) for name, values in summaries.items()},
    }


def drift_reference_for(predictor, model_input: Any, scores: Any, *, groups: np.ndarray | None = None
                        ) -> dict[str, Any]:
    """The drift reference of a trained in-memory predictor from its validation model input and scores — the one
    line every training workflow calls right before ``save_artifact``."""
    reference = build_drift_reference(
        predictor.kind, inputs=features_for(predictor, model_input, groups=groups), scores=scores,
        input_kind=input_kind_of(predictor), class_names=predictor.task.get("class_names"))
    if reference["input_kind"] == InputKind.TABULAR.value:
        _add_display_edges(reference, predictor.preprocessor)
    return reference


def _add_display_edges(reference: dict[str, Any], preprocessor) -> None:
    """Tabular numeric features are binned on their z value; ``display_edges`` gives the same edges in the
    column's own unit (undoing the z-score and any log1p) so that a report can label the bins readably."""
    for column in preprocessor.numeric_columns:
        spec = reference["features"].get(column)
        if spec is None or spec["type"] != "numeric":
            continue
        raw = np.asarray(spec["edges"]) * preprocessor.stds_[column] + preprocessor.means_[column]
        if column in preprocessor.log1p_columns:
            raw = np.expm1(raw)
        spec["display_edges"] = [float(e) for e in raw]
