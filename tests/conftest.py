"""Shared fixtures: small generated clinical tables (never real patient data) and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def run_cli(capsys):
    """Run `medai ARGS` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def make_binary_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A binary outcome driven by two features, with missing values, a categorical column, sex and age."""
    rng = np.random.default_rng(seed)
    age = rng.normal(62, 12, n).round()
    bp = rng.normal(130, 15, n)
    sex = rng.choice(["F", "M"], n)
    smoker = rng.choice(["never", "former", "current"], n)
    logit = 0.08 * (age - 62) + 0.05 * (bp - 130) + 0.8 * (smoker == "current") - 0.5
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    bp[rng.random(n) < 0.1] = np.nan  # 10 % missing blood pressure
    return pd.DataFrame({"patient": [f"P{i:04d}" for i in range(n)], "age": age, "sex": sex, "sbp": bp,
                         "smoker": smoker, "noise": rng.normal(size=n), "outcome": np.where(y, "yes", "no")})


def make_survival_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Exponential survival times with hazard exp(0.7 x1 - 0.5 x2), uniform censoring."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    event_time = rng.exponential(1.0 / (0.1 * np.exp(0.7 * x1 - 0.5 * x2)))
    censor_time = rng.uniform(1, 30, n)
    time = np.minimum(event_time, censor_time)
    return pd.DataFrame({"x1": x1, "x2": x2, "age": rng.normal(60, 10, n).round(),
                         "time": np.round(time, 3) + 0.001, "event": (event_time <= censor_time).astype(int)})


@pytest.fixture
def binary_csv(tmp_path) -> Path:
    path = tmp_path / "cohort.csv"
    make_binary_table().to_csv(path, index=False)
    return path


@pytest.fixture
def survival_csv(tmp_path) -> Path:
    path = tmp_path / "followup.csv"
    make_survival_table().to_csv(path, index=False)
    return path
