"""Run configuration: plain YAML recipes mapped onto frozen dataclasses, validated when built.

A recipe never names an import path: models and baselines are picked by registry name. The resolved
configuration (every default filled in) is saved inside every run and artefact as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from medai.core.errors import InvalidParameterError, closest, invalid_parameter


class TaskKind(StrEnum):
    """What is predicted. ``classification`` is resolved to ``binary`` or ``multiclass`` from the labels."""

    CLASSIFICATION = "classification"
    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"  # several independent 0/1 findings per record (CheXNet-style)
    REGRESSION = "regression"
    SURVIVAL = "survival"
    SEGMENTATION = "segmentation"  # a class per pixel/voxel


class EhrOutcome(StrEnum):
    """What an EHR task predicts from a patient timeline (``medai.tasks.ehr``), with its time parameters.

    ``mortality``: death in hospital, predicted ``observation_hours`` (48) after ICU admission. ``length_of_stay``:
    ICU stay longer than ``horizon_hours`` (72), predicted at ``observation_hours`` (24). ``readmission``: a new
    hospital admission (or death) within ``horizon_hours`` (720 = 30 days) of discharge, predicted at discharge.
    ``phenotype``: the admission's ICD-9 groups (multi-label), predicted at ``observation_hours`` (24).
    """

    MORTALITY = "mortality"
    LENGTH_OF_STAY = "length_of_stay"
    READMISSION = "readmission"
    PHENOTYPE = "phenotype"


class OperatingPoint(StrEnum):
    """How the decision threshold of a binary model is chosen on the validation split."""

    YOUDEN = "youden"
    SENSITIVITY = "sensitivity"


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from: a file path or a built-in dataset name (see ``medai datasets``)."""

    path: str | None = None
    builtin: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.builtin is None):
            raise InvalidParameterError(
                "The 'data' section must name exactly one of 'path' (a CSV/Parquet file) or 'builtin' "
                f"(a dataset listed by `medai datasets`). Got path={self.path!r}, builtin={self.builtin!r}."
            )

    @property
    def source(self) -> str:
        return f"builtin:{self.builtin}" if self.builtin else str(self.path)


@dataclass(frozen=True)
class TaskConfig:
    """Which columns are the outcome, identifiers and features.

    Label meaning: for binary tasks ``positive_class`` is the value coded 1 (the condition being detected);
    for survival, ``event`` is 1 when the event happened at ``time`` and 0 when follow-up was censored then.
    ``on_invalid``: ``raise`` (default) stops at the first record with an invalid outcome (or unreadable image);
    ``skip`` drops such records and counts them in the run's warnings (features are never silently changed).
    ``class_names``: names of the class indices 0, 1, ... for data that stores only indices (MedMNIST ``.npz``:
    e.g. BreastMNIST ``[malignant, normal_benign]``), or of the K findings of a multi-label dataset.
    """

    kind: TaskKind = TaskKind.CLASSIFICATION
    label: str | None = None
    time: str | None = None
    event: str | None = None
    id: str | None = None
    patient_id: str | None = None
    positive_class: str | None = None
    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    on_invalid: str = "raise"
    class_names: tuple[str, ...] | None = None
    text: str | None = None  # text classification: the column holding the note/report text
    outcome: EhrOutcome | None = None  # EHR data: what is predicted from each timeline (see EhrOutcome)
    horizon_hours: float | None = None  # EHR: outcome window (meaning per outcome; null: the outcome's default)
    observation_hours: float | None = None  # EHR: hours of data after ICU admission the prediction may use

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _enum(TaskKind, self.kind, "kind", "TaskConfig"))
        if self.outcome is not None:
            object.__setattr__(self, "outcome", _enum(EhrOutcome, self.outcome, "outcome", "TaskConfig"))
        for name in ("horizon_hours", "observation_hours"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise invalid_parameter(name, "TaskConfig", "a positive number of hours or null", value)
        if self.on_invalid not in ("raise", "skip"):
            raise invalid_parameter("on_invalid", "TaskConfig", "'raise' or 'skip'", self.on_invalid)
        if self.kind is TaskKind.SURVIVAL:
            if not self.time or not self.event:
                raise InvalidParameterError(
                    "A survival task needs both a time and an event column: pass --time COL --event COL "
                    "(or task.time and task.event in the recipe)."
                )
        if self.features is not None:
            object.__setattr__(self, "features", tuple(self.features))
        if self.class_names is not None:
            names = tuple(str(c) for c in self.class_names)
            if len(names) < 2 or len(set(names)) != len(names):
                raise invalid_parameter("class_names", "TaskConfig", "at least 2 distinct names", self.class_names)
            object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "exclude", tuple(self.exclude))


@dataclass(frozen=True)
class SplitConfig:
    """Train/validation/test split. Stratified by outcome, grouped by patient when a patient id exists.

    ``column`` names a column holding ``train``/``val``/``test`` for a predefined (e.g. official) split.
    """

    val_fraction: float = 0.15
    test_fraction: float = 0.2
    seed: int = 42
    column: str | None = None

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 0.5:
                raise invalid_parameter(name, "SplitConfig", "a fraction in (0, 0.5)", value)


@dataclass(frozen=True)
class PreprocessingConfig:
    """Feature transforms fitted on the training split (see ``medai.data.preprocess``).

    ``log1p`` lists numeric columns replaced by log(1 + x) before imputation and scaling — for skewed counts and
    concentrations (lymph nodes, receptor levels); their values must be > -1.
    """

    log1p: tuple[str, ...] = ()
    image_size: tuple[int, ...] | None = None
    channels: int | None = None
    window: str | None = None
    # ECG and other signals (medai.data.ecg_preprocessor): the rate signals are resampled to, the window the
    # network sees and the stride between windows of a longer recording, the mains frequency notched out
    # (null: none), and the leads the model takes (null: every lead of the training data; a name picks one).
    sampling_rate_hz: float | None = None
    window_s: float | None = None
    stride_s: float | None = None
    powerline_hz: float | None = 50.0
    leads: tuple[str, ...] | None = None
    rr_channel: bool | None = None  # ECG: add the RR-interval trace as an input channel (null: rhythm tasks yes)
    # EHR time series (medai.data.ehr_features): bin width, how empty bins are filled (ffill | median | mean), how
    # long forward fill may carry a value (null: to the end of the window), and mask + time-since-last channels.
    bin_hours: float | None = None
    impute: str | None = None
    ffill_limit_hours: float | None = 24.0
    missing_indicators: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "log1p", tuple(self.log1p))
        if self.impute not in (None, "ffill", "median", "mean"):
            raise invalid_parameter("impute", "PreprocessingConfig", "'ffill', 'median', 'mean' or null", self.impute)
        for name in ("sampling_rate_hz", "window_s", "stride_s", "powerline_hz", "bin_hours", "ffill_limit_hours"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise invalid_parameter(name, "PreprocessingConfig", "a positive number or null", value)
        if self.leads is not None:
            object.__setattr__(self, "leads", tuple(str(lead) for lead in self.leads))
        if self.image_size is not None:
            size = tuple(self.image_size) if isinstance(self.image_size, (list, tuple)) else (self.image_size,) * 2
            if len(size) not in (2, 3) or not all(isinstance(v, int) and v >= 8 for v in size):
                raise invalid_parameter("image_size", "PreprocessingConfig",
                                        "2 or 3 integers >= 8 (e.g. [224, 224]) or one integer", self.image_size)
            object.__setattr__(self, "image_size", size)
        if self.channels not in (None, 1, 3):
            raise invalid_parameter("channels", "PreprocessingConfig", "1 (grey), 3 (RGB) or null", self.channels)


@dataclass(frozen=True)
class ModelConfig:
    """A registered network (``medai.models``) and its parameters."""

    name: str = "mlp"
    params: dict[str, Any] = field(default_factory=dict)


#: Largest training split trained full-batch by default (survival).
FULL_BATCH_MAX = 10_000


@dataclass(frozen=True)
class TrainingConfig:
    """The training loop.

    ``batch_size: null`` (the default) is automatic: full batch for Cox models up to ``FULL_BATCH_MAX``
    training records (the partial likelihood needs the whole risk set), else 64.
    ``max_epochs`` / ``patience`` unset: 300 / 30 for tables, 60 / 10 for images (see :attr:`DEFAULTS`).
    ``precision``: ``auto`` (bf16 autocast where the processor has native bf16, else fp32), ``bf16`` or ``fp32``.
    ``lr_schedule``: ``constant`` or ``cosine`` (annealed from ``learning_rate`` to 0 over ``max_epochs``).
    ``augmentation`` (images): ``auto`` (= ``light``), ``none``, ``light`` or ``standard`` (adds flips); see
    :class:`medai.data.images.BatchAugmentation`.
    """

    max_epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int | None = None
    class_weight: str | None = "balanced"
    seed: int = 42
    checkpoint_every: int = 1
    precision: str = "auto"
    augmentation: str = "auto"
    lr_schedule: str = "constant"
    num_workers: int | None = None

    #: Defaults of ``max_epochs`` and ``patience`` by data modality (an image epoch costs far more than a table's).
    DEFAULTS = {"tabular": (300, 30), "image": (60, 10), "ehr": (100, 15)}

    def resolved(self, modality: str) -> TrainingConfig:
        """This configuration with ``max_epochs``/``patience`` left unset filled in for ``modality``."""
        epochs, patience = self.DEFAULTS[modality]
        return dataclasses.replace(self, max_epochs=self.max_epochs or epochs, patience=self.patience or patience)

    def resolved_batch_size(self, kind: TaskKind, n_train: int) -> int | None:
        """The batch size used: None means the whole training split in one batch."""
        if self.batch_size is not None:
            return self.batch_size
        return None if kind is TaskKind.SURVIVAL and n_train <= FULL_BATCH_MAX else 64

    def __post_init__(self) -> None:
        if self.max_epochs is not None and (not isinstance(self.max_epochs, int) or self.max_epochs < 1):
            raise invalid_parameter("max_epochs", "TrainingConfig", "a positive integer", self.max_epochs)
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 2):
            raise invalid_parameter("batch_size", "TrainingConfig", "an integer >= 2 or null", self.batch_size)
        if not self.learning_rate > 0:
            raise invalid_parameter("learning_rate", "TrainingConfig", "> 0", self.learning_rate)
        if self.class_weight not in (None, "balanced"):
            raise invalid_parameter("class_weight", "TrainingConfig", "'balanced' or null", self.class_weight)
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise invalid_parameter("patience", "TrainingConfig", "a positive integer", self.patience)
        if self.lr_schedule not in ("constant", "cosine"):
            raise invalid_parameter("lr_schedule", "TrainingConfig", "'constant' or 'cosine'", self.lr_schedule)
        if self.precision not in ("auto", "bf16", "fp32"):
            raise invalid_parameter("precision", "TrainingConfig", "'auto', 'bf16' or 'fp32'", self.precision)
        if self.augmentation not in ("auto", "none", "light", "standard"):
            raise invalid_parameter("augmentation", "TrainingConfig", "'auto', 'none', 'light' or 'standard'",
                                    self.augmentation)
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise invalid_parameter("num_workers", "TrainingConfig", "an integer >= 0 or null", self.num_workers)


@dataclass(frozen=True)
class EvaluationConfig:
    """How results are measured. CIs are percentile bootstrap CIs, stratified by outcome.

    ``explained_images``: test images given saliency overlays (and the randomisation check) in image runs; 0 skips
    the explanations (the report then says so).
    """

    n_resamples: int = 1000
    confidence: float = 0.95
    operating_point: OperatingPoint = OperatingPoint.YOUDEN
    target_sensitivity: float = 0.9
    horizons: tuple[float, ...] | None = None
    subgroups: tuple[str, ...] | None = None
    min_subgroup_n: int = 30
    explained_images: int = 4
    imputation_sensitivity: bool = True  # EHR: retrain with other imputation choices and compare (report section)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "operating_point", _enum(OperatingPoint, self.operating_point, "operating_point", "EvaluationConfig")
        )
        if not isinstance(self.explained_images, int) or not 0 <= self.explained_images <= 16:
            raise invalid_parameter("explained_images", "EvaluationConfig", "an integer in 0..16",
                                    self.explained_images)
        if not isinstance(self.n_resamples, int) or self.n_resamples < 100:
            raise invalid_parameter("n_resamples", "EvaluationConfig", "an integer >= 100", self.n_resamples)
        if not 0.5 < self.confidence < 1:
            raise invalid_parameter("confidence", "EvaluationConfig", "in (0.5, 1)", self.confidence)
        if not 0 < self.target_sensitivity < 1:
            raise invalid_parameter("target_sensitivity", "EvaluationConfig", "in (0, 1)", self.target_sensitivity)
        if self.horizons is not None:
            object.__setattr__(self, "horizons", tuple(float(h) for h in self.horizons))
        if self.subgroups is not None:
            object.__setattr__(self, "subgroups", tuple(self.subgroups))


@dataclass(frozen=True)
class ModelCardConfig:
    """Free text that only people can write: it goes into the model card verbatim."""

    intended_use: str = (
        "Research use: retrospective evaluation of a clinical prediction model on the user's own data. "
        "Not a medical device; not for clinical decisions without local validation and regulatory clearance."
    )
    contraindications: str = "Populations, settings or data sources unlike the training data."
    limitations: str = ""


@dataclass(frozen=True)
class RunConfig:
    """A whole training run: what a recipe YAML holds."""

    data: DataConfig
    task: TaskConfig = field(default_factory=TaskConfig)
    name: str = "run"
    description: str = ""
    split: SplitConfig = field(default_factory=SplitConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    baselines: tuple[str, ...] | None = None
    model_card: ModelCardConfig = field(default_factory=ModelCardConfig)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    def replace(self, **sections: Any) -> RunConfig:
        return dataclasses.replace(self, **sections)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "task": TaskConfig,
    "split": SplitConfig,
    "preprocessing": PreprocessingConfig,
    "training": TrainingConfig,
    "evaluation": EvaluationConfig,
    "model_card": ModelCardConfig,
}


def config_from_dict(raw: dict[str, Any], source: str = "recipe") -> RunConfig:
    """Build and validate a RunConfig from plain data (a parsed YAML recipe or a saved config.json)."""
    if not isinstance(raw, dict):
        raise InvalidParameterError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}.")
    _check_keys(raw, {f.name for f in fields(RunConfig)}, source)
    if "data" not in raw:
        raise InvalidParameterError(f"{source}: the 'data' section is missing (data: {{path: FILE}} or {{builtin: NAME}}).")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            cls = _SECTIONS[key]
            value = value or {}
            if not isinstance(value, dict):
                raise InvalidParameterError(f"{source}: section '{key}' must be a mapping, got {value!r}.")
            _check_keys(value, {f.name for f in fields(cls)}, f"{source}: section '{key}'")
            kwargs[key] = cls(**value)
        elif key == "model":
            value = dict(value or {})
            name = value.pop("name", "mlp")
            params = value.pop("params", {}) | value  # accept parameters flat or under 'params'
            kwargs[key] = ModelConfig(name=name, params=params)
        elif key == "baselines":
            kwargs[key] = tuple(value) if value is not None else None
        else:
            kwargs[key] = value
    return RunConfig(**kwargs)


def load_recipe(path: str | Path) -> RunConfig:
    """Read a recipe YAML file. Relative ``data.path`` values are resolved against the recipe's folder."""
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"Recipe file not found: {path}. Pass a YAML recipe (see recipes/).")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidParameterError(f"{path}: not valid YAML ({exc.__class__.__name__}: {exc}).") from None
    config = config_from_dict(raw, source=str(path))
    if config.data.path is not None and not Path(config.data.path).is_absolute():
        resolved = (path.parent / config.data.path).resolve()
        config = config.replace(data=DataConfig(path=str(resolved)))
    return config


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


def _check_keys(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise InvalidParameterError(
                f"{where}: unknown key '{key}'.{closest(key, allowed)} Allowed: {', '.join(sorted(allowed))}."
            )


def _enum(enum: type[StrEnum], value: Any, name: str, owner: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise invalid_parameter(name, owner, "one of " + ", ".join(repr(e.value) for e in enum), value) from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    return value
