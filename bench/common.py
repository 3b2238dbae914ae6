"""Shared helpers of the benchmarks in ``bench/`` (never imported by medai, never run by the test suite).

Every benchmark trains medai's own network through :func:`medai.pipeline.fit_network` (the function behind
``medai train``) and compares it with published numbers and with classical baselines fitted in the same run on the
same splits (:class:`medai.models.baselines.FittedBaseline`). Confidence intervals come from
:func:`medai.evaluation.bootstrap.bootstrap_metrics` (percentile bootstrap over patients, stratified by outcome).

Hyperparameters are chosen from a small declared grid (:data:`SURVIVAL_GRID`, :data:`BINARY_GRID`) on validation
data carved out of the training part only; each benchmark says where.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import sksurv
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from sksurv.metrics import concordance_index_censored

import medai
from medai.core.config import DataConfig, ModelConfig, RunConfig, TaskConfig, TaskKind, TrainingConfig
from medai.evaluation.bootstrap import bootstrap_metrics
from medai.models.baselines import FittedBaseline

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Bootstrap resamples for every confidence interval of the benchmarks.
N_RESAMPLES = 1000
#: Seed of the bootstrap resampling (fixed, so that reruns give the same intervals).
BOOTSTRAP_SEED = 0


def setup_torch() -> None:
    """One intra-op thread and deterministic kernels.

    The networks here have at most a few thousand weights: extra threads only add synchronisation. On the busy
    2-core benchmark machine two threads made one full-batch Cox epoch about 25 times slower than one thread.
    """
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


# ------------------------------------------------------------------------------------------- hyperparameter grids
@dataclass(frozen=True)
class Candidate:
    """One point of a hyperparameter grid: an ``mlp`` (see ``medai.models.mlp``) and its AdamW training."""

    name: str
    hidden_sizes: tuple[int, ...]
    dropout: float
    activation: str
    learning_rate: float
    weight_decay: float
    batch_size: int | None  # None = full batch
    max_epochs: int
    patience: int

    def run_config(self, builtin: str, task: TaskConfig, seed: int) -> RunConfig:
        """The medai run configuration of this candidate for training seed ``seed``."""
        return RunConfig(
            data=DataConfig(builtin=builtin),
            task=task,
            model=ModelConfig(name="mlp", params={"hidden_sizes": list(self.hidden_sizes), "dropout": self.dropout,
                                                  "activation": self.activation}),
            training=TrainingConfig(max_epochs=self.max_epochs, batch_size=self.batch_size,
                                    learning_rate=self.learning_rate, weight_decay=self.weight_decay,
                                    patience=self.patience, seed=seed),
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "hidden_sizes": list(self.hidden_sizes), "dropout": self.dropout,
                "activation": self.activation, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay, "batch_size": self.batch_size, "max_epochs": self.max_epochs,
                "patience": self.patience}


#: DeepSurv (Cox partial likelihood) candidates, full batch, early stopping on validation loss. Declared before any
#: test data was scored: widths around DeepSurv's published choices (GBSG 8 SELU units, METABRIC 41 SELU units,
#: dropout 0.16) plus one two-layer ReLU net; learning rates and weight decay from a look at Rotterdam
#: training data only.
SURVIVAL_GRID: tuple[Candidate, ...] = (
    Candidate("selu8", (8,), 0.2, "selu", 1e-2, 1e-3, None, 1000, 50),
    Candidate("selu32", (32,), 0.1, "selu", 3e-3, 1e-2, None, 1000, 50),
    Candidate("selu41", (41,), 0.16, "selu", 1e-2, 1e-2, None, 1000, 50),
    Candidate("relu32x16", (32, 16), 0.2, "relu", 3e-3, 1e-2, None, 1000, 50),
)

#: MLP classifier candidates (class-balanced cross-entropy). ``relu64x32`` is medai's default MLP and training.
BINARY_GRID: tuple[Candidate, ...] = (
    Candidate("relu64x32", (64, 32), 0.2, "relu", 1e-3, 1e-4, 64, 300, 30),
    Candidate("relu32", (32,), 0.2, "relu", 1e-3, 1e-2, 64, 300, 30),
    Candidate("selu16_fullbatch", (16,), 0.1, "selu", 1e-2, 1e-2, None, 300, 30),
    Candidate("relu32_fullbatch", (32,), 0.2, "relu", 1e-2, 1e-2, None, 300, 30),
)


def baseline(name: str, kind: TaskKind, seed: int) -> FittedBaseline:
    """medai's in-run baseline ``name`` (unfitted).

    The random survival forest is switched to ``low_memory=True``: the benchmarks need only its risk scores
    (``predict``, unchanged to 1e-12), not survival curves, and skipping each leaf's stored cumulative hazard
    halves its fit time — the forest is otherwise the slowest part of the survival benchmarks.
    """
    fitted = FittedBaseline(name, kind, seed)
    if name == "random_survival_forest":
        fitted.estimator.set_params(low_memory=True)
    return fitted


# ------------------------------------------------------------------------------------------------------- metrics
def harrell_c_many(time: np.ndarray, event: np.ndarray, risks: np.ndarray) -> np.ndarray:
    """Harrell's C of several risk scores for the same patients, ``risks`` of shape ``(n, k)`` -> ``(k,)``.

    Exactly scikit-survival's ``concordance_index_censored`` (the function behind medai's ``c_index``): a pair
    (i, j) is comparable when i had the event and ``t_j > t_i``, or ``t_j == t_i`` and j is censored; tied risks
    (within 1e-8) count one half. Vectorised because the bootstrap evaluates it hundreds of thousands of times;
    :func:`check_harrell_c` compares it with scikit-survival on every benchmark's data.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risks = np.asarray(risks, dtype=float).reshape(len(time), -1)
    later = time[None, :] > time[:, None]
    tied_censored = (time[None, :] == time[:, None]) & ~event[None, :]
    i, j = np.nonzero(event[:, None] & (later | tied_censored))
    if len(i) == 0:
        return np.full(risks.shape[1], np.nan)
    difference = risks[i] - risks[j]  # (pairs, k): > 0 when the patient with the event got the higher risk
    tied = np.abs(difference) <= 1e-8
    return ((difference > 1e-8) & ~tied).sum(axis=0) / len(i) + 0.5 * tied.sum(axis=0) / len(i)


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    return float(harrell_c_many(time, event, np.asarray(risk)[:, None])[0])


def check_harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> None:
    """Fail loudly if the vectorised C-index ever differs from scikit-survival's."""
    reference = concordance_index_censored(np.asarray(event).astype(bool), np.asarray(time, float), risk)[0]
    ours = harrell_c(time, event, risk)
    if not np.isclose(ours, reference, rtol=0, atol=1e-12):
        raise AssertionError(f"vectorised Harrell C {ours} differs from scikit-survival's {reference}")


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney rank formula (ties count one half), as scikit-learn's."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def check_auroc(y: np.ndarray, score: np.ndarray) -> None:
    if not np.isclose(auroc(y, score), roc_auc_score(y, score), rtol=0, atol=1e-12):
        raise AssertionError("rank AUROC differs from scikit-learn's roc_auc_score")


# --------------------------------------------------------------------------------------------------- summaries
def summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, SD (n - 1), min and max of per-seed (or per-fold) values, with the values themselves."""
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "sd": float(array.std(ddof=1)) if len(array) > 1 else None,
            "min": float(array.min()), "max": float(array.max()), "n": int(len(array)),
            "values": [float(v) for v in array]}


def bootstrap_ci(metric_fn: Callable[..., dict[str, float]], arrays: tuple[np.ndarray, ...], strata: np.ndarray,
                 n_resamples: int = N_RESAMPLES) -> dict[str, dict[str, float | None]]:
    """medai's percentile bootstrap (rows = patients, stratified by ``strata``), fixed seed."""
    return bootstrap_metrics(metric_fn, arrays, strata=strata, n_resamples=n_resamples, seed=BOOTSTRAP_SEED)


def row(model: str, metric: str, per_seed: dict[str, Any] | None, ci: dict[str, Any] | None, *,
        published: float | None = None, note: str = "") -> dict[str, Any]:
    """One line of a benchmark's result table."""
    return {
        "model": model, "metric": metric,
        "mean": None if per_seed is None else per_seed["mean"],
        "sd": None if per_seed is None else per_seed["sd"],
        "n_seeds": None if per_seed is None else per_seed["n"],
        "value": None if ci is None else ci["value"],
        "ci_low": None if ci is None else ci["ci_low"],
        "ci_high": None if ci is None else ci["ci_high"],
        "published": published, "note": note,
    }


def format_row(entry: dict[str, Any]) -> str:
    """``model  metric  mean ± SD (95 % CI lo–hi) | published`` for the printed tables."""
    if entry["mean"] is not None and entry["sd"] is not None:
        ours = f"{entry['mean']:.3f} ± {entry['sd']:.3f} (n={entry['n_seeds']})"
    else:
        ours = f"{entry['value']:.3f}"
    ci = (f"[{entry['ci_low']:.3f}–{entry['ci_high']:.3f}]"
          if entry["ci_low"] is not None and entry["ci_high"] is not None else "")
    published = "—" if entry["published"] is None else f"{entry['published']:.3f}"
    return f"  {entry['model']:<46} {entry['metric']:<12} {ours:<26} {ci:<16} | published {published}"


# ----------------------------------------------------------------------------------------------- run records
def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cores = os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "description": f"{cores}-core {platform.machine()} CPU, " + (f"GPU {gpu}" if gpu else "no GPU"),
        "platform": platform.platform(),
        "cpu_model": model,
        "cpu_count": cores,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": {"medai": medai.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__, "scikit-survival": sksurv.__version__},
    }


def today() -> str:
    return dt.date.today().isoformat()


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return path


def print_result(payload: dict[str, Any]) -> None:
    print(f"{payload['title']} — {payload['runtime_s']:.0f} s")
    for entry in payload["table"]:
        print(format_row(entry))
    if payload.get("goal") is not None:
        goal = payload["goal"]
        print(f"  goal {goal['metric']} >= {goal['value']}: {'met' if goal['met'] else 'NOT met'}")


def run_script(name: str, run: Callable[..., dict[str, Any]], argv: Sequence[str]) -> None:
    """What each benchmark does when run on its own: run (``--quick`` for a smoke test), print, save."""
    payload = run(quick="--quick" in argv)
    print_result(payload)
    if not payload["quick"]:
        print(f"  -> {write_result(name, payload)}")
