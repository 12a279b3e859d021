"""The one weight step / train_one_epoch / evaluate shared by warm-up, search and retraining."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn as nn
from tqdm import tqdm

from .errors import UserError


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
        raise UserError(f"--amp must be auto, off, bf16 or fp16, not {mode!r}")
    if mode == "auto":
        if device.type != "cuda":
            mode = "off"
        else:
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "off":
        return Amp(None, device.type)
    if mode == "fp16":
        if device.type != "cuda":
            raise UserError("--amp fp16 needs a CUDA device")
        return Amp(torch.float16, device.type, torch.amp.GradScaler("cuda"))
    return Amp(torch.bfloat16, device.type)


def cosine_lr(base: float, step: int, total: int, warmup: int = 0) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine from ``base`` to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * min(t, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def param_groups(model: nn.Module, weight_decay: float, no_decay_bn_bias: bool = True,
                 params: Iterable[nn.Parameter] | None = None) -> list[dict]:
    """Weight decay on conv/linear weights only (BN weights and biases are 1-d) unless asked."""
    params = list(model.parameters() if params is None else params)
    if not no_decay_bn_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    rest = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, amp: Amp,
                  params_to_clip: list | None = None, grad_clip: float = 0.0) -> None:
    if amp.scaler is not None:
        amp.scaler.scale(loss).backward()
        if grad_clip > 0:
            amp.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params_to_clip, grad_clip)
        amp.scaler.step(optimizer)
        amp.scaler.update()
    else:
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(params_to_clip, grad_clip)
        optimizer.step()


def weight_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion, optimizer, amp: Amp,
                grad_clip: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step.  Gradients are set to None first, so parameters that the forward did not use
    (unsampled candidate ops) get no gradient and the optimizer leaves them exactly as they are
    (no momentum, no weight decay)."""
    optimizer.zero_grad(set_to_none=True)
    with amp.autocast():
        logits = model(x)
        loss = criterion(logits, y)
    clip = [p for g in optimizer.param_groups for p in g["params"]] if grad_clip > 0 else None
    backward_step(loss, optimizer, amp, clip, grad_clip)
    return loss.detach(), logits.detach()


class Meter:
    """Loss / accuracy sums kept on the device: no host sync per step."""

    def __init__(self, device):
        self.loss = torch.zeros((), device=device, dtype=torch.float64)
        self.correct = torch.zeros((), device=device, dtype=torch.float64)
        self.n = 0

    def update(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss += loss.double() * len(y)
        self.correct += (logits.argmax(1) == y).sum()
        self.n += len(y)

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"loss": float(self.loss) / n, "acc": 100.0 * float(self.correct) / n}


def train_one_epoch(model: nn.Module, loader, optimizer, *, criterion, amp: Amp, lr_at: Callable[[int], float],
                    first_step: int = 0, step_hook: Callable[[int], None] | None = None, grad_clip: float = 0.0,
                    desc: str = "train", progress: bool = True) -> dict[str, float]:
    """Weight steps over one pass of ``loader``; lr_at(global step) sets the learning rate;
    step_hook(i) runs after weight step i (the search uses it for architecture steps)."""
    model.train()
    meter = Meter(next(model.parameters()).device)
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        set_lr(optimizer, lr_at(first_step + i))
        loss, logits = weight_step(model, x, y, criterion, optimizer, amp, grad_clip)
        meter.update(loss, logits, y)
        if step_hook is not None:
            step_hook(i)
        if progress and i % 20 == 0:
            r = meter.result()
            bar.set_postfix(loss=f"{r['loss']:.3f}", acc=f"{r['acc']:.1f}")
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
            loss = criterion(logits.float(), y)
        meter.update(loss, logits, y)
    return meter.result()


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
