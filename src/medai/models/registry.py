"""The model registry: a name maps to a builder ``(in_features, out_features, **params) -> nn.Module``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from medai.core.errors import InvalidParameterError
from medai.core.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def build_model(name: str, in_features: int, out_features: int, params: dict[str, Any]) -> nn.Module:
    """Build the registered network ``name``; unknown parameters raise with the accepted ones listed."""
    builder = MODELS.get(name)
    try:
        return builder(in_features=in_features, out_features=out_features, **params)
    except TypeError as exc:
        raise InvalidParameterError(f"Model '{name}': {exc}. Check the 'model' section of the recipe.") from None
