"""What every training run of every modality must write for issue 6 (trust and regulation): one check, called
from each modality's end-to-end test."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

TRUST_KEYS = ("conformal_target", "conformal_coverage", "abstain_rate")


def assert_trust_outputs(run: Path, *, classification: bool = True, audited: tuple[str, ...] = ()) -> dict:
    """fairness.json, lineage.json, trust.json, tripod_ai.json and the metric keys; returns the loaded files."""
    files = {name: json.loads((run / f"{name}.json").read_text())
             for name in ("metrics", "fairness", "lineage", "trust", "tripod_ai")}
    test = files["metrics"]["test"]
    for key in TRUST_KEYS + (("ece_before_recalibration", "ece") if classification else ()):
        assert key in test, key
    assert test["conformal_target"]["value"] == 0.9
    assert 0.0 <= test["conformal_coverage"]["value"] <= 1.0
    # the artefact serves what was evaluated: the conformal state (and any recalibration) ship with the model
    assert (run / "model" / "conformal.json").is_file()
    manifest = (run / "model" / "MANIFEST.sha256").read_text()
    assert "conformal.json" in manifest
    if (run / "model" / "recalibration.json").is_file():
        assert "recalibration.json" in manifest
    for attribute in audited:
        assert attribute in files["fairness"]["attributes"], (attribute, list(files["fairness"]["attributes"]))
        for group in files["fairness"]["attributes"][attribute]["groups"].values():
            assert "n" in group
    lineage = files["lineage"]
    assert set(lineage["splits"]) == {"train", "val", "test"} and lineage["code"] and lineage["environment"]
    predictions = pd.read_csv(run / "predictions.csv")
    for split in ("val", "test"):
        ids = {str(i) for i in predictions.loc[predictions["split"] == split, "id"]}
        assert ids <= set(lineage["splits"][split]["ids"])
    tripod = files["tripod_ai"]
    assert tripod["summary"]["met"] > 10 and tripod["summary"]["not_met"] >= 1
    assert tripod["items"]["23a"]["status"] in ("met", "not_met")
    assert "Trust: uncertainty, calibration, fairness" in (run / "report.html").read_text()
    return files
