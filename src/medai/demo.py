"""`make demo`: train the default recipes on embedded real data, print their results and report paths, then serve
them: the clinicians' web page and the API on http://127.0.0.1:8000/ until Ctrl-C.

Runs ``recipes/breast-cancer-diagnosis.yaml`` (WDBC, diagnosis) and ``recipes/post-mi-survival.yaml`` (WHAS500,
survival) into ``runs/demo/``. The service's state (tokens, audit log, drift records) is ``runs/demo/state``; a
clinician token is created and printed for the page's sign-in. ``MEDAI_DEMO_SERVE=0`` skips serving;
``MEDAI_DEMO_PORT`` picks another port.
"""

from __future__ import annotations

import datetime as dt
import os
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
    if os.environ.get("MEDAI_DEMO_SERVE", "1") == "0":
        return 0
    return serve_demo(root / "runs" / "demo", [root / "runs" / "demo" / f"{Path(r).stem}-{stamp}"
                                               for r in DEMO_RECIPES])


def serve_demo(folder: Path, runs: list[Path]) -> int:
    """Serve the demo runs with a fresh clinician token (printed once) until interrupted."""
    from medai.serve.auth import TokenStore
    from medai.serve.store import database_url, engine

    state = folder / "state"
    db = engine(database_url(state))
    _, token = TokenStore(db).create("clinician", name="make demo")
    db.dispose()
    port = os.environ.get("MEDAI_DEMO_PORT", "8000")
    print(f"\nServing the demo models: open http://127.0.0.1:{port}/ and sign in with the clinician token\n\n  {token}\n"
          "\n(stored hashed in runs/demo/state; Ctrl-C stops the service)")
    return main(["serve", "--models", *map(str, runs), "--state", str(state), "--port", port])


if __name__ == "__main__":
    sys.exit(run_demo())
