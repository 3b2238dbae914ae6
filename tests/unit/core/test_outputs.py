import pytest

from medai.core.errors import RunStateError
from medai.core.outputs import finish_run_directory, open_run_directory, write_json


def test_run_directory_is_published_only_when_finished(tmp_path):
    out = tmp_path / "run"
    work = open_run_directory(out)
    assert work.name == "run.partial" and not out.exists()
    write_json(work / "metrics.json", {"a": 1})
    finish_run_directory(work, out)
    assert (out / "metrics.json").is_file() and not work.exists()
    with pytest.raises(RunStateError, match="already exists; runs are never overwritten"):
        open_run_directory(out)


def test_partial_run_needs_resume(tmp_path):
    out = tmp_path / "run"
    open_run_directory(out)
    with pytest.raises(RunStateError, match="Resume it with --resume"):
        open_run_directory(out)
    assert open_run_directory(out, resume=True).name == "run.partial"
    with pytest.raises(RunStateError, match="Nothing to resume"):
        open_run_directory(tmp_path / "other", resume=True)


def test_write_json_leaves_no_temporary_files(tmp_path):
    write_json(tmp_path / "x.json", {"value": float("nan")})
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
