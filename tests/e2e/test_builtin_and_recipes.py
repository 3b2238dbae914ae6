"""Built-in real data and the shipped recipes through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medai.core.config import load_recipe
from medai.data.phantoms import SEGMENTATION_DATASETS
from medai.data.builtin import BUILTIN_DATASETS

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def test_datasets_command_lists_every_builtin(run_cli):
    code, stdout, _ = run_cli("datasets")
    assert code == 0
    for name in BUILTIN_DATASETS.names():
        assert name in stdout


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipes_are_valid(recipe):
    config = load_recipe(recipe)
    assert config.name == recipe.stem
    if config.data.builtin is not None:
        assert config.data.builtin in BUILTIN_DATASETS or config.data.builtin in SEGMENTATION_DATASETS
    else:  # recipes on ../shared/data: trained by tests/e2e/test_{imaging,ecg,ehr}_*.py when present
        path = Path(config.data.path)
        assert path.parent.name == "data" and path.parent.parent.name == "shared" or \
            path.parent.parent.name == "data" and path.parent.parent.parent.name == "shared", path
        assert path.name.endswith(".npz") or path.name in ("cinc2017_af", "mimic3_demo", "indiana_reports.csv")
    assert config.model_card.intended_use and config.model_card.limitations


def test_train_on_builtin_wdbc(run_cli, tmp_path):
    code, stdout, stderr = run_cli("train", "--data", "wdbc", "--out", tmp_path / "wdbc", "--epochs", "40",
                                   "--bootstrap", "100", "--quiet")
    assert code == 0, stderr
    run = json.loads((tmp_path / "wdbc" / "run.json").read_text())
    assert run["task"]["positive_class"] == "malignant" and run["data"]["n_rows"] == 569
    assert run["split"]["n"] == {"train": 369, "val": 86, "test": 114}
    metrics = json.loads((tmp_path / "wdbc" / "metrics.json").read_text())
    assert metrics["test"]["auroc"]["value"] > 0.95  # a well-separated real dataset
    assert "Report:" in stdout and "auroc" in stdout


def test_survival_external_validation_on_a_new_cohort(run_cli, tmp_path, survival_csv):
    from tests.conftest import make_survival_table

    code, _, stderr = run_cli("train", "--data", survival_csv, "--out", tmp_path / "run", "--epochs", "40",
                              "--bootstrap", "100", "--quiet")
    assert code == 0, stderr
    external = tmp_path / "external.csv"
    make_survival_table(n=250, seed=9).to_csv(external, index=False)
    code, _, stderr = run_cli("evaluate", tmp_path / "run", "--data", external, "--out", tmp_path / "ext",
                              "--bootstrap", "100")
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "ext" / "metrics.json").read_text())["external"]
    assert metrics["c_index"]["value"] > 0.6 and "ibs" in metrics
    code, _, stderr = run_cli("evaluate", tmp_path / "run", "--data", external.with_name("nope.csv"), "--out",
                              tmp_path / "ext2")
    assert code == 2 and "not found" in stderr and not (tmp_path / "ext2").exists()
