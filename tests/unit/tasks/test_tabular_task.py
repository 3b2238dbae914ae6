import numpy as np
import pandas as pd
import pytest

from medai.core.config import TaskConfig, TaskKind
from medai.core.errors import DataValidationError
from medai.tasks.tabular import build_tabular_task


def frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "record_id": [f"R{i}" for i in range(n)], "age": rng.normal(60, 10, n), "sex": rng.choice(["F", "M"], n),
        "label": rng.choice(["benign", "malignant"], n), "time": rng.uniform(1, 10, n), "event": rng.integers(0, 2, n),
    })


def test_binary_labels_positive_class_and_id_detection():
    task = build_tabular_task(frame(), TaskConfig(label="label"), "t.csv")
    assert task.kind is TaskKind.BINARY
    assert task.class_names == ["benign", "malignant"] and task.positive_class == "malignant"
    assert task.id_column == "record_id" and task.ids[0] == "R0"
    assert "record_id" not in task.features.columns and "label" not in task.features.columns
    assert task.numeric_columns == ["age", "time", "event"] and task.categorical_columns == ["sex"]


def test_positive_class_can_be_chosen_and_is_checked():
    task = build_tabular_task(frame(), TaskConfig(label="label", positive_class="benign"), "t.csv")
    assert task.class_names == ["malignant", "benign"]
    assert (task.y == (frame()["label"] == "benign")).all()
    with pytest.raises(DataValidationError, match="positive class 'cancer' is not a value of label column 'label'"):
        build_tabular_task(frame(), TaskConfig(label="label", positive_class="cancer"), "t.csv")


def test_integer_labels_with_many_values_become_regression_and_few_become_classes():
    data = frame(60)
    data["score"] = np.arange(60) % 3
    assert build_tabular_task(data, TaskConfig(label="score"), "t").kind is TaskKind.MULTICLASS
    data["los"] = np.linspace(1, 20, 60)
    task = build_tabular_task(data, TaskConfig(label="los"), "t")
    assert task.kind is TaskKind.REGRESSION and "treated as regression" in task.warnings[-1]


def test_survival_outcome_and_strata():
    task = build_tabular_task(frame(), TaskConfig(kind="survival", time="time", event="event"), "t")
    assert task.kind is TaskKind.SURVIVAL and task.y is None
    assert set(np.unique(task.strata)) <= {0, 1}
    assert "time" not in task.features.columns


def test_outcome_guessed_from_conventional_names_else_clear_error():
    assert build_tabular_task(frame(), TaskConfig(), "t").label == "label"
    with pytest.raises(DataValidationError, match=r"no outcome column given .*Pass --label COL"):
        build_tabular_task(frame().drop(columns=["label", "time"]), TaskConfig(), "t.csv")


def test_free_text_and_infinite_features_are_refused():
    data = frame(80)
    data["note"] = [f"free text {i}" for i in range(80)]
    with pytest.raises(DataValidationError, match="feature column 'note' holds text with 80 distinct values"):
        build_tabular_task(data, TaskConfig(label="label"), "t.csv")
    data = frame()
    data.loc[2, "age"] = np.inf
    with pytest.raises(DataValidationError, match="feature column 'age' has infinite values in data rows 3"):
        build_tabular_task(data, TaskConfig(label="label"), "t.csv")


def test_duplicate_ids_and_patient_ids():
    data = frame()
    data["record_id"] = "same"
    with pytest.raises(DataValidationError, match="must be unique per record"):
        build_tabular_task(data, TaskConfig(label="label", id="record_id"), "t.csv")
    data = frame().rename(columns={"record_id": "patient_id"})
    data["patient_id"] = [f"P{i // 2}" for i in range(len(data))]
    task = build_tabular_task(data, TaskConfig(label="label"), "t.csv")
    assert task.patient_id_column == "patient_id" and task.groups[0] == task.groups[1] == "P0"


def test_empty_feature_is_dropped_with_a_note():
    data = frame()
    data["empty"] = np.nan
    task = build_tabular_task(data, TaskConfig(label="label"), "t.csv")
    assert "empty" not in task.features.columns and any("'empty'" in w for w in task.warnings)
