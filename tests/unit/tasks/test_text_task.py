"""The text task: text columns joined under headers, binary / '!X' / multiclass / multi-label outcomes, invalid
rows (raise naming rows and columns, never text; or skip and count), sparse findings, IU detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.core.config import TaskConfig, TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError
from medai.data.split import split_indices
from medai.tasks.text import (
    MIN_POSITIVES, TextPreprocessor, build_text_task, drop_sparse_findings, is_iu_reports, parse_text_columns,
)

IU = Path(__file__).resolve().parents[4] / "shared" / "data" / "iu_xray_reports" / "indiana_reports.csv"
SECRET = "Mr Zebedee Quux"  # text that must never appear in a message


def _frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = rng.choice(["normal", "Cardiomegaly", "Effusion;Cardiomegaly", "Opacity"], size=n)
    return pd.DataFrame({"rid": [f"r{i}" for i in range(n)],
                         "findings": [f"finding text {i} {SECRET}" for i in range(n)],
                         "impression": [f"impression {i}" if i % 3 else None for i in range(n)],
                         "Problems": labels})


def test_text_columns_are_joined_under_section_headers_and_empty_sections_left_out():
    frame = pd.DataFrame({"findings": ["Heart enlarged.", None, "  "], "impression": ["Cardiomegaly.", "Clear.", None]})
    texts, empty = TextPreprocessor(("findings", "impression")).texts(frame)
    assert texts.tolist() == ["Findings: Heart enlarged.\nImpression: Cardiomegaly.", "Impression: Clear.", ""]
    assert empty.tolist() == [False, False, True]
    single, _ = TextPreprocessor(("impression",)).texts(frame)
    assert single.tolist()[:2] == ["Cardiomegaly.", "Clear."]  # one column: no header
    assert parse_text_columns(" findings , impression ") == ("findings", "impression")
    with pytest.raises(InvalidParameterError, match="distinct columns"):
        parse_text_columns("a,a")


def test_not_prefix_makes_every_other_value_positive():
    task = build_text_task(_frame(), TaskConfig(text="findings,impression", label="Problems", id="rid",
                                                positive_class="!normal"), "f.csv")
    assert task.kind is TaskKind.BINARY
    assert task.class_names == ["normal", "not normal"] and task.positive_class == "not normal"
    expected = (_frame()["Problems"] != "normal").astype(int).to_numpy()
    assert np.array_equal(task.y, expected)
    assert task.ids[0] == "r0"
    with pytest.raises(DataValidationError, match="'norml' is not a value.*Did you mean 'normal'"):
        build_text_task(_frame(), TaskConfig(text="findings", label="Problems", positive_class="!norml"), "f.csv")


def test_positive_class_against_the_rest_and_multiclass():
    task = build_text_task(_frame(), TaskConfig(text="findings", label="Problems", positive_class="normal"), "f.csv")
    assert task.class_names == ["not normal", "normal"] and task.y.sum() == (_frame()["Problems"] == "normal").sum()
    multi = build_text_task(_frame(), TaskConfig(text="findings", label="Problems"), "f.csv")
    assert multi.kind is TaskKind.MULTICLASS and len(multi.class_names) == 4


def test_multilabel_splits_findings_and_reads_normal_as_none():
    frame = _frame(200)
    task = build_text_task(frame, TaskConfig(kind="multilabel", text="findings", label="Problems"), "f.csv")
    assert task.kind is TaskKind.MULTILABEL and task.class_names == ["Cardiomegaly", "Effusion", "Opacity"]
    for j, name in enumerate(task.class_names):
        assert task.y[:, j].sum() == frame["Problems"].str.split(";").map(lambda v: name in v).sum()
    normal = (frame["Problems"] == "normal").to_numpy()
    assert (task.y[normal].sum(axis=1) == 0).all() and (task.y[~normal].sum(axis=1) > 0).all()


def test_rare_findings_are_dropped_and_listed():
    frame = _frame(200)
    frame.loc[:2, "Problems"] = "Hernia"  # 3 < MIN_POSITIVES reports
    task = build_text_task(frame, TaskConfig(kind="multilabel", text="findings", label="Problems"), "f.csv")
    assert "Hernia" not in task.class_names and task.dropped_findings == {"Hernia": 3}
    assert any("Hernia" in w and str(MIN_POSITIVES) in w for w in task.warnings)


def test_findings_sparse_in_a_split_are_dropped_after_the_split():
    task = build_text_task(_frame(200), TaskConfig(kind="multilabel", text="findings", label="Problems"), "f.csv")
    split = split_indices(task.strata, seed=0)
    kept = drop_sparse_findings(task, split)
    assert kept.class_names == task.class_names  # all common here
    j = task.class_names.index("Effusion")
    y = task.y.copy()
    y[split["val"], j] = 0
    y[split["val"][0], j] = 1  # one positive in validation: no usable threshold
    sparse = drop_sparse_findings(task.__class__(**{**task.__dict__, "y": y}), split)
    assert "Effusion" not in sparse.class_names and sparse.y.shape[1] == len(task.class_names) - 1
    assert any("Effusion" in w for w in sparse.warnings)


def test_empty_text_and_unknown_labels_raise_naming_rows_and_columns_never_text():
    frame = _frame()
    frame.loc[4, ["findings", "impression"]] = None
    frame.loc[7, "Problems"] = "No Indexing"
    with pytest.raises(DataValidationError, match=r"empty text in 'findings' and 'impression' \(data rows 5\)") as err:
        build_text_task(frame, TaskConfig(text="findings,impression", label="Problems"), "f.csv")
    assert "data rows 8" in str(err.value) and "--on-invalid skip" in str(err.value)
    assert SECRET not in str(err.value) and "finding text" not in str(err.value)
    task = build_text_task(frame, TaskConfig(text="findings,impression", label="Problems", on_invalid="skip",
                                             id="rid"), "f.csv")
    assert task.n_skipped == 2 and len(task.y) == 58 and "r4" not in task.ids and "r7" not in task.ids
    assert any("Skipped 2 row(s)" in w for w in task.warnings)


def test_missing_columns_and_kinds_that_do_not_apply():
    with pytest.raises(DataValidationError, match="text column\\(s\\) 'report' not found"):
        build_text_task(_frame(), TaskConfig(text="report", label="Problems"), "f.csv")
    with pytest.raises(DataValidationError, match="label column 'Problem' not found. Did you mean 'Problems'"):
        build_text_task(_frame(), TaskConfig(text="findings", label="Problem"), "f.csv")
    with pytest.raises(InvalidParameterError, match="supports --task classification"):
        build_text_task(_frame(), TaskConfig(kind="regression", text="findings", label="Problems"), "f.csv")


def test_semicolon_labels_as_classes_suggest_multilabel():
    frame = _frame()
    frame.loc[0, "Problems"] = "Effusion;Opacity"  # a class with one report
    with pytest.raises(DataValidationError, match="use --task multilabel"):
        build_text_task(frame, TaskConfig(text="findings", label="Problems"), "f.csv")


def test_external_labels_are_coded_with_the_models_findings():
    task = build_text_task(_frame(), TaskConfig(kind="multilabel", text="findings", label="Problems"), "f.csv",
                           class_names=["Opacity", "Cardiomegaly", "Pneumothorax"])
    assert task.class_names == ["Opacity", "Cardiomegaly", "Pneumothorax"] and task.y[:, 2].sum() == 0
    assert task.dropped_findings == {"Effusion": int(_frame()["Problems"].str.contains("Effusion").sum())}


def test_iu_detection_uses_uid_as_id():
    frame = _frame().rename(columns={"rid": "uid"})
    assert is_iu_reports(frame)
    task = build_text_task(frame, TaskConfig(text="findings", label="Problems", positive_class="!normal"), "f.csv")
    assert task.id_column == "uid" and task.is_iu and task.ids[1] == "r1"


@pytest.mark.skipif(not IU.exists(), reason="IU X-ray reports not in ../shared/data (see DATA.md)")
def test_real_iu_reports():
    frame = pd.read_csv(IU)
    config = TaskConfig(kind="multilabel", text="findings,impression", label="Problems", on_invalid="skip")
    task = build_text_task(frame, config, str(IU))
    assert task.n_skipped == 117  # 92 'No Indexing' + 25 without findings or impression
    assert "Cardiomegaly" in task.class_names and "normal" not in task.class_names
    assert 330 <= task.y[:, task.class_names.index("Cardiomegaly")].sum() <= 345  # 345 coded, a few skipped
    binary = build_text_task(frame, TaskConfig(text="findings,impression", label="Problems",
                                               positive_class="!normal", on_invalid="skip"), str(IU))
    assert binary.y.sum() + (binary.y == 0).sum() == len(frame) - 117 and (binary.y == 0).sum() > 1300
