"""Multi-process training with ``torchrun``: process group, rank helpers and a BatchNorm
that synchronises its batch statistics across processes on CPU as well as GPU.

``torchrun --nproc_per_node N -m mgan.train CONFIG`` starts N copies of the training
command with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; :func:`init` turns those into a
process group (gloo on CPU, NCCL on CUDA). Without them everything here is a no-op and
``Dist()`` describes the single process.

N processes with ``train.batch = B`` each compute the same update as one process with
batch ``N * B``: the data order is drawn for the global batch and each rank takes its
slice, :class:`DistributedDataParallel` averages the gradients, and BatchNorm normalises
with the statistics of the global batch (:class:`SyncBatchNorm2d`; torch's own
``nn.SyncBatchNorm`` refuses CPU tensors).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclasses.dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world`` processes (``local_rank`` on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True for the process that writes run folders, samples, checkpoints and logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> Dist:
    """The ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(device: torch.device, timeout_minutes: float = 360.0) -> tuple[Dist, torch.device]:
    """Join the process group when started by ``torchrun``; returns ``(dist, device)``.

    On CUDA each process takes GPU ``LOCAL_RANK`` and NCCL; otherwise gloo. The timeout
    bounds how long ranks wait for each other at a barrier (the MDAN stage of a rank can
    take hours on a CPU: raise it with ``--dist-timeout``).
    """
    d = from_env()
    if not d.enabled:
        return d, device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return d, device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def broadcast(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every rank (any picklable value)."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(values: dict[str, float], d: Dist, device: torch.device) -> dict[str, float]:
    """Average each value over the ranks (every rank must pass the same keys)."""
    if not d.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: v / d.world for k, v in zip(keys, t.tolist(), strict=True)}


def any_rank(flag: bool, d: Dist, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any (e.g. a stop request one rank received)."""
    if not d.enabled:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class _AllReduceSum(torch.autograd.Function):
    """``sum`` over ranks; its gradient is the sum over ranks of the output gradients,
    since every rank's loss depends on the shared sum."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ARG004
        x = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ARG004
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode statistics are those of the batch over all ranks.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d``; in eval mode, with
    one process, or with ``sync = False`` it *is* ``nn.BatchNorm2d``. Statistics are
    computed in fp32 in two passes (mean, then the mean squared deviation), each one
    all-reduce of a ``[C+1]`` / ``[C]`` vector, differentiable across ranks.
    """

    sync: bool = True

    def forward(self, x: Tensor) -> Tensor:  # x: [B, C, H, W]
        if not (self.sync and self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        count = torch.tensor([xf.numel() // c], dtype=torch.float32, device=x.device)
        s = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), count]))
        n = s[c]
        mean = s[:c] / n
        dev = xf - mean.view(1, c, 1, 1)
        var = _AllReduceSum.apply((dev * dev).sum((0, 2, 3))) / n  # biased, as BN normalises
        y = dev * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats:
            # nn.BatchNorm2d registers these buffers whenever track_running_stats is set
            assert self.num_batches_tracked is not None
            assert self.running_mean is not None and self.running_var is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * (n / torch.clamp(n - 1, min=1))
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y.to(x.dtype) if not torch.is_autocast_enabled(x.device.type) else y


def convert_sync_bn(module: nn.Module) -> nn.Module:
    """Turn every ``nn.BatchNorm2d`` in ``module`` into :class:`SyncBatchNorm2d`, in place
    (parameters and buffers are moved over, not copied)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats, device="meta")
            for key, value in [*child.named_parameters(recurse=False), *child.named_buffers(recurse=False)]:
                setattr(new, key, value)
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_sync_bn(child)
    return module


def local_bn(module: nn.Module) -> nn.Module:
    """Stop :class:`SyncBatchNorm2d` layers of ``module`` from synchronising (for a copy
    that only one rank runs, e.g. sample images with per-image statistics)."""
    for m in module.modules():
        if isinstance(m, SyncBatchNorm2d):
            m.sync = False
    return module
