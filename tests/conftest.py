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
def one_torch_thread():
    """One torch thread for tests of small tensors: about as fast, and not slowed 20–40× when another process keeps
    one of the two cores busy (measured: OpenMP threads wait on each other)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


# ------------------------------------------------------------------------------------------------ images
def make_lesion_images(n: int = 160, size: int = 32, seed: int = 0, rgb: bool = False):
    """uint8 images (N, H, W[, 3]) and 0/1 labels: label 1 images hold a bright disk ("lesion") at a random place
    on textured noise; label 0 images are noise only. Learnable in a few epochs by a small CNN."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = (np.arange(n) % 2).astype(np.int64)
    rng.shuffle(labels)
    images = rng.normal(90, 20, (n, size, size))
    for i in np.flatnonzero(labels):
        cy, cx = rng.integers(6, size - 6, 2)
        radius = rng.uniform(2.5, 4.5)
        images[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] += 110
    images = np.clip(images, 0, 255).astype(np.uint8)
    if rgb:
        images = np.stack([images, images // 2 + 40, images], axis=-1)
    return images, labels


def write_lesion_npz(path: Path, n: int = 160, size: int = 32, seed: int = 0) -> Path:
    """A MedMNIST-format npz (official split 60/20/20 %) of :func:`make_lesion_images`."""
    images, labels = make_lesion_images(n, size, seed)
    cut = [int(n * 0.6), int(n * 0.8)]
    parts = np.split(np.arange(n), cut)
    arrays = {}
    for name, index in zip(("train", "val", "test"), parts):
        arrays[f"{name}_images"] = images[index]
        arrays[f"{name}_labels"] = labels[index][:, None]
    np.savez(path, **arrays)
    return path


def write_lesion_folder(folder: Path, n: int = 120, size: int = 32, seed: int = 0) -> Path:
    """A class-folder tree ``folder/{lesion,normal}/*.png`` of :func:`make_lesion_images`."""
    from PIL import Image

    images, labels = make_lesion_images(n, size, seed)
    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / ("lesion" if label else "normal")
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"img{i:04d}.png")
    return folder


def write_image_recipe(path: Path, data: Path, **sections) -> Path:
    """A small, fast image recipe: a quarter-width ResNet-18, few epochs, 100 bootstrap resamples."""
    import yaml

    recipe = {"name": "test-images", "data": {"path": str(data)},
              "model": {"name": "resnet18", "widen_factor": 0.25},
              "training": {"max_epochs": 4, "patience": 4, "batch_size": 32, "learning_rate": 0.003},
              "evaluation": {"n_resamples": 100, "explained_images": 0}}
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(recipe))
    return path


# ------------------------------------------------------------------------------------------------ service
def write_segmentation_npz(path: Path, n_train: int = 64, seed: int = 0, spatial_dims: int = 2) -> Path:
    """Lesion phantoms (0-3 lesions per case) as a segmentation ``.npz``: 2-D 64 px images with 0.5 mm pixels,
    or 3-D 16^3 volumes with 1 mm voxels."""
    from medai.data.phantoms import make_lesion_phantoms

    size = 64 if spatial_dims == 2 else 16
    make = lambda n, s: make_lesion_phantoms(n, seed=s, spatial_dims=spatial_dims, size=size)  # noqa: E731
    parts = {"train": make(n_train, seed), "val": make(16, seed + 1), "test": make(24, seed + 2)}
    arrays = {f"{s}_{k}": getattr(p, k) for s, p in parts.items() for k in ("images", "masks")}
    spacing = [0.5, 0.5] if spatial_dims == 2 else [1.0, 1.0, 1.0]
    np.savez(path, **arrays, spacing_mm=np.array(spacing), label=np.array("lesion"))
    return path


def write_segmentation_recipe(path: Path, data: Path, name: str = "lesion-unet", epochs: int = 4,
                              channels: tuple[int, ...] = (8, 16, 32)) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({
        "name": name, "data": {"path": str(data)}, "task": {"kind": "segmentation"},
        "model": {"name": "unet", "channels": list(channels), "strides": [2] * (len(channels) - 1)},
        "training": {"max_epochs": epochs, "batch_size": 8, "learning_rate": 0.005, "patience": epochs},
        "evaluation": {"n_resamples": 100}, "baselines": ["otsu"]}))
    return path


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory):
    """Real models for the service tests, trained once per session (each in a few seconds): a binary tabular
    model, a survival model, a small image CNN, an EHR mortality model on generated FHIR bundles and a small
    lesion U-Net."""
    from medai.cli import main
    from medai.data.synthetic_fhir import write_fhir_bundles

    root = tmp_path_factory.mktemp("served")
    fast = ["--epochs", "4", "--bootstrap", "100", "--quiet"]
    make_binary_table().to_csv(root / "cohort.csv", index=False)
    make_survival_table().to_csv(root / "followup.csv", index=False)
    write_lesion_folder(root / "images", n=120)
    write_fhir_bundles(root / "bundles", 90, seed=11)
    runs = root / "runs"
    jobs = {"risk": ["--data", root / "cohort.csv", "--label", "outcome", "--id", "patient"],
            "survival": ["--data", root / "followup.csv", "--time", "time", "--event", "event"],
            "image": [write_image_recipe(root / "images.yaml", root / "images", name="lesion-cnn",
                                         task={"positive_class": "lesion"})],
            "ehr": ["--data", root / "bundles", "--task", "mortality"],
            "segmentation": [write_segmentation_recipe(root / "segmentation.yaml",
                                                       write_segmentation_npz(root / "lesions.npz"))]}
    for name, args in jobs.items():
        assert main(["train", *map(str, args), "--out", str(runs / name), *fast]) == 0, name
    return runs
