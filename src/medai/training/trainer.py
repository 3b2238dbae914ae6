"""A plain PyTorch training loop: mini-batch or full-batch, early stopping on validation loss, a checkpoint
after each epoch that makes an interrupted run resumable with the same result as an uninterrupted one."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn

from medai.core.errors import RunStateError

CHECKPOINT_NAME = "last.pt"


@dataclass
class TrainingResult:
    """What ``Trainer.fit`` returns; the model holds the best (lowest validation loss) weights."""

    best_epoch: int
    epochs_run: int
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    resumed_from_epoch: int | None = None


class Trainer:
    """Trains ``model`` with AdamW on ``loss_fn(model(x), *targets)``.

    Args:
        model: the network.
        loss_fn: ``(output, *targets) -> scalar``.
        max_epochs: upper bound on epochs.
        batch_size: mini-batch size; None = full batch.
        learning_rate / weight_decay: AdamW settings.
        patience: stop after this many epochs without a lower validation loss.
        seed: seeds weight init (done by the caller before building the model), shuffling and dropout.
        checkpoint_dir: where ``last.pt`` is written each ``checkpoint_every`` epochs; None = no checkpoints.
        progress: show a progress bar.
        on_epoch_end: optional callback ``(epoch, history_row)``, e.g. for tests that interrupt a run.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., Tensor],
        *,
        max_epochs: int = 300,
        batch_size: int | None = 64,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 30,
        seed: int = 42,
        checkpoint_dir: Path | None = None,
        checkpoint_every: int = 1,
        progress: bool = True,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.on_epoch_end = on_epoch_end
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)

    def fit(self, train: tuple[Tensor, ...], val: tuple[Tensor, ...], resume: bool = False) -> TrainingResult:
        """Train on ``train = (x, *targets)``, early-stop on ``val``; load the best weights into the model."""
        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        state = {"epoch": 0, "best_val": float("inf"), "best_epoch": 0, "stale": 0, "history": []}
        best_weights = copy.deepcopy(self.model.state_dict())
        resumed_from = None
        if resume:
            checkpoint = self._load_checkpoint()
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            best_weights = checkpoint["best_model"]
            generator.set_state(checkpoint["generator"])
            torch.set_rng_state(checkpoint["torch_rng"])
            state = {k: checkpoint[k] for k in state}
            resumed_from = state["epoch"]

        columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn())
        with Progress(*columns, disable=not self.progress, transient=False) as bar:
            task = bar.add_task("epochs", total=self.max_epochs, completed=state["epoch"], info="")
            stopped_early = False
            while state["epoch"] < self.max_epochs:
                if state["stale"] >= self.patience:
                    stopped_early = True
                    break
                train_loss = self._train_epoch(train, generator)
                val_loss = self.evaluate_loss(val)
                state["epoch"] += 1
                row = {"epoch": state["epoch"], "train_loss": train_loss, "val_loss": val_loss}
                state["history"].append(row)
                if val_loss < state["best_val"] - 1e-7:
                    state.update(best_val=val_loss, best_epoch=state["epoch"], stale=0)
                    best_weights = copy.deepcopy(self.model.state_dict())
                else:
                    state["stale"] += 1
                if self.checkpoint_dir is not None and (
                    state["epoch"] % self.checkpoint_every == 0 or state["epoch"] == self.max_epochs
                ):
                    self._save_checkpoint(state, best_weights, generator)
                bar.update(task, completed=state["epoch"],
                           info=f"train {train_loss:.4f}  val {val_loss:.4f}  best@{state['best_epoch']}")
                if self.on_epoch_end is not None:
                    self.on_epoch_end(state["epoch"], row)
            if state["stale"] >= self.patience and state["epoch"] < self.max_epochs:
                stopped_early = True
        self.model.load_state_dict(best_weights)
        return TrainingResult(
            best_epoch=state["best_epoch"], epochs_run=state["epoch"], best_val_loss=state["best_val"],
            history=state["history"], stopped_early=stopped_early, resumed_from_epoch=resumed_from,
        )

    def _train_epoch(self, data: tuple[Tensor, ...], generator: torch.Generator) -> float:
        self.model.train()
        n = data[0].shape[0]
        order = torch.randperm(n, generator=generator)
        size = n if self.batch_size is None else self.batch_size
        total, seen = 0.0, 0
        for start in range(0, n, size):
            index = order[start : start + size]
            if len(index) < 2 and n >= 2:  # a lone sample breaks batch norm and carries no ranking information
                continue
            batch = [t[index] for t in data]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(batch[0]), *batch[1:])
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        return total / max(seen, 1)

    @torch.no_grad()
    def evaluate_loss(self, data: tuple[Tensor, ...]) -> float:
        self.model.eval()
        return float(self.loss_fn(self.model(data[0]), *data[1:]))

    def _save_checkpoint(self, state: dict, best_weights: dict, generator: torch.Generator) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            **state,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_model": best_weights,
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        target = self.checkpoint_dir / CHECKPOINT_NAME
        temporary = target.with_suffix(".tmp")
        torch.save(payload, temporary)
        os.replace(temporary, target)  # a crash mid-write never leaves a truncated last.pt

    def _load_checkpoint(self) -> dict:
        path = None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT_NAME
        if path is None or not path.is_file():
            raise RunStateError(f"Cannot resume: no checkpoint at {path}. Start the run again without --resume.")
        # weights_only: the checkpoint is read without unpickling arbitrary objects.
        return torch.load(path, weights_only=True)
