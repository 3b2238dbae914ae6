import numpy as np
import pandas as pd
import pytest

from medai.core.errors import DataValidationError, NotFittedError
from medai.data.preprocess import TabularPreprocessor


def test_fitted_on_train_only_with_indicators_and_one_hot():
    train = pd.DataFrame({"a": [1.0, 2.0, np.nan, 5.0], "b": [1.0, 1.0, 1.0, 1.0], "c": ["x", "y", None, "x"]})
    pre = TabularPreprocessor(["a", "b"], ["c"]).fit(train)
    assert pre.medians_["a"] == 2.0 and pre.indicator_columns_ == ["a"]
    assert pre.feature_names_out_ == ["a", "b", "a__missing", "c=__missing__", "c=x", "c=y"]
    test = pd.DataFrame({"a": [np.nan, 100.0], "b": [1.0, 1.0], "c": ["z", "y"]})
    x = pre.transform(test)
    assert x.dtype == np.float32 and x.shape == (2, 6)
    filled = np.array([1.0, 2.0, 2.0, 5.0])
    assert x[0, 0] == pytest.approx((2.0 - filled.mean()) / filled.std())  # train median, train mean/SD
    assert x[1, 0] == pytest.approx((100.0 - filled.mean()) / filled.std())
    assert x[:, 1].tolist() == [0.0, 0.0]  # constant column: SD 0 handled
    assert x[:, 2].tolist() == [1.0, 0.0]
    assert x[0, 3:].tolist() == [0.0, 0.0, 0.0]  # unseen category -> all zeros
    assert pre.unseen_categories(test) == {"c": 1}


def test_json_round_trip_gives_identical_output():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=50), "c": rng.choice(["p", "q"], 50)})
    pre = TabularPreprocessor(["a"], ["c"]).fit(frame)
    again = TabularPreprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(pre.transform(frame), again.transform(frame))


def test_errors():
    with pytest.raises(NotFittedError, match="not fitted"):
        TabularPreprocessor(["a"], []).transform(pd.DataFrame({"a": [1.0]}))
    pre = TabularPreprocessor(["a", "b"], []).fit(pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, 1.0]}))
    with pytest.raises(DataValidationError, match="needs feature column\\(s\\) b, absent"):
        pre.transform(pd.DataFrame({"a": [1.0]}), source="new.csv")
    with pytest.raises(DataValidationError, match="numeric feature column\\(s\\) a hold non-numeric text"):
        pre.transform(pd.DataFrame({"a": ["oops"], "b": [1.0]}))


def test_log1p_columns_are_transformed_before_imputation_and_checked():
    train = pd.DataFrame({"nodes": [0.0, 1.0, 3.0, np.nan], "age": [50.0, 60.0, 70.0, 80.0]})
    pre = TabularPreprocessor(["nodes", "age"], [], log1p_columns=["nodes"]).fit(train)
    assert pre.medians_["nodes"] == pytest.approx(np.log(2.0))  # median of log1p(0, 1, 3)
    assert pre.feature_names_out_[:2] == ["log1p(nodes)", "age"]
    again = TabularPreprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(pre.transform(train), again.transform(train))
    with pytest.raises(DataValidationError, match="column 'nodes' is log-transformed .* 1 value\\(s\\) <= -1"):
        pre.transform(pd.DataFrame({"nodes": [-1.0], "age": [50.0]}), source="new.csv")
    with pytest.raises(DataValidationError, match="preprocessing.log1p names size, which are not numeric"):
        TabularPreprocessor(["nodes"], ["size"], log1p_columns=["size"])


def test_numeric_dtypes_and_text_columns_encode_identically():
    """Numbers arrive as numeric columns (JSON, parsed CSV) or as text (a CSV read as strings, a JSON null mixed
    in): both conversions give the same matrix, missing values and log1p included."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=40), "n": rng.integers(0, 9, 40).astype(float),
                          "c": rng.choice(["p", "q"], 40)})
    frame.loc[[2, 7], "a"] = np.nan
    pre = TabularPreprocessor(["a", "n"], ["c"], log1p_columns=["n"]).fit(frame)
    as_text = frame.astype({"a": object, "n": object})
    as_text.loc[[2, 7], "a"] = None
    as_text["n"] = as_text["n"].map(str)
    nullable = frame.astype({"n": "Int64"})
    expected = pre.transform(frame)
    np.testing.assert_allclose(pre.transform(as_text), expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(pre.transform(nullable), expected)
    with pytest.raises(DataValidationError, match="numeric features contain infinite values"):
        pre.transform(frame.assign(a=np.inf))
