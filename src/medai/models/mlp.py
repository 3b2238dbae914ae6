"""Multi-layer perceptron for tabular data.

With a Cox partial-likelihood loss and one output this is DeepSurv (Katzman et al., BMC Med Res Methodol 2018):
the network outputs the log-risk ``h(x)`` of a proportional-hazards model. With cross-entropy it is an MLP
classifier; with squared error a regressor. The head and loss come from the task, not from the model name.
"""

from __future__ import annotations

from torch import Tensor, nn

from medai.core.errors import invalid_parameter
from medai.models.registry import MODELS

_ACTIVATIONS = {"relu": nn.ReLU, "selu": nn.SELU, "gelu": nn.GELU}


@MODELS.register("mlp")
class MLP(nn.Module):
    """Fully connected network ``(batch, in_features) -> (batch, out_features)``.

    Args:
        in_features: number of input features (after preprocessing).
        out_features: 1 for binary / regression / survival log-risk, K for K classes.
        hidden_sizes: width of each hidden layer.
        dropout: dropout probability after each hidden layer.
        activation: ``relu``, ``selu`` (DeepSurv's choice, paired with alpha-dropout) or ``gelu``.
        batch_norm: batch normalisation after each hidden linear layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_sizes: list[int] | tuple[int, ...] = (64, 32),
        dropout: float = 0.2,
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise invalid_parameter("activation", "MLP", f"one of {sorted(_ACTIVATIONS)}", activation)
        if not 0.0 <= dropout < 1.0:
            raise invalid_parameter("dropout", "MLP", "in [0, 1)", dropout)
        if any(int(h) < 1 for h in hidden_sizes):
            raise invalid_parameter("hidden_sizes", "MLP", "a list of positive integers", hidden_sizes)
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers.append(nn.Linear(width, int(size)))
            if batch_norm:
                layers.append(nn.BatchNorm1d(int(size)))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.AlphaDropout(dropout) if activation == "selu" else nn.Dropout(dropout))
            width = int(size)
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:  # (batch, in_features) -> (batch, out_features)
        return self.net(x)
