"""Scale-out with `torchrun --nproc_per_node N -m rimscope train ...`: DistributedDataParallel,
gloo on CPU, nccl on GPU. Outside torchrun everything here is a no-op, so one code path serves
a laptop and a cluster."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not launched by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def setup(device: str) -> tuple[int, int, str]:
    """Initialise the process group under torchrun; returns (rank, world, device)."""
    rank, size = world()
    if size <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return dist.get_rank(), dist.get_world_size(), device


def wrap(net: torch.nn.Module, device: str, find_unused: bool = False) -> torch.nn.Module:
    if world()[1] <= 1:
        return net
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DDP(net, device_ids=ids, find_unused_parameters=find_unused)


def is_main() -> bool:
    return world()[0] == 0


def barrier() -> None:
    if world()[1] > 1 and dist.is_initialized():
        dist.barrier()


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's decision for everyone (early stopping must stop all ranks together)."""
    if world()[1] <= 1:
        return flag
    t = torch.tensor([1 if flag else 0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, 0)
    return bool(t.item())
