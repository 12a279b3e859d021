"""What a run reports each epoch: one line on the console, one JSON record in log.jsonl, TensorBoard scalars.

A record is appended to log.jsonl whole or not at all (utils/faults.py: append_line); a failed append
is the run's WriteError.  TensorBoard is a convenience beside it: when its writes fail (a full disk)
the run warns once and goes on without it, since log.jsonl keeps every record."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from utils.checkpoint import atomic_write_text
from utils.faults import WriteError, append_line, writing


def truncate_jsonl(path: str | os.PathLike, key: str, last: int) -> None:
    """On resume: drop records with record[key] > last (written after the checkpoint).  The file is
    replaced atomically: a failed rewrite keeps the old log."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    keep = [ln for ln in lines if ln.strip() and json.loads(ln).get(key, -1) <= last]
    if keep != lines:  # (unchanged: not rewritten, which a full disk would refuse)
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def format_record(record: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())


def _quiet_tensorboard_threads() -> None:
    """TensorBoard writes from a thread of its own; a failed write (a full disk) is handed to the main
    thread, whose next TensorBoard call raises it (EpochLog warns then), and is re-raised in the thread,
    where Python prints its traceback.  This hook drops that second report of the same OSError and
    passes every other thread's exception on.  Installed once per process."""
    previous = threading.excepthook
    if getattr(previous, "drops_tensorboard_write_errors", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__module__.startswith("tensorboard.")):
            previous(args)

    hook.drops_tensorboard_write_errors = True
    threading.excepthook = hook


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
        with writing(self.path.parent):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_epoch is not None:
            truncate_jsonl(self.path, "epoch", resume_epoch)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import
            _quiet_tensorboard_threads()
            tb = Path(out) / "tb"
            try:
                self.writer = SummaryWriter(str(tb))
            except OSError as e:
                self._tensorboard_failed(WriteError(tb, e))

    def write(self, record: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """Print the record, append it (plus ``extra``, JSON-only fields) to log.jsonl, and give every
        float to TensorBoard at step record["epoch"]."""
        if not self.enabled:
            return
        tqdm.write(format_record(record))
        sys.stdout.flush()
        append_line(self.path, json.dumps({"time": round(time.time(), 3), **record, **(extra or {})}))

        def scalars(writer) -> None:
            for k, v in record.items():
                if isinstance(v, float):
                    writer.add_scalar(k, v, record["epoch"])

        self.tensorboard(scalars)

    def tensorboard(self, write: Callable[[Any], None]) -> None:
        """``write(writer)`` and a flush, unless TensorBoard is off or has failed (then: a warning, once)."""
        if self.writer is None:
            return
        try:
            write(self.writer)
            self.writer.flush()
        except OSError as e:
            self._tensorboard_failed(WriteError(Path(self.writer.log_dir), e))

    def _tensorboard_failed(self, error: WriteError) -> None:
        tqdm.write(f"warning: TensorBoard is off from here: {error.line('or write the run elsewhere')}; the run goes "
                   f"on and {self.path} keeps every record", file=sys.stderr)
        writer, self.writer = self.writer, None
        if writer is not None:
            self._close(writer)

    @staticmethod
    def _close(writer) -> None:
        """Close a writer whose file may be unwritable: its final flush fails the same way again."""
        try:
            writer.close()
        except OSError:
            pass  # reported once already (_tensorboard_failed); the events written so far are on disk

    def close(self) -> None:
        if self.writer is not None:
            self.tensorboard(lambda w: None)  # a failure of the final flush warns like any other
            if self.writer is not None:
                self._close(self.writer)
            self.writer = None
