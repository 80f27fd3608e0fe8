"""Several processes (``torchrun --nproc_per_node N -m polx train ...``) without the DDP wrapper.

``DistributedDataParallel`` hooks autograd of the wrapped module's forward, and the ``imf``
objective's ``torch.func.jvp`` cannot run through that wrapper. So polx synchronises by hand,
one mechanism for every objective: rank 0's initial parameters are broadcast once, and after
each backward the gradients are averaged across ranks in flattened buckets. Each rank then
takes the same optimizer step from the same state, so the parameters stay identical.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Iterable

import attrs
import torch
import torch.distributed as dist
from torch import nn

from polx.base.device import resolve_device  # noqa: F401 (also polx.train.distributed API)

# rank 0 evaluates by rollouts while the others wait in the next collective; allow for long ones
_TIMEOUT = _dt.timedelta(hours=4)
_BUCKET_BYTES = 25 * 2**20


@attrs.define(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_setting: str) -> tuple[DistInfo, torch.device]:
    """Join the process group that ``torchrun`` describes (RANK/WORLD_SIZE/LOCAL_RANK), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_setting)
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_setting, info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=_TIMEOUT)
    return info, device


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not info.enabled:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def mean_scalar(value: torch.Tensor, info: DistInfo) -> float:
    """The mean of a scalar over ranks (every rank gets it: a non-finite loss anywhere stops all)."""
    if not info.enabled:
        return float(value.detach())
    buf = value.detach().float().reshape(1).clone()
    dist.all_reduce(buf)
    return float(buf) / info.world_size


def average_gradients(params: Iterable[nn.Parameter], info: DistInfo, bucket_bytes: int = _BUCKET_BYTES) -> None:
    """Replace each gradient by its mean over ranks, moving them in flattened buckets.

    A parameter without a gradient on some rank counts as a zero gradient there; one without a
    gradient on every rank keeps ``grad=None``, as in a single process (AdamW then skips it).
    """
    if not info.enabled:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    dist.all_reduce(has_grad)
    active = [p for p, n in zip(params, has_grad.tolist()) if n > 0]
    for p in active:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for bucket in _buckets(active, bucket_bytes):
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        dist.all_reduce(flat)
        flat /= info.world_size
        offset = 0
        for p in bucket:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


def _buckets(params: list[nn.Parameter], bucket_bytes: int) -> Iterable[list[nn.Parameter]]:
    """Consecutive groups of same-dtype, same-device parameters of about ``bucket_bytes``."""
    bucket: list[nn.Parameter] = []
    size = 0
    for p in params:
        if bucket and (size >= bucket_bytes or p.grad.dtype != bucket[0].grad.dtype or p.device != bucket[0].device):
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += p.grad.numel() * p.grad.element_size()
    if bucket:
        yield bucket
