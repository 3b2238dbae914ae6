"""Losses by task kind. Each takes the network output and the task's targets and returns a scalar."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from medai.core.config import TaskKind


def cox_loss(log_risk: Tensor, event: Tensor, time: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood (Efron ties), mean over events — the DeepSurv objective.

    Args:
        log_risk: ``(batch, 1)`` network output h(x).
        event: ``(batch,)`` 1 = event observed, 0 = censored.
        time: ``(batch,)`` follow-up time.
    """
    # imported here: torchsurv pulls in torchmetrics (~2 s), which only survival runs should pay for
    from torchsurv.loss.cox import neg_partial_log_likelihood

    if not bool(event.any()):  # a batch with no event carries no partial-likelihood information
        return log_risk.sum() * 0.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Ties in `time` detected")
        return neg_partial_log_likelihood(log_risk, event.bool(), time, ties_method="efron", reduction="mean")


def make_loss(kind: TaskKind, y_train: np.ndarray | None, n_classes: int | None, class_weight: str | None) -> Callable:
    """Return ``loss(output, *targets)`` for ``kind``; ``class_weight='balanced'`` reweights classes by
    inverse frequency in the training split (imbalance handling)."""
    if kind is TaskKind.SURVIVAL:
        return cox_loss
    if kind is TaskKind.REGRESSION:
        mse = nn.MSELoss()
        return lambda output, y: mse(output.squeeze(1), y)
    if kind is TaskKind.BINARY:
        pos_weight = None
        if class_weight == "balanced":
            n_pos = float(y_train.sum())
            pos_weight = torch.tensor([(len(y_train) - n_pos) / max(n_pos, 1.0)], dtype=torch.float32)
        bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        return lambda output, y: bce.to(output.device)(output.squeeze(1), y.float())
    if kind is TaskKind.MULTILABEL:  # K independent findings: one logistic loss per finding
        pos_weight = None
        if class_weight == "balanced":
            n_pos = y_train.sum(axis=0).astype(np.float32)
            pos_weight = torch.tensor((len(y_train) - n_pos) / np.maximum(n_pos, 1.0), dtype=torch.float32)
        bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        return lambda output, y: bce.to(output.device)(output, y.float())
    weight = None
    if class_weight == "balanced":
        counts = np.bincount(y_train, minlength=n_classes).astype(np.float32)
        weight = torch.tensor(len(y_train) / (n_classes * np.maximum(counts, 1.0)), dtype=torch.float32)
    ce = nn.CrossEntropyLoss(weight=weight)  # .to(device): the class weights follow the model (CPU or CUDA)
    return lambda output, y: ce.to(output.device)(output, y.long())
