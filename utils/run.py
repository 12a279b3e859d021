"""The run scaffold of search_cifar.py and train_cifar.py: the flags both share, the run folder, resume.

* ``get_args_parser(add_help=False)``: the shared flags, defined once, as a parent parser (the way
  torchvision's references share theirs).  Each script adds its own and may change a default.
* ``Run``: refuses to start a new run in a folder that holds one; on ``--resume`` loads the checkpoint,
  checks its kind and the flags that may not change, and restores model, optimizers, scalers and RNG
  state; writes checkpoints atomically (rank 0 only); counts epochs with ``--stop-after``; and turns
  a diverged loss into one line that says which checkpoint still holds the last good epoch.
* ``Guard``: around a run (the scripts' main), the faults of the machine: SIGTERM / Ctrl-C stop the run
  at the next step boundary, and that stop or a failed write (a full disk) ends in one line with the
  epoch, the checkpoint that holds the last good one and the command that continues it.

Resume policy (one for both scripts): a resume may change where and how fast a run goes and the step
sizes that are the remedy for a diverged run, nothing else.  RESUMABLE lists those flags; every other
flag, ``--amp`` included (bf16 changes the numbers), must be as the checkpoint's run had it.
"""
from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm import tqdm


from utils import distributed as ddp
from utils.checkpoint import load_checkpoint, load_fitting, save_checkpoint
from utils.data import DataError, DatasetInfo, Split, take
from utils.datasets import DATASETS, load_dataset
from utils.device import get_rng_state, set_rng_state
from utils.errors import UserError
from utils.faults import Interrupted, StopFlag, WriteError, check_writable
from utils.train import DivergenceError

# where/how fast (not what) a run computes, and the step sizes a diverged run is resumed with
RESUMABLE = frozenset({"output", "resume", "device", "data", "download", "progress", "tensorboard", "stop_after",
                       "channels_last", "lr", "arch_lr", "grad_clip"})


def get_args_parser(add_help: bool = False, output: str = "runs/run", checkpoint: str = "checkpoint.pth"
                    ) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=add_help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="cifar10", choices=DATASETS,
                   help="cifar10 / cifar100: the python layouts, downloaded into --data if missing; folder: "
                        "--data holds train/<class>/ and val/<class>/ (or test/) images, decoded once into memory "
                        "(docs/own_data.md); folder-stream: the same tree decoded batch by batch with ImageNet's "
                        "random-resized crops (data larger than memory, e.g. ImageNet at 224 px)")
    g.add_argument("--data", default="./data",
                   help="folder holding cifar-10-batches-py or cifar-100-python, or the image folder")
    g.add_argument("--no-download", dest="download", action="store_false", help="never download; fail if data is missing")
    g.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="folder: images are resized to S x S, a multiple of 4 >= 8 (default 32); CIFAR: 32 only")
    g.add_argument("--resize", choices=("square", "crop"), default="square",
                   help="folder: square = both sides to S (aspect changes); crop = shorter side to S, centre crop")
    g.add_argument("--train-subset", type=int, default=None, metavar="N",
                   help="use a fixed random N of the training images (quick runs)")
    g.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random crop, flip or cutout (deterministic batches, e.g. for DDP equivalence checks)")
    g = p.add_argument_group("run")
    g.add_argument("--output", default=output, help=f"run directory ({checkpoint}, log.jsonl, config.json, tb/)")
    g.add_argument("--device", default="auto",
                   help="auto | cpu | cuda | cuda:N (auto: cuda when available; torchrun: each process its local GPU)")
    g.add_argument("--seed", type=int, default=0, help="seed of weights, sampling, batches and augmentation")
    g.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"),
                   help="mixed precision: auto = bf16 on GPUs that support it, fp16 + grad scaler on older ones, "
                        "off on CPU; bf16 runs on the CPU too")
    g.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                   help="channels_last memory format: auto = on for CUDA and CPU, off elsewhere")
    g.add_argument("--float64", action="store_true",
                   help="compute in float64 (slow; for numerical checks: float32 rounding flips ReLUs, so two "
                        "equivalent runs, e.g. torchrun vs one process, drift apart by ~1e-3 per step)")
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help=f"continue a run from CKPT (default: OUTPUT/{checkpoint}); a resume may change where and how "
                        "fast it runs (--output --device --data --no-download --no-progress --no-tensorboard "
                        "--stop-after --channels-last; training also --compile --eval-batch-size) and the step sizes "
                        "(--lr --arch-lr --grad-clip), nothing else")
    g.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N epochs of this invocation, as if interrupted (resume later)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="no TensorBoard logs")
    return p


def check_args(args: argparse.Namespace) -> None:
    """The shared flags' own checks (each script checks its own flags too)."""
    for name in ("train_subset", "stop_after"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    # (--image-size is checked against the space's own rule when the space is known: utils.space_args.resolve_space)
    if args.float64 and args.amp not in ("auto", "off"):
        raise UserError(f"--float64 does not go with --amp {args.amp}")
    if args.float64:
        args.amp = "off"


def count_or_fraction(text: str) -> int | float:
    """An argparse type: '5000' -> 5000 images, '0.1' -> a tenth of them."""
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (5000) or a fraction (0.1), got {text!r}") from None


def auto_or(number: type, what: str):
    """An argparse type: 'auto', or a finite ``number`` (int or float) >= 0; ``what`` names it in the error
    (export_onnx.py --threads, search_cifar.py --latency-margin)."""
    def parse(text: str) -> str | int | float:
        if text == "auto":
            return text
        try:
            value = number(text)
        except ValueError:
            value = None
        if value is None or not 0 <= value < float("inf"):  # nan fails both comparisons
            raise argparse.ArgumentTypeError(f"expected auto or {what}, got {text!r}")
        return value
    return parse


def dtype(args: argparse.Namespace) -> torch.dtype:
    return torch.float64 if args.float64 else torch.float32


def load_data(args: argparse.Namespace, info: ddp.DistInfo = ddp.DistInfo()) -> tuple[Split, Split, DatasetInfo]:
    """(training set, limited to --train-subset, test set, what the network needs to know of them);
    rank 0 first, as it may download or write the image cache.  A DataError comes back in the flags' words."""
    try:
        with ddp.main_first(info):
            train_set, test_set, data = load_dataset(args.dataset, args.data, args.download, args.image_size,
                                                     args.resize)
    except DataError as e:
        how = "" if args.download or args.dataset.startswith("folder") else " (without --no-download it downloads)"
        raise UserError(f"{e}; --data {args.data} is the folder read (--dataset {args.dataset}){how}") from None
    return take(train_set, args.train_subset), test_set, data


def check_world(args: argparse.Namespace, world_size: int, flags=("batch_size",)) -> None:
    """Global batches must split evenly over the torchrun processes."""
    for flag in flags:
        if getattr(args, flag) % world_size:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)} (the global batch) must be divisible "
                            f"by the {world_size} processes")


def use_channels_last(flag: str, device: torch.device) -> bool:
    return flag == "on" or (flag == "auto" and device.type in ("cuda", "cpu"))


def changed_flags(old: dict[str, Any], now: dict[str, Any], allowed: frozenset | set) -> list[str]:
    """'--flag OLD (now NEW)' for every flag outside ``allowed`` that differs between two runs."""
    keys = [k for k in sorted(set(old) | set(now)) if k not in allowed and old.get(k) != now.get(k)]
    return [f"--{k.replace('_', '-')} {old.get(k)} (now {now.get(k)})" for k in keys]


def refuse_existing_run(out: Path, markers: tuple[str, ...], what: str,
                        remedy: str = "continue it with --resume, or choose another --output") -> None:
    """One guard for every script that writes a run folder: a second run would mix its files with the first."""
    found = [m for m in markers if (out / m).exists()]
    if found:
        raise UserError(f"{out} already holds a {what} ({found[0]}): {remedy}")


def _describe(flags: dict[str, Any]) -> str:
    return " ".join(f"{k}={' '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in flags.items()
                    if v is not None)


class Run:
    """A run folder and its checkpoint.  ``kind``: "search" or "train"; ``checkpoint``: the file name
    that --resume reads by default; ``may_change``: script-specific flags a resume may change, beyond
    RESUMABLE; ``same``: flags that name what is being run (e.g. the search space), compared first with
    a message of their own; ``check(saved, path)``: script-specific checks of a resumed checkpoint;
    ``added``: flags newer than some checkpoints, with the value that stands for what those runs did (a
    checkpoint without the flag resumes as if it had been given that value); ``warmup_free``: with
    ``--from-warmup``, the flags that only the phase after the warm-up reads (they may differ from the
    warm-up's run)."""

    def __init__(self, args: argparse.Namespace, kind: str, checkpoint: str, *, may_change=(), same=(), check=None,
                 is_main: bool = True, guard: "Guard | None" = None, added: dict[str, Any] | None = None,
                 warmup_free=()):
        self.args, self.kind, self.is_main = args, kind, is_main
        self.out = Path(args.output)
        self.checkpoint = self.out / checkpoint
        self.saved: dict | None = None
        self.start_epoch = self.saved_epoch = self.epoch = 0
        self.last = self.checkpoint  # the file that holds saved_epoch
        self.finished = False
        self.from_warmup = False  # a new run started from another run's warm-up (--from-warmup)
        self.dataset: DatasetInfo | None = None  # set by the script once the data is loaded; saved with state()
        self.guard = guard
        if guard is not None:
            guard.run = self
        if is_main:  # before any data is loaded or any epoch is run
            try:
                check_writable(self.out)
            except WriteError as e:
                raise UserError(e.line("or choose another --output")) from None
        if args.resume is None:
            refuse_existing_run(self.out, (checkpoint,), f"{kind} run")
            if getattr(args, "from_warmup", None):
                self._start_from_warmup(Path(args.from_warmup), added, same, warmup_free)
            return
        self.path = self.last = path = self.checkpoint if args.resume == "auto" else Path(args.resume)
        self.saved = self._load(path, added, same, "checkpoint")
        if check is not None:
            check(self.saved, path)
        allowed = RESUMABLE | set(may_change)
        differ = changed_flags(self.saved["args"], vars(args), allowed)
        if differ:
            raise UserError(f"checkpoint {path} was made with other settings: " + ", ".join(differ)
                            + "; a resume may change only where and how fast the run goes, and the step sizes")
        changed = changed_flags(self.saved["args"], vars(args), frozenset({"resume", "stop_after"}))
        if changed and is_main:
            print(f"resuming {path} at epoch {self.saved['epoch']} with " + ", ".join(changed), flush=True)
        self.start_epoch = self.saved_epoch = self.saved["epoch"]

    def _load(self, path: Path, added, same, what: str) -> dict:
        """A checkpoint of this kind, its flags completed with ``added``, refused unless the ``same`` flags
        (what is being run) are this run's."""
        saved = load_checkpoint(path, kind=self.kind)
        saved["args"] = {**(added or {}), **saved["args"]}
        old, now = ({k: d.get(k) for k in same} for d in (saved["args"], vars(self.args)))
        if old != now:
            raise UserError(f"{what} {path} is for {_describe(old)}; this run asks for {_describe(now)}")
        return saved

    def _start_from_warmup(self, path: Path, added, same, free) -> None:
        """A new run that starts where another run's warm-up ended (its checkpoint at epoch ==
        --warmup-epochs): weights, optimizer and RNG state as that run had them, so that it continues bit
        for bit as the warm-up's own run would have with this run's flags.  Every flag the warm-up reads
        must be as it was there; the others (``free``: the search phase's) may differ."""
        args = self.args
        saved = self._load(path, added, same, "--from-warmup")
        warm = saved["args"].get("warmup_epochs")
        if saved["epoch"] != warm or warm != args.warmup_epochs:
            raise UserError(f"--from-warmup {path} holds epoch {saved['epoch']} of a run with --warmup-epochs {warm}; "
                            f"it must hold the end of a warm-up of --warmup-epochs {args.warmup_epochs} "
                            f"(run that search with --stop-after {args.warmup_epochs})")
        differ = changed_flags(saved["args"], vars(args), RESUMABLE | set(free) | {"from_warmup", "stop_after"})
        if differ:
            raise UserError(f"--from-warmup {path} was warmed up with other settings: " + ", ".join(differ)
                            + "; only the search phase's flags may differ from the warm-up's")
        self.saved, self.path, self.from_warmup = saved, path, True
        self.start_epoch = saved["epoch"]  # nothing saved in this folder yet: saved_epoch stays 0

    @property
    def resume_epoch(self) -> int:
        """The epoch the log continues from: records after it are dropped.  0 for a new run, whose folder
        holds no checkpoint (refused otherwise) but may hold the records of an attempt that stopped
        before its first checkpoint (a full disk): "start again" then starts a clean log."""
        return self.start_epoch

    def restore(self, **stateful) -> None:
        """Load each object's state from the resumed checkpoint (same keys as ``state``), then the RNG
        state.  Modules load through load_fitting (a mismatch names the keys); None objects are skipped."""
        if self.saved is None:
            return
        for key, obj in stateful.items():
            if obj is None or self.saved.get(key) is None:
                continue
            if isinstance(obj, torch.nn.Module):
                load_fitting(obj, self.saved[key], f"checkpoint {self.path}")
            else:
                obj.load_state_dict(self.saved[key])
        set_rng_state(self.saved["rng"])

    def state(self, epoch: int, **stateful) -> dict[str, Any]:
        """A checkpoint dict: kind, epoch, args, RNG state and every object's state_dict (None stays None)."""
        out = {"kind": self.kind, "epoch": epoch, "args": vars(self.args), "rng": get_rng_state(),
               "dataset": self.dataset.to_dict() if self.dataset else None}
        out.update({k: None if v is None else v.state_dict() for k, v in stateful.items()})
        return out

    def save(self, state: dict[str, Any], name: str | None = None) -> None:
        """Atomically, from rank 0 only; the default name is the checkpoint --resume reads."""
        if self.is_main:
            save_checkpoint(state, self.out / name if name else self.checkpoint)
        if name is None:
            self.saved_epoch, self.last = state["epoch"], self.checkpoint

    def epochs(self, total: int) -> Iterator[int]:
        """Epoch indices from the resumed one to ``total``; stops early after --stop-after epochs of
        this invocation (``finished`` tells which way the loop ended)."""
        stop_after = self.args.stop_after
        if self.guard is not None:
            self.guard.flag.install()  # from here until the epochs end, a signal stops at a step boundary
        for n, epoch in enumerate(range(self.start_epoch, total)):
            self.epoch = epoch
            yield epoch
            if stop_after is not None and n + 1 >= stop_after and epoch + 1 < total:
                if self.is_main:
                    tqdm.write(f"stopping after {n + 1} epoch(s) as asked; continue with --resume")
                break
        else:
            self.finished = True
        if self.guard is not None:
            self.guard.flag.restore()

    def should_stop(self, step: int) -> bool:
        """train_one_epoch's ``should_stop``: whether a signal asked the run to stop before ``step``."""
        return self.guard is not None and self.guard.flag(step)

    def diverged(self, error: DivergenceError, epoch: int, remedy: str) -> UserError:
        """The one line a diverged run ends with: where, which loss, and how to continue."""
        if self.saved_epoch:
            where = (f"{self.last} still holds epoch {self.saved_epoch}: continue it with --resume and "
                     f"{remedy}")
        else:
            where = f"no checkpoint was written: start again with {remedy}"
        return UserError(f"diverged in epoch {epoch + 1}: {error}; {where}")


# ------------------------------------------------------------------ faults of the machine
class Stopped(UserError):
    """The line of a run that a signal stopped; the exit status is a killed process's, 128 + the signal's
    number (143 for SIGTERM, 130 for SIGINT), so a scheduler still sees the job as stopped."""

    prefix = ""

    def __init__(self, line: str, signum: int):
        super().__init__(line)
        self.exit_code = 128 + signum


def command_line(script: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """``script`` and the flags whose values in ``args`` differ from the parser's defaults, --resume left
    out: the command that runs this run again (built from ``args``, so it is right also when a script's
    main is called from Python, as test_run.py does)."""
    def plain(v):
        return list(v) if isinstance(v, tuple) else v

    words = [script]
    for action in parser._actions:  # argparse has no public list of its actions
        if not action.option_strings or action.dest in ("help", "resume"):
            continue
        value = getattr(args, action.dest, None)
        if plain(value) == plain(parser.get_default(action.dest)):
            continue
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:  # store_true / store_false
            words.append(flag)
        else:
            words += [flag, *map(str, value if isinstance(value, (list, tuple)) else [value])]
    return words


class Guard:
    """``with Guard(script, parser, args, info, device) as guard:`` around a search or a training, with
    ``Run(..., guard=guard)`` inside: the faults of the machine end the run with one line each.

    * SIGTERM (a cluster scheduler's notice before it kills a job) and SIGINT (Ctrl-C), from the first
      epoch to the last: train_one_epoch stops before its next step (``Run.should_stop``); every torchrun
      process stops at the same step (``every``: how often they agree, see StopFlag) and rank 0 prints
      ``interrupted (SIGTERM) in epoch E after S of N steps; RUN/checkpoint.pth holds epoch K: continue
      with: python search_cifar.py ... --resume``.  Nothing of the stopped epoch is written.
    * A WriteError (checkpoint, log.jsonl, genotype, config or results file): its line, then from which
      epoch and with which command the run continues.
    The signal handlers are restored on the way out."""

    def __init__(self, script: str, parser: argparse.ArgumentParser, args: argparse.Namespace,
                 info: ddp.DistInfo, device: torch.device, every: int = 1):
        self.script, self.parser, self.args, self.info = script, parser, args, info
        self.flag = StopFlag(device, info.enabled, every)
        self.run: Run | None = None  # set by Run

    def __enter__(self) -> "Guard":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if not (isinstance(error, Interrupted) and self.info.enabled):
            self.flag.restore()
        # else the handlers stay: torchrun SIGTERMs the other processes as soon as one exits, and rank 0
        # must still print its line and exit with its own status (a torchrun process is its own CLI)
        if self.run is None:
            return
        if isinstance(error, Interrupted):
            line = (f"interrupted ({self.flag.name}) in epoch {self.run.epoch + 1} after {error.step} of "
                    f"{error.steps} steps; " + self.how_to_continue(
                        "{checkpoint} holds epoch {epoch}: continue with: {command}",
                        "no checkpoint was written yet: start again with: {command}"))
            raise Stopped(line if self.info.is_main else "", self.flag.stopped_by) from None
        if isinstance(error, WriteError):
            raise UserError(error.line(self.how_to_continue(
                "then continue from epoch {epoch} ({checkpoint} holds it) with: {command}",
                "then start again with: {command}"))) from None

    def how_to_continue(self, resume: str, again: str) -> str:
        """``resume`` (or, before the first checkpoint, ``again``) with {checkpoint}, {epoch} and
        {command} filled in: the file that holds the last good epoch and the command that continues."""
        local = os.environ.get("LOCAL_WORLD_SIZE", str(self.info.world_size))
        launch = ("python" if not self.info.enabled else f"torchrun --nproc_per_node={local}"
                  if local == str(self.info.world_size) else "torchrun (your launch flags)")
        command = f"{launch} {shlex.join(command_line(self.script, self.parser, self.args))}"
        run = self.run
        if not run.saved_epoch:
            return again.format(command=command)
        command += " --resume" if run.last == run.checkpoint else f" --resume {shlex.quote(str(run.last))}"
        return resume.format(checkpoint=run.last, epoch=run.saved_epoch, command=command)
