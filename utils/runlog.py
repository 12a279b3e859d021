"""What a run reports each epoch: one line on the console, one JSON record in log.jsonl, TensorBoard scalars."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm


def truncate_jsonl(path: str | os.PathLike, key: str, last: int) -> None:
    """On resume: drop records with record[key] > last (written after the checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get(key, -1) <= last]
    path.write_text("".join(ln + "\n" for ln in keep))


def format_record(record: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())


class EpochLog:
    """The epoch-log writer of search and training.  ``enabled=False`` (a torchrun process other than
    rank 0) writes nothing.  A resumed run passes ``resume_epoch``: records after it are dropped, so
    the log continues as if the run had not been interrupted."""

    def __init__(self, out: str | os.PathLike, tensorboard: bool = True, enabled: bool = True,
                 resume_epoch: int | None = None):
        self.path = Path(out) / "log.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_epoch is not None:
            truncate_jsonl(self.path, "epoch", resume_epoch)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import
            self.writer = SummaryWriter(str(Path(out) / "tb"))

    def write(self, record: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """Print the record, append it (plus ``extra``, JSON-only fields) to log.jsonl, and give every
        float to TensorBoard at step record["epoch"]."""
        if not self.enabled:
            return
        tqdm.write(format_record(record))
        sys.stdout.flush()
        with open(self.path, "a") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **record, **(extra or {})}) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, float):
                    self.writer.add_scalar(k, v, record["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
