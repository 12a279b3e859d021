"""Where a run computes and how it draws random numbers: device choice, seeding, RNG state."""
from __future__ import annotations

import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UserError


class DeviceError(UserError):
    pass


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; an unknown device string or cuda without a GPU -> DeviceError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):  # torch's words for a string it does not parse
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} was asked for but torch sees no CUDA device (use auto or cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {name!r} is not supported here; use auto, cpu, cuda or cuda:N")
    return dev


def device_name(device_type: str) -> str:
    """The GPU's name, or the CPU model where Linux tells it (else platform's answer)."""
    if device_type == "cuda":
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: platform's answer stays
    return name


def describe(device: torch.device) -> str:
    """For logs and results.json: the GPU's name, or the CPU model and torch's thread count."""
    if device.type == "cuda":
        return device_name("cuda")
    return f"{device.type} ({device_name(device.type)}, {torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # all devices


def get_rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
