"""Lineage of a run (``lineage.json``): which data, which split, which code, which environment, which seeds.

With it a result can be traced back and re-run: the sha256 of every data file, the record ids of each split with a
hash of each list, the git commit of the medai source tree (and whether it had uncommitted changes) or the
installed package version, the Python and key library versions, the seeds and the resolved configuration.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import medai
from medai.core.errors import DataValidationError, invalid_parameter
from medai.core.hashing import sha256_file

__all__ = ["KEY_PACKAGES", "build_lineage", "code_version", "environment_info", "ids_sha256"]

SCHEMA = "medai-lineage/1"
#: Distributions whose versions change results; absent ones are recorded as null.
KEY_PACKAGES = (
    "torch", "numpy", "pandas", "scipy", "scikit-learn", "scikit-survival", "monai", "fairlearn", "safetensors",
    "pydicom", "nibabel", "wfdb", "spacy", "medspacy", "sentence-transformers", "transformers", "fhir.resources",
)
_GIT_TIMEOUT_S = 10


def ids_sha256(ids: Sequence[str]) -> str:
    """sha256 of a split's membership: of the sorted ids joined by newlines (order-independent, so the same
    records give the same hash however they were listed)."""
    return hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode("utf-8")).hexdigest()


def _git(args: list[str], cwd: Path) -> str | None:
    """Output of one git command, or None when git is absent, times out, or fails (lineage never fails on git)."""
    git = shutil.which("git")
    if git is None:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # no inherited GIT_DIR redirection
    try:
        done = subprocess.run([git, *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S,
                              env=env, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version(package_dir: Path | None = None) -> dict[str, Any]:
    """Version of the medai code that ran.

    In a git checkout (the package's files tracked by git): ``source: "git"``, ``git_commit`` (``git rev-parse
    HEAD``), ``git_dirty`` (any uncommitted change or untracked file under the package folder) and
    ``n_changed_files``. Otherwise ``source: "package"`` with the installed distribution's version only.

    Args:
        package_dir: the folder of the medai package; default: where ``medai`` was imported from.

    Returns:
        ``{"medai_version", "source", "git_commit", "git_dirty", "n_changed_files"}`` (git fields null outside a
        checkout).
    """
    package_dir = Path(package_dir) if package_dir is not None else Path(medai.__file__).resolve().parent
    try:
        version = importlib.metadata.version("medai")
    except importlib.metadata.PackageNotFoundError:
        version = getattr(medai, "__version__", None)
    result: dict[str, Any] = {"medai_version": version, "source": "package", "git_commit": None, "git_dirty": None,
                              "n_changed_files": None}
    # The package must itself be tracked: a venv's site-packages inside some other repository is not a checkout.
    if package_dir.is_dir() and _git(["ls-files", "--error-unmatch", "__init__.py"], package_dir) is not None:
        commit = _git(["rev-parse", "HEAD"], package_dir)
        status = _git(["status", "--porcelain", "--untracked-files=normal", "--", "."], package_dir)
        if commit:
            changed = [line for line in (status or "").splitlines() if line.strip()]
            result.update(source="git", git_commit=commit, git_dirty=bool(changed) if status is not None else None,
                          n_changed_files=len(changed) if status is not None else None)
    return result


def environment_info(packages: Sequence[str] = KEY_PACKAGES) -> dict[str, Any]:
    """Python, platform and the installed versions of ``packages`` (None when not installed)."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "executable_prefix": sys.prefix,
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


def _data_entries(data_files: Sequence[Path]) -> list[dict[str, Any]]:
    entries = []
    for given in data_files:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files = [path]
        else:
            raise DataValidationError(
                f"Lineage: data file {path} does not exist; pass the files the run actually read (or data_sha256 "
                "alone when the files are no longer available)."
            )
        entries += [{"path": str(p), "size_bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files]
    return entries


def build_lineage(
    *,
    data_files: Sequence[Path] | None,
    data_sha256: str | None,
    split_ids: Mapping[str, Sequence[str]],
    seeds: Mapping[str, Any],
    config: Mapping[str, Any],
    include_ids: bool = True,
) -> dict[str, Any]:
    """The content of ``lineage.json``.

    Args:
        data_files: files (or folders, expanded recursively) the run read; each gets its size and sha256. None when
            only ``data_sha256`` is known (e.g. a built-in dataset).
        data_sha256: the run's single data hash as in ``run.json`` (``medai.core.hashing``), or None.
        split_ids: ``{split: [record id, ...]}`` — record ids as in ``predictions.csv``.
        seeds: every seed used, e.g. ``{"training": 0, "split": 0, "bootstrap": 0}``.
        config: the resolved run configuration (``RunConfig.to_dict()``).
        include_ids: write the id lists themselves; False keeps only their counts and hashes (when ids must not
            leave the site).

    Returns:
        JSON-ready dict: ``schema``, ``created`` (UTC ISO 8601), ``data`` (``sha256``, ``files``), ``splits``
        (``{split: {"n", "sha256", "ids"}}``), ``code`` (:func:`code_version`), ``environment``
        (:func:`environment_info`), ``seeds``, ``config`` and ``config_sha256`` (of its canonical JSON).

    Raises:
        DataValidationError: a data file does not exist, or a split lists an id twice.
        InvalidParameterError: ``split_ids``, ``seeds`` or ``config`` is not a mapping.
    """
    owner = "build_lineage"
    for name, value in (("split_ids", split_ids), ("seeds", seeds), ("config", config)):
        if not isinstance(value, Mapping):
            raise invalid_parameter(name, owner, "a dict", type(value).__name__)
    splits: dict[str, Any] = {}
    for split, ids in split_ids.items():
        ids = [str(i) for i in ids]
        if len(set(ids)) != len(ids):
            raise DataValidationError(
                f"Lineage: split '{split}' lists {len(ids) - len(set(ids))} record id(s) more than once; each record "
                "belongs to one split once. Check the id column."
            )
        splits[str(split)] = {"n": len(ids), "sha256": ids_sha256(ids), **({"ids": ids} if include_ids else {})}
    canonical = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {"sha256": data_sha256, "files": _data_entries(data_files) if data_files else []},
        "splits": splits,
        "code": code_version(),
        "environment": environment_info(),
        "seeds": dict(seeds),
        "config": json.loads(canonical),
        "config_sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    }
