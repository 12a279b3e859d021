"""Small shared helpers: device choice, seeding and RNG state, atomic checkpoints, meters, logs."""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU -> a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA device (use --device auto or cpu)")
    return dev


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


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write to a temporary file in the same folder, flush to disk, then rename over ``path``:
    a run killed mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pth"
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        # our checkpoints hold RNG states, configs and numpy arrays: not weights-only
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for a truncated or foreign file
        raise UserError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None


def load_fitting(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str, hint: str = "") -> None:
    """load_state_dict, or a UserError naming the first few missing, unexpected and wrong-shape keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (network: {tuple(v.shape)})" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            problems.append(f"{what}: {', '.join(keys[:3])}{more}")
    if problems:
        raise UserError(f"{where} does not fit the network ({'; '.join(problems)})" + (f"; {hint}" if hint else ""))
    model.load_state_dict(state)


class AverageMeter:
    def __init__(self):
        self.sum, self.count = 0.0, 0

    def update(self, value: float, n: int = 1) -> None:
        self.sum += float(value) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(self.count, 1)


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(1) == target).float().mean()) * 100.0


class JsonlLogger:
    """One JSON record per line, appended (a resumed run continues the same file)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


def truncate_jsonl(path: str | os.PathLike, key: str, last: int) -> None:
    """On resume: drop records with record[key] > last (written after the checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get(key, -1) <= last]
    path.write_text("".join(ln + "\n" for ln in keep))


def changed_flags(old: dict[str, Any], now: dict[str, Any], ignore: set[str]) -> list[str]:
    """'--flag OLD (now NEW)' for every flag outside ``ignore`` that differs between a checkpoint's
    run and this one (what resume refuses: the run would not continue as it started)."""
    keys = [k for k in sorted(set(old) | set(now)) if k not in ignore and old.get(k) != now.get(k)]
    return [f"--{k.replace('_', '-')} {old.get(k)} (now {now.get(k)})" for k in keys]


def save_json(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def tensorboard_writer(log_dir: str | os.PathLike, enabled: bool = True):
    """A SummaryWriter, or None when disabled."""
    if not enabled:
        return None
    from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import
    return SummaryWriter(str(log_dir))
