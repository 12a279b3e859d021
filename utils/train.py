"""The one weight step / train_one_epoch / evaluate shared by warm-up, search and retraining,
mixed precision settings, the cosine schedule, and the divergence check."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn as nn
from tqdm import tqdm

from utils.errors import UserError
from utils.faults import Interrupted


@dataclass
class Amp:
    """Mixed precision settings: autocast dtype (None = off) and a GradScaler for float16."""

    dtype: torch.dtype | None
    device_type: str
    scaler: torch.amp.GradScaler | None = None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @property
    def name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def make_amp(device: torch.device, mode: str = "auto") -> Amp:
    """'auto': bf16 on a CUDA device that supports it, fp16 (+ grad scaler) on older GPUs, off on CPU."""
    if mode not in ("auto", "off", "bf16", "fp16"):
        raise UserError(f"mixed precision must be auto, off, bf16 or fp16, not {mode!r}")
    if mode == "auto":
        if device.type != "cuda":
            mode = "off"
        else:
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "off":
        return Amp(None, device.type)
    if mode == "fp16":
        if device.type != "cuda":
            raise UserError("fp16 mixed precision needs a CUDA device (bf16 runs on the CPU too)")
        return Amp(torch.float16, device.type, torch.amp.GradScaler("cuda"))
    return Amp(torch.bfloat16, device.type)


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """Half-precision (AMP) logits -> float32 for the loss; float32 and float64 stay as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def cosine_lr(base: float, step: int, total: int, warmup: int = 0) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine from ``base`` to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * min(t, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def param_groups(model: nn.Module, weight_decay: float, no_decay_bn_bias: bool = True,
                 params: Iterable[nn.Parameter] | None = None) -> list[dict]:
    """Weight decay on conv/linear weights only (BN weights and biases are 1-d) unless asked."""
    params = list(model.parameters() if params is None else params)
    if not no_decay_bn_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    rest = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


GradSync = Callable[[list], None]  # averages the gradients of a parameter list over processes


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, amp: Amp, grad_clip: float = 0.0,
                  grad_sync: GradSync | None = None) -> None:
    """Backward, then (data-parallel search) the gradients averaged over processes, clipping, the step."""
    params = [p for g in optimizer.param_groups for p in g["params"]] if grad_clip > 0 or grad_sync else None
    (amp.scaler.scale(loss) if amp.scaler is not None else loss).backward()
    if grad_sync is not None:
        grad_sync(params)
    if grad_clip > 0:
        if amp.scaler is not None:
            amp.scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(params, grad_clip)
    if amp.scaler is not None:
        amp.scaler.step(optimizer)
        amp.scaler.update()
    else:
        optimizer.step()


def weight_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion, optimizer, amp: Amp,
                grad_clip: float = 0.0, grad_sync: GradSync | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step.  Gradients are set to None first, so parameters that the forward did not use
    (unsampled candidate ops) get no gradient and the optimizer leaves them exactly as they are
    (no momentum, no weight decay)."""
    optimizer.zero_grad(set_to_none=True)
    with amp.autocast():
        logits = model(x)
        loss = criterion(logits, y)
    backward_step(loss, optimizer, amp, grad_clip, grad_sync)
    return loss.detach(), logits.detach()


class DivergenceError(UserError):
    """A loss that is not finite: ``what`` ("training loss", "architecture loss"), at ``step`` (0-based,
    within the epoch).  The entry scripts add the epoch and how to continue."""

    def __init__(self, what: str, step: int, value: float):
        super().__init__(f"the {what} is {value} at step {step + 1}")
        self.what, self.step, self.value = what, step, value


class Meter:
    """Loss / accuracy sums kept on the device: no host sync per step.  It also remembers, on the
    device, the first update whose loss was not finite; ``check`` (one sync) raises DivergenceError."""

    def __init__(self, device, what: str = "training loss"):
        self.loss = torch.zeros((), device=device, dtype=torch.float64)
        self.correct = torch.zeros((), device=device, dtype=torch.float64)
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.bad_value = torch.zeros((), device=device, dtype=torch.float64)
        self.n = self.updates = 0
        self.what = what

    def update(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, step: int | None = None) -> None:
        """step: the step this loss belongs to, for the divergence message (default: the update count)."""
        loss = loss.detach().double()
        new_bad = (self.first_bad < 0) & ~torch.isfinite(loss)
        self.first_bad = torch.where(new_bad, self.updates if step is None else step, self.first_bad)
        self.bad_value = torch.where(new_bad, loss, self.bad_value)
        self.loss += loss * len(y)
        self.correct += (logits.argmax(1) == y).sum()
        self.n += len(y)
        self.updates += 1

    def check(self) -> None:
        """Raise DivergenceError if any loss so far was nan or inf (one device -> host copy)."""
        first = int(self.first_bad)
        if first >= 0:
            raise DivergenceError(self.what, first, float(self.bad_value))

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"loss": float(self.loss) / n, "acc": 100.0 * float(self.correct) / n}


def train_one_epoch(model: nn.Module, loader, optimizer, *, criterion, amp: Amp, lr_at: Callable[[int], float],
                    first_step: int = 0, step_hook: Callable[[int], None] | None = None, grad_clip: float = 0.0,
                    desc: str = "train", progress: bool = True, check_every: int = 20,
                    grad_sync: GradSync | None = None,
                    should_stop: Callable[[int], bool] | None = None) -> dict[str, float]:
    """Weight steps over one pass of ``loader``; lr_at(global step) sets the learning rate;
    step_hook(i) runs after weight step i (the search uses it for architecture steps); grad_sync
    averages the gradients over processes before each step (the data-parallel search; DDP does it itself).

    should_stop(i) is asked before weight step i (a step boundary: the previous step and its hook are
    done); True raises Interrupted, and the epoch's partial work is dropped with it (the run scaffold
    stops there; utils/faults.py: StopFlag answers it for SIGTERM and Ctrl-C).

    A loss that is not finite raises DivergenceError within ``check_every`` steps (each check is one
    host sync; the search, which syncs every step anyway to sample paths, checks every step), and
    always before the epoch returns, so that no diverged weights reach a checkpoint."""
    model.train()
    meter = Meter(next(model.parameters()).device)
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        if should_stop is not None and should_stop(i):
            bar.close()
            raise Interrupted(i, len(loader))
        set_lr(optimizer, lr_at(first_step + i))
        loss, logits = weight_step(model, x, y, criterion, optimizer, amp, grad_clip, grad_sync)
        meter.update(loss, logits, y)
        if (i + 1) % check_every == 0:
            meter.check()
        if step_hook is not None:
            step_hook(i)
        if progress and i % 20 == 0:
            r = meter.result()
            bar.set_postfix(loss=f"{r['loss']:.3f}", acc=f"{r['acc']:.1f}")
    meter.check()
    out = meter.result()
    elapsed = time.perf_counter() - start
    out["images_per_s"] = meter.n / max(elapsed, 1e-9)
    out["lr"] = optimizer.param_groups[0]["lr"]
    return out


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, criterion, amp: Amp, desc: str = "eval",
             progress: bool = True) -> dict[str, float]:
    model.eval()
    meter = Meter(next(model.parameters()).device)
    for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        with amp.autocast():
            logits = model(x)
            loss = criterion(at_least_float32(logits), y)
        meter.update(loss, logits, y)
    return meter.result()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, inputs: Iterable[torch.Tensor], amp: Amp | None = None) -> None:
    """BatchNorm running statistics measured afresh: reset, then the cumulative average over the forward
    passes of ``inputs`` in training mode (no weights change; the model ends in eval mode).  For a
    supernet in "argmax" gate mode this gives the argmax network the statistics of its own paths: the
    search's running statistics were gathered over whatever paths were sampled."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    model.train()
    for x in inputs:
        with amp.autocast() if amp is not None else contextlib.nullcontext():
            model(x)
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    model.eval()


@contextlib.contextmanager
def bn_statistics_kept(model: nn.Module):
    """Whatever the block does to BatchNorm running statistics is undone afterwards."""
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches_tracked" in k}
    try:
        yield
    finally:
        model.load_state_dict(saved, strict=False)


@contextlib.contextmanager
def frozen(params: Iterable[nn.Parameter]):
    """requires_grad=False for the block (restored after): an architecture step then computes no
    weight gradients, and autograd keeps fewer tensors (a conv whose weight needs no gradient does
    not save its input)."""
    params = [p for p in params if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
