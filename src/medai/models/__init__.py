"""Registered networks, chosen by name (``model: {name: mlp, ...}`` in a recipe)."""

from medai.models.registry import MODELS, build_model
from medai.models import cnn as _cnn  # noqa: F401  (registers resnet18, resnet50, densenet121, vit)
from medai.models import ecg as _ecg  # noqa: F401  (registers resnet1d, ecg_transformer)
from medai.models import mlp as _mlp  # noqa: F401  (registers "mlp")
from medai.models import segmentation as _segmentation  # noqa: F401  (registers "unet")
from medai.models import sequence as _sequence  # noqa: F401  (registers gru, ehr_transformer)
from medai.models import text as _text  # noqa: F401  (registers minilm)

__all__ = ["MODELS", "build_model"]
