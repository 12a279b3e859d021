"""Faults of the machine, not of the input: a write that fails (a full disk, a quota, a read-only or
forbidden folder) and a signal that asks a run to stop (SIGTERM from a cluster scheduler, Ctrl-C).

* ``WriteError``: the one exception every write of the project ends in when the OS refuses it, naming
  the file, the OS's reason and what to do.  ``writing(path)`` turns an OSError into it;
  ``replacing(path)`` is the atomic pattern (write a temporary file beside ``path``, rename it over
  ``path``; on failure remove it), so a file is never left half-written and the previous one stays as
  it was; ``append_line`` appends a record whole or not at all; ``check_writable`` refuses a folder
  before any work is done in it.
* ``StopFlag``: SIGTERM / SIGINT handlers that only set a flag, polled by the training loop at each step
  boundary (utils/train.py raises ``Interrupted`` there); with several processes one small all-reduce
  makes every process stop at the same step.  The run scaffold (utils/run.py: Guard) turns both into
  the one line a run ends with.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable, IO, Iterator

import torch
import torch.distributed as dist

from utils.errors import UserError

# what to do about the usual reasons a write fails (the caller adds where else to write)
_FIXES = {errno.ENOSPC: "free some space on that disk", errno.EDQUOT: "free some of your disk quota",
          errno.EROFS: "remount that filesystem read-write", errno.EACCES: "give yourself write permission there",
          errno.EPERM: "give yourself write permission there",
          errno.ENOTDIR: "a part of that path is a file, not a folder: move it away",
          errno.EISDIR: "that path is a folder: remove it"}


class WriteError(UserError):
    """The OS refused a write of ``path``.  ``reason``: its words and the errno name ("No space left on
    device (ENOSPC)"); ``fix``: what the user can do about it there.  The message ends "or write
    elsewhere"; the scripts end it in their own words with ``line`` ("or choose another --output",
    "then continue with ... --resume")."""

    def __init__(self, path: str | os.PathLike, error: OSError):
        self.path, self.errno = Path(path), error.errno
        name = errno.errorcode.get(error.errno, "")
        self.reason = (error.strerror or str(error)) + (f" ({name})" if name else "")
        self.fix = _FIXES.get(error.errno, "check that disk")
        super().__init__(self.line("or write elsewhere"))

    def line(self, then: str) -> str:
        return f"cannot write {self.path}: {self.reason}; {self.fix}, {then}"


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """An OSError raised in the block becomes a WriteError that names ``path``."""
    try:
        yield
    except OSError as e:
        raise WriteError(path, e) from None


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, so the rename is atomic) for the block to write;
    renamed over ``path`` when the block succeeds, removed when it fails.  Readers see the old file or
    the new one, never half of one; an OSError of the block becomes a WriteError naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
    finally:
        if tmp.exists():  # left only when the block failed (not unlink(missing_ok): a read-only filesystem
            tmp.unlink()  # answers EROFS even for a file that is not there)


class _Recording:
    """A file for ``write`` callables that hide the file's OSError inside their own exception: torch.save
    reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``.
    It remembers the OSError so that write_to can raise that instead."""

    def __init__(self, f: IO[bytes]):
        self.f, self.error = f, None

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except OSError as e:
            self.error = e
            raise

    def write(self, data) -> int:
        return self._call(self.f.write, data)

    def flush(self) -> None:
        self._call(self.f.flush)


def write_to(f: IO[bytes], write: Callable[[IO[bytes]], None]) -> None:
    """``write(f)``; if the file itself failed, raise its OSError, whatever ``write`` made of it."""
    recording = _Recording(f)
    try:
        write(recording)
    except Exception:
        if recording.error is not None:
            raise recording.error from None
        raise


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line`` and a newline.  When the write fails part-way (a full disk) the file is cut back
    to its previous size, so a reader never finds half a record; the OSError becomes a WriteError."""
    data = memoryview((line + "\n").encode())
    with writing(path), open(path, "ab", buffering=0) as f:  # unbuffered: what write() returns is on disk
        start = f.seek(0, os.SEEK_END)
        try:
            while data:
                data = data[f.write(data):]
        except OSError:
            f.truncate(start)
            raise


def check_writable(folder: str | os.PathLike) -> None:
    """Raise WriteError unless a file can be written in ``folder``, or, where it does not exist yet, in
    the nearest folder above it (where it would be made; nothing is created).  One byte is written,
    flushed and removed, so a read-only filesystem, a folder without permission and a full disk are
    all refused before any work."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    with writing(folder):
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        with tempfile.TemporaryFile(dir=existing) as f:
            f.write(b"\0")
            f.flush()


# ------------------------------------------------------------------ signals
class Interrupted(Exception):
    """A stop was asked for (StopFlag) before weight step ``step`` (0-based) of ``steps`` in the epoch;
    the run scaffold adds the epoch, the signal and how to continue."""

    def __init__(self, step: int, steps: int):
        super().__init__(f"interrupted before step {step + 1} of {steps}")
        self.step, self.steps = step, steps


class StopFlag:
    """While installed (``install`` / ``restore``), SIGTERM and SIGINT only set ``signum``; ``__call__``
    (``should_stop`` of train_one_epoch) tells whether to stop.

    With several processes every process must stop at the same step (they meet in collectives), so
    the flag is agreed on by an all-reduce (MAX of the signal numbers: one process's signal stops all).
    Every process polls at the same steps, and communicates at every ``every``-th step of an epoch (and
    always before its first step, so a signal that came during evaluation or a checkpoint stops the
    run before the next epoch's work).  In one process the flag is read at every step, free.

    A second SIGINT in one process stops at once, as Ctrl-C does without the flag (the line is then
    "interrupted", and the last checkpoint is intact: checkpoints are renamed into place).  Not under
    torchrun, which forwards the terminal's Ctrl-C to every process a second time."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, device: torch.device | str = "cpu", distributed: bool = False, every: int = 1):
        self.device, self.distributed, self.every = torch.device(device), distributed, every
        self.signum = self.agreed = 0
        self.previous: dict[int, object] = {}

    def install(self) -> None:
        """Only the main thread may set signal handlers; elsewhere (a run started from a thread) the
        signals keep their own handlers and nothing stops the run early.  A signal the process was
        started with ignored stays ignored, as Python itself leaves it: a script's background job
        (``python search_cifar.py ... &`` without job control) ignores SIGINT so that the Ctrl-C meant for
        the script does not reach it, and ``nohup`` / a supervisor may ignore SIGTERM on purpose."""
        if self.previous or threading.current_thread() is not threading.main_thread():
            return
        for s in self.SIGNALS:
            if signal.getsignal(s) is not signal.SIG_IGN:
                self.previous[s] = signal.signal(s, self._handler)

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    def _handler(self, signum: int, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT and not self.distributed:
            self.restore()
            signal.raise_signal(signum)  # the previous handler: KeyboardInterrupt for Ctrl-C
            return
        self.signum = signum

    def __call__(self, step: int = 0) -> bool:
        if not self.distributed:
            return self.signum != 0
        if step % self.every:
            return False  # not this process alone: the others would wait for it in their next collective
        t = torch.tensor([self.signum], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        # kept apart from signum, which only the handler writes: a signal that arrives while this process
        # waits in the all-reduce runs its handler after it, and must not be overwritten with the 0 sent
        self.agreed = int(t)
        return self.agreed != 0

    @property
    def stopped_by(self) -> int:
        """The signal that stopped the run (another process's, under torchrun), 0 if none."""
        return self.agreed or self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.stopped_by).name if self.stopped_by else ""
