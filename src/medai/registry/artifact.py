"""The model artefact folder and its sha256 manifest.

``model/`` holds everything needed to use a model and nothing that needs unpickling:

  weights.safetensors     network weights
  config.json             the resolved recipe
  task.json               outcome definition: kind, columns, class names, output post-processing, horizons
  preprocessor.json       fitted preprocessing state
  thresholds.json         operating points chosen on validation
  survival_baseline.json  (survival) Breslow baseline cumulative hazard from the training split
  recalibration.json      recalibration map chosen on validation (applied to every prediction), when not "none"
  conformal.json          split-conformal state calibrated on validation: prediction sets, "abstain" flag
  drift_reference.json    validation-split bins of the monitored input features and scores, for drift monitoring
                          (:mod:`medai.registry.drift_reference`); absent from artefacts of older medai versions
  model_card.md / .json   intended use, data, metrics with CIs, limitations
  MANIFEST.sha256         ``<sha256>  <file>`` for every other file

``load_artifact`` refuses a folder whose files do not match the manifest (changed, missing or added files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from medai.core.config import RunConfig, config_from_dict
from medai.core.errors import ArtifactIntegrityError, InvalidParameterError
from medai.core.hashing import sha256_file
from medai.core.outputs import write_json, write_text

MANIFEST = "MANIFEST.sha256"
WEIGHTS = "weights.safetensors"


@dataclass
class Artifact:
    """A loaded, integrity-checked model artefact."""

    path: Path
    config: RunConfig
    task: dict[str, Any]
    preprocessor: dict[str, Any]
    thresholds: dict[str, Any]
    weights: dict[str, torch.Tensor]
    survival_baseline: dict[str, Any] | None
    model_card: dict[str, Any]
    sha256: str  # of the manifest: one hash that identifies this exact artefact
    recalibration: dict[str, Any] | None = None
    conformal: dict[str, Any] | None = None
    drift_reference: dict[str, Any] | None = None  # None: an artefact from before drift monitoring


def save_artifact(
    model_dir: Path,
    *,
    state_dict: dict[str, torch.Tensor],
    config: RunConfig,
    task: dict[str, Any],
    preprocessor: dict[str, Any],
    thresholds: dict[str, Any],
    model_card_md: str,
    model_card: dict[str, Any],
    survival_baseline: dict[str, Any] | None = None,
    recalibration: dict[str, Any] | None = None,
    conformal: dict[str, Any] | None = None,
    drift_reference: dict[str, Any] | None = None,
) -> str:
    """Write the artefact files and their manifest; returns the manifest's sha256."""
    model_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(model_dir / WEIGHTS))
    write_json(model_dir / "config.json", config.to_dict())
    write_json(model_dir / "task.json", task)
    write_json(model_dir / "preprocessor.json", preprocessor)
    write_json(model_dir / "thresholds.json", thresholds)
    if survival_baseline is not None:
        write_json(model_dir / "survival_baseline.json", survival_baseline)
    if recalibration is not None:
        write_json(model_dir / "recalibration.json", recalibration)
    if conformal is not None:
        write_json(model_dir / "conformal.json", conformal)
    if drift_reference is not None:
        write_json(model_dir / "drift_reference.json", drift_reference)
    write_json(model_dir / "model_card.json", model_card)
    write_text(model_dir / "model_card.md", model_card_md)
    return write_manifest(model_dir)


def write_manifest(model_dir: Path) -> str:
    lines = [f"{sha256_file(p)}  {p.name}" for p in sorted(model_dir.iterdir()) if p.is_file() and p.name != MANIFEST]
    write_text(model_dir / MANIFEST, "\n".join(lines) + "\n")
    return sha256_file(model_dir / MANIFEST)


def verify_manifest(model_dir: Path) -> str:
    """Check every file against ``MANIFEST.sha256``; return the manifest's sha256.

    Raises:
        ArtifactIntegrityError: manifest absent, a listed file missing or changed, or an unlisted file present.
    """
    manifest = model_dir / MANIFEST
    if not manifest.is_file():
        raise ArtifactIntegrityError(
            f"{model_dir} has no {MANIFEST}: not a medai model artefact, or an incomplete one. Use the model/ folder "
            "of a finished `medai train` run."
        )
    expected: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            expected[name] = digest
    present = {p.name for p in model_dir.iterdir() if p.is_file() and p.name != MANIFEST}
    for name, digest in expected.items():
        path = model_dir / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"{model_dir}: file '{name}' listed in the manifest is missing. Restore the "
                                         "artefact from its original copy.")
        if sha256_file(path) != digest:
            raise ArtifactIntegrityError(
                f"{model_dir}: '{name}' does not match its sha256 in {MANIFEST} — the artefact was modified. "
                "Refusing to use it; restore the original or retrain."
            )
    extra = sorted(present - set(expected))
    if extra:
        raise ArtifactIntegrityError(
            f"{model_dir}: file(s) {', '.join(extra)} are not in {MANIFEST}; the artefact was modified. Remove them "
            "or restore the original."
        )
    return sha256_file(manifest)


def resolve_model_dir(path: str | Path) -> Path:
    """Accept a run folder (containing ``model/``) or the ``model/`` folder itself."""
    path = Path(path)
    if not path.exists():
        raise InvalidParameterError(f"Run or model folder not found: {path}.")
    if (path / "model" / MANIFEST).exists() or ((path / "model").is_dir() and not (path / MANIFEST).exists()):
        return path / "model"
    if path.name.endswith(".partial"):
        raise InvalidParameterError(f"{path} is an unfinished run; resume it with `medai train ... --resume` first.")
    return path


def load_artifact(path: str | Path) -> Artifact:
    """Verify and load an artefact from a run folder or a ``model/`` folder."""
    model_dir = resolve_model_dir(path)
    digest = verify_manifest(model_dir)

    def read(name: str) -> dict[str, Any]:
        return json.loads((model_dir / name).read_text())

    baseline_path = model_dir / "survival_baseline.json"

    def optional(name: str) -> dict[str, Any] | None:
        return read(name) if (model_dir / name).exists() else None

    return Artifact(
        path=model_dir,
        config=config_from_dict(read("config.json"), source=str(model_dir / "config.json")),
        task=read("task.json"),
        preprocessor=read("preprocessor.json"),
        thresholds=read("thresholds.json"),
        weights=load_file(str(model_dir / WEIGHTS)),
        survival_baseline=read("survival_baseline.json") if baseline_path.exists() else None,
        model_card=read("model_card.json"),
        sha256=digest,
        recalibration=optional("recalibration.json"),
        conformal=optional("conformal.json"),
        drift_reference=optional("drift_reference.json"),
    )
