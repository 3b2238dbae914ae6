"""Change log: a worse model on the same test records is detected by the paired bootstrap; without shared ids the
CI-overlap rule is used; configuration and data-hash changes are listed."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medai.core.errors import DataValidationError
from medai.registry.changelog import build_changelog, compare_runs, render_changelog


def _run(folder, name, created, scores, y, *, ids=None, lr=0.001, sha="aaa", metrics=None):
    folder.mkdir(parents=True)
    ids = ids if ids is not None else [f"r{i}" for i in range(len(y))]
    labels = np.where(y == 1, "yes", "no")
    pd.DataFrame({"id": ids, "split": "test", "label": labels, "score": scores}).to_csv(
        folder / "predictions.csv", index=False)
    auc = roc_auc_score(y, scores)
    (folder / "run.json").write_text(json.dumps({
        "name": name, "created": created, "task": {"kind": "binary", "class_names": ["no", "yes"]},
        "data": {"sha256": sha}, "artifact_sha256": name}))
    (folder / "metrics.json").write_text(json.dumps(metrics or {"test": {
        "auroc": {"value": auc, "ci_low": auc - 0.03, "ci_high": auc + 0.03}}}))
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text(json.dumps({"training": {"lr": lr}, "model": {"name": "mlp"}}))
    return folder


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.4).astype(int)
    good = 1 / (1 + np.exp(-(3 * (y - 0.5) + rng.normal(0, 1, 600))))
    bad = 1 / (1 + np.exp(-(3 * (y - 0.5) + rng.normal(0, 3, 600))))
    return y, good, bad


def test_paired_bootstrap_detects_a_worse_model(tmp_path, data):
    y, good, bad = data
    old = _run(tmp_path / "v1", "v1", "2024-01-01T00:00:00Z", good, y)
    new = _run(tmp_path / "v2", "v2", "2024-02-01T00:00:00Z", bad, y, lr=0.01, sha="bbb")
    out = compare_runs(old, new, n_resamples=200)
    assert out["method"] == "paired_bootstrap" and out["n_paired"] == 600
    auroc = out["metrics"]["auroc"]
    assert auroc["difference"]["value"] == pytest.approx(roc_auc_score(y, bad) - roc_auc_score(y, good))
    assert auroc["difference"]["ci_high"] < 0 and auroc["change"] == "worse"
    assert "auroc" in out["worse"]
    assert {"key": "training.lr", "old": 0.001, "new": 0.01} in out["config_changes"]
    assert out["data"]["changed"] is True
    md = render_changelog([out])
    assert "**Worse beyond the CI:** auroc" in md and "`training.lr`: 0.001 → 0.01" in md
    json.dumps(out)
    same = compare_runs(old, old, n_resamples=100)
    assert same["metrics"]["auroc"]["change"] == "no_significant_change" and same["config_changes"] == []


def test_ci_overlap_without_shared_ids_and_registry_order(tmp_path, data):
    y, good, bad = data
    other_ids = [f"x{i}" for i in range(len(y))]
    registry = tmp_path / "registry"
    _run(registry / "b", "v2", "2024-02-01T00:00:00Z", bad, y, ids=other_ids,
         metrics={"test": {"auroc": {"value": 0.70, "ci_low": 0.65, "ci_high": 0.75}}})
    _run(registry / "a", "v1", "2024-01-01T00:00:00Z", good, y,
         metrics={"test": {"auroc": {"value": 0.90, "ci_low": 0.86, "ci_high": 0.93}}})
    log = build_changelog(registry)
    entry = log["entries"][0]
    assert entry["old"]["name"] == "v1" and entry["new"]["name"] == "v2"
    assert entry["method"] == "ci_overlap" and "share 0 record ids" in entry["why_not_paired"]
    assert entry["metrics"]["auroc"]["change"] == "worse"
    assert "CI overlap" in render_changelog(log)


def test_needs_two_finished_runs(tmp_path):
    with pytest.raises(DataValidationError, match="found 0 run folder"):
        build_changelog(tmp_path)
    (tmp_path / "half").mkdir()
    with pytest.raises(DataValidationError, match="lacks run.json, metrics.json"):
        compare_runs(tmp_path / "half", tmp_path / "half")
