"""Output directories that are never half-written: work happens in ``OUT.partial`` and is renamed to ``OUT``
only when everything succeeded. A directory named ``OUT`` is therefore always complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from medai.core.errors import RunStateError

PARTIAL_SUFFIX = ".partial"


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL_SUFFIX)


def check_run_directory(out: Path, *, resume: bool = False) -> Path:
    """Check that ``OUT`` can be produced (see :func:`open_run_directory`) without creating anything."""
    out = Path(out)
    work = partial_path(out)
    if out.exists():
        raise RunStateError(f"Output directory {out} already exists; runs are never overwritten. Choose another --out.")
    if work.exists() and not resume:
        raise RunStateError(
            f"An interrupted run is in {work}. Resume it with --resume (same command), or delete that folder to "
            "start again."
        )
    if resume and not work.exists():
        raise RunStateError(f"Nothing to resume: {work} does not exist. Run the command without --resume.")
    return work


def open_run_directory(out: Path, *, resume: bool = False) -> Path:
    """Create (or, with ``resume``, reopen) the work directory ``OUT.partial`` for the final ``OUT``.

    Call it only once the inputs are validated, so that bad input leaves nothing behind.

    Raises:
        RunStateError: ``OUT`` already exists (runs are never overwritten), a partial run exists and
            ``resume`` is False, or ``resume`` is True and there is nothing to resume.
    """
    work = check_run_directory(out, resume=resume)
    work.mkdir(parents=True, exist_ok=True)
    return work


def finish_run_directory(work: Path, out: Path) -> Path:
    """Atomically publish ``work`` as ``out`` (same parent folder, so ``rename`` is atomic)."""
    if out.exists():
        raise RunStateError(f"Output directory {out} appeared while the run was working; left the run in {work}.")
    os.replace(work, out)
    return out


def write_json(path: Path, data: Any) -> None:
    """Write JSON via a temporary file in the same folder and rename it into place."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_default) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write text via a temporary file in the same folder and rename it into place."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes (e.g. a PNG) via a temporary file in the same folder and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serialisable")
