import json

import pytest
import torch

from medai.core.config import config_from_dict
from medai.core.errors import ArtifactIntegrityError
from medai.registry.artifact import MANIFEST, load_artifact, save_artifact, verify_manifest


@pytest.fixture
def artefact(tmp_path):
    model_dir = tmp_path / "model"
    save_artifact(
        model_dir, state_dict={"w": torch.arange(6.0).reshape(2, 3)},
        config=config_from_dict({"data": {"builtin": "wdbc"}}), task={"kind": "binary"},
        preprocessor={"type": "tabular"}, thresholds={"threshold": 0.4}, model_card_md="# card\n",
        model_card={"schema": "x"},
    )
    return model_dir


def test_round_trip(artefact):
    loaded = load_artifact(artefact.parent)  # a run folder works as well as model/
    assert torch.equal(loaded.weights["w"], torch.arange(6.0).reshape(2, 3))
    assert loaded.thresholds == {"threshold": 0.4} and len(loaded.sha256) == 64
    names = [line.split("  ")[1] for line in (artefact / MANIFEST).read_text().splitlines()]
    assert sorted(names) == ["config.json", "model_card.json", "model_card.md", "preprocessor.json", "task.json",
                             "thresholds.json", "weights.safetensors"]


def test_changed_file_is_refused(artefact):
    path = artefact / "thresholds.json"
    path.write_text(json.dumps({"threshold": 0.1}))
    with pytest.raises(ArtifactIntegrityError, match="'thresholds.json' does not match its sha256"):
        load_artifact(artefact)


def test_missing_or_added_file_is_refused(artefact):
    (artefact / "extra.bin").write_bytes(b"x")
    with pytest.raises(ArtifactIntegrityError, match="extra.bin are not in MANIFEST.sha256"):
        verify_manifest(artefact)
    (artefact / "extra.bin").unlink()
    (artefact / "model_card.md").unlink()
    with pytest.raises(ArtifactIntegrityError, match="'model_card.md' listed in the manifest is missing"):
        verify_manifest(artefact)
    (artefact / MANIFEST).unlink()
    with pytest.raises(ArtifactIntegrityError, match="has no MANIFEST.sha256"):
        verify_manifest(artefact)
