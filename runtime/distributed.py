"""Training under `torchrun`: the process group, the DDP wrapper, and rank 0's decisions shared.

With WORLD_SIZE unset or 1 every function here is a no-op, so the trainer reads the same either
way. gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import dataclasses
import os

import torch


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def on_rank_device(config):
    """`config` with this rank's device: under torchrun on GPUs, rank r takes cuda:LOCAL_RANK.

    Every rank is started with the same --device; NCCL refuses two ranks on one GPU.
    """
    if _world() <= 1 or not config.device.startswith("cuda"):
        return config
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    torch.cuda.set_device(device)
    return dataclasses.replace(config, device=device)


def init(config):
    """(rank, world size); starts the process group under torchrun."""
    world = _world()
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if config.device.startswith("cuda") else "gloo")
    return dist.get_rank(), world


def wrap(model, world: int):
    if world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, find_unused_parameters=False)


def agree(stop: bool, world: int, device: str = "cpu") -> bool:
    """Rank 0's early-stopping decision, shared so every rank leaves the loop together."""
    if world <= 1:
        return stop
    import torch.distributed as dist

    flag = torch.tensor([1 if stop else 0], device=device)  # NCCL moves GPU tensors only
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def gather(obj, world: int) -> list:
    """Every rank's `obj` in rank order, on every rank; `[obj]` without torchrun."""
    if world <= 1:
        return [obj]
    import torch.distributed as dist

    gathered = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def done(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
