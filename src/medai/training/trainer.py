"""A plain PyTorch training loop: mini-batch or full-batch, early stopping on validation loss, a checkpoint
after each epoch that makes an interrupted run resumable with the same result as an uninterrupted one.

The same loop trains tabular networks (float tensors, full or mini-batch) and images (uint8 tensors turned
into augmented float batches by a ``batch_transform``), in fp32 or bf16 autocast, on the CPU or CUDA, in one
process or under ``torchrun`` with DistributedDataParallel (see :mod:`medai.training.distributed`).

Distributed equivalence: every rank draws the same permutation of the training set each epoch and takes every
W-th index of each global batch (W = world size, per-rank batch = batch_size / W), so the union of the ranks'
batches is exactly the single-process batch and DDP's averaged gradient is the single-process gradient — up to
batch-norm statistics, which are per rank on the CPU (SyncBatchNorm needs CUDA; it is used there).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import time

import torch
import torch.distributed as dist
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn

from medai.core.errors import InvalidParameterError, RunStateError

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
        batch_transform: ``(x_batch, index, epoch, training) -> model input``, e.g. uint8 images → normalised,
            augmented floats (:class:`medai.data.images.BatchAugmentation`); None feeds ``x`` as is.
        precision: ``fp32`` or ``bf16`` (autocast; the loss is computed in fp32).
        channels_last: NHWC / NDHWC memory layout for convolutions (faster with bf16 on CPUs with AMX).
        device: where to train (``cpu``, ``cuda``, ``cuda:1``); None = the model's current device.
        eval_batch_size: validation in chunks of this size (images); None = the whole validation split at once.
        lr_schedule: ``constant`` or ``cosine`` (per epoch, from ``learning_rate`` to 0 at ``max_epochs``).
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
        batch_transform: Callable[[Tensor, Tensor, int, bool], Tensor] | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        device: str | torch.device | None = None,
        eval_batch_size: int | None = None,
        lr_schedule: str = "constant",
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise InvalidParameterError(f"Trainer: precision must be 'fp32' or 'bf16'; got {precision!r}.")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.channels_last = channels_last
        model = model.to(self.device, memory_format=torch.channels_last) if channels_last else model.to(self.device)
        self.world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.rank = dist.get_rank() if self.world_size > 1 else 0
        if self.world_size > 1 and batch_size is not None and batch_size % self.world_size:
            raise InvalidParameterError(
                f"Trainer: batch_size {batch_size} is not divisible by the {self.world_size} processes; choose a "
                "multiple so that every rank gets the same share of each batch."
            )
        self.train_model = model
        if self.world_size > 1:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            self.train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
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
        self.batch_transform = batch_transform
        self.precision = precision
        self.eval_batch_size = eval_batch_size
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
        if lr_schedule not in ("constant", "cosine"):
            raise InvalidParameterError(f"Trainer: lr_schedule must be 'constant' or 'cosine'; got {lr_schedule!r}.")
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max_epochs)
                          if lr_schedule == "cosine" else None)

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
            if self.scheduler is not None:
                self.scheduler.load_state_dict(checkpoint["scheduler"])
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
                started = time.perf_counter()
                train_loss, n_seen = self._train_epoch(train, generator, state["epoch"])
                seconds = time.perf_counter() - started
                val_loss = self._agreed(self.evaluate_loss(val))
                if self.scheduler is not None:
                    self.scheduler.step()
                state["epoch"] += 1
                row = {"epoch": state["epoch"], "train_loss": train_loss, "val_loss": val_loss,
                       "seconds": round(seconds, 3), "samples_per_s": round(n_seen * self.world_size / seconds, 1)}
                state["history"].append(row)
                if val_loss < state["best_val"] - 1e-7:
                    state.update(best_val=val_loss, best_epoch=state["epoch"], stale=0)
                    best_weights = copy.deepcopy(self.model.state_dict())
                else:
                    state["stale"] += 1
                if self.checkpoint_dir is not None and self.rank == 0 and (
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

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _input(self, x: Tensor, index: Tensor, epoch: int, training: bool) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.batch_transform is not None:
            x = self.batch_transform(x, index, epoch, training)
        if self.channels_last and x.ndim in (4, 5):
            x = x.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)
        return x

    def _loss(self, model: nn.Module, batch: list[Tensor], index: Tensor, epoch: int, training: bool) -> Tensor:
        x = self._input(batch[0], index, epoch, training)
        with self._autocast():
            output = model(x)
        targets = [t.to(self.device, non_blocking=True) for t in batch[1:]]
        return self.loss_fn(output.float(), *targets)

    def _train_epoch(self, data: tuple[Tensor, ...], generator: torch.Generator, epoch: int) -> tuple[float, int]:
        """One pass over the training data; returns (mean loss on this rank, samples this rank saw)."""
        self.model.train()
        n = data[0].shape[0]
        order = torch.randperm(n, generator=generator)  # the same on every rank: same seed, same draws
        size = n if self.batch_size is None else self.batch_size
        world, rank = self.world_size, self.rank
        if world > 1:
            order = order[: n - n % world]
        total, seen = 0.0, 0
        for start in range(0, len(order), size):
            global_index = order[start : start + size]
            if len(global_index) < 2 and n >= 2:  # a lone sample breaks batch norm and carries no ranking information
                continue
            index = global_index[rank::world]
            batch = [t[index] for t in data]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss(self.train_model, batch, index, epoch, training=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        return total / max(seen, 1), seen

    @torch.no_grad()
    def evaluate_loss(self, data: tuple[Tensor, ...]) -> float:
        """Mean loss on ``data`` (in chunks of ``eval_batch_size`` when set; for losses that are means)."""
        self.model.eval()
        n = data[0].shape[0]
        size = n if self.eval_batch_size is None else self.eval_batch_size
        total = 0.0
        for start in range(0, n, size):
            index = torch.arange(start, min(start + size, n))
            batch = [t[index] for t in data]
            total += float(self._loss(self.model, batch, index, 0, training=False)) * len(index)
        return total / n

    def _agreed(self, value: float) -> float:
        """Under DDP, rank 0's value on every rank, so that all ranks stop at the same epoch."""
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda"
                              else "cpu")
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def _save_checkpoint(self, state: dict, best_weights: dict, generator: torch.Generator) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            **state,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **({"scheduler": self.scheduler.state_dict()} if self.scheduler is not None else {}),
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
