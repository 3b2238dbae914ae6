"""Readers for tables: CSV (any common delimiter) and Parquet."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from medai.core.errors import DataValidationError, InvalidParameterError

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def is_table(path: Path) -> bool:
    """True when ``path`` is a file medai can read as a table (by suffix, ignoring ``.gz``)."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return path.is_file() and bool(suffixes) and suffixes[-1] in TABLE_SUFFIXES


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV (optionally gzipped) or Parquet file into a DataFrame.

    Cells that are empty or one of pandas' default NA markers (``NA``, ``NaN``, ``null``, ...) become missing.
    Everything else is kept as read; type checks happen in the task (``medai.tasks.tabular``).

    Raises:
        InvalidParameterError: the file does not exist or its format is not a table medai reads.
        DataValidationError: the file exists but cannot be parsed, or has no rows.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidParameterError(f"Data file not found: {path}. Check the path (it is resolved from {Path.cwd()}).")
    if path.is_dir():
        raise InvalidParameterError(
            f"{path} is a folder; this version of medai trains on a table (.csv, .tsv, .parquet). "
            "Pass the file itself."
        )
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            delimiter = _sniff_delimiter(path)
            _check_header(path, delimiter)
            frame = pd.read_csv(path, sep=delimiter, low_memory=False)
        else:
            raise InvalidParameterError(
                f"Unknown data format for {path} (suffix '{suffix or 'none'}'). "
                f"medai reads tables with suffix {', '.join(TABLE_SUFFIXES)} or a built-in dataset name "
                "(see `medai datasets`)."
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        if isinstance(exc, InvalidParameterError):
            raise
        raise DataValidationError(
            f"{path}: could not be parsed as {suffix.lstrip('.').upper()} ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0][:200]}). Check that the file is a complete, UTF-8 table with a header row."
        ) from None
    if frame.empty:
        raise DataValidationError(f"{path}: the table has no data rows. Expected a header row and one row per record.")
    frame.columns = [str(c).strip() for c in frame.columns]
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise DataValidationError(f"{path}: duplicated column names {duplicated}. Rename them so each is unique.")
    return frame


def _check_header(path: Path, delimiter: str) -> None:
    """pandas silently renames a repeated column 'a' to 'a.1'; a repeated header is an error instead."""
    with _open_text(path) as handle:
        header = next(csv.reader(handle, delimiter=delimiter), [])
    names = [name.strip() for name in header]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise DataValidationError(f"{path}: duplicated column names {duplicated}. Rename them so each is unique.")


def _sniff_delimiter(path: Path) -> str:
    opener = _open_text(path)
    with opener as handle:
        sample = handle.read(64 * 1024)
    if path.suffixes and path.suffixes[-1 if path.suffixes[-1] != ".gz" else -2].lower() == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _open_text(path: Path):
    if path.suffix.lower() == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")
