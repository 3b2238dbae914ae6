"""Sequence networks for EHR time series: ``(batch, bins, channels)`` → logits ``(batch, out_features)``.

The input is what :class:`medai.data.ehr_features.EhrFeaturizer` builds: per time bin the standardised (imputed)
values, the observation mask and the time since the last measurement of each concept, plus static facts broadcast
along time. Missingness reaches the networks as input channels, so "not measured" can carry information (Lipton et
al., MLHC 2016; Che et al., Sci Rep 2018). ``in_features`` is the number of channels per bin.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medai.core.errors import DataValidationError, invalid_parameter
from medai.models.ecg import _dropout, _positive_int, sinusoidal_positions
from medai.models.registry import MODELS


def _check_input(x: Tensor, channels: int, owner: str) -> None:
    if x.ndim != 3 or x.shape[2] != channels:
        raise DataValidationError(
            f"{owner} expects input (batch, bins, channels={channels}); got shape {tuple(x.shape)}. Build it with "
            "the model's own EhrFeaturizer (preprocessor.json of the artefact)."
        )


@MODELS.register("gru")
class GruClassifier(nn.Module):
    """A GRU over time bins (Cho et al. 2014); the last hidden state (the bin just before the prediction time)
    through dropout and a linear head.

    Args:
        in_features: channels per bin.
        out_features: logits (1 binary, K for K phenotypes).
        hidden: GRU width (default 64).
        layers: stacked GRU layers (default 1).
        dropout: before the head, and between GRU layers when layers > 1 (default 0.3; the MIMIC demo is tiny).
    """

    def __init__(self, in_features: int, out_features: int, hidden: int = 64, layers: int = 1,
                 dropout: float = 0.3) -> None:
        super().__init__()
        owner = "GruClassifier"
        self.in_features = _positive_int(in_features, "in_features", owner)
        _positive_int(out_features, "out_features", owner)
        dropout = _dropout(dropout, owner)
        self.gru = nn.GRU(in_features, _positive_int(hidden, "hidden", owner), _positive_int(layers, "layers", owner),
                          batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, out_features)

    def features(self, x: Tensor) -> Tensor:
        """The last hidden state ``(batch, hidden)``."""
        _check_input(x, self.in_features, "GruClassifier")
        output, _ = self.gru(x)
        return output[:, -1]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))

    @classmethod
    def contract_case(cls, out_features: int):
        return 7, {"hidden": 8}, torch.randn(4, 12, 7), (4, out_features)


@MODELS.register("ehr_transformer")
class EhrTransformer(nn.Module):
    """A small transformer encoder over time bins: a linear embedding of each bin's channels, sinusoidal positions,
    pre-norm encoder layers, and the mean over bins into a linear head.

    Args:
        in_features: channels per bin.
        out_features: logits.
        width: embedding size (default 64; a multiple of ``heads``, even).
        depth: encoder layers (default 2).
        heads: attention heads (default 4).
        dropout: in the encoder and before the head (default 0.2).
    """

    def __init__(self, in_features: int, out_features: int, width: int = 64, depth: int = 2, heads: int = 4,
                 dropout: float = 0.2) -> None:
        super().__init__()
        owner = "EhrTransformer"
        self.in_features = _positive_int(in_features, "in_features", owner)
        _positive_int(out_features, "out_features", owner)
        if _positive_int(width, "width", owner, minimum=2) % _positive_int(heads, "heads", owner) or width % 2:
            raise invalid_parameter("width", owner, f"an even multiple of heads={heads}", width)
        dropout = _dropout(dropout, owner)
        self.width = width
        self.embed = nn.Linear(in_features, width)
        layer = nn.TransformerEncoderLayer(d_model=width, nhead=heads, dim_feedforward=4 * width, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=_positive_int(depth, "depth", owner),
                                             enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, out_features)

    def features(self, x: Tensor) -> Tensor:
        """The mean encoded bin ``(batch, width)``."""
        _check_input(x, self.in_features, "EhrTransformer")
        tokens = self.embed(x)
        tokens = tokens + sinusoidal_positions(x.shape[1], self.width, x.device).to(tokens.dtype)
        return self.norm(self.encoder(tokens)).mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))

    @classmethod
    def contract_case(cls, out_features: int):
        return 7, {"width": 16, "depth": 1, "heads": 2}, torch.randn(4, 12, 7), (4, out_features)


#: Registered names that take EHR sequences ``(batch, bins, channels)``.
SEQUENCE_MODELS = ("gru", "ehr_transformer")
