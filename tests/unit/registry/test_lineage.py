"""Lineage: data hashes, split membership hashes, the git commit of this checkout, environment versions."""

import hashlib
import importlib.metadata
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import medai
from medai.core.errors import DataValidationError
from medai.registry import lineage
from medai.registry.lineage import build_lineage, code_version, ids_sha256


def _lineage(tmp_path, **overrides):
    data = tmp_path / "data.csv"
    data.write_text("id,x\n1,2\n")
    kwargs = dict(data_files=[data], data_sha256="abc", split_ids={"train": ["b", "a"], "test": ["c"]},
                  seeds={"training": 3}, config={"name": "run", "model": {"name": "mlp"}})
    kwargs.update(overrides)
    return build_lineage(**kwargs), data


def test_data_split_and_config_hashes_are_stable(tmp_path):
    out, data = _lineage(tmp_path)
    assert out["data"]["files"] == [{"path": str(data), "size_bytes": data.stat().st_size,
                                     "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}]
    assert out["splits"]["train"] == {"n": 2, "sha256": hashlib.sha256(b"a\nb").hexdigest(), "ids": ["b", "a"]}
    assert ids_sha256(["a", "b"]) == ids_sha256(["b", "a"]) != ids_sha256(["a", "c"])
    again, _ = _lineage(tmp_path, config={"model": {"name": "mlp"}, "name": "run"})  # key order does not matter
    assert again["config_sha256"] == out["config_sha256"]
    changed, _ = _lineage(tmp_path, config={"name": "run", "model": {"name": "resnet18"}})
    assert changed["config_sha256"] != out["config_sha256"]
    hidden, _ = _lineage(tmp_path, include_ids=False)
    assert "ids" not in hidden["splits"]["test"] and hidden["splits"]["test"]["sha256"] == ids_sha256(["c"])
    assert out["seeds"] == {"training": 3}
    json.dumps(out)


def test_environment_records_key_package_versions(tmp_path):
    out, _ = _lineage(tmp_path)
    env = out["environment"]
    assert env["packages"]["numpy"] == importlib.metadata.version("numpy")
    assert env["packages"]["scikit-learn"] == importlib.metadata.version("scikit-learn")
    assert "torch" in env["packages"] and env["python"].count(".") == 2


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_code_version_is_the_commit_of_this_checkout():
    package = Path(medai.__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("medai is not imported from a git checkout")
    code = code_version()
    assert code["source"] == "git" and code["git_commit"] == head.stdout.strip()
    assert isinstance(code["git_dirty"], bool)


def test_code_version_without_git_falls_back_to_the_package_version(tmp_path, monkeypatch):
    monkeypatch.setattr(lineage.shutil, "which", lambda name: None)  # git absent: never fails
    code = code_version()
    assert code["source"] == "package" and code["git_commit"] is None
    assert code["medai_version"] is not None
    outside = code_version(tmp_path)  # a folder that is no checkout
    assert outside["source"] == "package"


def test_missing_data_file_and_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(DataValidationError, match="data file .*nope.csv does not exist"):
        _lineage(tmp_path, data_files=[tmp_path / "nope.csv"])
    with pytest.raises(DataValidationError, match="split 'train' lists 1 record id\\(s\\) more than once"):
        _lineage(tmp_path, split_ids={"train": ["a", "a"]})
