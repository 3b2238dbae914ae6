"""EHR ingest speed: MIMIC-III demo CHARTEVENTS (758,355 rows, gzip CSV) streamed through
:func:`medai.io.mimic.read_mimic3`'s chunked reader, and the whole demo read into 100 patient timelines.

Measured: rows/s read and rows kept (mapped concepts, after dropping ERROR=1 rows and implausible values) for
CHARTEVENTS alone at chunk sizes 100,000 and 1,000,000 rows (wall clock, best of 2 runs, single process); the
whole-folder read (all six tables, timelines assembled and checked); and peak memory: the Python heap peak during
the CHARTEVENTS stream by ``tracemalloc`` (numpy and pandas buffers are traced; the gzip/C-parser buffers are not),
and the process's peak resident set size from ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (a high-water mark
over the whole process, including the interpreter and libraries).

Run: ``python bench/ehr_ingest.py [--quick]`` (writes bench/results/ehr_ingest.json).
"""

from __future__ import annotations

import resource
import sys
import time
import tracemalloc
from pathlib import Path

import common
from medai.io.ehr_concepts import OnInvalid
from medai.io.mimic import _stream_events, find_table, read_mimic3

NAME = "ehr_ingest"
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT.parent / "shared" / "data" / "mimic3_demo"


def _stream(path: Path, chunksize: int) -> dict:
    stats: dict[str, int] = {}
    started = time.perf_counter()
    frame, _ = _stream_events(path, "CHARTEVENTS", keep_all=False, chunksize=chunksize, patients=None,
                              mode=OnInvalid.RAISE, progress=None, stats=stats)
    wall = time.perf_counter() - started
    return {"chunksize": chunksize, "wall_s": wall, "rows_read": stats["CHARTEVENTS_rows_read"],
            "rows_kept": stats["CHARTEVENTS_rows_kept"], "rows_per_s": stats["CHARTEVENTS_rows_read"] / wall,
            "kept_frame_mb": float(frame.memory_usage(deep=True).sum() / 2**20)}


def run(quick: bool = False) -> dict:
    path = find_table(DEMO, "CHARTEVENTS")
    if path is None:
        raise SystemExit(f"{DEMO} has no CHARTEVENTS table (see ../shared/DATA.md).")
    started = time.perf_counter()
    repeats = 1 if quick else 2
    streams = []
    for chunksize in (100_000, 1_000_000):
        runs = [_stream(path, chunksize) for _ in range(repeats)]
        streams.append(min(runs, key=lambda r: r["wall_s"]))
    tracemalloc.start()
    _stream(path, 100_000)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    folder_started = time.perf_counter()
    timelines = read_mimic3(DEMO)
    folder_s = time.perf_counter() - folder_started
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    table = [common.row(f"CHARTEVENTS stream, chunksize {s['chunksize']:,}", "rows_per_s", None,
                        {"value": s["rows_per_s"], "ci_low": None, "ci_high": None},
                        note=f"{s['rows_read']:,} read, {s['rows_kept']:,} kept in {s['wall_s']:.2f} s")
             for s in streams]
    table.append(common.row("read_mimic3(demo): 100 timelines", "wall_s", None,
                            {"value": folder_s, "ci_low": None, "ci_high": None},
                            note=f"{sum(len(t.events) for t in timelines):,} events"))
    return {
        "name": NAME, "title": "EHR ingest: MIMIC-III demo CHARTEVENTS streamed by medai.io.mimic",
        "date": common.today(), "machine": common.machine(), "quick": quick,
        "runtime_s": time.perf_counter() - started,
        "protocol": __doc__.split("Measured: ")[1].split("Run:")[0].strip(),
        "file": {"path": str(path.relative_to(ROOT.parent)), "bytes": path.stat().st_size},
        "streams": streams,
        "memory": {"tracemalloc_peak_mb_chunksize_100000": traced_peak / 2**20,
                   "ru_maxrss_mb_process": max_rss_mb},
        "read_mimic3_demo_s": folder_s, "n_timelines": len(timelines),
        "table": table, "goal": None,
    }


if __name__ == "__main__":
    common.run_script(NAME, run, sys.argv[1:])
