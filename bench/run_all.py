"""Run every benchmark of bench/ one after the other and print one comparison table (``make bench``).

Each benchmark writes ``bench/results/<name>.json`` (machine, date, seeds, per-seed and per-fold numbers, mean,
SD, bootstrap CI, in-run baselines, published numbers, runtime). ``--quick`` runs a smoke test with fewer seeds,
candidates and resamples, writes nothing and its numbers are not to be reported. ``--only NAME`` runs one.

The tabular set takes 7–8 minutes on a 2-core CPU, mostly METABRIC's random survival forests; the imaging set
(medmnist: 3 seeds × 2 datasets, imaging_speed) about 40 minutes more (see docs/benchmarks.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cinc2017_cv  # noqa: E402
import common  # noqa: E402
import deepsurv_rotterdam_gbsg  # noqa: E402
import deid  # noqa: E402
import ehr_ingest  # noqa: E402
import imaging_speed  # noqa: E402
import iu_reports  # noqa: E402
import medmnist  # noqa: E402
import memory_3d  # noqa: E402
import metabric_cv  # noqa: E402
import mimic_mortality  # noqa: E402
import negation  # noqa: E402
import serve_latency  # noqa: E402
import monitor_speed  # noqa: E402
import wdbc_cv  # noqa: E402

BENCHMARKS = {module.NAME: module for module in (wdbc_cv, deepsurv_rotterdam_gbsg, metabric_cv, medmnist,
                                                 imaging_speed, memory_3d, cinc2017_cv, monitor_speed,
                                                 ehr_ingest, mimic_mortality, negation, deid, iu_reports,
                                                 serve_latency)}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = list(BENCHMARKS)
    if "--only" in argv:
        name = argv[argv.index("--only") + 1]
        if name not in BENCHMARKS:
            print(f"Unknown benchmark '{name}'. Choose one of: {', '.join(BENCHMARKS)}.")
            return 2
        names = [name]
    started = time.perf_counter()
    payloads = []
    for name in names:
        print(f"Running {name}{' (quick smoke test)' if quick else ''} ...", flush=True)
        payload = BENCHMARKS[name].run(quick=quick)
        if not quick:
            common.write_result(name, payload)
        payloads.append(payload)
    total = time.perf_counter() - started
    machine = common.machine()
    print()
    print(f"medai benchmarks — {common.today()} — {machine['description']} ({machine['platform']}, "
          f"{machine['cpu_model']}) — total {total:.0f} s")
    print("  model                                          metric       ours: mean ± SD over seeds  95 % CI"
          "          | published")
    for payload in payloads:
        print()
        common.print_result(payload)
    if quick:
        print("\n(quick smoke test: numbers are not reportable; nothing was written)")
    else:
        print(f"\nResults: {common.RESULTS_DIR}/<name>.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
