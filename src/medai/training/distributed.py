"""Running one training job across processes with ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node 2 -m medai.cli train RECIPE.yaml --out DIR`` starts two processes with the usual
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``). medai then joins the process
group — ``nccl`` with one GPU per process when CUDA is present, ``gloo`` on CPUs — and every rank trains on its
share of each batch (see :mod:`medai.training.trainer`). Only rank 0 writes the run directory; the others stop
after training. On a cluster, the same command runs under a scheduler (e.g. ``srun torchrun --nnodes ...``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process trains: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(prefer_cuda: bool = True) -> DistributedContext:
    """Join the process group when launched by torchrun (else a single-process context).

    The device is ``cuda:<LOCAL_RANK>`` when CUDA is available and ``prefer_cuda``, else the CPU.
    """
    cuda = prefer_cuda and torch.cuda.is_available()
    if not launched_by_torchrun():
        return DistributedContext(device=torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device, backend=backend)


#: Seconds a rank waits before leaving the process group (see :func:`teardown`).
DRAIN_S = 0.5


def teardown() -> None:
    """Leave the process group.

    Waits :data:`DRAIN_S` first, with the GIL released: gloo's worker threads free finished collective work
    objects on their own, and freeing one needs the GIL. If the DistributedDataParallel wrapper is freed at that
    moment, its destructor holds the GIL while it joins those threads, and the rank deadlocks at exit. This was seen
    under torchrun in CI (torch 2.13, gloo): rank 1 hung in ``~Reducer`` → ``~ProcessGroupGloo``, with a
    ``pt_gloo_runloop`` thread waiting for the GIL in ``~AsyncBroadcastWork``.
    """
    if dist.is_available() and dist.is_initialized():
        time.sleep(DRAIN_S)
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
