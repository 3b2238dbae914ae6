import numpy as np
import pytest

from medai.core.errors import DataValidationError
from medai.data.split import split_indices


def test_partition_stratified_and_deterministic():
    strata = np.r_[np.zeros(300, int), np.ones(100, int)]
    split = split_indices(strata, val_fraction=0.15, test_fraction=0.2, seed=1)
    together = np.concatenate([split["train"], split["val"], split["test"]])
    assert sorted(together.tolist()) == list(range(400))
    assert len(split["test"]) == 80 and len(split["val"]) == 60
    for part in split.values():
        assert strata[part].mean() == pytest.approx(0.25, abs=0.02)
    again = split_indices(strata, val_fraction=0.15, test_fraction=0.2, seed=1)
    assert all((split[k] == again[k]).all() for k in split)
    other = split_indices(strata, val_fraction=0.15, test_fraction=0.2, seed=2)
    assert not (split["test"] == other["test"]).all()


def test_patient_level_split_never_shares_a_patient():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), 3)
    strata = np.repeat(rng.integers(0, 2, 100), 3)
    split = split_indices(strata, groups=groups, seed=0)
    patients = {k: set(groups[v]) for k, v in split.items()}
    assert not patients["train"] & patients["test"] and not patients["train"] & patients["val"]
    assert not patients["val"] & patients["test"]
    assert sum(len(v) for v in split.values()) == 300


def test_too_small_inputs_are_refused():
    with pytest.raises(DataValidationError, match="only 2 record"):
        split_indices(np.r_[np.zeros(50, int), [1, 1]])
    with pytest.raises(DataValidationError, match="at least 20"):
        split_indices(np.r_[np.zeros(8, int), np.ones(8, int)])
