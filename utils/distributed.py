"""Multi-process (torchrun) helpers: process-group set-up, sharded evaluation, metric reduction,
synchronized BatchNorm.

torchrun sets RANK / LOCAL_RANK / WORLD_SIZE; without them everything here is a no-op for one process.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from models.common import IMAGE_SIZE
from utils.data import Split
from utils.stream import FileSplit, make_loader
from utils.train import Amp, evaluate


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (nccl for CUDA, gloo otherwise); on CUDA each
    process takes the GPU of its local rank.  Returns (info, this process's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return info, device


def cleanup(barrier: bool = False) -> None:
    """Leave the process group; ``barrier``: first wait until every process got here.  Why: a process that
    tears its gloo connections down while a peer still uses its own can abort that peer in C++ ("terminate
    called without an active exception", SIGABRT; seen once on rank 1 of a finished 2-process CPU search on
    a loaded machine) -- a completed run then reports failure.  After an error no barrier: the peers may be
    gone, and waiting for them would hang."""
    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: torch.device):
    """``with process_group(device) as (info, device):`` -- init_distributed, and cleanup afterwards."""
    info, device = init_distributed(device)
    ok = False
    try:
        yield info, device
        ok = True
    finally:
        cleanup(barrier=ok)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of a tensor over the processes (a copy; the tensor itself for one process)."""
    if not info.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values


@contextlib.contextmanager
def main_first(info: DistInfo):
    """Rank 0 runs the block first (it may download), then the other ranks (they read its files)."""
    if info.enabled and not info.is_main:
        dist.barrier()
    yield
    if info.enabled and info.is_main:
        dist.barrier()


def test_loader(test: Split | FileSplit, batch_size: int, device, info: DistInfo, channels_last: bool,
                name: str = "test set", dtype: torch.dtype = torch.float32, image_size: int = IMAGE_SIZE):
    """Each process evaluates every world_size-th image (no padding: the sums are exact)."""
    shard = test.subset(torch.arange(info.rank, len(test), info.world_size)) if info.enabled else test
    return make_loader(shard, batch_size, device, train=False, image_size=image_size, channels_last=channels_last,
                       name=name, dtype=dtype)


def evaluate_all(model: nn.Module, loader, net: nn.Module, amp: Amp, info: DistInfo,
                 progress: bool) -> dict[str, float]:
    """Loss and accuracy over every process's shard, with rank 0's BN statistics everywhere."""
    broadcast_buffers(net, info)
    r = evaluate(model, loader, criterion=nn.CrossEntropyLoss(), amp=amp, desc="test", progress=progress)
    n = len(loader.labels)
    sums = all_reduce_sum(torch.tensor([r["loss"] * n, r["acc"] * n, n], dtype=torch.float64,
                                       device=loader.labels.device), info).tolist()
    return {"loss": sums[0] / sums[2], "acc": sums[1] / sums[2]}


def reduce_train(r: dict[str, float], info: DistInfo, device, keys=("loss", "acc"),
                 summed=("images_per_s",)) -> dict[str, float]:
    """Every process saw the same number of images: the mean of ``keys`` (loss, accuracy) over
    processes, the sum of ``summed`` (images/s)."""
    if not info.enabled:
        return r
    names = [k for k in (*keys, *summed) if k in r]
    t = all_reduce_sum(torch.tensor([r[k] for k in names], dtype=torch.float64, device=device), info).tolist()
    return {**r, **{k: v if k in summed else v / info.world_size for k, v in zip(names, t)}}


class Sync:
    """The collectives of a data-parallel search, counted per purpose (for logs and bench/ddp_search.py).

    ``grads(params, purpose)``: the mean over processes of every existing ``.grad`` in ``params``, as ONE
    all-reduce of a flattened buffer (every process ran the same paths, so the same parameters have
    gradients everywhere; unsampled candidates have none and stay untouched, as in one process).
    ``mean(tensor, purpose)``: the mean of a tensor over processes (REINFORCE's rewards).
    With one process both are no-ops that count nothing.
    """

    def __init__(self, info: DistInfo):
        self.info = info
        self.calls: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def _count(self, purpose: str, t: torch.Tensor) -> None:
        self.calls[purpose] = self.calls.get(purpose, 0) + 1
        self.bytes[purpose] = self.bytes.get(purpose, 0) + t.numel() * t.element_size()

    def grads(self, params, purpose: str = "weights") -> None:
        if not self.info.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._count(purpose, flat)
        dist.all_reduce(flat)
        flat /= self.info.world_size
        torch._foreach_copy_(grads, [f.view_as(g) for f, g in zip(flat.split([g.numel() for g in grads]), grads)])

    def mean(self, t: torch.Tensor, purpose: str) -> torch.Tensor:
        if not self.info.enabled:
            return t
        t = t.clone()
        self._count(purpose, t)
        dist.all_reduce(t)
        return t / self.info.world_size

    def counts(self) -> dict[str, int]:
        """comm_{purpose}_calls / _bytes since the last reset (for the epoch log)."""
        return {f"comm_{k}_{what}": v for what, d in (("calls", self.calls), ("bytes", self.bytes)) for k, v in d.items()}

    def reset(self) -> None:
        self.calls.clear()
        self.bytes.clear()

    def check_same(self, what: str, *values: int | torch.Tensor) -> None:
        """Raise if the values (integers < 2**52, or tensors, compared bitwise through a digest) differ
        between processes: one small all-reduce."""
        if not self.info.enabled:
            return
        ints = [v if isinstance(v, int) else int.from_bytes(hashlib.blake2b(
            v.detach().cpu().contiguous().numpy().tobytes(), digest_size=6).digest(), "big") for v in values]
        t = torch.tensor(ints + [-i for i in ints], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if not torch.equal(t[:len(ints)], -t[len(ints):]):
            raise RuntimeError(f"the processes disagree on {what}: a data-parallel run must compute the same "
                               "architecture on every process")


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers (BN running statistics) to every process: all ranks then evaluate the same
    network as the one rank 0 checkpoints."""
    if info.enabled:
        for b in module.buffers():
            dist.broadcast(b, 0)


# ------------------------------------------------------------------ synchronized BatchNorm
class _SumAcrossProcesses(torch.autograd.Function):
    """y = sum over processes of x; the gradient of the summed objective w.r.t. each process's x is
    the sum over processes of dL_r/dy, so backward is an all-reduce too."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all processes).

    torch's nn.SyncBatchNorm refuses CPU tensors (its fused kernels batch_norm_stats & co. exist only
    for GPUs), so on CPU / gloo we use this: plain tensor ops plus an autograd-aware all-reduce of
    the per-channel sums, in float32.  Parameter and buffer names are BatchNorm2d's, so state dicts
    are interchangeable.  Outside training (unless it keeps no running statistics) or without a process
    group it is a plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # without running statistics (the supernet's "plain" BN) evaluation also normalizes by the batch:
        # the global one, so that N processes evaluate as one process does
        batch_stats = self.training or not self.track_running_stats
        if not (batch_stats and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in >= float32
        c = xf.shape[1]
        local_n = xf.numel() // c
        # one all-reduce for the sums and the count, one for the centred squares (two-pass variance:
        # the same numbers as F.batch_norm on the whole batch, without E[x^2]-E[x]^2 cancellation)
        stats = _SumAcrossProcesses.apply(torch.cat([xf.sum((0, 2, 3)), xf.new_tensor([local_n])]))
        n = stats[c].detach()
        mean = stats[:c] / n
        centred = xf - mean[None, :, None, None]
        var = _SumAcrossProcesses.apply((centred * centred).sum((0, 2, 3))) / n
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.training and self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), float(n))
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        self.num_batches_tracked.add_(1)
        m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
        # like F.batch_norm: the running variance is the unbiased one
        self.running_var.lerp_((var * n / max(n - 1.0, 1.0)).to(self.running_var.dtype), m)


def _dtype_of(bn: nn.BatchNorm2d) -> torch.dtype | None:
    """The dtype of a BatchNorm's weights or statistics; None for one with neither (the supernet's "plain"
    BN: no affine parameters, batch statistics always)."""
    return next((t.dtype for t in (*bn.parameters(), *bn.buffers())), None)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d -> torch's SyncBatchNorm on CUDA, GlobalBatchNorm2d elsewhere (weights and
    statistics kept).  Call before building the optimizer: the parameters are new objects."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats, device=device,
                                    dtype=_dtype_of(child))
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            module.add_module(name, new)
        else:
            convert_sync_batchnorm(child, device)
    return module


__all__ = ["DistInfo", "Sync", "init_distributed", "cleanup", "main_first", "test_loader", "evaluate_all", "reduce_train",
           "all_reduce_sum", "broadcast_buffers", "GlobalBatchNorm2d", "convert_sync_batchnorm"]
