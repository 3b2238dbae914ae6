"""`make demo`: train the default recipes on embedded real data and print their results and report paths.

Runs ``recipes/breast-cancer-diagnosis.yaml`` (WDBC, diagnosis) and ``recipes/post-mi-survival.yaml`` (WHAS500,
survival) into ``runs/demo/``.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from medai.cli import main

DEMO_RECIPES = ("breast-cancer-diagnosis.yaml", "post-mi-survival.yaml")


def run_demo(root: Path = Path.cwd()) -> int:
    stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}"
    for recipe in DEMO_RECIPES:
        path = root / "recipes" / recipe
        out = root / "runs" / "demo" / f"{path.stem}-{stamp}"
        status = main(["train", str(path), "--out", str(out), "--quiet"])
        if status != 0:
            return status
    print("\nOpen the reports above in a browser; `medai predict RUN INPUT.csv` scores new records.")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
