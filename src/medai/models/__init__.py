"""Registered networks, chosen by name (``model: {name: mlp, ...}`` in a recipe)."""

from medai.models.registry import MODELS, build_model
from medai.models import mlp as _mlp  # noqa: F401  (registers "mlp")

__all__ = ["MODELS", "build_model"]
