"""Where a run computes and how it draws random numbers: device choice, seeding, RNG state."""
from __future__ import annotations

import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.errors import UserError


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


def _cpu_times() -> tuple[int, int]:
    """(idle + iowait, total) jiffies of all CPUs since boot (Linux /proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return values[3] + values[4], sum(values)


def idle_cores(window: float = 0.25) -> int:
    """The CPU cores this process may use that are idle now: its cores times the share of CPU time that was
    idle over ``window`` seconds (Linux /proc/stat), rounded, at least 1; every core where that cannot be
    read.  Why: torch's and onnxruntime's default is one thread per core, and a thread pool whose threads
    wait for each other at every op runs many times slower when another process holds one of its cores
    (the released network's export took 88 s at the default beside one busy process on our 2 cores, 24 s
    with one thread).  Not the load average: in our VM it read 2.0 with every core idle."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        idle0, total0 = _cpu_times()
        time.sleep(window)
        idle1, total1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return cores
    share = (idle1 - idle0) / max(1, total1 - total0)
    return max(1, min(cores, round(cores * share)))


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
