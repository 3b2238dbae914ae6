"""sha256 of files and folders: artefact manifests and data lineage."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (bounded memory for large inputs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(root: Path, paths: list[Path]) -> str:
    """One hex sha256 for a set of files under ``root``: of the sorted lines ``<relative path> <file sha256>``, so
    it changes when any file's content, name or presence changes (data lineage of a folder dataset)."""
    root = Path(root)
    lines = sorted(f"{Path(p).relative_to(root).as_posix()} {sha256_file(Path(p))}" for p in paths)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
