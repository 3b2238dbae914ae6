"""The models a service serves: run ``model/`` folders found under the paths given to `medai serve --models`.

Each artefact is loaded once, at start-up, through :func:`medai.registry.artifact.load_artifact` (the sha256
manifest is checked; a modified artefact is refused and the service does not start). A model's identity is its
model card's name (the recipe's ``name``) and version (the run's creation time), plus the manifest's sha256; several
versions of one name can be served side by side: ``/models/NAME`` is the newest one that is not retired,
``/models/NAME@VERSION`` a given one.

Retiring a model (admin) stops it from serving; it is remembered in the service's state folder (``retired.json``),
so a restart does not bring it back. Registering adds a run folder at run time (admin), with the same checks.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medai.core.config import TaskKind
from medai.core.errors import ArtifactIntegrityError, InvalidParameterError, UnknownNameError, closest
from medai.core.outputs import write_json
from medai.registry.artifact import MANIFEST, load_artifact

#: Folders searched below a ``--models`` path for ``model/`` folders (a registry of runs, a folder of registries).
MAX_DEPTH = 3


@dataclass
class ServedModel:
    """One loaded, verified model.

    Attributes:
        id: the model card's name (recipe ``name``).
        version: the run's creation time (UTC, ISO 8601) — versions of one id sort by it.
        sha256: the artefact manifest's sha256: identifies these exact files.
        path: the ``model/`` folder.
        predictor: :class:`medai.registry.predictor.Predictor`, or
            :class:`medai.registry.segmentation_predictor.SegmentationPredictor` for segmentation models.
        modality: what the model reads: ``tabular``, ``image``, ``ecg``, ``ehr``, ``text`` or ``segmentation``.
    """

    id: str
    version: str
    sha256: str
    path: Path
    predictor: Any
    kind: TaskKind
    modality: str
    model_card: dict[str, Any]
    model_card_md: str
    retired: bool = False
    runtime: dict[str, Any] = field(default_factory=lambda: {"runtime": "torch"})
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def ref(self) -> dict[str, str]:
        """``model`` of every prediction dict."""
        return {"id": self.id, "version": self.version, "sha256": self.sha256}

    def info(self) -> dict[str, Any]:
        """What ``GET /models`` says about the model (no training data)."""
        task = self.predictor.task
        card = self.model_card
        use = card.get("intended_use") or {}
        thresholds = getattr(self.predictor.artifact, "thresholds", {}) or {}
        return {
            **self.ref, "key": self.key, "kind": self.kind.value, "modality": self.modality,
            "class_names": task.get("class_names"), "retired": self.retired, "runtime": self.runtime,
            "inputs": input_description(self),
            "intended_use": use.get("primary_use"),
            "contraindications": use.get("out_of_scope_and_contraindications"),
            "operating_point": {k: v for k, v in thresholds.items() if not isinstance(v, dict | list) or k in (
                "label_thresholds",)},
            "calibration": calibration_note(self),
            "conformal": conformal_note(self),
        }


def input_description(model: ServedModel) -> str:
    """What ``POST /models/{id}/predict`` takes for this model, in one sentence."""
    if model.modality == "tabular":
        pre = model.predictor.preprocessor
        columns = list(pre.numeric_columns) + list(pre.categorical_columns)
        shown = ", ".join(columns[:12]) + (f", … ({len(columns)} columns)" if len(columns) > 12 else "")
        return f'JSON {{"records": [{{column: value, …}}]}} with the columns {shown}'
    if model.modality == "image":
        return "an image upload (PNG, JPEG, DICOM; multipart field 'file')"
    if model.modality == "ecg":
        return ("an ECG upload (WFDB .hea + .dat, CinC .mat + .hea, DICOM waveform, CSV) or JSON "
                '{"sampling_rate_hz": …, "leads": […], "signal": [[…], …]} (leads × samples, millivolts)')
    if model.modality == "ehr":
        return "a FHIR R4 Bundle (application/fhir+json) with Patient, Encounter and Observation resources"
    if model.modality == "text":
        return 'JSON {"texts": ["…"]} or {"records": [{text column: "…"}]}'
    if model.predictor.spatial_dims == 3:
        return ("a volume upload (NIfTI .nii/.nii.gz, a multi-frame DICOM, or the single-frame DICOM slices of a "
                "series; multipart field 'file')")
    return ("an image upload (PNG, JPEG, DICOM; multipart field 'file'), or a NIfTI / multi-frame DICOM volume "
            "segmented slice by slice")


def calibration_note(model: ServedModel) -> str:
    state = getattr(model.predictor.artifact, "recalibration", None)
    if model.kind in (TaskKind.REGRESSION, TaskKind.SURVIVAL):
        return "not applicable (no class probabilities)"
    if not state:
        return "probabilities as trained: validation showed no recalibration was needed"
    if model.kind is TaskKind.SEGMENTATION:
        return (f"voxel probabilities temperature-scaled on validation voxels (T = "
                f"{float(state.get('temperature', 1.0)):.2f})")
    method = state.get("method")
    methods = method if isinstance(method, str) else ", ".join(sorted(set(map(str, method))))
    return f"probabilities recalibrated on the validation split ({methods})"


def conformal_note(model: ServedModel) -> str:
    state = getattr(model.predictor.artifact, "conformal", None)
    if not state:
        return "no conformal state: predictions carry no prediction set and refer only for unusable input"
    alpha = state.get("alpha")
    target = f"{100 * (1 - float(alpha)):.0f} %" if alpha is not None else "the target"
    if model.kind is TaskKind.SEGMENTATION:
        return (f"conformal risk control on validation: the conformal mask (yellow) covers on average {target} of "
                "each case's structure; 'refer' when its uncertain band is larger than the mask, or when it finds "
                "a structure the model did not segment")
    return (f"split-conformal sets calibrated on validation to contain the truth in {target} of cases; "
            "'refer' = the set is not a single answer")


def _modality(predictor: Any) -> str:
    if predictor.kind is TaskKind.SEGMENTATION:
        return "segmentation"
    for flag, name in (("is_image", "image"), ("is_ecg", "ecg"), ("is_ehr", "ehr"), ("is_text", "text")):
        if getattr(predictor, flag, False):
            return name
    return "tabular"


def find_model_dirs(path: Path) -> list[Path]:
    """``model/`` folders at or below ``path`` (a ``model/`` folder, a run folder, or folders of runs)."""
    path = Path(path)
    if not path.is_dir():
        raise InvalidParameterError(f"--models {path}: not a folder. Give a run folder (holding model/), a model/ "
                                    "folder, or a folder of run folders.")
    if (path / MANIFEST).is_file():
        return [path]
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if (folder / "model" / MANIFEST).is_file():
            found.append(folder / "model")
            return
        if depth == MAX_DEPTH:
            return
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not child.name.endswith(".partial"):  # an unfinished run is not a model
                walk(child, depth + 1)

    walk(path, 0)
    return found


def load_served_model(model_dir: Path) -> ServedModel:
    """Load and verify one artefact (raises ArtifactIntegrityError on any mismatch)."""
    artifact = load_artifact(model_dir)
    if artifact.task.get("kind") == TaskKind.SEGMENTATION.value:
        from medai.registry.segmentation_predictor import SegmentationPredictor

        predictor = SegmentationPredictor(artifact)
    else:
        from medai.registry.predictor import Predictor

        predictor = Predictor(artifact)
    card = artifact.model_card
    details = card.get("model_details") or {}
    card_md = (artifact.path / "model_card.md").read_text() if (artifact.path / "model_card.md").is_file() else ""
    return ServedModel(id=str(details.get("name") or artifact.config.name), version=str(details.get("version") or ""),
                       sha256=artifact.sha256, path=artifact.path, predictor=predictor,
                       kind=TaskKind(artifact.task["kind"]), modality=_modality(predictor), model_card=card,
                       model_card_md=card_md)


class ModelRegistry:
    """The served models, by ``id`` (newest active version) and ``id@version``; thread-safe."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._retired = set(self._read_retired())

    @classmethod
    def from_paths(cls, paths: list[Path], state_dir: Path | None = None) -> ModelRegistry:
        registry = cls(state_dir)
        dirs = [d for p in paths for d in find_model_dirs(Path(p))]
        if paths and not dirs:
            raise InvalidParameterError(f"No model found under {', '.join(map(str, paths))}: a model is a run's "
                                        "model/ folder with MANIFEST.sha256. Train one with `medai train`.")
        for model_dir in dirs:
            registry.add(load_served_model(model_dir))
        return registry

    def add(self, model: ServedModel) -> ServedModel:
        with self._lock:
            if model.key in self._models:
                existing = self._models[model.key]
                if existing.sha256 != model.sha256:
                    raise ArtifactIntegrityError(
                        f"{model.path}: model '{model.key}' is already served from {existing.path} with different "
                        "files (sha256 differ). Artefacts are immutable: a new training is a new version.")
                return existing
            model.retired = model.key in self._retired
            self._models[model.key] = model
            return model

    def register(self, path: Path) -> list[ServedModel]:
        """Load and add every model under ``path`` (admin)."""
        dirs = find_model_dirs(Path(path))
        if not dirs:
            raise InvalidParameterError(f"{path}: no model/ folder with MANIFEST.sha256 found.")
        return [self.add(load_served_model(d)) for d in dirs]

    def retire(self, model_id: str) -> ServedModel:
        """Stop serving one version (``id@version``, or ``id`` = its newest active version); remembered."""
        model = self.get(model_id)
        with self._lock:
            model.retired = True
            self._retired.add(model.key)
            self._write_retired()
        return model

    def all(self) -> list[ServedModel]:
        with self._lock:
            return sorted(self._models.values(), key=lambda m: (m.id, m.version))

    def get(self, model_id: str, *, include_retired: bool = False) -> ServedModel:
        """The model named ``id@version`` or ``id`` (its newest version not retired).

        Raises:
            UnknownNameError: no such model (the message lists the served ones and suggests the closest).
        """
        with self._lock:
            models = list(self._models.values())
        if "@" in model_id:
            match = [m for m in models if m.key == model_id and (include_retired or not m.retired)]
        else:
            match = sorted((m for m in models if m.id == model_id and (include_retired or not m.retired)),
                           key=lambda m: m.version)[-1:]
        if not match:
            names = sorted({m.id for m in models if not m.retired})
            retired = any(m.retired and model_id in (m.id, m.key) for m in models)
            why = " It is retired." if retired else ""
            raise UnknownNameError(f"No served model '{model_id}'.{why} Served: {', '.join(names) or 'none'}."
                                   f"{closest(model_id.split('@')[0], names)}")
        return match[0]

    def _read_retired(self) -> list[str]:
        if self.state_dir is None or not (self.state_dir / "retired.json").is_file():
            return []
        return list(json.loads((self.state_dir / "retired.json").read_text()).get("retired", []))

    def _write_retired(self) -> None:
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.state_dir / "retired.json", {"retired": sorted(self._retired)})
