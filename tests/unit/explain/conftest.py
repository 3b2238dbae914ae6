"""A tiny CNN trained on a synthetic task whose discriminative region is known in every image.

Task: 16×16 noise images; class 1 has a bright 4×4 square at a random position, class 0 none. The evidence for
class 1 is the square, so a faithful class-1 map puts its mass on the square — about 8× its area share — while a
map unrelated to the model (random, or uniform) puts about the area share (~13 %) there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

SIZE = 16
SQUARE = 4


@pytest.fixture(autouse=True)
def one_thread():
    """The machines are shared: one intra-op thread, restored after the test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_squares(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(images (n, 1, 16, 16), labels (n,), square masks (n, 16, 16))``; the mask is empty for class 0."""
    x = rng.normal(0.0, 0.1, (n, 1, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 2, n)
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    for i in np.flatnonzero(y):
        r, c = rng.integers(0, SIZE - SQUARE + 1, 2)
        x[i, 0, r:r + SQUARE, c:c + SQUARE] += 1.0
        masks[i, r:r + SQUARE, c:c + SQUARE] = True
    return torch.from_numpy(x), torch.from_numpy(y), masks


def tiny_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),  # index 5: the Grad-CAM layer
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1),  # one logit: binary
    )


@dataclass
class SquareTask:
    model: nn.Module
    images: torch.Tensor  # (8, 1, 16, 16), all class 1
    masks: np.ndarray  # (8, 16, 16) the square of each image, grown by one pixel (the receptive blur)
    accuracy: float


@pytest.fixture(scope="session")
def square_task() -> SquareTask:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = tiny_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(50):
        x, y, _ = make_squares(32, rng)
        loss = nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y.float())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    x, y, masks = make_squares(64, rng)
    with torch.no_grad():
        accuracy = float(((model(x)[:, 0] > 0).long() == y).float().mean())
    positive = np.flatnonzero(y.numpy() == 1)[:8]
    grown = np.zeros_like(masks[positive])
    for k, i in enumerate(positive):
        rows, cols = np.nonzero(masks[i])
        grown[k, max(rows.min() - 1, 0):rows.max() + 2, max(cols.min() - 1, 0):cols.max() + 2] = True
    return SquareTask(model=model, images=x[positive], masks=grown, accuracy=accuracy)


def mass_on(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's total (non-negative) mass inside its mask."""
    maps = np.clip(maps, 0, None)
    return (maps * masks).reshape(len(maps), -1).sum(1) / maps.reshape(len(maps), -1).sum(1)


@pytest.fixture
def mass():
    return mass_on
