"""Tabular preprocessing fitted on the training split only, saved as JSON (never pickle).

Numeric columns: optional log(1 + x) for skewed columns, then median imputation with a missingness indicator for every column that had missing values in
the training split, then z-scoring with the training mean and SD. Categorical columns: one-hot over the
training categories, missing as its own category, unseen categories encoded as all zeros (and counted).

scikit-learn's ColumnTransformer does the same job but can only be saved by pickling, which medai refuses for
artefacts people load; the state here is a handful of numbers per column, stored as plain JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medai.core.errors import DataValidationError, NotFittedError

MISSING_CATEGORY = "__missing__"
STRATEGY = (
    "Numeric: median imputation fitted on the training split, a missingness indicator for each column with "
    "missing values in training, z-score with training mean/SD. Categorical: one-hot over training categories, "
    "missing as its own category, unseen categories as all zeros."
)


class TabularPreprocessor:
    """Turns a feature DataFrame into a float32 matrix ``(n_records, n_features_out)``.

    Args:
        numeric_columns: columns holding numbers (NaN = missing).
        categorical_columns: columns holding categories (read as strings).
        log1p_columns: numeric columns replaced by log(1 + x) first (values must be > -1).
    """

    def __init__(self, numeric_columns: list[str], categorical_columns: list[str],
                 log1p_columns: list[str] | tuple[str, ...] = ()) -> None:
        self.numeric_columns = list(numeric_columns)
        self.categorical_columns = list(categorical_columns)
        self.log1p_columns = list(log1p_columns)
        unknown = [c for c in self.log1p_columns if c not in self.numeric_columns]
        if unknown:
            raise DataValidationError(
                f"preprocessing.log1p names {', '.join(unknown)}, which are not numeric feature columns "
                f"(numeric: {', '.join(self.numeric_columns) or 'none'})."
            )

    def _values(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        """The numeric columns as a float array ``(rows, columns)``, NaN = missing; raises on text that is not a
        number and on infinities. Columns already of a numeric dtype (every JSON number, every parsed CSV number)
        convert in one pass; others go through ``pd.to_numeric`` column by column."""
        block = frame[self.numeric_columns]
        if all(pd.api.types.is_numeric_dtype(dtype) for dtype in block.dtypes):
            values = block.to_numpy(dtype=float, na_value=np.nan)
        else:
            values = np.column_stack([pd.to_numeric(block[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                                      for c in self.numeric_columns]) if self.numeric_columns else \
                np.zeros((len(frame), 0))
            junk = block.notna().to_numpy() & np.isnan(values)
            if junk.any():
                bad = [c for c, j in zip(self.numeric_columns, junk.any(axis=0)) if j]
                raise DataValidationError(
                    f"{source}: numeric feature column(s) {', '.join(bad)} hold non-numeric text. Fix those cells "
                    "or leave them empty."
                )
        if np.isinf(values).any():
            raise DataValidationError(f"{source}: numeric features contain infinite values; replace or blank them.")
        for index, column in enumerate(self.numeric_columns):
            if column in self.log1p_columns:
                bad = values[:, index] <= -1
                if bad.any():
                    raise DataValidationError(
                        f"{source}: column '{column}' is log-transformed (preprocessing.log1p) but has "
                        f"{int(bad.sum())} value(s) <= -1. Fix them or remove '{column}' from preprocessing.log1p."
                    )
                values[:, index] = np.log1p(values[:, index])
        return values

    def fit(self, frame: pd.DataFrame, source: str = "training data") -> TabularPreprocessor:
        numeric = pd.DataFrame(self._values(frame, source), columns=self.numeric_columns, index=frame.index)
        medians = numeric.median()
        self.medians_ = {c: float(medians[c]) if np.isfinite(medians[c]) else 0.0 for c in self.numeric_columns}
        self.indicator_columns_ = [c for c in self.numeric_columns if numeric[c].isna().any()]
        filled = numeric.fillna(self.medians_)
        self.means_ = {c: float(filled[c].mean()) for c in self.numeric_columns}
        self.stds_ = {c: float(filled[c].std(ddof=0)) or 1.0 for c in self.numeric_columns}
        self.categories_ = {
            c: sorted(self._as_category(frame[c]).unique().tolist()) for c in self.categorical_columns
        }
        return self

    @property
    def feature_names_out_(self) -> list[str]:
        self._check_fitted()
        names = [f"log1p({c})" if c in self.log1p_columns else c for c in self.numeric_columns]
        names += [f"{c}__missing" for c in self.indicator_columns_]
        for column, categories in self.categories_.items():
            names += [f"{column}={value}" for value in categories]
        return names

    def transform(self, frame: pd.DataFrame, source: str = "input") -> np.ndarray:
        """Encode ``frame``; raises DataValidationError naming absent or non-numeric columns."""
        self._check_fitted()
        missing = [c for c in self.numeric_columns + self.categorical_columns if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"{source}: the model needs feature column(s) {', '.join(missing)}, absent from the input. "
                "Provide them (empty cells are allowed: they are imputed)."
            )
        parts = []
        raw = self._values(frame, source)
        if self.numeric_columns:
            medians = np.array([self.medians_[c] for c in self.numeric_columns])
            means = np.array([self.means_[c] for c in self.numeric_columns])
            stds = np.array([self.stds_[c] for c in self.numeric_columns])
            parts.append((np.where(np.isnan(raw), medians, raw) - means) / stds)
        if self.indicator_columns_:
            positions = [self.numeric_columns.index(c) for c in self.indicator_columns_]
            parts.append(np.isnan(raw[:, positions]).astype(float))
        for column, categories in self.categories_.items():
            values = self._as_category(frame[column]).to_numpy()
            parts.append((values[:, None] == np.array(categories, dtype=object)[None, :]).astype(float))
        return np.concatenate(parts, axis=1).astype(np.float32) if parts else np.zeros((len(frame), 0), np.float32)

    def unseen_categories(self, frame: pd.DataFrame) -> dict[str, int]:
        """Count, per categorical column, values not seen in training (they are encoded as all zeros)."""
        self._check_fitted()
        return {
            c: int((~self._as_category(frame[c]).isin(self.categories_[c])).sum())
            for c in self.categorical_columns
            if c in frame.columns and (~self._as_category(frame[c]).isin(self.categories_[c])).any()
        }

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "type": "tabular",
            "strategy": STRATEGY,
            "numeric_columns": self.numeric_columns,
            "categorical_columns": self.categorical_columns,
            "log1p_columns": self.log1p_columns,
            "medians": self.medians_,
            "means": self.means_,
            "stds": self.stds_,
            "indicator_columns": self.indicator_columns_,
            "categories": self.categories_,
            "feature_names_out": self.feature_names_out_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TabularPreprocessor:
        pre = cls(state["numeric_columns"], state["categorical_columns"], state.get("log1p_columns", ()))
        pre.medians_ = {k: float(v) for k, v in state["medians"].items()}
        pre.means_ = {k: float(v) for k, v in state["means"].items()}
        pre.stds_ = {k: float(v) for k, v in state["stds"].items()}
        pre.indicator_columns_ = list(state["indicator_columns"])
        pre.categories_ = {k: list(v) for k, v in state["categories"].items()}
        return pre

    @staticmethod
    def _as_category(series: pd.Series) -> pd.Series:
        return series.map(lambda v: MISSING_CATEGORY if pd.isna(v) else str(v).strip())

    def _check_fitted(self) -> None:
        if not hasattr(self, "medians_"):
            raise NotFittedError("This TabularPreprocessor is not fitted yet; call fit(train_frame) first.")
