import gzip

import pandas as pd
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.io.tabular import read_table

FRAME = pd.DataFrame({"a": [1.5, 2.0, None], "b": ["x", "y", "z"]})


@pytest.mark.parametrize("name,sep", [("t.csv", ","), ("t.tsv", "\t"), ("t.txt", ";")])
def test_reads_delimited_text(tmp_path, name, sep):
    FRAME.to_csv(tmp_path / name, sep=sep, index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / name), FRAME)


def test_reads_parquet_and_gzip(tmp_path):
    FRAME.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), FRAME)
    with gzip.open(tmp_path / "t.csv.gz", "wt") as handle:
        FRAME.to_csv(handle, index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.csv.gz"), FRAME)


def test_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"Data file not found: .*missing.csv"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "x.dcm").write_bytes(b"DICM")
    with pytest.raises(InvalidParameterError, match=r"Unknown data format .*x.dcm.*suffix '.dcm'"):
        read_table(tmp_path / "x.dcm")
    (tmp_path / "empty.csv").write_text("a,b\n")
    with pytest.raises(DataValidationError, match="has no data rows"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    with pytest.raises(DataValidationError, match="duplicated column names"):
        read_table(tmp_path / "dup.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataValidationError, match="could not be parsed as PARQUET"):
        read_table(tmp_path / "bad.parquet")
    with pytest.raises(InvalidParameterError, match="is a folder"):
        read_table(tmp_path)
