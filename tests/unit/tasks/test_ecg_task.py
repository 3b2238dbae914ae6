"""ECG tasks: folder layout → samples, labels, groups and splits."""

from __future__ import annotations

import numpy as np
import pytest

from medai.core.config import PreprocessingConfig, TaskConfig, TaskKind
from medai.core.errors import DataValidationError
from medai.data.synthetic_ecg import synthesize_ecg, write_wfdb
from medai.tasks.ecg import MITBIH_DS1, MITBIH_DS2, _mitbih_split, build_ecg_task, is_ecg_source
from tests.ecg_fixtures import write_cinc_mat_record, write_ptbxl_folder


def _cinc_folder(root, labels: dict[str, str], seed=0):
    rhythm = {"N": "sinus", "A": "af", "O": "pvc"}
    for i, (name, label) in enumerate(labels.items()):
        signal = (np.zeros((1, 4500), np.float32) if label == "~" else
                  synthesize_ecg(rhythm[label], duration_s=15, sampling_rate_hz=300, seed=seed + i).signal)
        write_cinc_mat_record(root / "records", name, signal, 300.0)
    (root / "REFERENCE.csv").write_text("".join(f"{n},{label}\n" for n, label in labels.items()))
    return root


def test_rhythm_folder_gives_one_sample_per_usable_recording_in_cinc_class_order(tmp_path):
    labels = {f"R{i:03d}": "NAO"[i % 3] for i in range(24)} | {"R900": "~"}
    root = _cinc_folder(tmp_path, labels)
    assert is_ecg_source(root) and not is_ecg_source(tmp_path / "records" / "R000.mat")
    task = build_ecg_task(root, TaskConfig(), PreprocessingConfig())
    assert task.name == "rhythm" and task.kind is TaskKind.MULTICLASS
    assert task.class_names == ["N", "A", "O"]  # the flat '~' recording is unusable, not a sample
    assert [i for i, _ in task.unusable] == ["R900"] and task.unusable_labels == {"R900": "~"}
    assert len(task.y) == 24 and np.bincount(task.y).tolist() == [8, 8, 8]
    assert task.preprocessor.rr_channel and task.preprocessor.leads == ["ECG"]
    assert len(task.sha256) == 64
    with pytest.raises(DataValidationError, match="at least 30 are needed to train"):
        build_ecg_task(root, TaskConfig(), PreprocessingConfig(), min_recordings=30)


def test_a_folder_without_labels_cannot_train(tmp_path):
    write_cinc_mat_record(tmp_path, "X1", synthesize_ecg("sinus", duration_s=10, seed=1).signal, 300.0)
    with pytest.raises(DataValidationError, match="no labels"):
        build_ecg_task(tmp_path, TaskConfig(), PreprocessingConfig())


def test_beats_get_aami_classes_and_record_groups(tmp_path):
    for i in range(3):
        write_wfdb(synthesize_ecg("pvc", duration_s=20, sampling_rate_hz=360, seed=i, pvc_fraction=0.25),
                   tmp_path, f"rec{i}")
    task = build_ecg_task(tmp_path, TaskConfig(), PreprocessingConfig(), min_recordings=1)
    assert task.name == "beats" and task.class_names == ["N", "V"]
    assert set(task.groups) == {"rec0", "rec1", "rec2"} and np.array_equal(task.groups, task.records)
    assert task.predefined_split is None  # not MIT-BIH record names
    assert any("left out (no full beat window)" in n for n in task.notes)  # beats in the first/last second
    assert task.beat_peaks.min() >= 250 and (task.y == 1).sum() > 5


def test_mitbih_records_follow_de_chazal_ds1_ds2():
    records = np.array(["100", "101", "106", "100", "118", "105", "124", "201"], dtype=object)
    split = _mitbih_split(records)
    assert set(records[split["test"]]) == {"100", "105"} <= set(MITBIH_DS2)
    assert set(records[split["train"]]) | set(records[split["val"]]) <= set(MITBIH_DS1)
    assert not set(records[split["train"]]) & set(records[split["val"]])
    assert _mitbih_split(np.array(["rec1", "rec2"], dtype=object)) is None


def test_ptbxl_folder_is_multilabel_with_the_recommended_folds(tmp_path):
    root = write_ptbxl_folder(tmp_path / "ptbxl", n_records=30)
    task = build_ecg_task(root, TaskConfig(), PreprocessingConfig())
    assert task.kind is TaskKind.MULTILABEL and task.class_names == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert task.y.shape == (30, 5) and task.y[-1].tolist() == [0, 0, 1, 0, 1]  # ASMI + NDT: MI and STTC
    assert task.preprocessor.sampling_rate_hz == 100 and len(task.preprocessor.leads) == 12
    assert task.groups is not None and len(set(task.groups)) == 15  # two ECGs per patient
    assert {k: len(v) for k, v in task.predefined_split.items()} == {"train": 24, "val": 3, "test": 3}
