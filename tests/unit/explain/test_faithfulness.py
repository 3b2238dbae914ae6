"""Deletion / insertion against random orderings and the model-parameter randomisation test, on models whose
evidence is known: a linear model using features 0-2 of 10, a 1-D conv net that reads only samples 22-41 of an
ECG-like input, and the tiny image CNN of conftest.py whose evidence is a bright square."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from torch import nn

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.explain.faithfulness import (
    BETTER_THAN_RANDOM_Z,
    deletion_insertion_chart,
    faithfulness_report,
    gradient_attribution,
    randomisation_chart,
    randomisation_test,
    torch_model_fn,
)
from medai.explain.saliency import integrated_gradients
from medai.explain.sanity import SENSITIVE_BELOW

WEIGHTS = np.array([2.0, -1.5, 1.0, 0, 0, 0, 0, 0, 0, 0])


def _linear_inputs(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 10)).astype(np.float32)


def linear_score(x: np.ndarray) -> np.ndarray:
    """P(positive) of a logistic model that reads features 0-2 only."""
    return 1 / (1 + np.exp(-(x @ WEIGHTS)))


def test_linear_model_true_attribution_beats_random():
    x = _linear_inputs()
    report = faithfulness_report(linear_score, x, x * WEIGHTS, baseline="zero", steps=10, n_random=10, seed=0)
    deletion, insertion = report["deletion"], report["insertion"]
    assert deletion["auc"] < deletion["random_auc_mean"] - BETTER_THAN_RANDOM_Z * deletion["random_auc_sd"]
    assert insertion["auc"] > insertion["random_auc_mean"] + BETTER_THAN_RANDOM_Z * insertion["random_auc_sd"]
    assert deletion["better_than_random"] and insertion["better_than_random"] and report["better_than_random"]
    assert deletion["difference"] > 0.1 and insertion["difference"] > 0.1
    assert deletion["win_rate"] > 0.8
    assert deletion["curve"][0] == pytest.approx(float(linear_score(x).mean()), abs=1e-5)
    assert deletion["curve"][-1] == pytest.approx(0.5, abs=1e-6)  # everything removed: the zero input's score
    assert insertion["curve"][0] == pytest.approx(0.5, abs=1e-6)
    assert "better than random" in report["interpretation"]
    assert json.loads(json.dumps(report, allow_nan=False)) == report  # JSON-ready: plain types, no NaN
    # Ranked by magnitude, the 3 informative features (30 %) go first: the score then is 0.5 for every input.
    by_magnitude = faithfulness_report(linear_score, x, x * WEIGHTS, steps=10, order="absolute")
    assert by_magnitude["fractions"][3] == pytest.approx(0.3)
    assert by_magnitude["deletion"]["curve"][3] == pytest.approx(0.5, abs=1e-6)
    assert by_magnitude["insertion"]["curve"][3] == pytest.approx(deletion["curve"][0], abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_attribution_is_not_better_than_random(seed):
    x = _linear_inputs()
    noise = np.random.default_rng(100 + seed).normal(size=x.shape)
    report = faithfulness_report(linear_score, x, noise, steps=10, n_random=10, seed=seed)
    assert not report["better_than_random"]
    assert "not shown to be more faithful" in report["interpretation"]


def test_inverted_attribution_is_worse_than_random():
    x = _linear_inputs()
    report = faithfulness_report(linear_score, x, -(x * WEIGHTS), steps=10)
    assert report["deletion"]["difference"] < 0 and report["insertion"]["difference"] < 0
    assert not report["deletion"]["better_than_random"]


class WindowNet(nn.Module):
    """1-D conv over 2 leads × 64 samples whose output reads conv features at samples 24-39 only (the receptive
    field reaches samples 22-41)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 5, padding=2)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x))[..., 24:40].mean(-1))


@pytest.fixture(scope="module")
def window_task():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = WindowNet().eval()
    x = np.random.default_rng(0).normal(size=(64, 2, 64)).astype(np.float32)
    score = torch_model_fn(net)
    return net, score, x[np.argsort(-score(x))[:8]]  # the 8 highest-scoring strips


@pytest.mark.parametrize("baseline", ["zero", "blur", "mean"])
def test_conv_window_time_attribution_beats_random(window_task, baseline):
    net, score, x = window_task
    # A time trace (samples,) over both leads: the map's trailing shape; each step removes all leads at a time.
    trace = gradient_attribution(net, x, None, method="integrated_gradients").sum(axis=1)
    assert np.abs(trace[:, :22]).max() == 0 and np.abs(trace[:, 42:]).max() == 0  # nothing outside the window
    report = faithfulness_report(score, x, trace, baseline=baseline, steps=16, n_random=10)
    assert report["n_elements"] == 64 and report["baseline"] == baseline
    assert report["deletion"]["better_than_random"] and report["insertion"]["better_than_random"]


def test_batching_does_not_change_the_curves(window_task):
    net, score, x = window_task
    trace = gradient_attribution(net, x[:3], None).sum(axis=1)
    sizes = []

    def counted(batch):
        sizes.append(len(batch))
        return score(batch)

    small = faithfulness_report(counted, x[:3], trace, steps=8, n_random=3, batch_size=5)
    assert max(sizes) == 5 and sum(sizes) == 3 * 2 * 9 * 4  # inputs × curves × points × orderings
    large = faithfulness_report(score, x[:3], trace, steps=8, n_random=3)
    assert small == large


def test_image_maps_on_the_square_task(square_task):
    """(C, H, W) images with (H, W) maps: integrated gradients beat random orderings with a blurred baseline.
    The logit is scored: the model is so confident (P = 1.000) that probabilities saturate and hide the curves."""
    score = torch_model_fn(square_task.model)
    maps = integrated_gradients(square_task.model, square_task.images, target=1)
    report = faithfulness_report(score, square_task.images, maps, baseline="blur", steps=16, n_random=10)
    assert report["n_elements"] == 256 and report["better_than_random"]


def test_randomisation_changes_gradient_maps_of_a_trained_mlp():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 10)).astype(np.float32)
    y = (rng.random(256) < linear_score(x)).astype(np.float32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mlp = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
        optimiser = torch.optim.Adam(mlp.parameters(), lr=1e-2)
        for _ in range(100):
            loss = nn.functional.binary_cross_entropy_with_logits(mlp(torch.from_numpy(x))[:, 0], torch.from_numpy(y))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    before = [p.detach().clone() for p in mlp.parameters()]
    gradient = lambda net, batch, t: gradient_attribution(net, batch, t, method="gradient")  # noqa: E731
    result = randomisation_test(mlp, gradient, x[:16], seed=0)
    assert result["reference"]["spearman_abs"] == 1.0
    assert result["n_layers"] == 3 and [s["n_layers_randomised"] for s in result["steps"]] == [1, 2, 3]
    assert result["steps"][0]["layer"] == "4"  # the output layer first
    assert result["final"]["spearman_abs"] < SENSITIVE_BELOW and result["passed"]
    assert "passes this sanity check" in result["interpretation"]
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert all(torch.equal(a, b) for a, b in zip(before, mlp.parameters()))  # the model is untouched

    # A "map" that ignores the model (the input's magnitude) cannot pass.
    blind = randomisation_test(mlp, lambda net, batch, t: batch.abs().detach().numpy(), x[:16])
    assert blind["final"]["spearman_abs"] == 1.0 and not blind["passed"]
    assert "do not trust them" in blind["interpretation"]
    png = base64.b64decode(randomisation_chart(result))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_torch_model_fn_activations():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Linear(4, 3)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    probabilities = torch_model_fn(net, "softmax", batch_size=2)(x)
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    single = torch_model_fn(nn.Sequential(net, nn.Linear(3, 1)), "sigmoid")(x)
    assert single.shape == (5,) and ((single > 0) & (single < 1)).all()
    with pytest.raises(InvalidParameterError, match="'activation' parameter"):
        torch_model_fn(net, "tanh")


def test_multiclass_target_column_and_errors():
    x = _linear_inputs(4)

    def two_classes(a):
        p = linear_score(a)
        return np.stack([1 - p, p], axis=1)

    positive = faithfulness_report(two_classes, x, x * WEIGHTS, target=1, steps=10)
    assert positive == faithfulness_report(linear_score, x, x * WEIGHTS, steps=10)
    with pytest.raises(InvalidParameterError, match=r"'target' parameter .* class index in \[0, 2\)"):
        faithfulness_report(two_classes, x, x, steps=5)
    with pytest.raises(InvalidParameterError, match="None when model_fn returns one score per input"):
        faithfulness_report(linear_score, x, x, target=1, steps=5)
    with pytest.raises(DataValidationError, match=r"must be \(N, \*map_shape\)"):
        faithfulness_report(linear_score, x, x[:, :5], steps=5)
    with pytest.raises(InvalidParameterError, match=r"'steps' parameter .* \[1, 10\]"):
        faithfulness_report(linear_score, x, x, steps=11)
    with pytest.raises(InvalidParameterError, match="'n_random' parameter"):
        faithfulness_report(linear_score, x, x, n_random=1)
    with pytest.raises(InvalidParameterError, match="'baseline' parameter"):
        faithfulness_report(linear_score, x, x, baseline=np.zeros(3))
    with pytest.raises(InvalidParameterError, match="'baseline' parameter"):
        faithfulness_report(linear_score, x, x, baseline="noise")
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(DataValidationError, match="'inputs' holds NaN or infinite"):
        faithfulness_report(linear_score, bad, x)


def test_blur_baseline_stays_within_each_channel_of_an_ehr_sequence():
    """(bins, channels) maps with blur_sigma=(2, 0): values blur along time, never across concepts."""
    x = np.zeros((4, 12, 3), dtype=np.float32)
    x[:, :, 0] = 1.0
    x[:, 6, 2] = 5.0  # one spike in channel 2
    seen = []

    def model(a):
        seen.append(a.copy())
        return a[:, :, 2].max(axis=1)

    faithfulness_report(model, x, x[:, :, :], baseline="blur", blur_sigma=(2, 0), steps=2, n_random=2)
    fully_removed = seen[0][2]  # input 0, map ordering, deletion, last step: the baseline itself
    np.testing.assert_allclose(fully_removed[:, 0], 1.0, rtol=1e-6)  # channel 0 constant: unchanged by blur
    assert np.abs(fully_removed[:, 1]).max() == 0  # nothing leaked from channel 0 or 2
    assert 0 < fully_removed[6, 2] < 5.0 and fully_removed[4, 2] > 0  # the spike spread along time


def test_deletion_insertion_chart_is_a_png():
    x = _linear_inputs(4)
    report = faithfulness_report(linear_score, x, x * WEIGHTS, steps=10)
    assert base64.b64decode(deletion_insertion_chart(report, title="linear"))[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidParameterError, match="faithfulness_report"):
        deletion_insertion_chart({"steps": []})
