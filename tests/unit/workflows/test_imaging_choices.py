import numpy as np
import pytest
import torch

from medai.core.config import DataConfig, ModelConfig, RunConfig, TaskConfig, TaskKind
from medai.core.errors import InvalidParameterError
from medai.data.images import ImagePreprocessor
from medai.models.cnn import resolve_stem
from medai.tasks.imaging import ImageTask, _resolve_classes
from medai.workflows.imaging import resolve_model, resolve_precision


def _task(size=28, dims=2):
    images = np.zeros((4, 1, *([size] * dims)), np.uint8)
    return ImageTask(kind=TaskKind.BINARY, images=images, y=np.array([0, 1, 0, 1]), class_names=["a", "b"],
                     positive_class="b", ids=np.arange(4).astype(str), groups=None, predefined_split=None,
                     source="x", skipped=[], notes=[], preprocessor=ImagePreprocessor())


def test_stem_follows_the_input_size():
    assert resolve_stem("auto", (28, 28)) == "small" and resolve_stem("auto", (224, 224)) == "standard"
    with pytest.raises(InvalidParameterError):
        resolve_stem("tiny", (28, 28))


def test_model_resolution_is_saved_in_the_config():
    config = RunConfig(data=DataConfig(path="x.npz"))
    model = resolve_model(config, _task(28))
    assert model.name == "resnet18" and model.params == {"spatial_dims": 2, "stem": "small"}
    vit = resolve_model(config.replace(model=ModelConfig(name="vit")), _task(32))
    assert vit.params["image_size"] == [32, 32]
    assert resolve_model(config, _task(32, dims=3)).params["spatial_dims"] == 3
    with pytest.raises(InvalidParameterError, match="does not take images"):
        resolve_model(config.replace(model=ModelConfig(name="unet")), _task())


def test_precision_auto_uses_fp32_for_small_cpu_inputs():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, (28, 28)) == "fp32"
    assert resolve_precision("fp32", cpu, (224, 224)) == "fp32"


def test_positive_class_moves_to_index_one():
    task = _resolve_classes(_task(), TaskConfig(positive_class="a"))
    assert task.class_names == ["b", "a"] and task.y.tolist() == [1, 0, 1, 0] and task.positive_class == "a"
    with pytest.raises(InvalidParameterError, match="not one of the classes"):
        _resolve_classes(_task(), TaskConfig(positive_class="c"))
