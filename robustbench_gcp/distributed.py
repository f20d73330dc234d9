"""torchrun support: each rank takes a disjoint slice of the indices, counts are summed."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None) -> DistContext:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    wanted = device or ("cuda" if torch.cuda.is_available() else "cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext(device=torch.device(wanted))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if wanted.startswith("cuda"):
        torch.cuda.set_device(local)
        target = torch.device("cuda", local)
    else:
        target = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
        atexit.register(_leave)
    return DistContext(rank=rank, world=world, device=target)


def _leave() -> None:
    """Leave the process group before the interpreter tears down: a gloo group destroyed in the
    teardown, while its peer has already gone, can abort the process ("terminate called without
    an active exception") after all the work is done."""
    if dist.is_initialized():
        dist.destroy_process_group()


def sum_counts(values: list[int], ctx: DistContext) -> list[int]:
    """Sum integer counts over all ranks."""
    if ctx.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.long, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_flags(local: dict[int, np.ndarray], size: int, rows: int, ctx: DistContext) -> np.ndarray:
    """Per-position flags (rows × size) from every rank's share {position: flags of its rows}."""
    parts = [local]
    if ctx.world > 1:
        parts = [None] * ctx.world
        dist.all_gather_object(parts, local)
    flags = np.zeros((rows, size), dtype=bool)
    for part in parts:
        for position, values in part.items():
            flags[:, position] = values
    return flags


def broadcast(value, ctx: DistContext):
    """Rank 0's value on every rank."""
    if ctx.world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.world > 1:
        dist.barrier()
