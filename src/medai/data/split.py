"""Train / validation / test splits: stratified by outcome, grouped by patient when patient ids exist."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from medai.core.errors import DataValidationError

SPLITS = ("train", "val", "test")


def split_indices(
    strata: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 42,
) -> dict[str, np.ndarray]:
    """Split record indices into train/val/test.

    Without ``groups`` the split is stratified on ``strata`` (class, event flag or target quintile). With
    ``groups`` (patient ids) no patient appears in two splits; stratification is then approximate
    (scikit-learn's StratifiedGroupKFold, folds sized to the requested fractions).

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, sorted int arrays that partition ``range(len(strata))``.

    Raises:
        DataValidationError: too few records (or of a class) for the split.
    """
    n = len(strata)
    counts = np.unique(strata, return_counts=True)[1]
    min_per_stratum = int(np.ceil(1 / min(val_fraction, test_fraction))) if groups is None else 3
    if counts.min() < 3:
        raise DataValidationError(
            f"A class (or event group) has only {counts.min()} record(s); at least 3 are needed so that train, "
            "validation and test each see it. Add data, merge rare classes, or give a predefined split column."
        )
    if n < 20:
        raise DataValidationError(f"Only {n} records: at least 20 are needed for a train/validation/test split.")
    index = np.arange(n)
    if groups is None:
        stratify = strata if counts.min() >= min_per_stratum else None
        rest, test = train_test_split(index, test_size=test_fraction, stratify=stratify, random_state=seed)
        val_share = val_fraction / (1.0 - test_fraction)
        train, val = train_test_split(
            rest, test_size=val_share, stratify=None if stratify is None else strata[rest], random_state=seed + 1
        )
    else:
        n_groups = len(np.unique(groups))
        if n_groups < 6:
            raise DataValidationError(
                f"Only {n_groups} distinct patients: a patient-level split needs at least 6."
            )
        rest, test = _group_fold(index, strata, groups, test_fraction, seed)
        train, val = _group_fold(rest, strata[rest], groups[rest], val_fraction / (1.0 - test_fraction), seed + 1)
    return {name: np.sort(part) for name, part in zip(SPLITS, (train, val, test))}


def _group_fold(index, strata, groups, fraction, seed):
    n_splits = max(2, int(round(1.0 / fraction)))
    n_splits = min(n_splits, len(np.unique(groups)))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keep, held = next(folds.split(index, strata, groups))
    return index[keep], index[held]
