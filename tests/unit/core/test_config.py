import pytest

from medai.core.config import RunConfig, TaskKind, config_from_dict, load_recipe
from medai.core.errors import InvalidParameterError, UnknownNameError
from medai.core.registry import Registry


def test_recipe_round_trip_and_defaults(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ndata: {path: data.csv}\ntask: {kind: survival, time: t, event: e}\n"
                      "model: {name: mlp, hidden_sizes: [8]}\n")
    config = load_recipe(recipe)
    assert config.task.kind is TaskKind.SURVIVAL
    assert config.data.path == str(tmp_path / "data.csv")  # relative to the recipe
    assert config.model.params == {"hidden_sizes": [8]}
    assert config_from_dict(config.to_dict()) == config


def test_unknown_key_suggests_the_closest():
    with pytest.raises(InvalidParameterError, match=r"unknown key 'learning_rte'. Did you mean 'learning_rate'\?"):
        config_from_dict({"data": {"builtin": "wdbc"}, "training": {"learning_rte": 0.1}})


def test_invalid_values_use_the_parameter_template():
    with pytest.raises(InvalidParameterError, match=r"The 'operating_point' parameter of EvaluationConfig must be one "
                                                    r"of 'youden', 'sensitivity'. Got 'best' instead."):
        config_from_dict({"data": {"builtin": "wdbc"}, "evaluation": {"operating_point": "best"}})
    with pytest.raises(InvalidParameterError, match="'test_fraction' parameter of SplitConfig"):
        config_from_dict({"data": {"builtin": "wdbc"}, "split": {"test_fraction": 0.7}})
    with pytest.raises(InvalidParameterError, match="exactly one of 'path'"):
        config_from_dict({"data": {"builtin": "wdbc", "path": "x.csv"}})
    with pytest.raises(InvalidParameterError, match="needs both a time and an event column"):
        config_from_dict({"data": {"builtin": "wdbc"}, "task": {"kind": "survival", "time": "t"}})


def test_missing_recipe_file(tmp_path):
    with pytest.raises(InvalidParameterError, match="Recipe file not found"):
        load_recipe(tmp_path / "none.yaml")


def test_registry_did_you_mean():
    registry: Registry[int] = Registry("model")
    registry.register("resnet18")(1)
    assert registry.get("resnet18") == 1
    with pytest.raises(UnknownNameError, match=r"Unknown model 'resnet81'. Did you mean 'resnet18'\?"):
        registry.get("resnet81")
    with pytest.raises(InvalidParameterError, match="already registered"):
        registry.register("resnet18")(2)


def test_run_config_is_frozen():
    config = config_from_dict({"data": {"builtin": "wdbc"}})
    with pytest.raises(AttributeError):
        config.name = "other"  # type: ignore[misc]
    assert isinstance(config, RunConfig)
